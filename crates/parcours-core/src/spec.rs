//! The Segment spec at the edge: envelopes, size limits, validation, clock-skew correction.
//!
//! Parsing borrows from the request body and keeps each event's raw JSON as it came, so the
//! hot path allocates little and stores exactly what the client sent.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::channel::{Channel, ChannelHints};
use crate::time::{parse_timestamp, Millis};

pub const MAX_EVENT_BYTES: usize = 32 * 1024;
pub const MAX_BATCH_BYTES: usize = 500 * 1024;
pub const MAX_BATCH_EVENTS: usize = 2_500;
pub const MAX_MESSAGE_ID_CHARS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Track,
    Identify,
    Page,
    Screen,
    Group,
    Alias,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Track => "track",
            EventType::Identify => "identify",
            EventType::Page => "page",
            EventType::Screen => "screen",
            EventType::Group => "group",
            EventType::Alias => "alias",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "track" => EventType::Track,
            "identify" => EventType::Identify,
            "page" => EventType::Page,
            "screen" => EventType::Screen,
            "group" => EventType::Group,
            "alias" => EventType::Alias,
            _ => return None,
        })
    }
}

/// Why a request was refused as a whole (nothing of it is stored).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("request body is {size} bytes, over the {limit} byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("event {index} of the batch is {size} bytes, over the {limit} byte limit per event")]
    EventTooLarge {
        index: usize,
        size: usize,
        limit: usize,
    },
    #[error("batch holds {count} events, over the limit of {limit}")]
    TooManyEvents { count: usize, limit: usize },
    #[error("`batch` must be an array of event objects")]
    NotABatch,
}

impl EnvelopeError {
    /// The stable error code of the API.
    pub fn code(&self) -> &'static str {
        match self {
            EnvelopeError::InvalidJson(_) => "invalid_json",
            EnvelopeError::TooLarge { .. } => "payload_too_large",
            EnvelopeError::EventTooLarge { .. } => "event_too_large",
            EnvelopeError::TooManyEvents { .. } => "batch_too_many_events",
            EnvelopeError::NotABatch => "invalid_batch",
        }
    }
}

/// A parsed request body: one or more raw events and the envelope around them.
#[derive(Debug)]
pub struct Envelope<'a> {
    pub items: Vec<&'a RawValue>,
    pub write_key: Option<Cow<'a, str>>,
    pub sent_at: Option<Cow<'a, str>>,
    pub context: Option<&'a RawValue>,
    pub integrations: Option<&'a RawValue>,
    /// For the single-event endpoints, the type the path names.
    pub path_type: Option<EventType>,
}

#[derive(Deserialize)]
struct BatchBody<'a> {
    #[serde(borrow)]
    batch: Option<Vec<&'a RawValue>>,
    #[serde(borrow, rename = "writeKey")]
    write_key: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "sentAt")]
    sent_at: Option<Cow<'a, str>>,
    #[serde(borrow)]
    context: Option<&'a RawValue>,
    #[serde(borrow)]
    integrations: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct WriteKeyOnly<'a> {
    #[serde(borrow, rename = "writeKey")]
    write_key: Option<Cow<'a, str>>,
}

/// Parses the body of `/v1/batch` (`path_type = None`) or of a single-event endpoint.
pub fn parse_envelope(
    body: &[u8],
    path_type: Option<EventType>,
) -> Result<Envelope<'_>, EnvelopeError> {
    let limit = if path_type.is_some() {
        MAX_EVENT_BYTES
    } else {
        MAX_BATCH_BYTES
    };
    if body.len() > limit {
        return Err(EnvelopeError::TooLarge {
            size: body.len(),
            limit,
        });
    }
    let invalid = |e: serde_json::Error| EnvelopeError::InvalidJson(e.to_string());
    if path_type.is_some() {
        let item: &RawValue = serde_json::from_slice(body).map_err(invalid)?;
        if !item.get().trim_start().starts_with('{') {
            return Err(EnvelopeError::InvalidJson(
                "an event must be a JSON object".into(),
            ));
        }
        let head: WriteKeyOnly<'_> = serde_json::from_str(item.get()).map_err(invalid)?;
        return Ok(Envelope {
            items: vec![item],
            write_key: head.write_key,
            sent_at: None,
            context: None,
            integrations: None,
            path_type,
        });
    }
    let parsed: BatchBody<'_> = serde_json::from_slice(body).map_err(invalid)?;
    let items = parsed.batch.ok_or(EnvelopeError::NotABatch)?;
    if items.len() > MAX_BATCH_EVENTS {
        return Err(EnvelopeError::TooManyEvents {
            count: items.len(),
            limit: MAX_BATCH_EVENTS,
        });
    }
    for (index, item) in items.iter().enumerate() {
        if item.get().len() > MAX_EVENT_BYTES {
            return Err(EnvelopeError::EventTooLarge {
                index,
                size: item.get().len(),
                limit: MAX_EVENT_BYTES,
            });
        }
        if !item.get().trim_start().starts_with('{') {
            return Err(EnvelopeError::NotABatch);
        }
    }
    Ok(Envelope {
        items,
        write_key: parsed.write_key,
        sent_at: parsed.sent_at,
        context: nonempty(parsed.context),
        integrations: nonempty(parsed.integrations),
        path_type: None,
    })
}

