use std::collections::BTreeMap;

use parcours_core::channel::Channel;
use parcours_core::identifier::Identifier;
use parcours_core::observation::EventMeta;
use parcours_core::rules::IdentityRulesConfig;
use parcours_core::spec::{AcceptedEvent, EventType, QuarantinedEvent};
use parcours_core::time::{format_timestamp, EventKey, Millis};
use parcours_core::MergeRecord;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workspace {
    pub id: String,
    pub name: String,
    #[serde(serialize_with = "parcours_core::time::serialize_iso")]
    pub created_at: Millis,
    pub identity_rules: IdentityRulesConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    pub id: String,
    pub workspace_id: String,
    pub name: String,
    /// The channel of this source's events unless they say otherwise (e.g. `store` for POS).
    pub channel: Option<Channel>,
    #[serde(serialize_with = "parcours_core::time::serialize_iso")]
    pub created_at: Millis,
    /// The web origins (`https://shop.example`, `https://*.example.com`) whose pages may send
    /// with this source's write key from a browser; empty: any origin (a write key is public
    /// in a page anyway). Requests without an `Origin` (servers, apps) are not concerned.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Set on a webhook source: how its calls become events and are authenticated.
    #[serde(default)]
    pub webhook: Option<parcours_core::webhook::WebhookSource>,
    /// Set when the source checks its events against a tracking plan.
    #[serde(default)]
    pub tracking_plan: Option<parcours_core::plan::TrackingPlan>,
}

impl Source {
    /// Whether a page of `origin` may send with this source's key.
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.allowed_origins.is_empty()
            || self
                .allowed_origins
                .iter()
                .any(|allowed| origin_matches(allowed, origin))
    }
}

/// `https://*.example.com` matches the subdomains of example.com over https, not example.com
/// itself; anything else matches itself only (case-insensitively, a trailing `/` ignored).
pub fn origin_matches(allowed: &str, origin: &str) -> bool {
    let allowed = allowed.trim().trim_end_matches('/').to_ascii_lowercase();
    let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    if allowed == "*" {
        return true;
    }
    match allowed.split_once("://*.") {
        Some((scheme, domain)) => origin
            .strip_prefix(scheme)
            .and_then(|rest| rest.strip_prefix("://"))
            .is_some_and(|host| {
                host.strip_suffix(domain)
                    .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.'))
            }),
        None => allowed == origin,
    }
}

/// One line of a tracking plan's violations report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanViolationCount {
    pub source_id: String,
    /// The track event's name, or `identify`.
    pub event: String,
    pub field: String,
    pub kind: String,
    pub count: u64,
    #[serde(serialize_with = "parcours_core::time::serialize_iso")]
    pub first_seen: Millis,
    #[serde(serialize_with = "parcours_core::time::serialize_iso")]
    pub last_seen: Millis,
    /// The description of the last one.
    pub example: String,
}

/// A write key's grant: the source it sends to, until when.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyGrant {
    pub source: Source,
    /// Set once the key was rotated or revoked: it stops working then.
    pub expires_at: Option<Millis>,
}

/// A write key as listed (only its hash is stored: it is shown by a fingerprint).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WriteKey {
    /// The first 12 hex digits of the key's SHA-256.
    pub fingerprint: String,
    #[serde(serialize_with = "parcours_core::time::serialize_iso")]
    pub created_at: Millis,
    #[serde(serialize_with = "parcours_core::time::serialize_iso_opt")]
    pub expires_at: Option<Millis>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Marketer,
    Analyst,
    ReadOnly,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Marketer => "marketer",
            Role::Analyst => "analyst",
            Role::ReadOnly => "read_only",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "admin" => Role::Admin,
            "marketer" => Role::Marketer,
            "analyst" => Role::Analyst,
            "read_only" => Role::ReadOnly,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Token {
    pub id: String,
    pub workspace_id: String,
    pub name: String,
    pub role: Role,
    /// May create workspaces (the token printed on first start).
    pub instance_admin: bool,
    #[serde(serialize_with = "parcours_core::time::serialize_iso")]
    pub created_at: Millis,
    /// The token stops working then (set at creation, or by a rotation's overlap).
    #[serde(default)]
    #[serde(serialize_with = "parcours_core::time::serialize_iso_opt")]
    pub expires_at: Option<Millis>,
}

