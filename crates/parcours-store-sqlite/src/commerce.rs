//! The catalogue, locations, stock levels, the movement ledger and reservations, in the log's
//! file. Every write runs on the log's one writer connection, so check-and-reserve is
//! serialised by construction; it still reads and sweeps its keys in (SKU, location) order,
//! as the port asks of every adapter.

use std::collections::BTreeMap;

use parcours_core::commerce::catalogue::{Item, Location};
use parcours_core::commerce::inventory::{self, Adjustment, Key, Quantities, StockState};
use parcours_core::commerce::loyalty::{Ledger, Outcome as LoyaltyOutcome};
use parcours_core::time::Millis;
use parcours_store::{
    used_up, Commerce, CommerceWrite, Committed, Fulfilled, LowStock, LoyaltyRow, Movement,
    OfferUses, OrderRecord, Orders, Reservation, ReservationState, ReserveRequest, Reserved,
    Result, SpendRow, StockAlert, StockLevel,
};
use std::sync::{Arc, Condvar, Mutex};

use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};

use crate::{backend, corrupt, SqliteStore};

/// A level's columns, `reserved` counting live reservations only (`?2` is now).
const LEVEL: &str = "l.sku, l.location_id, l.on_hand,
    l.reserved - coalesce((SELECT sum(r.quantity) FROM stock_reservations r
        WHERE r.workspace_id = l.workspace_id AND r.sku = l.sku AND r.location_id = l.location_id
          AND r.state = 'active' AND r.expires_at IS NOT NULL AND r.expires_at <= ?2), 0),
    l.safety_stock, l.damaged, l.quality_control, l.updated_at";

const MOVEMENT: &str = "id, sku, location_id, state, delta, quantity_after, reason, reference, at";
const RESERVATION: &str =
    "reference, sku, location_id, quantity, state, created_at, expires_at, settled_at";

fn level(r: &Row<'_>) -> rusqlite::Result<StockLevel> {
    Ok(StockLevel {
        sku: r.get(0)?,
        location: r.get(1)?,
        quantities: Quantities {
            on_hand: r.get(2)?,
            reserved: r.get(3)?,
            safety_stock: r.get(4)?,
            damaged: r.get(5)?,
            quality_control: r.get(6)?,
        },
        updated_at: r.get(7)?,
    })
}

fn movement(r: &Row<'_>) -> rusqlite::Result<(Movement, String)> {
    Ok((
        Movement {
            id: r.get(0)?,
            sku: r.get(1)?,
            location: r.get(2)?,
            state: StockState::OnHand,
            delta: r.get(4)?,
            after: r.get(5)?,
            reason: r.get(6)?,
            reference: r.get(7)?,
            at: r.get(8)?,
        },
        r.get(3)?,
    ))
}

fn finish_movement((mut m, state): (Movement, String)) -> Result<Movement> {
    m.state = StockState::parse(&state).ok_or_else(|| corrupt(format!("stock state {state}")))?;
    Ok(m)
}

fn reservation(r: &Row<'_>) -> rusqlite::Result<(Reservation, String)> {
    Ok((
        Reservation {
            reference: r.get(0)?,
            sku: r.get(1)?,
            location: r.get(2)?,
            quantity: r.get(3)?,
            state: ReservationState::Active,
            created_at: r.get(5)?,
            expires_at: r.get(6)?,
            settled_at: r.get(7)?,
        },
        r.get(4)?,
    ))
}

fn finish_reservation((mut row, state): (Reservation, String), now: Millis) -> Result<Reservation> {
    let stored = ReservationState::parse(&state)
        .ok_or_else(|| corrupt(format!("reservation state {state}")))?;
    row.state = Reservation::state_at(stored, row.expires_at, now);
    Ok(row)
}

fn reference_rows(
    c: &rusqlite::Connection,
    workspace: &str,
    reference: &str,
    now: Millis,
) -> Result<Vec<Reservation>> {
    let mut st = c
        .prepare_cached(&format!(
            "SELECT {RESERVATION} FROM stock_reservations WHERE workspace_id = ?1 AND reference = ?2
             ORDER BY sku, location_id"
        ))
        .map_err(backend)?;
    let rows = st
        .query_map(params![workspace, reference], reservation)
        .map_err(backend)?;
    rows.map(|r| finish_reservation(r.map_err(backend)?, now))
        .collect()
}

/// Marks the key's active reservations past their expiry as expired and takes them out of
/// its `reserved`. Returns the level's stored quantities after the sweep (zeros and `false`
/// when the key has no level).
fn sweep_and_read(
    tx: &Transaction<'_>,
    workspace: &str,
    key: &Key,
    now: Millis,
) -> Result<Option<Quantities>> {
    let swept: i64 = tx
        .prepare_cached(
            "UPDATE stock_reservations SET state = 'expired', settled_at = expires_at
             WHERE workspace_id = ?1 AND sku = ?2 AND location_id = ?3 AND state = 'active'
               AND expires_at IS NOT NULL AND expires_at <= ?4
             RETURNING quantity",
        )
        .map_err(backend)?
        .query_map(params![workspace, key.0, key.1, now], |r| {
            r.get::<_, i64>(0)
        })
        .map_err(backend)?
        .map(|q| q.map_err(backend))
        .sum::<Result<i64>>()?;
    if swept > 0 {
        tx.prepare_cached(
            "UPDATE stock_levels SET reserved = reserved - ?4
             WHERE workspace_id = ?1 AND sku = ?2 AND location_id = ?3",
        )
        .map_err(backend)?
        .execute(params![workspace, key.0, key.1, swept])
        .map_err(backend)?;
    }
    tx.prepare_cached(
        "SELECT on_hand, reserved, safety_stock, damaged, quality_control FROM stock_levels
         WHERE workspace_id = ?1 AND sku = ?2 AND location_id = ?3",
    )
    .map_err(backend)?
    .query_row(params![workspace, key.0, key.1], |r| {
        Ok(Quantities {
            on_hand: r.get(0)?,
            reserved: r.get(1)?,
            safety_stock: r.get(2)?,
            damaged: r.get(3)?,
            quality_control: r.get(4)?,
        })
    })
    .optional()
    .map_err(backend)
}

