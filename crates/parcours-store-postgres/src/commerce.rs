//! The catalogue, locations, stock levels, the movement ledger and reservations.
//!
//! Several nodes write the same stock: a request locks its reference (an advisory lock on its
//! hash) and then its level rows with `SELECT … FOR UPDATE` in (SKU, location) order, so two
//! requests for the same last unit are serialised and requests over several items never wait
//! on each other in a cycle. A deadlock PostgreSQL still reports is retried.

use std::collections::{BTreeMap, BTreeSet};

use parcours_core::commerce::catalogue::{Item, Location};
use parcours_core::commerce::inventory::{self, Adjustment, Key, Quantities, StockState};
use parcours_core::commerce::loyalty::{Ledger, Outcome as LoyaltyOutcome};
use parcours_core::time::Millis;
use parcours_store::{
    used_up, Commerce, CommerceWrite, Committed, Fulfilled, LowStock, LoyaltyRow, Movement,
    OfferUses, OrderRecord, Orders, Reservation, ReservationState, ReserveRequest, Reserved,
    Result, SpendRow, StockAlert, StockLevel, StoreError,
};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use crate::{backend, PgStore};

type SqlResult<T> = std::result::Result<T, sqlx::Error>;

/// A level's columns, `reserved` counting live reservations only (`$2` is now).
const LEVEL: &str = "l.sku, l.location_id, l.on_hand,
    l.reserved - coalesce((SELECT sum(r.quantity) FROM stock_reservations r
        WHERE r.workspace_id = l.workspace_id AND r.sku = l.sku AND r.location_id = l.location_id
          AND r.state = 'active' AND r.expires_at IS NOT NULL AND r.expires_at <= $2), 0)::BIGINT,
    l.safety_stock, l.damaged, l.quality_control, l.updated_at";

const MOVEMENT: &str = "id, sku, location_id, state, delta, quantity_after, reason, reference, at";
const RESERVATION: &str =
    "reference, sku, location_id, quantity, state, created_at, expires_at, settled_at";

fn decode(what: String) -> sqlx::Error {
    sqlx::Error::Decode(what.into())
}

fn level(r: &PgRow) -> SqlResult<StockLevel> {
    Ok(StockLevel {
        sku: r.try_get(0)?,
        location: r.try_get(1)?,
        quantities: Quantities {
            on_hand: r.try_get(2)?,
            reserved: r.try_get(3)?,
            safety_stock: r.try_get(4)?,
            damaged: r.try_get(5)?,
            quality_control: r.try_get(6)?,
        },
        updated_at: r.try_get(7)?,
    })
}

fn movement(r: &PgRow) -> SqlResult<Movement> {
    let state: String = r.try_get(3)?;
    Ok(Movement {
        id: r.try_get(0)?,
        sku: r.try_get(1)?,
        location: r.try_get(2)?,
        state: StockState::parse(&state).ok_or_else(|| decode(format!("stock state {state}")))?,
        delta: r.try_get(4)?,
        after: r.try_get(5)?,
        reason: r.try_get(6)?,
        reference: r.try_get(7)?,
        at: r.try_get(8)?,
    })
}

fn reservation(r: &PgRow, now: Millis) -> SqlResult<Reservation> {
    let state: String = r.try_get(4)?;
    let stored = ReservationState::parse(&state)
        .ok_or_else(|| decode(format!("reservation state {state}")))?;
    let expires_at: Option<i64> = r.try_get(6)?;
    Ok(Reservation {
        reference: r.try_get(0)?,
        sku: r.try_get(1)?,
        location: r.try_get(2)?,
        quantity: r.try_get(3)?,
        state: Reservation::state_at(stored, expires_at, now),
        created_at: r.try_get(5)?,
        expires_at,
        settled_at: r.try_get(7)?,
    })
}

async fn reference_rows(
    c: &mut PgConnection,
    workspace: &str,
    reference: &str,
    now: Millis,
) -> SqlResult<Vec<Reservation>> {
    let rows = sqlx::query(sql!(
        "SELECT {RESERVATION} FROM stock_reservations WHERE workspace_id = $1 AND reference = $2
         ORDER BY sku COLLATE \"C\", location_id COLLATE \"C\""
    ))
    .bind(workspace)
    .bind(reference)
    .fetch_all(&mut *c)
    .await?;
    rows.iter().map(|r| reservation(r, now)).collect()
}

/// Serialises the requests of one reference.
async fn lock_reference(c: &mut PgConnection, workspace: &str, reference: &str) -> SqlResult<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1 || ':' || $2, 7))")
        .bind(workspace)
        .bind(reference)
        .execute(&mut *c)
        .await?;
    Ok(())
}

