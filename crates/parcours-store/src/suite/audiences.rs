//! Conformance of the audiences port: definitions, memberships, computed values, cursors, inputs.

use parcours_core::spec::EventType;

use super::*;

pub(super) fn definition(ws: &str, kind: DefinitionKind, id: &str, version: i64) -> Definition {
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

pub(super) fn change(
    ws: &str,
    audience: &str,
    profile: &str,
    entered: bool,
    at: i64,
) -> MembershipChange {
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

pub(super) fn entries(store: &dyn Store, ws: &str, audience: &str, profiles: &[&str], at: i64) {
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
            progress: vec![ComputationProgress {
                workspace_id: "w1".into(),
                kind: aud,
                id: "vip".into(),
                computed_version: 1,
                done: 10,
                total: 10,
            }],
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
        cursors: vec![CursorMove::new("audiences", 99)],
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
                ReevaluationTimer::new("w1", "p1", Some(T0 + 30)),
                ReevaluationTimer::new("w1", "p2", Some(T0 + 10)),
                ReevaluationTimer::new("w2", "p1", Some(T0 + 20)),
                ReevaluationTimer::new("w1", "p3", Some(T0 + 40)),
            ],
            cursors: vec![
                CursorMove::new("audiences", 42),
                CursorMove::new("sync:hook", 7),
            ],
            ..AudienceWrite::default()
        })
        .unwrap();
    let values = store.computed_values("w1", "p1").unwrap();
    assert_eq!(values["ltv"], serde_json::json!(12.5));
    assert_eq!(values["cats"], serde_json::json!(["a", "b"]));
    assert!(store.computed_values("w2", "p1").unwrap().is_empty());
    let due: Vec<(String, String, i64)> = store
        .due_timers(T0 + 30, &WorkScope::everything(), 10)
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
    assert_eq!(
        store
            .due_timers(T0 + 30, &WorkScope::everything(), 1)
            .unwrap()
            .len(),
        1
    );
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
                ReevaluationTimer::new("w1", "p2", None),
                ReevaluationTimer::new("w1", "p1", Some(T0 + 100)),
            ],
            cursors: vec![CursorMove::new("audiences", 50)],
            ..AudienceWrite::default()
        })
        .unwrap();
    let values = store.computed_values("w1", "p1").unwrap();
    assert_eq!(values.len(), 2);
    assert_eq!(values["ltv"], serde_json::json!(20));
    let due: Vec<String> = store
        .due_timers(T0 + 100, &WorkScope::everything(), 10)
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
            progress: vec![ComputationProgress {
                workspace_id: "w1".into(),
                kind: DefinitionKind::Audience,
                id: "vip".into(),
                computed_version: 3,
                done: 1,
                total: 1,
            }],
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
            cursors: vec![
                CursorMove::new(w1.clone(), last),
                CursorMove::new(w2.clone(), last),
            ],
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
            timers: vec![ReevaluationTimer::new("ws_a", "p2", Some(T0 + 9))],
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

/// An audience write is refused, with nothing written, when its node lost a lease it works
/// on or a definition it evaluated changed; re-evaluation timers are taken per bucket.
pub fn audience_writes_are_fenced_and_guarded(store: &dyn Store) {
    store
        .put_definition(&definition("w1", DefinitionKind::Audience, "vip", 1))
        .unwrap();
    store
        .put_definition(&definition("w1", DefinitionKind::Destination, "hook", 1))
        .unwrap();
    let seen = |version: i64, computed: bool| DefinitionsSeen {
        workspace_id: "w1".into(),
        definitions: vec![DefinitionVersion {
            kind: DefinitionKind::Audience,
            id: "vip".into(),
            version,
            computed,
        }],
    };
    let write = |fence: Option<Fence>, seen: Vec<DefinitionsSeen>| AudienceWrite {
        changes: vec![change("w1", "vip", "p1", true, T0)],
        fence,
        definitions_seen: seen,
        ..AudienceWrite::default()
    };
    // Not computed yet: a write that needs it computed is refused, one that does not passes
    // (destinations do not count).
    assert!(matches!(
        store.record(&write(None, vec![seen(1, true)])),
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.member_count("w1", "vip").unwrap(), 0);
    store.record(&write(None, vec![seen(1, false)])).unwrap();
    assert_eq!(store.member_count("w1", "vip").unwrap(), 1);
    // A new version was saved meanwhile.
    store
        .put_definition(&definition("w1", DefinitionKind::Audience, "vip", 2))
        .unwrap();
    let exit = AudienceWrite {
        changes: vec![change("w1", "vip", "p1", false, T0)],
        definitions_seen: vec![seen(1, false)],
        ..AudienceWrite::default()
    };
    assert!(matches!(store.record(&exit), Err(StoreError::Conflict(_))));
    assert_eq!(store.member_count("w1", "vip").unwrap(), 1);
    // A definition added meanwhile.
    store
        .put_definition(&definition("w1", DefinitionKind::ComputedTrait, "ltv", 1))
        .unwrap();
    let exit = AudienceWrite {
        definitions_seen: vec![seen(2, false)],
        ..exit
    };
    assert!(matches!(store.record(&exit), Err(StoreError::Conflict(_))));
    // Leases: only the holder writes.
    let held = store.balance_leases("n1", 2, T0, T0 + 10_000).unwrap();
    assert_eq!(held, vec![0, 1]);
    let fence = |node: &str, buckets: Vec<u16>, now: i64| {
        Some(Fence {
            node: node.into(),
            buckets,
            now,
        })
    };
    let leave = |fence: Option<Fence>| AudienceWrite {
        changes: vec![change("w1", "vip", "p1", false, T0)],
        fence,
        ..AudienceWrite::default()
    };
    for refused in [
        fence("n2", vec![0], T0),
        fence("n1", vec![0, 2], T0),
        fence("n1", vec![0], T0 + 10_001),
    ] {
        assert!(matches!(
            store.record(&leave(refused)),
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(store.member_count("w1", "vip").unwrap(), 1);
    }
    store.record(&leave(fence("n1", vec![0, 1], T0))).unwrap();
    assert_eq!(store.member_count("w1", "vip").unwrap(), 0);
    // Timers are kept in their profile's bucket.
    let profiles: Vec<String> = (0..40).map(|i| format!("p{i}")).collect();
    store
        .record(&AudienceWrite {
            timers: profiles
                .iter()
                .map(|p| ReevaluationTimer::new("w1", p.clone(), Some(T0)))
                .collect(),
            ..AudienceWrite::default()
        })
        .unwrap();
    let bucket = profile_bucket("w1", "p7");
    let due: Vec<String> = store
        .due_timers(
            T0,
            &WorkScope {
                buckets: vec![bucket],
                ..WorkScope::default()
            },
            100,
        )
        .unwrap()
        .into_iter()
        .map(|t| t.profile_id)
        .collect();
    let expected: Vec<String> = profiles
        .iter()
        .filter(|p| profile_bucket("w1", p) == bucket)
        .cloned()
        .collect();
    assert!(due.contains(&"p7".to_string()));
    let mut sorted = due.clone();
    sorted.sort();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    assert_eq!(sorted, expected_sorted);
    let except = store
        .due_timers(
            T0,
            &WorkScope {
                buckets: parcours_core::bucket::all(),
                except: vec!["w1".into()],
                ..WorkScope::default()
            },
            100,
        )
        .unwrap();
    assert!(except.is_empty());
    let whole = store
        .due_timers(
            T0,
            &WorkScope {
                whole: vec!["w1".into()],
                ..WorkScope::default()
            },
            100,
        )
        .unwrap();
    assert_eq!(whole.len(), 40);
}
