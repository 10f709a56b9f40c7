//! One promotion engine for every channel: the same basket gets the same price at the till,
//! on the web and in the app, unless an offer says otherwise (its `channels`).
//!
//! An offer is conditions and a reward:
//! - conditions: active, a time box (`starts_at` inclusive, `ends_at` exclusive), sales
//!   channels, a currency, an audience the customer must be in, a coupon code (with limits
//!   per code and per customer), a threshold on the basket's subtotal, items the basket must
//!   hold;
//! - rewards: a percentage off, an amount off (of the whole basket or of some SKUs), a bundle
//!   (a set of items for one price), free units of an item.
//!
//! Offers are tried from the highest `priority` down (then by id, so the order is total). A
//! `stackable` offer combines with the other stackable ones; an `exclusive` one applies only
//! if nothing applied before it, and then nothing applies after it. Each reward takes its
//! discount off what earlier rewards left of the lines it touches, so a basket's total never
//! goes below zero and no line is discounted twice beyond its price.
//!
//! Every offer that did not apply is reported with a stable reason code and a sentence, and
//! an offer with a coupon is only tried when one of its codes was given. Redemption counts
//! come from the caller (the store counts them); the store checks the limits again, under its
//! lock, when the sale commits, so two tills can never both take a code's last use.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{check_id, check_quantity, Refusal};
use crate::time::{format_timestamp, parse_timestamp, Millis};

