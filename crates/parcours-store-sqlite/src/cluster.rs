//! Nodes and bucket leases. An embedded store has a single node, but it keeps the same
//! behaviour as PostgreSQL so the conformance suite holds on both.

use parcours_core::time::Millis;
use parcours_store::{Cluster, Lease, NodeInfo, Result};
use rusqlite::params;

use crate::{backend, SqliteStore};

impl Cluster for SqliteStore {
    fn heartbeat(&self, n: &NodeInfo) -> Result<()> {
        self.writer()
            .execute(
                "INSERT INTO nodes (id, address, started_at, seen_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO UPDATE SET address = excluded.address, seen_at = excluded.seen_at",
                params![n.id, n.address, n.started_at, n.seen_at],
            )
            .map_err(backend)?;
        Ok(())
    }

    fn nodes(&self, since: Millis) -> Result<Vec<NodeInfo>> {
        self.read(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT id, address, started_at, seen_at FROM nodes WHERE seen_at >= ?1 ORDER BY id",
                )
                .map_err(backend)?;
            let rows = st
                .query_map([since], |r| {
                    Ok(NodeInfo {
                        id: r.get(0)?,
                        address: r.get(1)?,
                        started_at: r.get(2)?,
                        seen_at: r.get(3)?,
                    })
                })
                .map_err(backend)?;
            rows.collect::<rusqlite::Result<_>>().map_err(backend)
        })
    }

    fn remove_node(&self, node: &str) -> Result<()> {
        self.writer()
            .execute("DELETE FROM nodes WHERE id = ?1", [node])
            .map_err(backend)?;
        Ok(())
    }

    fn leases(&self) -> Result<Vec<Lease>> {
        self.read(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT bucket, node, lease_until FROM bucket_leases ORDER BY bucket",
                )
                .map_err(backend)?;
            let rows = st
                .query_map([], |r| {
                    Ok(Lease {
                        bucket: r.get(0)?,
                        node: r.get(1)?,
                        until: r.get(2)?,
                    })
                })
                .map_err(backend)?;
            rows.collect::<rusqlite::Result<_>>().map_err(backend)
        })
    }

    fn balance_leases(
        &self,
        node: &str,
        target: usize,
        now: Millis,
        until: Millis,
    ) -> Result<Vec<u16>> {
        let mut conn = self.writer();
        let tx = conn.transaction().map_err(backend)?;
        tx.execute(
            "UPDATE bucket_leases SET lease_until = ?2 WHERE node = ?1",
            params![node, until],
        )
        .map_err(backend)?;
        tx.execute(
            "UPDATE bucket_leases SET node = NULL, lease_until = 0 WHERE bucket IN (
                 SELECT bucket FROM bucket_leases WHERE node = ?1 ORDER BY bucket DESC
                 LIMIT max(0, (SELECT count(*) FROM bucket_leases WHERE node = ?1) - ?2))",
            params![node, target as i64],
        )
        .map_err(backend)?;
        tx.execute(
            "UPDATE bucket_leases SET node = ?1, lease_until = ?3 WHERE bucket IN (
                 SELECT bucket FROM bucket_leases WHERE node IS NULL OR lease_until < ?2 ORDER BY bucket
                 LIMIT max(0, ?4 - (SELECT count(*) FROM bucket_leases WHERE node = ?1)))",
            params![node, now, until, target as i64],
        )
        .map_err(backend)?;
        let held = {
            let mut st = tx
                .prepare_cached("SELECT bucket FROM bucket_leases WHERE node = ?1 ORDER BY bucket")
                .map_err(backend)?;
            let rows = st.query_map([node], |r| r.get(0)).map_err(backend)?;
            rows.collect::<rusqlite::Result<Vec<u16>>>()
                .map_err(backend)?
        };
        tx.commit().map_err(backend)?;
        Ok(held)
    }

    fn release_leases(&self, node: &str) -> Result<()> {
        self.writer()
            .execute(
                "UPDATE bucket_leases SET node = NULL, lease_until = 0 WHERE node = ?1",
                [node],
            )
            .map_err(backend)?;
        Ok(())
    }
}
