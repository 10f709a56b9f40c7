//! Sales taken at a till (or any channel that sells on the spot) and returns taken anywhere:
//! each one order, its stock movements, its loyalty points and the event on the customer's
//! timeline, committed together.
//!
//! A sale is recorded once per order id: the same sale sent again, from the till or replayed
//! from another channel, moves no stock, earns no point and tells no event twice.

use parcours_core::commerce::inventory::{self, Adjustment, Change, Line, StockState};
use parcours_core::commerce::loyalty::{Entry, Outcome};
use parcours_core::commerce::{check_id, check_quantity};
use parcours_core::spec::{check_event, Checked, Edge};
use parcours_core::time::{format_timestamp, Millis};
use parcours_core::Channel;
use parcours_store::{CommerceWrite, Committed, IngestBatch, Movement, OrderRecord, Store};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::loyalty::{self, member_of};
use super::read;
use crate::{Actor, ServiceError};

/// The largest total an order may have, in minor units (ten thousand billion).
pub const MAX_TOTAL: i64 = 1_000_000_000_000_000;

/// The source of the events commerce writes into the log.
pub const COMMERCE_SOURCE: &str = "parcours:commerce";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Customer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anonymous_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loyalty_card: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaleLine {
    pub sku: String,
    pub quantity: i64,
    /// The price of one, in minor units; the catalogue's price on the channel when left out.
    #[serde(default)]
    pub unit_price_minor: Option<i64>,
    /// What offers took off the line (set by the offer engine, never given).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub discount_minor: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SaleBody {
    order_id: String,
    location: String,
    #[serde(default = "pos")]
    channel: String,
    #[serde(default = "euro")]
    currency: String,
    #[serde(default)]
    customer: Customer,
    lines: Vec<SaleLine>,
    #[serde(default)]
    payment_method: Option<String>,
    /// Coupon codes the customer gives.
    #[serde(default)]
    coupons: Vec<String>,
}

fn pos() -> String {
    "pos".into()
}
fn euro() -> String {
    "EUR".into()
}

/// An order as its document keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub channel: String,
    pub location: String,
    pub status: String,
    pub currency: String,
    pub customer: Customer,
    pub lines: Vec<SaleLine>,
    /// What the customer pays: the lines' prices less the offers' discount.
    pub total_minor: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub discount_minor: i64,
    /// The offers that applied, with their discount and the coupon code that unlocked them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offers: Vec<parcours_core::commerce::offers::Applied>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_method: Option<String>,
    #[serde(default)]
    pub returns: Vec<ReturnRecord>,
    pub created_at: String,
    /// How an order of a distance channel reaches the customer: `{"kind": "pickup",
    /// "location"}` or `{"kind": "ship"}` (none for a sale on the spot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fulfilment: Option<Value>,
    /// Where its units are held: (SKU, location, quantity) per line of stock.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allocation: Vec<Line>,
    /// Until when a click & collect order waits at the shop once it is ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pickup_deadline: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReturnRecord {
    pub return_id: String,
    pub location: String,
    pub lines: Vec<SaleLine>,
    pub refund_minor: i64,
    pub at: String,
}

/// What recording a sale or a return did.
#[derive(Debug, Clone, Serialize)]
pub struct Recorded {
    pub order: Order,
    /// `false`: the order (or the return) was recorded already; nothing changed.
    pub created: bool,
    pub movements: Vec<Movement>,
    /// Points earned (or taken back by a return); 0 when none.
    pub points: i64,
    /// Until when they are pending (the return window).
    pub pending_until: Option<String>,
}

impl Recorded {
    /// The order as recorded before: nothing changed.
    pub(super) fn already(order: Order) -> Result<Recorded, ServiceError> {
        Ok(Recorded {
            order,
            created: false,
            movements: Vec::new(),
            points: 0,
            pending_until: None,
        })
    }
}

fn channel_of(sales_channel: &str) -> Channel {
    Channel::parse(sales_channel).unwrap_or(Channel::Server)
}

