//! Conformance of the quarantine port: quarantined and set-aside events.

use parcours_core::spec::{EventType, QuarantinedEvent, Violation};

use super::*;

pub fn quarantine_keeps_events_and_resolves_once(store: &dyn Store) {
    setup(store, &["ws_a", "ws_b"]);
    let q = QuarantinedEvent {
        violation: Violation::MissingEventName,
        detail: None,
        message_id: Some("bad-1".into()),
        received_at: T0,
        body: r#"{"type":"track","userId":"u1"}"#.into(),
        path_type: None,
    };
    let mut b = batch("ws_a", vec![accepted("ok-1", "u1", T0)]);
    b.quarantined.push(q);
    let out = store.append(&[b], 0).unwrap();
    assert_eq!(
        out[0],
        AppendOutcome {
            stored: 1,
            duplicates: 0,
            quarantined: 1
        }
    );
    let list = store
        .quarantined("ws_a", Some(QuarantineStatus::Pending), 0, 10)
        .unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].code, "missing_event_name");
    assert_eq!(list[0].message_id.as_deref(), Some("bad-1"));
    assert!(store.quarantined("ws_b", None, 0, 10).unwrap().is_empty());
    assert_eq!(
        store.quarantine_entry("ws_b", list[0].id).unwrap(),
        None,
        "other workspaces cannot see it"
    );
    let fixed = batch("ws_a", vec![accepted("bad-1", "u1", T0)]);
    let outcome = store
        .resolve_quarantined("ws_a", list[0].id, Some(&fixed), T0 + 5)
        .unwrap();
    assert_eq!(
        outcome,
        Some(AppendOutcome {
            stored: 1,
            duplicates: 0,
            quarantined: 0
        })
    );
    assert!(matches!(
        store.resolve_quarantined("ws_a", list[0].id, Some(&fixed), T0 + 6),
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.resolve_quarantined("ws_a", 9999, None, T0),
        Err(StoreError::NotFound(_))
    ));
    let entry = store.quarantine_entry("ws_a", list[0].id).unwrap().unwrap();
    assert_eq!(entry.status, QuarantineStatus::Replayed);
    assert_eq!(entry.resolved_at, Some(T0 + 5));
    assert_eq!(store.event_count("ws_a").unwrap(), 2);
    assert!(store
        .event_by_message_id("ws_a", "bad-1")
        .unwrap()
        .is_some());
}

pub fn quarantine_counts_every_occurrence(store: &dyn Store) {
    setup(store, &["ws_a"]);
    let invalid = |at: i64| QuarantinedEvent {
        violation: Violation::NoUserAnonId,
        detail: None,
        message_id: None,
        received_at: at,
        body: r#"{"event":"E"}"#.into(),
        path_type: Some(EventType::Track),
    };
    let mut b = batch("ws_a", vec![]);
    b.quarantined = vec![invalid(T0); 3];
    assert_eq!(store.append(&[b], 0).unwrap()[0].quarantined, 3);
    let mut later = batch("ws_a", vec![]);
    later.source_id = "pos".into();
    later.quarantined = vec![invalid(T0 + 60_000)];
    assert_eq!(store.append(&[later.clone()], 0).unwrap()[0].quarantined, 1);
    let list = store.quarantined("ws_a", None, 0, 10).unwrap();
    assert_eq!(list.len(), 1, "one entry per invalid body");
    let e = &list[0];
    assert_eq!(e.occurrences, 4);
    assert_eq!((e.received_at, e.last_seen), (T0, T0 + 60_000));
    assert_eq!(e.sources, ["ws_a-src", "pos"]);
    assert_eq!(e.path_type, Some(EventType::Track));
    assert_eq!(e.seq, None);
    // A new occurrence of a resolved entry needs looking at again.
    store
        .resolve_quarantined("ws_a", e.id, None, T0 + 61_000)
        .unwrap();
    // Two more in one request (a file import stamps each line): the later one is last seen.
    later.quarantined = vec![invalid(T0 + 120_000), invalid(T0 + 150_000)];
    store.append(&[later], 0).unwrap();
    let e = store.quarantine_entry("ws_a", e.id).unwrap().unwrap();
    assert_eq!(e.status, QuarantineStatus::Pending);
    assert_eq!(e.resolved_at, None);
    assert_eq!((e.occurrences, e.last_seen), (6, T0 + 150_000));
    assert_eq!(e.sources, ["ws_a-src", "pos"]);
}

pub fn events_set_aside_are_kept_once_and_replaced_under_their_message_id(store: &dyn Store) {
    setup(store, &["ws_a"]);
    store
        .append(&[batch("ws_a", vec![accepted("m1", "u1", T0)])], 0)
        .unwrap();
    let stored = store.events_after(0, 10).unwrap().remove(0);
    for _ in 0..2 {
        store
            .set_aside(&stored, Violation::UnreadableEvent, "bad number", T0 + 1)
            .unwrap();
    }
    let list = store.quarantined("ws_a", None, 0, 10).unwrap();
    assert_eq!(
        list.len(),
        1,
        "set aside once, however often a processor meets it"
    );
    let e = &list[0];
    assert_eq!(e.code, "unreadable_event");
    assert!(e.reason.ends_with(": bad number"), "{}", e.reason);
    assert_eq!(e.seq, Some(stored.seq));
    assert_eq!(e.message_id.as_deref(), Some("m1"));
    assert_eq!(e.body, stored.body);
    assert_eq!(e.path_type, Some(EventType::Identify));
    assert_eq!(
        (e.received_at, e.last_seen),
        (stored.received_at, T0 + 1),
        "it arrived when the event did (a replay reads it as of then), set aside later"
    );
    // The corrected event takes over the messageId, which was accepted before.
    let fixed = batch("ws_a", vec![accepted("m1", "u1", T0)]);
    let outcome = store
        .resolve_quarantined("ws_a", e.id, Some(&fixed), T0 + 2)
        .unwrap();
    assert_eq!(outcome.map(|o| o.stored), Some(1));
    let now = store.event_by_message_id("ws_a", "m1").unwrap().unwrap();
    assert!(now.seq > stored.seq);
    // Any other replay of a messageId already accepted is a duplicate.
    let mut b = batch("ws_a", vec![]);
    b.quarantined = vec![QuarantinedEvent {
        violation: Violation::MissingEventName,
        detail: None,
        message_id: Some("m1".into()),
        received_at: T0,
        body: "{}".into(),
        path_type: None,
    }];
    store.append(&[b], 0).unwrap();
    let q = store
        .quarantined("ws_a", Some(QuarantineStatus::Pending), 0, 10)
        .unwrap();
    let outcome = store
        .resolve_quarantined("ws_a", q[0].id, Some(&fixed), T0 + 3)
        .unwrap();
    assert_eq!(outcome.map(|o| o.duplicates), Some(1));
}
