//! `parcours bench timers`: a million durable timers on the embedded store, a restart, then
//! every timer fired by the scheduler as it comes due. Reports how late they fired (p50, p99,
//! max), that each fired exactly once, and the peak memory of the process that fired them.
//! The baseline of the same run: the scheduler's drain rate when every timer is already due
//! (its capacity), against the rate the schedule asks for.
//!
//! The timers are written by this process; the firing runs in a new process on the same files
//! (the restart), so its memory is the scheduler's alone.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use parcours_engine::clock::Moment;

use anyhow::{bail, Context};
use parcours_core::time::{Clock, Millis};
use parcours_engine::scheduler::{SchedulerConfig, Step, TimerHandler, TimerScheduler};
use parcours_engine::SystemClock;
use parcours_store::{DurableTimer, NewTimer, StoreError, Timers};
use parcours_store_sqlite::{Durability, SqliteStore};
use serde::{Deserialize, Serialize};

const KIND: &str = "bench";

#[derive(Debug, Clone)]
pub struct TimerBench {
    pub timers: usize,
    /// Seconds from the start of the run to the first due time (the write and the restart
    /// happen before it).
    pub lead_secs: u64,
    /// Seconds over which the due times are spread evenly.
    pub spread_secs: u64,
    pub page: usize,
}

/// What a firing process reports (one JSON line on stdout).
#[derive(Debug, Serialize, Deserialize)]
pub struct FireReport {
    pub fired: u64,
    pub duplicates: u64,
    pub missing: u64,
    pub left_in_store: u64,
    pub p50_ms: i64,
    pub p99_ms: i64,
    pub max_ms: i64,
    pub seconds: f64,
    pub peak_rss_mb: f64,
}

/// The due time of timer `i` of `n`, spread evenly from `base` over `spread` ms.
fn due(base: Millis, spread: Millis, i: usize, n: usize) -> Millis {
    base + (i as i64 * spread) / n.max(1) as i64
}

/// Writes `n` timers in a scrambled order (a fixed permutation), 10,000 per transaction.
fn write(store: &SqliteStore, n: usize, due_of: impl Fn(usize) -> Millis) -> anyhow::Result<()> {
    // A prime that does not divide any count this bench takes, so `i * STEP mod n` visits
    // every index once.
    const STEP: usize = 1_000_003;
    let mut page = Vec::with_capacity(10_000);
    for j in 0..n {
        let i = (j * STEP) % n;
        page.push(NewTimer {
            workspace_id: "ws_bench".into(),
            kind: KIND.into(),
            key: format!("t{i}"),
            bucket: (i % 256) as u16,
            due_at: due_of(i),
            payload: String::new(),
        });
        if page.len() == 10_000 || j + 1 == n {
            store.set_timers(&page)?;
            page.clear();
        }
    }
    Ok(())
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

pub(crate) fn percentile(sorted: &[i64], q: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Counts each timer's fires and how late each came.
struct Tally {
    seen: Vec<bool>,
    duplicates: u64,
    lateness: Vec<i64>,
}

impl TimerHandler for Tally {
    fn handle(&mut self, timers: &[DurableTimer], _claimed_at: Millis) -> Result<(), StoreError> {
        let now = SystemClock.now();
        for t in timers {
            let i: usize = t.key[1..]
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("timer key {}", t.key)))?;
            match self.seen.get_mut(i) {
                Some(seen) if *seen => self.duplicates += 1,
                Some(seen) => {
                    *seen = true;
                    self.lateness.push(now - t.due_at);
                }
                None => return Err(StoreError::Corrupt(format!("timer key {}", t.key))),
            }
        }
        Ok(())
    }
}

