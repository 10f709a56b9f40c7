//! The outbox port: one row per effect that leaves Parcours (a webhook call today; an email,
//! an SMS, a sync tomorrow), written in the same transaction as the decision that caused it,
//! then claimed, sent and settled by senders.
//!
//! A row belongs to a lane (a workspace and a destination). Senders claim a lane's rows in id
//! order with a lease and a fencing token: a row whose lease ran out can be claimed again,
//! and the sender that lost it can no longer settle it ([`StoreError::Conflict`]). A failed
//! row waits for its retry time and holds back the rows behind it (order is kept per lane),
//! until it is delivered or ends in the dead-letter state with its reason.

use parcours_core::time::Millis;
use serde::Serialize;

use crate::{Result, StoreError};

/// Where a row is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxState {
    /// Waiting to be sent (again, after `not_before`).
    Pending,
    /// A sender holds it until its lease ends.
    Leased,
    /// The receiver acknowledged it.
    Done,
    /// It failed too often, or could not be sent at all: the reason is in `last_error`.
    Dead,
}

impl OutboxState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Leased => "leased",
            Self::Done => "done",
            Self::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "pending" => Self::Pending,
            "leased" => Self::Leased,
            "done" => Self::Done,
            "dead" => Self::Dead,
            other => return Err(StoreError::Corrupt(format!("outbox state `{other}`"))),
        })
    }
}

/// An effect to send, as the decision that causes it writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOutboxRow {
    pub workspace_id: String,
    /// Who sends it: the lane, with the workspace (`webhook:crm`).
    pub destination: String,
    /// Unique across the store: a second row with the same key is refused
    /// ([`StoreError::Conflict`]) and the transaction writing it rolls back, so a decision
    /// taken twice causes its effect once.
    pub key: String,
    /// What is sent, as it is sent (JSON text): built once, never rebuilt for a retry.
    pub payload: String,
    /// How many items (changes, messages) the payload carries.
    pub items: u32,
    /// Not sent before this instant.
    pub not_before: Millis,
    /// When the decision was taken.
    pub created_at: Millis,
}

/// A stored row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboxRow {
    /// Assigned by the store, increasing, never reused.
    pub id: i64,
    pub workspace_id: String,
    pub destination: String,
    pub key: String,
    pub payload: String,
    pub items: u32,
    pub state: OutboxState,
    /// Claims so far (a claim whose sender died counts).
    pub attempts: u32,
    pub not_before: Millis,
    pub lease_until: Option<Millis>,
    pub last_error: Option<String>,
    pub created_at: Millis,
    /// When it became done or dead.
    pub settled_at: Option<Millis>,
}

/// What a sender asks for when it claims.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxClaim<'a> {
    pub workspace_id: &'a str,
    pub destination: &'a str,
    /// Rows of the lane that may be leased at once (this claim's and others'); 1 keeps
    /// the lane strictly in order.
    pub max_in_flight: usize,
    pub now: Millis,
    pub lease_until: Millis,
    /// The fencing token: only its holder can extend or settle the rows it claims.
    pub token: &'a str,
}

/// One try at sending a row, as the delivery log shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryAttempt {
    pub outbox_id: i64,
    /// The row's `attempts` when it was tried (1 for the first).
    pub attempt: u32,
    pub at: Millis,
    pub latency_ms: u64,
    /// The receiver's HTTP status, if it answered.
    pub status: Option<u16>,
    pub ok: bool,
    /// The error, or the start of the receiver's answer (at most [`ATTEMPT_DETAIL`] bytes).
    pub detail: String,
}

/// The most of a receiver's answer kept per attempt.
pub const ATTEMPT_DETAIL: usize = 512;

/// How a lane is doing.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OutboxSummary {
    pub pending: u64,
    pub leased: u64,
    pub done: u64,
    pub dead: u64,
    /// Items of the rows done.
    pub delivered_items: u64,
    pub last_success_at: Option<Millis>,
    /// The oldest row not yet settled: the one holding the lane back when it fails.
    pub head: Option<OutboxRow>,
}

/// Which rows a delivery log page shows, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxPage<'a> {
    pub workspace_id: &'a str,
    pub destination: &'a str,
    pub state: Option<OutboxState>,
    /// Only rows with a smaller id.
    pub before_id: Option<i64>,
    pub limit: usize,
}

/// How an attempt leaves its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Delivered: the row is done.
    Done,
    /// Failed: pending again from this moment.
    RetryAt(Millis),
    /// Failed for good: the row is dead.
    Dead,
}

/// One claimed row settled by [`Outbox::settle_all`].
#[derive(Debug, Clone, PartialEq)]
pub struct Settlement {
    pub id: i64,
    pub attempt: DeliveryAttempt,
    pub settled: Settled,
}

fn settle_one<S: Outbox + ?Sized>(
    store: &S,
    token: &str,
    id: i64,
    attempt: &DeliveryAttempt,
    settled: Settled,
) -> Result<()> {
    let held = store.settle_all(
        token,
        &[Settlement {
            id,
            attempt: attempt.clone(),
            settled,
        }],
    )?;
    if held.first() == Some(&true) {
        Ok(())
    } else {
        Err(crate::StoreError::Conflict(format!(
            "outbox row {id} is no longer held by this sender"
        )))
    }
}

