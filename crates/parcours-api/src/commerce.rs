//! Unified commerce over HTTP (under `/api/v1/commerce`): the catalogue and locations, stock
//! movements and levels, availability for every channel, and reservations. Thin over
//! `parcours_service::commerce`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use parcours_core::time::format_timestamp;
use parcours_service::commerce::{alerts, catalogue, loyalty, offers, orders, sales, stock};
use parcours_store::{Movement, Reservation, StockLevel};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audiences::store;
use crate::auth::Caller;
use crate::error::{blocking, ApiError};
use crate::openapi::{Answer, Refusals};
use crate::AppState;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_items))
        .routes(routes!(get_item, put_item))
        .routes(routes!(list_locations))
        .routes(routes!(get_location, put_location))
        .routes(routes!(location_stock))
        .routes(routes!(levels))
        .routes(routes!(list_movements, post_movements))
        .routes(routes!(availability))
        .routes(routes!(reserve))
        .routes(routes!(get_reservation, release))
        .routes(routes!(fulfil))
        .routes(routes!(sale))
        .routes(routes!(place_order))
        .routes(routes!(get_order))
        .routes(routes!(order_status))
        .routes(routes!(order_return))
        .routes(routes!(get_program, put_program))
        .routes(routes!(member))
        .routes(routes!(redeem))
        .routes(routes!(refund_redemption))
        .routes(routes!(list_offers))
        .routes(routes!(get_offer, put_offer, delete_offer))
        .routes(routes!(evaluate_basket))
        .routes(routes!(list_alerts, post_alert))
}

fn body_of(body: Option<Json<Value>>, code: &'static str) -> Result<Value, ApiError> {
    match body {
        Some(Json(v @ Value::Object(_))) => Ok(v),
        _ => Err(ApiError::bad_request(code, "send a JSON object")),
    }
}

pub(crate) fn level_json(l: &StockLevel) -> Value {
    let q = &l.quantities;
    json!({
        "sku": l.sku,
        "location": l.location,
        "on_hand": q.on_hand,
        "reserved": q.reserved,
        "safety_stock": q.safety_stock,
        "damaged": q.damaged,
        "quality_control": q.quality_control,
        "available": q.sellable(),
        "short": (q.available() < 0).then(|| -q.available()),
        "updated_at": format_timestamp(l.updated_at),
    })
}

pub(crate) fn movement_json(m: &Movement) -> Value {
    json!({
        "id": m.id,
        "sku": m.sku,
        "location": m.location,
        "state": m.state.as_str(),
        "delta": m.delta,
        "after": m.after,
        "reason": m.reason,
        "reference": m.reference,
        "at": format_timestamp(m.at),
    })
}

pub(crate) fn reservation_json(r: &Reservation) -> Value {
    json!({
        "sku": r.sku,
        "location": r.location,
        "quantity": r.quantity,
        "state": r.state.as_str(),
        "created_at": format_timestamp(r.created_at),
        "expires_at": r.expires_at.map(format_timestamp),
        "settled_at": r.settled_at.map(format_timestamp),
    })
}

fn reservation_answer(reference: &str, rows: &[Reservation]) -> Value {
    json!({
        "reference": reference,
        "lines": rows.iter().map(reservation_json).collect::<Vec<_>>(),
    })
}

#[derive(Debug, Deserialize)]
struct ItemPage {
    after: Option<String>,
    limit: Option<usize>,
}

/// The catalogue in SKU order.
#[utoipa::path(get, path = "/commerce/items", tag = "commerce",
    params(("after" = Option<String>, Query, description = "the `next` of the previous page"),
           ("limit" = Option<usize>, Query, description = "at most this many (default 100, at most 1,000)")),
    security(("bearer" = [])),
    responses((status = 200, description = "a page of items", body = Answer), Refusals))]
async fn list_items(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(page): Query<ItemPage>,
) -> Result<Json<Value>, ApiError> {
    let (st, actor) = (store(&state), caller.actor());
    let limit = page.limit;
    let items = blocking(move || {
        Ok(catalogue::items(
            st.as_ref(),
            &actor,
            page.after.as_deref(),
            limit,
        )?)
    })
    .await?;
    let next = (items.len() == limit.unwrap_or(100))
        .then(|| items.last().map(|i| i.sku.clone()))
        .flatten();
    Ok(Json(json!({ "items": items, "next": next })))
}

/// One item.
#[utoipa::path(get, path = "/commerce/items/{sku}", tag = "commerce",
    params(("sku" = String, Path, description = "the SKU")),
    security(("bearer" = [])),
    responses((status = 200, description = "the item", body = Answer), Refusals))]
