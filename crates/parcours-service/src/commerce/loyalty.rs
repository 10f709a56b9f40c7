//! The loyalty programme of a workspace and its members' ledgers: balances, tier, lots,
//! redemptions and their refunds. A member is a loyalty card number (an identifier of the
//! customer's profile), the same on every channel.

use chrono_tz::Tz;
use parcours_core::commerce::loyalty::{
    Balance, Downgrade, Entry, Expiry, Ledger, Lot, Outcome, Tier, TierBasis, TierPolicy,
};
use parcours_core::commerce::{check_id, Refusal};
use parcours_core::identifier::Identifier;
use parcours_core::time::{Millis, DAY};
use parcours_store::{CommerceWrite, Committed, Store};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::read;
use crate::{Actor, ServiceError};

/// The identifier type of a loyalty card.
pub const CARD: &str = "loyalty_card";

/// How a workspace's customers earn and keep points.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Program {
    /// Points per whole unit of currency spent (1: a point per euro).
    #[serde(default = "one")]
    pub points_per_unit: i64,
    /// Days points stay pending after a purchase (the return window; 0: at once).
    #[serde(default = "fourteen")]
    pub pending_days: u32,
    #[serde(default = "a_year")]
    pub expiry: Expiry,
    /// The time zone month-end expiry is counted in.
    #[serde(default = "paris")]
    pub time_zone: String,
    #[serde(default)]
    pub tiers: Option<TiersDoc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TiersDoc {
    pub basis: TierBasis,
    pub tiers: Vec<Tier>,
    #[serde(default = "a_year_of_days")]
    pub period_days: u32,
    #[serde(default = "one_down")]
    pub downgrade: Downgrade,
}

fn one() -> i64 {
    1
}
fn fourteen() -> u32 {
    14
}
fn a_year() -> Expiry {
    Expiry::Months(12)
}
fn paris() -> String {
    "Europe/Paris".into()
}
fn a_year_of_days() -> u32 {
    365
}
fn one_down() -> Downgrade {
    Downgrade::OneDown
}

impl Default for Program {
    fn default() -> Self {
        serde_json::from_value(serde_json::json!({})).expect("every field has a default")
    }
}

impl Program {
    fn check(&self) -> Result<(), Refusal> {
        let bad = |m: String| Err(Refusal::new("invalid_program", m));
        if !(0..=10_000).contains(&self.points_per_unit) {
            return bad("points_per_unit is from 0 to 10,000".into());
        }
        if self.pending_days > 365 {
            return bad("pending_days is at most 365".into());
        }
        if self.time_zone.parse::<Tz>().is_err() {
            return bad(format!("{:?} is not an IANA time zone", self.time_zone));
        }
        match self.expiry {
            Expiry::Days(0) => {
                return bad("points that expire after 0 days are never usable".into());
            }
            // Past a century an expiry date stops being a date (and, far enough, cannot be
            // computed, which would read as never).
            Expiry::Days(d) if d > 36_500 => {
                return bad(format!("points expire after at most 36,500 days; got {d}"));
            }
            Expiry::Months(m) if m > 1_200 => {
                return bad(format!("points expire after at most 1,200 months; got {m}"));
            }
            _ => {}
        }
        if let Some(t) = &self.tiers {
            if t.tiers.is_empty() || t.tiers.len() > 20 || t.period_days == 0 {
                return bad("tiers: 1 to 20 of them, over a period of at least a day".into());
            }
            if t.tiers.windows(2).any(|w| w[0].threshold >= w[1].threshold) {
                return bad("tiers go from the lowest threshold to the highest".into());
            }
        }
        Ok(())
    }

    pub fn tier_policy(&self) -> Option<TierPolicy> {
        self.tiers.as_ref().map(|t| TierPolicy {
            basis: t.basis,
            tiers: t.tiers.clone(),
            period: i64::from(t.period_days) * DAY,
            downgrade: t.downgrade,
        })
    }

    /// The points a purchase of `spend_minor` earns.
    pub fn points_for(&self, spend_minor: i64) -> i64 {
        // In 128 bits: a spend near the largest total times 10,000 points per unit does not
        // fit in 64; what is over the most one entry may hold is refused by the entry's check.
        let points = i128::from(spend_minor.max(0)) * i128::from(self.points_per_unit) / 100;
        i64::try_from(points).unwrap_or(i64::MAX)
    }

    /// The earn entry of an order bought at `at`, or none when it earns no point.
    pub fn earn(&self, order: &str, spend_minor: i64, channel: &str, at: Millis) -> Option<Entry> {
        let points = self.points_for(spend_minor);
        let tz: Tz = self.time_zone.parse().unwrap_or(chrono_tz::UTC);
        (points > 0).then(|| Entry::Earn {
            order: order.into(),
            points,
            spend_minor,
            at,
            pending_until: (self.pending_days > 0).then(|| at + i64::from(self.pending_days) * DAY),
            expires_at: self.expiry.expires_at(at, &tz),
            channel: channel.into(),
        })
    }
}

/// The workspace's programme (the defaults until one is saved).
pub fn program(store: &dyn Store, actor: &Actor) -> Result<Program, ServiceError> {
    match store.loyalty_program(&actor.workspace)? {
        None => Ok(Program::default()),
        Some(body) => serde_json::from_str(&body)
            .map_err(|e| ServiceError::Store(parcours_store::StoreError::Corrupt(e.to_string()))),
    }
}

