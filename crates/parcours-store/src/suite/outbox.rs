//! Conformance of the outbox port: claims, fencing, retries, the dead letter, the janitor.

use super::{setup, T0};
use crate::*;

fn row(ws: &str, lane: &str, key: &str) -> NewOutboxRow {
    NewOutboxRow {
        workspace_id: ws.into(),
        destination: lane.into(),
        key: key.into(),
        payload: format!(r#"{{"key":"{key}"}}"#),
        items: 2,
        not_before: T0,
        created_at: T0,
    }
}

fn claim<'a>(lane: &'a str, token: &'a str, now: i64, max: usize) -> OutboxClaim<'a> {
    OutboxClaim {
        workspace_id: "ws_a",
        destination: lane,
        max_in_flight: max,
        now,
        lease_until: now + 1_000,
        token,
    }
}

fn attempt(id: i64, attempt: u32, at: i64, ok: bool) -> DeliveryAttempt {
    DeliveryAttempt {
        outbox_id: id,
        attempt,
        at,
        latency_ms: 12,
        status: Some(if ok { 200 } else { 503 }),
        ok,
        detail: if ok {
            "accepted".into()
        } else {
            "HTTP 503: busy".into()
        },
    }
}

fn ids(rows: &[OutboxRow]) -> Vec<i64> {
    rows.iter().map(|r| r.id).collect()
}

pub fn outbox_claims_in_order_and_fences_stale_senders(store: &dyn Store) {
    setup(store, &["ws_a"]);
    store
        .enqueue(&[
            row("ws_a", "webhook:a", "k1"),
            row("ws_a", "webhook:a", "k2"),
        ])
        .unwrap();
    // A key is used once: the second decision rolls back, whatever else it wrote.
    assert!(matches!(
        store.enqueue(&[
            row("ws_a", "webhook:a", "k3"),
            row("ws_a", "webhook:b", "k1")
        ]),
        Err(StoreError::Conflict(_))
    ));
    let all = store
        .outbox_rows(&OutboxPage {
            workspace_id: "ws_a",
            destination: "webhook:a",
            state: None,
            before_id: None,
            limit: 10,
        })
        .unwrap();
    assert_eq!(all.len(), 2, "k3 was not written");
    // Found by its key, in its workspace only.
    let k2 = store.outbox_row_by_key("ws_a", "k2").unwrap().unwrap();
    assert_eq!(
        (k2.key.as_str(), k2.destination.as_str()),
        ("k2", "webhook:a")
    );
    assert_eq!(store.outbox_row_by_key("ws_a", "k3").unwrap(), None);
    assert_eq!(store.outbox_row_by_key("ws_b", "k2").unwrap(), None);
    let (first, second) = (all[1].id, all[0].id);
    assert!(first < second, "newest first");
    // One in flight: the oldest row, with its payload as written.
    let got = store.claim(&claim("webhook:a", "t1", T0, 1)).unwrap();
    assert_eq!(ids(&got), vec![first]);
    assert_eq!(got[0].payload, r#"{"key":"k1"}"#);
    assert_eq!((got[0].state, got[0].attempts), (OutboxState::Leased, 1));
    // Another sender finds the lane busy.
    assert!(store
        .claim(&claim("webhook:a", "t2", T0, 1))
        .unwrap()
        .is_empty());
    // The lease ends: another sender takes the row over, and the first is fenced out.
    let got = store
        .claim(&claim("webhook:a", "t2", T0 + 1_000, 1))
        .unwrap();
    assert_eq!((ids(&got), got[0].attempts), (vec![first], 2));
    for refused in [
        store.complete(first, "t1", &attempt(first, 1, T0 + 1_001, true)),
        store.fail(first, "t1", &attempt(first, 1, T0 + 1_001, false), Some(T0)),
        store.extend_lease(first, "t1", T0 + 5_000),
    ] {
        assert!(
            matches!(refused, Err(StoreError::Conflict(_))),
            "{refused:?}"
        );
    }
    assert!(store.delivery_attempts("ws_a", first).unwrap().is_empty());
    store.extend_lease(first, "t2", T0 + 9_000).unwrap();
    assert!(store
        .claim(&claim("webhook:a", "t3", T0 + 5_000, 1))
        .unwrap()
        .is_empty());
    store
        .complete(first, "t2", &attempt(first, 2, T0 + 5_001, true))
        .unwrap();
    // Settled once: a second settle is refused.
    assert!(matches!(
        store.complete(first, "t2", &attempt(first, 2, T0 + 5_002, true)),
        Err(StoreError::Conflict(_))
    ));
    let done = store.outbox_row("ws_a", first).unwrap().unwrap();
    assert_eq!(
        (done.state, done.settled_at),
        (OutboxState::Done, Some(T0 + 5_001))
    );
    assert!(
        store.outbox_row("ws_b", first).unwrap().is_none(),
        "other workspace"
    );
    // A claimed row that was not sent goes back at once, its claim not counted; only once.
    store.enqueue(&[row("ws_a", "webhook:a", "k5")]).unwrap();
    let got = store
        .claim(&claim("webhook:a", "t5", T0 + 5_500, 1))
        .unwrap();
    assert_eq!((got[0].id, got[0].attempts), (second, 1));
    assert!(matches!(
        store.release(second, "t4"),
        Err(StoreError::Conflict(_))
    ));
    store.release(second, "t5").unwrap();
    assert!(matches!(
        store.release(second, "t5"),
        Err(StoreError::Conflict(_))
    ));
    let back = store.outbox_row("ws_a", second).unwrap().unwrap();
    assert_eq!((back.state, back.attempts), (OutboxState::Pending, 0));
    // Two in flight take the rest at once.
    store.enqueue(&[row("ws_a", "webhook:a", "k4")]).unwrap();
    let got = store
        .claim(&claim("webhook:a", "t4", T0 + 6_000, 2))
        .unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].id, second);
    assert!(got[1].id > second);
}

