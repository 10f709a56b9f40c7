//! The PostgreSQL store: every storage port of Parcours on one database that several
//! stateless nodes share.
//!
//! - Migrations (`migrations/postgres`) are applied on open under an advisory lock, so nodes
//!   can start together.
//! - Events are range-partitioned by day of arrival; partitions are created ahead of time and
//!   retention drops whole partitions.
//! - Appends lock the log's high-water row first, so sequence numbers commit in order and a
//!   reader never skips an event that commits late.
//! - Projection transactions take a transaction-scoped advisory lock per workspace (in sorted
//!   order), and bucket owners fence their work with a shared lock on their lease rows.
//!
//! The ports are synchronous. The adapter owns a small tokio runtime that drives sqlx's I/O,
//! and each call polls its future on the calling thread (see [`PgStore::run`]), so it can be
//! called from any thread, inside another runtime or not.

/// A query string built from the adapter's own constants (table and column names, never
/// input).
macro_rules! sql {
    ($($arg:tt)*) => {
        &format!($($arg)*)
    };
}

mod audiences;
mod cluster;
mod commerce;
mod event_log;
mod journeys;
mod messages;
mod outbox;
mod privacy;
mod projections;
mod quarantine;
mod registry;
pub mod testing;
mod timers;

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use parcours_core::time::{day_start, Millis, DAY};
use parcours_store::{Result, StoreError};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        include_str!("../../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        include_str!("../../../migrations/postgres/0002_audiences.sql"),
    ),
    (
        3,
        include_str!("../../../migrations/postgres/0003_quarantine.sql"),
    ),
    (
        4,
        include_str!("../../../migrations/postgres/0004_reshaped.sql"),
    ),
    (
        5,
        include_str!("../../../migrations/postgres/0005_keys.sql"),
    ),
    (
        6,
        include_str!("../../../migrations/postgres/0006_source_kinds.sql"),
    ),
    (
        7,
        include_str!("../../../migrations/postgres/0007_outbox.sql"),
    ),
    (
        8,
        include_str!("../../../migrations/postgres/0008_timers.sql"),
    ),
    (
        9,
        include_str!("../../../migrations/postgres/0009_audience_work.sql"),
    ),
    (
        10,
        include_str!("../../../migrations/postgres/0010_journeys.sql"),
    ),
    (
        11,
        include_str!("../../../migrations/postgres/0011_messages.sql"),
    ),
    (
        12,
        include_str!("../../../migrations/postgres/0012_journey_work_seq.sql"),
    ),
    (
        13,
        include_str!("../../../migrations/postgres/0013_tallies.sql"),
    ),
    (
        14,
        include_str!("../../../migrations/postgres/0014_token_language.sql"),
    ),
    (
        15,
        include_str!("../../../migrations/postgres/0015_commerce.sql"),
    ),
    (
        16,
        include_str!("../../../migrations/postgres/0016_offers.sql"),
    ),
    (
        17,
        include_str!("../../../migrations/postgres/0017_ad_spend.sql"),
    ),
    (
        18,
        include_str!("../../../migrations/postgres/0018_privacy.sql"),
    ),
];

/// The advisory lock key that serialises migrations (any fixed 64-bit number).
const MIGRATION_LOCK: i64 = 0x7061_7263_6f75_7273;

/// Days of event partitions kept ready ahead of today.
const PARTITIONS_AHEAD: i64 = 3;

/// Whether PostgreSQL aborted the transaction only to break a deadlock or a serialization
/// conflict: trying it again is the documented answer.
pub(crate) fn is_transient(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|code| code == "40P01" || code == "40001")
}

/// Runs a short write again when PostgreSQL chose it as a deadlock's or a serialization
/// conflict's victim (a few times, with a short growing pause).
pub(crate) fn retrying<T>(
    mut attempt: impl FnMut() -> std::result::Result<T, sqlx::Error>,
) -> std::result::Result<T, sqlx::Error> {
    let mut tries = 0u32;
    loop {
        match attempt() {
            Err(e) if is_transient(&e) && tries < 5 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(5 << tries));
            }
            other => return other,
        }
    }
}