pub fn put_program(
    store: &dyn Store,
    actor: &Actor,
    body: Value,
    now: Millis,
) -> Result<Program, ServiceError> {
    actor.require_admin()?;
    let p: Program = read("invalid_program", "the programme", body)?;
    p.check()?;
    let text = serde_json::to_string(&p).expect("a programme serialises");
    store.put_loyalty_program(&actor.workspace, &text, now)?;
    Ok(p)
}

/// The member behind a customer: her card, or the card her profile holds (found from her
/// user id or email).
pub fn member_of(
    store: &dyn Store,
    ws: &str,
    card: Option<&str>,
    others: &[(&str, &str)],
) -> Result<Option<String>, ServiceError> {
    if let Some(card) = card {
        return Ok(Some(card.to_string()));
    }
    for (kind, value) in others {
        if let Some(profile) = store.lookup(ws, &Identifier::new(*kind, *value))? {
            if let Some(p) = store.profile(ws, &profile)? {
                if let Some(i) = p.identifiers.iter().find(|i| i.kind == CARD) {
                    return Ok(Some(i.value.clone()));
                }
            }
        }
    }
    Ok(None)
}

/// A member's account at an instant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Account {
    pub member: String,
    pub balance: Balance,
    /// The tier's name, if the programme has tiers and the member reached one.
    pub tier: Option<String>,
    /// Active points and when they expire, soonest first (the next 90 days).
    pub expiring: Vec<(Millis, i64)>,
    pub lots: Vec<Lot>,
    pub entries: Vec<Entry>,
}

pub fn account(
    store: &dyn Store,
    actor: &Actor,
    member: &str,
    now: Millis,
) -> Result<Account, ServiceError> {
    actor.require_personal_data()?;
    check_id("loyalty card", "invalid_member", member)?;
    let rows = store.loyalty_entries(&actor.workspace, member)?;
    if rows.is_empty() {
        return Err(ServiceError::NotFound(format!("loyalty member {member}")));
    }
    let entries: Vec<Entry> = rows.into_iter().map(|r| r.entry).collect();
    let ledger = Ledger::from_entries(&entries);
    let program = program(store, actor)?;
    let tier = program
        .tier_policy()
        .and_then(|p| ledger.tier(&p, now).map(|i| p.tiers[i].name.clone()));
    Ok(Account {
        member: member.into(),
        balance: ledger.balance(now),
        tier,
        expiring: ledger.expiring(now, now + 90 * DAY),
        lots: ledger.lots().to_vec(),
        entries,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedemptionBody {
    redemption_id: String,
    points: i64,
    #[serde(default = "web")]
    channel: String,
}

fn web() -> String {
    "web".into()
}

/// Spends points (`{"redemption_id", "points", "channel"?}`), soonest-expiring first; the
/// same redemption again spends nothing more. Too few active points: `insufficient_points`.
pub fn redeem(
    store: &dyn Store,
    actor: &Actor,
    member: &str,
    body: Value,
    now: Millis,
) -> Result<(Outcome, Account), ServiceError> {
    actor.require_admin()?;
    let b: RedemptionBody = read("invalid_redemption", "the redemption", body)?;
    let entry = Entry::Burn {
        redemption: b.redemption_id,
        points: b.points,
        at: now,
        channel: b.channel,
    };
    post(store, actor, member, entry, now)
}

/// Gives back exactly the points a redemption took, to the lots they came from.
pub fn refund(
    store: &dyn Store,
    actor: &Actor,
    member: &str,
    redemption: &str,
    now: Millis,
) -> Result<(Outcome, Account), ServiceError> {
    actor.require_admin()?;
    let entry = Entry::Refund {
        redemption: redemption.into(),
        at: now,
    };
    post(store, actor, member, entry, now)
}

/// One loyalty entry on its own (no order, no stock), committed like every commerce write.
fn post(
    store: &dyn Store,
    actor: &Actor,
    member: &str,
    entry: Entry,
    now: Millis,
) -> Result<(Outcome, Account), ServiceError> {
    check_id("loyalty card", "invalid_member", member)?;
    entry.check()?;
    if store.loyalty_entries(&actor.workspace, member)?.is_empty() {
        return Err(ServiceError::NotFound(format!("loyalty member {member}")));
    }
    let write = CommerceWrite {
        workspace_id: actor.workspace.clone(),
        loyalty: vec![(member.to_string(), entry)],
        dedup_since: 0,
        ..CommerceWrite::default()
    };
    let outcome = match store.commit_commerce(&write, now)? {
        Committed::Done { mut loyalty, .. } => loyalty.pop().unwrap_or(Outcome::Duplicate),
        Committed::OrderState(_) => Outcome::Duplicate,
        Committed::Refused(r) => {
            return Err(ServiceError::Unprocessable {
                code: r.code,
                message: r.message,
            })
        }
        Committed::Short(shortages) => return Err(ServiceError::OutOfStock { shortages }),
        // A loyalty write takes no stock and no offer.
        Committed::ReferenceTaken(_)
        | Committed::NotHeld(_)
        | Committed::OfferUsedUp { .. }
        | Committed::Told => Outcome::Duplicate,
    };
    Ok((outcome, account(store, actor, member, now)?))
}
