//! Stock: movements into the ledger, levels, availability for a channel or near a customer,
//! and reservations (check-and-reserve, release, fulfil).

use std::collections::{BTreeMap, BTreeSet};

use parcours_core::commerce::catalogue::{Item, Location};
use parcours_core::commerce::inventory::{
    self, distance_km, item_available, Adjustment, Change, Line, StockState,
};
use parcours_core::time::Millis;
use parcours_store::{
    Fulfilled, Movement, Reservation, ReserveRequest, Reserved, StockLevel, Store,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::read;
use crate::{Actor, ServiceError};

/// Movements in one request at most.
pub const MAX_MOVEMENTS: usize = 500;
/// SKUs one availability question may name.
pub const MAX_SKUS: usize = 100;
/// The longest a reservation may hold (31 days), in seconds.
pub const MAX_HOLD_SECONDS: i64 = 31 * 24 * 3600;

/// A page size: the default 100, at most `max`.
pub(crate) fn page_limit(limit: Option<usize>, max: usize) -> Result<usize, ServiceError> {
    match limit {
        None => Ok(100),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(ServiceError::invalid(
            "invalid_limit",
            format!("limit is from 1 to {max}; got {n}"),
        )),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MovementBody {
    sku: String,
    location: String,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    delta: Option<i64>,
    /// The quantity counted (or, for safety stock, decided).
    #[serde(default)]
    set: Option<i64>,
    reason: String,
    #[serde(default)]
    reference: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MovementsBody {
    movements: Vec<MovementBody>,
}

fn adjustment(m: MovementBody) -> Result<Adjustment, ServiceError> {
    let state = match m.state.as_deref() {
        None => StockState::OnHand,
        Some(s) => StockState::parse(s).ok_or_else(|| {
            ServiceError::invalid(
                "invalid_movement",
                format!("state is on_hand, safety_stock, damaged or quality_control; got {s:?}"),
            )
        })?,
    };
    let change = match (m.delta, m.set) {
        (Some(d), None) => Change::By(d),
        (None, Some(n)) => Change::To(n),
        _ => {
            return Err(ServiceError::invalid(
                "invalid_movement",
                format!(
                    "give a movement of {} at {} either a delta (units in or out) or set (the quantity counted), not both",
                    m.sku, m.location
                ),
            ))
        }
    };
    let a = Adjustment {
        sku: m.sku,
        location: m.location,
        state,
        change,
        reason: m.reason,
        reference: m.reference,
    };
    a.check()?;
    Ok(a)
}

/// The catalogue's items of these SKUs; a missing one is refused with `unknown_item`.
fn known_items(
    store: &dyn Store,
    ws: &str,
    skus: impl IntoIterator<Item = String>,
) -> Result<BTreeMap<String, Item>, ServiceError> {
    let mut out = BTreeMap::new();
    for sku in skus.into_iter().collect::<BTreeSet<_>>() {
        let item = store.item(ws, &sku)?.ok_or_else(|| {
            ServiceError::invalid(
                "unknown_item",
                format!(
                    "{sku} is not in the catalogue; add it with PUT /api/v1/commerce/items/{sku}"
                ),
            )
        })?;
        out.insert(sku, item);
    }
    Ok(out)
}

/// The workspace's locations by id, each of `wanted` checked to be one.
fn known_locations<'a>(
    store: &dyn Store,
    ws: &str,
    wanted: impl IntoIterator<Item = &'a str>,
) -> Result<BTreeMap<String, Location>, ServiceError> {
    let all: BTreeMap<String, Location> = store
        .locations(ws)?
        .into_iter()
        .map(|l| (l.id.clone(), l))
        .collect();
    for id in wanted {
        if !all.contains_key(id) {
            return Err(ServiceError::invalid(
                "unknown_location",
                format!("{id} is not a location; add it with PUT /api/v1/commerce/locations/{id}"),
            ));
        }
    }
    Ok(all)
}

/// Applies movements, all or none: `{"movements": [{"sku", "location", "state"?, "delta" |
/// "set", "reason", "reference"?}]}`. Items and locations must exist; a kit has no stock of
/// its own. A movement that would take more than is available is refused whole
/// (`insufficient_stock`).
pub fn move_stock(
    store: &dyn Store,
    actor: &Actor,
    body: Value,
    now: Millis,
) -> Result<Vec<Movement>, ServiceError> {
    actor.require_admin()?;
    let body: MovementsBody = read("invalid_movement", "the movements", body)?;
    if body.movements.is_empty() || body.movements.len() > MAX_MOVEMENTS {
        return Err(ServiceError::invalid(
            "invalid_movement",
            format!(
                "give 1 to {MAX_MOVEMENTS} movements; got {}",
                body.movements.len()
            ),
        ));
    }
    let adjustments = body
        .movements
        .into_iter()
        .map(adjustment)
        .collect::<Result<Vec<_>, _>>()?;
    let items = known_items(
        store,
        &actor.workspace,
        adjustments.iter().map(|a| a.sku.clone()),
    )?;
    if let Some(kit) = items.values().find(|i| i.is_kit()) {
        return Err(ServiceError::invalid(
            "kit_has_no_stock",
            format!("{} is a kit: move the stock of its components", kit.sku),
        ));
    }
    known_locations(
        store,
        &actor.workspace,
        adjustments.iter().map(|a| a.location.as_str()),
    )?;
    store
        .move_stock(&actor.workspace, &adjustments, now)?
        .map_err(|short| ServiceError::OutOfStock {
            shortages: vec![short],
        })
}

/// The levels of SKUs at every location that holds them.
pub fn stock(
    store: &dyn Store,
    actor: &Actor,
    skus: &[String],
    now: Millis,
) -> Result<Vec<StockLevel>, ServiceError> {
    check_skus(skus)?;
    Ok(store.stock(&actor.workspace, skus, now)?)
}

/// A page of the levels at one location.
pub fn stock_at(
    store: &dyn Store,
    actor: &Actor,
    location: &str,
    after: Option<&str>,
    limit: Option<usize>,
    now: Millis,
) -> Result<Vec<StockLevel>, ServiceError> {
    let limit = page_limit(limit, 1_000)?;
    known_locations(store, &actor.workspace, [location])
        .map_err(|_| ServiceError::NotFound(format!("location {location}")))?;
    Ok(store.stock_at(&actor.workspace, location, after, limit, now)?)
}

/// An item's ledger, newest first.
pub fn movements(
    store: &dyn Store,
    actor: &Actor,
    sku: &str,
    location: Option<&str>,
    before: Option<i64>,
    limit: Option<usize>,
) -> Result<Vec<Movement>, ServiceError> {
    let limit = page_limit(limit, 1_000)?;
    Ok(store.movements(&actor.workspace, sku, location, before, limit)?)
}

fn check_skus(skus: &[String]) -> Result<(), ServiceError> {
    if skus.is_empty() || skus.len() > MAX_SKUS {
        return Err(ServiceError::invalid(
            "invalid_sku",
            format!("name 1 to {MAX_SKUS} SKUs; got {}", skus.len()),
        ));
    }
    for s in skus {
        parcours_core::commerce::check_id("SKU", "invalid_sku", s)?;
    }
    Ok(())
}

/// What to ask availability for.
#[derive(Debug, Clone, Default)]
pub struct AvailabilityQuery {
    pub skus: Vec<String>,
    /// Only the locations that serve this sales channel (`web`, `app`, `pos` …).
    pub channel: Option<String>,
    /// Only this location.
    pub location: Option<String>,
    /// The customer's position: locations nearest first, with their distance.
    pub near: Option<(f64, f64)>,
    /// Only locations that have some.
    pub in_stock: bool,
    /// Locations per item at most.
    pub limit: Option<usize>,
}

/// One location's availability of an item.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AtLocation {
    pub location: String,
    pub name: String,
    pub kind: &'static str,
    pub available: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distance_km: Option<f64>,
    pub pickup: &'static str,
}

/// An item's availability: in total over the locations asked about, and per location.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemAvailability {
    pub sku: String,
    pub name: String,
    pub kit: bool,
    pub available: i64,
    pub locations: Vec<AtLocation>,
}

/// "In stock at Lyon Part-Dieu, 3 left": what each item has to sell per location, for a
/// sales channel (only its locations count), one location, or nearest a customer first. A
/// kit is as available as its scarcest component at each location; a location short after a
/// count shows 0, never less.
pub fn availability(
    store: &dyn Store,
    actor: &Actor,
    q: &AvailabilityQuery,
    now: Millis,
) -> Result<Vec<ItemAvailability>, ServiceError> {
    check_skus(&q.skus)?;
    let limit = page_limit(q.limit, 1_000)?;
    if let Some((lat, lon)) = q.near {
        if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
            return Err(ServiceError::invalid(
                "invalid_position",
                "near is latitude,longitude in degrees (−90 to 90, −180 to 180)",
            ));
        }
    }
    let ws = &actor.workspace;
    let items = known_items(store, ws, q.skus.iter().cloned())?;
    let locations = known_locations(store, ws, q.location.as_deref())?;
    let wanted = |l: &Location| {
        q.channel.as_deref().is_none_or(|c| l.serves(c))
            && q.location.as_deref().is_none_or(|id| l.id == id)
    };
    // Every SKU whose levels are needed: the items and the kits' components.
    let mut skus: BTreeSet<String> = BTreeSet::new();
    for item in items.values() {
        if item.is_kit() {
            skus.extend(item.components.iter().map(|c| c.sku.clone()));
        } else {
            skus.insert(item.sku.clone());
        }
    }
    let skus: Vec<String> = skus.into_iter().collect();
    let mut levels: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    let found = store.stock(ws, &skus, now)?;
    for l in &found {
        levels.insert(
            (l.sku.as_str(), l.location.as_str()),
            l.quantities.sellable(),
        );
    }
    let mut out = Vec::with_capacity(q.skus.len());
    for sku in &q.skus {
        let item = &items[sku];
        let mut at: Vec<AtLocation> = locations
            .values()
            .filter(|l| wanted(l))
            .filter_map(|l| {
                let has = |s: &str| levels.get(&(s, l.id.as_str())).copied();
                // A location with no record of the item (or of a component) is left out.
                let known = if item.is_kit() {
                    item.components.iter().all(|c| has(&c.sku).is_some())
                } else {
                    has(sku).is_some()
                };
                if !known {
                    return None;
                }
                let available = item_available(item, |s| has(s).unwrap_or(0));
                Some(AtLocation {
                    location: l.id.clone(),
                    name: l.name.clone(),
                    kind: l.kind.as_str(),
                    available,
                    distance_km: q
                        .near
                        .zip(l.position())
                        .map(|(a, b)| (distance_km(a, b) * 10.0).round() / 10.0),
                    pickup: l.pickup.as_str(),
                })
            })
            .filter(|a| !q.in_stock || a.available > 0)
            .collect();
        if q.near.is_some() {
            at.sort_by(|a, b| {
                let d = |x: &AtLocation| x.distance_km.unwrap_or(f64::INFINITY);
                d(a).total_cmp(&d(b))
                    .then_with(|| a.location.cmp(&b.location))
            });
        }
        let available = at.iter().map(|a| a.available).sum();
        at.truncate(limit);
        out.push(ItemAvailability {
            sku: sku.clone(),
            name: item.name.clone(),
            kit: item.is_kit(),
            available,
            locations: at,
        });
    }
    Ok(out)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReserveBody {
    reference: String,
    lines: Vec<Line>,
    #[serde(default)]
    expires_in_seconds: Option<i64>,
    #[serde(default)]
    backorder: bool,
}

/// What a reservation request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveOutcome {
    /// `true`: this request reserved; `false`: the reference held this already (a retry).
    pub created: bool,
    pub rows: Vec<Reservation>,
}