pub fn outbox_retries_then_dead_letters_and_requeues(store: &dyn Store) {
    setup(store, &["ws_a"]);
    store
        .enqueue(&[
            row("ws_a", "webhook:a", "k1"),
            row("ws_a", "webhook:a", "k2"),
        ])
        .unwrap();
    let first = store.claim(&claim("webhook:a", "t1", T0, 1)).unwrap()[0].id;
    store
        .fail(
            first,
            "t1",
            &attempt(first, 1, T0 + 10, false),
            Some(T0 + 500),
        )
        .unwrap();
    // Waiting for its retry, the row holds back the one behind it.
    assert!(store
        .claim(&claim("webhook:a", "t2", T0 + 100, 5))
        .unwrap()
        .is_empty());
    let s = store.outbox_summary("ws_a", "webhook:a").unwrap();
    assert_eq!((s.pending, s.leased, s.done, s.dead), (2, 0, 0, 0));
    assert_eq!(store.open_rows("ws_a", "webhook:a").unwrap(), 2);
    assert_eq!(store.open_rows("ws_a", "webhook:b").unwrap(), 0);
    let head = s.head.unwrap();
    assert_eq!(head.id, first);
    assert_eq!(head.last_error.as_deref(), Some("HTTP 503: busy"));
    assert_eq!((head.attempts, head.not_before), (1, T0 + 500));
    // Due again: retried; this time it is given up (dead, with its reason).
    let got = store.claim(&claim("webhook:a", "t3", T0 + 500, 1)).unwrap();
    assert_eq!((ids(&got), got[0].attempts), (vec![first], 2));
    store
        .fail(first, "t3", &attempt(first, 2, T0 + 510, false), None)
        .unwrap();
    let dead = store.outbox_row("ws_a", first).unwrap().unwrap();
    assert_eq!(dead.state, OutboxState::Dead);
    assert_eq!(dead.last_error.as_deref(), Some("HTTP 503: busy"));
    // The lane goes on behind it.
    let second = store.claim(&claim("webhook:a", "t4", T0 + 600, 1)).unwrap()[0].id;
    store
        .complete(second, "t4", &attempt(second, 1, T0 + 610, true))
        .unwrap();
    let log = store.delivery_attempts("ws_a", first).unwrap();
    assert_eq!(
        log.iter()
            .map(|a| (a.attempt, a.ok, a.status))
            .collect::<Vec<_>>(),
        vec![(1, false, Some(503)), (2, false, Some(503))]
    );
    let s = store.outbox_summary("ws_a", "webhook:a").unwrap();
    assert_eq!((s.pending, s.done, s.dead), (0, 1, 1));
    assert_eq!((s.delivered_items, s.last_success_at), (2, Some(T0 + 610)));
    assert!(s.head.is_none());
    let dead_only = store
        .outbox_rows(&OutboxPage {
            workspace_id: "ws_a",
            destination: "webhook:a",
            state: Some(OutboxState::Dead),
            before_id: None,
            limit: 10,
        })
        .unwrap();
    assert_eq!(ids(&dead_only), vec![first]);
    // Replay from the dead row: both go again, same keys and payloads, in order.
    assert_eq!(
        store.requeue("ws_a", "webhook:a", first, T0 + 700).unwrap(),
        2
    );
    assert_eq!(
        store.requeue("ws_a", "webhook:a", first, T0 + 700).unwrap(),
        0
    );
    let got = store.claim(&claim("webhook:a", "t5", T0 + 700, 2)).unwrap();
    assert_eq!(ids(&got), vec![first, second]);
    assert_eq!((got[0].key.as_str(), got[0].attempts), ("k1", 1));
}

