//! The audience processor on a virtual clock: entries and exits in real time, windows that
//! expire exactly on time, computed traits, dependent audiences, full recomputation with
//! progress, and membership changes published to the event log.

use parcours_core::audience::parse;
use parcours_core::computed::{ComputedTrait, Kind};
use parcours_core::rules::IdentityRulesConfig;
use parcours_core::spec::{AcceptedEvent, EventType};
use parcours_core::Channel;
use parcours_engine::audiences::{AudienceProcessor, AUDIENCE_ENTERED, AUDIENCE_EXITED, HELD_MAX};
use parcours_engine::definitions::{save_audience, save_computed_trait, AudienceDoc};
use parcours_engine::unify_step;
use parcours_store::{
    Audiences, DefinitionKind, EventLog, IngestBatch, MembershipChange, Projections, Registry,
    WorkScope, Workspace,
};
use parcours_store_sqlite::SqliteStore;
use serde_json::{json, Value};

const T0: i64 = 1_780_000_000_000;
const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const WS: &str = "ws";

struct World {
    _dir: tempdir::Dir,
    store: SqliteStore,
    processor: AudienceProcessor,
    n: usize,
}

mod tempdir {
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    pub fn new() -> Dir {
        let p = std::env::temp_dir().join(format!(
            "parcours-audiences-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
}

impl World {
    fn new() -> Self {
        let dir = tempdir::new();
        let store = SqliteStore::open_temp(&dir.0).unwrap();
        store
            .create_workspace(&Workspace {
                id: WS.into(),
                name: "Test".into(),
                created_at: T0,
                identity_rules: IdentityRulesConfig::default(),
            })
            .unwrap();
        Self {
            _dir: dir,
            store,
            processor: AudienceProcessor::default(),
            n: 0,
        }
    }

    fn audience(&self, id: &str, text: &str) {
        let doc = AudienceDoc {
            name: format!("{id} name"),
            description: String::new(),
            condition: parse(text).unwrap(),
        };
        save_audience(&self.store, WS, id, &doc, T0).unwrap();
    }

    fn track(&mut self, user: &str, event: &str, at: i64, channel: Channel, props: Value) {
        self.n += 1;
        let mid = format!("m{}", self.n);
        let body = json!({"type": "track", "event": event, "userId": user, "properties": props});
        self.store
            .append(
                &[IngestBatch {
                    workspace_id: WS.into(),
                    source_id: "src".into(),
                    events: vec![AcceptedEvent {
                        message_id: mid,
                        kind: EventType::Track,
                        event: Some(event.into()),
                        user_id: Some(user.into()),
                        anonymous_id: None,
                        timestamp: at,
                        received_at: at,
                        channel,
                        body: body.to_string(),
                    }],
                    quarantined: vec![],
                }],
                0,
            )
            .unwrap();
    }

    /// Unifies what arrived and runs the processor at `now` until it is idle.
    fn run(&mut self, now: i64) {
        while unify_step(&self.store, now, 1000).unwrap() > 0 {}
        for _ in 0..100 {
            if self
                .processor
                .step(&self.store, now, 1000)
                .unwrap()
                .is_idle()
            {
                return;
            }
        }
        panic!("the processor never went idle");
    }

    fn profile(&self, user: &str) -> String {
        self.store
            .lookup(WS, &parcours_core::Identifier::new("user_id", user))
            .unwrap()
            .unwrap()
    }

    fn members(&self, audience: &str) -> Vec<String> {
        self.store
            .members(WS, audience, "", 1000)
            .unwrap()
            .into_iter()
            .map(|m| m.profile_id)
            .collect()
    }

    fn changes(&self) -> Vec<MembershipChange> {
        self.store.changes_after(0, 10_000).unwrap()
    }
}

#[test]
fn a_cart_abandoner_enters_at_once_and_leaves_exactly_when_the_hour_passes() {
    let mut w = World::new();
    w.audience(
        "cart_1h",
        r#"did "Product Added" within 1 hour and not did "Order Completed" within 1 hour"#,
    );
    w.run(T0);
    let added = T0 + 5 * MINUTE;
    w.track(
        "u1",
        "Product Added",
        added,
        Channel::Web,
        json!({"sku": "A"}),
    );
    w.run(added + 100);
    let p1 = w.profile("u1");
    assert_eq!(w.members("cart_1h"), vec![p1.clone()]);
    let entered = &w.changes()[0];
    // Dated when she qualified (the event), not when the processor saw it.
    assert_eq!((entered.entered, entered.at), (true, added));
    assert_eq!(entered.cause, "m1");
    // The timer is the instant the event leaves the window.
    assert_eq!(w.store.timer_of(WS, &p1).unwrap(), Some(added + HOUR));
    w.run(added + HOUR - 1);
    assert_eq!(w.members("cart_1h"), vec![p1.clone()]);
    // The processor runs late (the node was busy); the exit still carries the exact instant.
    w.run(added + HOUR + 30_000);
    assert!(w.members("cart_1h").is_empty());
    let exit = &w.changes()[1];
    assert_eq!(
        (exit.entered, exit.at, exit.cause.as_str()),
        (false, added + HOUR, "time")
    );
    assert_eq!(w.store.timer_of(WS, &p1).unwrap(), None);
    // Both changes are in the event log as track events of the internal source.
    let logged: Vec<(String, Value, i64)> = w
        .store
        .events_after(0, 1000)
        .unwrap()
        .into_iter()
        .filter(|e| e.source_id == parcours_engine::audiences::INTERNAL_SOURCE)
        .map(|e| {
            let body: Value = serde_json::from_str(&e.body).unwrap();
            (e.event.unwrap(), body["properties"].clone(), e.timestamp)
        })
        .collect();
    assert_eq!(logged.len(), 2);
    assert_eq!(logged[0].0, AUDIENCE_ENTERED);
    assert_eq!(logged[1].0, AUDIENCE_EXITED);
    assert_eq!(logged[1].2, added + HOUR);
    assert_eq!(logged[0].1["audience_id"], "cart_1h");
    assert_eq!(logged[0].1["audience_name"], "cart_1h name");
    assert_eq!(logged[0].1["profile_id"], json!(p1));
}

#[test]
fn an_order_takes_the_profile_out_of_the_abandoners_and_into_dependent_audiences() {
    let mut w = World::new();
    w.audience(
        "cart_1h",
        r#"did "Product Added" within 1 hour and not did "Order Completed" within 1 hour"#,
    );
    w.audience("buyers", r#"did "Order Completed""#);
    w.audience("web_buyers", r#"in audience "buyers" and seen on web"#);
    w.track("u1", "Product Added", T0, Channel::Web, json!({}));
    w.track(
        "u2",
        "Order Completed",
        T0,
        Channel::Store,
        json!({"total": 10}),
    );
    w.run(T0 + 10);
    let (p1, p2) = (w.profile("u1"), w.profile("u2"));
    assert_eq!(w.members("cart_1h"), vec![p1.clone()]);
    assert_eq!(w.members("buyers"), vec![p2.clone()]);
    assert!(
        w.members("web_buyers").is_empty(),
        "u2 was only seen in store"
    );
    w.track(
        "u1",
        "Order Completed",
        T0 + MINUTE,
        Channel::Web,
        json!({"total": 50}),
    );
    w.run(T0 + MINUTE + 10);
    assert!(w.members("cart_1h").is_empty());
    let mut buyers = vec![p1.clone(), p2.clone()];
    buyers.sort();
    assert_eq!(w.members("buyers"), buyers);
    assert_eq!(w.members("web_buyers"), vec![p1.clone()]);
    let history: Vec<(String, bool)> = w
        .store
        .membership_history(WS, &p1, 10)
        .unwrap()
        .into_iter()
        .map(|c| (c.audience_id, c.entered))
        .collect();
    assert_eq!(
        history,
        // Newest first; within one evaluation, audiences in evaluation order (an audience
        // after those it refers to).
        vec![
            ("web_buyers".into(), true),
            ("cart_1h".into(), false),
            ("buyers".into(), true),
            ("cart_1h".into(), true),
        ]
    );
}

#[test]
fn computed_traits_follow_events_and_windows() {
    let mut w = World::new();
    let orders = ComputedTrait {
        id: "orders_30d".into(),
        kind: Kind::Count,
        event: "Order Completed".into(),
        property: None,
        filters: vec![],
        window: parcours_core::audience::Window::Within {
            ms: 30 * 86_400_000,
        },
        lifecycle: None,
        include_anonymous: false,
    };
    save_computed_trait(&w.store, WS, &orders, T0).unwrap();
    let spent = ComputedTrait {
        id: "spent".into(),
        kind: Kind::Sum,
        property: Some("total".into()),
        window: parcours_core::audience::Window::Ever,
        ..orders.clone()
    };
    save_computed_trait(&w.store, WS, &spent, T0).unwrap();
    w.audience("frequent", "computed orders_30d >= 2");
    w.track(
        "u1",
        "Order Completed",
        T0,
        Channel::Web,
        json!({"total": 30}),
    );
    w.track(
        "u1",
        "Order Completed",
        T0 + HOUR,
        Channel::Store,
        json!({"total": 12.5}),
    );
    w.run(T0 + HOUR + 1);
    let p1 = w.profile("u1");
    let values = w.store.computed_values(WS, &p1).unwrap();
    assert_eq!(values["orders_30d"], json!(2));
    assert_eq!(values["spent"], json!(42.5));
    assert_eq!(w.members("frequent"), vec![p1.clone()]);
    // 30 days after the first order, the count drops and the profile leaves.
    let expiry = T0 + 30 * 86_400_000;
    w.run(expiry);
    assert_eq!(
        w.store.computed_values(WS, &p1).unwrap()["orders_30d"],
        json!(1)
    );
    assert!(w.members("frequent").is_empty());
    assert_eq!(w.changes().last().unwrap().at, expiry);
}

#[test]
fn a_changed_definition_is_computed_again_over_every_profile_with_progress() {
    let mut w = World::new();
    // One page per step, to see the progress between pages.
    w.processor = AudienceProcessor::default().with_page_budget(std::time::Duration::ZERO);
    for i in 0..1200 {
        let channel = if i % 3 == 0 {
            Channel::Store
        } else {
            Channel::Web
        };
        w.track(&format!("u{i}"), "Page Viewed", T0, channel, json!({}));
    }
    w.run(T0 + 1);
    w.audience("store", r#"did "Page Viewed" and seen on store"#);
    let before = w.store.definitions(Some(WS)).unwrap()[0].clone();
    assert_eq!((before.version, before.computed_version), (1, 0));
    // Progress counts two passes of 1,200: reading the log (one step here), then evaluating
    // the profiles a page at a time. It is visible; the version is not yet computed.
    w.processor.step(&w.store, T0 + 2, 1000).unwrap();
    let read = w.store.definitions(Some(WS)).unwrap()[0].clone();
    assert_eq!(
        (read.computed_version, read.done, read.total),
        (0, 1200, 2400)
    );
    // A few more steps match its events to their profiles (and read the timers), with the
    // progress where it is; then the first page of 1,000 is evaluated.
    let mut matching = 0;
    let report = loop {
        let report = w.processor.step(&w.store, T0 + 2, 1000).unwrap();
        let d = w.store.definitions(Some(WS)).unwrap()[0].clone();
        if d.done > 1200 {
            break report;
        }
        assert_eq!((d.computed_version, d.done, d.total), (0, 1200, 2400));
        matching += 1;
    };
    assert!((1..=3).contains(&matching), "{matching} matching steps");
    assert_eq!(report.recomputed, 1000);
    let mid = w.store.definitions(Some(WS)).unwrap()[0].clone();
    assert_eq!((mid.computed_version, mid.done, mid.total), (0, 2200, 2400));
    w.run(T0 + 3);
    let done = w.store.definitions(Some(WS)).unwrap()[0].clone();
    assert_eq!(
        (done.computed_version, done.done, done.total),
        (1, 2400, 2400)
    );
    assert_eq!(w.store.member_count(WS, "store").unwrap(), 400);
    // Version 2: the members that no longer match leave, the others stay.
    w.audience("store", "seen on web");
    w.run(T0 + 4);
    let v2 = w.store.definitions(Some(WS)).unwrap()[0].clone();
    assert_eq!((v2.version, v2.computed_version), (2, 2));
    assert_eq!(w.store.member_count(WS, "store").unwrap(), 800);
    let exits = w.changes().iter().filter(|c| !c.entered).count();
    assert_eq!(exits, 400);
    assert!(w.changes().iter().all(|c| c.cause == "recompute"));
}

/// A full computation over 1,500 customers that reads the log once, holding the events it
/// names, while new events arrive; `held_max` small enough makes it read per profile instead.
fn compute_while_events_arrive(held_max: usize) {
    let big = |w: &World| {
        w.store
            .definitions(Some(WS))
            .unwrap()
            .into_iter()
            .find(|d| d.id == "big")
            .unwrap()
    };
    let mut w = World::new();
    w.processor =
        AudienceProcessor::with_held_max(held_max).with_page_budget(std::time::Duration::ZERO);
    for i in 0..1500 {
        let u = format!("u{i}");
        w.track(
            &u,
            "Product Viewed",
            T0,
            Channel::Web,
            json!({"total": 5000}),
        );
        w.track(
            &u,
            "Order Completed",
            T0,
            Channel::Web,
            json!({"total": 600}),
        );
        if i < 300 {
            w.track(
                &u,
                "Order Completed",
                T0 + 1,
                Channel::Store,
                json!({"total": 500}),
            );
        }
    }
    w.run(T0 + 1);
    w.audience("big", r#"did "Order Completed" sum of total >= 1000"#);
    // Every profile evaluated gets a value: it shows which ones the computation has done.
    let spent = ComputedTrait {
        id: "spent".into(),
        kind: Kind::Sum,
        event: "Order Completed".into(),
        property: Some("total".into()),
        filters: vec![],
        window: parcours_core::audience::Window::Ever,
        lifecycle: None,
        include_anonymous: false,
    };
    save_computed_trait(&w.store, WS, &spent, T0).unwrap();
    // The first step reads the whole log (3,300 events, one range).
    w.processor.step(&w.store, T0 + 2, 1000).unwrap();
    let d = big(&w).clone();
    assert_eq!((d.computed_version, d.done, d.total), (0, 1500, 3000));
    // Events are matched to their profiles, then the first page of 1,000 is evaluated.
    while big(&w).done <= 1500 {
        w.processor.step(&w.store, T0 + 2, 1000).unwrap();
    }
    // A customer not evaluated yet orders again, and another views a product with a large
    // total (not an order): the real-time path sees them first.
    let last = (300..1500)
        .find(|i| {
            let p = w.profile(&format!("u{i}"));
            w.store.computed_values(WS, &p).unwrap().is_empty()
        })
        .unwrap();
    let other = if last == 1400 { 1401 } else { 1400 };
    w.track(
        &format!("u{last}"),
        "Order Completed",
        T0 + 3,
        Channel::Web,
        json!({"total": 450}),
    );
    w.track(
        &format!("u{other}"),
        "Product Viewed",
        T0 + 3,
        Channel::Web,
        json!({"total": 450}),
    );
    while unify_step(&w.store, T0 + 3, 1000).unwrap() > 0 {}
    w.run(T0 + 4);
    let d = big(&w).clone();
    assert_eq!((d.computed_version, d.done, d.total), (1, 3000, 3000));
    let mut expected: Vec<String> = (0..300)
        .chain([last])
        .map(|i| w.profile(&format!("u{i}")))
        .collect();
    expected.sort();
    assert_eq!(w.members("big"), expected);
    // Each member entered once, and nobody left.
    let changes = w.changes();
    assert_eq!(changes.len(), 301);
    assert!(changes.iter().all(|c| c.entered));
}

#[test]
fn a_full_computation_reads_the_log_once_and_sees_events_that_arrive_meanwhile() {
    compute_while_events_arrive(HELD_MAX);
}

#[test]
fn a_full_computation_over_more_events_than_it_can_hold_reads_them_per_profile() {
    compute_while_events_arrive(10);
}

/// The timers a full computation sets are written once every profile is evaluated (in key
/// order, a chunk per step); a profile the real-time path evaluated meanwhile keeps the
/// earlier of its own timer and the computed one.
#[test]
fn a_full_computation_writes_its_timers_at_the_end_and_keeps_earlier_real_time_ones() {
    const DAY: i64 = 24 * HOUR;
    let mut w = World::new();
    w.processor = AudienceProcessor::default().with_page_budget(std::time::Duration::ZERO);
    w.audience("abandoners", r#"did "Product Added" within 1 hour"#);
    for i in 0..1200 {
        w.track(
            &format!("u{i}"),
            "Order Completed",
            T0,
            Channel::Web,
            json!({}),
        );
    }
    w.run(T0 + 1);
    w.audience("recent", r#"did "Order Completed" within 30 days"#);
    let recent = |w: &World| {
        w.store
            .definitions(Some(WS))
            .unwrap()
            .into_iter()
            .find(|d| d.id == "recent")
            .unwrap()
    };
    while recent(&w).done <= 1200 {
        w.processor.step(&w.store, T0 + 2, 1000).unwrap();
    }
    // The first page is evaluated and its members written; none of its timers yet.
    assert_eq!(w.store.member_count(WS, "recent").unwrap(), 1000);
    assert!(w
        .store
        .due_timers(i64::MAX, &WorkScope::everything(), 10)
        .unwrap()
        .is_empty());
    // One of them adds to cart: the real-time path sets its timer to the end of the hour.
    let member = w.members("recent")[0].clone();
    let user = (0..1200)
        .map(|i| format!("u{i}"))
        .find(|u| w.profile(u) == member)
        .unwrap();
    let added = T0 + 5 * MINUTE;
    w.track(&user, "Product Added", added, Channel::Web, json!({}));
    while unify_step(&w.store, added, 1000).unwrap() > 0 {}
    // One step reads it (past the entries of the first page, published to the log) before
    // the computation evaluates the last page and writes its timers.
    w.processor.step(&w.store, added, 10_000).unwrap();
    w.run(added);
    let d = recent(&w);
    assert_eq!((d.computed_version, d.done, d.total), (1, 2400, 2400));
    assert_eq!(w.members("abandoners"), vec![member.clone()]);
    // Every profile has the computed timer, except the one with the earlier real-time one.
    assert_eq!(w.store.timer_of(WS, &member).unwrap(), Some(added + HOUR));
    let due = w
        .store
        .due_timers(T0 + 30 * DAY, &WorkScope::everything(), 10_000)
        .unwrap();
    assert_eq!(due.len(), 1200);
    assert!(due
        .iter()
        .all(|t| t.due_at == T0 + 30 * DAY || t.profile_id == member));
    w.run(added + HOUR - 1);
    assert_eq!(w.members("abandoners"), vec![member.clone()]);
    w.run(added + HOUR);
    assert!(w.members("abandoners").is_empty());
    assert_eq!(w.store.timer_of(WS, &member).unwrap(), Some(T0 + 30 * DAY));
    w.run(T0 + 30 * DAY - 1);
    assert_eq!(w.store.member_count(WS, "recent").unwrap(), 1200);
    w.run(T0 + 30 * DAY);
    assert_eq!(w.store.member_count(WS, "recent").unwrap(), 0);
    let exits: Vec<_> = w
        .changes()
        .into_iter()
        .filter(|c| c.audience_id == "recent" && !c.entered)
        .collect();
    assert_eq!(exits.len(), 1200);
    assert!(exits.iter().all(|c| c.at == T0 + 30 * DAY));
}

/// "Seen on store between two dates" counts events of any name (the channel statistics keep
/// only the first and last sight): a full computation reads them as the real-time path does.
#[test]
fn a_full_computation_sees_a_channel_between_dates_through_events_of_any_name() {
    const MAY_1: i64 = 1_777_593_600_000;
    const MAY_15: i64 = 1_778_803_200_000;
    const MAY_25: i64 = 1_779_667_200_000;
    let mut w = World::new();
    for (user, middle) in [("u1", true), ("u2", false)] {
        w.track(user, "Page Viewed", MAY_1, Channel::Store, json!({}));
        if middle {
            w.track(user, "Product Viewed", MAY_15, Channel::Store, json!({}));
        }
        w.track(user, "Page Viewed", MAY_25, Channel::Store, json!({}));
    }
    w.run(T0);
    w.audience(
        "may",
        r#"seen on store between "2026-05-10" and "2026-05-20""#,
    );
    w.run(T0 + 1);
    assert_eq!(w.members("may"), vec![w.profile("u1")]);
}

#[test]
fn definitions_are_checked_against_the_workspace() {
    let w = World::new();
    let doc = |text: &str| AudienceDoc {
        name: "x".into(),
        description: String::new(),
        condition: parse(text).unwrap(),
    };
    fn code<T: std::fmt::Debug>(
        r: Result<T, parcours_engine::definitions::DefinitionError>,
    ) -> &'static str {
        match r {
            Err(parcours_engine::definitions::DefinitionError::Invalid { code, .. }) => code,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        code(save_audience(
            &w.store,
            WS,
            "a",
            &doc(r#"in audience "b""#),
            T0
        )),
        "invalid_audience_reference"
    );
    assert_eq!(
        code(save_audience(
            &w.store,
            WS,
            "a",
            &doc("computed ltv > 1"),
            T0
        )),
        "unknown_computed_trait"
    );
    assert_eq!(
        code(save_audience(&w.store, WS, "Bad Id", &doc("has email"), T0)),
        "invalid_id"
    );
    save_audience(&w.store, WS, "b", &doc("has email"), T0).unwrap();
    save_audience(&w.store, WS, "a", &doc(r#"in audience "b""#), T0).unwrap();
    // b cannot now refer to a (a cycle), and cannot be deleted while a uses it.
    assert_eq!(
        code(save_audience(
            &w.store,
            WS,
            "b",
            &doc(r#"in audience "a""#),
            T0
        )),
        "invalid_audience_reference"
    );
    assert_eq!(
        code(parcours_engine::definitions::delete_definition(
            &w.store,
            WS,
            DefinitionKind::Audience,
            "b"
        )),
        "definition_in_use"
    );
    assert!(parcours_engine::definitions::delete_definition(
        &w.store,
        WS,
        DefinitionKind::Audience,
        "a"
    )
    .unwrap());
}

#[test]
fn lifetime_values_are_computed_traits_that_drive_audiences() {
    let mut w = World::new();
    let clv = ComputedTrait {
        id: "clv".into(),
        kind: Kind::Clv,
        event: "Order Completed".into(),
        property: Some("total".into()),
        filters: vec![],
        window: parcours_core::audience::Window::Ever,
        lifecycle: None,
        include_anonymous: false,
    };
    save_computed_trait(&w.store, WS, &clv, T0).unwrap();
    w.audience("lapsing", "computed clv.likely_to_lapse = true");
    w.audience("top", "computed clv.top_decile = true");
    let (day, week) = (86_400_000, 7 * 86_400_000);
    // Twenty customers buying every 2 to 6 weeks for 40 weeks, up to now.
    for i in 0..20i64 {
        let mut at = T0 - 40 * week + i * day;
        while at < T0 {
            w.track(
                &format!("c{i:02}"),
                "Order Completed",
                at,
                Channel::Web,
                json!({"total": 20 + i}),
            );
            at += (2 + i % 5) * week;
        }
    }
    // One bought every week for 20 weeks, then stopped 30 weeks ago; one buys big every week.
    for k in 0..20 {
        w.track(
            "gone",
            "Order Completed",
            T0 - 50 * week + k * week,
            Channel::Store,
            json!({"total": 40}),
        );
    }
    for k in 0..40 {
        w.track(
            "best",
            "Order Completed",
            T0 - 40 * week + k * week + HOUR,
            Channel::Web,
            json!({"total": 400}),
        );
    }
    w.track(
        "browser",
        "Product Viewed",
        T0 - day,
        Channel::Web,
        json!({}),
    );
    w.run(T0);
    let value = |w: &World, user: &str| {
        w.store
            .computed_values(WS, &w.profile(user))
            .unwrap()
            .get("clv")
            .cloned()
    };
    let gone = value(&w, "gone").unwrap();
    assert_eq!(gone["likely_to_lapse"], true, "{gone}");
    let best = value(&w, "best").unwrap();
    assert_eq!(
        (best["top_decile"].clone(), best["decile"].clone()),
        (json!(true), json!(10)),
        "{best}"
    );
    assert!(best["clv"].as_f64().unwrap() > value(&w, "c00").unwrap()["clv"].as_f64().unwrap());
    assert_eq!(value(&w, "browser"), None, "no purchase, no value");
    assert!(w.members("lapsing").contains(&w.profile("gone")));
    assert!(!w.members("lapsing").contains(&w.profile("best")));
    assert!(w.members("top").contains(&w.profile("best")));
    assert!(w.members("top").len() <= 3, "{:?}", w.members("top"));
    let entry = w
        .changes()
        .into_iter()
        .rfind(|c| c.profile_id == w.profile("best"))
        .unwrap();
    assert_eq!((entry.entered, entry.cause.as_str()), (true, "clv"));
    let def = w
        .store
        .definitions(Some(WS))
        .unwrap()
        .into_iter()
        .find(|d| d.id == "clv")
        .unwrap();
    assert_eq!(def.computed_version, def.version, "the pass finished");
}

#[test]
fn rfm_scores_every_customer_against_the_others_and_drives_audiences() {
    let mut w = World::new();
    let rfm = ComputedTrait {
        id: "rfm".into(),
        kind: Kind::Rfm,
        event: "Order Completed".into(),
        property: Some("total".into()),
        filters: vec![],
        window: parcours_core::audience::Window::Ever,
        lifecycle: None,
        include_anonymous: false,
    };
    save_computed_trait(&w.store, WS, &rfm, T0).unwrap();
    w.audience("champions", r#"computed rfm.segment = "champions""#);
    // Customer i orders i + 1 times, 10 × (i + 1) each, the latest 10 - i days ago.
    let day = 86_400_000;
    for i in 0..10i64 {
        for k in 0..=i {
            let at = T0 - (10 - i) * day - k * HOUR;
            w.track(
                &format!("c{i}"),
                "Order Completed",
                at,
                Channel::Web,
                json!({"total": 10 * (i + 1)}),
            );
        }
    }
    w.track(
        "browser",
        "Product Viewed",
        T0 - day,
        Channel::Web,
        json!({}),
    );
    w.run(T0);
    let score = |w: &World, user: &str| {
        w.store
            .computed_values(WS, &w.profile(user))
            .unwrap()
            .get("rfm")
            .cloned()
    };
    assert_eq!(
        score(&w, "c9"),
        Some(
            json!({"recency": 5, "frequency": 5, "monetary": 5, "cell": "555", "segment": "champions"})
        )
    );
    assert_eq!(
        score(&w, "c7"),
        Some(
            json!({"recency": 4, "frequency": 4, "monetary": 4, "cell": "444", "segment": "loyal"})
        )
    );
    assert_eq!(score(&w, "c0").unwrap()["segment"], "lost");
    assert_eq!(score(&w, "browser"), None, "no purchase, no score");
    let mut champions = vec![w.profile("c8"), w.profile("c9")];
    champions.sort();
    assert_eq!(w.members("champions"), champions);
    let def = w
        .store
        .definitions(Some(WS))
        .unwrap()
        .into_iter()
        .find(|d| d.id == "rfm")
        .unwrap();
    assert_eq!(def.computed_version, def.version, "the pass finished");
    // c0 buys a lot: the scores move at the next refresh, not before.
    for k in 0..20 {
        w.track(
            "c0",
            "Order Completed",
            T0 + 10 * MINUTE + k,
            Channel::Store,
            json!({"total": 500}),
        );
    }
    w.run(T0 + 30 * MINUTE);
    assert_eq!(score(&w, "c0").unwrap()["segment"], "lost");
    w.run(T0 + 61 * MINUTE);
    assert_eq!(score(&w, "c0").unwrap()["cell"], "555");
    assert!(w.members("champions").contains(&w.profile("c0")));
    let entry = w
        .changes()
        .into_iter()
        .rfind(|c| c.profile_id == w.profile("c0"))
        .unwrap();
    assert_eq!((entry.entered, entry.cause.as_str()), (true, "rfm"));
}
