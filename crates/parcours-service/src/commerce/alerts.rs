//! Inventory-aware marketing: stock alerts ("tell me when it is back at my shop") and the
//! events stock changes tell.
//!
//! - A customer asks (`POST /api/v1/commerce/stock-alerts`), or her click & collect order is
//!   refused for lack of an item at her shop: she waits for that item at that location.
//!   Once it is available there again (received, returned, released, or a cart's hold
//!   expired), `Back in Stock` lands on her timeline, once; asking again waits again.
//! - An item with a `low_stock` threshold: when a location's available stock falls to it,
//!   `Low Stock` lands on the location's own timeline (anonymous id `location:ID`), once per
//!   fall; rising above the threshold arms it again.
//!
//! [`StockWatch`] looks for both every second on one node. Each event commits with the mark
//! that it was told, from the state it read, so it is told once even if two nodes raced or
//! one crashed midway; nothing but the stored alerts and levels holds what is due, so a
//! restart loses nothing.

use parcours_core::commerce::check_id;
use parcours_core::time::{format_timestamp, Millis};
use parcours_store::{CommerceWrite, Committed, LowStock, StockAlert, Store, StoreError};
use serde::Deserialize;
use serde_json::{json, Value};

use super::read;
use super::sales::{check_customer, customer_event, Customer};
use crate::{Actor, ServiceError};