/// What one request brings to the log: its accepted and quarantined events.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestBatch {
    pub workspace_id: String,
    pub source_id: String,
    pub events: Vec<AcceptedEvent>,
    pub quarantined: Vec<QuarantinedEvent>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct AppendOutcome {
    pub stored: usize,
    pub duplicates: usize,
    /// Invalid events quarantined (one already in quarantine counts as one more occurrence
    /// of its entry).
    pub quarantined: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub seq: i64,
    pub workspace_id: String,
    pub source_id: String,
    pub message_id: String,
    pub kind: EventType,
    pub event: Option<String>,
    pub user_id: Option<String>,
    pub anonymous_id: Option<String>,
    pub timestamp: Millis,
    pub received_at: Millis,
    pub channel: Channel,
    pub body: String,
    /// The bucket of its customer ([`parcours_core::bucket::of`]).
    pub bucket: u16,
}

impl StoredEvent {
    pub fn meta(&self) -> EventMeta<'_> {
        EventMeta {
            seq: self.seq,
            message_id: &self.message_id,
            kind: self.kind,
            event: self.event.as_deref(),
            user_id: self.user_id.as_deref(),
            anonymous_id: self.anonymous_id.as_deref(),
            timestamp: self.timestamp,
            received_at: self.received_at,
            channel: self.channel,
            source_id: &self.source_id,
        }
    }

    /// An accepted event as the log stores it, under `seq`.
    pub fn accepted(seq: i64, workspace: &str, source: &str, e: &AcceptedEvent) -> StoredEvent {
        StoredEvent {
            seq,
            workspace_id: workspace.into(),
            source_id: source.into(),
            message_id: e.message_id.clone(),
            kind: e.kind,
            event: e.event.clone(),
            user_id: e.user_id.clone(),
            anonymous_id: e.anonymous_id.clone(),
            timestamp: e.timestamp,
            received_at: e.received_at,
            channel: e.channel,
            body: e.body.clone(),
            bucket: parcours_core::bucket::of(
                workspace,
                e.user_id.as_deref(),
                e.anonymous_id.as_deref(),
            ),
        }
    }

    pub fn key(&self) -> EventKey {
        EventKey::new(self.timestamp, self.message_id.clone())
    }

    /// The event as a Segment-spec object: what the client sent, plus the fields Parcours set
    /// (`messageId`, `type`, `timestamp`, `receivedAt`, `channel` (also as `context.channel`),
    /// and the ids as the exact strings it keeps).
    pub fn to_json(&self) -> Value {
        serde_json::from_str(&self.to_json_text()).unwrap_or_default()
    }

    /// [`to_json`](Self::to_json) as text, with every value the client sent kept exactly as
    /// written: numbers are not read into floats and written back (an export read by an
    /// import gives the same event, `100000000000000000000001` included).
    pub fn to_json_text(&self) -> String {
        type Raw = Box<serde_json::value::RawValue>;
        let raw = |v: Value| -> Raw {
            serde_json::value::to_raw_value(&v).expect("a JSON value serialises")
        };
        // Raw values are not checked as they are read: the whole body is, first.
        let readable = parcours_core::limits::check_text(&self.body).is_ok();
        let parsed = readable
            .then(|| serde_json::from_str::<BTreeMap<String, Raw>>(&self.body))
            .and_then(Result::ok);
        let mut obj: BTreeMap<String, Raw> = match parsed {
            Some(obj) => obj,
            // Stored before ingest checked the limits every reader has: the stored columns,
            // and the raw text as a string, so that an export loses nothing.
            None => {
                let mut obj = BTreeMap::new();
                if let Some(event) = &self.event {
                    obj.insert("event".into(), raw(Value::String(event.clone())));
                }
                obj.insert(
                    "unreadableBody".into(),
                    raw(Value::String(self.body.clone())),
                );
                obj
            }
        };
        let columns = [
            ("userId", &self.user_id),
            ("anonymousId", &self.anonymous_id),
        ];
        for (field, value) in columns {
            if let Some(v) = value {
                obj.insert(field.into(), raw(Value::String(v.clone())));
            }
        }
        // The channel goes where ingest reads it first (`context.channel`), so an import gives
        // the event the same channel whatever its source's own; ingest accepts only an object
        // (or null) as `context`.
        let mut context: BTreeMap<String, Raw> = obj
            .get("context")
            .and_then(|c| serde_json::from_str(c.get()).ok())
            .unwrap_or_default();
        context.insert(
            "channel".into(),
            raw(Value::String(self.channel.as_str().into())),
        );
        obj.insert(
            "context".into(),
            serde_json::value::to_raw_value(&context).expect("raw values serialise"),
        );
        let set = [
            ("messageId", self.message_id.clone()),
            ("type", self.kind.as_str().into()),
            ("timestamp", format_timestamp(self.timestamp)),
            ("receivedAt", format_timestamp(self.received_at)),
            ("channel", self.channel.as_str().into()),
        ];
        for (field, value) in set {
            obj.insert(field.into(), raw(Value::String(value)));
        }
        obj.remove("writeKey");
        serde_json::to_string(&obj).expect("raw values serialise")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuarantineStatus {
    Pending,
    Replayed,
    Discarded,
}

impl QuarantineStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            QuarantineStatus::Pending => "pending",
            QuarantineStatus::Replayed => "replayed",
            QuarantineStatus::Discarded => "discarded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => QuarantineStatus::Pending,
            "replayed" => QuarantineStatus::Replayed,
            "discarded" => QuarantineStatus::Discarded,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuarantineEntry {
    pub id: i64,
    pub workspace_id: String,
    /// The source of its first arrival.
    pub source_id: String,
    /// When it first arrived.
    #[serde(serialize_with = "parcours_core::time::serialize_iso")]
    pub received_at: Millis,
    pub code: String,
    pub reason: String,
    pub message_id: Option<String>,
    pub body: String,
    pub status: QuarantineStatus,
    #[serde(serialize_with = "parcours_core::time::serialize_iso_opt")]
    pub resolved_at: Option<Millis>,
    /// How many times it arrived (the same invalid body is kept once and counted).
    pub occurrences: u64,
    /// When it last arrived.
    #[serde(serialize_with = "parcours_core::time::serialize_iso")]
    pub last_seen: Millis,
    /// Every source it arrived from, in order of first arrival.
    pub sources: Vec<String>,
    /// The type its endpoint named (`/v1/track` …), which a replay applies.
    pub path_type: Option<EventType>,
    /// For a stored event a processor set aside: its place in the event log.
    pub seq: Option<i64>,
}

/// A stored definition's document as both adapters read it: one that cannot be read (saved
/// before definitions were checked against every reader's limits) is `null`, which the
/// engine skips and the API shows as unreadable, instead of failing every read of every
/// definition of every workspace.
pub fn definition_doc(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// The reason a quarantine entry shows: the violation's message and its detail.
pub fn quarantine_reason(
    violation: parcours_core::spec::Violation,
    detail: Option<&str>,
) -> String {
    match detail {
        Some(d) => format!("{}: {d}", violation.message()),
        None => violation.message().to_string(),
    }
}

/// The quarantine rows one request adds: its invalid events grouped by body, each with how
/// many times it came (2,500 copies of `{}` are one row with 2,500 occurrences, written in
/// one statement, not 2,500).
#[derive(Debug, Clone, PartialEq)]
pub struct QuarantineRow<'a> {
    pub event: &'a QuarantinedEvent,
    pub fingerprint: String,
    pub reason: String,
    pub occurrences: i64,
    pub last_seen: Millis,
}

/// Groups a request's invalid events by fingerprint, in order of first arrival.
pub fn quarantine_rows(events: &[QuarantinedEvent]) -> Vec<QuarantineRow<'_>> {
    let mut rows: Vec<QuarantineRow<'_>> = Vec::new();
    let mut at: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for q in events {
        let fingerprint = parcours_core::spec::fingerprint(&q.body);
        match at.get(&fingerprint) {
            Some(&i) => {
                rows[i].occurrences += 1;
                rows[i].last_seen = rows[i].last_seen.max(q.received_at);
            }
            None => {
                at.insert(fingerprint.clone(), rows.len());
                rows.push(QuarantineRow {
                    event: q,
                    fingerprint,
                    reason: quarantine_reason(q.violation, q.detail.as_deref()),
                    occurrences: 1,
                    last_seen: q.received_at,
                });
            }
        }
    }
    rows
}

