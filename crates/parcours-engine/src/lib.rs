//! Runtime loops of Parcours: the group-commit ingest writer and the unify processor that
//! turns the event log into the identity graph and profiles.
//!
//! Storage is reached only through the `parcours-store` ports; domain decisions are made by
//! `parcours-core`. Both loops run on their own threads because the ports are synchronous.

pub mod audiences;
pub mod channels;
pub mod clock;
pub mod cluster;
pub mod definitions;
pub mod delivery;
pub mod destinations;
pub mod erased;
pub mod facts;
pub mod health;
mod held;
mod ingest;
pub mod journeys;
pub mod outbound;
pub mod provider;
pub mod runner;
pub mod scheduler;
pub mod telemetry;
mod unify;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use parcours_core::time::{Clock, Millis};
use parcours_store::{AppendOutcome, IngestBatch, Store, StoreError};

pub use clock::SystemClock;
pub use cluster::ClusterConfig;
pub use unify::{replay, step as unify_step, undo_merge, ReplayReport, UndoOutcome, Unifier};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("parcours is shutting down")]
    ShuttingDown,
}

/// Events per unify transaction: large enough that pages touched by many events are written
/// once per commit.
pub const UNIFY_BATCH: usize = 10_000;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// A `messageId` seen within this window is a duplicate.
    pub dedup_window: Duration,
    /// Events per unify transaction.
    pub unify_batch: usize,
    /// Run the unify processor (a node can be ingest-only, e.g. in `bench ingest --no-unify`).
    pub unify: bool,
    /// Keep audiences and computed traits up to date (needs `unify`).
    pub audiences: bool,
    /// How audience destinations (webhooks) are delivered; they run with audiences.
    pub sync: destinations::SyncConfig,
    /// Share the work with other nodes through bucket leases (PostgreSQL). Without it, this
    /// node applies every bucket.
    pub cluster: Option<ClusterConfig>,
    /// Run journeys and send their messages (needs `unify`).
    pub journeys: bool,
    /// Who sends each channel's messages (the capture channel unless configured).
    pub senders: channels::Senders,
    /// The address customers reach this node at, for one-click unsubscribe links and
    /// preference pages (none: no unsubscribe header, no preference link in messages).
    pub public_url: Option<String>,
    /// How long a channel sender holds the messages it claims.
    pub send_lease: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            dedup_window: Duration::from_secs(30 * 86_400),
            unify_batch: UNIFY_BATCH,
            unify: true,
            audiences: true,
            sync: destinations::SyncConfig::default(),
            cluster: None,
            journeys: true,
            senders: channels::Senders::default(),
            public_url: None,
            send_lease: Duration::from_secs(60),
        }
    }
}

/// Wakes the unify processor when new events are committed.
#[derive(Default)]
pub(crate) struct Wake {
    pending: Mutex<bool>,
    cond: Condvar,
}

impl Wake {
    pub(crate) fn notify(&self) {
        *self.pending.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.cond.notify_all();
    }

    pub(crate) fn wait(&self, timeout: Duration) {
        let guard = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let (mut guard, _) = self
            .cond
            .wait_timeout_while(guard, timeout, |pending| !*pending)
            .unwrap_or_else(|e| e.into_inner());
        *guard = false;
    }
}

pub struct Engine {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    ingest: Mutex<Option<ingest::IngestSender>>,
    stop: Arc<AtomicBool>,
    wake: Arc<Wake>,
    audience_wake: Arc<Wake>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    ownership: Option<Arc<cluster::Ownership>>,
    deliveries: delivery::StatusBoard,
    health: Arc<health::Health>,
    allow_private_destinations: bool,
    senders: channels::Senders,
    erased: Arc<erased::ErasedList>,
    public_url: Option<String>,
}

