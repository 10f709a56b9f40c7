//! Time as the domain sees it: milliseconds since the Unix epoch, passed in, never read.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

/// The source of "now". Domain code takes a `Millis`; the runtime asks a `Clock` for it, and
/// tests inject a virtual one.
pub trait Clock: Send + Sync {
    fn now(&self) -> Millis;
}

/// Parses an ISO-8601 / RFC 3339 timestamp into milliseconds. Timestamps without a zone are
/// read as UTC, as the Segment libraries that omit it mean.
pub fn parse_timestamp(s: &str) -> Option<Millis> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f%z",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc().timestamp_millis());
        }
    }
    if let Ok(t) = DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z") {
        return Some(t.timestamp_millis());
    }
    None
}

/// Formats milliseconds as RFC 3339 UTC with millisecond precision, as Segment does.
pub fn format_timestamp(ms: Millis) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Serializes milliseconds as [`format_timestamp`] does (`#[serde(serialize_with = …)]` on the
/// views the API and exports show: every time they show is ISO-8601 UTC).
pub fn serialize_iso<S: serde::Serializer>(ms: &Millis, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_timestamp(*ms))
}

/// [`serialize_iso`] for an optional time (`null` when absent).
pub fn serialize_iso_opt<S: serde::Serializer>(
    ms: &Option<Millis>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match ms {
        Some(ms) => s.serialize_str(&format_timestamp(*ms)),
        None => s.serialize_none(),
    }
}

/// The order in which events are applied to projections: event time, then `messageId` to break
/// ties. Folding a set of events in this order gives one answer whatever order they arrived in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct EventKey {
    pub ts: Millis,
    pub mid: String,
}

impl EventKey {
    pub fn new(ts: Millis, mid: impl Into<String>) -> Self {
        Self {
            ts,
            mid: mid.into(),
        }
    }
}

/// One UTC day in milliseconds.
pub const DAY: Millis = 86_400_000;
pub const HOUR: Millis = 3_600_000;

/// The start (UTC midnight) of the day that contains `ms`.
pub fn day_start(ms: Millis) -> Millis {
    ms.div_euclid(DAY) * DAY
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_segment_timestamps() {
        let z = parse_timestamp("2024-03-01T10:00:00.000Z").unwrap();
        assert_eq!(parse_timestamp("2024-03-01T10:00:00Z"), Some(z));
        assert_eq!(parse_timestamp("2024-03-01T11:00:00+01:00"), Some(z));
        assert_eq!(parse_timestamp("2024-03-01T10:00:00.000000+00:00"), Some(z));
        assert_eq!(parse_timestamp("2024-03-01T10:00:00"), Some(z));
        assert_eq!(parse_timestamp("yesterday"), None);
        assert_eq!(format_timestamp(z), "2024-03-01T10:00:00.000Z");
    }
}
