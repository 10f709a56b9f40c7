//! What became of the messages journeys sent: opens and clicks (the email's pixel and signed
//! redirects), receipts from providers (delivered, bounced, marked as spam, failed), and the
//! addresses no message may go to any more. Each comes back into the log as an event of the
//! customer it went to (`Email Opened`, `Email Link Clicked`, `Email Delivered`, `Email
//! Bounced`, `Email Marked as Spam`, `SMS Delivered` …), so journeys wait for them, audiences
//! count them and reports add them up.

use parcours_channels::{suppression_address, tracking, Outgoing};
use parcours_core::journey::MessageChannel;
use parcours_core::spec::{check_event, Checked, Edge};
use parcours_core::time::{format_timestamp, parse_timestamp, Millis};
use parcours_store::{IngestBatch, Receipt, Store, Suppression};
use serde_json::{json, Value};

use crate::{Actor, ServiceError};

/// The source of the events Parcours records about its own messages.
pub const MESSAGES_SOURCE: &str = "parcours:messages";

/// Receipts in one call, at most.
pub const MAX_RECEIPTS: usize = 1_000;

/// A message as its outbox row holds it, found by key (`NotFound` otherwise).
pub fn message(store: &dyn Store, ws: &str, key: &str) -> Result<Outgoing, ServiceError> {
    let not_found = || ServiceError::NotFound(format!("message {key}"));
    let row = store.outbox_row_by_key(ws, key)?.ok_or_else(not_found)?;
    if !row.destination.starts_with("channel:") {
        return Err(not_found());
    }
    serde_json::from_str(&row.payload).map_err(|_| not_found())
}

/// What an event about a message says.
pub struct About<'a> {
    /// The event's name (`Email Opened`).
    pub name: &'a str,
    /// Its message id: the same fact twice has the same id, and the log keeps it once.
    pub message_id: String,
    pub properties: Value,
    /// When it happened.
    pub at: Millis,
}

/// An event about a message, as the customer it went to did it: `properties` get the
/// message's journey, step, run, key and channel.
pub fn event_of(
    store: &dyn Store,
    ws: &str,
    message: &Outgoing,
    about: About<'_>,
    now: Millis,
) -> Result<IngestBatch, ServiceError> {
    let About {
        name,
        message_id,
        mut properties,
        at,
    } = about;
    let unresolved = || ServiceError::Unprocessable {
        code: "message_customer_unknown",
        message: "the customer this message went to can no longer be found".into(),
    };
    let profile = store
        .profile(ws, &message.profile)?
        .ok_or_else(unresolved)?;
    let id_of = |kind: &str| {
        profile
            .identifiers
            .iter()
            .find(|i| i.kind == kind)
            .map(|i| i.value.clone())
    };
    if let Value::Object(p) = &mut properties {
        p.insert("journey".into(), message.journey.clone().into());
        p.insert("step".into(), message.step.clone().into());
        p.insert("run".into(), message.run.clone().into());
        p.insert("message_key".into(), message.key.clone().into());
        p.insert("channel".into(), message.channel.as_str().into());
    }
    let address = match message.channel {
        MessageChannel::Email => json!({"email": message.to}),
        MessageChannel::Sms => json!({"phone": message.to}),
        MessageChannel::Push => json!({}),
    };
    let mut event = json!({
        "type": "track",
        "event": name,
        "messageId": message_id,
        "timestamp": format_timestamp(at),
        "properties": properties,
        "context": {"traits": address, "library": {"name": "parcours"}},
    });
    match (id_of("user_id"), id_of("anonymous_id")) {
        (Some(u), _) => event["userId"] = u.into(),
        (None, Some(a)) => event["anonymousId"] = a.into(),
        (None, None) => return Err(unresolved()),
    }
    let channel = match message.channel {
        MessageChannel::Email => parcours_core::Channel::Email,
        MessageChannel::Sms => parcours_core::Channel::Sms,
        MessageChannel::Push => parcours_core::Channel::Server,
    };
    let raw = serde_json::value::to_raw_value(&event).expect("an event always serialises");
    let edge = Edge::single(now, Some(channel), None);
    let fallback = event["messageId"].as_str().unwrap_or_default().to_string();
    match check_event(&raw, &edge, &mut |_| fallback.clone()) {
        Checked::Accepted(e) => Ok(IngestBatch {
            workspace_id: ws.to_string(),
            source_id: MESSAGES_SOURCE.into(),
            events: vec![e],
            quarantined: Vec::new(),
        }),
        Checked::Quarantined(q) => Err(ServiceError::Unprocessable {
            code: "message_event_refused",
            message: format!("the event could not be recorded: {:?}", q.violation),
        }),
    }
}

