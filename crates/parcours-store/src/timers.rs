//! The durable timers port: keyed timers with a due time, in one table for the whole product
//! (the audience processor's re-evaluations are timers of kind [`AUDIENCE_TIMERS`]; journeys'
//! waits will be another kind).
//!
//! A timer is set (or moved) and cancelled by its key. A scheduler claims the due timers of
//! one kind and of the buckets its node holds, earliest first, in pages (never all pending
//! timers at once), with a lease and a token; it runs their handler, which must be
//! idempotent, and then fires them with the token. A timer fires once: a second fire with
//! the same token finds nothing, a claim whose lease ran out can be taken over (and the first
//! claimer's fire is then refused), and a timer moved while its handler ran is kept for its
//! new time.

use parcours_core::time::Millis;
use serde::Serialize;

use crate::Result;

/// The kind of the audience processor's re-evaluations (key: the profile id).
pub const AUDIENCE_TIMERS: &str = "audience";

/// A timer to set, or to move when its key exists.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTimer {
    pub workspace_id: String,
    /// Which handler fires it (`journey`, …).
    pub kind: String,
    /// Unique per workspace and kind (a run and its step, …).
    pub key: String,
    /// Which node's scheduler fires it ([`parcours_core::bucket`]).
    pub bucket: u16,
    pub due_at: Millis,
    /// What the handler needs (JSON text, may be empty).
    pub payload: String,
}

/// A stored timer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DurableTimer {
    pub workspace_id: String,
    pub kind: String,
    pub key: String,
    pub bucket: u16,
    pub due_at: Millis,
    pub payload: String,
    /// Set while a scheduler holds it.
    pub lease_until: Option<Millis>,
}

/// What a scheduler asks for when it claims.
#[derive(Debug, Clone, PartialEq)]
pub struct TimerClaim<'a> {
    pub kind: &'a str,
    /// Only timers of these buckets; `None`: every bucket (a node alone).
    pub buckets: Option<&'a [u16]>,
    /// Timers due at or before this instant, not held by another scheduler.
    pub now: Millis,
    pub limit: usize,
    pub lease_until: Millis,
    pub token: &'a str,
}

/// Which timer a fire settles: the claimed timer's identity and the due time it was claimed
/// with (moved since: it is kept).
#[derive(Debug, Clone, PartialEq)]
pub struct TimerFire<'a> {
    pub workspace_id: &'a str,
    pub kind: &'a str,
    pub key: &'a str,
    pub due_at: Millis,
}

/// Durable timers.
pub trait Timers: Send + Sync {
    /// Sets timers in one transaction; a key that exists gets the new due time, bucket and
    /// payload (and is released if it was claimed).
    fn set_timers(&self, timers: &[NewTimer]) -> Result<()>;
    /// Cancels timers by key; returns how many existed.
    fn cancel_timers(&self, workspace: &str, kind: &str, keys: &[String]) -> Result<u64>;
    /// Leases up to `limit` due timers, earliest first.
    fn claim_timers(&self, claim: &TimerClaim) -> Result<Vec<DurableTimer>>;
    /// Removes fired timers still held by `token` with the due time they were claimed with;
    /// returns how many it removed (the others were moved, cancelled or taken over).
    fn fire_timers(&self, token: &str, fired: &[TimerFire]) -> Result<u64>;
    /// Gives claimed timers back unfired (their handler failed): claimable again at once.
    /// Only timers still held by `token` with the due time they were claimed with; returns
    /// how many.
    fn release_timers(&self, token: &str, timers: &[TimerFire]) -> Result<u64>;
    fn timer(&self, workspace: &str, kind: &str, key: &str) -> Result<Option<DurableTimer>>;
    /// Pending timers of a kind.
    fn timer_count(&self, kind: &str) -> Result<u64>;
    /// The earliest due time of a kind's timers in these buckets (a scheduler sleeps until
    /// then).
    fn next_due(&self, kind: &str, buckets: Option<&[u16]>) -> Result<Option<Millis>>;
}
