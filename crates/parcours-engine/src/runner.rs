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
use std::time::{Duration, Instant};

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

/// Runs a processor on a thread of its own until `stop`: woken by `input`, waking `output`
/// after each step that did work.
pub(crate) fn spawn(
    mut processor: Box<dyn Processor>,
    rt: Runtime,
    config: RunnerConfig,
    input: Arc<Wake>,
    output: Option<Arc<Wake>>,
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
                let started = Instant::now();
                let outcome = processor.step(&cx);
                ProcessorStepped {
                    processor: name,
                    items: *outcome.as_ref().unwrap_or(&0),
                    latency: started.elapsed(),
                }
                .emit();
                match outcome {
                    Ok(items) => {
                        errors = 0;
                        rt.health.succeeded(name, rt.clock.now());
                        if items == 0 {
                            input.wait(config.idle);
                        } else {
                            if let Some(out) = &output {
                                out.notify();
                            }
                        }
                    }
                    // A lease moved (rebalancing or takeover): pick up the new set at once.
                    Err(StoreError::Conflict(e)) if rt.ownership.is_some() => {
                        tracing::debug!(processor = name, error = %e, "step fenced off; retrying");
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(e) => {
                        errors = errors.saturating_add(1);
                        rt.health.failed(name, rt.clock.now(), &e);
                        let wait = config
                            .backoff
                            .saturating_mul(2u32.saturating_pow(errors - 1))
                            .min(config.max_backoff);
                        pause(&rt.stop, wait);
                    }
                }
            }
        })
        .unwrap_or_else(|e| panic!("spawn the {name} processor: {e}"))
}

/// Sleeps up to `d`, waking early when the node stops.
fn pause(stop: &AtomicBool, d: Duration) {
    let until = Instant::now() + d;
    while !stop.load(Ordering::SeqCst) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}