fn receipt(ws: &str, m: &Outgoing, kind: &str, at: Millis, detail: String) -> Receipt {
    Receipt {
        workspace_id: ws.to_string(),
        key: m.key.clone(),
        kind: kind.to_string(),
        at,
        journey_id: m.journey.clone(),
        step_id: m.step.clone(),
        channel: m.channel.as_str().to_string(),
        detail,
    }
}

fn tracked(store: &dyn Store, ws: &str, key: &str) -> Result<(Outgoing, String), ServiceError> {
    let m = message(store, ws, key)?;
    let secret = m
        .secret
        .clone()
        .ok_or_else(|| ServiceError::NotFound(format!("message {key}")))?;
    Ok((m, secret))
}

/// What a tracking hit or a receipt asks for: events to ingest, then (once they are in the
/// log) receipts to keep with [`keep`]. A receipt is kept only after its event is in: a failed
/// ingest leaves nothing half done, and the next hit tries again.
#[derive(Debug, Default)]
pub struct Outcome {
    pub batches: Vec<IngestBatch>,
    pub receipts: Vec<Receipt>,
}

/// Keeps the receipts of an outcome whose events are in the log.
pub fn keep(store: &dyn Store, receipts: &[Receipt]) -> Result<(), ServiceError> {
    for r in receipts {
        store.record_receipt(r)?;
    }
    Ok(())
}

fn has(store: &dyn Store, ws: &str, key: &str, kind: &str) -> Result<bool, ServiceError> {
    Ok(store.receipts(ws, key)?.iter().any(|r| r.kind == kind))
}

/// The open pixel was loaded: the first time, an `Email Opened` event. A signature that does
/// not check is `NotFound`.
pub fn opened(
    store: &dyn Store,
    ws: &str,
    key: &str,
    sig: &str,
    now: Millis,
) -> Result<Outcome, ServiceError> {
    let (m, secret) = tracked(store, ws, key)?;
    if !tracking::verify_open(&secret, ws, key, sig) {
        return Err(ServiceError::NotFound(format!("message {key}")));
    }
    let mut out = Outcome::default();
    open_once(store, ws, &m, now, &mut out)?;
    Ok(out)
}

fn open_once(
    store: &dyn Store,
    ws: &str,
    m: &Outgoing,
    now: Millis,
    out: &mut Outcome,
) -> Result<(), ServiceError> {
    if has(store, ws, &m.key, "opened")? {
        return Ok(());
    }
    // The log keeps one event per message id: two first opens at once are one event.
    let about = About {
        name: "Email Opened",
        message_id: format!("opened:{}", m.key),
        properties: json!({}),
        at: now,
    };
    out.batches.push(event_of(store, ws, m, about, now)?);
    out.receipts
        .push(receipt(ws, m, "opened", now, String::new()));
    Ok(())
}

