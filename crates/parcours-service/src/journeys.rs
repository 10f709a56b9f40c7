//! Journey documents: save a version (or only say what it would change), read one with its
//! versions, list them.

use parcours_channels::Renderer;
use parcours_core::journey::{self, diff, Action, Journey, Problem, Status, Trigger};
use parcours_core::time::Millis;
use parcours_store::{JourneyVersion, NewJourneyVersion, Store, StoreError};

use crate::{Actor, ServiceError};

/// What saving a document did (or, for a plan, would do).
#[derive(Debug, Clone)]
pub struct Saved {
    /// The version now latest (for a plan: the latest before it, if any).
    pub version: Option<JourneyVersion>,
    /// The journey as read from the document.
    pub journey: Journey,
    /// Whether a new version was (or would be) stored: a document identical to the latest
    /// version stores nothing.
    pub changed: bool,
    /// What changes, in words, runs in flight last.
    pub changes: Vec<String>,
    /// The document against the latest version, line by line (`None`: too large to compare).
    pub diff: Option<Vec<String>>,
}

/// Reads a document for journey `id`: every problem with its line and column, and the id in
/// the document must be the one asked for.
pub fn read(id: &str, body: &str) -> Result<Journey, ServiceError> {
    let j = journey::read(body).map_err(|problems| ServiceError::Document { problems })?;
    if j.id != id {
        return Err(ServiceError::invalid(
            "journey_id_mismatch",
            format!(
                "the document is journey `{}`, saved as `{id}`: make them the same",
                j.id
            ),
        ));
    }
    let renderer = Renderer::default();
    for s in &j.steps {
        let parts = match &s.action {
            Action::Send(m) => std::iter::once(None)
                .chain(m.variants.values().map(Some))
                .flat_map(|v| {
                    let texts = v.map_or([&m.subject, &m.html, &m.text, &m.title], |v| {
                        [&v.subject, &v.html, &v.text, &v.title]
                    });
                    ["subject", "html", "text", "title"].into_iter().zip(texts)
                })
                .collect::<Vec<_>>(),
            Action::Webhook { body, .. } => vec![("body", body)],
            _ => Vec::new(),
        };
        for (part, t) in parts {
            if let Some(t) = t {
                renderer.check(part, t).map_err(|e| {
                    ServiceError::invalid(
                        "invalid_template",
                        format!(
                            "step `{}`, {part}: the template does not parse: {}",
                            s.id, e.message
                        ),
                    )
                })?;
            }
        }
    }
    Ok(j)
}

fn latest(
    store: &dyn Store,
    actor: &Actor,
    id: &str,
) -> Result<Option<JourneyVersion>, ServiceError> {
    Ok(store
        .journey_versions(&actor.workspace, id)?
        .into_iter()
        .next())
}

fn stored_journey(v: &JourneyVersion) -> Result<Journey, ServiceError> {
    serde_json::from_value(v.doc.clone()).map_err(|e| {
        ServiceError::Store(StoreError::Corrupt(format!(
            "journey {} version {} does not read: {e}",
            v.journey_id, v.version
        )))
    })
}