/// Locks the levels of `keys` in (SKU, location) order, sweeps their expired reservations out
/// of `reserved` and returns the quantities found (keys with no level are absent). With
/// `create`, missing levels are made first (at zero), so they can be locked too.
async fn lock_levels(
    c: &mut PgConnection,
    workspace: &str,
    keys: &BTreeSet<Key>,
    create: bool,
    now: Millis,
) -> SqlResult<BTreeMap<Key, Quantities>> {
    let (skus, locations): (Vec<&str>, Vec<&str>) =
        keys.iter().map(|(s, l)| (s.as_str(), l.as_str())).unzip();
    if create {
        sqlx::query(
            "INSERT INTO stock_levels (workspace_id, sku, location_id, on_hand, reserved, safety_stock,
                                       damaged, quality_control, updated_at)
             SELECT $1, k.sku, k.loc, 0, 0, 0, 0, 0, $4
             FROM unnest($2::text[], $3::text[]) AS k(sku, loc)
             ORDER BY k.sku COLLATE \"C\", k.loc COLLATE \"C\"
             ON CONFLICT DO NOTHING",
        )
        .bind(workspace)
        .bind(&skus)
        .bind(&locations)
        .bind(now)
        .execute(&mut *c)
        .await?;
    }
    let rows = sqlx::query(
        "SELECT l.sku, l.location_id, l.on_hand, l.reserved, l.safety_stock, l.damaged, l.quality_control
         FROM stock_levels l JOIN unnest($2::text[], $3::text[]) AS k(sku, loc)
           ON l.sku = k.sku AND l.location_id = k.loc
         WHERE l.workspace_id = $1
         ORDER BY l.sku COLLATE \"C\", l.location_id COLLATE \"C\"
         FOR UPDATE OF l",
    )
    .bind(workspace)
    .bind(&skus)
    .bind(&locations)
    .fetch_all(&mut *c)
    .await?;
    let mut out = BTreeMap::new();
    for r in rows {
        let key: Key = (r.try_get(0)?, r.try_get(1)?);
        let mut q = Quantities {
            on_hand: r.try_get(2)?,
            reserved: r.try_get(3)?,
            safety_stock: r.try_get(4)?,
            damaged: r.try_get(5)?,
            quality_control: r.try_get(6)?,
        };
        let swept: Option<i64> = sqlx::query_scalar(
            "WITH gone AS (
               UPDATE stock_reservations SET state = 'expired', settled_at = expires_at
               WHERE workspace_id = $1 AND sku = $2 AND location_id = $3 AND state = 'active'
                 AND expires_at IS NOT NULL AND expires_at <= $4
               RETURNING quantity)
             SELECT sum(quantity)::BIGINT FROM gone",
        )
        .bind(workspace)
        .bind(&key.0)
        .bind(&key.1)
        .bind(now)
        .fetch_one(&mut *c)
        .await?;
        q.reserved -= swept.unwrap_or(0);
        out.insert(key, q);
    }
    Ok(out)
}

async fn write_level(
    c: &mut PgConnection,
    workspace: &str,
    key: &Key,
    q: &Quantities,
    now: Millis,
) -> SqlResult<()> {
    sqlx::query(
        "INSERT INTO stock_levels (workspace_id, sku, location_id, on_hand, reserved, safety_stock,
                                   damaged, quality_control, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (workspace_id, sku, location_id) DO UPDATE SET
           on_hand = excluded.on_hand, reserved = excluded.reserved,
           safety_stock = excluded.safety_stock, damaged = excluded.damaged,
           quality_control = excluded.quality_control, updated_at = excluded.updated_at,
           low_told_at = CASE WHEN stock_levels.low_told_at IS NULL THEN NULL
             WHEN $10 > coalesce((SELECT i.low_stock FROM commerce_items i
               WHERE i.workspace_id = $1 AND i.sku = $2), -1) THEN NULL
             ELSE stock_levels.low_told_at END",
    )
    .bind(workspace)
    .bind(&key.0)
    .bind(&key.1)
    .bind(q.on_hand)
    .bind(q.reserved)
    .bind(q.safety_stock)
    .bind(q.damaged)
    .bind(q.quality_control)
    .bind(now)
    // Risen above its low-stock threshold: a next fall is told again.
    .bind(q.available())
    .execute(&mut *c)
    .await?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn record_movement(
    c: &mut PgConnection,
    workspace: &str,
    key: &Key,
    state: StockState,
    delta: i64,
    after: i64,
    reason: &str,
    reference: Option<&str>,
    now: Millis,
) -> SqlResult<Movement> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO stock_movements (workspace_id, sku, location_id, state, delta, quantity_after,
                                      reason, reference, at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
    )
    .bind(workspace)
    .bind(&key.0)
    .bind(&key.1)
    .bind(state.as_str())
    .bind(delta)
    .bind(after)
    .bind(reason)
    .bind(reference)
    .bind(now)
    .fetch_one(&mut *c)
    .await?;
    Ok(Movement {
        id,
        sku: key.0.clone(),
        location: key.1.clone(),
        state,
        delta,
        after,
        reason: reason.into(),
        reference: reference.map(str::to_string),
        at: now,
    })
}

/// Applies movements inside the caller's transaction (see [`Commerce::move_stock`]).
async fn move_in(
    c: &mut PgConnection,
    workspace: &str,
    adjustments: &[Adjustment],
    now: Millis,
) -> SqlResult<std::result::Result<Vec<Movement>, inventory::Shortage>> {
    if adjustments.is_empty() {
        return Ok(Ok(Vec::new()));
    }
    let keys: BTreeSet<Key> = adjustments
        .iter()
        .map(|a| (a.sku.clone(), a.location.clone()))
        .collect();
    let mut levels = lock_levels(&mut *c, workspace, &keys, true, now).await?;
    let mut moved = Vec::with_capacity(adjustments.len());
    for a in adjustments {
        let key = (a.sku.clone(), a.location.clone());
        let q = levels.get(&key).copied().unwrap_or_default();
        let m = match inventory::apply(q, a) {
            Ok(m) => m,
            Err(short) => return Ok(Err(short)),
        };
        levels.insert(key.clone(), m.after);
        moved.push(
            record_movement(
                &mut *c,
                workspace,
                &key,
                a.state,
                m.delta,
                m.after.get(a.state),
                &a.reason,
                a.reference.as_deref(),
                now,
            )
            .await?,
        );
    }
    for (key, q) in &levels {
        write_level(&mut *c, workspace, key, q, now).await?;
    }
    Ok(Ok(moved))
}