/// The dedup bound a quarantine replay appends with: a replacement of an event set aside takes
/// over the `messageId` the original claimed (the original is skipped); any other is a
/// duplicate if its `messageId` was ever accepted.
pub fn replacement_dedup_since(set_aside: bool) -> Millis {
    if set_aside {
        Millis::MAX
    } else {
        Millis::MIN
    }
}

/// The fingerprint that keeps one quarantine entry per event a processor set aside.
pub fn set_aside_fingerprint(seq: i64) -> String {
    parcours_core::spec::fingerprint(&format!("set aside: event {seq}"))
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IdentifierRow {
    pub identifier: Identifier,
    pub profile_id: String,
    /// The event that linked it.
    pub linked_by: String,
    pub linked_at: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeStatus {
    Active,
    Undone,
    /// A re-derivation (late event, undo of another merge) no longer produced it.
    Superseded,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MergeRow {
    pub id: i64,
    pub workspace_id: String,
    #[serde(flatten)]
    pub merge: MergeRecord,
    pub status: MergeStatus,
    #[serde(serialize_with = "parcours_core::time::serialize_iso")]
    pub created_at: Millis,
    #[serde(serialize_with = "parcours_core::time::serialize_iso_opt")]
    pub undone_at: Option<Millis>,
}

/// A node of a cluster, as it last reported itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeInfo {
    pub id: String,
    /// Where its HTTP API listens, for operators.
    pub address: String,
    pub started_at: Millis,
    pub seen_at: Millis,
}

/// Who owns a bucket, until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease {
    pub bucket: u16,
    pub node: Option<String>,
    pub until: Millis,
}

/// What a definition defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DefinitionKind {
    Audience,
    ComputedTrait,
    /// Where membership changes are sent (a webhook).
    Destination,
}