/// An event of the order's customer on her timeline, ready for the log.
pub(super) fn order_event(
    ws: &str,
    name: &str,
    message_id: String,
    order: &Order,
    mut properties: Value,
    now: Millis,
) -> Result<IngestBatch, ServiceError> {
    if let Value::Object(p) = &mut properties {
        p.insert("order_id".into(), order.id.clone().into());
        p.insert("currency".into(), order.currency.clone().into());
        p.insert("channel".into(), order.channel.clone().into());
        p.insert("store_id".into(), order.location.clone().into());
    }
    customer_event(
        ws,
        name,
        message_id,
        &order.customer,
        // An anonymous till sale is its own visitor, under its order id.
        &format!("order-{}", order.id),
        Some(channel_of(&order.channel)),
        properties,
        now,
    )
}

/// A commerce event on a customer's timeline (her user id, else her anonymous id, else
/// `fallback` as anonymous id; her email and loyalty card as traits), checked as any event.
#[allow(clippy::too_many_arguments)]
pub(super) fn customer_event(
    ws: &str,
    name: &str,
    message_id: String,
    customer: &Customer,
    fallback: &str,
    channel: Option<Channel>,
    properties: Value,
    now: Millis,
) -> Result<IngestBatch, ServiceError> {
    let mut traits = serde_json::Map::new();
    if let Some(card) = &customer.loyalty_card {
        traits.insert(loyalty::CARD.into(), card.clone().into());
    }
    if let Some(email) = &customer.email {
        traits.insert("email".into(), email.clone().into());
    }
    let mut event = json!({
        "type": "track",
        "event": name,
        "messageId": message_id,
        "timestamp": format_timestamp(now),
        "properties": properties,
        "context": {"traits": traits, "library": {"name": "parcours-commerce"}},
    });
    match (&customer.user_id, &customer.anonymous_id) {
        (Some(u), _) => event["userId"] = u.clone().into(),
        (None, Some(a)) => event["anonymousId"] = a.clone().into(),
        (None, None) => event["anonymousId"] = fallback.into(),
    }
    let raw = serde_json::value::to_raw_value(&event).expect("an event always serialises");
    let edge = Edge::single(now, channel, None);
    let fallback_id = event["messageId"].as_str().unwrap_or_default().to_string();
    match check_event(&raw, &edge, &mut |_| fallback_id.clone()) {
        Checked::Accepted(e) => Ok(IngestBatch {
            workspace_id: ws.to_string(),
            source_id: COMMERCE_SOURCE.into(),
            events: vec![e],
            quarantined: Vec::new(),
        }),
        Checked::Quarantined(q) => Err(ServiceError::invalid(
            "invalid_customer",
            format!("the event could not be recorded: {}", q.violation.message()),
        )),
    }
}

pub(super) fn money(minor: i64) -> f64 {
    minor as f64 / 100.0
}

pub(super) fn check_customer(c: &Customer) -> Result<(), ServiceError> {
    for (what, v) in [
        ("user id", &c.user_id),
        ("anonymous id", &c.anonymous_id),
        ("loyalty card", &c.loyalty_card),
    ] {
        if let Some(v) = v {
            check_id(what, "invalid_customer", v)?;
        }
    }
    if let Some(e) = &c.email {
        if parcours_core::identifier::normalize_email(e).is_none() {
            return Err(ServiceError::invalid(
                "invalid_customer",
                format!("{e:?} is not an email address"),
            ));
        }
    }
    Ok(())
}

