//! Data subjects' requests (GDPR Art. 15, 17, 20): received with their legal deadline, run
//! in the background, answered with an archive (access) or an erasure that reaches every
//! table and the files themselves; each step in the audit log, without the personal data.

use std::io::Write;

use parcours_core::identifier::{EMAIL, PHONE};
use parcours_core::journey::policy::CapWindow;
use parcours_core::privacy::{
    day_of, deadline, suppression_hash, PrivacySettings, ANSWER_MONTHS, MAX_EXTENSION_MONTHS,
};
use parcours_core::time::{Millis, DAY};
pub use parcours_engine::erased::PRIVACY_SETTINGS;
use parcours_store::{AuditEntry, Erased, Erasure, PrivacyRequest, RetentionRun, Store};
use serde::Serialize;
use serde_json::{json, Value};

use crate::{Actor, ServiceError};

pub const ACCESS: &str = "access";
pub const ERASURE: &str = "erasure";

/// Traits that name a person: taken out of the documents an erasure keeps.
const NAME_TRAITS: &[&str] = &[
    "name",
    "firstName",
    "lastName",
    "first_name",
    "last_name",
    "username",
];

/// Who may file and read requests: admins (the data protection officer) and agents
/// (customer service receives them); only admins erase.
pub fn require_requests(actor: &Actor, kind: &str) -> Result<(), ServiceError> {
    if kind == ERASURE {
        return actor.require_admin();
    }
    match actor.role {
        parcours_store::Role::Admin | parcours_store::Role::Agent => Ok(()),
        _ => Err(ServiceError::Forbidden(format!(
            "privacy requests need the admin or agent role; the token has {}",
            actor.role.as_str()
        ))),
    }
}

/// Appends to the audit log; a failure to write it fails the caller (an action that cannot
/// be proven is not done silently).
pub fn audit(
    store: &dyn Store,
    workspace: &str,
    at: Millis,
    actor: &str,
    action: &str,
    target: &str,
    detail: Value,
) -> Result<i64, ServiceError> {
    Ok(store.append_audit(&AuditEntry {
        id: 0,
        workspace_id: workspace.to_string(),
        at,
        actor: actor.to_string(),
        action: action.to_string(),
        target: target.to_string(),
        detail: detail.to_string(),
    })?)
}

/// Files a request: `kind` is `access` or `erasure`, the identifier any kind the identity
/// graph knows (normalised as ingest normalises it). It is `received`; [`run`] does it.
pub fn file_request(
    store: &dyn Store,
    actor: &Actor,
    actor_name: &str,
    kind: &str,
    id_type: &str,
    id_value: &str,
    now: Millis,
) -> Result<PrivacyRequest, ServiceError> {
    if kind != ACCESS && kind != ERASURE {
        return Err(ServiceError::invalid(
            "invalid_request_kind",
            format!("`{kind}` is not a kind of request: use access or erasure"),
        ));
    }
    require_requests(actor, kind)?;
    if id_type.is_empty() || id_type.len() > 64 {
        return Err(ServiceError::invalid(
            "invalid_identifier",
            "the identifier's type must be 1 to 64 characters (email, phone, user_id …)",
        ));
    }
    let rules = store
        .workspace(&actor.workspace)?
        .map(|w| w.identity_rules)
        .unwrap_or_default();
    let value = crate::identity::normalize(&rules, id_type, id_value)?;
    let received = day_of(now);
    let request = PrivacyRequest {
        id: format!("pr_{:024x}", rand::random::<u128>() >> 32),
        workspace_id: actor.workspace.clone(),
        kind: kind.to_string(),
        identifier_type: id_type.to_string(),
        identifier: Some(value),
        state: "received".into(),
        received_at: now,
        deadline: deadline(
            received,
            ANSWER_MONTHS,
            &settings_of(store, &actor.workspace)?.holiday_dates(),
        )
        .to_string(),
        extension_reason: None,
        done_at: None,
        result: None,
        requested_by: actor_name.to_string(),
    };
    store.save_privacy_request(&request, None)?;
    audit(
        store,
        &actor.workspace,
        now,
        actor_name,
        &format!("privacy.{kind}.received"),
        &request.id,
        json!({ "identifier_type": id_type, "deadline": request.deadline }),
    )?;
    Ok(request)
}