async fn get_item(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(sku): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (st, actor) = (store(&state), caller.actor());
    let item = blocking(move || Ok(catalogue::item(st.as_ref(), &actor, &sku)?)).await?;
    Ok(Json(json!(item)))
}

/// Creates or replaces an item: `{"name", "product"?, "components"?: [{"sku", "quantity"}],
/// "prices"?: [{"channel", "currency", "amount_minor"}]}`. A kit (with components) has no
/// stock of its own.
#[utoipa::path(put, path = "/commerce/items/{sku}", tag = "commerce", request_body = Answer,
    params(("sku" = String, Path, description = "the SKU")),
    security(("bearer" = [])),
    responses((status = 200, description = "the item as saved", body = Answer), Refusals))]
async fn put_item(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(sku): Path<String>,
    body: Option<Json<Value>>,
) -> Result<Json<Value>, ApiError> {
    let body = body_of(body, "invalid_item")?;
    let (st, actor, now) = (store(&state), caller.actor(), state.engine.now());
    let item =
        blocking(move || Ok(catalogue::put_item(st.as_ref(), &actor, &sku, body, now)?)).await?;
    Ok(Json(json!(item)))
}

/// Every location: shops, warehouses, web fulfilment.
#[utoipa::path(get, path = "/commerce/locations", tag = "commerce",
    security(("bearer" = [])),
    responses((status = 200, description = "the locations", body = Answer), Refusals))]
async fn list_locations(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let (st, actor) = (store(&state), caller.actor());
    let locations = blocking(move || Ok(catalogue::locations(st.as_ref(), &actor)?)).await?;
    Ok(Json(json!({ "locations": locations })))
}

/// One location.
#[utoipa::path(get, path = "/commerce/locations/{id}", tag = "commerce",
    params(("id" = String, Path, description = "the location's id")),
    security(("bearer" = [])),
    responses((status = 200, description = "the location", body = Answer), Refusals))]
async fn get_location(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (st, actor) = (store(&state), caller.actor());
    let l = blocking(move || Ok(catalogue::location(st.as_ref(), &actor, &id)?)).await?;
    Ok(Json(json!(l)))
}

/// Creates or replaces a location: `{"name", "kind": "shop" | "warehouse" | "web",
/// "address"?, "latitude"?, "longitude"?, "time_zone", "opening_hours"?: {"mon":
/// ["09:00-19:00"]}, "channels"?: ["web", "pos"], "pickup"?: "disabled" | "local_stock" |
/// "all_locations", "priority"?}`.
#[utoipa::path(put, path = "/commerce/locations/{id}", tag = "commerce", request_body = Answer,
    params(("id" = String, Path, description = "the location's id")),
    security(("bearer" = [])),
    responses((status = 200, description = "the location as saved", body = Answer), Refusals))]
async fn put_location(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Option<Json<Value>>,
) -> Result<Json<Value>, ApiError> {
    let body = body_of(body, "invalid_location")?;
    let (st, actor, now) = (store(&state), caller.actor(), state.engine.now());
    let l = blocking(move || {
        Ok(catalogue::put_location(
            st.as_ref(),
            &actor,
            &id,
            body,
            now,
        )?)
    })
    .await?;
    Ok(Json(json!(l)))
}

/// The stock at one location, in SKU order.
#[utoipa::path(get, path = "/commerce/locations/{id}/stock", tag = "commerce",
    params(("id" = String, Path, description = "the location's id"),
           ("after" = Option<String>, Query, description = "the `next` of the previous page"),
           ("limit" = Option<usize>, Query, description = "at most this many (default 100, at most 1,000)")),
    security(("bearer" = [])),
    responses((status = 200, description = "a page of levels", body = Answer), Refusals))]
async fn location_stock(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(page): Query<ItemPage>,
) -> Result<Json<Value>, ApiError> {
    let (st, actor, now) = (store(&state), caller.actor(), state.engine.now());
    let limit = page.limit;
    let levels = blocking(move || {
        Ok(stock::stock_at(
            st.as_ref(),
            &actor,
            &id,
            page.after.as_deref(),
            limit,
            now,
        )?)
    })
    .await?;
    let next = (levels.len() == limit.unwrap_or(100))
        .then(|| levels.last().map(|l| l.sku.clone()))
        .flatten();
    Ok(Json(json!({
        "levels": levels.iter().map(level_json).collect::<Vec<_>>(),
        "next": next,
    })))
}