pub(crate) fn backend(e: sqlx::Error) -> StoreError {
    // SQLSTATE classes 22 (data exception: a NUL in text, a number out of range …) and 54
    // (program limit exceeded: a key too long for its index) blame the data, not the server.
    let refused = e
        .as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|code| code.starts_with("22") || code.starts_with("54"));
    if refused {
        StoreError::Rejected(e.to_string())
    } else {
        StoreError::Backend(e.to_string())
    }
}

pub(crate) fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct PgConfig {
    pub url: String,
    /// Connections this node may open.
    pub max_connections: u32,
}

impl PgConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 16,
        }
    }
}

pub struct PgStore {
    pool: PgPool,
    /// Always `Some` until dropped.
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // Without waiting: the store may be dropped on an async executor's thread.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Wakes the thread that polls a future.
struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls a future to completion on this thread; the store's runtime does the I/O and wakes it.
fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

impl PgStore {
    /// Connects, applies pending migrations (under an advisory lock) and makes sure the
    /// coming days' event partitions exist.
    pub fn connect(config: &PgConfig) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("parcours-pg")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Backend(format!("cannot start the database runtime: {e}")))?;
        let options = config
            .url
            .parse::<PgConnectOptions>()
            .map_err(|e| StoreError::Backend(format!("invalid PostgreSQL URL: {e}")))?
            // Waiting for a workspace's lock behind another node's step is normal, not slow SQL.
            .log_slow_statements(log::LevelFilter::Debug, Duration::from_secs(1));
        let pool = {
            let _entered = rt.enter();
            block_on(
                PgPoolOptions::new()
                    .max_connections(config.max_connections)
                    .acquire_timeout(Duration::from_secs(30))
                    // A ping before every use costs a round trip per query; a broken
                    // connection fails its query instead, and the caller retries.
                    .test_before_acquire(false)
                    // A released connection goes back to the pool asynchronously; with idle
                    // ones at hand, the next query does not wait for it (measured: 1.5 ms to
                    // 0.09 ms per query).
                    .min_connections(config.max_connections.min(4))
                    .connect_with(options),
            )
            .map_err(|e| StoreError::Backend(format!("cannot connect to PostgreSQL: {e}")))?
        };
        let store = Self { pool, rt: Some(rt) };
        store.migrate()?;
        // The database's clock: the store reads no clock of its own.
        let now: f64 = store
            .run(
                sqlx::query_scalar("SELECT (extract(epoch FROM now()) * 1000)::float8")
                    .fetch_one(&store.pool),
            )
            .map_err(backend)?;
        store.ensure_partitions(now as Millis)?;
        Ok(store)
    }

    /// Runs a future of this store's on the calling thread.
    pub(crate) fn run<F: Future>(&self, fut: F) -> F::Output {
        let _entered = self.rt.as_ref().expect("the store's runtime").enter();
        block_on(fut)
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn migrate(&self) -> Result<()> {
        self.run(async {
            let mut conn = self.pool.acquire().await.map_err(backend)?;
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *conn)
                .await
                .map_err(backend)?;
            let outcome = apply_migrations(&mut conn).await;
            sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *conn)
                .await
                .map_err(backend)?;
            outcome
        })
    }

    /// Creates the event partitions from yesterday to a few days ahead (idempotent). Nodes
    /// call it on start and hourly.
    pub fn ensure_partitions(&self, now: Millis) -> Result<()> {
        let today = day_start(now);
        self.run(async {
            for d in -1..=PARTITIONS_AHEAD {
                let from = today + d * DAY;
                let name = partition_name(from);
                if exists(&self.pool, &name).await? {
                    continue;
                }
                let sql = format!(
                    "CREATE TABLE IF NOT EXISTS {name} PARTITION OF events FOR VALUES FROM ({from}) TO ({})",
                    from + DAY
                );
                if let Err(e) = sqlx::raw_sql(&sql).execute(&self.pool).await {
                    // Another node created it at the same moment, or the default partition
                    // already holds rows of that day: both leave ingest working.
                    if !exists(&self.pool, &name).await? {
                        tracing::warn!(partition = %name, error = %e, "cannot create an event partition");
                    }
                }
            }
            Ok(())
        })
    }
}

async fn exists(pool: &PgPool, table: &str) -> Result<bool> {
    sqlx::query_scalar::<_, bool>("SELECT to_regclass($1) IS NOT NULL")
        .bind(table)
        .fetch_one(pool)
        .await
        .map_err(backend)
}

