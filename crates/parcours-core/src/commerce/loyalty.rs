//! The loyalty ledger: one member across every channel, an append-only list of entries, and
//! the balances and tier they add up to at any instant.
//!
//! - An earn makes a lot of points with its own expiry; during the return window the lot is
//!   pending (it counts for nothing yet). Earning is keyed by the order id, so a sale replayed
//!   from another channel never earns twice.
//! - A burn takes active points from the soonest-expiring lots first; refunding the burn
//!   gives exactly those points back to exactly those lots.
//! - A return takes back what is left of its order's lot (pending or active).
//! - Expiry is read, not written: a lot past its date counts as expired from that instant.
//!
//! Invariant at every instant: earned = active + pending + used + expired (earned net of
//! what returns took back, which is reported as `cancelled`).

use std::collections::BTreeMap;

use chrono::{Datelike, Days, Months, NaiveDate, TimeZone};
use serde::{Deserialize, Serialize};

use super::{check_id, Refusal};
use crate::time::Millis;

/// The most points one entry may move.
pub const MAX_POINTS: i64 = 1_000_000_000;

/// One entry of a member's ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    /// Points for an order (once per order id).
    Earn {
        order: String,
        points: i64,
        /// What the order cost, in minor units (spend-based tiers count it).
        spend_minor: i64,
        at: Millis,
        /// Until then the points are pending (the return window).
        pending_until: Option<Millis>,
        expires_at: Option<Millis>,
        channel: String,
    },
    /// Points spent (once per redemption id).
    Burn {
        redemption: String,
        points: i64,
        at: Millis,
        channel: String,
    },
    /// A burn undone: its points go back to the lots they came from.
    Refund { redemption: String, at: Millis },
    /// Goods of an order brought back: up to `points` of its lot are taken back (once per
    /// return id).
    Return {
        order: String,
        return_id: String,
        points: i64,
        at: Millis,
    },
}

impl Entry {
    pub fn at(&self) -> Millis {
        match self {
            Entry::Earn { at, .. }
            | Entry::Burn { at, .. }
            | Entry::Refund { at, .. }
            | Entry::Return { at, .. } => *at,
        }
    }

    /// The key that makes the entry happen once.
    pub fn key(&self) -> String {
        match self {
            Entry::Earn { order, .. } => format!("earn:{order}"),
            Entry::Burn { redemption, .. } => format!("burn:{redemption}"),
            Entry::Refund { redemption, .. } => format!("refund:{redemption}"),
            Entry::Return { return_id, .. } => format!("return:{return_id}"),
        }
    }

    pub fn check(&self) -> Result<(), Refusal> {
        let points = |p: i64| {
            if (1..=MAX_POINTS).contains(&p) {
                Ok(())
            } else {
                Err(Refusal::new(
                    "invalid_points",
                    format!("points are a whole number from 1 to {MAX_POINTS}; got {p}"),
                ))
            }
        };
        match self {
            Entry::Earn {
                order,
                points: p,
                spend_minor,
                channel,
                ..
            } => {
                check_id("order id", "invalid_order", order)?;
                check_id("sales channel", "invalid_channel", channel)?;
                if *spend_minor < 0 {
                    return Err(Refusal::new("invalid_points", "a spend is 0 or more"));
                }
                points(*p)
            }
            Entry::Burn {
                redemption,
                points: p,
                channel,
                ..
            } => {
                check_id("redemption id", "invalid_redemption", redemption)?;
                check_id("sales channel", "invalid_channel", channel)?;
                points(*p)
            }
            Entry::Refund { redemption, .. } => {
                check_id("redemption id", "invalid_redemption", redemption)
            }
            Entry::Return {
                order,
                return_id,
                points: p,
                ..
            } => {
                check_id("order id", "invalid_order", order)?;
                check_id("return id", "invalid_return", return_id)?;
                points(*p)
            }
        }
    }
}

/// A lot: the points of one earn and what became of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lot {
    pub order: String,
    pub points: i64,
    pub spend_minor: i64,
    pub earned_at: Millis,
    pub pending_until: Option<Millis>,
    pub expires_at: Option<Millis>,
    /// Spent by burns not refunded.
    pub used: i64,
    /// Taken back by returns.
    pub cancelled: i64,
}

impl Lot {
    pub fn remaining(&self) -> i64 {
        self.points - self.used - self.cancelled
    }

