//! The journeys processor driven step by step: every event unify applies reaches the
//! journeys of the profile that holds it, whether it arrived late (re-deriving her profile)
//! or was queued for a profile merged into another before journeys read it.

use parcours_core::journey;
use parcours_core::rules::IdentityRulesConfig;
use parcours_core::spec::{AcceptedEvent, EventType};
use parcours_core::{Channel, Identifier};
use parcours_engine::journeys::JourneyProcessor;
use parcours_engine::runner::{Processor, StepContext};
use parcours_engine::unify_step;
use parcours_store::{
    EventLog, IngestBatch, Journeys, NewJourneyVersion, Outbox, OutboxPage, Projections, Registry,
    StoredRun, Timers, Workspace,
};
use parcours_store_sqlite::SqliteStore;
use serde_json::{json, Value};

const T0: i64 = 1_780_000_000_000;
const HOUR: i64 = 3_600_000;
const WS: &str = "ws";

const ORDERS: &str = "id: orders\nstatus: live\nentry:\n  event: Order Completed\ngoal:\n  event: Review Written\nsteps:\n  - id: wait\n    wait: 2d\n";

struct World {
    dir: std::path::PathBuf,
    store: SqliteStore,
    journeys: JourneyProcessor,
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl World {
    fn new(tag: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("parcours-journeys-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = SqliteStore::open_temp(&dir).unwrap();
        store
            .create_workspace(&Workspace {
                id: WS.into(),
                name: "Test".into(),
                created_at: T0,
                identity_rules: IdentityRulesConfig::default(),
            })
            .unwrap();
        let w = Self {
            dir,
            store,
            journeys: JourneyProcessor::default(),
        };
        w.journey(ORDERS);
        w
    }

    /// Saves a live journey.
    fn journey(&self, source: &str) {
        let j = journey::doc::read(source).unwrap();
        self.store
            .put_journey_version(&NewJourneyVersion {
                workspace_id: WS.into(),
                journey_id: j.id.clone(),
                replaces: None,
                source: source.into(),
                doc: journey::doc::to_json(&j),
                status: "live".into(),
                in_flight: "stay".into(),
                created_at: T0,
            })
            .unwrap();
    }

    /// An identify of `user` (with an email), or linking `user` to the visitor `anonymous`.
    fn identify(&self, mid: &str, at: i64, user: &str, anonymous: Option<&str>) {
        let body = match anonymous {
            Some(a) => json!({"type": "identify", "userId": user, "anonymousId": a}),
            None => json!({"type": "identify", "userId": user,
                           "traits": {"email": format!("{user}@example.com")}}),
        };
        self.append(mid, EventType::Identify, at, body);
    }

    /// A track by a known customer (`user:ID`) or a visitor (`anon:ID`).
    fn track(&self, mid: &str, at: i64, who: &str, event: &str) {
        let mut body = json!({"type": "track", "event": event});
        match who.split_once(':') {
            Some(("anon", id)) => body["anonymousId"] = json!(id),
            Some(("user", id)) => body["userId"] = json!(id),
            _ => panic!("who: user:ID or anon:ID"),
        }
        self.append(mid, EventType::Track, at, body);
    }

    fn append(&self, mid: &str, kind: EventType, at: i64, body: Value) {
        let s = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
        self.store
            .append(
                &[IngestBatch {
                    workspace_id: WS.into(),
                    source_id: "src".into(),
                    events: vec![AcceptedEvent {
                        message_id: mid.into(),
                        kind,
                        event: s("event"),
                        user_id: s("userId"),
                        anonymous_id: s("anonymousId"),
                        timestamp: at,
                        received_at: at,
                        channel: Channel::Web,
                        body: body.to_string(),
                    }],
                    quarantined: vec![],
                }],
                0,
            )
            .unwrap();
    }

    fn unify(&self, now: i64) {
        while unify_step(&self.store, now, 1000).unwrap() > 0 {}
    }

    fn follow(&mut self, now: i64) {
        for _ in 0..100 {
            let cx = StepContext {
                store: &self.store,
                now,
                owned: None,
            };
            if self.journeys.step(&cx).unwrap() == 0 {
                return;
            }
        }
        panic!("the journeys processor never went idle");
    }

    fn profile(&self, kind: &str, value: &str) -> String {
        self.store
            .lookup(WS, &Identifier::new(kind, value))
            .unwrap()
            .unwrap()
    }

    fn runs(&self, profile: &str) -> Vec<StoredRun> {
        self.store.runs_of(WS, profile, 100).unwrap()
    }
}

/// A purchase recorded offline reaches the server after her sign-up, an hour older than it:
/// unify re-derives her profile in event-time order, and the journey still sees it.
#[test]
fn a_late_event_enters_its_journey_like_any_other() {
    let mut w = World::new("late");
    w.identify("m1", T0, "ana", None);
    w.unify(T0);
    w.follow(T0);
    w.track("m2", T0 - HOUR, "user:ana", "Order Completed");
    w.unify(T0 + 1000);
    w.follow(T0 + 1000);
    let ana = w.profile("user_id", "ana");
    let runs = w.runs(&ana);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].journey_id, "orders");
    assert_eq!(runs[0].entered_at, T0 - HOUR, "she entered when she bought");
    assert!(w.store.journey_work(None, 10).unwrap().is_empty());
}

