//! A node in this process on a temporary store, with known secrets.
#![allow(dead_code, unused_macros)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parcours_cli::config::Config;
use parcours_cli::node::{bootstrap, open_store, Node};
use parcours_store::Store;
use parcours_store_postgres::testing::TempDatabase;
use parcours_testkit::http::Client;
use serde_json::Value;

pub mod hooks;
pub mod journeys;
pub mod scan;
pub mod smtp;

pub const WRITE_KEY: &str = "wk_test_key_0123456789abcdef";
pub const ADMIN: &str = "pat_test_admin_0123456789abcdef";

pub struct TestNode {
    pub node: Option<Node>,
    pub store: Arc<dyn Store>,
    pub client: Client,
    pub workspace: String,
    pub dir: PathBuf,
    /// The node's own PostgreSQL database, dropped with it.
    pub database: Option<TempDatabase>,
}

/// Which store a test node runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn temp_dir(tag: &str) -> PathBuf {
    // Unique within the process (a counter) and across runs (the time and the process id).
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "parcours-test-{tag}-{}-{}-{}",
        std::process::id(),
        parcours_core::time::Clock::now(&parcours_engine::SystemClock),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub async fn start(tag: &str, tune: impl FnOnce(&mut Config)) -> TestNode {
    start_on(tag, Backend::Sqlite, tune).await
}

/// A node on the embedded store or on a fresh PostgreSQL database of its own.
pub async fn start_on(tag: &str, backend: Backend, tune: impl FnOnce(&mut Config)) -> TestNode {
    start_with_clock(tag, backend, Arc::new(parcours_engine::SystemClock), tune).await
}

/// The system's time moved forward by what the test says.
#[derive(Default)]
pub struct ShiftedClock(pub std::sync::atomic::AtomicI64);

impl ShiftedClock {
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

impl parcours_core::time::Clock for ShiftedClock {
    fn now(&self) -> parcours_core::time::Millis {
        parcours_core::time::Clock::now(&parcours_engine::SystemClock)
            + self.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn monotonic(&self) -> std::time::Duration {
        parcours_core::time::Clock::monotonic(&parcours_engine::SystemClock)
    }

    fn sleep_until(&self, until: parcours_core::time::Millis, at_most: std::time::Duration) {
        let left = until - parcours_core::time::Clock::now(self);
        if left > 0 {
            std::thread::sleep(std::time::Duration::from_millis(left as u64).min(at_most));
        }
    }
}

/// Where this run's logs go, when `PARCOURS_TEST_LOG_DIR` names a directory: every test
/// binary's nodes log there (Parcours' crates at debug, the rest at info), one file per
/// process, so that `scripts/no-personal-data-in-logs.py` can search the whole run's logs.
pub fn log_dir() -> Option<PathBuf> {
    std::env::var_os("PARCOURS_TEST_LOG_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
}

/// A file of [`log_dir`] for this process (`what`: `nodes`, or a spawned process's name).
pub fn log_file(what: &str) -> Option<std::fs::File> {
    let dir = log_dir()?;
    std::fs::create_dir_all(&dir).unwrap();
    let exe = std::env::current_exe().unwrap();
    let name = exe.file_stem().unwrap().to_string_lossy().into_owned();
    let path = dir.join(format!("{name}-{}-{what}.log", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    if what != "nodes" {
        // The nodes' file gets its canary through the subscriber (capture_logs).
        std::io::Write::write_all(&mut file, format!("{CANARY}\n").as_bytes()).unwrap();
    }
    Some(file)
}

/// The line every captured log starts with: the search for personal data must find it, or it
/// did not read what was written.
const CANARY: &str = "log capture canary: canary@personal-data.invalid +33600000009";

/// Sends this process's logs to [`log_dir`] (once; nothing when it is not set).
pub fn capture_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Some(file) = log_file("nodes") else {
            return;
        };
        let crates = [
            "parcours_api",
            "parcours_channels",
            "parcours_cli",
            "parcours_console",
            "parcours_core",
            "parcours_demo",
            "parcours_engine",
            "parcours_service",
            "parcours_store",
            "parcours_store_postgres",
            "parcours_store_sqlite",
        ];
        let directives: Vec<String> = std::iter::once("info".to_string())
            .chain(crates.iter().map(|c| format!("{c}=debug")))
            .collect();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(directives.join(",")))
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(file))
            .try_init();
        tracing::info!(target: "log_capture", "{CANARY}");
    });
}

