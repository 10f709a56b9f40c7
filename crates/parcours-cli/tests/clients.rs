//! Every client can send: browsers (CORS, `text/plain`, the SDKs' settings documents),
//! compressed bodies, and the life cycle of write keys and tokens. Each test runs on both
//! stores.

#[macro_use]
mod common;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use common::{
    eventually, start_on, start_with_clock, Backend, ShiftedClock, TestNode, ADMIN, WRITE_KEY,
};
use hyper::Method;
use parcours_testkit::http::{basic, Response};
use serde_json::{json, Value};

on_each_store!(
    gzip_and_deflate_bodies_are_read_and_bombs_refused,
    browsers_pass_cors_with_text_plain_bodies,
    a_source_limited_to_its_sites_refuses_other_origins,
    sdk_settings_documents_point_the_sdks_at_parcours,
    a_rotated_write_key_works_until_the_overlap_ends,
    tokens_are_listed_revoked_rotated_and_expire,
);

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

async fn send(
    t: &TestNode,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Response {
    t.client.request(method, path, headers, body).await.unwrap()
}

fn header<'a>(r: &'a Response, name: &str) -> Option<&'a str> {
    r.headers.get(name).and_then(|v| v.to_str().ok())
}

/// Events of the profile an identifier resolves to, once it has them all.
async fn events_of(t: &TestNode, kind: &str, value: &str, want: usize) -> Vec<Value> {
    eventually(
        Duration::from_secs(20),
        &format!("{want} events for {kind} {value}"),
        || async {
            let p = t.profile_of(ADMIN, kind, value).await?;
            let id = p["id"].as_str()?.to_string();
            let (status, v) = t.get(&format!("/api/v1/profiles/{id}/events")).await;
            let events = v["events"].as_array()?.clone();
            (status == 200 && events.len() >= want).then_some(events)
        },
    )
    .await
}