pub(crate) fn partition_name(day: Millis) -> String {
    let date = parcours_core::time::format_timestamp(day);
    format!("events_{}", date[..10].replace('-', ""))
}

async fn apply_migrations(conn: &mut sqlx::PgConnection) -> Result<()> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS parcours_migrations (version INT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    let applied: Vec<i32> = sqlx::query_scalar("SELECT version FROM parcours_migrations")
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?;
    if let Some(newest) = applied.iter().max() {
        let known = MIGRATIONS.last().map_or(0, |m| m.0);
        if *newest > known {
            return Err(StoreError::Corrupt(format!(
                "the database has schema version {newest}, newer than this binary knows ({known}); upgrade Parcours"
            )));
        }
    }
    for (version, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        let mut tx = conn.begin().await.map_err(backend)?;
        sqlx::raw_sql(sql)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::Backend(format!("migration {version} failed: {e}")))?;
        sqlx::query("INSERT INTO parcours_migrations (version) VALUES ($1)")
            .bind(version)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        tracing::info!(version, "applied PostgreSQL migration");
    }
    Ok(())
}

#[cfg(test)]
mod conformance {
    fn temp_store() -> (super::PgStore, super::testing::TempDatabase) {
        let db = super::testing::TempDatabase::create();
        (
            super::PgStore::connect(&super::PgConfig::new(db.url())).unwrap(),
            db,
        )
    }

    parcours_store::conformance_suite!(temp_store);
}

#[cfg(test)]
mod tests {
    use parcours_core::channel::Channel;
    use parcours_core::spec::{AcceptedEvent, EventType};
    use parcours_core::time::{day_start, DAY};
    use parcours_store::{EventLog, IngestBatch, Registry, Workspace};

    use super::testing::TempDatabase;
    use super::*;

    #[test]
    fn nodes_starting_together_migrate_once() {
        let db = TempDatabase::create();
        let stores: Vec<PgStore> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..3)
                .map(|_| s.spawn(|| PgStore::connect(&PgConfig::new(db.url()))))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap().unwrap())
                .collect()
        });
        let applied: i64 = stores[0]
            .run(
                sqlx::query_scalar("SELECT count(*) FROM parcours_migrations")
                    .fetch_one(stores[0].pool()),
            )
            .unwrap();
        assert_eq!(applied, MIGRATIONS.len() as i64);
    }

    #[test]
    fn retention_drops_day_partitions() {
        let db = TempDatabase::create();
        let store = PgStore::connect(&PgConfig::new(db.url())).unwrap();
        let day = day_start(1_700_000_000_000);
        store.ensure_partitions(day).unwrap();
        let old = partition_name(day - DAY);
        let today = partition_name(day);
        let exists = |name: &str| -> bool {
            store
                .run(
                    sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
                        .bind(name)
                        .fetch_one(store.pool()),
                )
                .unwrap()
        };
        assert!(exists(&old) && exists(&today));
        store
            .create_workspace(&Workspace {
                id: "ws".into(),
                name: "ws".into(),
                created_at: day,
                identity_rules: Default::default(),
            })
            .unwrap();
        let event = |mid: &str, at: i64| AcceptedEvent {
            message_id: mid.into(),
            kind: EventType::Track,
            event: Some("Viewed".into()),
            user_id: Some("u".into()),
            anonymous_id: None,
            timestamp: at,
            received_at: at,
            channel: Channel::Web,
            body: "{}".into(),
        };
        let batch = IngestBatch {
            workspace_id: "ws".into(),
            source_id: "src".into(),
            events: vec![
                event("a", day - 10),
                event("b", day - DAY + 1),
                event("c", day + 1),
            ],
            quarantined: vec![],
        };
        store.append(&[batch], 0).unwrap();
        let in_old: i64 = store
            .run(sqlx::query_scalar(sql!("SELECT count(*) FROM {old}")).fetch_one(store.pool()))
            .unwrap();
        assert_eq!(in_old, 2, "events land in their day's partition");
        assert_eq!(store.drop_events_before(day + 5).unwrap(), 2);
        assert!(!exists(&old), "the whole partition is dropped");
        assert!(exists(&today));
        assert_eq!(store.event_count("ws").unwrap(), 1);
    }
}

