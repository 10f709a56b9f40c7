//! The one place that reads the system's wall clock. Everything else is given a
//! [`Clock`] (this one in production, a manual one in tests) and asks it; clippy refuses
//! `SystemTime::now` and `Utc::now` anywhere else (`clippy.toml`).

use parcours_core::time::{Clock, Millis};

/// The wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one reader of the system's clock
    fn now(&self) -> Millis {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as Millis)
            .unwrap_or_default()
    }
}