/// Records a sale made on the spot (`{"order_id", "location", "channel"?: "pos",
/// "currency"?: "EUR", "customer"?: {"user_id", "anonymous_id", "email", "loyalty_card"},
/// "lines": [{"sku", "quantity", "unit_price_minor"?}], "payment_method"?}`): the goods
/// leave the location's stock (refused whole if any is not there to sell:
/// `insufficient_stock`), the member earns her points (pending for the return window), and
/// `Order Completed` lands on her timeline.
pub fn record_sale(
    store: &dyn Store,
    actor: &Actor,
    body: Value,
    now: Millis,
) -> Result<Recorded, ServiceError> {
    actor.require_admin()?;
    let b: SaleBody = read("invalid_sale", "the sale", body)?;
    check_id("order id", "invalid_order", &b.order_id)?;
    check_id("sales channel", "invalid_channel", &b.channel)?;
    check_customer(&b.customer)?;
    let ws = &actor.workspace;
    if let Some(existing) = store.order(ws, &b.order_id)? {
        return Recorded::already(parse_order(&existing)?);
    }
    let codes = super::offers::coupons(&b.coupons)?;
    let Priced {
        lines,
        products,
        items,
        ..
    } = priced(store, actor, &b.channel, &b.currency, &b.lines)?;
    let stock_lines: Vec<Line> = lines
        .iter()
        .map(|l| Line {
            sku: l.sku.clone(),
            location: b.location.clone(),
            quantity: l.quantity,
        })
        .collect();
    super::catalogue::location(store, actor, &b.location).map_err(|_| {
        ServiceError::invalid(
            "unknown_location",
            format!("{} is not a location", b.location),
        )
    })?;
    let movements: Vec<Adjustment> =
        inventory::demand(&inventory::expand_kits(&stock_lines, &items))?
            .into_iter()
            .map(|((sku, location), q)| Adjustment {
                sku,
                location,
                state: StockState::OnHand,
                change: Change::By(-q),
                reason: "sale".into(),
                reference: Some(b.order_id.clone()),
            })
            .collect();
    let member = member_for(store, ws, &b.customer)?;
    let deal = discounted(
        store,
        ws,
        &b.channel,
        &b.currency,
        &b.customer,
        member.as_deref(),
        lines,
        codes,
        now,
    )?;
    let total = deal.total;
    let program = loyalty::program(store, actor)?;
    let earn = member
        .as_ref()
        .and_then(|_| program.earn(&b.order_id, total, &b.channel, now));
    let order = Order {
        id: b.order_id.clone(),
        channel: b.channel.clone(),
        location: b.location.clone(),
        status: "completed".into(),
        currency: b.currency.clone(),
        customer: b.customer.clone(),
        lines: deal.lines,
        total_minor: total,
        discount_minor: deal.discount,
        offers: deal.offers,
        member: member.clone(),
        payment_method: b.payment_method.clone(),
        returns: Vec::new(),
        created_at: format_timestamp(now),
        fulfilment: None,
        allocation: Vec::new(),
        pickup_deadline: None,
    };
    let event = order_event(
        ws,
        "Order Completed",
        format!("order-completed:{}", order.id),
        &order,
        with_offers(
            json!({"total": money(total), "revenue": money(total), "products": products,
                   "payment_method": b.payment_method, "loyalty_points": earn.as_ref().map(points_of)}),
            &order,
        ),
        now,
    )?;
    let write = CommerceWrite {
        workspace_id: ws.clone(),
        order: Some(record(&order, now, now)),
        movements,
        loyalty: match (&member, &earn) {
            (Some(m), Some(e)) => vec![(m.clone(), e.clone())],
            _ => Vec::new(),
        },
        events: Some(event),
        redemptions: deal.redemptions,
        dedup_since: now - parcours_core::time::DAY,
        ..CommerceWrite::default()
    };
    finish(store, &write, order, earn, now)
}

/// A basket's lines with the offers' discounts.
pub(super) struct Discounted {
    pub lines: Vec<SaleLine>,
    pub discount: i64,
    pub total: i64,
    pub offers: Vec<parcours_core::commerce::offers::Applied>,
    pub redemptions: Vec<parcours_core::commerce::offers::Redemption>,
}

