//! Conformance of the event log port: appends, deduplication, reads in order, buckets, retention.

use parcours_core::channel::Channel;
use parcours_core::spec::{AcceptedEvent, EventType};

use super::*;

pub fn append_deduplicates_message_ids_per_workspace(store: &dyn Store) {
    setup(store, &["ws_a", "ws_b"]);
    let first = batch(
        "ws_a",
        vec![
            accepted("m1", "u1", T0),
            accepted("m2", "u2", T0),
            accepted("m1", "u1", T0),
        ],
    );
    let again = batch(
        "ws_a",
        vec![accepted("m2", "u2", T0), accepted("m3", "u3", T0)],
    );
    let other = batch("ws_b", vec![accepted("m1", "u1", T0)]);
    let out = store.append(&[first, again, other], T0 - 1000).unwrap();
    assert_eq!(
        out[0],
        AppendOutcome {
            stored: 2,
            duplicates: 1,
            quarantined: 0
        }
    );
    assert_eq!(
        out[1],
        AppendOutcome {
            stored: 1,
            duplicates: 1,
            quarantined: 0
        }
    );
    assert_eq!(
        out[2],
        AppendOutcome {
            stored: 1,
            duplicates: 0,
            quarantined: 0
        },
        "workspaces dedup separately"
    );
    assert_eq!(store.event_count("ws_a").unwrap(), 3);
    assert_eq!(store.event_count("ws_b").unwrap(), 1);
    let replay = store
        .append(&[batch("ws_a", vec![accepted("m3", "u3", T0)])], T0 - 1000)
        .unwrap();
    assert_eq!(replay[0].duplicates, 1);
    assert_eq!(store.event_count("ws_a").unwrap(), 3);
}

pub fn dedup_window_expires(store: &dyn Store) {
    setup(store, &["ws_a"]);
    store
        .append(&[batch("ws_a", vec![accepted("m1", "u1", T0)])], 0)
        .unwrap();
    let later = T0 + 31 * 86_400_000;
    let mut e = accepted("m1", "u1", later);
    e.received_at = later;
    let out = store
        .append(&[batch("ws_a", vec![e])], later - 30 * 86_400_000)
        .unwrap();
    assert_eq!(
        out[0].stored, 1,
        "a messageId outside the window is new again"
    );
    assert_eq!(store.prune_message_ids(later).unwrap(), 0);
    assert_eq!(store.prune_message_ids(later + 1).unwrap(), 1);
}

pub fn event_log_reads_in_order_per_workspace(store: &dyn Store) {
    setup(store, &["ws_a", "ws_b"]);
    store
        .append(
            &[
                batch("ws_a", vec![accepted("a1", "u", T0 + 2)]),
                batch("ws_b", vec![accepted("b1", "u", T0)]),
            ],
            0,
        )
        .unwrap();
    store
        .append(&[batch("ws_a", vec![accepted("a2", "u", T0 + 1)])], 0)
        .unwrap();
    let all = store.events_after(0, 100).unwrap();
    let mids: Vec<&str> = all.iter().map(|e| e.message_id.as_str()).collect();
    assert_eq!(mids, ["a1", "b1", "a2"], "arrival order");
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(store.last_seq().unwrap(), all[2].seq);
    let a: Vec<String> = store
        .workspace_events("ws_a", 0, 100)
        .unwrap()
        .into_iter()
        .map(|e| e.message_id)
        .collect();
    assert_eq!(a, ["a1", "a2"]);
    assert_eq!(
        store.events_after(all[0].seq, 1).unwrap()[0].message_id,
        "b1"
    );
    let e = &all[0];
    assert_eq!(
        (e.kind, e.channel, e.user_id.as_deref(), e.timestamp),
        (EventType::Identify, Channel::Web, Some("u"), T0 + 2)
    );
    let json = e.to_json();
    assert_eq!(json["messageId"], "a1");
    assert_eq!(json["type"], "identify");
    assert_eq!(json["traits"]["email"], "u@x.io");
}

pub fn events_carry_their_bucket_and_read_by_bucket(store: &dyn Store) {
    use parcours_core::bucket;
    setup(store, &["ws_a"]);
    let users: Vec<String> = (0..40).map(|i| format!("u{i}")).collect();
    let events = users
        .iter()
        .enumerate()
        .map(|(i, u)| accepted(&format!("m{i}"), u, T0 + i as i64))
        .collect();
    store.append(&[batch("ws_a", events)], 0).unwrap();
    let all = store.events_after(0, 100).unwrap();
    assert_eq!(all.len(), 40);
    for e in &all {
        assert_eq!(
            e.bucket,
            bucket::of("ws_a", e.user_id.as_deref(), e.anonymous_id.as_deref())
        );
    }
    let wanted: Vec<u16> = all.iter().take(3).map(|e| e.bucket).collect();
    let mut expected: Vec<i64> = all
        .iter()
        .filter(|e| wanted.contains(&e.bucket))
        .map(|e| e.seq)
        .collect();
    let got: Vec<i64> = store
        .bucket_events_after(&wanted, 0, 100)
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(got, expected, "in log order, only those buckets");
    let after = expected[0];
    expected.remove(0);
    let got: Vec<i64> = store
        .bucket_events_after(&wanted, after, 1)
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(got, expected[..1].to_vec(), "after a seq, limited");
    assert!(store.bucket_events_after(&[], 0, 100).unwrap().is_empty());
}

