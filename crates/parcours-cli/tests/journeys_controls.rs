//! Delivery controls on a node, on both stores, sending to a real SMTP server (aiosmtpd,
//! started by the test): a frequency cap counted on her calendar day in her time zone, two
//! journeys competing for it (the higher priority goes first, the other is deferred to her next
//! midnight, then sent, or dropped once it expired), and quiet hours in her time zone, also
//! across a daylight-saving change, each decision recorded with its reason.

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::journeys::put_document as put;
use common::smtp::{header, Sink};
use common::{eventually, start_with_clock, temp_dir, Backend, ShiftedClock, TestNode, ADMIN};
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

/// The subjects of the emails the SMTP server received for `user`, oldest first.
async fn subjects(sink: &Sink, user: &str) -> Vec<String> {
    sink.messages()
        .iter()
        .filter(|m| header(m, "To").as_deref() == Some(&format!("{user}@example.com")))
        .map(|m| header(m, "Subject").unwrap())
        .collect()
}

/// A node sending email to `sink`.
async fn node(tag: &str, backend: Backend, clock: Arc<ShiftedClock>, sink: &Sink) -> TestNode {
    let port = sink.port;
    start_with_clock(tag, backend, clock, move |c| {
        c.channels.email.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
        c.channels.email.from = Some("Shop <news@shop.example>".into());
    })
    .await
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
    let sink = Sink::start(temp_dir("smtp-sink"), 0);
    let clock = Arc::new(ShiftedClock::default());
    let t = node("journey-controls", backend, clock.clone(), &sink).await;
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
        || async { (subjects(&sink, "ann").await == ["b-high"]).then_some(()) },
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
        || async { (subjects(&sink, "ann").await == ["b-high", "a-low"]).then_some(()) },
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
        || async { (subjects(&sink, "bob").await == ["b-high"]).then_some(()) },
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
    assert!(subjects(&sink, "cy").await.is_empty());
    clock.advance(2 * H + 60_000);
    eventually(
        Duration::from_secs(20),
        "the email once quiet hours end",
        || async { (subjects(&sink, "cy").await == ["c-quiet"]).then_some(()) },
    )
    .await;
    t.stop().await;
}

/// Quiet hours from 21:00 to 08:00 in New York, the night clocks go forward (2027-03-14, 02:00
/// EST becomes 03:00 EDT): a message decided at 23:00 EST waits for 08:00 EDT, which is 12:00
/// UTC (a fixed offset would say 13:00).
async fn quiet_hours_end_right_across_a_dst_change(backend: Backend) {
    let sink = Sink::start(temp_dir("smtp-sink"), 0);
    let clock = Arc::new(ShiftedClock::default());
    let t = node("journey-dst", backend, clock.clone(), &sink).await;
    let doc = promo("night", 50, "Night Test").replace(
        "status: live\n",
        "status: live\nquiet_hours: {from: \"21:00\", to: \"08:00\"}\n",
    );
    let (status, r) = put(&t, "/api/v1/journeys/night", "application/yaml", &doc).await;
    assert_eq!(status, 201, "{r}");
    // 2027-03-13 23:00 EST is 2027-03-14 04:00 UTC.
    let at = parcours_core::time::parse_timestamp("2027-03-14T04:00:00Z").unwrap();
    clock.advance(at - clock.now());
    t.send(json!({"batch": [customer("dee"), {"type": "track", "userId": "dee", "event": "Night Test"}]}))
        .await;
    let d = eventually(Duration::from_secs(20), "the deferral", || async {
        let d = decisions(&t, "dee", "night").await;
        d.iter()
            .any(|(c, _)| c == "deferred_quiet_hours")
            .then_some(d)
    })
    .await;
    assert!(
        d.iter()
            .any(|(c, r)| c == "deferred_quiet_hours" && r.contains("2027-03-14T12:00:00")),
        "{d:?}"
    );
    // At 07:30 EDT (11:30 UTC), nothing yet; at 08:00 EDT it goes.
    let end = parcours_core::time::parse_timestamp("2027-03-14T12:00:00Z").unwrap();
    clock.advance(end - 30 * 60_000 - clock.now());
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        subjects(&sink, "dee").await.is_empty(),
        "sent during her quiet hours"
    );
    clock.advance(end + 1_000 - clock.now());
    eventually(
        Duration::from_secs(20),
        "the email at 08:00 EDT",
        || async { (subjects(&sink, "dee").await == ["night"]).then_some(()) },
    )
    .await;
    t.stop().await;
}