/// A tracked link was followed: where to send her, and what to record (`Email Link Clicked`
/// for each link, once, and `Email Opened` if the pixel never loaded: a click is an open).
pub fn clicked(
    store: &dyn Store,
    ws: &str,
    key: &str,
    index: usize,
    sig: &str,
    now: Millis,
) -> Result<(String, Outcome), ServiceError> {
    let (m, secret) = tracked(store, ws, key)?;
    let url = m
        .links
        .get(index)
        .cloned()
        .ok_or_else(|| ServiceError::NotFound(format!("link {index} of message {key}")))?;
    if !tracking::verify_click(&secret, ws, key, index, &url, sig) {
        return Err(ServiceError::NotFound(format!(
            "link {index} of message {key}"
        )));
    }
    let mut out = Outcome::default();
    open_once(store, ws, &m, now, &mut out)?;
    // Each link once in the log (its message id), however often she follows it.
    let about = About {
        name: "Email Link Clicked",
        message_id: format!("clicked:{key}:{index}"),
        properties: json!({"link_url": url, "link_index": index}),
        at: now,
    };
    out.batches.push(event_of(store, ws, &m, about, now)?);
    out.receipts
        .push(receipt(ws, &m, "clicked", now, url.clone()));
    Ok((url, out))
}

/// A provider's status callback for an SMS or a push (Twilio's `MessageStatus`, with its
/// `ErrorCode`): `delivered` records a delivery, `undelivered` and `failed` a failure; the
/// statuses on the way (`queued`, `sent` …) record nothing. A signature that does not check is
/// `NotFound`.
pub fn provider_status(
    store: &dyn Store,
    ws: &str,
    key: &str,
    sig: &str,
    status: &str,
    error: Option<&str>,
    now: Millis,
) -> Result<Outcome, ServiceError> {
    let (m, secret) = tracked(store, ws, key)?;
    if !tracking::verify_status(&secret, ws, key, sig) {
        return Err(ServiceError::NotFound(format!("message {key}")));
    }
    let status = match status {
        "delivered" | "read" => Status::Delivered,
        "undelivered" | "failed" => Status::Failed,
        _ => return Ok(Outcome::default()),
    };
    let r = Incoming {
        key: key.to_string(),
        status,
        at: None,
        reason: error
            .filter(|e| !e.is_empty())
            .map(|e| format!("provider error {}", e.chars().take(64).collect::<String>()))
            .unwrap_or_default(),
    };
    let mut out = Outcome::default();
    receive(store, ws, &m, &r, now, &mut out)?;
    Ok(out)
}

/// One receipt, as a provider (or the code that reads its webhooks) reports it.
#[derive(Debug, Clone, PartialEq)]
struct Incoming {
    key: String,
    status: Status,
    at: Option<Millis>,
    reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Delivered,
    HardBounce,
    SoftBounce,
    Complained,
    Failed,
}

impl Status {
    fn kind(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::HardBounce | Self::SoftBounce => "bounced",
            Self::Complained => "complained",
            Self::Failed => "failed",
        }
    }

    /// The event it becomes on a channel.
    fn event(self, channel: MessageChannel) -> String {
        let what = match self {
            Self::Delivered => "Delivered",
            Self::HardBounce | Self::SoftBounce => "Bounced",
            Self::Complained => "Marked as Spam",
            Self::Failed => "Failed",
        };
        let on = match channel {
            MessageChannel::Email => "Email",
            MessageChannel::Sms => "SMS",
            MessageChannel::Push => "Push",
        };
        format!("{on} {what}")
    }

    /// Why it suppresses the address, if it does.
    fn suppresses(self) -> Option<&'static str> {
        match self {
            Self::HardBounce => Some("hard_bounce"),
            Self::Complained => Some("complaint"),
            _ => None,
        }
    }
}