/// Prices priced lines with the workspace's offers. Every coupon code given must unlock an
/// offer that applies: otherwise the sale is refused (`coupon_not_applied`, with the
/// reason), rather than charged at a price the customer was not told.
#[allow(clippy::too_many_arguments)]
pub(super) fn discounted(
    store: &dyn Store,
    ws: &str,
    channel: &str,
    currency: &str,
    customer: &Customer,
    member: Option<&str>,
    lines: Vec<SaleLine>,
    codes: Vec<String>,
    now: Millis,
) -> Result<Discounted, ServiceError> {
    let e = super::offers::price(
        store,
        ws,
        channel,
        currency,
        customer,
        member,
        &lines,
        codes.clone(),
        now,
    )?;
    for code in &codes {
        if e.applied.iter().any(|a| a.coupon.as_ref() == Some(code)) {
            continue;
        }
        let why = if e.unknown_coupons.contains(code) {
            format!("the coupon {code} is not known")
        } else {
            let reasons: Vec<String> = e
                .not_applied
                .iter()
                .map(|n| format!("{}: {}", n.offer, n.message))
                .collect();
            format!("the coupon {code} does not apply ({})", reasons.join("; "))
        };
        return Err(ServiceError::Unprocessable {
            code: "coupon_not_applied",
            message: format!("{why}; take it off the basket or change the basket"),
        });
    }
    let lines = lines
        .into_iter()
        .zip(&e.lines)
        .map(|(mut l, d)| {
            l.discount_minor = d.discount_minor;
            l
        })
        .collect();
    Ok(Discounted {
        lines,
        discount: e.discount_minor,
        total: e.total_minor,
        offers: e.applied,
        redemptions: e.redemptions,
    })
}

/// An order event's properties with the order's offers, as the Segment spec names them
/// (`subtotal`, `discount`, `coupon`).
pub(super) fn with_offers(mut properties: Value, order: &Order) -> Value {
    if !order.offers.is_empty() {
        properties["subtotal"] = money(order.total_minor + order.discount_minor).into();
        properties["discount"] = money(order.discount_minor).into();
        let codes: Vec<&str> = order
            .offers
            .iter()
            .filter_map(|a| a.coupon.as_deref())
            .collect();
        if !codes.is_empty() {
            properties["coupon"] = codes.join(",").into();
        }
        properties["offers"] = order
            .offers
            .iter()
            .map(|a| Value::from(a.offer.clone()))
            .collect();
    }
    properties
}

/// A basket's lines with their prices (given, or the catalogue's on the channel; their total
/// checked) and its items.
pub(super) struct Priced {
    pub lines: Vec<SaleLine>,
    pub products: Vec<Value>,
    pub items: std::collections::BTreeMap<String, parcours_core::commerce::catalogue::Item>,
}

pub(super) fn priced(
    store: &dyn Store,
    actor: &Actor,
    channel: &str,
    currency: &str,
    given: &[SaleLine],
) -> Result<Priced, ServiceError> {
    if given.is_empty() || given.len() > inventory::MAX_LINES {
        return Err(ServiceError::invalid(
            "invalid_lines",
            format!(
                "give 1 to {} lines; got {}",
                inventory::MAX_LINES,
                given.len()
            ),
        ));
    }
    let mut total = 0i64;
    let mut lines = Vec::with_capacity(given.len());
    let mut products = Vec::with_capacity(given.len());
    let mut items = std::collections::BTreeMap::new();
    for l in given {
        check_quantity(l.quantity)?;
        if l.discount_minor != 0 {
            return Err(ServiceError::invalid(
                "invalid_lines",
                "a line's discount comes from the offers: leave discount_minor out",
            ));
        }
        let item = super::catalogue::item(store, actor, &l.sku).map_err(|_| {
            ServiceError::invalid("unknown_item", format!("{} is not in the catalogue", l.sku))
        })?;
        let price = match l.unit_price_minor {
            Some(p) if (0..=parcours_core::commerce::MAX_QUANTITY).contains(&p) => p,
            Some(p) => {
                return Err(ServiceError::invalid(
                    "invalid_price",
                    format!("a unit price is 0 or more minor units; got {p}"),
                ))
            }
            None => item.price(channel, currency).ok_or_else(|| {
                ServiceError::invalid(
                    "missing_price",
                    format!(
                        "{} has no {currency} price on {channel}: give unit_price_minor",
                        l.sku
                    ),
                )
            })?,
        };
        total = price
            .checked_mul(l.quantity)
            .and_then(|line| total.checked_add(line))
            .filter(|t| *t <= MAX_TOTAL)
            .ok_or_else(|| {
                ServiceError::invalid(
                    "invalid_price",
                    format!("an order's total is at most {MAX_TOTAL} minor units"),
                )
            })?;
        products.push(
            json!({"sku": l.sku, "name": item.name, "price": money(price), "quantity": l.quantity}),
        );
        lines.push(SaleLine {
            sku: l.sku.clone(),
            quantity: l.quantity,
            unit_price_minor: Some(price),
            discount_minor: 0,
        });
        items.insert(item.sku.clone(), item);
    }
    Ok(Priced {
        lines,
        products,
        items,
    })
}