/// The firing process: opens the store, fires until every one of `n` timers fired or
/// `deadline_secs` passed, and prints its [`FireReport`].
pub fn fire(dir: &Path, n: usize, page: usize, deadline_secs: u64) -> anyhow::Result<()> {
    let store = SqliteStore::open(dir.join("parcours.sqlite3"), Durability::Normal)?;
    let clock = SystemClock;
    let scheduler = TimerScheduler {
        store: &store,
        clock: &clock,
        kind: KIND,
        buckets: None,
        token: "bench-scheduler",
        config: SchedulerConfig {
            page,
            ..SchedulerConfig::default()
        },
    };
    let mut tally = Tally {
        seen: vec![false; n],
        duplicates: 0,
        lateness: Vec::with_capacity(n),
    };
    let started = Moment::now();
    let deadline = started + Duration::from_secs(deadline_secs);
    let mut fired = 0u64;
    while (fired as usize) < n && Moment::now() < deadline {
        match scheduler.step(&mut tally)? {
            Step::Fired(k) => fired += k,
            Step::Idle(wait) => std::thread::sleep(wait),
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    tally.lateness.sort_unstable();
    let report = FireReport {
        fired,
        duplicates: tally.duplicates,
        missing: tally.seen.iter().filter(|s| !**s).count() as u64,
        left_in_store: store.timer_count(KIND)?,
        p50_ms: percentile(&tally.lateness, 0.50),
        p99_ms: percentile(&tally.lateness, 0.99),
        max_ms: tally.lateness.last().copied().unwrap_or(0),
        seconds,
        peak_rss_mb: peak_rss_mb(),
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// Runs this binary's firing process on `dir` and reads its report.
fn fire_in_new_process(
    dir: &Path,
    n: usize,
    page: usize,
    deadline: u64,
) -> anyhow::Result<FireReport> {
    let out = Command::new(std::env::current_exe()?)
        .args([
            "bench",
            "timers",
            "--timers",
            &n.to_string(),
            "--page",
            &page.to_string(),
        ])
        .arg("--fire-dir")
        .arg(dir)
        .args(["--deadline-secs", &deadline.to_string()])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("start the firing process")?;
    if !out.status.success() {
        bail!("the firing process failed ({})", out.status);
    }
    let line = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(line.trim()).context("read the firing process's report")
}

fn scratch(tag: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "parcours-bench-timers-{tag}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

pub fn run(b: TimerBench) -> anyhow::Result<()> {
    let n = b.timers.max(1);
    let spread = b.spread_secs.max(1) as i64 * 1_000;
    // The baseline: every timer already due; how fast the scheduler drains them.
    let drain_n = (n / 4).max(1);
    let dir = scratch("drain")?;
    {
        let store = SqliteStore::open(dir.join("parcours.sqlite3"), Durability::Normal)?;
        let past = SystemClock.now() - 1_000;
        write(&store, drain_n, |_| past)?;
    }
    let drain = fire_in_new_process(&dir, drain_n, b.page, 600)?;
    let _ = std::fs::remove_dir_all(&dir);
    let capacity = drain.fired as f64 / drain.seconds.max(1e-9);
    eprintln!(
        "baseline: {drain_n} timers already due drained at {capacity:.0}/s ({} fired once each, {} duplicates)",
        drain.fired, drain.duplicates
    );

    let dir = scratch("schedule")?;
    let started = SystemClock.now();
    let base = started + b.lead_secs as i64 * 1_000;
    let write_started = Moment::now();
    {
        let store = SqliteStore::open(dir.join("parcours.sqlite3"), Durability::Normal)?;
        write(&store, n, |i| due(base, spread, i, n))?;
    }
    let wrote = write_started.elapsed();
    eprintln!(
        "wrote {n} timers in {:.1} s ({:.0}/s); the first is due {:.1} s after the write ended; restarting",
        wrote.as_secs_f64(),
        n as f64 / wrote.as_secs_f64().max(1e-9),
        (base - SystemClock.now()) as f64 / 1000.0
    );
    let deadline = b.lead_secs + b.spread_secs + 300;
    let r = fire_in_new_process(&dir, n, b.page, deadline)?;
    let _ = std::fs::remove_dir_all(&dir);
    let needed = n as f64 / b.spread_secs.max(1) as f64;
    println!(
        "timers:       {n}, due over {} s ({needed:.0}/s), fired after a restart",
        b.spread_secs
    );
    println!(
        "fired:        {} ({} duplicates, {} never fired, {} left in the store)",
        r.fired, r.duplicates, r.missing, r.left_in_store
    );
    println!(
        "lateness:     p50 {} ms, p99 {} ms, max {} ms",
        r.p50_ms, r.p99_ms, r.max_ms
    );
    println!(
        "peak memory:  {:.0} MB RSS (the firing process)",
        r.peak_rss_mb
    );
    println!(
        "capacity:     {capacity:.0} timers/s when all are due = {:.1}× the rate this schedule needs",
        capacity / needed
    );
    if r.duplicates > 0 || r.missing > 0 || r.left_in_store > 0 {
        bail!("timers did not fire exactly once");
    }
    Ok(())
}
