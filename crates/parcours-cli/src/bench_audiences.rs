//! `parcours bench audiences`: how fast an event becomes a membership change under a steady
//! background load, and how long a new audience takes to compute over a large store.
//!
//! Latency runs a node in this process on the embedded store: a background load of Segment
//! batches over HTTP at a fixed rate, and probes (one event each, for a new person) that
//! enter an audience. A probe's latency is from sending its request to its entry being
//! committed to the change log; the baseline, measured on the same probes, is the time to
//! acknowledge the request (the event committed to the log).
//!
//! Recomputation builds (or reuses, with `--data-dir`) a store of N profiles and M events,
//! defines a new audience and times its full computation; the baseline is one scan of the same
//! events through the store.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use parcours_engine::clock::Moment;

use parcours_core::audience;
use parcours_core::spec::{check_event, Checked, Edge};
use parcours_core::time::{format_timestamp, Clock, Millis, DAY};
use parcours_demo::http::Client;
use parcours_engine::audiences::AudienceProcessor;
use parcours_engine::definitions::{save_audience, AudienceDoc};
use parcours_engine::{Engine, EngineConfig, SystemClock};
use parcours_store::{IngestBatch, Store};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::bench::{percentile, BackgroundLoad};
use crate::config::Config;
use crate::node::{bootstrap, open_store, Node};

#[derive(Debug, Clone)]
pub struct AudienceBench {
    /// Seconds of probes under load.
    pub seconds: u64,
    /// Background events per second.
    pub rate: usize,
    /// Probes per second.
    pub probes: usize,
    /// Profiles and events per profile of the recomputation store.
    pub profiles: usize,
    pub events_per_profile: usize,
    /// Keep (and reuse) the recomputation store here.
    pub data_dir: Option<PathBuf>,
    pub skip_latency: bool,
    pub skip_recompute: bool,
}

fn doc(name: &str, text: &str) -> anyhow::Result<AudienceDoc> {
    Ok(AudienceDoc {
        name: name.into(),
        description: String::new(),
        condition: audience::parse(text).map_err(|e| anyhow::anyhow!("{name}: {e}"))?,
    })
}

