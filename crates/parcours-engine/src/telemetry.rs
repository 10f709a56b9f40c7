//! Internal events: what the engine tells operators, each a typed value that writes its log
//! line (when it has one) and its labelled metrics together, so the two never drift apart.
//! Metric names and labels are listed in `docs/operations.md`.

use std::time::Duration;

/// Something the engine reports.
pub trait InternalEvent {
    fn emit(self);
}

/// The ingest writer committed a group of batches.
pub struct GroupCommitted {
    pub batches: usize,
    pub stored: usize,
    pub duplicates: usize,
    pub quarantined: usize,
    pub latency: Duration,
}

impl InternalEvent for GroupCommitted {
    fn emit(self) {
        metrics::counter!("parcours_events_stored_total").increment(self.stored as u64);
        metrics::counter!("parcours_events_duplicate_total").increment(self.duplicates as u64);
        metrics::counter!("parcours_events_quarantined_total").increment(self.quarantined as u64);
        metrics::counter!("parcours_ingest_commits_total").increment(1);
        metrics::histogram!("parcours_group_commit_seconds").record(self.latency.as_secs_f64());
        tracing::trace!(
            batches = self.batches,
            stored = self.stored,
            latency_ms = self.latency.as_millis() as u64,
            "group committed"
        );
    }
}

/// The ingest writer could not commit a group; every batch in it is refused.
pub struct GroupCommitFailed<'a> {
    pub batches: usize,
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for GroupCommitFailed<'_> {
    fn emit(self) {
        metrics::counter!("parcours_ingest_commit_failures_total").increment(1);
        tracing::error!(error = %self.error, batches = self.batches, "ingest commit failed");
    }
}

/// A processor took a step.
pub struct ProcessorStepped {
    pub processor: &'static str,
    pub items: usize,
    pub latency: Duration,
}

impl InternalEvent for ProcessorStepped {
    fn emit(self) {
        metrics::histogram!("parcours_processor_step_seconds", "processor" => self.processor)
            .record(self.latency.as_secs_f64());
        if self.items > 0 {
            metrics::counter!("parcours_processor_items_total", "processor" => self.processor)
                .increment(self.items as u64);
        }
    }
}

/// A receiver acknowledged a request.
pub struct Delivered<'a> {
    pub destination: &'a str,
    pub changes: u32,
    pub latency: Duration,
}

impl InternalEvent for Delivered<'_> {
    fn emit(self) {
        let destination = self.destination.to_string();
        metrics::counter!("parcours_destination_changes_delivered_total", "destination" => destination.clone())
            .increment(u64::from(self.changes));
        metrics::histogram!("parcours_delivery_latency_seconds", "destination" => destination)
            .record(self.latency.as_secs_f64());
    }
}

/// A request failed; it is tried again later, or (`retry_in: None`) given up.
pub struct DeliveryFailed<'a> {
    pub destination: &'a str,
    pub webhook_id: &'a str,
    pub attempts: u32,
    pub error: &'a str,
    pub retry_in: Option<Duration>,
}

impl InternalEvent for DeliveryFailed<'_> {
    fn emit(self) {
        let destination = self.destination.to_string();
        metrics::counter!("parcours_destination_failures_total", "destination" => destination.clone())
            .increment(1);
        match self.retry_in {
            Some(wait) => tracing::warn!(
                destination = %destination,
                webhook_id = %self.webhook_id,
                error = %self.error,
                retry_in = ?wait,
                "webhook delivery failed; will retry"
            ),
            None => {
                metrics::counter!("parcours_destination_dead_total", "destination" => destination.clone())
                    .increment(1);
                tracing::warn!(
                    destination = %destination,
                    webhook_id = %self.webhook_id,
                    attempts = self.attempts,
                    error = %self.error,
                    "webhook delivery given up"
                );
            }
        }
    }
}

/// The timer scheduler fired timers of a kind.
pub struct TimersFired<'a> {
    pub kind: &'a str,
    pub fired: u64,
}

impl InternalEvent for TimersFired<'_> {
    fn emit(self) {
        metrics::counter!("parcours_timers_fired_total", "kind" => self.kind.to_string())
            .increment(self.fired);
    }
}
