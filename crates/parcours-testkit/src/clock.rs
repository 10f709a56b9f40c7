//! A clock that tests move by hand.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use parcours_core::time::{Clock, Millis};

/// Tells the time it was set to; [`ManualClock::advance`] moves it, and wakes whatever
/// sleeps on it. Its monotonic time is how far it was moved since it was made.
#[derive(Debug, Default)]
pub struct ManualClock {
    state: Mutex<(Millis, Millis)>,
    moved: Condvar,
}

impl ManualClock {
    pub fn at(now: Millis) -> Self {
        Self {
            state: Mutex::new((now, now)),
            moved: Condvar::new(),
        }
    }

    pub fn advance(&self, ms: Millis) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.0 += ms;
        self.moved.notify_all();
    }

    pub fn set(&self, now: Millis) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.0 = now;
        self.moved.notify_all();
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Millis {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).0
    }

    fn monotonic(&self) -> Duration {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        Duration::from_millis(s.0.saturating_sub(s.1).max(0) as u64)
    }

    /// Returns once the clock is moved to `until` or beyond, or after `at_most` of real
    /// waiting.
    fn sleep_until(&self, until: Millis, at_most: Duration) {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self
            .moved
            .wait_timeout_while(s, at_most, |s| s.0 < until)
            .unwrap_or_else(|e| e.into_inner());
    }
}