async fn gzip_and_deflate_bodies_are_read_and_bombs_refused(backend: Backend) {
    let t = start_on("gzip", backend, |_| {}).await;
    let auth = format!("Basic {}", basic(WRITE_KEY));
    let batch = json!({"batch": [
        {"type": "identify", "userId": "gz_1", "traits": {"email": "gz@example.com"}, "messageId": "gz-a"},
        {"type": "track", "userId": "gz_1", "event": "Product Viewed", "messageId": "gz-b"},
    ]})
    .to_string();
    let r = send(
        &t,
        Method::POST,
        "/v1/batch",
        &[("authorization", &auth), ("content-encoding", "gzip")],
        gzip(batch.as_bytes()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let one = json!({"userId": "gz_1", "event": "Cart Viewed", "messageId": "gz-c"}).to_string();
    let r = send(
        &t,
        Method::POST,
        "/v1/track",
        &[("authorization", &auth), ("content-encoding", "deflate")],
        zlib(one.as_bytes()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let events = events_of(&t, "user_id", "gz_1", 3).await;
    assert_eq!(
        events.len(),
        3,
        "both compressed requests stored every event"
    );

    // Cut short: refused as a whole, nothing stored.
    let whole = gzip(json!({"batch": [{"type": "track", "userId": "gz_cut", "event": "X", "messageId": "gz-cut"}]}).to_string().as_bytes());
    let r = send(
        &t,
        Method::POST,
        "/v1/batch",
        &[("authorization", &auth), ("content-encoding", "gzip")],
        whole[..whole.len() / 2].to_vec(),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["code"], "invalid_encoding");

    // 64 MiB of spaces inside a valid batch compresses to about 64 KiB: the limit applies to
    // what it inflates to, and inflating stops there.
    let mut bomb = b"{\"batch\": [".to_vec();
    bomb.extend(std::iter::repeat_n(b' ', 64 * 1024 * 1024));
    bomb.extend(b"]}");
    let packed = gzip(&bomb);
    assert!(packed.len() < 200 * 1024, "{}", packed.len());
    let r = send(
        &t,
        Method::POST,
        "/v1/batch",
        &[("authorization", &auth), ("content-encoding", "gzip")],
        packed,
    )
    .await;
    assert_eq!(r.status, 413);
    let v = r.json();
    assert_eq!(v["code"], "payload_too_large");
    assert!(v["message"].as_str().unwrap().contains("500 KiB"), "{v}");

    // Without a valid key nothing is inflated: the key is refused first.
    let bad = format!("Basic {}", basic("wk_nobody_has_this_key_0000000"));
    let r = send(
        &t,
        Method::POST,
        "/v1/batch",
        &[("authorization", &bad), ("content-encoding", "gzip")],
        b"not gzip".to_vec(),
    )
    .await;
    assert_eq!(r.status, 401, "{}", String::from_utf8_lossy(&r.body));
    // Two encodings in two headers are refused, not half applied.
    let r = send(
        &t,
        Method::POST,
        "/v1/track",
        &[
            ("authorization", &auth),
            ("content-encoding", "gzip"),
            ("content-encoding", "gzip"),
        ],
        gzip(&gzip(b"{}")),
    )
    .await;
    assert_eq!(r.status, 415);

    // An encoding Parcours cannot read is named.
    let r = send(
        &t,
        Method::POST,
        "/v1/track",
        &[("authorization", &auth), ("content-encoding", "br")],
        one.into_bytes(),
    )
    .await;
    assert_eq!(r.status, 415);
    assert_eq!(r.json()["code"], "unsupported_content_encoding");

    // A single event over its limit says both sizes with units.
    let big = json!({"userId": "gz_1", "event": "Big", "properties": {"pad": "x".repeat(40_000)}})
        .to_string();
    let r = t.client.track("/v1/track", WRITE_KEY, big).await.unwrap();
    assert_eq!(r.status, 413);
    let message = r.json()["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("KiB") && message.contains("32 KiB"),
        "{message}"
    );
    assert!(!message.contains("32769"), "{message}");
    t.stop().await;
}

async fn browsers_pass_cors_with_text_plain_bodies(backend: Backend) {
    let t = start_on("cors", backend, |_| {}).await;
    let origin = "http://shop.localhost:5173";
    // The preflight a browser sends before a POST with an Authorization header.
    let r = send(
        &t,
        Method::OPTIONS,
        "/v1/t",
        &[
            ("origin", origin),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "authorization,content-type",
            ),
        ],
        vec![],
    )
    .await;
    assert_eq!(r.status, 204);
    assert_eq!(header(&r, "access-control-allow-origin"), Some(origin));
    let allowed = header(&r, "access-control-allow-headers").unwrap_or("");
    assert!(
        allowed.contains("authorization") && allowed.contains("content-type"),
        "{allowed}"
    );
    assert!(header(&r, "access-control-allow-methods")
        .unwrap_or("")
        .contains("POST"));

    // The call itself: text/plain, the short path, the key in the body (analytics-next's way).
    let body = json!({"writeKey": WRITE_KEY, "userId": "cors_1", "event": "Product Viewed", "messageId": "cors-a"}).to_string();
    let r = send(
        &t,
        Method::POST,
        "/v1/t",
        &[("origin", origin), ("content-type", "text/plain")],
        body.into_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(header(&r, "access-control-allow-origin"), Some(origin));
    // An error reaches the page too, with its reason.
    let r = send(
        &t,
        Method::POST,
        "/v1/p",
        &[("origin", origin), ("content-type", "text/plain")],
        b"{not json".to_vec(),
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(header(&r, "access-control-allow-origin"), Some(origin));
    events_of(&t, "user_id", "cors_1", 1).await;

    // The admin API is not for pages of other sites.
    let r = send(
        &t,
        Method::OPTIONS,
        "/api/v1/workspace",
        &[("origin", origin), ("access-control-request-method", "GET")],
        vec![],
    )
    .await;
    assert_eq!(header(&r, "access-control-allow-origin"), None);
    t.stop().await;
}

async fn a_source_limited_to_its_sites_refuses_other_origins(backend: Backend) {
    let t = start_on("origins", backend, |_| {}).await;
    let r = t.client.post("/api/v1/sources", ADMIN, json!({
        "name": "Shop site", "channel": "web", "allowed_origins": ["https://shop.example", "https://*.shop.example"]
    }).to_string()).await.unwrap();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let key = r.json()["write_key"].as_str().unwrap().to_string();
    let auth = format!("Basic {}", basic(&key));
    let event = |id: &str| {
        json!({"userId": "orig_1", "event": "Product Viewed", "messageId": id})
            .to_string()
            .into_bytes()
    };
    for (origin, id) in [
        ("https://shop.example", "o-1"),
        ("https://fr.shop.example", "o-2"),
    ] {
        let r = send(
            &t,
            Method::POST,
            "/v1/track",
            &[("authorization", &auth), ("origin", origin)],
            event(id),
        )
        .await;
        assert_eq!(r.status, 200, "{origin}");
        assert_eq!(header(&r, "access-control-allow-origin"), Some(origin));
    }
    for origin in [
        "https://evil.example",
        "https://shop.example.evil.com",
        "http://shop.example",
    ] {
        let r = send(
            &t,
            Method::POST,
            "/v1/track",
            &[("authorization", &auth), ("origin", origin)],
            event("o-bad"),
        )
        .await;
        assert_eq!(r.status, 403, "{origin}");
        assert_eq!(r.json()["code"], "origin_not_allowed");
        assert_eq!(
            header(&r, "access-control-allow-origin"),
            None,
            "the browser keeps the answer from {origin}"
        );
    }
    // Servers send no Origin: not concerned.
    let r = send(
        &t,
        Method::POST,
        "/v1/track",
        &[("authorization", &auth)],
        event("o-3"),
    )
    .await;
    assert_eq!(r.status, 200);
    let events = events_of(&t, "user_id", "orig_1", 3).await;
    assert_eq!(events.len(), 3, "the refused call stored nothing");
    // A malformed origin is refused when the source is saved.
    let r = t
        .client
        .post(
            "/api/v1/sources",
            ADMIN,
            json!({"name": "x", "allowed_origins": ["shop.example/path"]}).to_string(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    t.stop().await;
}

async fn sdk_settings_documents_point_the_sdks_at_parcours(backend: Backend) {
    let t = start_on("settings", backend, |_| {}).await;
    let host = t.client.base().trim_start_matches("http://").to_string();
    let r = send(
        &t,
        Method::GET,
        &format!("/v1/projects/{WRITE_KEY}/settings"),
        &[("origin", "http://localhost:3000")],
        vec![],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        header(&r, "access-control-allow-origin"),
        Some("http://localhost:3000")
    );
    let v = r.json();
    assert_eq!(v["integrations"]["Segment.io"]["apiKey"], WRITE_KEY);
    assert_eq!(
        v["integrations"]["Segment.io"]["apiHost"],
        format!("{host}/v1")
    );
    assert_eq!(v["remotePlugins"], json!([]));
    let r = send(
        &t,
        Method::GET,
        "/v1/projects/wk_nobody_has_this_key_000000/settings",
        &[],
        vec![],
    )
    .await;
    assert_eq!(r.status, 404);

    let auth = format!("Basic {}", basic(WRITE_KEY));
    let r = send(
        &t,
        Method::GET,
        "/sourceConfig/?p=npm&v=3.0.0&build=modern",
        &[("authorization", &auth)],
        vec![],
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    assert_eq!(v["source"]["writeKey"], WRITE_KEY);
    assert_eq!(v["source"]["enabled"], true);
    assert_eq!(v["source"]["destinations"], json!([]));
    let r = send(
        &t,
        Method::GET,
        &format!("/sourceConfig?writeKey={WRITE_KEY}"),
        &[],
        vec![],
    )
    .await;
    assert_eq!(r.status, 200);
    let r = send(&t, Method::GET, "/sourceConfig", &[], vec![]).await;
    assert_eq!(r.status, 401);
    t.stop().await;
}

async fn a_rotated_write_key_works_until_the_overlap_ends(backend: Backend) {
    let clock = Arc::new(ShiftedClock::default());
    let t = start_with_clock("rotate", backend, clock.clone(), |_| {}).await;
    let (status, v) = t.get("/api/v1/sources").await;
    assert_eq!(status, 200);
    let source = v["sources"][0]["id"].as_str().unwrap().to_string();
    assert!(
        v["sources"][0]["created_at"]
            .as_str()
            .unwrap()
            .ends_with('Z'),
        "{v}"
    );
    let r = t
        .client
        .post(
            &format!("/api/v1/sources/{source}/rotate"),
            ADMIN,
            json!({"overlap_hours": 2}).to_string(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let new_key = r.json()["write_key"].as_str().unwrap().to_string();
    let track = |key: String, id: &'static str| {
        let c = t.client.clone();
        async move {
            c.track(
                "/v1/track",
                &key,
                json!({"userId": "rot_1", "event": "X", "messageId": id}).to_string(),
            )
            .await
            .unwrap()
        }
    };
    assert_eq!(
        track(WRITE_KEY.into(), "r-1").await.status,
        200,
        "the old key works during the overlap"
    );
    assert_eq!(track(new_key.clone(), "r-2").await.status, 200);
    let (_, v) = t.get(&format!("/api/v1/sources/{source}")).await;
    let keys = v["source"]["write_keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0]["active"], true);
    assert!(keys[0]["expires_at"].as_str().is_some());

    clock.advance(2 * 3_600_000 + 1_000);
    // The cache trusts a key for at most five seconds.
    let r = eventually(Duration::from_secs(10), "the old key to stop", || {
        let f = track(WRITE_KEY.into(), "r-3");
        async move {
            let r = f.await;
            (r.status != 200).then_some(r)
        }
    })
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["code"], "invalid_write_key");
    assert_eq!(
        track(new_key.clone(), "r-4").await.status,
        200,
        "the new key still works"
    );

    // Deleting the source ends its keys at once.
    let r = t
        .client
        .request(
            Method::DELETE,
            &format!("/api/v1/sources/{source}"),
            &[("authorization", &format!("Bearer {ADMIN}"))],
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 204);
    assert_eq!(track(new_key, "r-5").await.status, 401);
    t.stop().await;
}

async fn tokens_are_listed_revoked_rotated_and_expire(backend: Backend) {
    let clock = Arc::new(ShiftedClock::default());
    let t = start_with_clock("tokens", backend, clock.clone(), |_| {}).await;
    let r = t
        .client
        .post(
            "/api/v1/tokens",
            ADMIN,
            json!({"name": "analyst", "role": "analyst", "expires_in_days": 1}).to_string(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    let (short, short_id) = (
        v["secret"].as_str().unwrap().to_string(),
        v["token"]["id"].as_str().unwrap().to_string(),
    );
    let r = t
        .client
        .post(
            "/api/v1/tokens",
            ADMIN,
            json!({"name": "ops", "role": "admin"}).to_string(),
        )
        .await
        .unwrap();
    let v = r.json();
    let (ops, ops_id) = (
        v["secret"].as_str().unwrap().to_string(),
        v["token"]["id"].as_str().unwrap().to_string(),
    );
    let (_, v) = t.get("/api/v1/tokens").await;
    let listed: Vec<&str> = v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    let mut listed = listed;
    listed.sort_unstable();
    assert_eq!(
        listed,
        ["admin", "analyst", "ops"],
        "tokens made in the same millisecond list in any order"
    );
    assert!(
        v.to_string().find(&short).is_none(),
        "secrets are never listed"
    );
    let status = |token: String| {
        let c = t.client.clone();
        async move { c.get("/api/v1/workspace", &token).await.unwrap().status }
    };
    assert_eq!(status(short.clone()).await, 200);

    // Rotation: the successor works, the old one until the overlap ends.
    let r = t
        .client
        .post(
            &format!("/api/v1/tokens/{ops_id}/rotate"),
            ADMIN,
            json!({"overlap_hours": 1}).to_string(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201);
    let successor = r.json()["secret"].as_str().unwrap().to_string();
    assert_eq!(status(ops.clone()).await, 200);
    assert_eq!(status(successor.clone()).await, 200);

    // Revocation: at once on this node.
    let r = t
        .client
        .request(
            Method::DELETE,
            &format!("/api/v1/tokens/{short_id}"),
            &[("authorization", &format!("Bearer {ADMIN}"))],
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 204);
    let r = t.client.get("/api/v1/workspace", &short).await.unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["code"], "expired_token");

    clock.advance(3_600_000 + 1_000);
    eventually(Duration::from_secs(10), "the rotated token to stop", || {
        let f = status(ops.clone());
        async move { (f.await == 401).then_some(()) }
    })
    .await;
    assert_eq!(status(successor).await, 200);
    let (_, v) = t.get("/api/v1/tokens").await;
    let inactive: Vec<&str> = v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["active"] == false)
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(inactive.len(), 2, "{v}");
    assert!(inactive.contains(&short_id.as_str()) && inactive.contains(&ops_id.as_str()));
    t.stop().await;
}
