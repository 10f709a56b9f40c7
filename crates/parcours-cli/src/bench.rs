//! `parcours bench ingest`: realistic Segment batches over HTTP against a node started in this
//! process, with the raw SQLite insert rate of the same rows measured in the same run.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parcours_engine::clock::Moment;

use parcours_core::spec::{check_event, parse_envelope, Checked, Edge};
use parcours_core::time::Clock;
use parcours_demo::http::Client;
use parcours_demo::load;
use parcours_engine::SystemClock;
use parcours_store_sqlite::{raw_insert_baseline, Durability};

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
    /// Run against PostgreSQL (a scratch database is created on this server and dropped
    /// afterwards) with 1 and then 3 nodes, instead of the embedded store.
    pub database: Option<String>,
}

/// The generated batches, the same for every run of a benchmark.
struct Load {
    batches: usize,
    total: usize,
    bodies: Arc<Vec<Vec<u8>>>,
    bytes: usize,
}

impl Load {
    fn prepare(b: &IngestBench) -> Load {
        let batches = b.events.div_ceil(b.batch);
        eprintln!(
            "preparing {batches} batches of {} events ({} customers)…",
            b.batch, b.customers
        );
        let bodies = load::batches(
            &format!("bench{}", SystemClock.now()),
            batches,
            b.batch,
            b.customers,
            SystemClock.now() - 3_600_000,
            42,
        );
        Load {
            batches,
            total: batches * b.batch,
            bytes: bodies.iter().map(Vec::len).sum(),
            bodies: Arc::new(bodies),
        }
    }
}

/// Sends every body, `concurrency` requests at a time, spread round-robin over the nodes.
/// Returns the elapsed time and each request's latency.
async fn drive(
    clients: &[Client],
    bodies: &Arc<Vec<Vec<u8>>>,
    key: &str,
    concurrency: usize,
) -> anyhow::Result<(Duration, Vec<Duration>)> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Moment::now();
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let (client, next, bodies, key) = (
            clients[w % clients.len()].clone(),
            next.clone(),
            bodies.clone(),
            key.to_string(),
        );
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                let t = Moment::now();
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
    latencies.sort();
    Ok((started.elapsed(), latencies))
}

pub(crate) fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

/// A steady background load of Segment batches over HTTP (realistic customers' events), at
/// `rate` events per second for `seconds` and a little more.
pub(crate) struct BackgroundLoad {
    pub batch: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
    sent: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl BackgroundLoad {
    pub fn start(client: &Client, key: &str, rate: usize, seconds: u64, now: i64) -> Self {
        let batch = 50usize;
        let ticks = (seconds as usize + 5) * rate / batch + 1;
        let bodies = load::batches(
            &format!("bg{now}"),
            ticks,
            batch,
            20_000,
            now - 3_600_000,
            7,
        );
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let (client, key, s, n) = (client.clone(), key.to_string(), stop.clone(), sent.clone());
        let period = Duration::from_secs_f64(batch as f64 / rate as f64);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            for body in bodies {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                tick.tick().await;
                let r = client.track("/v1/batch", &key, body).await;
                if r.is_ok_and(|r| r.status == 200) {
                    n.fetch_add(batch, Ordering::SeqCst);
                }
            }
        });
        Self {
            batch,
            stop,
            sent,
            task,
        }
    }

    /// Events acknowledged so far.
    pub fn sent(&self) -> usize {
        self.sent.load(Ordering::SeqCst)
    }

    pub async fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.task.await;
    }
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