pub fn retention_drops_whole_days(store: &dyn Store) {
    use parcours_core::time::{day_start, DAY};
    setup(store, &["ws_a"]);
    let day0 = day_start(T0);
    let at = |mid: &str, when: i64| {
        let mut e = accepted(mid, mid, when);
        e.received_at = when;
        e
    };
    let events = vec![
        at("old1", day0 - DAY + 5),
        at("old2", day0 - 1),
        at("today1", day0),
        at("today2", day0 + DAY / 2),
        at("tomorrow", day0 + DAY + 1),
    ];
    store.append(&[batch("ws_a", events)], 0).unwrap();
    assert_eq!(store.drop_events_before(day0 + DAY / 2).unwrap(), 2);
    let left: Vec<String> = store
        .events_after(0, 10)
        .unwrap()
        .into_iter()
        .map(|e| e.message_id)
        .collect();
    assert_eq!(
        left,
        vec!["today1", "today2", "tomorrow"],
        "only whole days go"
    );
    assert_eq!(store.drop_events_before(day0 + DAY / 2).unwrap(), 0);
    assert_eq!(store.event_count("ws_a").unwrap(), 3);
    // The log goes on after a drop.
    store
        .append(&[batch("ws_a", vec![at("later", day0 + DAY + 2)])], 0)
        .unwrap();
    assert_eq!(store.event_count("ws_a").unwrap(), 4);
}

pub(super) fn named(
    mid: &str,
    user: &str,
    kind: EventType,
    event: Option<&str>,
    ts: i64,
) -> AcceptedEvent {
    AcceptedEvent {
        kind,
        event: event.map(str::to_string),
        ..accepted(mid, user, ts)
    }
}

/// Track, page, track, screen and track events of u1, u1, u2, u2 and u3 (m1 to m5).
pub(super) fn five_named_events() -> Vec<AcceptedEvent> {
    vec![
        named("m1", "u1", EventType::Track, Some("Order Completed"), T0),
        named("m2", "u1", EventType::Page, Some("Home"), T0 + 1),
        named("m3", "u2", EventType::Track, Some("Product Viewed"), T0 + 2),
        named("m4", "u2", EventType::Screen, Some("Cart"), T0 + 3),
        named(
            "m5",
            "u3",
            EventType::Track,
            Some("Order Completed"),
            T0 + 4,
        ),
    ]
}

pub fn named_events_read_a_range_of_the_log_by_name(store: &dyn Store) {
    setup(store, &["ws_a", "ws_b"]);
    let mut events = five_named_events();
    events.push(named("m6", "u3", EventType::Identify, None, T0 + 5));
    store
        .append(
            &[
                batch("ws_a", events.clone()),
                // The same names in another workspace are not read.
                batch("ws_b", events),
            ],
            0,
        )
        .unwrap();
    let seq = |m: &str| store.event_by_message_id("ws_a", m).unwrap().unwrap().seq;
    let last = store.last_seq().unwrap();
    let read = |after: i64, upto: i64, names: &[&str]| -> Vec<String> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        store
            .named_events("ws_a", after, upto, &names)
            .unwrap()
            .into_iter()
            .map(|e| {
                assert_eq!(e.workspace_id, "ws_a");
                e.message_id
            })
            .collect()
    };
    assert_eq!(read(0, last, &["Order Completed"]), vec!["m1", "m5"]);
    assert_eq!(
        read(0, last, &["Page Viewed", "Screen Viewed", "Product Viewed"]),
        vec!["m2", "m3", "m4"]
    );
    // The range is (after, upto].
    assert_eq!(
        read(
            seq("m1"),
            seq("m5") - 1,
            &["Order Completed", "Page Viewed"]
        ),
        vec!["m2"]
    );
    assert_eq!(read(seq("m1"), seq("m5"), &["Order Completed"]), vec!["m5"]);
    // Only actions have names: "Home" is a page's own name, an identify call has none.
    assert!(read(0, last, &["Home", "Cart"]).is_empty());
    assert!(read(0, last, &[]).is_empty());
}
