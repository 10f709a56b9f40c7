//! Message receipts and suppressed addresses, in the projections file beside the outbox.

use parcours_core::time::Millis;
use parcours_store::{Messages, Receipt, Result, Suppression};
use rusqlite::{params, OptionalExtension, Row};

use crate::{backend, SqliteStore};

const RECEIPT: &str = "workspace_id, key, kind, at, journey_id, step_id, channel, detail";
const SUPPRESSION: &str = "workspace_id, channel, address, reason, key, detail, at";

fn receipt(r: &Row<'_>) -> rusqlite::Result<Receipt> {
    Ok(Receipt {
        workspace_id: r.get(0)?,
        key: r.get(1)?,
        kind: r.get(2)?,
        at: r.get(3)?,
        journey_id: r.get(4)?,
        step_id: r.get(5)?,
        channel: r.get(6)?,
        detail: r.get(7)?,
    })
}

fn suppression(r: &Row<'_>) -> rusqlite::Result<Suppression> {
    Ok(Suppression {
        workspace_id: r.get(0)?,
        channel: r.get(1)?,
        address: r.get(2)?,
        reason: r.get(3)?,
        key: r.get(4)?,
        detail: r.get(5)?,
        at: r.get(6)?,
    })
}

impl Messages for SqliteStore {
    fn record_receipt(&self, r: &Receipt) -> Result<bool> {
        let n = self
            .projection_writer()
            .prepare_cached(&format!(
                "INSERT INTO message_receipts ({RECEIPT}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT DO NOTHING"
            ))
            .and_then(|mut st| {
                st.execute(params![
                    r.workspace_id,
                    r.key,
                    r.kind,
                    r.at,
                    r.journey_id,
                    r.step_id,
                    r.channel,
                    r.detail
                ])
            })
            .map_err(backend)?;
        Ok(n == 1)
    }

    fn receipts(&self, workspace: &str, key: &str) -> Result<Vec<Receipt>> {
        self.read_projections(|c| {
            let mut st = c
                .prepare_cached(&format!(
                    "SELECT {RECEIPT} FROM message_receipts WHERE workspace_id = ?1 AND key = ?2
                     ORDER BY at, kind"
                ))
                .map_err(backend)?;
            let rows = st
                .query_map(params![workspace, key], receipt)
                .map_err(backend)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(backend)?;
            Ok(rows)
        })
    }

    fn receipt_counts(&self, workspace: &str, journey: &str) -> Result<Vec<(String, String, u64)>> {
        self.read_projections(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT step_id, kind, COUNT(*) FROM message_receipts
                     WHERE workspace_id = ?1 AND journey_id = ?2 GROUP BY step_id, kind
                     ORDER BY step_id, kind",
                )
                .map_err(backend)?;
            let rows = st
                .query_map(params![workspace, journey], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))
                })
                .map_err(backend)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(backend)?;
            Ok(rows)
        })
    }

    fn suppress(&self, s: &Suppression) -> Result<bool> {
        let n = self
            .projection_writer()
            .execute(
                &format!(
                    "INSERT INTO suppressions ({SUPPRESSION}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT DO NOTHING"
                ),
                params![
                    s.workspace_id,
                    s.channel,
                    s.address,
                    s.reason,
                    s.key,
                    s.detail,
                    s.at
                ],
            )
            .map_err(backend)?;
        Ok(n == 1)
    }

    fn suppression(
        &self,
        workspace: &str,
        channel: &str,
        address: &str,
    ) -> Result<Option<Suppression>> {
        self.read_projections(|c| {
            c.prepare_cached(&format!(
                "SELECT {SUPPRESSION} FROM suppressions
                 WHERE workspace_id = ?1 AND channel = ?2 AND address = ?3"
            ))
            .and_then(|mut st| {
                st.query_row(params![workspace, channel, address], suppression)
                    .optional()
            })
            .map_err(backend)
        })
    }

    fn suppressions(
        &self,
        workspace: &str,
        after: Option<(Millis, &str, &str)>,
        limit: usize,
    ) -> Result<Vec<Suppression>> {
        let (at, channel, address) = after.unwrap_or((Millis::MAX, "\u{10ffff}", "\u{10ffff}"));
        self.read_projections(|c| {
            let mut st = c
                .prepare_cached(&format!(
                    "SELECT {SUPPRESSION} FROM suppressions INDEXED BY suppressions_recent
                     WHERE workspace_id = ?1 AND (at, channel, address) < (?2, ?3, ?4)
                     ORDER BY at DESC, channel DESC, address DESC LIMIT ?5"
                ))
                .map_err(backend)?;
            let rows = st
                .query_map(
                    params![workspace, at, channel, address, limit as i64],
                    suppression,
                )
                .map_err(backend)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(backend)?;
            Ok(rows)
        })
    }

    fn unsuppress(&self, workspace: &str, channel: &str, address: &str) -> Result<bool> {
        let n = self
            .projection_writer()
            .execute(
                "DELETE FROM suppressions WHERE workspace_id = ?1 AND channel = ?2 AND address = ?3",
                params![workspace, channel, address],
            )
            .map_err(backend)?;
        Ok(n == 1)
    }
}
