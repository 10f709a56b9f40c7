//! Ack means durable: SIGKILL the server in the middle of a sustained ingest, restart it, and
//! every acknowledged messageId is there exactly once.

mod common;

use std::collections::BTreeSet;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use parcours_engine::clock::Moment;

use parcours_store::EventLog;
use parcours_store_sqlite::{Durability, SqliteStore};
use parcours_testkit::http::Client;
use serde_json::json;

const KEY: &str = "wk_durability_0123456789abcdef";

fn spawn(dir: &std::path::Path, port: u16) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_parcours"))
        .args(["serve", "--port", &port.to_string()])
        .arg("--data-dir")
        .arg(dir)
        .env("PARCOURS__BOOTSTRAP__WRITE_KEY", KEY)
        .env(
            "PARCOURS__BOOTSTRAP__ADMIN_TOKEN",
            "pat_durability_0123456789abcdef",
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start parcours serve")
}

async fn wait_ready(client: &Client) {
    let deadline = Moment::now() + Duration::from_secs(30);
    while Moment::now() < deadline {
        if let Ok(r) = client.get("/readyz", "").await {
            if r.status == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server did not become ready");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_ingest_loses_no_acknowledged_event_and_duplicates_none() {
    let dir = common::temp_dir("sigkill");
    let port = free_port();
    let mut child = spawn(&dir, port);
    let client = Client::new(format!("http://127.0.0.1:{port}"));
    wait_ready(&client).await;

    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    // Why each sender stopped (the kill, or a refusal before it).
    let stopped: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut senders = Vec::new();
    for w in 0..4 {
        let (client, acked, stopped) = (client.clone(), acked.clone(), stopped.clone());
        senders.push(tokio::spawn(async move {
            for b in 0.. {
                let ids: Vec<String> = (0..50).map(|i| format!("w{w}-b{b}-e{i}")).collect();
                let batch: Vec<_> = ids.iter().map(|id| json!({"type": "track", "event": "Page Scrolled", "userId": format!("u{w}"), "messageId": id})).collect();
                match client.track("/v1/batch", KEY, json!({"batch": batch}).to_string()).await {
                    Ok(r) if r.status == 200 => acked.lock().unwrap().extend(ids),
                    Ok(r) => {
                        let body = String::from_utf8_lossy(&r.body).into_owned();
                        stopped.lock().unwrap().push(format!("{} {body}", r.status));
                        break;
                    }
                    Err(e) => {
                        stopped.lock().unwrap().push(e.to_string());
                        break;
                    }
                }
            }
        }));
    }
    // Kill in the middle of the stream, once it is well under way.
    let deadline = Moment::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 2_000 && Moment::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    for s in senders {
        s.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 1_000,
        "the ingest was sustained before the kill ({} acked; the senders stopped on {:?})",
        acked.len(),
        stopped.lock().unwrap()
    );

    let mut child = spawn(&dir, port);
    wait_ready(&client).await;
    // Clients retry what was not acknowledged, and may resend what was: nothing doubles.
    let resend: Vec<_> = acked.iter().take(500).map(|id| json!({"type": "track", "event": "Page Scrolled", "userId": "u0", "messageId": id})).collect();
    assert_eq!(
        client
            .track("/v1/batch", KEY, json!({"batch": resend}).to_string())
            .await
            .unwrap()
            .status,
        200
    );
    child.kill().unwrap();
    child.wait().unwrap();

    let store = SqliteStore::open(dir.join("parcours.sqlite3"), Durability::Normal).unwrap();
    let mut stored = Vec::new();
    let mut after = 0;
    loop {
        let page = store.events_after(after, 10_000).unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq;
        stored.extend(page.into_iter().map(|e| e.message_id));
    }
    let unique: BTreeSet<&String> = stored.iter().collect();
    assert_eq!(unique.len(), stored.len(), "no messageId is stored twice");
    let missing: Vec<&String> = acked.iter().filter(|id| !unique.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events are missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