pub async fn ingest(b: IngestBench) -> anyhow::Result<()> {
    if let Some(url) = b.database.clone() {
        return ingest_postgres(b, &url).await;
    }
    let dir = std::env::temp_dir().join(format!("parcours-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let Load {
        batches,
        total,
        bodies,
        bytes,
    } = Load::prepare(&b);

    let durability = if b.durability == "normal" {
        Durability::Normal
    } else {
        Durability::Full
    };
    let rows = accepted_rows(&bodies);
    let baseline = raw_insert_baseline(
        &dir.join("baseline.sqlite3"),
        durability,
        &rows,
        b.batch,
        &parcours_engine::SystemClock,
    )?;
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
    let started = Moment::now();
    let (acked, latencies) = drive(&[client], &bodies, &p.write_key, b.concurrency).await?;
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

    let replay_started = Moment::now();
    parcours_engine::replay(
        store.as_ref(),
        SystemClock.now(),
        parcours_engine::UNIFY_BATCH,
        &mut |_, _| {},
    )?;
    let replay = replay_started.elapsed();
    let profiles = store.profile_count(&p.workspace.id)?;

    let pct = |q: f64| percentile(&latencies, q);
    let rate = |d: Duration| total as f64 / d.as_secs_f64();
    let ack_rate = rate(acked);
    println!("parcours bench ingest");
    println!(
        "  machine:            {} cores, durability {}",
        cores(),
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

/// `bench ingest --database postgres://…`: the same load through 1 node, then 3 nodes, each
/// on a fresh scratch database, against the rate of a raw `COPY` of the same rows measured in
/// the same run.
async fn ingest_postgres(b: IngestBench, url: &str) -> anyhow::Result<()> {
    use parcours_store_postgres::testing::{create_database, drop_database, with_database};
    use parcours_store_postgres::{PgConfig, PgStore};

    let Load {
        batches,
        total,
        bodies,
        bytes,
    } = Load::prepare(&b);
    let scratch = format!("parcours_bench_{}", std::process::id());
    let scratch_url = with_database(url, &scratch);

    let mut results = Vec::new();
    let mut baseline = None;
    for nodes in [1usize, 3] {
        create_database(url, &scratch).map_err(|e| anyhow::anyhow!(e))?;
        let outcome = async {
            let mut config = Config {
                database: Some(scratch_url.clone()),
                ..Config::default()
            };
            config.http.port = 0;
            config.ingest.unify = b.unify;
            // Short leases so that the nodes settle their buckets quickly.
            config.cluster.lease_timeout_ms = 2_000;
            let first = open_store(&config)?;
            if baseline.is_none() {
                let pg = PgStore::connect(&PgConfig::new(&scratch_url))?;
                let rows = accepted_rows(&bodies);
                eprintln!("measuring the COPY baseline…");
                baseline = Some(pg.copy_baseline(&rows, 5_000, &parcours_engine::SystemClock)?);
            }
            let p = bootstrap(first.as_ref(), &config, SystemClock.now())?.expect("fresh database");
            let mut running = Vec::new();
            for i in 0..nodes {
                config.cluster.node_id = Some(format!("bench-{}", i + 1));
                let store = if i == 0 {
                    first.clone()
                } else {
                    open_store(&config)?
                };
                running.push(Node::start(&config, store).await?);
            }
            // Let the leases spread before the clock starts.
            tokio::time::sleep(Duration::from_millis(if nodes > 1 { 1_500 } else { 300 })).await;
            let clients: Vec<Client> = running.iter().map(|n| Client::new(n.url())).collect();
            eprintln!("{nodes} node(s): sending {total} events…");
            let started = Moment::now();
            let (acked, latencies) = drive(&clients, &bodies, &p.write_key, b.concurrency).await?;
            let unified = if b.unify {
                running[0]
                    .engine
                    .wait_unified(Duration::from_secs(3_600))
                    .await?;
                Some(started.elapsed())
            } else {
                None
            };
            for n in running {
                n.stop().await;
            }
            let stored = first.event_count(&p.workspace.id)?;
            anyhow::ensure!(
                stored as usize == total,
                "stored {stored} events, expected {total}"
            );
            anyhow::Ok((nodes, acked, latencies, unified))
        }
        .await;
        drop_database(url, &scratch).map_err(|e| anyhow::anyhow!(e))?;
        results.push(outcome?);
    }

    let baseline = baseline.expect("measured with the first run");
    let rate = |d: Duration| total as f64 / d.as_secs_f64();
    let baseline_rate = rate(baseline);
    println!("parcours bench ingest (PostgreSQL)");
    println!(
        "  machine:            {} cores; nodes, load generator and PostgreSQL on the same machine",
        cores()
    );
    println!(
        "  load:               {total} events in {batches} batches of {}, concurrency {}, {:.1} MB",
        b.batch,
        b.concurrency,
        bytes as f64 / 1e6
    );
    println!(
        "  baseline raw COPY of the same rows (5,000 per transaction): {baseline_rate:>10.0} events/s  ({baseline:.2?})"
    );
    for (nodes, acked, latencies, unified) in &results {
        println!(
            "  {nodes} node(s): acknowledged {:>10.0} events/s ({acked:.2?}), ratio to COPY {:.2}; batch latency p50 {:.2?} p99 {:.2?}",
            rate(*acked),
            rate(*acked) / baseline_rate,
            percentile(latencies, 0.5),
            percentile(latencies, 0.99)
        );
        match unified {
            Some(d) => println!(
                "      all unified after {d:.2?} ({:.0} events/s end to end)",
                rate(*d)
            ),
            None => println!("      unify was off (--no-unify)"),
        }
    }
    Ok(())
}
