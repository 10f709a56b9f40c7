//! Soak: a `parcours serve` process takes valid traffic mixed with every hostile class of the
//! review (poison events, pathological definitions, slow and oversized requests, malformed
//! parameters, inward destinations, numeric and time edge cases) for a bounded time, on each
//! store. Afterwards every acknowledged valid event is stored once and unified, no answer was
//! a 5xx, and the process never stopped until it was asked to, then stopped cleanly.

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use parcours_engine::clock::Moment;

use common::{eventually, Backend};
use parcours_store_postgres::testing::TempDatabase;
use parcours_testkit::http::Client;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

const WRITE_KEY: &str = "wk_soak_key_0123456789abcdef";
const ADMIN: &str = "pat_soak_admin_0123456789abcdef";
/// How long the traffic lasts on each store.
const TRAFFIC: Duration = Duration::from_secs(10);
/// Customers the valid traffic is about.
const CUSTOMERS: usize = 150;

/// The served process, its address and what it needs kept alive.
struct Served {
    child: Child,
    url: String,
    addr: String,
    dir: std::path::PathBuf,
    _database: Option<TempDatabase>,
}

impl Served {
    fn start(backend: Backend) -> Served {
        let dir = common::temp_dir("soak");
        let database = (backend == Backend::Postgres).then(TempDatabase::create);
        let mut settings = vec![
            ("DATA_DIR", dir.join("data").to_string_lossy().into_owned()),
            ("HTTP__PORT", "0".into()),
            ("HTTP__HEADER_TIMEOUT_MS", "1000".into()),
            ("HTTP__BODY_TIMEOUT_MS", "1000".into()),
            ("HTTP__MAX_CONNECTIONS_PER_IP", "64".into()),
            ("STORAGE__DURABILITY", "normal".into()),
            ("BOOTSTRAP__WRITE_KEY", WRITE_KEY.into()),
            ("BOOTSTRAP__ADMIN_TOKEN", ADMIN.into()),
        ];
        if let Some(db) = &database {
            settings.push(("DATABASE", db.url().to_string()));
        }
        let (child, url) = common::spawn_serve(&dir, &settings);
        let addr = url.trim_start_matches("http://").to_string();
        Served {
            child,
            url,
            addr,
            dir,
            _database: database,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("parcours.log")).unwrap_or_default()
    }
}

/// Every answer of the run, by class of traffic: a 5xx anywhere fails the soak.
#[derive(Default)]
struct Answers(Mutex<BTreeMap<(String, u16), usize>>);

impl Answers {
    fn record(&self, class: &str, status: u16) {
        *self
            .0
            .lock()
            .unwrap()
            .entry((class.to_string(), status))
            .or_default() += 1;
    }

    fn server_errors(&self) -> Vec<((String, u16), usize)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|((_, s), _)| *s >= 500)
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }
}

async fn valid_traffic(
    client: Client,
    worker: usize,
    until: Moment,
    acked: Arc<Mutex<BTreeMap<String, usize>>>,
    answers: Arc<Answers>,
) {
    let mut round = 0;
    while Moment::now() < until {
        let batch: Vec<(String, Value)> = (0..20)
            .map(|j| {
                let user = format!("s{}", (worker * 7919 + round * 20 + j) % CUSTOMERS);
                let mid = format!("v-{worker}-{round}-{j}");
                let event = if j % 4 == 0 {
                    json!({"type": "identify", "userId": user, "messageId": mid,
                           "traits": {"email": format!("{user}@soak.io"), "plan": if j % 8 == 0 {"gold"} else {"silver"}}})
                } else {
                    json!({"type": "track", "userId": user, "messageId": mid, "event": "Order Completed",
                           "properties": {"total": j * 10, "items": [{"sku": format!("k{j}")}]}})
                };
                (user, event)
            })
            .collect();
        let body = json!({"batch": batch.iter().map(|(_, e)| e).collect::<Vec<_>>()});
        let r = client.track("/v1/batch", WRITE_KEY, body.to_string()).await;
        let status = r.as_ref().map_or(0, |r| r.status);
        answers.record("valid", status);
        if status == 200 {
            let mut acked = acked.lock().unwrap();
            for (user, _) in batch {
                *acked.entry(user).or_default() += 1;
            }
        }
        round += 1;
    }
}

