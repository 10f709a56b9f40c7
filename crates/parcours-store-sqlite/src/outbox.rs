//! The outbox and its delivery log, in the projections file (the decisions that write its
//! rows commit there too).

use parcours_core::time::Millis;
use parcours_store::{
    claimable, DeliveryAttempt, NewOutboxRow, OpenRow, Outbox, OutboxClaim, OutboxPage, OutboxRow,
    OutboxState, OutboxSummary, Result, Settled, Settlement, StoreError,
};
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::{backend, corrupt, SqliteStore};

const COLS: &str = "id, workspace_id, destination, key, payload, items, state, attempts, \
     not_before, lease_until, last_error, created_at, settled_at";

fn outbox_row(r: &Row<'_>) -> rusqlite::Result<(OutboxRow, String)> {
    Ok((
        OutboxRow {
            id: r.get(0)?,
            workspace_id: r.get(1)?,
            destination: r.get(2)?,
            key: r.get(3)?,
            payload: r.get(4)?,
            items: r.get(5)?,
            state: OutboxState::Pending,
            attempts: r.get(7)?,
            not_before: r.get(8)?,
            lease_until: r.get(9)?,
            last_error: r.get(10)?,
            created_at: r.get(11)?,
            settled_at: r.get(12)?,
        },
        r.get(6)?,
    ))
}

fn finish((mut row, state): (OutboxRow, String)) -> Result<OutboxRow> {
    row.state = OutboxState::parse(&state)?;
    Ok(row)
}

/// Inserts rows inside the caller's transaction; a key already used is a conflict.
pub(crate) fn insert_rows(conn: &Connection, rows: &[NewOutboxRow]) -> Result<()> {
    // Most audience steps cause no effect: nothing to prepare.
    if rows.is_empty() {
        return Ok(());
    }
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO outbox (workspace_id, destination, key, payload, items, state, not_before, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?7)",
        )
        .map_err(backend)?;
    for r in rows {
        insert
            .execute(params![
                r.workspace_id,
                r.destination,
                r.key,
                r.payload,
                r.items,
                r.not_before,
                r.created_at
            ])
            .map_err(|e| match e.sqlite_error_code() {
                Some(rusqlite::ErrorCode::ConstraintViolation) => {
                    StoreError::Conflict(format!("outbox key `{}` is taken", r.key))
                }
                _ => backend(e),
            })?;
    }
    Ok(())
}

/// Leases the claimable rows of a lane (in a transaction of the caller's connection).
fn claim_in(conn: &mut Connection, c: &OutboxClaim) -> Result<Vec<OutboxRow>> {
    let tx = conn.transaction().map_err(backend)?;
    let open = open_rows(&tx, c)?;
    let mut claimed = Vec::new();
    {
        let mut lease = tx
            .prepare_cached(&format!(
                "UPDATE outbox SET state = 'leased', lock_id = ?2, lease_until = ?3, attempts = attempts + 1
                 WHERE id = ?1 AND (state = 'pending' OR (state = 'leased' AND lease_until <= ?4))
                 RETURNING {COLS}"
            ))
            .map_err(backend)?;
        for id in claimable(&open, c.max_in_flight, c.now) {
            if let Some(row) = lease
                .query_row(params![id, c.token, c.lease_until, c.now], outbox_row)
                .optional()
                .map_err(backend)?
            {
                claimed.push(finish(row)?);
            }
        }
    }
    tx.commit().map_err(backend)?;
    Ok(claimed)
}

/// A lane's open rows, oldest first, as many as a claim could look at.
fn open_rows(conn: &Connection, c: &OutboxClaim) -> Result<Vec<OpenRow>> {
    let mut st = conn
        .prepare_cached(
            "SELECT id, state, not_before, lease_until FROM outbox INDEXED BY outbox_open
             WHERE workspace_id = ?1 AND destination = ?2 AND state IN ('pending', 'leased')
             ORDER BY id LIMIT ?3",
        )
        .map_err(backend)?;
    let rows = st
        .query_map(
            params![c.workspace_id, c.destination, c.max_in_flight as i64],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get(2)?,
                    r.get(3)?,
                ))
            },
        )
        .map_err(backend)?;
    let mut out = Vec::new();
    for r in rows {
        let (id, state, not_before, lease_until) = r.map_err(backend)?;
        out.push(OpenRow {
            id,
            state: OutboxState::parse(&state)?,
            not_before,
            lease_until,
        });
    }
    Ok(out)
}

fn log_attempt(conn: &Connection, a: &DeliveryAttempt) -> Result<()> {
    let mut st = conn
        .prepare_cached(
            "INSERT INTO outbox_attempts (outbox_id, attempt, at, latency_ms, status, ok, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (outbox_id, attempt) DO UPDATE SET at = excluded.at,
           latency_ms = excluded.latency_ms, status = excluded.status, ok = excluded.ok,
           detail = excluded.detail",
        )
        .map_err(backend)?;
    st.execute(params![
        a.outbox_id,
        a.attempt,
        a.at,
        a.latency_ms as i64,
        a.status,
        a.ok,
        a.detail
    ])
    .map_err(backend)?;
    Ok(())
}