/// An anonymous visitor buys; before journeys read it, she signs in and her anonymous
/// profile is merged into her account: the purchase enters the journey under the account.
#[test]
fn work_queued_for_a_profile_merged_since_follows_her() {
    let mut w = World::new("merged");
    w.identify("m1", T0, "bea", None);
    w.unify(T0);
    w.follow(T0);
    w.track("m2", T0 + 1000, "anon:a1", "Order Completed");
    w.unify(T0 + 1000);
    let anonymous = w.profile("anonymous_id", "a1");
    assert_eq!(w.store.journey_work(None, 10).unwrap().len(), 1);
    assert_eq!(
        w.store.journey_work(None, 10).unwrap()[0].profile_id,
        anonymous
    );
    w.identify("m3", T0 + 2000, "bea", Some("a1"));
    w.unify(T0 + 2000);
    let bea = w.profile("user_id", "bea");
    assert_eq!(w.profile("anonymous_id", "a1"), bea, "merged");
    assert_ne!(bea, anonymous, "the anonymous profile was merged away");
    w.follow(T0 + 3000);
    let runs = w.runs(&bea);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].entered_at, T0 + 1000);
    assert_eq!(w.runs(&anonymous), vec![]);
    assert!(w.store.journey_work(None, 10).unwrap().is_empty());
}

/// A visitor buys anonymously and her run starts; she signs in and her anonymous profile
/// is merged into her account: the run goes with her, and the goal she meets as herself
/// ends it. A run she was already in under the account stays the only one.
#[test]
fn a_run_follows_her_into_the_profile_she_is_merged_into() {
    let mut w = World::new("follow");
    w.identify("m1", T0, "cleo", None);
    w.track("m2", T0 + 1000, "anon:a1", "Order Completed");
    w.unify(T0 + 1000);
    w.follow(T0 + 1000);
    let anonymous = w.profile("anonymous_id", "a1");
    assert_eq!(w.runs(&anonymous).len(), 1);
    w.identify("m3", T0 + 2000, "cleo", Some("a1"));
    w.unify(T0 + 2000);
    w.follow(T0 + 2000);
    let cleo = w.profile("user_id", "cleo");
    assert_ne!(cleo, anonymous);
    assert_eq!(w.runs(&anonymous), vec![]);
    let runs = w.runs(&cleo);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert!(runs[0].active);
    assert_eq!(runs[0].bucket, parcours_store::profile_bucket(WS, &cleo));
    assert_eq!(runs[0].state["profile"], cleo.as_str());
    w.track("m4", T0 + 3000, "user:cleo", "Review Written");
    w.unify(T0 + 3000);
    w.follow(T0 + 3000);
    let runs = w.runs(&cleo);
    assert_eq!(runs[0].outcome.as_deref(), Some("goal"), "{runs:?}");

    // Both profiles in the journey when they merge: one run goes on, the other ends.
    w.track("m5", T0 + 4000, "user:cleo", "Order Completed");
    w.track("m6", T0 + 4000, "anon:a2", "Order Completed");
    w.unify(T0 + 4000);
    w.follow(T0 + 4000);
    w.identify("m7", T0 + 5000, "cleo", Some("a2"));
    w.unify(T0 + 5000);
    w.follow(T0 + 5000);
    let active: Vec<_> = w.runs(&cleo).into_iter().filter(|r| r.active).collect();
    assert_eq!(active.len(), 1, "{active:?}");
    let merged: Vec<_> = w
        .runs(&cleo)
        .into_iter()
        .filter(|r| r.outcome.as_deref() == Some("exited"))
        .collect();
    assert_eq!(merged.len(), 1);
    let run: journey::Run = serde_json::from_value(merged[0].state.clone()).unwrap();
    assert!(
        matches!(run.state, journey::RunState::Done { at, .. } if at == T0 + 5000),
        "{run:?}"
    );
    let notes = w.store.run_notes(WS, &merged[0].run_id).unwrap();
    assert_eq!(notes.last().unwrap().code, "merged");
}

