//! Orders of distance channels (web shop, app, call centre): click & collect and delivery.
//!
//! Placing an order allocates its lines over locations and holds the units, all or nothing,
//! in the transaction that records it and puts `Order Completed` on the customer's timeline.
//! Then, each status change is one write set with its event:
//!
//! - `picking`: the shop or the warehouse is gathering the units (`Order Updated`).
//! - `ready_for_pickup` (click & collect): the units wait at the shop until a deadline
//!   (`pickup_hours`, 72 by default). The deadline is the reservation's expiry, read at read
//!   time: at that instant the units are for sale again, whatever runs or does not run then,
//!   and the order reads `not_collected`. The order row is also its own durable timer (its
//!   `due_at`): [`PickupDeadlines`] finds it once the deadline passed, stores it as
//!   `not_collected` and tells `Order Not Collected`, once, even after a restart.
//! - `collected` / `shipped`: the units leave the stock and the member earns her points.
//! - `cancelled`: the units are released.

use std::collections::BTreeMap;

use parcours_core::commerce::catalogue::Pickup;
use parcours_core::commerce::check_id;
use parcours_core::commerce::inventory::{self, allocate, distance_km, Candidate, Strategy};
use parcours_core::time::{format_timestamp, parse_timestamp, Millis};
use parcours_store::{CommerceWrite, ReserveRequest, Settle, Store};
use serde::Deserialize;
use serde_json::{json, Value};

use super::loyalty;
use super::read;
use super::sales::{
    check_customer, discounted, finish, member_for, money, order_event, parse_order, priced,
    record, Customer, Order, Recorded, SaleLine,
};
use crate::{Actor, ServiceError};