fn define(store: &dyn Store, ws: &str, id: &str, text: &str, now: Millis) -> anyhow::Result<()> {
    save_audience(store, ws, id, &doc(id, text)?, now).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

pub async fn run(b: AudienceBench) -> anyhow::Result<()> {
    println!("parcours bench audiences");
    println!(
        "  machine: {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    if !b.skip_latency {
        latency(&b).await?;
    }
    if !b.skip_recompute {
        recompute(&b).await?;
    }
    Ok(())
}

async fn latency(b: &AudienceBench) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("parcours-bench-aud-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = Config {
        data_dir: dir.clone(),
        ..Config::default()
    };
    config.http.port = 0;
    let store = open_store(&config)?;
    let now = SystemClock.now();
    let p = bootstrap(store.as_ref(), &config, now)?.expect("fresh store");
    let ws = p.workspace.id.clone();
    // The probe audience, and audiences the background load keeps busy.
    define(
        store.as_ref(),
        &ws,
        "probe",
        r#"did "Probe Clicked" within 1 hour"#,
        now,
    )?;
    define(
        store.as_ref(),
        &ws,
        "cart_abandoners",
        r#"did "Product Added" within 1 hour and not did "Order Completed" within 1 hour"#,
        now,
    )?;
    define(
        store.as_ref(),
        &ws,
        "big_spenders",
        r#"did "Order Completed" sum of revenue >= 300"#,
        now,
    )?;
    define(
        store.as_ref(),
        &ws,
        "store_shoppers",
        "seen on store within 30 days",
        now,
    )?;
    let node = Node::start(&config, store.clone()).await?;
    let client = Client::new(node.url());

    let background = BackgroundLoad::start(&client, &p.write_key, b.rate, b.seconds, now);
    let stop = Arc::new(AtomicBool::new(false));
    // The watcher notes when each probe's entry is committed.
    let seen: Arc<Mutex<HashMap<String, Moment>>> = Arc::default();
    let watcher = {
        let (store, seen, stop) = (store.clone(), seen.clone(), stop.clone());
        std::thread::spawn(move || -> anyhow::Result<()> {
            let mut cursor = 0;
            while !stop.load(Ordering::SeqCst) {
                let changes = store.changes_after(cursor, 1_000)?;
                let at = Moment::now();
                for c in &changes {
                    if c.audience_id == "probe" && c.entered {
                        seen.lock().unwrap().insert(c.cause.clone(), at);
                    }
                }
                match changes.last() {
                    Some(l) => cursor = l.id,
                    None => std::thread::sleep(Duration::from_millis(1)),
                }
            }
            Ok(())
        })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let bg_before = background.sent();
    let started = Moment::now();
    let mut probes: Vec<(String, Moment, Duration)> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / b.probes as f64));
    for i in 0..b.seconds as usize * b.probes {
        tick.tick().await;
        let id = format!("probe-{now}-{i}");
        let body =
            json!({"userId": format!("probe-{i}"), "event": "Probe Clicked", "messageId": id});
        let sent = Moment::now();
        let r = client
            .track("/v1/track", &p.write_key, body.to_string())
            .await
            .map_err(|e| anyhow::anyhow!("probe: {e}"))?;
        anyhow::ensure!(r.status == 200, "probe refused: {}", r.status);
        probes.push((id, sent, sent.elapsed()));
    }
    let window = started.elapsed();
    let bg_rate = (background.sent() - bg_before) as f64 / window.as_secs_f64();
    // Every probe must enter; give the stragglers a moment.
    let deadline = Moment::now() + Duration::from_secs(10);
    while seen.lock().unwrap().len() < probes.len() && Moment::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let batch = background.batch;
    background.stop().await;
    watcher.join().expect("watcher")?;
    node.stop().await;
    let seen = seen.lock().unwrap().clone();
    let mut change: Vec<Duration> = Vec::new();
    let mut ack: Vec<Duration> = Vec::new();
    for (id, sent, acked) in &probes {
        ack.push(*acked);
        if let Some(at) = seen.get(id) {
            change.push(at.saturating_duration_since(*sent));
        }
    }
    anyhow::ensure!(
        change.len() == probes.len(),
        "{} of {} probes never entered the audience",
        probes.len() - change.len(),
        probes.len()
    );
    change.sort();
    ack.sort();
    let (c50, c99) = (percentile(&change, 0.5), percentile(&change, 0.99));
    let (a50, a99) = (percentile(&ack, 0.5), percentile(&ack, 0.99));
    println!("  event → membership change (embedded store, durability full)");
    println!(
        "    load:     {bg_rate:.0} background events/s over HTTP (batches of {batch}), {} probes in {window:.1?}",
        probes.len()
    );
    println!(
        "    change:   p50 {c50:.1?}  p99 {c99:.1?}  max {:.1?}",
        change[change.len() - 1]
    );
    println!("    baseline, the same probes acknowledged (committed to the log): p50 {a50:.1?}  p99 {a99:.1?}");
    println!(
        "    ratio change / acknowledged: p50 {:.1}  p99 {:.1}",
        c50.as_secs_f64() / a50.as_secs_f64(),
        c99.as_secs_f64() / a99.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// One generated event of customer `c`: a view, an add to cart, an order (web, app or store)
/// or a page, over the last year.
fn synthetic(rng: &mut SmallRng, c: usize, n: usize, now: Millis) -> Value {
    let ts = format_timestamp(now - rng.random_range(0..365 * DAY));
    let user = format!("c{c:07}");
    let library = match c % 3 {
        0 => json!({"name": "analytics.js"}),
        1 => json!({"name": "analytics-ios"}),
        _ => json!({"name": "analytics-python"}),
    };
    let message_id = format!("s-{c}-{n}");
    match rng.random_range(0..20) {
        0..=9 => {
            json!({"type": "track", "event": "Product Viewed", "userId": user, "messageId": message_id,
                        "timestamp": ts, "context": {"library": library},
                        "properties": {"sku": format!("sku-{}", rng.random_range(0..500)), "price": 49}})
        }
        10..=14 => {
            json!({"type": "track", "event": "Product Added", "userId": user, "messageId": message_id,
                         "timestamp": ts, "context": {"library": library},
                         "properties": {"sku": format!("sku-{}", rng.random_range(0..500)), "price": 69}})
        }
        15..=17 => {
            json!({"type": "track", "event": "Order Completed", "userId": user, "messageId": message_id,
                         "timestamp": ts, "context": {"library": library, "channel": if c.is_multiple_of(4) { "store" } else { "web" }},
                         "properties": {"revenue": rng.random_range(20..400), "currency": "EUR"}})
        }
        _ => json!({"type": "page", "name": "Home", "userId": user, "messageId": message_id,
                    "timestamp": ts, "context": {"library": {"name": "analytics.js"}}}),
    }
}

/// Builds the recomputation store through the engine (ingest, then unify).
async fn build(
    store: Arc<dyn Store>,
    b: &AudienceBench,
    ws: &str,
    source: &str,
) -> anyhow::Result<()> {
    let engine = Engine::start(
        store.clone(),
        Arc::new(SystemClock),
        EngineConfig {
            audiences: false,
            ..EngineConfig::default()
        },
    );
    let total = b.profiles * b.events_per_profile;
    let now = SystemClock.now();
    let started = Moment::now();
    let mut rng = SmallRng::seed_from_u64(11);
    let chunk = 5_000;
    let mut n = 0;
    let edge = Edge::single(now, None, None);
    while n < total {
        let mut events = Vec::with_capacity(chunk);
        for _ in 0..chunk.min(total - n) {
            // Profiles in turn, so each has events_per_profile events.
            let raw =
                serde_json::value::to_raw_value(&synthetic(&mut rng, n % b.profiles, n, now))?;
            match check_event(&raw, &edge, &mut |_| unreachable!("ids are set")) {
                Checked::Accepted(e) => events.push(e),
                other => anyhow::bail!("a generated event was refused: {other:?}"),
            }
            n += 1;
        }
        engine
            .ingest(IngestBatch {
                workspace_id: ws.into(),
                source_id: source.into(),
                events,
                quarantined: Vec::new(),
            })
            .await?;
        if n % 1_000_000 < chunk {
            eprintln!(
                "  building: {n} events stored, {} unified ({:.0?})",
                store.processed_seq()?,
                started.elapsed()
            );
        }
    }
    while !engine.wait_unified(Duration::from_secs(30)).await? {
        eprintln!(
            "  building: {} of {total} events unified ({:.0?})",
            store.processed_seq()?,
            started.elapsed()
        );
    }
    let _ = tokio::task::spawn_blocking(move || engine.shutdown()).await;
    eprintln!("  built in {:.0?}", started.elapsed());
    Ok(())
}

async fn recompute(b: &AudienceBench) -> anyhow::Result<()> {
    let temp = b.data_dir.is_none();
    let dir = b.data_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("parcours-bench-recompute-{}", std::process::id()))
    });
    let config = Config {
        data_dir: dir.clone(),
        ..Config::default()
    };
    let store = open_store(&config)?;
    let now = SystemClock.now();
    let ws = match bootstrap(store.as_ref(), &config, now)? {
        Some(p) => {
            let source = store.sources(&p.workspace.id)?[0].id.clone();
            eprintln!(
                "  building {} profiles × {} events…",
                b.profiles, b.events_per_profile
            );
            build(store.clone(), b, &p.workspace.id, &source).await?;
            p.workspace.id
        }
        None => store.workspaces()?[0].id.clone(),
    };
    let events = store.event_count(&ws)?;
    let profiles = store.profile_count(&ws)?;
    // Baseline: one scan of every event through the store.
    let scan = {
        let started = Moment::now();
        let (mut seq, mut read) = (0, 0u64);
        loop {
            let page = store.events_after(seq, 10_000)?;
            let Some(last) = page.last() else { break };
            seq = last.seq;
            read += page.len() as u64;
        }
        anyhow::ensure!(read >= events, "scanned {read} of {events} events");
        started.elapsed()
    };
    // The processor is up to date with the log (as on a running node); then a new audience
    // and a new computed trait arrive.
    parcours_engine::audiences::forget_waiting(store.as_ref())?;
    for d in store.definitions(Some(&ws))? {
        // Audiences of an earlier run on this store would be evaluated too.
        parcours_engine::definitions::delete_definition(store.as_ref(), &ws, d.kind, &d.id)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let run = SystemClock.now();
    let id = format!("vip_{run}");
    define(
        store.as_ref(),
        &ws,
        &id,
        r#"did "Order Completed" sum of revenue >= 1000 within 365 days and seen on store"#,
        run,
    )?;
    let started = Moment::now();
    let mut processor = AudienceProcessor::default();
    let (st, ws2, id2) = (store.clone(), ws.clone(), id.clone());
    // Instants at which the log is read (the first half of the progress) and its events
    // matched to their profiles (the first page evaluated).
    let (done, steps, read, matched) = tokio::task::spawn_blocking(move || {
        let (ws, id) = (ws2.as_str(), id2.as_str());
        let (mut steps, mut read, mut matched) = (0, None, None);
        // Long enough for any store this benchmark builds on this machine; a computation
        // that never ends is an error, not a hang.
        let deadline = started + Duration::from_secs(3_600);
        loop {
            // As on a node: unify applies what the processor published (the computation
            // starts once everything committed before it is applied).
            while parcours_engine::unify_step(st.as_ref(), SystemClock.now(), 10_000)? > 0 {}
            processor.step(st.as_ref(), SystemClock.now(), 2_000)?;
            steps += 1;
            anyhow::ensure!(
                Moment::now() < deadline,
                "the computation did not finish within an hour"
            );
            let d = st
                .definitions(Some(ws))?
                .into_iter()
                .find(|d| d.id == id)
                .expect("defined");
            if read.is_none() && 2 * d.done >= d.total {
                read = Some(started.elapsed());
            }
            if matched.is_none() && 2 * d.done > d.total {
                matched = Some(started.elapsed());
            }
            if d.computed_version >= d.version {
                return anyhow::Ok((true, steps, read, matched));
            }
            if steps % 200 == 0 {
                eprintln!(
                    "  computing: {} of {} ({:.0?})",
                    d.done,
                    d.total,
                    started.elapsed()
                );
            }
        }
    })
    .await??;
    anyhow::ensure!(done, "the computation did not finish");
    let took = started.elapsed();
    let members = store.member_count(&ws, &id)?;
    println!("  full computation of a new audience ({profiles} profiles, {events} events)");
    println!(
        "    computed in {took:.1?} ({:.0} profiles/s, {steps} steps, {members} members)",
        profiles as f64 / took.as_secs_f64()
    );
    if let (Some(read), Some(matched)) = (read, matched) {
        println!(
            "    reading the log {read:.1?}, matching its events to profiles {:.1?}, \
             evaluating the profiles {:.1?}",
            matched.saturating_sub(read),
            took.saturating_sub(matched)
        );
    }
    println!(
        "    baseline, one scan of every event: {scan:.1?} ({:.0} events/s)",
        events as f64 / scan.as_secs_f64()
    );
    println!(
        "    ratio computation / scan: {:.2}",
        took.as_secs_f64() / scan.as_secs_f64()
    );
    if temp {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
