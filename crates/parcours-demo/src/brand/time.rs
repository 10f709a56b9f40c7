//! Time.

use chrono::{DateTime, SecondsFormat, Utc};
use rand::rngs::StdRng;
use rand::Rng;

use super::*;

pub(crate) const SECOND: i64 = 1_000;
pub(crate) const MINUTE: i64 = 60 * SECOND;
pub(crate) const HOUR: i64 = 60 * MINUTE;
pub(crate) const DAY: i64 = 24 * HOUR;

/// Lapsed customers have been silent for at least this long when the data set ends.
pub(crate) const LAPSED_SILENCE: i64 = 45 * DAY;

#[derive(Clone, Copy)]
pub(crate) struct Window {
    pub(crate) start: i64,
    pub(crate) end: i64,
}

impl Window {
    pub(crate) fn of(cfg: &DemoConfig) -> Self {
        Window {
            start: cfg.end_ms - i64::from(cfg.days) * DAY,
            end: cfg.end_ms,
        }
    }
}

/// When people do things, in UTC hours (Paris is UTC+1 or +2).
#[derive(Clone, Copy)]
pub(crate) enum Hours {
    Online,
    StoreOpening,
    CallCentre,
}

impl Hours {
    pub(crate) fn range(self, rng: &mut StdRng) -> (i64, i64) {
        match self {
            // Online shopping peaks in the evening.
            Hours::Online if rng.random_bool(0.65) => (16, 22),
            Hours::Online => (6, 16),
            Hours::StoreOpening => (8, 18),
            Hours::CallCentre => (7, 17),
        }
    }
}

/// A moment in `[from, until]` at a plausible hour of the day.
pub(crate) fn moment(rng: &mut StdRng, from: i64, until: i64, hours: Hours) -> i64 {
    let until = until.max(from);
    let (first_day, last_day) = (from.div_euclid(DAY), until.div_euclid(DAY));
    for _ in 0..8 {
        let (open, close) = hours.range(rng);
        let at = rng.random_range(first_day..=last_day) * DAY
            + rng.random_range(open * HOUR..close * HOUR);
        if (from..=until).contains(&at) {
            return at;
        }
    }
    // The span is too short to hit the right hours: any moment of it will do.
    rng.random_range(from..=until)
}

/// How many times something expected `per_day` times happens over `span` milliseconds.
pub(crate) fn occurrences(rng: &mut StdRng, per_day: f64, span: i64) -> usize {
    let expected = per_day * span.max(0) as f64 / DAY as f64;
    let whole = expected.floor();
    whole as usize + usize::from(rng.random_bool(expected - whole))
}

pub(crate) fn timestamp(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .expect("demo timestamps stay within chrono's range")
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub(crate) fn day_of(ms: i64) -> String {
    timestamp(ms)[..10].to_string()
}
