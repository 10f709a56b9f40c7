use parcours_core::time::Millis;
use parcours_store::{Cluster, Lease, NodeInfo, Result};
use sqlx::Row;

use crate::{backend, PgStore};

impl Cluster for PgStore {
    fn heartbeat(&self, n: &NodeInfo) -> Result<()> {
        self.run(
            sqlx::query(
                "INSERT INTO nodes (id, address, started_at, seen_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO UPDATE SET address = excluded.address, seen_at = excluded.seen_at",
            )
            .bind(&n.id)
            .bind(&n.address)
            .bind(n.started_at)
            .bind(n.seen_at)
            .execute(&self.pool),
        )
        .map_err(backend)?;
        Ok(())
    }

    fn nodes(&self, since: Millis) -> Result<Vec<NodeInfo>> {
        let rows = self
            .run(
                sqlx::query(
                    "SELECT id, address, started_at, seen_at FROM nodes WHERE seen_at >= $1 ORDER BY id",
                )
                .bind(since)
                .fetch_all(&self.pool),
            )
            .map_err(backend)?;
        rows.iter()
            .map(|r| {
                Ok(NodeInfo {
                    id: r.try_get(0).map_err(backend)?,
                    address: r.try_get(1).map_err(backend)?,
                    started_at: r.try_get(2).map_err(backend)?,
                    seen_at: r.try_get(3).map_err(backend)?,
                })
            })
            .collect()
    }

    fn remove_node(&self, node: &str) -> Result<()> {
        self.run(
            sqlx::query("DELETE FROM nodes WHERE id = $1")
                .bind(node)
                .execute(&self.pool),
        )
        .map_err(backend)?;
        Ok(())
    }

    fn leases(&self) -> Result<Vec<Lease>> {
        let rows = self
            .run(
                sqlx::query("SELECT bucket, node, lease_until FROM bucket_leases ORDER BY bucket")
                    .fetch_all(&self.pool),
            )
            .map_err(backend)?;
        rows.iter()
            .map(|r| {
                let bucket: i16 = r.try_get(0).map_err(backend)?;
                Ok(Lease {
                    bucket: bucket as u16,
                    node: r.try_get(1).map_err(backend)?,
                    until: r.try_get(2).map_err(backend)?,
                })
            })
            .collect()
    }

    fn balance_leases(
        &self,
        node: &str,
        target: usize,
        now: Millis,
        until: Millis,
    ) -> Result<Vec<u16>> {
        // Rows locked by a unify step (its fence) are skipped, never waited for: this node's
        // own are renewed on the next round, and nobody can take them meanwhile.
        self.run(async {
            let mut tx = self.pool.begin().await.map_err(backend)?;
            sqlx::query(
                "UPDATE bucket_leases SET lease_until = $2 WHERE bucket IN (
                     SELECT bucket FROM bucket_leases WHERE node = $1 FOR UPDATE SKIP LOCKED)",
            )
            .bind(node)
            .bind(until)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            sqlx::query(
                "UPDATE bucket_leases SET node = NULL, lease_until = 0 WHERE bucket IN (
                     SELECT bucket FROM bucket_leases WHERE node = $1 ORDER BY bucket DESC
                     LIMIT greatest(0, (SELECT count(*) FROM bucket_leases WHERE node = $1) - $2)
                     FOR UPDATE SKIP LOCKED)",
            )
            .bind(node)
            .bind(target as i64)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            sqlx::query(
                "UPDATE bucket_leases SET node = $1, lease_until = $3 WHERE bucket IN (
                     SELECT bucket FROM bucket_leases WHERE node IS NULL OR lease_until < $2 ORDER BY bucket
                     LIMIT greatest(0, $4 - (SELECT count(*) FROM bucket_leases WHERE node = $1))
                     FOR UPDATE SKIP LOCKED)",
            )
            .bind(node)
            .bind(now)
            .bind(until)
            .bind(target as i64)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            let held: Vec<i16> = sqlx::query_scalar(
                "SELECT bucket FROM bucket_leases WHERE node = $1 ORDER BY bucket",
            )
            .bind(node)
            .fetch_all(&mut *tx)
            .await
            .map_err(backend)?;
            tx.commit().await.map_err(backend)?;
            Ok(held.into_iter().map(|b| b as u16).collect())
        })
    }

    fn release_leases(&self, node: &str) -> Result<()> {
        self.run(
            sqlx::query("UPDATE bucket_leases SET node = NULL, lease_until = 0 WHERE node = $1")
                .bind(node)
                .execute(&self.pool),
        )
        .map_err(backend)?;
        Ok(())
    }
}
