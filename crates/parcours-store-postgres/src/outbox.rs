//! The outbox and its delivery log. A claim reads a lane's oldest open rows, decides with
//! [`claimable`], and leases each row with an update that only succeeds while the row is
//! still as read: two nodes claiming the same lane never lease one row, and neither skips
//! a row another node is claiming (which `SKIP LOCKED` would do, and break the lane's order).

use parcours_core::time::Millis;
use parcours_store::{
    claimable, DeliveryAttempt, NewOutboxRow, OpenRow, Outbox, OutboxClaim, OutboxPage, OutboxRow,
    OutboxState, OutboxSummary, Result, Settled, Settlement, StoreError,
};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use crate::{backend, PgStore};

const COLS: &str = "id, workspace_id, destination, key, payload, items, state, attempts, \
     not_before, lease_until, last_error, created_at, settled_at";

fn outbox_row(r: &PgRow) -> Result<OutboxRow> {
    let state: String = r.try_get(6).map_err(backend)?;
    Ok(OutboxRow {
        id: r.try_get(0).map_err(backend)?,
        workspace_id: r.try_get(1).map_err(backend)?,
        destination: r.try_get(2).map_err(backend)?,
        key: r.try_get(3).map_err(backend)?,
        payload: r.try_get(4).map_err(backend)?,
        items: r.try_get::<i32, _>(5).map_err(backend)?.max(0) as u32,
        state: OutboxState::parse(&state)?,
        attempts: r.try_get::<i32, _>(7).map_err(backend)?.max(0) as u32,
        not_before: r.try_get(8).map_err(backend)?,
        lease_until: r.try_get(9).map_err(backend)?,
        last_error: r.try_get(10).map_err(backend)?,
        created_at: r.try_get(11).map_err(backend)?,
        settled_at: r.try_get(12).map_err(backend)?,
    })
}

/// Inserts rows inside the caller's transaction; a key already used is a conflict.
pub(crate) async fn insert_rows(conn: &mut PgConnection, rows: &[NewOutboxRow]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let col = |f: fn(&NewOutboxRow) -> String| rows.iter().map(f).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO outbox (workspace_id, destination, key, payload, items, state, not_before, created_at)
         SELECT w, d, k, p, i, 'pending', n, c
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::bigint[], $7::bigint[])
           AS t(w, d, k, p, i, n, c)",
    )
    .bind(col(|r| r.workspace_id.clone()))
    .bind(col(|r| r.destination.clone()))
    .bind(col(|r| r.key.clone()))
    .bind(col(|r| r.payload.clone()))
    .bind(rows.iter().map(|r| r.items as i32).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.not_before).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.created_at).collect::<Vec<_>>())
    .execute(conn)
    .await
    .map_err(|e| {
        if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("23505") {
            StoreError::Conflict(format!("an outbox key is taken: {e}"))
        } else {
            backend(e)
        }
    })?;
    Ok(())
}

async fn log_attempt(conn: &mut PgConnection, a: &DeliveryAttempt) -> Result<()> {
    sqlx::query(
        "INSERT INTO outbox_attempts (outbox_id, attempt, at, latency_ms, status, ok, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (outbox_id, attempt) DO UPDATE SET at = excluded.at,
           latency_ms = excluded.latency_ms, status = excluded.status, ok = excluded.ok,
           detail = excluded.detail",
    )
    .bind(a.outbox_id)
    .bind(a.attempt as i32)
    .bind(a.at)
    .bind(a.latency_ms as i64)
    .bind(a.status.map(i32::from))
    .bind(a.ok)
    .bind(&a.detail)
    .execute(conn)
    .await
    .map_err(backend)?;
    Ok(())
}

fn stale(id: i64) -> StoreError {
    StoreError::Conflict(format!("outbox row {id} is no longer held by this sender"))
}

/// An update of a row that only its lease holder may make changed it (one row), or the
/// sender no longer holds it.
fn held(id: i64, changed: u64) -> Result<()> {
    if changed == 1 {
        Ok(())
    } else {
        Err(stale(id))
    }
}

