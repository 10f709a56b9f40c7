//! Bucket ownership: each node of a cluster heartbeats, and balances bucket leases so that
//! every live node holds its share of the buckets. A node that stops heartbeating loses its
//! leases when they run out, and the others claim its buckets.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use parcours_core::bucket::BUCKETS;
use parcours_core::time::{Clock, Millis};
use parcours_store::{NodeInfo, Store};

/// How a node takes part in a cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Unique among the nodes sharing a database.
    pub node_id: String,
    /// Where this node's HTTP API listens (shown to operators).
    pub address: String,
    /// A dead node's buckets are taken over at most this long after its last heartbeat.
    pub lease_timeout: Duration,
}

impl ClusterConfig {
    /// How often a node heartbeats and balances its leases.
    pub fn poll(&self) -> Duration {
        self.lease_timeout / 10
    }

    /// How long a lease lasts after each renewal: the timeout less two polls, so that a peer
    /// polling every [`poll`](Self::poll) (plus the time a round takes) claims a dead node's
    /// bucket within the timeout.
    pub fn lease_ttl(&self) -> Duration {
        self.lease_timeout - 2 * self.poll()
    }
}

/// The buckets this node holds, as last balanced.
pub struct Ownership {
    node: String,
    held: Mutex<Vec<u16>>,
}

impl Ownership {
    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn held(&self) -> Vec<u16> {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, buckets: Vec<u16>) {
        *self.held.lock().unwrap_or_else(|e| e.into_inner()) = buckets;
    }
}

/// Every live node's fair share of the buckets.
pub fn fair_share(live_nodes: usize) -> usize {
    usize::from(BUCKETS).div_ceil(live_nodes.max(1))
}

/// One round: heartbeat, count the live nodes, balance this node's leases.
pub fn balance(
    store: &dyn Store,
    config: &ClusterConfig,
    started_at: Millis,
    now: Millis,
) -> parcours_store::Result<Vec<u16>> {
    let ttl = config.lease_ttl().as_millis() as Millis;
    store.heartbeat(&NodeInfo {
        id: config.node_id.clone(),
        address: config.address.clone(),
        started_at,
        seen_at: now,
    })?;
    let live = store.nodes(now - ttl)?.len();
    store.balance_leases(&config.node_id, fair_share(live), now, now + ttl)
}

pub(crate) fn start(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: ClusterConfig,
    stop: Arc<AtomicBool>,
) -> (Arc<Ownership>, JoinHandle<()>) {
    let ownership = Arc::new(Ownership {
        node: config.node_id.clone(),
        held: Mutex::new(Vec::new()),
    });
    let own = ownership.clone();
    let handle = std::thread::Builder::new()
        .name("parcours-leases".into())
        .spawn(move || {
            let started_at = clock.now();
            while !stop.load(Ordering::SeqCst) {
                match balance(store.as_ref(), &config, started_at, clock.now()) {
                    Ok(held) => {
                        metrics::gauge!("parcours_buckets_held").set(held.len() as f64);
                        own.set(held);
                    }
                    Err(e) => {
                        // Without a database the leases run out on their own; keep working
                        // on nothing rather than on buckets another node may now hold.
                        tracing::warn!(error = %e, "cannot renew bucket leases");
                    }
                }
                std::thread::sleep(config.poll());
            }
            own.set(Vec::new());
            if let Err(e) = store
                .release_leases(&config.node_id)
                .and_then(|()| store.remove_node(&config.node_id))
            {
                tracing::warn!(error = %e, "cannot give back bucket leases; they will run out");
            }
        })
        .expect("spawn the lease keeper");
    (ownership, handle)
}