fn nonempty(r: Option<&RawValue>) -> Option<&RawValue> {
    r.filter(|r| r.get() != "null" && r.get() != "{}")
}

/// A spec violation: the event parsed but cannot be used as it is. It is quarantined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Violation {
    InvalidEvent,
    InvalidType,
    NoUserAnonId,
    MissingEventName,
    MissingPreviousId,
    MissingGroupId,
    MessageIdTooLong,
    InvalidTimestamp,
}

impl Violation {
    pub fn code(self) -> &'static str {
        match self {
            Violation::InvalidEvent => "invalid_event",
            Violation::InvalidType => "invalid_type",
            Violation::NoUserAnonId => "no_user_anon_id",
            Violation::MissingEventName => "missing_event_name",
            Violation::MissingPreviousId => "missing_previous_id",
            Violation::MissingGroupId => "missing_group_id",
            Violation::MessageIdTooLong => "message_id_too_long",
            Violation::InvalidTimestamp => "invalid_timestamp",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Violation::InvalidEvent => {
                "the event is not a JSON object with the fields of the Segment spec"
            }
            Violation::InvalidType => {
                "`type` is missing or is not one of track, identify, page, screen, group, alias"
            }
            Violation::NoUserAnonId => "the event has neither a `userId` nor an `anonymousId`",
            Violation::MissingEventName => "a track call needs a non-empty `event` name",
            Violation::MissingPreviousId => "an alias call needs a `previousId`",
            Violation::MissingGroupId => "a group call needs a non-empty `groupId`",
            Violation::MessageIdTooLong => "`messageId` is longer than 100 characters",
            Violation::InvalidTimestamp => "a timestamp field is not an ISO-8601 date",
        }
    }
}

/// The fields of an event that ingest needs; everything else stays in the raw JSON.
#[derive(Deserialize, Default)]
struct Head<'a> {
    #[serde(borrow, rename = "type")]
    kind: Option<Cow<'a, str>>,
    #[serde(rename = "messageId", default, deserialize_with = "de_id")]
    message_id: Option<String>,
    #[serde(rename = "userId", default, deserialize_with = "de_id")]
    user_id: Option<String>,
    #[serde(rename = "anonymousId", default, deserialize_with = "de_id")]
    anonymous_id: Option<String>,
    #[serde(rename = "previousId", default, deserialize_with = "de_id")]
    previous_id: Option<String>,
    #[serde(rename = "groupId", default, deserialize_with = "de_id")]
    group_id: Option<String>,
    #[serde(borrow)]
    event: Option<Cow<'a, str>>,
    #[serde(borrow)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "sentAt")]
    sent_at: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "originalTimestamp")]
    original_timestamp: Option<Cow<'a, str>>,
    #[serde(borrow)]
    context: Option<ContextHead<'a>>,
}

#[derive(Deserialize, Default)]
struct ContextHead<'a> {
    #[serde(borrow)]
    channel: Option<Cow<'a, str>>,
    #[serde(borrow)]
    library: Option<NameHead<'a>>,
    #[serde(borrow)]
    os: Option<NameHead<'a>>,
    #[serde(borrow)]
    device: Option<DeviceHead<'a>>,
    #[serde(borrow)]
    page: Option<&'a RawValue>,
    #[serde(borrow, rename = "userAgent")]
    user_agent: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
struct NameHead<'a> {
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
struct DeviceHead<'a> {
    #[serde(borrow, rename = "type")]
    kind: Option<Cow<'a, str>>,
}

/// Ids may arrive as strings or numbers; both are kept as strings. Empty strings are absent.
fn de_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct IdVisitor;
    impl<'de> Visitor<'de> for IdVisitor {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string or a number")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok((!v.trim().is_empty()).then(|| v.to_string()))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_any(self)
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Err(E::custom("an id must be a string or a number"))
        }
    }
    d.deserialize_option(IdVisitor)
}

