//! One definition of the truth: a profile's traits, identifiers, consent, audience memberships
//! and computed traits are a function of the event log and the workspace's rules. The live
//! path (events applied as they arrive, late and backdated ones re-derived, merges undone,
//! windows passing on timers) must always equal a replay of the log.
//!
//! Random histories (several channels, late and backdated events, shared devices, merges,
//! undos, analytics opt-outs, a definition added midway) run on the real store and processors. At checkpoints the
//! live state is read, `replay` rebuilds every projection from the log, and the state must be
//! the same; the history then goes on from the replayed store. The change log a destination
//! follows must net to the memberships, and no id that is not a live profile may be left in
//! an audience (every `add` has its `remove`).
//!
//! On both stores. Cases: `PARCOURS_REPLAY_CASES` (default 100, what CI runs) on SQLite, a
//! fifth of them on PostgreSQL; a long run is documented in `docs/testing.md`.

use std::collections::{BTreeMap, BTreeSet};

use parcours_core::audience::parse;
use parcours_core::computed::ComputedTrait;
use parcours_core::rules::IdentityRulesConfig;
use parcours_core::spec::{AcceptedEvent, EventType};
use parcours_core::{Channel, Profile};
use parcours_engine::audiences::AudienceProcessor;
use parcours_engine::definitions::{save_audience, save_computed_trait, AudienceDoc};
use parcours_engine::{replay, undo_merge, unify_step};
use parcours_store::{IngestBatch, MergeStatus, Store, Workspace};
use parcours_store_postgres::testing::TempDatabase;
use parcours_store_postgres::{PgConfig, PgStore};
use parcours_store_sqlite::SqliteStore;
use proptest::prelude::*;
use serde_json::{json, Value};

const T0: i64 = 1_780_000_000_000;
const MINUTE: i64 = 60_000;
const WS: &str = "ws";