/// `A,B,C` as a list (`invalid_sku` when empty).
fn skus(list: Option<&str>) -> Result<Vec<String>, ApiError> {
    let list = list.unwrap_or_default();
    if list.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_sku",
            "name the SKUs: skus=A,B",
        ));
    }
    Ok(list.split(',').map(str::to_string).collect())
}

#[derive(Debug, Deserialize)]
struct LevelsQuery {
    skus: Option<String>,
}

/// The levels of SKUs at every location that holds them (`available` never below zero;
/// `short` says by how much a count found fewer units than were promised).
#[utoipa::path(get, path = "/commerce/stock", tag = "commerce",
    params(("skus" = String, Query, description = "SKUs, comma-separated (at most 100)")),
    security(("bearer" = [])),
    responses((status = 200, description = "the levels", body = Answer), Refusals))]
async fn levels(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<LevelsQuery>,
) -> Result<Json<Value>, ApiError> {
    let skus = skus(q.skus.as_deref())?;
    let (st, actor, now) = (store(&state), caller.actor(), state.engine.now());
    let levels = blocking(move || Ok(stock::stock(st.as_ref(), &actor, &skus, now)?)).await?;
    Ok(Json(json!({
        "levels": levels.iter().map(level_json).collect::<Vec<_>>(),
    })))
}

#[derive(Debug, Deserialize)]
struct MovementsQuery {
    sku: Option<String>,
    location: Option<String>,
    before: Option<i64>,
    limit: Option<usize>,
}

/// An item's movement ledger, newest first.
#[utoipa::path(get, path = "/commerce/stock/movements", tag = "commerce",
    params(("sku" = String, Query, description = "the SKU"),
           ("location" = Option<String>, Query, description = "only at this location"),
           ("before" = Option<i64>, Query, description = "the `next` of the previous page"),
           ("limit" = Option<usize>, Query, description = "at most this many (default 100, at most 1,000)")),
    security(("bearer" = [])),
    responses((status = 200, description = "a page of movements", body = Answer), Refusals))]
async fn list_movements(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<MovementsQuery>,
) -> Result<Json<Value>, ApiError> {
    let Some(sku) = q.sku.filter(|s| !s.is_empty()) else {
        return Err(ApiError::bad_request("invalid_sku", "name the SKU: sku=A"));
    };
    if q.location.as_deref() == Some("") {
        return Err(ApiError::bad_request(
            "invalid_location",
            "location, when given, names a location",
        ));
    }
    let (st, actor, limit) = (store(&state), caller.actor(), q.limit);
    let moved = blocking(move || {
        Ok(stock::movements(
            st.as_ref(),
            &actor,
            &sku,
            q.location.as_deref(),
            q.before,
            limit,
        )?)
    })
    .await?;
    let next = (moved.len() == limit.unwrap_or(100))
        .then(|| moved.last().map(|m| m.id))
        .flatten();
    Ok(Json(json!({
        "movements": moved.iter().map(movement_json).collect::<Vec<_>>(),
        "next": next,
    })))
}

/// Moves stock, all or none: `{"movements": [{"sku", "location", "state"?: "on_hand" |
/// "safety_stock" | "damaged" | "quality_control", "delta" | "set", "reason",
/// "reference"?}]}`. `set` records a count (the difference goes into the ledger). Units held
/// by reservations cannot be sold or written off (`insufficient_stock`, 409).
#[utoipa::path(post, path = "/commerce/stock/movements", tag = "commerce", request_body = Answer,
    security(("bearer" = [])),
    responses((status = 200, description = "the movements recorded", body = Answer), Refusals))]
async fn post_movements(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: Option<Json<Value>>,
) -> Result<Json<Value>, ApiError> {
    let body = body_of(body, "invalid_movement")?;
    let (st, actor, now) = (store(&state), caller.actor(), state.engine.now());
    let moved = blocking(move || Ok(stock::move_stock(st.as_ref(), &actor, body, now)?)).await?;
    Ok(Json(json!({
        "movements": moved.iter().map(movement_json).collect::<Vec<_>>(),
    })))
}

#[derive(Debug, Deserialize)]
struct AvailabilityParams {
    skus: Option<String>,
    channel: Option<String>,
    location: Option<String>,
    near: Option<String>,
    in_stock: Option<bool>,
    limit: Option<usize>,
}

