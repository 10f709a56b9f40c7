//! Two nodes evaluate audiences side by side on one store, each for the buckets it holds
//! (the holder of bucket 0 also runs full computations): a profile is evaluated by one node,
//! each entry is recorded once, and a full computation that runs while the other node goes on
//! ends with the members a single node computes.

use std::collections::{BTreeMap, BTreeSet};

use parcours_core::audience::parse;
use parcours_core::rules::IdentityRulesConfig;
use parcours_core::spec::{AcceptedEvent, EventType};
use parcours_core::Channel;
use parcours_engine::audiences::AudienceProcessor;
use parcours_engine::definitions::{save_audience, AudienceDoc};
use parcours_engine::unify_step;
use parcours_store::{
    profile_bucket, Audiences, Cluster, EventLog, IngestBatch, Projections, Registry, Store,
    WorkScope, Workspace,
};
use parcours_store_sqlite::SqliteStore;
use serde_json::json;

const T0: i64 = 1_780_000_000_000;
const WS: &str = "ws";

struct Node {
    id: &'static str,
    buckets: Vec<u16>,
    processor: AudienceProcessor,
}

impl Node {
    fn step(&mut self, store: &dyn Store, now: i64) -> bool {
        let r = self
            .processor
            .step_as(store, now, 200, Some((self.id, &self.buckets)))
            .unwrap();
        !r.is_idle()
    }
}

