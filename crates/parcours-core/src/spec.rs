//! The Segment spec at the edge: envelopes, size limits, validation, clock-skew correction.
//!
//! Parsing borrows from the request body and keeps each event's raw JSON as it came, so the
//! hot path allocates little and stores exactly what the client sent.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::channel::{Channel, ChannelHints};
use crate::limits::{self, JsonProblem, Size};
use crate::time::{parse_timestamp, Millis};

pub const MAX_EVENT_BYTES: usize = 32 * 1024;
pub const MAX_BATCH_BYTES: usize = 500 * 1024;
pub const MAX_BATCH_EVENTS: usize = 2_500;
pub const MAX_MESSAGE_ID_CHARS: usize = 100;
/// `userId`, `anonymousId`, `previousId` and `groupId` (Segment drops a `groupId` over 500).
pub const MAX_ID_CHARS: usize = 500;
/// The earliest event time Parcours stores: 1970-01-01T00:00:00Z.
pub const MIN_TIMESTAMP: Millis = 0;
/// The latest event time Parcours stores: 9999-12-31T23:59:59.999Z (the last instant an
/// ISO-8601 date with a four-digit year can write, so every stored time exports and imports).
pub const MAX_TIMESTAMP: Millis = 253_402_300_799_999;

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
    #[error("request body is {}, over the limit of {}", Size(*.size), Size(*.limit))]
    TooLarge { size: usize, limit: usize },
    #[error("event {index} of the batch is {}, over the limit of {} per event", Size(*.size), Size(*.limit))]
    EventTooLarge {
        index: usize,
        size: usize,
        limit: usize,
    },
    #[error("batch holds {count} events, over the limit of {limit}")]
    TooManyEvents { count: usize, limit: usize },
    #[error("`batch` must be an array of event objects")]
    NotABatch,
    #[error("the batch's `context` and `integrations` are {}, over the limit of {} (they are merged into every event)", Size(*.size), Size(*.limit))]
    ContextTooLarge { size: usize, limit: usize },
    #[error("with the batch's `context` merged into every event, the batch is over the limit of {}", Size(*.limit))]
    MergedTooLarge { limit: usize },
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
            EnvelopeError::ContextTooLarge { .. } => "context_too_large",
            EnvelopeError::MergedTooLarge { .. } => "payload_too_large",
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

/// The `writeKey` a body carries, read without validating the rest of it (the key is checked
/// before the body is). `None` when there is none or the body is not a JSON object.
pub fn body_write_key(body: &[u8]) -> Option<String> {
    let head: WriteKeyOnly<'_> = serde_json::from_slice(body).ok()?;
    head.write_key
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
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
    let context = nonempty(parsed.context);
    let integrations = nonempty(parsed.integrations);
    let shared = context.map_or(0, |c| c.get().len()) + integrations.map_or(0, |i| i.get().len());
    if shared > MAX_EVENT_BYTES {
        return Err(EnvelopeError::ContextTooLarge {
            size: shared,
            limit: MAX_EVENT_BYTES,
        });
    }
    Ok(Envelope {
        items,
        write_key: parsed.write_key,
        sent_at: parsed.sent_at,
        context,
        integrations,
        path_type: None,
    })
}

/// The most a batch may weigh once its `context` and `integrations` are merged into each
/// event (so that a small request cannot become a huge one).
pub const MAX_MERGED_BATCH_BYTES: usize = 16 * 1024 * 1024;