fn read_receipt(v: &Value) -> Result<Incoming, String> {
    let Value::Object(o) = v else {
        return Err("a receipt is an object".into());
    };
    for k in o.keys() {
        if !["key", "status", "bounce", "at", "reason"].contains(&k.as_str()) {
            return Err(format!(
                "`{k}` is not a receipt field (key, status, bounce, at, reason)"
            ));
        }
    }
    let text = |k: &str| o.get(k).and_then(Value::as_str);
    let key = text("key")
        .filter(|k| !k.is_empty() && k.len() <= 512)
        .ok_or("`key` (the message's key, its Message-ID's left part) is required")?
        .to_string();
    let status = match (text("status"), text("bounce")) {
        (Some("delivered"), None) => Status::Delivered,
        (Some("bounced"), Some("hard") | None) => Status::HardBounce,
        (Some("bounced"), Some("soft")) => Status::SoftBounce,
        (Some("bounced"), Some(b)) => {
            return Err(format!("`bounce` is `hard` or `soft`, not `{b}`"))
        }
        (Some("complained"), None) => Status::Complained,
        (Some("failed"), None) => Status::Failed,
        (Some(s @ ("delivered" | "complained" | "failed")), Some(_)) => {
            return Err(format!("`bounce` goes with `bounced`, not `{s}`"))
        }
        (Some(s), _) => {
            return Err(format!(
                "`status` is delivered, bounced, complained or failed, not `{s}`"
            ))
        }
        (None, _) => return Err("`status` is required".into()),
    };
    let at = match o.get("at") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(
            parse_timestamp(s)
                .ok_or_else(|| format!("`at` is not an ISO 8601 timestamp: `{s}`"))?,
        ),
        Some(_) => return Err("`at` is an ISO 8601 timestamp".into()),
    };
    let reason = match o.get("reason") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.chars().take(500).collect(),
        Some(_) => return Err("`reason` is text".into()),
    };
    Ok(Incoming {
        key,
        status,
        at,
        reason,
    })
}

/// What a call with receipts did: one answer per receipt, in order, and what to record.
pub struct Recorded {
    pub results: Vec<Value>,
    pub outcome: Outcome,
}

/// Records receipts (`{"receipts": [...]}` or one receipt): each is checked on its own, so
/// one bad receipt does not refuse the others. A receipt already recorded records nothing
/// again; a hard bounce or a complaint suppresses the address.
pub fn record_receipts(
    store: &dyn Store,
    actor: &Actor,
    body: &Value,
    now: Millis,
) -> Result<Recorded, ServiceError> {
    actor.require_editor()?;
    if !body.is_object() {
        return Err(ServiceError::invalid(
            "invalid_receipt",
            "send a receipt, or {\"receipts\": [...]}, as a JSON object",
        ));
    }
    let list: Vec<&Value> = match body.get("receipts") {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(_) => {
            return Err(ServiceError::invalid(
                "invalid_receipt",
                "`receipts` is a list of receipts",
            ))
        }
        None => vec![body],
    };
    if list.is_empty() || list.len() > MAX_RECEIPTS {
        return Err(ServiceError::invalid(
            "invalid_receipt",
            format!(
                "send 1 to {MAX_RECEIPTS} receipts at once, not {}",
                list.len()
            ),
        ));
    }
    let ws = actor.workspace.as_str();
    let mut out = Recorded {
        results: Vec::with_capacity(list.len()),
        outcome: Outcome::default(),
    };
    for v in list {
        let r = match read_receipt(v) {
            Ok(r) => r,
            Err(message) => {
                out.results
                    .push(json!({"recorded": false, "code": "invalid_receipt", "message": message, "key": v.get("key")}));
                continue;
            }
        };
        let m = match message(store, ws, &r.key) {
            Ok(m) => m,
            Err(ServiceError::NotFound(_)) => {
                out.results.push(
                    json!({"key": r.key, "recorded": false, "code": "unknown_message",
                    "message": "no message of this workspace has this key"}),
                );
                continue;
            }
            Err(e) => return Err(e),
        };
        let answer = receive(store, ws, &m, &r, now, &mut out.outcome)?;
        out.results.push(answer);
    }
    Ok(out)
}

