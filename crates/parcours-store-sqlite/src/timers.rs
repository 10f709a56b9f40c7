//! Durable timers, in the projections file (the decisions that set them commit there).

use parcours_core::time::Millis;
use parcours_store::{DurableTimer, NewTimer, Result, TimerClaim, TimerFire, Timers};
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::{backend, SqliteStore};

const COLS: &str = "workspace_id, kind, key, bucket, due_at, payload, lease_until";

fn timer(r: &Row<'_>) -> rusqlite::Result<DurableTimer> {
    Ok(DurableTimer {
        workspace_id: r.get(0)?,
        kind: r.get(1)?,
        key: r.get(2)?,
        bucket: r.get(3)?,
        due_at: r.get(4)?,
        payload: r.get(5)?,
        lease_until: r.get(6)?,
    })
}

fn bucket_list(buckets: Option<&[u16]>) -> Option<String> {
    buckets.map(|b| serde_json::to_string(b).unwrap_or_else(|_| "[]".into()))
}

/// Sets (or moves) timers inside the caller's transaction.
pub(crate) fn set_in(conn: &Connection, timers: &[NewTimer]) -> Result<()> {
    if timers.is_empty() {
        return Ok(());
    }
    let mut set = conn
        .prepare_cached(
            "INSERT INTO timers (workspace_id, kind, key, bucket, due_at, payload)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (workspace_id, kind, key) DO UPDATE SET bucket = excluded.bucket,
               due_at = excluded.due_at, payload = excluded.payload,
               lease_until = NULL, lock_id = NULL",
        )
        .map_err(backend)?;
    for t in timers {
        set.execute(params![
            t.workspace_id,
            t.kind,
            t.key,
            t.bucket,
            t.due_at,
            t.payload
        ])
        .map_err(backend)?;
    }
    Ok(())
}

/// Cancels timers by key inside the caller's transaction; returns how many existed.
pub(crate) fn cancel_in(
    conn: &Connection,
    workspace: &str,
    kind: &str,
    keys: &[String],
) -> Result<u64> {
    let mut cancel = conn
        .prepare_cached("DELETE FROM timers WHERE workspace_id = ?1 AND kind = ?2 AND key = ?3")
        .map_err(backend)?;
    let mut n = 0;
    for key in keys {
        n += cancel
            .execute(params![workspace, kind, key])
            .map_err(backend)? as u64;
    }
    Ok(n)
}

impl Timers for SqliteStore {
    fn set_timers(&self, timers: &[NewTimer]) -> Result<()> {
        let mut conn = self.projection_writer();
        let tx = conn.transaction().map_err(backend)?;
        set_in(&tx, timers)?;
        tx.commit().map_err(backend)
    }

    fn cancel_timers(&self, workspace: &str, kind: &str, keys: &[String]) -> Result<u64> {
        let mut conn = self.projection_writer();
        let tx = conn.transaction().map_err(backend)?;
        let n = cancel_in(&tx, workspace, kind, keys)?;
        tx.commit().map_err(backend)?;
        Ok(n)
    }

    fn claim_timers(&self, c: &TimerClaim) -> Result<Vec<DurableTimer>> {
        self.claim_writer(|conn| claim_in(conn, c))
    }

    fn release_timers(&self, token: &str, timers: &[TimerFire]) -> Result<u64> {
        let mut conn = self.projection_writer();
        let tx = conn.transaction().map_err(backend)?;
        let mut n = 0;
        {
            let mut release = tx
                .prepare_cached(
                    "UPDATE timers SET lease_until = NULL, lock_id = NULL
                     WHERE workspace_id = ?1 AND kind = ?2 AND key = ?3 AND lock_id = ?4 AND due_at = ?5",
                )
                .map_err(backend)?;
            for f in timers {
                n += release
                    .execute(params![f.workspace_id, f.kind, f.key, token, f.due_at])
                    .map_err(backend)? as u64;
            }
        }
        tx.commit().map_err(backend)?;
        Ok(n)
    }

    fn fire_timers(&self, token: &str, fired: &[TimerFire]) -> Result<u64> {
        let mut conn = self.projection_writer();
        let tx = conn.transaction().map_err(backend)?;
        let mut n = 0;
        {
            let mut fire = tx
                .prepare_cached(
                    "DELETE FROM timers WHERE workspace_id = ?1 AND kind = ?2 AND key = ?3
                       AND lock_id = ?4 AND due_at = ?5",
                )
                .map_err(backend)?;
            for f in fired {
                n += fire
                    .execute(params![f.workspace_id, f.kind, f.key, token, f.due_at])
                    .map_err(backend)? as u64;
            }
        }
        tx.commit().map_err(backend)?;
        Ok(n)
    }

    fn timer(&self, workspace: &str, kind: &str, key: &str) -> Result<Option<DurableTimer>> {
        self.read_projections(|conn| {
            conn.query_row(
                &format!(
                    "SELECT {COLS} FROM timers WHERE workspace_id = ?1 AND kind = ?2 AND key = ?3"
                ),
                params![workspace, kind, key],
                timer,
            )
            .optional()
            .map_err(backend)
        })
    }

    fn timer_count(&self, kind: &str) -> Result<u64> {
        self.read_projections(|conn| {
            conn.query_row(
                "SELECT count(*) FROM timers WHERE kind = ?1",
                params![kind],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n.max(0) as u64)
            .map_err(backend)
        })
    }

    fn next_due(&self, kind: &str, buckets: Option<&[u16]>) -> Result<Option<Millis>> {
        self.read_projections(|conn| {
            conn.query_row(
                "SELECT min(due_at) FROM timers INDEXED BY timers_due WHERE kind = ?1
                   AND (?2 IS NULL OR bucket IN (SELECT value FROM json_each(?2)))",
                params![kind, bucket_list(buckets)],
                |r| r.get(0),
            )
            .map_err(backend)
        })
    }
}

/// Leases the due timers of a claim.
fn claim_in(conn: &mut Connection, c: &TimerClaim) -> Result<Vec<DurableTimer>> {
    let mut st = conn
        .prepare_cached(&format!(
            "UPDATE timers SET lease_until = ?1, lock_id = ?2
             WHERE (workspace_id, kind, key) IN (
               SELECT workspace_id, kind, key FROM timers INDEXED BY timers_due
               WHERE kind = ?3 AND due_at <= ?4 AND (lease_until IS NULL OR lease_until <= ?4)
                 AND (?5 IS NULL OR bucket IN (SELECT value FROM json_each(?5)))
               ORDER BY due_at LIMIT ?6)
             RETURNING {COLS}"
        ))
        .map_err(backend)?;
    let rows = st
        .query_map(
            params![
                c.lease_until,
                c.token,
                c.kind,
                c.now,
                bucket_list(c.buckets),
                c.limit as i64
            ],
            timer,
        )
        .map_err(backend)?;
    let mut out = rows
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(backend)?;
    out.sort_by(|a, b| (a.due_at, &a.key).cmp(&(b.due_at, &b.key)));
    Ok(out)
}