/// One event's application, for checking order after the fact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Application {
    pub bucket: u16,
    pub seq: i64,
    /// Position in the cluster-wide order in which events were applied.
    pub applied: i64,
}

impl PgStore {
    /// Every event's assignment to a profile in the order it was applied (diagnostics: within
    /// a bucket, `seq` must grow with `applied`).
    pub fn application_order(&self) -> Result<Vec<Application>> {
        let rows: Vec<(i16, i64, i64)> = self
            .run(
                sqlx::query_as(
                    "SELECT e.bucket, pe.seq, pe.applied FROM profile_events pe
                     JOIN events e ON e.seq = pe.seq ORDER BY pe.applied",
                )
                .fetch_all(&self.pool),
            )
            .map_err(backend)?;
        Ok(rows
            .into_iter()
            .map(|(bucket, seq, applied)| Application {
                bucket: bucket as u16,
                seq,
                applied,
            })
            .collect())
    }
}

impl PgStore {
    /// The baseline of the ingest benchmark: `COPY` of the same rows into a plain table shaped
    /// like `events` (same columns and indexes), `chunk` rows per transaction. Returns the
    /// time it took on `clock`.
    pub fn copy_baseline(
        &self,
        rows: &[parcours_core::spec::AcceptedEvent],
        chunk: usize,
        clock: &dyn parcours_core::time::Clock,
    ) -> Result<Duration> {
        self.run(async {
            let mut conn = self.pool.acquire().await.map_err(backend)?;
            sqlx::raw_sql(
                "DROP TABLE IF EXISTS copy_baseline;
                 CREATE TABLE copy_baseline (LIKE events INCLUDING DEFAULTS);
                 CREATE INDEX ON copy_baseline (seq);
                 CREATE INDEX ON copy_baseline (workspace_id, seq);
                 CREATE INDEX ON copy_baseline (bucket, seq);",
            )
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
            let started = clock.monotonic();
            let mut seq = 0i64;
            for part in rows.chunks(chunk.max(1)) {
                let mut data = String::new();
                for e in part {
                    seq += 1;
                    copy_row(&mut data, seq, e);
                }
                let mut tx = conn.begin().await.map_err(backend)?;
                let mut copy = tx
                    .copy_in_raw(
                        "COPY copy_baseline (seq, workspace_id, source_id, message_id, type, event, user_id,
                                             anonymous_id, timestamp, received_at, channel, body, bucket) FROM STDIN",
                    )
                    .await
                    .map_err(backend)?;
                copy.send(data.into_bytes()).await.map_err(backend)?;
                copy.finish().await.map_err(backend)?;
                tx.commit().await.map_err(backend)?;
            }
            let elapsed = clock.monotonic().saturating_sub(started);
            sqlx::raw_sql("DROP TABLE copy_baseline")
                .execute(&mut *conn)
                .await
                .map_err(backend)?;
            Ok(elapsed)
        })
    }
}

/// One row in COPY's text format.
fn copy_row(out: &mut String, seq: i64, e: &parcours_core::spec::AcceptedEvent) {
    fn field(out: &mut String, v: Option<&str>) {
        match v {
            None => out.push_str("\\N"),
            Some(s) => {
                for c in s.chars() {
                    match c {
                        '\\' => out.push_str("\\\\"),
                        '\t' => out.push_str("\\t"),
                        '\n' => out.push_str("\\n"),
                        '\r' => out.push_str("\\r"),
                        c => out.push(c),
                    }
                }
            }
        }
    }
    let bucket = parcours_core::bucket::of("ws", e.user_id.as_deref(), e.anonymous_id.as_deref());
    let cols: [Option<String>; 13] = [
        Some(seq.to_string()),
        Some("ws".into()),
        Some("src".into()),
        Some(e.message_id.clone()),
        Some(e.kind.as_str().into()),
        e.event.clone(),
        e.user_id.clone(),
        e.anonymous_id.clone(),
        Some(e.timestamp.to_string()),
        Some(e.received_at.to_string()),
        Some(e.channel.as_str().into()),
        Some(e.body.clone()),
        Some(bucket.to_string()),
    ];
    for (i, c) in cols.iter().enumerate() {
        if i > 0 {
            out.push('\t');
        }
        field(out, c.as_deref());
    }
    out.push('\n');
}