/// What saving `body` as journey `id` would change, without saving it.
pub fn plan(store: &dyn Store, actor: &Actor, id: &str, body: &str) -> Result<Saved, ServiceError> {
    let j = read(id, body)?;
    // A live journey entered on an audience that does not exist (or scheduled for its
    // members) would wait for nothing.
    let audience = match &j.entry.trigger {
        Trigger::Audience { audience, .. } => Some(audience),
        Trigger::Schedule {
            audience: Some(audience),
            ..
        } => Some(audience),
        _ => None,
    };
    if let (Status::Live, Some(audience)) = (j.status, audience) {
        let found = crate::definition(
            store,
            actor,
            parcours_store::DefinitionKind::Audience,
            audience,
        );
        if let Err(ServiceError::NotFound(_)) = found {
            return Err(ServiceError::Unprocessable {
                code: "unknown_audience",
                message: format!(
                    "the journey is entered on audience `{audience}`, which this workspace does not have: create it first, or save the journey as a draft"
                ),
            });
        }
        found?;
    }
    // So would a live journey adding her to a destination that does not exist.
    if j.status == Status::Live {
        for s in &j.steps {
            let Action::AdAudience { destination, .. } = &s.action else {
                continue;
            };
            let found = crate::definition(
                store,
                actor,
                parcours_store::DefinitionKind::Destination,
                destination,
            );
            if let Err(ServiceError::NotFound(_)) = found {
                return Err(ServiceError::Unprocessable {
                    code: "unknown_destination",
                    message: format!(
                        "step `{}` goes to destination `{destination}`, which this workspace does not have: create it first, or save the journey as a draft",
                        s.id
                    ),
                });
            }
            found?;
        }
    }
    let previous = latest(store, actor, id)?;
    let old = previous.as_ref().map(stored_journey).transpose()?;
    Ok(Saved {
        changed: previous.as_ref().is_none_or(|p| p.source != body),
        changes: diff::changes(old.as_ref(), &j),
        diff: diff::line_diff(previous.as_ref().map_or("", |p| p.source.as_str()), body),
        version: previous,
        journey: j,
    })
}

/// Saves `body` as the next version of journey `id` (the first, if it is new). The same
/// document as the latest version stores nothing. Two editors saving at once: the second is
/// refused (`journey_changed`) and can look at what changed before saving again.
pub fn save(
    store: &dyn Store,
    actor: &Actor,
    id: &str,
    body: &str,
    now: Millis,
) -> Result<Saved, ServiceError> {
    actor.require_editor()?;
    let mut plan = plan(store, actor, id, body)?;
    if !plan.changed {
        return Ok(plan);
    }
    let replaces = plan.version.as_ref().map(|v| v.version);
    let new = NewJourneyVersion {
        workspace_id: actor.workspace.clone(),
        journey_id: id.to_string(),
        replaces,
        source: body.to_string(),
        doc: journey::doc::to_json(&plan.journey),
        status: plan.journey.status.as_str().to_string(),
        in_flight: plan.journey.in_flight.as_str().to_string(),
        created_at: now,
    };
    let ws = actor.workspace.as_str();
    let schedule = &plan.journey.entry.trigger;
    // The version this one replaces: whether it was live, and its entry.
    let previous = plan
        .version
        .as_ref()
        .and_then(|v| Some((v.status == "live", stored_journey(v).ok()?.entry.trigger)));
    let same_schedule = previous
        .as_ref()
        .is_some_and(|(live, old)| *live && old == schedule);
    let was_scheduled = previous
        .as_ref()
        .is_some_and(|(_, old)| matches!(old, Trigger::Schedule { .. }));
    let timer = match (plan.journey.status, schedule) {
        (Status::Live, Trigger::Schedule { at, .. }) if !same_schedule => {
            let timer = parcours_engine::journeys::schedule_timer(ws, &plan.journey, now);
            if timer.is_none() {
                return Err(ServiceError::Unprocessable {
                    code: "schedule_passed",
                    message: format!(
                        "the schedule's only occurrence ({}) has passed: give a later `at`, or `every` to repeat it",
                        parcours_core::time::format_timestamp(*at)
                    ),
                });
            }
            timer
        }
        _ => None,
    };
    match store.put_journey_version(&new) {
        Ok(version) => {
            // A new schedule starts from its next occurrence; the same schedule keeps its
            // timer (an occurrence halfway through its customers goes on); a journey no
            // longer live on a schedule ends it (its timer would find nothing to do).
            match (&timer, plan.journey.status, schedule) {
                (Some(t), ..) => store.set_timers(std::slice::from_ref(t))?,
                (None, Status::Live, Trigger::Schedule { .. }) => {}
                _ if was_scheduled => {
                    store.cancel_timers(
                        ws,
                        parcours_store::JOURNEY_SCHEDULES,
                        &[id.to_string()],
                    )?;
                }
                _ => {}
            }
            plan.version = store.journey_version(&actor.workspace, id, version)?;
            Ok(plan)
        }
        Err(StoreError::Conflict(m)) => Err(ServiceError::Conflict {
            code: "journey_changed",
            message: format!(
                "{m}: someone saved it meanwhile; look at the latest version and save again"
            ),
        }),
        Err(e) => Err(e.into()),
    }
}

