//! Audience webhooks against a real HTTP receiver: adds and removes streamed as they happen,
//! signed per Standard Webhooks, retried with backoff, and isolated from each other and from
//! ingestion.

#[macro_use]
mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use parcours_engine::clock::Moment;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post as route_post;
use axum::Router;
use common::{call, start_on, Backend, TestNode};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    headers: HeaderMap,
    raw: Bytes,
    body: Value,
    at: Moment,
}

/// How the receiver answers: fail the first `fail` requests with `status`; hold every request
/// until the gate gives a permit.
struct Behaviour {
    fail: usize,
    status: StatusCode,
    gate: Option<Arc<Semaphore>>,
}

struct Receiver {
    got: Mutex<Vec<Received>>,
    behaviour: Behaviour,
}

async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let n = {
        let mut got = r.got.lock().unwrap();
        got.push(Received {
            headers,
            body: serde_json::from_slice(&body).unwrap(),
            raw: body,
            at: Moment::now(),
        });
        got.len()
    };
    if let Some(gate) = &r.behaviour.gate {
        gate.acquire().await.unwrap().forget();
    }
    if n <= r.behaviour.fail {
        r.behaviour.status
    } else {
        StatusCode::NO_CONTENT
    }
}

/// A receiver on a free port; returns its URL.
async fn receiver(behaviour: Behaviour) -> (String, Arc<Receiver>) {
    let r = Arc::new(Receiver {
        got: Mutex::new(Vec::new()),
        behaviour,
    });
    // A receiver of the test's own, not a route of Parcours: nothing to document.
    #[allow(clippy::disallowed_methods)]
    let app = Router::new()
        .route("/hook", route_post(receive))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, r)
}

fn ok() -> Behaviour {
    Behaviour {
        fail: 0,
        status: StatusCode::OK,
        gate: None,
    }
}