impl DefinitionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DefinitionKind::Audience => "audience",
            DefinitionKind::ComputedTrait => "computed_trait",
            DefinitionKind::Destination => "destination",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "audience" => Some(DefinitionKind::Audience),
            "computed_trait" => Some(DefinitionKind::ComputedTrait),
            "destination" => Some(DefinitionKind::Destination),
            _ => None,
        }
    }
}

/// The name of a destination's position in the membership change log (see
/// [`crate::Audiences::audience_cursor`]). Deleting the destination deletes it.
pub fn destination_cursor(workspace: &str, id: &str) -> String {
    format!("destination:{workspace}:{id}")
}

/// The outbox lane of a destination's webhook calls. Deleting the destination deletes its
/// rows.
pub fn destination_lane(id: &str) -> String {
    format!("webhook:{id}")
}

/// An audience, a computed trait or a destination, as stored. `doc` is the definition itself (JSON); the
/// store does not read it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Definition {
    pub workspace_id: String,
    pub kind: DefinitionKind,
    pub id: String,
    pub doc: Value,
    /// Bumped by every change of the definition.
    pub version: i64,
    /// The version every profile has been evaluated against (a full computation finished).
    pub computed_version: i64,
    /// Progress of the running full computation: profiles done out of total.
    pub done: u64,
    pub total: u64,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// A profile's membership of an audience.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Membership {
    pub audience_id: String,
    pub profile_id: String,
    pub since: Millis,
}

/// A profile entering or leaving an audience.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MembershipChange {
    /// Position in the change log (assigned by the store; ignored when recording).
    pub id: i64,
    pub workspace_id: String,
    pub audience_id: String,
    pub profile_id: String,
    pub entered: bool,
    pub at: Millis,
    /// What caused it: an event's `messageId`, `time` (a window passed), `recompute`.
    pub cause: String,
}

/// A profile the unify processor reshaped (merged, re-derived, undone), or an id it retired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reshaped {
    /// Position in the journal (assigned by the store).
    pub id: i64,
    pub workspace_id: String,
    pub profile_id: String,
    /// For a retired id: the profile that holds its first event now (if any).
    pub successor: Option<String>,
    pub retired: bool,
    /// The event whose application did it (0 for none: an undo), and what to name as the
    /// cause of the membership changes it brings (its `messageId`, or `undo`).
    pub seq: i64,
    pub cause: String,
    pub at: Millis,
}

impl Reshaped {
    /// A live profile whose events changed.
    pub fn profile(profile: &str, seq: i64, cause: &str) -> Self {
        Reshaped {
            id: 0,
            workspace_id: String::new(),
            profile_id: profile.into(),
            successor: None,
            retired: false,
            seq,
            // Stored as text: no NUL (a messageId stored before ingest refused them).
            cause: cause.replace('\0', ""),
            at: 0,
        }
    }

    /// An id that no longer names a profile, and the profile that holds its first event now.
    pub fn retired(profile: &str, successor: Option<&str>, seq: i64, cause: &str) -> Self {
        Reshaped {
            successor: successor.map(str::to_string),
            retired: true,
            ..Reshaped::profile(profile, seq, cause)
        }
    }
}

/// A re-evaluation due for a profile (a window passing, a date condition flipping).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Timer {
    pub workspace_id: String,
    pub profile_id: String,
    pub due_at: Millis,
}

/// One computed trait value of one profile; `None` removes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ComputedValue {
    pub workspace_id: String,
    pub profile_id: String,
    pub trait_id: String,
    pub value: Option<Value>,
}

/// What the audience processor reads about one profile (see
/// [`crate::Audiences::audience_inputs`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AudienceInputs {
    /// Its events and those of the profiles merged into it, newest first (as `timeline`).
    pub events: Vec<StoredEvent>,
    /// Sequence numbers of its events at or before `known_upto`, which were not read, in
    /// ascending order.
    pub known: Vec<i64>,
    pub computed: std::collections::BTreeMap<String, Value>,
    /// Audience ids, in order.
    pub memberships: Vec<String>,
    pub timer: Option<Millis>,
}