/// The update that settles a leased row held by the token, per outcome: `$1` id, `$2`
/// token, `$3` the moment (settled or retry), `$4` the error.
fn settle_sql(settled: Settled) -> &'static str {
    match settled {
        Settled::Done => {
            "UPDATE outbox SET state = 'done', settled_at = $3, lock_id = NULL,
               lease_until = NULL, last_error = $4
             WHERE id = $1 AND lock_id = $2 AND state = 'leased'"
        }
        Settled::RetryAt(_) => {
            "UPDATE outbox SET state = 'pending', not_before = $3, lock_id = NULL,
               lease_until = NULL, last_error = $4
             WHERE id = $1 AND lock_id = $2 AND state = 'leased'"
        }
        Settled::Dead => {
            "UPDATE outbox SET state = 'dead', settled_at = $3, lock_id = NULL,
               lease_until = NULL, last_error = $4
             WHERE id = $1 AND lock_id = $2 AND state = 'leased'"
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

impl Outbox for PgStore {
    fn enqueue(&self, rows: &[NewOutboxRow]) -> Result<()> {
        self.run(async {
            let mut tx = self.pool().begin().await.map_err(backend)?;
            insert_rows(&mut tx, rows).await?;
            tx.commit().await.map_err(backend)
        })
    }

    fn claim(&self, c: &OutboxClaim) -> Result<Vec<OutboxRow>> {
        self.run(async {
            let mut tx = self.pool().begin().await.map_err(backend)?;
            let rows = sqlx::query(
                "SELECT id, state, not_before, lease_until FROM outbox
                 WHERE workspace_id = $1 AND destination = $2 AND state IN ('pending', 'leased')
                 ORDER BY id LIMIT $3",
            )
            .bind(c.workspace_id)
            .bind(c.destination)
            .bind(c.max_in_flight as i64)
            .fetch_all(&mut *tx)
            .await
            .map_err(backend)?;
            let mut open = Vec::with_capacity(rows.len());
            for r in &rows {
                let state: String = r.try_get(1).map_err(backend)?;
                open.push(OpenRow {
                    id: r.try_get(0).map_err(backend)?,
                    state: OutboxState::parse(&state)?,
                    not_before: r.try_get(2).map_err(backend)?,
                    lease_until: r.try_get(3).map_err(backend)?,
                });
            }
            let mut claimed = Vec::new();
            for id in claimable(&open, c.max_in_flight, c.now) {
                // Re-checked under the row lock: another node may have leased it since.
                let row = sqlx::query(&format!(
                    "UPDATE outbox SET state = 'leased', lock_id = $2, lease_until = $3,
                       attempts = attempts + 1
                     WHERE id = $1 AND (state = 'pending' OR (state = 'leased' AND lease_until <= $4))
                     RETURNING {COLS}"
                ))
                .bind(id)
                .bind(c.token)
                .bind(c.lease_until)
                .bind(c.now)
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?;
                if let Some(row) = row {
                    claimed.push(outbox_row(&row)?);
                }
            }
            tx.commit().await.map_err(backend)?;
            Ok(claimed)
        })
    }

    fn extend_lease(&self, id: i64, token: &str, lease_until: Millis) -> Result<()> {
        let n = self
            .run(
                sqlx::query(
                    "UPDATE outbox SET lease_until = $3
                     WHERE id = $1 AND lock_id = $2 AND state = 'leased'",
                )
                .bind(id)
                .bind(token)
                .bind(lease_until)
                .execute(self.pool()),
            )
            .map_err(backend)?
            .rows_affected();
        held(id, n)
    }

    fn settle_all(&self, token: &str, rows: &[Settlement]) -> Result<Vec<bool>> {
        self.run(async {
            let mut tx = self.pool().begin().await.map_err(backend)?;
            let mut held = Vec::with_capacity(rows.len());
            for r in rows {
                let (at, error) = settle_binds(r);
                let n = sqlx::query(settle_sql(r.settled))
                    .bind(r.id)
                    .bind(token)
                    .bind(at)
                    .bind(error)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?
                    .rows_affected();
                if n == 1 {
                    log_attempt(&mut tx, &r.attempt).await?;
                }
                held.push(n == 1);
            }
            tx.commit().await.map_err(backend)?;
            Ok(held)
        })
    }

    fn release(&self, id: i64, token: &str) -> Result<()> {
        let n = self
            .run(
                sqlx::query(
                    "UPDATE outbox SET state = 'pending', lock_id = NULL, lease_until = NULL,
                       attempts = greatest(attempts - 1, 0)
                     WHERE id = $1 AND lock_id = $2 AND state = 'leased'",
                )
                .bind(id)
                .bind(token)
                .execute(self.pool()),
            )
            .map_err(backend)?
            .rows_affected();
        held(id, n)
    }

    fn reclaim_expired(&self, now: Millis) -> Result<u64> {
        Ok(self
            .run(
                sqlx::query(
                    "UPDATE outbox SET state = 'pending', lock_id = NULL, lease_until = NULL
                     WHERE state = 'leased' AND lease_until <= $1",
                )
                .bind(now)
                .execute(self.pool()),
            )
            .map_err(backend)?
            .rows_affected())
    }

    fn requeue(
        &self,
        workspace: &str,
        destination: &str,
        from_id: i64,
        now: Millis,
    ) -> Result<u64> {
        Ok(self
            .run(
                sqlx::query(
                    "UPDATE outbox SET state = 'pending', attempts = 0, not_before = $4,
                       last_error = NULL, settled_at = NULL
                     WHERE workspace_id = $1 AND destination = $2 AND id >= $3
                       AND state IN ('done', 'dead')",
                )
                .bind(workspace)
                .bind(destination)
                .bind(from_id)
                .bind(now)
                .execute(self.pool()),
            )
            .map_err(backend)?
            .rows_affected())
    }

    fn outbox_rows(&self, p: &OutboxPage) -> Result<Vec<OutboxRow>> {
        let rows = self
            .run(
                sqlx::query(&format!(
                    "SELECT {COLS} FROM outbox WHERE workspace_id = $1 AND destination = $2
                       AND ($3::text IS NULL OR state = $3) AND ($4::bigint IS NULL OR id < $4)
                     ORDER BY id DESC LIMIT $5"
                ))
                .bind(p.workspace_id)
                .bind(p.destination)
                .bind(p.state.map(OutboxState::as_str))
                .bind(p.before_id)
                .bind(p.limit as i64)
                .fetch_all(self.pool()),
            )
            .map_err(backend)?;
        rows.iter().map(outbox_row).collect()
    }

    fn open_rows(&self, workspace: &str, destination: &str) -> Result<u64> {
        let n: i64 = self
            .run(
                sqlx::query_scalar(
                    "SELECT count(*) FROM outbox WHERE workspace_id = $1 AND destination = $2
                       AND state IN ('pending', 'leased')",
                )
                .bind(workspace)
                .bind(destination)
                .fetch_one(self.pool()),
            )
            .map_err(backend)?;
        Ok(n.max(0) as u64)
    }

    fn outbox_row_by_key(&self, workspace: &str, key: &str) -> Result<Option<OutboxRow>> {
        let row = self
            .run(
                sqlx::query(&format!(
                    "SELECT {COLS} FROM outbox WHERE workspace_id = $1 AND key = $2"
                ))
                .bind(workspace)
                .bind(key)
                .fetch_optional(self.pool()),
            )
            .map_err(backend)?;
        row.as_ref().map(outbox_row).transpose()
    }

    fn outbox_row(&self, workspace: &str, id: i64) -> Result<Option<OutboxRow>> {
        let row = self
            .run(
                sqlx::query(&format!(
                    "SELECT {COLS} FROM outbox WHERE workspace_id = $1 AND id = $2"
                ))
                .bind(workspace)
                .bind(id)
                .fetch_optional(self.pool()),
            )
            .map_err(backend)?;
        row.as_ref().map(outbox_row).transpose()
    }

    fn delivery_attempts(&self, workspace: &str, id: i64) -> Result<Vec<DeliveryAttempt>> {
        let rows = self
            .run(
                sqlx::query(
                    "SELECT a.outbox_id, a.attempt, a.at, a.latency_ms, a.status, a.ok, a.detail
                     FROM outbox_attempts a JOIN outbox o ON o.id = a.outbox_id
                     WHERE o.workspace_id = $1 AND a.outbox_id = $2 ORDER BY a.attempt",
                )
                .bind(workspace)
                .bind(id)
                .fetch_all(self.pool()),
            )
            .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(DeliveryAttempt {
                    outbox_id: r.try_get(0).map_err(backend)?,
                    attempt: r.try_get::<i32, _>(1).map_err(backend)?.max(0) as u32,
                    at: r.try_get(2).map_err(backend)?,
                    latency_ms: r.try_get::<i64, _>(3).map_err(backend)?.max(0) as u64,
                    status: r
                        .try_get::<Option<i32>, _>(4)
                        .map_err(backend)?
                        .and_then(|s| u16::try_from(s).ok()),
                    ok: r.try_get(5).map_err(backend)?,
                    detail: r.try_get(6).map_err(backend)?,
                })
            })
            .collect()
    }

    fn outbox_summary(&self, workspace: &str, destination: &str) -> Result<OutboxSummary> {
        let (counts, head) = self
            .run(async {
                let counts = sqlx::query(
                    "SELECT state, count(*), coalesce(sum(items), 0)::bigint, max(settled_at)
                 FROM outbox WHERE workspace_id = $1 AND destination = $2 GROUP BY state",
                )
                .bind(workspace)
                .bind(destination)
                .fetch_all(self.pool())
                .await?;
                let head = sqlx::query(&format!(
                    "SELECT {COLS} FROM outbox
                 WHERE workspace_id = $1 AND destination = $2 AND state IN ('pending', 'leased')
                 ORDER BY id LIMIT 1"
                ))
                .bind(workspace)
                .bind(destination)
                .fetch_optional(self.pool())
                .await?;
                Ok::<_, sqlx::Error>((counts, head))
            })
            .map_err(backend)?;
        let mut s = OutboxSummary::default();
        for r in &counts {
            let state: String = r.try_get(0).map_err(backend)?;
            let count = r.try_get::<i64, _>(1).map_err(backend)?.max(0) as u64;
            match OutboxState::parse(&state)? {
                OutboxState::Pending => s.pending = count,
                OutboxState::Leased => s.leased = count,
                OutboxState::Dead => s.dead = count,
                OutboxState::Done => {
                    s.done = count;
                    s.delivered_items = r.try_get::<i64, _>(2).map_err(backend)?.max(0) as u64;
                    s.last_success_at = r.try_get(3).map_err(backend)?;
                }
            }
        }
        s.head = head.as_ref().map(outbox_row).transpose()?;
        Ok(s)
    }
}