/// The most offers a workspace may hold (every one is tried for each basket).
pub const MAX_OFFERS: usize = 500;
/// The most codes one offer may list.
pub const MAX_CODES: usize = 10_000;
/// The most coupon codes one basket may carry.
pub const MAX_BASKET_COUPONS: usize = 20;
/// The largest amount an offer may name, in minor units (that of an order's total).
pub const MAX_AMOUNT: i64 = 1_000_000_000_000_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Offer {
    pub id: String,
    pub name: String,
    #[serde(default = "yes")]
    pub active: bool,
    /// Tried from the highest down.
    #[serde(default)]
    pub priority: i32,
    #[serde(default)]
    pub stacking: Stacking,
    /// The sales channels it holds on; every channel when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
    #[serde(default, with = "iso_opt", skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<Millis>,
    #[serde(default, with = "iso_opt", skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<Millis>,
    /// The currency of its amounts; required when it has one (a threshold, an amount off, a
    /// bundle price). An offer without amounts holds in every currency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// An audience the customer must be a member of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coupon: Option<Coupon>,
    /// The basket's subtotal (before any offer) must reach this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_subtotal_minor: Option<i64>,
    /// Units the basket must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<Part>,
    pub reward: Reward,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stacking {
    #[default]
    Stackable,
    Exclusive,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Coupon {
    /// The codes that unlock the offer (compared without regard to case).
    pub codes: Vec<String>,
    /// How many orders each code may be used on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_per_code: Option<u64>,
    /// How many orders one customer may use the offer on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_per_customer: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Part {
    pub sku: String,
    pub quantity: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Reward {
    /// `percent` (1 to 100) off the lines of `skus` (every line when empty).
    PercentOff {
        percent: i64,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        skus: Vec<String>,
    },
    /// An amount off the lines of `skus` (every line when empty), at most what they cost.
    AmountOff {
        amount_minor: i64,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        skus: Vec<String>,
    },
    /// Each complete set of `items` costs `price_minor` (when that is less than the set's
    /// price).
    Bundle { items: Vec<Part>, price_minor: i64 },
    /// Up to `quantity` units of `sku` in the basket are free (the basket must hold them:
    /// the till or the web shop adds them, the engine prices them).
    FreeItem { sku: String, quantity: i64 },
}

/// Upper-cased and trimmed: codes match without regard to case.
pub fn normalize_code(code: &str) -> String {
    code.trim().to_uppercase()
}

/// Checks a coupon code: 1 to 64 letters, digits, `-` or `_`.
pub fn check_code(code: &str) -> Result<(), Refusal> {
    let n = code.trim();
    if n.is_empty()
        || n.chars().count() > 64
        || !n
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
    {
        return Err(Refusal::new(
            "invalid_coupon",
            format!("a coupon code is 1 to 64 letters, digits, '-' or '_'; got {code:?}"),
        ));
    }
    Ok(())
}

fn check_amount(what: &str, amount: i64) -> Result<(), Refusal> {
    if !(0..=MAX_AMOUNT).contains(&amount) {
        return Err(Refusal::new(
            "invalid_offer",
            format!("{what} is from 0 to {MAX_AMOUNT} minor units; got {amount}"),
        ));
    }
    Ok(())
}

fn check_parts(parts: &[Part]) -> Result<(), Refusal> {
    let mut seen = BTreeSet::new();
    for p in parts {
        check_id("SKU", "invalid_offer", &p.sku)?;
        check_quantity(p.quantity)?;
        if !seen.insert(&p.sku) {
            return Err(Refusal::new(
                "invalid_offer",
                format!("{} is listed twice: give its quantity once", p.sku),
            ));
        }
    }
    Ok(())
}

impl Offer {
    pub fn check(&self) -> Result<(), Refusal> {
        check_id("offer id", "invalid_offer", &self.id)?;
        let name = self.name.trim();
        if name.is_empty() || self.name.chars().count() > 200 {
            return Err(Refusal::new(
                "invalid_offer",
                "an offer's name has 1 to 200 characters",
            ));
        }
        for c in &self.channels {
            check_id("sales channel", "invalid_offer", c)?;
        }
        if let (Some(s), Some(e)) = (self.starts_at, self.ends_at) {
            if e <= s {
                return Err(Refusal::new(
                    "invalid_offer",
                    "an offer ends after it starts (ends_at is exclusive)",
                ));
            }
        }
        if let Some(a) = &self.audience {
            check_id("audience id", "invalid_offer", a)?;
        }
        if let Some(c) = &self.currency {
            if c.len() != 3 || !c.chars().all(|c| c.is_ascii_uppercase()) {
                return Err(Refusal::new(
                    "invalid_offer",
                    format!("a currency is three capital letters (ISO 4217); got {c:?}"),
                ));
            }
        }
        if let Some(coupon) = &self.coupon {
            if coupon.codes.is_empty() || coupon.codes.len() > MAX_CODES {
                return Err(Refusal::new(
                    "invalid_offer",
                    format!("a coupon lists 1 to {MAX_CODES} codes"),
                ));
            }
            let mut seen = BTreeSet::new();
            for code in &coupon.codes {
                check_code(code)?;
                if !seen.insert(normalize_code(code)) {
                    return Err(Refusal::new(
                        "invalid_offer",
                        format!("the code {code:?} is listed twice"),
                    ));
                }
            }
            if coupon.limit_per_code == Some(0) || coupon.limit_per_customer == Some(0) {
                return Err(Refusal::new(
                    "invalid_offer",
                    "a redemption limit is 1 or more (leave it out for no limit)",
                ));
            }
        }
        let mut has_amount = false;
        if let Some(t) = self.min_subtotal_minor {
            check_amount("a threshold", t)?;
            has_amount = true;
        }
        check_parts(&self.requires)?;
        match &self.reward {
            Reward::PercentOff { percent, skus } => {
                if !(1..=100).contains(percent) {
                    return Err(Refusal::new(
                        "invalid_offer",
                        format!("a percentage off is from 1 to 100; got {percent}"),
                    ));
                }
                for s in skus {
                    check_id("SKU", "invalid_offer", s)?;
                }
            }
            Reward::AmountOff { amount_minor, skus } => {
                check_amount("an amount off", *amount_minor)?;
                for s in skus {
                    check_id("SKU", "invalid_offer", s)?;
                }
                has_amount = true;
            }
            Reward::Bundle { items, price_minor } => {
                if items.is_empty() {
                    return Err(Refusal::new("invalid_offer", "a bundle lists its items"));
                }
                check_parts(items)?;
                check_amount("a bundle's price", *price_minor)?;
                has_amount = true;
            }
            Reward::FreeItem { sku, quantity } => {
                check_id("SKU", "invalid_offer", sku)?;
                check_quantity(*quantity)?;
            }
        }
        if has_amount && self.currency.is_none() {
            return Err(Refusal::new(
                "invalid_offer",
                "an offer with an amount (a threshold, an amount off, a bundle price) names its currency",
            ));
        }
        Ok(())
    }

    /// The first of `given` (normalised codes) this offer's coupon accepts.
    pub fn code_in<'a>(&self, given: &'a [String]) -> Option<&'a str> {
        let coupon = self.coupon.as_ref()?;
        given
            .iter()
            .find(|g| coupon.codes.iter().any(|c| normalize_code(c) == **g))
            .map(String::as_str)
    }
}

/// A line of a basket, priced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BasketLine {
    pub sku: String,
    pub quantity: i64,
    pub unit_price_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Basket {
    pub channel: String,
    pub currency: String,
    pub at: Millis,
    pub lines: Vec<BasketLine>,
    /// Coupon codes given, normalised ([`normalize_code`]).
    pub coupons: Vec<String>,
    /// Who the customer is for per-customer limits (her loyalty card, user id or email).
    pub customer: Option<String>,
    /// The audiences she is a member of.
    pub audiences: BTreeSet<String>,
}

/// How often an offer was used, as the store counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Uses {
    /// With the code the basket gives.
    pub code: u64,
    /// By the basket's customer.
    pub customer: u64,
}