/// A request of the actor's workspace.
pub fn request(store: &dyn Store, actor: &Actor, id: &str) -> Result<PrivacyRequest, ServiceError> {
    require_requests(actor, ACCESS)?;
    store
        .privacy_request(&actor.workspace, id)?
        .ok_or_else(|| ServiceError::NotFound(format!("privacy request {id}")))
}

/// The workspace's requests, newest first.
pub fn requests(store: &dyn Store, actor: &Actor) -> Result<Vec<PrivacyRequest>, ServiceError> {
    require_requests(actor, ACCESS)?;
    Ok(store.privacy_requests(&actor.workspace, 500)?)
}

/// The workspace's requests about a person, by her identifiers (`(kind, value)` as stored),
/// newest first. An erasure forgets its identifier once done: it is not found this way.
pub fn requests_about(
    store: &dyn Store,
    actor: &Actor,
    identifiers: &[(String, String)],
) -> Result<Vec<PrivacyRequest>, ServiceError> {
    Ok(requests(store, actor)?
        .into_iter()
        .filter(|r| {
            r.identifier.as_ref().is_some_and(|v| {
                identifiers
                    .iter()
                    .any(|(k, iv)| *k == r.identifier_type && iv == v)
            })
        })
        .collect())
}

/// An access request's archive (a zip of JSON and CSV files).
pub fn archive(store: &dyn Store, actor: &Actor, id: &str) -> Result<Vec<u8>, ServiceError> {
    let r = request(store, actor, id)?;
    actor.require_personal_data()?;
    if r.kind != ACCESS {
        return Err(ServiceError::invalid(
            "not_an_access_request",
            "only an access request has an archive",
        ));
    }
    store
        .privacy_archive(&actor.workspace, id)?
        .ok_or_else(|| ServiceError::Unprocessable {
            code: "archive_not_ready",
            message: format!("the archive is not ready: the request is {}", r.state),
        })
}

/// Extends an open request's deadline by one or two further months (Art. 12(3)), with the
/// reason the person must be told.
pub fn extend(
    store: &dyn Store,
    actor: &Actor,
    actor_name: &str,
    id: &str,
    months: u32,
    reason: &str,
    now: Millis,
) -> Result<PrivacyRequest, ServiceError> {
    actor.require_admin()?;
    let mut r = request(store, actor, id)?;
    if !(1..=MAX_EXTENSION_MONTHS).contains(&months) {
        return Err(ServiceError::invalid(
            "invalid_extension",
            "a deadline is extended by 1 or 2 further months",
        ));
    }
    if reason.trim().is_empty() || reason.len() > 1000 {
        return Err(ServiceError::invalid(
            "invalid_extension",
            "give the reason of the extension (1 to 1000 characters): the person must be told",
        ));
    }
    if r.state == "done" {
        return Err(ServiceError::Conflict {
            code: "request_done",
            message: "the request is answered already".into(),
        });
    }
    if r.extension_reason.is_some() {
        return Err(ServiceError::Conflict {
            code: "already_extended",
            message: "the deadline was extended already (at most two further months in all)".into(),
        });
    }
    r.deadline = deadline(
        day_of(r.received_at),
        ANSWER_MONTHS + months,
        &settings_of(store, &actor.workspace)?.holiday_dates(),
    )
    .to_string();
    r.extension_reason = Some(reason.trim().to_string());
    store.save_privacy_request(&r, None)?;
    audit(
        store,
        &actor.workspace,
        now,
        actor_name,
        "privacy.request.extended",
        id,
        json!({ "months": months, "deadline": r.deadline }),
    )?;
    Ok(r)
}