/// An entry cap holds across the customers decided and committed together: 200 sign up in
/// one batch (enough to be shared among threads, were there no cap), a journey capped at 50
/// takes 50.
#[test]
fn an_entry_cap_holds_across_customers_decided_together() {
    let mut w = World::new("cap");
    let capped = "id: capped\nstatus: live\nentry:\n  event: Signed Up\n  cap: 50\nsteps:\n  - id: wait\n    wait: 2d\n";
    w.journey(capped);
    for i in 0..200 {
        w.track(&format!("m{i}"), T0 + i, &format!("user:u{i}"), "Signed Up");
    }
    w.unify(T0 + 1_000);
    assert_eq!(w.store.journey_work(None, 1_000).unwrap().len(), 200);
    w.follow(T0 + 1_000);
    let runs: usize = (0..200)
        .map(|i| w.runs(&w.profile("user_id", &format!("u{i}"))).len())
        .sum();
    assert_eq!(runs, 50);
    assert_eq!(w.store.run_counts(WS, "capped").unwrap().active, 50);
}

/// A batch large enough to be decided on several threads gives each customer her own
/// decision: 300 customers sign up together, each gets one run and one email addressed and
/// written to her, and every run's trail of notes is the same, in order.
#[test]
fn customers_decided_on_several_threads_each_get_their_own_message() {
    let mut w = World::new("threads");
    w.journey("id: hello\nstatus: live\nentry:\n  event: Signed Up\nsteps:\n  - id: mail\n    send:\n      channel: email\n      purpose: transactional\n      subject: \"Hello {{ traits.email }}\"\n      text: \"Hi\"\n");
    let n = 300;
    for i in 0..n {
        w.identify(&format!("i{i}"), T0 + i, &format!("u{i}"), None);
        w.track(&format!("s{i}"), T0 + i, &format!("user:u{i}"), "Signed Up");
    }
    w.unify(T0 + 1_000);
    w.follow(T0 + 1_000);
    let rows = w
        .store
        .outbox_rows(&OutboxPage {
            workspace_id: WS,
            destination: "channel:email",
            state: None,
            before_id: None,
            limit: 1_000,
        })
        .unwrap();
    assert_eq!(rows.len(), n as usize);
    let mut addressed = std::collections::BTreeSet::new();
    for r in &rows {
        let m: Value = serde_json::from_str(&r.payload).unwrap();
        let to = m["to"].as_str().unwrap();
        assert_eq!(m["subject"], json!(format!("Hello {to}")), "{m}");
        addressed.insert(to.to_string());
    }
    assert_eq!(addressed.len(), n as usize, "one email for each customer");
    let trail = |u: &str| {
        let runs = w.runs(&w.profile("user_id", u));
        assert_eq!(runs.len(), 1, "{u}: {runs:?}");
        w.store
            .run_notes(WS, &runs[0].run_id)
            .unwrap()
            .into_iter()
            .map(|n| n.code)
            .collect::<Vec<_>>()
    };
    let first = trail("u0");
    assert_eq!(
        first.first().map(String::as_str),
        Some("entered"),
        "{first:?}"
    );
    for i in 1..n {
        assert_eq!(trail(&format!("u{i}")), first, "u{i}");
    }
}

