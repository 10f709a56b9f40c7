use serde_json::json;

use super::*;

fn version(ws: &str, id: &str, replaces: Option<u32>, source: &str, at: i64) -> NewJourneyVersion {
    NewJourneyVersion {
        workspace_id: ws.into(),
        journey_id: id.into(),
        replaces,
        source: source.into(),
        doc: json!({"id": id, "source": source, "nested": {"list": [1, 2.5, "é"]}}),
        status: "draft".into(),
        in_flight: "stay".into(),
        created_at: at,
    }
}

/// Versions are numbered from 1, read back byte for byte, and a writer that did not see the
/// latest version is refused.
pub fn journey_versions_append_and_refuse_stale_writers(store: &dyn Store) {
    setup(store, &["w1", "w2"]);
    let yaml = "id: cart\n# a comment kept as written\nsteps: []  \n";
    assert_eq!(
        store
            .put_journey_version(&version("w1", "cart", None, yaml, T0))
            .unwrap(),
        1
    );
    // A second "new" journey with the same id is refused.
    assert!(matches!(
        store.put_journey_version(&version("w1", "cart", None, "x", T0)),
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store
            .put_journey_version(&version("w1", "cart", Some(1), "v2", T0 + 1))
            .unwrap(),
        2
    );
    // Replacing version 1 again, or a version that does not exist yet: refused.
    for stale in [Some(1), Some(3), Some(7)] {
        assert!(matches!(
            store.put_journey_version(&version("w1", "cart", stale, "late", T0 + 2)),
            Err(StoreError::Conflict(_))
        ));
    }
    // The same id in another workspace is another journey.
    assert_eq!(
        store
            .put_journey_version(&version("w2", "cart", None, "other", T0))
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .put_journey_version(&version("w1", "welcome", None, "w", T0))
            .unwrap(),
        1
    );

    let versions = store.journey_versions("w1", "cart").unwrap();
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        [2, 1]
    );
    assert_eq!(versions[1].source, yaml);
    assert_eq!(versions[1].doc, version("w1", "cart", None, yaml, T0).doc);
    assert_eq!(versions[1].created_at, T0);
    assert_eq!(versions[1].in_flight, "stay");

    let latest = store.journeys(Some("w1")).unwrap();
    let ids: Vec<(&str, u32)> = latest
        .iter()
        .map(|v| (v.journey_id.as_str(), v.version))
        .collect();
    assert_eq!(ids, [("cart", 2), ("welcome", 1)]);
    assert_eq!(store.journeys(None).unwrap().len(), 3);
    assert_eq!(store.journeys(Some("w3")).unwrap(), vec![]);

    let one = store.journey_version("w1", "cart", 1).unwrap().unwrap();
    assert_eq!(one.source, yaml);
    assert_eq!(store.journey_version("w1", "cart", 3).unwrap(), None);
    assert_eq!(store.journey_version("w2", "welcome", 1).unwrap(), None);
}