/// Check-and-reserve inside the caller's transaction (see [`Commerce::reserve`]); the caller
/// commits only what was held.
async fn reserve_in(
    c: &mut PgConnection,
    request: &ReserveRequest,
    now: Millis,
) -> SqlResult<Reserved> {
    let ws = request.workspace_id.as_str();
    lock_reference(&mut *c, ws, &request.reference).await?;
    let before = reference_rows(&mut *c, ws, &request.reference, now).await?;
    let keys: BTreeSet<Key> = request
        .demand
        .keys()
        .cloned()
        .chain(before.iter().map(|r| (r.sku.clone(), r.location.clone())))
        .collect();
    let levels = lock_levels(&mut *c, ws, &keys, request.backorder, now).await?;
    let held = if before.is_empty() {
        before
    } else {
        reference_rows(&mut *c, ws, &request.reference, now).await?
    };
    if !held.is_empty() {
        let live: Vec<&Reservation> = held
            .iter()
            .filter(|r| r.state == ReservationState::Active)
            .collect();
        let same = live.len() == request.demand.len()
            && live.iter().all(|r| {
                request.demand.get(&(r.sku.clone(), r.location.clone())) == Some(&r.quantity)
            });
        if same {
            return Ok(Reserved::AlreadyHeld(held));
        }
        if !live.is_empty() || held.iter().any(|r| r.state == ReservationState::Fulfilled) {
            return Ok(Reserved::ReferenceTaken(held));
        }
    }
    let short = inventory::shortages(&request.demand, &levels, request.backorder);
    if !short.is_empty() {
        return Ok(Reserved::Short(short));
    }
    if !held.is_empty() {
        sqlx::query("DELETE FROM stock_reservations WHERE workspace_id = $1 AND reference = $2")
            .bind(ws)
            .bind(&request.reference)
            .execute(&mut *c)
            .await?;
    }
    // Every changed quantity written back, including the keys only swept.
    let mut levels = levels;
    let mut rows = Vec::with_capacity(request.demand.len());
    for (key, &quantity) in &request.demand {
        levels.entry(key.clone()).or_default().reserved += quantity;
        sqlx::query(sql!(
            "INSERT INTO stock_reservations ({RESERVATION}, workspace_id)
             VALUES ($1, $2, $3, $4, 'active', $5, $6, NULL, $7)"
        ))
        .bind(&request.reference)
        .bind(&key.0)
        .bind(&key.1)
        .bind(quantity)
        .bind(now)
        .bind(request.expires_at)
        .bind(ws)
        .execute(&mut *c)
        .await?;
        rows.push(Reservation {
            reference: request.reference.clone(),
            sku: key.0.clone(),
            location: key.1.clone(),
            quantity,
            state: ReservationState::Active,
            created_at: now,
            expires_at: request.expires_at,
            settled_at: None,
        });
    }
    for (key, q) in &levels {
        write_level(&mut *c, ws, key, q, now).await?;
    }
    Ok(Reserved::Held(rows))
}

/// Releases (`reason` none) or fulfils a reference's live rows inside the caller's
/// transaction.
async fn settle_in(
    c: &mut PgConnection,
    workspace: &str,
    reference: &str,
    now: Millis,
    reason: Option<&str>,
) -> SqlResult<(Vec<Reservation>, Option<Vec<Movement>>)> {
    lock_reference(&mut *c, workspace, reference).await?;
    let rows = reference_rows(&mut *c, workspace, reference, now).await?;
    let keys: BTreeSet<Key> = rows
        .iter()
        .map(|r| (r.sku.clone(), r.location.clone()))
        .collect();
    let mut levels = lock_levels(&mut *c, workspace, &keys, false, now).await?;
    let live: Vec<&Reservation> = rows
        .iter()
        .filter(|r| r.state == ReservationState::Active)
        .collect();
    if live.is_empty() {
        for (key, q) in &levels {
            write_level(&mut *c, workspace, key, q, now).await?;
        }
        let rows = reference_rows(&mut *c, workspace, reference, now).await?;
        return Ok((rows, None));
    }
    let state = if reason.is_some() {
        "fulfilled"
    } else {
        "released"
    };
    let mut moved = Vec::new();
    for r in &live {
        let key = (r.sku.clone(), r.location.clone());
        let q = levels.entry(key.clone()).or_default();
        q.reserved -= r.quantity;
        if let Some(reason) = reason {
            let taken = r.quantity.min(q.on_hand);
            q.on_hand -= taken;
            let after = q.on_hand;
            moved.push(
                record_movement(
                    &mut *c,
                    workspace,
                    &key,
                    StockState::OnHand,
                    -taken,
                    after,
                    reason,
                    Some(reference),
                    now,
                )
                .await?,
            );
        }
        sqlx::query(
            "UPDATE stock_reservations SET state = $5, settled_at = $6
             WHERE workspace_id = $1 AND reference = $2 AND sku = $3 AND location_id = $4",
        )
        .bind(workspace)
        .bind(reference)
        .bind(&r.sku)
        .bind(&r.location)
        .bind(state)
        .bind(now)
        .execute(&mut *c)
        .await?;
    }
    for (key, q) in &levels {
        write_level(&mut *c, workspace, key, q, now).await?;
    }
    let rows = reference_rows(&mut *c, workspace, reference, now).await?;
    Ok((rows, reason.map(|_| moved)))
}

