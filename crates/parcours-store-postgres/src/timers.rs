//! Durable timers. Schedulers on several nodes claim with `FOR UPDATE SKIP LOCKED`: each due
//! timer goes to one of them, and none waits for another.

use parcours_core::time::Millis;
use parcours_store::{DurableTimer, NewTimer, Result, TimerClaim, TimerFire, Timers};
use sqlx::postgres::PgRow;
use sqlx::Row;

use crate::{backend, PgStore};

const COLS: &str = "workspace_id, kind, key, bucket, due_at, payload, lease_until";

fn timer(r: &PgRow) -> Result<DurableTimer> {
    Ok(DurableTimer {
        workspace_id: r.try_get(0).map_err(backend)?,
        kind: r.try_get(1).map_err(backend)?,
        key: r.try_get(2).map_err(backend)?,
        bucket: r.try_get::<i32, _>(3).map_err(backend)?.clamp(0, 65_535) as u16,
        due_at: r.try_get(4).map_err(backend)?,
        payload: r.try_get(5).map_err(backend)?,
        lease_until: r.try_get(6).map_err(backend)?,
    })
}

fn bucket_list(buckets: Option<&[u16]>) -> Option<Vec<i32>> {
    buckets.map(|b| b.iter().map(|&b| i32::from(b)).collect())
}

/// Sets (or moves) timers on the caller's connection (inside its transaction, if any).
pub(crate) async fn set_in(conn: &mut sqlx::PgConnection, timers: &[NewTimer]) -> Result<()> {
    if timers.is_empty() {
        return Ok(());
    }
    let col = |f: fn(&NewTimer) -> String| timers.iter().map(f).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO timers (workspace_id, kind, key, bucket, due_at, payload)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::bigint[], $6::text[])
         ON CONFLICT (workspace_id, kind, key) DO UPDATE SET bucket = excluded.bucket,
           due_at = excluded.due_at, payload = excluded.payload,
           lease_until = NULL, lock_id = NULL",
    )
    .bind(col(|t| t.workspace_id.clone()))
    .bind(col(|t| t.kind.clone()))
    .bind(col(|t| t.key.clone()))
    .bind(timers.iter().map(|t| i32::from(t.bucket)).collect::<Vec<_>>())
    .bind(timers.iter().map(|t| t.due_at).collect::<Vec<_>>())
    .bind(col(|t| t.payload.clone()))
    .execute(conn)
    .await
    .map_err(backend)?;
    Ok(())
}

/// Cancels timers by key on the caller's connection; returns how many existed.
pub(crate) async fn cancel_in(
    conn: &mut sqlx::PgConnection,
    workspace: &str,
    kind: &str,
    keys: &[String],
) -> Result<u64> {
    Ok(
        sqlx::query("DELETE FROM timers WHERE workspace_id = $1 AND kind = $2 AND key = ANY($3)")
            .bind(workspace)
            .bind(kind)
            .bind(keys)
            .execute(conn)
            .await
            .map_err(backend)?
            .rows_affected(),
    )
}

impl Timers for PgStore {
    fn set_timers(&self, timers: &[NewTimer]) -> Result<()> {
        self.run(async {
            let mut conn = self.pool().acquire().await.map_err(backend)?;
            set_in(&mut conn, timers).await
        })
    }

    fn cancel_timers(&self, workspace: &str, kind: &str, keys: &[String]) -> Result<u64> {
        self.run(async {
            let mut conn = self.pool().acquire().await.map_err(backend)?;
            cancel_in(&mut conn, workspace, kind, keys).await
        })
    }