/// An event that passed validation, ready for the event log.
#[derive(Debug, Clone, PartialEq)]
pub struct AcceptedEvent {
    pub message_id: String,
    pub kind: EventType,
    pub event: Option<String>,
    pub user_id: Option<String>,
    pub anonymous_id: Option<String>,
    pub timestamp: Millis,
    pub received_at: Millis,
    pub channel: Channel,
    /// The event's JSON as the client sent it (with the batch's context merged in, if any).
    pub body: String,
}

/// An event that parsed but violates the spec; it is kept, with its reason, for replay.
#[derive(Debug, Clone, PartialEq)]
pub struct QuarantinedEvent {
    pub violation: Violation,
    pub detail: Option<String>,
    pub message_id: Option<String>,
    pub received_at: Millis,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Checked {
    Accepted(AcceptedEvent),
    Quarantined(QuarantinedEvent),
}

/// What validation needs to know besides the event itself.
pub struct Edge<'a> {
    pub received_at: Millis,
    pub source_channel: Option<Channel>,
    pub batch_sent_at: Option<&'a str>,
    pub batch_context: Option<&'a RawValue>,
    pub batch_integrations: Option<&'a RawValue>,
    pub path_type: Option<EventType>,
}

/// Validates one raw event. `assign_id` makes a `messageId` for events that have none (the
/// HTTP API uses a random one; file import hashes the line so that re-imports deduplicate).
pub fn check_event(
    raw: &RawValue,
    edge: &Edge<'_>,
    assign_id: &mut dyn FnMut(&str) -> String,
) -> Checked {
    let merged;
    let body: &str = if edge.batch_context.is_some() || edge.batch_integrations.is_some() {
        match merge_envelope(raw.get(), edge.batch_context, edge.batch_integrations) {
            Some(m) => {
                merged = m;
                &merged
            }
            None => raw.get(),
        }
    } else {
        raw.get()
    };
    let quarantine = |violation: Violation, detail: Option<String>, message_id: Option<String>| {
        Checked::Quarantined(QuarantinedEvent {
            violation,
            detail,
            message_id,
            received_at: edge.received_at,
            body: body.to_string(),
        })
    };
    let head: Head<'_> = match serde_json::from_str(body) {
        Ok(h) => h,
        Err(e) => return quarantine(Violation::InvalidEvent, Some(e.to_string()), None),
    };
    let kind = match (edge.path_type, head.kind.as_deref()) {
        (Some(t), _) => t,
        (None, Some(k)) => match EventType::parse(k) {
            Some(t) => t,
            None => {
                return quarantine(
                    Violation::InvalidType,
                    Some(format!("type `{k}`")),
                    head.message_id,
                )
            }
        },
        (None, None) => return quarantine(Violation::InvalidType, None, head.message_id),
    };
    if head
        .message_id
        .as_ref()
        .is_some_and(|m| m.chars().count() > MAX_MESSAGE_ID_CHARS)
    {
        return quarantine(Violation::MessageIdTooLong, None, None);
    }
    if head.user_id.is_none() && head.anonymous_id.is_none() {
        return quarantine(Violation::NoUserAnonId, None, head.message_id);
    }
    let event = head
        .event
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty());
    match kind {
        EventType::Track if event.is_none() => {
            return quarantine(Violation::MissingEventName, None, head.message_id)
        }
        EventType::Alias if head.previous_id.is_none() => {
            return quarantine(Violation::MissingPreviousId, None, head.message_id)
        }
        EventType::Group if head.group_id.is_none() => {
            return quarantine(Violation::MissingGroupId, None, head.message_id)
        }
        _ => {}
    }
    let parse = |s: &Option<Cow<'_, str>>| -> Result<Option<Millis>, String> {
        match s.as_deref() {
            None => Ok(None),
            Some(t) => parse_timestamp(t).map(Some).ok_or_else(|| format!("`{t}`")),
        }
    };
    let batch_sent_at = edge.batch_sent_at.map(Cow::Borrowed);
    let times = (|| -> Result<_, String> {
        Ok((
            parse(&head.timestamp)?,
            parse(&head.original_timestamp)?,
            parse(&head.sent_at)?.or(parse(&batch_sent_at)?),
        ))
    })();
    let (timestamp, original, sent_at) = match times {
        Ok(t) => t,
        Err(detail) => {
            return quarantine(Violation::InvalidTimestamp, Some(detail), head.message_id)
        }
    };
    let timestamp = corrected_timestamp(edge.received_at, timestamp, original, sent_at);
    let ctx = head.context.unwrap_or_default();
    let hints = ChannelHints {
        explicit: ctx.channel.as_deref(),
        library: ctx.library.as_ref().and_then(|l| l.name.as_deref()),
        os: ctx.os.as_ref().and_then(|o| o.name.as_deref()),
        device_type: ctx.device.as_ref().and_then(|d| d.kind.as_deref()),
        has_page: ctx.page.is_some(),
        has_user_agent: ctx.user_agent.is_some(),
    };
    let channel = Channel::derive(edge.source_channel, &hints);
    let message_id = head.message_id.unwrap_or_else(|| assign_id(body));
    Checked::Accepted(AcceptedEvent {
        message_id,
        kind,
        event: event.map(str::to_string),
        user_id: head.user_id,
        anonymous_id: head.anonymous_id,
        timestamp,
        received_at: edge.received_at,
        channel,
        body: body.to_string(),
    })
}

