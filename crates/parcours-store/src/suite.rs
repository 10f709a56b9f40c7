//! The storage conformance suite. Every adapter instantiates it with
//! `parcours_store::conformance_suite!(make_store)` where `make_store()` returns a fresh,
//! empty store (and a guard that keeps it alive), and must pass every test.

use parcours_core::channel::Channel;
use parcours_core::identifier::Identifier;
use parcours_core::observation::Observation;
use parcours_core::rules::{IdentityRules, IdentityRulesConfig};
use parcours_core::spec::{AcceptedEvent, EventType, QuarantinedEvent, Violation};
use parcours_core::{Graph, MergeRecord, Profile};

use crate::*;

mod outbox;
mod timers;
pub use outbox::*;
pub use timers::*;

/// Instantiates the conformance suite for an adapter.
#[macro_export]
macro_rules! conformance_suite {
    ($make:path) => {
        $crate::conformance_suite!(@tests $make;
            registry_round_trips_and_keeps_workspaces_apart,
            write_keys_rotate_and_tokens_expire,
            append_deduplicates_message_ids_per_workspace,
            dedup_window_expires,
            quarantine_keeps_events_and_resolves_once,
            quarantine_counts_every_occurrence,
            events_set_aside_are_kept_once_and_replaced_under_their_message_id,
            event_log_reads_in_order_per_workspace,
            projection_rows_round_trip,
            failed_transaction_writes_nothing,
            merges_redirects_and_timeline_follow_the_family,
            clear_and_reset_remove_projection_rows,
            batched_writes_match_single_ones,
            prefetched_reads_follow_writes,
            events_carry_their_bucket_and_read_by_bucket,
            bucket_cursors_advance_and_never_move_back,
            fence_admits_only_the_lease_holder,
            leases_balance_between_nodes_and_expire,
            retention_drops_whole_days,
            definitions_round_trip_and_delete_with_their_memberships,
            memberships_are_recorded_atomically_with_their_change_log,
            computed_values_timers_cursors_and_progress,
            destinations_keep_their_cursor_until_deleted,
            audience_inputs_read_a_page_of_profiles_at_once,
            named_events_read_a_range_of_the_log_by_name,
            profiles_and_event_owners_read_in_storage_order,
            reshaped_profiles_are_journaled_in_order,
            outbox_claims_in_order_and_fences_stale_senders,
            outbox_retries_then_dead_letters_and_requeues,
            outbox_janitor_reclaims_expired_leases,
            outbox_rows_commit_with_the_decision,
            timers_fire_in_due_order_and_once,
            timers_are_cancelled_and_rescheduled_by_key,
            timers_are_claimed_per_bucket,
        );
    };
    (@tests $make:path; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let (store, _guard) = $make();
                $crate::suite::$name(&store);
            }
        )*
    };
}

const T0: i64 = 1_700_000_000_000;

fn workspace(id: &str) -> Workspace {
    Workspace {
        id: id.into(),
        name: format!("{id} name"),
        created_at: T0,
        identity_rules: IdentityRulesConfig::default(),
    }
}

