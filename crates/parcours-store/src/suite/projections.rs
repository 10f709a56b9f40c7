//! Conformance of the projections port: the identity graph and profiles.

use parcours_core::identifier::Identifier;
use parcours_core::observation::Observation;
use parcours_core::rules::IdentityRules;
use parcours_core::spec::AcceptedEvent;
use parcours_core::{Graph, MergeRecord, Profile};

use super::*;

/// Builds a real profile through the core graph from stored events.
pub(super) fn profile_from(
    store: &dyn Store,
    ws: &str,
    mids: &[&str],
) -> (Graph, Vec<StoredEvent>) {
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
    let mut before = -1;
    store
        .transact(&mut |tx| {
            assert_eq!(tx.cursor()?, 0);
            assert!(!tx.has_drops("ws_a")?);
            let epoch = tx.epoch()?;
            before = epoch;
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
        store.projections_epoch().unwrap(),
        before + 1,
        "the epoch reads apart as committed"
    );
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

/// A profile document with nothing in it, under `id`.
pub(super) fn sample_profile(id: &str) -> Profile {
    let key = serde_json::json!({"ts": T0, "mid": "m1"});
    serde_json::from_value(serde_json::json!({
        "id": id, "identifiers": [], "traits": {}, "consent": {}, "channels": {},
        "first": key, "last": key, "last_channel": "web", "events": 1, "entangled": false,
    }))
    .expect("a profile document")
}

/// Profiles queued for audience evaluation: one row per profile folding what was queued,
/// taken per bucket (plus whole workspaces, minus others), the longest waiting first; an
/// evaluation settles a row only if nothing was queued since; nothing is queued when the
/// transaction fails; a replay empties the queue; versions never repeat.
pub fn audience_work_is_queued_per_profile_and_settled_once(store: &dyn Store) {
    let every = WorkScope::everything();
    // Only a workspace with an audience or a computed trait evaluates anything.
    let evaluates = |ws: &str| {
        let mut answer = false;
        store
            .transact(&mut |tx| {
                answer = tx.evaluates_audiences(ws)?;
                Ok(())
            })
            .unwrap();
        answer
    };
    let definition = |kind: DefinitionKind, id: &str| Definition {
        workspace_id: "w1".into(),
        kind,
        id: id.into(),
        doc: serde_json::json!({}),
        version: 1,
        computed_version: 0,
        done: 0,
        total: 0,
        created_at: T0,
        updated_at: T0,
    };
    assert!(!evaluates("w1"));
    store
        .put_definition(&definition(DefinitionKind::Destination, "hook"))
        .unwrap();
    assert!(!evaluates("w1"));
    store
        .put_definition(&definition(DefinitionKind::ComputedTrait, "ltv"))
        .unwrap();
    assert!(evaluates("w1"));
    assert!(!evaluates("w2"));
    store
        .transact(&mut |tx| {
            tx.queue_audience_work(
                "w1",
                &[
                    QueuedProfile::event("a", 7, Some("Viewed"), "m7"),
                    QueuedProfile::event("b", 8, None, "m8"),
                    QueuedProfile::event("a", 9, Some("Added"), "m9"),
                    QueuedProfile::retired("c", 0, "undo"),
                ],
                T0,
            )?;
            tx.queue_audience_work("w2", &[QueuedProfile::reshaped("a", 3, "m3")], T0 + 1)
        })
        .unwrap();
    let rows = store.audience_work(&every, 10).unwrap();
    let seen: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{} {} {:?} {} {} {} {}",
                r.workspace_id,
                r.profile_id,
                r.names,
                r.everything,
                r.retired,
                r.first_seq,
                r.cause
            )
        })
        .collect();
    // An undo names no event (0): it waits behind none.
    assert_eq!(
        seen,
        vec![
            "w1 c [] true true 0 undo",
            "w2 a [] true false 3 m3",
            "w1 a [\"Added\", \"Viewed\"] false false 7 m9",
            "w1 b [] false false 8 m8",
        ]
    );
    for r in &rows {
        assert_eq!(r.bucket, profile_bucket(&r.workspace_id, &r.profile_id));
    }
    assert_eq!(rows[1].at, T0 + 1);
    assert_eq!(store.earliest_audience_work().unwrap(), Some(0));
    assert_eq!(store.audience_work(&every, 2).unwrap().len(), 2);
    // Scopes: a bucket; a whole workspace; a workspace left out.
    let a1 = rows
        .iter()
        .find(|r| r.workspace_id == "w1" && r.profile_id == "a")
        .unwrap();
    let only = |scope: WorkScope| -> Vec<String> {
        store
            .audience_work(&scope, 10)
            .unwrap()
            .into_iter()
            .map(|r| format!("{}/{}", r.workspace_id, r.profile_id))
            .collect()
    };
    let mut expected: Vec<String> = rows
        .iter()
        .filter(|r| r.bucket == a1.bucket)
        .map(|r| format!("{}/{}", r.workspace_id, r.profile_id))
        .collect();
    assert!(expected.contains(&"w1/a".to_string()));
    assert_eq!(
        only(WorkScope {
            buckets: vec![a1.bucket],
            ..WorkScope::default()
        }),
        expected
    );
    let whole = only(WorkScope {
        whole: vec!["w2".into()],
        ..WorkScope::default()
    });
    assert_eq!(whole, vec!["w2/a"]);
    expected.retain(|r| r.starts_with("w2/"));
    assert_eq!(
        only(WorkScope {
            buckets: vec![a1.bucket],
            except: vec!["w1".into()],
            ..WorkScope::default()
        }),
        expected
    );
    // More comes in for `a` while it is evaluated: settling the version read leaves it.
    store
        .transact(&mut |tx| {
            tx.queue_audience_work(
                "w1",
                &[QueuedProfile::event("a", 12, Some("Paid"), "m12")],
                T0 + 2,
            )
        })
        .unwrap();
    let settle = |ws: &str, r: &AudienceWork| SettledWork {
        workspace_id: ws.into(),
        profile_id: r.profile_id.clone(),
        version: r.version,
    };
    store
        .record(&AudienceWrite {
            settled: rows.iter().map(|r| settle(&r.workspace_id, r)).collect(),
            ..AudienceWrite::default()
        })
        .unwrap();
    let left = store.audience_work(&every, 10).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(
        (
            left[0].profile_id.as_str(),
            left[0].first_seq,
            left[0].cause.as_str()
        ),
        ("a", 7, "m12")
    );
    assert_eq!(left[0].names, vec!["Added", "Paid", "Viewed"]);
    assert!(left[0].version > a1.version);
    store
        .record(&AudienceWrite {
            settled: vec![settle("w1", &left[0])],
            ..AudienceWrite::default()
        })
        .unwrap();
    assert!(store.audience_work(&every, 10).unwrap().is_empty());
    assert_eq!(store.earliest_audience_work().unwrap(), None);
    // Queued again after it was settled: a new version, never one seen before.
    store
        .transact(&mut |tx| {
            tx.queue_audience_work("w1", &[QueuedProfile::event("a", 13, None, "m13")], T0)
        })
        .unwrap();
    let again = store.audience_work(&every, 10).unwrap();
    assert!(again[0].version > left[0].version);
    store
        .record(&AudienceWrite {
            settled: vec![settle("w1", a1)],
            ..AudienceWrite::default()
        })
        .unwrap();
    assert_eq!(store.audience_work(&every, 10).unwrap().len(), 1);
    // Nothing queued when the transaction fails.
    let failed = store.transact(&mut |tx| {
        tx.queue_audience_work("w1", &[QueuedProfile::event("z", 1, None, "m1")], T0)?;
        Err(StoreError::Conflict("abandoned".into()))
    });
    assert!(failed.is_err());
    assert_eq!(store.audience_work(&every, 10).unwrap().len(), 1);
    store.transact(&mut |tx| tx.reset_all()).unwrap();
    assert!(store.audience_work(&every, 10).unwrap().is_empty());
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