/// What [`run`] needs from the node: the time, and a way to wait until the processors have
/// applied every event stored so far.
pub trait Runtime {
    fn now(&self) -> Millis;
    /// Waits (bounded) until every processor has caught up with the log as it is now.
    fn settle(&self);
    /// An erasure happened in `workspace`: forget caches that hold her.
    fn erased(&self, workspace: &str);
    /// Sends an erasure notice to a destination ([`parcours_engine::destinations::send_notice`]).
    fn notify(
        &self,
        doc: &parcours_engine::destinations::DestinationDoc,
        webhook_id: &str,
        body: Vec<u8>,
    ) -> Result<u16, String>;
    /// Sends an erasure notice to a URL journeys' webhook steps called, signed like those
    /// calls (the node's webhook secret); what the receiver answered, or why it failed.
    fn notify_webhook(&self, url: &str, webhook_id: &str, body: String) -> Result<String, String>;
}

/// Her calls by journeys' webhook steps, by the URL they went to: each call's `webhook-id`
/// (what the receiver knows it by), journey, step and run. Only calls that were tried: the
/// others reached no one (and are erased).
fn webhook_calls_of(
    store: &dyn Store,
    ws: &str,
    profiles: &[String],
) -> Result<std::collections::BTreeMap<String, Vec<Value>>, ServiceError> {
    use parcours_engine::provider::{WebhookCall, WEBHOOK_LANE};
    let mut by_url: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
    let mut before = None;
    loop {
        let rows = store.outbox_rows(&parcours_store::OutboxPage {
            workspace_id: ws,
            destination: WEBHOOK_LANE,
            state: None,
            before_id: before,
            limit: 1000,
        })?;
        for row in &rows {
            let Ok(call) = serde_json::from_str::<WebhookCall>(&row.payload) else {
                continue;
            };
            if row.attempts > 0 && profiles.contains(&call.profile) {
                by_url.entry(call.url).or_default().push(json!({
                    "webhook_id": row.key,
                    "journey": call.journey,
                    "step": call.step,
                    "run": call.run,
                    "profile_id": call.profile,
                }));
            }
        }
        match rows.last() {
            Some(last) if rows.len() == 1000 => before = Some(last.id),
            _ => return Ok(by_url),
        }
    }
}

/// A URL as the audit log and the request's result name it: without its query and a user
/// and password before the host, which may hold a receiver's credentials or her data.
fn public_url(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or_default();
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
            format!("{scheme}://{host}{path}")
        }
        None => url.to_string(),
    }
}

/// Does a received (or interrupted) request: builds the access archive, or erases.
pub fn run(
    store: &dyn Store,
    rt: &dyn Runtime,
    id_workspace: (&str, &str),
) -> Result<(), ServiceError> {
    let (workspace, id) = id_workspace;
    let mut r = store
        .privacy_request(workspace, id)?
        .ok_or_else(|| ServiceError::NotFound(format!("privacy request {id}")))?;
    if r.state == "done" {
        return Ok(());
    }
    r.state = "in_progress".into();
    store.save_privacy_request(&r, None)?;
    let outcome = match r.kind.as_str() {
        ACCESS => run_access(store, &r).map(|(result, zip)| (result, Some(zip))),
        _ => run_erasure(store, rt, &r).map(|result| (result, None)),
    };
    let now = rt.now();
    match outcome {
        Ok((result, zip)) => {
            r.state = "done".into();
            r.done_at = Some(now);
            r.result = Some(result.to_string());
            if r.kind == ERASURE {
                r.identifier = None;
            }
            store.save_privacy_request(&r, zip.as_deref())?;
            audit(
                store,
                workspace,
                now,
                "system",
                &format!("privacy.{}.done", r.kind),
                id,
                result,
            )?;
            Ok(())
        }
        Err(e) => {
            r.state = "failed".into();
            r.result = Some(json!({ "error": e.to_string() }).to_string());
            store.save_privacy_request(&r, None)?;
            audit(
                store,
                workspace,
                now,
                "system",
                &format!("privacy.{}.failed", r.kind),
                id,
                json!({ "error": e.to_string() }),
            )?;
            Err(e)
        }
    }
}

/// Her profile and everything that names her, resolved from the identity graph.
struct Person {
    profiles: Vec<String>,
    /// (kind, value)
    identifiers: Vec<(String, String)>,
    names: Vec<String>,
    raw_contacts: Vec<String>,
}

