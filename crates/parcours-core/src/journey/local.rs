//! A customer's local time: the next time of day on allowed week days, quiet hours and
//! calendar days in her time zone, correct across daylight-saving changes.
//!
//! Rules at a change of offset:
//! - a local time that does not exist (the hour skipped in spring) moves forward by the
//!   length of the gap (02:30 becomes 03:30), as calendars do;
//! - a local time that happens twice (the hour repeated in autumn) is its first occurrence.

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Timelike,
};
use chrono_tz::Tz;

use super::{LocalTime, QuietHours};
use crate::time::Millis;

/// The time zone named, or UTC when the name is missing or unknown.
pub fn zone(name: Option<&str>) -> Tz {
    name.and_then(|n| n.parse().ok()).unwrap_or(Tz::UTC)
}

fn at(tz: Tz, ms: Millis) -> DateTime<Tz> {
    tz.from_utc_datetime(
        &DateTime::from_timestamp_millis(ms)
            .unwrap_or_default()
            .naive_utc(),
    )
}

/// The instant of a local date and time, with the rules above.
pub fn instant(tz: Tz, local: NaiveDateTime) -> Millis {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.timestamp_millis(),
        LocalResult::Ambiguous(first, _) => first.timestamp_millis(),
        LocalResult::None => {
            // In a gap: read the local time with the offset in force before it, which lands
            // the same distance past the gap's end.
            let before = tz.offset_from_utc_datetime(&(local - Duration::hours(24)));
            let utc = local
                - Duration::seconds(i64::from(chrono::Offset::fix(&before).local_minus_utc()));
            utc.and_utc().timestamp_millis()
        }
    }
}

