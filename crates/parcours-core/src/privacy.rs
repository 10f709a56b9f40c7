//! Privacy rules with no storage in them: the legal deadline of a data subject's request, the
//! hashed entries that keep an erased person's identifiers out after her erasure, and the
//! scrubbing of the documents an erasure must keep (an order without its customer).

use chrono::{Datelike, NaiveDate, Weekday};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The day a request received on `received` must be answered by, `months` months later:
/// the ICO's calculation. The day of receipt is day 1 and the deadline is the corresponding
/// date `months` later (3 September → 3 October); a month without that date ends on its
/// last day (31 January → 28 or 29 February); a deadline on a weekend or a holiday moves
/// to the next working day.
pub fn deadline(received: NaiveDate, months: u32, holidays: &[NaiveDate]) -> NaiveDate {
    let month0 = received.month0() + months;
    let year = received.year() + (month0 / 12) as i32;
    let month = month0 % 12 + 1;
    let mut day = received.day();
    let mut date = NaiveDate::from_ymd_opt(year, month, day);
    while date.is_none() {
        day -= 1;
        date = NaiveDate::from_ymd_opt(year, month, day);
    }
    let mut date = date.expect("a month has a 28th");
    while matches!(date.weekday(), Weekday::Sat | Weekday::Sun) || holidays.contains(&date) {
        date = date
            .succ_opt()
            .expect("dates this close to now have a next day");
    }
    date
}

/// The day (UTC) of an instant.
pub fn day_of(at: crate::time::Millis) -> NaiveDate {
    chrono::DateTime::from_timestamp_millis(at)
        .map(|d| d.date_naive())
        .unwrap_or_default()
}

/// One month: the time a controller has to answer (Art. 12(3)).
pub const ANSWER_MONTHS: u32 = 1;
/// An extension adds at most two further months (Art. 12(3)).
pub const MAX_EXTENSION_MONTHS: u32 = 2;