/// Check-and-reserve, all or nothing: `{"reference", "lines": [{"sku", "location",
/// "quantity"}], "expires_in_seconds"?, "backorder"?}`. Kits are reserved as their
/// components; lines of one item at one location are summed before the check. The same
/// request again is answered with what it holds; a reference holding something else is
/// refused (`reference_taken`); what does not fit is refused whole (`insufficient_stock`,
/// with every short line).
pub fn reserve(
    store: &dyn Store,
    actor: &Actor,
    body: Value,
    now: Millis,
) -> Result<ReserveOutcome, ServiceError> {
    actor.require_admin()?;
    let body: ReserveBody = read("invalid_reservation", "the reservation", body)?;
    parcours_core::commerce::check_id("reference", "invalid_reference", &body.reference)?;
    let expires_at = match body.expires_in_seconds {
        None => None,
        Some(s) if (1..=MAX_HOLD_SECONDS).contains(&s) => Some(now + s * 1000),
        Some(s) => {
            return Err(ServiceError::invalid(
                "invalid_reservation",
                format!("expires_in_seconds is from 1 to {MAX_HOLD_SECONDS} (31 days); got {s}"),
            ))
        }
    };
    // Checked before the catalogue is asked about any of it.
    inventory::demand(&body.lines)?;
    let items = known_items(
        store,
        &actor.workspace,
        body.lines.iter().map(|l| l.sku.clone()),
    )?;
    known_locations(
        store,
        &actor.workspace,
        body.lines.iter().map(|l| l.location.as_str()),
    )?;
    let demand = inventory::demand(&inventory::expand_kits(&body.lines, &items))?;
    let request = ReserveRequest {
        workspace_id: actor.workspace.clone(),
        reference: body.reference.clone(),
        demand,
        expires_at,
        backorder: body.backorder,
    };
    match store.reserve(&request, now)? {
        Reserved::Held(rows) => Ok(ReserveOutcome {
            created: true,
            rows,
        }),
        Reserved::AlreadyHeld(rows) => Ok(ReserveOutcome {
            created: false,
            rows,
        }),
        Reserved::Short(shortages) => Err(ServiceError::OutOfStock { shortages }),
        Reserved::ReferenceTaken(rows) => Err(ServiceError::Conflict {
            code: "reference_taken",
            message: format!(
                "{} already holds {} line(s) ({}); release it or use another reference",
                body.reference,
                rows.len(),
                rows.iter()
                    .map(|r| format!(
                        "{} {} at {}: {}",
                        r.quantity,
                        r.sku,
                        r.location,
                        r.state.as_str()
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

/// A reference's reservation rows in their state now (`NotFound` if it never held any).
pub fn reservation(
    store: &dyn Store,
    actor: &Actor,
    reference: &str,
    now: Millis,
) -> Result<Vec<Reservation>, ServiceError> {
    let rows = store.reservations(&actor.workspace, reference, now)?;
    if rows.is_empty() {
        return Err(ServiceError::NotFound(format!("reservation {reference}")));
    }
    Ok(rows)
}

/// Releases what a reference holds (nothing if it holds nothing any more); its rows after.
pub fn release(
    store: &dyn Store,
    actor: &Actor,
    reference: &str,
    now: Millis,
) -> Result<Vec<Reservation>, ServiceError> {
    actor.require_admin()?;
    reservation(store, actor, reference, now)?;
    Ok(store.release_reservation(&actor.workspace, reference, now)?)
}

/// Takes what a reference holds out of the stock (shipped, collected): its movements. A
/// reference that holds nothing (released, expired, fulfilled already) is refused
/// (`not_held`): nothing left the stock twice.
pub fn fulfil(
    store: &dyn Store,
    actor: &Actor,
    reference: &str,
    reason: Option<&str>,
    now: Millis,
) -> Result<Vec<Movement>, ServiceError> {
    actor.require_admin()?;
    let reason = reason.unwrap_or("fulfilled");
    parcours_core::commerce::check_id("reason", "invalid_movement", reason)?;
    reservation(store, actor, reference, now)?;
    match store.fulfil_reservation(&actor.workspace, reference, reason, now)? {
        Fulfilled::Done(moved) => Ok(moved),
        Fulfilled::NotHeld(rows) => Err(ServiceError::Conflict {
            code: "not_held",
            message: format!(
                "{reference} holds nothing to fulfil: its lines are {}",
                rows.iter()
                    .map(|r| r.state.as_str())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}
