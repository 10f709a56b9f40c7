//! The embedded store: two SQLite files in WAL mode in the data directory. The event log (with
//! the registry and quarantine) and the projections (identity graph, profiles) each have one
//! write connection behind a mutex (so writers queue in Rust instead of spinning in SQLite's
//! busy handler), so ingest and unify commit in parallel; small pools of read connections
//! serve queries, the projection side with the log attached as `log`.
//!
//! Depends on `parcours-store` (the ports) and `parcours-core` (the model) only.

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
mod timers;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use parcours_store::{Result, StoreError};
use rusqlite::Connection;

/// Enough for every statement the adapter prepares, so none is re-prepared on the hot path.
const STATEMENT_CACHE: usize = 128;

/// How often the checkpointer copies committed pages from each write-ahead log into its
/// database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);
/// Pages a write-ahead log may reach before a commit checkpoints it itself: a backstop for
/// when the checkpointer falls behind (about 64 MB).
const CHECKPOINT_BACKSTOP: u32 = 16_000;

const LOG_MIGRATIONS: &[&str] = &[
    include_str!("../../../migrations/sqlite/0001_init.sql"),
    include_str!("../../../migrations/sqlite/0002_buckets.sql"),
    include_str!("../../../migrations/sqlite/0003_quarantine.sql"),
    include_str!("../../../migrations/sqlite/0004_keys.sql"),
    include_str!("../../../migrations/sqlite/0005_source_kinds.sql"),
    include_str!("../../../migrations/sqlite/0006_token_language.sql"),
    include_str!("../../../migrations/sqlite/0007_commerce.sql"),
    include_str!("../../../migrations/sqlite/0008_offers.sql"),
    include_str!("../../../migrations/sqlite/0009_ad_spend.sql"),
    include_str!("../../../migrations/sqlite/0010_privacy.sql"),
];
const PROJECTION_MIGRATIONS: &[&str] = &[
    include_str!("../../../migrations/sqlite/projections/0001_init.sql"),
    include_str!("../../../migrations/sqlite/projections/0002_buckets.sql"),
    include_str!("../../../migrations/sqlite/projections/0003_audiences.sql"),
    include_str!("../../../migrations/sqlite/projections/0004_merged_index.sql"),
    include_str!("../../../migrations/sqlite/projections/0005_reshaped.sql"),
    include_str!("../../../migrations/sqlite/projections/0006_outbox.sql"),
    include_str!("../../../migrations/sqlite/projections/0007_timers.sql"),
    include_str!("../../../migrations/sqlite/projections/0008_audience_work.sql"),
    include_str!("../../../migrations/sqlite/projections/0009_journeys.sql"),
    include_str!("../../../migrations/sqlite/projections/0010_messages.sql"),
    include_str!("../../../migrations/sqlite/projections/0011_journey_work_seq.sql"),
    include_str!("../../../migrations/sqlite/projections/0012_journey_runs_by_journey.sql"),
    include_str!("../../../migrations/sqlite/projections/0013_tallies.sql"),
];

/// How hard a commit tries to reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync on every commit: an acknowledged batch survives a power cut.
    Full,
    /// fsync at checkpoints: survives a crash of Parcours, not of the machine.
    Normal,
}

pub struct SqliteStore {
    log_path: PathBuf,
    projections_path: PathBuf,
    log_writer: Mutex<Connection>,
    projection_writer: Mutex<Connection>,
    log_readers: Mutex<Vec<Connection>>,
    projection_readers: Mutex<Vec<Connection>>,
    durability: Durability,
    /// Reservations waiting for the log's writer, committed together by whichever of their
    /// callers gets it first (see [`commerce`]).
    reservations: commerce::Waiting,
    /// Held for its `Drop`, which stops the thread.
    _checkpointer: Checkpointer,
}

/// Checkpoints both files from a thread of its own. A commit that checkpoints (SQLite does
/// it in the commit that takes the write-ahead log past a threshold) copies pages and waits
/// on fsync of the database file while it holds the write lock, and the commits behind it
/// wait too: an event's way to its audiences took tens of milliseconds more each time.
/// Passive checkpoints block no reader or writer.
struct Checkpointer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    fn start(paths: [PathBuf; 2]) -> Result<Self> {
        let conns = paths
            .iter()
            .map(|p| {
                let c = Connection::open(p).map_err(backend)?;
                c.execute_batch("PRAGMA busy_timeout=1000;")
                    .map_err(backend)?;
                Ok(c)
            })
            .collect::<Result<Vec<_>>>()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("parcours-checkpoint".into())
            .spawn(move || {
                while !flag.load(Ordering::SeqCst) {
                    std::thread::park_timeout(CHECKPOINT_EVERY);
                    for c in &conns {
                        // Busy (another checkpoint runs) or failed: the next round retries,
                        // and commits checkpoint themselves past the backstop.
                        if let Err(e) =
                            c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                        {
                            tracing::debug!(error = %e, "checkpoint deferred");
                        }
                    }
                }
            })
            .map_err(|e| StoreError::Backend(format!("start the checkpointer: {e}")))?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

pub(crate) fn backend(e: rusqlite::Error) -> StoreError {
    // A string or blob over SQLite's size limit blames the data, not the file.
    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::TooBig) {
        StoreError::Rejected(e.to_string())
    } else {
        StoreError::Backend(e.to_string())
    }
}