/// An offer that applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub offer: String,
    pub name: String,
    pub discount_minor: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coupon: Option<String>,
}

/// An offer that did not apply, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotApplied {
    pub offer: String,
    pub reason: &'static str,
    pub message: String,
}

/// A use of an offer an order takes: the store records it, and refuses the order if a limit
/// was reached meanwhile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Redemption {
    pub offer: String,
    pub code: Option<String>,
    pub customer: Option<String>,
    pub limit_per_code: Option<u64>,
    pub limit_per_customer: Option<u64>,
}

/// A basket priced with the offers that apply to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evaluation {
    pub subtotal_minor: i64,
    pub discount_minor: i64,
    pub total_minor: i64,
    /// The basket's lines with the discount each one carries.
    pub lines: Vec<DiscountedLine>,
    pub applied: Vec<Applied>,
    pub not_applied: Vec<NotApplied>,
    /// Codes given that no offer knows.
    pub unknown_coupons: Vec<String>,
    #[serde(skip)]
    pub redemptions: Vec<Redemption>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscountedLine {
    pub sku: String,
    pub quantity: i64,
    pub unit_price_minor: i64,
    pub discount_minor: i64,
}

fn no(offer: &Offer, reason: &'static str, message: String) -> NotApplied {
    NotApplied {
        offer: offer.id.clone(),
        reason,
        message,
    }
}

/// Why an offer's conditions do not hold for a basket (stacking aside), or the code it
/// takes.
fn conditions(
    offer: &Offer,
    basket: &Basket,
    subtotal: i64,
    uses: &BTreeMap<String, Uses>,
) -> Result<Option<String>, NotApplied> {
    if !offer.active {
        return Err(no(offer, "inactive", "the offer is switched off".into()));
    }
    if let Some(s) = offer.starts_at.filter(|s| basket.at < *s) {
        return Err(no(
            offer,
            "not_started",
            format!("the offer starts at {}", format_timestamp(s)),
        ));
    }
    if let Some(e) = offer.ends_at.filter(|e| basket.at >= *e) {
        return Err(no(
            offer,
            "ended",
            format!("the offer ended at {}", format_timestamp(e)),
        ));
    }
    if !offer.channels.is_empty() && !offer.channels.contains(&basket.channel) {
        return Err(no(
            offer,
            "other_channel",
            format!(
                "the offer holds on {} only, not on {}",
                offer.channels.join(", "),
                basket.channel
            ),
        ));
    }
    if let Some(c) = offer.currency.as_ref().filter(|c| **c != basket.currency) {
        return Err(no(
            offer,
            "other_currency",
            format!(
                "the offer's amounts are in {c}, the basket is in {}",
                basket.currency
            ),
        ));
    }
    if let Some(a) = &offer.audience {
        if !basket.audiences.contains(a) {
            return Err(no(
                offer,
                "not_in_audience",
                if basket.customer.is_none() {
                    format!("the offer is for the audience {a}, and the customer is not known")
                } else {
                    format!("the customer is not in the audience {a}")
                },
            ));
        }
    }
    let mut code = None;
    if let Some(coupon) = &offer.coupon {
        let Some(c) = offer.code_in(&basket.coupons) else {
            return Err(no(
                offer,
                "coupon_required",
                "the offer takes a coupon code, and none of its codes was given".into(),
            ));
        };
        let used = uses.get(&offer.id).copied().unwrap_or_default();
        if let Some(limit) = coupon.limit_per_code.filter(|l| used.code >= *l) {
            return Err(no(
                offer,
                "coupon_used_up",
                format!("the code {c} was used {limit} times, its limit"),
            ));
        }
        if let Some(limit) = coupon.limit_per_customer {
            if basket.customer.is_none() {
                return Err(no(
                    offer,
                    "customer_required",
                    "the offer is limited per customer: say who the customer is".into(),
                ));
            }
            if used.customer >= limit {
                return Err(no(
                    offer,
                    "customer_used_up",
                    format!("the customer used the offer {limit} times, its limit"),
                ));
            }
        }
        code = Some(c.to_string());
    }
    if let Some(t) = offer.min_subtotal_minor.filter(|t| subtotal < *t) {
        return Err(no(
            offer,
            "below_threshold",
            format!("the basket's subtotal {subtotal} is below the offer's threshold {t}"),
        ));
    }
    let held = quantities(&basket.lines);
    let missing: Vec<String> = offer
        .requires
        .iter()
        .filter(|p| held.get(p.sku.as_str()).copied().unwrap_or(0) < p.quantity)
        .map(|p| format!("{} × {}", p.quantity, p.sku))
        .collect();
    if !missing.is_empty() {
        return Err(no(
            offer,
            "missing_items",
            format!("the basket must hold {}", missing.join(", ")),
        ));
    }
    Ok(code)
}