/// The outbox and its delivery log.
pub trait Outbox: Send + Sync {
    /// Adds rows in one transaction ([`NewOutboxRow::key`] must be new).
    fn enqueue(&self, rows: &[NewOutboxRow]) -> Result<()>;
    /// Leases the lane's next rows, in id order: the rows not settled, from the oldest,
    /// while they are due (a row waiting for its retry stops the claim), up to
    /// `max_in_flight` leased at once. A row whose lease ended is claimed again. Every
    /// claimed row's `attempts` grows by one.
    fn claim(&self, claim: &OutboxClaim) -> Result<Vec<OutboxRow>>;
    /// Extends a lease; [`StoreError::Conflict`] when `token` no longer holds the row.
    fn extend_lease(&self, id: i64, token: &str, lease_until: Millis) -> Result<()>;
    /// Settles claimed rows in one transaction, each as [`Outbox::complete`] or
    /// [`Outbox::fail`] would: its attempt logged and its state set. Returns, for each, whether
    /// `token` still held it; a row it no longer holds is left as it is (its attempt is not
    /// logged), and the others are settled all the same.
    fn settle_all(&self, token: &str, rows: &[Settlement]) -> Result<Vec<bool>>;
    /// Marks a row done and logs the attempt; [`StoreError::Conflict`] when `token` no
    /// longer holds the row (nothing is written then).
    fn complete(&self, id: i64, token: &str, attempt: &DeliveryAttempt) -> Result<()> {
        settle_one(self, token, id, attempt, Settled::Done)
    }
    /// Logs a failed attempt: the row waits until `retry_at`, or with `None` is dead.
    /// [`StoreError::Conflict`] when `token` no longer holds the row.
    fn fail(
        &self,
        id: i64,
        token: &str,
        attempt: &DeliveryAttempt,
        retry_at: Option<Millis>,
    ) -> Result<()> {
        let settled = match retry_at {
            Some(at) => Settled::RetryAt(at),
            None => Settled::Dead,
        };
        settle_one(self, token, id, attempt, settled)
    }
    /// Gives back a claimed row that was not sent: pending again at once, its claim not
    /// counted as an attempt. [`StoreError::Conflict`] when `token` no longer holds it.
    fn release(&self, id: i64, token: &str) -> Result<()>;
    /// The janitor: returns every row whose lease ended at or before `now` to pending.
    fn reclaim_expired(&self, now: Millis) -> Result<u64>;
    /// Sends done or dead rows of a lane from `from_id` on again (same key, same payload);
    /// returns how many.
    fn requeue(&self, workspace: &str, destination: &str, from_id: i64, now: Millis)
        -> Result<u64>;
    fn outbox_rows(&self, page: &OutboxPage) -> Result<Vec<OutboxRow>>;
    /// How many rows of a lane are not settled (pending or leased).
    fn open_rows(&self, workspace: &str, destination: &str) -> Result<u64>;
    fn outbox_row(&self, workspace: &str, id: i64) -> Result<Option<OutboxRow>>;
    /// A row by its key.
    fn outbox_row_by_key(&self, workspace: &str, key: &str) -> Result<Option<OutboxRow>>;
    /// A row's attempts, oldest first.
    fn delivery_attempts(&self, workspace: &str, id: i64) -> Result<Vec<DeliveryAttempt>>;
    fn outbox_summary(&self, workspace: &str, destination: &str) -> Result<OutboxSummary>;
}

/// A lane's unsettled rows as a claim reads them (the oldest first).
#[derive(Debug, Clone, PartialEq)]
pub struct OpenRow {
    pub id: i64,
    pub state: OutboxState,
    pub not_before: Millis,
    pub lease_until: Option<Millis>,
}

/// The rows a claim takes from the lane's oldest unsettled rows (read in id order, at most
/// `max_in_flight` of them): both adapters decide with this, then lease each row only if it
/// is still as read (so two claimers never lease one row).
pub fn claimable(open: &[OpenRow], max_in_flight: usize, now: Millis) -> Vec<i64> {
    let held =
        |r: &OpenRow| r.state == OutboxState::Leased && r.lease_until.is_some_and(|u| u > now);
    let in_flight = open.iter().filter(|r| held(r)).count();
    let mut budget = max_in_flight.saturating_sub(in_flight);
    let mut out = Vec::new();
    for r in open {
        if budget == 0 {
            break;
        }
        if held(r) {
            continue;
        }
        if r.not_before > now {
            break;
        }
        out.push(r.id);
        budget -= 1;
    }
    out
}

/// Cuts a receiver's answer or an error to what an attempt keeps.
pub fn attempt_detail(text: &str) -> String {
    let mut end = text.len().min(ATTEMPT_DETAIL);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, state: OutboxState, not_before: Millis, lease: Option<Millis>) -> OpenRow {
        OpenRow {
            id,
            state,
            not_before,
            lease_until: lease,
        }
    }

    #[test]
    fn a_lane_is_claimed_in_order_and_a_waiting_retry_holds_it_back() {
        use OutboxState::*;
        let open = [row(1, Pending, 0, None), row(2, Pending, 0, None)];
        assert_eq!(claimable(&open, 1, 10), vec![1]);
        assert_eq!(claimable(&open, 5, 10), vec![1, 2]);
        // The head waits for its retry: nothing behind it goes first.
        let open = [row(1, Pending, 50, None), row(2, Pending, 0, None)];
        assert_eq!(claimable(&open, 5, 10), Vec::<i64>::new());
        // The head is leased: with one in flight, nothing more.
        let open = [row(1, Leased, 0, Some(100)), row(2, Pending, 0, None)];
        assert_eq!(claimable(&open, 1, 10), Vec::<i64>::new());
        assert_eq!(claimable(&open, 2, 10), vec![2]);
        // Its lease ended: it is claimed again first.
        assert_eq!(claimable(&open, 1, 100), vec![1]);
    }

    #[test]
    fn details_are_cut_on_a_character_boundary() {
        let long = "é".repeat(ATTEMPT_DETAIL);
        let cut = attempt_detail(&long);
        assert!(cut.len() <= ATTEMPT_DETAIL && cut.chars().all(|c| c == 'é'));
        assert_eq!(attempt_detail("ok"), "ok");
    }
}