impl Engine {
    pub fn start(store: Arc<dyn Store>, clock: Arc<dyn Clock>, config: EngineConfig) -> Arc<Self> {
        let wake = Arc::new(Wake::default());
        let stop = Arc::new(AtomicBool::new(false));
        let erased = Arc::new(erased::ErasedList::default());
        let (sender, writer) = ingest::start(
            store.clone(),
            clock.clone(),
            config.dedup_window,
            wake.clone(),
            erased.clone(),
        );
        let mut threads = vec![writer];
        let mut ownership = None;
        if let (true, Some(cluster)) = (config.unify, config.cluster.clone()) {
            let (own, keeper) = cluster::start(store.clone(), clock.clone(), cluster, stop.clone());
            threads.push(keeper);
            ownership = Some(own);
        }
        let audience_wake = Arc::new(Wake::default());
        let journey_wake = Arc::new(Wake::default());
        let deliveries = delivery::StatusBoard::default();
        let health = Arc::new(health::Health::default());
        if config.unify {
            let runtime = || runner::Runtime {
                store: store.clone(),
                clock: clock.clone(),
                stop: stop.clone(),
                ownership: ownership.clone(),
                health: health.clone(),
            };
            threads.push(runner::spawn(
                Box::new(unify::UnifyProcessor {
                    unifier: Unifier::default().reporting_to(health.clone()),
                    batch: config.unify_batch,
                }),
                runtime(),
                runner::RunnerConfig {
                    // Another node's events wake nobody here.
                    idle: Duration::from_millis(if ownership.is_some() { 50 } else { 200 }),
                    ..runner::RunnerConfig::default()
                },
                wake.clone(),
                vec![audience_wake.clone(), journey_wake.clone()],
            ));
            if config.journeys {
                let send_wake = Arc::new(Wake::default());
                let mut processor = journeys::JourneyProcessor::default();
                processor.public_url = config.public_url.clone();
                threads.push(runner::spawn(
                    Box::new(processor),
                    runtime(),
                    runner::RunnerConfig {
                        // Timers come due without anyone waking it.
                        idle: Duration::from_millis(50),
                        ..runner::RunnerConfig::default()
                    },
                    journey_wake.clone(),
                    vec![send_wake.clone()],
                ));
                let mut sender = channels::ChannelSender::new(
                    config.senders.clone(),
                    config.send_lease.as_millis() as i64,
                );
                sender.dedup_window_ms = config.dedup_window.as_millis() as i64;
                threads.push(runner::spawn(
                    Box::new(sender),
                    runtime(),
                    runner::RunnerConfig {
                        idle: Duration::from_millis(100),
                        ..runner::RunnerConfig::default()
                    },
                    send_wake,
                    // The events it records are the unify processor's to apply.
                    vec![wake.clone()],
                ));
            }
            if config.audiences {
                let feed_wake = Arc::new(Wake::default());
                let fed = Arc::new(tokio::sync::Notify::new());
                threads.push(runner::spawn(
                    Box::new(
                        audiences::AudienceProcessor::default()
                            .reporting_to(health.clone())
                            .with_clock(clock.clone()),
                    ),
                    runtime(),
                    runner::RunnerConfig {
                        idle: Duration::from_millis(50),
                        ..runner::RunnerConfig::default()
                    },
                    audience_wake.clone(),
                    vec![feed_wake.clone()],
                ));
                threads.push(runner::spawn(
                    Box::new(delivery::Feeder {
                        batch: config.sync.batch,
                        allow_private_addresses: config.sync.allow_private_addresses,
                        fed: fed.clone(),
                    }),
                    runtime(),
                    runner::RunnerConfig {
                        idle: config.sync.poll,
                        ..runner::RunnerConfig::default()
                    },
                    feed_wake.clone(),
                    Vec::new(),
                ));
                threads.push(delivery::start(
                    store.clone(),
                    clock.clone(),
                    config.sync.clone(),
                    deliveries.clone(),
                    stop.clone(),
                    ownership.clone(),
                    delivery::Signals {
                        fed,
                        settled: feed_wake,
                    },
                ));
            }
        }
        Arc::new(Self {
            store,
            clock,
            ingest: Mutex::new(Some(sender)),
            stop,
            wake,
            audience_wake,
            threads: Mutex::new(threads),
            ownership,
            deliveries,
            health,
            allow_private_destinations: config.sync.allow_private_addresses,
            senders: config.senders.clone(),
            erased,
            public_url: config.public_url.clone(),
        })
    }

    /// The address customers reach this node at (links in messages, preference pages).
    pub fn public_url(&self) -> Option<&str> {
        self.public_url.as_deref()
    }