    fn pending_at(&self, now: Millis) -> bool {
        self.pending_until.is_some_and(|p| now < p)
    }

    fn expired_at(&self, now: Millis) -> bool {
        self.expires_at.is_some_and(|e| e <= now)
    }

    fn active_at(&self, now: Millis) -> bool {
        !self.pending_at(now) && !self.expired_at(now)
    }
}

/// What a member's points add up to at an instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Balance {
    /// Earned, net of what returns took back.
    pub earned: i64,
    pub active: i64,
    pub pending: i64,
    pub used: i64,
    pub expired: i64,
    pub cancelled: i64,
}

/// What an applied entry did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Applied; for a burn or its refund, the points per lot (index into the lots).
    Applied { lots: Vec<(usize, i64)> },
    /// An entry with the same key is already in the ledger: nothing changed.
    Duplicate,
}

/// A member's ledger folded from its entries, in order.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    lots: Vec<Lot>,
    lot_of_order: BTreeMap<String, usize>,
    burns: BTreeMap<String, (Vec<(usize, i64)>, bool)>,
    keys: std::collections::BTreeSet<String>,
    entries: usize,
}

impl Ledger {
    /// The ledger of stored entries (each was accepted when it was written).
    pub fn from_entries<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Self {
        let mut l = Ledger::default();
        for e in entries {
            // A stored entry that no longer applies (it cannot happen through `apply`) is
            // skipped rather than making the whole ledger unreadable.
            let _ = l.apply(e);
        }
        l
    }

    pub fn lots(&self) -> &[Lot] {
        &self.lots
    }

    pub fn entries(&self) -> usize {
        self.entries
    }

    /// Applies one entry at its own instant: a duplicate key changes nothing; an entry that
    /// cannot apply (too few active points, an unknown order) is refused and changes nothing.
    pub fn apply(&mut self, entry: &Entry) -> Result<Outcome, Refusal> {
        entry.check()?;
        let key = entry.key();
        if self.keys.contains(&key) {
            return Ok(Outcome::Duplicate);
        }
        let lots = match entry {
            Entry::Earn {
                order,
                points,
                spend_minor,
                at,
                pending_until,
                expires_at,
                ..
            } => {
                self.lot_of_order.insert(order.clone(), self.lots.len());
                self.lots.push(Lot {
                    order: order.clone(),
                    points: *points,
                    spend_minor: *spend_minor,
                    earned_at: *at,
                    pending_until: *pending_until,
                    expires_at: *expires_at,
                    used: 0,
                    cancelled: 0,
                });
                Vec::new()
            }
            Entry::Burn {
                redemption,
                points,
                at,
                ..
            } => {
                let active = self.balance(*at).active;
                if active < *points {
                    return Err(Refusal::new(
                        "insufficient_points",
                        format!("{points} points asked, {active} active"),
                    ));
                }
                let mut order: Vec<usize> = (0..self.lots.len())
                    .filter(|&i| self.lots[i].active_at(*at) && self.lots[i].remaining() > 0)
                    .collect();
                order.sort_by_key(|&i| (self.lots[i].expires_at.unwrap_or(Millis::MAX), i));
                let mut left = *points;
                let mut taken = Vec::new();
                for i in order {
                    if left == 0 {
                        break;
                    }
                    let n = self.lots[i].remaining().min(left);
                    self.lots[i].used += n;
                    left -= n;
                    taken.push((i, n));
                }
                self.burns
                    .insert(redemption.clone(), (taken.clone(), false));
                taken
            }
            Entry::Refund { redemption, .. } => {
                let Some((taken, refunded)) = self.burns.get_mut(redemption) else {
                    return Err(Refusal::new(
                        "unknown_redemption",
                        format!("no redemption {redemption} to refund"),
                    ));
                };
                *refunded = true;
                for (i, n) in taken.iter() {
                    self.lots[*i].used -= n;
                }
                taken.clone()
            }
            Entry::Return { order, points, .. } => {
                let Some(&i) = self.lot_of_order.get(order) else {
                    return Err(Refusal::new(
                        "unknown_order",
                        format!("order {order} earned no points"),
                    ));
                };
                let n = self.lots[i].remaining().min(*points);
                self.lots[i].cancelled += n;
                vec![(i, n)]
            }
        };
        self.keys.insert(key);
        self.entries += 1;
        Ok(Outcome::Applied { lots })
    }

