//! Privacy rules with no storage in them: the legal deadline of a data subject's request, the
//! hashed entries that keep an erased person's identifiers out after her erasure, and the
//! scrubbing of the documents an erasure must keep (an order without its customer).

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate, Weekday};
use serde::{Deserialize, Serialize};
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

/// What Parcours keeps of a client's IP address (`context.ip`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IpAddresses {
    Keep,
    /// IPv4 to its /24 (`203.0.113.0`), IPv6 to its /48: a town, not a home.
    #[default]
    Truncate,
    Drop,
}

/// What Parcours keeps of a precise location (`context.location.latitude`/`longitude`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PreciseLocation {
    Keep,
    /// Kept when the event itself carries consent to [`LOCATION_PURPOSE`]
    /// (`context.consent.categoryPreferences.location: true`); dropped otherwise.
    #[default]
    WithConsent,
    Drop,
}

/// The consent purpose that allows keeping a precise location.
pub const LOCATION_PURPOSE: &str = "location";

/// How long each category of data is kept, in days (none: until deleted).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_days: Option<u32>,
    /// Events by name (`Product Viewed`: 90), before `events_days`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub events_by_name: BTreeMap<String, u32>,
    /// Events by type (`page`: 30), before `events_days`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub events_by_type: BTreeMap<String, u32>,
    /// The log of messages sent (their outbox rows, receipts and contacts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages_days: Option<u32>,
    /// What a message said (its rendered body): after this, only that it was sent.
    #[serde(default = "ninety", skip_serializing_if = "Option::is_none")]
    pub message_bodies_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine_days: Option<u32>,
    /// Destination deliveries and their attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_logs_days: Option<u32>,
}

fn ninety() -> Option<u32> {
    Some(90)
}

/// A workspace's privacy settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacySettings {
    #[serde(default)]
    pub ip_addresses: IpAddresses,
    #[serde(default)]
    pub precise_location: PreciseLocation,
    #[serde(default = "Retention::default_kept")]
    pub retention: Retention,
    /// Days that are not working days (a deadline on one moves to the next working day).
    /// `YYYY-MM-DD`.
    #[serde(default)]
    pub holidays: Vec<String>,
    /// The consents a customer's preference page offers (`marketing:email` …).
    #[serde(default = "default_preferences")]
    pub preferences: Vec<String>,
}

impl Retention {
    fn default_kept() -> Self {
        Self {
            message_bodies_days: ninety(),
            ..Self::default()
        }
    }
}

fn default_preferences() -> Vec<String> {
    [
        "marketing:email",
        "marketing:sms",
        "marketing:push",
        "marketing:ads",
    ]
    .map(String::from)
    .to_vec()
}

impl Default for PrivacySettings {
    fn default() -> Self {
        Self {
            ip_addresses: IpAddresses::default(),
            precise_location: PreciseLocation::default(),
            retention: Retention::default_kept(),
            holidays: vec![],
            preferences: default_preferences(),
        }
    }
}

/// The most days a retention can say (a hundred years).
pub const MAX_RETENTION_DAYS: u32 = 36_500;

impl PrivacySettings {
    /// Reads and checks settings: what is wrong, in words.
    pub fn parse(json: &str) -> Result<Self, String> {
        let s: Self = serde_json::from_str(json).map_err(|e| e.to_string())?;
        s.check()?;
        Ok(s)
    }