/// Bodies the review sent that must never stop anything.
fn poison_bodies() -> Vec<(&'static str, String)> {
    let deep = format!(
        r#"{{"userId":"x","event":"E","properties":{{"a":{}1{}}}}}"#,
        "[".repeat(126),
        "]".repeat(126)
    );
    vec![
        ("/v1/track", r#"{"userId":"x","event":"E","properties":{"n":1e400}}"#.into()),
        ("/v1/track", r#"{"userId":"x","event":"E","properties":{"s":"\ud800"}}"#.into()),
        ("/v1/identify", r#"{"userId":"x","traits":{"name":"\ud800","nul":"a\u0000"}}"#.into()),
        ("/v1/track", deep),
        ("/v1/batch", json!({"batch": vec![json!({}); 2_500]}).to_string()),
        ("/v1/batch", r#"{"batch":[{"type":"track","userId":100000000000000000000001,"event":"E","messageId":100000000000000000000001},{"type":"track","userId":100000000000000000000002,"event":"E","messageId":100000000000000000000002}]}"#.into()),
        ("/v1/track", r#"{"userId":"x","event":"E","originalTimestamp":"2026-01-01T00:00:00Z","sentAt":"9999-12-31T00:00:00Z"}"#.into()),
        ("/v1/track", r#"{"event":"no ids"}"#.into()),
        ("/v1/batch", "{\"batch\": [".into()),
        ("/v1/batch", "{}".into()),
        ("/v1/p", format!(r#"{{"anonymousId":"{}"}}"#, "a".repeat(600))),
    ]
}

async fn poison_traffic(client: Client, until: Moment, answers: Arc<Answers>) {
    let bodies = poison_bodies();
    let mut i = 0;
    while Moment::now() < until {
        let (path, body) = &bodies[i % bodies.len()];
        let r = client.track(path, WRITE_KEY, body.clone()).await;
        answers.record("poison", r.map_or(0, |r| r.status));
        i += 1;
    }
}

async fn definition_traffic(
    client: Client,
    marketer: String,
    until: Moment,
    answers: Arc<Answers>,
) {
    let bad = [
        json!({"id": "deep", "name": "D", "definition": format!("{}has email{}", "(".repeat(2_000), ")".repeat(2_000))}),
        json!({"id": "deep", "name": "D", "definition": format!("{}has email", "not ".repeat(10_000))}),
        json!({"id": "deep", "name": "D", "definition": "(".repeat(10_000)}),
        json!({"id": "deep", "name": "D", "definition": format!("{}has email", "not ".repeat(130))}),
        json!({"id": "wide", "name": "W", "definition": "did \"Order Completed\" within 15250284452 weeks"}),
        json!({"id": "wide", "name": "W", "definition": "trait signed_up_at after 106751991167 days ago"}),
        json!({"id": "inward", "name": "I", "url": "http://169.254.169.254/latest/meta-data/"}),
    ];
    let mut i = 0;
    while Moment::now() < until {
        let body = &bad[i % bad.len()];
        let path = if body.get("url").is_some() {
            "/api/v1/destinations"
        } else {
            "/api/v1/audiences"
        };
        let r = client.post(path, &marketer, body.to_string()).await;
        answers.record("definitions", r.map_or(0, |r| r.status));
        // A valid audience comes and goes meanwhile.
        if i % 5 == 0 {
            let r = client
                .post(
                    "/api/v1/audiences",
                    &marketer,
                    json!({"id": "gold", "name": "Gold", "definition": "trait plan = \"gold\""})
                        .to_string(),
                )
                .await;
            answers.record("definitions", r.map_or(0, |r| r.status));
            let auth = format!("Bearer {marketer}");
            let r = client
                .request(
                    hyper::Method::DELETE,
                    "/api/v1/audiences/gold",
                    &[("authorization", &auth)],
                    "",
                )
                .await;
            answers.record("definitions", r.map_or(0, |r| r.status));
        }
        i += 1;
    }
}

async fn malformed_traffic(client: Client, until: Moment, answers: Arc<Answers>) {
    let auth = format!("Bearer {ADMIN}");
    let big = format!("{{\"name\":\"{}\"}}", "x".repeat(2 * 1024 * 1024 + 10));
    let mut i = 0;
    while Moment::now() < until {
        let (method, path, body) = match i % 6 {
            0 => (
                hyper::Method::GET,
                "/api/v1/audiences/a/members?limit=null",
                String::new(),
            ),
            1 => (hyper::Method::GET, "/api/v1/merges/abc", String::new()),
            2 => (
                hyper::Method::POST,
                "/api/v1/audiences",
                "{nope".to_string(),
            ),
            3 => (hyper::Method::POST, "/api/v1/audiences", big.clone()),
            4 => (hyper::Method::DELETE, "/api/v1/status", String::new()),
            _ => (
                hyper::Method::GET,
                "/api/v1/quarantine?limit=99999999999999999999",
                String::new(),
            ),
        };
        let r = client
            .request(method, path, &[("authorization", &auth)], body)
            .await;
        answers.record("malformed", r.map_or(0, |r| r.status));
        i += 1;
    }
}

/// Slow and greedy connections: partial request lines, headers and bodies left hanging, and
/// an oversized body announced with `Expect: 100-continue`.
async fn slow_traffic(addr: String, until: Moment, answers: Arc<Answers>) {
    let auth = format!("Basic {}", parcours_testkit::http::basic(WRITE_KEY));
    let partial = [
        "POST /v1/track HT".to_string(),
        format!("POST /v1/track HTTP/1.1\r\nhost: x\r\nauthorization: {auth}\r\n"),
        format!("POST /v1/track HTTP/1.1\r\nhost: x\r\nauthorization: {auth}\r\ncontent-length: 500\r\n\r\n{{"),
        format!("POST /v1/batch HTTP/1.1\r\nhost: x\r\nauthorization: {auth}\r\nexpect: 100-continue\r\ncontent-length: 10485760\r\n\r\n"),
    ];
    let mut held = Vec::new();
    let mut i = 0;
    while Moment::now() < until {
        if let Ok(mut s) = tokio::net::TcpStream::connect(&addr).await {
            let _ = s.write_all(partial[i % partial.len()].as_bytes()).await;
            held.push(s);
            answers.record("slow", 1);
        }
        // At most 16 hanging at once: the rest of the traffic shares the address's cap.
        if held.len() >= 16 {
            held.remove(0);
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn soak(backend: Backend) {
    let mut served = Served::start(backend);
    let client = Client::new(served.url.clone());
    let r = client
        .post(
            "/api/v1/tokens",
            ADMIN,
            json!({"name": "m", "role": "marketer"}).to_string(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201);
    let marketer = r.json()["secret"].as_str().unwrap().to_string();

    let until = Moment::now() + TRAFFIC;
    let acked: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let answers: Arc<Answers> = Arc::default();
    let mut tasks = Vec::new();
    for worker in 0..3 {
        tasks.push(tokio::spawn(valid_traffic(
            client.clone(),
            worker,
            until,
            acked.clone(),
            answers.clone(),
        )));
    }
    tasks.push(tokio::spawn(poison_traffic(
        client.clone(),
        until,
        answers.clone(),
    )));
    tasks.push(tokio::spawn(definition_traffic(
        client.clone(),
        marketer,
        until,
        answers.clone(),
    )));
    tasks.push(tokio::spawn(malformed_traffic(
        client.clone(),
        until,
        answers.clone(),
    )));
    tasks.push(tokio::spawn(slow_traffic(
        served.addr.clone(),
        until,
        answers.clone(),
    )));
    for t in tasks {
        t.await.unwrap();
    }
    assert!(
        served.child.try_wait().unwrap().is_none(),
        "the process stopped:\n{}",
        served.log()
    );
    let errors = answers.server_errors();
    assert!(
        errors.is_empty(),
        "5xx answers: {errors:?}\n{}",
        served.log()
    );
    let unanswered: Vec<_> = answers
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|((class, status), _)| *status == 0 && class != "slow")
        .map(|(k, n)| (k.clone(), *n))
        .collect();
    assert!(
        unanswered.is_empty(),
        "requests without an answer: {unanswered:?}"
    );

    // Every acknowledged valid event is stored once and unified.
    let acked = acked.lock().unwrap().clone();
    let total: usize = acked.values().sum();
    eprintln!(
        "soak on {backend:?}: {total} valid events acknowledged; answers by class and status: {:?}",
        answers.0.lock().unwrap()
    );
    assert!(total > 1_000, "only {total} valid events were acknowledged");
    let checked = AtomicUsize::new(0);
    eventually(
        Duration::from_secs(60),
        "every acknowledged event unified",
        || async {
            for (user, n) in &acked {
                let r = client
                    .get(
                        &format!("/api/v1/profiles/lookup?type=user_id&value={user}"),
                        ADMIN,
                    )
                    .await
                    .ok()?;
                if r.status != 200 || r.json()["events"] != *n {
                    return None;
                }
            }
            checked.store(acked.len(), Ordering::SeqCst);
            Some(())
        },
    )
    .await;
    assert_eq!(checked.load(Ordering::SeqCst), acked.len());
    let r = client.get("/readyz", "").await.unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let (_, quarantine) = (
        0,
        client
            .get("/api/v1/quarantine?status=all&limit=1000", ADMIN)
            .await
            .unwrap()
            .json(),
    );
    let codes: Vec<&str> = quarantine["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["code"].as_str())
        .collect();
    for code in [
        "number_out_of_range",
        "invalid_string",
        "too_deep",
        "invalid_type",
        "timestamp_out_of_range",
        "id_too_long",
    ] {
        assert!(codes.contains(&code), "{code} not in {codes:?}");
    }

    // Asked to stop, it stops cleanly.
    assert!(
        served.child.try_wait().unwrap().is_none(),
        "the process stopped:\n{}",
        served.log()
    );
    let pid = served.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let stopped = Moment::now();
    let status = loop {
        if let Some(s) = served.child.try_wait().unwrap() {
            break s;
        }
        assert!(stopped.elapsed() < Duration::from_secs(30), "did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit {status:?}:\n{}", served.log());
    let log = served.log();
    for fatal in ["panicked", "overflowed its stack", "unify failed"] {
        assert!(!log.contains(fatal), "`{fatal}` in the log:\n{log}");
    }
    let _ = std::fs::remove_dir_all(&served.dir);
}

on_each_store!(soak);