impl Person {
    /// Values unique enough to find her in free text: her emails and phones, normalised and
    /// as she typed them.
    fn needles(&self) -> Vec<String> {
        let mut needles: Vec<String> = self
            .identifiers
            .iter()
            .filter(|(k, _)| k == EMAIL || k == PHONE)
            .map(|(_, v)| v.clone())
            .chain(self.raw_contacts.iter().cloned())
            .collect();
        needles.sort();
        needles.dedup();
        needles
    }
}

fn person(store: &dyn Store, r: &PrivacyRequest) -> Result<Person, ServiceError> {
    let ws = &r.workspace_id;
    let value = r.identifier.clone().unwrap_or_default();
    let mut p = Person {
        profiles: vec![],
        identifiers: vec![(r.identifier_type.clone(), value.clone())],
        names: vec![],
        raw_contacts: vec![],
    };
    let holder = store.lookup(
        ws,
        &parcours_core::identifier::Identifier::new(&r.identifier_type, &value),
    )?;
    let Some(holder) = holder else {
        return Ok(p);
    };
    let mut family = Vec::new();
    store.transact(&mut |tx| {
        family = tx.family(ws, &holder)?;
        Ok(())
    })?;
    if !family.contains(&holder) {
        family.push(holder.clone());
    }
    for pid in &family {
        for row in store.identifiers(ws, pid)? {
            let pair = (row.identifier.kind.clone(), row.identifier.value.clone());
            if !p.identifiers.contains(&pair) {
                p.identifiers.push(pair);
            }
        }
        if let Some(profile) = store.profile(ws, pid)? {
            for id in &profile.identifiers {
                let pair = (id.kind.clone(), id.value.clone());
                if !p.identifiers.contains(&pair) {
                    p.identifiers.push(pair);
                }
            }
            for (name, t) in &profile.traits {
                let Some(s) = t.value.as_str() else { continue };
                if NAME_TRAITS.contains(&name.as_str()) && s.chars().count() >= 2 {
                    p.names.push(s.to_string());
                } else if (name == "email" || name == "phone") && !s.is_empty() {
                    // As she typed it, besides its normalised identifier.
                    p.raw_contacts.push(s.to_string());
                }
            }
        }
    }
    p.profiles = family;
    Ok(p)
}