fn json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Backend(e.to_string()))
}

fn parse<T: serde::de::DeserializeOwned>(body: &str) -> Result<T> {
    serde_json::from_str(body).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl PgStore {
    async fn move_stock_once(
        &self,
        workspace: &str,
        adjustments: &[Adjustment],
        now: Millis,
    ) -> SqlResult<std::result::Result<Vec<Movement>, inventory::Shortage>> {
        let mut tx = self.pool().begin().await?;
        let moved = move_in(&mut tx, workspace, adjustments, now).await?;
        if moved.is_ok() {
            tx.commit().await?;
        }
        Ok(moved)
    }

    async fn reserve_once(&self, request: &ReserveRequest, now: Millis) -> SqlResult<Reserved> {
        let mut tx = self.pool().begin().await?;
        let reserved = reserve_in(&mut tx, request, now).await?;
        if matches!(reserved, Reserved::Held(_)) {
            tx.commit().await?;
        }
        Ok(reserved)
    }

    async fn settle_once(
        &self,
        workspace: &str,
        reference: &str,
        now: Millis,
        reason: Option<&str>,
    ) -> SqlResult<(Vec<Reservation>, Option<Vec<Movement>>)> {
        let mut tx = self.pool().begin().await?;
        let out = settle_in(&mut tx, workspace, reference, now, reason).await?;
        tx.commit().await?;
        Ok(out)
    }
}

impl Commerce for PgStore {
    fn put_item(&self, workspace: &str, item: &Item, now: Millis) -> Result<()> {
        let body = json(item)?;
        self.run(
            sqlx::query(
                "INSERT INTO commerce_items (workspace_id, sku, body, updated_at, low_stock) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (workspace_id, sku) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at,
                   low_stock = excluded.low_stock",
            )
            .bind(workspace)
            .bind(&item.sku)
            .bind(body)
            .bind(now)
            .bind(item.low_stock)
            .execute(self.pool()),
        )
        .map_err(backend)?;
        Ok(())
    }

    fn item(&self, workspace: &str, sku: &str) -> Result<Option<Item>> {
        let body: Option<String> = self
            .run(
                sqlx::query_scalar(
                    "SELECT body FROM commerce_items WHERE workspace_id = $1 AND sku = $2",
                )
                .bind(workspace)
                .bind(sku)
                .fetch_optional(self.pool()),
            )
            .map_err(backend)?;
        body.map(|b| parse(&b)).transpose()
    }

    fn items(&self, workspace: &str, after: Option<&str>, limit: usize) -> Result<Vec<Item>> {
        let bodies: Vec<String> = self
            .run(
                sqlx::query_scalar(
                    "SELECT body FROM commerce_items WHERE workspace_id = $1 AND sku > $2
                     ORDER BY sku COLLATE \"C\" LIMIT $3",
                )
                .bind(workspace)
                .bind(after.unwrap_or(""))
                .bind(limit as i64)
                .fetch_all(self.pool()),
            )
            .map_err(backend)?;
        bodies.iter().map(|b| parse(b)).collect()
    }

    fn put_location(&self, workspace: &str, location: &Location, now: Millis) -> Result<()> {
        let body = json(location)?;
        self.run(
            sqlx::query(
                "INSERT INTO commerce_locations (workspace_id, id, body, updated_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (workspace_id, id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
            )
            .bind(workspace)
            .bind(&location.id)
            .bind(body)
            .bind(now)
            .execute(self.pool()),
        )
        .map_err(backend)?;
        Ok(())
    }

    fn locations(&self, workspace: &str) -> Result<Vec<Location>> {
        let bodies: Vec<String> = self
            .run(
                sqlx::query_scalar(
                    "SELECT body FROM commerce_locations WHERE workspace_id = $1 ORDER BY id COLLATE \"C\"",
                )
                .bind(workspace)
                .fetch_all(self.pool()),
            )
            .map_err(backend)?;
        bodies.iter().map(|b| parse(b)).collect()
    }

    fn move_stock(
        &self,
        workspace: &str,
        adjustments: &[Adjustment],
        now: Millis,
    ) -> Result<std::result::Result<Vec<Movement>, inventory::Shortage>> {
        crate::retrying(|| self.run(self.move_stock_once(workspace, adjustments, now)))
            .map_err(backend)
    }

    fn stock(&self, workspace: &str, skus: &[String], now: Millis) -> Result<Vec<StockLevel>> {
        let rows = self
            .run(
                sqlx::query(sql!(
                    "SELECT {LEVEL} FROM stock_levels l WHERE l.workspace_id = $1 AND l.sku = ANY($3)
                     ORDER BY l.sku COLLATE \"C\", l.location_id COLLATE \"C\""
                ))
                .bind(workspace)
                .bind(now)
                .bind(skus)
                .fetch_all(self.pool()),
            )
            .map_err(backend)?;
        rows.iter().map(|r| level(r).map_err(backend)).collect()
    }

    fn stock_at(
        &self,
        workspace: &str,
        location: &str,
        after: Option<&str>,
        limit: usize,
        now: Millis,
    ) -> Result<Vec<StockLevel>> {
        let rows = self
            .run(
                sqlx::query(sql!(
                    "SELECT {LEVEL} FROM stock_levels l
                     WHERE l.workspace_id = $1 AND l.location_id = $3 AND l.sku > $4
                     ORDER BY l.sku COLLATE \"C\" LIMIT $5"
                ))
                .bind(workspace)
                .bind(now)
                .bind(location)
                .bind(after.unwrap_or(""))
                .bind(limit as i64)
                .fetch_all(self.pool()),
            )
            .map_err(backend)?;
        rows.iter().map(|r| level(r).map_err(backend)).collect()
    }

    fn movements(
        &self,
        workspace: &str,
        sku: &str,
        location: Option<&str>,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Movement>> {
        let rows = self
            .run(
                sqlx::query(sql!(
                    "SELECT {MOVEMENT} FROM stock_movements
                     WHERE workspace_id = $1 AND sku = $2 AND ($3::text IS NULL OR location_id = $3) AND id < $4
                     ORDER BY id DESC LIMIT $5"
                ))
                .bind(workspace)
                .bind(sku)
                .bind(location)
                .bind(before.unwrap_or(i64::MAX))
                .bind(limit as i64)
                .fetch_all(self.pool()),
            )
            .map_err(backend)?;
        rows.iter().map(|r| movement(r).map_err(backend)).collect()
    }

    fn reserve(&self, request: &ReserveRequest, now: Millis) -> Result<Reserved> {
        crate::retrying(|| self.run(self.reserve_once(request, now))).map_err(backend)
    }

    fn release_reservation(
        &self,
        workspace: &str,
        reference: &str,
        now: Millis,
    ) -> Result<Vec<Reservation>> {
        crate::retrying(|| self.run(self.settle_once(workspace, reference, now, None)))
            .map(|(rows, _)| rows)
            .map_err(backend)
    }

    fn fulfil_reservation(
        &self,
        workspace: &str,
        reference: &str,
        reason: &str,
        now: Millis,
    ) -> Result<Fulfilled> {
        let (rows, moved) =
            crate::retrying(|| self.run(self.settle_once(workspace, reference, now, Some(reason))))
                .map_err(backend)?;
        Ok(match moved {
            Some(m) => Fulfilled::Done(m),
            None => Fulfilled::NotHeld(rows),
        })
    }

    fn reservations(
        &self,
        workspace: &str,
        reference: &str,
        now: Millis,
    ) -> Result<Vec<Reservation>> {
        self.run(async {
            let mut c = self.pool().acquire().await?;
            reference_rows(&mut c, workspace, reference, now).await
        })
        .map_err(backend)
    }

    fn put_stock_alert(&self, a: &StockAlert) -> Result<()> {
        self.run(
            sqlx::query(
                "INSERT INTO stock_alerts (workspace_id, sku, location_id, subscriber, customer, reason, created_at, quantity)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (workspace_id, sku, location_id, subscriber) DO UPDATE SET
                   customer = excluded.customer, reason = excluded.reason, quantity = excluded.quantity,
                   created_at = excluded.created_at, notified_at = NULL",
            )
            .bind(&a.workspace_id)
            .bind(&a.sku)
            .bind(&a.location)
            .bind(&a.subscriber)
            .bind(&a.customer)
            .bind(&a.reason)
            .bind(a.created_at)
            .bind(a.quantity)
            .execute(self.pool()),
        )
        .map_err(backend)?;
        Ok(())
    }

    fn stock_alerts(&self, workspace: &str, sku: &str) -> Result<Vec<StockAlert>> {
        let rows = self
            .run(
                sqlx::query(&format!(
                    "SELECT {ALERT} FROM stock_alerts a WHERE workspace_id = $1 AND sku = $2
                     ORDER BY location_id COLLATE \"C\", subscriber COLLATE \"C\""
                ))
                .bind(workspace)
                .bind(sku)
                .fetch_all(self.pool()),
            )
            .map_err(backend)?;
        rows.iter().map(|r| alert_row(r).map_err(backend)).collect()
    }

    fn due_stock_alerts(&self, now: Millis, limit: usize) -> Result<Vec<StockAlert>> {
        let rows = self
            .run(
                sqlx::query(&format!(
                    "SELECT {ALERT} FROM stock_alerts a
                     JOIN stock_levels l ON l.workspace_id = a.workspace_id AND l.sku = a.sku
                       AND l.location_id = a.location_id
                     WHERE a.notified_at IS NULL AND {AVAILABLE} >= a.quantity
                     ORDER BY a.created_at LIMIT $1"
                ))
                .bind(limit as i64)
                .bind(now)
                .fetch_all(self.pool()),
            )
            .map_err(backend)?;
        rows.iter().map(|r| alert_row(r).map_err(backend)).collect()
    }

    fn watch_low_stock(&self, since: Millis, now: Millis, limit: usize) -> Result<Vec<LowStock>> {
        self.run(async {
            let mut tx = self.pool().begin().await?;
            sqlx::query(&format!(
                "UPDATE stock_levels AS l SET low_told_at = NULL
                 FROM commerce_items i
                 WHERE i.workspace_id = l.workspace_id AND i.sku = l.sku
                   AND l.low_told_at IS NOT NULL AND l.updated_at >= $1
                   AND (i.low_stock IS NULL OR {AVAILABLE} > i.low_stock)"
            ))
            .bind(since)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let rows = sqlx::query(&format!(
                "SELECT l.workspace_id, l.sku, l.location_id, {AVAILABLE}, i.low_stock, l.updated_at
                 FROM stock_levels l JOIN commerce_items i ON i.workspace_id = l.workspace_id AND i.sku = l.sku
                 WHERE l.updated_at >= $1 AND l.low_told_at IS NULL AND i.low_stock IS NOT NULL
                   AND {AVAILABLE} <= i.low_stock
                 ORDER BY l.updated_at LIMIT $3"
            ))
            .bind(since)
            .bind(now)
            .bind(limit as i64)
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            rows.iter()
                .map(|r| {
                    Ok(LowStock {
                        workspace_id: r.try_get(0)?,
                        sku: r.try_get(1)?,
                        location: r.try_get(2)?,
                        available: r.try_get(3)?,
                        threshold: r.try_get(4)?,
                        updated_at: r.try_get(5)?,
                    })
                })
                .collect::<SqlResult<Vec<_>>>()
        })
        .map_err(backend)
    }
}

/// A stock alert's columns (table alias `a`).
const ALERT: &str = "a.workspace_id, a.sku, a.location_id, a.subscriber, a.customer, a.reason,
    a.created_at, a.notified_at, a.quantity";

/// What a level (alias `l`) has available at `$2` (now): reservations past their expiry
/// no longer count.
const AVAILABLE: &str =
    "(l.on_hand - l.reserved + coalesce((SELECT sum(r.quantity) FROM stock_reservations r
        WHERE r.workspace_id = l.workspace_id AND r.sku = l.sku AND r.location_id = l.location_id
          AND r.state = 'active' AND r.expires_at IS NOT NULL AND r.expires_at <= $2), 0)
    - l.safety_stock - l.damaged - l.quality_control)::bigint";

