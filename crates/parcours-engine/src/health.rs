//! How each processor of a node is doing, for `/readyz` and `/api/v1/status`: whether its
//! last step failed and since when, and how many inputs it set aside. Each report is one call
//! that writes the log line, counts the metric and records the state together.

use std::collections::BTreeMap;
use std::sync::Mutex;

use parcours_core::time::Millis;
use serde::Serialize;

/// One processor's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProcessorHealth {
    /// Failed steps in a row (0 once a step succeeds).
    pub failures: u32,
    /// When the current run of failures began.
    pub failing_since: Option<Millis>,
    pub last_error: Option<String>,
    pub last_success_at: Option<Millis>,
    /// Inputs it could not read or apply and moved aside (to the quarantine) since the node
    /// started, so that it could go on.
    pub set_aside: u64,
    /// Another node runs it now (in a cluster, the holder of bucket 0 runs full
    /// computations and deliveries).
    pub standby: bool,
    /// Items its steps did on this node since it started (events applied, profiles
    /// evaluated, rows sent): how a cluster spreads the work.
    pub items: u64,
}

/// Every processor's state, by name (`unify`, `audiences`, `destinations`).
#[derive(Default)]
pub struct Health {
    processors: Mutex<BTreeMap<&'static str, ProcessorHealth>>,
}

impl Health {
    fn with(&self, processor: &'static str, f: impl FnOnce(&mut ProcessorHealth)) {
        let mut all = self.processors.lock().unwrap_or_else(|e| e.into_inner());
        f(all.entry(processor).or_default());
    }

    /// A step succeeded.
    pub fn succeeded(&self, processor: &'static str, now: Millis) {
        self.with(processor, |h| {
            if h.failures > 0 {
                tracing::info!(processor, failures = h.failures, "processor recovered");
            }
            h.failures = 0;
            h.failing_since = None;
            h.last_success_at = Some(now);
            h.standby = false;
        });
    }

    /// A step did `items` items (counted in [`ProcessorHealth::items`]).
    pub fn did(&self, processor: &'static str, items: usize) {
        self.with(processor, |h| h.items += items as u64);
    }

    /// The processor does not run on this node for now: nothing of it can be failing here.
    pub fn standby(&self, processor: &'static str) {
        self.with(processor, |h| {
            h.failures = 0;
            h.failing_since = None;
            h.standby = true;
        });
    }

    /// A step failed; the processor retries it.
    pub fn failed(&self, processor: &'static str, now: Millis, error: &dyn std::fmt::Display) {
        let error = error.to_string();
        tracing::error!(processor, error = %error, "processor step failed; retrying");
        metrics::counter!("parcours_processor_failures_total", "processor" => processor)
            .increment(1);
        self.with(processor, |h| {
            h.failures = h.failures.saturating_add(1);
            h.failing_since.get_or_insert(now);
            h.last_error = Some(error);
        });
    }

    /// An input was moved aside (`what` says which, without personal data; `code` why).
    pub fn set_aside(&self, processor: &'static str, code: &'static str, what: &str, error: &str) {
        tracing::warn!(
            processor,
            code,
            what,
            error,
            "input set aside; processing goes on"
        );
        metrics::counter!("parcours_inputs_set_aside_total", "processor" => processor, "code" => code)
            .increment(1);
        self.with(processor, |h| h.set_aside += 1);
    }

    pub fn snapshot(&self) -> BTreeMap<&'static str, ProcessorHealth> {
        self.processors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The processors that have failed without a success for at least `grace`.
    pub fn failing(&self, now: Millis, grace: Millis) -> Vec<(&'static str, ProcessorHealth)> {
        self.snapshot()
            .into_iter()
            .filter(|(_, h)| h.failing_since.is_some_and(|since| now - since >= grace))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_is_reported_after_the_grace_and_cleared_by_a_success() {
        let h = Health::default();
        h.failed("unify", 1_000, &"store down");
        h.failed("unify", 2_000, &"store down");
        assert!(h.failing(5_000, 5_000).is_empty());
        let failing = h.failing(6_000, 5_000);
        assert_eq!(failing.len(), 1);
        assert_eq!(failing[0].1.failures, 2);
        assert_eq!(failing[0].1.failing_since, Some(1_000));
        assert_eq!(failing[0].1.last_error.as_deref(), Some("store down"));
        h.succeeded("unify", 7_000);
        assert!(h.failing(100_000, 5_000).is_empty());
        h.set_aside("unify", "unreadable_event", "event 3", "bad");
        assert_eq!(h.snapshot()["unify"].set_aside, 1);
        assert_eq!(h.snapshot()["unify"].last_success_at, Some(7_000));
    }
}