fn quantities(lines: &[BasketLine]) -> BTreeMap<&str, i64> {
    let mut held = BTreeMap::new();
    for l in lines {
        *held.entry(l.sku.as_str()).or_insert(0) += l.quantity;
    }
    held
}

/// Spreads `amount` (at most the sum of `room`) over lines in proportion to what is left of
/// each, never more than a line's room; the units left by rounding go to the largest
/// remainders, then to the first lines.
fn spread(amount: i64, room: &[i64]) -> Vec<i64> {
    let total: i128 = room.iter().map(|r| *r as i128).sum();
    if total == 0 || amount <= 0 {
        return vec![0; room.len()];
    }
    let amount = (amount as i128).min(total);
    let mut shares: Vec<i64> = room
        .iter()
        .map(|r| (amount * *r as i128 / total) as i64)
        .collect();
    let mut left = amount as i64 - shares.iter().sum::<i64>();
    let mut order: Vec<usize> = (0..room.len()).collect();
    order.sort_by_key(|i| std::cmp::Reverse(amount * room[*i] as i128 % total));
    while left > 0 {
        let mut moved = false;
        for i in &order {
            if left > 0 && shares[*i] < room[*i] {
                shares[*i] += 1;
                left -= 1;
                moved = true;
            }
        }
        if !moved {
            break;
        }
    }
    shares
}

/// The discount of a reward per line (indices into the basket's lines), given what is left
/// of each line; empty when there is nothing to discount.
fn reward_discount(reward: &Reward, lines: &[BasketLine], left: &[i64]) -> Vec<(usize, i64)> {
    let targeted = |skus: &[String]| -> Vec<usize> {
        (0..lines.len())
            .filter(|i| skus.is_empty() || skus.contains(&lines[*i].sku))
            .filter(|i| left[*i] > 0)
            .collect()
    };
    let spread_over = |idx: Vec<usize>, amount: i64| -> Vec<(usize, i64)> {
        let room: Vec<i64> = idx.iter().map(|i| left[*i]).collect();
        idx.into_iter()
            .zip(spread(amount, &room))
            .filter(|(_, d)| *d > 0)
            .collect()
    };
    match reward {
        Reward::PercentOff { percent, skus } => {
            let idx = targeted(skus);
            let base: i128 = idx.iter().map(|i| left[*i] as i128).sum();
            // Rounded half up, on the lines' total (the same whatever the lines' split).
            let off = ((base * *percent as i128 + 50) / 100) as i64;
            spread_over(idx, off)
        }
        Reward::AmountOff { amount_minor, skus } => spread_over(targeted(skus), *amount_minor),
        Reward::Bundle { items, price_minor } => {
            let held = quantities(lines);
            let sets = items
                .iter()
                .map(|p| held.get(p.sku.as_str()).copied().unwrap_or(0) / p.quantity)
                .min()
                .unwrap_or(0);
            if sets == 0 {
                return Vec::new();
            }
            // The set's price at the basket's prices: each part at its first line's price.
            let mut set_price: i128 = 0;
            for p in items {
                let Some(l) = lines.iter().find(|l| l.sku == p.sku) else {
                    return Vec::new();
                };
                set_price += l.unit_price_minor as i128 * p.quantity as i128;
            }
            let saving = (set_price - *price_minor as i128).max(0) * sets as i128;
            let skus: Vec<String> = items.iter().map(|p| p.sku.clone()).collect();
            spread_over(targeted(&skus), saving.min(i64::MAX as i128) as i64)
        }
        Reward::FreeItem { sku, quantity } => {
            let mut free = *quantity;
            let mut out = Vec::new();
            for i in 0..lines.len() {
                if lines[i].sku != *sku || free == 0 || left[i] == 0 {
                    continue;
                }
                let units = free.min(lines[i].quantity);
                let off =
                    (lines[i].unit_price_minor as i128 * units as i128).min(left[i] as i128) as i64;
                if off > 0 {
                    out.push((i, off));
                }
                free -= units;
            }
            out
        }
    }
}