fn write_level(
    tx: &Transaction<'_>,
    workspace: &str,
    key: &Key,
    q: &Quantities,
    now: Millis,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO stock_levels (workspace_id, sku, location_id, on_hand, reserved, safety_stock,
                                   damaged, quality_control, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (workspace_id, sku, location_id) DO UPDATE SET
           on_hand = excluded.on_hand, reserved = excluded.reserved,
           safety_stock = excluded.safety_stock, damaged = excluded.damaged,
           quality_control = excluded.quality_control, updated_at = excluded.updated_at,
           low_told_at = CASE WHEN stock_levels.low_told_at IS NULL THEN NULL
             WHEN ?10 > coalesce((SELECT i.low_stock FROM commerce_items i
               WHERE i.workspace_id = ?1 AND i.sku = ?2), -1) THEN NULL
             ELSE stock_levels.low_told_at END",
    )
    .map_err(backend)?
    .execute(params![
        workspace,
        key.0,
        key.1,
        q.on_hand,
        q.reserved,
        q.safety_stock,
        q.damaged,
        q.quality_control,
        now,
        // Risen above its low-stock threshold: a next fall is told again.
        q.available()
    ])
    .map_err(backend)?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn record_movement(
    tx: &Transaction<'_>,
    workspace: &str,
    key: &Key,
    state: StockState,
    delta: i64,
    after: i64,
    reason: &str,
    reference: Option<&str>,
    now: Millis,
) -> Result<Movement> {
    tx.prepare_cached(
        "INSERT INTO stock_movements (workspace_id, sku, location_id, state, delta, quantity_after,
                                      reason, reference, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .map_err(backend)?
    .execute(params![
        workspace,
        key.0,
        key.1,
        state.as_str(),
        delta,
        after,
        reason,
        reference,
        now
    ])
    .map_err(backend)?;
    Ok(Movement {
        id: tx.last_insert_rowid(),
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
fn move_in(
    tx: &Transaction<'_>,
    workspace: &str,
    adjustments: &[Adjustment],
    now: Millis,
) -> Result<std::result::Result<Vec<Movement>, inventory::Shortage>> {
    // Every key read (and swept) once, in order, before any change.
    let keys: std::collections::BTreeSet<Key> = adjustments
        .iter()
        .map(|a| (a.sku.clone(), a.location.clone()))
        .collect();
    let mut levels = BTreeMap::new();
    for key in keys {
        let q = sweep_and_read(tx, workspace, &key, now)?.unwrap_or_default();
        levels.insert(key, q);
    }
    let mut moved = Vec::with_capacity(adjustments.len());
    for a in adjustments {
        let key = (a.sku.clone(), a.location.clone());
        let q = levels[&key];
        let m = match inventory::apply(q, a) {
            Ok(m) => m,
            Err(short) => return Ok(Err(short)),
        };
        levels.insert(key.clone(), m.after);
        moved.push(record_movement(
            tx,
            workspace,
            &key,
            a.state,
            m.delta,
            m.after.get(a.state),
            &a.reason,
            a.reference.as_deref(),
            now,
        )?);
    }
    for (key, q) in &levels {
        write_level(tx, workspace, key, q, now)?;
    }
    Ok(Ok(moved))
}

/// Check-and-reserve inside the caller's transaction (see [`Commerce::reserve`]); the caller
/// commits only what was held.
/// Reservations waiting for the writer, and whether one of their callers is leading (deciding
/// a batch). The others wait on `decided` rather than on the writer, so a decided batch is
/// answered all at once instead of one caller at a time through the writer's lock.
#[derive(Default)]
pub(crate) struct Waiting {
    line: Mutex<Line>,
    decided: Condvar,
    arrived: Condvar,
}

#[derive(Default)]
struct Line {
    waiting: Vec<Arc<Pending>>,
    leading: bool,
    /// The size of the last batch: a new leader waits a moment for as many (see
    /// [`GATHER`]).
    last: usize,
}

/// How long a leader waits for the line to hold as many requests as the last batch did
/// (callers just answered come back with their next request within microseconds), as
/// PostgreSQL's `commit_delay` does: well under one fsync, and never when the last batch was
/// a lone request, so a single client never waits.
const GATHER: std::time::Duration = std::time::Duration::from_micros(150);

/// A batch being decided. Dropped (answered, or unwound by a panic), it hands the lead on and
/// wakes the line; a request it leaves unanswered fails rather than waiting forever.
struct Leading<'a> {
    waiting: &'a Waiting,
    batch: Vec<Arc<Pending>>,
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        for pending in &self.batch {
            let mut answer = lock(&pending.answer);
            if answer.is_none() {
                *answer = Some(Err(parcours_store::StoreError::Backend(
                    "the reservation's batch was abandoned".into(),
                )));
            }
        }
        lock(&self.waiting.line).leading = false;
        self.waiting.decided.notify_all();
    }
}

/// Waits up to [`GATHER`] for the line to hold as many requests as the last batch.
// A scheduling delay, not a business time: it reads the machine's monotonic clock, as the
// writer's own lock waits do, rather than the injected one.
#[allow(clippy::disallowed_methods)]
fn gather<'a>(
    waiting: &'a Waiting,
    mut line: std::sync::MutexGuard<'a, Line>,
) -> std::sync::MutexGuard<'a, Line> {
    let until = std::time::Instant::now() + GATHER;
    while line.waiting.len() < line.last {
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break;
        }
        line = waiting
            .arrived
            .wait_timeout(line, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    line
}

struct Pending {
    request: ReserveRequest,
    now: Millis,
    answer: Mutex<Option<Result<Reserved>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Decides requests in order in one transaction, then commits once. A refused request writes
/// nothing but the sweep of expired reservations, which stands whatever is decided (it only
/// records what reads already see), so no savepoint is needed: what a refused request leaves
/// is what it would leave alone. A request that fails midway is answered with its error and
/// the batch is decided again without it, from a rolled-back start; a failed commit fails
/// every request.
fn decide_together(conn: &mut Connection, batch: &[Arc<Pending>]) -> Vec<Result<Reserved>> {
    let mut failed: Vec<Option<parcours_store::StoreError>> = batch.iter().map(|_| None).collect();
    'again: loop {
        let all_fail = |message: String| -> Vec<Result<Reserved>> {
            batch
                .iter()
                .map(|_| Err(parcours_store::StoreError::Backend(message.clone())))
                .collect()
        };
        let tx = match conn.transaction() {
            Ok(tx) => tx,
            Err(e) => return all_fail(e.to_string()),
        };
        let mut answers = Vec::with_capacity(batch.len());
        for (i, p) in batch.iter().enumerate() {
            if failed[i].is_some() {
                answers.push(None);
                continue;
            }
            match reserve_in(&tx, &p.request, p.now) {
                Ok(answer) => answers.push(Some(answer)),
                Err(e) => {
                    // Dropping the transaction rolls back what the others did too.
                    failed[i] = Some(e);
                    continue 'again;
                }
            }
        }
        if let Err(e) = tx.commit() {
            return all_fail(e.to_string());
        }
        return answers
            .into_iter()
            .zip(failed)
            .map(|(answer, error)| {
                answer.ok_or_else(|| {
                    error.unwrap_or_else(|| {
                        parcours_store::StoreError::Backend("the request was not decided".into())
                    })
                })
            })
            .collect();
    }
}

fn reserve_in(tx: &Transaction<'_>, request: &ReserveRequest, now: Millis) -> Result<Reserved> {
    let ws = request.workspace_id.as_str();
    // The reference's own keys are swept too: its expired rows may be replaced below, and
    // their units must have left `reserved` first.
    let before = reference_rows(tx, ws, &request.reference, now)?;
    let keys: std::collections::BTreeSet<Key> = request
        .demand
        .keys()
        .cloned()
        .chain(before.iter().map(|r| (r.sku.clone(), r.location.clone())))
        .collect();
    let mut levels = BTreeMap::new();
    for key in &keys {
        if let Some(q) = sweep_and_read(tx, ws, key, now)? {
            levels.insert(key.clone(), q);
        }
    }
    let held = if before.is_empty() {
        before
    } else {
        reference_rows(tx, ws, &request.reference, now)?
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
    // A reference whose rows were released or expired is reserved afresh.
    if !held.is_empty() {
        tx.prepare_cached(
            "DELETE FROM stock_reservations WHERE workspace_id = ?1 AND reference = ?2",
        )
        .map_err(backend)?
        .execute(params![ws, request.reference])
        .map_err(backend)?;
    }
    let mut rows = Vec::with_capacity(request.demand.len());
    for (key, &quantity) in &request.demand {
        let mut q = levels.get(key).copied().unwrap_or_default();
        q.reserved += quantity;
        write_level(tx, ws, key, &q, now)?;
        tx.prepare_cached(&format!(
            "INSERT INTO stock_reservations ({RESERVATION}, workspace_id)
             VALUES (?1, ?2, ?3, ?4, 'active', ?5, ?6, NULL, ?7)"
        ))
        .map_err(backend)?
        .execute(params![
            request.reference,
            key.0,
            key.1,
            quantity,
            now,
            request.expires_at,
            ws
        ])
        .map_err(backend)?;
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
    Ok(Reserved::Held(rows))
}

fn json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| parcours_store::StoreError::Backend(e.to_string()))
}

impl Commerce for SqliteStore {
    fn put_item(&self, workspace: &str, item: &Item, now: Millis) -> Result<()> {
        let body = json(item)?;
        self.writer()
            .prepare_cached(
                "INSERT INTO commerce_items (workspace_id, sku, body, updated_at, low_stock) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (workspace_id, sku) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at,
                   low_stock = excluded.low_stock",
            )
            .map_err(backend)?
            .execute(params![workspace, item.sku, body, now, item.low_stock])
            .map_err(backend)?;
        Ok(())
    }

    fn item(&self, workspace: &str, sku: &str) -> Result<Option<Item>> {
        let body: Option<String> = self.read(|c| {
            c.prepare_cached("SELECT body FROM commerce_items WHERE workspace_id = ?1 AND sku = ?2")
                .map_err(backend)?
                .query_row(params![workspace, sku], |r| r.get(0))
                .optional()
                .map_err(backend)
        })?;
        body.map(|b| serde_json::from_str(&b).map_err(corrupt))
            .transpose()
    }

    fn items(&self, workspace: &str, after: Option<&str>, limit: usize) -> Result<Vec<Item>> {
        let bodies: Vec<String> = self.read(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT body FROM commerce_items WHERE workspace_id = ?1 AND sku > ?2
                     ORDER BY sku LIMIT ?3",
                )
                .map_err(backend)?;
            let rows = st
                .query_map(params![workspace, after.unwrap_or(""), limit as i64], |r| {
                    r.get(0)
                })
                .map_err(backend)?;
            rows.map(|r| r.map_err(backend)).collect()
        })?;
        bodies
            .iter()
            .map(|b| serde_json::from_str(b).map_err(corrupt))
            .collect()
    }

    fn put_location(&self, workspace: &str, location: &Location, now: Millis) -> Result<()> {
        let body = json(location)?;
        self.writer()
            .prepare_cached(
                "INSERT INTO commerce_locations (workspace_id, id, body, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (workspace_id, id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
            )
            .map_err(backend)?
            .execute(params![workspace, location.id, body, now])
            .map_err(backend)?;
        Ok(())
    }

    fn locations(&self, workspace: &str) -> Result<Vec<Location>> {
        let bodies: Vec<String> = self.read(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT body FROM commerce_locations WHERE workspace_id = ?1 ORDER BY id",
                )
                .map_err(backend)?;
            let rows = st.query_map([workspace], |r| r.get(0)).map_err(backend)?;
            rows.map(|r| r.map_err(backend)).collect()
        })?;
        bodies
            .iter()
            .map(|b| serde_json::from_str(b).map_err(corrupt))
            .collect()
    }

    fn move_stock(
        &self,
        workspace: &str,
        adjustments: &[Adjustment],
        now: Millis,
    ) -> Result<std::result::Result<Vec<Movement>, inventory::Shortage>> {
        let mut conn = self.writer();
        let tx = conn.transaction().map_err(backend)?;
        let moved = match move_in(&tx, workspace, adjustments, now)? {
            Ok(m) => m,
            Err(short) => return Ok(Err(short)),
        };
        tx.commit().map_err(backend)?;
        Ok(Ok(moved))
    }

    fn stock(&self, workspace: &str, skus: &[String], now: Millis) -> Result<Vec<StockLevel>> {
        self.read(|c| {
            let mut st = c
                .prepare_cached(&format!(
                    "SELECT {LEVEL} FROM stock_levels l WHERE l.workspace_id = ?1 AND l.sku = ?3
                     ORDER BY l.location_id"
                ))
                .map_err(backend)?;
            let mut out = Vec::new();
            let mut sorted: Vec<&String> = skus.iter().collect();
            sorted.sort();
            sorted.dedup();
            for sku in sorted {
                let rows = st
                    .query_map(params![workspace, now, sku], level)
                    .map_err(backend)?;
                for r in rows {
                    out.push(r.map_err(backend)?);
                }
            }
            Ok(out)
        })
    }

    fn stock_at(
        &self,
        workspace: &str,
        location: &str,
        after: Option<&str>,
        limit: usize,
        now: Millis,
    ) -> Result<Vec<StockLevel>> {
        self.read(|c| {
            let mut st = c
                .prepare_cached(&format!(
                    "SELECT {LEVEL} FROM stock_levels l
                     WHERE l.workspace_id = ?1 AND l.location_id = ?3 AND l.sku > ?4
                     ORDER BY l.sku LIMIT ?5"
                ))
                .map_err(backend)?;
            let rows = st
                .query_map(
                    params![workspace, now, location, after.unwrap_or(""), limit as i64],
                    level,
                )
                .map_err(backend)?;
            rows.map(|r| r.map_err(backend)).collect()
        })
    }

    fn movements(
        &self,
        workspace: &str,
        sku: &str,
        location: Option<&str>,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Movement>> {
        self.read(|c| {
            let mut st = c
                .prepare_cached(&format!(
                    "SELECT {MOVEMENT} FROM stock_movements
                     WHERE workspace_id = ?1 AND sku = ?2 AND (?3 IS NULL OR location_id = ?3) AND id < ?4
                     ORDER BY id DESC LIMIT ?5"
                ))
                .map_err(backend)?;
            let rows = st
                .query_map(
                    params![workspace, sku, location, before.unwrap_or(i64::MAX), limit as i64],
                    movement,
                )
                .map_err(backend)?;
            rows.map(|r| finish_movement(r.map_err(backend)?))
                .collect()
        })
    }

    fn reserve(&self, request: &ReserveRequest, now: Millis) -> Result<Reserved> {
        // Group commit: the request waits in line. A caller that finds no one leading leads:
        // it waits a moment for the line to fill (see `GATHER`), takes everything waiting,
        // decides each request in turn in one transaction on the writer, commits them with
        // one fsync, answers them all and wakes them. A waiting caller whose request is still undecided when no one leads leads the
        // next batch. Each is answered only after its batch's commit.
        let mine = Arc::new(Pending {
            request: request.clone(),
            now,
            answer: Mutex::new(None),
        });
        let waiting = &self.reservations;
        let mut line = lock(&waiting.line);
        line.waiting.push(mine.clone());
        if line.leading {
            waiting.arrived.notify_one();
        }
        loop {
            if let Some(answer) = lock(&mine.answer).take() {
                return answer;
            }
            if !line.leading {
                break;
            }
            line = waiting
                .decided
                .wait(line)
                .unwrap_or_else(|e| e.into_inner());
        }
        line.leading = true;
        line = gather(waiting, line);
        line.last = line.waiting.len();
        let lead = Leading {
            waiting,
            batch: std::mem::take(&mut line.waiting),
        };
        drop(line);
        let decided = {
            let mut conn = self.writer();
            decide_together(&mut conn, &lead.batch)
        };
        for (pending, answer) in lead.batch.iter().zip(decided) {
            *lock(&pending.answer) = Some(answer);
        }
        drop(lead);
        let answer = lock(&mine.answer).take();
        answer.expect("a batch decides every request it takes, its leader's included")
    }

    fn release_reservation(
        &self,
        workspace: &str,
        reference: &str,
        now: Millis,
    ) -> Result<Vec<Reservation>> {
        self.settle(workspace, reference, now, None)
            .map(|(rows, _)| rows)
    }

    fn fulfil_reservation(
        &self,
        workspace: &str,
        reference: &str,
        reason: &str,
        now: Millis,
    ) -> Result<Fulfilled> {
        let (rows, moved) = self.settle(workspace, reference, now, Some(reason))?;
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
        self.read(|c| reference_rows(c, workspace, reference, now))
    }

    fn put_stock_alert(&self, a: &StockAlert) -> Result<()> {
        self.writer()
            .prepare_cached(
                "INSERT INTO stock_alerts (workspace_id, sku, location_id, subscriber, customer, reason, created_at, quantity)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (workspace_id, sku, location_id, subscriber) DO UPDATE SET
                   customer = excluded.customer, reason = excluded.reason, quantity = excluded.quantity,
                   created_at = excluded.created_at, notified_at = NULL",
            )
            .map_err(backend)?
            .execute(params![
                a.workspace_id,
                a.sku,
                a.location,
                a.subscriber,
                a.customer,
                a.reason,
                a.created_at,
                a.quantity
            ])
            .map_err(backend)?;
        Ok(())
    }

    fn stock_alerts(&self, workspace: &str, sku: &str) -> Result<Vec<StockAlert>> {
        self.read(|c| {
            let mut q = c
                .prepare_cached(&format!(
                    "SELECT {ALERT} FROM stock_alerts a WHERE workspace_id = ?1 AND sku = ?2
                     ORDER BY location_id, subscriber"
                ))
                .map_err(backend)?;
            let rows = q
                .query_map(params![workspace, sku], alert_row)
                .map_err(backend)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(backend)?;
            Ok(rows)
        })
    }

    fn due_stock_alerts(&self, now: Millis, limit: usize) -> Result<Vec<StockAlert>> {
        self.read(|c| {
            let mut q = c
                .prepare_cached(&format!(
                    "SELECT {ALERT} FROM stock_alerts a
                     JOIN stock_levels l ON l.workspace_id = a.workspace_id AND l.sku = a.sku
                       AND l.location_id = a.location_id
                     WHERE a.notified_at IS NULL AND {AVAILABLE} >= a.quantity
                     ORDER BY a.created_at LIMIT ?1"
                ))
                .map_err(backend)?;
            let rows = q
                .query_map(params![limit as i64, now], alert_row)
                .map_err(backend)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(backend)?;
            Ok(rows)
        })
    }

    fn watch_low_stock(&self, since: Millis, now: Millis, limit: usize) -> Result<Vec<LowStock>> {
        let mut conn = self.writer();
        let tx = conn.transaction().map_err(backend)?;
        tx.prepare_cached(&format!(
            "UPDATE stock_levels AS l SET low_told_at = NULL
             FROM commerce_items i
             WHERE i.workspace_id = l.workspace_id AND i.sku = l.sku
               AND l.low_told_at IS NOT NULL AND l.updated_at >= ?1
               AND (i.low_stock IS NULL OR {AVAILABLE} > i.low_stock)"
        ))
        .map_err(backend)?
        .execute(params![since, now])
        .map_err(backend)?;
        let rows = tx
            .prepare_cached(&format!(
                "SELECT l.workspace_id, l.sku, l.location_id, {AVAILABLE}, i.low_stock, l.updated_at
                 FROM stock_levels l JOIN commerce_items i ON i.workspace_id = l.workspace_id AND i.sku = l.sku
                 WHERE l.updated_at >= ?1 AND l.low_told_at IS NULL AND i.low_stock IS NOT NULL
                   AND {AVAILABLE} <= i.low_stock
                 ORDER BY l.updated_at LIMIT ?3"
            ))
            .map_err(backend)?
            .query_map(params![since, now, limit as i64], |r| {
                Ok(LowStock {
                    workspace_id: r.get(0)?,
                    sku: r.get(1)?,
                    location: r.get(2)?,
                    available: r.get(3)?,
                    threshold: r.get(4)?,
                    updated_at: r.get(5)?,
                })
            })
            .map_err(backend)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(backend)?;
        tx.commit().map_err(backend)?;
        Ok(rows)
    }
}

