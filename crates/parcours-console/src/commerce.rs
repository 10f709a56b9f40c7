//! Commerce: the stock of each location, an order with its allocation and returns, and a
//! loyalty member's ledger. Read-only pages over `parcours_service::commerce`.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use parcours_api::AppState;
use parcours_core::commerce::offers::{Offer, Reward, Stacking};
use parcours_core::time::parse_timestamp;
use parcours_service::commerce::{catalogue, loyalty, offers, orders, stock};
use serde::Deserialize;

use crate::pages::{blocking, render, see_other, service_problem, Chrome, Session};

/// Levels per page.
const PAGE: usize = 100;

/// An id as one segment of a console path.
fn segment(id: &str) -> String {
    let mut out = String::new();
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(crate) struct LevelRow {
    pub sku: String,
    pub on_hand: String,
    pub reserved: String,
    pub safety_stock: String,
    pub damaged: String,
    pub quality_control: String,
    pub available: String,
    pub short: bool,
}

#[derive(Template)]
#[template(path = "commerce.html")]
struct Stock {
    c: Chrome,
    /// (id in a URL, name, kind, selected)
    locations: Vec<(String, String, String, bool)>,
    location: String,
    location_url: String,
    rows: Vec<LevelRow>,
    next: Option<String>,
    offers: Vec<OfferRow>,
}

pub(crate) struct OfferRow {
    pub id: String,
    pub name: String,
    /// An i18n key: offer_active, offer_paused, offer_scheduled, offer_ended.
    pub state: &'static str,
    pub reward: String,
    pub conditions: String,
    pub priority: String,
    pub redemptions: String,
}

fn offer_row(tr: crate::Tr, o: &Offer, redemptions: u64, now: i64) -> OfferRow {
    let cur = o.currency.as_deref().unwrap_or("");
    let state = if !o.active {
        "offer_paused"
    } else if o.ends_at.is_some_and(|e| now >= e) {
        "offer_ended"
    } else if o.starts_at.is_some_and(|s| now < s) {
        "offer_scheduled"
    } else {
        "offer_active"
    };
    let on = |skus: &[String]| {
        if skus.is_empty() {
            String::new()
        } else {
            format!(" · {}", skus.join(", "))
        }
    };
    let reward = match &o.reward {
        Reward::PercentOff { percent, skus } => format!("{percent} % {}{}", tr.t("off"), on(skus)),
        Reward::AmountOff { amount_minor, skus } => {
            format!(
                "{} {}{}",
                money(tr, *amount_minor, cur),
                tr.t("off"),
                on(skus)
            )
        }
        Reward::Bundle { items, price_minor } => format!(
            "{} {} {}",
            items
                .iter()
                .map(|p| format!("{} × {}", p.quantity, p.sku))
                .collect::<Vec<_>>()
                .join(" + "),
            tr.t("for_price"),
            money(tr, *price_minor, cur)
        ),
        Reward::FreeItem { sku, quantity } => format!("{quantity} × {sku} {}", tr.t("free")),
    };
    let mut conditions = vec![if o.channels.is_empty() {
        tr.t("every_channel").to_string()
    } else {
        o.channels.join(", ")
    }];
    if let Some(c) = &o.coupon {
        let mut limits = Vec::new();
        if let Some(l) = c.limit_per_code {
            limits.push(format!("{} {}", tr.number(l), tr.t("per_code")));
        }
        if let Some(l) = c.limit_per_customer {
            limits.push(format!("{} {}", tr.number(l), tr.t("per_customer")));
        }
        let codes = if c.codes.len() > 3 {
            format!("{} …", c.codes[..3].join(", "))
        } else {
            c.codes.join(", ")
        };
        conditions.push(if limits.is_empty() {
            format!("{} {codes}", tr.t("coupon"))
        } else {
            format!("{} {codes} ({})", tr.t("coupon"), limits.join(", "))
        });
    }
    if let Some(t) = o.min_subtotal_minor {
        conditions.push(format!("{} {}", tr.t("from_subtotal"), money(tr, t, cur)));
    }
    if let Some(a) = &o.audience {
        conditions.push(format!("{} {a}", tr.t("audience_only")));
    }
    if !o.requires.is_empty() {
        conditions.push(
            o.requires
                .iter()
                .map(|p| format!("{} × {}", p.quantity, p.sku))
                .collect::<Vec<_>>()
                .join(" + "),
        );
    }
    if let (Some(s), Some(e)) = (o.starts_at, o.ends_at) {
        conditions.push(format!("{} → {}", tr.date(s), tr.date(e)));
    } else if let Some(e) = o.ends_at {
        conditions.push(format!("→ {}", tr.date(e)));
    } else if let Some(s) = o.starts_at {
        conditions.push(format!("{} →", tr.date(s)));
    }
    if o.stacking == Stacking::Exclusive {
        conditions.push(tr.t("exclusive").to_string());
    }
    OfferRow {
        id: o.id.clone(),
        name: o.name.clone(),
        state,
        reward,
        conditions: conditions.join(" · "),
        priority: o.priority.to_string(),
        redemptions: tr.number(redemptions),
    }
}

#[derive(Deserialize)]
pub(crate) struct StockQuery {
    location: Option<String>,
    after: Option<String>,
    order: Option<String>,
    card: Option<String>,
}

pub(crate) async fn page(
    State(state): State<Arc<AppState>>,
    session: Session,
    Query(q): Query<StockQuery>,
) -> Response {
    if let Some(o) = q.order.as_deref().map(str::trim).filter(|o| !o.is_empty()) {
        return see_other(&format!("/console/commerce/orders/{}", segment(o)));
    }
    if let Some(c) = q.card.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
        return see_other(&format!("/console/commerce/loyalty/{}", segment(c)));
    }
    let (store, actor, now) = (
        state.engine.store().clone(),
        session.actor(),
        state.engine.now(),
    );
    let tr = session.tr();
    let wanted = q.location.clone();
    let after = q.after.clone();
    let found = blocking(move || {
        let locations = catalogue::locations(store.as_ref(), &actor)?;
        let selected = wanted
            .filter(|w| locations.iter().any(|l| &l.id == w))
            .or_else(|| locations.first().map(|l| l.id.clone()));
        let levels = match &selected {
            Some(id) => stock::stock_at(
                store.as_ref(),
                &actor,
                id,
                after.as_deref(),
                Some(PAGE),
                now,
            )?,
            None => Vec::new(),
        };
        let offers = offers::list(store.as_ref(), &actor)?;
        Ok((locations, selected, levels, offers))
    })
    .await;
    match found {
        Ok((locations, selected, levels, offers)) => {
            let n = |v: i64| {
                if v < 0 {
                    format!("−{}", tr.number(v.unsigned_abs()))
                } else {
                    tr.number(v as u64)
                }
            };
            let location = selected.unwrap_or_default();
            render(Stock {
                c: session.chrome(),
                locations: locations
                    .iter()
                    .map(|l| {
                        (
                            segment(&l.id),
                            l.name.clone(),
                            l.kind.as_str().to_string(),
                            l.id == location,
                        )
                    })
                    .collect(),
                next: (levels.len() == PAGE)
                    .then(|| levels.last().map(|l| segment(&l.sku)))
                    .flatten(),
                location_url: segment(&location),
                rows: levels
                    .iter()
                    .map(|l| {
                        let q = &l.quantities;
                        LevelRow {
                            sku: l.sku.clone(),
                            on_hand: n(q.on_hand),
                            reserved: n(q.reserved),
                            safety_stock: n(q.safety_stock),
                            damaged: n(q.damaged),
                            quality_control: n(q.quality_control),
                            available: n(q.sellable()),
                            short: q.available() < 0,
                        }
                    })
                    .collect(),
                location,
                offers: offers
                    .iter()
                    .map(|v| offer_row(tr, &v.offer, v.redemptions, now))
                    .collect(),
            })
        }
        Err(e) => service_problem(session.chrome(), e),
    }
}