/// Records one receipt of message `m`: the answer to give, and what to record in `outcome`.
fn receive(
    store: &dyn Store,
    ws: &str,
    m: &Outgoing,
    r: &Incoming,
    now: Millis,
    outcome: &mut Outcome,
) -> Result<Value, ServiceError> {
    let at = r.at.unwrap_or(now).min(now);
    let detail = match r.status {
        Status::SoftBounce => format!("soft: {}", r.reason),
        Status::HardBounce => format!("hard: {}", r.reason),
        _ => r.reason.clone(),
    };
    // Twice in one call is once, as twice in two calls is.
    let recorded = !has(store, ws, &m.key, r.status.kind())?
        && !outcome
            .receipts
            .iter()
            .any(|k| k.key == m.key && k.kind == r.status.kind());
    let mut answer = json!({"key": r.key, "recorded": recorded});
    if let Some(reason) = r.status.suppresses() {
        let address = suppression_address(m.channel, &m.to);
        let s = Suppression {
            workspace_id: ws.to_string(),
            channel: m.channel.as_str().to_string(),
            address: address.clone(),
            reason: reason.to_string(),
            key: m.key.clone(),
            detail: r.reason.clone(),
            at,
        };
        store.suppress(&s)?;
        answer["suppressed"] = json!(address);
    }
    if recorded {
        let mut properties = json!({});
        if !r.reason.is_empty() {
            properties["reason"] = r.reason.clone().into();
        }
        match r.status {
            Status::HardBounce => properties["bounce_type"] = "hard".into(),
            Status::SoftBounce => properties["bounce_type"] = "soft".into(),
            _ => {}
        }
        let name = r.status.event(m.channel);
        let id = format!("{}:{}", r.status.kind(), m.key);
        let about = About {
            name: &name,
            message_id: id,
            properties,
            at,
        };
        match event_of(store, ws, m, about, now) {
            Ok(b) => outcome.batches.push(b),
            // The receipt is kept (and the address suppressed); only the event is missing.
            Err(ServiceError::Unprocessable { code, message }) => {
                answer["event"] = json!({"code": code, "message": message});
            }
            Err(e) => return Err(e),
        }
        outcome
            .receipts
            .push(receipt(ws, m, r.status.kind(), at, detail));
    }
    Ok(answer)
}

fn channel_of(s: &str) -> Result<MessageChannel, ServiceError> {
    MessageChannel::parse(s).ok_or_else(|| {
        ServiceError::invalid(
            "invalid_suppression",
            format!("`{s}` is not a channel: email, sms or push"),
        )
    })
}

/// The workspace's suppressed addresses, newest first, a page at a time.
pub fn suppressions(
    store: &dyn Store,
    actor: &Actor,
    after: Option<(Millis, String, String)>,
    limit: usize,
) -> Result<Vec<Suppression>, ServiceError> {
    // Suppressions are addresses.
    actor.require_personal_data()?;
    Ok(store.suppressions(
        &actor.workspace,
        after.as_ref().map(|(t, c, a)| (*t, c.as_str(), a.as_str())),
        limit.clamp(1, 1_000),
    )?)
}

/// Suppresses an address by hand: `(suppression, created)`.
pub fn suppress(
    store: &dyn Store,
    actor: &Actor,
    channel: &str,
    address: &str,
    detail: &str,
    now: Millis,
) -> Result<(Suppression, bool), ServiceError> {
    actor.require_editor()?;
    let channel = channel_of(channel)?;
    let address = suppression_address(channel, address);
    if address.is_empty() || address.len() > 320 {
        return Err(ServiceError::invalid(
            "invalid_suppression",
            "the address is 1 to 320 characters",
        ));
    }
    let s = Suppression {
        workspace_id: actor.workspace.clone(),
        channel: channel.as_str().to_string(),
        address: address.clone(),
        reason: "manual".into(),
        key: String::new(),
        detail: detail.chars().take(500).collect(),
        at: now,
    };
    let created = store.suppress(&s)?;
    let kept = store
        .suppression(&actor.workspace, channel.as_str(), &address)?
        .unwrap_or(s);
    Ok((kept, created))
}

/// Lifts a suppression (the mailbox exists again, the complaint was a mistake).
pub fn unsuppress(
    store: &dyn Store,
    actor: &Actor,
    channel: &str,
    address: &str,
) -> Result<(), ServiceError> {
    actor.require_editor()?;
    let channel = channel_of(channel)?;
    let address = suppression_address(channel, address);
    if store.unsuppress(&actor.workspace, channel.as_str(), &address)? {
        Ok(())
    } else {
        Err(ServiceError::NotFound(format!(
            "suppression of {} address {address}",
            channel.as_str()
        )))
    }
}

