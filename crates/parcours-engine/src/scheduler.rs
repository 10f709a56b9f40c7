//! The timer scheduler: fires the durable timers of one kind into their handler.
//!
//! It never holds more than a page of timers: it claims the earliest due ones of the buckets
//! it serves ([`parcours_store::Timers::claim_timers`], with a lease and a token of its own),
//! hands them to the handler, which must be idempotent (a scheduler that dies after the
//! handler and before the fire runs it again for the same timers once their lease ends), and
//! fires them with its token. When nothing is due it sleeps until the next due time, or at
//! most `idle`, so that a timer set meanwhile on another node is seen.

use std::time::Duration;

use parcours_core::time::{Clock, Millis};
use parcours_store::{DurableTimer, Store, StoreError, TimerClaim, TimerFire};

use crate::telemetry::{InternalEvent, TimersFired};

/// What runs a kind's due timers.
pub trait TimerHandler {
    /// Runs the timers (due at or before `now`); an error leaves them to run again once
    /// their lease ends.
    fn handle(&mut self, timers: &[DurableTimer], now: Millis) -> Result<(), StoreError>;
}

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Timers claimed at once.
    pub page: usize,
    /// How long a claim holds its timers (the handler must finish within it).
    pub lease: Duration,
    /// The longest sleep when nothing is due.
    pub idle: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            page: 1_000,
            lease: Duration::from_secs(30),
            idle: Duration::from_millis(250),
        }
    }
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Fired this many timers (fewer than claimed when some were moved meanwhile).
    Fired(u64),
    /// Nothing due: wait this long.
    Idle(Duration),
}

/// Fires one kind's timers for the buckets it serves.
pub struct TimerScheduler<'a> {
    pub store: &'a dyn Store,
    pub clock: &'a dyn Clock,
    pub kind: &'a str,
    /// `None`: every bucket (a node alone).
    pub buckets: Option<&'a [u16]>,
    pub token: &'a str,
    pub config: SchedulerConfig,
}

impl TimerScheduler<'_> {
    /// Claims a page of due timers, runs them and fires them.
    pub fn step(&self, handler: &mut dyn TimerHandler) -> Result<Step, StoreError> {
        let now = self.clock.now();
        let claimed = self.store.claim_timers(&TimerClaim {
            kind: self.kind,
            buckets: self.buckets,
            now,
            limit: self.config.page.max(1),
            lease_until: now + self.config.lease.as_millis() as Millis,
            token: self.token,
        })?;
        if claimed.is_empty() {
            let wait = match self.store.next_due(self.kind, self.buckets)? {
                Some(due) if due > now => Duration::from_millis((due - now) as u64),
                // Due but held by another scheduler: look again after a while.
                Some(_) | None => self.config.idle,
            };
            return Ok(Step::Idle(wait.min(self.config.idle)));
        }
        handler.handle(&claimed, now)?;
        let fired: Vec<TimerFire> = claimed
            .iter()
            .map(|t| TimerFire {
                workspace_id: &t.workspace_id,
                kind: &t.kind,
                key: &t.key,
                due_at: t.due_at,
            })
            .collect();
        let n = self.store.fire_timers(self.token, &fired)?;
        TimersFired {
            kind: self.kind,
            fired: n,
        }
        .emit();
        Ok(Step::Fired(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parcours_store::{NewTimer, Timers};
    use parcours_store_sqlite::SqliteStore;
    use parcours_testkit::clock::ManualClock;

    struct Collect(Vec<String>);

    impl TimerHandler for Collect {
        fn handle(&mut self, timers: &[DurableTimer], _now: Millis) -> Result<(), StoreError> {
            self.0.extend(timers.iter().map(|t| t.key.clone()));
            Ok(())
        }
    }

    #[test]
    fn fires_due_timers_in_pages_and_sleeps_until_the_next() {
        let dir = std::env::temp_dir().join(format!("parcours-scheduler-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = SqliteStore::open_temp(&dir).unwrap();
        let timer = |key: &str, due_at| NewTimer {
            workspace_id: "ws".into(),
            kind: "journey".into(),
            key: key.into(),
            bucket: 0,
            due_at,
            payload: String::new(),
        };
        store
            .set_timers(&[timer("b", 200), timer("a", 100), timer("c", 10_000)])
            .unwrap();
        let clock = ManualClock::at(250);
        let scheduler = TimerScheduler {
            store: &store,
            clock: &clock,
            kind: "journey",
            buckets: None,
            token: "s1",
            config: SchedulerConfig {
                page: 1,
                ..SchedulerConfig::default()
            },
        };
        let mut seen = Collect(Vec::new());
        assert_eq!(scheduler.step(&mut seen).unwrap(), Step::Fired(1));
        assert_eq!(scheduler.step(&mut seen).unwrap(), Step::Fired(1));
        assert_eq!(seen.0, vec!["a", "b"], "in due order, a page at a time");
        // The next is due in 9.75 s: it sleeps at most `idle`, so a timer set meanwhile is seen.
        assert_eq!(
            scheduler.step(&mut seen).unwrap(),
            Step::Idle(Duration::from_millis(250))
        );
        assert_eq!(store.timer_count("journey").unwrap(), 1);
        clock.advance(10_000);
        assert_eq!(scheduler.step(&mut seen).unwrap(), Step::Fired(1));
        assert_eq!(store.timer_count("journey").unwrap(), 0);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