fn run_erasure(
    store: &dyn Store,
    rt: &dyn Runtime,
    r: &PrivacyRequest,
) -> Result<Value, ServiceError> {
    let ws = &r.workspace_id;
    let p = person(store, r)?;
    let values: Vec<String> = p.identifiers.iter().map(|(_, v)| v.clone()).collect();
    let needles = p.needles();
    let mut scrub: Vec<String> = values
        .iter()
        .chain(&needles)
        .chain(&p.names)
        .chain(&p.profiles)
        .cloned()
        .collect();
    scrub.sort();
    scrub.dedup();
    let erasure = Erasure {
        workspace_id: ws.clone(),
        profiles: p.profiles.clone(),
        identifiers: values,
        needles,
        scrub,
        suppress: p
            .identifiers
            .iter()
            .map(|(k, v)| (suppression_hash(ws, k, v), k.clone()))
            .collect(),
        pseudonym: format!("erased-{:016x}", rand::random::<u64>()),
        at: rt.now(),
    };
    // Art. 19: the destinations that received her are told, while her profiles can still
    // say how each knows her. A failure does not hold the erasure up; it is in the result
    // and the audit log.
    let mut notified = Vec::new();
    let mut notified_webhooks = Vec::new();
    for (dest, doc) in parcours_engine::destinations::recipients_of(store, ws, &p.profiles)? {
        let body = parcours_engine::destinations::erasure_payload(
            store,
            ws,
            &dest,
            &doc,
            &p.profiles,
            &r.id,
            rt.now(),
        )?;
        let webhook_id = format!("erasure_{}_{dest}", r.id);
        let outcome = rt.notify(&doc, &webhook_id, body.to_string().into_bytes());
        let (action, detail) = match &outcome {
            Ok(status) => (
                "privacy.erasure.notified",
                json!({"destination": dest, "status": status}),
            ),
            // What the receiver answered could quote her: only the kind of failure is kept.
            Err(e) => (
                "privacy.erasure.notice_failed",
                json!({"destination": dest, "error": e.split(':').next().unwrap_or_default()}),
            ),
        };
        audit(store, ws, rt.now(), "system", action, &r.id, detail.clone())?;
        notified.push(detail);
    }
    // The same for the URLs journeys' webhook steps sent her to: each is told which of its
    // calls were about her.
    for (n, (url, calls)) in webhook_calls_of(store, ws, &p.profiles)?
        .into_iter()
        .enumerate()
    {
        // Only the profiles this receiver was called about.
        let mut profiles: Vec<&str> = calls
            .iter()
            .filter_map(|c| c["profile_id"].as_str())
            .collect();
        profiles.sort();
        profiles.dedup();
        let body = json!({
            "type": "privacy.erasure",
            "timestamp": parcours_core::time::format_timestamp(rt.now()),
            "data": {"workspace": ws, "request": r.id, "profiles": profiles, "calls": calls},
        });
        let webhook_id = format!("erasure_{}_webhook_{n}", r.id);
        let outcome = rt.notify_webhook(&url, &webhook_id, body.to_string());
        let (action, detail) = match &outcome {
            Ok(answer) => (
                "privacy.erasure.notified",
                json!({"webhook": public_url(&url), "calls": calls.len(), "answer": answer}),
            ),
            Err(e) => (
                "privacy.erasure.notice_failed",
                json!({"webhook": public_url(&url), "calls": calls.len(),
                       "error": e.split(':').next().unwrap_or_default()}),
            ),
        };
        audit(store, ws, rt.now(), "system", action, &r.id, detail.clone())?;
        notified_webhooks.push(detail);
    }
    // The list first: from now on her events are refused at ingest.
    let mut erased: Erased = store.erase(&erasure)?;
    rt.erased(ws);
    // What the processors applied of hers in the meantime goes in a second pass.
    rt.settle();
    erased.merge(store.erase(&erasure)?);
    store.transact(&mut |tx| tx.bump_epoch())?;
    store.compact()?;
    rt.erased(ws);
    let mut kinds: Vec<&str> = p.identifiers.iter().map(|(k, _)| k.as_str()).collect();
    kinds.sort();
    kinds.dedup();
    Ok(json!({
        "profiles": p.profiles.len(),
        "identifiers": p.identifiers.len(),
        "identifier_kinds": kinds,
        "deleted": erased.deleted,
        "scrubbed": erased.scrubbed,
        "suppression_entries": erasure.suppress.len(),
        "storage_compacted": true,
        "destinations_notified": notified,
        "webhooks_notified": notified_webhooks,
    }))
}