fn stale(id: i64) -> StoreError {
    StoreError::Conflict(format!("outbox row {id} is no longer held by this sender"))
}

/// An update of a row that only its lease holder may make changed it (one row), or the
/// sender no longer holds it.
fn held(id: i64, changed: usize) -> Result<()> {
    if changed == 1 {
        Ok(())
    } else {
        Err(stale(id))
    }
}

/// The update that settles a leased row held by the token, per outcome: `?1` id, `?2`
/// token, `?3` the moment (settled or retry), `?4` the error.
fn settle_sql(settled: Settled) -> &'static str {
    match settled {
        Settled::Done => {
            "UPDATE outbox SET state = 'done', settled_at = ?3, lock_id = NULL,
               lease_until = NULL, last_error = ?4
             WHERE id = ?1 AND lock_id = ?2 AND state = 'leased'"
        }
        Settled::RetryAt(_) => {
            "UPDATE outbox SET state = 'pending', not_before = ?3, lock_id = NULL,
               lease_until = NULL, last_error = ?4
             WHERE id = ?1 AND lock_id = ?2 AND state = 'leased'"
        }
        Settled::Dead => {
            "UPDATE outbox SET state = 'dead', settled_at = ?3, lock_id = NULL,
               lease_until = NULL, last_error = ?4
             WHERE id = ?1 AND lock_id = ?2 AND state = 'leased'"
        }
    }
}

/// The moment a settlement writes, and the error it keeps.
fn settle_binds(s: &Settlement) -> (Millis, Option<&str>) {
    match s.settled {
        Settled::Done => (s.attempt.at, None),
        Settled::RetryAt(at) => (at, Some(s.attempt.detail.as_str())),
        Settled::Dead => (s.attempt.at, Some(s.attempt.detail.as_str())),
    }
}

impl Outbox for SqliteStore {
    fn enqueue(&self, rows: &[NewOutboxRow]) -> Result<()> {
        let mut conn = self.projection_writer();
        let tx = conn.transaction().map_err(backend)?;
        insert_rows(&tx, rows)?;
        tx.commit().map_err(backend)
    }

    fn claim(&self, c: &OutboxClaim) -> Result<Vec<OutboxRow>> {
        // Most lanes have nothing to send most of the time: a look on a read connection
        // tells, without taking the writer from the decisions. What it misses (committed
        // after it looked) is claimed on the next step; what it sees is checked again under
        // the writer.
        let open = self.read_projections(|conn| open_rows(conn, c))?;
        if claimable(&open, c.max_in_flight, c.now).is_empty() {
            return Ok(Vec::new());
        }
        self.claim_writer(|conn| claim_in(conn, c))
    }

    fn extend_lease(&self, id: i64, token: &str, lease_until: Millis) -> Result<()> {
        let n = self
            .projection_writer()
            .execute(
                "UPDATE outbox SET lease_until = ?3 WHERE id = ?1 AND lock_id = ?2 AND state = 'leased'",
                params![id, token, lease_until],
            )
            .map_err(backend)?;
        held(id, n)
    }

    fn settle_all(&self, token: &str, rows: &[Settlement]) -> Result<Vec<bool>> {
        let mut conn = self.projection_writer();
        let tx = conn.transaction().map_err(backend)?;
        let mut held = Vec::with_capacity(rows.len());
        for r in rows {
            let (at, error) = settle_binds(r);
            let n = tx
                .prepare_cached(settle_sql(r.settled))
                .and_then(|mut st| st.execute(params![r.id, token, at, error]))
                .map_err(backend)?;
            if n == 1 {
                log_attempt(&tx, &r.attempt)?;
            }
            held.push(n == 1);
        }
        tx.commit().map_err(backend)?;
        Ok(held)
    }

    fn release(&self, id: i64, token: &str) -> Result<()> {
        let n = self
            .projection_writer()
            .execute(
                "UPDATE outbox SET state = 'pending', lock_id = NULL, lease_until = NULL,
                   attempts = max(attempts - 1, 0)
                 WHERE id = ?1 AND lock_id = ?2 AND state = 'leased'",
                params![id, token],
            )
            .map_err(backend)?;
        held(id, n)
    }

    fn reclaim_expired(&self, now: Millis) -> Result<u64> {
        let n = self
            .projection_writer()
            .execute(
                "UPDATE outbox SET state = 'pending', lock_id = NULL, lease_until = NULL
                 WHERE state = 'leased' AND lease_until <= ?1",
                params![now],
            )
            .map_err(backend)?;
        Ok(n as u64)
    }

    fn requeue(
        &self,
        workspace: &str,
        destination: &str,
        from_id: i64,
        now: Millis,
    ) -> Result<u64> {
        let n = self
            .projection_writer()
            .execute(
                "UPDATE outbox SET state = 'pending', attempts = 0, not_before = ?4,
                   last_error = NULL, settled_at = NULL
                 WHERE workspace_id = ?1 AND destination = ?2 AND id >= ?3
                   AND state IN ('done', 'dead')",
                params![workspace, destination, from_id, now],
            )
            .map_err(backend)?;
        Ok(n as u64)
    }

