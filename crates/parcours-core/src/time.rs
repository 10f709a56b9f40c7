//! Time as the domain sees it: milliseconds since the Unix epoch, passed in, never read.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

/// The source of "now", and of every wait on time. Domain code takes a `Millis`; the runtime
/// asks a `Clock` for it, measures durations and sleeps through it, and tests inject a
/// manual one that they move by hand.
pub trait Clock: Send + Sync {
    /// Wall time.
    fn now(&self) -> Millis;

    /// Monotonic time since an arbitrary start, for durations (latencies, budgets, rate
    /// limits, caches' ages): steps of the wall clock do not move it.
    fn monotonic(&self) -> std::time::Duration;

    /// Waits until the clock reads `until` or later, or until `at_most` of waiting has
    /// passed, whichever comes first (a loop that must notice a stop request passes a short
    /// `at_most` and looks again). A manual clock returns as soon as a test moves it there.
    fn sleep_until(&self, until: Millis, at_most: std::time::Duration);

    /// Waits `d` by this clock, in slices of at most `slice`, giving up early once `stop`
    /// says so.
    fn pause(&self, d: std::time::Duration, slice: std::time::Duration, stop: &dyn Fn() -> bool) {
        let until = self.now().saturating_add(d.as_millis() as Millis);
        while !stop() && self.now() < until {
            self.sleep_until(until, slice);
        }
    }
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

/// A date alone (`2026-12-01`, its midnight in UTC) or a timestamp ([`parse_timestamp`]).
pub fn parse_date_or_timestamp(s: &str) -> Option<Millis> {
    let s = s.trim();
    match chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        Ok(day) => Some(day.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis()),
        Err(_) => parse_timestamp(s),
    }
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