/// A stock alert's columns (table alias `a`).
const ALERT: &str = "a.workspace_id, a.sku, a.location_id, a.subscriber, a.customer, a.reason,
    a.created_at, a.notified_at, a.quantity";

/// What a level (alias `l`) has available at `?2` (now): reservations past their expiry
/// no longer count.
const AVAILABLE: &str =
    "(l.on_hand - l.reserved + coalesce((SELECT sum(r.quantity) FROM stock_reservations r
        WHERE r.workspace_id = l.workspace_id AND r.sku = l.sku AND r.location_id = l.location_id
          AND r.state = 'active' AND r.expires_at IS NOT NULL AND r.expires_at <= ?2), 0)
    - l.safety_stock - l.damaged - l.quality_control)";

fn alert_row(r: &Row<'_>) -> rusqlite::Result<StockAlert> {
    Ok(StockAlert {
        workspace_id: r.get(0)?,
        sku: r.get(1)?,
        location: r.get(2)?,
        subscriber: r.get(3)?,
        customer: r.get(4)?,
        reason: r.get(5)?,
        created_at: r.get(6)?,
        notified_at: r.get(7)?,
        quantity: r.get(8)?,
    })
}

impl SqliteStore {
    fn settle(
        &self,
        workspace: &str,
        reference: &str,
        now: Millis,
        reason: Option<&str>,
    ) -> Result<(Vec<Reservation>, Option<Vec<Movement>>)> {
        let mut conn = self.writer();
        let tx = conn.transaction().map_err(backend)?;
        let out = settle_in(&tx, workspace, reference, now, reason)?;
        tx.commit().map_err(backend)?;
        Ok(out)
    }
}