fn alert_row(r: &PgRow) -> SqlResult<StockAlert> {
    Ok(StockAlert {
        workspace_id: r.try_get(0)?,
        sku: r.try_get(1)?,
        location: r.try_get(2)?,
        subscriber: r.try_get(3)?,
        customer: r.try_get(4)?,
        reason: r.try_get(5)?,
        created_at: r.try_get(6)?,
        notified_at: r.try_get(7)?,
        quantity: r.try_get(8)?,
    })
}

const ORDER: &str = "id, channel, status, member, body, created_at, updated_at, due_at";

fn order_row(r: &PgRow) -> SqlResult<OrderRecord> {
    Ok(OrderRecord {
        id: r.try_get(0)?,
        channel: r.try_get(1)?,
        status: r.try_get(2)?,
        member: r.try_get(3)?,
        body: r.try_get(4)?,
        created_at: r.try_get(5)?,
        updated_at: r.try_get(6)?,
        due_at: r.try_get(7)?,
    })
}

/// Serialises the writers of one key of a kind (an order, a loyalty member).
async fn lock_key(c: &mut PgConnection, kind: i64, workspace: &str, key: &str) -> SqlResult<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1 || ':' || $2, $3))")
        .bind(workspace)
        .bind(key)
        .bind(kind)
        .execute(&mut *c)
        .await?;
    Ok(())
}