/// Everything one audience evaluation step writes, applied atomically.
#[derive(Debug, Clone, Default)]
pub struct AudienceWrite {
    /// Each adds or removes a membership and is appended to the change log.
    pub changes: Vec<MembershipChange>,
    pub computed: Vec<ComputedValue>,
    /// Sets (or with `None` clears) a profile's next re-evaluation.
    pub timers: Vec<(String, String, Option<Millis>)>,
    /// Named positions (the processor's place in the event log, a destination's place in
    /// the change log).
    pub cursors: Vec<(String, i64)>,
    /// Progress of full computations: workspace, kind, id, computed version, done, total.
    pub progress: Vec<(String, DefinitionKind, String, i64, u64, u64)>,
    /// Effects of these changes, sent by the outbox's senders ([`crate::Outbox`]).
    pub outbox: Vec<crate::NewOutboxRow>,
}

impl AudienceWrite {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
            && self.computed.is_empty()
            && self.timers.is_empty()
            && self.cursors.is_empty()
            && self.progress.is_empty()
            && self.outbox.is_empty()
    }
}

/// A profile row read in storage order (see
/// [`crate::Projections::profiles_in_storage_order`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileRow {
    pub id: String,
    /// The profile it was merged into (merged rows).
    pub merged_into: Option<String>,
    /// The profile (live rows).
    pub profile: Option<parcours_core::Profile>,
}

/// A position of [`crate::Projections::event_owners`]: `seq:profile` of the last row read
/// (the profile id last, as it may hold a colon).
pub fn owners_position(profile: &str, seq: i64) -> String {
    format!("{seq}:{profile}")
}

/// The [`owners_position`] just before the rows of `profile` (and of the ids after it).
pub fn owners_start(profile: &str) -> String {
    owners_position(profile, i64::MIN)
}

/// Reads an [`owners_position`]; "" is the start.
pub fn parse_owners_position(position: &str) -> crate::Result<(String, i64)> {
    let bad = || crate::StoreError::Corrupt(format!("position `{position}`"));
    match position.split_once(':') {
        Some((seq, profile)) => Ok((profile.to_string(), seq.parse().map_err(|_| bad())?)),
        None if position.is_empty() => Ok((String::new(), 0)),
        None => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use parcours_core::spec::{check_event, Checked, Edge};
    use serde_json::value::RawValue;

    use super::*;

    fn stored(body: &str, channel: Channel) -> StoredEvent {
        StoredEvent {
            seq: 7,
            workspace_id: "ws".into(),
            source_id: "src".into(),
            message_id: "m1".into(),
            kind: EventType::Track,
            event: Some("E".into()),
            user_id: Some("100000000000000000000001".into()),
            anonymous_id: None,
            timestamp: 1_780_000_000_000,
            received_at: 1_780_000_000_500,
            channel,
            body: body.into(),
            bucket: 0,
        }
    }

    fn import(line: &str, source_channel: Option<Channel>) -> AcceptedEvent {
        let raw: Box<RawValue> = serde_json::from_str(line).unwrap();
        let edge = Edge::single(1, source_channel, None);
        match check_event(&raw, &edge, &mut |_| unreachable!()) {
            Checked::Accepted(a) => a,
            Checked::Quarantined(q) => panic!("{q:?}"),
        }
    }

    /// Found by fuzzing: the channel an event was given came back as its new source's.
    #[test]
    fn an_export_imports_back_as_the_same_event() {
        let e = stored(
            r#"{"userId":100000000000000000000001,"event":"E","properties":{"big":100000000000000000000001},"context":{"device":{"type":"ios"}}}"#,
            Channel::Ios,
        );
        let line = e.to_json_text();
        assert!(line.contains(r#""big":100000000000000000000001"#), "{line}");
        let back = import(&line, Some(Channel::Store));
        assert_eq!(back.channel, Channel::Ios);
        assert_eq!(back.user_id.as_deref(), Some("100000000000000000000001"));
        assert_eq!(
            (back.timestamp, back.message_id.as_str()),
            (e.timestamp, "m1")
        );
        // A body no reader can read is exported with what the log columns hold, and the raw text.
        let legacy = stored(r#"{"userId":"x","event":"E","n":1e400}"#, Channel::Web);
        let line = legacy.to_json_text();
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["unreadableBody"], legacy.body.as_str());
        assert_eq!(v["event"], "E");
        assert_eq!(import(&line, None).channel, Channel::Web);
    }
}