/// Releases (`reason` none) or fulfils a reference's live rows inside the caller's
/// transaction. Returns the rows as they end up and, for a fulfilment that took units, its
/// movements.
fn settle_in(
    tx: &Transaction<'_>,
    workspace: &str,
    reference: &str,
    now: Millis,
    reason: Option<&str>,
) -> Result<(Vec<Reservation>, Option<Vec<Movement>>)> {
    let rows = reference_rows(tx, workspace, reference, now)?;
    let mut keys: Vec<Key> = rows
        .iter()
        .map(|r| (r.sku.clone(), r.location.clone()))
        .collect();
    keys.sort();
    let mut levels = BTreeMap::new();
    for key in &keys {
        levels.insert(
            key.clone(),
            sweep_and_read(tx, workspace, key, now)?.unwrap_or_default(),
        );
    }
    let live: Vec<&Reservation> = rows
        .iter()
        .filter(|r| r.state == ReservationState::Active)
        .collect();
    if live.is_empty() {
        let rows = reference_rows(tx, workspace, reference, now)?;
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
        let q = levels.get_mut(&key).expect("every row's level was read");
        q.reserved -= r.quantity;
        if let Some(reason) = reason {
            // A count may have found fewer units than were promised: the stock cannot
            // go below zero, whatever left.
            let taken = r.quantity.min(q.on_hand);
            q.on_hand -= taken;
            moved.push(record_movement(
                tx,
                workspace,
                &key,
                StockState::OnHand,
                -taken,
                q.on_hand,
                reason,
                Some(reference),
                now,
            )?);
        }
        tx.prepare_cached(
            "UPDATE stock_reservations SET state = ?5, settled_at = ?6
             WHERE workspace_id = ?1 AND reference = ?2 AND sku = ?3 AND location_id = ?4",
        )
        .map_err(backend)?
        .execute(params![workspace, reference, r.sku, r.location, state, now])
        .map_err(backend)?;
    }
    for (key, q) in &levels {
        write_level(tx, workspace, key, q, now)?;
    }
    let rows = reference_rows(tx, workspace, reference, now)?;
    Ok((rows, reason.map(|_| moved)))
}