/// A node whose engine reads the time from `clock`.
pub async fn start_with_clock(
    tag: &str,
    backend: Backend,
    clock: Arc<dyn parcours_core::time::Clock>,
    tune: impl FnOnce(&mut Config),
) -> TestNode {
    capture_logs();
    let database = (backend == Backend::Postgres).then(TempDatabase::create);
    let dir = temp_dir(tag);
    let mut config = Config {
        data_dir: dir.clone(),
        ..Config::default()
    };
    config.http.port = 0;
    config.storage.durability = "normal".into();
    config.bootstrap.admin_token = Some(ADMIN.into());
    config.bootstrap.write_key = Some(WRITE_KEY.into());
    config.database = database.as_ref().map(|d| d.url().to_string());
    tune(&mut config);
    let store = open_store(&config).unwrap();
    let p = bootstrap(store.as_ref(), &config, 1_700_000_000_000)
        .unwrap()
        .expect("fresh store");
    let node = Node::start_with_clock(&config, store.clone(), clock)
        .await
        .unwrap();
    let client = Client::new(node.url());
    TestNode {
        node: Some(node),
        store,
        client,
        workspace: p.workspace.id,
        dir,
        database,
    }
}

impl TestNode {
    pub async fn send(&self, body: Value) -> parcours_testkit::http::Response {
        self.client
            .track("/v1/batch", WRITE_KEY, body.to_string())
            .await
            .unwrap()
    }

    pub async fn unified(&self) {
        let engine = &self.node.as_ref().unwrap().engine;
        assert!(
            engine.wait_unified(Duration::from_secs(60)).await.unwrap(),
            "unify did not catch up"
        );
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.client.get(path, ADMIN).await.unwrap();
        (r.status, r.json())
    }

    pub async fn stop(mut self) {
        if let Some(n) = self.node.take() {
            n.stop().await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs each named `async fn name(backend: Backend)` as two tests, `sqlite::name` and
/// `postgres::name`.
macro_rules! on_each_store {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::common::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::common::Backend::Postgres).await
                }
            )*
        }
    };
}

/// Polls `check` every 10 ms until it returns `Some`, for at most `within`; panics with
/// `what` otherwise. Tests wait for the state they assert, never for a fixed time.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = parcours_engine::clock::Moment::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            parcours_engine::clock::Moment::now() < deadline,
            "not within {within:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl TestNode {
    /// The profile an identifier resolves to, once unify has applied it.
    pub async fn profile_of(&self, token: &str, kind: &str, value: &str) -> Option<Value> {
        let r = self
            .client
            .get(
                &format!("/api/v1/profiles/lookup?type={kind}&value={value}"),
                token,
            )
            .await
            .unwrap();
        (r.status == 200).then(|| r.json())
    }

    /// A second workspace: its write key and admin token.
    pub async fn second_workspace(&self, name: &str) -> (String, String) {
        let r = self
            .client
            .post(
                "/api/v1/workspaces",
                ADMIN,
                serde_json::json!({ "name": name }).to_string(),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        let v = r.json();
        (
            v["write_key"].as_str().unwrap().to_string(),
            v["admin_token"].as_str().unwrap().to_string(),
        )
    }
}

/// A `parcours serve` process on `dir` with these settings (as `PARCOURS__…` variables): its
/// first log line says where it listens; every line goes to `dir/parcours.log`. Returns the
/// process and its base URL.
pub fn spawn_serve(
    dir: &std::path::Path,
    settings: &[(&str, String)],
) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader, Write};
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("parcours.log"))
        .unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_parcours"));
    cmd.arg("serve")
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for (name, value) in settings {
        cmd.env(format!("PARCOURS__{name}"), value);
    }
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let mut copy = log_file("serve");
    std::thread::spawn(move || {
        let mut log = log;
        let mut told = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(copy) = copy.as_mut() {
                let _ = copy.write_all(format!("{line}\n").as_bytes());
            }
            if !told {
                if let Some(url) = line.split("listening on ").nth(1) {
                    let url = url.split_whitespace().next().unwrap_or_default();
                    let _ = tx.send(url.to_string());
                    told = true;
                }
            }
            let _ = log.write_all(format!("{line}\n").as_bytes());
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("parcours serve did not start");
    (child, url)
}

/// An admin API call with `token` as bearer: the status and the JSON answer.
pub async fn call_with(
    client: &Client,
    token: &str,
    method: &str,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let auth = format!("Bearer {token}");
    let r = client
        .request(
            method.parse().unwrap(),
            path,
            &[("authorization", &auth)],
            body.to_string(),
        )
        .await
        .unwrap();
    (r.status, r.json())
}

/// An admin API call with the instance admin token.
pub async fn call(t: &TestNode, method: &str, path: &str, body: Value) -> (u16, Value) {
    call_with(&t.client, ADMIN, method, path, body).await
}

/// Signs in to the console with a token: the session cookie (`name=value`).
pub async fn console_session(client: &Client, token: &str) -> String {
    let r = client
        .request(
            "POST".parse().unwrap(),
            "/console/sign-in",
            &[("content-type", "application/x-www-form-urlencoded")],
            format!("token={token}"),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 303, "{}", String::from_utf8_lossy(&r.body));
    r.headers["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string()
}
