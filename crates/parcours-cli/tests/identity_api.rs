//! Identity through the real HTTP path: shared tablets, merges and their undo, isolation,
//! arrival order, replay.

#[macro_use]
mod common;

use std::collections::BTreeSet;

use common::{start_on, Backend, ADMIN, WRITE_KEY};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::{json, Value};

fn identify(mid: &str, ts: &str, user: Option<&str>, anon: &str, traits: Value) -> Value {
    json!({"type": "identify", "messageId": mid, "timestamp": ts, "userId": user, "anonymousId": anon, "traits": traits})
}

async fn a_shared_store_tablet_keeps_customers_apart(backend: Backend) {
    let t = start_on("tablet", backend, |_| {}).await;
    let tablet = |mid: &str, user: &str, email: &str| {
        json!({"type": "identify", "messageId": mid, "userId": user, "anonymousId": "tablet-store_1",
               "context": {"device": {"id": "tablet-device-store_1", "type": "ios"}}, "traits": {"email": email}})
    };
    t.send(json!({"batch": [tablet("t1", "alice", "alice@x.io"), tablet("t2", "bob", "bob@x.io"), tablet("t3", "carol", "carol@x.io")]})).await;
    t.unified().await;
    let mut ids = BTreeSet::new();
    for who in ["alice", "bob", "carol"] {
        let (status, p) = t
            .get(&format!("/api/v1/profiles/lookup?type=user_id&value={who}"))
            .await;
        assert_eq!(status, 200);
        let emails: Vec<&str> = p["identifiers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["type"] == "email")
            .map(|i| i["value"].as_str().unwrap())
            .collect();
        assert_eq!(
            emails,
            [format!("{who}@x.io")],
            "{who} holds only their own email"
        );
        ids.insert(p["id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 3, "three customers, three profiles");
    t.stop().await;
}

async fn a_merge_is_logged_with_its_cause_and_can_be_undone(backend: Backend) {
    let t = start_on("unmerge", backend, |_| {}).await;
    // Alice browses on the web; Bob uses the app; then Bob, on Alice's browser, types his email.
    t.send(json!({"batch": [
        identify("a1", "2026-01-01T10:00:00Z", None, "web-alice", json!({"email": "alice@x.io", "city": "Paris"})),
        identify("b1", "2026-01-02T10:00:00Z", None, "app-bob", json!({"email": "bob@x.io", "city": "Lyon"})),
        identify("b2", "2026-01-03T10:00:00Z", None, "app-bob", json!({"plan": "gold"})),
        identify("x1", "2026-01-04T10:00:00Z", None, "web-alice", json!({"email": "bob@x.io"})),
    ]})).await;
    t.unified().await;
    let (_, alice) = t
        .get("/api/v1/profiles/lookup?type=email&value=alice@x.io")
        .await;
    let (_, bob) = t
        .get("/api/v1/profiles/lookup?type=email&value=BOB@x.io")
        .await;
    assert_eq!(alice["id"], bob["id"], "the shared browser merged them");
    let pid = alice["id"].as_str().unwrap();
    let (_, merges) = t.get(&format!("/api/v1/profiles/{pid}/merges")).await;
    let merges = merges["merges"].as_array().unwrap().clone();
    assert_eq!(merges.len(), 1);
    assert_eq!(merges[0]["cause"]["mid"], "x1");
    assert_eq!(merges[0]["status"], "active");
    assert_eq!(merges[0]["rule"], "shared_identifier");
    let merge_id = merges[0]["id"].as_i64().unwrap();

    let r = t
        .client
        .post(&format!("/api/v1/merges/{merge_id}/undo"), WRITE_KEY, "")
        .await
        .unwrap();
    assert_eq!(r.status, 401, "a write key cannot undo anything");
    let r = t
        .client
        .post(
            &format!("/api/v1/profiles/{pid}/unmerge"),
            ADMIN,
            json!({"merge_id": merge_id}).to_string(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let undone = r.json();
    assert_ne!(
        undone["winner_profile"], undone["loser_profile"],
        "{undone}"
    );

    let (_, alice) = t
        .get("/api/v1/profiles/lookup?type=email&value=alice@x.io")
        .await;
    let (_, bob) = t
        .get("/api/v1/profiles/lookup?type=email&value=bob@x.io")
        .await;
    assert_ne!(alice["id"], bob["id"], "undo splits them again");
    assert_eq!(alice["id"], undone["winner_profile"]);
    assert_eq!(bob["id"], undone["loser_profile"]);
    assert_eq!(alice["traits"]["city"], "Paris");
    assert_eq!(bob["traits"]["city"], "Lyon", "{bob}");
    assert_eq!(bob["traits"]["plan"], "gold");
    assert!(
        alice["traits"].get("plan").is_none(),
        "Bob's traits left Alice's profile"
    );
    let a_events = timeline(&t, &alice).await;
    let b_events = timeline(&t, &bob).await;
    assert!(a_events.contains("a1") && !a_events.contains("b1"));
    assert!(b_events.contains("b1") && b_events.contains("b2"));
    assert!(a_events.is_disjoint(&b_events));
    let (_, m) = t.get(&format!("/api/v1/merges/{merge_id}")).await;
    assert_eq!(m["status"], "undone");
    let r = t
        .client
        .post(&format!("/api/v1/merges/{merge_id}/undo"), ADMIN, "")
        .await
        .unwrap();
    assert_eq!(r.status, 409, "a merge is undone once");

    // New events on the separated identifiers do not merge them again.
    t.send(json!({"batch": [identify("x2", "2026-01-05T10:00:00Z", None, "web-alice", json!({"email": "bob@x.io"}))]})).await;
    t.unified().await;
    let (_, alice2) = t
        .get("/api/v1/profiles/lookup?type=email&value=alice@x.io")
        .await;
    let (_, bob2) = t
        .get("/api/v1/profiles/lookup?type=email&value=bob@x.io")
        .await;
    assert_ne!(alice2["id"], bob2["id"]);
    let emails = |p: &Value| -> Vec<String> {
        p["identifiers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["type"] == "email")
            .map(|i| i["value"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        emails(&alice2),
        ["alice@x.io"],
        "Alice's profile holds only her email: {alice2}"
    );
    assert_eq!(emails(&bob2), ["bob@x.io"], "{bob2}");
    assert_eq!(bob2["events"], 4, "b1, b2, the bridging x1 and the new x2");
    t.stop().await;
}

async fn workspaces_never_see_each_other_and_write_keys_read_nothing(backend: Backend) {
    let t = start_on("isolation", backend, |_| {}).await;
    let r = t
        .client
        .post(
            "/api/v1/workspaces",
            ADMIN,
            json!({"name": "Other brand"}).to_string(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201);
    let other = r.json();
    let (other_key, other_token) = (
        other["write_key"].as_str().unwrap().to_string(),
        other["admin_token"].as_str().unwrap().to_string(),
    );
    let r = t
        .client
        .post(
            "/api/v1/workspaces",
            &other_token,
            json!({"name": "Third"}).to_string(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 403, "only the instance admin creates workspaces");
    t.send(json!({"batch": [identify("m1", "2026-01-01T00:00:00Z", Some("cus_1"), "a1", json!({"email": "secret@brand-a.io"}))]})).await;
    let r = t.client.track("/v1/batch", &other_key, json!({"batch": [identify("m1", "2026-01-01T00:00:00Z", Some("cus_1"), "a1", json!({"email": "other@brand-b.io"}))]}).to_string()).await.unwrap();
    assert_eq!(
        r.status, 200,
        "the same messageId in another workspace is not a duplicate"
    );
    t.unified().await;
    let (status, mine) = t
        .get("/api/v1/profiles/lookup?type=user_id&value=cus_1")
        .await;
    assert_eq!(status, 200);
    assert_eq!(mine["traits"]["email"], "secret@brand-a.io");
    let theirs = t
        .client
        .get(
            "/api/v1/profiles/lookup?type=user_id&value=cus_1",
            &other_token,
        )
        .await
        .unwrap()
        .json();
    assert_eq!(theirs["traits"]["email"], "other@brand-b.io");
    let pid = mine["id"].as_str().unwrap();
    let r = t
        .client
        .get(&format!("/api/v1/profiles/{pid}"), &other_token)
        .await
        .unwrap();
    assert_eq!(r.status, 404, "another workspace's profile id is not found");
    let r = t
        .client
        .get(&format!("/api/v1/profiles/{pid}/events"), &other_token)
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    let r = t
        .client
        .get("/api/v1/quarantine", &other_token)
        .await
        .unwrap();
    assert_eq!(r.json()["events"], json!([]));
    for path in [
        "/api/v1/status",
        &format!("/api/v1/profiles/{pid}"),
        "/api/v1/quarantine",
        "/api/v1/sources",
    ] {
        let r = t.client.get(path, WRITE_KEY).await.unwrap();
        assert_eq!(r.status, 401, "a write key cannot read {path}");
        let r = t.client.track(path, WRITE_KEY, "").await.unwrap();
        assert!(
            r.status == 401 || r.status == 405,
            "a write key as Basic cannot read {path}: {}",
            r.status
        );
    }
    t.stop().await;
}

async fn timeline(t: &common::TestNode, p: &Value) -> BTreeSet<String> {
    let (_, page) = t
        .get(&format!(
            "/api/v1/profiles/{}/events",
            p["id"].as_str().unwrap()
        ))
        .await;
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["messageId"].as_str().unwrap().to_string())
        .collect()
}

/// Small omnichannel histories with shared tablets and late events.
fn history() -> Vec<Value> {
    let mut events = Vec::new();
    for c in 0..12 {
        let day = |d: u32, h: u32| format!("2026-02-{:02}T{:02}:00:00Z", d, h);
        events.push(json!({"type": "page", "messageId": format!("c{c}-p"), "anonymousId": format!("web-{c}"), "timestamp": day(1, c % 10)}));
        events.push(identify(
            &format!("c{c}-i"),
            &day(2, c % 10),
            Some(&format!("cus_{c}")),
            &format!("web-{c}"),
            json!({"email": format!("c{c}@x.io"), "tier": "silver"}),
        ));
        events.push(json!({"type": "track", "event": "Order Completed", "messageId": format!("c{c}-o"), "userId": format!("cus_{c}"),
            "anonymousId": format!("tablet-{}", c % 3), "timestamp": day(3, c % 10), "context": {"traits": {"tier": "gold"}, "channel": "store"}}));
        events.push(identify(
            &format!("c{c}-j"),
            &day(4, c % 10),
            None,
            &format!("app-{c}"),
            json!({"email": format!("c{c}@x.io"), "phone_model": "X"}),
        ));
    }
    events
}

async fn snapshot(t: &common::TestNode) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut after = String::new();
    loop {
        let page = t.store.profiles_page(&t.workspace, &after, 500).unwrap();
        let Some(last) = page.last() else { break };
        after = last.id.clone();
        for p in page {
            out.insert(json!({"ids": p.identifiers, "traits": p.trait_values(), "events": p.events, "channels": p.channels.keys().collect::<Vec<_>>()}).to_string());
        }
    }
    out
}

async fn arrival_order_and_replay_give_the_same_profiles(backend: Backend) {
    let events = history();
    let mut sorted = common::start_on("order-a", backend, |_| {}).await;
    sorted.send(json!({"batch": events})).await;
    sorted.unified().await;
    let expected = snapshot(&sorted).await;
    assert_eq!(expected.len(), 12, "twelve customers");

    let mut shuffled = history();
    shuffled.shuffle(&mut rand::rngs::StdRng::seed_from_u64(7));
    let t = start_on("order-b", backend, |_| {}).await;
    for chunk in shuffled.chunks(5) {
        t.send(json!({"batch": chunk})).await;
        t.unified().await;
    }
    assert_eq!(
        snapshot(&t).await,
        expected,
        "arrival order does not change the profiles"
    );

    let node = sorted.node.take().unwrap();
    node.stop().await;
    parcours_engine::replay(sorted.store.as_ref(), 0, 7, &mut |_, _| {}).unwrap();
    assert_eq!(
        snapshot(&sorted).await,
        expected,
        "replay rebuilds the same profiles"
    );
    sorted.stop().await;
    t.stop().await;
}

on_each_store!(
    a_shared_store_tablet_keeps_customers_apart,
    a_merge_is_logged_with_its_cause_and_can_be_undone,
    workspaces_never_see_each_other_and_write_keys_read_nothing,
    arrival_order_and_replay_give_the_same_profiles,
);