/// One journey: its latest version (or the one asked for) and every version, latest first.
pub fn get(
    store: &dyn Store,
    actor: &Actor,
    id: &str,
    version: Option<u32>,
) -> Result<(JourneyVersion, Vec<JourneyVersion>), ServiceError> {
    let versions = store.journey_versions(&actor.workspace, id)?;
    let chosen = match version {
        None => versions.first().cloned(),
        Some(n) => versions.iter().find(|v| v.version == n).cloned(),
    };
    let chosen = chosen.ok_or_else(|| {
        ServiceError::NotFound(match version {
            None => format!("journey {id}"),
            Some(n) => format!("version {n} of journey {id}"),
        })
    })?;
    Ok((chosen, versions))
}

/// A customer's runs (the latest first, at most `limit`), each with its notes: every decision
/// and its reason, in order ("why did, or didn't, she get it?").
pub fn runs_of(
    store: &dyn Store,
    actor: &Actor,
    profile: &str,
    journey: Option<&str>,
    limit: usize,
) -> Result<Vec<(parcours_store::StoredRun, Vec<parcours_store::RunNote>)>, ServiceError> {
    // Runs are kept under the profile they started with; a profile merged since is found
    // through the one it was merged into.
    let live = store
        .profile(&actor.workspace, profile)?
        .ok_or_else(|| ServiceError::NotFound(format!("profile {profile}")))?;
    let mut ids = vec![live.id.clone()];
    if live.id != profile {
        ids.push(profile.to_string());
    }
    let mut out = Vec::new();
    for id in ids {
        for run in store.runs_of(&actor.workspace, &id, limit.clamp(1, 1000))? {
            if journey.is_some_and(|j| j != run.journey_id) {
                continue;
            }
            let notes = store.run_notes(&actor.workspace, &run.run_id)?;
            out.push((run, notes));
        }
    }
    out.sort_by_key(|r| std::cmp::Reverse(r.0.entered_at));
    out.truncate(limit.clamp(1, 1000));
    Ok(out)
}

/// The latest version of every journey of the workspace.
pub fn list(store: &dyn Store, actor: &Actor) -> Result<Vec<JourneyVersion>, ServiceError> {
    Ok(store.journeys(Some(&actor.workspace))?)
}

/// The problems of a refused document, as lines `LINE:COLUMN: CODE: MESSAGE`.
pub fn describe(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("{}:{}: {}: {}", p.at.line, p.at.column, p.code, p.message))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The source that one-click unsubscribes are recorded as coming from.
pub const UNSUBSCRIBE_SOURCE: &str = "parcours:unsubscribe";

/// A one-click unsubscribe (RFC 8058) from the link in an email: the `Unsubscribed` event
/// that records her withdrawal of email marketing, with its proof (this message, this link),
/// to append to the log. The link must be one Parcours sent; anything else is not found.
/// Clicking twice records it once (the event's `messageId` comes from the message).
pub fn unsubscribe(
    store: &dyn Store,
    ws: &str,
    key: &str,
    nonce: &str,
    now: Millis,
) -> Result<parcours_store::IngestBatch, ServiceError> {
    let not_found = || ServiceError::NotFound("unsubscribe link".into());
    let message = crate::messages::message(store, ws, key).map_err(|_| not_found())?;
    let expected = format!("/v1/unsubscribe/{ws}/{key}/{nonce}");
    if nonce.len() < 16
        || !message
            .unsubscribe
            .as_deref()
            .is_some_and(|u| u.ends_with(&expected))
    {
        return Err(not_found());
    }
    let about = crate::messages::About {
        name: "Unsubscribed",
        message_id: format!("unsubscribe:{key}"),
        properties: serde_json::json!({"method": "one_click"}),
        at: now,
    };
    let mut batch =
        crate::messages::event_of(store, ws, &message, about, now).map_err(|e| match e {
            ServiceError::Unprocessable { message, .. } => ServiceError::Unprocessable {
                code: "unsubscribe_unresolved",
                message,
            },
            e => e,
        })?;
    batch.source_id = UNSUBSCRIBE_SOURCE.into();
    Ok(batch)
}