/// What each item has to sell, per location: for a sales channel (only its locations count),
/// at one location, or nearest a customer first (`near=45.76,4.85`, with `in_stock=true`
/// for the shops that have some). A kit is as available as its scarcest component.
#[utoipa::path(get, path = "/commerce/availability", tag = "commerce",
    params(("skus" = String, Query, description = "SKUs, comma-separated (at most 100)"),
           ("channel" = Option<String>, Query, description = "only the locations of this sales channel"),
           ("location" = Option<String>, Query, description = "only this location"),
           ("near" = Option<String>, Query, description = "latitude,longitude: nearest first, with distances"),
           ("in_stock" = Option<bool>, Query, description = "only locations that have some"),
           ("limit" = Option<usize>, Query, description = "locations per item at most (default 100, at most 1,000)")),
    security(("bearer" = [])),
    responses((status = 200, description = "availability per item", body = Answer), Refusals))]
async fn availability(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(p): Query<AvailabilityParams>,
) -> Result<Json<Value>, ApiError> {
    let empty = |v: &Option<String>, code: &'static str, what: &str| {
        if v.as_deref() == Some("") {
            Err(ApiError::bad_request(
                code,
                format!("{what}, when given, is not empty"),
            ))
        } else {
            Ok(())
        }
    };
    empty(&p.channel, "invalid_channel", "channel")?;
    empty(&p.location, "invalid_location", "location")?;
    let near = match p.near.as_deref() {
        None => None,
        Some(n) => {
            let parsed = n.split_once(',').and_then(|(a, b)| {
                Some((a.trim().parse::<f64>().ok()?, b.trim().parse::<f64>().ok()?))
            });
            match parsed {
                Some((lat, lon)) if lat.is_finite() && lon.is_finite() => Some((lat, lon)),
                _ => {
                    return Err(ApiError::bad_request(
                        "invalid_position",
                        "near is latitude,longitude in degrees: near=45.76,4.85",
                    ))
                }
            }
        }
    };
    let query = stock::AvailabilityQuery {
        skus: skus(p.skus.as_deref())?,
        channel: p.channel,
        location: p.location,
        near,
        in_stock: p.in_stock.unwrap_or(false),
        limit: p.limit,
    };
    let (st, actor, now) = (store(&state), caller.actor(), state.engine.now());
    let items =
        blocking(move || Ok(stock::availability(st.as_ref(), &actor, &query, now)?)).await?;
    Ok(Json(json!({ "items": items })))
}

/// Check-and-reserve, all or nothing: `{"reference", "lines": [{"sku", "location",
/// "quantity"}], "expires_in_seconds"?, "backorder"?}`. `201` with what it holds; `200` when
/// the reference held exactly this already (a retried request); `409 insufficient_stock`
/// with every short line, or `409 reference_taken`.
#[utoipa::path(post, path = "/commerce/reservations", tag = "commerce", request_body = Answer,
    security(("bearer" = [])),
    responses((status = 201, description = "reserved", body = Answer),
               (status = 200, description = "held already", body = Answer), Refusals))]
async fn reserve(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: Option<Json<Value>>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = body_of(body, "invalid_reservation")?;
    let (st, actor, now) = (store(&state), caller.actor(), state.engine.now());
    let out = blocking(move || Ok(stock::reserve(st.as_ref(), &actor, body, now)?)).await?;
    let status = if out.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let reference = out
        .rows
        .first()
        .map(|r| r.reference.clone())
        .unwrap_or_default();
    Ok((status, Json(reservation_answer(&reference, &out.rows))))
}

/// What a reference holds, each line in its state now (`active`, `expired`, `released`,
/// `fulfilled`).
#[utoipa::path(get, path = "/commerce/reservations/{reference}", tag = "commerce",
    params(("reference" = String, Path, description = "the cart's or order's reference")),
    security(("bearer" = [])),
    responses((status = 200, description = "the reservation", body = Answer), Refusals))]
async fn get_reservation(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(reference): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (st, actor, now) = (store(&state), caller.actor(), state.engine.now());
    let r = reference.clone();
    let rows = blocking(move || Ok(stock::reservation(st.as_ref(), &actor, &r, now)?)).await?;
    Ok(Json(reservation_answer(&reference, &rows)))
}

/// Releases what a reference holds (its units are available again at once).
#[utoipa::path(delete, path = "/commerce/reservations/{reference}", tag = "commerce",
    params(("reference" = String, Path, description = "the cart's or order's reference")),
    security(("bearer" = [])),
    responses((status = 200, description = "the reservation after", body = Answer), Refusals))]
