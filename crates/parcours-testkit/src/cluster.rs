//! A multi-node harness: several `parcours serve` processes on one PostgreSQL database, each
//! on its own port, started, killed and stopped like real deployments.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::http::Client;

/// How to start the nodes.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// The `parcours` binary.
    pub binary: PathBuf,
    /// The PostgreSQL database every node shares.
    pub database_url: String,
    pub nodes: usize,
    pub lease_timeout: Duration,
    /// Bootstrap secrets of the default workspace (the same on every node).
    pub write_key: String,
    pub admin_token: String,
    /// Where node logs and data directories go.
    pub work_dir: PathBuf,
}

/// One `parcours serve` process.
pub struct NodeProcess {
    pub id: String,
    pub port: u16,
    child: Option<Child>,
    pub log: PathBuf,
}

impl NodeProcess {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn client(&self) -> Client {
        Client::new(self.url())
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

pub struct Cluster {
    pub spec: ClusterSpec,
    pub nodes: Vec<NodeProcess>,
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn spawn(spec: &ClusterSpec, id: &str, port: u16) -> std::io::Result<(Child, PathBuf)> {
    let dir = spec.work_dir.join(id);
    std::fs::create_dir_all(&dir)?;
    let log = dir.join("parcours.log");
    let child = Command::new(&spec.binary)
        .args([
            "serve",
            "--port",
            &port.to_string(),
            "--database",
            &spec.database_url,
        ])
        .arg("--data-dir")
        .arg(&dir)
        .env("PARCOURS__CLUSTER__NODE_ID", id)
        .env(
            "PARCOURS__CLUSTER__LEASE_TIMEOUT_MS",
            spec.lease_timeout.as_millis().to_string(),
        )
        .env("PARCOURS__BOOTSTRAP__WRITE_KEY", &spec.write_key)
        .env("PARCOURS__BOOTSTRAP__ADMIN_TOKEN", &spec.admin_token)
        // More when the run's logs are searched for personal data (Drop copies them).
        .env(
            "PARCOURS_LOG",
            if capture_dir().is_some() {
                "info"
            } else {
                "warn"
            },
        )
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    Ok((child, log))
}

impl Cluster {
    /// Starts every node at once (they migrate and bootstrap concurrently) and waits until
    /// each answers `/readyz`.
    pub async fn start(spec: ClusterSpec) -> Result<Cluster, String> {
        let mut nodes = Vec::new();
        for i in 0..spec.nodes {
            let id = format!("node-{}", i + 1);
            let port = free_port().map_err(|e| e.to_string())?;
            let (child, log) = spawn(&spec, &id, port).map_err(|e| format!("start {id}: {e}"))?;
            nodes.push(NodeProcess {
                id,
                port,
                child: Some(child),
                log,
            });
        }
        let cluster = Cluster { spec, nodes };
        for node in &cluster.nodes {
            wait_ready(node).await?;
        }
        Ok(cluster)
    }

    /// The nodes still running.
    pub fn live(&self) -> Vec<&NodeProcess> {
        self.nodes.iter().filter(|n| n.is_running()).collect()
    }

    /// Kills a node with SIGKILL: no shutdown, no lease given back.
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.nodes[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops every node that is still running (SIGKILL; the database is the only state).
    pub fn kill_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }

    /// The last lines a node logged (for failure messages).
    pub fn log_tail(&self, index: usize) -> String {
        tail(&self.nodes[index].log)
    }
}

/// Where a test run keeps every log for the search for personal data
/// (`PARCOURS_TEST_LOG_DIR`), if it does.
fn capture_dir() -> Option<PathBuf> {
    std::env::var_os("PARCOURS_TEST_LOG_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_all();
        let Some(dir) = capture_dir() else {
            return;
        };
        let _ = std::fs::create_dir_all(&dir);
        for node in &self.nodes {
            let Ok(text) = std::fs::read_to_string(&node.log) else {
                continue;
            };
            // The canary the search must find in every file it reads.
            let copy =
                format!("log capture canary: canary@personal-data.invalid +33600000009\n{text}");
            let name = format!(
                "cluster-{}-{}-{}.log",
                std::process::id(),
                node.port,
                node.id
            );
            let _ = std::fs::write(dir.join(name), copy);
        }
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

async fn wait_ready(node: &NodeProcess) -> Result<(), String> {
    let client = node.client();
    // Up to a minute.
    for _ in 0..1_200 {
        if let Ok(r) = client.get("/readyz", "").await {
            if r.status == 200 {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!(
        "{} did not become ready; its log ends with:\n{}",
        node.id,
        tail(&node.log)
    ))
}
