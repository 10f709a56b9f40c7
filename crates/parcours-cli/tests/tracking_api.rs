//! The Segment-compatible tracking API, driven over HTTP.

#[macro_use]
mod common;

use common::{start_on, Backend, ADMIN, WRITE_KEY};
use serde_json::json;

async fn accepts_segment_calls_and_answers_like_segment(backend: Backend) {
    let t = start_on("tracking", backend, |_| {}).await;
    let c = &t.client;
    let r = c
        .track(
            "/v1/track",
            WRITE_KEY,
            json!({"userId": "u1", "event": "Signed Up", "messageId": "s1"}).to_string(),
        )
        .await
        .unwrap();
    assert_eq!((r.status, r.json()), (200, json!({"success": true})));
    let body =
        json!({"writeKey": WRITE_KEY, "anonymousId": "a1", "name": "Home", "messageId": "p1"})
            .to_string();
    let r = c
        .request(hyper::Method::POST, "/v1/page", &[], body)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "writeKey in the body works too");
    let r = c
        .track(
            "/v1/track",
            "wk_wrong",
            json!({"userId": "u1", "event": "E"}).to_string(),
        )
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (401, Some("invalid_write_key"))
    );
    let r = c
        .request(
            hyper::Method::POST,
            "/v1/track",
            &[],
            json!({"userId": "u1", "event": "E"}).to_string(),
        )
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (401, Some("missing_write_key"))
    );
    let r = c
        .track("/v1/batch", WRITE_KEY, "{\"batch\": [".to_string())
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (400, Some("invalid_json"))
    );
    let big = json!({"userId": "u1", "event": "E", "properties": {"blob": "x".repeat(33 * 1024)}})
        .to_string();
    let r = c.track("/v1/track", WRITE_KEY, big).await.unwrap();
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    let many: Vec<_> = (0..2_501)
        .map(
            |i| json!({"type": "track", "userId": "u", "event": "E", "messageId": format!("x{i}")}),
        )
        .collect();
    let r = t.send(json!({"batch": many})).await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (413, Some("batch_too_many_events"))
    );
    let fat = vec![
        json!({"type": "track", "userId": "u", "event": "E", "properties": {"b": "y".repeat(20_000)}});
        30
    ];
    let r = t.send(json!({"batch": fat})).await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    t.unified().await;
    assert_eq!(
        t.store.event_count(&t.workspace).unwrap(),
        2,
        "refused requests store nothing"
    );
    t.stop().await;
}

async fn replayed_message_ids_are_acknowledged_and_stored_once(backend: Backend) {
    let t = start_on("dedup", backend, |_| {}).await;
    let batch = json!({"batch": [
        {"type": "track", "userId": "u1", "event": "Order Completed", "messageId": "order-1"},
        {"type": "track", "userId": "u1", "event": "Order Completed", "messageId": "order-1"},
        {"type": "identify", "userId": "u1", "traits": {"email": "u1@x.io"}}
    ]});
    assert_eq!(t.send(batch.clone()).await.status, 200);
    assert_eq!(t.send(batch).await.status, 200, "a replay is acknowledged");
    assert_eq!(
        t.store.event_count(&t.workspace).unwrap(),
        3,
        "order-1 once, and each id-less identify got its own messageId"
    );
    t.stop().await;
}

async fn clock_skew_is_corrected_and_context_merged(backend: Backend) {
    let t = start_on("skew", backend, |_| {}).await;
    let body = json!({
        "batch": [{"type": "track", "anonymousId": "a", "event": "E", "messageId": "k1",
                   "originalTimestamp": "2020-01-01T00:00:00.000Z"}],
        "sentAt": "2020-01-01T00:10:00.000Z",
        "context": {"channel": "sms"}
    });
    assert_eq!(t.send(body).await.status, 200);
    let e = t
        .store
        .event_by_message_id(&t.workspace, "k1")
        .unwrap()
        .unwrap();
    assert_eq!(
        e.received_at - e.timestamp,
        10 * 60 * 1000,
        "timestamp = receivedAt - (sentAt - originalTimestamp)"
    );
    assert_eq!(e.channel.as_str(), "sms");
    t.stop().await;
}