/// A stable fingerprint of an event body (SHA-256, hex), used to keep one copy of an invalid
/// event that is sent or imported again.
pub fn fingerprint(body: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(body.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `timestamp = receivedAt − (sentAt − originalTimestamp)`, unless the client set `timestamp`.
pub fn corrected_timestamp(
    received_at: Millis,
    timestamp: Option<Millis>,
    original: Option<Millis>,
    sent_at: Option<Millis>,
) -> Millis {
    match (timestamp, original, sent_at) {
        (Some(t), _, _) => t,
        (None, Some(o), Some(s)) => received_at - (s - o),
        (None, Some(o), None) => o,
        (None, None, _) => received_at,
    }
}

/// Merges the batch's top-level `context` and `integrations` into an event; the event's own
/// keys win. Returns `None` when the event is not an object (validation reports it).
fn merge_envelope(
    item: &str,
    context: Option<&RawValue>,
    integrations: Option<&RawValue>,
) -> Option<String> {
    let mut event: Map<String, Value> = serde_json::from_str(item).ok()?;
    for (field, outer) in [("context", context), ("integrations", integrations)] {
        let Some(outer) =
            outer.and_then(|o| serde_json::from_str::<Map<String, Value>>(o.get()).ok())
        else {
            continue;
        };
        let mut merged = outer;
        if let Some(Value::Object(own)) = event.remove(field) {
            merged.extend(own);
        }
        event.insert(field.to_string(), Value::Object(merged));
    }
    serde_json::to_string(&event).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: Millis = 1_700_000_000_000;

    fn edge(path_type: Option<EventType>) -> Edge<'static> {
        Edge {
            received_at: NOW,
            source_channel: None,
            batch_sent_at: None,
            batch_context: None,
            batch_integrations: None,
            path_type,
        }
    }

    fn check(v: Value, path_type: Option<EventType>) -> Checked {
        let s = v.to_string();
        let raw: &RawValue = serde_json::from_str(&s).unwrap();
        check_event(raw, &edge(path_type), &mut |_| "assigned".into())
    }

    fn violation(c: Checked) -> Violation {
        match c {
            Checked::Quarantined(q) => q.violation,
            Checked::Accepted(a) => panic!("accepted {a:?}"),
        }
    }

    #[test]
    fn spec_violations_have_stable_reasons() {
        assert_eq!(
            violation(check(json!({"type":"track","event":"X"}), None)),
            Violation::NoUserAnonId
        );
        assert_eq!(
            violation(check(json!({"type":"track","userId":"u"}), None)),
            Violation::MissingEventName
        );
        assert_eq!(
            violation(check(
                json!({"type":"track","userId":"u","event":"  "}),
                None
            )),
            Violation::MissingEventName
        );
        assert_eq!(
            violation(check(json!({"type":"alias","userId":"u"}), None)),
            Violation::MissingPreviousId
        );
        assert_eq!(
            violation(check(json!({"type":"group","userId":"u"}), None)),
            Violation::MissingGroupId
        );
        assert_eq!(
            violation(check(json!({"type":"jump","userId":"u"}), None)),
            Violation::InvalidType
        );
        assert_eq!(
            violation(check(json!({"userId":"u"}), None)),
            Violation::InvalidType
        );
        assert_eq!(
            violation(check(
                json!({"type":"page","userId":"u","timestamp":"soon"}),
                None
            )),
            Violation::InvalidTimestamp
        );
        assert_eq!(
            violation(check(json!({"type":"page","userId":true}), None)),
            Violation::InvalidEvent
        );
        let long = "m".repeat(101);
        assert_eq!(
            violation(check(
                json!({"type":"page","userId":"u","messageId":long}),
                None
            )),
            Violation::MessageIdTooLong
        );
    }

    #[test]
    fn path_type_applies_to_single_event_endpoints() {
        let Checked::Accepted(a) = check(
            json!({"userId":"u","traits":{"email":"a@b.c"}}),
            Some(EventType::Identify),
        ) else {
            panic!()
        };
        assert_eq!(a.kind, EventType::Identify);
        assert_eq!(a.message_id, "assigned");
        assert_eq!(a.timestamp, NOW);
    }

    #[test]
    fn numeric_ids_are_kept_as_strings() {
        let Checked::Accepted(a) = check(json!({"type":"track","event":"E","userId":42}), None)
        else {
            panic!()
        };
        assert_eq!(a.user_id.as_deref(), Some("42"));
    }

    #[test]
    fn clock_skew_is_corrected_unless_timestamp_is_set() {
        // The device clock is 10 minutes ahead: it says sent at 12:10, event at 12:05.
        let e = json!({"type":"track","event":"E","anonymousId":"a",
            "originalTimestamp":"2023-11-14T12:05:00Z","sentAt":"2023-11-14T12:10:00Z"});
        let Checked::Accepted(a) = check(e, None) else {
            panic!()
        };
        assert_eq!(a.timestamp, NOW - 5 * 60 * 1000);
        let e = json!({"type":"track","event":"E","anonymousId":"a","timestamp":"2023-11-14T12:05:00Z",
            "originalTimestamp":"2023-11-14T12:05:00Z","sentAt":"2023-11-14T12:10:00Z"});
        let Checked::Accepted(a) = check(e, None) else {
            panic!()
        };
        assert_eq!(
            a.timestamp,
            parse_timestamp("2023-11-14T12:05:00Z").unwrap()
        );
    }

    #[test]
    fn batch_sent_at_and_context_apply_to_items() {
        let body = json!({
            "batch": [{"type":"track","event":"E","anonymousId":"a","messageId":"m1","originalTimestamp":"2023-11-14T12:00:00Z",
                        "context":{"library":{"name":"analytics-python"}}}],
            "sentAt": "2023-11-14T12:01:00Z",
            "context": {"channel": "store", "ip": "1.2.3.4"}
        })
        .to_string();
        let env = parse_envelope(body.as_bytes(), None).unwrap();
        let edge = Edge {
            received_at: NOW,
            source_channel: None,
            batch_sent_at: env.sent_at.as_deref(),
            batch_context: env.context,
            batch_integrations: env.integrations,
            path_type: None,
        };
        let Checked::Accepted(a) = check_event(env.items[0], &edge, &mut |_| unreachable!()) else {
            panic!()
        };
        assert_eq!(a.timestamp, NOW - 60_000);
        assert_eq!(a.channel, Channel::Store);
        let stored: Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(stored["context"]["ip"], "1.2.3.4");
        assert_eq!(stored["context"]["library"]["name"], "analytics-python");
    }

    #[test]
    fn envelope_limits() {
        let big = format!(
            "{{\"userId\":\"u\",\"event\":\"{}\"}}",
            "x".repeat(MAX_EVENT_BYTES)
        );
        assert_eq!(
            parse_envelope(big.as_bytes(), Some(EventType::Track))
                .unwrap_err()
                .code(),
            "payload_too_large"
        );
        let item = json!({"type":"track","event":"E","userId":"u"});
        let many = json!({"batch": vec![item.clone(); MAX_BATCH_EVENTS + 1]}).to_string();
        assert_eq!(
            parse_envelope(many.as_bytes(), None).unwrap_err().code(),
            "batch_too_many_events"
        );
        let fat = json!({"batch": [item, {"type":"track","event":"x".repeat(MAX_EVENT_BYTES),"userId":"u"}]}).to_string();
        assert_eq!(
            parse_envelope(fat.as_bytes(), None).unwrap_err(),
            EnvelopeError::EventTooLarge {
                index: 1,
                size: MAX_EVENT_BYTES + 40,
                limit: MAX_EVENT_BYTES
            }
        );
        assert_eq!(
            parse_envelope(b"{nope", None).unwrap_err().code(),
            "invalid_json"
        );
        assert_eq!(
            parse_envelope(b"{\"batch\": 3}", None).unwrap_err().code(),
            "invalid_json"
        );
        assert_eq!(
            parse_envelope(b"{}", None).unwrap_err().code(),
            "invalid_batch"
        );
        let huge = vec![b' '; MAX_BATCH_BYTES + 1];
        assert_eq!(
            parse_envelope(&huge, None).unwrap_err().code(),
            "payload_too_large"
        );
    }
}
