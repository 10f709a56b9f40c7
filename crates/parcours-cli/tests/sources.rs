//! Webhook sources (each shipped mapping on its platform's documented sample payload, with
//! the platform's signature) and tracking plans (each violation mode), on both stores.

#[macro_use]
mod common;

use std::time::Duration;

use base64::Engine as _;
use common::{eventually, start_on, Backend, TestNode, ADMIN};
use hmac::{Hmac, Mac};
use hyper::Method;
use parcours_testkit::http::Response;
use serde_json::{json, Value};
use sha2::Sha256;

on_each_store!(
    shipped_webhook_mappings_turn_sample_payloads_into_events,
    tracking_plans_quarantine_flag_or_strip,
    the_live_debugger_streams_a_sources_events_with_their_outcome,
);

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/webhooks/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn hmac(secret: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

async fn new_source(t: &TestNode, body: Value) -> (String, String) {
    let r = t
        .client
        .post("/api/v1/sources", ADMIN, body.to_string())
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    (
        v["source"]["id"].as_str().unwrap().to_string(),
        v["write_key"].as_str().unwrap().to_string(),
    )
}

async fn webhook(t: &TestNode, key: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Response {
    t.client
        .request(Method::POST, &format!("/v1/webhooks/{key}"), headers, body)
        .await
        .unwrap()
}

/// The events of the profile an identifier resolves to, once there are `want` of them.
async fn events_of(t: &TestNode, kind: &str, value: &str, want: usize) -> Vec<Value> {
    eventually(
        Duration::from_secs(20),
        &format!("{want} events for {kind} {value}"),
        || async {
            let p = t.profile_of(ADMIN, kind, value).await?;
            let id = p["id"].as_str()?.to_string();
            let (_, v) = t.get(&format!("/api/v1/profiles/{id}/events")).await;
            let events = v["events"].as_array()?.clone();
            (events.len() >= want).then_some(events)
        },
    )
    .await
}

fn named<'a>(events: &'a [Value], name: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["event"] == name)
        .unwrap_or_else(|| panic!("no {name} in {events:?}"))
}