    fn outbox_rows(&self, p: &OutboxPage) -> Result<Vec<OutboxRow>> {
        self.read_projections(|conn| {
            let mut st = conn
                .prepare_cached(&format!(
                    "SELECT {COLS} FROM outbox WHERE workspace_id = ?1 AND destination = ?2
                       AND (?3 IS NULL OR state = ?3) AND (?4 IS NULL OR id < ?4)
                     ORDER BY id DESC LIMIT ?5"
                ))
                .map_err(backend)?;
            let rows = st
                .query_map(
                    params![
                        p.workspace_id,
                        p.destination,
                        p.state.map(OutboxState::as_str),
                        p.before_id,
                        p.limit as i64
                    ],
                    outbox_row,
                )
                .map_err(backend)?;
            rows.map(|r| finish(r.map_err(backend)?)).collect()
        })
    }

    fn open_rows(&self, workspace: &str, destination: &str) -> Result<u64> {
        self.read_projections(|conn| {
            conn.query_row(
                "SELECT count(*) FROM outbox INDEXED BY outbox_open
                 WHERE workspace_id = ?1 AND destination = ?2 AND state IN ('pending', 'leased')",
                params![workspace, destination],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n.max(0) as u64)
            .map_err(backend)
        })
    }

    fn outbox_row_by_key(&self, workspace: &str, key: &str) -> Result<Option<OutboxRow>> {
        self.read_projections(|conn| {
            conn.query_row(
                &format!("SELECT {COLS} FROM outbox WHERE workspace_id = ?1 AND key = ?2"),
                params![workspace, key],
                outbox_row,
            )
            .optional()
            .map_err(backend)?
            .map(finish)
            .transpose()
        })
    }

    fn outbox_row(&self, workspace: &str, id: i64) -> Result<Option<OutboxRow>> {
        self.read_projections(|conn| {
            conn.query_row(
                &format!("SELECT {COLS} FROM outbox WHERE workspace_id = ?1 AND id = ?2"),
                params![workspace, id],
                outbox_row,
            )
            .optional()
            .map_err(backend)?
            .map(finish)
            .transpose()
        })
    }

    fn delivery_attempts(&self, workspace: &str, id: i64) -> Result<Vec<DeliveryAttempt>> {
        self.read_projections(|conn| {
            let mut st = conn
                .prepare_cached(
                    "SELECT a.outbox_id, a.attempt, a.at, a.latency_ms, a.status, a.ok, a.detail
                     FROM outbox_attempts a JOIN outbox o ON o.id = a.outbox_id
                     WHERE o.workspace_id = ?1 AND a.outbox_id = ?2 ORDER BY a.attempt",
                )
                .map_err(backend)?;
            let rows = st
                .query_map(params![workspace, id], |r| {
                    Ok(DeliveryAttempt {
                        outbox_id: r.get(0)?,
                        attempt: r.get(1)?,
                        at: r.get(2)?,
                        latency_ms: r.get::<_, i64>(3)?.max(0) as u64,
                        status: r.get(4)?,
                        ok: r.get(5)?,
                        detail: r.get(6)?,
                    })
                })
                .map_err(backend)?;
            rows.map(|r| r.map_err(backend)).collect()
        })
    }

    fn outbox_summary(&self, workspace: &str, destination: &str) -> Result<OutboxSummary> {
        self.read_projections(|conn| {
            let mut s = OutboxSummary::default();
            let mut st = conn
                .prepare_cached(
                    "SELECT state, count(*), sum(items), max(settled_at) FROM outbox
                     WHERE workspace_id = ?1 AND destination = ?2 GROUP BY state",
                )
                .map_err(backend)?;
            let rows = st
                .query_map(params![workspace, destination], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                        r.get::<_, Option<i64>>(3)?,
                    ))
                })
                .map_err(backend)?;
            for r in rows {
                let (state, count, items, settled) = r.map_err(backend)?;
                let count = count.max(0) as u64;
                match OutboxState::parse(&state)? {
                    OutboxState::Pending => s.pending = count,
                    OutboxState::Leased => s.leased = count,
                    OutboxState::Dead => s.dead = count,
                    OutboxState::Done => {
                        s.done = count;
                        s.delivered_items = items.unwrap_or(0).max(0) as u64;
                        s.last_success_at = settled;
                    }
                }
            }
            s.head = conn
                .query_row(
                    &format!(
                        "SELECT {COLS} FROM outbox INDEXED BY outbox_open
                         WHERE workspace_id = ?1 AND destination = ?2 AND state IN ('pending', 'leased')
                         ORDER BY id LIMIT 1"
                    ),
                    params![workspace, destination],
                    outbox_row,
                )
                .optional()
                .map_err(backend)?
                .map(finish)
                .transpose()
                .map_err(corrupt)?;
            Ok(s)
        })
    }
}