#[derive(Template)]
#[template(path = "commerce_order.html")]
struct OrderPage {
    c: Chrome,
    id: String,
    status: String,
    channel: String,
    created: String,
    total: String,
    fulfilment: String,
    deadline: String,
    customer: Vec<(String, String)>,
    /// The user id in a URL.
    customer_url: Option<String>,
    member: Option<String>,
    member_url: String,
    /// (SKU, quantity, unit price, discount)
    lines: Vec<(String, String, String, String)>,
    discount: String,
    /// (offer, its name, coupon, discount)
    offers: Vec<(String, String, String, String)>,
    /// (SKU, location, location in a URL, quantity)
    allocation: Vec<(String, String, String, String)>,
    /// (return id, location, what, refund, when)
    returns: Vec<(String, String, String, String, String)>,
}

fn money(tr: crate::Tr, minor: i64, currency: &str) -> String {
    let sign = if minor < 0 { "−" } else { "" };
    let m = minor.unsigned_abs();
    let (units, cents) = (tr.number(m / 100), m % 100);
    match tr.lang {
        crate::Lang::En => format!("{sign}{units}.{cents:02} {currency}"),
        crate::Lang::Fr => format!("{sign}{units},{cents:02} {currency}"),
    }
}

pub(crate) async fn order(
    State(state): State<Arc<AppState>>,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    let (store, actor, now) = (
        state.engine.store().clone(),
        session.actor(),
        state.engine.now(),
    );
    let tr = session.tr();
    match blocking(move || orders::order_now(store.as_ref(), &actor, &id, now)).await {
        Ok(o) => {
            let date = |s: &str| parse_timestamp(s).map(|t| tr.date(t)).unwrap_or_default();
            let mut customer = Vec::new();
            for (k, v) in [
                ("user_id", &o.customer.user_id),
                ("anonymous_id", &o.customer.anonymous_id),
                ("email", &o.customer.email),
                ("loyalty_card", &o.customer.loyalty_card),
            ] {
                if let Some(v) = v {
                    customer.push((k.to_string(), v.clone()));
                }
            }
            let fulfilment = match &o.fulfilment {
                None => format!("{} · {}", tr.t("sold_on_the_spot"), o.location),
                Some(f) if f["kind"] == "pickup" => format!(
                    "{} · {}",
                    tr.t("click_and_collect"),
                    f["name"].as_str().unwrap_or(&o.location)
                ),
                Some(_) => tr.t("delivery").to_string(),
            };
            render(OrderPage {
                c: session.chrome(),
                status: o.status.clone(),
                channel: o.channel.clone(),
                created: date(&o.created_at),
                total: money(tr, o.total_minor, &o.currency),
                fulfilment,
                deadline: o.pickup_deadline.as_deref().map(date).unwrap_or_default(),
                customer,
                customer_url: o.customer.user_id.as_deref().map(segment),
                member_url: o.member.as_deref().map(segment).unwrap_or_default(),
                member: o.member.clone(),
                lines: o
                    .lines
                    .iter()
                    .map(|l| {
                        (
                            l.sku.clone(),
                            tr.number(l.quantity.max(0) as u64),
                            money(tr, l.unit_price_minor.unwrap_or(0), &o.currency),
                            if l.discount_minor == 0 {
                                String::new()
                            } else {
                                money(tr, -l.discount_minor, &o.currency)
                            },
                        )
                    })
                    .collect(),
                discount: if o.discount_minor == 0 {
                    String::new()
                } else {
                    money(tr, -o.discount_minor, &o.currency)
                },
                offers: o
                    .offers
                    .iter()
                    .map(|a| {
                        (
                            a.offer.clone(),
                            a.name.clone(),
                            a.coupon.clone().unwrap_or_default(),
                            money(tr, -a.discount_minor, &o.currency),
                        )
                    })
                    .collect(),
                allocation: o
                    .allocation
                    .iter()
                    .map(|l| {
                        (
                            l.sku.clone(),
                            l.location.clone(),
                            segment(&l.location),
                            tr.number(l.quantity.max(0) as u64),
                        )
                    })
                    .collect(),
                returns: o
                    .returns
                    .iter()
                    .map(|r| {
                        (
                            r.return_id.clone(),
                            r.location.clone(),
                            r.lines
                                .iter()
                                .map(|l| format!("{} × {}", l.quantity, l.sku))
                                .collect::<Vec<_>>()
                                .join(", "),
                            money(tr, r.refund_minor, &o.currency),
                            date(&r.at),
                        )
                    })
                    .collect(),
                id: o.id,
            })
        }
        Err(e) => service_problem(session.chrome(), e),
    }
}

