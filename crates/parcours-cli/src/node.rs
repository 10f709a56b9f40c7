//! A Parcours node: the store, the engine and the HTTP server, started and stopped together.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use parcours_api::{provision_workspace, ApiConfig, AppState, Provisioned};
use parcours_core::journey::MessageChannel;
use parcours_core::time::Clock;
use parcours_engine::{ClusterConfig, Engine, EngineConfig, SystemClock};
use parcours_store::{Store, StoreError};
use parcours_store_postgres::{PgConfig, PgStore};
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
    // Before anything is read or written: secrets are sealed and opened with it.
    let (current, previous) = config.security.keys().map_err(|e| anyhow::anyhow!(e))?;
    if let Some(key) = current {
        parcours_core::sealed::install(key).map_err(|e| anyhow::anyhow!(e))?;
    }
    if !previous.is_empty() {
        parcours_core::sealed::install_previous(previous).map_err(|e| anyhow::anyhow!(e))?;
    }
    if let Some(url) = config.postgres() {
        let mut pg = PgConfig::new(url);
        pg.max_connections = config.cluster.max_connections;
        let store = PgStore::connect(&pg)
            .with_context(|| format!("cannot open the store in {}", config.location()))?;
        return Ok(Arc::new(store));
    }
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

/// An exclusive hold on the embedded store's directory, released when dropped (or when the
/// process dies: the operating system releases the lock with the file).
pub struct StoreLock {
    _file: std::fs::File,
}

