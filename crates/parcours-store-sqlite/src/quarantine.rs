//! The quarantine: events that broke the spec or that a processor set aside, in the event
//! log file.

use parcours_core::spec::{EventType, Violation};
use parcours_core::time::Millis;
use parcours_store::{
    AppendOutcome, IngestBatch, Quarantine, QuarantineEntry, QuarantineStatus, Result, StoreError,
    StoredEvent,
};
use rusqlite::{params, OptionalExtension, Row};

use crate::event_log::append_in;
use crate::{backend, SqliteStore};

const QUARANTINE_COLS: &str =
    "id, workspace_id, source_id, received_at, code, reason, message_id, body, status, resolved_at,
     occurrences, coalesce(last_seen, received_at), sources, path_type, seq";

fn quarantine_row(r: &Row<'_>) -> rusqlite::Result<QuarantineEntry> {
    let status: String = r.get(8)?;
    let sources: String = r.get(12)?;
    let path_type: Option<String> = r.get(13)?;
    Ok(QuarantineEntry {
        id: r.get(0)?,
        workspace_id: r.get(1)?,
        source_id: r.get(2)?,
        received_at: r.get(3)?,
        code: r.get(4)?,
        reason: r.get(5)?,
        message_id: r.get(6)?,
        body: r.get(7)?,
        status: QuarantineStatus::parse(&status).unwrap_or(QuarantineStatus::Pending),
        resolved_at: r.get(9)?,
        occurrences: r.get::<_, i64>(10)?.max(0) as u64,
        last_seen: r.get(11)?,
        sources: serde_json::from_str(&sources).unwrap_or_default(),
        path_type: path_type.as_deref().and_then(EventType::parse),
        seq: r.get(14)?,
    })
}

impl Quarantine for SqliteStore {
    fn quarantined(
        &self,
        workspace: &str,
        status: Option<QuarantineStatus>,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<QuarantineEntry>> {
        self.read(|c| {
            let mut st = c
                .prepare_cached(&format!(
                    "SELECT {QUARANTINE_COLS} FROM quarantine
                     WHERE workspace_id = ?1 AND (?2 IS NULL OR status = ?2) AND id > ?3 ORDER BY id LIMIT ?4"
                ))
                .map_err(backend)?;
            let rows = st
                .query_map(params![workspace, status.map(|s| s.as_str()), after_id, limit as i64], quarantine_row)
                .map_err(backend)?;
            rows.collect::<rusqlite::Result<_>>().map_err(backend)
        })
    }

    fn quarantine_entry(&self, workspace: &str, id: i64) -> Result<Option<QuarantineEntry>> {
        self.read(|c| {
            c.query_row(
                &format!(
                    "SELECT {QUARANTINE_COLS} FROM quarantine WHERE workspace_id = ?1 AND id = ?2"
                ),
                params![workspace, id],
                quarantine_row,
            )
            .optional()
            .map_err(backend)
        })
    }

    fn set_aside(
        &self,
        e: &StoredEvent,
        violation: Violation,
        detail: &str,
        at: Millis,
    ) -> Result<bool> {
        let n = self
            .writer()
            .execute(
                "INSERT INTO quarantine (workspace_id, source_id, received_at, code, reason, message_id, body,
                                         fingerprint, last_seen, sources, path_type, seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?11, json_array(?2), ?9, ?10)
                 ON CONFLICT (workspace_id, fingerprint) DO NOTHING",
                params![
                    e.workspace_id,
                    e.source_id,
                    // When it arrived (a replay reads it as of then); set aside at `at`.
                    e.received_at,
                    violation.code(),
                    parcours_store::quarantine_reason(violation, Some(detail)),
                    e.message_id,
                    e.body,
                    parcours_store::set_aside_fingerprint(e.seq),
                    e.kind.as_str(),
                    e.seq,
                    at,
                ],
            )
            .map_err(backend)?;
        Ok(n > 0)
    }

    fn resolve_quarantined(
        &self,
        workspace: &str,
        id: i64,
        replacement: Option<&IngestBatch>,
        at: Millis,
    ) -> Result<Option<AppendOutcome>> {
        let mut conn = self.writer();
        let tx = conn.transaction().map_err(backend)?;
        let set_aside: bool = tx
            .query_row(
                "SELECT seq IS NOT NULL FROM quarantine WHERE workspace_id = ?1 AND id = ?2",
                params![workspace, id],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)?
            .unwrap_or(false);
        let status = if replacement.is_some() {
            QuarantineStatus::Replayed
        } else {
            QuarantineStatus::Discarded
        };
        let n = tx
            .execute(
                "UPDATE quarantine SET status = ?3, resolved_at = ?4
                 WHERE workspace_id = ?1 AND id = ?2 AND status = 'pending'",
                params![workspace, id, status.as_str(), at],
            )
            .map_err(backend)?;
        if n == 0 {
            let exists: bool = tx
                .query_row(
                    "SELECT count(*) FROM quarantine WHERE workspace_id = ?1 AND id = ?2",
                    params![workspace, id],
                    |r| r.get::<_, i64>(0),
                )
                .map_err(backend)?
                > 0;
            return Err(if exists {
                StoreError::Conflict(format!("quarantined event {id} was already resolved"))
            } else {
                StoreError::NotFound(format!("quarantined event {id}"))
            });
        }
        let outcome = replacement
            .map(|b| append_in(&tx, b, parcours_store::replacement_dedup_since(set_aside)))
            .transpose()?;
        tx.commit().map_err(backend)?;
        Ok(outcome)
    }
}
