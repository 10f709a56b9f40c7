//! A Parcours node: the store, the engine and the HTTP server, started and stopped together.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use parcours_api::{provision_workspace, ApiConfig, AppState, Provisioned};
use parcours_core::time::Clock;
use parcours_engine::{Engine, EngineConfig, SystemClock};
use parcours_store::Store;
use parcours_store_sqlite::{Durability, SqliteStore};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::Config;

pub struct Node {
    pub addr: SocketAddr,
    pub engine: Arc<Engine>,
    pub state: Arc<AppState>,
    stop: oneshot::Sender<()>,
    server: JoinHandle<()>,
    janitor: JoinHandle<()>,
}

pub fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            config.data_dir.display()
        )
    })?;
    let durability = if config.storage.durability == "normal" {
        Durability::Normal
    } else {
        Durability::Full
    };
    let path = config.data_dir.join("parcours.sqlite3");
    let store = SqliteStore::open(&path, durability)
        .with_context(|| format!("cannot open the store {}", path.display()))?;
    Ok(Arc::new(store))
}

/// Creates the default workspace on an empty store; returns its secrets (shown once).
pub fn bootstrap(
    store: &dyn Store,
    config: &Config,
    now: i64,
) -> anyhow::Result<Option<Provisioned>> {
    if !store.workspaces()?.is_empty() {
        return Ok(None);
    }
    let b = &config.bootstrap;
    Ok(Some(provision_workspace(
        store,
        "Default workspace",
        now,
        b.write_key.clone(),
        b.admin_token.clone(),
        true,
    )?))
}

impl Node {
    /// Starts a node on its configured address (port 0 picks a free one).
    pub async fn start(config: &Config, store: Arc<dyn Store>) -> anyhow::Result<Node> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let window = Duration::from_secs(u64::from(config.ingest.dedup_window_days) * 86_400);
        let engine = Engine::start(
            store.clone(),
            clock.clone(),
            EngineConfig {
                dedup_window: window,
                unify: config.ingest.unify,
                ..EngineConfig::default()
            },
        );
        let state = AppState::new(
            engine.clone(),
            ApiConfig {
                rate_limit_per_second: config.http.rate_limit_per_second,
            },
        );
        let addr = format!("{}:{}", config.http.host, config.http.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let app = parcours_api::router(state.clone());
        let server = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %e, "http server failed");
            }
        });
        let janitor = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(3600));
            loop {
                every.tick().await;
                let (store, before) = (store.clone(), clock.now() - window.as_millis() as i64);
                match tokio::task::spawn_blocking(move || store.prune_message_ids(before)).await {
                    Ok(Ok(n)) if n > 0 => {
                        tracing::info!(pruned = n, "forgot messageIds outside the dedup window")
                    }
                    Ok(Err(e)) => tracing::warn!(error = %e, "pruning messageIds failed"),
                    _ => {}
                }
            }
        });
        Ok(Node {
            addr,
            engine,
            state,
            stop,
            server,
            janitor,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting requests, lets in-flight ones finish, commits, and stops the loops.
    pub async fn stop(self) {
        self.state.ready.store(false, Ordering::SeqCst);
        let _ = self.stop.send(());
        let _ = self.server.await;
        self.janitor.abort();
        let engine = self.engine.clone();
        let _ = tokio::task::spawn_blocking(move || engine.shutdown()).await;
    }
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Prints the secrets of a freshly created workspace (stdout: they are the command's data).
pub fn print_provisioned(p: &Provisioned, url: &str) {
    println!(
        "Created workspace {} ({}).",
        p.workspace.name, p.workspace.id
    );
    println!(
        "  write key:   {}   (tracking API, HTTP Basic `key:`)",
        p.write_key
    );
    println!(
        "  admin token: {}   (admin API, `Authorization: Bearer …`)",
        p.admin_token
    );
    println!("These secrets are shown once; Parcours keeps only their hashes.");
    println!(
        "Try: curl -u {}: {url}/v1/track -H 'content-type: application/json' \\",
        p.write_key
    );
    println!("       -d '{{\"userId\":\"cus_1\",\"event\":\"Signed Up\"}}'");
}