async fn entries_in(
    c: &mut PgConnection,
    workspace: &str,
    member: &str,
) -> SqlResult<Vec<LoyaltyRow>> {
    let rows = sqlx::query(
        "SELECT seq, body FROM loyalty_entries WHERE workspace_id = $1 AND member = $2 ORDER BY seq",
    )
    .bind(workspace)
    .bind(member)
    .fetch_all(&mut *c)
    .await?;
    rows.iter()
        .map(|r| {
            let body: String = r.try_get(1)?;
            Ok(LoyaltyRow {
                seq: r.try_get(0)?,
                member: member.to_string(),
                entry: serde_json::from_str(&body).map_err(|e| decode(e.to_string()))?,
            })
        })
        .collect()
}

impl PgStore {
    async fn commit_once(&self, w: &CommerceWrite, now: Millis) -> SqlResult<Committed> {
        let ws = w.workspace_id.as_str();
        let mut tx = self.pool().begin().await?;
        // The order first, then the stock (in key order), then the members (in order), the
        // log last: every writer takes them in that order.
        if let Some(order) = &w.order {
            lock_key(&mut tx, 11, ws, &order.id).await?;
            let existing = sqlx::query(sql!(
                "SELECT {ORDER} FROM commerce_orders WHERE workspace_id = $1 AND id = $2"
            ))
            .bind(ws)
            .bind(&order.id)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| order_row(&r))
            .transpose()?;
            match (&w.expect_body, existing) {
                (None, Some(o)) => return Ok(Committed::OrderState(o)),
                (Some(b), Some(o)) if &o.body != b => return Ok(Committed::OrderState(o)),
                (Some(_), None) => return Err(sqlx::Error::RowNotFound),
                _ => {}
            }
        }
        let mut reserved = Vec::new();
        if let Some(r) = &w.reserve {
            match reserve_in(&mut tx, r, now).await? {
                Reserved::Held(rows) | Reserved::AlreadyHeld(rows) => reserved = rows,
                Reserved::Short(short) => return Ok(Committed::Short(short)),
                Reserved::ReferenceTaken(rows) => return Ok(Committed::ReferenceTaken(rows)),
            }
        }
        let mut movements = Vec::new();
        if let Some(settle) = &w.settle {
            match settle_in(
                &mut tx,
                ws,
                &settle.reference,
                now,
                settle.fulfil.as_deref(),
            )
            .await?
            {
                (_, Some(moved)) => movements = moved,
                (rows, None) if settle.fulfil.is_some() => return Ok(Committed::NotHeld(rows)),
                (rows, None) if !rows.iter().any(|r| r.state == ReservationState::Released) => {
                    return Ok(Committed::NotHeld(rows))
                }
                _ => {}
            }
        }
        if let Some((reference, until)) = &w.hold_until {
            lock_reference(&mut tx, ws, reference).await?;
            let held = sqlx::query(
                "UPDATE stock_reservations SET expires_at = $3
                 WHERE workspace_id = $1 AND reference = $2 AND state = 'active'
                   AND (expires_at IS NULL OR expires_at > $4)",
            )
            .bind(ws)
            .bind(reference)
            .bind(until)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if held == 0 {
                return Ok(Committed::NotHeld(
                    reference_rows(&mut tx, ws, reference, now).await?,
                ));
            }
        }
        match move_in(&mut tx, ws, &w.movements, now).await? {
            Ok(m) => movements.extend(m),
            Err(short) => return Ok(Committed::Short(vec![short])),
        }
        let members: BTreeSet<&str> = w.loyalty.iter().map(|(m, _)| m.as_str()).collect();
        for m in &members {
            lock_key(&mut tx, 13, ws, m).await?;
        }
        let mut outcomes = Vec::with_capacity(w.loyalty.len());
        for (member, entry) in &w.loyalty {
            let stored = entries_in(&mut tx, ws, member).await?;
            let mut ledger = Ledger::from_entries(stored.iter().map(|r| &r.entry));
            match ledger.apply(entry) {
                Err(refusal) => return Ok(Committed::Refused(refusal)),
                Ok(LoyaltyOutcome::Duplicate) => outcomes.push(LoyaltyOutcome::Duplicate),
                Ok(applied) => {
                    let body = serde_json::to_string(entry).map_err(|e| decode(e.to_string()))?;
                    let inserted = sqlx::query(
                        "INSERT INTO loyalty_entries (workspace_id, member, key, body, at)
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (workspace_id, key) DO NOTHING",
                    )
                    .bind(ws)
                    .bind(member)
                    .bind(entry.key())
                    .bind(body)
                    .bind(entry.at())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    outcomes.push(if inserted == 0 {
                        LoyaltyOutcome::Duplicate
                    } else {
                        applied
                    });
                }
            }
        }
        if let Some(o) = &w.order {
            if w.release_redemptions {
                sqlx::query(
                    "DELETE FROM offer_redemptions WHERE workspace_id = $1 AND order_id = $2",
                )
                .bind(ws)
                .bind(&o.id)
                .execute(&mut *tx)
                .await?;
            }
            // Offers after members, each locked in id order: two orders racing for a
            // code's last use are counted one after the other.
            let mut redemptions: Vec<_> = w.redemptions.iter().collect();
            redemptions.sort_by(|a, b| a.offer.cmp(&b.offer));
            for r in redemptions {
                lock_key(&mut tx, 14, ws, &r.offer).await?;
                let uses = uses_in(
                    &mut tx,
                    ws,
                    &r.offer,
                    r.code.as_deref(),
                    r.customer.as_deref(),
                )
                .await?;
                if let Some(used_up) = used_up(r, &uses) {
                    return Ok(used_up);
                }
                sqlx::query(
                    "INSERT INTO offer_redemptions (workspace_id, offer_id, order_id, code, customer, at)
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                )
                .bind(ws)
                .bind(&r.offer)
                .bind(&o.id)
                .bind(&r.code)
                .bind(&r.customer)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(sql!(
            "INSERT INTO commerce_orders (workspace_id, {ORDER}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (workspace_id, id) DO UPDATE SET status = excluded.status, member = excluded.member,
               body = excluded.body, updated_at = excluded.updated_at, due_at = excluded.due_at"
        ))
        .bind(ws)
        .bind(&o.id)
        .bind(&o.channel)
        .bind(&o.status)
        .bind(&o.member)
        .bind(&o.body)
        .bind(o.created_at)
        .bind(o.updated_at)
        .bind(o.due_at)
        .execute(&mut *tx)
        .await?;
        }
        for (sku, location, subscriber) in &w.alerts {
            let open = sqlx::query(
                "UPDATE stock_alerts SET notified_at = $5 WHERE workspace_id = $1 AND sku = $2
                   AND location_id = $3 AND subscriber = $4 AND notified_at IS NULL",
            )
            .bind(ws)
            .bind(sku)
            .bind(location)
            .bind(subscriber)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if open == 0 {
                return Ok(Committed::Told);
            }
        }
        for (sku, location) in &w.low_told {
            let open = sqlx::query(
                "UPDATE stock_levels SET low_told_at = $4 WHERE workspace_id = $1 AND sku = $2
                   AND location_id = $3 AND low_told_at IS NULL",
            )
            .bind(ws)
            .bind(sku)
            .bind(location)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if open == 0 {
                return Ok(Committed::Told);
            }
        }
        if let Some(batch) = &w.events {
            crate::event_log::append_in(&mut tx, &[batch], w.dedup_since)
                .await
                .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
        }
        tx.commit().await?;
        Ok(Committed::Done {
            reserved,
            movements,
            loyalty: outcomes,
        })
    }
}

