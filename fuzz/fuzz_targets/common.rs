//! What both audience targets check of an accepted condition.

use std::collections::{BTreeMap, BTreeSet};

use parcours_core::audience::{self, Condition, EventFact, Subject};
use parcours_core::Channel;
use serde_json::{json, Value};

/// The stored form reads back as the same condition.
pub fn json_round_trip(c: &Condition) {
    let stored = serde_json::to_string(c).expect("a condition serialises");
    let read: Value = serde_json::from_str(&stored).expect("its stored form parses");
    assert_eq!(audience::from_json(&read).as_ref(), Ok(c), "{stored}");
}

/// Evaluates and explains on a small profile, at the edges of time too.
pub fn evaluate(c: &Condition) {
    let profile: parcours_core::Profile = serde_json::from_value(json!({
        "id": "p",
        "identifiers": [{"type": "email", "value": "a@b.c"}],
        "traits": {"plan": {"value": "gold", "ts": 1, "mid": "m"},
                   "signed_up_at": {"value": "2026-01-01T00:00:00Z", "ts": 1, "mid": "m"}},
        "consent": {}, "channels": {},
        "first": {"ts": 0, "mid": "a"}, "last": {"ts": 1, "mid": "z"},
        "last_channel": "web", "events": 2, "entangled": false
    }))
    .expect("a profile");
    let events = vec![
        EventFact {
            name: "Order Completed".into(),
            ts: 1_000,
            channel: Channel::Web,
            properties: json!({"total": 120, "at": "2026-01-01T00:00:00Z"}),
        },
        EventFact {
            name: "Product Added".into(),
            ts: 253_402_300_799_999,
            channel: Channel::Store,
            properties: json!({"sku": "A"}),
        },
    ];
    let computed = BTreeMap::from([("ltv".to_string(), json!(500))]);
    let memberships = BTreeSet::from(["vip".to_string()]);
    let subject = Subject {
        profile: &profile,
        events: &events,
        computed: &computed,
        memberships: &memberships,
        unknown_consent_granted: false,
    };
    for now in [0, 1_780_000_000_000, 253_402_300_799_999] {
        let verdict = c.evaluate(&subject, now);
        let explained = c.explain(&subject, now);
        assert_eq!(verdict.matched, explained.matched);
        let _ = c.changes_at(&subject, now, &verdict);
        if verdict.matched {
            assert!(c.qualified_since(&subject, now) <= now);
        }
    }
}
