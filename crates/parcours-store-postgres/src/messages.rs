//! Message receipts and suppressed addresses.

use parcours_core::time::Millis;
use parcours_store::{Messages, Receipt, Result, Suppression};
use sqlx::postgres::PgRow;
use sqlx::Row;

use crate::{backend, PgStore};

const RECEIPT: &str = "workspace_id, key, kind, at, journey_id, step_id, channel, detail";
const SUPPRESSION: &str = "workspace_id, channel, address, reason, key, detail, at";

fn receipt(r: &PgRow) -> Result<Receipt> {
    Ok(Receipt {
        workspace_id: r.try_get(0).map_err(backend)?,
        key: r.try_get(1).map_err(backend)?,
        kind: r.try_get(2).map_err(backend)?,
        at: r.try_get(3).map_err(backend)?,
        journey_id: r.try_get(4).map_err(backend)?,
        step_id: r.try_get(5).map_err(backend)?,
        channel: r.try_get(6).map_err(backend)?,
        detail: r.try_get(7).map_err(backend)?,
    })
}

fn suppression(r: &PgRow) -> Result<Suppression> {
    Ok(Suppression {
        workspace_id: r.try_get(0).map_err(backend)?,
        channel: r.try_get(1).map_err(backend)?,
        address: r.try_get(2).map_err(backend)?,
        reason: r.try_get(3).map_err(backend)?,
        key: r.try_get(4).map_err(backend)?,
        detail: r.try_get(5).map_err(backend)?,
        at: r.try_get(6).map_err(backend)?,
    })
}

impl Messages for PgStore {
    fn record_receipt(&self, r: &Receipt) -> Result<bool> {
        let done = self
            .run(
                sqlx::query(&format!(
                    "INSERT INTO message_receipts ({RECEIPT}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT DO NOTHING"
                ))
                .bind(&r.workspace_id)
                .bind(&r.key)
                .bind(&r.kind)
                .bind(r.at)
                .bind(&r.journey_id)
                .bind(&r.step_id)
                .bind(&r.channel)
                .bind(&r.detail)
                .execute(self.pool()),
            )
            .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    fn receipts(&self, workspace: &str, key: &str) -> Result<Vec<Receipt>> {
        let rows = self
            .run(
                sqlx::query(&format!(
                    "SELECT {RECEIPT} FROM message_receipts WHERE workspace_id = $1 AND key = $2
                     ORDER BY at, kind"
                ))
                .bind(workspace)
                .bind(key)
                .fetch_all(self.pool()),
            )
            .map_err(backend)?;
        rows.iter().map(receipt).collect()
    }

    fn receipt_counts(&self, workspace: &str, journey: &str) -> Result<Vec<(String, String, u64)>> {
        let rows = self
            .run(
                sqlx::query(
                    "SELECT step_id, kind, COUNT(*) FROM message_receipts
                     WHERE workspace_id = $1 AND journey_id = $2 GROUP BY step_id, kind
                     ORDER BY step_id, kind",
                )
                .bind(workspace)
                .bind(journey)
                .fetch_all(self.pool()),
            )
            .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get(0).map_err(backend)?,
                    r.try_get(1).map_err(backend)?,
                    r.try_get::<i64, _>(2).map_err(backend)? as u64,
                ))
            })
            .collect()
    }

    fn suppress(&self, s: &Suppression) -> Result<bool> {
        let done = self
            .run(
                sqlx::query(&format!(
                    "INSERT INTO suppressions ({SUPPRESSION}) VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT DO NOTHING"
                ))
                .bind(&s.workspace_id)
                .bind(&s.channel)
                .bind(&s.address)
                .bind(&s.reason)
                .bind(&s.key)
                .bind(&s.detail)
                .bind(s.at)
                .execute(self.pool()),
            )
            .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    fn suppression(
        &self,
        workspace: &str,
        channel: &str,
        address: &str,
    ) -> Result<Option<Suppression>> {
        let row = self
            .run(
                sqlx::query(&format!(
                    "SELECT {SUPPRESSION} FROM suppressions
                     WHERE workspace_id = $1 AND channel = $2 AND address = $3"
                ))
                .bind(workspace)
                .bind(channel)
                .bind(address)
                .fetch_optional(self.pool()),
            )
            .map_err(backend)?;
        row.as_ref().map(suppression).transpose()
    }

    fn suppressions(
        &self,
        workspace: &str,
        after: Option<(Millis, &str, &str)>,
        limit: usize,
    ) -> Result<Vec<Suppression>> {
        let (at, channel, address) = after.unwrap_or((Millis::MAX, "\u{10ffff}", "\u{10ffff}"));
        let rows = self
            .run(
                sqlx::query(&format!(
                    "SELECT {SUPPRESSION} FROM suppressions
                     WHERE workspace_id = $1 AND (at, channel, address) < ($2, $3, $4)
                     ORDER BY at DESC, channel DESC, address DESC LIMIT $5"
                ))
                .bind(workspace)
                .bind(at)
                .bind(channel)
                .bind(address)
                .bind(limit.min(i64::MAX as usize) as i64)
                .fetch_all(self.pool()),
            )
            .map_err(backend)?;
        rows.iter().map(suppression).collect()
    }

    fn unsuppress(&self, workspace: &str, channel: &str, address: &str) -> Result<bool> {
        let done = self
            .run(
                sqlx::query(
                    "DELETE FROM suppressions WHERE workspace_id = $1 AND channel = $2 AND address = $3",
                )
                .bind(workspace)
                .bind(channel)
                .bind(address)
                .execute(self.pool()),
            )
            .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }
}