const ORDER: &str = "id, channel, status, member, body, created_at, updated_at, due_at";

fn order_row(r: &Row<'_>) -> rusqlite::Result<OrderRecord> {
    Ok(OrderRecord {
        id: r.get(0)?,
        channel: r.get(1)?,
        status: r.get(2)?,
        member: r.get(3)?,
        body: r.get(4)?,
        created_at: r.get(5)?,
        updated_at: r.get(6)?,
        due_at: r.get(7)?,
    })
}

fn order_in(c: &rusqlite::Connection, workspace: &str, id: &str) -> Result<Option<OrderRecord>> {
    c.prepare_cached(&format!(
        "SELECT {ORDER} FROM commerce_orders WHERE workspace_id = ?1 AND id = ?2"
    ))
    .map_err(backend)?
    .query_row(params![workspace, id], order_row)
    .optional()
    .map_err(backend)
}

fn entries_in(c: &rusqlite::Connection, workspace: &str, member: &str) -> Result<Vec<LoyaltyRow>> {
    let mut st = c
        .prepare_cached(
            "SELECT seq, body FROM loyalty_entries WHERE workspace_id = ?1 AND member = ?2 ORDER BY seq",
        )
        .map_err(backend)?;
    let rows = st
        .query_map(params![workspace, member], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })
        .map_err(backend)?;
    rows.map(|r| {
        let (seq, body) = r.map_err(backend)?;
        Ok(LoyaltyRow {
            seq,
            member: member.to_string(),
            entry: serde_json::from_str(&body).map_err(corrupt)?,
        })
    })
    .collect()
}

