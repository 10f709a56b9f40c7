//! Daily tallies: how many events happened and arrived per channel (and arrived per source),
//! profiles were made and merged,
//! customers entered and left each audience, and messages and conversions each journey had,
//! per UTC day. What the console's dashboard draws.
//!
//! A tally is added in the same transaction as the facts it counts (the unify step that
//! applies the events, the audience write, the journey write), so it never drifts from them,
//! and a dashboard over months reads a few hundred rows, not the event log. Resetting a
//! projection resets its tallies with it, and replaying it counts them again.

use std::collections::BTreeMap;

use parcours_core::time::Millis;
use serde::Serialize;

use crate::{AudienceWrite, JourneyWrite};

/// Milliseconds in a day.
const DAY: Millis = 86_400_000;

/// Events, by channel, on the day of their timestamp (key: the channel).
pub const EVENTS: &str = "events";
/// Events, by source, on the day they arrived (key: the source id).
pub const RECEIVED: &str = "received";
/// Events, by channel, on the day they arrived (key: the channel).
pub const RECEIVED_CHANNEL: &str = "received_channel";
/// Profiles made by an event, on its day.
pub const PROFILES: &str = "profiles";
/// Profiles merged into another by an event, on its day.
pub const MERGES: &str = "merges";
/// Customers entering an audience (key: the audience).
pub const ENTERED: &str = "entered";
/// Customers leaving an audience (key: the audience).
pub const EXITED: &str = "exited";
/// Messages a journey sent (key: the journey).
pub const SENT: &str = "sent";
/// Conversions of customers a journey reached (key: the journey).
pub const CONVERTED: &str = "converted";
/// Conversions in a journey's holdout group (key: the journey).
pub const CONVERTED_HOLDOUT: &str = "converted_holdout";

/// The metrics the unify step counts (reset with the identity projections).
pub const UNIFY_METRICS: [&str; 5] = [EVENTS, RECEIVED, RECEIVED_CHANNEL, PROFILES, MERGES];
/// The metrics audience writes count (reset with the audiences).
pub const AUDIENCE_METRICS: [&str; 2] = [ENTERED, EXITED];

/// A count of one metric on one day.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Tally {
    pub workspace_id: String,
    pub metric: String,
    /// What it is counted by (a channel, an audience, a journey; empty when nothing).
    pub key: String,
    /// Days since 1970-01-01, in UTC.
    pub day: i64,
    pub n: i64,
}

/// The UTC day of an instant, in days since 1970-01-01.
pub fn day_of(at: Millis) -> i64 {
    at.div_euclid(DAY)
}

/// The instant a day starts.
pub fn start_of_day(day: i64) -> Millis {
    day.saturating_mul(DAY)
}

/// Adds up counts, one tally per workspace, metric, key and day.
#[derive(Debug, Default)]
pub struct Tallies(BTreeMap<(String, &'static str, String, i64), i64>);

impl Tallies {
    pub fn add(&mut self, workspace: &str, metric: &'static str, key: &str, at: Millis, n: i64) {
        if n == 0 {
            return;
        }
        *self
            .0
            .entry((workspace.to_string(), metric, key.to_string(), day_of(at)))
            .or_default() += n;
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_rows(self) -> Vec<Tally> {
        self.0
            .into_iter()
            .map(|((workspace_id, metric, key, day), n)| Tally {
                workspace_id,
                metric: metric.to_string(),
                key,
                day,
                n,
            })
            .collect()
    }
}

/// What an audience write adds: an entry or an exit per membership change, on its day.
pub fn of_audience_write(w: &AudienceWrite) -> Vec<Tally> {
    let mut t = Tallies::default();
    for c in &w.changes {
        let metric = if c.entered { ENTERED } else { EXITED };
        t.add(&c.workspace_id, metric, &c.audience_id, c.at, 1);
    }
    t.into_rows()
}

/// What a journey write adds: each message sent, and each conversion it notes (in the
/// holdout group or not, as the run says).
pub fn of_journey_write(w: &JourneyWrite) -> Vec<Tally> {
    let mut t = Tallies::default();
    for c in &w.contacts {
        t.add(&c.workspace_id, SENT, &c.journey_id, c.at, 1);
    }
    for note in w.notes.iter().filter(|n| n.code == "converted") {
        let holdout = w
            .runs
            .iter()
            .find(|r| r.run_id == note.run_id && r.workspace_id == note.workspace_id)
            .and_then(|r| r.state.get("holdout"))
            .and_then(|h| h.as_bool())
            .unwrap_or(false);
        let metric = if holdout {
            CONVERTED_HOLDOUT
        } else {
            CONVERTED
        };
        t.add(&note.workspace_id, metric, &note.journey_id, note.at, 1);
    }
    t.into_rows()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_utc_and_counts_add_up() {
        assert_eq!(day_of(0), 0);
        assert_eq!(day_of(DAY - 1), 0);
        assert_eq!(day_of(-1), -1, "before 1970 is the day before, not day 0");
        assert_eq!(start_of_day(day_of(1_700_000_000_000)), 1_699_920_000_000);
        let mut t = Tallies::default();
        t.add("ws", EVENTS, "web", 10, 1);
        t.add("ws", EVENTS, "web", 20, 2);
        t.add("ws", EVENTS, "web", DAY + 1, 1);
        t.add("ws", EVENTS, "store", 10, 0);
        let rows = t.into_rows();
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!((rows[0].day, rows[0].n), (0, 3));
        assert_eq!((rows[1].day, rows[1].n), (1, 1));
    }
}
