//! The cluster port: nodes and their bucket leases.

use parcours_core::time::Millis;
use serde::Serialize;

use crate::*;

/// A node of a cluster, as it last reported itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeInfo {
    pub id: String,
    /// Where its HTTP API listens, for operators.
    pub address: String,
    pub started_at: Millis,
    pub seen_at: Millis,
}

/// Who owns a bucket, until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease {
    pub bucket: u16,
    pub node: Option<String>,
    pub until: Millis,
}

/// Nodes and bucket leases: how the nodes of a cluster share the work.
pub trait Cluster: Send + Sync {
    /// Records that a node is alive (inserts or refreshes it).
    fn heartbeat(&self, node: &NodeInfo) -> Result<()>;
    /// Nodes seen at or after `since`.
    fn nodes(&self, since: Millis) -> Result<Vec<NodeInfo>>;
    /// Forgets a node (it stopped cleanly).
    fn remove_node(&self, node: &str) -> Result<()>;
    fn leases(&self) -> Result<Vec<Lease>>;
    /// Renews this node's leases until `until`, gives back its highest buckets above `target`,
    /// and claims free or expired buckets (lease ended before `now`) up to `target`. A bucket
    /// that another node is working on (inside [`ProjectionTx::fence`]) is not claimed. Returns
    /// the buckets the node holds, in order.
    fn balance_leases(
        &self,
        node: &str,
        target: usize,
        now: Millis,
        until: Millis,
    ) -> Result<Vec<u16>>;
    /// Gives back every lease of a node.
    fn release_leases(&self, node: &str) -> Result<()>;
}