/// Takes the embedded store for `what` (a node, a replay), or says who holds it. PostgreSQL
/// needs no lock: its nodes coordinate through the database.
pub fn hold_store(config: &Config, what: &str) -> anyhow::Result<Option<StoreLock>> {
    use std::io::{Read, Seek, Write};
    if config.postgres().is_some() {
        return Ok(None);
    }
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            config.data_dir.display()
        )
    })?;
    let path = config.data_dir.join("parcours.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            anyhow::bail!(
                "the store in {} is in use by {}; stop it first",
                config.data_dir.display(),
                if holder.is_empty() {
                    "another process"
                } else {
                    holder
                }
            );
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
    file.set_len(0)?;
    file.rewind()?;
    write!(
        file,
        "{what} (process {}, since {})",
        std::process::id(),
        parcours_core::time::format_timestamp(SystemClock.now())
    )?;
    file.flush()?;
    Ok(Some(StoreLock { _file: file }))
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
    match provision_workspace(
        store,
        Some(DEFAULT_WORKSPACE),
        "Default workspace",
        now,
        b.write_key.clone(),
        b.admin_token.clone(),
        true,
    ) {
        Ok(p) => Ok(Some(p)),
        // Another node of the cluster, starting at the same moment, created it first.
        Err(StoreError::Conflict(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The id of the workspace created on first start (fixed, so that nodes starting together
/// create it once).
pub const DEFAULT_WORKSPACE: &str = "ws_default";

/// This node's id in a cluster: configured, or host name, port and process id.
pub fn node_id(config: &Config) -> String {
    config.cluster.node_id.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "node".into());
        format!("{host}:{}:{}", config.http.port, std::process::id())
    })
}

fn server_limits(config: &Config) -> parcours_api::ServerLimits {
    parcours_api::ServerLimits {
        header_timeout: Duration::from_millis(config.http.header_timeout_ms.max(1)),
        body_timeout: Duration::from_millis(config.http.body_timeout_ms.max(1)),
        max_connections_per_ip: config.http.max_connections_per_ip.max(1),
    }
}

/// The janitor's hourly round: backend upkeep, forgetting old messageIds, retention.
fn housekeeping(store: &dyn Store, now: i64, window: Duration, retention_days: u32) {
    if let Err(e) = store.maintain(now) {
        tracing::warn!(error = %e, "store maintenance failed");
    }
    match store.prune_message_ids(now - window.as_millis() as i64) {
        Ok(n) if n > 0 => tracing::info!(pruned = n, "forgot messageIds outside the dedup window"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "pruning messageIds failed"),
    }
    if retention_days > 0 {
        let before = now - i64::from(retention_days) * parcours_core::time::DAY;
        match store.drop_events_before(before) {
            Ok(n) if n > 0 => {
                tracing::info!(dropped = n, "dropped events past the retention period")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention failed"),
        }
    }
    match store.workspaces() {
        Ok(all) => {
            for ws in all {
                match parcours_service::privacy::apply_retention(store, &ws.id, now) {
                    Ok(done) if !done.deleted.is_empty() => tracing::info!(
                        workspace = %ws.id,
                        removed = ?done.deleted,
                        "applied the workspace's retention"
                    ),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(workspace = %ws.id, error = %e, "workspace retention failed")
                    }
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "listing workspaces for retention failed"),
    }
}

impl Node {
    /// Starts a node on its configured address (port 0 picks a free one).
    pub async fn start(config: &Config, store: Arc<dyn Store>) -> anyhow::Result<Node> {
        Self::launch(config, store, Arc::new(SystemClock), true).await
    }

    /// Starts a node that answers `/readyz` with 503 until [`Node::set_ready`]: a first start
    /// binds its port before it creates the workspace and its keys, and a client (or a load
    /// balancer) that waits for readiness must not send with a key that does not exist yet.
    pub async fn start_unready(config: &Config, store: Arc<dyn Store>) -> anyhow::Result<Node> {
        Self::launch(config, store, Arc::new(SystemClock), false).await
    }

    /// Starts a node that reads the time from `clock` (tests move it forward).
    pub async fn start_with_clock(
        config: &Config,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Node> {
        Self::launch(config, store, clock, true).await
    }

    /// The node is ready to serve: `/readyz` answers by its processors' health.
    pub fn set_ready(&self) {
        self.state.ready.store(true, Ordering::SeqCst);
    }

    async fn launch(
        config: &Config,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        ready: bool,
    ) -> anyhow::Result<Node> {
        let window = Duration::from_secs(u64::from(config.ingest.dedup_window_days) * 86_400);
        let addr = format!("{}:{}", config.http.host, config.http.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let addr = listener.local_addr()?;
        // On PostgreSQL every node, even a lone one, takes part in the cluster: it works on the
        // buckets it holds a lease on.
        let cluster = config.postgres().map(|_| ClusterConfig {
            node_id: node_id(config),
            address: addr.to_string(),
            lease_timeout: Duration::from_millis(config.cluster.lease_timeout_ms),
        });
        let engine = Engine::start(
            store.clone(),
            clock.clone(),
            EngineConfig {
                dedup_window: window,
                unify: config.ingest.unify,
                audiences: config.ingest.unify,
                sync: config.destinations.sync(),
                unify_batch: if cluster.is_some() {
                    config.cluster.unify_batch
                } else {
                    parcours_engine::UNIFY_BATCH
                },
                cluster,
                journeys: config.ingest.unify,
                senders: senders(config)?,
                public_url: config.channels.public_url.clone(),
                send_lease: Duration::from_millis(config.channels.lease_ms),
            },
        );
        if config.ingest.unify {
            // Ready click & collect orders past their deadline: `Order Not Collected`.
            engine.spawn_processor(
                Box::new(parcours_service::commerce::orders::PickupDeadlines),
                Duration::from_secs(1),
            );
            // Back in stock for who waits, low stock for the locations.
            engine.spawn_processor(
                Box::new(parcours_service::commerce::alerts::StockWatch::default()),
                Duration::from_secs(1),
            );
        }
        let state = AppState::new(
            engine.clone(),
            ApiConfig {
                rate_limit_per_second: config.http.rate_limit_per_second,
                failing_after: Duration::from_secs(config.health.failing_after_secs),
                max_lag_events: config.health.max_lag_events,
                unready_when_lagging: config.health.unready_when_lagging,
                server: server_limits(config),
                metrics_require_token: config.metrics_require_token(),
                metrics_token: config.metrics.token.clone(),
                key_rate_limit_per_second: config.http.key_rate_limit_per_second,
                token_rate_limit_per_second: config.http.token_rate_limit_per_second,
            },
        );
        state.ready.store(ready, Ordering::SeqCst);
        // Privacy requests a stopped node left open run again (every step can be repeated).
        parcours_api::privacy::resume(&state);
        let (stop, stopped) = oneshot::channel::<()>();
        let app = parcours_api::router_with(state.clone(), parcours_console::routes());
        let limits = server_limits(config);
        let server = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            parcours_api::serve(listener, app, limits, shutdown).await;
        });
        let retention_days = config.storage.retention_days;
        let janitor = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(3600));
            loop {
                every.tick().await;
                let (store, clock) = (store.clone(), clock.clone());
                let _ = tokio::task::spawn_blocking(move || {
                    housekeeping(store.as_ref(), clock.now(), window, retention_days)
                })
                .await;
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
/// A secret given in the configuration is not printed again.
pub fn print_provisioned(p: &Provisioned, url: &str) {
    print_provisioned_from(p, url, false, false)
}

/// [`print_provisioned`], saying which secrets came from the configuration instead of
/// printing them.
pub fn print_provisioned_from(
    p: &Provisioned,
    url: &str,
    key_configured: bool,
    token_configured: bool,
) {
    let shown = |secret: &str, configured: bool| {
        if configured {
            "(the one in the configuration)".to_string()
        } else {
            secret.to_string()
        }
    };
    println!(
        "Created workspace {} ({}).",
        p.workspace.name, p.workspace.id
    );
    println!(
        "  write key:   {}   (tracking API, HTTP Basic `key:`)",
        shown(&p.write_key, key_configured)
    );
    println!(
        "  admin token: {}   (admin API, `Authorization: Bearer …`)",
        shown(&p.admin_token, token_configured)
    );
    println!("These secrets are shown once; Parcours keeps only their hashes.");
    println!(
        "Try: curl -u {}: {url}/v1/track -H 'content-type: application/json' \\",
        if key_configured {
            "$WRITE_KEY"
        } else {
            &p.write_key
        }
    );
    println!("       -d '{{\"userId\":\"cus_1\",\"event\":\"Signed Up\"}}'");
}

/// Who sends each channel's messages: SMTP for email when configured, the capture channel
/// otherwise (said at start, so nobody believes customers are being emailed).
fn senders(config: &Config) -> anyhow::Result<parcours_engine::channels::Senders> {
    let mut senders = parcours_engine::channels::Senders::default();
    match (&config.channels.email.smtp_url, &config.channels.email.from) {
        (Some(url), Some(from)) => {
            let smtp = parcours_channels::Smtp::new(url, from)
                .map_err(|e| anyhow::anyhow!("channels.email: {e}"))?;
            senders.email = Arc::new(smtp);
            senders.about.insert(
                MessageChannel::Email,
                format!("SMTP {}, from {from}", parcours_engine::outbound::shown_host(url)),
            );
            tracing::info!(from = %from, "email goes out through SMTP");
        }
        (Some(_), None) => anyhow::bail!(
            "channels.email.smtp_url is set but channels.email.from is not: set PARCOURS__CHANNELS__EMAIL__FROM (e.g. \"Shop <news@shop.example>\")"
        ),
        (None, _) => tracing::warn!(
            "no email provider configured (PARCOURS__CHANNELS__EMAIL__SMTP_URL): journey emails go to the capture channel"
        ),
    }
    for (channel, p) in [
        (MessageChannel::Sms, &config.channels.sms),
        (MessageChannel::Push, &config.channels.push),
    ] {
        let name = channel.as_str();
        let upper = name.to_ascii_uppercase();
        match (&p.url, &p.from) {
            (Some(url), Some(from)) => {
                let provider = parcours_engine::provider::HttpProvider::new(
                    channel,
                    url,
                    p.username.as_deref(),
                    p.password.as_deref(),
                    from,
                )
                .map_err(|e| anyhow::anyhow!("channels.{name}: {e}"))?;
                let provider: Arc<dyn parcours_channels::Sender> = Arc::new(provider);
                senders
                    .about
                    .insert(channel, format!("HTTP {}, from {from}", parcours_engine::outbound::shown_host(url)));
                match channel {
                    MessageChannel::Sms => senders.sms = provider,
                    _ => senders.push = provider,
                }
                tracing::info!(channel = name, from = %from, "messages go out through the HTTP provider");
                if config.channels.public_url.is_none() {
                    tracing::warn!(channel = name, "no PARCOURS__CHANNELS__PUBLIC_URL: the provider cannot report deliveries");
                }
            }
            (Some(_), None) => anyhow::bail!(
                "channels.{name}.url is set but channels.{name}.from is not: set PARCOURS__CHANNELS__{upper}__FROM"
            ),
            (None, _) => tracing::warn!(
                channel = name,
                "no provider configured (PARCOURS__CHANNELS__{upper}__URL): journey messages on this channel go to the capture channel"
            ),
        }
    }
    senders.rate_per_second = [
        (MessageChannel::Email, config.channels.email.rate_per_second),
        (MessageChannel::Sms, config.channels.sms.rate_per_second),
        (MessageChannel::Push, config.channels.push.rate_per_second),
    ]
    .into_iter()
    .filter(|(_, r)| *r > 0)
    .collect();
    match &config.channels.webhook.secret {
        Some(secret) => {
            let caller = parcours_engine::provider::WebhookCaller::new(
                secret,
                config.destinations.allow_private_addresses,
            )
            .map_err(|e| anyhow::anyhow!("channels.webhook.secret: {e}"))?;
            senders.webhook = Some(Arc::new(caller));
        }
        None => tracing::info!(
            "no webhook signing secret (PARCOURS__CHANNELS__WEBHOOK__SECRET): journeys' webhook steps cannot call out"
        ),
    }
    Ok(senders)
}
