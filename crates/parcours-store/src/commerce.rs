//! The commerce port: the catalogue, locations, and one stock per (item, location) with its
//! movement ledger and its reservations.
//!
//! This is authoritative state, not a projection of the event log: a replay never touches it.
//! What every adapter guarantees (the conformance suite checks each):
//! - check-and-reserve is one serialised unit per (item, location): the rows of a request are
//!   locked in (SKU, location) order, its demand was summed per key before (see
//!   [`parcours_core::commerce::inventory::demand`]), and either every line is reserved or
//!   none;
//! - `reserved` always equals the sum of live reservations: an expired one stops counting at
//!   its expiry instant, on every read, whether or not anything has swept it yet (writes sweep
//!   the keys they touch in their own transaction);
//! - every change of a quantity is a row of the movement ledger (reason, reference, the
//!   quantity after), written in the transaction of the change.

use std::collections::BTreeMap;

use parcours_core::commerce::catalogue::{Item, Location};
use parcours_core::commerce::inventory::{Adjustment, Key, Quantities, Shortage, StockState};
use parcours_core::time::Millis;
use serde::Serialize;

use crate::Result;

/// One item's stock at one location, as of a read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StockLevel {
    pub sku: String,
    pub location: String,
    #[serde(flatten)]
    pub quantities: Quantities,
    pub updated_at: Millis,
}

/// A row of the movement ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Movement {
    pub id: i64,
    pub sku: String,
    pub location: String,
    pub state: StockState,
    pub delta: i64,
    /// The quantity of `state` after the movement.
    pub after: i64,
    pub reason: String,
    pub reference: Option<String>,
    pub at: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationState {
    Active,
    Released,
    Expired,
    Fulfilled,
}

impl ReservationState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationState::Active => "active",
            ReservationState::Released => "released",
            ReservationState::Expired => "expired",
            ReservationState::Fulfilled => "fulfilled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "active" => ReservationState::Active,
            "released" => ReservationState::Released,
            "expired" => ReservationState::Expired,
            "fulfilled" => ReservationState::Fulfilled,
            _ => return None,
        })
    }
}

/// Units of one (item, location) held for a reference (a cart, an order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reservation {
    pub reference: String,
    pub sku: String,
    pub location: String,
    pub quantity: i64,
    /// As of the read: an active reservation past its expiry reads as expired.
    pub state: ReservationState,
    pub created_at: Millis,
    pub expires_at: Option<Millis>,
    pub settled_at: Option<Millis>,
}

impl Reservation {
    /// The state a row stored as `stored` has at `now`.
    pub fn state_at(
        stored: ReservationState,
        expires_at: Option<Millis>,
        now: Millis,
    ) -> ReservationState {
        match stored {
            ReservationState::Active if expires_at.is_some_and(|e| e <= now) => {
                ReservationState::Expired
            }
            s => s,
        }
    }
}

/// What to reserve: a demand already summed per (SKU, location).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveRequest {
    pub workspace_id: String,
    pub reference: String,
    pub demand: BTreeMap<Key, i64>,
    pub expires_at: Option<Millis>,
    /// Reserve even what is not available (available goes below zero).
    pub backorder: bool,
}

/// What a reservation request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserved {
    /// Every line is held.
    Held(Vec<Reservation>),
    /// The reference holds exactly this demand already (a retried request): nothing changed.
    AlreadyHeld(Vec<Reservation>),
    /// Some lines do not fit: nothing was reserved.
    Short(Vec<Shortage>),
    /// The reference holds a different demand, or was fulfilled: nothing changed.
    ReferenceTaken(Vec<Reservation>),
}

/// What fulfilling a reference came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fulfilled {
    /// The units left the stock: one movement per line.
    Done(Vec<Movement>),
    /// Nothing is held under the reference (never reserved, released, expired or fulfilled
    /// already): nothing changed; the reference's rows are given as they are.
    NotHeld(Vec<Reservation>),
}