async fn shipped_webhook_mappings_turn_sample_payloads_into_events(backend: Backend) {
    let t = start_on("webhooks", backend, |_| {}).await;
    let b64 = base64::engine::general_purpose::STANDARD;

    // Shopify orders/create, signed with the app's secret.
    let secret = "shpss_parcours_test_secret";
    let (_, key) = new_source(
        &t,
        json!({"name": "Shopify", "webhook": {
        "mapping": "shopify_orders_create", "signature": {"scheme": "shopify", "secret": secret}}}),
    )
    .await;
    let body = fixture("shopify_orders_create.json");
    let sig = b64.encode(hmac(secret, &[&body]));
    let headers = [
        ("x-shopify-hmac-sha256", sig.as_str()),
        ("x-shopify-topic", "orders/create"),
    ];
    let r = webhook(&t, &key, &headers, body.clone()).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["accepted"], 2, "identify and Order Completed");
    // The platform retries the same call: stored once.
    assert_eq!(webhook(&t, &key, &headers, body.clone()).await.status, 200);
    let events = events_of(&t, "email", "john@example.com", 2).await;
    assert_eq!(events.len(), 2, "a retried call is not stored twice");
    let order = named(&events, "Order Completed");
    assert_eq!(
        order["properties"]["order_id"], "820982911946154508",
        "ids beyond 2^53 stay exact"
    );
    assert_eq!(order["properties"]["total"], 388.0);
    assert_eq!(order["properties"]["currency"], "USD");
    assert_eq!(order["properties"]["products"][0]["sku"], "IPOD2008PINK");
    assert_eq!(order["properties"]["products"][0]["price"], 199.0);
    assert_eq!(
        order["timestamp"], "2022-01-01T00:00:00.000Z",
        "the order's own time, in UTC"
    );
    let p = t
        .profile_of(ADMIN, "email", "john@example.com")
        .await
        .unwrap();
    assert_eq!(p["traits"]["first_name"], "John");
    // A body that does not match its signature is refused, and nothing of it is kept.
    let mut forged = body.clone();
    forged.extend(b" ");
    let r = webhook(&t, &key, &headers, forged).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["code"], "invalid_signature");
    let r = webhook(&t, &key, &[], body.clone()).await;
    assert_eq!(r.status, 401, "unsigned");

    // Stripe checkout.session.completed, signed with the endpoint secret and a timestamp.
    let secret = "whsec_parcours_test_secret";
    let (_, key) = new_source(&t, json!({"name": "Stripe", "webhook": {
        "mapping": "stripe_checkout_session_completed", "signature": {"scheme": "stripe", "secret": secret}}})).await;
    let body = fixture("stripe_checkout_session_completed.json");
    let stripe_headers = |body: &[u8], at: i64| {
        let sig: String = hmac(secret, &[at.to_string().as_bytes(), b".", body])
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("t={at},v1={sig}")
    };
    let now = parcours_core::time::Clock::now(&parcours_engine::SystemClock).div_euclid(1000);
    let h = stripe_headers(&body, now);
    let r = webhook(&t, &key, &[("stripe-signature", &h)], body.clone()).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let events = events_of(&t, "email", "example@example.com", 2).await;
    let order = named(&events, "Order Completed");
    let sample: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        order["properties"]["order_id"],
        sample["data"]["object"]["id"]
    );
    assert!(
        order["properties"].get("total").is_none(),
        "the sample session has no amount yet: {order}"
    );
    assert_eq!(
        order["timestamp"], "2009-02-13T23:31:30.000Z",
        "Unix seconds made ISO"
    );
    // Replayed ten minutes later: refused.
    let old = stripe_headers(&body, now - 600);
    let r = webhook(&t, &key, &[("stripe-signature", &old)], body.clone()).await;
    assert_eq!(r.status, 401);
    // Another event type is acknowledged and ignored.
    let mut other: Value = serde_json::from_slice(&body).unwrap();
    other["type"] = json!("payment_intent.created");
    other["id"] = json!("evt_other");
    let other = serde_json::to_vec(&other).unwrap();
    let h = stripe_headers(&other, now);
    let r = webhook(&t, &key, &[("stripe-signature", &h)], other).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["events"], 0);

    // Chatwoot message_created (Chatwoot does not document a signature).
    let (_, key) = new_source(
        &t,
        json!({"name": "Chatwoot", "webhook": {"mapping": "chatwoot_message_created"}}),
    )
    .await;
    let r = webhook(&t, &key, &[], fixture("chatwoot_message_created.json")).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let events = events_of(&t, "anonymous_id", "chatwoot-contact:1", 1).await;
    let message = named(&events, "Chat Message Received");
    assert_eq!(message["properties"]["content"], "Hi");
    assert_eq!(message["channel"], "chatbot");

    // The preview shows what a payload becomes before any source uses the mapping.
    let r = t.client.post("/api/v1/webhooks/preview", ADMIN, json!({
        "mapping": "shopify_orders_create",
        "payload": serde_json::from_slice::<Value>(&fixture("shopify_orders_create.json")).unwrap()
    }).to_string()).await.unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    assert_eq!(v["events"].as_array().unwrap().len(), 2);
    assert_eq!(v["accepted"].as_array().unwrap().len(), 2);
    assert_eq!(v["events"][1]["properties"]["products"][0]["quantity"], 1);

    // A mapping with a mistake is refused where it is wrong, when it is saved.
    let r = t
        .client
        .post(
            "/api/v1/sources",
            ADMIN,
            json!({"name": "Bad", "webhook": {"mapping": {"events": [
        {"type": "track", "event": "'X'", "properties": {"total": "body.[["}}]}}})
            .to_string(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("events[0].properties.total"),
        "{}",
        r.json()
    );
    // One that fails on a payload is answered 422, so the platform retries once it is fixed.
    let (_, key) = new_source(&t, json!({"name": "Fragile", "webhook": {"mapping": {"events": [
        {"type": "track", "event": "'X'", "userId": "'u1'", "properties": {"n": "length(body.id)"}}]}}})).await;
    let r = webhook(&t, &key, &[], br#"{"id": 5}"#.to_vec()).await;
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["code"], "mapping_failed");
    // A tracking source's key does not take webhooks.
    let r = webhook(&t, common::WRITE_KEY, &[], b"{}".to_vec()).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["code"], "not_a_webhook_source");
    t.stop().await;
}