fn work(ws: &str, seq: i64, profile: &str, bucket: u16) -> JourneyWork {
    JourneyWork {
        workspace_id: ws.into(),
        seq,
        profile_id: profile.into(),
        bucket,
        name: "Product Added".into(),
        message_id: format!("m{seq}"),
        timestamp: T0 + seq,
        body: format!(r#"{{"event":"Product Added","properties":{{"cart_id":"c{seq}"}}}}"#),
    }
}

fn run(ws: &str, id: &str, profile: &str, key: &str, revision: i64, active: bool) -> StoredRun {
    StoredRun {
        workspace_id: ws.into(),
        run_id: id.into(),
        journey_id: "cart".into(),
        version: 1,
        profile_id: profile.into(),
        key: key.into(),
        bucket: 1,
        active,
        state: json!({"state": if active { json!({"state": "waiting", "step": "wait"}) } else { json!({"state": "done"}) }}),
        entered_at: T0,
        ended_at: (!active).then_some(T0 + 5),
        outcome: (!active).then(|| "goal".to_string()),
        revision,
    }
}

/// Unify queues journey work only for workspaces with a live journey; the journey processor
/// takes it per bucket in log order and settles it with the decision it commits.
pub fn journey_work_is_queued_for_live_journeys_and_taken_per_bucket(store: &dyn Store) {
    setup(store, &["w1", "w2"]);
    let live = |store: &dyn Store, ws: &str| {
        let mut out = false;
        store
            .transact(&mut |tx| {
                out = tx.runs_journeys(ws)?;
                Ok(())
            })
            .unwrap();
        out
    };
    assert!(!live(store, "w1"));
    store
        .put_journey_version(&version("w1", "cart", None, "a", T0))
        .unwrap();
    assert!(!live(store, "w1"), "a draft takes no entrants");
    let mut v2 = version("w1", "cart", Some(1), "b", T0);
    v2.status = "live".into();
    store.put_journey_version(&v2).unwrap();
    assert!(live(store, "w1"));
    assert!(!live(store, "w2"));
    let mut v3 = version("w1", "cart", Some(2), "c", T0);
    v3.status = "paused".into();
    store.put_journey_version(&v3).unwrap();
    assert!(!live(store, "w1"), "only the latest version counts");

    store
        .transact(&mut |tx| {
            tx.queue_journey_work(&[
                work("w1", 7, "p1", 1),
                work("w1", 3, "p2", 2),
                work("w2", 5, "p3", 1),
            ])?;
            // Queued twice (a retried batch): kept once.
            tx.queue_journey_work(&[work("w1", 7, "p1", 1)])
        })
        .unwrap();
    let all = store.journey_work(None, 10).unwrap();
    assert_eq!(all.iter().map(|w| w.seq).collect::<Vec<_>>(), [3, 5, 7]);
    assert_eq!(all[2], work("w1", 7, "p1", 1));
    let one = store.journey_work(Some(&[1]), 10).unwrap();
    assert_eq!(one.iter().map(|w| w.seq).collect::<Vec<_>>(), [5, 7]);
    assert_eq!(store.journey_work(Some(&[1]), 1).unwrap().len(), 1);
    assert_eq!(store.journey_work(Some(&[9]), 10).unwrap(), vec![]);
    // A node's page is its own buckets' oldest rows, however many rows of other buckets
    // come before them in the log.
    let others: Vec<JourneyWork> = (100..160).map(|seq| work("w2", seq, "px", 3)).collect();
    store
        .transact(&mut |tx| tx.queue_journey_work(&others))
        .unwrap();
    let page = |buckets: Option<&[u16]>, limit| {
        store
            .journey_work(buckets, limit)
            .unwrap()
            .iter()
            .map(|w| w.seq)
            .collect::<Vec<_>>()
    };
    assert_eq!(page(Some(&[1]), 2), [5, 7]);
    assert_eq!(page(Some(&[3, 2]), 3), [3, 100, 101]);
    assert_eq!(page(None, 4), [3, 5, 7, 100]);
    store
        .record_journeys(&JourneyWrite {
            settled: vec![("w1".into(), 7, "p1".into())],
            ..JourneyWrite::default()
        })
        .unwrap();
    assert_eq!(store.journey_work(Some(&[1]), 10).unwrap().len(), 1);
    // Handed on to the profile p2 was merged into, in that profile's bucket, at once.
    store
        .record_journeys(&JourneyWrite {
            settled: vec![("w1".into(), 3, "p2".into())],
            requeue: vec![work("w1", 3, "p9", 4)],
            ..JourneyWrite::default()
        })
        .unwrap();
    assert_eq!(store.journey_work(Some(&[2]), 10).unwrap(), vec![]);
    assert_eq!(
        store.journey_work(Some(&[4]), 10).unwrap(),
        vec![work("w1", 3, "p9", 4)]
    );
}

/// Runs, their notes, timers and outbox rows commit together, or not at all: a fence that
/// fails, a second run in progress for the same key, or a run written since it was read
/// leaves everything as it was.
pub fn journey_runs_commit_with_their_effects_or_not_at_all(store: &dyn Store) {
    setup(store, &["w1"]);
    store
        .transact(&mut |tx| tx.queue_journey_work(&[work("w1", 1, "p1", 1)]))
        .unwrap();
    let note = |run: &str, code: &str| RunNote {
        workspace_id: "w1".into(),
        run_id: run.into(),
        journey_id: "cart".into(),
        profile_id: "p1".into(),
        at: T0,
        step: Some("wait".into()),
        code: code.into(),
        detail: format!("{code} detail"),
    };
    let timer = |run: &str| NewTimer {
        workspace_id: "w1".into(),
        kind: JOURNEY_TIMERS.into(),
        key: run.into(),
        bucket: 1,
        due_at: T0 + 3_600_000,
        payload: String::new(),
    };
    let outbox = |key: &str| NewOutboxRow {
        workspace_id: "w1".into(),
        destination: "channel:email".into(),
        key: key.into(),
        payload: "{}".into(),
        items: 1,
        not_before: T0,
        created_at: T0,
    };
    let enter = JourneyWrite {
        settled: vec![("w1".into(), 1, "p1".into())],
        runs: vec![run("w1", "r1", "p1", "c1", 0, true)],
        notes: vec![note("r1", "entered"), note("r1", "waiting")],
        set_timers: vec![timer("r1")],
        outbox: vec![outbox("r1:reminder:2")],
        ..JourneyWrite::default()
    };
    // Refused by the fence: nothing of it lands.
    let held = store.balance_leases("n1", 2, T0, T0 + 10_000).unwrap();
    assert_eq!(held, vec![0, 1]);
    let fenced = JourneyWrite {
        fence: Some(Fence {
            node: "n2".into(),
            buckets: vec![1],
            now: T0,
        }),
        ..enter.clone()
    };
    assert!(matches!(
        store.record_journeys(&fenced),
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.run("w1", "r1").unwrap(), None);
    assert_eq!(store.journey_work(None, 10).unwrap().len(), 1);
    assert_eq!(store.timer("w1", JOURNEY_TIMERS, "r1").unwrap(), None);

    store
        .record_journeys(&JourneyWrite {
            fence: Some(Fence {
                node: "n1".into(),
                buckets: vec![1],
                now: T0,
            }),
            ..enter.clone()
        })
        .unwrap();
    let stored = store.run("w1", "r1").unwrap().unwrap();
    assert_eq!(
        stored,
        StoredRun {
            revision: 1,
            ..run("w1", "r1", "p1", "c1", 0, true)
        }
    );
    assert_eq!(store.journey_work(None, 10).unwrap(), vec![]);
    assert_eq!(
        store
            .timer("w1", JOURNEY_TIMERS, "r1")
            .unwrap()
            .unwrap()
            .due_at,
        T0 + 3_600_000
    );
    assert_eq!(
        store.outbox_summary("w1", "channel:email").unwrap().pending,
        1
    );
    let notes = store.run_notes("w1", "r1").unwrap();
    assert_eq!(notes, vec![note("r1", "entered"), note("r1", "waiting")]);

    // A second run in progress for the same journey, customer and key: refused, and the
    // rest of the write with it.
    let twin = JourneyWrite {
        runs: vec![run("w1", "r2", "p1", "c1", 0, true)],
        notes: vec![note("r2", "entered")],
        outbox: vec![outbox("r2:reminder:2")],
        ..JourneyWrite::default()
    };
    assert!(matches!(
        store.record_journeys(&twin),
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.run("w1", "r2").unwrap(), None);
    assert_eq!(store.run_notes("w1", "r2").unwrap(), vec![]);
    assert_eq!(
        store.outbox_summary("w1", "channel:email").unwrap().pending,
        1
    );
    // Another key is another run.
    store
        .record_journeys(&JourneyWrite {
            runs: vec![run("w1", "r3", "p1", "c2", 0, true)],
            ..JourneyWrite::default()
        })
        .unwrap();
    // The same outbox key twice: refused.
    assert!(matches!(
        store.record_journeys(&JourneyWrite {
            outbox: vec![outbox("r1:reminder:2")],
            ..JourneyWrite::default()
        }),
        Err(StoreError::Conflict(_))
    ));

    // A write based on a stale read is refused.
    let mut ended = run("w1", "r1", "p1", "c1", 1, false);
    let stale = JourneyWrite {
        runs: vec![StoredRun {
            revision: 7,
            ..ended.clone()
        }],
        cancel_timers: vec![("w1".into(), "r1".into())],
        ..JourneyWrite::default()
    };
    assert!(matches!(
        store.record_journeys(&stale),
        Err(StoreError::Conflict(_))
    ));
    assert!(store.run("w1", "r1").unwrap().unwrap().active);
    assert!(store.timer("w1", JOURNEY_TIMERS, "r1").unwrap().is_some());
    store
        .record_journeys(&JourneyWrite {
            runs: vec![ended.clone()],
            notes: vec![note("r1", "goal")],
            cancel_timers: vec![("w1".into(), "r1".into())],
            ..JourneyWrite::default()
        })
        .unwrap();
    ended.revision = 2;
    assert_eq!(store.run("w1", "r1").unwrap().unwrap(), ended);
    assert_eq!(store.timer("w1", JOURNEY_TIMERS, "r1").unwrap(), None);
    assert_eq!(
        store.run_notes("w1", "r1").unwrap().last().unwrap().code,
        "goal"
    );

    // Once it ended, the same key can start again.
    let history = store.run_history("w1", "cart", "p1", "c1").unwrap();
    assert_eq!(
        history,
        RunHistory {
            active: false,
            last_entered: Some(T0),
        }
    );
    assert_eq!(store.journey_entries("w1", "cart").unwrap(), 2);
    assert_eq!(store.journey_entries("w1", "other").unwrap(), 0);
    assert!(store.run_history("w1", "cart", "p1", "c2").unwrap().active);
    store
        .record_journeys(&JourneyWrite {
            runs: vec![run("w1", "r4", "p1", "c1", 0, true)],
            ..JourneyWrite::default()
        })
        .unwrap();
    let active: Vec<String> = store
        .active_runs("w1", "p1")
        .unwrap()
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(active, ["r3", "r4"]);
    assert_eq!(store.runs_of("w1", "p1", 10).unwrap().len(), 3);
    assert_eq!(store.runs_of("w1", "p1", 1).unwrap().len(), 1);
    assert_eq!(store.active_runs("w1", "p2").unwrap(), vec![]);
    // Reports group runs by holdout and variant, and count decisions per step.
    let mut held = run("w1", "r5", "p2", "c1", 0, true);
    held.state = json!({"holdout": true, "state": {"state": "waiting", "step": "wait"}});
    let mut variant = run("w1", "r6", "p3", "c1", 0, false);
    variant.state = json!({"holdout": false, "variant": "b", "state": {"state": "done"}});
    store
        .record_journeys(&JourneyWrite {
            runs: vec![held, variant],
            ..JourneyWrite::default()
        })
        .unwrap();
    let stats = store.journey_stats("w1", "cart").unwrap();
    let group = |holdout: bool, variant: Option<&str>| {
        stats
            .groups
            .iter()
            .find(|g| g.holdout == holdout && g.variant.as_deref() == variant)
            .cloned()
            .unwrap_or_else(|| panic!("{stats:?}"))
    };
    let plain = group(false, None);
    assert_eq!(
        (
            plain.entered,
            plain.active,
            plain.converted,
            plain.exited,
            plain.completed
        ),
        (3, 2, 1, 0, 0),
        "{stats:?}"
    );
    assert_eq!(group(true, None).entered, 1);
    assert_eq!(
        (
            group(false, Some("b")).entered,
            group(false, Some("b")).converted
        ),
        (1, 1)
    );
    assert_eq!(stats.groups.len(), 3);
    assert!(stats.groups.iter().all(|g| !g.global_control));
    // Members of the global control group are a group of their own.
    let mut global = run("w1", "r7", "p4", "c1", 0, false);
    global.entered_at = T0 + 9;
    global.outcome = Some("exited".into());
    global.state = json!({"holdout": true, "global_control": true, "state": {"state": "done"}});
    store
        .record_journeys(&JourneyWrite {
            runs: vec![global],
            ..JourneyWrite::default()
        })
        .unwrap();
    let with_global = store.journey_stats("w1", "cart").unwrap();
    assert_eq!(with_global.groups.len(), 4, "{with_global:?}");
    let g = with_global
        .groups
        .iter()
        .find(|g| g.global_control)
        .unwrap();
    assert_eq!(
        (g.holdout, g.entered, g.exited, g.converted),
        (true, 1, 1, 0)
    );
    assert_eq!(
        with_global
            .groups
            .iter()
            .filter(|g| g.holdout && !g.global_control)
            .map(|g| g.entered)
            .sum::<u64>(),
        1,
        "the journey's own holdout keeps its count"
    );
    // Every run, in the order they entered, for the uplift report.
    let entrants = store.journey_entrants("w1", "cart").unwrap();
    assert_eq!(
        entrants.len() as u64,
        store.journey_entries("w1", "cart").unwrap()
    );
    assert!(entrants
        .windows(2)
        .all(|w| w[0].entered_at <= w[1].entered_at));
    let last = entrants.last().unwrap();
    assert_eq!(
        (
            last.profile_id.as_str(),
            last.entered_at,
            last.holdout,
            last.global_control,
            last.converted
        ),
        ("p4", T0 + 9, true, true, false)
    );
    let b = entrants
        .iter()
        .find(|e| e.variant.as_deref() == Some("b"))
        .unwrap();
    assert_eq!(
        (
            b.profile_id.as_str(),
            b.holdout,
            b.global_control,
            b.converted
        ),
        ("p3", false, false, true)
    );
    assert_eq!(
        entrants
            .iter()
            .filter(|e| e.holdout && !e.global_control)
            .count(),
        1
    );
    assert_eq!(
        entrants.iter().filter(|e| e.converted).count() as u64,
        with_global.groups.iter().map(|g| g.converted).sum::<u64>()
    );
    assert_eq!(store.journey_entrants("w1", "other").unwrap(), vec![]);
    assert!(
        stats
            .decisions
            .contains(&(Some("wait".to_string()), "entered".to_string(), 1)),
        "{stats:?}"
    );
    assert!(stats
        .decisions
        .contains(&(Some("wait".to_string()), "goal".to_string(), 1)));
    assert_eq!(
        store.journey_stats("w1", "other").unwrap(),
        JourneyStats::default()
    );
    assert_eq!(
        store.run_counts("w1", "cart").unwrap(),
        RunCounts {
            active: 3,
            ended: 3,
            waiting: vec![("wait".to_string(), 3)]
        }
    );
}

/// Contacts commit with the decision that sends, are read per customer from a moment on, and
/// a workspace's contact policy reads back as saved.
pub fn journey_contacts_and_policy_round_trip(store: &dyn Store) {
    setup(store, &["w1", "w2"]);
    let contact = |profile: &str, at: i64, key: &str| ContactRow {
        workspace_id: "w1".into(),
        profile_id: profile.into(),
        at,
        key: key.into(),
        channel: "email".into(),
        journey_id: "cart".into(),
        priority: 80,
    };
    store
        .record_journeys(&JourneyWrite {
            contacts: vec![
                contact("p1", T0 + 10, "k2"),
                contact("p1", T0, "k1"),
                contact("p2", T0, "k3"),
            ],
            ..JourneyWrite::default()
        })
        .unwrap();
    // A write that fails writes no contact either.
    let fenced = JourneyWrite {
        fence: Some(Fence {
            node: "nobody".into(),
            buckets: vec![0],
            now: T0,
        }),
        contacts: vec![contact("p1", T0 + 20, "k4")],
        ..JourneyWrite::default()
    };
    assert!(matches!(
        store.record_journeys(&fenced),
        Err(StoreError::Conflict(_))
    ));
    let p1 = store.contacts("w1", "p1", 0).unwrap();
    assert_eq!(
        p1,
        vec![contact("p1", T0, "k1"), contact("p1", T0 + 10, "k2")]
    );
    assert_eq!(store.contacts("w1", "p1", T0 + 1).unwrap().len(), 1);
    assert_eq!(store.contacts("w2", "p1", 0).unwrap(), vec![]);

    assert_eq!(store.journey_policy("w1").unwrap(), None);
    let policy =
        json!({"caps": [{"channel": "email", "max": 1, "per": "day"}], "expire_after": "3d"});
    store.put_journey_policy("w1", &policy, T0).unwrap();
    store
        .put_journey_policy("w1", &json!({"caps": []}), T0 + 1)
        .unwrap();
    store.put_journey_policy("w1", &policy, T0 + 2).unwrap();
    assert_eq!(store.journey_policy("w1").unwrap(), Some(policy));
    assert_eq!(store.journey_policy("w2").unwrap(), None);
}

/// A profile merged into another takes its runs along, with their timers, notes and
/// contacts; a run of a journey and key the survivor is already in ends with a note; a run
/// read before the merge is refused, and so is a new run for the merged-away profile.
pub fn journey_runs_follow_a_merged_profile(store: &dyn Store) {
    setup(store, &["w1"]);
    let timer = |kind: &str, key: &str| NewTimer {
        workspace_id: "w1".into(),
        kind: kind.into(),
        key: key.into(),
        bucket: 1,
        due_at: T0 + 3_600_000,
        payload: String::new(),
    };
    let note = |run: &str, profile: &str| RunNote {
        workspace_id: "w1".into(),
        run_id: run.into(),
        journey_id: "cart".into(),
        profile_id: profile.into(),
        at: T0,
        step: None,
        code: "entered".into(),
        detail: String::new(),
    };
    store
        .record_journeys(&JourneyWrite {
            runs: vec![
                run("w1", "r1", "p1", "a", 0, true),
                run("w1", "r2", "p1", "b", 0, false),
                run("w1", "r4", "p1", "c", 0, true),
                run("w1", "r3", "p2", "a", 0, true),
            ],
            notes: vec![note("r1", "p1"), note("r4", "p1")],
            set_timers: vec![
                timer(JOURNEY_TIMERS, "r1"),
                timer(JOURNEY_SENDS, "r1:ask:0"),
                timer(JOURNEY_TIMERS, "r4"),
                timer(JOURNEY_SENDS, "r4:ask:0"),
                timer(JOURNEY_TIMERS, "r3"),
            ],
            contacts: vec![ContactRow {
                workspace_id: "w1".into(),
                profile_id: "p1".into(),
                at: T0,
                key: "r4:ask:0".into(),
                channel: "email".into(),
                journey_id: "cart".into(),
                priority: 0,
            }],
            ..JourneyWrite::default()
        })
        .unwrap();
    store
        .transact(&mut |tx| tx.redirect_profile("w1", "p1", "p2", T0 + 10))
        .unwrap();
    let bucket = profile_bucket("w1", "p2");

    assert_eq!(store.runs_of("w1", "p1", 10).unwrap(), vec![]);
    let runs = store.runs_of("w1", "p2", 10).unwrap();
    let by_id = |id: &str| runs.iter().find(|r| r.run_id == id).unwrap().clone();
    // Already in `cart` for key `a` there: the merged one ends.
    let r1 = by_id("r1");
    assert!(!r1.active);
    assert_eq!(r1.outcome.as_deref(), Some("exited"));
    assert_eq!(r1.ended_at, Some(T0 + 10));
    assert!(
        r1.revision > 1,
        "a decision read before the merge is refused"
    );
    assert_eq!(store.timer("w1", JOURNEY_TIMERS, "r1").unwrap(), None);
    assert_eq!(store.timer("w1", JOURNEY_SENDS, "r1:ask:0").unwrap(), None);
    let codes: Vec<String> = store
        .run_notes("w1", "r1")
        .unwrap()
        .into_iter()
        .map(|n| format!("{} {}", n.code, n.profile_id))
        .collect();
    assert_eq!(codes, ["entered p2", "merged p2"]);
    // The others move, timers and all, to her bucket there.
    let r4 = by_id("r4");
    assert!(r4.active);
    assert_eq!(r4.bucket, bucket);
    assert!(r4.revision > 1);
    for (kind, key) in [(JOURNEY_TIMERS, "r4"), (JOURNEY_SENDS, "r4:ask:0")] {
        let t = store.timer("w1", kind, key).unwrap().unwrap();
        assert_eq!(t.bucket, bucket, "{kind} {key}");
        assert_eq!(t.due_at, T0 + 3_600_000);
    }
    assert_eq!(
        by_id("r2").outcome.as_deref(),
        Some("goal"),
        "history moves too"
    );
    assert!(by_id("r3").active);
    assert_eq!(
        by_id("r3").revision,
        1,
        "the survivor's own runs are untouched"
    );
    assert_eq!(
        store
            .timer("w1", JOURNEY_TIMERS, "r3")
            .unwrap()
            .unwrap()
            .bucket,
        1
    );
    assert_eq!(store.contacts("w1", "p2", 0).unwrap().len(), 1);
    assert_eq!(store.contacts("w1", "p1", 0).unwrap(), vec![]);
    assert_eq!(store.active_runs("w1", "p2").unwrap().len(), 2);

    // A decision read before the merge: refused, nothing written.
    let stale = JourneyWrite {
        runs: vec![run("w1", "r4", "p1", "c", 1, false)],
        ..JourneyWrite::default()
    };
    assert!(matches!(
        store.record_journeys(&stale),
        Err(StoreError::Conflict(_))
    ));
    let fresh = JourneyWrite {
        runs: vec![run("w1", "r5", "p1", "d", 0, true)],
        ..JourneyWrite::default()
    };
    assert!(matches!(
        store.record_journeys(&fresh),
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.run("w1", "r5").unwrap(), None);
    assert!(store.run("w1", "r4").unwrap().unwrap().active);
}

/// A change of audience membership in a workspace with a live journey is queued for its
/// journeys with the change, in the same transaction: negative seq (the change's id), no
/// name, the audience and the way in its body. A workspace without one queues nothing.
pub fn audience_changes_are_queued_for_journeys(store: &dyn Store) {
    setup(store, &["w1", "w2"]);
    let mut live = version("w1", "vip-welcome", None, "a", T0);
    live.status = "live".into();
    store.put_journey_version(&live).unwrap();
    for ws in ["w1", "w2"] {
        store
            .record(&AudienceWrite {
                changes: vec![
                    super::audiences::change(ws, "vip", "p1", true, T0 + 5),
                    super::audiences::change(ws, "vip", "p2", true, T0 + 6),
                ],
                ..AudienceWrite::default()
            })
            .unwrap();
    }
    store
        .record(&AudienceWrite {
            changes: vec![super::audiences::change("w1", "vip", "p1", false, T0 + 9)],
            ..AudienceWrite::default()
        })
        .unwrap();
    let logged = store.changes_after(0, 100).unwrap();
    let queued = store.journey_work(None, 100).unwrap();
    let mine: Vec<&MembershipChange> = logged.iter().filter(|c| c.workspace_id == "w1").collect();
    assert_eq!(mine.len(), 3);
    assert!(queued.iter().all(|w| w.workspace_id == "w1"), "{queued:?}");
    let expected: Vec<JourneyWork> = mine.iter().map(|c| audience_change_work(c)).collect();
    let mut got = queued.clone();
    got.sort_by_key(|w| std::cmp::Reverse(w.seq));
    assert_eq!(got, expected);
    assert!(got.iter().all(|w| w.seq < 0 && w.name.is_empty()));
    let body: serde_json::Value = serde_json::from_str(&got[2].body).unwrap();
    assert_eq!(
        body["audience_change"],
        json!({"audience": "vip", "entered": false, "cause": format!("m-{}", T0 + 9)})
    );
    assert_eq!(got[2].bucket, profile_bucket("w1", "p1"));
    // Taken and settled like event work.
    store
        .record_journeys(&JourneyWrite {
            settled: got
                .iter()
                .map(|w| (w.workspace_id.clone(), w.seq, w.profile_id.clone()))
                .collect(),
            ..JourneyWrite::default()
        })
        .unwrap();
    assert!(store.journey_work(None, 100).unwrap().is_empty());
}
