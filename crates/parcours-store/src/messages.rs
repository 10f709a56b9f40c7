//! The messages port: what became of the messages journeys sent (delivered, opened, clicked,
//! bounced, marked as spam), and the addresses no message may go to any more.
//!
//! A receipt is kept once per message and kind: an email opened ten times counts as opened
//! once. A suppression is kept per workspace, channel and address: the first reason stays
//! until someone lifts it.

use parcours_core::time::Millis;
use serde::Serialize;

use crate::Result;

/// Something that happened to a message after it left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Receipt {
    pub workspace_id: String,
    /// The message's key (its outbox key).
    pub key: String,
    /// `delivered`, `opened`, `clicked`, `bounced`, `complained`, `failed`.
    pub kind: String,
    pub at: Millis,
    pub journey_id: String,
    pub step_id: String,
    pub channel: String,
    /// What the provider said (a bounce's diagnostic), or the link clicked.
    pub detail: String,
}

/// An address no message may go to, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Suppression {
    pub workspace_id: String,
    pub channel: String,
    /// Normalised: an email address trimmed and in lower case.
    pub address: String,
    /// `hard_bounce`, `complaint` or `manual`.
    pub reason: String,
    /// The message that caused it (empty when added by hand).
    pub key: String,
    pub detail: String,
    pub at: Millis,
}

pub trait Messages: Send + Sync {
    /// Keeps a receipt: `false` (and nothing written) when this message already has one of
    /// this kind.
    fn record_receipt(&self, receipt: &Receipt) -> Result<bool>;
    /// A message's receipts, oldest first.
    fn receipts(&self, workspace: &str, key: &str) -> Result<Vec<Receipt>>;
    /// How many messages of a journey had each kind of receipt, per step:
    /// `(step, kind, messages)`, by step then kind.
    fn receipt_counts(&self, workspace: &str, journey: &str) -> Result<Vec<(String, String, u64)>>;
    /// Suppresses an address: `false` (and the first suppression kept as it was) when it is
    /// suppressed already.
    fn suppress(&self, suppression: &Suppression) -> Result<bool>;
    fn suppression(
        &self,
        workspace: &str,
        channel: &str,
        address: &str,
    ) -> Result<Option<Suppression>>;
    /// A workspace's suppressions, newest first, from the one after `after` (`(at, channel,
    /// address)` of the last one of the previous page).
    fn suppressions(
        &self,
        workspace: &str,
        after: Option<(Millis, &str, &str)>,
        limit: usize,
    ) -> Result<Vec<Suppression>>;
    /// Lifts a suppression: `false` when there was none.
    fn unsuppress(&self, workspace: &str, channel: &str, address: &str) -> Result<bool>;
}