pub trait Commerce: Send + Sync {
    /// Creates or replaces an item of the catalogue.
    fn put_item(&self, workspace: &str, item: &Item, now: Millis) -> Result<()>;
    fn item(&self, workspace: &str, sku: &str) -> Result<Option<Item>>;
    /// Items in SKU order after `after`.
    fn items(&self, workspace: &str, after: Option<&str>, limit: usize) -> Result<Vec<Item>>;
    /// Creates or replaces a location.
    fn put_location(&self, workspace: &str, location: &Location, now: Millis) -> Result<()>;
    /// Every location of a workspace, by id.
    fn locations(&self, workspace: &str) -> Result<Vec<Location>>;

    /// Applies stock movements, all or none, each level locked in (SKU, location) order and
    /// each change checked by [`parcours_core::commerce::inventory::apply`] against the
    /// quantities it finds: the first that does not fit refuses the whole request.
    fn move_stock(
        &self,
        workspace: &str,
        adjustments: &[Adjustment],
        now: Millis,
    ) -> Result<std::result::Result<Vec<Movement>, Shortage>>;
    /// The levels of these SKUs at every location that has a record of them, by SKU then
    /// location; `reserved` counts live reservations only.
    fn stock(&self, workspace: &str, skus: &[String], now: Millis) -> Result<Vec<StockLevel>>;
    /// The levels at one location in SKU order after `after`.
    fn stock_at(
        &self,
        workspace: &str,
        location: &str,
        after: Option<&str>,
        limit: usize,
        now: Millis,
    ) -> Result<Vec<StockLevel>>;
    /// An item's movements at a location (or everywhere), newest first, before the id
    /// `before`.
    fn movements(
        &self,
        workspace: &str,
        sku: &str,
        location: Option<&str>,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Movement>>;

    /// Check-and-reserve, all or nothing.
    fn reserve(&self, request: &ReserveRequest, now: Millis) -> Result<Reserved>;
    /// Releases what a reference holds; returns the rows released (none if nothing was held).
    fn release_reservation(
        &self,
        workspace: &str,
        reference: &str,
        now: Millis,
    ) -> Result<Vec<Reservation>>;
    /// Takes what a reference holds out of the stock (the goods left: shipped, collected,
    /// sold): on hand and reserved go down together, with a movement per line.
    fn fulfil_reservation(
        &self,
        workspace: &str,
        reference: &str,
        reason: &str,
        now: Millis,
    ) -> Result<Fulfilled>;
    /// The rows of a reference, by SKU then location, in their state at `now`.
    fn reservations(
        &self,
        workspace: &str,
        reference: &str,
        now: Millis,
    ) -> Result<Vec<Reservation>>;

    /// Creates a stock alert, or reopens it (a customer who asks again is told again).
    fn put_stock_alert(&self, alert: &StockAlert) -> Result<()>;
    /// An item's alerts at every location, by location then subscriber.
    fn stock_alerts(&self, workspace: &str, sku: &str) -> Result<Vec<StockAlert>>;
    /// Open alerts of every workspace whose item is available at their location at `now`, in
    /// the quantity they wait for (expired reservations not counted), oldest first.
    fn due_stock_alerts(&self, now: Millis, limit: usize) -> Result<Vec<StockAlert>>;
    /// Low stock: first re-arms the levels changed at or after `since` that are above their
    /// item's threshold again; then returns the levels changed at or after `since`, at or
    /// below their item's threshold at `now` and not told yet, oldest change first.
    fn watch_low_stock(&self, since: Millis, now: Millis, limit: usize) -> Result<Vec<LowStock>>;
}

/// A customer waiting for an item at a location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StockAlert {
    pub workspace_id: String,
    pub sku: String,
    pub location: String,
    /// Who she is for this alert (`card:…`, `user:…`, `email:…`, `anon:…`).
    pub subscriber: String,
    /// Her identifiers (JSON), for the event that tells her.
    pub customer: String,
    /// `asked`, or `out_of_stock` (her order was refused for lack of it there).
    pub reason: String,
    /// She is told once this many are available there.
    pub quantity: i64,
    pub created_at: Millis,
    pub notified_at: Option<Millis>,
}

