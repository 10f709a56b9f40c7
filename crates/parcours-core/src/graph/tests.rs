use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::channel::Channel;
use crate::observation::EventMeta;
use crate::rules::IdentityRulesConfig;
use crate::spec::EventType;

const WS: &str = "ws_test";

struct Ev {
    mid: String,
    ts: i64,
    kind: EventType,
    user: Option<String>,
    anon: Option<String>,
    body: serde_json::Value,
}

fn obs(rules: &IdentityRules, seq: i64, e: &Ev) -> Observation {
    let meta = EventMeta {
        seq,
        message_id: &e.mid,
        kind: e.kind,
        event: None,
        user_id: e.user.as_deref(),
        anonymous_id: e.anon.as_deref(),
        timestamp: e.ts,
        received_at: e.ts,
        channel: Channel::Web,
        source_id: "src",
    };
    Observation::from_event(&meta, &e.body, rules)
}

fn identify(
    mid: &str,
    ts: i64,
    user: Option<&str>,
    anon: Option<&str>,
    traits: serde_json::Value,
) -> Ev {
    Ev {
        mid: mid.into(),
        ts,
        kind: EventType::Identify,
        user: user.map(Into::into),
        anon: anon.map(Into::into),
        body: json!({ "traits": traits }),
    }
}

fn run(rules: &IdentityRules, events: &[Ev]) -> Graph {
    let mut g = Graph::new(WS, rules.clone(), vec![]);
    for (i, e) in events.iter().enumerate() {
        g.apply(&obs(rules, i as i64, e));
    }
    g
}

fn profile_of<'a>(g: &'a Graph, kind: &str, value: &str) -> &'a Profile {
    let pid = g
        .holder(&Identifier::new(kind, value))
        .expect("identifier is linked");
    &g.profiles[pid]
}

#[test]
fn anonymous_browsing_joins_the_profile_when_the_visitor_identifies() {
    let rules = IdentityRules::default();
    let g = run(
        &rules,
        &[
            identify("m1", 1, None, Some("anon-1"), json!({})),
            identify(
                "m2",
                2,
                Some("cus_1"),
                Some("anon-1"),
                json!({"email": "A@x.io"}),
            ),
        ],
    );
    assert_eq!(g.profiles.len(), 1);
    let p = profile_of(&g, "email", "a@x.io");
    assert_eq!(
        p.id,
        profile_id_for(WS, "m1", 0),
        "the profile keeps the id of the event that created it"
    );
    assert_eq!(p.events, 2);
}

#[test]
fn a_shared_tablet_does_not_merge_two_customers() {
    let rules = IdentityRules::default();
    let tablet = Some("tablet-store_1");
    let g = run(
        &rules,
        &[
            identify(
                "m1",
                1,
                Some("alice"),
                tablet,
                json!({"email": "alice@x.io"}),
            ),
            identify("m2", 2, Some("bob"), tablet, json!({"email": "bob@x.io"})),
            identify("m3", 3, Some("carol"), tablet, json!({})),
        ],
    );
    assert_eq!(g.profiles.len(), 3, "three customers stay three profiles");
    let bob = profile_of(&g, "user_id", "bob");
    assert!(bob
        .identifiers
        .contains(&Identifier::new("email", "bob@x.io")));
    assert!(!bob
        .identifiers
        .contains(&Identifier::new("anonymous_id", "tablet-store_1")));
    assert!(bob.entangled, "bob observed the tablet without holding it");
    assert_eq!(
        profile_of(&g, "anonymous_id", "tablet-store_1").id,
        profile_of(&g, "user_id", "alice").id
    );
}