fn track(store: &SqliteStore, n: &mut usize, user: &str, event: &str, at: i64) {
    *n += 1;
    let body = json!({"type": "track", "event": event, "userId": user, "properties": {}});
    store
        .append(
            &[IngestBatch {
                workspace_id: WS.into(),
                source_id: "src".into(),
                events: vec![AcceptedEvent {
                    message_id: format!("m{n}"),
                    kind: EventType::Track,
                    event: Some(event.into()),
                    user_id: Some(user.into()),
                    anonymous_id: None,
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

fn audience(store: &SqliteStore, id: &str, text: &str) {
    let doc = AudienceDoc {
        name: id.into(),
        description: String::new(),
        condition: parse(text).unwrap(),
    };
    save_audience(store, WS, id, &doc, T0).unwrap();
}

fn members(store: &SqliteStore, id: &str) -> BTreeSet<String> {
    store
        .members(WS, id, "", 100_000)
        .unwrap()
        .into_iter()
        .map(|m| m.profile_id)
        .collect()
}

fn profile(store: &SqliteStore, user: &str) -> String {
    store
        .lookup(WS, &parcours_core::Identifier::new("user_id", user))
        .unwrap()
        .unwrap()
}

/// Steps both nodes (and unify) until neither has anything left to do.
fn settle(store: &SqliteStore, nodes: &mut [Node], now: i64) {
    for _ in 0..1_000 {
        while unify_step(store, now, 1_000).unwrap() > 0 {}
        let mut busy = false;
        for n in nodes.iter_mut() {
            busy |= n.step(store, now);
        }
        if !busy {
            return;
        }
    }
    panic!("the nodes never went idle");
}

#[test]
fn two_nodes_split_the_profiles_and_a_full_computation_beside_them_is_exact() {
    let dir = std::env::temp_dir().join(format!("parcours-spread-{}", std::process::id()));
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
    // Node "a" holds buckets 0 to 127 (it leads), node "b" the rest.
    let until = T0 + 3_600_000;
    let held_a = store.balance_leases("a", 128, T0, until).unwrap();
    let held_b = store.balance_leases("b", 128, T0, until).unwrap();
    assert_eq!((held_a.len(), held_b.len()), (128, 128));
    assert!(held_a.contains(&0));
    let mut nodes = [
        Node {
            id: "a",
            buckets: held_a.clone(),
            processor: AudienceProcessor::default().with_page_budget(std::time::Duration::ZERO),
        },
        Node {
            id: "b",
            buckets: held_b.clone(),
            processor: AudienceProcessor::default(),
        },
    ];

    audience(&store, "buyers", r#"did "Order Completed""#);
    settle(&store, &mut nodes, T0);
    let mut n = 0;
    for i in 0..400 {
        let user = format!("u{i}");
        track(&store, &mut n, &user, "Product Viewed", T0 + 1);
        if i % 3 == 0 {
            track(&store, &mut n, &user, "Order Completed", T0 + 2);
        }
    }
    settle(&store, &mut nodes, T0 + 10);
    let buyers: BTreeSet<String> = (0..400)
        .filter(|i| i % 3 == 0)
        .map(|i| profile(&store, &format!("u{i}")))
        .collect();
    assert_eq!(members(&store, "buyers"), buyers);
    // Each node evaluated the profiles of its own buckets, and only those.
    let (a, b) = (
        nodes[0].processor.evaluated(),
        nodes[1].processor.evaluated(),
    );
    let in_b = (0..400)
        .map(|i| profile(&store, &format!("u{i}")))
        .filter(|p| held_b.contains(&profile_bucket(WS, p)))
        .count() as u64;
    assert_eq!(b, in_b, "node b evaluated its own profiles");
    assert_eq!(a + b, 400, "every profile was evaluated once");

    // A second audience: its full computation runs on "a" while events keep coming. "b"
    // leaves the workspace to "a" meanwhile, then takes its buckets back.
    audience(
        &store,
        "viewers_twice",
        r#"did "Product Viewed" count >= 2"#,
    );
    let mut later = Vec::new();
    for round in 0..6 {
        for i in (round * 60)..(round * 60 + 40) {
            let user = format!("u{i}");
            track(
                &store,
                &mut n,
                &user,
                "Product Viewed",
                T0 + 20 + round as i64,
            );
            later.push(i);
        }
        while unify_step(&store, T0 + 30, 1_000).unwrap() > 0 {}
        let before = nodes[1].processor.evaluated();
        nodes[1].step(&store, T0 + 30);
        let computing = store
            .definitions(Some(WS))
            .unwrap()
            .iter()
            .any(|d| d.computed_version < d.version);
        if computing {
            assert_eq!(
                nodes[1].processor.evaluated(),
                before,
                "b evaluated a workspace whose full computation runs"
            );
        }
        nodes[0].step(&store, T0 + 30);
    }
    settle(&store, &mut nodes, T0 + 40);
    let twice: BTreeSet<String> = later
        .iter()
        .map(|i| profile(&store, &format!("u{i}")))
        .collect();
    assert_eq!(members(&store, "viewers_twice"), twice);
    assert_eq!(members(&store, "buyers"), buyers);
    // Every entry once: nobody left, nobody entered twice.
    let mut entries: BTreeMap<(String, String), usize> = BTreeMap::new();
    for c in store.changes_after(0, 100_000).unwrap() {
        assert!(c.entered, "{} left {}", c.profile_id, c.audience_id);
        *entries.entry((c.audience_id, c.profile_id)).or_default() += 1;
    }
    assert!(entries.values().all(|n| *n == 1), "an entry recorded twice");
    assert_eq!(entries.len(), buyers.len() + twice.len());
    // Nothing is left waiting.
    assert!(store
        .audience_work(&WorkScope::everything(), 10)
        .unwrap()
        .is_empty());
    // Node "b" no longer holds its leases: its writes are refused, nothing is lost.
    track(&store, &mut n, "late", "Order Completed", T0 + 50);
    while unify_step(&store, T0 + 50, 1_000).unwrap() > 0 {}
    let late = profile(&store, "late");
    let owner = if held_b.contains(&profile_bucket(WS, &late)) {
        1
    } else {
        0
    };
    let expired = until + 1;
    let r = nodes[owner]
        .processor
        .step_as(
            &store,
            expired,
            200,
            Some((nodes[owner].id, &nodes[owner].buckets.clone())),
        )
        .unwrap();
    assert!(r.retried, "a node without its leases wrote");
    assert!(!members(&store, "buyers").contains(&late));
    let _ = std::fs::remove_dir_all(&dir);
}