/// Hours a ready click & collect order waits by default.
pub const PICKUP_HOURS: i64 = 72;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "snake_case")]
enum Fulfilment {
    Pickup {
        location: String,
    },
    Ship {
        #[serde(default)]
        strategy: Option<String>,
        #[serde(default = "yes")]
        split: bool,
        /// Where it goes, for the `nearest` strategy.
        #[serde(default)]
        latitude: Option<f64>,
        #[serde(default)]
        longitude: Option<f64>,
    },
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OrderBody {
    order_id: String,
    #[serde(default = "web")]
    channel: String,
    #[serde(default = "euro")]
    currency: String,
    #[serde(default)]
    customer: Customer,
    lines: Vec<SaleLine>,
    fulfilment: Fulfilment,
    #[serde(default)]
    payment_method: Option<String>,
    /// Coupon codes the customer gives.
    #[serde(default)]
    coupons: Vec<String>,
}

pub(super) fn web() -> String {
    "web".into()
}
pub(super) fn euro() -> String {
    "EUR".into()
}

/// Places an order of a distance channel (`{"order_id", "channel"?: "web", "currency"?,
/// "customer"?, "lines", "fulfilment": {"kind": "pickup", "location"} | {"kind": "ship",
/// "strategy"?: "priority" | "nearest" | "most_stock", "split"?: true, "latitude"?,
/// "longitude"?}}`). Click & collect at a shop that takes only its own stock needs every
/// line there; one that takes all locations' stock, and delivery, allocate over the
/// channel's locations. The units are held at once; what cannot be held refuses the whole
/// order (`insufficient_stock`).
pub fn place(
    store: &dyn Store,
    actor: &Actor,
    body: Value,
    now: Millis,
) -> Result<Recorded, ServiceError> {
    actor.require_admin()?;
    let pickup = (body["fulfilment"]["kind"] == "pickup")
        .then(|| body["fulfilment"]["location"].as_str().map(str::to_string))
        .flatten();
    let customer = serde_json::from_value::<Customer>(body["customer"].clone()).ok();
    match place_once(store, actor, body, now) {
        // A click & collect order refused for lack of stock at the shop: its customer is
        // told when what was short is back there.
        Err(ServiceError::OutOfStock { shortages }) => {
            if let (Some(shop), Some(customer)) = (pickup, customer) {
                let short = shortages
                    .iter()
                    .filter(|s| s.location == shop)
                    .map(|s| (s.sku.clone(), s.requested));
                super::alerts::wait_for(store, &actor.workspace, &shop, &customer, short, now)?;
            }
            Err(ServiceError::OutOfStock { shortages })
        }
        other => other,
    }
}

fn place_once(
    store: &dyn Store,
    actor: &Actor,
    body: Value,
    now: Millis,
) -> Result<Recorded, ServiceError> {
    let b: OrderBody = read("invalid_order", "the order", body)?;
    check_id("order id", "invalid_order", &b.order_id)?;
    check_id("sales channel", "invalid_channel", &b.channel)?;
    check_customer(&b.customer)?;
    let ws = &actor.workspace;
    if let Some(existing) = store.order(ws, &b.order_id)? {
        return Recorded::already(parse_order(&existing)?);
    }
    let codes = super::offers::coupons(&b.coupons)?;
    let p = priced(store, actor, &b.channel, &b.currency, &b.lines)?;
    // What the order needs per SKU, kits as their components.
    let as_lines: Vec<inventory::Line> = p
        .lines
        .iter()
        .map(|l| inventory::Line {
            sku: l.sku.clone(),
            location: "-".into(),
            quantity: l.quantity,
        })
        .collect();
    let mut needs: BTreeMap<String, i64> = BTreeMap::new();
    for l in inventory::expand_kits(&as_lines, &p.items) {
        *needs.entry(l.sku).or_insert(0) += l.quantity;
    }
    let locations = store.locations(ws)?;
    let skus: Vec<String> = needs.keys().cloned().collect();
    let mut available: BTreeMap<(String, String), i64> = BTreeMap::new();
    for level in store.stock(ws, &skus, now)? {
        available.insert((level.location, level.sku), level.quantities.sellable());
    }
    let candidate =
        |l: &parcours_core::commerce::catalogue::Location, from: Option<(f64, f64)>| Candidate {
            location: l.id.clone(),
            priority: l.priority,
            distance_km: from.zip(l.position()).map(|(a, b)| distance_km(a, b)),
            available: skus
                .iter()
                .map(|s| {
                    (
                        s.clone(),
                        available
                            .get(&(l.id.clone(), s.clone()))
                            .copied()
                            .unwrap_or(0),
                    )
                })
                .collect(),
        };
    let (allocation, fulfilment) = match &b.fulfilment {
        Fulfilment::Pickup { location } => {
            let shop = locations
                .iter()
                .find(|l| &l.id == location)
                .ok_or_else(|| {
                    ServiceError::invalid(
                        "unknown_location",
                        format!("{location} is not a location"),
                    )
                })?;
            let from = match shop.pickup {
                Pickup::Disabled => {
                    return Err(ServiceError::Unprocessable {
                        code: "pickup_unavailable",
                        message: format!("{} does not take click & collect orders", shop.name),
                    })
                }
                // Only the shop's own stock.
                Pickup::LocalStock => vec![candidate(shop, shop.position())],
                // The channel's locations, nearest the shop first (the shop itself at 0 km).
                Pickup::AllLocations => locations
                    .iter()
                    .filter(|l| l.serves(&b.channel) || l.id == shop.id)
                    .map(|l| candidate(l, shop.position()))
                    .collect(),
            };
            let strategy = if shop.pickup == Pickup::LocalStock {
                Strategy::Priority
            } else {
                Strategy::Nearest
            };
            let lines = allocate(&needs, &from, strategy, shop.pickup == Pickup::AllLocations)
                .map_err(|shortages| ServiceError::OutOfStock {
                    shortages: shortages
                        .into_iter()
                        .map(|mut s| {
                            if s.location.is_empty() {
                                s.location = shop.id.clone();
                            }
                            s
                        })
                        .collect(),
                })?;
            (
                lines,
                json!({"kind": "pickup", "location": shop.id, "name": shop.name}),
            )
        }
        Fulfilment::Ship {
            strategy,
            split,
            latitude,
            longitude,
        } => {
            let strategy = match strategy.as_deref() {
                None => Strategy::Priority,
                Some(s) => Strategy::parse(s).ok_or_else(|| {
                    ServiceError::invalid(
                        "invalid_order",
                        format!("strategy is priority, nearest or most_stock; got {s:?}"),
                    )
                })?,
            };
            let to = latitude.zip(*longitude);
            if to.is_some_and(|(a, o)| {
                !(-90.0..=90.0).contains(&a) || !(-180.0..=180.0).contains(&o)
            }) {
                return Err(ServiceError::invalid(
                    "invalid_position",
                    "latitude is from −90 to 90 and longitude from −180 to 180",
                ));
            }
            let from: Vec<Candidate> = locations
                .iter()
                .filter(|l| l.serves(&b.channel))
                .map(|l| candidate(l, to))
                .collect();
            let lines = allocate(&needs, &from, strategy, *split)
                .map_err(|shortages| ServiceError::OutOfStock { shortages })?;
            (
                lines,
                json!({"kind": "ship", "strategy": format!("{strategy:?}").to_lowercase()}),
            )
        }
    };
    let member = member_for(store, ws, &b.customer)?;
    let deal = discounted(
        store,
        ws,
        &b.channel,
        &b.currency,
        &b.customer,
        member.as_deref(),
        p.lines.clone(),
        codes,
        now,
    )?;
    let order = Order {
        id: b.order_id.clone(),
        channel: b.channel.clone(),
        location: fulfilment["location"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        status: "placed".into(),
        currency: b.currency.clone(),
        customer: b.customer.clone(),
        lines: deal.lines,
        total_minor: deal.total,
        discount_minor: deal.discount,
        offers: deal.offers,
        member,
        payment_method: b.payment_method.clone(),
        returns: Vec::new(),
        created_at: format_timestamp(now),
        fulfilment: Some(fulfilment.clone()),
        allocation: allocation.clone(),
        pickup_deadline: None,
    };
    let event = order_event(
        ws,
        "Order Completed",
        format!("order-completed:{}", order.id),
        &order,
        super::sales::with_offers(
            json!({"total": money(deal.total), "revenue": money(deal.total), "products": p.products,
                   "fulfilment": fulfilment, "payment_method": b.payment_method}),
            &order,
        ),
        now,
    )?;
    let write = CommerceWrite {
        workspace_id: ws.clone(),
        order: Some(record(&order, now, now)),
        reserve: Some(ReserveRequest {
            workspace_id: ws.clone(),
            reference: order.id.clone(),
            demand: inventory::demand(&allocation)?,
            expires_at: None,
            backorder: false,
        }),
        events: Some(event),
        redemptions: deal.redemptions,
        dedup_since: now - parcours_core::time::DAY,
        ..CommerceWrite::default()
    };
    finish(store, &write, order, None, now)
}

/// The order as it reads now: a ready click & collect order past its deadline reads
/// `not_collected` (its units are for sale again from that instant).
pub fn order_now(
    store: &dyn Store,
    actor: &Actor,
    id: &str,
    now: Millis,
) -> Result<Order, ServiceError> {
    // An order names its customer (email, card, the address to ship to).
    actor.require_personal_data()?;
    let mut o = super::sales::order(store, actor, id)?;
    if o.status == "ready_for_pickup"
        && o.pickup_deadline
            .as_deref()
            .and_then(parse_timestamp)
            .is_some_and(|d| d <= now)
    {
        o.status = "not_collected".into();
    }
    Ok(o)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusBody {
    status: String,
    #[serde(default)]
    pickup_hours: Option<i64>,
}

/// Moves an order on (`{"status": "picking" | "ready_for_pickup" | "collected" | "shipped" |
/// "cancelled", "pickup_hours"?}`), each change with its event on the customer's timeline:
/// `Order Updated` (picking), `Order Ready for Pickup`, `Order Collected`, `Order Shipped`,
/// `Order Cancelled`. A change
/// the order's state does not allow is refused (`invalid_transition`); collecting after the
/// deadline is refused (`pickup_expired`).
pub fn change_status(
    store: &dyn Store,
    actor: &Actor,
    id: &str,
    body: Value,
    now: Millis,
) -> Result<Recorded, ServiceError> {
    actor.require_admin()?;
    let b: StatusBody = read("invalid_status", "the status change", body)?;
    // The order changed between reading it and writing (the deadline processor, another
    // till): decide again from its new state.
    for _ in 0..5 {
        let done = change_once(store, actor, id, &b, now)?;
        if done.created || done.order.status == b.status {
            return Ok(done);
        }
    }
    Err(ServiceError::Conflict {
        code: "order_busy",
        message: format!("order {id} kept changing; try again"),
    })
}

fn change_once(
    store: &dyn Store,
    actor: &Actor,
    id: &str,
    b: &StatusBody,
    now: Millis,
) -> Result<Recorded, ServiceError> {
    let stored = store
        .order(&actor.workspace, id)?
        .ok_or_else(|| ServiceError::NotFound(format!("order {id}")))?;
    let mut order = parse_order(&stored)?;
    let current = order_now(store, actor, id, now)?.status;
    let pickup = order
        .fulfilment
        .as_ref()
        .is_some_and(|f| f["kind"] == "pickup");
    let refuse = || ServiceError::Conflict {
        code: "invalid_transition",
        message: format!("order {id} is {current}: it cannot become {}", b.status),
    };
    let mut write = CommerceWrite {
        workspace_id: actor.workspace.clone(),
        expect_body: Some(stored.body.clone()),
        dedup_since: now - parcours_core::time::DAY,
        ..CommerceWrite::default()
    };
    let mut entry = None;
    let (event, mut properties) = match (b.status.as_str(), current.as_str()) {
        ("picking", "placed") => (
            "Order Updated",
            json!({"total": money(order.total_minor)}),
        ),
        ("ready_for_pickup", "placed" | "picking") if pickup => {
            let hours = b.pickup_hours.unwrap_or(PICKUP_HOURS);
            if !(1..=24 * 31).contains(&hours) {
                return Err(ServiceError::invalid(
                    "invalid_status",
                    "pickup_hours is from 1 to 744 (31 days)",
                ));
            }
            let deadline = now + hours * 3_600_000;
            write.hold_until = Some((order.id.clone(), deadline));
            order.pickup_deadline = Some(format_timestamp(deadline));
            (
                "Order Ready for Pickup",
                json!({"pickup_deadline": format_timestamp(deadline),
                       "store_name": order.fulfilment.as_ref().map(|f| f["name"].clone())}),
            )
        }
        ("collected", "ready_for_pickup") | ("shipped", "placed" | "picking") => {
            if b.status == "shipped" && pickup {
                return Err(refuse());
            }
            write.settle = Some(Settle {
                reference: order.id.clone(),
                fulfil: Some(b.status.clone()),
            });
            if let Some(m) = &order.member {
                let program = loyalty::program(store, actor)?;
                entry = program.earn(&order.id, order.total_minor, &order.channel, now);
                if let Some(e) = &entry {
                    write.loyalty = vec![(m.clone(), e.clone())];
                }
            }
            (
                if b.status == "collected" {
                    "Order Collected"
                } else {
                    "Order Shipped"
                },
                json!({"total": money(order.total_minor), "loyalty_points": entry.as_ref().map(super::sales::points_of)}),
            )
        }
        ("collected", "not_collected") => {
            return Err(ServiceError::Conflict {
                code: "pickup_expired",
                message: format!(
                    "order {id} waited until {} and its units were released; place it again",
                    order.pickup_deadline.clone().unwrap_or_default()
                ),
            })
        }
        ("cancelled", "placed" | "picking" | "ready_for_pickup" | "not_collected") => {
            write.settle = Some(Settle {
                reference: order.id.clone(),
                fulfil: None,
            });
            // Its coupons can be used again.
            write.release_redemptions = true;
            (
                "Order Cancelled",
                json!({"total": money(order.total_minor)}),
            )
        }
        ("picking" | "ready_for_pickup" | "collected" | "shipped" | "cancelled", _) => {
            return Err(refuse())
        }
        (other, _) => {
            return Err(ServiceError::invalid(
                "invalid_status",
                format!(
                    "status is picking, ready_for_pickup, collected, shipped or cancelled; got {other:?}"
                ),
            ))
        }
    };
    // A cancelled order whose units already went back at the deadline holds nothing to
    // release: only its status changes.
    if b.status == "cancelled" && current == "not_collected" {
        write.settle = None;
    }
    order.status = b.status.clone();
    if let Value::Object(p) = &mut properties {
        p.insert("status".into(), b.status.clone().into());
    }
    write.events = Some(order_event(
        &actor.workspace,
        event,
        format!("order-{}:{}", b.status, order.id),
        &order,
        properties,
        now,
    )?);
    write.order = Some(record(&order, stored.created_at, now));
    finish(store, &write, order, entry, now)
}

/// Orders looked at per step of [`PickupDeadlines`].
const DUE_PAGE: usize = 100;

/// The processor that tells `Order Not Collected` when a ready click & collect order's
/// deadline passes (a journey can then say "we put your order back on the shelves"). It runs
/// on one node (the holder of bucket 0) and looks for due orders every second; the order and
/// its event commit together, and only from the state it read, so the event is told once,
/// and never for an order collected meanwhile.
pub struct PickupDeadlines;

impl parcours_engine::runner::Processor for PickupDeadlines {
    fn name(&self) -> &'static str {
        "pickup-deadlines"
    }

    fn placement(&self) -> parcours_engine::runner::Placement {
        parcours_engine::runner::Placement::Leader
    }

    fn step(
        &mut self,
        cx: &parcours_engine::runner::StepContext,
    ) -> Result<usize, parcours_store::StoreError> {
        let mut done = 0;
        for (ws, id) in cx.store.due_orders(cx.now, DUE_PAGE)? {
            match not_collected(cx.store, &ws, &id, cx.now) {
                Ok(true) => done += 1,
                Ok(false) => {}
                Err(ServiceError::Store(e)) => return Err(e),
                Err(e) => {
                    tracing::warn!(workspace = %ws, order = %id, error = %e, "a pickup deadline could not be told")
                }
            }
        }
        Ok(done)
    }
}

/// Stores a ready order past its deadline as `not_collected` with its `Order Not Collected`
/// event; false when it is not (or no longer) due.
pub fn not_collected(
    store: &dyn Store,
    ws: &str,
    id: &str,
    now: Millis,
) -> Result<bool, ServiceError> {
    let Some(stored) = store.order(ws, id)? else {
        return Ok(false);
    };
    let mut order = parse_order(&stored)?;
    let deadline = order.pickup_deadline.as_deref().and_then(parse_timestamp);
    if order.status != "ready_for_pickup" || deadline.is_none_or(|d| d > now) {
        return Ok(false);
    }
    order.status = "not_collected".into();
    let event = order_event(
        ws,
        "Order Not Collected",
        format!("order-not_collected:{}", order.id),
        &order,
        json!({"status": "not_collected", "total": money(order.total_minor),
               "pickup_deadline": order.pickup_deadline,
               "store_name": order.fulfilment.as_ref().map(|f| f["name"].clone())}),
        now,
    )?;
    let write = CommerceWrite {
        workspace_id: ws.to_string(),
        order: Some(record(&order, stored.created_at, now)),
        expect_body: Some(stored.body.clone()),
        events: Some(event),
        dedup_since: now - parcours_core::time::DAY,
        ..CommerceWrite::default()
    };
    Ok(matches!(
        store.commit_commerce(&write, now)?,
        parcours_store::Committed::Done { .. }
    ))
}
