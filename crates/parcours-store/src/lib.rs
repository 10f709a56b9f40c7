//! Storage ports of Parcours and the conformance suite every adapter runs.
//!
//! The ports are synchronous: adapters run them on their own threads, never on the async
//! executor. Every adapter (SQLite today, PostgreSQL next) instantiates
//! [`conformance_suite!`] and must pass exactly the same tests.

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
#[cfg(feature = "suite")]
pub mod suite;
pub mod tallies;
mod timers;

pub use audiences::*;
pub use cluster::*;
pub use commerce::*;
pub use event_log::*;
pub use journeys::*;
pub use messages::*;
pub use outbox::*;
pub use privacy::*;
pub use projections::*;
pub use quarantine::*;
pub use registry::*;
pub use tallies::Tally;
pub use timers::*;

pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("storage error: {0}")]
    Backend(String),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    /// The backend refused the data itself (a value out of its range, a key too long to
    /// index): retrying the same write fails the same way.
    #[error("the store refused the data: {0}")]
    Rejected(String),
}

/// Everything a node needs from storage.
pub trait Store:
    Registry
    + EventLog
    + Quarantine
    + Projections
    + Cluster
    + Audiences
    + Outbox
    + Timers
    + Journeys
    + Messages
    + Commerce
    + Orders
    + Privacy
{
}
impl<
        T: Registry
            + EventLog
            + Quarantine
            + Projections
            + Cluster
            + Audiences
            + Outbox
            + Timers
            + Journeys
            + Messages
            + Commerce
            + Orders
            + Privacy,
    > Store for T
{
}