pub(crate) fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn open_writer(path: &Path, durability: Durability, migrations: &[&str]) -> Result<Connection> {
    let mut conn = Connection::open(path).map_err(backend)?;
    let sync = match durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    // The writer's page cache is kept small (8 MiB; readers map the file): SQLite scans the
    // whole cache at the end of any transaction whose B-tree rebalanced pages (it renumbers
    // them through a page number past the end of the file), so a 64 MiB cache cost a tenth
    // of the journeys benchmark in that scan alone. What falls out of it is read back from
    // the operating system's cache.
    conn.execute_batch(&format!(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous={sync}; PRAGMA foreign_keys=ON;
         PRAGMA busy_timeout=10000; PRAGMA cache_size=-8192; PRAGMA temp_store=MEMORY;
         PRAGMA wal_autocheckpoint={CHECKPOINT_BACKSTOP};"
    ))
    .map_err(backend)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    migrate(&mut conn, migrations)?;
    Ok(conn)
}

fn attach_log(conn: &Connection, log: &Path) -> Result<()> {
    conn.execute("ATTACH DATABASE ?1 AS log", [log.to_string_lossy()])
        .map_err(backend)?;
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the store whose event log is the file `path` (projections
    /// live beside it, `NAME.projections.sqlite3`) and brings both schemas up to date.
    pub fn open(path: impl AsRef<Path>, durability: Durability) -> Result<Self> {
        let log_path = path.as_ref().to_path_buf();
        let projections_path = log_path.with_extension("projections.sqlite3");
        let log_writer = open_writer(&log_path, durability, LOG_MIGRATIONS)?;
        let projection_writer = open_writer(&projections_path, durability, PROJECTION_MIGRATIONS)?;
        attach_log(&projection_writer, &log_path)?;
        let checkpointer = Checkpointer::start([log_path.clone(), projections_path.clone()])?;
        Ok(Self {
            reservations: commerce::Waiting::default(),
            _checkpointer: checkpointer,
            log_path,
            projections_path,
            log_writer: Mutex::new(log_writer),
            projection_writer: Mutex::new(projection_writer),
            log_readers: Mutex::new(Vec::new()),
            projection_readers: Mutex::new(Vec::new()),
            durability,
        })
    }

    /// A store in a fresh temporary file (tests and benchmarks).
    pub fn open_temp(dir: &Path) -> Result<Self> {
        Self::open(dir.join("parcours.sqlite3"), Durability::Normal)
    }

    pub(crate) fn writer(&self) -> MutexGuard<'_, Connection> {
        self.log_writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn projection_writer(&self) -> MutexGuard<'_, Connection> {
        self.projection_writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the projections' writer with commits that do not wait for the disk: for
    /// claims only (leases on outbox rows and timers). A claim lost to a power cut is as if its
    /// lease had run out: the rows are claimed again, and what was sent goes again under its
    /// own key, as after any crash. The next commit that syncs takes it to disk with its own
    /// (the write-ahead log is written in order).
    pub(crate) fn claim_writer<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T>,
    ) -> Result<T> {
        let mut conn = self.projection_writer();
        if self.durability == Durability::Normal {
            return f(&mut conn);
        }
        conn.execute_batch("PRAGMA synchronous=NORMAL")
            .map_err(backend)?;
        let out = f(&mut conn);
        conn.execute_batch("PRAGMA synchronous=FULL")
            .map_err(backend)?;
        out
    }

    /// Runs a query on a pooled read connection of the event log.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.pooled(&self.log_readers, &self.log_path, false, f)
    }

    /// Runs a query on a pooled read connection of the projections (the log attached as `log`).
    pub(crate) fn read_projections<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T>,
    ) -> Result<T> {
        self.pooled(&self.projection_readers, &self.projections_path, true, f)
    }

    fn pooled<T>(
        &self,
        pool: &Mutex<Vec<Connection>>,
        path: &Path,
        with_log: bool,
        f: impl FnOnce(&Connection) -> Result<T>,
    ) -> Result<T> {
        let conn = pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match conn {
            Some(c) => c,
            None => {
                let c = Connection::open(path).map_err(backend)?;
                c.execute_batch("PRAGMA busy_timeout=10000; PRAGMA cache_size=-16384; PRAGMA mmap_size=8589934592;")
                    .map_err(backend)?;
                c.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
                if with_log {
                    attach_log(&c, &self.log_path)?;
                }
                c
            }
        };
        let out = f(&conn);
        let mut pool = pool.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < 8 {
            pool.push(conn);
        }
        out
    }
}

