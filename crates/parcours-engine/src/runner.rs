//! The processor runner: one loop for every processor that follows the log or a queue.
//!
//! A processor says what it is ([`Processor::name`]), where it runs ([`Placement`]) and how to
//! take one step ([`Processor::step`]). The runner owns the rest, the same for all: it gives
//! the step the buckets its node holds, wakes it when its input grows (and otherwise looks
//! again after `idle` at most), wakes the processors downstream when a step did work, backs
//! off after errors (doubling up to a cap), reports to [`Health`] (which counts failures in
//! `parcours_processor_failures_total`), measures each step (`parcours_processor_step_seconds`,
//! `parcours_processor_items_total`, labelled by processor) and stops when asked.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parcours_core::time::{Clock, Millis};
use parcours_store::{Store, StoreError};

use crate::cluster::Ownership;
use crate::health::Health;
use crate::telemetry::{InternalEvent, ProcessorStepped};
use crate::Wake;

/// Where a processor runs in a cluster (a node alone runs everything).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// On every node, for the buckets the node holds, fenced by their leases.
    PerBucket,
    /// On the node that holds bucket 0 only.
    Leader,
}

/// Waits on the clock look at the stop request at least this often.
const SLICE: Duration = Duration::from_millis(50);

/// What a step is given.
pub struct StepContext<'a> {
    pub store: &'a dyn Store,
    pub now: Millis,
    /// The node and the buckets it holds (`None`: a node alone, every bucket).
    pub owned: Option<(&'a str, &'a [u16])>,
}

/// A loop that follows the log or a queue.
pub trait Processor: Send {
    /// Its name in health reports, logs and metrics.
    fn name(&self) -> &'static str;
    fn placement(&self) -> Placement;
    /// Takes one step; returns how many items it did (0: nothing to do, it is idle).
    fn step(&mut self, cx: &StepContext) -> Result<usize, StoreError>;
}

/// How the runner waits and retries.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// The longest wait when idle (input written by another node wakes nobody here).
    pub idle: Duration,
    /// The first wait after an error; doubles with each error in a row, up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            idle: Duration::from_millis(200),
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// What a runner needs from the node.
pub struct Runtime {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub stop: Arc<AtomicBool>,
    pub ownership: Option<Arc<Ownership>>,
    pub health: Arc<Health>,
}

/// Runs a processor on a thread of its own until `stop`: woken by `input`, waking each of `output`
/// after each step that did work.
pub(crate) fn spawn(
    mut processor: Box<dyn Processor>,
    rt: Runtime,
    config: RunnerConfig,
    input: Arc<Wake>,
    output: Vec<Arc<Wake>>,
) -> JoinHandle<()> {
    let name = processor.name();
    std::thread::Builder::new()
        .name(format!("parcours-{name}"))
        .spawn(move || {
            let mut errors = 0u32;
            while !rt.stop.load(Ordering::SeqCst) {
                let held = rt.ownership.as_ref().map(|o| o.held());
                if processor.placement() == Placement::Leader
                    && held.as_ref().is_some_and(|b| !b.contains(&0))
                {
                    rt.health.standby(name);
                    input.wait(config.idle.max(Duration::from_millis(500)));
                    continue;
                }
                let cx = StepContext {
                    store: rt.store.as_ref(),
                    now: rt.clock.now(),
                    owned: match (&rt.ownership, &held) {
                        (Some(own), Some(buckets)) => Some((own.node(), buckets.as_slice())),
                        _ => None,
                    },
                };
                let started = rt.clock.monotonic();
                let outcome = processor.step(&cx);
                ProcessorStepped {
                    processor: name,
                    items: *outcome.as_ref().unwrap_or(&0),
                    latency: rt.clock.monotonic().saturating_sub(started),
                }
                .emit();
                match outcome {
                    Ok(items) => {
                        errors = 0;
                        rt.health.succeeded(name, rt.clock.now());
                        rt.health.did(name, items);
                        if items == 0 {
                            input.wait(config.idle);
                        } else {
                            for out in &output {
                                out.notify();
                            }
                        }
                    }
                    // A lease moved (rebalancing or takeover): pick up the new set at once.
                    Err(StoreError::Conflict(e)) if rt.ownership.is_some() => {
                        tracing::debug!(processor = name, error = %e, "step fenced off; retrying");
                        rt.clock.pause(Duration::from_millis(20), SLICE, &|| {
                            rt.stop.load(Ordering::SeqCst)
                        });
                    }
                    Err(e) => {
                        errors = errors.saturating_add(1);
                        rt.health.failed(name, rt.clock.now(), &e);
                        let wait = config
                            .backoff
                            .saturating_mul(2u32.saturating_pow(errors - 1))
                            .min(config.max_backoff);
                        rt.clock
                            .pause(wait, SLICE, &|| rt.stop.load(Ordering::SeqCst));
                    }
                }
            }
        })
        .unwrap_or_else(|e| panic!("spawn the {name} processor: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    use parcours_store_sqlite::SqliteStore;
    use parcours_testkit::clock::ManualClock;

    /// Fails every step, counting them.
    struct Failing(Arc<AtomicUsize>);

    impl Processor for Failing {
        fn name(&self) -> &'static str {
            "failing"
        }

        fn placement(&self) -> Placement {
            Placement::PerBucket
        }

        fn step(&mut self, _cx: &StepContext) -> Result<usize, StoreError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Err(StoreError::Backend("the store is away".into()))
        }
    }

    /// Waits (in real time) until `steps` reads `n`, or fails after 5 s.
    fn until_steps(steps: &AtomicUsize, n: usize) {
        for _ in 0..500 {
            if steps.load(Ordering::SeqCst) >= n {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("{} steps, not {n}", steps.load(Ordering::SeqCst));
    }

    /// The runner backs off on the clock it is given: with a manual clock, a failed step is
    /// retried only once the test moves the clock past the backoff, which doubles.
    #[test]
    fn backoff_waits_on_the_injected_clock() {
        let dir = std::env::temp_dir().join(format!("parcours-runner-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_temp(&dir).unwrap());
        let clock = Arc::new(ManualClock::at(1_000));
        let steps = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let health = Arc::new(Health::default());
        let handle = spawn(
            Box::new(Failing(steps.clone())),
            Runtime {
                store,
                clock: clock.clone(),
                stop: stop.clone(),
                ownership: None,
                health: health.clone(),
            },
            RunnerConfig {
                idle: Duration::from_millis(10),
                backoff: Duration::from_millis(500),
                max_backoff: Duration::from_secs(5),
            },
            Arc::new(Wake::default()),
            Vec::new(),
        );
        until_steps(&steps, 1);
        // Real time passes, the clock does not: no retry.
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(steps.load(Ordering::SeqCst), 1);
        clock.advance(499);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            steps.load(Ordering::SeqCst),
            1,
            "retried before the backoff ended"
        );
        clock.advance(1);
        until_steps(&steps, 2);
        // The second wait is twice as long.
        clock.advance(500);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(steps.load(Ordering::SeqCst), 2);
        clock.advance(500);
        until_steps(&steps, 3);
        assert_eq!(health.snapshot()["failing"].failures, 3);
        assert_eq!(health.snapshot()["failing"].failing_since, Some(1_000));
        // A stop request ends the wait without the clock moving.
        stop.store(true, Ordering::SeqCst);
        handle.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
