//! The first hour: a first start that fails leaves nothing behind, the next one shows the
//! secrets; placeholder secrets are refused; a replay does not run beside a node on the same
//! embedded store. These run the real binary.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use parcours_engine::clock::Moment;

fn parcours() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_parcours"));
    // The tests' own configuration only: no parcours.toml of the working directory.
    c.current_dir(std::env::temp_dir())
        .env_remove("PARCOURS_CONFIG")
        .env("PARCOURS__STORAGE__DURABILITY", "normal");
    c
}

fn run(args: &[&str], dir: &std::path::Path) -> Output {
    parcours()
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .expect("run parcours")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `parcours serve` on `port`, and the lines it printed on stdout until `until` appeared.
fn serve_until(dir: &std::path::Path, port: u16, until: &str) -> (Child, Vec<String>) {
    let mut child = parcours()
        .args(["serve", "--port", &port.to_string(), "--data-dir"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start parcours serve");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = Moment::now() + Duration::from_secs(30);
    while Moment::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            let done = line.contains(until);
            lines.push(line);
            if done {
                return (child, lines);
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("`{until}` was not printed within 30 s; stdout: {lines:?}");
}

fn wait_listening(port: u16) {
    let deadline = Moment::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Moment::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_first_start_on_a_taken_port_leaves_the_secrets_for_the_next() {
    let dir = common::temp_dir("first-start");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = run(&["serve", "--port", &port.to_string()], &dir);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot listen on"), "{err}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("write key"),
        "nothing was created, so nothing is shown"
    );
    let listed = run(&["workspace", "list"], &dir);
    assert!(listed.status.success());
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout).trim(),
        "",
        "no workspace yet"
    );
    drop(taken);

    // The next start creates the workspace and shows both secrets.
    let (mut child, lines) = serve_until(&dir, free_port(), "admin token:");
    let text = lines.join("\n");
    assert!(text.contains("write key:   wk_"), "{text}");
    assert!(text.contains("admin token: pat_"), "{text}");
    child.kill().unwrap();
    child.wait().unwrap();

    // Lost anyway: a new admin token recovers access, named by the workspace's name.
    let out = run(
        &[
            "token",
            "create",
            "--workspace",
            "Default workspace",
            "--name",
            "recovery",
        ],
        &dir,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("secret: pat_"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn placeholder_secrets_from_the_docs_are_refused() {
    let dir = common::temp_dir("placeholder");
    let out = parcours()
        .args(["serve", "--port", "0", "--data-dir"])
        .arg(&dir)
        .env("PARCOURS__BOOTSTRAP__WRITE_KEY", "wk_…")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bootstrap.write_key") && err.contains("placeholder"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn replay_refuses_while_a_node_holds_the_embedded_store() {
    let dir = common::temp_dir("replay-lock");
    let port = free_port();
    let (mut child, _) = serve_until(&dir, port, "admin token:");
    wait_listening(port);
    let out = run(&["replay"], &dir);
    assert!(
        !out.status.success(),
        "a replay beside a running node must refuse"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("in use by a node serving on") && err.contains(&format!(":{port}")),
        "{err}"
    );
    // A second node on the same store refuses too, and says who holds it.
    let out = run(&["serve", "--port", "0"], &dir);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use by"));

    // Killed without a chance to clean up: the lock goes with the process.
    child.kill().unwrap();
    child.wait().unwrap();
    let out = run(&["replay"], &dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_demo_answers_while_its_history_loads() {
    let dir = common::temp_dir("demo-serving");
    let port = free_port();
    let mut child = parcours()
        .args([
            "demo",
            "--port",
            &port.to_string(),
            "--customers",
            "300",
            "--days",
            "30",
            "--data-dir",
        ])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start parcours demo");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = |what: &str| -> String {
        let deadline = Moment::now() + Duration::from_secs(120);
        while Moment::now() < deadline {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
                if line.contains(what) {
                    return line;
                }
            }
        }
        panic!("`{what}` was not printed");
    };
    next("while it loads the demo history");
    let token = next("admin token:")
        .split_whitespace()
        .last()
        .unwrap()
        .to_string();
    // Answered at once, before the history is in.
    let started = Moment::now();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = parcours_testkit::http::Client::new(format!("http://127.0.0.1:{port}"));
    let status = rt.block_on(client.get("/api/v1/status", &token)).unwrap();
    assert_eq!(status.status, 200);
    assert!(started.elapsed() < Duration::from_secs(5));
    // Then the banner, once every audience is computed.
    next("Audiences (kept up to date as events arrive)");
    let events = rt
        .block_on(client.get("/api/v1/status", &token))
        .unwrap()
        .json();
    assert!(events["events"].as_u64().unwrap_or(0) > 1_000, "{events}");
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Ready means ready to take events: a first start binds its port before it creates the
/// workspace and its keys (so that a taken port leaves nothing behind), and its `/readyz`
/// says 503 until the keys exist; a client that waits for readiness never sends with a key
/// that does not exist yet. (`parcours serve` and the demo start their node this way.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_comes_after_the_first_start_created_the_keys() {
    use parcours_cli::config::Config;
    use parcours_cli::node::{bootstrap, open_store, Node};
    const KEY: &str = "wk_readiness_0123456789abcdef";
    let dir = common::temp_dir("ready");
    let mut config = Config {
        data_dir: dir.clone(),
        ..Config::default()
    };
    config.http.port = 0;
    config.bootstrap.write_key = Some(KEY.into());
    config.bootstrap.admin_token = Some("pat_readiness_0123456789abcdef".into());
    common::capture_logs();
    let store = open_store(&config).unwrap();
    let node = Node::start_unready(&config, store.clone()).await.unwrap();
    let client = parcours_testkit::http::Client::new(node.url());
    let batch = serde_json::json!({"batch": [{"type": "track", "event": "Ready", "userId": "u1"}]})
        .to_string();
    let r = client.get("/readyz", "").await.unwrap();
    assert_eq!(r.status, 503, "listening, no key yet: not ready");
    assert_eq!(
        client
            .track("/v1/batch", KEY, batch.clone())
            .await
            .unwrap()
            .status,
        401,
        "the key does not exist yet"
    );
    bootstrap(store.as_ref(), &config, 0)
        .unwrap()
        .expect("a fresh store");
    assert_eq!(client.get("/readyz", "").await.unwrap().status, 503);
    node.set_ready();
    assert_eq!(client.get("/readyz", "").await.unwrap().status, 200);
    let r = client.track("/v1/batch", KEY, batch).await.unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    node.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