/// The suppression entry of an erased identifier: a SHA-256 of the workspace, the kind and
/// the normalised value, so that the list refuses her identifiers without holding them.
pub fn suppression_hash(workspace: &str, kind: &str, value: &str) -> String {
    let mut h = Sha256::new();
    for part in ["parcours-erased", workspace, kind, value] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// What an erasure writes in place of a value it removes from a document it keeps.
pub const ERASED: &str = "[erased]";

/// A document an erasure keeps (an order, a loyalty entry), without the person: every key in
/// `drop_keys` is emptied (an object becomes `{}`, anything else is removed) wherever it is,
/// and every string that contains one of `needles` becomes [`ERASED`]. `None` when nothing
/// changed (or the document is not JSON: then it cannot hold a needle as a value, and the
/// caller deletes what it cannot scrub).
pub fn scrub_json(doc: &str, needles: &[String], drop_keys: &[&str]) -> Option<String> {
    let mut value: Value = serde_json::from_str(doc).ok()?;
    scrub_value(&mut value, needles, drop_keys).then(|| value.to_string())
}

/// [`scrub_json`] on a parsed value: whether anything changed.
pub fn scrub_value(value: &mut Value, needles: &[String], drop_keys: &[&str]) -> bool {
    match value {
        Value::String(s)
            if needles
                .iter()
                .any(|n| !n.is_empty() && s.contains(n.as_str())) =>
        {
            *s = ERASED.to_string();
            true
        }
        Value::Array(items) => items.iter_mut().fold(false, |changed, v| {
            scrub_value(v, needles, drop_keys) | changed
        }),
        Value::Object(map) => {
            let mut changed = false;
            for key in drop_keys {
                match map.get_mut(*key) {
                    Some(Value::Object(inner)) if !inner.is_empty() => {
                        inner.clear();
                        changed = true;
                    }
                    Some(Value::Object(_)) => {}
                    Some(_) => {
                        map.remove(*key);
                        changed = true;
                    }
                    None => {}
                }
            }
            // A key can be personal data too (a map by email).
            let keys: Vec<String> = map
                .keys()
                .filter(|k| {
                    needles
                        .iter()
                        .any(|n| !n.is_empty() && k.contains(n.as_str()))
                })
                .cloned()
                .collect();
            for k in keys {
                map.remove(&k);
                changed = true;
            }
            map.values_mut().fold(changed, |changed, v| {
                scrub_value(v, needles, drop_keys) | changed
            })
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn the_deadline_is_the_corresponding_date_next_month() {
        // 3 September 2026 is a Thursday; 3 October 2026 a Saturday: the next Monday.
        assert_eq!(deadline(d(2026, 9, 3), 1, &[]), d(2026, 10, 5));
        // 3 September 2025: 3 October 2025 is a Friday.
        assert_eq!(deadline(d(2025, 9, 3), 1, &[]), d(2025, 10, 3));
    }

    #[test]
    fn a_month_without_the_date_ends_on_its_last_day() {
        // 31 January 2028 → 29 February 2028 (leap year, a Tuesday).
        assert_eq!(deadline(d(2028, 1, 31), 1, &[]), d(2028, 2, 29));
        assert_eq!(deadline(d(2028, 1, 30), 1, &[]), d(2028, 2, 29));
        // 30 January 2026 → 28 February 2026, a Saturday → Monday 2 March.
        assert_eq!(deadline(d(2026, 1, 30), 1, &[]), d(2026, 3, 2));
        // 31 January 2029 → 28 February 2029, a Wednesday.
        assert_eq!(deadline(d(2029, 1, 31), 1, &[]), d(2029, 2, 28));
    }

    #[test]
    fn holidays_move_the_deadline_to_the_next_working_day() {
        // 24 December 2026 → 24 January 2027 is a Sunday → Monday 25; a holiday that
        // Monday → Tuesday 26.
        assert_eq!(deadline(d(2026, 12, 24), 1, &[]), d(2027, 1, 25));
        assert_eq!(
            deadline(d(2026, 12, 24), 1, &[d(2027, 1, 25)]),
            d(2027, 1, 26)
        );
        // Across a year, and three months for an extension.
        assert_eq!(deadline(d(2026, 11, 30), 3, &[]), d(2027, 3, 1));
    }

    #[test]
    fn the_suppression_hash_depends_on_workspace_kind_and_value() {
        let a = suppression_hash("w1", "email", "a@example.com");
        assert_eq!(a.len(), 64);
        assert_ne!(a, suppression_hash("w2", "email", "a@example.com"));
        assert_ne!(a, suppression_hash("w1", "user_id", "a@example.com"));
        assert_eq!(a, suppression_hash("w1", "email", "a@example.com"));
        assert!(!a.contains("example"));
    }

    #[test]
    fn scrubbing_keeps_the_document_without_the_person() {
        let order = r#"{"id":"o1","total_minor":1250,"customer":{"email":"zoe@example.com","user_id":"u-9"},
            "member":"card-77","lines":[{"sku":"A","note":"gift for zoe@example.com"}],
            "by_email":{"zoe@example.com":1}}"#;
        let needles = vec!["zoe@example.com".to_string(), "card-77".to_string()];
        let out = scrub_json(order, &needles, &["customer", "member"]).unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["customer"], serde_json::json!({}));
        assert!(v.get("member").is_none());
        assert_eq!(v["total_minor"], 1250);
        assert_eq!(v["lines"][0]["sku"], "A");
        assert_eq!(v["lines"][0]["note"], ERASED);
        assert_eq!(v["by_email"], serde_json::json!({}));
        assert!(!out.contains("zoe") && !out.contains("card-77") && !out.contains("u-9"));
        // Nothing of hers: unchanged.
        assert_eq!(scrub_json(r#"{"id":"o2"}"#, &needles, &["customer"]), None);
        assert_eq!(scrub_json("not json", &needles, &[]), None);
    }
}