fn migrate(conn: &mut Connection, migrations: &[&str]) -> Result<()> {
    let version: usize = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(backend)?;
    if version > migrations.len() {
        return Err(StoreError::Corrupt(format!(
            "the store has schema version {version}, newer than this binary knows ({}); upgrade Parcours",
            migrations.len()
        )));
    }
    for (i, sql) in migrations.iter().enumerate().skip(version) {
        let tx = conn.transaction().map_err(backend)?;
        tx.execute_batch(sql).map_err(backend)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))
            .map_err(backend)?;
        tx.commit().map_err(backend)?;
    }
    Ok(())
}

/// The baseline of the ingest benchmark: plain multi-row `INSERT`s of the same rows into a
/// table like `events`, in transactions of `batch` rows, with the given durability. Returns
/// the time it took on `clock`.
pub fn raw_insert_baseline(
    path: &Path,
    durability: Durability,
    rows: &[parcours_core::spec::AcceptedEvent],
    batch: usize,
    clock: &dyn parcours_core::time::Clock,
) -> Result<std::time::Duration> {
    let store = SqliteStore::open(path, durability)?;
    let mut conn = store.writer();
    let started = clock.monotonic();
    for chunk in rows.chunks(batch.max(1)) {
        let tx = conn.transaction().map_err(backend)?;
        {
            let mut st = tx
                .prepare_cached(event_log::INSERT_EVENT)
                .map_err(backend)?;
            for e in chunk {
                event_log::insert_event(&mut st, "ws", "src", e)?;
            }
        }
        tx.commit().map_err(backend)?;
    }
    Ok(clock.monotonic().saturating_sub(started))
}

#[cfg(test)]
mod checkpoints {
    use parcours_store::{EventLog, IngestBatch};

    /// Committed pages reach the database file without a commit checkpointing: the file
    /// grows by itself while the write-ahead log is far below the backstop.
    #[test]
    fn the_checkpointer_copies_commits_into_the_database_file() {
        let dir = std::env::temp_dir().join(format!("parcours-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = super::SqliteStore::open_temp(&dir).unwrap();
        let file = dir.join("parcours.sqlite3");
        let size = || std::fs::metadata(&file).unwrap().len();
        // Let a round pass over the fresh store, then commit about 2 MB.
        std::thread::sleep(super::CHECKPOINT_EVERY * 2);
        let before = size();
        let events: Vec<_> = (0..2_000)
            .map(|i| parcours_core::spec::AcceptedEvent {
                message_id: format!("m{i}"),
                kind: parcours_core::spec::EventType::Track,
                event: Some("Page Viewed".into()),
                user_id: Some(format!("u{i}")),
                anonymous_id: None,
                timestamp: 1,
                received_at: 1,
                channel: parcours_core::Channel::Web,
                body: format!("{{\"pad\": \"{}\"}}", "x".repeat(1_000)),
            })
            .collect();
        store
            .append(
                &[IngestBatch {
                    workspace_id: "ws".into(),
                    source_id: "src".into(),
                    events,
                    quarantined: vec![],
                }],
                0,
            )
            .unwrap();
        // Up to 5 s.
        for _ in 0..250 {
            if size() >= before + 2_000_000 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let after = size();
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(after >= before + 2_000_000, "{before} → {after} bytes");
    }
}

#[cfg(test)]
mod conformance {
    /// Removes the store's directory when a test ends.
    pub struct TempDir(std::path::PathBuf);

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    // Unique scratch names, not a time the product reads.
    #[allow(clippy::disallowed_methods)]
    fn temp_store() -> (super::SqliteStore, TempDir) {
        let dir = std::env::temp_dir().join(format!(
            "parcours-conformance-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        (super::SqliteStore::open_temp(&dir).unwrap(), TempDir(dir))
    }

    parcours_store::conformance_suite!(temp_store);
}