impl Orders for PgStore {
    fn commit_commerce(&self, write: &CommerceWrite, now: Millis) -> Result<Committed> {
        match crate::retrying(|| self.run(self.commit_once(write, now))) {
            Err(sqlx::Error::RowNotFound) => Err(StoreError::NotFound(format!(
                "order {}",
                write.order.as_ref().map_or("", |o| o.id.as_str())
            ))),
            other => other.map_err(backend),
        }
    }

    fn order(&self, workspace: &str, id: &str) -> Result<Option<OrderRecord>> {
        let row = self
            .run(
                sqlx::query(sql!(
                    "SELECT {ORDER} FROM commerce_orders WHERE workspace_id = $1 AND id = $2"
                ))
                .bind(workspace)
                .bind(id)
                .fetch_optional(self.pool()),
            )
            .map_err(backend)?;
        row.map(|r| order_row(&r).map_err(backend)).transpose()
    }

    fn due_orders(&self, now: Millis, limit: usize) -> Result<Vec<(String, String)>> {
        self.run(
            sqlx::query_as(
                "SELECT workspace_id, id FROM commerce_orders
                 WHERE due_at IS NOT NULL AND due_at <= $1
                 ORDER BY due_at, workspace_id COLLATE \"C\", id COLLATE \"C\" LIMIT $2",
            )
            .bind(now)
            .bind(limit as i64)
            .fetch_all(self.pool()),
        )
        .map_err(backend)
    }