#[test]
fn two_known_profiles_merge_with_a_logged_cause() {
    let rules = IdentityRules::default();
    let mut g = run(
        &rules,
        &[
            identify(
                "m1",
                1,
                None,
                Some("web-1"),
                json!({"email": "a@x.io", "tier": "silver"}),
            ),
            identify("m2", 2, None, Some("app-1"), json!({"phone_model": "X"})),
            identify(
                "m3",
                5,
                Some("cus_1"),
                Some("app-1"),
                json!({"email": "a@x.io", "tier": "gold"}),
            ),
        ],
    );
    assert_eq!(g.profiles.len(), 1);
    let changes = g.take_changes();
    assert_eq!(changes.merges.len(), 1);
    let m = &changes.merges[0];
    assert_eq!(
        m.winner,
        profile_id_for(WS, "m1", 0),
        "the older profile wins"
    );
    assert_eq!(m.loser, profile_id_for(WS, "m2", 1));
    assert_eq!(m.cause.mid, "m3");
    assert_eq!(m.identifiers, [Identifier::new("anonymous_id", "app-1")]);
    assert_eq!(m.loser_anchor, Identifier::new("anonymous_id", "app-1"));
    assert_eq!(m.winner_anchor, Identifier::new("email", "a@x.io"));
    let p = &g.profiles[&m.winner];
    assert_eq!(p.traits["tier"].value, "gold");
    assert_eq!(p.traits["phone_model"].value, "X");
    assert_eq!(g.resolve(&m.loser), m.winner);
}

#[test]
fn a_new_user_id_on_a_known_email_makes_a_new_profile() {
    let rules = IdentityRules::default();
    let g = run(
        &rules,
        &[
            identify(
                "m1",
                1,
                Some("cus_1"),
                None,
                json!({"email": "shared@x.io"}),
            ),
            identify(
                "m2",
                2,
                Some("cus_2"),
                None,
                json!({"email": "shared@x.io"}),
            ),
        ],
    );
    assert_eq!(g.profiles.len(), 2);
    assert_eq!(
        profile_of(&g, "email", "shared@x.io").id,
        profile_of(&g, "user_id", "cus_1").id
    );
}

#[test]
fn separated_identifiers_never_join_again() {
    let rules = IdentityRules::default();
    let separation = (
        Identifier::new("email", "a@x.io"),
        Identifier::new("email", "b@x.io"),
    );
    let mut g = Graph::new(WS, rules.clone(), vec![separation]);
    for (i, e) in [
        identify("m1", 1, None, Some("t"), json!({"email": "a@x.io"})),
        identify("m2", 2, None, Some("b-web"), json!({"email": "b@x.io"})),
        identify("m3", 3, None, Some("t"), json!({"email": "b@x.io"})),
    ]
    .iter()
    .enumerate()
    {
        g.apply(&obs(&rules, i as i64, e));
    }
    assert_eq!(g.profiles.len(), 2);
    assert!(profile_of(&g, "email", "b@x.io").entangled);
}

#[test]
fn a_message_id_reused_after_the_dedup_window_makes_its_own_profile() {
    let rules = IdentityRules::default();
    let g = run(
        &rules,
        &[
            identify("same-id", 1, Some("first"), None, json!({"tier": "gold"})),
            identify("same-id", 2, Some("second"), None, json!({})),
        ],
    );
    assert_eq!(g.profiles.len(), 2);
    assert_eq!(
        profile_of(&g, "user_id", "first").traits["tier"].value,
        "gold",
        "the first profile is intact"
    );
}

#[test]
fn a_backdated_event_keeps_the_profile_id() {
    let rules = IdentityRules::default();
    let first = obs(&rules, 0, &identify("m1", 100, Some("u"), None, json!({})));
    let backdated = obs(
        &rules,
        1,
        &identify("m2", 5, Some("u"), None, json!({"plan": "gold"})),
    );
    let mut live = Graph::new(WS, rules.clone(), vec![]);
    live.apply(&first);
    let id = live
        .holder(&Identifier::new("user_id", "u"))
        .unwrap()
        .to_string();
    let Lateness::Late(component) = live.lateness(&backdated) else {
        panic!("a backdated event is late");
    };
    live.remove_component(&component);
    live.fold([&first, &backdated]);
    assert_eq!(
        live.holder(&Identifier::new("user_id", "u")),
        Some(id.as_str())
    );
    assert_eq!(id, profile_id_for(WS, "m1", 0));
    assert_eq!(live.profiles[&id].traits["plan"].value, "gold");
}

