//! Journey email survives crashes: a `parcours serve` process sends a welcome email to each
//! of many customers through a slow real SMTP server (aiosmtpd), and is SIGKILLed and
//! restarted on the same data while it sends, five times. Afterwards every customer has her
//! email, no customer's email arrived under two different keys, and any repeat (a crash
//! between the server accepting a message and the node recording it) carries the same
//! `Message-ID`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::smtp::{header, Sink};
use parcours_engine::clock::Moment;
use parcours_testkit::http::Client;
use serde_json::json;

const WRITE_KEY: &str = "wk_jcrash_key_0123456789abcdef";
const ADMIN: &str = "pat_jcrash_admin_0123456789abcdef";
const CUSTOMERS: usize = 150;
const KILLS: usize = 5;

const WELCOME: &str = r#"id: welcome
name: Welcome
status: live
entry:
  event: Signed Up
steps:
  - id: hello
    send:
      channel: email
      purpose: transactional
      subject: "Welcome, {{ traits.first_name }}"
      text: "Your account is ready."
"#;

struct Node {
    dir: std::path::PathBuf,
    smtp_port: u16,
    child: Option<std::process::Child>,
    client: Client,
}

impl Node {
    fn start(&mut self) {
        let settings = vec![
            (
                "DATA_DIR",
                self.dir.join("data").to_string_lossy().into_owned(),
            ),
            ("HTTP__PORT", "0".into()),
            ("STORAGE__DURABILITY", "normal".into()),
            ("BOOTSTRAP__WRITE_KEY", WRITE_KEY.into()),
            ("BOOTSTRAP__ADMIN_TOKEN", ADMIN.into()),
            (
                "CHANNELS__EMAIL__SMTP_URL",
                format!("smtp://127.0.0.1:{}", self.smtp_port),
            ),
            ("CHANNELS__EMAIL__FROM", "Shop <hello@shop.example>".into()),
            ("CHANNELS__LEASE_MS", "2000".into()),
        ];
        let (child, url) = common::spawn_serve(&self.dir, &settings);
        self.child = Some(child);
        self.client = Client::new(url);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGKILL: no shutdown, no flush.
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Message-IDs received per recipient.
fn received(sink: &Sink) -> (usize, BTreeMap<String, BTreeSet<String>>) {
    let messages = sink.messages();
    let mut by_recipient: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for m in &messages {
        let to = header(m, "To").unwrap_or_default();
        let id = header(m, "Message-ID").unwrap_or_default();
        by_recipient.entry(to).or_default().insert(id);
    }
    (messages.len(), by_recipient)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_sending_five_times_every_email_arrives_under_one_key() {
    let dir = common::temp_dir("journeys-crash");
    let sink = Sink::start(dir.join("smtp"), 25);
    let mut node = Node {
        dir: dir.clone(),
        smtp_port: sink.port,
        child: None,
        client: Client::new("http://127.0.0.1:1"),
    };
    node.start();
    let auth = format!("Bearer {ADMIN}");
    let r = node
        .client
        .request(
            "PUT".parse().unwrap(),
            "/api/v1/journeys/welcome",
            &[
                ("authorization", &auth),
                ("content-type", "application/yaml"),
            ],
            WELCOME,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let mut batch = Vec::new();
    for i in 0..CUSTOMERS {
        batch.push(json!({"type": "identify", "userId": format!("u{i}"),
            "traits": {"email": format!("c{i}@example.com"), "first_name": format!("C{i}")}}));
        batch.push(json!({"type": "track", "userId": format!("u{i}"), "event": "Signed Up"}));
    }
    let r = node
        .client
        .track(
            "/v1/batch",
            WRITE_KEY,
            json!({ "batch": batch }).to_string(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);

    // Kill it while it sends: each time once the server has received more since the last kill.
    let mut kills = 0;
    let mut last = 0;
    let deadline = Moment::now() + Duration::from_secs(120);
    while kills < KILLS {
        assert!(
            Moment::now() < deadline,
            "only {kills} kills: the node sent too fast or not at all"
        );
        let (n, by) = received(&sink);
        if n > last && by.len() < CUSTOMERS {
            node.kill();
            kills += 1;
            last = n;
            node.start();
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    // Then it finishes.
    let deadline = Moment::now() + Duration::from_secs(120);
    loop {
        let (_, by) = received(&sink);
        if by.len() == CUSTOMERS {
            break;
        }
        assert!(
            Moment::now() < deadline,
            "{} of {CUSTOMERS} customers have their email after {kills} kills",
            by.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (total, by) = received(&sink);
    for i in 0..CUSTOMERS {
        let ids = &by[&format!("c{i}@example.com")];
        assert_eq!(
            ids.len(),
            1,
            "c{i} got her email under several Message-IDs: {ids:?}"
        );
    }
    assert_eq!(by.len(), CUSTOMERS, "nobody else got anything");
    eprintln!(
        "{kills} kills: {total} messages for {CUSTOMERS} customers ({} repeats, each with the same Message-ID)",
        total - CUSTOMERS
    );
    node.kill();
    let _ = std::fs::remove_dir_all(&dir);
}