impl Orders for SqliteStore {
    fn commit_commerce(&self, w: &CommerceWrite, now: Millis) -> Result<Committed> {
        let ws = w.workspace_id.as_str();
        let mut conn = self.writer();
        let tx = conn.transaction().map_err(backend)?;
        if let Some(order) = &w.order {
            let existing = order_in(&tx, ws, &order.id)?;
            match (&w.expect_body, existing) {
                (None, Some(o)) => return Ok(Committed::OrderState(o)),
                (Some(b), Some(o)) if &o.body != b => return Ok(Committed::OrderState(o)),
                (Some(_), None) => {
                    return Err(parcours_store::StoreError::NotFound(format!(
                        "order {}",
                        order.id
                    )))
                }
                _ => {}
            }
        }
        let mut reserved = Vec::new();
        if let Some(r) = &w.reserve {
            match reserve_in(&tx, r, now)? {
                Reserved::Held(rows) | Reserved::AlreadyHeld(rows) => reserved = rows,
                Reserved::Short(short) => return Ok(Committed::Short(short)),
                Reserved::ReferenceTaken(rows) => return Ok(Committed::ReferenceTaken(rows)),
            }
        }
        let mut movements = Vec::new();
        if let Some(settle) = &w.settle {
            match settle_in(&tx, ws, &settle.reference, now, settle.fulfil.as_deref())? {
                (_, Some(moved)) => movements = moved,
                (rows, None) if settle.fulfil.is_some() => return Ok(Committed::NotHeld(rows)),
                (rows, None) if !rows.iter().any(|r| r.state == ReservationState::Released) => {
                    return Ok(Committed::NotHeld(rows))
                }
                _ => {}
            }
        }
        if let Some((reference, until)) = &w.hold_until {
            let held = tx
                .prepare_cached(
                    "UPDATE stock_reservations SET expires_at = ?3
                     WHERE workspace_id = ?1 AND reference = ?2 AND state = 'active'
                       AND (expires_at IS NULL OR expires_at > ?4)",
                )
                .map_err(backend)?
                .execute(params![ws, reference, until, now])
                .map_err(backend)?;
            if held == 0 {
                return Ok(Committed::NotHeld(reference_rows(&tx, ws, reference, now)?));
            }
        }
        match move_in(&tx, ws, &w.movements, now)? {
            Ok(m) => movements.extend(m),
            Err(short) => return Ok(Committed::Short(vec![short])),
        }
        let mut outcomes = Vec::with_capacity(w.loyalty.len());
        for (member, entry) in &w.loyalty {
            let mut ledger =
                Ledger::from_entries(entries_in(&tx, ws, member)?.iter().map(|r| &r.entry));
            match ledger.apply(entry) {
                Err(refusal) => return Ok(Committed::Refused(refusal)),
                Ok(LoyaltyOutcome::Duplicate) => outcomes.push(LoyaltyOutcome::Duplicate),
                Ok(applied) => {
                    let inserted = tx
                        .prepare_cached(
                            "INSERT INTO loyalty_entries (workspace_id, member, key, body, at)
                             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (workspace_id, key) DO NOTHING",
                        )
                        .map_err(backend)?
                        .execute(params![ws, member, entry.key(), json(entry)?, entry.at()])
                        .map_err(backend)?;
                    // The key was used by another member: it happens once per workspace.
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
                tx.prepare_cached(
                    "DELETE FROM offer_redemptions WHERE workspace_id = ?1 AND order_id = ?2",
                )
                .map_err(backend)?
                .execute(params![ws, o.id])
                .map_err(backend)?;
            }
            for r in &w.redemptions {
                let uses = uses_in(&tx, ws, &r.offer, r.code.as_deref(), r.customer.as_deref())?;
                if let Some(used_up) = used_up(r, &uses) {
                    return Ok(used_up);
                }
                tx.prepare_cached(
                    "INSERT INTO offer_redemptions (workspace_id, offer_id, order_id, code, customer, at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
                )
                .map_err(backend)?
                .execute(params![ws, r.offer, o.id, r.code, r.customer, now])
                .map_err(backend)?;
            }
            tx.prepare_cached(&format!(
            "INSERT INTO commerce_orders (workspace_id, {ORDER}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (workspace_id, id) DO UPDATE SET status = excluded.status, member = excluded.member,
               body = excluded.body, updated_at = excluded.updated_at, due_at = excluded.due_at"
        ))
        .map_err(backend)?
        .execute(params![ws, o.id, o.channel, o.status, o.member, o.body, o.created_at, o.updated_at, o.due_at])
        .map_err(backend)?;
        }
        for (sku, location, subscriber) in &w.alerts {
            let open = tx
                .prepare_cached(
                    "UPDATE stock_alerts SET notified_at = ?5 WHERE workspace_id = ?1 AND sku = ?2
                       AND location_id = ?3 AND subscriber = ?4 AND notified_at IS NULL",
                )
                .map_err(backend)?
                .execute(params![ws, sku, location, subscriber, now])
                .map_err(backend)?;
            if open == 0 {
                return Ok(Committed::Told);
            }
        }
        for (sku, location) in &w.low_told {
            let open = tx
                .prepare_cached(
                    "UPDATE stock_levels SET low_told_at = ?4 WHERE workspace_id = ?1 AND sku = ?2
                       AND location_id = ?3 AND low_told_at IS NULL",
                )
                .map_err(backend)?
                .execute(params![ws, sku, location, now])
                .map_err(backend)?;
            if open == 0 {
                return Ok(Committed::Told);
            }
        }
        if let Some(batch) = &w.events {
            crate::event_log::append_in(&tx, batch, w.dedup_since)?;
        }
        tx.commit().map_err(backend)?;
        Ok(Committed::Done {
            reserved,
            movements,
            loyalty: outcomes,
        })
    }

    fn order(&self, workspace: &str, id: &str) -> Result<Option<OrderRecord>> {
        self.read(|c| order_in(c, workspace, id))
    }

    fn due_orders(&self, now: Millis, limit: usize) -> Result<Vec<(String, String)>> {
        self.read(|c| {
            let mut q = c
                .prepare_cached(
                    "SELECT workspace_id, id FROM commerce_orders
                     WHERE due_at IS NOT NULL AND due_at <= ?1 ORDER BY due_at, workspace_id, id LIMIT ?2",
                )
                .map_err(backend)?;
            let rows = q
                .query_map(params![now, limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(backend)?
                .collect::<rusqlite::Result<Vec<(String, String)>>>()
                .map_err(backend)?;
            Ok(rows)
        })
    }

    fn loyalty_entries(&self, workspace: &str, member: &str) -> Result<Vec<LoyaltyRow>> {
        self.read(|c| entries_in(c, workspace, member))
    }

    fn loyalty_program(&self, workspace: &str) -> Result<Option<String>> {
        self.read(|c| {
            c.prepare_cached("SELECT body FROM loyalty_programs WHERE workspace_id = ?1")
                .map_err(backend)?
                .query_row([workspace], |r| r.get(0))
                .optional()
                .map_err(backend)
        })
    }

    fn put_loyalty_program(&self, workspace: &str, body: &str, now: Millis) -> Result<()> {
        self.writer()
            .prepare_cached(
                "INSERT INTO loyalty_programs (workspace_id, body, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (workspace_id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
            )
            .map_err(backend)?
            .execute(params![workspace, body, now])
            .map_err(backend)?;
        Ok(())
    }

    fn put_ad_spend(&self, workspace: &str, rows: &[SpendRow], now: Millis) -> Result<()> {
        let mut c = self.writer();
        let tx = c.transaction().map_err(backend)?;
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO ad_spend (workspace_id, day, channel, campaign, amount, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (workspace_id, day, channel, campaign)
                     DO UPDATE SET amount = excluded.amount, updated_at = excluded.updated_at",
                )
                .map_err(backend)?;
            for r in rows {
                st.execute(params![
                    workspace, r.day, r.channel, r.campaign, r.amount, now
                ])
                .map_err(backend)?;
            }
        }
        tx.commit().map_err(backend)
    }

    fn ad_spend(&self, workspace: &str, from: i64, to: i64) -> Result<Vec<SpendRow>> {
        self.read(|c| {
            let mut q = c
                .prepare_cached(
                    "SELECT day, channel, campaign, amount FROM ad_spend
                     WHERE workspace_id = ?1 AND day BETWEEN ?2 AND ?3
                     ORDER BY day, channel, campaign",
                )
                .map_err(backend)?;
            let rows = q
                .query_map(params![workspace, from, to], |r| {
                    Ok(SpendRow {
                        day: r.get(0)?,
                        channel: r.get(1)?,
                        campaign: r.get(2)?,
                        amount: r.get(3)?,
                    })
                })
                .map_err(backend)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(backend)?;
            Ok(rows)
        })
    }

    fn put_offer(&self, workspace: &str, id: &str, body: &str, now: Millis) -> Result<()> {
        self.writer()
            .prepare_cached(
                "INSERT INTO commerce_offers (workspace_id, id, body, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (workspace_id, id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
            )
            .map_err(backend)?
            .execute(params![workspace, id, body, now])
            .map_err(backend)?;
        Ok(())
    }

    fn delete_offer(&self, workspace: &str, id: &str) -> Result<bool> {
        let n = self
            .writer()
            .prepare_cached("DELETE FROM commerce_offers WHERE workspace_id = ?1 AND id = ?2")
            .map_err(backend)?
            .execute(params![workspace, id])
            .map_err(backend)?;
        Ok(n > 0)
    }

    fn offers(&self, workspace: &str) -> Result<Vec<String>> {
        self.read(|c| {
            let mut q = c
                .prepare_cached(
                    "SELECT body FROM commerce_offers WHERE workspace_id = ?1 ORDER BY id",
                )
                .map_err(backend)?;
            let rows = q
                .query_map([workspace], |r| r.get(0))
                .map_err(backend)?
                .collect::<rusqlite::Result<Vec<String>>>()
                .map_err(backend)?;
            Ok(rows)
        })
    }

    fn offer_uses(
        &self,
        workspace: &str,
        offer: &str,
        code: Option<&str>,
        customer: Option<&str>,
    ) -> Result<OfferUses> {
        self.read(|c| uses_in(c, workspace, offer, code, customer))
    }
}

fn uses_in(
    c: &rusqlite::Connection,
    ws: &str,
    offer: &str,
    code: Option<&str>,
    customer: Option<&str>,
) -> Result<OfferUses> {
    let (total, code, customer): (i64, i64, i64) = c
        .prepare_cached(
            "SELECT count(*), count(*) FILTER (WHERE code = ?3), count(*) FILTER (WHERE customer = ?4)
             FROM offer_redemptions WHERE workspace_id = ?1 AND offer_id = ?2",
        )
        .map_err(backend)?
        .query_row(params![ws, offer, code, customer], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .map_err(backend)?;
    Ok(OfferUses {
        total: total as u64,
        code: code as u64,
        customer: customer as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use parcours_core::commerce::inventory::Change;
    use parcours_store::{Registry, Workspace};

    /// A request that fails midway fails alone: the batch is decided again without it, and
    /// what the others held is committed once, not twice.
    #[test]
    fn a_failing_request_does_not_fail_its_batch() {
        let dir = std::env::temp_dir().join(format!("parcours-batch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = SqliteStore::open_temp(&dir).unwrap();
        store
            .create_workspace(&Workspace {
                id: "w".into(),
                name: "w".into(),
                created_at: 0,
                identity_rules: Default::default(),
            })
            .unwrap();
        let moved = store
            .move_stock(
                "w",
                &[Adjustment {
                    sku: "S".into(),
                    location: "L".into(),
                    state: StockState::OnHand,
                    change: Change::By(5),
                    reason: "received".into(),
                    reference: None,
                }],
                0,
            )
            .unwrap();
        assert!(moved.is_ok());
        let pending = |workspace: &str, reference: &str| {
            Arc::new(Pending {
                request: ReserveRequest {
                    workspace_id: workspace.into(),
                    reference: reference.into(),
                    demand: [(("S".to_string(), "L".to_string()), 1)].into(),
                    expires_at: None,
                    backorder: false,
                },
                now: 1,
                answer: Mutex::new(None),
            })
        };
        // The second fails after its level is written, when its reservation row is refused.
        store
            .writer()
            .execute_batch(
                "CREATE TEMP TRIGGER refuse_b BEFORE INSERT ON stock_reservations
                 WHEN NEW.reference = 'b' BEGIN SELECT RAISE(ABORT, 'refused for the test'); END;",
            )
            .unwrap();
        let batch = [pending("w", "a"), pending("w", "b"), pending("w", "c")];
        let answers = decide_together(&mut store.writer(), &batch);
        assert!(
            matches!(answers[0], Ok(Reserved::Held(_))),
            "{:?}",
            answers[0]
        );
        assert!(answers[1].is_err(), "{:?}", answers[1]);
        assert!(
            matches!(answers[2], Ok(Reserved::Held(_))),
            "{:?}",
            answers[2]
        );
        let level = store.stock("w", &["S".into()], 2).unwrap();
        assert_eq!(level[0].quantities.reserved, 2);
        assert_eq!(store.reservations("w", "a", 2).unwrap().len(), 1);
        assert_eq!(store.reservations("w", "c", 2).unwrap().len(), 1);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