#[test]
fn an_identifier_kept_off_a_profile_leaves_its_trait_off_too() {
    // Amy and Bob were merged by a call that carried Amy's email and Bob's phone; the merge
    // was undone (a separation of their user ids). The call stays Amy's, Bob's phone does not.
    let rules = IdentityRules::default();
    let separations = vec![(
        Identifier::new("user_id", "amy"),
        Identifier::new("user_id", "bob"),
    )];
    let events = [
        identify("m1", 1, Some("amy"), None, json!({"email": "amy@x.io"})),
        identify(
            "m2",
            2,
            Some("bob"),
            None,
            json!({"phone": "+33612345678", "name": "Bob"}),
        ),
        Ev {
            mid: "m3".into(),
            ts: 3,
            kind: EventType::Track,
            user: None,
            anon: None,
            body: json!({"context": {"traits": {"email": "amy@x.io", "phone": "+33612345678", "topic": "delivery"}}}),
        },
    ];
    let observations: Vec<Observation> = events
        .iter()
        .enumerate()
        .map(|(i, e)| obs(&rules, i as i64, e))
        .collect();
    let mut g = Graph::new(WS, rules.clone(), separations);
    g.fold(&observations);
    let amy = profile_of(&g, "user_id", "amy");
    assert!(!amy.traits.contains_key("phone"), "{:?}", amy.traits);
    assert_eq!(amy.traits["topic"].value, "delivery");
    let bob = profile_of(&g, "user_id", "bob");
    assert_eq!(bob.traits["phone"].value, "+33612345678");
    assert!(bob
        .identifiers
        .contains(&Identifier::new("phone", "+33612345678")));
}

#[test]
fn traits_are_last_write_wins_by_event_time_not_arrival() {
    let rules = IdentityRules::default();
    let g = run(
        &rules,
        &[
            identify("m2", 20, Some("u"), None, json!({"city": "Lyon"})),
            identify("m1", 10, Some("u"), None, json!({"city": "Paris"})),
        ],
    );
    assert_eq!(profile_of(&g, "user_id", "u").traits["city"].value, "Lyon");
}

/// An online graph as a store runs it: events in arrival order, late ones re-derive their
/// component (folded, as the unify processor does).
struct Online {
    graph: Graph,
    seen: Vec<Observation>,
    owner: HashMap<i64, String>,
}

impl Online {
    fn push(&mut self, o: Observation) {
        match self.graph.lateness(&o) {
            Lateness::TooWide => panic!("the generated histories stay small"),
            Lateness::Late(component) => {
                let mut refold: Vec<Observation> = self
                    .seen
                    .iter()
                    .filter(|e| {
                        self.owner
                            .get(&e.seq)
                            .is_some_and(|p| component.contains(self.graph.resolve(p)))
                    })
                    .cloned()
                    .collect();
                refold.push(o.clone());
                self.graph.remove_component(&component);
                self.graph.fold(&refold);
            }
            Lateness::InOrder => {
                self.graph.apply(&o);
            }
        }
        for (seq, p) in self.graph.take_changes().assignments {
            self.owner.insert(seq, p);
        }
        self.seen.push(o);
    }
}

#[derive(Debug, Clone)]
struct GenEvent {
    ts: i64,
    user: Option<u8>,
    anon: Option<u8>,
    email: Option<u8>,
    device: Option<u8>,
    color: u8,
    consent: Option<bool>,
}

