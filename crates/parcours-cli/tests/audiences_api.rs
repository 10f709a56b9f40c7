//! Audiences through the real HTTP path, on both stores: definitions in text and JSON,
//! real-time membership, history, explain, computed traits and exports.

#[macro_use]
mod common;

use std::time::Duration;

use parcours_engine::clock::Moment;

use common::{call, start_on, Backend, TestNode, ADMIN};
use parcours_core::adhash::sha256_hex;
use serde_json::{json, Value};

async fn post(t: &TestNode, path: &str, body: Value) -> (u16, Value) {
    let r = t.client.post(path, ADMIN, body.to_string()).await.unwrap();
    (r.status, r.json())
}

async fn text(t: &TestNode, path: &str) -> (u16, String, String) {
    let r = t.client.get(path, ADMIN).await.unwrap();
    let ct = r.headers["content-type"].to_str().unwrap().to_string();
    (r.status, ct, String::from_utf8(r.body.to_vec()).unwrap())
}

/// Waits until the audience has `size` members (the processor runs in the background).
async fn size_becomes(t: &TestNode, audience: &str, size: u64) -> Value {
    let start = Moment::now();
    loop {
        let (status, a) = t.get(&format!("/api/v1/audiences/{audience}")).await;
        assert_eq!(status, 200, "{a}");
        if a["size"] == size && a["computation"]["status"] == "ready" {
            return a;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{audience} never reached {size} members: {a}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn audiences_follow_events_and_explain_themselves(backend: Backend) {
    let t = start_on("audiences", backend, |_| {}).await;
    // A syntax error points at its line and column.
    let (status, err) = post(
        &t,
        "/api/v1/audiences",
        json!({"id": "bad", "name": "Bad", "definition": "did \"Order Completed\"\n  and trait plan ="}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(err["code"], "invalid_audience_syntax");
    assert!(
        err["message"].as_str().unwrap().contains("line 2, column"),
        "{err}"
    );
    // One audience as text, one as a JSON tree.
    let (status, created) = post(
        &t,
        "/api/v1/audiences",
        json!({"id": "big_spenders", "name": "Big spenders",
               "definition": "did \"Order Completed\" where total > 100 and has email"}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["version"], 1);
    let (status, created) = post(
        &t,
        "/api/v1/audiences",
        json!({"id": "web", "name": "Seen on the web",
               "condition": {"type": "seen_on", "channel": "web"}}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["definition"], "seen on web");
    let (status, _) = post(
        &t,
        "/api/v1/audiences",
        json!({"id": "web", "name": "again", "definition": "has email"}),
    )
    .await;
    assert_eq!(status, 409);
    let (status, ct) = post(
        &t,
        "/api/v1/computed-traits",
        json!({"id": "spent", "kind": "sum", "event": "Order Completed", "property": "total"}),
    )
    .await;
    assert_eq!(status, 201, "{ct}");
    size_becomes(&t, "big_spenders", 0).await;
    t.send(json!({"batch": [
        {"type": "identify", "messageId": "i1", "userId": "ana",
         "traits": {"email": "Ana.Lopez@Gmail.com", "phone": "+33 6 12 34 56 78", "first_name": "Ana", "country": "FR"},
         "context": {"page": {"url": "https://shop.example/"},
                     "consent": {"categoryPreferences": {"marketing": true}}}},
        {"type": "track", "messageId": "o1", "userId": "ana", "event": "Order Completed", "properties": {"total": 150}},
        {"type": "track", "messageId": "o2", "userId": "bob", "event": "Order Completed", "properties": {"total": 20}},
    ]}))
    .await;
    size_becomes(&t, "big_spenders", 1).await;
    let (_, ana) = t
        .get("/api/v1/profiles/lookup?type=user_id&value=ana")
        .await;
    let ana_id = ana["id"].as_str().unwrap().to_string();
    let (_, members) = t.get("/api/v1/audiences/big_spenders/members").await;
    assert_eq!(members["members"][0]["profile_id"], json!(ana_id));
    // Memberships with their history.
    let (_, mine) = t.get(&format!("/api/v1/profiles/{ana_id}/audiences")).await;
    let ids: Vec<&str> = mine["audiences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["audience_id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"big_spenders"), "{mine}");
    assert_eq!(mine["history"][0]["change"], "entered");
    let (_, traits) = t
        .get(&format!("/api/v1/profiles/{ana_id}/computed-traits"))
        .await;
    assert_eq!(traits["computed_traits"]["spent"], json!(150));
    // Explain: Bob is out, and why.
    let (_, bob) = t
        .get("/api/v1/profiles/lookup?type=user_id&value=bob")
        .await;
    let bob_id = bob["id"].as_str().unwrap();
    let (status, why) = t
        .get(&format!("/api/v1/audiences/big_spenders/explain/{bob_id}"))
        .await;
    assert_eq!(status, 200, "{why}");
    assert_eq!(why["matches"], false);
    assert_eq!(why["member"], false);
    let parts = why["explanation"]["parts"].as_array().unwrap();
    assert_eq!(parts[0]["matched"], false);
    assert_eq!(parts[0]["found"], "0 matching event(s)");
    assert_eq!(parts[1]["condition"], "has email");
    assert_eq!(parts[1]["found"], "0 email");
    // Exports: CSV, NDJSON and hashed lists.
    let (status, ct, csv) = text(&t, "/api/v1/audiences/big_spenders/export").await;
    assert_eq!((status, ct.as_str()), (200, "text/csv; charset=utf-8"));
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "profile_id,user_id,email,phone,since");
    assert!(
        lines[1].starts_with(&format!("{ana_id},ana,ana.lopez@gmail.com,+33612345678,")),
        "{csv}"
    );
    let (_, ct, nd) = text(&t, "/api/v1/audiences/big_spenders/export?format=ndjson").await;
    assert_eq!(ct, "application/x-ndjson");
    let row: Value = serde_json::from_str(nd.lines().next().unwrap()).unwrap();
    assert_eq!(row["traits"]["first_name"], "Ana");
    let (_, _, google) = text(&t, "/api/v1/audiences/big_spenders/export?format=google").await;
    let g: Vec<&str> = google.lines().nth(1).unwrap().split(',').collect();
    assert_eq!(g[0], sha256_hex("analopez@gmail.com"));
    assert_eq!(g[1], sha256_hex("+33612345678"));
    assert_eq!(g[2], sha256_hex("ana"));
    assert_eq!(g[4], "FR");
    let (_, _, meta) = text(&t, "/api/v1/audiences/big_spenders/export?format=meta").await;
    let m: Vec<&str> = meta.lines().nth(1).unwrap().split(',').collect();
    assert_eq!(m[0], sha256_hex("ana.lopez@gmail.com"));
    assert_eq!(m[1], sha256_hex("33612345678"));
    assert_eq!(m[7], sha256_hex("fr"));
    let (status, err) = t
        .get("/api/v1/audiences/big_spenders/export?format=xml")
        .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (400, Some("invalid_parameter"))
    );
    // Replacing the definition computes it again; the list shows the new version.
    let (status, v2) = call(
        &t,
        "PUT",
        "/api/v1/audiences/big_spenders",
        json!({"name": "Big spenders", "definition": "computed spent >= 20"}),
    )
    .await;
    assert_eq!((status, v2["version"].as_i64()), (200, Some(2)), "{v2}");
    size_becomes(&t, "big_spenders", 2).await;
    // An audience in use cannot be deleted; a free one can.
    let (status, _) = post(
        &t,
        "/api/v1/audiences",
        json!({"id": "web_spenders", "name": "x", "definition": "in audience \"big_spenders\" and in audience \"web\""}),
    )
    .await;
    assert_eq!(status, 201);
    let (status, err) = call(&t, "DELETE", "/api/v1/audiences/big_spenders", json!(null)).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (400, Some("definition_in_use"))
    );
    let (status, _) = call(&t, "DELETE", "/api/v1/audiences/web_spenders", json!(null)).await;
    assert_eq!(status, 200);
    let (status, _) = t.get("/api/v1/audiences/web_spenders").await;
    assert_eq!(status, 404);
    t.stop().await;
}

on_each_store!(audiences_follow_events_and_explain_themselves);