    fn loyalty_entries(&self, workspace: &str, member: &str) -> Result<Vec<LoyaltyRow>> {
        self.run(async {
            let mut c = self.pool().acquire().await?;
            entries_in(&mut c, workspace, member).await
        })
        .map_err(backend)
    }

    fn loyalty_program(&self, workspace: &str) -> Result<Option<String>> {
        self.run(
            sqlx::query_scalar("SELECT body FROM loyalty_programs WHERE workspace_id = $1")
                .bind(workspace)
                .fetch_optional(self.pool()),
        )
        .map_err(backend)
    }

    fn put_loyalty_program(&self, workspace: &str, body: &str, now: Millis) -> Result<()> {
        self.run(
            sqlx::query(
                "INSERT INTO loyalty_programs (workspace_id, body, updated_at) VALUES ($1, $2, $3)
                 ON CONFLICT (workspace_id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
            )
            .bind(workspace)
            .bind(body)
            .bind(now)
            .execute(self.pool()),
        )
        .map_err(backend)?;
        Ok(())
    }

    fn put_ad_spend(&self, workspace: &str, rows: &[SpendRow], now: Millis) -> Result<()> {
        self.run(async {
            let mut tx = self.pool().begin().await?;
            for r in rows {
                sqlx::query(
                    "INSERT INTO ad_spend (workspace_id, day, channel, campaign, amount, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (workspace_id, day, channel, campaign)
                     DO UPDATE SET amount = excluded.amount, updated_at = excluded.updated_at",
                )
                .bind(workspace)
                .bind(r.day)
                .bind(&r.channel)
                .bind(&r.campaign)
                .bind(r.amount)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await
        })
        .map_err(backend)
    }

    fn ad_spend(&self, workspace: &str, from: i64, to: i64) -> Result<Vec<SpendRow>> {
        let rows: Vec<(i64, String, String, f64)> = self
            .run(
                sqlx::query_as(
                    "SELECT day, channel, campaign, amount FROM ad_spend
                     WHERE workspace_id = $1 AND day BETWEEN $2 AND $3
                     ORDER BY day, channel COLLATE \"C\", campaign COLLATE \"C\"",
                )
                .bind(workspace)
                .bind(from)
                .bind(to)
                .fetch_all(self.pool()),
            )
            .map_err(backend)?;
        Ok(rows
            .into_iter()
            .map(|(day, channel, campaign, amount)| SpendRow {
                day,
                channel,
                campaign,
                amount,
            })
            .collect())
    }

    fn put_offer(&self, workspace: &str, id: &str, body: &str, now: Millis) -> Result<()> {
        self.run(
            sqlx::query(
                "INSERT INTO commerce_offers (workspace_id, id, body, updated_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (workspace_id, id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
            )
            .bind(workspace)
            .bind(id)
            .bind(body)
            .bind(now)
            .execute(self.pool()),
        )
        .map_err(backend)?;
        Ok(())
    }

    fn delete_offer(&self, workspace: &str, id: &str) -> Result<bool> {
        let n = self
            .run(
                sqlx::query("DELETE FROM commerce_offers WHERE workspace_id = $1 AND id = $2")
                    .bind(workspace)
                    .bind(id)
                    .execute(self.pool()),
            )
            .map_err(backend)?
            .rows_affected();
        Ok(n > 0)
    }

    fn offers(&self, workspace: &str) -> Result<Vec<String>> {
        self.run(
            sqlx::query_scalar(
                "SELECT body FROM commerce_offers WHERE workspace_id = $1 ORDER BY id COLLATE \"C\"",
            )
            .bind(workspace)
            .fetch_all(self.pool()),
        )
        .map_err(backend)
    }

    fn offer_uses(
        &self,
        workspace: &str,
        offer: &str,
        code: Option<&str>,
        customer: Option<&str>,
    ) -> Result<OfferUses> {
        self.run(async {
            let mut c = self.pool().acquire().await?;
            uses_in(&mut c, workspace, offer, code, customer).await
        })
        .map_err(backend)
    }
}

async fn uses_in(
    c: &mut PgConnection,
    ws: &str,
    offer: &str,
    code: Option<&str>,
    customer: Option<&str>,
) -> SqlResult<OfferUses> {
    let (total, code, customer): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE code = $3), count(*) FILTER (WHERE customer = $4)
         FROM offer_redemptions WHERE workspace_id = $1 AND offer_id = $2",
    )
    .bind(ws)
    .bind(offer)
    .bind(code)
    .bind(customer)
    .fetch_one(&mut *c)
    .await?;
    Ok(OfferUses {
        total: total as u64,
        code: code as u64,
        customer: customer as u64,
    })
}
