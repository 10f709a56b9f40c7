//! Delivery controls on a node, on both stores: a frequency cap counted on her calendar day in
//! her time zone, two journeys competing for it (the higher priority goes first, the other is
//! deferred to her next midnight, then sent, or dropped once it expired), and quiet hours in her
//! time zone, each decision recorded with its reason.

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::journeys::put_document as put;
use common::{eventually, start_with_clock, Backend, ShiftedClock, TestNode, ADMIN};
use parcours_core::journey::local;
use parcours_core::time::Clock;
use serde_json::{json, Value};

const H: i64 = 3_600_000;

fn promo(id: &str, priority: u8, event: &str) -> String {
    format!(
        "id: {id}\nstatus: live\npriority: {priority}\nentry:\n  event: {event}\nsteps:\n  - id: mail\n    send:\n      channel: email\n      subject: \"{id}\"\n      text: \"{id}\"\n"
    )
}

fn customer(user: &str) -> Value {
    json!({"type": "identify", "userId": user,
        "traits": {"email": format!("{user}@example.com"), "timezone": "America/New_York"},
        "context": {"consent": {"categoryPreferences": {"marketing": true}}}})
}

/// The subjects of the emails sent so far to `user`, oldest first.
async fn subjects(t: &TestNode, user: &str) -> Vec<String> {
    let (_, m) = t.get("/api/v1/messages?channel=email&limit=500").await;
    let mut out: Vec<String> = m["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["message"]["to"] == format!("{user}@example.com") && m["state"] == "done")
        .map(|m| m["message"]["subject"].as_str().unwrap().to_string())
        .collect();
    out.reverse();
    out
}

async fn decisions(t: &TestNode, user: &str, journey: &str) -> Vec<(String, String)> {
    let Some(p) = t.profile_of(ADMIN, "user_id", user).await else {
        return Vec::new();
    };
    let (_, runs) = t
        .get(&format!(
            "/api/v1/profiles/{}/journeys?journey={journey}",
            p["id"].as_str().unwrap()
        ))
        .await;
    runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["decisions"].as_array().unwrap().clone())
        .map(|d| {
            (
                d["code"].as_str().unwrap().to_string(),
                d["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

async fn caps_priority_and_quiet_hours_in_her_time_zone(backend: Backend) {
    let clock = Arc::new(ShiftedClock::default());
    let t = start_with_clock("journey-controls", backend, clock.clone(), |_| {}).await;
    let (status, err) = put(
        &t,
        "/api/v1/workspace/contact-policy",
        "application/json",
        r#"{"caps": [{"channel": "email", "max": 1, "per": "week"}]}"#,
    )
    .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (400, Some("invalid_contact_policy")),
        "{err}"
    );
    let policy =
        json!({"caps": [{"channel": "email", "max": 1, "per": "day"}], "expire_after": "2d"});
    let (status, saved) = put(
        &t,
        "/api/v1/workspace/contact-policy",
        "application/json",
        &policy.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{saved}");
    // The lower priority's id comes first: priority, not the order of ids, decides.
    for (id, priority) in [("a-low", 20), ("b-high", 80)] {
        let (status, r) = put(
            &t,
            &format!("/api/v1/journeys/{id}"),
            "application/yaml",
            &promo(id, priority, "Promo Viewed"),
        )
        .await;
        assert_eq!(status, 201, "{r}");
    }
    t.send(json!({"batch": [customer("ann"), {"type": "track", "userId": "ann", "event": "Promo Viewed"}]}))
        .await;
    eventually(
        Duration::from_secs(20),
        "the higher priority's email",
        || async { (subjects(&t, "ann").await == ["b-high"]).then_some(()) },
    )
    .await;
    let low = decisions(&t, "ann", "a-low").await;
    let deferred = low
        .iter()
        .find(|(c, _)| c == "deferred_cap")
        .unwrap_or_else(|| panic!("{low:?}"));
    // Deferred to her next midnight in New York.
    let now = clock.now();
    let ny = local::zone(Some("America/New_York"));
    let midnight = local::day_start(ny, local::local_date(ny, now).succ_opt().unwrap());
    assert!(
        deferred
            .1
            .contains(&parcours_core::time::format_timestamp(midnight)),
        "{deferred:?} (her next midnight is {})",
        parcours_core::time::format_timestamp(midnight)
    );
    // Her next day: the lower priority's email goes.
    clock.advance(midnight - now + 1_000);
    eventually(
        Duration::from_secs(20),
        "the deferred email, the next day",
        || async { (subjects(&t, "ann").await == ["b-high", "a-low"]).then_some(()) },
    )
    .await;

    // With a shorter expiry, a message that cannot fit before it expires is dropped.
    let policy =
        json!({"caps": [{"channel": "email", "max": 1, "per": "day"}], "expire_after": "1h"});
    put(
        &t,
        "/api/v1/workspace/contact-policy",
        "application/json",
        &policy.to_string(),
    )
    .await;
    t.send(json!({"batch": [customer("bob"), {"type": "track", "userId": "bob", "event": "Promo Viewed"}]}))
        .await;
    eventually(
        Duration::from_secs(20),
        "Bob's higher-priority email",
        || async { (subjects(&t, "bob").await == ["b-high"]).then_some(()) },
    )
    .await;
    let now = clock.now();
    let midnight = local::day_start(ny, local::local_date(ny, now).succ_opt().unwrap());
    // Just past her midnight: the next one is a day away, far beyond the 1 h expiry.
    assert!(midnight - now > H, "{now} {midnight}");
    let low = eventually(Duration::from_secs(20), "the drop", || async {
        let d = decisions(&t, "bob", "a-low").await;
        d.iter().any(|(c, _)| c == "capped").then_some(d)
    })
    .await;
    assert!(!low.iter().any(|(c, _)| c == "sent"), "{low:?}");

    // Quiet hours in her time zone: a window around her present hour defers the message to
    // its end, then it goes.
    put(
        &t,
        "/api/v1/workspace/contact-policy",
        "application/json",
        r#"{"caps": []}"#,
    )
    .await;
    let now = clock.now();
    // Her hour now.
    let here = ((now - local::day_start(ny, local::local_date(ny, now))) / H).clamp(0, 23) as u16;
    let quiet = format!(
        "quiet_hours: {{from: \"{:02}:00\", to: \"{:02}:00\"}}\n",
        here,
        (here + 2) % 24
    );
    let doc = promo("c-quiet", 50, "Quiet Test")
        .replace("status: live\n", &format!("status: live\n{quiet}"));
    let (status, r) = put(&t, "/api/v1/journeys/c-quiet", "application/yaml", &doc).await;
    assert_eq!(status, 201, "{r}");
    t.send(json!({"batch": [customer("cy"), {"type": "track", "userId": "cy", "event": "Quiet Test"}]}))
        .await;
    let d = eventually(
        Duration::from_secs(20),
        "the quiet-hours deferral",
        || async {
            let d = decisions(&t, "cy", "c-quiet").await;
            d.iter()
                .any(|(c, _)| c == "deferred_quiet_hours")
                .then_some(d)
        },
    )
    .await;
    assert!(
        d.iter().any(|(_, r)| r.contains("America/New_York")),
        "{d:?}"
    );
    assert!(subjects(&t, "cy").await.is_empty());
    clock.advance(2 * H + 60_000);
    eventually(
        Duration::from_secs(20),
        "the email once quiet hours end",
        || async { (subjects(&t, "cy").await == ["c-quiet"]).then_some(()) },
    )
    .await;
    t.stop().await;
}

on_each_store!(caps_priority_and_quiet_hours_in_her_time_zone);