async fn tracking_plans_quarantine_flag_or_strip(backend: Backend) {
    let t = start_on("plans", backend, |_| {}).await;
    let plan = |mode: &str| {
        json!({
            "events": {"Order Completed": {"type": "object", "required": ["order_id", "total"], "properties": {
                "order_id": {"type": "string"}, "total": {"type": "number", "minimum": 0}}}},
            "identify": {"type": "object", "properties": {"email": {"type": "string"}}},
            "on_violation": mode
        })
    };
    let mut keys = Vec::new();
    for mode in ["quarantine", "flag", "strip"] {
        keys.push(new_source(&t, json!({"name": mode, "tracking_plan": plan(mode)})).await);
    }
    let send = |key: String, user: &'static str, props: Value| {
        let c = t.client.clone();
        async move {
            let r = c
                .track(
                    "/v1/track",
                    &key,
                    json!({"userId": user, "event": "Order Completed", "properties": props})
                        .to_string(),
                )
                .await
                .unwrap();
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        }
    };
    let bad = json!({"order_id": 42, "total": 10, "coupon": "WELCOME"});
    let good = json!({"order_id": "o1", "total": 10});
    send(keys[0].1.clone(), "plan_q", bad.clone()).await;
    send(keys[0].1.clone(), "plan_q", good.clone()).await;
    send(keys[1].1.clone(), "plan_f", bad.clone()).await;
    send(keys[2].1.clone(), "plan_s", bad.clone()).await;

    // quarantine: the breaking event waits in the quarantine with its reasons.
    let events = events_of(&t, "user_id", "plan_q", 1).await;
    assert_eq!(events.len(), 1, "only the planned one is in the log");
    let (_, q) = t.get("/api/v1/quarantine?status=pending").await;
    let entry = q["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["code"] == "tracking_plan_violation")
        .expect("quarantined");
    assert!(
        entry["reason"]
            .as_str()
            .unwrap()
            .contains("properties.order_id"),
        "{entry}"
    );
    // flag: accepted, its violations where Segment Protocols puts them.
    let events = events_of(&t, "user_id", "plan_f", 1).await;
    let violations = &events[0]["context"]["protocols"]["violations"];
    assert_eq!(violations[0]["kind"], "wrong_type", "{violations}");
    assert_eq!(
        events[0]["properties"]["coupon"], "WELCOME",
        "flag keeps the event as sent"
    );
    // strip: what the plan does not allow is removed.
    let events = events_of(&t, "user_id", "plan_s", 1).await;
    assert_eq!(
        events[0]["properties"],
        json!({"total": 10}),
        "{}",
        events[0]
    );

    // The violations report, by source, event and field.
    let (_, report) = t.get("/api/v1/tracking-plans/violations").await;
    let lines = report["violations"].as_array().unwrap();
    let line = |source: &str, field: &str, kind: &str| {
        lines
            .iter()
            .find(|l| l["source_id"] == source && l["field"] == field && l["kind"] == kind)
            .map(|l| l["count"].as_u64().unwrap())
    };
    for (source, _) in &keys {
        assert_eq!(
            line(source, "properties.order_id", "wrong_type"),
            Some(1),
            "{report}"
        );
    }
    assert_eq!(
        line(&keys[2].0, "properties.coupon", "unplanned_property"),
        Some(1),
        "{report}"
    );
    assert_eq!(lines[0]["event"], "Order Completed");
    t.stop().await;
}

/// Reads a server-sent events stream until `done` says it has what it wants.
async fn read_stream(
    addr: &str,
    path: &str,
    within: Duration,
    mut done: impl FnMut(&str) -> bool,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {ADMIN}\r\naccept: text/event-stream\r\n\r\n"
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 8192];
    let deadline = parcours_engine::clock::Moment::now() + within;
    while !done(&seen) {
        let left = deadline.saturating_duration_since(parcours_engine::clock::Moment::now());
        let n = tokio::time::timeout(left, conn.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("the stream did not show it within {within:?}: {seen}"))
            .unwrap();
        assert!(n > 0, "the stream ended: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    seen
}

async fn the_live_debugger_streams_a_sources_events_with_their_outcome(backend: Backend) {
    let t = start_on("live", backend, |_| {}).await;
    let (source, key) = new_source(&t, json!({"name": "Site", "tracking_plan": {
        "events": {"Signed Up": {"type": "object", "required": ["plan"]}}, "on_violation": "flag"}})).await;
    let send = |id: &'static str, body: Value| {
        let (c, key) = (t.client.clone(), key.clone());
        async move {
            let mut body = body;
            body["messageId"] = json!(id);
            let r = c.track("/v1/track", &key, body.to_string()).await.unwrap();
            assert_eq!(r.status, 200);
        }
    };
    send(
        "live-old",
        json!({"userId": "u_live", "event": "Signed Up", "properties": {"plan": "pro"}}),
    )
    .await;
    // Another source's events are not shown.
    let r = t
        .client
        .track(
            "/v1/track",
            common::WRITE_KEY,
            json!({"userId": "x", "event": "Other", "messageId": "live-other"}).to_string(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let addr = t.client.base().trim_start_matches("http://").to_string();
    let path = format!("/api/v1/sources/{source}/live?recent=5");
    let stream = {
        let addr = addr.clone();
        tokio::spawn(async move {
            read_stream(&addr, &path, Duration::from_secs(20), |s| {
                s.contains("live-new") && s.contains("event: quarantined")
            })
            .await
        })
    };
    // Sent while the stream is open: one flagged by the plan, one quarantined by the spec.
    tokio::time::sleep(Duration::from_millis(300)).await;
    send(
        "live-new",
        json!({"userId": "u_live", "event": "Signed Up", "properties": {}}),
    )
    .await;
    send(
        "live-bad",
        json!({"event": "Signed Up", "properties": {"plan": "pro"}}),
    )
    .await;
    let seen = stream.await.unwrap();
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    assert!(seen.contains("text/event-stream"), "{seen}");
    assert!(seen.contains("event: ready"), "{seen}");
    assert!(
        seen.contains("live-old"),
        "the recent events come first: {seen}"
    );
    assert!(!seen.contains("live-other"), "{seen}");
    let flagged = seen.lines().find(|l| l.contains("live-new")).unwrap();
    assert!(
        flagged.contains("\"outcome\":\"flagged\"") && flagged.contains("missing_required"),
        "{flagged}"
    );
    let quarantined = seen
        .lines()
        .skip_while(|l| !l.contains("event: quarantined"))
        .nth(1)
        .unwrap();
    assert!(quarantined.contains("no_user_anon_id"), "{quarantined}");
    let r = t
        .client
        .get("/api/v1/sources/src_nope/live", ADMIN)
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    t.stop().await;
}
