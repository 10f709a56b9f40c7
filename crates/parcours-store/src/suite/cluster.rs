//! Conformance of the cluster port: nodes and bucket leases.

use super::*;

pub fn fence_admits_only_the_lease_holder(store: &dyn Store) {
    let held = store.balance_leases("n1", 2, T0, T0 + 10_000).unwrap();
    assert_eq!(held, vec![0, 1]);
    store
        .transact(&mut |tx| tx.fence("n1", &[0, 1], T0 + 5_000))
        .unwrap();
    let wrong_node = store.transact(&mut |tx| tx.fence("n2", &[0], T0 + 5_000));
    assert!(matches!(wrong_node, Err(StoreError::Conflict(_))));
    let not_held = store.transact(&mut |tx| tx.fence("n1", &[0, 2], T0 + 5_000));
    assert!(matches!(not_held, Err(StoreError::Conflict(_))));
    let expired = store.transact(&mut |tx| tx.fence("n1", &[0], T0 + 10_001));
    assert!(matches!(expired, Err(StoreError::Conflict(_))));
    // A fenced-off step writes nothing.
    let _ = store.transact(&mut |tx| {
        tx.advance_buckets(&[0], 10)?;
        tx.fence("n2", &[0], T0)
    });
    store
        .transact(&mut |tx| {
            assert_eq!(tx.bucket_cursors(&[0])?, vec![0]);
            Ok(())
        })
        .unwrap();
}

pub fn leases_balance_between_nodes_and_expire(store: &dyn Store) {
    let node = |id: &str, at: i64| NodeInfo {
        id: id.into(),
        address: format!("{id}:8750"),
        started_at: T0,
        seen_at: at,
    };
    store.heartbeat(&node("n1", T0)).unwrap();
    store.heartbeat(&node("n2", T0 + 1)).unwrap();
    store.heartbeat(&node("n1", T0 + 2)).unwrap();
    let live = store.nodes(T0 + 1).unwrap();
    assert_eq!(live.len(), 2);
    assert_eq!(live[0].seen_at, T0 + 2, "a heartbeat refreshes the node");
    assert_eq!(store.nodes(T0 + 2).unwrap().len(), 1);

    let until = T0 + 10_000;
    let n1 = store.balance_leases("n1", 256, T0, until).unwrap();
    assert_eq!(n1.len(), 256, "a lone node takes every bucket");
    assert!(store
        .balance_leases("n2", 128, T0, until)
        .unwrap()
        .is_empty());
    let n1 = store.balance_leases("n1", 128, T0, until).unwrap();
    assert_eq!(
        n1,
        (0..128).collect::<Vec<u16>>(),
        "gives back its highest buckets"
    );
    let n2 = store.balance_leases("n2", 128, T0, until).unwrap();
    assert_eq!(n2, (128..256).collect::<Vec<u16>>());
    // n1 keeps renewing, n2 stops: only n2's buckets run out.
    let n1 = store
        .balance_leases("n1", 256, T0 + 9_000, T0 + 19_000)
        .unwrap();
    assert_eq!(n1.len(), 128, "nothing is free before the leases end");
    let n1 = store
        .balance_leases("n1", 256, T0 + 10_001, T0 + 20_000)
        .unwrap();
    assert_eq!(n1.len(), 256, "expired leases are claimed");
    let leases = store.leases().unwrap();
    assert_eq!(leases.len(), 256);
    assert!(leases
        .iter()
        .all(|l| l.node.as_deref() == Some("n1") && l.until == T0 + 20_000));
    store.release_leases("n1").unwrap();
    assert!(store.leases().unwrap().iter().all(|l| l.node.is_none()));
    store.remove_node("n1").unwrap();
    assert_eq!(store.nodes(0).unwrap().len(), 1);
}
