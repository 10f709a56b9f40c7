//! The one place that reads the system's clocks (wall and monotonic) and sleeps on them.
//! Everything else is given a [`Clock`] (this one in production, a manual one in tests) and
//! asks it; clippy refuses `SystemTime::now`, `Instant::now` and `Utc::now` anywhere else
//! (`clippy.toml`).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use parcours_core::time::{Clock, Millis};

/// The system's clocks.
pub struct SystemClock;

/// The start of the monotonic readings (the first one).
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    #[allow(clippy::disallowed_methods)] // the one reader of the system's monotonic clock
    *ORIGIN.get_or_init(Instant::now)
}

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one reader of the system's clock
    fn now(&self) -> Millis {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as Millis)
            .unwrap_or_default()
    }

    #[allow(clippy::disallowed_methods)] // the one reader of the system's monotonic clock
    fn monotonic(&self) -> Duration {
        Instant::now().saturating_duration_since(origin())
    }

    fn sleep_until(&self, until: Millis, at_most: Duration) {
        let left = until.saturating_sub(self.now());
        if left > 0 {
            std::thread::sleep(Duration::from_millis(left as u64).min(at_most));
        }
    }
}

/// A point on the system's monotonic time, for commands, benchmarks and tests that measure
/// real time (what `std::time::Instant` is, read through [`SystemClock`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Moment(Duration);

impl Moment {
    pub fn now() -> Self {
        Moment(SystemClock.monotonic())
    }

    /// How long since this moment.
    pub fn elapsed(&self) -> Duration {
        Moment::now().saturating_duration_since(*self)
    }

    /// How long from `earlier` to this moment (zero if it is later).
    pub fn saturating_duration_since(&self, earlier: Moment) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

impl std::ops::Add<Duration> for Moment {
    type Output = Moment;

    fn add(self, d: Duration) -> Moment {
        Moment(self.0 + d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_time_moves_forward_and_sleeps_end_by_their_deadline() {
        let clock = SystemClock;
        let before = clock.monotonic();
        let until = clock.now() + 30;
        clock.sleep_until(until, Duration::from_secs(5));
        assert!(clock.now() >= until);
        assert!(clock.monotonic() >= before + Duration::from_millis(25));
        // Capped by `at_most`.
        let started = clock.monotonic();
        clock.sleep_until(clock.now() + 60_000, Duration::from_millis(20));
        let slept = clock.monotonic() - started;
        assert!(
            slept >= Duration::from_millis(20) && slept < Duration::from_secs(5),
            "{slept:?}"
        );
    }
}