/// Validates every event of an envelope, in order. Fails when the batch, with its context
/// merged into each event, outgrows [`MAX_MERGED_BATCH_BYTES`] (it stops at that point).
pub fn check_envelope(
    envelope: &Envelope<'_>,
    edge: &Edge<'_>,
    assign_id: &mut dyn FnMut(&str) -> String,
) -> Result<Vec<Checked>, EnvelopeError> {
    let mut total = 0usize;
    let mut out = Vec::with_capacity(envelope.items.len());
    for item in &envelope.items {
        let checked = check_event(item, edge, assign_id);
        total += match &checked {
            Checked::Accepted(a) => a.body.len(),
            Checked::Quarantined(q) => q.body.len(),
        };
        if total > MAX_MERGED_BATCH_BYTES {
            return Err(EnvelopeError::MergedTooLarge {
                limit: MAX_MERGED_BATCH_BYTES,
            });
        }
        out.push(checked);
    }
    Ok(out)
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
    IdTooLong,
    EventTooLarge,
    InvalidTimestamp,
    TimestampOutOfRange,
    TooDeep,
    TooManyKeys,
    NumberOutOfRange,
    InvalidString,
    /// Stored before ingest checked the limits above, and unreadable by the processors: set
    /// aside by the processor that met it (the event stays in the log, skipped).
    UnreadableEvent,
    /// A processor could not apply it (the store refused what it derived from it).
    UnprocessableEvent,
    /// It breaks its source's tracking plan, whose violations are set to quarantine.
    TrackingPlan,
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
            Violation::IdTooLong => "id_too_long",
            Violation::EventTooLarge => "event_too_large",
            Violation::InvalidTimestamp => "invalid_timestamp",
            Violation::TimestampOutOfRange => "timestamp_out_of_range",
            Violation::TooDeep => "too_deep",
            Violation::TooManyKeys => "too_many_keys",
            Violation::NumberOutOfRange => "number_out_of_range",
            Violation::InvalidString => "invalid_string",
            Violation::UnreadableEvent => "unreadable_event",
            Violation::UnprocessableEvent => "unprocessable_event",
            Violation::TrackingPlan => "tracking_plan_violation",
        }
    }

    /// The violation of a document that breaks one of the JSON [`limits`].
    pub fn of_json(problem: &JsonProblem) -> Violation {
        match problem {
            JsonProblem::Syntax(_) => Violation::InvalidEvent,
            JsonProblem::TooDeep => Violation::TooDeep,
            JsonProblem::TooManyKeys => Violation::TooManyKeys,
            JsonProblem::NumberOutOfRange => Violation::NumberOutOfRange,
            JsonProblem::InvalidString => Violation::InvalidString,
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
            Violation::IdTooLong => {
                "`userId`, `anonymousId`, `previousId` or `groupId` is longer than 500 characters"
            }
            Violation::EventTooLarge => {
                "the event, with the batch's `context` and `integrations` merged in, is over 32 KB"
            }
            Violation::InvalidTimestamp => "a timestamp field is not an ISO-8601 date",
            Violation::TimestampOutOfRange => {
                "the event time, after clock-skew correction, is outside 1970-01-01 to 9999-12-31"
            }
            Violation::TooDeep => "objects and arrays are nested deeper than 64 levels",
            Violation::TooManyKeys => "an object has more than 1000 keys",
            Violation::NumberOutOfRange => {
                "a number is beyond the range of a 64-bit float (about ±1.8e308)"
            }
            Violation::InvalidString => {
                "a string holds a lone UTF-16 surrogate (such as \\ud800) or a NUL character"
            }
            Violation::UnreadableEvent => {
                "the stored event could not be read; it was set aside and skipped"
            }
            Violation::UnprocessableEvent => {
                "the event could not be applied; it was set aside and skipped"
            }
            Violation::TrackingPlan => {
                "the event breaks its source's tracking plan (the detail lists how)"
            }
        }
    }
}

/// The fields of an event that ingest needs; everything else stays in the raw JSON.
#[derive(Deserialize, Default)]
struct Head<'a> {
    #[serde(borrow, rename = "type")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "messageId")]
    message_id: Option<&'a RawValue>,
    #[serde(borrow, rename = "userId")]
    user_id: Option<&'a RawValue>,
    #[serde(borrow, rename = "anonymousId")]
    anonymous_id: Option<&'a RawValue>,
    #[serde(borrow, rename = "previousId")]
    previous_id: Option<&'a RawValue>,
    #[serde(borrow, rename = "groupId")]
    group_id: Option<&'a RawValue>,
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

/// An id as the event gave it: a string (empty means absent) or a number, kept as its exact
/// literal (`100000000000000000000001` stays that, where a float would round it).
fn id_text(raw: Option<&RawValue>, field: &str) -> Result<Option<String>, String> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'"') => {
            let s: String = serde_json::from_str(text).map_err(|e| format!("`{field}`: {e}"))?;
            Ok((!s.trim().is_empty()).then_some(s))
        }
        Some(b'-' | b'0'..=b'9') => Ok(Some(text.to_string())),
        _ if text == "null" => Ok(None),
        _ => Err(format!("`{field}` must be a string or a number")),
    }
}

/// The ids of an event, read from its head.
struct Ids {
    message_id: Option<String>,
    user_id: Option<String>,
    anonymous_id: Option<String>,
    previous_id: Option<String>,
    group_id: Option<String>,
}

impl Ids {
    fn of(head: &Head<'_>) -> Result<Ids, String> {
        Ok(Ids {
            message_id: id_text(head.message_id, "messageId")?,
            user_id: id_text(head.user_id, "userId")?,
            anonymous_id: id_text(head.anonymous_id, "anonymousId")?,
            previous_id: id_text(head.previous_id, "previousId")?,
            group_id: id_text(head.group_id, "groupId")?,
        })
    }