    fn claim_timers(&self, c: &TimerClaim) -> Result<Vec<DurableTimer>> {
        let rows = self
            .run(
                sqlx::query(&format!(
                    "UPDATE timers t SET lease_until = $1, lock_id = $2
                     FROM (SELECT workspace_id, kind, key FROM timers
                           WHERE kind = $3 AND due_at <= $4
                             AND (lease_until IS NULL OR lease_until <= $4)
                             AND ($5::int[] IS NULL OR bucket = ANY($5))
                           ORDER BY due_at LIMIT $6 FOR UPDATE SKIP LOCKED) c
                     WHERE t.workspace_id = c.workspace_id AND t.kind = c.kind AND t.key = c.key
                     RETURNING {}",
                    COLS.split(", ")
                        .map(|c| format!("t.{c}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .bind(c.lease_until)
                .bind(c.token)
                .bind(c.kind)
                .bind(c.now)
                .bind(bucket_list(c.buckets))
                .bind(c.limit as i64)
                .fetch_all(self.pool()),
            )
            .map_err(backend)?;
        let mut out = rows.iter().map(timer).collect::<Result<Vec<_>>>()?;
        out.sort_by(|a, b| (a.due_at, &a.key).cmp(&(b.due_at, &b.key)));
        Ok(out)
    }

    fn release_timers(&self, token: &str, timers: &[TimerFire]) -> Result<u64> {
        if timers.is_empty() {
            return Ok(0);
        }
        Ok(self
            .run(
                sqlx::query(
                    "UPDATE timers t SET lease_until = NULL, lock_id = NULL
                     FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) AS f(w, k, key, due)
                     WHERE t.workspace_id = f.w AND t.kind = f.k AND t.key = f.key
                       AND t.due_at = f.due AND t.lock_id = $5",
                )
                .bind(timers.iter().map(|f| f.workspace_id).collect::<Vec<_>>())
                .bind(timers.iter().map(|f| f.kind).collect::<Vec<_>>())
                .bind(timers.iter().map(|f| f.key).collect::<Vec<_>>())
                .bind(timers.iter().map(|f| f.due_at).collect::<Vec<_>>())
                .bind(token)
                .execute(self.pool()),
            )
            .map_err(backend)?
            .rows_affected())
    }

    fn fire_timers(&self, token: &str, fired: &[TimerFire]) -> Result<u64> {
        if fired.is_empty() {
            return Ok(0);
        }
        Ok(self
            .run(
                sqlx::query(
                    "DELETE FROM timers t USING unnest($1::text[], $2::text[], $3::text[], $4::bigint[])
                       AS f(w, k, key, due)
                     WHERE t.workspace_id = f.w AND t.kind = f.k AND t.key = f.key
                       AND t.due_at = f.due AND t.lock_id = $5",
                )
                .bind(fired.iter().map(|f| f.workspace_id).collect::<Vec<_>>())
                .bind(fired.iter().map(|f| f.kind).collect::<Vec<_>>())
                .bind(fired.iter().map(|f| f.key).collect::<Vec<_>>())
                .bind(fired.iter().map(|f| f.due_at).collect::<Vec<_>>())
                .bind(token)
                .execute(self.pool()),
            )
            .map_err(backend)?
            .rows_affected())
    }

    fn timer(&self, workspace: &str, kind: &str, key: &str) -> Result<Option<DurableTimer>> {
        let row = self
            .run(
                sqlx::query(&format!(
                    "SELECT {COLS} FROM timers WHERE workspace_id = $1 AND kind = $2 AND key = $3"
                ))
                .bind(workspace)
                .bind(kind)
                .bind(key)
                .fetch_optional(self.pool()),
            )
            .map_err(backend)?;
        row.as_ref().map(timer).transpose()
    }

    fn timer_count(&self, kind: &str) -> Result<u64> {
        let n: i64 = self
            .run(
                sqlx::query_scalar("SELECT count(*) FROM timers WHERE kind = $1")
                    .bind(kind)
                    .fetch_one(self.pool()),
            )
            .map_err(backend)?;
        Ok(n.max(0) as u64)
    }

    fn next_due(&self, kind: &str, buckets: Option<&[u16]>) -> Result<Option<Millis>> {
        self.run(
            sqlx::query_scalar(
                "SELECT min(due_at) FROM timers WHERE kind = $1
                   AND ($2::int[] IS NULL OR bucket = ANY($2))",
            )
            .bind(kind)
            .bind(bucket_list(buckets))
            .fetch_one(self.pool()),
        )
        .map_err(backend)
    }
}