fn gen_event() -> impl Strategy<Value = GenEvent> {
    (
        0i64..12,
        proptest::option::weighted(0.4, 0u8..4),
        proptest::option::weighted(0.8, 0u8..5),
        proptest::option::weighted(0.4, 0u8..3),
        proptest::option::weighted(0.3, 0u8..2),
        0u8..4,
        proptest::option::of(any::<bool>()),
    )
        .prop_map(|(ts, user, anon, email, device, color, consent)| GenEvent {
            ts,
            user,
            anon: if user.is_none() && anon.is_none() {
                Some(0)
            } else {
                anon
            },
            email,
            device,
            color,
            consent,
        })
}

fn to_ev(i: usize, g: &GenEvent) -> Ev {
    let mut ctx = json!({});
    if let Some(d) = g.device {
        ctx["device"] = json!({ "id": format!("tablet-{d}") });
    }
    if let Some(c) = g.consent {
        ctx["consent"] = json!({ "categoryPreferences": { "marketing": c } });
    }
    let mut traits = json!({ "color": g.color });
    if let Some(e) = g.email {
        traits["email"] = json!(format!("e{e}@x.io"));
    }
    Ev {
        mid: format!("m{i:03}"),
        ts: g.ts,
        kind: EventType::Identify,
        user: g.user.map(|u| format!("u{u}")),
        anon: g.anon.map(|a| format!("a{a}")),
        body: json!({ "traits": traits, "context": ctx }),
    }
}

fn tight_rules() -> IdentityRules {
    IdentityRules::new(IdentityRulesConfig {
        limits: [
            ("user_id", 1),
            ("email", 2),
            ("device_id", 2),
            ("anonymous_id", 3),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
        ..Default::default()
    })
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Any arrival order of the same events gives the same profiles (ids included),
    /// identifiers and traits as folding them in event-time order.
    #[test]
    fn arrival_order_does_not_change_the_graph(
        events in proptest::collection::vec(gen_event(), 1..25),
        shuffle_seed in any::<u64>(),
        separate in any::<bool>(),
        seq_by_arrival in any::<bool>(),
    ) {
        let rules = tight_rules();
        let separations = if separate {
            vec![(Identifier::new("email", "e0@x.io"), Identifier::new("anonymous_id", "a1"))]
        } else {
            vec![]
        };
        let mut arrival: Vec<Observation> =
            events.iter().enumerate().map(|(i, e)| obs(&rules, i as i64, &to_ev(i, e))).collect();
        let mut state = shuffle_seed | 1;
        for i in (1..arrival.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            arrival.swap(i, (state % (i as u64 + 1)) as usize);
        }
        // A single node's log numbers events in arrival order; several nodes apply the
        // buckets they hold, so an event can arrive after a later one in the log.
        if seq_by_arrival {
            for (i, o) in arrival.iter_mut().enumerate() {
                o.seq = i as i64;
            }
        }

        let mut canonical = Graph::new(WS, rules.clone(), separations.clone());
        canonical.fold(&arrival);
        let mut online = Online { graph: Graph::new(WS, rules, separations), seen: vec![], owner: HashMap::new() };
        for o in arrival.clone() {
            online.push(o);
        }
        prop_assert_eq!(&online.graph.profiles, &canonical.profiles);
        // Each id is that of the profile's first event in the log, whatever came first in time.
        let mut first_in_log: BTreeMap<String, &Observation> = BTreeMap::new();
        for o in &arrival {
            let pid = canonical.resolve(&online.owner[&o.seq]).to_string();
            let slot = first_in_log.entry(pid).or_insert(o);
            if o.seq < slot.seq {
                *slot = o;
            }
        }
        for (pid, o) in first_in_log {
            prop_assert_eq!(pid, profile_id_for(WS, &o.key.mid, o.seq));
        }
        prop_assert_eq!(&online.graph.index, &canonical.index);
        prop_assert_eq!(&online.graph.drops, &canonical.drops);
    }
}
