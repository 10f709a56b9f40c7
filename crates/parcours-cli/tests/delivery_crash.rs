//! Webhook delivery survives crashes: a `parcours serve` process streams audience changes to
//! three receivers (fast, slow at 2 s a request, failing every other request) and is
//! SIGKILLed and restarted at random moments. Afterwards every receiver holds every change,
//! no webhook-id ever arrived with two different bodies, and, measured once the node runs
//! steadily, the slow receiver does not delay the fast one (p99 of each printed).

#[macro_use]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use parcours_engine::clock::Moment;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post as route_post;
use axum::Router;
use common::Backend;
use parcours_store_postgres::testing::TempDatabase;
use parcours_testkit::http::Client;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const WRITE_KEY: &str = "wk_crash_key_0123456789abcdef";
const ADMIN: &str = "pat_crash_admin_0123456789abcdef";
const CUSTOMERS: usize = 30;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Fast,
    /// Answers after 2 s.
    Slow,
    /// Fails every other request with a 500.
    Flaky,
}

/// One request as a receiver got it.
#[derive(Clone, Debug)]
struct Got {
    id: String,
    body: String,
    /// Wall-clock milliseconds at arrival.
    at: i64,
    accepted: bool,
}

struct Receiver {
    kind: Kind,
    got: Mutex<Vec<Got>>,
}

fn wall_ms() -> i64 {
    parcours_core::time::Clock::now(&parcours_engine::SystemClock)
}

