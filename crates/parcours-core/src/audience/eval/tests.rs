use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::*;
use crate::audience::parse;
use crate::time::DAY;

const HOUR: Millis = 3_600_000;
const NOW: Millis = 1_780_000_000_000;

fn profile() -> Profile {
    serde_json::from_value(json!({
        "id": "p1",
        "identifiers": [{"type": "email", "value": "ana@example.com"}, {"type": "user_id", "value": "u1"}],
        "traits": {
            "plan": {"value": "gold", "ts": 1, "mid": "m"},
            "age": {"value": 41, "ts": 1, "mid": "m"},
            "tags": {"value": ["vip", "newsletter"], "ts": 1, "mid": "m"},
            "city": {"value": "Lyon", "ts": 1, "mid": "m"},
            "nothing": {"value": null, "ts": 1, "mid": "m"},
            "signed_up_at": {"value": "2026-05-01T00:00:00Z", "ts": 1, "mid": "m"}
        },
        "consent": {
            "marketing:email": {"granted": true, "ts": 1, "received_at": 1, "message_id": "m",
                                "source_id": "s", "channel": "web", "method": "consent_event"},
            "marketing:sms": {"granted": false, "ts": 1, "received_at": 1, "message_id": "m",
                              "source_id": "s", "channel": "web", "method": "consent_event"},
            "newsletter": {"granted": true, "ts": 1, "received_at": 1, "message_id": "m",
                           "source_id": "s", "channel": "web", "method": "context_consent"}
        },
        "channels": {
            "web": {"first_seen": NOW - 100 * DAY, "last_seen": NOW - 2 * HOUR, "events": 5},
            "store": {"first_seen": NOW - 50 * DAY, "last_seen": NOW - 40 * DAY, "events": 2}
        },
        "first": {"ts": NOW - 100 * DAY, "mid": "a"},
        "last": {"ts": NOW - 2 * HOUR, "mid": "z"},
        "last_channel": "web",
        "events": 7,
        "entangled": false
    }))
    .unwrap()
}

fn ev(name: &str, ago: Millis, channel: Channel, properties: Value) -> EventFact {
    EventFact {
        name: name.into(),
        ts: NOW - ago,
        channel,
        properties,
    }
}

fn events() -> Vec<EventFact> {
    vec![
        ev(
            "Product Viewed",
            3 * HOUR,
            Channel::Web,
            json!({"sku": "A"}),
        ),
        ev(
            "Product Added",
            50 * 60_000,
            Channel::Web,
            json!({"sku": "A", "price": 80}),
        ),
        ev(
            "Order Completed",
            40 * DAY,
            Channel::Store,
            json!({"total": 120, "currency": "EUR"}),
        ),
        ev(
            "Order Completed",
            10 * DAY,
            Channel::Web,
            json!({"total": 60.5, "currency": "EUR"}),
        ),
        ev(
            "Order Completed",
            2 * HOUR,
            Channel::Web,
            json!({"total": 300, "currency": "USD"}),
        ),
    ]
}

struct Case {
    profile: Profile,
    events: Vec<EventFact>,
    computed: BTreeMap<String, Value>,
    memberships: BTreeSet<String>,
}

impl Case {
    fn new() -> Self {
        Self {
            profile: profile(),
            events: events(),
            computed: BTreeMap::from([("ltv".to_string(), json!(480.5))]),
            memberships: BTreeSet::from(["vip".to_string()]),
        }
    }

    fn subject(&self) -> Subject<'_> {
        Subject {
            profile: &self.profile,
            events: &self.events,
            computed: &self.computed,
            memberships: &self.memberships,
            unknown_consent_granted: false,
        }
    }

    fn at(&self, text: &str, now: Millis) -> Verdict {
        let c = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let fast = c.evaluate(&self.subject(), now);
        let explained = c.explain(&self.subject(), now);
        assert_eq!(fast.matched, explained.matched, "{text}");
        assert_eq!(fast.next_change, explained.next_change, "{text}");
        fast
    }

    fn check(&self, text: &str) -> bool {
        self.at(text, NOW).matched
    }
}