async fn release(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(reference): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (st, actor, now) = (store(&state), caller.actor(), state.engine.now());
    let r = reference.clone();
    let rows = blocking(move || Ok(stock::release(st.as_ref(), &actor, &r, now)?)).await?;
    Ok(Json(reservation_answer(&reference, &rows)))
}

/// Takes what a reference holds out of the stock (`{"reason"?: "collected"}`, default
/// `fulfilled`): on hand and reserved go down together, each line in the ledger. A
/// reference that holds nothing is refused (`409 not_held`).
#[utoipa::path(post, path = "/commerce/reservations/{reference}/fulfil", tag = "commerce",
    request_body = Answer,
    params(("reference" = String, Path, description = "the cart's or order's reference")),
    security(("bearer" = [])),
    responses((status = 200, description = "the movements", body = Answer), Refusals))]
async fn fulfil(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(reference): Path<String>,
    body: Option<Json<Value>>,
) -> Result<Json<Value>, ApiError> {
    let reason = match body.as_ref().map(|Json(b)| b.get("reason")) {
        None | Some(None) | Some(Some(Value::Null)) => None,
        Some(Some(Value::String(r))) => Some(r.clone()),
        Some(Some(_)) => {
            return Err(ApiError::bad_request(
                "invalid_movement",
                "`reason` is text",
            ))
        }
    };
    let (st, actor, now) = (store(&state), caller.actor(), state.engine.now());
    let moved = blocking(move || {
        Ok(stock::fulfil(
            st.as_ref(),
            &actor,
            &reference,
            reason.as_deref(),
            now,
        )?)
    })
    .await?;
    Ok(Json(json!({
        "movements": moved.iter().map(movement_json).collect::<Vec<_>>(),
    })))
}

fn recorded_answer(r: &sales::Recorded) -> Value {
    json!({
        "order": r.order,
        "created": r.created,
        "movements": r.movements.iter().map(movement_json).collect::<Vec<_>>(),
        "points": r.points,
        "pending_until": r.pending_until,
    })
}

/// A sale at a till, or any sale made on the spot (`{"order_id", "location", "channel"?:
/// "pos", "currency"?: "EUR", "customer"?: {"user_id", "anonymous_id", "email",
/// "loyalty_card"}, "lines": [{"sku", "quantity", "unit_price_minor"?}],
/// "payment_method"?, "coupons"?: [..]}`): the basket is priced with the offers (a code
/// that does not apply refuses the sale: `422 coupon_not_applied`; a limit reached meanwhile:
/// `409 offer_used_up`), the goods leave the location's stock, the member earns her points
/// and `Order Completed` lands on her timeline, together. `201`; `200` with the order as
/// recorded when its id was recorded already (nothing happens twice).
#[utoipa::path(post, path = "/commerce/sales", tag = "commerce", request_body = Answer,
    security(("bearer" = [])),
    responses((status = 201, description = "recorded", body = Answer),
               (status = 200, description = "recorded already", body = Answer), Refusals))]
async fn sale(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: Option<Json<Value>>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = body_of(body, "invalid_sale")?;
    let (st, actor, now) = (store(&state), caller.actor(), state.engine.now());
    let r = blocking(move || Ok(sales::record_sale(st.as_ref(), &actor, body, now)?)).await?;
    if r.created {
        state.engine.wake_unify();
    }
    let status = if r.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(recorded_answer(&r))))
}

/// An order with its lines and returns.
#[utoipa::path(get, path = "/commerce/orders/{id}", tag = "commerce",
    params(("id" = String, Path, description = "the order id")),
    security(("bearer" = [])),
    responses((status = 200, description = "the order", body = Answer), Refusals))]
async fn get_order(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (st, actor, now) = (store(&state), caller.actor(), state.engine.now());
    let o = blocking(move || Ok(orders::order_now(st.as_ref(), &actor, &id, now)?)).await?;
    Ok(Json(json!(o)))
}

/// Goods of an order brought back to any location (`{"return_id", "location", "lines":
/// [{"sku", "quantity"}]}`): back into that location's stock, their points taken back,
/// `Order Refunded` on the timeline. `201`; `200` when that return id was recorded already.
#[utoipa::path(post, path = "/commerce/orders/{id}/returns", tag = "commerce", request_body = Answer,
    params(("id" = String, Path, description = "the order id")),
    security(("bearer" = [])),
    responses((status = 201, description = "recorded", body = Answer),
               (status = 200, description = "recorded already", body = Answer), Refusals))]