/// The loyalty member of a customer: her card, or the card of the profile her user id or
/// email belongs to.
pub(super) fn member_for(
    store: &dyn Store,
    ws: &str,
    customer: &Customer,
) -> Result<Option<String>, ServiceError> {
    let mut others = Vec::new();
    if let Some(u) = &customer.user_id {
        others.push(("user_id", u.clone()));
    }
    if let Some(e) = customer
        .email
        .as_deref()
        .and_then(parcours_core::identifier::normalize_email)
    {
        others.push(("email", e));
    }
    let others: Vec<(&str, &str)> = others.iter().map(|(k, v)| (*k, v.as_str())).collect();
    member_of(store, ws, customer.loyalty_card.as_deref(), &others)
}

pub(super) fn points_of(e: &Entry) -> i64 {
    match e {
        Entry::Earn { points, .. } | Entry::Burn { points, .. } | Entry::Return { points, .. } => {
            *points
        }
        Entry::Refund { .. } => 0,
    }
}

pub(super) fn record(order: &Order, created_at: Millis, now: Millis) -> OrderRecord {
    OrderRecord {
        id: order.id.clone(),
        channel: order.channel.clone(),
        status: order.status.clone(),
        member: order.member.clone(),
        body: serde_json::to_string(order).expect("an order serialises"),
        created_at,
        updated_at: now,
        // A ready click & collect order is due at its deadline (`Order Not Collected`).
        due_at: (order.status == "ready_for_pickup")
            .then(|| {
                order
                    .pickup_deadline
                    .as_deref()
                    .and_then(parcours_core::time::parse_timestamp)
            })
            .flatten(),
    }
}

pub(super) fn parse_order(r: &OrderRecord) -> Result<Order, ServiceError> {
    serde_json::from_str(&r.body)
        .map_err(|e| ServiceError::Store(parcours_store::StoreError::Corrupt(e.to_string())))
}

pub(super) fn finish(
    store: &dyn Store,
    write: &CommerceWrite,
    order: Order,
    entry: Option<Entry>,
    now: Millis,
) -> Result<Recorded, ServiceError> {
    match store.commit_commerce(write, now)? {
        Committed::Done {
            movements, loyalty, ..
        } => {
            let applied = matches!(loyalty.first(), Some(Outcome::Applied { .. }));
            let (points, pending_until) = match (&entry, applied) {
                (
                    Some(Entry::Earn {
                        points,
                        pending_until,
                        ..
                    }),
                    true,
                ) => (*points, pending_until.map(format_timestamp)),
                (Some(Entry::Return { .. }), true) => match loyalty.first() {
                    Some(Outcome::Applied { lots }) => {
                        (-lots.iter().map(|(_, n)| n).sum::<i64>(), None)
                    }
                    _ => (0, None),
                },
                _ => (0, None),
            };
            Ok(Recorded {
                order,
                created: true,
                movements,
                points,
                pending_until,
            })
        }
        Committed::OrderState(existing) => Recorded::already(parse_order(&existing)?),
        Committed::Short(shortages) => Err(ServiceError::OutOfStock { shortages }),
        Committed::ReferenceTaken(_) => Err(ServiceError::Conflict {
            code: "reference_taken",
            message: format!(
                "stock is held under {} already",
                write.order.as_ref().map_or("", |o| o.id.as_str())
            ),
        }),
        Committed::NotHeld(_) => Err(ServiceError::Conflict {
            code: "not_held",
            message: "the order holds no stock any more (released or past its pickup deadline)"
                .into(),
        }),
        Committed::Refused(r) => Err(ServiceError::Unprocessable {
            code: r.code,
            message: r.message,
        }),
        Committed::Told => Err(ServiceError::Conflict {
            code: "order_busy",
            message: "the write was told already".into(),
        }),
        Committed::OfferUsedUp {
            offer,
            per_customer,
        } => Err(ServiceError::Conflict {
            code: "offer_used_up",
            message: format!(
                "the offer {offer} reached its limit {} since the basket was priced: nothing was recorded; price the basket again",
                if per_customer { "for this customer" } else { "for this code" }
            ),
        }),
    }
}