impl Receiver {
    fn requests(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Every change received, in order (retries of a batch counted once per attempt).
    fn changes(&self) -> Vec<Value> {
        self.requests()
            .iter()
            .filter(|r| r.body["type"] == "audience.changes")
            .flat_map(|r| r.body["data"]["changes"].as_array().unwrap().clone())
            .collect()
    }

    async fn wait_for(&self, what: &str, done: impl Fn(&Self) -> bool) {
        let start = Moment::now();
        while !done(self) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{what}: the receiver got {:?}",
                self.requests()
                    .iter()
                    .map(|r| r.body.to_string())
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Checks the Standard Webhooks signature of a request, computed here independently.
fn verify(secret: &str, r: &Received) {
    let ts = r.headers["webhook-timestamp"].to_str().unwrap();
    let now = parcours_core::time::Clock::now(&parcours_engine::SystemClock).div_euclid(1000);
    assert!(
        (ts.parse::<i64>().unwrap() - now).abs() < 300,
        "timestamp {ts}"
    );
    common::hooks::assert_signed(secret, &r.headers, &r.raw);
    assert_eq!(r.headers["content-type"], "application/json");
}

async fn gold_audience(t: &TestNode) {
    let (status, a) = call(
        t,
        "POST",
        "/api/v1/audiences",
        json!({"id": "gold", "name": "Gold plan", "definition": "trait plan = \"gold\""}),
    )
    .await;
    assert_eq!(status, 201, "{a}");
}

async fn set_plan(t: &TestNode, users: std::ops::Range<usize>, plan: &str) {
    let batch: Vec<Value> = users
        .map(|i| {
            json!({"type": "identify", "userId": format!("u{i}"),
                   "traits": {"plan": plan, "email": format!("u{i}@example.com")}})
        })
        .collect();
    let r = t.send(json!({ "batch": batch })).await;
    assert_eq!(r.status, 200);
}

/// The receivers of these tests listen on loopback, which a node refuses unless allowed.
fn tune(c: &mut parcours_cli::config::Config) {
    c.destinations.retry_base_ms = 50;
    c.destinations.poll_ms = 20;
    c.destinations.allow_private_addresses = true;
}

/// Waits until a destination's status satisfies `done` (the worker updates it once the
/// receiver's answer is in, a moment after the receiver saw the request).
async fn delivery_becomes(t: &TestNode, id: &str, what: &str, done: impl Fn(&Value) -> bool) {
    common::eventually(Duration::from_secs(30), what, || async {
        let (_, d) = call(t, "GET", &format!("/api/v1/destinations/{id}"), json!(null)).await;
        done(&d["delivery"]).then_some(())
    })
    .await
}

async fn webhook_streams_adds_and_removes_signed(backend: Backend) {
    let t = start_on("dest-stream", backend, tune).await;
    gold_audience(&t).await;
    set_plan(&t, 0..1, "gold").await;
    let (url, rx) = receiver(ok()).await;
    // Refused: a bad address, an unknown audience, a bad secret.
    for (body, code) in [
        (
            json!({"id": "crm", "name": "CRM", "url": "ftp://x"}),
            "invalid_destination",
        ),
        (
            json!({"id": "crm", "name": "CRM", "url": url, "purpose": "none", "audiences": ["nope"]}),
            "invalid_audience_reference",
        ),
        (
            json!({"id": "crm", "name": "CRM", "url": url, "purpose": "none", "secret": "hunter2"}),
            "invalid_destination",
        ),
        (
            json!({"id": "CRM!", "name": "CRM", "url": url, "purpose": "none"}),
            "invalid_id",
        ),
        (
            json!({"id": "crm", "name": "CRM", "url": url, "purpose": "none", "colour": 1}),
            "invalid_destination",
        ),
    ] {
        let (status, e) = call(&t, "POST", "/api/v1/destinations", body).await;
        assert_eq!((status, e["code"].as_str()), (400, Some(code)), "{e}");
    }
    let (status, d) = call(
        &t,
        "POST",
        "/api/v1/destinations",
        json!({"id": "crm", "name": "CRM", "url": url, "purpose": "none", "audiences": ["gold"]}),
    )
    .await;
    assert_eq!(status, 201, "{d}");
    let secret = d["secret"].as_str().unwrap().to_string();
    assert!(
        secret.starts_with("whsec_") && secret.len() > 40,
        "{secret}"
    );
    let (status, e) = call(
        &t,
        "POST",
        "/api/v1/destinations",
        json!({"id": "crm", "name": "CRM", "url": url, "purpose": "none"}),
    )
    .await;
    assert_eq!(
        (status, e["code"].as_str()),
        (409, Some("destination_exists"))
    );
    // A new destination starts with what already happened: u0 entered before it existed.
    rx.wait_for("the earlier entry", |r| r.changes().len() == 1)
        .await;
    set_plan(&t, 0..1, "silver").await;
    rx.wait_for("the exit", |r| r.changes().len() == 2).await;
    let changes = rx.changes();
    assert_eq!(
        changes
            .iter()
            .map(|c| (
                c["action"].as_str().unwrap(),
                c["profile"]["email"].as_str().unwrap()
            ))
            .collect::<Vec<_>>(),
        vec![("add", "u0@example.com"), ("remove", "u0@example.com")]
    );
    assert_eq!(
        changes[0]["audience"],
        json!({"id": "gold", "name": "Gold plan"})
    );
    assert_eq!(changes[0]["profile"]["user_id"], "u0");
    assert!(changes[0]["id"].as_i64().unwrap() < changes[1]["id"].as_i64().unwrap());
    for r in rx.requests() {
        verify(&secret, &r);
        assert_eq!(r.body["type"], "audience.changes");
        assert_eq!(r.body["data"]["destination"], "crm");
    }
    // The status tells where it is; the secret is not shown again.
    delivery_becomes(&t, "crm", "idle with both changes delivered", |s| {
        s["state"] == "idle" && s["delivered"] == 2
    })
    .await;
    let (status, d) = call(&t, "GET", "/api/v1/destinations/crm", json!(null)).await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["position"], changes[1]["id"], "{d}");
    assert_ne!(d["secret"], secret.as_str());
    // An audience a destination sends cannot be deleted from under it.
    let (status, e) = call(&t, "DELETE", "/api/v1/audiences/gold", json!(null)).await;
    assert_eq!(
        (status, e["code"].as_str()),
        (400, Some("definition_in_use")),
        "{e}"
    );
    // Hashed identifiers for an ad platform: a new version keeps its place.
    let (status, d) = call(
        &t,
        "PUT",
        "/api/v1/destinations/crm",
        json!({"name": "Ads", "url": url, "purpose": "none", "audiences": ["gold"], "identifiers": "meta"}),
    )
    .await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(
        d["secret"],
        json!(format!("whsec_…{}", &secret[secret.len() - 4..]))
    );
    delivery_becomes(&t, "crm", "version 2 running", |s| s["version"] == 2).await;
    set_plan(&t, 0..1, "gold").await;
    rx.wait_for("the re-entry", |r| r.changes().len() == 3)
        .await;
    let last = rx.changes()[2].clone();
    assert_eq!(last["action"], "add");
    assert_eq!(
        last["profile"]["email"],
        parcours_core::adhash::sha256_hex("u0@example.com")
    );
    assert!(last["profile"].get("user_id").is_none(), "{last}");
    verify(&secret, &rx.requests()[2]);
    let (status, _) = call(&t, "DELETE", "/api/v1/destinations/crm", json!(null)).await;
    assert_eq!(status, 200);
    let (status, _) = call(&t, "GET", "/api/v1/destinations/crm", json!(null)).await;
    assert_eq!(status, 404);
    t.stop().await;
}

async fn webhook_retries_with_backoff_until_acknowledged(backend: Backend) {
    let t = start_on("dest-retry", backend, tune).await;
    gold_audience(&t).await;
    let (url, rx) = receiver(Behaviour {
        fail: 3,
        status: StatusCode::SERVICE_UNAVAILABLE,
        gate: None,
    })
    .await;
    let (status, d) = call(
        &t,
        "POST",
        "/api/v1/destinations",
        json!({"id": "flaky", "name": "Flaky", "url": url, "purpose": "none"}),
    )
    .await;
    assert_eq!(status, 201, "{d}");
    let secret = d["secret"].as_str().unwrap().to_string();
    set_plan(&t, 0..3, "gold").await;
    // While it fails, the status says so.
    delivery_becomes(&t, "flaky", "a failure reported", |s| {
        s["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("HTTP 503"))
            && s["failures"].as_u64().is_some_and(|f| f >= 1)
    })
    .await;
    rx.wait_for("the acknowledged attempt", |r| r.requests().len() == 4)
        .await;
    let requests = rx.requests();
    // The same batch each time, under the same webhook-id, each attempt signed afresh.
    let ids: Vec<_> = requests
        .iter()
        .map(|r| r.headers["webhook-id"].clone())
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let batches: Vec<_> = requests
        .iter()
        .map(|r| r.body["data"]["changes"].clone())
        .collect();
    assert!(batches.iter().all(|b| *b == batches[0]));
    for r in &requests {
        verify(&secret, r);
    }
    // Waits of at least 50, 100 and 200 ms: the backoff doubles.
    let gaps: Vec<Duration> = requests
        .windows(2)
        .map(|w| w[1].at.saturating_duration_since(w[0].at))
        .collect();
    for (gap, min) in gaps.iter().zip([50u64, 100, 200]) {
        assert!(*gap >= Duration::from_millis(min), "gaps {gaps:?}");
    }
    // Acknowledged: nothing is sent again, and the next change is a new message.
    set_plan(&t, 0..1, "silver").await;
    rx.wait_for("the next change", |r| r.requests().len() == 5)
        .await;
    let fifth = &rx.requests()[4];
    assert_ne!(fifth.headers["webhook-id"], ids[0]);
    let removed = fifth.body["data"]["changes"].as_array().unwrap();
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0]["action"], "remove");
    // Once the worker is idle with every change acknowledged, it has nothing left to send.
    delivery_becomes(
        &t,
        "flaky",
        "idle, no failures, four changes delivered",
        |s| s["state"] == "idle" && s["failures"] == 0 && s["delivered"] == 4,
    )
    .await;
    assert_eq!(
        rx.requests().len(),
        5,
        "nothing is sent twice once acknowledged"
    );
    t.stop().await;
}

async fn slow_destination_holds_back_nothing_else(backend: Backend) {
    let t = start_on("dest-isolation", backend, |c| {
        tune(c);
        c.destinations.timeout_ms = 60_000;
        c.destinations.batch = 10;
    })
    .await;
    gold_audience(&t).await;
    let gate = Arc::new(Semaphore::new(0));
    let (slow_url, slow) = receiver(Behaviour {
        fail: 0,
        status: StatusCode::OK,
        gate: Some(gate.clone()),
    })
    .await;
    let (fast_url, fast) = receiver(ok()).await;
    for (id, url) in [("slow", &slow_url), ("fast", &fast_url)] {
        let (status, d) = call(
            &t,
            "POST",
            "/api/v1/destinations",
            json!({"id": id, "name": id, "url": url, "purpose": "none"}),
        )
        .await;
        assert_eq!(status, 201, "{d}");
    }
    // The slow receiver holds its first request and answers nothing until released.
    set_plan(&t, 0..1, "gold").await;
    slow.wait_for("the slow receiver's first request", |r| {
        r.requests().len() == 1
    })
    .await;
    // Meanwhile events are accepted, audiences move and the other destination gets it all.
    set_plan(&t, 1..40, "gold").await;
    fast.wait_for("the entries on the fast destination", |r| {
        r.changes().len() == 40
    })
    .await;
    set_plan(&t, 0..10, "silver").await;
    fast.wait_for("every change on the fast destination", |r| {
        r.changes().len() == 50
    })
    .await;
    assert_eq!(
        slow.requests().len(),
        1,
        "the slow one is still on its first batch"
    );
    let (_, d) = call(&t, "GET", "/api/v1/audiences/gold", json!(null)).await;
    assert_eq!(d["size"], 30, "{d}");
    let (_, d) = call(&t, "GET", "/api/v1/destinations/slow", json!(null)).await;
    assert_eq!(d["delivery"]["state"], "delivering", "{d}");
    // Released, the slow one catches up: the same changes, in the same order, once each.
    gate.add_permits(1_000);
    slow.wait_for("every change on the slow destination", |r| {
        r.changes().len() == 50
    })
    .await;
    let ids = |r: &Receiver| -> Vec<i64> {
        r.changes()
            .iter()
            .map(|c| c["id"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(ids(&slow), ids(&fast));
    let mut sorted = ids(&fast);
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, ids(&fast), "in order, no duplicates");
    assert!(slow
        .requests()
        .iter()
        .all(|r| r.body["data"]["changes"].as_array().unwrap().len() <= 10));
    t.stop().await;
}

async fn dead_requests_are_logged_and_replayed(backend: Backend) {
    let t = start_on("dest-dead", backend, |c| {
        tune(c);
        c.destinations.max_attempts = 2;
    })
    .await;
    gold_audience(&t).await;
    let (url, rx) = receiver(Behaviour {
        fail: 2,
        status: StatusCode::BAD_GATEWAY,
        gate: None,
    })
    .await;
    let (status, d) = call(
        &t,
        "POST",
        "/api/v1/destinations",
        json!({"id": "crm", "name": "CRM", "url": url, "purpose": "none"}),
    )
    .await;
    assert_eq!(status, 201, "{d}");
    set_plan(&t, 0..2, "gold").await;
    // Two attempts, both refused: the request is given up, with its reason.
    delivery_becomes(&t, "crm", "one request dead", |s| {
        s["dead"] == 1 && s["pending"] == 0
    })
    .await;
    let (status, log) = call(
        &t,
        "GET",
        "/api/v1/destinations/crm/deliveries?state=dead",
        json!(null),
    )
    .await;
    assert_eq!(status, 200, "{log}");
    let dead = log["deliveries"][0].clone();
    assert_eq!(log["deliveries"].as_array().unwrap().len(), 1, "{log}");
    assert_eq!(
        (dead["state"].as_str(), dead["attempts"].as_u64()),
        (Some("dead"), Some(2))
    );
    assert!(
        dead["last_error"].as_str().unwrap().contains("HTTP 502"),
        "{dead}"
    );
    let id = dead["id"].as_i64().unwrap();
    let (status, one) = call(
        &t,
        "GET",
        &format!("/api/v1/destinations/crm/deliveries/{id}"),
        json!(null),
    )
    .await;
    assert_eq!(status, 200, "{one}");
    let attempts = one["attempt_log"].as_array().unwrap();
    assert_eq!(
        attempts
            .iter()
            .map(|a| (a["status"].as_u64(), a["ok"].as_bool()))
            .collect::<Vec<_>>(),
        vec![(Some(502), Some(false)), (Some(502), Some(false))]
    );
    assert_eq!(
        one["body"]["data"]["changes"],
        rx.requests()[0].body["data"]["changes"]
    );
    let webhook_id = one["webhook_id"].as_str().unwrap().to_string();
    assert_eq!(rx.requests()[0].headers["webhook-id"], webhook_id.as_str());
    // Another destination's delivery, an unknown one, a bad state: refused or not found.
    for (path, code) in [
        (
            format!("/api/v1/destinations/crm/deliveries/{}", id + 1000),
            404,
        ),
        ("/api/v1/destinations/nope/deliveries".to_string(), 404),
        (
            "/api/v1/destinations/crm/deliveries?state=lost".to_string(),
            400,
        ),
        (
            "/api/v1/destinations/crm/deliveries?limit=0".to_string(),
            400,
        ),
    ] {
        let (status, e) = call(&t, "GET", &path, json!(null)).await;
        assert_eq!(status, code, "{path}: {e}");
    }
    let (status, e) = call(
        &t,
        "POST",
        "/api/v1/destinations/crm/replay",
        json!({"from": "first"}),
    )
    .await;
    assert_eq!(
        (status, e["code"].as_str()),
        (400, Some("invalid_replay")),
        "{e}"
    );
    // Replayed from the dead request: the same webhook-id and body, now acknowledged.
    let (status, r) = call(
        &t,
        "POST",
        "/api/v1/destinations/crm/replay",
        json!({"from": id}),
    )
    .await;
    assert_eq!((status, r["requeued"].as_u64()), (200, Some(1)), "{r}");
    delivery_becomes(&t, "crm", "the replay delivered", |s| {
        s["dead"] == 0 && s["pending"] == 0 && s["delivered"] == 2
    })
    .await;
    let third = &rx.requests()[2];
    assert_eq!(third.headers["webhook-id"], webhook_id.as_str());
    assert_eq!(third.raw, rx.requests()[0].raw);
    let (_, one) = call(
        &t,
        "GET",
        &format!("/api/v1/destinations/crm/deliveries/{id}"),
        json!(null),
    )
    .await;
    assert_eq!(one["state"], "done", "{one}");
    // Deleted, it is forgotten by the node's delivery; the others are still answered (the
    // delivery supervisor once locked itself up forgetting a deleted destination).
    let (status, _) = call(&t, "DELETE", "/api/v1/destinations/crm", json!(null)).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let listed = tokio::time::timeout(
        Duration::from_secs(10),
        call(&t, "GET", "/api/v1/destinations", json!(null)),
    )
    .await
    .expect("the destinations are listed after a delete");
    assert_eq!(listed, (200, json!({"destinations": []})));
    t.stop().await;
}

/// A member is added to a destination only with her consent to its purpose on its channel
/// (marketing on ads by default, read as journeys read it); removals always go.
async fn members_are_added_only_with_consent(backend: Backend) {
    let t = start_on("dest-consent", backend, tune).await;
    gold_audience(&t).await;
    let consent = |user: &str, prefs: Value| {
        json!({"type": "identify", "userId": user,
               "traits": {"plan": "gold", "email": format!("{user}@example.com")},
               "context": {"consent": {"categoryPreferences": prefs, "version": "cmp-3"}}})
    };
    let r = t
        .send(json!({"batch": [
            consent("yes", json!({"marketing": true})),
            consent("ads-only", json!({"marketing": false, "marketing:ads": true})),
            consent("not-ads", json!({"marketing": true, "marketing:ads": false})),
            consent("withdrawn", json!({"marketing": false})),
            {"type": "identify", "userId": "never", "traits": {"plan": "gold", "email": "never@example.com"}},
        ]}))
        .await;
    assert_eq!(r.status, 200);
    let (url, rx) = receiver(ok()).await;
    for (body, code) in [
        (
            json!({"id": "ads", "name": "Ads", "url": url, "purpose": "Marketing!"}),
            "invalid_destination",
        ),
        (
            json!({"id": "ads", "name": "Ads", "url": url, "channel": ""}),
            "invalid_destination",
        ),
    ] {
        let (status, e) = call(&t, "POST", "/api/v1/destinations", body).await;
        assert_eq!((status, e["code"].as_str()), (400, Some(code)), "{e}");
    }
    let (status, d) = call(
        &t,
        "POST",
        "/api/v1/destinations",
        json!({"id": "ads", "name": "Ads", "url": url, "audiences": ["gold"]}),
    )
    .await;
    assert_eq!(status, 201, "{d}");
    assert_eq!(
        (d["purpose"].as_str(), d["channel"].as_str()),
        (Some("marketing"), Some("ads"))
    );
    // A second destination that is not marketing gets everyone.
    let (url2, all) = receiver(ok()).await;
    let (status, d) = call(
        &t,
        "POST",
        "/api/v1/destinations",
        json!({"id": "warehouse", "name": "Warehouse", "url": url2, "purpose": "none"}),
    )
    .await;
    assert_eq!(status, 201, "{d}");
    all.wait_for("every member", |r| r.changes().len() == 5)
        .await;
    delivery_becomes(&t, "ads", "the ads destination caught up", |s| {
        s["state"] == "idle" && s["delivered"].as_u64() >= Some(1)
    })
    .await;
    let users = |r: &Receiver| {
        let mut v: Vec<(String, String)> = r
            .changes()
            .iter()
            .map(|c| {
                (
                    c["action"].as_str().unwrap().to_string(),
                    c["profile"]["user_id"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        users(&rx),
        vec![
            ("add".to_string(), "ads-only".to_string()),
            ("add".to_string(), "yes".to_string())
        ]
    );
    // Leaving the audience: the removal goes, whatever the consent.
    let r = t
        .send(json!({"batch": [
            {"type": "identify", "userId": "yes", "traits": {"plan": "silver"}},
            {"type": "identify", "userId": "never", "traits": {"plan": "silver"}},
        ]}))
        .await;
    assert_eq!(r.status, 200);
    rx.wait_for("both removals", |r| r.changes().len() == 4)
        .await;
    assert_eq!(
        users(&rx)
            .into_iter()
            .filter(|(a, _)| a == "remove")
            .map(|(_, u)| u)
            .collect::<Vec<_>>(),
        vec!["never", "yes"]
    );
    // The proof of her consent: which text she saw.
    let p = t.profile_of(common::ADMIN, "user_id", "yes").await.unwrap();
    assert_eq!(p["consent"]["marketing"]["text_version"], "cmp-3", "{p}");
    t.stop().await;
}

/// GDPR Art. 19: an erasure is told to each destination that received her (as it knows
/// her), signed, and to no other; the request's result says who was told.
async fn an_erasure_is_told_to_the_destinations_that_had_her(backend: Backend) {
    let t = start_on("dest-erasure", backend, tune).await;
    gold_audience(&t).await;
    let (status, a) = call(
        &t,
        "POST",
        "/api/v1/audiences",
        json!({"id": "silver", "name": "Silver plan", "definition": "trait plan = \"silver\""}),
    )
    .await;
    assert_eq!(status, 201, "{a}");
    set_plan(&t, 0..2, "gold").await;
    let (url, rx) = receiver(ok()).await;
    let (other_url, other_rx) = receiver(ok()).await;
    let mut secrets = Vec::new();
    for (id, url, audience) in [("crm", &url, "gold"), ("loyalty", &other_url, "silver")] {
        let (status, d) = call(
            &t,
            "POST",
            "/api/v1/destinations",
            json!({"id": id, "name": id, "url": url, "purpose": "none", "audiences": [audience]}),
        )
        .await;
        assert_eq!(status, 201, "{d}");
        secrets.push(d["secret"].as_str().unwrap().to_string());
    }
    rx.wait_for("both entries", |r| r.changes().len() == 2)
        .await;

    let (status, filed) = call(
        &t,
        "POST",
        "/api/v1/privacy/requests",
        json!({"kind": "erasure", "identifier": {"type": "user_id", "value": "u0"}}),
    )
    .await;
    assert_eq!(status, 202, "{filed}");
    let id = filed["id"].as_str().unwrap().to_string();
    let done = common::eventually(Duration::from_secs(60), "the erasure", || async {
        let (_, r) = call(
            &t,
            "GET",
            &format!("/api/v1/privacy/requests/{id}"),
            json!(null),
        )
        .await;
        (r["state"] == "done").then_some(r)
    })
    .await;
    assert_eq!(
        done["result"]["destinations_notified"],
        json!([{"destination": "crm", "status": 204}]),
        "{done}"
    );
    let notices: Vec<Received> = rx
        .requests()
        .into_iter()
        .filter(|r| r.body["type"] == "privacy.erasure")
        .collect();
    assert_eq!(notices.len(), 1, "{notices:?}");
    let n = &notices[0];
    verify(&secrets[0], n);
    assert_eq!(
        n.headers["webhook-id"],
        format!("erasure_{id}_crm").as_str()
    );
    assert_eq!(n.body["data"]["request"], id.as_str());
    let profiles = n.body["data"]["profiles"].as_array().unwrap();
    assert_eq!(profiles.len(), 1, "{}", n.body);
    assert_eq!(profiles[0]["profile"]["email"], "u0@example.com");
    assert_eq!(profiles[0]["profile"]["user_id"], "u0");
    assert!(!n.body.to_string().contains("u1@example.com"));
    // The destination that never had her hears nothing.
    assert!(other_rx.requests().is_empty(), "{:?}", other_rx.requests());
    let r = t
        .client
        .get("/api/v1/audit/export", common::ADMIN)
        .await
        .unwrap();
    let log = String::from_utf8_lossy(&r.body).to_string();
    assert!(log.contains("privacy.erasure.notified"), "{log}");
    assert!(!log.contains("u0@example.com"), "{log}");
    t.stop().await;
}

on_each_store!(
    an_erasure_is_told_to_the_destinations_that_had_her,
    members_are_added_only_with_consent,
    dead_requests_are_logged_and_replayed,
    webhook_streams_adds_and_removes_signed,
    webhook_retries_with_backoff_until_acknowledged,
    slow_destination_holds_back_nothing_else,
);