/// A level at or below its item's low-stock threshold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LowStock {
    pub workspace_id: String,
    pub sku: String,
    pub location: String,
    pub available: i64,
    pub threshold: i64,
    pub updated_at: Millis,
}

/// An order as stored: its keys beside its JSON document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderRecord {
    pub id: String,
    /// The sales channel it came through (`pos`, `web`, `app`, `call_centre` …).
    pub channel: String,
    pub status: String,
    /// The loyalty member it earned for, if any.
    pub member: Option<String>,
    pub body: String,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// When the order next needs attention by itself (a ready click & collect order's pickup
    /// deadline): [`Orders::due_orders`] finds it from then on. The order is its own durable
    /// timer, set and cleared in the transaction that changes it.
    pub due_at: Option<Millis>,
}

/// One commerce decision and everything it changes, committed together or not at all: the
/// order, its stock movements, its loyalty entries and the events that tell it (appended to
/// the log in the same transaction, so the customer's timeline and the stock never disagree).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommerceWrite {
    pub workspace_id: String,
    /// Created if new; with `expect_body`, updated only from that state. None for a write of
    /// loyalty entries alone (a redemption).
    pub order: Option<OrderRecord>,
    /// `None`: the order must not exist yet (a new sale); `Some(body)`: it must still be
    /// stored exactly as read when the change was decided (two returns taken at once
    /// cannot both apply to the same state).
    pub expect_body: Option<String>,
    /// Units to hold for the order (check-and-reserve, all or nothing).
    pub reserve: Option<ReserveRequest>,
    /// What a reference holds, released or fulfilled.
    pub settle: Option<Settle>,
    /// A new expiry for what a reference holds (a pickup deadline): at that instant the units
    /// are available again, whether or not anything runs then.
    pub hold_until: Option<(String, Millis)>,
    pub movements: Vec<Adjustment>,
    /// Loyalty entries per member, applied with [`parcours_core::commerce::loyalty::Ledger`]
    /// against the member's stored entries.
    pub loyalty: Vec<(String, parcours_core::commerce::loyalty::Entry)>,
    pub events: Option<crate::IngestBatch>,
    /// The offers the order uses (it must have an order): each counted against its limits
    /// under the offer's lock and recorded once per (offer, order).
    pub redemptions: Vec<parcours_core::commerce::offers::Redemption>,
    /// Gives back the offers the order used (a cancelled order's coupon can be used again).
    pub release_redemptions: bool,
    /// Stock alerts told by the write's events: `(sku, location, subscriber)`, each marked
    /// notified if it is still open, else nothing commits ([`Committed::Told`]).
    pub alerts: Vec<(String, String, String)>,
    /// Levels whose fall to their low-stock threshold the write's events tell: each marked
    /// told if it was not, else nothing commits ([`Committed::Told`]).
    pub low_told: Vec<Key>,
    /// For the events' messageId dedup window.
    pub dedup_since: Millis,
}

/// Releases (`fulfil` none) or fulfils (the units leave, with this reason) what a reference
/// holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settle {
    pub reference: String,
    pub fulfil: Option<String>,
}

/// What a commerce write came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Committed {
    Done {
        /// What the write's reservation holds (empty without one).
        reserved: Vec<Reservation>,
        /// Its movements: the fulfilment's, then the write's own.
        movements: Vec<Movement>,
        /// Per loyalty entry: applied, or a duplicate of one stored (nothing changed).
        loyalty: Vec<parcours_core::commerce::loyalty::Outcome>,
    },
    /// The order exists already (`expect_body` none) or changed since it was read: nothing
    /// changed. The order as stored.
    OrderState(OrderRecord),
    /// The reservation or a movement does not fit: nothing changed.
    Short(Vec<Shortage>),
    /// The reservation's reference holds something else: nothing changed.
    ReferenceTaken(Vec<Reservation>),
    /// The reference to settle holds nothing (released, expired, fulfilled): nothing changed.
    NotHeld(Vec<Reservation>),
    /// A loyalty entry does not apply (too few points …): nothing changed.
    Refused(parcours_core::commerce::Refusal),
    /// An offer's limit was reached (by another order since the basket was priced): nothing
    /// changed.
    OfferUsedUp {
        offer: String,
        /// The customer's limit (else the code's).
        per_customer: bool,
    },
    /// A stock alert or a low level was told already (by another node): nothing changed.
    Told,
}