/// An order with its returns.
pub fn order(store: &dyn Store, actor: &Actor, id: &str) -> Result<Order, ServiceError> {
    let r = store
        .order(&actor.workspace, id)?
        .ok_or_else(|| ServiceError::NotFound(format!("order {id}")))?;
    parse_order(&r)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReturnBody {
    return_id: String,
    /// Where the goods came back: they go back into its stock.
    location: String,
    lines: Vec<ReturnLine>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReturnLine {
    sku: String,
    quantity: i64,
}

/// Takes goods of an order back, in any location (`{"return_id", "location", "lines":
/// [{"sku", "quantity"}]}`): they go back into that location's stock, the refund is what
/// they were sold for, the points they earned are taken back (pending ones first cancelled),
/// and `Order Refunded` lands on the customer's timeline. A line beyond what was bought and
/// not yet returned is refused (`invalid_return`); the same return id again changes nothing.
pub fn record_return(
    store: &dyn Store,
    actor: &Actor,
    order_id: &str,
    body: Value,
    now: Millis,
) -> Result<Recorded, ServiceError> {
    actor.require_admin()?;
    let return_id = body
        .get("return_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    // Another return of the order committed between reading it and writing: decide again.
    for _ in 0..5 {
        let done = return_once(store, actor, order_id, body.clone(), now)?;
        let applied = done.created
            || done
                .order
                .returns
                .iter()
                .any(|r| Some(&r.return_id) == return_id.as_ref());
        if applied {
            return Ok(done);
        }
    }
    Err(ServiceError::Conflict {
        code: "order_busy",
        message: format!("order {order_id} kept changing; try the return again"),
    })
}

fn return_once(
    store: &dyn Store,
    actor: &Actor,
    order_id: &str,
    body: Value,
    now: Millis,
) -> Result<Recorded, ServiceError> {
    let b: ReturnBody = read("invalid_return", "the return", body)?;
    check_id("return id", "invalid_return", &b.return_id)?;
    let stored = store
        .order(&actor.workspace, order_id)?
        .ok_or_else(|| ServiceError::NotFound(format!("order {order_id}")))?;
    let mut order = parse_order(&stored)?;
    if order.returns.iter().any(|r| r.return_id == b.return_id) {
        return Recorded::already(order);
    }
    if !matches!(
        order.status.as_str(),
        "completed" | "collected" | "shipped" | "partially_returned" | "returned"
    ) {
        return Err(ServiceError::Conflict {
            code: "not_returnable",
            message: format!(
                "order {} is {}: nothing of it was handed over; cancel it instead",
                order.id, order.status
            ),
        });
    }
    super::catalogue::location(store, actor, &b.location).map_err(|_| {
        ServiceError::invalid(
            "unknown_location",
            format!("{} is not a location", b.location),
        )
    })?;
    if b.lines.is_empty() || b.lines.len() > inventory::MAX_LINES {
        return Err(ServiceError::invalid(
            "invalid_lines",
            "give 1 to 500 lines",
        ));
    }
    let mut refund = 0i64;
    let mut lines = Vec::new();
    let mut stock_lines = Vec::new();
    let mut items = std::collections::BTreeMap::new();
    for l in &b.lines {
        check_quantity(l.quantity)?;
        let bought: i64 = order
            .lines
            .iter()
            .filter(|x| x.sku == l.sku)
            .map(|x| x.quantity)
            .sum();
        let back: i64 = order
            .returns
            .iter()
            .flat_map(|r| &r.lines)
            .chain(lines.iter())
            .filter(|x| x.sku == l.sku)
            .map(|x| x.quantity)
            .sum();
        if l.quantity > bought - back {
            return Err(ServiceError::invalid(
                "invalid_return",
                format!(
                    "{} of {} cannot come back: the order bought {bought}, {back} came back already",
                    l.quantity, l.sku
                ),
            ));
        }
        let price = order
            .lines
            .iter()
            .find(|x| x.sku == l.sku)
            .and_then(|x| x.unit_price_minor)
            .unwrap_or(0);
        // The offers' discount comes back in proportion; the last units take what is left
        // of it, so the refunds of an order add up to exactly what was paid.
        let discount: i64 = order
            .lines
            .iter()
            .filter(|x| x.sku == l.sku)
            .map(|x| x.discount_minor)
            .sum();
        let discounted_back: i64 = order
            .returns
            .iter()
            .flat_map(|r| &r.lines)
            .chain(lines.iter())
            .filter(|x| x.sku == l.sku)
            .map(|x| x.discount_minor)
            .sum();
        let share = if back + l.quantity == bought {
            discount - discounted_back
        } else {
            (discount as i128 * l.quantity as i128 / bought as i128) as i64
        };
        // Within the order's total, which was checked when it was recorded.
        refund += price.saturating_mul(l.quantity) - share;
        lines.push(SaleLine {
            sku: l.sku.clone(),
            quantity: l.quantity,
            unit_price_minor: Some(price),
            discount_minor: share,
        });
        stock_lines.push(Line {
            sku: l.sku.clone(),
            location: b.location.clone(),
            quantity: l.quantity,
        });
        if let Some(item) = store.item(&actor.workspace, &l.sku)? {
            items.insert(item.sku.clone(), item);
        }
    }
    let movements: Vec<Adjustment> =
        inventory::demand(&inventory::expand_kits(&stock_lines, &items))?
            .into_iter()
            .map(|((sku, location), q)| Adjustment {
                sku,
                location,
                state: StockState::OnHand,
                change: Change::By(q),
                reason: "return".into(),
                reference: Some(b.return_id.clone()),
            })
            .collect();
    // The points of the returned share of the order.
    let entry = order.member.as_ref().and_then(|_| {
        let earned: i64 = store
            .loyalty_entries(
                &actor.workspace,
                order.member.as_deref().unwrap_or_default(),
            )
            .ok()?
            .into_iter()
            .find_map(|r| match r.entry {
                Entry::Earn {
                    order: o, points, ..
                } if o == order.id => Some(points),
                _ => None,
            })?;
        let share = if order.total_minor > 0 {
            (earned as i128 * refund as i128 / order.total_minor as i128) as i64
        } else {
            0
        };
        (share > 0).then(|| Entry::Return {
            order: order.id.clone(),
            return_id: b.return_id.clone(),
            points: share,
            at: now,
        })
    });
    let record_ = ReturnRecord {
        return_id: b.return_id.clone(),
        location: b.location.clone(),
        lines: lines.clone(),
        refund_minor: refund,
        at: format_timestamp(now),
    };
    order.returns.push(record_);
    let all_back = order.lines.iter().all(|l| {
        order
            .returns
            .iter()
            .flat_map(|r| &r.lines)
            .filter(|x| x.sku == l.sku)
            .map(|x| x.quantity)
            .sum::<i64>()
            >= l.quantity
    });
    order.status = if all_back {
        "returned"
    } else {
        "partially_returned"
    }
    .into();
    let products: Vec<Value> = lines
        .iter()
        .map(|l| json!({"sku": l.sku, "quantity": l.quantity, "price": money(l.unit_price_minor.unwrap_or(0))}))
        .collect();
    let event = order_event(
        &actor.workspace,
        "Order Refunded",
        format!("order-refunded:{}:{}", order.id, b.return_id),
        &order,
        json!({"total": money(refund), "return_id": b.return_id, "returned_at": b.location, "products": products}),
        now,
    )?;
    let write = CommerceWrite {
        workspace_id: actor.workspace.clone(),
        order: Some(record(&order, stored.created_at, now)),
        expect_body: Some(stored.body.clone()),
        movements,
        loyalty: match (&order.member, &entry) {
            (Some(m), Some(e)) => vec![(m.clone(), e.clone())],
            _ => Vec::new(),
        },
        events: Some(event),
        dedup_since: now - parcours_core::time::DAY,
        ..CommerceWrite::default()
    };
    finish(store, &write, order, entry, now)
}