#[test]
fn trait_comparisons() {
    let c = Case::new();
    for (text, want) in [
        (r#"trait plan = "gold""#, true),
        (r#"trait plan = "silver""#, false),
        (r#"trait plan != "silver""#, true),
        (r#"trait missing != "x""#, true),
        ("trait age > 40", true),
        ("trait age < 40", false),
        ("trait age >= 41", true),
        ("trait age <= 40.5", false),
        (r#"trait age = "41""#, true),
        (r#"trait city contains "yo""#, true),
        (r#"trait tags contains "vip""#, true),
        (r#"trait tags contains "gold""#, false),
        ("trait city exists", true),
        ("trait nothing exists", false),
        ("trait missing exists", false),
        (r#"trait city in ["Paris", "Lyon"]"#, true),
        (r#"trait city in ["Paris"]"#, false),
        ("trait age > 100 or trait age < 50", true),
        ("not trait age > 40", false),
    ] {
        assert_eq!(c.check(text), want, "{text}");
    }
}

#[test]
fn a_date_trait_flips_exactly_when_the_relative_date_passes() {
    let c = Case::new();
    let signed = crate::time::parse_timestamp("2026-05-01T00:00:00Z").unwrap();
    let text = "trait signed_up_at before 30 days ago";
    let before = c.at(text, signed + 30 * DAY - 1);
    assert!(!before.matched);
    assert_eq!(before.next_change, Some(signed + 30 * DAY));
    let at = c.at(text, signed + 30 * DAY);
    assert!(at.matched);
    assert_eq!(at.next_change, None);
    let after = "trait signed_up_at after 30 days ago";
    assert!(c.at(after, signed + 30 * DAY - 1).matched);
    assert!(!c.at(after, signed + 30 * DAY).matched);
}

#[test]
fn event_conditions_with_filters_measures_and_windows() {
    let c = Case::new();
    for (text, want) in [
        (r#"did "Order Completed""#, true),
        (r#"did "Refund Issued""#, false),
        (r#"did not "Refund Issued""#, true),
        (r#"did "Order Completed" where total > 100"#, true),
        (
            r#"did "Order Completed" where total > 100, currency = "EUR""#,
            true,
        ),
        (
            r#"did "Order Completed" where total > 200, currency = "EUR""#,
            false,
        ),
        (r#"did "Order Completed" count >= 3"#, true),
        (r#"did "Order Completed" count >= 4"#, false),
        (r#"did "Order Completed" count >= 2 within 30 days"#, true),
        (r#"did "Order Completed" count >= 3 within 30 days"#, false),
        (r#"did "Order Completed" sum of total = 480.5"#, true),
        (r#"did "Order Completed" sum of total > 480.5"#, false),
        (r#"did "Order Completed" avg of total > 160"#, true),
        (r#"did "Order Completed" min of total = 60.5"#, true),
        (r#"did "Order Completed" max of total = 300"#, true),
        (
            r#"did "Order Completed" max of total = 300 within 1 hour"#,
            false,
        ),
        (r#"did "Order Completed" within 1 day"#, true),
        (r#"did not "Order Completed" within 1 hour"#, true),
        (r#"did "Product Added" where sku = "A" within 1 hour"#, true),
        (
            r#"did "Product Added" where sku = "B" within 1 hour"#,
            false,
        ),
    ] {
        assert_eq!(c.check(text), want, "{text}");
    }
    // Between absolute dates: the order 40 days ago.
    let from = crate::time::format_timestamp(NOW - 41 * DAY);
    let to = crate::time::format_timestamp(NOW - 39 * DAY);
    let text = format!(
        r#"did "Order Completed" where currency = "EUR" count = 1 between "{from}" and "{to}""#
    );
    assert!(c.check(&text), "{text}");
    let text =
        format!(r#"did "Order Completed" where currency = "USD" between "{from}" and "{to}""#);
    assert!(!c.check(&text), "{text}");
}

#[test]
fn a_windowed_event_leaves_exactly_when_the_window_passes() {
    let c = Case::new();
    // Product Added 50 minutes before NOW: in "the last hour" until NOW + 10 minutes.
    let text = r#"did "Product Added" within 1 hour"#;
    let v = c.at(text, NOW);
    assert!(v.matched);
    let leaves = NOW + 10 * 60_000;
    assert_eq!(v.next_change, Some(leaves));
    assert!(c.at(text, leaves - 1).matched);
    let gone = c.at(text, leaves);
    assert!(!gone.matched);
    assert_eq!(gone.next_change, None);
    // The negation flips at the same instant.
    let not = r#"not did "Product Added" within 1 hour"#;
    assert!(!c.at(not, leaves - 1).matched);
    assert!(c.at(not, leaves).matched);
    // A count drops below the threshold when the older of two events leaves.
    let two = r#"did "Order Completed" count >= 2 within 11 days"#;
    let v = c.at(two, NOW);
    assert!(v.matched);
    assert_eq!(v.next_change, Some(NOW + DAY));
    assert!(!c.at(two, NOW + DAY).matched);
}

#[test]
fn the_answer_changes_when_it_differs_not_when_it_may() {
    let c = Case::new();
    let changes = |text: &str, now: Millis| {
        let cond = parse(text).unwrap();
        let v = cond.evaluate(&c.subject(), now);
        (
            v.matched,
            v.next_change,
            cond.changes_at(&c.subject(), now, &v),
        )
    };
    // 480.5 within 41 days: the store order (120) leaves in 1 day and 360.5 remain; the
    // answer changes only when the web order of 10 days ago leaves too.
    assert_eq!(
        changes(
            r#"did "Order Completed" sum of total >= 350 within 41 days"#,
            NOW
        ),
        (true, Some(NOW + DAY), Some(NOW + 31 * DAY))
    );
    // Below the threshold, events leaving cannot bring it back: no instant at all.
    assert_eq!(
        changes(
            r#"did "Order Completed" sum of total >= 1000 within 41 days"#,
            NOW
        ),
        (false, Some(NOW + DAY), None)
    );
    // The negation changes at the same instants.
    assert_eq!(
        changes(
            r#"not did "Order Completed" sum of total >= 350 within 41 days"#,
            NOW
        ),
        (false, Some(NOW + DAY), Some(NOW + 31 * DAY))
    );
    // Where every instant changes the answer, it is the first.
    assert_eq!(
        changes(r#"did "Product Added" within 1 hour"#, NOW),
        (true, Some(NOW + 10 * 60_000), Some(NOW + 10 * 60_000))
    );
    // Past the lookahead, the last instant looked at is a wake-up: 20 orders, one a day,
    // each leaving a window that needs one.
    let mut many = Case::new();
    many.events = (0..20)
        .map(|d| ev("Order Completed", d * DAY, Channel::Web, json!({})))
        .collect();
    let cond = parse(r#"did "Order Completed" within 30 days"#).unwrap();
    let v = cond.evaluate(&many.subject(), NOW);
    let wake = cond.changes_at(&many.subject(), NOW, &v).unwrap();
    assert_eq!(wake, NOW + (30 - 19 + LOOKAHEAD as Millis) * DAY);
    assert!(cond.evaluate(&many.subject(), wake).matched);
    let v = cond.evaluate(&many.subject(), wake);
    assert_eq!(
        cond.changes_at(&many.subject(), wake, &v),
        Some(NOW + 30 * DAY)
    );
}

#[test]
fn a_future_dated_event_counts_from_its_time() {
    let mut c = Case::new();
    c.events
        .push(ev("Refund Issued", -HOUR, Channel::Web, json!({})));
    let v = c.at(r#"did "Refund Issued""#, NOW);
    assert!(!v.matched);
    assert_eq!(v.next_change, Some(NOW + HOUR));
    assert!(c.at(r#"did "Refund Issued""#, NOW + HOUR).matched);
}

#[test]
fn funnels_need_the_steps_in_order_within_the_window() {
    let c = Case::new();
    for (text, want) in [
        // Viewed 3 h ago, added 50 min ago: 2 h 10 min apart.
        (
            r#""Product Viewed" then "Product Added" within 3 hours"#,
            true,
        ),
        (
            r#""Product Viewed" then "Product Added" within 2 hours"#,
            false,
        ),
        // Added after viewed, never before.
        (
            r#""Product Added" then "Product Viewed" within 1 day"#,
            false,
        ),
        (
            r#""Product Viewed" then "Product Added" then "Order Completed" within 1 day"#,
            false,
        ),
        (
            r#""Product Viewed" then "Order Completed" within 1 day"#,
            true,
        ),
        (
            r#""Product Viewed" where sku = "B" then "Order Completed" within 1 day"#,
            false,
        ),
        (
            r#""Order Completed" then "Order Completed" within 31 days"#,
            true,
        ),
        (
            r#""Order Completed" then "Order Completed" within 29 days"#,
            true,
        ),
        (
            r#""Order Completed" where currency = "EUR" then "Order Completed" where currency = "EUR" within 29 days"#,
            false,
        ),
    ] {
        assert_eq!(c.check(text), want, "{text}");
    }
    // A later start can complete when the first start cannot.
    let mut c = Case::new();
    c.events = vec![
        ev("A", 10 * HOUR, Channel::Web, json!({})),
        ev("A", 2 * HOUR, Channel::Web, json!({})),
        ev("B", HOUR, Channel::Web, json!({})),
    ];
    assert!(c.check(r#""A" then "B" within 2 hours"#));
    assert!(!c.check(r#""A" then "B" within 30 minutes"#));
}

#[test]
fn channel_identifier_audience_consent_and_computed_conditions() {
    let c = Case::new();
    for (text, want) in [
        ("seen on web", true),
        ("seen on store", true),
        ("seen on app", false),
        ("seen on store within 30 days", false),
        ("seen on store within 60 days", true),
        ("seen on store and not seen on app", true),
        ("last channel is web", true),
        ("last channel is store", false),
        ("has email", true),
        ("has phone", false),
        ("is known", true),
        ("is anonymous", false),
        (r#"in audience "vip""#, true),
        (r#"in audience "lapsed""#, false),
        ("consent marketing:email granted", true),
        ("consent marketing:sms granted", false),
        ("consent marketing:sms withdrawn", true),
        ("consent marketing:sms unknown", false),
        // Never asked: neither granted nor withdrawn.
        ("consent marketing:push granted", false),
        ("consent marketing:push withdrawn", false),
        ("consent marketing:push unknown", true),
        ("consent marketing unknown", true),
        ("consent analytics withdrawn", false),
        // A channel question falls back to the purpose.
        ("consent newsletter:email granted", true),
        ("consent newsletter:sms unknown", false),
        ("consent newsletter granted", true),
        ("computed ltv > 400", true),
        ("computed ltv > 500", false),
        ("computed missing exists", false),
    ] {
        assert_eq!(c.check(text), want, "{text}");
    }
    let v = c.at("seen on web within 3 hours", NOW);
    assert!(v.matched);
    assert_eq!(v.next_change, Some(NOW + HOUR));
}

#[test]
fn event_conditions_can_name_channels() {
    let c = Case::new();
    // The profile's orders: one in store 40 days ago, the rest on the web.
    for (text, want) in [
        (r#"did "Order Completed" on store"#, true),
        (r#"did "Order Completed" on store within 30 days"#, false),
        (r#"did "Order Completed" on store within 60 days"#, true),
        (r#"did "Order Completed" on app"#, false),
        (r#"did "Order Completed" on ios, store count = 1"#, true),
        (r#"did not "Order Completed" on app"#, true),
        (
            r#"did "Product Added" on web within 1 hour and did "Order Completed" on store"#,
            true,
        ),
        // Funnel steps take channels too: the view on the web came after the store order,
        // and before the web orders.
        (
            r#""Product Viewed" on web then "Order Completed" on store within 1 day"#,
            false,
        ),
        (
            r#""Product Viewed" on web then "Order Completed" on web within 1 day"#,
            true,
        ),
        (
            r#""Product Viewed" on app then "Order Completed" within 1 day"#,
            false,
        ),
    ] {
        assert_eq!(c.check(text), want, "{text}");
    }
    let printed = parse(r#"did "Product Viewed" on web, app where sku = "A" count >= 2"#)
        .unwrap()
        .to_string();
    assert_eq!(
        printed,
        r#"did "Product Viewed" on web, app where sku = "A" count >= 2"#
    );
}

#[test]
fn since_is_when_the_condition_became_true() {
    let c = Case::new();
    let since = |text: &str| {
        let cond = parse(text).unwrap();
        assert!(cond.evaluate(&c.subject(), NOW).matched, "{text}");
        cond.qualified_since(&c.subject(), NOW)
    };
    // Orders: 120 (40 days ago, store), 60.5 (10 days ago), 300 (2 hours ago).
    assert_eq!(since(r#"did "Order Completed""#), NOW - 40 * DAY);
    assert_eq!(
        since(r#"did "Order Completed" sum of total > 150"#),
        NOW - 10 * DAY
    );
    assert_eq!(
        since(r#"did "Order Completed" sum of total > 200"#),
        NOW - 2 * HOUR
    );
    assert_eq!(since(r#"did "Order Completed" count >= 2"#), NOW - 10 * DAY);
    assert_eq!(
        since(r#"did "Product Added" within 1 hour"#),
        NOW - 50 * 60_000
    );
    // True since the store order left the 30-day window.
    assert_eq!(
        since(r#"not did "Order Completed" on store within 30 days"#),
        NOW - 10 * DAY
    );
    // A trait: since it was recorded.
    assert_eq!(since(r#"trait plan = "gold""#), 1);
    // Computed traits and other audiences keep no history: found true now.
    assert_eq!(since("computed ltv > 400"), NOW);
    assert_eq!(since(r#"did "Order Completed" and in audience "vip""#), NOW);
}

#[test]
fn a_filter_on_channel_is_refused_not_silently_empty() {
    let e = parse(r#"did "Order Completed" where channel = "store""#).unwrap_err();
    assert!(e.message.contains("on store"), "{e}");
    let json = serde_json::json!({"type": "event", "event": "E", "did": true,
        "where": [{"property": "channel", "test": {"op": "eq", "value": "store"}}]});
    assert!(crate::audience::from_json(&json).is_err());
    assert!(parse(r#"did "Order Completed" on moon"#).is_err());
}

#[test]
fn a_workspace_can_count_consent_never_asked_as_granted() {
    let c = Case::new();
    let subject = Subject {
        unknown_consent_granted: true,
        ..c.subject()
    };
    for (text, want) in [
        ("consent marketing:push granted", true),
        ("consent marketing:push unknown", true),
        ("consent marketing:sms granted", false),
        ("consent marketing:email granted", true),
    ] {
        let v = parse(text).unwrap().evaluate(&subject, NOW);
        assert_eq!(v.matched, want, "{text}");
    }
    let explained = parse("consent marketing:push granted")
        .unwrap()
        .explain(&subject, NOW);
    assert!(explained.found.contains("never asked"), "{explained:?}");
}

#[test]
fn and_or_schedule_the_earliest_change_of_any_part() {
    let c = Case::new();
    // The store order (40 days ago) is outside 30 days; the Product Added leaves in 10 min.
    let v = c.at(
        r#"trait plan = "gold" and (did "Product Added" within 1 hour or did "Order Completed" within 3 hours)"#,
        NOW,
    );
    assert!(v.matched);
    assert_eq!(v.next_change, Some(NOW + 10 * 60_000));
}

#[test]
fn explain_gives_each_part_its_answer_and_what_was_found() {
    let c = Case::new();
    let cond = parse(
        r#"trait plan = "gold" and did "Order Completed" count >= 5 within 30 days and not has phone"#,
    )
    .unwrap();
    let v = cond.explain(&c.subject(), NOW);
    assert!(!v.matched);
    assert_eq!(v.condition, "all of");
    let parts: Vec<(&str, bool, &str)> = v
        .parts
        .iter()
        .map(|p| (p.condition.as_str(), p.matched, p.found.as_str()))
        .collect();
    assert_eq!(
        parts,
        vec![
            (r#"trait plan = "gold""#, true, r#""gold""#),
            (
                r#"did "Order Completed" count >= 5 within 30 days"#,
                false,
                "2 matching event(s), count = 2"
            ),
            ("not", true, ""),
        ]
    );
    assert_eq!(v.parts[2].parts[0].found, "0 phone");
    // Plain evaluation builds no explanation.
    let fast = cond.evaluate(&c.subject(), NOW);
    assert!(fast.parts.is_empty() && fast.condition.is_empty());
}

#[test]
fn dependencies_are_read_from_the_tree() {
    let c = parse(
        r#"did "A" and ("B" then "C" within 1 hour or in audience "x") and computed ltv > 1"#,
    )
    .unwrap();
    assert_eq!(c.event_names(), BTreeSet::from(["A", "B", "C"]));
    assert_eq!(c.audiences(), BTreeSet::from(["x"]));
    assert_eq!(c.computed_traits(), BTreeSet::from(["ltv"]));
    assert!(c.reads_profile());
    assert!(!parse(r#"did "A" or not "A" then "B" within 1 hour"#)
        .unwrap()
        .reads_profile());
}

#[test]
fn audiences_are_ordered_after_those_they_use_and_cycles_are_refused() {
    let a = parse(r#"in audience "b""#).unwrap();
    let b = parse(r#"in audience "c""#).unwrap();
    let c = parse("has email").unwrap();
    let order = crate::audience::evaluation_order(&[("a", &a), ("b", &b), ("c", &c)]).unwrap();
    assert_eq!(order, vec!["c", "b", "a"]);
    let loop_c = parse(r#"in audience "a""#).unwrap();
    let err =
        crate::audience::evaluation_order(&[("a", &a), ("b", &b), ("c", &loop_c)]).unwrap_err();
    assert!(err.contains("refers to itself"), "{err}");
    let err = crate::audience::evaluation_order(&[("a", &a)]).unwrap_err();
    assert!(err.contains("no such audience"), "{err}");
}

#[test]
fn computed_object_fields_are_reached_with_a_dot() {
    let mut c = Case::new();
    c.computed.insert(
        "rfm".into(),
        json!({"recency": 4, "frequency": 2, "cell": "425", "segment": "loyal"}),
    );
    assert!(c.check(r#"computed rfm.segment = "loyal""#));
    assert!(c.check(r#"computed "rfm.recency" >= 4"#));
    assert!(!c.check("computed rfm.frequency > 2"));
    assert!(!c.check("computed rfm.missing exists"));
    assert!(c.check("computed ltv > 480"), "plain names still work");
    let cond = parse(r#"computed rfm.segment = "loyal" and computed ltv > 1"#).unwrap();
    assert_eq!(
        cond.computed_traits().into_iter().collect::<Vec<_>>(),
        vec!["ltv", "rfm"]
    );
}

/// The widest windows and ages give the right answer: nothing overflows near the limits
/// (`within 15250284452 weeks` once found nobody, as the sum wrapped around).
#[test]
fn the_widest_windows_and_ages_count_every_event() {
    let mut c = Case::new();
    c.events = (1..=5)
        .map(|i| {
            ev(
                "Order Completed",
                NOW - i * 1_000,
                Channel::Web,
                json!({"total": i}),
            )
        })
        .collect();
    let days = crate::audience::MAX_DURATION_MS / DAY;
    assert!(c.check(&format!(
        r#"did "Order Completed" count = 5 within {days} days"#
    )));
    assert!(c.check(&format!("trait signed_up_at after {days} days ago")));
    assert!(!c.check(&format!("trait signed_up_at before {days} days ago")));
    assert!(c.check(&format!(
        r#""Order Completed" then "Order Completed" within {days} days"#
    )));
    assert!(c.check(&format!("seen on web within {days} days")));
    assert!(
        !c.check(r#"did "Order Completed" within 1000 weeks"#),
        "1970 is more than 1000 weeks before now"
    );
}