    /// Waits until unify and the audience processor have applied every event in the log as
    /// it is now, or `timeout` passed (whichever first).
    pub fn settle(&self, timeout: Duration) {
        let Ok(target) = self.store.last_seq() else {
            return;
        };
        // Wall time: a test's manual clock does not move while this waits.
        let started = clock::Moment::now();
        while started.elapsed() < timeout {
            let unified = self.store.processed_seq().is_ok_and(|s| s >= target);
            let evaluated = audiences::position(self.store.as_ref()).is_ok_and(|s| s >= target);
            if unified && evaluated {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The suppression list ingest applies (an erasure refreshes it at once).
    pub fn erased_list(&self) -> &erased::ErasedList {
        &self.erased
    }

    /// Whether destinations may send to non-public addresses ([`outbound`]).
    pub fn allows_private_destinations(&self) -> bool {
        self.allow_private_destinations
    }

    /// How this node's processors are doing.
    pub fn health(&self) -> &health::Health {
        &self.health
    }

    /// How many events unify has applied that the audience processor has not read yet.
    pub fn audience_lag(&self) -> Result<i64, EngineError> {
        Ok((self.store.processed_seq()? - audiences::position(self.store.as_ref())?).max(0))
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Who sends each channel's messages on this node.
    pub fn senders(&self) -> &channels::Senders {
        &self.senders
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn now(&self) -> Millis {
        self.clock.now()
    }

    /// Appends a batch to the event log; returns once it is committed (group commit).
    pub async fn ingest(&self, batch: IngestBatch) -> Result<AppendOutcome, EngineError> {
        let sender = self
            .ingest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        sender.ok_or(EngineError::ShuttingDown)?.submit(batch).await
    }

    /// Runs another processor of the node (one the layers above the engine define, such as
    /// commerce's pickup deadlines) on a thread of its own until the engine stops: it looks
    /// for work every `idle`, and the unify processor is woken after each step that did
    /// work (its events are then applied at once).
    pub fn spawn_processor(&self, processor: Box<dyn runner::Processor>, idle: Duration) {
        let handle = runner::spawn(
            processor,
            runner::Runtime {
                store: self.store.clone(),
                clock: self.clock.clone(),
                stop: self.stop.clone(),
                ownership: self.ownership.clone(),
                health: self.health.clone(),
            },
            runner::RunnerConfig {
                idle,
                ..runner::RunnerConfig::default()
            },
            Arc::new(Wake::default()),
            vec![self.wake.clone()],
        );
        self.threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(handle);
    }

    /// Wakes the unify processor (events were written to the log without [`Engine::ingest`]).
    pub fn wake_unify(&self) {
        self.wake.notify();
    }

    /// How many committed events the unify processor has not applied yet.
    pub fn unify_lag(&self) -> Result<i64, EngineError> {
        Ok(self.store.last_seq()? - self.store.processed_seq()?)
    }

    /// Waits until every event committed so far has been unified (tests, demo, benchmarks).
    pub async fn wait_unified(&self, timeout: Duration) -> Result<bool, EngineError> {
        let target = self.store.last_seq()?;
        let unified = async {
            while self.store.processed_seq()? < target {
                self.wake.notify();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok::<(), EngineError>(())
        };
        match tokio::time::timeout(timeout, unified).await {
            Ok(done) => done.map(|()| true),
            Err(_) => Ok(false),
        }
    }

    /// How a destination is delivered (`None`: this node has not started it yet). Reads the
    /// store: call it off the async threads.
    pub fn delivery(
        &self,
        workspace: &str,
        id: &str,
    ) -> Result<Option<delivery::DeliveryStatus>, EngineError> {
        Ok(delivery::delivery_status(
            self.store.as_ref(),
            &self.deliveries,
            workspace,
            id,
            self.clock.now(),
        )?)
    }

    /// The buckets this node holds (`None` when it is not part of a cluster).
    pub fn held_buckets(&self) -> Option<Vec<u16>> {
        self.ownership.as_ref().map(|o| o.held())
    }

    /// Stops accepting events, commits what was accepted, and stops the loops.
    pub fn shutdown(&self) {
        self.ingest.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.stop.store(true, Ordering::SeqCst);
        self.wake.notify();
        self.audience_wake.notify();
        let threads: Vec<_> = self
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        for t in threads {
            let _ = t.join();
        }
    }
}