/// Everything about her: profile, identifiers, consents, events, merges, audience
/// memberships, journeys and messages, orders, loyalty entries. JSON for each, CSV for the tables.
fn run_access(store: &dyn Store, r: &PrivacyRequest) -> Result<(Value, Vec<u8>), ServiceError> {
    let ws = &r.workspace_id;
    let p = person(store, r)?;
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut counts = serde_json::Map::new();
    let mut events = Vec::new();
    let mut profiles = Vec::new();
    let mut merges = Vec::new();
    let mut memberships = Vec::new();
    let mut runs = Vec::new();
    let mut contacts = Vec::new();
    let mut identifiers = Vec::new();
    for pid in &p.profiles {
        if let Some(profile) = store.profile(ws, pid)? {
            if profile.id == *pid {
                profiles.push(serde_json::to_value(&profile).unwrap_or(Value::Null));
            }
        }
        identifiers.extend(store.identifiers(ws, pid)?);
        merges.extend(store.merges_of(ws, pid)?);
        memberships.extend(store.memberships(ws, pid)?);
        runs.extend(store.runs_of(ws, pid, 10_000)?);
        contacts.extend(store.contacts(ws, pid, 0)?);
        let mut before = None;
        loop {
            let page = store.timeline(ws, pid, before, 1000)?;
            let done = page.len() < 1000;
            for e in page {
                before = Some(e.seq);
                events.push(e);
            }
            if done {
                break;
            }
        }
    }
    events.sort_by_key(|e| e.seq);
    events.dedup_by_key(|e| e.seq);
    let her_orders = store.her_orders(&Erasure {
        workspace_id: ws.clone(),
        profiles: p.profiles.clone(),
        identifiers: p.identifiers.iter().map(|(_, v)| v.clone()).collect(),
        needles: p.needles(),
        ..Erasure::default()
    })?;
    let orders: Vec<Value> = her_orders
        .iter()
        .map(|(o, _)| serde_json::from_str(o).unwrap_or(Value::String(o.clone())))
        .collect();
    // Her loyalty entries: by her identifiers and by the cards her orders name.
    let mut members: Vec<&str> = p.identifiers.iter().map(|(_, v)| v.as_str()).collect();
    members.extend(her_orders.iter().filter_map(|(_, m)| m.as_deref()));
    members.sort();
    members.dedup();
    let mut loyalty = Vec::new();
    for m in members {
        loyalty.extend(store.loyalty_entries(ws, m)?);
    }
    let event_docs: Vec<Value> = events
        .iter()
        .map(|e| serde_json::from_str(&e.body).unwrap_or(Value::String(e.body.clone())))
        .collect();
    let mut add = |name: &str, n: usize, v: Value| {
        counts.insert(name.to_string(), json!(n));
        files.push((
            format!("{name}.json"),
            serde_json::to_vec_pretty(&v).unwrap_or_default(),
        ));
    };
    add("profile", profiles.len(), json!(profiles));
    add("identifiers", identifiers.len(), json!(identifiers));
    add("events", event_docs.len(), json!(event_docs));
    add("merges", merges.len(), json!(merges));
    add(
        "audience_memberships",
        memberships.len(),
        json!(memberships),
    );
    add("journeys", runs.len(), json!(runs));
    add("messages", contacts.len(), json!(contacts));
    add("orders", orders.len(), json!(orders));
    add("loyalty", loyalty.len(), json!(loyalty));
    let consents: Vec<Value> = profiles
        .iter()
        .flat_map(|p| {
            p.get("consent")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(k, v)| json!({ "purpose": k, "record": v }))
        })
        .collect();
    add("consents", consents.len(), json!(consents));
    // The tables as CSV too.
    files.push((
        "identifiers.csv".into(),
        csv(
            &["type", "value", "linked_at"],
            identifiers.iter().map(|i| {
                vec![
                    i.identifier.kind.clone(),
                    i.identifier.value.clone(),
                    parcours_core::time::format_timestamp(i.linked_at),
                ]
            }),
        ),
    ));
    files.push((
        "events.csv".into(),
        csv(
            &["received_at", "type", "event", "channel", "body"],
            events.iter().map(|e| {
                vec![
                    parcours_core::time::format_timestamp(e.received_at),
                    e.kind.as_str().to_string(),
                    e.event.clone().unwrap_or_default(),
                    e.channel.as_str().to_string(),
                    e.body.clone(),
                ]
            }),
        ),
    ));
    files.push((
        "README.txt".into(),
        format!(
            "Everything this workspace holds about the person of request {} (GDPR Art. 15 and 20).\n\
             Each .json file is one kind of data; identifiers and events are also in .csv.\n",
            r.id
        )
        .into_bytes(),
    ));
    let zip = zip(&files)
        .map_err(|e| ServiceError::Store(parcours_store::StoreError::Backend(e.to_string())))?;
    Ok((
        json!({ "files": files.len(), "counts": counts, "bytes": zip.len() }),
        zip,
    ))
}