pub fn outbox_janitor_reclaims_expired_leases(store: &dyn Store) {
    setup(store, &["ws_a"]);
    store
        .enqueue(&[
            row("ws_a", "webhook:a", "k1"),
            row("ws_a", "webhook:b", "k2"),
        ])
        .unwrap();
    let a = store.claim(&claim("webhook:a", "t1", T0, 1)).unwrap()[0].id;
    let b = store.claim(&claim("webhook:b", "t2", T0 + 500, 1)).unwrap()[0].id;
    // a's lease ended at T0 + 1000, b's runs until T0 + 1500.
    assert_eq!(store.reclaim_expired(T0 + 999).unwrap(), 0);
    assert_eq!(store.reclaim_expired(T0 + 1_000).unwrap(), 1);
    assert_eq!(
        store.outbox_row("ws_a", a).unwrap().unwrap().state,
        OutboxState::Pending
    );
    assert_eq!(
        store.outbox_row("ws_a", b).unwrap().unwrap().state,
        OutboxState::Leased
    );
    assert!(matches!(
        store.complete(a, "t1", &attempt(a, 1, T0 + 1_001, true)),
        Err(StoreError::Conflict(_))
    ));
    // Deleting a destination deletes its lane.
    store
        .put_definition(&Definition {
            workspace_id: "ws_a".into(),
            kind: DefinitionKind::Destination,
            id: "a".into(),
            doc: serde_json::json!({"name": "A"}),
            version: 1,
            computed_version: 0,
            done: 0,
            total: 0,
            created_at: T0,
            updated_at: T0,
        })
        .unwrap();
    assert_eq!(destination_lane("a"), "webhook:a");
    assert!(store
        .delete_definition("ws_a", DefinitionKind::Destination, "a")
        .unwrap());
    assert!(store.outbox_row("ws_a", a).unwrap().is_none());
    assert!(store.outbox_row("ws_a", b).unwrap().is_some());
}

pub fn outbox_rows_commit_with_the_decision(store: &dyn Store) {
    setup(store, &["ws_a"]);
    store
        .record(&AudienceWrite {
            cursors: vec![CursorMove::new("destination:ws_a:a", 7)],
            outbox: vec![row("ws_a", "webhook:a", "k1")],
            ..AudienceWrite::default()
        })
        .unwrap();
    assert_eq!(store.audience_cursor("destination:ws_a:a").unwrap(), 7);
    // The same decision again (same key): nothing of it is written, the cursor included.
    let again = store.record(&AudienceWrite {
        cursors: vec![CursorMove::new("destination:ws_a:a", 9)],
        outbox: vec![row("ws_a", "webhook:a", "k1")],
        ..AudienceWrite::default()
    });
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert_eq!(store.audience_cursor("destination:ws_a:a").unwrap(), 7);
    let s = store.outbox_summary("ws_a", "webhook:a").unwrap();
    assert_eq!(s.pending, 1);
}

/// A claim's rows settled in one go: each as `complete` or `fail` would, a row another sender
/// took over left to it (its attempt not logged), the others settled all the same.
pub fn outbox_settles_a_claim_in_one_go(store: &dyn Store) {
    setup(store, &["ws_a"]);
    store
        .enqueue(&[
            row("ws_a", "channel:email", "m1"),
            row("ws_a", "channel:email", "m2"),
            row("ws_a", "channel:email", "m3"),
            row("ws_a", "channel:email", "m4"),
        ])
        .unwrap();
    let got = store.claim(&claim("channel:email", "t1", T0, 4)).unwrap();
    let [a, b, c, d] = [got[0].id, got[1].id, got[2].id, got[3].id];
    // `b` goes back and another sender takes it.
    store.release(b, "t1").unwrap();
    let taken = store.claim(&claim("channel:email", "t2", T0, 4)).unwrap();
    assert_eq!(ids(&taken), vec![b]);
    let settle = |id: i64, ok: bool, settled: Settled| Settlement {
        id,
        attempt: attempt(id, 1, T0 + 5, ok),
        settled,
    };
    let held = store
        .settle_all(
            "t1",
            &[
                settle(a, true, Settled::Done),
                settle(b, true, Settled::Done),
                settle(c, false, Settled::RetryAt(T0 + 60_000)),
                settle(d, false, Settled::Dead),
            ],
        )
        .unwrap();
    assert_eq!(held, vec![true, false, true, true]);
    let state = |id: i64| store.outbox_row("ws_a", id).unwrap().unwrap();
    assert_eq!(state(a).state, OutboxState::Done);
    assert_eq!(
        state(b).state,
        OutboxState::Leased,
        "still the other sender's"
    );
    assert_eq!(
        (state(c).state, state(c).not_before, state(c).last_error),
        (
            OutboxState::Pending,
            T0 + 60_000,
            Some("HTTP 503: busy".into())
        )
    );
    assert_eq!(state(d).state, OutboxState::Dead);
    let logged = |id: i64| store.delivery_attempts("ws_a", id).unwrap().len();
    assert_eq!((logged(a), logged(b), logged(c), logged(d)), (1, 0, 1, 1));
    // Settled once: settling again finds nothing held, and writes nothing.
    let again = store
        .settle_all("t1", &[settle(a, true, Settled::Done)])
        .unwrap();
    assert_eq!(again, vec![false]);
    assert_eq!(logged(a), 1);
    // The other sender settles its row.
    assert_eq!(
        store
            .settle_all("t2", &[settle(b, true, Settled::Done)])
            .unwrap(),
        vec![true]
    );
    assert_eq!(state(b).state, OutboxState::Done);
}