    /// The balances at `now`: each lot's remaining points are pending, expired or active.
    pub fn balance(&self, now: Millis) -> Balance {
        let mut b = Balance::default();
        for lot in &self.lots {
            b.earned += lot.points - lot.cancelled;
            b.used += lot.used;
            b.cancelled += lot.cancelled;
            let rest = lot.remaining();
            if lot.pending_at(now) {
                b.pending += rest;
            } else if lot.expired_at(now) {
                b.expired += rest;
            } else {
                b.active += rest;
            }
        }
        b
    }

    /// Active points that expire before `before`, per expiry instant (soonest first).
    pub fn expiring(&self, now: Millis, before: Millis) -> Vec<(Millis, i64)> {
        let mut out: BTreeMap<Millis, i64> = BTreeMap::new();
        for lot in &self.lots {
            if let Some(e) = lot.expires_at {
                if lot.active_at(now) && e < before && lot.remaining() > 0 {
                    *out.entry(e).or_insert(0) += lot.remaining();
                }
            }
        }
        out.into_iter().collect()
    }

    /// Points (or spend) that qualify for a tier in `(now − period, now]`: what was earned
    /// in that window and is no longer pending, net of returns; spent points still count.
    fn qualifying(&self, basis: TierBasis, now: Millis, period: Millis) -> i64 {
        self.lots
            .iter()
            .filter(|l| l.earned_at > now - period && l.earned_at <= now && !l.pending_at(now))
            .map(|l| match basis {
                TierBasis::Points => l.points - l.cancelled,
                TierBasis::Spend if l.points > 0 => {
                    // A partly returned order counts the share of its spend that stayed.
                    (l.spend_minor as i128 * (l.points - l.cancelled) as i128 / l.points as i128)
                        as i64
                }
                TierBasis::Spend => l.spend_minor,
            })
            .sum()
    }

    /// The member's tier at `now` under a policy (index into its tiers; `None` below the
    /// first threshold).
    pub fn tier(&self, policy: &TierPolicy, now: Millis) -> Option<usize> {
        let first = self.lots.iter().map(|l| l.earned_at).min()?;
        let reached = |t: Millis| {
            let q = self.qualifying(policy.basis, t, policy.period);
            policy.tiers.iter().rposition(|tier| q >= tier.threshold)
        };
        match policy.downgrade {
            Downgrade::BalanceBased => reached(now),
            Downgrade::OneDown => {
                // Dropping at most one tier per period: the tier held a period ago, less one,
                // is a floor (back to the first earn).
                let mut t = now;
                let mut steps = Vec::new();
                while t >= first && steps.len() < 1000 {
                    steps.push(t);
                    t -= policy.period;
                }
                steps.iter().rev().fold(None, |held: Option<usize>, &t| {
                    let floor = held.and_then(|h| h.checked_sub(1));
                    reached(t).max(floor)
                })
            }
        }
    }
}

/// What a tier is measured on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TierBasis {
    Points,
    /// Spend in minor units.
    Spend,
}

/// How a member loses a tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Downgrade {
    /// The tier is what the last period qualifies for, however far down.
    BalanceBased,
    /// At most one tier lower than the period before.
    OneDown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tier {
    pub name: String,
    pub threshold: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierPolicy {
    pub basis: TierBasis,
    /// Lowest threshold first.
    pub tiers: Vec<Tier>,
    /// The qualification window, in milliseconds (a year: 365 days).
    pub period: Millis,
    pub downgrade: Downgrade,
}

/// When earned points expire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum Expiry {
    Never,
    /// At the same instant, that many days later.
    Days(u32),
    /// At the end of the day (in the program's time zone) that many months later, the day
    /// of the month kept where it exists (31 January + 1 month → end of 28 February; 0
    /// months → midnight after the day they were earned).
    Months(u32),
}

impl Expiry {
    pub fn expires_at<Tz: TimeZone>(self, earned_at: Millis, tz: &Tz) -> Option<Millis> {
        match self {
            Expiry::Never => None,
            Expiry::Days(d) => Some(earned_at + i64::from(d) * crate::time::DAY),
            Expiry::Months(m) => {
                let local = tz.timestamp_millis_opt(earned_at).single()?.date_naive();
                let day = local.checked_add_months(Months::new(m))?;
                let next = day.checked_add_days(Days::new(1))?;
                start_of(next, tz)
            }
        }
    }
}

