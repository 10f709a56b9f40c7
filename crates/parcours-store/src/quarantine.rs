//! The quarantine port: events that broke the spec or that a processor could not apply,
//! kept for inspection, replay or discard.

use parcours_core::spec::{EventType, QuarantinedEvent};
use parcours_core::time::Millis;
use serde::{Deserialize, Serialize};

use crate::*;

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

/// Events that parsed but broke the spec, kept for inspection and replay.
pub trait Quarantine: Send + Sync {
    fn quarantined(
        &self,
        workspace: &str,
        status: Option<QuarantineStatus>,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<QuarantineEntry>>;
    fn quarantine_entry(&self, workspace: &str, id: i64) -> Result<Option<QuarantineEntry>>;
    /// Sets aside a stored event that a processor cannot read or apply (it stays in the log
    /// and processors skip it): one entry per event, whatever the number of calls. Returns
    /// whether the entry is new.
    fn set_aside(
        &self,
        event: &StoredEvent,
        violation: parcours_core::spec::Violation,
        detail: &str,
        at: Millis,
    ) -> Result<bool>;
    /// Resolves a pending entry: appends the fixed event (if any) to the log and marks the
    /// entry replayed (or discarded), in one transaction. The replacement of an event set
    /// aside takes over its `messageId` (the original stays in the log, skipped).
    fn resolve_quarantined(
        &self,
        workspace: &str,
        id: i64,
        replacement: Option<&IngestBatch>,
        at: Millis,
    ) -> Result<Option<AppendOutcome>>;
}