/// How often an offer was used, in all, with a code and by a customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct OfferUses {
    pub total: u64,
    pub code: u64,
    pub customer: u64,
}

/// A stored loyalty entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoyaltyRow {
    pub seq: i64,
    pub member: String,
    pub entry: parcours_core::commerce::loyalty::Entry,
}

/// Advertising spend on one day, channel and campaign (empty: none), in the workspace's
/// currency.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpendRow {
    /// Days since 1970-01-01.
    pub day: i64,
    pub channel: String,
    pub campaign: String,
    pub amount: f64,
}

/// Orders and loyalty: the decisions that change several kinds of commerce state at once;
/// and the advertising spend they are measured against.
pub trait Orders: Send + Sync {
    /// Stores spend rows in one transaction, each replacing the row of its day, channel and
    /// campaign.
    fn put_ad_spend(&self, workspace: &str, rows: &[SpendRow], now: Millis) -> Result<()>;
    /// A workspace's spend from day `from` to day `to` (both included), by day, channel and
    /// campaign.
    fn ad_spend(&self, workspace: &str, from: i64, to: i64) -> Result<Vec<SpendRow>>;
    /// Commits a commerce write set (see [`CommerceWrite`]).
    fn commit_commerce(&self, write: &CommerceWrite, now: Millis) -> Result<Committed>;
    fn order(&self, workspace: &str, id: &str) -> Result<Option<OrderRecord>>;
    /// Orders of every workspace due at or before `now` (`due_at`), earliest first:
    /// `(workspace, order id)`.
    fn due_orders(&self, now: Millis, limit: usize) -> Result<Vec<(String, String)>>;
    /// A member's entries in the order they were written.
    fn loyalty_entries(&self, workspace: &str, member: &str) -> Result<Vec<LoyaltyRow>>;
    /// The workspace's loyalty programme (its JSON document), if one was saved.
    fn loyalty_program(&self, workspace: &str) -> Result<Option<String>>;
    fn put_loyalty_program(&self, workspace: &str, body: &str, now: Millis) -> Result<()>;

    /// Creates or replaces an offer (its JSON document).
    fn put_offer(&self, workspace: &str, id: &str, body: &str, now: Millis) -> Result<()>;
    /// Deletes an offer (its redemptions stay, as history); returns whether it existed.
    fn delete_offer(&self, workspace: &str, id: &str) -> Result<bool>;
    /// Every offer of a workspace (their JSON documents), by id.
    fn offers(&self, workspace: &str) -> Result<Vec<String>>;
    /// How often an offer was used: in all, with `code`, by `customer`.
    fn offer_uses(
        &self,
        workspace: &str,
        offer: &str,
        code: Option<&str>,
        customer: Option<&str>,
    ) -> Result<OfferUses>;
}

/// Whether a redemption would pass one of its offer's limits, given the uses counted (under
/// the offer's lock): the refusal to commit, if so.
pub fn used_up(
    r: &parcours_core::commerce::offers::Redemption,
    uses: &OfferUses,
) -> Option<Committed> {
    if r.code.is_some() && r.limit_per_code.is_some_and(|l| uses.code >= l) {
        return Some(Committed::OfferUsedUp {
            offer: r.offer.clone(),
            per_customer: false,
        });
    }
    if r.customer.is_some() && r.limit_per_customer.is_some_and(|l| uses.customer >= l) {
        return Some(Committed::OfferUsedUp {
            offer: r.offer.clone(),
            per_customer: true,
        });
    }
    None
}
