//! The demo brand's data: deterministic, realistic, and shaped as the highlights say.

use std::collections::{HashMap, HashSet};

use chrono::DateTime;

use super::*;

/// 2026-08-24T00:00:00Z.
const END_MS: i64 = 1_787_529_600_000;

fn config(seed: u64) -> DemoConfig {
    DemoConfig {
        customers: 300,
        days: 60,
        seed,
        end_ms: END_MS,
    }
}

fn str_at<'a>(event: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(event, |v, key| v.get(key))?.as_str()
}

#[test]
fn the_same_seed_gives_the_same_events() {
    let (a, b) = (generate(&config(7)), generate(&config(7)));
    assert_eq!(a.len(), b.len());
    assert!(a
        .iter()
        .zip(&b)
        .all(|(x, y)| x.source == y.source && x.event == y.event));
    let other = generate(&config(8));
    assert!(a.len() != other.len() || a.iter().zip(&other).any(|(x, y)| x.event != y.event));
}

#[test]
fn timestamps_are_sorted_millisecond_utc_and_within_the_period() {
    let cfg = config(1);
    let events = generate(&cfg);
    assert!(events.len() > 5_000, "only {} events", events.len());
    let start = cfg.end_ms - i64::from(cfg.days) * DAY;
    let mut previous = i64::MIN;
    for e in &events {
        let ts = str_at(&e.event, &["timestamp"]).expect("every event has a timestamp");
        assert_eq!(ts.len(), "2026-08-24T10:15:00.123Z".len(), "{ts}");
        assert!(ts.ends_with('Z'), "{ts}");
        let ms = DateTime::parse_from_rfc3339(ts)
            .expect("RFC 3339")
            .timestamp_millis();
        assert!(
            (start..=cfg.end_ms).contains(&ms),
            "{ts} is outside the period"
        );
        assert!(ms >= previous, "{ts} comes after a later event");
        previous = ms;
    }
}

#[test]
fn message_ids_are_unique() {
    let events = generate(&config(2));
    let ids: HashSet<&str> = events
        .iter()
        .map(|e| str_at(&e.event, &["messageId"]).expect("every event has a messageId"))
        .collect();
    assert_eq!(ids.len(), events.len());
    assert!(
        ids.iter().all(|id| id.len() < 100),
        "Segment drops messageIds of 100 characters or more"
    );
}

#[test]
fn every_event_is_a_valid_segment_call_from_a_known_source() {
    let sources: HashSet<&str> = demo_sources().iter().map(|s| s.name).collect();
    assert_eq!(sources.len(), 8);
    let events = generate(&config(3));
    let mut seen_sources = HashSet::new();
    for e in &events {
        assert!(sources.contains(e.source), "unknown source {}", e.source);
        seen_sources.insert(e.source);
        let kind = str_at(&e.event, &["type"]).expect("every event has a type");
        assert!(
            ["track", "identify", "page", "screen"].contains(&kind),
            "{kind}"
        );
        let user = str_at(&e.event, &["userId"]).filter(|s| !s.is_empty());
        let anonymous = str_at(&e.event, &["anonymousId"]).filter(|s| !s.is_empty());
        assert!(
            user.is_some() || anonymous.is_some(),
            "no identity on {}",
            e.event
        );
        if kind == "track" {
            assert!(
                str_at(&e.event, &["event"]).is_some_and(|n| !n.is_empty()),
                "unnamed track {}",
                e.event
            );
        }
        if e.source == WEB_SHOP {
            assert_eq!(
                str_at(&e.event, &["context", "library", "name"]),
                Some("analytics.js")
            );
        }
        assert!(
            serde_json::to_vec(&e.event).unwrap().len() < 32 * 1024,
            "events must fit Segment's 32 KB"
        );
    }
    assert_eq!(seen_sources, sources, "every source sends something");
}

#[test]
fn shared_tablets_carry_many_different_customers() {
    let events = generate(&config(4));
    let mut users_by_tablet: HashMap<&str, HashSet<&str>> = HashMap::new();
    for e in &events {
        if let Some(tablet) =
            str_at(&e.event, &["anonymousId"]).filter(|a| a.starts_with("tablet-"))
        {
            assert_eq!(
                str_at(&e.event, &["context", "device", "id"]),
                Some(format!("tablet-device-{}", &tablet[7..]).as_str())
            );
            let user =
                str_at(&e.event, &["userId"]).expect("every tablet event names its customer");
            users_by_tablet.entry(tablet).or_default().insert(user);
        }
    }
    assert!(
        users_by_tablet.values().any(|users| users.len() >= 3),
        "{users_by_tablet:?}"
    );
}

/// The customer behind an event: its userId, or the userId its anonymousId identified as.
fn person<'a>(e: &'a DemoEvent, user_of_anonymous: &HashMap<&'a str, &'a str>) -> Option<&'a str> {
    str_at(&e.event, &["userId"]).or_else(|| {
        str_at(&e.event, &["anonymousId"]).and_then(|a| user_of_anonymous.get(a).copied())
    })
}