#[derive(Template)]
#[template(path = "commerce_member.html")]
struct MemberPage {
    c: Chrome,
    card: String,
    tier: String,
    /// (label key, points)
    balance: Vec<(&'static str, String)>,
    /// (order, order in a URL, points, remaining, state, earned, expires)
    lots: Vec<(String, String, String, String, &'static str, String, String)>,
    /// (what, key, points, when)
    entries: Vec<(&'static str, String, String, String)>,
}

pub(crate) async fn member(
    State(state): State<Arc<AppState>>,
    session: Session,
    Path(card): Path<String>,
) -> Response {
    use parcours_core::commerce::loyalty::Entry;
    let (store, actor, now) = (
        state.engine.store().clone(),
        session.actor(),
        state.engine.now(),
    );
    let tr = session.tr();
    match blocking(move || loyalty::account(store.as_ref(), &actor, &card, now)).await {
        Ok(a) => {
            let n = |v: i64| tr.number(v.max(0) as u64);
            let b = &a.balance;
            render(MemberPage {
                c: session.chrome(),
                tier: a.tier.clone().unwrap_or_default(),
                balance: vec![
                    ("pts_active", n(b.active)),
                    ("pts_pending", n(b.pending)),
                    ("pts_used", n(b.used)),
                    ("pts_expired", n(b.expired)),
                    ("pts_earned", n(b.earned)),
                    ("pts_cancelled", n(b.cancelled)),
                ],
                lots: a
                    .lots
                    .iter()
                    .map(|l| {
                        let state = if l.pending_until.is_some_and(|p| now < p) {
                            "pts_pending"
                        } else if l.expires_at.is_some_and(|e| e <= now) {
                            "pts_expired"
                        } else {
                            "pts_active"
                        };
                        (
                            l.order.clone(),
                            segment(&l.order),
                            n(l.points),
                            n(l.remaining()),
                            state,
                            tr.date(l.earned_at),
                            l.expires_at.map(|e| tr.date(e)).unwrap_or_default(),
                        )
                    })
                    .collect(),
                entries: a
                    .entries
                    .iter()
                    .rev()
                    .map(|e| match e {
                        Entry::Earn {
                            order, points, at, ..
                        } => (
                            "entry_earn",
                            order.clone(),
                            format!("+{}", n(*points)),
                            tr.date(*at),
                        ),
                        Entry::Burn {
                            redemption,
                            points,
                            at,
                            ..
                        } => (
                            "entry_burn",
                            redemption.clone(),
                            format!("−{}", n(*points)),
                            tr.date(*at),
                        ),
                        Entry::Refund { redemption, at } => (
                            "entry_refund",
                            redemption.clone(),
                            String::new(),
                            tr.date(*at),
                        ),
                        Entry::Return {
                            order, points, at, ..
                        } => (
                            "entry_return",
                            order.clone(),
                            format!("−{}", n(*points)),
                            tr.date(*at),
                        ),
                    })
                    .collect(),
                card: a.member,
            })
        }
        Err(e) => service_problem(session.chrome(), e),
    }
}
