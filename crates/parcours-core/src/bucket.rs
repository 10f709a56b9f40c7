//! Buckets: how work is split between the nodes of a cluster.
//!
//! Every event belongs to one of [`BUCKETS`] buckets, chosen by a stable hash of its workspace
//! and its customer key (the `userId`, or the `anonymousId` when there is none). One node at a
//! time owns a bucket and applies its events in log order, so the events of one customer are
//! never applied by two nodes at once nor out of order.

/// How many buckets the log is split into. Fixed: it is part of how stored events are
/// addressed, so changing it would need every event's bucket recomputed.
pub const BUCKETS: u16 = 256;

/// Every bucket, in order.
pub fn all() -> Vec<u16> {
    (0..BUCKETS).collect()
}

/// The bucket of a customer's events: FNV-1a over the workspace and the customer key, so it
/// is the same on every node, every platform and every version.
pub fn of(workspace: &str, user_id: Option<&str>, anonymous_id: Option<&str>) -> u16 {
    let key = user_id.or(anonymous_id).unwrap_or("");
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in workspace
        .bytes()
        .chain(std::iter::once(0))
        .chain(key.bytes())
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % u64::from(BUCKETS)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_id_decides_and_the_anonymous_id_stands_in() {
        let with_user = of("ws", Some("u1"), Some("a1"));
        assert_eq!(with_user, of("ws", Some("u1"), None));
        assert_eq!(of("ws", None, Some("a1")), of("ws", Some("a1"), None));
        assert!(with_user < BUCKETS);
    }

    #[test]
    fn buckets_are_stable_and_spread() {
        // Pinned values: a bucket must never change between versions.
        let pinned: Vec<u16> = ["a", "b", "c"]
            .iter()
            .map(|k| of("w", Some(k), None))
            .collect();
        assert_eq!(pinned, PINNED.to_vec());
        let mut seen = std::collections::HashSet::new();
        for i in 0..10_000 {
            seen.insert(of("ws", Some(&format!("customer-{i}")), None));
        }
        assert_eq!(seen.len(), usize::from(BUCKETS));
        // The workspace is part of the key.
        let differ = (0..100)
            .filter(|i| {
                let k = format!("c{i}");
                of("ws1", Some(&k), None) != of("ws2", Some(&k), None)
            })
            .count();
        assert!(differ > 90, "{differ}");
    }

    const PINNED: [u16; 3] = [217, 192, 115];
}
