//! Scale-out: three `parcours serve` processes share one PostgreSQL database. A sustained
//! stream goes through all three, one is killed with SIGKILL, and its buckets move to the
//! others within the lease timeout. Afterwards every acknowledged event is stored once, each
//! bucket's events were applied in log order, the profiles are exactly what a single-node
//! replay of the same log produces, and each audience entry and exit was recorded exactly once
//! (the audience processor moves with bucket 0 when its node dies). Journey runs waiting in
//! the killed node's buckets go on from the others, and every customer gets her one email.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use parcours_engine::clock::Moment;

use parcours_cli::node::DEFAULT_WORKSPACE;
use parcours_store::{Audiences, Cluster as _, EventLog, Journeys, Outbox, Projections};
use parcours_store_postgres::testing::TempDatabase;
use parcours_store_postgres::{PgConfig, PgStore};
use parcours_testkit::cluster::{Cluster, ClusterSpec};
use parcours_testkit::http::Client;
use serde_json::json;

const KEY: &str = "wk_cluster_0123456789abcdef";
const ADMIN: &str = "pat_cluster_0123456789abcdef";
const LEASE_TIMEOUT: Duration = Duration::from_secs(5);
const CUSTOMERS: usize = 240;
const WORKERS: usize = 6;
const WELCOME: &str = "id: welcome\nstatus: live\nentry:\n  event: Product Viewed\n  reentry: never\nsteps:\n  - id: wait\n    wait: 12s\n  - id: hello\n    send: {channel: email, purpose: transactional, subject: Welcome, text: 'Hello {{ traits.plan }}'}\n";

fn now_ms() -> i64 {
    parcours_core::time::Clock::now(&parcours_engine::SystemClock)
}

/// The buckets held by live leases, by node.
fn holders(store: &PgStore, now: i64) -> BTreeMap<String, usize> {
    let mut by_node = BTreeMap::new();
    for lease in store.leases().unwrap() {
        if let Some(node) = lease.node.filter(|_| lease.until >= now) {
            *by_node.entry(node).or_insert(0) += 1;
        }
    }
    by_node
}