fn ordered_products(e: &DemoEvent) -> Vec<&str> {
    let products = e.event["properties"]["products"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    products
        .iter()
        .filter_map(|p| p["product_id"].as_str())
        .collect()
}

#[test]
fn some_carts_abandoned_online_are_bought_in_store() {
    let events = generate(&config(5));
    let mut user_of_anonymous: HashMap<&str, &str> = HashMap::new();
    for e in &events {
        if let (Some("identify"), Some(user), Some(anonymous)) = (
            str_at(&e.event, &["type"]),
            str_at(&e.event, &["userId"]),
            str_at(&e.event, &["anonymousId"]),
        ) {
            user_of_anonymous.insert(anonymous, user);
        }
    }

    // (customer, product) added to a web cart and not ordered online since.
    let mut waiting: HashSet<(&str, &str)> = HashSet::new();
    let mut completed_in_store = 0;
    for e in &events {
        let Some(user) = person(e, &user_of_anonymous) else {
            continue;
        };
        match (e.source, str_at(&e.event, &["event"])) {
            (WEB_SHOP, Some("Product Added")) => {
                if let Some(product) = str_at(&e.event, &["properties", "product_id"]) {
                    waiting.insert((user, product));
                }
            }
            (WEB_SHOP, Some("Order Completed")) => {
                for product in ordered_products(e) {
                    waiting.remove(&(user, product));
                }
            }
            (STORES_POS, Some("Order Completed")) => {
                for product in ordered_products(e) {
                    completed_in_store += usize::from(waiting.remove(&(user, product)));
                }
            }
            _ => {}
        }
    }
    assert!(completed_in_store >= 1);
}

#[test]
fn lapsed_customers_are_silent_at_the_end_and_withdrawn_consent_stops_campaigns() {
    let cfg = DemoConfig {
        customers: 300,
        days: 90,
        seed: 6,
        end_ms: END_MS,
    };
    let customers = plan_customers(&cfg);
    let lapsed: HashSet<&str> = customers
        .iter()
        .filter(|c| c.persona == Persona::Lapsed)
        .map(|c| c.user_id.as_str())
        .collect();
    assert!(!lapsed.is_empty());
    let mut withdrawn: HashSet<&str> = HashSet::new();
    let mut campaigns_after_withdrawal = 0;
    let silent_from = cfg.end_ms - LAPSED_SILENCE;
    let events = generate(&cfg);
    for e in &events {
        let Some(user) = str_at(&e.event, &["userId"]) else {
            continue;
        };
        let at = DateTime::parse_from_rfc3339(str_at(&e.event, &["timestamp"]).unwrap())
            .unwrap()
            .timestamp_millis();
        assert!(
            !(lapsed.contains(user) && at >= silent_from),
            "lapsed {user} is active at {at}"
        );
        match str_at(&e.event, &["event"]) {
            Some("Consent Preference Updated")
                if e.event["context"]["consent"]["categoryPreferences"]["marketing"] == false =>
            {
                withdrawn.insert(user);
            }
            Some("Email Delivered" | "SMS Delivered") if withdrawn.contains(user) => {
                campaigns_after_withdrawal += 1
            }
            _ => {}
        }
    }
    assert!(!withdrawn.is_empty());
    assert_eq!(campaigns_after_withdrawal, 0);
}

#[test]
fn store_only_customers_never_use_the_web_or_the_apps() {
    let cfg = config(9);
    let store_only: HashSet<String> = plan_customers(&cfg)
        .into_iter()
        .filter(|c| c.persona == Persona::StoreOnly)
        .map(|c| c.user_id)
        .collect();
    assert!(!store_only.is_empty());
    for e in generate(&cfg) {
        if let Some(user) = str_at(&e.event, &["userId"]).filter(|u| store_only.contains(*u)) {
            assert!(
                ![WEB_SHOP, IOS_APP, ANDROID_APP].contains(&e.source),
                "{user} on {}",
                e.source
            );
        }
    }
}

#[test]
fn highlights_name_the_scenarios() {
    let lines = highlights(&config(7));
    let text: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
    let text = text.join("\n");
    for expected in [
        "tablet-store_1",
        "Omnichannel",
        "typed differently",
        "Phone formats",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
}

#[test]
fn emails_are_unique_and_phones_appear_in_both_formats() {
    let customers = plan_customers(&config(10));
    let emails: HashSet<&str> = customers.iter().map(|c| c.email.as_str()).collect();
    assert_eq!(emails.len(), customers.len());
    assert!(customers
        .iter()
        .any(|c| c.email_as_typed.trim() != c.email_as_typed));
    assert!(customers
        .iter()
        .any(|c| c.email_as_typed.trim() != c.email_as_typed.trim().to_lowercase()));
    let phone = Phone { line: 123 };
    assert_eq!(
        (phone.national().as_str(), phone.e164().as_str()),
        ("06 39 98 01 23", "+33639980123")
    );
}