/// A trait value as an instant: a date alone (`2026-12-25`) is the start of that day on the
/// customer's calendar; a timestamp is that instant; a number is milliseconds since the epoch.
pub fn date_value(tz: Tz, value: &serde_json::Value) -> Option<Millis> {
    match value {
        serde_json::Value::String(s) => {
            if let Ok(day) = NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d") {
                return Some(day_start(tz, day));
            }
            crate::time::parse_timestamp(s)
        }
        serde_json::Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// The local calendar day of an instant.
pub fn local_date(tz: Tz, ms: Millis) -> NaiveDate {
    at(tz, ms).date_naive()
}

/// The instant a local calendar day starts.
pub fn day_start(tz: Tz, day: NaiveDate) -> Millis {
    instant(tz, day.and_hms_opt(0, 0, 0).expect("midnight exists"))
}

/// The first instant after `now` (or at it) when the local clock reads `time` on one of
/// `days` (Monday = 0; empty means every day).
pub fn next_time_of_day(tz: Tz, now: Millis, time: LocalTime, days: &[u8]) -> Millis {
    let today = local_date(tz, now);
    for ahead in 0..=8 {
        let Some(day) = today.checked_add_signed(Duration::days(ahead)) else {
            break;
        };
        let weekday = day.weekday().num_days_from_monday() as u8;
        if !days.is_empty() && !days.contains(&weekday) {
            continue;
        }
        let local = day
            .and_hms_opt(time.hour(), time.minute(), 0)
            .expect("a time of day exists");
        let t = instant(tz, local);
        if t >= now {
            return t;
        }
    }
    now
}

/// The instant the local clock reads `time` on the local day of `day_of`.
pub fn on_day_at(tz: Tz, day_of: Millis, time: LocalTime) -> Millis {
    let day = local_date(tz, day_of);
    instant(
        tz,
        day.and_hms_opt(time.hour(), time.minute(), 0)
            .expect("a time of day exists"),
    )
}

/// When `now` falls within quiet hours in this zone, the instant they end.
pub fn quiet_until(tz: Tz, now: Millis, quiet: &QuietHours) -> Option<Millis> {
    let local = at(tz, now);
    let minute = (local.hour() * 60 + local.minute()) as u16;
    let (from, to) = (quiet.from.minute_of_day, quiet.to.minute_of_day);
    let inside = if from < to {
        minute >= from && minute < to
    } else {
        minute >= from || minute < to
    };
    if !inside {
        return None;
    }
    Some(next_time_of_day(tz, now, quiet.to, &[]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse_timestamp;

    fn t(s: &str) -> Millis {
        parse_timestamp(s).unwrap()
    }

    fn hm(h: u16, m: u16) -> LocalTime {
        LocalTime {
            minute_of_day: h * 60 + m,
        }
    }

    #[test]
    fn next_time_of_day_in_the_customers_zone() {
        let paris = zone(Some("Europe/Paris"));
        // 10:00 UTC is 11:00 in Paris in winter: 09:00 is tomorrow, 08:00 UTC.
        assert_eq!(
            next_time_of_day(paris, t("2026-01-15T10:00:00Z"), hm(9, 0), &[]),
            t("2026-01-16T08:00:00Z")
        );
        // Only on Mondays: 2026-01-15 is a Thursday, the next Monday is the 19th.
        assert_eq!(
            next_time_of_day(paris, t("2026-01-15T10:00:00Z"), hm(9, 0), &[0]),
            t("2026-01-19T08:00:00Z")
        );
        // Exactly at the time: now.
        assert_eq!(
            next_time_of_day(paris, t("2026-01-16T08:00:00Z"), hm(9, 0), &[]),
            t("2026-01-16T08:00:00Z")
        );
    }

    #[test]
    fn daylight_saving_changes() {
        let paris = zone(Some("Europe/Paris"));
        // 2026-03-29: 02:00 → 03:00 in Paris. 02:30 does not exist: 03:30 CEST = 01:30 UTC.
        assert_eq!(
            next_time_of_day(paris, t("2026-03-28T22:00:00Z"), hm(2, 30), &[]),
            t("2026-03-29T01:30:00Z")
        );
        // 09:00 the day after the change is 07:00 UTC, the day before 08:00 UTC.
        assert_eq!(
            next_time_of_day(paris, t("2026-03-28T10:00:00Z"), hm(9, 0), &[]),
            t("2026-03-29T07:00:00Z")
        );
        // 2026-10-25: 03:00 → 02:00. 02:30 happens twice: the first, 00:30 UTC.
        assert_eq!(
            next_time_of_day(paris, t("2026-10-24T22:00:00Z"), hm(2, 30), &[]),
            t("2026-10-25T00:30:00Z")
        );
        // New York changes on another day (2026-03-08): 09:00 is 14:00 UTC the day before,
        // 13:00 UTC that day.
        let ny = zone(Some("America/New_York"));
        assert_eq!(
            next_time_of_day(ny, t("2026-03-07T12:00:00Z"), hm(9, 0), &[]),
            t("2026-03-07T14:00:00Z")
        );
        assert_eq!(
            next_time_of_day(ny, t("2026-03-08T12:00:00Z"), hm(9, 0), &[]),
            t("2026-03-08T13:00:00Z")
        );
    }

    #[test]
    fn quiet_hours_across_midnight_and_dst() {
        let paris = zone(Some("Europe/Paris"));
        let q = QuietHours {
            from: hm(21, 0),
            to: hm(8, 0),
            drop: false,
        };
        // 22:30 Paris (21:30 UTC in winter): quiet until 08:00 Paris = 07:00 UTC.
        assert_eq!(
            quiet_until(paris, t("2026-01-15T21:30:00Z"), &q),
            Some(t("2026-01-16T07:00:00Z"))
        );
        // 07:30 UTC is 08:30 Paris: not quiet.
        assert_eq!(quiet_until(paris, t("2026-01-16T07:30:00Z"), &q), None);
        // The night the clocks go forward: quiet ends at 08:00 CEST = 06:00 UTC.
        assert_eq!(
            quiet_until(paris, t("2026-03-28T22:00:00Z"), &q),
            Some(t("2026-03-29T06:00:00Z"))
        );
        // The same instant in UTC is 22:00: quiet for UTC customers too, until 08:00 UTC.
        assert_eq!(
            quiet_until(Tz::UTC, t("2026-03-28T22:00:00Z"), &q),
            Some(t("2026-03-29T08:00:00Z"))
        );
        // A window within one day.
        let lunch = QuietHours {
            from: hm(12, 0),
            to: hm(14, 0),
            drop: true,
        };
        assert_eq!(
            quiet_until(Tz::UTC, t("2026-01-15T13:00:00Z"), &lunch),
            Some(t("2026-01-15T14:00:00Z"))
        );
        assert_eq!(
            quiet_until(Tz::UTC, t("2026-01-15T14:00:00Z"), &lunch),
            None
        );
    }

    #[test]
    fn calendar_days_are_local() {
        let tokyo = zone(Some("Asia/Tokyo"));
        // 20:00 UTC on the 15th is 05:00 on the 16th in Tokyo.
        assert_eq!(
            local_date(tokyo, t("2026-01-15T20:00:00Z")),
            NaiveDate::from_ymd_opt(2026, 1, 16).unwrap()
        );
        assert_eq!(
            day_start(tokyo, NaiveDate::from_ymd_opt(2026, 1, 16).unwrap()),
            t("2026-01-15T15:00:00Z")
        );
        assert_eq!(zone(Some("Not/AZone")), Tz::UTC);
    }
}