async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let at = wall_ms();
    let n = r.got.lock().unwrap().len();
    let accepted = !(r.kind == Kind::Flaky && n % 2 == 0);
    r.got.lock().unwrap().push(Got {
        id: headers["webhook-id"].to_str().unwrap().to_string(),
        body: String::from_utf8(body.to_vec()).unwrap(),
        at,
        accepted,
    });
    if r.kind == Kind::Slow {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    if accepted {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

async fn receiver(kind: Kind) -> (String, Arc<Receiver>) {
    let r = Arc::new(Receiver {
        kind,
        got: Mutex::new(Vec::new()),
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

impl Receiver {
    /// Every change the receiver accepted, by change id, once each however often it came.
    fn held(&self) -> BTreeMap<i64, Value> {
        let mut out = BTreeMap::new();
        for g in self.got.lock().unwrap().iter().filter(|g| g.accepted) {
            let body: Value = serde_json::from_str(&g.body).unwrap();
            for c in body["data"]["changes"].as_array().unwrap() {
                out.insert(c["id"].as_i64().unwrap(), c.clone());
            }
        }
        out
    }

    /// Fails the test if one webhook-id came with two different bodies, or one change under
    /// two webhook-ids (a receiver that drops repeated webhook-ids would apply it twice).
    /// Returns how many requests repeated an earlier one.
    fn check_ids(&self) -> usize {
        let mut bodies: BTreeMap<String, String> = BTreeMap::new();
        let mut carriers: BTreeMap<i64, String> = BTreeMap::new();
        let got = self.got.lock().unwrap();
        for g in got.iter() {
            let body: Value = serde_json::from_str(&g.body).unwrap();
            for c in body["data"]["changes"].as_array().unwrap() {
                let change = c["id"].as_i64().unwrap();
                let first = carriers.entry(change).or_insert_with(|| g.id.clone());
                assert_eq!(
                    *first, g.id,
                    "{:?}: change {change} arrived under two webhook-ids",
                    self.kind
                );
            }
            let first = bodies.entry(g.id.clone()).or_insert_with(|| g.body.clone());
            assert_eq!(
                *first, g.body,
                "{:?}: webhook-id {} arrived with two bodies",
                self.kind, g.id
            );
        }
        got.len() - bodies.len()
    }

    /// Milliseconds from each change being recorded to its first accepted arrival, for the
    /// changes recorded at or after `since`.
    fn latencies(&self, since: i64) -> Vec<i64> {
        let mut first: BTreeMap<i64, i64> = BTreeMap::new();
        let mut recorded: BTreeMap<i64, i64> = BTreeMap::new();
        for g in self.got.lock().unwrap().iter().filter(|g| g.accepted) {
            let body: Value = serde_json::from_str(&g.body).unwrap();
            for c in body["data"]["changes"].as_array().unwrap() {
                let id = c["id"].as_i64().unwrap();
                let at = chrono_ms(c["at"].as_str().unwrap());
                recorded.insert(id, at);
                first.entry(id).or_insert(g.at);
            }
        }
        first
            .iter()
            .filter(|(id, _)| recorded[id] >= since)
            .map(|(id, got)| got - recorded[id])
            .collect()
    }
}

/// Milliseconds of an RFC 3339 timestamp written by Parcours (`…T…:…:….mmmZ`).
fn chrono_ms(s: &str) -> i64 {
    parcours_core::time::parse_timestamp(s).unwrap_or_else(|| panic!("timestamp {s}"))
}

fn p99(mut v: Vec<i64>) -> i64 {
    assert!(!v.is_empty());
    v.sort_unstable();
    v[((v.len() * 99).div_ceil(100)).saturating_sub(1)]
}

/// The node under test: started, killed and started again on the same data.
struct Node {
    dir: std::path::PathBuf,
    database: Option<TempDatabase>,
    child: Option<std::process::Child>,
    client: Client,
}

impl Node {
    fn start(&mut self) {
        let mut settings = vec![
            (
                "DATA_DIR",
                self.dir.join("data").to_string_lossy().into_owned(),
            ),
            ("HTTP__PORT", "0".into()),
            ("STORAGE__DURABILITY", "normal".into()),
            ("BOOTSTRAP__WRITE_KEY", WRITE_KEY.into()),
            ("BOOTSTRAP__ADMIN_TOKEN", ADMIN.into()),
            ("DESTINATIONS__ALLOW_PRIVATE_ADDRESSES", "true".into()),
            ("DESTINATIONS__BATCH", "20".into()),
            ("DESTINATIONS__POLL_MS", "50".into()),
            ("DESTINATIONS__RETRY_BASE_MS", "100".into()),
            ("DESTINATIONS__RETRY_MAX_MS", "1000".into()),
            ("DESTINATIONS__LEASE_MS", "3000".into()),
        ];
        if let Some(db) = &self.database {
            settings.push(("DATABASE", db.url().to_string()));
        }
        let (child, url) = common::spawn_serve(&self.dir, &settings);
        self.child = Some(child);
        self.client = Client::new(url);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    async fn admin(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        common::call_with(&self.client, ADMIN, method, path, body).await
    }

    /// Sends plan changes until they are acknowledged (the node may be down meanwhile).
    async fn send(&self, batch: Vec<Value>) -> bool {
        let r = self
            .client
            .request(
                "POST".parse().unwrap(),
                "/v1/batch",
                &[(
                    "authorization",
                    &format!("Basic {}", parcours_testkit::http::basic(WRITE_KEY)),
                )],
                json!({ "batch": batch }).to_string(),
            )
            .await;
        matches!(r, Ok(r) if r.status == 200)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn plan_batch(rng: &mut rand::rngs::StdRng, round: usize) -> Vec<Value> {
    (0..2)
        .map(|j| {
            let user = rng.random_range(0..CUSTOMERS);
            let plan = if rng.random_bool(0.5) { "gold" } else { "silver" };
            json!({"type": "identify", "userId": format!("c{user}"), "messageId": format!("m-{round}-{j}"),
                   "traits": {"plan": plan, "email": format!("c{user}@crash.io")}})
        })
        .collect()
}

/// Waits until unify and audiences have caught up and every destination has sent
/// everything, and every receiver holds the same changes; returns their ids.
async fn caught_up(node: &Node, receivers: &[(&str, Arc<Receiver>)]) -> BTreeSet<i64> {
    let start = Moment::now();
    loop {
        let (_, status) = node.admin("GET", "/api/v1/status", json!(null)).await;
        let lagging =
            status["unify_lag_events"] != 0 || status["processors"]["audiences"]["lag_events"] != 0;
        let mut report = Vec::new();
        let mut pending = 0;
        for (id, r) in receivers {
            let (_, d) = node
                .admin("GET", &format!("/api/v1/destinations/{id}"), json!(null))
                .await;
            pending += d["delivery"]["pending"].as_u64().unwrap_or(1);
            report.push(format!("{id}: {} held, {}", r.held().len(), d["delivery"]));
        }
        let all: Vec<BTreeSet<i64>> = receivers
            .iter()
            .map(|(_, r)| r.held().keys().copied().collect())
            .collect();
        if !lagging && pending == 0 && all.iter().all(|s| *s == all[0]) {
            return all[0].clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "not delivered within 120 s: {status}; {}",
            report.join("; ")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn crash_and_restart(backend: Backend) {
    let mut node = Node {
        dir: common::temp_dir("crash"),
        database: (backend == Backend::Postgres).then(TempDatabase::create),
        child: None,
        client: Client::new("http://127.0.0.1:9"),
    };
    node.start();
    let (status, a) = node
        .admin(
            "POST",
            "/api/v1/audiences",
            json!({"id": "gold", "name": "Gold", "definition": "trait plan = \"gold\""}),
        )
        .await;
    assert_eq!(status, 201, "{a}");
    let mut receivers = Vec::new();
    for (id, kind) in [
        ("fast", Kind::Fast),
        ("slow", Kind::Slow),
        ("flaky", Kind::Flaky),
    ] {
        let (url, r) = receiver(kind).await;
        let (status, d) = node
            .admin(
                "POST",
                "/api/v1/destinations",
                json!({"id": id, "name": id, "url": url, "purpose": "none"}),
            )
            .await;
        assert_eq!(status, 201, "{d}");
        receivers.push((id, r));
    }
    // Changes stream while the node is killed at random moments and started again.
    let mut rng = rand::rngs::StdRng::seed_from_u64(15);
    let mut kills = 0;
    let mut next_kill = Moment::now() + Duration::from_millis(rng.random_range(500..2_500));
    let mut round = 0;
    while kills < 5 {
        let batch = plan_batch(&mut rng, round);
        while !node.send(batch.clone()).await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        round += 1;
        tokio::time::sleep(Duration::from_millis(rng.random_range(20..120))).await;
        if Moment::now() >= next_kill {
            node.kill();
            kills += 1;
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..500))).await;
            node.start();
            next_kill = Moment::now() + Duration::from_millis(rng.random_range(500..2_500));
        }
    }
    // Every receiver holds every change: the same change ids, all of them, and the changes
    // replayed give the audience's members.
    let expected = caught_up(&node, &receivers).await;
    // Steady: the node stays up; changes from now on measure delivery latency.
    let steady = wall_ms();
    for _ in 0..30 {
        let batch = plan_batch(&mut rng, round);
        assert!(node.send(batch).await);
        round += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let expected = expected.len().max(caught_up(&node, &receivers).await.len());
    let members: BTreeSet<String> = {
        let (_, m) = node
            .admin(
                "GET",
                "/api/v1/audiences/gold/members?limit=1000",
                json!(null),
            )
            .await;
        m["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["profile_id"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(expected > 0);
    for (id, r) in &receivers {
        let held = r.held();
        let mut in_audience = BTreeSet::new();
        for c in held.values() {
            let profile = c["profile_id"].as_str().unwrap().to_string();
            if c["action"] == "add" {
                assert!(
                    in_audience.insert(profile),
                    "{id}: an add without a remove before it"
                );
            } else {
                assert!(
                    in_audience.remove(&profile),
                    "{id}: a remove without an add"
                );
            }
        }
        assert_eq!(in_audience, members, "{id}: the changes give the members");
        if backend == Backend::Sqlite {
            // The embedded store numbers changes without gaps: none is missing.
            let ids: Vec<i64> = held.keys().copied().collect();
            assert_eq!(ids, (1..=ids.len() as i64).collect::<Vec<_>>(), "{id}");
        }
    }
    let mut report = Vec::new();
    for (id, r) in &receivers {
        let repeats = r.check_ids();
        let p = p99(r.latencies(steady));
        report.push(format!("{id}: p99 {p} ms, {repeats} repeated deliveries"));
        if *id == "fast" {
            assert!(p < 1_500, "the fast receiver waited: p99 {p} ms");
        }
    }
    eprintln!(
        "{backend:?}: {kills} kills, {expected} changes on each receiver; {}",
        report.join("; ")
    );
}

on_each_store!(crash_and_restart);