/// Prices a basket with the offers that apply to it. `uses` gives, per coupon offer, how
/// often it was used with the basket's code and by the basket's customer.
pub fn evaluate(offers: &[Offer], basket: &Basket, uses: &BTreeMap<String, Uses>) -> Evaluation {
    let amounts: Vec<i64> = basket
        .lines
        .iter()
        .map(|l| l.unit_price_minor.saturating_mul(l.quantity))
        .collect();
    let subtotal = amounts.iter().fold(0i64, |a, b| a.saturating_add(*b));
    let mut left = amounts.clone();
    let mut ordered: Vec<&Offer> = offers.iter().collect();
    ordered.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.id.cmp(&b.id)));
    let mut applied: Vec<Applied> = Vec::new();
    let mut not_applied = Vec::new();
    let mut redemptions = Vec::new();
    let mut exclusive: Option<&str> = None;
    for offer in ordered {
        let code = match conditions(offer, basket, subtotal, uses) {
            Ok(code) => code,
            Err(n) => {
                // An offer behind a code nobody gave is not worth a line unless it names
                // one of the basket's codes.
                if !(n.reason == "coupon_required" && basket.coupons.is_empty()) {
                    not_applied.push(n);
                }
                continue;
            }
        };
        if let Some(by) = exclusive {
            not_applied.push(no(
                offer,
                "exclusive_applied",
                format!("the offer {by} applies alone"),
            ));
            continue;
        }
        if offer.stacking == Stacking::Exclusive && !applied.is_empty() {
            let names: Vec<&str> = applied.iter().map(|a| a.offer.as_str()).collect();
            not_applied.push(no(
                offer,
                "not_combinable",
                format!(
                    "the offer applies alone, and {} applied first (higher priority)",
                    names.join(", ")
                ),
            ));
            continue;
        }
        let discounts = reward_discount(&offer.reward, &basket.lines, &left);
        let total: i64 = discounts.iter().map(|(_, d)| d).sum();
        if total == 0 {
            not_applied.push(no(
                offer,
                "nothing_to_discount",
                match &offer.reward {
                    Reward::Bundle { items, .. } => format!(
                        "the basket holds no complete set of {} (or it costs less already)",
                        items
                            .iter()
                            .map(|p| format!("{} × {}", p.quantity, p.sku))
                            .collect::<Vec<_>>()
                            .join(" + ")
                    ),
                    Reward::FreeItem { sku, .. } => {
                        format!("add {sku} to the basket: the offer makes it free")
                    }
                    _ => "none of the lines it discounts is in the basket (or left to discount)"
                        .into(),
                },
            ));
            continue;
        }
        for (i, d) in &discounts {
            left[*i] -= d;
        }
        if offer.stacking == Stacking::Exclusive {
            exclusive = Some(&offer.id);
        }
        let coupon = offer.coupon.as_ref();
        redemptions.push(Redemption {
            offer: offer.id.clone(),
            code: code.clone(),
            customer: basket.customer.clone(),
            limit_per_code: coupon.and_then(|c| c.limit_per_code),
            limit_per_customer: coupon.and_then(|c| c.limit_per_customer),
        });
        applied.push(Applied {
            offer: offer.id.clone(),
            name: offer.name.clone(),
            discount_minor: total,
            coupon: code,
        });
    }
    let unknown_coupons = basket
        .coupons
        .iter()
        .filter(|c| {
            !offers
                .iter()
                .any(|o| o.code_in(std::slice::from_ref(c)).is_some())
        })
        .cloned()
        .collect();
    let discount = subtotal - left.iter().sum::<i64>();
    Evaluation {
        subtotal_minor: subtotal,
        discount_minor: discount,
        total_minor: subtotal - discount,
        lines: basket
            .lines
            .iter()
            .zip(amounts.iter().zip(&left))
            .map(|(l, (a, r))| DiscountedLine {
                sku: l.sku.clone(),
                quantity: l.quantity,
                unit_price_minor: l.unit_price_minor,
                discount_minor: a - r,
            })
            .collect(),
        applied,
        not_applied,
        unknown_coupons,
        redemptions,
    }
}