    pub fn check(&self) -> Result<(), String> {
        let r = &self.retention;
        let days = [
            r.events_days,
            r.messages_days,
            r.message_bodies_days,
            r.quarantine_days,
            r.delivery_logs_days,
        ]
        .into_iter()
        .flatten()
        .chain(r.events_by_name.values().copied())
        .chain(r.events_by_type.values().copied());
        for d in days {
            if !(1..=MAX_RETENTION_DAYS).contains(&d) {
                return Err(format!(
                    "a retention is 1 to {MAX_RETENTION_DAYS} days (leave it out to keep until deleted); got {d}"
                ));
            }
        }
        for t in r.events_by_type.keys() {
            if crate::spec::EventType::parse(t).is_none() {
                return Err(format!(
                    "`{t}` is not an event type (track, identify, page, screen, group, alias)"
                ));
            }
        }
        if r.events_by_name.len() + r.events_by_type.len() > 200 {
            return Err("at most 200 retention rules by name and type".into());
        }
        if self.holidays.len() > 1000 {
            return Err("at most 1000 holidays".into());
        }
        if let Some(bad) = self
            .holidays
            .iter()
            .find(|h| NaiveDate::parse_from_str(h, "%Y-%m-%d").is_err())
        {
            return Err(format!("holiday `{bad}` is not a date YYYY-MM-DD"));
        }
        if self.preferences.is_empty() || self.preferences.len() > 20 {
            return Err("the preference page offers 1 to 20 consents".into());
        }
        for p in &self.preferences {
            let ok = (1..=64).contains(&p.len())
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == ':');
            if !ok {
                return Err(format!(
                    "`{p}` is not a consent key (a-z 0-9 _, a purpose or purpose:channel)"
                ));
            }
        }
        Ok(())
    }

    /// The holidays as dates (the ones that read; [`PrivacySettings::check`] refuses others).
    pub fn holiday_dates(&self) -> Vec<NaiveDate> {
        self.holidays
            .iter()
            .filter_map(|h| NaiveDate::parse_from_str(h, "%Y-%m-%d").ok())
            .collect()
    }

    /// What an event keeps of its IP address and precise location: `true` when it changed.
    pub fn apply(&self, event: &mut Value) -> bool {
        let mut changed = false;
        let consents_to_location = event
            .pointer("/context/consent/categoryPreferences")
            .and_then(Value::as_object)
            .and_then(|p| {
                p.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(LOCATION_PURPOSE))
            })
            .and_then(|(_, v)| v.as_bool())
            == Some(true);
        let Some(ctx) = event.get_mut("context").and_then(Value::as_object_mut) else {
            return false;
        };
        if self.ip_addresses != IpAddresses::Keep {
            if let Some(ip) = ctx.get("ip").cloned() {
                let kept = match (self.ip_addresses, ip.as_str()) {
                    (IpAddresses::Truncate, Some(s)) => truncate_ip(s),
                    _ => None,
                };
                match kept {
                    Some(t) if ip.as_str() == Some(t.as_str()) => {}
                    Some(t) => {
                        ctx.insert("ip".into(), Value::String(t));
                        changed = true;
                    }
                    None => {
                        ctx.remove("ip");
                        changed = true;
                    }
                }
            }
        }
        let drop_location = match self.precise_location {
            PreciseLocation::Keep => false,
            PreciseLocation::WithConsent => !consents_to_location,
            PreciseLocation::Drop => true,
        };
        if drop_location {
            if let Some(loc) = ctx.get_mut("location").and_then(Value::as_object_mut) {
                for k in ["latitude", "longitude", "speed"] {
                    changed |= loc.remove(k).is_some();
                }
            }
        }
        changed
    }
}

/// An IP address cut to its network: IPv4 /24, IPv6 /48. `None` when it is not one.
pub fn truncate_ip(ip: &str) -> Option<String> {
    match ip.trim().parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            Some(std::net::Ipv4Addr::new(a, b, c, 0).to_string())
        }
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            Some(std::net::Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0).to_string())
        }
    }
}

/// The name of a workspace's preference-link secret among its settings.
pub const PREFERENCE_SECRET: &str = "preference_secret";

fn preference_mac(secret: &str, workspace: &str, profile: &str) -> hmac::Hmac<Sha256> {
    use hmac::Mac;
    let mut m = hmac::Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    m.update(b"preferences\0");
    m.update(workspace.as_bytes());
    m.update(b"\0");
    m.update(profile.as_bytes());
    m
}