fn start_of<Tz: TimeZone>(day: NaiveDate, tz: &Tz) -> Option<Millis> {
    let midnight = day.and_hms_opt(0, 0, 0)?;
    // A midnight a clock change skips starts the day at the first instant that exists.
    tz.from_local_datetime(&midnight)
        .earliest()
        .or_else(|| {
            tz.from_local_datetime(&(midnight + chrono::Duration::hours(1)))
                .earliest()
        })
        .map(|t| t.timestamp_millis())
        .filter(|_| day.year() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::DAY;
    use proptest::prelude::*;

    fn earn(order: &str, points: i64, at: Millis, pending: Millis, expires: Millis) -> Entry {
        Entry::Earn {
            order: order.into(),
            points,
            spend_minor: points * 100,
            at,
            pending_until: (pending > 0).then_some(at + pending),
            expires_at: (expires > 0).then_some(at + expires),
            channel: "pos".into(),
        }
    }

    fn burn(id: &str, points: i64, at: Millis) -> Entry {
        Entry::Burn {
            redemption: id.into(),
            points,
            at,
            channel: "web".into(),
        }
    }

    #[test]
    fn burns_take_the_soonest_expiring_lots_and_a_refund_restores_them() {
        let mut l = Ledger::default();
        l.apply(&earn("o1", 100, 0, 0, 300 * DAY)).unwrap();
        l.apply(&earn("o2", 50, DAY, 0, 30 * DAY)).unwrap();
        l.apply(&earn("o3", 70, 2 * DAY, 0, 0)).unwrap();
        let Outcome::Applied { lots } = l.apply(&burn("r1", 80, 3 * DAY)).unwrap() else {
            panic!()
        };
        assert_eq!(lots, vec![(1, 50), (0, 30)], "o2 expires first, then o1");
        let b = l.balance(3 * DAY);
        assert_eq!((b.active, b.used, b.earned), (140, 80, 220));
        l.apply(&Entry::Refund {
            redemption: "r1".into(),
            at: 4 * DAY,
        })
        .unwrap();
        assert_eq!(l.lots()[1].remaining(), 50);
        assert_eq!(l.lots()[0].remaining(), 100);
        assert_eq!(
            l.apply(&Entry::Refund {
                redemption: "r1".into(),
                at: 4 * DAY
            })
            .unwrap(),
            Outcome::Duplicate
        );
        // o2 has expired by day 31: 50 points expired, the rest still active.
        let b = l.balance(31 * DAY + 1);
        assert_eq!((b.active, b.expired, b.used), (170, 50, 0));
        assert_eq!(
            l.apply(&burn("r2", 171, 31 * DAY + 1)).unwrap_err().code,
            "insufficient_points"
        );
    }

    #[test]
    fn an_order_earns_once_whatever_channel_replays_it() {
        let mut l = Ledger::default();
        l.apply(&earn("o1", 100, 0, 0, 0)).unwrap();
        let mut again = earn("o1", 100, DAY, 0, 0);
        if let Entry::Earn { channel, .. } = &mut again {
            *channel = "web".into();
        }
        assert_eq!(l.apply(&again).unwrap(), Outcome::Duplicate);
        assert_eq!(l.balance(2 * DAY).earned, 100);
    }

    #[test]
    fn pending_points_wait_for_the_return_window_and_a_return_cancels_them() {
        let mut l = Ledger::default();
        l.apply(&earn("o1", 100, 0, 14 * DAY, 0)).unwrap();
        let b = l.balance(DAY);
        assert_eq!((b.active, b.pending), (0, 100));
        assert!(
            l.apply(&burn("r", 1, DAY)).is_err(),
            "pending points cannot be spent"
        );
        l.apply(&Entry::Return {
            order: "o1".into(),
            return_id: "ret1".into(),
            points: 40,
            at: 2 * DAY,
        })
        .unwrap();
        let b = l.balance(15 * DAY);
        assert_eq!(
            (b.active, b.pending, b.cancelled, b.earned),
            (60, 0, 40, 60)
        );
    }

    #[test]
    fn month_expiry_ends_on_the_last_day_that_exists() {
        let utc = chrono::Utc;
        let at = |y, m, d| {
            chrono::NaiveDate::from_ymd_opt(y, m, d)
                .unwrap()
                .and_hms_opt(15, 0, 0)
                .unwrap()
                .and_utc()
                .timestamp_millis()
        };
        let midnight = |y, m, d| {
            chrono::NaiveDate::from_ymd_opt(y, m, d)
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap()
                .and_utc()
                .timestamp_millis()
        };
        assert_eq!(
            Expiry::Months(1).expires_at(at(2025, 1, 31), &utc),
            Some(midnight(2025, 3, 1))
        );
        assert_eq!(
            Expiry::Months(0).expires_at(at(2025, 1, 31), &utc),
            Some(midnight(2025, 2, 1))
        );
        assert_eq!(
            Expiry::Months(1).expires_at(at(2024, 1, 31), &utc),
            Some(midnight(2024, 3, 1)),
            "29 February 2024 exists"
        );
        assert_eq!(Expiry::Never.expires_at(0, &utc), None);
    }

    #[test]
    fn tiers_follow_points_in_the_period_and_drop_one_at_a_time() {
        let policy = |downgrade| TierPolicy {
            basis: TierBasis::Points,
            tiers: vec![
                Tier {
                    name: "silver".into(),
                    threshold: 100,
                },
                Tier {
                    name: "gold".into(),
                    threshold: 500,
                },
                Tier {
                    name: "platinum".into(),
                    threshold: 1000,
                },
            ],
            period: 365 * DAY,
            downgrade,
        };
        let mut l = Ledger::default();
        l.apply(&earn("o1", 1200, 0, 0, 0)).unwrap();
        assert_eq!(l.tier(&policy(Downgrade::BalanceBased), DAY), Some(2));
        // A year and a day later nothing qualifies.
        let later = 366 * DAY;
        assert_eq!(l.tier(&policy(Downgrade::BalanceBased), later), None);
        assert_eq!(l.tier(&policy(Downgrade::OneDown), later), Some(1));
        assert_eq!(l.tier(&policy(Downgrade::OneDown), 2 * 366 * DAY), Some(0));
        assert_eq!(l.tier(&policy(Downgrade::OneDown), 3 * 366 * DAY), None);
    }

    fn entry_strategy() -> impl Strategy<Value = (u8, u8, i64, i64)> {
        (0u8..4, 0u8..6, 1i64..300, 0i64..40)
    }

    proptest! {
        /// Random earns, burns, refunds, returns and the passing of time: the invariant holds
        /// at every instant, nothing goes below zero, a refused entry changes nothing, and a
        /// replayed entry earns or spends nothing twice.
        #[test]
        fn the_ledger_always_balances(ops in proptest::collection::vec(entry_strategy(), 1..60)) {
            let mut l = Ledger::default();
            let mut applied: Vec<Entry> = Vec::new();
            let mut now = 0;
            for (kind, id, points, days) in ops {
                now += days * DAY / 4;
                let e = match kind {
                    0 => earn(&format!("o{id}"), points, now, (id as i64 % 3) * 7 * DAY, (id as i64 % 4) * 20 * DAY),
                    1 => burn(&format!("r{id}"), points, now),
                    2 => Entry::Refund { redemption: format!("r{id}"), at: now },
                    _ => Entry::Return { order: format!("o{id}"), return_id: format!("x{id}{points}"), points, at: now },
                };
                let before = l.balance(now);
                match l.apply(&e) {
                    Ok(Outcome::Applied { .. }) => applied.push(e.clone()),
                    Ok(Outcome::Duplicate) | Err(_) => prop_assert_eq!(l.balance(now), before),
                }
                prop_assert_eq!(l.apply(&e).unwrap_or(Outcome::Duplicate), Outcome::Duplicate);
                for t in [now, now + 10 * DAY, now + 400 * DAY] {
                    let b = l.balance(t);
                    prop_assert_eq!(b.earned, b.active + b.pending + b.used + b.expired);
                    prop_assert!(b.active >= 0 && b.pending >= 0 && b.used >= 0 && b.expired >= 0);
                }
                for lot in l.lots() {
                    prop_assert!(lot.remaining() >= 0 && lot.used >= 0 && lot.cancelled >= 0);
                }
            }
            // The stored entries fold back to the same ledger.
            let again = Ledger::from_entries(&applied);
            prop_assert_eq!(again.lots(), l.lots());
            prop_assert_eq!(again.balance(now), l.balance(now));
        }
    }
}
