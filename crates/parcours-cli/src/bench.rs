//! `parcours bench ingest`: realistic Segment batches over HTTP against a node started in this
//! process, with the raw SQLite insert rate of the same rows measured in the same run.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parcours_core::spec::{check_event, parse_envelope, Checked, Edge};
use parcours_core::time::Clock;
use parcours_engine::SystemClock;
use parcours_store_sqlite::{raw_insert_baseline, Durability};
use parcours_testkit::http::Client;
use parcours_testkit::load;

use crate::config::Config;
use crate::node::{bootstrap, open_store, Node};

#[derive(Debug, Clone)]
pub struct IngestBench {
    pub events: usize,
    pub batch: usize,
    pub concurrency: usize,
    pub customers: u64,
    pub durability: String,
    /// Unify while ingesting (end to end) or ingest only.
    pub unify: bool,
}

pub async fn ingest(b: IngestBench) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("parcours-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let batches = b.events.div_ceil(b.batch);
    let total = batches * b.batch;
    let run = format!("bench{}", SystemClock.now());
    eprintln!(
        "preparing {batches} batches of {} events ({} customers)…",
        b.batch, b.customers
    );
    let bodies = Arc::new(load::batches(
        &run,
        batches,
        b.batch,
        b.customers,
        SystemClock.now() - 3_600_000,
        42,
    ));
    let bytes: usize = bodies.iter().map(Vec::len).sum();

    let durability = if b.durability == "normal" {
        Durability::Normal
    } else {
        Durability::Full
    };
    let rows = accepted_rows(&bodies);
    let baseline = raw_insert_baseline(&dir.join("baseline.sqlite3"), durability, &rows, b.batch)?;
    let baseline_rate = total as f64 / baseline.as_secs_f64();
    drop(rows);

    let mut config = Config {
        data_dir: dir.join("node"),
        ..Config::default()
    };
    config.http.port = 0;
    config.storage.durability = b.durability.clone();
    config.ingest.unify = b.unify;
    let store = open_store(&config)?;
    let p = bootstrap(store.as_ref(), &config, SystemClock.now())?.expect("fresh store");
    let node = Node::start(&config, store.clone()).await?;
    let client = Client::new(node.url());
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..b.concurrency {
        let (client, next, bodies, key) = (
            client.clone(),
            next.clone(),
            bodies.clone(),
            p.write_key.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                let t = Instant::now();
                let resp = client
                    .track("/v1/batch", &key, body.clone())
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                anyhow::ensure!(
                    resp.status == 200,
                    "batch refused: {} {}",
                    resp.status,
                    String::from_utf8_lossy(&resp.body)
                );
                latencies.push(t.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for w in workers {
        latencies.extend(w.await??);
    }
    let acked = started.elapsed();
    let unified_during = store.processed_seq()?;
    if b.unify {
        node.engine.wait_unified(Duration::from_secs(3_600)).await?;
    }
    let unified = started.elapsed();
    node.stop().await;
    let stored = store.event_count(&p.workspace.id)?;
    anyhow::ensure!(
        stored as usize == total,
        "stored {stored} events, expected {total}"
    );

    let replay_started = Instant::now();
    parcours_engine::replay(
        store.as_ref(),
        SystemClock.now(),
        parcours_engine::UNIFY_BATCH,
        &mut |_, _| {},
    )?;
    let replay = replay_started.elapsed();
    let profiles = store.profile_count(&p.workspace.id)?;

    latencies.sort();
    let pct = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    let rate = |d: Duration| total as f64 / d.as_secs_f64();
    let ack_rate = rate(acked);
    println!("parcours bench ingest");
    println!(
        "  machine:            {} cores, durability {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        b.durability
    );
    println!(
        "  load:               {total} events in {batches} batches of {}, concurrency {}, {:.1} MB",
        b.batch,
        b.concurrency,
        bytes as f64 / 1e6
    );
    println!("  acknowledged:       {ack_rate:>10.0} events/s  ({acked:.2?})");
    println!(
        "  batch latency:      p50 {:.2?}  p99 {:.2?}",
        pct(0.5),
        pct(0.99)
    );
    if b.unify {
        println!("  unified while ingesting: {unified_during} events; all unified after {unified:.2?} ({:.0} events/s end to end)", rate(unified));
    } else {
        println!("  unify was off during ingest (--no-unify)");
    }
    println!("  processing (replay: unify + profile update): {:>10.0} events/s  ({replay:.2?}, {profiles} profiles)", rate(replay));
    println!("  baseline raw SQLite INSERT of the same rows: {baseline_rate:>10.0} events/s  ({baseline:.2?})");
    println!(
        "  ratio acknowledged / baseline: {:.2}",
        ack_rate / baseline_rate
    );
    println!(
        "  ratio processing / baseline:   {:.2}",
        rate(replay) / baseline_rate
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The rows the node stores for these bodies, for the baseline.
fn accepted_rows(bodies: &[Vec<u8>]) -> Vec<parcours_core::spec::AcceptedEvent> {
    let now = SystemClock.now();
    let mut rows = Vec::new();
    for body in bodies {
        let env = parse_envelope(body, None).expect("generated batches are valid");
        let edge = Edge {
            received_at: now,
            source_channel: None,
            batch_sent_at: env.sent_at.as_deref(),
            batch_context: None,
            batch_integrations: None,
            path_type: None,
        };
        for item in &env.items {
            if let Checked::Accepted(e) = check_event(item, &edge, &mut |_| {
                unreachable!("generated events have ids")
            }) {
                rows.push(e);
            }
        }
    }
    rows
}