/// The path of a customer's preference page: signed (HMAC-SHA256 under the workspace's
/// secret, 128 bits), so only the link Parcours gave opens it, and it names no identifier.
pub fn preference_path(secret: &str, workspace: &str, profile: &str) -> String {
    use hmac::Mac;
    let tag = preference_mac(secret, workspace, profile)
        .finalize()
        .into_bytes();
    let sig: String = tag[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("/v1/preferences/{workspace}/{profile}/{sig}")
}

/// Whether `sig` signs this workspace's and profile's preference page (constant time).
pub fn preference_signature_ok(secret: &str, workspace: &str, profile: &str, sig: &str) -> bool {
    use hmac::Mac;
    if sig.len() != 32 || !sig.bytes().all(|b| b.is_ascii_hexdigit()) {
        return false;
    }
    let bytes: Vec<u8> = (0..16)
        .filter_map(|i| u8::from_str_radix(&sig[2 * i..2 * i + 2], 16).ok())
        .collect();
    preference_mac(secret, workspace, profile)
        .verify_truncated_left(&bytes)
        .is_ok()
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
    fn preference_links_are_signed_per_workspace_and_profile() {
        let path = preference_path("s3cret", "ws_a", "p_1");
        let sig = path.rsplit('/').next().unwrap();
        assert!(path.starts_with("/v1/preferences/ws_a/p_1/"));
        assert!(preference_signature_ok("s3cret", "ws_a", "p_1", sig));
        assert!(!preference_signature_ok("s3cret", "ws_a", "p_2", sig));
        assert!(!preference_signature_ok("s3cret", "ws_b", "p_1", sig));
        assert!(!preference_signature_ok("other", "ws_a", "p_1", sig));
        assert!(!preference_signature_ok(
            "s3cret",
            "ws_a",
            "p_1",
            &sig[..31]
        ));
        assert!(!preference_signature_ok("s3cret", "ws_a", "p_1", "zz"));
        let mut flipped = sig.to_string();
        flipped.replace_range(0..1, if sig.starts_with('0') { "1" } else { "0" });
        assert!(!preference_signature_ok("s3cret", "ws_a", "p_1", &flipped));
    }

    #[test]
    fn ip_addresses_are_cut_to_their_network() {
        assert_eq!(truncate_ip("203.0.113.77").as_deref(), Some("203.0.113.0"));
        assert_eq!(
            truncate_ip("2001:db8:85a3:8d3:1319:8a2e:370:7348").as_deref(),
            Some("2001:db8:85a3::")
        );
        assert_eq!(truncate_ip("not an ip"), None);
    }

    #[test]
    fn settings_apply_to_an_event() {
        let defaults = PrivacySettings::default();
        let mut e = serde_json::json!({"context": {"ip": "203.0.113.77",
            "location": {"latitude": 45.76, "longitude": 4.83, "city": "Lyon"}}});
        assert!(defaults.apply(&mut e));
        assert_eq!(e["context"]["ip"], "203.0.113.0");
        assert_eq!(
            e["context"]["location"],
            serde_json::json!({"city": "Lyon"})
        );
        // With consent to location in the event, the location stays.
        let mut e = serde_json::json!({"context": {"location": {"latitude": 45.76},
            "consent": {"categoryPreferences": {"Location": true}}}});
        assert!(!defaults.apply(&mut e));
        assert_eq!(e["context"]["location"]["latitude"], 45.76);
        // Dropped; or kept as it came.
        let drop =
            PrivacySettings::parse(r#"{"ip_addresses": "drop", "precise_location": "drop"}"#)
                .unwrap();
        let mut e = serde_json::json!({"context": {"ip": "1.2.3.4", "location": {"latitude": 1,
            "longitude": 2}, "consent": {"categoryPreferences": {"location": true}}}});
        assert!(drop.apply(&mut e));
        assert!(e["context"].get("ip").is_none());
        assert_eq!(e["context"]["location"], serde_json::json!({}));
        let keep =
            PrivacySettings::parse(r#"{"ip_addresses": "keep", "precise_location": "keep"}"#)
                .unwrap();
        let mut e = serde_json::json!({"context": {"ip": "1.2.3.4", "location": {"latitude": 1}}});
        assert!(!keep.apply(&mut e));
        // A value that is not an address is not kept under truncation.
        let mut e = serde_json::json!({"context": {"ip": "home"}});
        assert!(defaults.apply(&mut e));
        assert!(e["context"].get("ip").is_none());
    }

    #[test]
    fn settings_are_checked() {
        let s = PrivacySettings::default();
        assert_eq!(s.retention.message_bodies_days, Some(90));
        assert_eq!(PrivacySettings::parse("{}").unwrap(), s);
        for bad in [
            r#"{"retention": {"events_days": 0}}"#,
            r#"{"retention": {"events_by_type": {"click": 3}}}"#,
            r#"{"retention": {"forever": true}}"#,
            r#"{"preferences": []}"#,
            r#"{"preferences": ["Marketing Email"]}"#,
            r#"{"holidays": ["25/12/2026"]}"#,
            r#"{"ip_addresses": "hash"}"#,
        ] {
            assert!(PrivacySettings::parse(bad).is_err(), "{bad}");
        }
        let ok = PrivacySettings::parse(
            r#"{"retention": {"events_by_name": {"Product Viewed": 90}, "events_by_type": {"page": 30}, "message_bodies_days": 7},
                "holidays": ["2026-12-25"], "preferences": ["marketing:email", "location"]}"#,
        )
        .unwrap();
        assert_eq!(ok.holiday_dates(), [d(2026, 12, 25)]);
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