async fn rate_limit_answers_429_with_retry_after(backend: Backend) {
    let t = start_on("ratelimit", backend, |c| c.http.rate_limit_per_second = 2).await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for i in 0..6 {
        let r = t
            .client
            .track(
                "/v1/track",
                WRITE_KEY,
                json!({"userId": "u", "event": "E", "messageId": format!("r{i}")}).to_string(),
            )
            .await
            .unwrap();
        if r.status == 429 {
            retry_after = r
                .headers
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            assert_eq!(r.json()["code"], "rate_limited");
        }
        statuses.push(r.status);
    }
    assert_eq!(&statuses[..2], [200, 200]);
    assert!(statuses.contains(&429), "{statuses:?}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    t.stop().await;
}

/// Limits per write key (tracking) and per token (admin API): one key or token over its
/// limit is refused with `429`, the others go on.
async fn limits_per_key_and_per_token(backend: Backend) {
    let t = start_on("keylimit", backend, |c| {
        c.http.key_rate_limit_per_second = 2;
        c.http.token_rate_limit_per_second = 3;
    })
    .await;
    let r = t
        .client
        .post(
            "/api/v1/sources",
            common::ADMIN,
            json!({"name": "App"}).to_string(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.json());
    let other_key = r.json()["write_key"].as_str().unwrap().to_string();
    let track = |key: String, i: usize| {
        let t = &t;
        async move {
            t.client
                .track(
                    "/v1/track",
                    &key,
                    json!({"userId": "u", "event": "E", "messageId": format!("{key}{i}")})
                        .to_string(),
                )
                .await
                .unwrap()
        }
    };
    let mut statuses = Vec::new();
    for i in 0..5 {
        let r = track(WRITE_KEY.to_string(), i).await;
        if r.status == 429 {
            assert_eq!(r.json()["code"], "rate_limited");
            assert!(r.json()["message"].as_str().unwrap().contains("write key"));
            assert!(r.headers.get("retry-after").is_some());
        }
        statuses.push(r.status);
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    assert_eq!(track(other_key, 0).await.status, 200, "another key goes on");
    // Tokens: the admin token, then another one.
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let r = t
            .client
            .get("/api/v1/sources", common::ADMIN)
            .await
            .unwrap();
        statuses.push(r.status);
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = t
        .client
        .post(
            "/api/v1/tokens",
            common::ADMIN,
            json!({"name": "other", "role": "analyst"}).to_string(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.json());
    let other = r.json()["secret"].as_str().unwrap().to_string();
    for _ in 0..3 {
        let _ = t
            .client
            .get("/api/v1/sources", common::ADMIN)
            .await
            .unwrap();
    }
    let r = t.client.get("/api/v1/sources", &other).await.unwrap();
    assert_eq!(r.status, 200, "another token goes on: {}", r.json());
    t.stop().await;
}

/// A token limited to some parts of the admin API calls those only (its role still decides
/// within them); its rotation keeps them.
async fn scoped_tokens_call_only_their_parts(backend: Backend) {
    let t = start_on("scopes", backend, |_| {}).await;
    let make = |body: serde_json::Value| {
        let t = &t;
        async move {
            let r = t
                .client
                .post("/api/v1/tokens", ADMIN, body.to_string())
                .await
                .unwrap();
            (r.status, r.json())
        }
    };
    let (s, e) = make(json!({"name": "x", "role": "analyst", "scopes": ["everything"]})).await;
    assert_eq!((s, e["code"].as_str()), (400, Some("invalid_scope")), "{e}");
    let (s, made) = make(json!({"name": "dashboards", "role": "analyst",
        "scopes": ["measure", "audiences", "measure"]}))
    .await;
    assert_eq!(s, 201, "{made}");
    assert_eq!(made["token"]["scopes"], json!(["measure", "audiences"]));
    let secret = made["secret"].as_str().unwrap().to_string();
    let get = |path: &'static str, token: String| {
        let t = &t;
        async move {
            let r = t.client.get(path, &token).await.unwrap();
            (r.status, r.json())
        }
    };
    assert_eq!(get("/api/v1/audiences", secret.clone()).await.0, 200);
    for path in [
        "/api/v1/sources",
        "/api/v1/tokens",
        "/api/v1/profiles/p_x/preferences-link",
        "/api/v1/commerce/locations",
    ] {
        let (s, e) = get(path, secret.clone()).await;
        assert_eq!(
            (s, e["code"].as_str()),
            (403, Some("out_of_scope")),
            "{path}: {e}"
        );
    }
    // Rotated, it keeps its scopes.
    let id = made["token"]["id"].as_str().unwrap();
    let r = t
        .client
        .post(&format!("/api/v1/tokens/{id}/rotate"), ADMIN, "{}")
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.json());
    assert_eq!(r.json()["token"]["scopes"], json!(["measure", "audiences"]));
    let (_, list) = get("/api/v1/tokens", ADMIN.to_string()).await;
    assert!(
        list["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["scopes"] == json!(["measure", "audiences"])),
        "{list}"
    );
    t.stop().await;
}

async fn invalid_events_are_quarantined_listed_and_replayed_after_a_fix(backend: Backend) {
    let t = start_on("quarantine", backend, |_| {}).await;
    let r = t
        .send(json!({"batch": [
            {"type": "track", "userId": "u1", "messageId": "q1"},
            {"type": "track", "event": "Orphan", "messageId": "q2"},
            {"type": "track", "userId": "u1", "event": "Fine", "messageId": "ok"}
        ]}))
        .await;
    assert_eq!(r.status, 200, "spec violations do not fail the batch");
    let (status, list) = t.get("/api/v1/quarantine?status=pending").await;
    assert_eq!(status, 200);
    let events = list["events"].as_array().unwrap();
    let codes: Vec<&str> = events.iter().map(|e| e["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["missing_event_name", "no_user_anon_id"]);
    let id = events[0]["id"].as_i64().unwrap();
    let r = t
        .client
        .post(&format!("/api/v1/quarantine/{id}/replay"), ADMIN, "")
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (422, Some("still_invalid")),
        "replaying unchanged still fails"
    );
    let fixed = json!({"type": "track", "userId": "u1", "event": "Fixed Event", "messageId": "q1"})
        .to_string();
    let r = t
        .client
        .post(
            &format!("/api/v1/quarantine/{id}/replay"),
            ADMIN,
            fixed.clone(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(t
        .store
        .event_by_message_id(&t.workspace, "q1")
        .unwrap()
        .is_some());
    let r = t
        .client
        .post(&format!("/api/v1/quarantine/{id}/replay"), ADMIN, fixed)
        .await
        .unwrap();
    assert_eq!(r.status, 409, "an entry is replayed once");
    let (_, left) = t.get("/api/v1/quarantine?status=pending").await;
    assert_eq!(left["events"].as_array().unwrap().len(), 1);
    t.stop().await;
}

async fn every_documented_route_exists_and_errors_have_the_stable_shape(backend: Backend) {
    let t = start_on("openapi", backend, |_| {}).await;
    let document = parcours_api::openapi::spec();
    let paths: Vec<String> = document["paths"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert!(paths.len() >= 50, "{paths:?}");
    for path in &paths {
        let concrete = path
            .replace("{id}", "1")
            .replace("{key}", "k")
            .replace("{kind}", "track")
            .replace("{profile}", "p");
        let r = t.client.get(&concrete, ADMIN).await.unwrap();
        if r.status == 404 || r.status == 405 {
            let body = String::from_utf8_lossy(&r.body);
            assert!(
                !body.contains("route_not_found"),
                "{path} is documented but not routed"
            );
        }
    }
    let (status, doc) = t.get("/api/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let (status, err) = t.get("/api/v1/profiles/p_nope").await;
    assert_eq!(status, 404);
    for field in ["message", "code", "type", "link"] {
        assert!(err[field].is_string(), "error body has {field}: {err}");
    }
    let r = t.client.get("/healthz", "").await.unwrap();
    assert_eq!(r.status, 200);
    let r = t.client.get("/readyz", "").await.unwrap();
    assert_eq!(r.status, 200);
    t.stop().await;
}

on_each_store!(
    accepts_segment_calls_and_answers_like_segment,
    replayed_message_ids_are_acknowledged_and_stored_once,
    clock_skew_is_corrected_and_context_merged,
    rate_limit_answers_429_with_retry_after,
    limits_per_key_and_per_token,
    scoped_tokens_call_only_their_parts,
    invalid_events_are_quarantined_listed_and_replayed_after_a_fix,
    every_documented_route_exists_and_errors_have_the_stable_shape,
);