/// The messages journeys sent on a channel, newest first (ids below `before` when given):
/// each outbox row with the message as the customer received it (or, on the capture
/// channel, would have), its secret left out.
pub fn sent(
    store: &dyn Store,
    actor: &Actor,
    channel: MessageChannel,
    before: Option<i64>,
    limit: usize,
) -> Result<Vec<(parcours_store::OutboxRow, Option<Outgoing>)>, ServiceError> {
    // Messages name who they went to and say what she was told.
    actor.require_personal_data()?;
    let lane = parcours_engine::journeys::destination(channel);
    let rows = store.outbox_rows(&parcours_store::OutboxPage {
        workspace_id: &actor.workspace,
        destination: &lane,
        state: None,
        before_id: before,
        limit: limit.clamp(1, 500),
    })?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let m = serde_json::from_str::<Outgoing>(&r.payload)
                .ok()
                .map(|mut m| {
                    m.secret = None;
                    m
                });
            (r, m)
        })
        .collect())
}

/// One message of the actor's workspace by key, with its outbox row (its secret left out).
pub fn sent_one(
    store: &dyn Store,
    actor: &Actor,
    key: &str,
) -> Result<(parcours_store::OutboxRow, Outgoing), ServiceError> {
    actor.require_personal_data()?;
    let not_found = || ServiceError::NotFound(format!("message {key}"));
    let row = store
        .outbox_row_by_key(&actor.workspace, key)?
        .ok_or_else(not_found)?;
    let mut m = message(store, &actor.workspace, key)?;
    m.secret = None;
    Ok((row, m))
}

/// What became of a message after it left (delivered, opened, clicked, bounced …), each
/// once, with what the provider said.
pub fn receipts_of(
    store: &dyn Store,
    actor: &Actor,
    key: &str,
) -> Result<Vec<Receipt>, ServiceError> {
    Ok(store.receipts(&actor.workspace, key)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_read_strictly() {
        let ok = read_receipt(&json!({"key": "k1", "status": "bounced", "reason": "550 5.1.1"}))
            .unwrap();
        assert_eq!(ok.status, Status::HardBounce);
        assert_eq!(ok.reason, "550 5.1.1");
        assert_eq!(
            read_receipt(&json!({"key": "k1", "status": "bounced", "bounce": "soft"}))
                .unwrap()
                .status,
            Status::SoftBounce
        );
        let at =
            read_receipt(&json!({"key": "k", "status": "delivered", "at": "2026-11-29T10:00:00Z"}))
                .unwrap()
                .at;
        assert_eq!(at, parse_timestamp("2026-11-29T10:00:00Z"));
        for (bad, says) in [
            (json!([]), "object"),
            (json!({"status": "delivered"}), "`key`"),
            (json!({"key": "k"}), "`status` is required"),
            (json!({"key": "k", "status": "read"}), "not `read`"),
            (
                json!({"key": "k", "status": "bounced", "bounce": "medium"}),
                "`hard` or `soft`",
            ),
            (
                json!({"key": "k", "status": "delivered", "bounce": "hard"}),
                "goes with `bounced`",
            ),
            (
                json!({"key": "k", "status": "delivered", "at": 5}),
                "ISO 8601",
            ),
            (
                json!({"key": "k", "status": "delivered", "at": "yesterday"}),
                "ISO 8601",
            ),
            (
                json!({"key": "k", "status": "delivered", "extra": 1}),
                "`extra`",
            ),
            (json!({"key": "", "status": "delivered"}), "`key`"),
        ] {
            let e = read_receipt(&bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        assert_eq!(
            Status::Complained.event(MessageChannel::Email),
            "Email Marked as Spam"
        );
        assert_eq!(
            Status::Delivered.event(MessageChannel::Sms),
            "SMS Delivered"
        );
        assert_eq!(Status::SoftBounce.suppresses(), None);
        assert_eq!(Status::HardBounce.suppresses(), Some("hard_bounce"));
    }
}
