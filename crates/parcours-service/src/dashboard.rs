//! The dashboard: per UTC day over a range, events per channel, profiles made and merged,
//! customers entering and leaving audiences, and messages and conversions per journey, read
//! from the daily tallies (a few rows per day, whatever the size of the log). Every role
//! reads it: it holds counts, no personal data.

use std::collections::BTreeMap;

use parcours_core::time::Millis;
use parcours_store::tallies::{self, day_of, start_of_day};
use parcours_store::Store;
use serde::Serialize;

use crate::{Actor, ServiceError};

/// The longest range, in days.
pub const MAX_DAYS: i64 = 366;
/// The range when none is asked for: the last 30 days, today included.
pub const DEFAULT_DAYS: i64 = 30;

/// Days `from` to `to`, both included, in days since 1970-01-01 (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayRange {
    pub from: i64,
    pub to: i64,
}

impl DayRange {
    /// The last `days` days up to the day of `now`.
    pub fn last(days: i64, now: Millis) -> Self {
        let to = day_of(now);
        Self {
            from: to - days.clamp(1, MAX_DAYS) + 1,
            to,
        }
    }

    /// A range from dates (`2026-11-01`), each optional: without `to`, today; without `from`,
    /// the [`DEFAULT_DAYS`] up to `to` (an empty one is not a date). `invalid_date` for a date that does not read,
    /// `invalid_range` when `from` is after `to` or the range is longer than [`MAX_DAYS`].
    pub fn parse(from: Option<&str>, to: Option<&str>, now: Millis) -> Result<Self, ServiceError> {
        let day = |s: &str| -> Result<i64, ServiceError> {
            let d = chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").map_err(|_| {
                // What was sent, shortened: a refusal does not echo a page of it back.
                let shown: String = s.chars().take(40).collect();
                let more = if s.chars().count() > 40 { "…" } else { "" };
                ServiceError::invalid(
                    "invalid_date",
                    format!("`{shown}{more}` is not a date: write it as 2026-11-30"),
                )
            })?;
            Ok(day_of(
                d.and_hms_opt(0, 0, 0)
                    .expect("midnight exists")
                    .and_utc()
                    .timestamp_millis(),
            ))
        };
        let to = match to {
            None => day_of(now),
            Some(to) => day(to)?,
        };
        let from = match from {
            None => to - DEFAULT_DAYS + 1,
            Some(from) => day(from)?,
        };
        if from > to {
            return Err(ServiceError::invalid(
                "invalid_range",
                format!(
                    "the range starts ({}) after it ends ({})",
                    date(from),
                    date(to)
                ),
            ));
        }
        if to - from + 1 > MAX_DAYS {
            return Err(ServiceError::invalid(
                "invalid_range",
                format!(
                    "a range covers {MAX_DAYS} days at most; {} to {} is {} days",
                    date(from),
                    date(to),
                    to - from + 1
                ),
            ));
        }
        Ok(Self { from, to })
    }

    pub fn days(&self) -> impl Iterator<Item = i64> {
        self.from..=self.to
    }

    pub fn len(&self) -> usize {
        (self.to - self.from + 1).max(0) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A day as `2026-11-30`.
pub fn date(day: i64) -> String {
    chrono::DateTime::from_timestamp_millis(start_of_day(day))
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// One line of a chart: a value per day of the range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Series {
    pub key: String,
    pub values: Vec<i64>,
    pub total: i64,
}

/// A journey's messages and conversions over the range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JourneyTotals {
    pub journey: String,
    pub sent: i64,
    pub converted: i64,
    /// Conversions in its holdout group (who got nothing).
    pub converted_holdout: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dashboard {
    pub from: String,
    pub to: String,
    /// The days of the range, as dates.
    pub days: Vec<String>,
    /// Events per channel, busiest first.
    pub events: Vec<Series>,
    pub new_profiles: Series,
    pub merges: Series,
    /// Per audience, the most changed first.
    pub entered: Vec<Series>,
    pub exited: Vec<Series>,
    /// Messages sent per journey and day.
    pub sent: Vec<Series>,
    /// Conversions per journey and day (outside the holdout).
    pub converted: Vec<Series>,
    pub journeys: Vec<JourneyTotals>,
}

/// The dashboard of the actor's workspace over a range.
pub fn dashboard(
    store: &dyn Store,
    actor: &Actor,
    range: DayRange,
) -> Result<Dashboard, ServiceError> {
    let rows = store.tallies(&actor.workspace, range.from, range.to)?;
    // metric -> key -> a value per day
    let mut by: BTreeMap<&str, BTreeMap<&str, Vec<i64>>> = BTreeMap::new();
    for t in &rows {
        let Some(at) = usize::try_from(t.day - range.from)
            .ok()
            .filter(|i| *i < range.len())
        else {
            continue;
        };
        by.entry(t.metric.as_str())
            .or_default()
            .entry(t.key.as_str())
            .or_insert_with(|| vec![0; range.len()])[at] += t.n;
    }
    let series = |metric: &str| -> Vec<Series> {
        let mut all: Vec<Series> = by
            .get(metric)
            .map(|keys| {
                keys.iter()
                    .map(|(key, values)| Series {
                        key: key.to_string(),
                        total: values.iter().sum(),
                        values: values.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        all.sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.key.cmp(&b.key)));
        all
    };
    let one = |metric: &str| -> Series {
        series(metric).into_iter().next().unwrap_or(Series {
            key: String::new(),
            values: vec![0; range.len()],
            total: 0,
        })
    };
    let total_of =
        |list: &[Series], key: &str| list.iter().find(|s| s.key == key).map_or(0, |s| s.total);
    let sent = series(tallies::SENT);
    let converted = series(tallies::CONVERTED);
    let holdout = series(tallies::CONVERTED_HOLDOUT);
    let mut names: Vec<&str> = sent
        .iter()
        .chain(&converted)
        .chain(&holdout)
        .map(|s| s.key.as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut journeys: Vec<JourneyTotals> = names
        .into_iter()
        .map(|j| JourneyTotals {
            journey: j.to_string(),
            sent: total_of(&sent, j),
            converted: total_of(&converted, j),
            converted_holdout: total_of(&holdout, j),
        })
        .collect();
    journeys.sort_by(|a, b| b.sent.cmp(&a.sent).then_with(|| a.journey.cmp(&b.journey)));
    Ok(Dashboard {
        from: date(range.from),
        to: date(range.to),
        days: range.days().map(date).collect(),
        events: series(tallies::EVENTS),
        new_profiles: one(tallies::PROFILES),
        merges: one(tallies::MERGES),
        entered: series(tallies::ENTERED),
        exited: series(tallies::EXITED),
        sent,
        converted,
        journeys,
    })
}

/// What arrived from one source or on one channel: today, yesterday, over the last 7 and 30
/// days (today included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Arrivals {
    pub key: String,
    /// The source's name (empty for a channel, or a source since deleted).
    pub name: String,
    pub today: i64,
    pub yesterday: i64,
    pub week: i64,
    pub month: i64,
}

/// Events arrived per source and per channel (the day Parcours received them, not the day
/// they happened), the busiest first; every source of the workspace is listed, a silent one
/// with zeros.
pub fn arrivals(
    store: &dyn Store,
    actor: &Actor,
    now: Millis,
) -> Result<(Vec<Arrivals>, Vec<Arrivals>), ServiceError> {
    let today = day_of(now);
    let rows = store.tallies(&actor.workspace, today - 29, today)?;
    let sources = store.sources(&actor.workspace)?;
    let mut by_source: BTreeMap<String, Arrivals> = sources
        .iter()
        .map(|s| {
            (
                s.id.clone(),
                Arrivals {
                    key: s.id.clone(),
                    name: s.name.clone(),
                    today: 0,
                    yesterday: 0,
                    week: 0,
                    month: 0,
                },
            )
        })
        .collect();
    let mut by_channel: BTreeMap<String, Arrivals> = BTreeMap::new();
    for t in &rows {
        let into = match t.metric.as_str() {
            tallies::RECEIVED => &mut by_source,
            tallies::RECEIVED_CHANNEL => &mut by_channel,
            _ => continue,
        };
        let a = into.entry(t.key.clone()).or_insert_with(|| Arrivals {
            key: t.key.clone(),
            name: String::new(),
            today: 0,
            yesterday: 0,
            week: 0,
            month: 0,
        });
        let age = today - t.day;
        if age == 0 {
            a.today += t.n;
        }
        if age == 1 {
            a.yesterday += t.n;
        }
        if age < 7 {
            a.week += t.n;
        }
        a.month += t.n;
    }
    let sorted = |m: BTreeMap<String, Arrivals>| {
        let mut v: Vec<Arrivals> = m.into_values().collect();
        v.sort_by(|a, b| {
            (b.month, b.week)
                .cmp(&(a.month, a.week))
                .then_with(|| a.key.cmp(&b.key))
        });
        v
    };
    Ok((sorted(by_source), sorted(by_channel)))
}

/// The size of each audience at the end of each day of `range` (which ends today), from its
/// size now and the entries and exits tallied since: `sizes` are `(audience, size now)`.
/// Before the tallies began an audience counts as it was when they began.
pub fn audience_sizes(
    store: &dyn Store,
    actor: &Actor,
    sizes: &[(String, u64)],
    range: DayRange,
) -> Result<BTreeMap<String, Vec<i64>>, ServiceError> {
    let rows = store.tallies(&actor.workspace, range.from, range.to)?;
    let days = range.len();
    let mut net: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for t in &rows {
        let sign = match t.metric.as_str() {
            tallies::ENTERED => 1,
            tallies::EXITED => -1,
            _ => continue,
        };
        let Some(at) = usize::try_from(t.day - range.from)
            .ok()
            .filter(|i| *i < days)
        else {
            continue;
        };
        net.entry(t.key.as_str()).or_insert_with(|| vec![0; days])[at] += sign * t.n;
    }
    Ok(sizes
        .iter()
        .map(|(id, now)| {
            let mut at_end = vec![0; days];
            let mut size = i64::try_from(*now).unwrap_or(i64::MAX);
            for i in (0..days).rev() {
                at_end[i] = size.max(0);
                size -= net.get(id.as_str()).map_or(0, |n| n[i]);
            }
            (id.clone(), at_end)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Millis = 1_764_460_800_000; // 2025-11-30T00:00:00Z

    fn code(r: Result<DayRange, ServiceError>) -> &'static str {
        match r {
            Err(ServiceError::Invalid { code, .. }) => code,
            other => panic!("expected an invalid range, got {other:?}"),
        }
    }

    #[test]
    fn ranges_default_to_the_last_thirty_days_and_refuse_nonsense() {
        let r = DayRange::parse(None, None, NOW + 5).unwrap();
        assert_eq!(
            (date(r.from), date(r.to)),
            ("2025-11-01".into(), "2025-11-30".into())
        );
        assert_eq!(r.len(), 30);
        let r = DayRange::parse(Some("2025-02-27"), Some(" 2025-03-01"), NOW).unwrap();
        assert_eq!(r.len(), 3, "February 2025 has 28 days");
        let r = DayRange::parse(None, Some("2025-01-10"), NOW).unwrap();
        assert_eq!(date(r.from), "2024-12-12");
        assert_eq!(code(DayRange::parse(None, Some(""), NOW)), "invalid_date");
        assert_eq!(
            code(DayRange::parse(Some("2025-13-01"), None, NOW)),
            "invalid_date"
        );
        assert_eq!(
            code(DayRange::parse(Some("yesterday"), None, NOW)),
            "invalid_date"
        );
        match DayRange::parse(Some(&"9".repeat(5_000)), None, NOW) {
            Err(e) => assert!(e.to_string().len() < 100, "{e}"),
            Ok(r) => panic!("{r:?}"),
        }
        assert_eq!(
            code(DayRange::parse(Some("2025-11-02"), Some("2025-11-01"), NOW)),
            "invalid_range"
        );
        assert_eq!(
            code(DayRange::parse(Some("2020-01-01"), Some("2025-11-01"), NOW)),
            "invalid_range"
        );
        assert_eq!(
            DayRange::parse(Some("2024-11-30"), None, NOW)
                .unwrap()
                .len(),
            366
        );
        assert_eq!(DayRange::last(7, NOW).len(), 7);
    }
}