/// With `after_conversion: 1d`, a purchase that meets a journey's goal holds back marketing
/// for a day (the receipt, transactional, goes); a day later marketing goes again.
async fn no_marketing_right_after_a_conversion(backend: Backend) {
    let sink = Sink::start(temp_dir("smtp-sink"), 0);
    let clock = Arc::new(ShiftedClock::default());
    let t = node("journey-converted", backend, clock.clone(), &sink).await;
    let (status, saved) = put(
        &t,
        "/api/v1/workspace/contact-policy",
        "application/json",
        r#"{"after_conversion": "1d"}"#,
    )
    .await;
    assert_eq!(status, 200, "{saved}");
    let cart = "id: cart\nstatus: live\nentry: {event: Product Added}\ngoal: {event: Order Completed}\nsteps:\n  - id: wait\n    wait: 1h\n  - id: mail\n    send: {channel: email, subject: cart, text: cart}\n";
    let receipt = "id: receipt\nstatus: live\nentry: {event: Order Completed}\nsteps:\n  - id: mail\n    send: {channel: email, purpose: transactional, subject: receipt, text: receipt}\n";
    for (id, doc) in [
        ("cart", cart),
        ("receipt", receipt),
        ("promo", &promo("promo", 50, "Promo Viewed")),
    ] {
        let (status, r) = put(
            &t,
            &format!("/api/v1/journeys/{id}"),
            "application/yaml",
            doc,
        )
        .await;
        assert_eq!(status, 201, "{r}");
    }
    let ann = |event: &str| json!({"type": "track", "userId": "ann", "event": event});
    t.send(json!({"batch": [customer("ann"), ann("Product Added")]}))
        .await;
    t.unified().await;
    eventually(Duration::from_secs(20), "her cart run", || async {
        (!decisions(&t, "ann", "cart").await.is_empty()).then_some(())
    })
    .await;
    t.send(json!({"batch": [ann("Order Completed")]})).await;
    eventually(Duration::from_secs(20), "the receipt", || async {
        (subjects(&sink, "ann").await == ["receipt"]).then_some(())
    })
    .await;
    eventually(Duration::from_secs(20), "her conversion", || async {
        decisions(&t, "ann", "cart")
            .await
            .iter()
            .any(|(c, _)| c == "goal")
            .then_some(())
    })
    .await;
    t.send(json!({"batch": [ann("Promo Viewed")]})).await;
    let promo_decisions = eventually(
        Duration::from_secs(20),
        "the promotion held back",
        || async {
            let d = decisions(&t, "ann", "promo").await;
            d.iter()
                .any(|(c, _)| c == "converted_recently")
                .then_some(d)
        },
    )
    .await;
    assert!(
        promo_decisions
            .iter()
            .any(|(c, r)| c == "converted_recently" && r.contains("`cart`") && r.contains("1d")),
        "{promo_decisions:?}"
    );
    // A day later, marketing goes again.
    clock.advance(24 * H + 60_000);
    t.send(json!({"batch": [ann("Promo Viewed")]})).await;
    eventually(
        Duration::from_secs(20),
        "the promotion, a day later",
        || async { (subjects(&sink, "ann").await == ["receipt", "promo"]).then_some(()) },
    )
    .await;
    t.stop().await;
}

on_each_store!(
    caps_priority_and_quiet_hours_in_her_time_zone,
    quiet_hours_end_right_across_a_dst_change,
    no_marketing_right_after_a_conversion
);