/// A schedule enters every profile (no audience named), a page at a time: 2,500 customers,
/// three pages, each entered once, even when the processor is stopped between pages and a
/// new one (another node) takes over; the timer then waits for the next occurrence.
#[test]
fn a_schedule_enters_everyone_once_across_pages_and_a_restart() {
    let mut w = World::new("schedule");
    let doc = "id: daily\nstatus: live\nentry:\n  schedule: {at: 2026-06-01T09:00:00Z, every: 1d}\nsteps:\n  - id: wait\n    wait: 2h\n";
    let at = parcours_core::time::parse_timestamp("2026-06-01T09:00:00Z").unwrap();
    w.journey(doc);
    let n = 2_500;
    for i in 0..n {
        w.identify(&format!("m{i}"), at - 10 * HOUR + i, &format!("u{i}"), None);
    }
    w.unify(at - HOUR);
    w.follow(at - HOUR);
    let j = journey::doc::read(doc).unwrap();
    let timer = parcours_engine::journeys::schedule_timer(WS, &j, at - HOUR).unwrap();
    assert_eq!(timer.due_at, at);
    w.store.set_timers(&[timer]).unwrap();
    // Nothing before the occurrence.
    w.follow(at - 1);
    assert_eq!(w.store.run_counts(WS, "daily").unwrap().active, 0);
    // One step of the processor queues one page; then another processor takes over.
    let cx = StepContext {
        store: &w.store,
        now: at,
        owned: None,
    };
    w.journeys.step(&cx).unwrap();
    w.journeys = JourneyProcessor::default();
    w.follow(at + 1_000);
    let counts = w.store.run_counts(WS, "daily").unwrap();
    assert_eq!(counts.active, n as u64, "{counts:?}");
    for i in [0, 999, 1_000, 2_499] {
        let runs = w.runs(&w.profile("user_id", &format!("u{i}")));
        assert_eq!(runs.len(), 1, "u{i}: {runs:?}");
        assert_eq!(runs[0].entered_at, at);
    }
    let next = w
        .store
        .timer(WS, parcours_store::JOURNEY_SCHEDULES, "daily")
        .unwrap()
        .unwrap();
    assert_eq!(next.due_at, at + 24 * HOUR);
    // Their runs end after the 2h wait; the next day's occurrence enters everyone again
    // (re-entry after exit).
    w.follow(at + 3 * HOUR);
    assert_eq!(w.store.run_counts(WS, "daily").unwrap().active, 0);
    w.follow(at + 24 * HOUR);
    w.follow(at + 24 * HOUR + 1_000);
    let counts = w.store.run_counts(WS, "daily").unwrap();
    assert_eq!(
        (counts.active, counts.ended),
        (n as u64, n as u64),
        "{counts:?}"
    );
}

/// Fired timers commit a page at a time, but a customer's second timer in the page is
/// decided after her first one's write: two journeys whose waits end at the same moment
/// send her one email under a cap of one a day, and defer the other, for every customer of
/// the page.
#[test]
fn timers_fired_together_keep_her_contact_cap() {
    let mut w = World::new("timer-cap");
    let mail = |id: &str, priority: u8| {
        format!(
            "id: {id}\nstatus: live\npriority: {priority}\nentry:\n  event: Cart Viewed\nsteps:\n  - id: wait\n    wait: 1h\n  - id: mail\n    send:\n      channel: email\n      purpose: transactional\n      subject: \"{id}\"\n      text: \"{id}\"\n"
        )
    };
    w.journey(&mail("high", 80));
    w.journey(&mail("low", 20));
    w.store
        .put_journey_policy(
            WS,
            &json!({"caps": [{"channel": "email", "max": 1, "per": "day"}]}),
            T0,
        )
        .unwrap();
    let customers = ["u1", "u2", "u3"];
    for (i, u) in customers.iter().enumerate() {
        w.identify(&format!("i{i}"), T0, u, None);
        w.track(
            &format!("c{i}"),
            T0 + 1,
            &format!("user:{u}"),
            "Cart Viewed",
        );
    }
    w.unify(T0 + 10);
    w.follow(T0 + 10);
    assert_eq!(w.store.timer_count("journey").unwrap(), 6);
    w.follow(T0 + HOUR + 10);
    for u in customers {
        let profile = w.profile("user_id", u);
        let runs = w.runs(&profile);
        assert_eq!(runs.len(), 2, "{u}: {runs:?}");
        let sent = w.store.contacts(WS, &profile, 0).unwrap();
        assert_eq!(sent.len(), 1, "{u} was sent more than her cap: {sent:?}");
        let deferred: Vec<String> = runs
            .iter()
            .flat_map(|r| w.store.run_notes(WS, &r.run_id).unwrap())
            .map(|n| n.code)
            .filter(|c| c == "deferred_cap")
            .collect();
        assert_eq!(deferred.len(), 1, "{u}: the other email is deferred");
    }
}