async fn order_return(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Option<Json<Value>>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = body_of(body, "invalid_return")?;
    let (st, actor, now) = (store(&state), caller.actor(), state.engine.now());
    let r =
        blocking(move || Ok(sales::record_return(st.as_ref(), &actor, &id, body, now)?)).await?;
    if r.created {
        state.engine.wake_unify();
    }
    let status = if r.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(recorded_answer(&r))))
}

/// The loyalty programme (its defaults until one is saved).
#[utoipa::path(get, path = "/commerce/loyalty/program", tag = "commerce",
    security(("bearer" = [])),
    responses((status = 200, description = "the programme", body = Answer), Refusals))]
async fn get_program(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let (st, actor) = (store(&state), caller.actor());
    let p = blocking(move || Ok(loyalty::program(st.as_ref(), &actor)?)).await?;
    Ok(Json(json!(p)))
}

/// Saves the loyalty programme: `{"points_per_unit"?: 1, "pending_days"?: 14, "expiry"?:
/// {"kind": "months", "value": 12} | {"kind": "days", "value": 365} | {"kind": "never"},
/// "time_zone"?, "tiers"?: {"basis": "points" | "spend", "tiers": [{"name", "threshold"}],
/// "period_days"?: 365, "downgrade"?: "one_down" | "balance_based"}}`.
#[utoipa::path(put, path = "/commerce/loyalty/program", tag = "commerce", request_body = Answer,
    security(("bearer" = [])),
    responses((status = 200, description = "the programme as saved", body = Answer), Refusals))]
async fn put_program(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: Option<Json<Value>>,
) -> Result<Json<Value>, ApiError> {
    let body = body_of(body, "invalid_program")?;
    let (st, actor, now) = (store(&state), caller.actor(), state.engine.now());
    let p = blocking(move || Ok(loyalty::put_program(st.as_ref(), &actor, body, now)?)).await?;
    Ok(Json(json!(p)))
}

fn account_json(a: &loyalty::Account) -> Value {
    json!({
        "member": a.member,
        "balance": a.balance,
        "tier": a.tier,
        "expiring": a.expiring.iter().map(|(at, n)| json!({"at": format_timestamp(*at), "points": n})).collect::<Vec<_>>(),
        "lots": a.lots.iter().map(|l| json!({
            "order": l.order, "points": l.points, "used": l.used, "cancelled": l.cancelled,
            "remaining": l.remaining(), "earned_at": format_timestamp(l.earned_at),
            "pending_until": l.pending_until.map(format_timestamp),
            "expires_at": l.expires_at.map(format_timestamp),
        })).collect::<Vec<_>>(),
        "entries": a.entries,
    })
}

/// A member's account: balance (earned = active + pending + used + expired), tier, points
/// expiring in the next 90 days, lots and entries.
#[utoipa::path(get, path = "/commerce/loyalty/members/{card}", tag = "commerce",
    params(("card" = String, Path, description = "the loyalty card number")),
    security(("bearer" = [])),
    responses((status = 200, description = "the account", body = Answer), Refusals))]
async fn member(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(card): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (st, actor, now) = (store(&state), caller.actor(), state.engine.now());
    let a = blocking(move || Ok(loyalty::account(st.as_ref(), &actor, &card, now)?)).await?;
    Ok(Json(account_json(&a)))
}

/// Spends points (`{"redemption_id", "points", "channel"?}`), soonest-expiring first: `201`,
/// or `200` when that redemption was recorded already; too few active points: `422
/// insufficient_points`.
#[utoipa::path(post, path = "/commerce/loyalty/members/{card}/redemptions", tag = "commerce",
    request_body = Answer,
    params(("card" = String, Path, description = "the loyalty card number")),
    security(("bearer" = [])),
    responses((status = 201, description = "spent", body = Answer),
               (status = 200, description = "spent already", body = Answer), Refusals))]
async fn redeem(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(card): Path<String>,
    body: Option<Json<Value>>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = body_of(body, "invalid_redemption")?;
    let (st, actor, now) = (store(&state), caller.actor(), state.engine.now());
    let (outcome, a) =
        blocking(move || Ok(loyalty::redeem(st.as_ref(), &actor, &card, body, now)?)).await?;
    let status = match outcome {
        parcours_core::commerce::loyalty::Outcome::Applied { .. } => StatusCode::CREATED,
        parcours_core::commerce::loyalty::Outcome::Duplicate => StatusCode::OK,
    };
    Ok((status, Json(account_json(&a))))
}