/// The source of entries asked through the API.
pub const API_ENTRY_SOURCE: &str = "parcours:journey-entries";

/// What entering a customer through the API asks for: the event to ingest, and the answer.
pub struct EntryRequest {
    pub batch: parcours_store::IngestBatch,
    pub message_id: String,
    pub profile_id: Option<String>,
}

/// Enters a customer into a journey whose entry is `api: true`: `{"identifier": {"type":
/// "email", "value": "…"}, "properties": {…}, "message_id": "…"}`. The entry is an event of
/// hers in the log (`Journey Entry Requested`, its properties the entry's and `journey`), so
/// it is decided, explained and replayed like any entry; the same `message_id` twice is one
/// entry.
pub fn request_entry(
    store: &dyn Store,
    actor: &Actor,
    id: &str,
    body: &serde_json::Value,
    now: Millis,
) -> Result<EntryRequest, ServiceError> {
    use parcours_core::spec::{check_event, Checked, Edge};
    use serde_json::{json, Value};
    actor.require_editor()?;
    let bad = |m: String| ServiceError::invalid("invalid_entry", m);
    let Value::Object(o) = body else {
        return Err(bad("send the entry as a JSON object".into()));
    };
    for k in o.keys() {
        if !["identifier", "properties", "message_id"].contains(&k.as_str()) {
            return Err(bad(format!(
                "`{k}` is not an entry field (identifier, properties, message_id)"
            )));
        }
    }
    let (latest, _) = get(store, actor, id, None)?;
    let journey = stored_journey(&latest)?;
    if !matches!(journey.entry.trigger, Trigger::Api) {
        return Err(ServiceError::Unprocessable {
            code: "journey_not_api",
            message: format!(
                "journey {id} is not entered through the API (its entry is not `api: true`)"
            ),
        });
    }
    if journey.status != Status::Live {
        return Err(ServiceError::Unprocessable {
            code: "journey_not_live",
            message: format!(
                "journey {id} is {}: only a live journey takes entrants",
                journey.status.as_str()
            ),
        });
    }
    let identifier = o.get("identifier").and_then(Value::as_object).ok_or_else(|| {
        bad("`identifier` is required: {\"type\": \"email\", \"value\": \"…\"} (any identifier type)".into())
    })?;
    let (Some(kind), Some(value)) = (
        identifier.get("type").and_then(Value::as_str),
        identifier.get("value").and_then(Value::as_str),
    ) else {
        return Err(bad(
            "`identifier` has a `type` and a `value`, both text".into()
        ));
    };
    let mut properties = match o.get("properties") {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(p)) => p.clone(),
        Some(_) => return Err(bad("`properties` is an object".into())),
    };
    if properties.contains_key("journey") {
        return Err(bad(
            "`properties.journey` is reserved: it names the journey".into(),
        ));
    }
    properties.insert("journey".into(), id.into());
    let message_id = match o.get("message_id") {
        None | Some(Value::Null) => format!("journey-entry-{:032x}", rand::random::<u128>()),
        Some(Value::String(m)) if !m.trim().is_empty() => m.clone(),
        Some(_) => return Err(bad("`message_id` is text".into())),
    };
    // A user id or anonymous id enters her even before Parcours knows her; any other
    // identifier must belong to a customer already.
    let profile_id = crate::identity::find(store, &actor.workspace, kind, value)?;
    let (user_id, anonymous_id) = match (kind, &profile_id) {
        ("user_id", _) => (Some(value.trim().to_string()), None),
        ("anonymous_id", _) => (None, Some(value.trim().to_string())),
        (_, None) => {
            return Err(ServiceError::NotFound(format!(
                "customer with {kind} {value}"
            )));
        }
        (_, Some(p)) => {
            let profile = store
                .profile(&actor.workspace, p)?
                .ok_or_else(|| ServiceError::NotFound(format!("customer with {kind} {value}")))?;
            let id_of = |k: &str| {
                profile
                    .identifiers
                    .iter()
                    .find(|i| i.kind == k)
                    .map(|i| i.value.clone())
            };
            match (id_of("user_id"), id_of("anonymous_id")) {
                (None, None) => {
                    return Err(ServiceError::Unprocessable {
                        code: "entry_customer_unaddressable",
                        message: format!("the customer with {kind} {value} has no user id or anonymous id to record the entry under"),
                    })
                }
                (u, a) => (u.clone(), if u.is_some() { None } else { a }),
            }
        }
    };
    let mut event = json!({
        "type": "track",
        "event": journey::machine::API_ENTRY_EVENT,
        "messageId": message_id,
        "timestamp": parcours_core::time::format_timestamp(now),
        "properties": properties,
        "context": {"library": {"name": "parcours"}},
    });
    if let Some(u) = user_id {
        event["userId"] = u.into();
    }
    if let Some(a) = anonymous_id {
        event["anonymousId"] = a.into();
    }
    let raw = serde_json::value::to_raw_value(&event).expect("an event always serialises");
    let edge = Edge::single(now, Some(parcours_core::Channel::Server), None);
    match check_event(&raw, &edge, &mut |_| message_id.clone()) {
        Checked::Accepted(e) => Ok(EntryRequest {
            batch: parcours_store::IngestBatch {
                workspace_id: actor.workspace.clone(),
                source_id: API_ENTRY_SOURCE.into(),
                events: vec![e],
                quarantined: Vec::new(),
            },
            message_id,
            profile_id,
        }),
        Checked::Quarantined(q) => Err(bad(format!(
            "the entry does not make a valid event: {}",
            q.violation.message()
        ))),
    }
}

