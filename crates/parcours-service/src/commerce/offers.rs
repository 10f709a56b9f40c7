//! Offers: the promotion rules every channel prices a basket with, and the evaluation that
//! says which applied and why the others did not.
//!
//! A sale or an order prices its basket here and commits the offers it used with it; the
//! store counts each coupon's uses again under the offer's lock, so a limit holds when two
//! tills take a code's last use at once (the second sale is refused with `offer_used_up` and
//! nothing of it is recorded: price the basket again).

use std::collections::{BTreeMap, BTreeSet};

use parcours_core::commerce::offers::{
    self, check_code, normalize_code, Basket, BasketLine, Evaluation, Offer, Uses,
};
use parcours_core::identifier::Identifier;
use parcours_core::time::Millis;
use parcours_store::Store;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::loyalty::CARD;
use super::read;
use super::sales::{check_customer, member_for, priced, Customer, SaleLine};
use crate::{Actor, ServiceError};

/// The most coupon codes the offers of one workspace list in all.
pub const MAX_WORKSPACE_CODES: usize = 50_000;

/// An offer with how often it was used.
#[derive(Debug, Clone, Serialize)]
pub struct OfferView {
    #[serde(flatten)]
    pub offer: Offer,
    /// Orders that used it.
    pub redemptions: u64,
}

/// Creates or replaces an offer (`id` is the path's).
pub fn put(
    store: &dyn Store,
    actor: &Actor,
    id: &str,
    mut body: Value,
    now: Millis,
) -> Result<OfferView, ServiceError> {
    actor.require_admin()?;
    if let Value::Object(o) = &mut body {
        match o.get("id") {
            None => {
                o.insert("id".into(), id.into());
            }
            Some(given) if given != id => {
                return Err(ServiceError::invalid(
                    "invalid_offer",
                    format!("the body's id {given} is not the path's {id}"),
                ))
            }
            Some(_) => {}
        }
    }
    let mut offer: Offer = read("invalid_offer", "the offer", body)?;
    offer.check()?;
    // Stored as they are compared.
    if let Some(c) = offer.coupon.as_mut() {
        for code in c.codes.iter_mut() {
            *code = normalize_code(code);
        }
    }
    let ws = &actor.workspace;
    let existing = all(store, ws)?;
    if existing.len() >= offers::MAX_OFFERS && !existing.iter().any(|o| o.id == offer.id) {
        return Err(ServiceError::invalid(
            "too_many_offers",
            format!(
                "a workspace holds at most {} offers: switch off or delete some",
                offers::MAX_OFFERS
            ),
        ));
    }
    // Every basket reads every offer: the codes of a workspace are bounded too.
    let codes = |o: &Offer| o.coupon.as_ref().map_or(0, |c| c.codes.len());
    let total: usize = existing
        .iter()
        .filter(|o| o.id != offer.id)
        .map(codes)
        .sum::<usize>()
        + codes(&offer);
    if total > MAX_WORKSPACE_CODES {
        return Err(ServiceError::invalid(
            "too_many_offers",
            format!(
                "the offers of a workspace list at most {MAX_WORKSPACE_CODES} coupon codes in all; these would list {total}"
            ),
        ));
    }
    let doc = serde_json::to_string(&offer).expect("an offer serialises");
    store.put_offer(ws, &offer.id, &doc, now)?;
    view(store, ws, offer)
}

fn view(store: &dyn Store, ws: &str, offer: Offer) -> Result<OfferView, ServiceError> {
    let redemptions = store.offer_uses(ws, &offer.id, None, None)?.total;
    Ok(OfferView { offer, redemptions })
}

fn all(store: &dyn Store, ws: &str) -> Result<Vec<Offer>, ServiceError> {
    store
        .offers(ws)?
        .iter()
        .map(|b| {
            serde_json::from_str(b).map_err(|e| {
                ServiceError::Store(parcours_store::StoreError::Corrupt(e.to_string()))
            })
        })
        .collect()
}

/// Every offer of the workspace, by id, with its redemptions.
pub fn list(store: &dyn Store, actor: &Actor) -> Result<Vec<OfferView>, ServiceError> {
    all(store, &actor.workspace)?
        .into_iter()
        .map(|o| view(store, &actor.workspace, o))
        .collect()
}

pub fn get(store: &dyn Store, actor: &Actor, id: &str) -> Result<OfferView, ServiceError> {
    let offer = all(store, &actor.workspace)?
        .into_iter()
        .find(|o| o.id == id)
        .ok_or_else(|| ServiceError::NotFound(format!("offer {id}")))?;
    view(store, &actor.workspace, offer)
}

/// Deletes an offer; the orders that used it keep saying so.
pub fn delete(store: &dyn Store, actor: &Actor, id: &str) -> Result<(), ServiceError> {
    actor.require_admin()?;
    if store.delete_offer(&actor.workspace, id)? {
        Ok(())
    } else {
        Err(ServiceError::NotFound(format!("offer {id}")))
    }
}