/// Gives back exactly what a redemption took, to the lots it came from.
#[utoipa::path(post, path = "/commerce/loyalty/members/{card}/redemptions/{id}/refund", tag = "commerce",
    params(("card" = String, Path, description = "the loyalty card number"), ("id" = String, Path, description = "the redemption id")),
    security(("bearer" = [])),
    responses((status = 200, description = "the account after", body = Answer), Refusals))]
async fn refund_redemption(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((card, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (st, actor, now) = (store(&state), caller.actor(), state.engine.now());
    let (_, a) =
        blocking(move || Ok(loyalty::refund(st.as_ref(), &actor, &card, &id, now)?)).await?;
    Ok(Json(account_json(&a)))
}

/// Places an order of the web shop, the app or the call centre (`{"order_id", "channel"?:
/// "web", "currency"?, "customer"?, "lines": [{"sku", "quantity", "unit_price_minor"?}],
/// "fulfilment": {"kind": "pickup", "location"} | {"kind": "ship", "strategy"?: "priority" |
/// "nearest" | "most_stock", "split"?: true, "latitude"?, "longitude"?}, "coupons"?: [..]}`):
/// it is priced with the offers (as a sale is), its units are allocated and held at once,
/// all or nothing, and `Order Completed` lands on the timeline. Cancelling it gives its
/// coupons back.
/// `201`; `200` when the order id was recorded already.
#[utoipa::path(post, path = "/commerce/orders", tag = "commerce", request_body = Answer,
    security(("bearer" = [])),
    responses((status = 201, description = "placed", body = Answer),
               (status = 200, description = "placed already", body = Answer), Refusals))]
async fn place_order(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: Option<Json<Value>>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = body_of(body, "invalid_order")?;
    let (st, actor, now) = (store(&state), caller.actor(), state.engine.now());
    let r = blocking(move || Ok(orders::place(st.as_ref(), &actor, body, now)?)).await?;
    if r.created {
        state.engine.wake_unify();
    }
    let status = if r.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(recorded_answer(&r))))
}

/// Moves an order on: `{"status": "ready_for_pickup" | "collected" | "shipped" |
/// "cancelled", "pickup_hours"?: 72}`, each change with its event on the timeline (`Order
/// Ready for Pickup` …). Collected or shipped: the units leave the stock and the member earns
/// her points. Past its pickup deadline a ready order reads `not_collected` and its units are
/// for sale again.
#[utoipa::path(post, path = "/commerce/orders/{id}/status", tag = "commerce", request_body = Answer,
    params(("id" = String, Path, description = "the order id")),
    security(("bearer" = [])),
    responses((status = 200, description = "the order after", body = Answer), Refusals))]
async fn order_status(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Option<Json<Value>>,
) -> Result<Json<Value>, ApiError> {
    let body = body_of(body, "invalid_status")?;
    let (st, actor, now) = (store(&state), caller.actor(), state.engine.now());
    let r =
        blocking(move || Ok(orders::change_status(st.as_ref(), &actor, &id, body, now)?)).await?;
    state.engine.wake_unify();
    Ok(Json(recorded_answer(&r)))
}

/// Every offer, by id, with how many orders used it.
#[utoipa::path(get, path = "/commerce/offers", tag = "commerce",
    security(("bearer" = [])),
    responses((status = 200, description = "the offers", body = Answer), Refusals))]
async fn list_offers(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let (st, actor) = (store(&state), caller.actor());
    let list = blocking(move || Ok(offers::list(st.as_ref(), &actor)?)).await?;
    Ok(Json(json!({"offers": list})))
}

/// An offer with how many orders used it.
#[utoipa::path(get, path = "/commerce/offers/{id}", tag = "commerce",
    params(("id" = String, Path, description = "the offer's id")),
    security(("bearer" = [])),
    responses((status = 200, description = "the offer", body = Answer), Refusals))]
async fn get_offer(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (st, actor) = (store(&state), caller.actor());
    let o = blocking(move || Ok(offers::get(st.as_ref(), &actor, &id)?)).await?;
    Ok(Json(json!(o)))
}

/// Creates or replaces an offer: `{"name", "active"?: true, "priority"?: 0, "stacking"?:
/// "stackable" | "exclusive", "channels"?: [..], "starts_at"?, "ends_at"?, "currency"?,
/// "audience"?, "coupon"?: {"codes": [..], "limit_per_code"?, "limit_per_customer"?},
/// "min_subtotal_minor"?, "requires"?: [{"sku", "quantity"}], "reward": {"kind":
/// "percent_off", "percent", "skus"?} | {"kind": "amount_off", "amount_minor", "skus"?} |
/// {"kind": "bundle", "items": [{"sku", "quantity"}], "price_minor"} | {"kind":
/// "free_item", "sku", "quantity"}}`.
#[utoipa::path(put, path = "/commerce/offers/{id}", tag = "commerce", request_body = Answer,
    params(("id" = String, Path, description = "the offer's id")),
    security(("bearer" = [])),
    responses((status = 200, description = "the offer as saved", body = Answer), Refusals))]