    /// Whether an id is longer than [`MAX_ID_CHARS`].
    fn too_long(&self) -> bool {
        [
            &self.user_id,
            &self.anonymous_id,
            &self.previous_id,
            &self.group_id,
        ]
        .iter()
        .any(|id| {
            id.as_ref()
                .is_some_and(|i| i.chars().count() > MAX_ID_CHARS)
        })
    }
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
    /// The type the endpoint named (`/v1/track` …): a replay reads the body as that type.
    pub path_type: Option<EventType>,
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

impl Edge<'static> {
    /// An event on its own, with no batch around it (a file import, a quarantine replay).
    pub fn single(
        received_at: Millis,
        source_channel: Option<Channel>,
        path_type: Option<EventType>,
    ) -> Self {
        Edge {
            received_at,
            source_channel,
            batch_sent_at: None,
            batch_context: None,
            batch_integrations: None,
            path_type,
        }
    }
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
            path_type: edge.path_type,
        })
    };
    // The batch's context merged in can make an event larger than any sent alone.
    if body.len() > MAX_EVENT_BYTES {
        let detail = format!("{} bytes with the batch's context merged in", body.len());
        return quarantine(Violation::EventTooLarge, Some(detail), None);
    }
    if let Err(problem) = limits::check_text(body) {
        let detail = match &problem {
            JsonProblem::Syntax(e) => Some(e.clone()),
            _ => None,
        };
        return quarantine(Violation::of_json(&problem), detail, None);
    }
    let head: Head<'_> = match serde_json::from_str(body) {
        Ok(h) => h,
        Err(e) => return quarantine(Violation::InvalidEvent, Some(e.to_string()), None),
    };
    let ids = match Ids::of(&head) {
        Ok(ids) => ids,
        Err(e) => return quarantine(Violation::InvalidEvent, Some(e), None),
    };
    let kind = match (edge.path_type, head.kind.as_deref()) {
        (Some(t), _) => t,
        (None, Some(k)) => match EventType::parse(k) {
            Some(t) => t,
            None => {
                return quarantine(
                    Violation::InvalidType,
                    Some(format!("type `{k}`")),
                    ids.message_id,
                )
            }
        },
        (None, None) => return quarantine(Violation::InvalidType, None, ids.message_id),
    };
    if ids
        .message_id
        .as_ref()
        .is_some_and(|m| m.chars().count() > MAX_MESSAGE_ID_CHARS)
    {
        return quarantine(Violation::MessageIdTooLong, None, None);
    }
    if ids.user_id.is_none() && ids.anonymous_id.is_none() {
        return quarantine(Violation::NoUserAnonId, None, ids.message_id);
    }
    if ids.too_long() {
        return quarantine(Violation::IdTooLong, None, ids.message_id);
    }
    let event = head
        .event
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty());
    match kind {
        EventType::Track if event.is_none() => {
            return quarantine(Violation::MissingEventName, None, ids.message_id)
        }
        EventType::Alias if ids.previous_id.is_none() => {
            return quarantine(Violation::MissingPreviousId, None, ids.message_id)
        }
        EventType::Group if ids.group_id.is_none() => {
            return quarantine(Violation::MissingGroupId, None, ids.message_id)
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
            return quarantine(Violation::InvalidTimestamp, Some(detail), ids.message_id)
        }
    };
    let timestamp = corrected_timestamp(edge.received_at, timestamp, original, sent_at);
    if !(MIN_TIMESTAMP..=MAX_TIMESTAMP).contains(&timestamp) {
        let shown = |field: &Option<Cow<'_, str>>| field.as_deref().unwrap_or("none").to_string();
        let detail = format!(
            "{timestamp} ms since 1970-01-01 (timestamp {}, originalTimestamp {}, sentAt {})",
            shown(&head.timestamp),
            shown(&head.original_timestamp),
            shown(&head.sent_at.clone().or(batch_sent_at)),
        );
        return quarantine(Violation::TimestampOutOfRange, Some(detail), ids.message_id);
    }
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
    let message_id = ids.message_id.unwrap_or_else(|| assign_id(body));
    Checked::Accepted(AcceptedEvent {
        message_id,
        kind,
        event: event.map(str::to_string),
        user_id: ids.user_id,
        anonymous_id: ids.anonymous_id,
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

/// `timestamp = receivedAt − (sentAt − originalTimestamp)`, unless the client set `timestamp`
/// (saturating: a time outside [`MIN_TIMESTAMP`]..=[`MAX_TIMESTAMP`] is refused anyway).
pub fn corrected_timestamp(
    received_at: Millis,
    timestamp: Option<Millis>,
    original: Option<Millis>,
    sent_at: Option<Millis>,
) -> Millis {
    match (timestamp, original, sent_at) {
        (Some(t), _, _) => t,
        (None, Some(o), Some(s)) => received_at.saturating_sub(s.saturating_sub(o)),
        (None, Some(o), None) => o,
        (None, None, _) => received_at,
    }
}

/// Merges the batch's top-level `context` and `integrations` into an event; the event's own
/// keys win. Values are moved as written (a number is not read into a float and written
/// back: an id of 23 digits keeps them). Returns `None` when the event is not an object
/// (validation reports it).
fn merge_envelope(
    item: &str,
    context: Option<&RawValue>,
    integrations: Option<&RawValue>,
) -> Option<String> {
    type Fields = std::collections::BTreeMap<String, Box<RawValue>>;
    let object = |raw: &RawValue| serde_json::from_str::<Fields>(raw.get()).ok();
    let mut event: Fields = serde_json::from_str(item).ok()?;
    for (field, outer) in [("context", context), ("integrations", integrations)] {
        let Some(mut merged) = outer.and_then(object) else {
            continue;
        };
        if let Some(own) = event.remove(field).as_deref().and_then(object) {
            merged.extend(own);
        }
        event.insert(
            field.to_string(),
            serde_json::value::to_raw_value(&merged).ok()?,
        );
    }
    serde_json::to_string(&event).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const NOW: Millis = 1_700_000_000_000;

    fn edge(path_type: Option<EventType>) -> Edge<'static> {
        Edge::single(NOW, None, path_type)
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

    fn check_text(text: &str) -> Checked {
        let raw: &RawValue = serde_json::from_str(text).unwrap();
        check_event(raw, &edge(None), &mut |_| "assigned".into())
    }

    #[test]
    fn what_no_reader_could_read_is_quarantined_with_its_reason() {
        let deep = format!(
            r#"{{"type":"track","userId":"x","event":"E","properties":{{"a":{}1{}}}}}"#,
            "[".repeat(126),
            "]".repeat(126)
        );
        for (text, expected) in [
            (
                r#"{"type":"track","userId":"x","event":"E","properties":{"n":1e400}}"#,
                Violation::NumberOutOfRange,
            ),
            (
                r#"{"type":"identify","userId":"x","traits":{"name":"\ud800"}}"#,
                Violation::InvalidString,
            ),
            (
                r#"{"type":"track","userId":"x","event":"E","properties":{"\udc00":1}}"#,
                Violation::InvalidString,
            ),
            (
                r#"{"type":"track","userId":"x\u0000","event":"E"}"#,
                Violation::InvalidString,
            ),
            (deep.as_str(), Violation::TooDeep),
        ] {
            let Checked::Quarantined(q) = check_text(text) else {
                panic!("accepted {text}")
            };
            assert_eq!(q.violation, expected, "{text}");
            assert_eq!(q.body, text);
        }
    }

    #[test]
    fn numeric_ids_keep_their_exact_literal() {
        let literals = [
            "100000000000000000000001",
            "100000000000000000000002",
            "-7",
            "1.50",
        ];
        for n in literals {
            let text = format!(r#"{{"type":"track","event":"E","userId":{n},"messageId":{n}}}"#);
            let Checked::Accepted(a) = check_text(&text) else {
                panic!("{text}")
            };
            assert_eq!(a.user_id.as_deref(), Some(n));
            assert_eq!(a.message_id, n);
        }
        let Checked::Quarantined(q) =
            check_text(r#"{"type":"track","event":"E","userId":{"id":1}}"#)
        else {
            panic!()
        };
        assert_eq!(q.violation, Violation::InvalidEvent);
    }

    #[test]
    fn ids_over_500_characters_are_quarantined() {
        let long = "u".repeat(MAX_ID_CHARS + 1);
        assert_eq!(
            violation(check(
                json!({"type":"track","event":"E","userId":long}),
                None
            )),
            Violation::IdTooLong
        );
        let fine = "u".repeat(MAX_ID_CHARS);
        assert!(matches!(
            check(json!({"type":"group","userId":fine,"groupId":fine}), None),
            Checked::Accepted(_)
        ));
    }

    #[test]
    fn event_times_outside_years_1970_to_9999_are_quarantined() {
        // A device clock at the end of time: the correction lands thousands of years back.
        let skewed = json!({"type":"track","event":"E","userId":"u",
            "originalTimestamp":"2026-01-01T00:00:00Z","sentAt":"9999-12-31T00:00:00Z"});
        let Checked::Quarantined(q) = check(skewed, None) else {
            panic!()
        };
        assert_eq!(q.violation, Violation::TimestampOutOfRange);
        assert!(q.detail.unwrap().contains("sentAt 9999-12-31"));
        let before =
            json!({"type":"track","event":"E","userId":"u","timestamp":"1969-12-31T23:59:59Z"});
        assert_eq!(
            violation(check(before, None)),
            Violation::TimestampOutOfRange
        );
        for (sent, stored) in [
            ("1970-01-01T00:00:00Z", "1970-01-01T00:00:00.000Z"),
            ("9999-12-31T23:59:59.999Z", "9999-12-31T23:59:59.999Z"),
        ] {
            let e = json!({"type":"track","event":"E","userId":"u","timestamp":sent});
            let Checked::Accepted(a) = check(e, None) else {
                panic!("{sent}")
            };
            assert_eq!(crate::time::format_timestamp(a.timestamp), stored);
        }
    }

    #[test]
    fn quarantined_events_of_typed_endpoints_keep_the_type() {
        let Checked::Quarantined(q) = check(json!({"event":"E"}), Some(EventType::Track)) else {
            panic!()
        };
        assert_eq!(q.violation, Violation::NoUserAnonId);
        assert_eq!(q.path_type, Some(EventType::Track));
    }

    /// Found in review: merging the batch's context read the event into floats and wrote it
    /// back, so a 23-digit id lost its last digits.
    #[test]
    fn a_batch_context_keeps_every_value_as_written() {
        let body = r#"{"batch":[{"type":"track","event":"E","userId":100000000000000000000001,
            "messageId":100000000000000000000001,"properties":{"price":1.50},"context":{"ip":"own"}}],
            "context":{"channel":"store","ip":"batch","n":100000000000000000000003}}"#;
        let env = parse_envelope(body.as_bytes(), None).unwrap();
        let edge = Edge {
            batch_context: env.context,
            ..edge(None)
        };
        let Checked::Accepted(a) = check_event(env.items[0], &edge, &mut |_| unreachable!()) else {
            panic!()
        };
        assert_eq!(a.user_id.as_deref(), Some("100000000000000000000001"));
        assert_eq!(a.message_id, "100000000000000000000001");
        assert_eq!(a.channel, Channel::Store);
        assert!(a.body.contains(r#""price":1.50"#), "{}", a.body);
        assert!(
            a.body.contains(r#""n":100000000000000000000003"#),
            "{}",
            a.body
        );
        assert!(
            a.body.contains(r#""ip":"own""#),
            "the event's own keys win: {}",
            a.body
        );
    }

    /// Found in review: a large batch context, merged into every event, made a 500 KB request
    /// gigabytes.
    #[test]
    fn a_batch_context_cannot_make_a_request_huge() {
        let item = json!({"type":"track","event":"E","userId":"u"});
        let fat = json!({"batch": [item.clone()], "context": {"pad": "x".repeat(MAX_EVENT_BYTES)}});
        assert_eq!(
            parse_envelope(fat.to_string().as_bytes(), None)
                .unwrap_err()
                .code(),
            "context_too_large"
        );
        // Within the context limit, but the event and the context together are over 32 KB.
        let big_event =
            json!({"type":"track","event":"E","userId":"u","properties":{"p":"y".repeat(20_000)}});
        let body =
            json!({"batch": [big_event], "context": {"pad": "x".repeat(20_000)}}).to_string();
        let env = parse_envelope(body.as_bytes(), None).unwrap();
        let merged = Edge {
            batch_context: env.context,
            ..edge(None)
        };
        let checked = check_envelope(&env, &merged, &mut |_| "m".into()).unwrap();
        let Checked::Quarantined(q) = &checked[0] else {
            panic!()
        };
        assert_eq!(q.violation, Violation::EventTooLarge);
        // 2,500 events under a 30 KB context: stopped once the merged batch passes the cap.
        let many = vec![item; MAX_BATCH_EVENTS];
        let body = json!({"batch": many, "context": {"pad": "x".repeat(30_000)}}).to_string();
        assert!(body.len() < MAX_BATCH_BYTES);
        let env = parse_envelope(body.as_bytes(), None).unwrap();
        let merged = Edge {
            batch_context: env.context,
            ..edge(None)
        };
        assert_eq!(
            check_envelope(&env, &merged, &mut |_| "m".into()).unwrap_err(),
            EnvelopeError::MergedTooLarge {
                limit: MAX_MERGED_BATCH_BYTES
            }
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