/// Who a customer is for an alert: her loyalty card, else her user id, else her email, else
/// her anonymous id.
pub(super) fn subscriber(c: &Customer) -> Option<String> {
    if let Some(card) = &c.loyalty_card {
        return Some(format!("card:{card}"));
    }
    if let Some(u) = &c.user_id {
        return Some(format!("user:{u}"));
    }
    if let Some(e) = c
        .email
        .as_deref()
        .and_then(parcours_core::identifier::normalize_email)
    {
        return Some(format!("email:{e}"));
    }
    c.anonymous_id.as_ref().map(|a| format!("anon:{a}"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertBody {
    sku: String,
    location: String,
    customer: Customer,
    /// How many she wants (told once that many are there).
    #[serde(default = "one")]
    quantity: i64,
}

fn one() -> i64 {
    1
}

/// A customer asks to be told when an item is available at a location (`{"sku",
/// "location", "customer": {"user_id" | "anonymous_id" | "email" | "loyalty_card"},
/// "quantity"?: 1}`): she is told once that many are there. Asking again reopens a told
/// alert.
pub fn subscribe(
    store: &dyn Store,
    actor: &Actor,
    body: Value,
    now: Millis,
) -> Result<StockAlert, ServiceError> {
    actor.require_admin()?;
    let b: AlertBody = read("invalid_alert", "the stock alert", body)?;
    check_id("SKU", "invalid_alert", &b.sku)?;
    check_id("location id", "invalid_alert", &b.location)?;
    check_customer(&b.customer)?;
    parcours_core::commerce::check_quantity(b.quantity)?;
    let item = super::catalogue::item(store, actor, &b.sku).map_err(|_| {
        ServiceError::invalid("unknown_item", format!("{} is not in the catalogue", b.sku))
    })?;
    if !item.components.is_empty() {
        return Err(ServiceError::invalid(
            "invalid_alert",
            format!("{} is a kit: ask for its components", b.sku),
        ));
    }
    super::catalogue::location(store, actor, &b.location).map_err(|_| {
        ServiceError::invalid(
            "unknown_location",
            format!("{} is not a location", b.location),
        )
    })?;
    let alert = new_alert(
        &actor.workspace,
        (&b.sku, &b.location, b.quantity),
        &b.customer,
        "asked",
        now,
    )?;
    store.put_stock_alert(&alert)?;
    Ok(alert)
}

fn new_alert(
    ws: &str,
    (sku, location, quantity): (&str, &str, i64),
    customer: &Customer,
    reason: &str,
    now: Millis,
) -> Result<StockAlert, ServiceError> {
    let who = subscriber(customer).ok_or_else(|| {
        ServiceError::invalid(
            "invalid_customer",
            "say who the customer is: user_id, anonymous_id, email or loyalty_card",
        )
    })?;
    Ok(StockAlert {
        workspace_id: ws.to_string(),
        sku: sku.to_string(),
        location: location.to_string(),
        subscriber: who,
        customer: serde_json::to_string(customer).expect("a customer serialises"),
        reason: reason.to_string(),
        quantity,
        created_at: now,
        notified_at: None,
    })
}

/// The customer of a refused click & collect order waits for what was short at her shop.
pub(super) fn wait_for(
    store: &dyn Store,
    ws: &str,
    location: &str,
    customer: &Customer,
    wanted: impl IntoIterator<Item = (String, i64)>,
    now: Millis,
) -> Result<(), ServiceError> {
    if subscriber(customer).is_none() {
        return Ok(());
    }
    for (sku, quantity) in wanted {
        store.put_stock_alert(&new_alert(
            ws,
            (&sku, location, quantity),
            customer,
            "out_of_stock",
            now,
        )?)?;
    }
    Ok(())
}

/// An item's alerts at every location.
pub fn list(store: &dyn Store, actor: &Actor, sku: &str) -> Result<Vec<StockAlert>, ServiceError> {
    // Each alert names the customer who waits.
    actor.require_personal_data()?;
    check_id("SKU", "invalid_alert", sku)?;
    Ok(store.stock_alerts(&actor.workspace, sku)?)
}

/// Alerts and levels looked at per step of [`StockWatch`].
const WATCH_PAGE: usize = 100;
/// How far back the low-stock watch looks beyond its last look (other nodes' clocks).
const WATCH_MARGIN_MS: Millis = 10_000;

/// Tells `Back in Stock` and `Low Stock` (see the module's documentation). Runs on one node
/// (the holder of bucket 0).
#[derive(Default)]
pub struct StockWatch {
    /// Levels changed since then are looked at for low stock (all of them after a start).
    since: Millis,
}

impl parcours_engine::runner::Processor for StockWatch {
    fn name(&self) -> &'static str {
        "stock-watch"
    }

    fn placement(&self) -> parcours_engine::runner::Placement {
        parcours_engine::runner::Placement::Leader
    }

    fn step(&mut self, cx: &parcours_engine::runner::StepContext) -> Result<usize, StoreError> {
        let mut done = 0;
        let due = cx.store.due_stock_alerts(cx.now, WATCH_PAGE)?;
        for alert in &due {
            match back_in_stock(cx.store, alert, cx.now) {
                Ok(true) => done += 1,
                Ok(false) => {}
                Err(ServiceError::Store(e)) => return Err(e),
                Err(e) => {
                    tracing::warn!(workspace = %alert.workspace_id, sku = %alert.sku, error = %e, "a stock alert could not be told");
                    // Marked told without an event, so that it does not come back forever.
                    let _ = tell(
                        cx.store,
                        &alert.workspace_id,
                        vec![key(alert)],
                        vec![],
                        None,
                        cx.now,
                    );
                }
            }
        }
        let low = cx
            .store
            .watch_low_stock(self.since - WATCH_MARGIN_MS, cx.now, WATCH_PAGE)?;
        for level in &low {
            match low_stock(cx.store, level, cx.now) {
                Ok(true) => done += 1,
                Ok(false) => {}
                Err(ServiceError::Store(e)) => return Err(e),
                Err(e) => {
                    tracing::warn!(workspace = %level.workspace_id, sku = %level.sku, error = %e, "a low stock could not be told");
                    let _ = tell(
                        cx.store,
                        &level.workspace_id,
                        vec![],
                        vec![(level.sku.clone(), level.location.clone())],
                        None,
                        cx.now,
                    );
                }
            }
        }
        // Everything changed before this step was looked at (a full page may hold more).
        if low.len() < WATCH_PAGE {
            self.since = cx.now;
        }
        Ok(done)
    }
}

fn key(a: &StockAlert) -> (String, String, String) {
    (a.sku.clone(), a.location.clone(), a.subscriber.clone())
}

fn tell(
    store: &dyn Store,
    ws: &str,
    alerts: Vec<(String, String, String)>,
    low_told: Vec<(String, String)>,
    events: Option<parcours_store::IngestBatch>,
    now: Millis,
) -> Result<bool, ServiceError> {
    let write = CommerceWrite {
        workspace_id: ws.to_string(),
        events,
        alerts,
        low_told,
        dedup_since: now - parcours_core::time::DAY,
        ..CommerceWrite::default()
    };
    Ok(matches!(
        store.commit_commerce(&write, now)?,
        Committed::Done { .. }
    ))
}

/// What an event says of an item at a location.
fn about(store: &dyn Store, ws: &str, sku: &str, location: &str) -> Result<Value, ServiceError> {
    let item = store.item(ws, sku)?;
    let place = store.locations(ws)?.into_iter().find(|l| l.id == location);
    Ok(json!({"sku": sku, "product_id": sku,
              "name": item.as_ref().map(|i| i.name.clone()),
              "product": item.as_ref().and_then(|i| i.product.clone()),
              "store_id": location, "store_name": place.map(|l| l.name)}))
}

/// Tells one customer her item is back at her shop; false when another node did.
pub fn back_in_stock(
    store: &dyn Store,
    alert: &StockAlert,
    now: Millis,
) -> Result<bool, ServiceError> {
    let ws = &alert.workspace_id;
    let customer: Customer = serde_json::from_str(&alert.customer)
        .map_err(|e| ServiceError::Store(StoreError::Corrupt(e.to_string())))?;
    let mut properties = about(store, ws, &alert.sku, &alert.location)?;
    let available = store
        .stock(ws, std::slice::from_ref(&alert.sku), now)?
        .into_iter()
        .find(|l| l.location == alert.location)
        .map_or(0, |l| l.quantities.sellable());
    properties["available"] = available.into();
    properties["reason"] = alert.reason.clone().into();
    properties["asked_at"] = format_timestamp(alert.created_at).into();
    let event = customer_event(
        ws,
        "Back in Stock",
        format!(
            "back-in-stock:{}:{}:{}:{}",
            alert.sku, alert.location, alert.subscriber, alert.created_at
        ),
        &customer,
        &alert.subscriber,
        None,
        properties,
        now,
    )?;
    tell(store, ws, vec![key(alert)], vec![], Some(event), now)
}

/// Tells a location its stock of an item is low; false when another node did.
pub fn low_stock(store: &dyn Store, level: &LowStock, now: Millis) -> Result<bool, ServiceError> {
    let ws = &level.workspace_id;
    let mut properties = about(store, ws, &level.sku, &level.location)?;
    properties["available"] = level.available.max(0).into();
    properties["threshold"] = level.threshold.into();
    let location = Customer {
        anonymous_id: Some(format!("location:{}", level.location)),
        ..Customer::default()
    };
    let event = customer_event(
        ws,
        "Low Stock",
        format!(
            "low-stock:{}:{}:{}",
            level.sku, level.location, level.updated_at
        ),
        &location,
        "",
        None,
        properties,
        now,
    )?;
    tell(
        store,
        ws,
        vec![],
        vec![(level.sku.clone(), level.location.clone())],
        Some(event),
        now,
    )
}
