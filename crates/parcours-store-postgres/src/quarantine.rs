//! The quarantine: events that broke the spec or that a processor set aside.

use parcours_core::spec::{EventType, Violation};
use parcours_core::time::Millis;
use parcours_store::{
    AppendOutcome, IngestBatch, Quarantine, QuarantineEntry, QuarantineStatus, Result, StoreError,
    StoredEvent,
};
use sqlx::postgres::PgRow;
use sqlx::Row;

use crate::event_log::append_in;
use crate::{backend, PgStore};

const QUARANTINE_COLS: &str =
    "id, workspace_id, source_id, received_at, code, reason, message_id, body, status, resolved_at,
     occurrences, coalesce(last_seen, received_at), sources, path_type, seq";

fn to_entry(r: &PgRow) -> Result<QuarantineEntry> {
    let status: String = r.try_get(8).map_err(backend)?;
    let occurrences: i64 = r.try_get(10).map_err(backend)?;
    let path_type: Option<String> = r.try_get(13).map_err(backend)?;
    Ok(QuarantineEntry {
        occurrences: occurrences.max(0) as u64,
        last_seen: r.try_get(11).map_err(backend)?,
        sources: r.try_get(12).map_err(backend)?,
        path_type: path_type.as_deref().and_then(EventType::parse),
        seq: r.try_get(14).map_err(backend)?,
        id: r.try_get(0).map_err(backend)?,
        workspace_id: r.try_get(1).map_err(backend)?,
        source_id: r.try_get(2).map_err(backend)?,
        received_at: r.try_get(3).map_err(backend)?,
        code: r.try_get(4).map_err(backend)?,
        reason: r.try_get(5).map_err(backend)?,
        message_id: r.try_get(6).map_err(backend)?,
        body: r.try_get(7).map_err(backend)?,
        status: QuarantineStatus::parse(&status).unwrap_or(QuarantineStatus::Pending),
        resolved_at: r.try_get(9).map_err(backend)?,
    })
}

impl Quarantine for PgStore {
    fn quarantined(
        &self,
        workspace: &str,
        status: Option<QuarantineStatus>,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<QuarantineEntry>> {
        let rows = self
            .run(
                sqlx::query(sql!(
                    "SELECT {QUARANTINE_COLS} FROM quarantine
                     WHERE workspace_id = $1 AND ($2::text IS NULL OR status = $2) AND id > $3 ORDER BY id LIMIT $4"
                ))
                .bind(workspace)
                .bind(status.map(|s| s.as_str()))
                .bind(after_id)
                .bind(limit as i64)
                .fetch_all(&self.pool),
            )
            .map_err(backend)?;
        rows.iter().map(to_entry).collect()
    }

    fn quarantine_entry(&self, workspace: &str, id: i64) -> Result<Option<QuarantineEntry>> {
        let row = self
            .run(
                sqlx::query(sql!(
                    "SELECT {QUARANTINE_COLS} FROM quarantine WHERE workspace_id = $1 AND id = $2"
                ))
                .bind(workspace)
                .bind(id)
                .fetch_optional(&self.pool),
            )
            .map_err(backend)?;
        row.as_ref().map(to_entry).transpose()
    }

    fn set_aside(
        &self,
        e: &StoredEvent,
        violation: Violation,
        detail: &str,
        at: Millis,
    ) -> Result<bool> {
        let done = self
            .run(
                sqlx::query(
                    "INSERT INTO quarantine (workspace_id, source_id, received_at, code, reason, message_id, body,
                                             fingerprint, last_seen, sources, path_type, seq)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $11, ARRAY[$2], $9, $10)
                     ON CONFLICT (workspace_id, fingerprint) DO NOTHING",
                )
                .bind(&e.workspace_id)
                .bind(&e.source_id)
                // When it arrived (a replay reads it as of then); set aside at `at`.
                .bind(e.received_at)
                .bind(violation.code())
                .bind(parcours_store::quarantine_reason(violation, Some(detail)))
                .bind(&e.message_id)
                .bind(&e.body)
                .bind(parcours_store::set_aside_fingerprint(e.seq))
                .bind(e.kind.as_str())
                .bind(e.seq)
                .bind(at)
                .execute(&self.pool),
            )
            .map_err(backend)?;
        Ok(done.rows_affected() > 0)
    }

    fn resolve_quarantined(
        &self,
        workspace: &str,
        id: i64,
        replacement: Option<&IngestBatch>,
        at: Millis,
    ) -> Result<Option<AppendOutcome>> {
        let status = if replacement.is_some() {
            QuarantineStatus::Replayed
        } else {
            QuarantineStatus::Discarded
        };
        self.run(async {
            let mut tx = self.pool.begin().await.map_err(backend)?;
            let done = sqlx::query(
                "UPDATE quarantine SET status = $3, resolved_at = $4
                 WHERE workspace_id = $1 AND id = $2 AND status = 'pending'",
            )
            .bind(workspace)
            .bind(id)
            .bind(status.as_str())
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            if done.rows_affected() == 0 {
                let exists: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM quarantine WHERE workspace_id = $1 AND id = $2",
                )
                .bind(workspace)
                .bind(id)
                .fetch_one(&mut *tx)
                .await
                .map_err(backend)?;
                return Err(if exists > 0 {
                    StoreError::Conflict(format!("quarantined event {id} was already resolved"))
                } else {
                    StoreError::NotFound(format!("quarantined event {id}"))
                });
            }
            let set_aside: bool = sqlx::query_scalar(
                "SELECT seq IS NOT NULL FROM quarantine WHERE workspace_id = $1 AND id = $2",
            )
            .bind(workspace)
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
            let since = parcours_store::replacement_dedup_since(set_aside);
            let outcome = match replacement {
                Some(b) => Some(append_in(&mut tx, &[b], since).await?.remove(0)),
                None => None,
            };
            tx.commit().await.map_err(backend)?;
            Ok(outcome)
        })
    }
}