fn accepted(mid: &str, user: &str, ts: i64) -> AcceptedEvent {
    AcceptedEvent {
        message_id: mid.into(),
        kind: EventType::Identify,
        event: None,
        user_id: Some(user.into()),
        anonymous_id: None,
        timestamp: ts,
        received_at: ts,
        channel: Channel::Web,
        body: format!(r#"{{"userId":"{user}","traits":{{"email":"{user}@x.io"}}}}"#),
    }
}

fn batch(ws: &str, events: Vec<AcceptedEvent>) -> IngestBatch {
    IngestBatch {
        workspace_id: ws.into(),
        source_id: format!("{ws}-src"),
        events,
        quarantined: vec![],
    }
}

fn setup(store: &dyn Store, ids: &[&str]) {
    for id in ids {
        store.create_workspace(&workspace(id)).unwrap();
    }
}

pub fn registry_round_trips_and_keeps_workspaces_apart(store: &dyn Store) {
    setup(store, &["ws_a", "ws_b"]);
    assert!(matches!(
        store.create_workspace(&workspace("ws_a")),
        Err(StoreError::Conflict(_))
    ));
    let src = Source {
        id: "src_1".into(),
        workspace_id: "ws_a".into(),
        name: "POS".into(),
        channel: Some(Channel::Store),
        created_at: T0,
        allowed_origins: vec!["https://shop.example".into()],
        webhook: Some(parcours_core::webhook::WebhookSource {
            mapping: parcours_core::webhook::MappingRef::Shipped("shopify_orders_create".into()),
            signature: Some(parcours_core::webhook::SignatureCheck {
                scheme: parcours_core::webhook::SignatureScheme::Shopify,
                secret: "shpss_secret".into(),
            }),
        }),
        tracking_plan: Some(
            parcours_core::plan::TrackingPlan::from_json(&serde_json::json!({
                "events": {"Order Completed": {"type": "object", "required": ["total"]}},
                "on_violation": "quarantine"
            }))
            .unwrap(),
        ),
    };
    store.create_source(&src, "hash-1").unwrap();
    let dup = Source {
        id: "src_2".into(),
        ..src.clone()
    };
    assert!(
        matches!(
            store.create_source(&dup, "hash-1"),
            Err(StoreError::Conflict(_))
        ),
        "a write key is unique"
    );
    assert_eq!(
        store.source_by_key_hash("hash-1").unwrap(),
        Some(KeyGrant {
            source: src.clone(),
            expires_at: None
        })
    );
    assert_eq!(store.source_by_key_hash("nope").unwrap(), None);
    assert_eq!(store.sources("ws_a").unwrap(), vec![src]);
    assert!(store.sources("ws_b").unwrap().is_empty());
    let token = Token {
        id: "tok_1".into(),
        workspace_id: "ws_b".into(),
        name: "ops".into(),
        role: Role::Admin,
        instance_admin: true,
        created_at: T0,
        expires_at: None,
    };
    store.create_token(&token, "thash").unwrap();
    assert_eq!(store.token_by_hash("thash").unwrap(), Some(token.clone()));
    assert_eq!(store.tokens("ws_b").unwrap(), vec![token]);
    assert!(store.tokens("ws_a").unwrap().is_empty());
    let rules = IdentityRulesConfig {
        identifier_traits: vec!["loyalty_card".into()],
        ..Default::default()
    };
    store.set_identity_rules("ws_a", &rules).unwrap();
    assert_eq!(
        store.workspace("ws_a").unwrap().unwrap().identity_rules,
        rules
    );
    assert!(matches!(
        store.set_identity_rules("ws_zz", &rules),
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.workspaces().unwrap().len(), 2);
}

pub fn write_keys_rotate_and_tokens_expire(store: &dyn Store) {
    setup(store, &["ws_a", "ws_b"]);
    let src = Source {
        id: "src_1".into(),
        workspace_id: "ws_a".into(),
        name: "Web".into(),
        channel: None,
        created_at: T0,
        allowed_origins: vec![],
        webhook: None,
        tracking_plan: None,
    };
    store.create_source(&src, "key-1").unwrap();
    // Another workspace cannot rotate, rename or delete it.
    assert!(matches!(
        store.rotate_write_key("ws_b", "src_1", "key-x", T0, T0),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.delete_source("ws_b", "src_1"),
        Err(StoreError::NotFound(_))
    ));
    store
        .rotate_write_key("ws_a", "src_1", "key-2", T0 + 10, T0 + 1_000)
        .unwrap();
    let grant = |h: &str| store.source_by_key_hash(h).unwrap().map(|g| g.expires_at);
    assert_eq!(
        grant("key-1"),
        Some(Some(T0 + 1_000)),
        "the old key works until the overlap ends"
    );
    assert_eq!(grant("key-2"), Some(None));
    // A second rotation shortens, never lengthens, what the old keys have left.
    store
        .rotate_write_key("ws_a", "src_1", "key-3", T0 + 20, T0 + 5_000)
        .unwrap();
    assert_eq!(grant("key-1"), Some(Some(T0 + 1_000)));
    assert_eq!(grant("key-2"), Some(Some(T0 + 5_000)));
    assert!(
        matches!(
            store.rotate_write_key("ws_a", "src_1", "key-3", T0 + 30, T0 + 30),
            Err(StoreError::Conflict(_))
        ),
        "a key is unique"
    );
    let keys = store.write_keys("ws_a", "src_1").unwrap();
    assert_eq!(keys.len(), 3);
    assert_eq!(keys[0].fingerprint, "key-1");
    assert_eq!(keys[2].expires_at, None);
    assert!(store.write_keys("ws_b", "src_1").unwrap().is_empty());

    let renamed = Source {
        name: "Shop site".into(),
        channel: Some(Channel::Web),
        allowed_origins: vec!["https://*.shop.example".into()],
        ..src.clone()
    };
    store.update_source(&renamed).unwrap();
    assert_eq!(store.sources("ws_a").unwrap(), vec![renamed.clone()]);
    assert_eq!(
        store.source_by_key_hash("key-3").unwrap().unwrap().source,
        renamed
    );
    assert!(matches!(
        store.update_source(&Source {
            workspace_id: "ws_b".into(),
            ..renamed.clone()
        }),
        Err(StoreError::NotFound(_))
    ));

    store.delete_source("ws_a", "src_1").unwrap();
    assert!(store.sources("ws_a").unwrap().is_empty());
    for key in ["key-1", "key-2", "key-3"] {
        assert_eq!(
            store.source_by_key_hash(key).unwrap(),
            None,
            "{key} is gone with its source"
        );
    }

    let token = Token {
        id: "tok_1".into(),
        workspace_id: "ws_a".into(),
        name: "ops".into(),
        role: Role::Analyst,
        instance_admin: false,
        created_at: T0,
        expires_at: Some(T0 + 9_000),
    };
    store.create_token(&token, "thash").unwrap();
    assert_eq!(store.token_by_hash("thash").unwrap(), Some(token.clone()));
    assert!(matches!(
        store.expire_token("ws_b", "tok_1", T0),
        Err(StoreError::NotFound(_))
    ));
    store.expire_token("ws_a", "tok_1", T0 + 500).unwrap();
    store.expire_token("ws_a", "tok_1", T0 + 50_000).unwrap();
    assert_eq!(
        store.token_by_hash("thash").unwrap().unwrap().expires_at,
        Some(T0 + 500),
        "an expiry is only ever brought forward"
    );

    let line = |count, at, example: &str| PlanViolationCount {
        source_id: "src_9".into(),
        event: "Order Completed".into(),
        field: "properties.total".into(),
        kind: "wrong_type".into(),
        count,
        first_seen: at,
        last_seen: at,
        example: example.into(),
    };
    store
        .record_plan_violations("ws_a", &[line(2, T0, "first")])
        .unwrap();
    store
        .record_plan_violations("ws_a", &[line(3, T0 + 60, "later")])
        .unwrap();
    let report = store.plan_violations("ws_a").unwrap();
    assert_eq!(report.len(), 1);
    assert_eq!(report[0].count, 5, "counts add up");
    assert_eq!((report[0].first_seen, report[0].last_seen), (T0, T0 + 60));
    assert_eq!(report[0].example, "later");
    assert!(store.plan_violations("ws_b").unwrap().is_empty());
}

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

/// Builds a real profile through the core graph from stored events.
fn profile_from(store: &dyn Store, ws: &str, mids: &[&str]) -> (Graph, Vec<StoredEvent>) {
    let events: Vec<StoredEvent> = mids
        .iter()
        .map(|m| store.event_by_message_id(ws, m).unwrap().unwrap())
        .collect();
    let rules = IdentityRules::default();
    let mut graph = Graph::new(ws, rules.clone(), vec![]);
    for e in &events {
        let body = serde_json::from_str(&e.body).unwrap();
        graph.apply(&Observation::from_event(&e.meta(), &body, &rules));
    }
    (graph, events)
}

pub fn projection_rows_round_trip(store: &dyn Store) {
    setup(store, &["ws_a"]);
    store
        .append(&[batch("ws_a", vec![accepted("m1", "u1", T0)])], 0)
        .unwrap();
    let (graph, events) = profile_from(store, "ws_a", &["m1"]);
    let profile = graph.profiles.values().next().unwrap().clone();
    let email = Identifier::new("email", "u1@x.io");
    let dropped = Identifier::new("anonymous_id", "tablet");
    let sep = (
        Identifier::new("user_id", "u1"),
        Identifier::new("user_id", "u9"),
    );
    store
        .transact(&mut |tx| {
            assert_eq!(tx.cursor()?, 0);
            assert!(!tx.has_drops("ws_a")?);
            let epoch = tx.epoch()?;
            tx.bump_epoch()?;
            assert_eq!(tx.epoch()?, epoch + 1);
            tx.save_profile("ws_a", &profile, T0)?;
            tx.link("ws_a", &email, &profile.id, "m1", T0)?;
            tx.set_drops("ws_a", &profile.id, std::slice::from_ref(&dropped))?;
            tx.assign("ws_a", events[0].seq, &profile.id)?;
            tx.add_separation("ws_a", &sep, 7, T0)?;
            tx.set_cursor(events[0].seq)?;
            assert_eq!(tx.holder("ws_a", &email)?, Some(profile.id.clone()));
            assert_eq!(tx.holder("ws_b", &email)?, None);
            assert_eq!(tx.droppers("ws_a", &dropped)?, vec![profile.id.clone()]);
            assert!(tx.has_drops("ws_a")? && !tx.has_drops("ws_b")?);
            assert_eq!(tx.drops_of("ws_a", &profile.id)?, vec![dropped.clone()]);
            assert_eq!(tx.profile("ws_a", &profile.id)?.as_ref(), Some(&profile));
            assert_eq!(tx.separations("ws_a")?, vec![sep.clone()]);
            assert!(tx.separations("ws_b")?.is_empty());
            assert_eq!(
                tx.events_of("ws_a", std::slice::from_ref(&profile.id))?
                    .len(),
                1
            );
            Ok(())
        })
        .unwrap();
    assert_eq!(store.processed_seq().unwrap(), events[0].seq);
    assert_eq!(
        store.profile("ws_a", &profile.id).unwrap(),
        Some(profile.clone())
    );
    assert_eq!(
        store.profile("ws_b", &profile.id).unwrap(),
        None,
        "profiles are per workspace"
    );
    assert_eq!(
        store.lookup("ws_a", &email).unwrap(),
        Some(profile.id.clone())
    );
    let ids = store.identifiers("ws_a", &profile.id).unwrap();
    assert_eq!(ids.len(), 1);
    assert_eq!(ids[0].linked_by, "m1");
    assert_eq!(store.profile_count("ws_a").unwrap(), 1);
    assert_eq!(store.profiles_page("ws_a", "", 10).unwrap(), vec![profile]);
}

pub fn failed_transaction_writes_nothing(store: &dyn Store) {
    setup(store, &["ws_a"]);
    let result = store.transact(&mut |tx| {
        tx.link("ws_a", &Identifier::new("email", "x@x.io"), "p_1", "m1", T0)?;
        tx.set_cursor(42)?;
        Err(StoreError::Backend("simulated failure".into()))
    });
    assert!(result.is_err());
    assert_eq!(
        store
            .lookup("ws_a", &Identifier::new("email", "x@x.io"))
            .unwrap(),
        None
    );
    assert_eq!(store.processed_seq().unwrap(), 0);
}

pub fn merges_redirects_and_timeline_follow_the_family(store: &dyn Store) {
    setup(store, &["ws_a"]);
    store
        .append(
            &[batch(
                "ws_a",
                vec![accepted("m1", "u1", T0), accepted("m2", "u2", T0 + 1)],
            )],
            0,
        )
        .unwrap();
    let (graph, events) = profile_from(store, "ws_a", &["m1", "m2"]);
    let ids: Vec<String> = graph.profiles.keys().cloned().collect();
    let (winner, loser) = (&ids[0], &ids[1]);
    let merge = MergeRecord {
        winner: winner.clone(),
        loser: loser.clone(),
        cause: events[1].key(),
        cause_seq: events[1].seq,
        identifiers: vec![Identifier::new("anonymous_id", "a")],
        winner_anchor: Identifier::new("user_id", "u1"),
        loser_anchor: Identifier::new("user_id", "u2"),
        loser_identifiers: graph.profiles[loser].identifiers.iter().cloned().collect(),
        rule: "shared_identifier".into(),
    };
    let mut merged_profile = graph.profiles[winner].clone();
    merged_profile.absorb(graph.profiles[loser].clone());
    store
        .transact(&mut |tx| {
            for (e, p) in events.iter().zip([winner, loser]) {
                tx.save_profile("ws_a", &graph.profiles[p], T0)?;
                tx.assign("ws_a", e.seq, p)?;
                for id in &graph.profiles[p].identifiers {
                    tx.link("ws_a", id, p, &e.message_id, T0)?;
                }
            }
            tx.record_merge("ws_a", &merge, T0)?;
            tx.record_merge("ws_a", &merge, T0)?;
            tx.relink("ws_a", &merge.loser_identifiers, winner)?;
            tx.redirect_profile("ws_a", loser, winner, T0)?;
            tx.save_profile("ws_a", &merged_profile, T0)?;
            Ok(())
        })
        .unwrap();
    assert_eq!(
        store.profile("ws_a", loser).unwrap().map(|p| p.id),
        Some(winner.clone()),
        "merged ids still resolve"
    );
    store
        .transact(&mut |tx| {
            let mut family = vec![winner.clone(), loser.clone()];
            family.sort();
            assert_eq!(tx.family("ws_a", winner)?, family);
            assert_eq!(tx.family("ws_a", loser)?, vec![loser.clone()]);
            Ok(())
        })
        .unwrap();
    assert_eq!(
        store
            .lookup("ws_a", &Identifier::new("user_id", "u2"))
            .unwrap(),
        Some(winner.clone())
    );
    assert_eq!(store.profile_count("ws_a").unwrap(), 1);
    let timeline: Vec<String> = store
        .timeline("ws_a", winner, None, 10)
        .unwrap()
        .into_iter()
        .map(|e| e.message_id)
        .collect();
    assert_eq!(
        timeline,
        ["m2", "m1"],
        "newest first, across the merged profiles"
    );
    let page: Vec<String> = store
        .timeline("ws_a", winner, Some(events[1].seq), 10)
        .unwrap()
        .into_iter()
        .map(|e| e.message_id)
        .collect();
    assert_eq!(page, ["m1"]);
    let merges = store.merges_of("ws_a", winner).unwrap();
    assert_eq!(
        merges.len(),
        1,
        "recording the same merge twice keeps one row"
    );
    assert_eq!(merges[0].merge, merge);
    assert_eq!(merges[0].status, MergeStatus::Active);
    assert_eq!(store.merges_of("ws_a", loser).unwrap().len(), 1);
    let id = merges[0].id;
    store
        .transact(&mut |tx| {
            assert!(tx.mark_merge_undone("ws_a", id, T0 + 9)?);
            assert!(
                !tx.mark_merge_undone("ws_a", id, T0 + 9)?,
                "a merge is undone once"
            );
            Ok(())
        })
        .unwrap();
    let row = store.merge("ws_a", id).unwrap().unwrap();
    assert_eq!(
        (row.status, row.undone_at),
        (MergeStatus::Undone, Some(T0 + 9))
    );
    assert_eq!(store.merge("ws_b", id).unwrap(), None);
}

pub fn clear_and_reset_remove_projection_rows(store: &dyn Store) {
    setup(store, &["ws_a"]);
    store
        .append(&[batch("ws_a", vec![accepted("m1", "u1", T0)])], 0)
        .unwrap();
    let (graph, events) = profile_from(store, "ws_a", &["m1"]);
    let p = graph.profiles.values().next().unwrap().clone();
    let sep = (
        Identifier::new("user_id", "u1"),
        Identifier::new("user_id", "u9"),
    );
    store
        .transact(&mut |tx| {
            tx.save_profile("ws_a", &p, T0)?;
            tx.assign("ws_a", events[0].seq, &p.id)?;
            for id in &p.identifiers {
                tx.link("ws_a", id, &p.id, "m1", T0)?;
            }
            tx.add_separation("ws_a", &sep, 1, T0)?;
            tx.set_cursor(events[0].seq)?;
            tx.clear_profiles("ws_a", std::slice::from_ref(&p.id))?;
            assert!(tx
                .events_of("ws_a", std::slice::from_ref(&p.id))?
                .is_empty());
            assert_eq!(tx.holder("ws_a", &Identifier::new("user_id", "u1"))?, None);
            Ok(())
        })
        .unwrap();
    let epoch = std::cell::Cell::new(0);
    store
        .transact(&mut |tx| {
            epoch.set(tx.epoch()?);
            tx.reset_all()
        })
        .unwrap();
    store
        .transact(&mut |tx| {
            assert_eq!(
                tx.epoch()?,
                epoch.get() + 1,
                "a reset tells processors their caches are stale"
            );
            Ok(())
        })
        .unwrap();
    assert_eq!(store.processed_seq().unwrap(), 0);
    assert_eq!(store.profile("ws_a", &p.id).unwrap(), None);
    store
        .transact(&mut |tx| {
            assert_eq!(
                tx.separations("ws_a")?,
                vec![sep.clone()],
                "separations are rules and survive a replay"
            );
            Ok(())
        })
        .unwrap();
    assert_eq!(
        store.event_count("ws_a").unwrap(),
        1,
        "the event log is never reset"
    );
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

pub fn bucket_cursors_advance_and_never_move_back(store: &dyn Store) {
    assert_eq!(store.processed_seq().unwrap(), 0);
    store
        .transact(&mut |tx| {
            assert_eq!(tx.bucket_cursors(&[0, 7, 255])?, vec![0, 0, 0]);
            tx.advance_buckets(&[7, 255], 40)?;
            tx.advance_buckets(&[7], 30)?;
            assert_eq!(tx.bucket_cursors(&[255, 7, 0])?, vec![40, 40, 0]);
            assert_eq!(tx.cursor()?, 0, "the log's cursor is the lowest");
            Ok(())
        })
        .unwrap();
    assert_eq!(store.processed_seq().unwrap(), 0);
    store
        .transact(&mut |tx| {
            tx.set_cursor(12)?;
            assert_eq!(tx.bucket_cursors(&[0, 7])?, vec![12, 12]);
            tx.advance_buckets(&parcours_core::bucket::all(), 50)?;
            Ok(())
        })
        .unwrap();
    assert_eq!(store.processed_seq().unwrap(), 50);
    let failed = store.transact(&mut |tx| {
        tx.advance_buckets(&[1], 99)?;
        Err(StoreError::Conflict("rolled back".into()))
    });
    assert!(failed.is_err());
    store
        .transact(&mut |tx| {
            assert_eq!(
                tx.bucket_cursors(&[1])?,
                vec![50],
                "a failed step moves nothing"
            );
            assert!(tx.bucket_cursors(&[300]).is_err(), "there are 256 buckets");
            tx.reset_all()
        })
        .unwrap();
    assert_eq!(store.processed_seq().unwrap(), 0);
}

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

pub fn batched_writes_match_single_ones(store: &dyn Store) {
    setup(store, &["ws_a"]);
    let events = vec![
        accepted("m1", "u1", T0),
        accepted("m2", "u2", T0 + 1),
        accepted("m3", "u1", T0 + 2),
    ];
    store.append(&[batch("ws_a", events)], 0).unwrap();
    let (graph, events) = profile_from(store, "ws_a", &["m1", "m2", "m3"]);
    let profiles: Vec<&parcours_core::Profile> = graph.profiles.values().collect();
    assert_eq!(profiles.len(), 2);
    let owner = |e: &StoredEvent| {
        let user = e.user_id.clone().unwrap();
        profiles
            .iter()
            .find(|p| {
                p.identifiers
                    .contains(&Identifier::new("user_id", user.as_str()))
            })
            .unwrap()
            .id
            .clone()
    };
    let owners: Vec<String> = events.iter().map(owner).collect();
    let assignments: Vec<(i64, &str)> = events
        .iter()
        .zip(&owners)
        .map(|(e, p)| (e.seq, p.as_str()))
        .collect();
    store
        .transact(&mut |tx| {
            tx.save_profiles("ws_a", &profiles, T0)?;
            tx.assign_many("ws_a", &assignments)?;
            let tablet = Identifier::new("anonymous_id", "tablet");
            let links: Vec<(&Identifier, &str, &str)> = vec![
                (&tablet, profiles[0].id.as_str(), "m1"),
                (&tablet, profiles[1].id.as_str(), "m2"),
            ];
            tx.link_many("ws_a", &links, T0)?;
            assert_eq!(
                tx.holder("ws_a", &tablet)?.as_deref(),
                Some(profiles[1].id.as_str()),
                "the last link wins"
            );
            tx.link_many("ws_a", &[], T0)?;
            // Again: both are idempotent.
            tx.save_profiles("ws_a", &profiles, T0 + 1)?;
            tx.assign_many("ws_a", &assignments)?;
            tx.assign_many("ws_a", &[])?;
            tx.save_profiles("ws_a", &[], T0)
        })
        .unwrap();
    for p in &profiles {
        assert_eq!(store.profile("ws_a", &p.id).unwrap().as_ref(), Some(*p));
        let timeline: Vec<i64> = store
            .timeline("ws_a", &p.id, None, 10)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        let mut expected: Vec<i64> = events
            .iter()
            .zip(&owners)
            .filter(|(_, o)| **o == p.id)
            .map(|(e, _)| e.seq)
            .collect();
        expected.reverse();
        assert_eq!(timeline, expected, "newest first, each event once");
    }
    assert_eq!(store.profile_count("ws_a").unwrap(), 2);
}

pub fn prefetched_reads_follow_writes(store: &dyn Store) {
    setup(store, &["ws_a", "ws_b"]);
    let events = vec![accepted("m1", "u1", T0), accepted("m2", "u2", T0 + 1)];
    store.append(&[batch("ws_a", events)], 0).unwrap();
    let (graph, _) = profile_from(store, "ws_a", &["m1", "m2"]);
    let profiles: Vec<parcours_core::Profile> = graph.profiles.values().cloned().collect();
    let (p1, p2) = (&profiles[0], &profiles[1]);
    let id1 = p1.identifiers.iter().next().unwrap().clone();
    let unknown = Identifier::new("email", "nobody@x.io");
    store
        .transact(&mut |tx| {
            tx.save_profile("ws_a", p1, T0)?;
            tx.link("ws_a", &id1, &p1.id, "m1", T0)?;
            tx.prefetch("ws_a", &[id1.clone(), unknown.clone()])?;
            assert_eq!(tx.holder("ws_a", &id1)?, Some(p1.id.clone()));
            assert_eq!(tx.holder("ws_a", &unknown)?, None);
            assert_eq!(tx.holder("ws_b", &id1)?, None, "another workspace");
            assert_eq!(tx.profile("ws_a", &p1.id)?.as_ref(), Some(p1));
            assert_eq!(tx.profile("ws_a", &p2.id)?, None);
            // Writes after a prefetch are seen by the next reads.
            tx.save_profile("ws_a", p2, T0)?;
            tx.link("ws_a", &id1, &p2.id, "m2", T0)?;
            tx.link("ws_a", &unknown, &p2.id, "m2", T0)?;
            assert_eq!(tx.holder("ws_a", &id1)?, Some(p2.id.clone()));
            assert_eq!(tx.holder("ws_a", &unknown)?, Some(p2.id.clone()));
            assert_eq!(tx.profile("ws_a", &p2.id)?.as_ref(), Some(p2));
            tx.prefetch("ws_a", std::slice::from_ref(&id1))?;
            tx.redirect_profile("ws_a", &p1.id, &p2.id, T0)?;
            assert_eq!(
                tx.profile("ws_a", &p1.id)?,
                None,
                "a redirect is no document"
            );
            Ok(())
        })
        .unwrap();
}

fn definition(ws: &str, kind: DefinitionKind, id: &str, version: i64) -> Definition {
    Definition {
        workspace_id: ws.into(),
        kind,
        id: id.into(),
        doc: serde_json::json!({"name": id, "version": version}),
        version,
        computed_version: 0,
        done: 0,
        total: 0,
        created_at: T0,
        updated_at: T0 + version,
    }
}

fn change(ws: &str, audience: &str, profile: &str, entered: bool, at: i64) -> MembershipChange {
    MembershipChange {
        id: 0,
        workspace_id: ws.into(),
        audience_id: audience.into(),
        profile_id: profile.into(),
        entered,
        at,
        cause: format!("m-{at}"),
    }
}

fn entries(store: &dyn Store, ws: &str, audience: &str, profiles: &[&str], at: i64) {
    let changes = profiles
        .iter()
        .map(|p| change(ws, audience, p, true, at))
        .collect();
    store
        .record(&AudienceWrite {
            changes,
            ..AudienceWrite::default()
        })
        .unwrap();
}

pub fn definitions_round_trip_and_delete_with_their_memberships(store: &dyn Store) {
    let aud = DefinitionKind::Audience;
    let ct = DefinitionKind::ComputedTrait;
    store
        .put_definition(&definition("w1", aud, "vip", 1))
        .unwrap();
    store
        .put_definition(&definition("w1", ct, "ltv", 1))
        .unwrap();
    store
        .put_definition(&definition("w2", aud, "vip", 1))
        .unwrap();
    let w1 = store.definitions(Some("w1")).unwrap();
    assert_eq!(
        w1,
        vec![
            definition("w1", aud, "vip", 1),
            definition("w1", ct, "ltv", 1)
        ]
    );
    assert_eq!(store.definitions(None).unwrap().len(), 3);
    // Progress, then a new version: progress starts again, the finished version is kept.
    store
        .record(&AudienceWrite {
            progress: vec![("w1".into(), aud, "vip".into(), 1, 10, 10)],
            ..AudienceWrite::default()
        })
        .unwrap();
    let done = &store.definitions(Some("w1")).unwrap()[0];
    assert_eq!((done.computed_version, done.done, done.total), (1, 10, 10));
    store
        .put_definition(&definition("w1", aud, "vip", 2))
        .unwrap();
    let v2 = &store.definitions(Some("w1")).unwrap()[0];
    assert_eq!(v2.doc["version"], 2);
    assert_eq!(
        (v2.version, v2.computed_version, v2.done, v2.total),
        (2, 1, 0, 0)
    );
    assert_eq!(v2.created_at, T0);
    // Deleting an audience deletes its memberships and history, in its workspace only.
    entries(store, "w1", "vip", &["p1", "p2"], T0);
    entries(store, "w2", "vip", &["p1"], T0);
    assert!(store.delete_definition("w1", aud, "vip").unwrap());
    assert!(!store.delete_definition("w1", aud, "vip").unwrap());
    assert_eq!(store.member_count("w1", "vip").unwrap(), 0);
    assert!(store.membership_history("w1", "p1", 10).unwrap().is_empty());
    assert_eq!(store.member_count("w2", "vip").unwrap(), 1);
    assert_eq!(store.definitions(Some("w1")).unwrap().len(), 1);
    // Deleting a computed trait deletes its values.
    store
        .record(&AudienceWrite {
            computed: vec![ComputedValue {
                workspace_id: "w1".into(),
                profile_id: "p1".into(),
                trait_id: "ltv".into(),
                value: Some(serde_json::json!(5)),
            }],
            ..AudienceWrite::default()
        })
        .unwrap();
    assert!(store.delete_definition("w1", ct, "ltv").unwrap());
    assert!(store.computed_values("w1", "p1").unwrap().is_empty());
}

pub fn memberships_are_recorded_atomically_with_their_change_log(store: &dyn Store) {
    entries(store, "w1", "vip", &["p3", "p1", "p2"], T0);
    entries(store, "w1", "cart", &["p1"], T0 + 1);
    entries(store, "w2", "vip", &["p9"], T0 + 2);
    assert_eq!(store.member_count("w1", "vip").unwrap(), 3);
    let page = store.members("w1", "vip", "", 2).unwrap();
    let ids: Vec<&str> = page.iter().map(|m| m.profile_id.as_str()).collect();
    assert_eq!(ids, vec!["p1", "p2"]);
    let rest = store.members("w1", "vip", "p2", 10).unwrap();
    assert_eq!(
        rest,
        vec![Membership {
            audience_id: "vip".into(),
            profile_id: "p3".into(),
            since: T0
        }]
    );
    let of_p1: Vec<String> = store
        .memberships("w1", "p1")
        .unwrap()
        .into_iter()
        .map(|m| m.audience_id)
        .collect();
    assert_eq!(of_p1, vec!["cart", "vip"]);
    // Leaving writes the history; it reads newest first.
    store
        .record(&AudienceWrite {
            changes: vec![change("w1", "cart", "p1", false, T0 + 5)],
            ..AudienceWrite::default()
        })
        .unwrap();
    let history = store.membership_history("w1", "p1", 10).unwrap();
    let seen: Vec<(&str, bool, i64, &str)> = history
        .iter()
        .map(|c| (c.audience_id.as_str(), c.entered, c.at, c.cause.as_str()))
        .collect();
    let left = format!("m-{}", T0 + 5);
    let entered_cart = format!("m-{}", T0 + 1);
    let entered_vip = format!("m-{T0}");
    assert_eq!(
        seen,
        vec![
            ("cart", false, T0 + 5, left.as_str()),
            ("cart", true, T0 + 1, entered_cart.as_str()),
            ("vip", true, T0, entered_vip.as_str()),
        ]
    );
    assert!(history.windows(2).all(|w| w[0].id > w[1].id));
    // The change log reads in order, across workspaces, from a position.
    let all = store.changes_after(0, 100).unwrap();
    assert_eq!(all.len(), 6);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
    let tail = store.changes_after(all[3].id, 100).unwrap();
    assert_eq!(tail, all[4..].to_vec());
    assert_eq!(store.changes_after(0, 2).unwrap(), all[..2].to_vec());
    // A stale step (entering an audience the profile is in) fails and writes nothing at all.
    let stale = AudienceWrite {
        changes: vec![
            change("w1", "new", "p1", true, T0 + 9),
            change("w1", "vip", "p1", true, T0 + 9),
        ],
        cursors: vec![("audiences".into(), 99)],
        ..AudienceWrite::default()
    };
    assert!(matches!(store.record(&stale), Err(StoreError::Conflict(_))));
    let leaving_nothing = AudienceWrite {
        changes: vec![change("w1", "cart", "p1", false, T0 + 9)],
        ..AudienceWrite::default()
    };
    assert!(matches!(
        store.record(&leaving_nothing),
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.member_count("w1", "new").unwrap(), 0);
    assert_eq!(store.audience_cursor("audiences").unwrap(), 0);
    assert_eq!(store.changes_after(0, 100).unwrap(), all);
    // Re-entering after leaving is a new entry.
    entries(store, "w1", "cart", &["p1"], T0 + 10);
    assert_eq!(store.memberships("w1", "p1").unwrap().len(), 2);
}

pub fn computed_values_timers_cursors_and_progress(store: &dyn Store) {
    let value = |p: &str, t: &str, v: Option<serde_json::Value>| ComputedValue {
        workspace_id: "w1".into(),
        profile_id: p.into(),
        trait_id: t.into(),
        value: v,
    };
    store
        .record(&AudienceWrite {
            computed: vec![
                value("p1", "ltv", Some(serde_json::json!(12.5))),
                value("p1", "stage", Some(serde_json::json!("active"))),
                value("p1", "cats", Some(serde_json::json!(["a", "b"]))),
            ],
            timers: vec![
                ("w1".into(), "p1".into(), Some(T0 + 30)),
                ("w1".into(), "p2".into(), Some(T0 + 10)),
                ("w2".into(), "p1".into(), Some(T0 + 20)),
                ("w1".into(), "p3".into(), Some(T0 + 40)),
            ],
            cursors: vec![("audiences".into(), 42), ("sync:hook".into(), 7)],
            ..AudienceWrite::default()
        })
        .unwrap();
    let values = store.computed_values("w1", "p1").unwrap();
    assert_eq!(values["ltv"], serde_json::json!(12.5));
    assert_eq!(values["cats"], serde_json::json!(["a", "b"]));
    assert!(store.computed_values("w2", "p1").unwrap().is_empty());
    let due: Vec<(String, String, i64)> = store
        .due_timers(T0 + 30, 10)
        .unwrap()
        .into_iter()
        .map(|t| (t.workspace_id, t.profile_id, t.due_at))
        .collect();
    assert_eq!(
        due,
        vec![
            ("w1".into(), "p2".into(), T0 + 10),
            ("w2".into(), "p1".into(), T0 + 20),
            ("w1".into(), "p1".into(), T0 + 30),
        ]
    );
    assert_eq!(store.due_timers(T0 + 30, 1).unwrap().len(), 1);
    assert_eq!(store.timer_of("w1", "p3").unwrap(), Some(T0 + 40));
    assert_eq!(store.timer_of("w2", "p3").unwrap(), None);
    assert_eq!(store.audience_cursor("audiences").unwrap(), 42);
    assert_eq!(store.audience_cursor("sync:hook").unwrap(), 7);
    assert_eq!(store.audience_cursor("never").unwrap(), 0);
    // Updating and removing values; moving and clearing timers; moving cursors.
    store
        .record(&AudienceWrite {
            computed: vec![
                value("p1", "ltv", Some(serde_json::json!(20))),
                value("p1", "stage", None),
            ],
            timers: vec![
                ("w1".into(), "p2".into(), None),
                ("w1".into(), "p1".into(), Some(T0 + 100)),
            ],
            cursors: vec![("audiences".into(), 50)],
            ..AudienceWrite::default()
        })
        .unwrap();
    let values = store.computed_values("w1", "p1").unwrap();
    assert_eq!(values.len(), 2);
    assert_eq!(values["ltv"], serde_json::json!(20));
    let due: Vec<String> = store
        .due_timers(T0 + 100, 10)
        .unwrap()
        .into_iter()
        .map(|t| format!("{}/{}", t.workspace_id, t.profile_id))
        .collect();
    assert_eq!(due, vec!["w2/p1", "w1/p3", "w1/p1"]);
    assert_eq!(store.timer_of("w1", "p2").unwrap(), None);
    assert_eq!(store.audience_cursor("audiences").unwrap(), 50);
    // A replay marks every definition to be computed again and keeps what the computation
    // compares with: memberships, values, timers, the change log and the cursors.
    store
        .put_definition(&definition("w1", DefinitionKind::Audience, "vip", 3))
        .unwrap();
    entries(store, "w1", "vip", &["p1"], T0);
    store
        .record(&AudienceWrite {
            progress: vec![("w1".into(), DefinitionKind::Audience, "vip".into(), 3, 1, 1)],
            ..AudienceWrite::default()
        })
        .unwrap();
    let changes = store.changes_after(0, 100).unwrap().len();
    store.reset_audiences().unwrap();
    assert_eq!(store.member_count("w1", "vip").unwrap(), 1);
    assert_eq!(store.changes_after(0, 100).unwrap().len(), changes);
    assert_eq!(store.computed_values("w1", "p1").unwrap().len(), 2);
    assert_eq!(store.timer_of("w1", "p1").unwrap(), Some(T0 + 100));
    assert_eq!(store.audience_cursor("audiences").unwrap(), 50);
    let d = &store.definitions(Some("w1")).unwrap()[0];
    assert_eq!((d.version, d.computed_version, d.done), (3, 0, 0));
    // None of these ids is a live profile: all are orphans, in id order, paged.
    assert_eq!(store.orphans("w1", "", 10).unwrap(), vec!["p1", "p3"]);
    assert_eq!(store.orphans("w1", "p1", 10).unwrap(), vec!["p3"]);
    assert_eq!(store.orphans("w1", "", 1).unwrap(), vec!["p1"]);
    assert_eq!(store.orphans("w2", "", 10).unwrap(), vec!["p1"]);
    let profile = sample_profile("p1");
    store
        .transact(&mut |tx| tx.save_profile("w1", &profile, T0))
        .unwrap();
    assert_eq!(store.orphans("w1", "", 10).unwrap(), vec!["p3"]);
    store
        .transact(&mut |tx| tx.redirect_profile("w1", "p1", "p9", T0))
        .unwrap();
    assert_eq!(store.orphans("w1", "", 10).unwrap(), vec!["p1", "p3"]);
}

/// A profile document with nothing in it, under `id`.
fn sample_profile(id: &str) -> Profile {
    let key = serde_json::json!({"ts": T0, "mid": "m1"});
    serde_json::from_value(serde_json::json!({
        "id": id, "identifiers": [], "traits": {}, "consent": {}, "channels": {},
        "first": key, "last": key, "last_channel": "web", "events": 1, "entangled": false,
    }))
    .expect("a profile document")
}

/// The journal of reshaped and retired profiles is kept in order, across workspaces, and a
/// replay empties it without reusing its positions.
pub fn reshaped_profiles_are_journaled_in_order(store: &dyn Store) {
    store
        .transact(&mut |tx| {
            tx.note_reshaped(
                "w1",
                &[
                    Reshaped::profile("a", 7, "m7"),
                    Reshaped::profile("b", 7, "m7"),
                    Reshaped::retired("c", Some("a"), 7, "m7"),
                    Reshaped::retired("d", None, 0, "undo"),
                ],
                T0,
            )?;
            tx.note_reshaped("w2", &[Reshaped::profile("a", 9, "m9")], T0 + 1)
        })
        .unwrap();
    let rows = store.reshaped_after(0, 10).unwrap();
    let seen: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{} {} {:?} {} {} {}",
                r.workspace_id, r.profile_id, r.successor, r.retired, r.seq, r.cause
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            "w1 a None false 7 m7",
            "w1 b None false 7 m7",
            "w1 c Some(\"a\") true 7 m7",
            "w1 d None true 0 undo",
            "w2 a None false 9 m9",
        ]
    );
    assert!(rows.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(rows[4].at, T0 + 1);
    let after = store.reshaped_after(rows[1].id, 2).unwrap();
    assert_eq!(after.len(), 2);
    assert_eq!(after[0].profile_id, "c");
    // Nothing written when the transaction fails.
    let failed = store.transact(&mut |tx| {
        tx.note_reshaped("w1", &[Reshaped::profile("z", 1, "m1")], T0)?;
        Err(StoreError::Conflict("abandoned".into()))
    });
    assert!(failed.is_err());
    assert_eq!(store.reshaped_after(rows[4].id, 10).unwrap(), vec![]);
    let last = rows[4].id;
    // The processor followed the first two: they go, the rest stay.
    assert_eq!(store.prune_reshaped(rows[1].id).unwrap(), 2);
    assert_eq!(store.reshaped_after(0, 10).unwrap()[0].profile_id, "c");
    assert_eq!(store.prune_reshaped(rows[1].id).unwrap(), 0);
    store.transact(&mut |tx| tx.reset_all()).unwrap();
    assert!(store.reshaped_after(0, 10).unwrap().is_empty());
    store
        .transact(&mut |tx| tx.note_reshaped("w1", &[Reshaped::profile("e", 1, "m1")], T0))
        .unwrap();
    assert!(store.reshaped_after(0, 10).unwrap()[0].id > last);
}

pub fn destinations_keep_their_cursor_until_deleted(store: &dyn Store) {
    let dest = DefinitionKind::Destination;
    store
        .put_definition(&definition("w1", dest, "crm", 1))
        .unwrap();
    store
        .put_definition(&definition("w2", dest, "crm", 1))
        .unwrap();
    entries(store, "w1", "vip", &["p1", "p2"], T0);
    let (w1, w2) = (
        destination_cursor("w1", "crm"),
        destination_cursor("w2", "crm"),
    );
    assert_ne!(w1, w2);
    let last = store.changes_after(0, 10).unwrap().last().unwrap().id;
    store
        .record(&AudienceWrite {
            cursors: vec![(w1.clone(), last), (w2.clone(), last)],
            ..AudienceWrite::default()
        })
        .unwrap();
    // A new version of the destination keeps its place in the change log.
    store
        .put_definition(&definition("w1", dest, "crm", 2))
        .unwrap();
    assert_eq!(store.audience_cursor(&w1).unwrap(), last);
    let kinds: Vec<_> = store
        .definitions(Some("w1"))
        .unwrap()
        .iter()
        .map(|d| d.kind)
        .collect();
    assert_eq!(kinds, vec![dest]);
    // Deleting it forgets its place (a new one starts from the beginning), and nothing else.
    assert!(store.delete_definition("w1", dest, "crm").unwrap());
    assert_eq!(store.audience_cursor(&w1).unwrap(), 0);
    assert_eq!(store.audience_cursor(&w2).unwrap(), last);
    assert_eq!(store.member_count("w1", "vip").unwrap(), 2);
    assert_eq!(store.changes_after(0, 10).unwrap().len(), 2);
}

fn named(mid: &str, user: &str, kind: EventType, event: Option<&str>, ts: i64) -> AcceptedEvent {
    AcceptedEvent {
        kind,
        event: event.map(str::to_string),
        ..accepted(mid, user, ts)
    }
}

/// Track, page, track, screen and track events of u1, u1, u2, u2 and u3 (m1 to m5).
fn five_named_events() -> Vec<AcceptedEvent> {
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

pub fn audience_inputs_read_a_page_of_profiles_at_once(store: &dyn Store) {
    setup(store, &["ws_a"]);
    let mut events = five_named_events();
    events.push(accepted("m6", "u1", T0 + 5));
    store.append(&[batch("ws_a", events)], 0).unwrap();
    let (graph, stored) = profile_from(store, "ws_a", &["m6"]);
    let template = graph.profiles.values().next().unwrap().clone();
    // p3 (u3) was merged into p1: its events are p1's.
    let owners = ["p1", "p1", "p2", "p2", "p3", "p1"];
    let seqs: Vec<i64> = ["m1", "m2", "m3", "m4", "m5"]
        .iter()
        .map(|m| store.event_by_message_id("ws_a", m).unwrap().unwrap().seq)
        .chain([stored[0].seq])
        .collect();
    store
        .transact(&mut |tx| {
            for id in ["p1", "p2", "p3"] {
                let mut p = template.clone();
                p.id = id.into();
                tx.save_profile("ws_a", &p, T0)?;
            }
            for (seq, owner) in seqs.iter().zip(owners) {
                tx.assign("ws_a", *seq, owner)?;
            }
            tx.redirect_profile("ws_a", "p3", "p1", T0)?;
            Ok(())
        })
        .unwrap();
    store
        .record(&AudienceWrite {
            changes: vec![change("ws_a", "vip", "p1", true, T0)],
            computed: vec![ComputedValue {
                workspace_id: "ws_a".into(),
                profile_id: "p1".into(),
                trait_id: "ltv".into(),
                value: Some(serde_json::json!(12.5)),
            }],
            timers: vec![("ws_a".into(), "p2".into(), Some(T0 + 9))],
            ..AudienceWrite::default()
        })
        .unwrap();
    let name = |e: &StoredEvent| match e.kind {
        EventType::Track => e.event.clone(),
        EventType::Page => Some("Page Viewed".to_string()),
        EventType::Screen => Some("Screen Viewed".to_string()),
        _ => None,
    };
    let ids: Vec<String> = ["p1", "p2", "nobody"].map(String::from).to_vec();
    for names in [
        vec!["Order Completed".to_string(), "Page Viewed".to_string()],
        vec!["Screen Viewed".to_string(), "Product Viewed".to_string()],
        vec![],
    ] {
        let got = store
            .audience_inputs("ws_a", &ids, &names, 0, true)
            .unwrap();
        let mut asked: Vec<&String> = ids.iter().collect();
        asked.sort();
        assert_eq!(got.keys().collect::<Vec<_>>(), asked);
        for id in &ids {
            // The same as reading the profile alone.
            let expected = AudienceInputs {
                events: store
                    .timeline("ws_a", id, None, 100)
                    .unwrap()
                    .into_iter()
                    .filter(|e| name(e).is_some_and(|n| names.contains(&n)))
                    .collect(),
                computed: store.computed_values("ws_a", id).unwrap(),
                memberships: store
                    .memberships("ws_a", id)
                    .unwrap()
                    .into_iter()
                    .map(|m| m.audience_id)
                    .collect(),
                timer: store.timer_of("ws_a", id).unwrap(),
                ..AudienceInputs::default()
            };
            assert_eq!(got[id], expected, "{id} with {names:?}");
        }
        let p1: Vec<&str> = got["p1"]
            .events
            .iter()
            .map(|e| e.message_id.as_str())
            .collect();
        match names.len() {
            0 => assert!(p1.is_empty()),
            2 if names[0] == "Order Completed" => assert_eq!(p1, vec!["m5", "m2", "m1"]),
            _ => assert_eq!(
                got["p2"]
                    .events
                    .iter()
                    .map(|e| e.message_id.as_str())
                    .collect::<Vec<_>>(),
                vec!["m4", "m3"]
            ),
        }
    }
    let got = store.audience_inputs("ws_a", &ids, &[], 0, true).unwrap();
    assert_eq!(got["p1"].memberships, vec!["vip".to_string()]);
    assert_eq!(got["p1"].computed["ltv"], serde_json::json!(12.5));
    assert_eq!(got["p2"].timer, Some(T0 + 9));
    assert_eq!(got["nobody"], AudienceInputs::default());
    // Without timers, the rest is the same.
    let without = store.audience_inputs("ws_a", &ids, &[], 0, false).unwrap();
    assert_eq!(without["p2"].timer, None);
    assert_eq!(without["p1"].memberships, got["p1"].memberships);
    assert_eq!(
        store.timers_page("ws_a", "", 10).unwrap(),
        vec![("p2".to_string(), T0 + 9)]
    );
    assert!(store.timers_page("ws_a", "p2", 10).unwrap().is_empty());

    // A caller holding the events up to m3 gets their sequence numbers (of any name, merged
    // profiles included) and reads only the later ones.
    let names = vec!["Order Completed".to_string(), "Screen Viewed".to_string()];
    let got = store
        .audience_inputs("ws_a", &ids, &names, seqs[2], true)
        .unwrap();
    assert_eq!(got["p1"].known, vec![seqs[0], seqs[1]]);
    assert_eq!(got["p2"].known, vec![seqs[2]]);
    let read = |id: &str| -> Vec<String> {
        got[id]
            .events
            .iter()
            .map(|e| e.message_id.clone())
            .collect()
    };
    assert_eq!(read("p1"), vec!["m5"]);
    assert_eq!(read("p2"), vec!["m4"]);
    assert_eq!(got["p1"].memberships, vec!["vip".to_string()]);
    assert_eq!(got["nobody"], AudienceInputs::default());
}

pub fn profiles_and_event_owners_read_in_storage_order(store: &dyn Store) {
    setup(store, &["ws_a", "ws_b"]);
    let events: Vec<AcceptedEvent> = (0..7)
        .map(|i| accepted(&format!("m{i}"), &format!("u{i}"), T0 + i))
        .collect();
    store
        .append(&[batch("ws_a", events.clone()), batch("ws_b", events)], 0)
        .unwrap();
    let (graph, _) = profile_from(store, "ws_a", &["m0"]);
    let template = graph.profiles.values().next().unwrap().clone();
    let seqs: Vec<i64> = (0..7)
        .map(|i| {
            store
                .event_by_message_id("ws_a", &format!("m{i}"))
                .unwrap()
                .unwrap()
                .seq
        })
        .collect();
    // Five profiles, q1 and q3 merged into q0 and q4; events spread over them.
    let owners = ["q0", "q1", "q1", "q2", "q3", "q4", "q4"];
    store
        .transact(&mut |tx| {
            for ws in ["ws_a", "ws_b"] {
                for id in ["q4", "q0", "q3", "q1", "q2"] {
                    let mut p = template.clone();
                    p.id = id.into();
                    tx.save_profile(ws, &p, T0)?;
                }
            }
            for (seq, owner) in seqs.iter().zip(owners) {
                tx.assign("ws_a", *seq, owner)?;
            }
            tx.redirect_profile("ws_a", "q1", "q0", T0)?;
            tx.redirect_profile("ws_a", "q3", "q4", T0)?;
            Ok(())
        })
        .unwrap();
    // Read in pages of 2 until a short page.
    let all_profiles = |merged: bool| {
        let (mut position, mut out) = (String::new(), Vec::new());
        loop {
            let (rows, next) = store
                .profiles_in_storage_order("ws_a", &position, (0, 2), merged)
                .unwrap();
            let end = rows.len() < 2;
            out.extend(rows);
            position = next;
            if end {
                break;
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    };
    let live = all_profiles(false);
    assert_eq!(
        live.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        vec!["q0", "q2", "q4"]
    );
    for r in &live {
        assert_eq!(r.merged_into, None);
        assert_eq!(
            r.profile.as_ref().map(|p| p.id.as_str()),
            Some(r.id.as_str())
        );
    }
    // A page can skip rows: two threads read consecutive pages.
    let (whole, _) = store
        .profiles_in_storage_order("ws_a", "", (0, 10), false)
        .unwrap();
    let (rest, _) = store
        .profiles_in_storage_order("ws_a", "", (1, 10), false)
        .unwrap();
    assert_eq!(whole.len(), 3);
    assert_eq!(rest, whole[1..].to_vec());
    let merged = all_profiles(true);
    assert_eq!(
        merged
            .iter()
            .map(|r| (r.id.as_str(), r.merged_into.as_deref(), r.profile.is_none()))
            .collect::<Vec<_>>(),
        vec![("q1", Some("q0"), true), ("q3", Some("q4"), true)]
    );
    // Two ranges, as two threads read them: the profiles before q2, and q2 onwards; pages
    // of two events.
    let mut owned = Vec::new();
    for (start, until) in [(String::new(), Some("q2")), (owners_start("q2"), None)] {
        let mut position = start;
        loop {
            let mut page = Vec::new();
            let (n, next) = store
                .event_owners("ws_a", &position, until, 2, &mut |p, seq| {
                    page.push((p.to_string(), seq))
                })
                .unwrap();
            assert_eq!(n, page.len());
            assert!(page
                .iter()
                .all(|(p, _)| until.is_none_or(|u| p.as_str() < u)));
            owned.extend(page);
            position = next;
            if n < 2 {
                break;
            }
        }
    }
    // Each event once, by its owner (q0 and q1 before q2: three of the seven).
    assert_eq!(owned.len(), 7);
    assert_eq!(owned.iter().filter(|(p, _)| p.as_str() < "q2").count(), 3);
    owned.sort_by_key(|(_, seq)| *seq);
    let expected: Vec<(String, i64)> = owners
        .iter()
        .zip(&seqs)
        .map(|(o, s)| (o.to_string(), *s))
        .collect();
    assert_eq!(owned, expected);
    // Another workspace's rows are not read.
    let (count, _) = store
        .event_owners("ws_b", "", None, 10, &mut |_, _| {
            panic!("ws_b has no owners")
        })
        .unwrap();
    assert_eq!(count, 0);
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