async fn put_offer(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Option<Json<Value>>,
) -> Result<Json<Value>, ApiError> {
    let body = body_of(body, "invalid_offer")?;
    let (st, actor, now) = (store(&state), caller.actor(), state.engine.now());
    let o = blocking(move || Ok(offers::put(st.as_ref(), &actor, &id, body, now)?)).await?;
    Ok(Json(json!(o)))
}

/// Deletes an offer (the orders that used it keep saying so; to pause one, save it with
/// `"active": false`).
#[utoipa::path(delete, path = "/commerce/offers/{id}", tag = "commerce",
    params(("id" = String, Path, description = "the offer's id")),
    security(("bearer" = [])),
    responses((status = 204, description = "deleted"), Refusals))]
async fn delete_offer(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let (st, actor) = (store(&state), caller.actor());
    blocking(move || Ok(offers::delete(st.as_ref(), &actor, &id)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Prices a basket with the offers, without buying it: `{"channel"?: "web", "currency"?:
/// "EUR", "customer"?, "lines": [{"sku", "quantity", "unit_price_minor"?}], "coupons"?:
/// [..]}`. The answer gives the subtotal, each line's discount, the offers that applied
/// with their discount, why each other one did not (`not_applied`: offer, reason code,
/// message) and the codes no offer knows.
#[utoipa::path(post, path = "/commerce/baskets/evaluate", tag = "commerce", request_body = Answer,
    security(("bearer" = [])),
    responses((status = 200, description = "the priced basket", body = Answer), Refusals))]
async fn evaluate_basket(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: Option<Json<Value>>,
) -> Result<Json<Value>, ApiError> {
    let body = body_of(body, "invalid_basket")?;
    let (st, actor, now) = (store(&state), caller.actor(), state.engine.now());
    let e = blocking(move || Ok(offers::evaluate(st.as_ref(), &actor, body, now)?)).await?;
    Ok(Json(json!(e)))
}

#[derive(Deserialize, utoipa::IntoParams)]
struct AlertQuery {
    /// The item whose alerts to list.
    sku: String,
}

fn alert_json(a: &parcours_store::StockAlert) -> Value {
    json!({
        "sku": a.sku, "location": a.location, "subscriber": a.subscriber,
        "customer": serde_json::from_str::<Value>(&a.customer).unwrap_or(Value::Null),
        "reason": a.reason, "quantity": a.quantity, "created_at": format_timestamp(a.created_at),
        "notified_at": a.notified_at.map(format_timestamp),
    })
}

/// An item's stock alerts at every location: who waits for it where, and who was told.
#[utoipa::path(get, path = "/commerce/stock-alerts", tag = "commerce", params(AlertQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "the alerts", body = Answer), Refusals))]
async fn list_alerts(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<AlertQuery>,
) -> Result<Json<Value>, ApiError> {
    let (st, actor) = (store(&state), caller.actor());
    let list = blocking(move || Ok(alerts::list(st.as_ref(), &actor, &q.sku)?)).await?;
    Ok(Json(
        json!({"alerts": list.iter().map(alert_json).collect::<Vec<_>>()}),
    ))
}

/// A customer asks to be told when an item is available at a location: `{"sku", "location",
/// "customer": {"user_id" | "anonymous_id" | "email" | "loyalty_card"}, "quantity"?: 1}`.
/// Once that many are available there, `Back in Stock` lands on her timeline (within about
/// a second), once; asking again waits again. `201`.
#[utoipa::path(post, path = "/commerce/stock-alerts", tag = "commerce", request_body = Answer,
    security(("bearer" = [])),
    responses((status = 201, description = "the alert", body = Answer), Refusals))]
async fn post_alert(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: Option<Json<Value>>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = body_of(body, "invalid_alert")?;
    let (st, actor, now) = (store(&state), caller.actor(), state.engine.now());
    let a = blocking(move || Ok(alerts::subscribe(st.as_ref(), &actor, body, now)?)).await?;
    Ok((StatusCode::CREATED, Json(alert_json(&a))))
}