/// Renders a message step of a journey for one customer, as it would go now, sending
/// nothing: `{"step": "reminder", "profile_id": "…" (or "identifier": {"type", "value"}),
/// "properties": {…} (the entry event's), "channel": "sms" (one of its fallbacks),
/// "version": 2}`.
pub fn preview(
    store: &dyn Store,
    actor: &Actor,
    id: &str,
    body: &serde_json::Value,
    now: Millis,
) -> Result<parcours_engine::journeys::Preview, ServiceError> {
    // A preview renders a message with a customer's traits.
    actor.require_personal_data()?;
    use serde_json::Value;
    let bad = |m: String| ServiceError::invalid("invalid_preview", m);
    let Value::Object(o) = body else {
        return Err(bad("send the preview request as a JSON object".into()));
    };
    for k in o.keys() {
        if ![
            "step",
            "profile_id",
            "identifier",
            "properties",
            "channel",
            "version",
        ]
        .contains(&k.as_str())
        {
            return Err(bad(format!(
                "`{k}` is not a preview field (step, profile_id, identifier, properties, channel, version)"
            )));
        }
    }
    let step = o
        .get("step")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("`step` (a message step's id) is required".into()))?;
    let version = match o.get("version") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| bad("`version` is a version number".into()))?,
        ),
    };
    let channel = match o.get("channel") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_str()
                .and_then(journey::MessageChannel::parse)
                .ok_or_else(|| bad("`channel` is email, sms or push".into()))?,
        ),
    };
    let properties = match o.get("properties") {
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(p @ Value::Object(_)) => p.clone(),
        Some(_) => return Err(bad("`properties` is an object".into())),
    };
    let profile = match (o.get("profile_id"), o.get("identifier")) {
        (Some(Value::String(p)), None) => p.clone(),
        (None, Some(Value::Object(i))) => {
            let (Some(kind), Some(value)) = (
                i.get("type").and_then(Value::as_str),
                i.get("value").and_then(Value::as_str),
            ) else {
                return Err(bad("`identifier` has a `type` and a `value`".into()));
            };
            crate::identity::find(store, &actor.workspace, kind, value)?
                .ok_or_else(|| ServiceError::NotFound(format!("customer with {kind} {value}")))?
        }
        _ => {
            return Err(bad(
                "name the customer with `profile_id` or `identifier` (one of them)".into(),
            ))
        }
    };
    let (chosen, _) = get(store, actor, id, version)?;
    let j = stored_journey(&chosen)?;
    let of = parcours_engine::journeys::PreviewOf {
        step,
        profile: &profile,
        properties,
        channel,
    };
    let rendered = parcours_engine::journeys::preview(store, &actor.workspace, &j, of, now)?
        .ok_or_else(|| ServiceError::NotFound(format!("profile {profile}")))?;
    rendered.map_err(|e| ServiceError::Unprocessable {
        code: "render_failed",
        message: format!("{}: the template does not render: {}", e.part, e.message),
    })
}