/// Checks and normalises the coupon codes a basket carries.
pub(super) fn coupons(given: &[String]) -> Result<Vec<String>, ServiceError> {
    if given.len() > offers::MAX_BASKET_COUPONS {
        return Err(ServiceError::invalid(
            "invalid_coupon",
            format!(
                "a basket carries at most {} coupon codes",
                offers::MAX_BASKET_COUPONS
            ),
        ));
    }
    let mut out = Vec::new();
    for c in given {
        check_code(c)?;
        let n = normalize_code(c);
        if !out.contains(&n) {
            out.push(n);
        }
    }
    Ok(out)
}

/// Who a customer is for per-customer limits: her loyalty card, else her user id, else her
/// email.
fn customer_key(customer: &Customer, member: Option<&str>) -> Option<String> {
    if let Some(m) = member {
        return Some(format!("card:{m}"));
    }
    if let Some(u) = &customer.user_id {
        return Some(format!("user:{u}"));
    }
    customer
        .email
        .as_deref()
        .and_then(parcours_core::identifier::normalize_email)
        .map(|e| format!("email:{e}"))
}

/// The audiences of the customer's profile (none if she has no profile yet).
fn audiences_of(
    store: &dyn Store,
    ws: &str,
    customer: &Customer,
    member: Option<&str>,
) -> Result<BTreeSet<String>, ServiceError> {
    let mut ids = Vec::new();
    if let Some(u) = &customer.user_id {
        ids.push(Identifier::new("user_id", u.as_str()));
    }
    if let Some(e) = customer
        .email
        .as_deref()
        .and_then(parcours_core::identifier::normalize_email)
    {
        ids.push(Identifier::new("email", e.as_str()));
    }
    if let Some(m) = member.or(customer.loyalty_card.as_deref()) {
        ids.push(Identifier::new(CARD, m));
    }
    if let Some(a) = &customer.anonymous_id {
        ids.push(Identifier::new("anonymous_id", a.as_str()));
    }
    for id in ids {
        if let Some(profile) = store.lookup(ws, &id)? {
            return Ok(store
                .memberships(ws, &profile)?
                .into_iter()
                .map(|m| m.audience_id)
                .collect());
        }
    }
    Ok(BTreeSet::new())
}

/// Prices priced lines with the workspace's offers for this customer, channel and codes.
#[allow(clippy::too_many_arguments)]
pub(super) fn price(
    store: &dyn Store,
    ws: &str,
    channel: &str,
    currency: &str,
    customer: &Customer,
    member: Option<&str>,
    lines: &[SaleLine],
    codes: Vec<String>,
    now: Millis,
) -> Result<Evaluation, ServiceError> {
    let offers = all(store, ws)?;
    let needs_audience = offers.iter().any(|o| o.audience.is_some());
    let basket = Basket {
        channel: channel.to_string(),
        currency: currency.to_string(),
        at: now,
        lines: lines
            .iter()
            .map(|l| BasketLine {
                sku: l.sku.clone(),
                quantity: l.quantity,
                unit_price_minor: l.unit_price_minor.unwrap_or(0),
            })
            .collect(),
        customer: customer_key(customer, member),
        audiences: if needs_audience {
            audiences_of(store, ws, customer, member)?
        } else {
            BTreeSet::new()
        },
        coupons: codes,
    };
    let mut uses = BTreeMap::new();
    for o in &offers {
        if let Some(code) = o.code_in(&basket.coupons) {
            let u = store.offer_uses(ws, &o.id, Some(code), basket.customer.as_deref())?;
            uses.insert(
                o.id.clone(),
                Uses {
                    code: u.code,
                    customer: u.customer,
                },
            );
        }
    }
    Ok(offers::evaluate(&offers, &basket, &uses))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EvaluateBody {
    #[serde(default = "super::orders::web")]
    channel: String,
    #[serde(default = "super::orders::euro")]
    currency: String,
    #[serde(default)]
    customer: Customer,
    lines: Vec<SaleLine>,
    #[serde(default)]
    coupons: Vec<String>,
}

/// Prices a basket without buying it (`{"channel"?: "web", "currency"?: "EUR", "customer"?,
/// "lines": [{"sku", "quantity", "unit_price_minor"?}], "coupons"?: [..]}`): the subtotal,
/// the discount of each offer that applied, the total, and why each other offer did not
/// apply. Nothing is redeemed.
pub fn evaluate(
    store: &dyn Store,
    actor: &Actor,
    body: Value,
    now: Millis,
) -> Result<Evaluation, ServiceError> {
    let b: EvaluateBody = read("invalid_basket", "the basket", body)?;
    parcours_core::commerce::check_id("sales channel", "invalid_channel", &b.channel)?;
    check_customer(&b.customer)?;
    let codes = coupons(&b.coupons)?;
    let p = priced(store, actor, &b.channel, &b.currency, &b.lines)?;
    let member = member_for(store, &actor.workspace, &b.customer)?;
    price(
        store,
        &actor.workspace,
        &b.channel,
        &b.currency,
        &b.customer,
        member.as_deref(),
        &p.lines,
        codes,
        now,
    )
}
