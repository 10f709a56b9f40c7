//! The event log port: the append-only log of accepted events, with `messageId`
//! deduplication, read in order by workspace, by bucket or by name.

use std::collections::BTreeMap;

use parcours_core::channel::Channel;
use parcours_core::observation::EventMeta;
use parcours_core::spec::{AcceptedEvent, EventType, QuarantinedEvent};
use parcours_core::time::{format_timestamp, EventKey, Millis};
use serde::Serialize;
use serde_json::Value;

use crate::*;

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
            .and_then(std::result::Result::ok);
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

/// The append-only event log, with `messageId` deduplication.
pub trait EventLog: Send + Sync {
    /// Appends the batches in one transaction (a group commit). An event whose `messageId` was
    /// accepted in its workspace at or after `dedup_since` is a duplicate and is not stored.
    fn append(&self, batches: &[IngestBatch], dedup_since: Millis) -> Result<Vec<AppendOutcome>>;
    /// Events of every workspace after a sequence number, in order.
    fn events_after(&self, after_seq: i64, limit: usize) -> Result<Vec<StoredEvent>>;
    /// Events of one workspace after a sequence number, in order.
    fn workspace_events(
        &self,
        workspace: &str,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>>;
    /// The event stored under a `messageId` accepted within the dedup window.
    fn event_by_message_id(&self, workspace: &str, message_id: &str)
        -> Result<Option<StoredEvent>>;
    fn event_count(&self, workspace: &str) -> Result<u64>;
    fn last_seq(&self) -> Result<i64>;
    /// Forgets `messageId`s accepted before `before` (outside the dedup window).
    fn prune_message_ids(&self, before: Millis) -> Result<usize>;
    /// Events of one workspace with `after_seq < seq <= upto_seq` whose names are in `names`
    /// (named as [`Audiences::audience_inputs`] names them), in order. A full computation
    /// reads the log this way, in ranges, instead of each profile's events one by one.
    fn named_events(
        &self,
        workspace: &str,
        after_seq: i64,
        upto_seq: i64,
        names: &[String],
    ) -> Result<Vec<StoredEvent>>;
    /// Events of these buckets after a sequence number, in order.
    fn bucket_events_after(
        &self,
        buckets: &[u16],
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>>;
    /// Retention: removes every event received on a UTC day that ended at or before `before`
    /// (whole days, so PostgreSQL drops day partitions instead of deleting rows). Returns how
    /// many events were removed.
    fn drop_events_before(&self, before: Millis) -> Result<u64>;
    /// Housekeeping a backend needs from time to time (PostgreSQL creates the coming days'
    /// event partitions). Nodes call it hourly.
    fn maintain(&self, _now: Millis) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use parcours_core::spec::{check_event, Checked, Edge};
    use serde_json::value::RawValue;

    use super::*;
    use parcours_core::channel::Channel;
    use parcours_core::spec::{AcceptedEvent, EventType};
    use serde_json::Value;

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