/// RFC 4180 CSV.
fn csv(header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> Vec<u8> {
    let field = |s: &str| {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    let mut out = header.join(",");
    out.push_str("\r\n");
    for row in rows {
        out.push_str(&row.iter().map(|s| field(s)).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    out.into_bytes()
}

/// A zip archive of `files`, stored without compression (every system opens it).
pub fn zip(files: &[(String, Vec<u8>)]) -> std::io::Result<Vec<u8>> {
    let mut out: Vec<u8> = Vec::new();
    let mut central: Vec<u8> = Vec::new();
    for (name, data) in files {
        let crc = crc32fast::hash(data);
        let offset = out.len() as u32;
        let size = u32::try_from(data.len())
            .map_err(|_| std::io::Error::other("a file of the archive is over 4 GB"))?;
        let header = |sig: u32, central: bool| {
            let mut h: Vec<u8> = Vec::new();
            h.extend(sig.to_le_bytes());
            if central {
                h.extend(20u16.to_le_bytes()); // made by
            }
            h.extend(20u16.to_le_bytes()); // version needed
            h.extend(0x0800u16.to_le_bytes()); // UTF-8 names
            h.extend(0u16.to_le_bytes()); // stored
            h.extend(0u16.to_le_bytes()); // time
            h.extend(0x21u16.to_le_bytes()); // date: 1980-01-01
            h.extend(crc.to_le_bytes());
            h.extend(size.to_le_bytes());
            h.extend(size.to_le_bytes());
            h.extend((name.len() as u16).to_le_bytes());
            h.extend(0u16.to_le_bytes()); // extra
            if central {
                h.extend(0u16.to_le_bytes()); // comment
                h.extend(0u16.to_le_bytes()); // disk
                h.extend(0u16.to_le_bytes()); // internal attributes
                h.extend(0u32.to_le_bytes()); // external attributes
                h.extend(offset.to_le_bytes());
            }
            h.extend(name.as_bytes());
            h
        };
        out.write_all(&header(0x0403_4b50, false))?;
        out.write_all(data)?;
        central.extend(header(0x0201_4b50, true));
    }
    let central_offset = out.len() as u32;
    out.write_all(&central)?;
    out.extend(0x0605_4b50u32.to_le_bytes());
    out.extend([0u8; 4]); // disk numbers
    out.extend((files.len() as u16).to_le_bytes());
    out.extend((files.len() as u16).to_le_bytes());
    out.extend((central.len() as u32).to_le_bytes());
    out.extend(central_offset.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    Ok(out)
}

/// The workspace's privacy settings (the defaults until an admin sets them).
pub fn settings(store: &dyn Store, actor: &Actor) -> Result<PrivacySettings, ServiceError> {
    settings_of(store, &actor.workspace)
}

pub(crate) fn settings_of(
    store: &dyn Store,
    workspace: &str,
) -> Result<PrivacySettings, ServiceError> {
    Ok(store
        .workspace_setting(workspace, PRIVACY_SETTINGS)?
        .and_then(|json| PrivacySettings::parse(&json).ok())
        .unwrap_or_default())
}

/// Replaces the workspace's privacy settings (admins); the change is in the audit log.
pub fn put_settings(
    store: &dyn Store,
    actor: &Actor,
    actor_name: &str,
    json: &str,
    now: Millis,
) -> Result<PrivacySettings, ServiceError> {
    actor.require_admin()?;
    let settings = PrivacySettings::parse(json)
        .map_err(|e| ServiceError::invalid("invalid_privacy_settings", e))?;
    let doc = serde_json::to_string(&settings).expect("settings serialise");
    store.put_workspace_setting(&actor.workspace, PRIVACY_SETTINGS, &doc, now)?;
    audit(
        store,
        &actor.workspace,
        now,
        actor_name,
        "privacy.settings.changed",
        PRIVACY_SETTINGS,
        serde_json::to_value(&settings).unwrap_or_default(),
    )?;
    Ok(settings)
}

/// What a workspace's retention removes now: each cutoff from its settings. Contacts (what
/// frequency caps count) stay as long as the longest cap's window, whatever the messages'
/// retention says.
pub fn retention_run(
    store: &dyn Store,
    workspace: &str,
    now: Millis,
) -> Result<RetentionRun, ServiceError> {
    let r = settings_of(store, workspace)?.retention;
    let cutoff = |days: u32| now - i64::from(days) * DAY;
    let longest_cap = store
        .journey_policy(workspace)?
        .and_then(|doc| parcours_core::journey::policy::read(&doc).ok())
        .map(|p| {
            p.caps
                .iter()
                .map(|c| match c.window {
                    CapWindow::Rolling { ms } => ms,
                    CapWindow::Day => DAY,
                })
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0);
    let messages_before = r.messages_days.map(cutoff);
    Ok(RetentionRun {
        workspace_id: workspace.to_string(),
        events_by_name: r
            .events_by_name
            .iter()
            .map(|(n, d)| (n.clone(), cutoff(*d)))
            .collect(),
        events_by_type: r
            .events_by_type
            .iter()
            .map(|(t, d)| (t.clone(), cutoff(*d)))
            .collect(),
        events_before: r.events_days.map(cutoff),
        messages_before,
        // A day more than the window: her calendar day can start before `now - DAY`.
        contacts_before: messages_before.map(|b| b.min(now - longest_cap - DAY)),
        bodies_before: r.message_bodies_days.map(cutoff),
        quarantine_before: r.quarantine_days.map(cutoff),
        deliveries_before: r.delivery_logs_days.map(cutoff),
    })
}

/// Applies a workspace's retention (the janitor does, every hour); what went is in the audit
/// log (counts per table).
pub fn apply_retention(
    store: &dyn Store,
    workspace: &str,
    now: Millis,
) -> Result<Erased, ServiceError> {
    let run = retention_run(store, workspace, now)?;
    let done = store.apply_retention(&run)?;
    if !done.deleted.is_empty() {
        audit(
            store,
            workspace,
            now,
            "retention",
            "privacy.retention.applied",
            workspace,
            json!({ "removed": done.deleted }),
        )?;
    }
    Ok(done)
}

/// The suppression list's size and the events it refused.
#[derive(Debug, Clone, Serialize)]
pub struct Suppressed {
    pub entries: u64,
    pub refused_events: u64,
}

pub fn suppressed(store: &dyn Store, actor: &Actor) -> Result<Suppressed, ServiceError> {
    require_requests(actor, ACCESS)?;
    let (entries, refused_events) = store.suppression_counts(&actor.workspace)?;
    Ok(Suppressed {
        entries,
        refused_events,
    })
}

/// The audit log, newest first, before `before_id` (admins only).
pub fn audit_log_newest(
    store: &dyn Store,
    actor: &Actor,
    before_id: Option<i64>,
    limit: usize,
) -> Result<Vec<AuditEntry>, ServiceError> {
    actor.require_admin()?;
    Ok(store.audit_log_newest(&actor.workspace, before_id, limit.clamp(1, 1000))?)
}

/// The audit log, oldest first from after `after_id` (admins only).
pub fn audit_log(
    store: &dyn Store,
    actor: &Actor,
    after_id: i64,
    limit: usize,
) -> Result<Vec<AuditEntry>, ServiceError> {
    actor.require_admin()?;
    Ok(store.audit_log(&actor.workspace, after_id, limit.clamp(1, 1000))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_is_named_without_its_credentials_or_query() {
        assert_eq!(
            public_url("https://bot:pw@hooks.example:8443/x/y?token=abc#f"),
            "https://hooks.example:8443/x/y"
        );
        assert_eq!(
            public_url("http://127.0.0.1:9/crm"),
            "http://127.0.0.1:9/crm"
        );
        assert_eq!(
            public_url("https://a@b@hooks.example"),
            "https://hooks.example"
        );
    }

    #[test]
    fn a_zip_lists_its_files_with_their_checksums() {
        let z = zip(&[
            ("a.json".into(), b"{\"x\":1}".to_vec()),
            ("b.csv".into(), b"h\r\n1\r\n".to_vec()),
        ])
        .unwrap();
        assert_eq!(&z[..4], b"PK\x03\x04");
        let end = z.len() - 22;
        assert_eq!(&z[end..end + 4], b"PK\x05\x06");
        assert_eq!(u16::from_le_bytes([z[end + 10], z[end + 11]]), 2);
        let crc = crc32fast::hash(b"{\"x\":1}").to_le_bytes();
        assert_eq!(&z[14..18], &crc);
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        let out = csv(
            &["a", "b"],
            vec![vec!["x,y".into(), "say \"hi\"".into()]].into_iter(),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a,b\r\n\"x,y\",\"say \"\"hi\"\"\"\r\n"
        );
    }
}