/// Every kind of condition, and the windows that make time matter.
const AUDIENCES: &[(&str, &str)] = &[
    ("gold", r#"trait plan = "gold""#),
    ("big_order", r#"did "Order Completed" where total >= 100"#),
    ("repeat", r#"did "Order Completed" count >= 2 within 1 day"#),
    ("no_cart", r#"not did "Product Added" within 1 hour"#),
    (
        "funnel",
        r#""Product Viewed" on web, app then "Order Completed" within 2 hours"#,
    ),
    ("store_only", "seen on store and not seen on app"),
    ("last_web", "last channel is web"),
    ("recent_store", "seen on store within 3 hours"),
    ("reachable", "has email"),
    ("opted_in", "consent marketing granted"),
    ("withdrawn", "consent marketing withdrawn"),
    ("never_asked", "consent marketing:email unknown"),
    ("known", "is known and has email"),
    ("big_spender", "computed spend > 150"),
    ("vip", r#"in audience "big_order" and has email"#),
    (
        "browsers",
        r#"did "Product Viewed" sum of price > 50 within 3 hours or trait plan in ["silver"]"#,
    ),
    ("old_signup", "trait signup before 1 day ago"),
    (
        "web_cart_store_order",
        r#"did "Product Added" on web within 1 day and did "Order Completed" on store, server"#,
    ),
];

/// Added midway: a full computation over profiles that already exist.
const LATE_AUDIENCE: (&str, &str) = ("two_views", r#"did "Product Viewed" count >= 2"#);

#[derive(Debug, Clone)]
enum Op {
    Event(Ev),
    /// Minutes pass.
    Wait(i64),
    /// Undo the n-th active merge (if there is one).
    Undo(usize),
    /// Check, replay, check again.
    Replay,
    AddAudience,
}

#[derive(Debug, Clone)]
struct Ev {
    identify: bool,
    user: Option<u8>,
    anon: Option<u8>,
    email: Option<u8>,
    device: Option<u8>,
    name: u8,
    channel: u8,
    /// Minutes before now (late or backdated).
    ago: i64,
    total: u8,
    plan: Option<u8>,
    consent: Option<bool>,
    analytics: Option<bool>,
    signup: bool,
}

fn ev() -> impl Strategy<Value = Ev> {
    (
        (
            any::<bool>(),
            proptest::option::weighted(0.5, 0u8..4),
            proptest::option::weighted(0.6, 0u8..4),
            proptest::option::weighted(0.3, 0u8..3),
            proptest::option::weighted(0.2, 0u8..2),
        ),
        (
            0u8..3,
            0u8..5,
            prop_oneof![4 => Just(0i64), 1 => 1i64..200, 1 => 1000i64..3000],
            any::<u8>(),
            proptest::option::weighted(0.3, 0u8..3),
            proptest::option::weighted(0.2, any::<bool>()),
            proptest::option::weighted(0.1, any::<bool>()),
            proptest::bool::weighted(0.1),
        ),
    )
        .prop_map(
            |(
                (identify, user, anon, email, device),
                (name, channel, ago, total, plan, consent, analytics, signup),
            )| {
                Ev {
                    identify,
                    user,
                    anon: if user.is_none() && anon.is_none() {
                        Some(0)
                    } else {
                        anon
                    },
                    email,
                    device,
                    name,
                    channel,
                    ago,
                    total,
                    plan,
                    consent,
                    analytics,
                    signup,
                }
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => ev().prop_map(Op::Event),
        3 => prop_oneof![1i64..30, 30i64..300, 1000i64..2000].prop_map(Op::Wait),
        1 => (0usize..3).prop_map(Op::Undo),
        1 => Just(Op::Replay),
        1 => Just(Op::AddAudience),
    ]
}

/// Which store a history runs on.
#[derive(Debug, Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

/// What keeps a store's data alive for the case, removed when it ends (held, never read).
#[allow(dead_code)]
enum Guard {
    Dir(Dir),
    Database(TempDatabase),
}

struct World {
    store: Box<dyn Store>,
    _guard: Guard,
    processor: AudienceProcessor,
    now: i64,
    n: usize,
}

struct Dir(std::path::PathBuf);
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What must be the same live and after a replay.
#[derive(Debug, PartialEq)]
struct State {
    profiles: Vec<Profile>,
    members: BTreeMap<String, BTreeSet<String>>,
    computed: BTreeMap<String, BTreeMap<String, Value>>,
}

impl World {
    fn new(case: u64, backend: Backend) -> Self {
        // Removed however the case ends.
        let (store, guard): (Box<dyn Store>, Guard) = match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(format!(
                    "parcours-live-replay-{}-{case}-{:?}",
                    std::process::id(),
                    std::thread::current().id()
                ));
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir).unwrap();
                let dir = Dir(dir);
                (
                    Box::new(SqliteStore::open_temp(&dir.0).unwrap()),
                    Guard::Dir(dir),
                )
            }
            Backend::Postgres => {
                let db = TempDatabase::create();
                (
                    Box::new(PgStore::connect(&PgConfig::new(db.url())).unwrap()),
                    Guard::Database(db),
                )
            }
        };
        let mut rules = IdentityRulesConfig::default();
        // Tight limits make shared devices drop identifiers, which late events must respect.
        rules.limits.insert("email".into(), 1);
        rules.limits.insert("device_id".into(), 2);
        store
            .create_workspace(&Workspace {
                id: WS.into(),
                name: "Test".into(),
                created_at: T0,
                identity_rules: rules,
            })
            .unwrap();
        let spend: ComputedTrait = serde_json::from_value(json!(
            {"id": "spend", "kind": "sum", "event": "Order Completed", "property": "total"}
        ))
        .unwrap();
        save_computed_trait(store.as_ref(), WS, &spend, T0).unwrap();
        for (id, text) in AUDIENCES {
            audience(store.as_ref(), id, text);
        }
        World {
            store,
            _guard: guard,
            processor: AudienceProcessor::default(),
            now: T0,
            n: 0,
        }
    }

    fn append(&mut self, e: &Ev) {
        self.n += 1;
        let mid = format!("m{:04}", self.n);
        let channel = [
            Channel::Web,
            Channel::Ios,
            Channel::Android,
            Channel::Store,
            Channel::Server,
        ][usize::from(e.channel)];
        let name = ["Order Completed", "Product Viewed", "Product Added"][usize::from(e.name)];
        let mut traits = json!({});
        if let Some(m) = e.email {
            traits["email"] = json!(format!("e{m}@x.io"));
        }
        if let Some(p) = e.plan {
            traits["plan"] = json!(["gold", "silver", "bronze"][usize::from(p)]);
        }
        if e.signup {
            traits["signup"] = json!(self.now - 2 * 24 * 60 * MINUTE);
        }
        let mut context = json!({});
        if let Some(d) = e.device {
            context["device"] = json!({"id": format!("tablet-{d}")});
        }
        let mut prefs = serde_json::Map::new();
        if let Some(c) = e.consent {
            prefs.insert("marketing".into(), json!(c));
        }
        if let Some(a) = e.analytics {
            prefs.insert("analytics".into(), json!(a));
        }
        if !prefs.is_empty() {
            context["consent"] = json!({ "categoryPreferences": prefs });
        }
        let user = e.user.map(|u| format!("u{u}"));
        let anon = e.anon.map(|a| format!("a{a}"));
        let timestamp = self.now - e.ago * MINUTE;
        let (kind, event, body) = if e.identify {
            let body = json!({"type": "identify", "userId": user, "anonymousId": anon,
                "traits": traits, "context": context, "messageId": mid});
            (EventType::Identify, None, body)
        } else {
            context["traits"] = traits;
            let properties = json!({"total": e.total, "price": e.total / 4});
            let body = json!({"type": "track", "event": name, "userId": user,
                "anonymousId": anon, "properties": properties, "context": context,
                "messageId": mid});
            (EventType::Track, Some(name.to_string()), body)
        };
        self.store
            .append(
                &[IngestBatch {
                    workspace_id: WS.into(),
                    source_id: "src".into(),
                    events: vec![AcceptedEvent {
                        message_id: mid,
                        kind,
                        event,
                        user_id: user,
                        anonymous_id: anon,
                        timestamp,
                        received_at: self.now,
                        channel,
                        body: body.to_string(),
                    }],
                    quarantined: vec![],
                }],
                0,
            )
            .unwrap();
    }

    /// Unifies what arrived and runs the audience processor until it is idle.
    fn settle(&mut self) {
        while unify_step(self.store.as_ref(), self.now, 1000).unwrap() > 0 {}
        for _ in 0..200 {
            let report = self
                .processor
                .step(self.store.as_ref(), self.now, 1000)
                .unwrap();
            if report.is_idle() {
                return;
            }
        }
        panic!("the audience processor never went idle");
    }

    fn undo(&mut self, nth: usize) {
        let mut active = BTreeSet::new();
        for p in self.store.profiles_page(WS, "", 100_000).unwrap() {
            for m in self.store.merges_of(WS, &p.id).unwrap() {
                if m.status == MergeStatus::Active {
                    active.insert(m.id);
                }
            }
        }
        if let Some(id) = active.into_iter().nth(nth) {
            undo_merge(self.store.as_ref(), WS, id, self.now).unwrap();
        }
    }

    fn state(&self) -> State {
        let profiles = self.store.profiles_page(WS, "", 100_000).unwrap();
        let mut members = BTreeMap::new();
        let mut ids: Vec<&str> = AUDIENCES.iter().map(|(id, _)| *id).collect();
        ids.push(LATE_AUDIENCE.0);
        for id in ids {
            let set: BTreeSet<String> = self
                .store
                .members(WS, id, "", 100_000)
                .unwrap()
                .into_iter()
                .map(|m| m.profile_id)
                .collect();
            members.insert(id.to_string(), set);
        }
        let computed = profiles
            .iter()
            .map(|p| (p.id.clone(), self.store.computed_values(WS, &p.id).unwrap()))
            .filter(|(_, v)| !v.is_empty())
            .collect();
        State {
            profiles,
            members,
            computed,
        }
    }

    /// The change log a destination follows nets to the memberships, and only live
    /// profiles are members.
    fn check_change_stream(&self, state: &State) -> Result<(), TestCaseError> {
        let mut net: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for c in self.store.changes_after(0, 1_000_000).unwrap() {
            let set = net.entry(c.audience_id.clone()).or_default();
            if c.entered {
                prop_assert!(set.insert(c.profile_id.clone()), "entered twice: {c:?}");
            } else {
                prop_assert!(set.remove(&c.profile_id), "left without entering: {c:?}");
            }
        }
        let live: BTreeSet<&str> = state.profiles.iter().map(|p| p.id.as_str()).collect();
        for (audience, members) in &state.members {
            let empty = BTreeSet::new();
            prop_assert_eq!(net.get(audience).unwrap_or(&empty), members, "{}", audience);
            for m in members {
                prop_assert!(live.contains(m.as_str()), "{m} in {audience} is no profile");
            }
        }
        Ok(())
    }

    fn check_replay(&mut self) -> Result<(), TestCaseError> {
        self.settle();
        let live = self.state();
        self.check_change_stream(&live)?;
        replay(self.store.as_ref(), self.now, 1000, &mut |_, _| {}).unwrap();
        self.settle();
        let replayed = self.state();
        self.check_change_stream(&replayed)?;
        prop_assert_eq!(&live.profiles, &replayed.profiles);
        prop_assert_eq!(&live.members, &replayed.members);
        prop_assert_eq!(&live.computed, &replayed.computed);
        Ok(())
    }
}

fn audience(store: &dyn Store, id: &str, text: &str) {
    let doc = AudienceDoc {
        name: id.into(),
        description: String::new(),
        condition: parse(text).unwrap(),
    };
    save_audience(store, WS, id, &doc, T0).unwrap();
}

fn cases() -> u32 {
    std::env::var("PARCOURS_REPLAY_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100)
}

/// Runs one history, checking live against replay along the way.
fn run_history(ops: &[Op], case: u64, backend: Backend) -> Result<(), TestCaseError> {
    let mut w = World::new(case, backend);
    let mut late_added = false;
    for op in ops {
        match op {
            Op::Event(e) => w.append(e),
            Op::Wait(minutes) => w.now += minutes * MINUTE,
            Op::Undo(nth) => {
                w.settle();
                w.undo(*nth);
            }
            Op::Replay => w.check_replay()?,
            Op::AddAudience => {
                if !late_added {
                    audience(w.store.as_ref(), LATE_AUDIENCE.0, LATE_AUDIENCE.1);
                    late_added = true;
                }
            }
        }
        w.settle();
    }
    w.check_replay()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn the_live_path_equals_a_replay(ops in proptest::collection::vec(op(), 1..40), case in any::<u64>()) {
        run_history(&ops, case, Backend::Sqlite)?;
    }
}

proptest! {
    // Each case makes a database: a fifth of the cases.
    #![proptest_config(ProptestConfig { cases: (cases() / 5).max(1), ..ProptestConfig::default() })]

    #[test]
    fn the_live_path_equals_a_replay_on_postgres(ops in proptest::collection::vec(op(), 1..40), case in any::<u64>()) {
        run_history(&ops, case, Backend::Postgres)?;
    }
}

/// An id a replay no longer gives (one stored before profile ids were stable, say) leaves its
/// audiences with an exit, so that a destination that received it removes it.
#[test]
fn a_replay_takes_ids_it_no_longer_gives_out_of_their_audiences() {
    let mut w = World::new(u64::MAX, Backend::Sqlite);
    w.append(&Ev {
        identify: true,
        user: Some(1),
        anon: None,
        email: Some(1),
        device: None,
        name: 0,
        channel: 0,
        ago: 0,
        total: 0,
        plan: None,
        consent: None,
        analytics: None,
        signup: false,
    });
    w.settle();
    let entered = |id: &str| parcours_store::MembershipChange {
        id: 0,
        workspace_id: WS.into(),
        audience_id: "reachable".into(),
        profile_id: id.into(),
        entered: true,
        at: T0,
        cause: "an earlier version".into(),
    };
    w.store
        .record(&parcours_store::AudienceWrite {
            changes: vec![entered("p_gone")],
            ..parcours_store::AudienceWrite::default()
        })
        .unwrap();
    replay(w.store.as_ref(), w.now, 1000, &mut |_, _| {}).unwrap();
    w.settle();
    let state = w.state();
    assert_eq!(state.members["reachable"].len(), 1);
    assert!(!state.members["reachable"].contains("p_gone"));
    let exits: Vec<String> = w
        .store
        .changes_after(0, 1000)
        .unwrap()
        .into_iter()
        .filter(|c| !c.entered)
        .map(|c| c.profile_id)
        .collect();
    assert_eq!(exits, vec!["p_gone".to_string()]);
    w.check_change_stream(&state).unwrap();
}