/// Sets the workspace's contact policy (frequency caps, quiet hours, expiry of held-back
/// messages): checked, then kept as given.
pub fn set_policy(
    store: &dyn Store,
    actor: &Actor,
    doc: &serde_json::Value,
    now: Millis,
) -> Result<serde_json::Value, ServiceError> {
    actor.require_admin()?;
    journey::policy::read(doc).map_err(|e| ServiceError::invalid("invalid_contact_policy", e))?;
    store.put_journey_policy(&actor.workspace, doc, now)?;
    Ok(doc.clone())
}

/// The workspace's contact policy as saved (no caps, no quiet hours when none was).
pub fn policy(store: &dyn Store, actor: &Actor) -> Result<serde_json::Value, ServiceError> {
    Ok(store
        .journey_policy(&actor.workspace)?
        .unwrap_or_else(|| serde_json::json!({"caps": [], "expire_after": "3d"})))
}

/// The longest window a simulation replays.
const MAX_SIMULATION_MS: Millis = 400 * 86_400_000;

/// Replays a journey document (a draft, or a new version of a live one) over the workspace's
/// stored events between `from` and `to`, as if it were live, and reports what it would have
/// done; saves and sends nothing. `progress` hears how many customers were replayed.
pub fn simulate(
    store: &dyn Store,
    actor: &Actor,
    body: &str,
    from: Millis,
    to: Millis,
    progress: &mut dyn FnMut(u64),
) -> Result<parcours_engine::journeys::Simulation, ServiceError> {
    let id = journey::read(body)
        .map(|j| j.id)
        .map_err(|problems| ServiceError::Document { problems })?;
    let j = read(&id, body)?;
    if to <= from || to - from > MAX_SIMULATION_MS {
        return Err(ServiceError::invalid(
            "invalid_simulation",
            "the window must end after it starts, and last at most 400 days",
        ));
    }
    let mut processor = parcours_engine::journeys::JourneyProcessor::default();
    Ok(processor.simulate(store, &actor.workspace, &j, from, to, progress)?)
}

/// A journey's runs in progress and ended, and where they wait (the console's list).
pub fn run_counts(
    store: &dyn Store,
    actor: &Actor,
    id: &str,
) -> Result<parcours_store::RunCounts, ServiceError> {
    Ok(store.run_counts(&actor.workspace, id)?)
}

/// A journey's live counts and report: runs in progress and ended, where they wait, and how
/// each group ended and each decision was taken (the console's graph).
pub fn counts(
    store: &dyn Store,
    actor: &Actor,
    id: &str,
) -> Result<(parcours_store::RunCounts, parcours_store::JourneyStats), ServiceError> {
    Ok((
        store.run_counts(&actor.workspace, id)?,
        store.journey_stats(&actor.workspace, id)?,
    ))
}