/// One customer's next batch: an identify first, then page views and cart events, each with
/// a later timestamp than the one before.
fn customer_batch(customer: usize, round: usize, t0: i64) -> (Vec<String>, serde_json::Value) {
    let mut ids = Vec::new();
    let mut events = Vec::new();
    for i in 0..4 {
        let n = round * 4 + i;
        let mid = format!("c{customer}-e{n}");
        let ts = parcours_core::time::format_timestamp(t0 + n as i64 * 1_000);
        let mut e = if n == 0 {
            json!({"type": "identify", "traits": {"email": format!("c{customer}@example.com"), "plan": "gold"}})
        } else if n.is_multiple_of(7) {
            json!({"type": "identify", "traits": {"visits": n}})
        } else {
            json!({"type": "track", "event": "Product Viewed", "properties": {"n": n}})
        };
        e["userId"] = json!(format!("cus_{customer}"));
        e["anonymousId"] = json!(format!("anon_{customer}"));
        e["messageId"] = json!(mid);
        e["timestamp"] = json!(ts);
        ids.push(mid);
        events.push(e);
    }
    (ids, json!({ "batch": events }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_loses_its_buckets_and_nothing_else() {
    let db = TempDatabase::create();
    let work_dir = common::temp_dir("cluster");
    let mut cluster = Cluster::start(ClusterSpec {
        binary: env!("CARGO_BIN_EXE_parcours").into(),
        database_url: db.url().to_string(),
        nodes: 3,
        lease_timeout: LEASE_TIMEOUT,
        write_key: KEY.into(),
        admin_token: ADMIN.into(),
        work_dir: work_dir.clone(),
    })
    .await
    .expect("three nodes start together on one database");
    let store = Arc::new(PgStore::connect(&PgConfig::new(db.url())).unwrap());

    // The buckets spread over the three nodes.
    let deadline = Moment::now() + Duration::from_secs(20);
    loop {
        let held = holders(&store, now_ms());
        // Shares of ceil(256 / 3) = 86, the last node taking what is left.
        if held.len() == 3
            && held.values().sum::<usize>() == 256
            && held.values().all(|n| (84..=86).contains(n))
        {
            break;
        }
        assert!(Moment::now() < deadline, "buckets never spread: {held:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every node serves the admin API too.
    for node in cluster.live() {
        let r = node.client().get("/api/v1/status", ADMIN).await.unwrap();
        assert_eq!(r.status, 200, "{} status: {:?}", node.id, r.json());
    }
    // Customers enter "engaged" at their 7th event and leave it at their 21st.
    let r = cluster.nodes[0]
        .client()
        .post(
            "/api/v1/audiences",
            ADMIN,
            json!({"id": "engaged", "name": "Engaged",
                   "definition": "trait visits >= 7 and trait visits < 21"})
            .to_string(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{:?}", r.json());
    // And a journey: each customer enters at her first page view, waits long enough to be
    // waiting when the node dies, then gets one email (the capture channel: no SMTP here).
    let r = cluster.nodes[0]
        .client()
        .request(
            "PUT".parse().unwrap(),
            "/api/v1/journeys/welcome",
            &[
                ("authorization", &format!("Bearer {ADMIN}")),
                ("content-type", "application/yaml"),
            ],
            WELCOME.to_string(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{:?}", r.json());

    // A sustained stream through all three nodes: each worker owns some customers and sends
    // a customer's next batch only after the previous one was acknowledged.
    let urls: Vec<String> = cluster.nodes.iter().map(|n| n.url()).collect();
    let alive: Arc<Vec<AtomicBool>> =
        Arc::new(urls.iter().map(|_| AtomicBool::new(true)).collect());
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let retries = Arc::new(AtomicUsize::new(0));
    let t0 = now_ms() - 3_600_000;
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let (urls, alive, acked, stop, retries) = (
            urls.clone(),
            alive.clone(),
            acked.clone(),
            stop.clone(),
            retries.clone(),
        );
        workers.push(tokio::spawn(async move {
            let clients: Vec<Client> = urls.iter().map(|u| Client::new(u.clone())).collect();
            let mine: Vec<usize> = (0..CUSTOMERS).filter(|c| c % WORKERS == w).collect();
            let mut pick = w;
            for round in 0.. {
                for &customer in &mine {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let (ids, body) = customer_batch(customer, round, t0);
                    let body = body.to_string();
                    // Retry on another node until acknowledged: a killed node may or may not
                    // have committed the batch, and the messageIds make the retry safe.
                    loop {
                        pick = (pick + 1) % clients.len();
                        if !alive[pick].load(Ordering::SeqCst) {
                            continue;
                        }
                        match clients[pick].track("/v1/batch", KEY, body.clone()).await {
                            Ok(r) if r.status == 200 => break,
                            _ => {
                                retries.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                    }
                    acked.lock().unwrap().extend(ids);
                }
            }
        }));
    }

    let deadline = Moment::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 3_000 {
        assert!(Moment::now() < deadline, "the stream did not get going");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Audience work is spread: every node evaluates the profiles of its own buckets (the
    // holder of bucket 0 also ran the full computation of "engaged").
    let deadline = Moment::now() + Duration::from_secs(30);
    loop {
        let mut items = Vec::new();
        for node in cluster.live() {
            let s = node
                .client()
                .get("/api/v1/status", ADMIN)
                .await
                .unwrap()
                .json();
            let done = s["processors"]["audiences"]["items"].as_u64().unwrap_or(0);
            items.push((node.id.clone(), s["buckets_held"].clone(), done));
        }
        if items.iter().all(|(_, _, done)| *done > 0) {
            eprintln!("audience items per node (node, buckets held, items): {items:?}");
            break;
        }
        assert!(
            Moment::now() < deadline,
            "audience work did not spread over the nodes: {items:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The victim is the holder of bucket 0, where full computations and deliveries run: they
    // have to move too.
    // Read from one snapshot of the leases, taken while its lease is current: a renewal a
    // little late on a loaded machine leaves a lease past its end for a moment.
    let deadline = Moment::now() + Duration::from_secs(10);
    let (leader, before_kill) = loop {
        let now = now_ms();
        let leases = store.leases().unwrap();
        let leader = leases
            .iter()
            .find(|l| l.bucket == 0 && l.until >= now)
            .and_then(|l| l.node.clone());
        let held = holders(&store, now);
        if let Some(leader) = leader.filter(|l| held.contains_key(l)) {
            break (leader, held);
        }
        assert!(Moment::now() < deadline, "bucket 0 is not held: {leases:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let index = cluster
        .nodes
        .iter()
        .position(|n| n.id == leader)
        .expect("the holder of bucket 0 is one of the nodes");
    let victim = leader.as_str();
    let victim_buckets = before_kill[victim];
    // Runs waiting in its buckets: they must go on from the others.
    let its_buckets: BTreeSet<u16> = store
        .leases()
        .unwrap()
        .into_iter()
        .filter(|l| l.node.as_deref() == Some(victim))
        .map(|l| l.bucket)
        .collect();
    // Many store calls in a row: on a blocking thread, not on the test's runtime.
    let waiting_there = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || {
            let mut n = 0;
            for c in 0..CUSTOMERS {
                let id = parcours_core::Identifier::new("user_id", format!("cus_{c}"));
                let Some(profile) = store.lookup(DEFAULT_WORKSPACE, &id).unwrap() else {
                    continue;
                };
                n += store
                    .active_runs(DEFAULT_WORKSPACE, &profile)
                    .unwrap()
                    .iter()
                    .filter(|r| its_buckets.contains(&r.bucket))
                    .count();
            }
            n
        })
        .await
        .unwrap()
    };
    assert!(waiting_there > 0, "no run waits in the victim's buckets");
    cluster.kill(index);
    let killed_at = Moment::now();
    // Clients keep trying the dead node for a moment (refused, retried elsewhere), as they
    // would until a load balancer's health check notices.
    tokio::time::sleep(Duration::from_millis(300)).await;
    alive[index].store(false, Ordering::SeqCst);
    let acked_at_kill = acked.lock().unwrap().len();

    // Its buckets move to the survivors within the lease timeout.
    let takeover = loop {
        let held = holders(&store, now_ms());
        if !held.contains_key(victim) && held.values().sum::<usize>() == 256 {
            break killed_at.elapsed();
        }
        assert!(
            killed_at.elapsed() < LEASE_TIMEOUT * 3,
            "buckets were not taken over: {held:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!(
        "{victim} held {victim_buckets} buckets; all 256 were held by live nodes {takeover:?} after SIGKILL (lease timeout {LEASE_TIMEOUT:?})"
    );
    // The check itself polls every 50 ms.
    assert!(
        takeover <= LEASE_TIMEOUT + Duration::from_millis(50),
        "takeover took {takeover:?}"
    );

    // Keep streaming a little on the two survivors, then stop.
    let until = acked.lock().unwrap().len() + 2_000;
    let deadline = Moment::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < until {
        assert!(
            Moment::now() < deadline,
            "the stream stalled after the kill"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    eprintln!(
        "{} events acknowledged ({acked_at_kill} before the kill), {} retried requests",
        acked.len(),
        retries.load(Ordering::Relaxed)
    );

    // The survivors apply everything.
    let deadline = Moment::now() + Duration::from_secs(120);
    while store.processed_seq().unwrap() < store.last_seq().unwrap() {
        assert!(
            Moment::now() < deadline,
            "unify never caught up: {} < {}\n{}",
            store.processed_seq().unwrap(),
            store.last_seq().unwrap(),
            cluster.log_tail((index + 1) % 3)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The audience processors (each node's, on its buckets) catch up too, and unify applies
    // the `Audience Entered` and `Audience Exited` events the leader publishes.
    let deadline = Moment::now() + Duration::from_secs(120);
    let mut quiet = 0;
    while quiet < 2 {
        let r = cluster.live()[0]
            .client()
            .get("/api/v1/status", ADMIN)
            .await
            .unwrap();
        let s = r.json();
        let caught_up = s["processors"]["audiences"]["lag_events"] == 0
            && store.processed_seq().unwrap() == store.last_seq().unwrap();
        quiet = if caught_up { quiet + 1 } else { 0 };
        assert!(Moment::now() < deadline, "audiences never caught up: {s:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Every customer's run went on, wherever it waited, and sent her one email: none lost,
    // none under two keys.
    let deadline = Moment::now() + Duration::from_secs(90);
    let sent = loop {
        let r = cluster.live()[0]
            .client()
            .get("/api/v1/journeys/welcome", ADMIN)
            .await
            .unwrap()
            .json();
        let rows = store
            .outbox_rows(&parcours_store::OutboxPage {
                workspace_id: DEFAULT_WORKSPACE,
                destination: "channel:email",
                state: None,
                before_id: None,
                limit: 10 * CUSTOMERS,
            })
            .unwrap();
        let done = rows
            .iter()
            .all(|r| r.state == parcours_store::OutboxState::Done);
        if r["runs"]["ended"] == CUSTOMERS && r["runs"]["active"] == 0 && done {
            break rows;
        }
        assert!(
            Moment::now() < deadline,
            "the journey's runs did not all finish: {} ({} emails)",
            r["runs"],
            rows.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let to: BTreeSet<String> = sent
        .iter()
        .map(|r| {
            let m: serde_json::Value = serde_json::from_str(&r.payload).unwrap();
            m["to"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(sent.len(), CUSTOMERS, "one email per customer");
    assert_eq!(to.len(), CUSTOMERS, "each to a different customer");
    eprintln!("welcome: {waiting_there} runs waited in the killed node's buckets; {CUSTOMERS} emails, one each");

    // A replay would fight the running nodes: it refuses, naming them.
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_parcours"))
        .args(["replay", "--database", db.url()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "replay ran beside live nodes");
    assert!(
        stderr.contains("stop every node") && stderr.contains(&cluster.live()[0].id),
        "{stderr}"
    );
    cluster.kill_all();

    // Every acknowledged event is stored, and none twice.
    let mut stored = Vec::new();
    let mut after = 0;
    loop {
        let page = store.events_after(after, 10_000).unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq;
        stored.extend(page);
    }
    let mids: BTreeSet<&str> = stored.iter().map(|e| e.message_id.as_str()).collect();
    assert_eq!(mids.len(), stored.len(), "no messageId is stored twice");
    let missing: Vec<&String> = acked
        .iter()
        .filter(|m| !mids.contains(m.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events are missing: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );

    // The customers' events, without the `Audience Entered` and `Audience Exited` events the
    // audience processor appends (they name no person: unify applies them to nobody).
    let published = |e: &&parcours_store::StoredEvent| {
        matches!(
            e.event.as_deref(),
            Some("Audience Entered" | "Audience Exited")
        )
    };
    let customer_events: Vec<&parcours_store::StoredEvent> =
        stored.iter().filter(|e| !published(e)).collect();
    let published_changes = stored.iter().filter(published).count();
    // Each bucket's events were applied once, in log order, whichever node applied them.
    let order = store.application_order().unwrap();
    assert_eq!(
        order.len(),
        customer_events.len(),
        "every event applied exactly once"
    );
    let mut last_seq: HashMap<u16, i64> = HashMap::new();
    for a in &order {
        let prev = last_seq.insert(a.bucket, a.seq).unwrap_or(0);
        assert!(
            prev < a.seq,
            "bucket {} applied seq {} after {prev}",
            a.bucket,
            a.seq
        );
    }
    // Per customer too, in the order the customer sent them.
    let mut by_customer: HashMap<&str, Vec<i64>> = HashMap::new();
    for e in &customer_events {
        by_customer
            .entry(e.user_id.as_deref().unwrap())
            .or_default()
            .push(e.timestamp);
    }
    assert_eq!(by_customer.len(), CUSTOMERS);
    for (c, ts) in &by_customer {
        assert!(
            ts.windows(2).all(|w| w[0] < w[1]),
            "{c}'s events are in log order"
        );
    }

    // Each entry and exit was recorded once, across the kill and the takeover: a profile's
    // changes alternate, starting with an entry, and its last one is where it is now.
    let changes = store.changes_after(0, 1_000_000).unwrap();
    let mut last: HashMap<&str, bool> = HashMap::new();
    let (mut entries, mut exits) = (0, 0);
    for c in changes.iter().filter(|c| c.audience_id == "engaged") {
        let before = last.insert(&c.profile_id, c.entered).unwrap_or(false);
        assert_ne!(
            before,
            c.entered,
            "{} {} twice in a row",
            c.profile_id,
            if c.entered { "entered" } else { "left" }
        );
        if c.entered {
            entries += 1;
        } else {
            exits += 1;
        }
    }
    assert!(
        entries <= CUSTOMERS && exits <= entries,
        "{entries} entries, {exits} exits"
    );
    let members: BTreeSet<String> = store
        .members(DEFAULT_WORKSPACE, "engaged", "", 100_000)
        .unwrap()
        .into_iter()
        .map(|m| m.profile_id)
        .collect();
    let inside: BTreeSet<String> = last
        .iter()
        .filter(|(_, entered)| **entered)
        .map(|(p, _)| p.to_string())
        .collect();
    assert_eq!(members, inside, "the change log gives the members");
    eprintln!("engaged: {entries} entries and {exits} exits, each recorded once");
    assert!(entries > 0);
    // And each was published to the event log once (its messageId names the change).
    assert_eq!(
        published_changes,
        entries + exits,
        "each change published once"
    );

    // The profiles are exactly those of a single-node replay of the same log.
    let snapshot = |store: &PgStore| {
        let mut all = Vec::new();
        let mut after = String::new();
        loop {
            let page = store
                .profiles_page(DEFAULT_WORKSPACE, &after, 1_000)
                .unwrap();
            let Some(last) = page.last() else { break };
            after = last.id.clone();
            all.extend(page.into_iter().map(|p| serde_json::to_value(p).unwrap()));
        }
        all
    };
    let clustered = snapshot(&store);
    assert_eq!(clustered.len(), CUSTOMERS, "one profile per customer");
    parcours_engine::replay(&*store, now_ms(), 10_000, &mut |_, _| {}).unwrap();
    let replayed = snapshot(&store);
    assert_eq!(clustered.len(), replayed.len());
    for (a, b) in clustered.iter().zip(&replayed) {
        assert_eq!(a, b, "a profile differs from the single-node replay");
    }
    drop(cluster);
    let _ = std::fs::remove_dir_all(&work_dir);
}