mod iso_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::time::{format_timestamp, Millis};

    pub fn serialize<S: Serializer>(ms: &Option<Millis>, s: S) -> Result<S::Ok, S::Error> {
        match ms {
            Some(ms) => s.serialize_str(&format_timestamp(*ms)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Millis>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => super::parse_timestamp(&s).map(Some).ok_or_else(|| {
                serde::de::Error::custom(format!("{s:?} is not an RFC 3339 timestamp"))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn offer(v: serde_json::Value) -> Offer {
        let o: Offer = serde_json::from_value(v).unwrap();
        o.check().unwrap();
        o
    }

    fn basket(lines: &[(&str, i64, i64)]) -> Basket {
        Basket {
            channel: "web".into(),
            currency: "EUR".into(),
            at: 1_000,
            lines: lines
                .iter()
                .map(|(s, q, p)| BasketLine {
                    sku: s.to_string(),
                    quantity: *q,
                    unit_price_minor: *p,
                })
                .collect(),
            ..Basket::default()
        }
    }

    fn none() -> BTreeMap<String, Uses> {
        BTreeMap::new()
    }

    fn reasons(e: &Evaluation) -> Vec<(&str, &str)> {
        e.not_applied
            .iter()
            .map(|n| (n.offer.as_str(), n.reason))
            .collect()
    }

    #[test]
    fn percent_off_rounds_on_the_total_and_spreads_over_the_lines() {
        let o = offer(
            json!({"id": "p", "name": "10%", "reward": {"kind": "percent_off", "percent": 10}}),
        );
        let e = evaluate(&[o], &basket(&[("a", 1, 995), ("b", 3, 333)]), &none());
        assert_eq!(e.subtotal_minor, 1994);
        // 199.4 → 199.
        assert_eq!(e.discount_minor, 199);
        assert_eq!(e.total_minor, 1795);
        assert_eq!(e.lines.iter().map(|l| l.discount_minor).sum::<i64>(), 199);
        assert_eq!(e.applied[0].discount_minor, 199);
    }

    #[test]
    fn amount_off_never_takes_a_line_below_zero_and_threshold_is_on_the_subtotal() {
        let o = offer(json!({"id": "f", "name": "20 off 50", "currency": "EUR",
            "min_subtotal_minor": 5000, "reward": {"kind": "amount_off", "amount_minor": 2000, "skus": ["a"]}}));
        let below = evaluate(
            std::slice::from_ref(&o),
            &basket(&[("a", 1, 1500), ("b", 1, 3000)]),
            &none(),
        );
        assert_eq!(reasons(&below), vec![("f", "below_threshold")]);
        let e = evaluate(&[o], &basket(&[("a", 1, 1500), ("b", 1, 4000)]), &none());
        assert_eq!(
            e.discount_minor, 1500,
            "at most what the targeted line costs"
        );
        assert_eq!(e.lines[1].discount_minor, 0);
    }

    #[test]
    fn a_bundle_prices_each_complete_set() {
        let o = offer(
            json!({"id": "kit", "name": "jean + belt 80", "currency": "EUR",
            "reward": {"kind": "bundle", "items": [{"sku": "jean", "quantity": 1}, {"sku": "belt", "quantity": 1}], "price_minor": 8000}}),
        );
        let e = evaluate(
            std::slice::from_ref(&o),
            &basket(&[("jean", 2, 6000), ("belt", 1, 3000), ("sock", 1, 500)]),
            &none(),
        );
        // One set: 90 → 80.
        assert_eq!(e.discount_minor, 1000);
        assert_eq!(e.lines[2].discount_minor, 0);
        let e = evaluate(&[o], &basket(&[("jean", 2, 6000)]), &none());
        assert_eq!(reasons(&e), vec![("kit", "nothing_to_discount")]);
    }

    #[test]
    fn a_free_item_needs_its_trigger_and_its_units_in_the_basket() {
        let o = offer(json!({"id": "gift", "name": "free socks with boots",
            "requires": [{"sku": "boots", "quantity": 1}],
            "reward": {"kind": "free_item", "sku": "sock", "quantity": 1}}));
        let e = evaluate(
            std::slice::from_ref(&o),
            &basket(&[("sock", 2, 500)]),
            &none(),
        );
        assert_eq!(reasons(&e), vec![("gift", "missing_items")]);
        let e = evaluate(
            std::slice::from_ref(&o),
            &basket(&[("boots", 1, 9000)]),
            &none(),
        );
        assert_eq!(reasons(&e), vec![("gift", "nothing_to_discount")]);
        assert!(e.not_applied[0].message.contains("add sock"));
        let e = evaluate(
            &[o],
            &basket(&[("boots", 1, 9000), ("sock", 2, 500)]),
            &none(),
        );
        assert_eq!(e.discount_minor, 500, "one unit of two");
    }

    #[test]
    fn channels_time_boxes_and_audiences_are_conditions_with_reasons() {
        let o = offer(json!({"id": "app", "name": "app only", "channels": ["app"],
            "starts_at": "1970-01-01T00:00:00.500Z", "ends_at": "1970-01-01T00:00:02Z",
            "audience": "vip", "reward": {"kind": "percent_off", "percent": 5}}));
        let mut b = basket(&[("a", 1, 1000)]);
        assert_eq!(
            reasons(&evaluate(std::slice::from_ref(&o), &b, &none())),
            vec![("app", "other_channel")]
        );
        b.channel = "app".into();
        assert_eq!(
            reasons(&evaluate(std::slice::from_ref(&o), &b, &none())),
            vec![("app", "not_in_audience")]
        );
        b.audiences.insert("vip".into());
        assert_eq!(
            evaluate(std::slice::from_ref(&o), &b, &none()).discount_minor,
            50
        );
        b.at = 2_000;
        assert_eq!(
            reasons(&evaluate(std::slice::from_ref(&o), &b, &none())),
            vec![("app", "ended")]
        );
        b.at = 499;
        assert_eq!(
            reasons(&evaluate(&[o], &b, &none())),
            vec![("app", "not_started")]
        );
    }

    #[test]
    fn coupons_and_their_limits() {
        let o = offer(
            json!({"id": "welcome", "name": "welcome", "coupon": {"codes": ["Hello10"],
            "limit_per_code": 100, "limit_per_customer": 1},
            "reward": {"kind": "percent_off", "percent": 10}}),
        );
        let mut b = basket(&[("a", 1, 1000)]);
        // No code given: the offer is not worth a line.
        assert!(evaluate(std::slice::from_ref(&o), &b, &none())
            .not_applied
            .is_empty());
        b.coupons = vec!["NOPE".into()];
        let e = evaluate(std::slice::from_ref(&o), &b, &none());
        assert_eq!(e.unknown_coupons, vec!["NOPE".to_string()]);
        assert_eq!(reasons(&e), vec![("welcome", "coupon_required")]);
        b.coupons = vec![normalize_code(" hello10 ")];
        assert_eq!(
            reasons(&evaluate(std::slice::from_ref(&o), &b, &none())),
            vec![("welcome", "customer_required")]
        );
        b.customer = Some("ada".into());
        let e = evaluate(std::slice::from_ref(&o), &b, &none());
        assert_eq!(e.discount_minor, 100);
        assert_eq!(e.applied[0].coupon.as_deref(), Some("HELLO10"));
        assert_eq!(e.redemptions[0].limit_per_customer, Some(1));
        let used = BTreeMap::from([(
            "welcome".to_string(),
            Uses {
                code: 3,
                customer: 1,
            },
        )]);
        assert_eq!(
            reasons(&evaluate(std::slice::from_ref(&o), &b, &used)),
            vec![("welcome", "customer_used_up")]
        );
        let used = BTreeMap::from([(
            "welcome".to_string(),
            Uses {
                code: 100,
                customer: 0,
            },
        )]);
        assert_eq!(
            reasons(&evaluate(&[o], &b, &used)),
            vec![("welcome", "coupon_used_up")]
        );
    }

    #[test]
    fn priority_and_stacking() {
        let ten = offer(
            json!({"id": "ten", "name": "10%", "priority": 5, "reward": {"kind": "percent_off", "percent": 10}}),
        );
        let five = offer(
            json!({"id": "five", "name": "5 off", "currency": "EUR", "reward": {"kind": "amount_off", "amount_minor": 500}}),
        );
        let solo = offer(
            json!({"id": "solo", "name": "30% alone", "priority": 1, "stacking": "exclusive",
            "reward": {"kind": "percent_off", "percent": 30}}),
        );
        let b = basket(&[("a", 1, 10000)]);
        // ten (prio 5) first, then solo (exclusive, blocked), then five on what is left.
        let e = evaluate(&[five.clone(), solo.clone(), ten.clone()], &b, &none());
        assert_eq!(e.discount_minor, 1000 + 500);
        assert_eq!(reasons(&e), vec![("solo", "not_combinable")]);
        let mut first = solo.clone();
        first.priority = 9;
        let e = evaluate(&[five, first, ten], &b, &none());
        assert_eq!(e.discount_minor, 3000);
        assert_eq!(
            reasons(&e),
            vec![("ten", "exclusive_applied"), ("five", "exclusive_applied")]
        );
    }

    #[test]
    fn offers_are_checked() {
        for (bad, why) in [
            (
                json!({"id": "x", "name": "x", "reward": {"kind": "percent_off", "percent": 0}}),
                "percent",
            ),
            (
                json!({"id": "x", "name": "x", "reward": {"kind": "amount_off", "amount_minor": 5}}),
                "currency",
            ),
            (
                json!({"id": "x", "name": "x", "starts_at": "2026-01-02T00:00:00Z", "ends_at": "2026-01-01T00:00:00Z",
                "reward": {"kind": "percent_off", "percent": 5}}),
                "ends",
            ),
            (
                json!({"id": "x", "name": "x", "coupon": {"codes": ["A", "a"]}, "reward": {"kind": "percent_off", "percent": 5}}),
                "twice",
            ),
            (
                json!({"id": "x", "name": "x", "coupon": {"codes": ["A B"]}, "reward": {"kind": "percent_off", "percent": 5}}),
                "coupon code",
            ),
            (
                json!({"id": "x", "name": "x", "coupon": {"codes": ["A"], "limit_per_code": 0}, "reward": {"kind": "percent_off", "percent": 5}}),
                "limit",
            ),
        ] {
            let o: Offer = serde_json::from_value(bad).unwrap();
            let err = o.check().unwrap_err();
            assert!(err.message.contains(why), "{why}: {}", err.message);
        }
        assert!(serde_json::from_value::<Offer>(
            json!({"id": "x", "name": "x", "reward": {"kind": "percent_off", "percent": 5, "extra": 1}})
        )
        .is_err());
    }

    fn arb_offer() -> impl Strategy<Value = Offer> {
        let reward = prop_oneof![
            (1i64..=100, prop::collection::vec("[abc]", 0..2))
                .prop_map(|(percent, skus)| Reward::PercentOff { percent, skus }),
            (0i64..5000, prop::collection::vec("[abc]", 0..2))
                .prop_map(|(amount_minor, skus)| Reward::AmountOff { amount_minor, skus }),
            (1i64..3, 0i64..3000).prop_map(|(q, price_minor)| Reward::Bundle {
                items: vec![
                    Part {
                        sku: "a".into(),
                        quantity: q
                    },
                    Part {
                        sku: "b".into(),
                        quantity: 1
                    }
                ],
                price_minor
            }),
            ("[abc]", 1i64..4).prop_map(|(sku, quantity)| Reward::FreeItem { sku, quantity }),
        ];
        (
            "[a-e]",
            -2i32..3,
            any::<bool>(),
            prop::option::of(0i64..8000),
            prop::option::of(prop::sample::select(vec!["web", "pos"])),
            reward,
        )
            .prop_map(
                |(id, priority, exclusive, threshold, channel, reward)| Offer {
                    id,
                    name: "n".into(),
                    active: true,
                    priority,
                    stacking: if exclusive {
                        Stacking::Exclusive
                    } else {
                        Stacking::Stackable
                    },
                    channels: channel.into_iter().map(String::from).collect(),
                    starts_at: None,
                    ends_at: None,
                    currency: Some("EUR".into()),
                    audience: None,
                    coupon: None,
                    min_subtotal_minor: threshold,
                    requires: Vec::new(),
                    reward,
                },
            )
    }

    proptest! {
        #[test]
        fn a_basket_is_never_priced_below_zero_and_the_order_of_offers_does_not_matter(
            offers in prop::collection::btree_map("[a-e]", arb_offer(), 0..5),
            lines in prop::collection::vec(("[abc]", 1i64..5, 0i64..5000), 1..5),
            channel in prop::sample::select(vec!["web", "pos", "app"]),
        ) {
            let offers: Vec<Offer> = offers.into_iter().map(|(id, mut o)| { o.id = id; o }).collect();
            let lines: Vec<(&str, i64, i64)> = lines.iter().map(|(s, q, p)| (s.as_str(), *q, *p)).collect();
            let mut b = basket(&lines);
            b.channel = channel.into();
            let e = evaluate(&offers, &b, &none());
            prop_assert!(e.total_minor >= 0);
            prop_assert_eq!(e.total_minor, e.subtotal_minor - e.discount_minor);
            prop_assert_eq!(e.discount_minor, e.applied.iter().map(|a| a.discount_minor).sum::<i64>());
            prop_assert_eq!(e.discount_minor, e.lines.iter().map(|l| l.discount_minor).sum::<i64>());
            for l in &e.lines {
                prop_assert!(l.discount_minor >= 0 && l.discount_minor <= l.unit_price_minor * l.quantity);
            }
            prop_assert_eq!(e.applied.len() + e.not_applied.len(), offers.len());
            let mut reversed = offers.clone();
            reversed.reverse();
            prop_assert_eq!(&evaluate(&reversed, &b, &none()), &e);
            // Without a channel-scoped offer, every channel gets the same price.
            if offers.iter().all(|o| o.channels.is_empty()) {
                let mut other = b.clone();
                other.channel = "call_centre".into();
                prop_assert_eq!(evaluate(&offers, &other, &none()).total_minor, e.total_minor);
            }
        }
    }
}
