//! The runs-on-timers part of `parcours bench journeys`: N runs wait in a journey's `wait`
//! step, the node restarts, and each run's timer fires as it comes due: the run goes on to
//! its email (to the capture channel) and ends. Reports how late the runs moved (the
//! decision's time, and when the capture channel took the email) against their due time, and
//! that each fired exactly once.
//!
//! The waiting runs are written straight to the store, in the state the core's `enter` gives
//! a run that entered one hour before its due time (as `parcours bench timers` writes its
//! timers): building a million of them through events would take minutes and is measured
//! elsewhere. Their customers are real profiles (identify events, unified).
//!
//! Baseline, in the same run: the journeys processor's capacity, runs decided per second when
//! all of their timers are due already, against the rate the schedule asks for.

use std::collections::HashMap;
use std::time::Duration;

use parcours_core::audience::Condition;
use parcours_core::journey::{self, Effect, Journey, Look};
use parcours_core::time::{Clock, Millis};
use parcours_engine::channels::{ChannelSender, Senders};
use parcours_engine::clock::Moment;
use parcours_engine::journeys::JourneyProcessor;
use parcours_engine::SystemClock;
use parcours_store::{
    profile_bucket, JourneyWrite, NewTimer, OutboxPage, Store, StoredRun, JOURNEY_TIMERS,
};
use serde_json::{json, Value};

use crate::bench_journeys::{drain, save_journey, sign_up};
use crate::bench_timers::percentile as percentile_ms;
use crate::config::Config;
use crate::node::{bootstrap, open_store, Node};

const WAIT_MS: Millis = 3_600_000;

fn reminder(id: &str) -> String {
    format!(
        "id: {id}
status: live
entry:
  event: Cart Viewed
steps:
  - id: wait
    wait: 1h
  - id: remind
    send:
      channel: email
      purpose: transactional
      subject: \"{{{{ traits.first_name | default: 'Hello' }}}}, your cart is waiting\"
      text: \"Your cart is waiting.\"
"
    )
}

#[derive(Debug, Clone)]
pub struct TimerRuns {
    pub runs: usize,
    /// Seconds from the end of the profiles' build to the first due time (the runs are
    /// written and the node restarts before it).
    pub lead_secs: u64,
    /// Seconds over which the due times are spread evenly.
    pub spread_secs: u64,
}

/// Nothing holds for a customer the bench's journeys ask nothing of.
struct Nobody;

impl Look for Nobody {
    fn holds(&self, _: &Condition) -> bool {
        false
    }
    fn time_zone(&self) -> Option<String> {
        None
    }
    fn trait_value(&self, _: &str) -> Option<Value> {
        None
    }
}

/// Writes one waiting run per profile, due at `due(i)`, 10,000 per transaction.
fn write_runs(
    store: &dyn Store,
    ws: &str,
    journey: &Journey,
    profiles: &[String],
    due: impl Fn(usize) -> Millis,
) -> anyhow::Result<HashMap<String, Millis>> {
    let mut dues = HashMap::with_capacity(profiles.len());
    for (page, chunk) in profiles.chunks(10_000).enumerate() {
        let mut write = JourneyWrite::default();
        for (j, profile) in chunk.iter().enumerate() {
            let i = page * 10_000 + j;
            let at = due(i);
            let id = parcours_engine::journeys::run_id(ws, &journey.id, profile, "", i as i64);
            let (run, effects) = journey::enter(
                journey,
                1,
                id.clone(),
                profile.clone(),
                String::new(),
                json!({}),
                at - WAIT_MS,
                &Nobody,
            );
            anyhow::ensure!(
                effects
                    .iter()
                    .any(|e| matches!(e, Effect::Timer { at: t } if *t == at)),
                "the run does not wait until its due time: {effects:?}"
            );
            let bucket = profile_bucket(ws, profile);
            write.runs.push(StoredRun {
                workspace_id: ws.into(),
                run_id: id.clone(),
                journey_id: journey.id.clone(),
                version: 1,
                profile_id: profile.clone(),
                key: String::new(),
                bucket,
                active: true,
                state: serde_json::to_value(&run)?,
                entered_at: run.entered_at,
                ended_at: None,
                outcome: None,
                revision: 0,
            });
            write.set_timers.push(NewTimer {
                workspace_id: ws.into(),
                kind: JOURNEY_TIMERS.into(),
                key: id.clone(),
                bucket,
                due_at: at,
                payload: String::new(),
            });
            dues.insert(id, at);
        }
        store.record_journeys(&write)?;
    }
    Ok(dues)
}

/// Every outbox row of the journey's emails: (run id, decided at, sent at).
fn emails(store: &dyn Store, ws: &str) -> anyhow::Result<Vec<(String, Millis, Option<Millis>)>> {
    let mut out = Vec::new();
    let mut before = None;
    loop {
        let rows = store.outbox_rows(&OutboxPage {
            workspace_id: ws,
            destination: "channel:email",
            state: None,
            before_id: before,
            limit: 10_000,
        })?;
        let Some(last) = rows.last() else {
            return Ok(out);
        };
        before = Some(last.id);
        for r in rows {
            let run = r.key.split(':').next().unwrap_or_default().to_string();
            out.push((run, r.created_at, r.settled_at));
        }
    }
}

pub async fn run(t: TimerRuns) -> anyhow::Result<()> {
    let dir =
        std::env::temp_dir().join(format!("parcours-bench-jrn-timers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = Config {
        data_dir: dir.clone(),
        ..Config::default()
    };
    let n = t.runs;
    let store = open_store(&config)?;
    let now = SystemClock.now();
    let p = bootstrap(store.as_ref(), &config, now)?.expect("fresh store");
    let ws = p.workspace.id.clone();
    let built = Moment::now();
    sign_up(store.as_ref(), &ws, &p.source.id, n, |c, user| {
        vec![
            json!({"type": "identify", "userId": user, "messageId": format!("i-{c}"),
                    "traits": {"email": format!("{user}@bench.test"), "first_name": format!("Ana{c}")}}),
        ]
    })?;
    let mut profiles = Vec::with_capacity(n);
    let mut after = String::new();
    loop {
        let page = store.profiles_page(&ws, &after, 10_000)?;
        let Some(last) = page.last() else { break };
        after = last.id.clone();
        profiles.extend(page.into_iter().map(|p| p.id));
    }
    anyhow::ensure!(profiles.len() == n, "{} profiles, not {n}", profiles.len());
    println!(
        "  runs on timers: {n} customers stored and unified in {:.1?} (not measured)",
        built.elapsed()
    );

    // Baseline: the processor's capacity, every timer due already.
    let m = n.min(100_000);
    let due_now =
        journey::doc::read(&reminder("due-now")).map_err(|e| anyhow::anyhow!("journey: {e:?}"))?;
    save_journey(store.as_ref(), &ws, &reminder("due-now"), now)?;
    let past = SystemClock.now() - 1_000;
    write_runs(store.as_ref(), &ws, &due_now, &profiles[..m], |_| past)?;
    let started = Moment::now();
    let mut processor = JourneyProcessor::default();
    drain(&mut processor, store.as_ref())?;
    let decided = started.elapsed();
    let mut capture = ChannelSender::new(Senders::default(), 60_000);
    let sent = drain(&mut capture, store.as_ref())?;
    anyhow::ensure!(sent == m, "the baseline sent {sent} emails, not {m}");
    let capacity = m as f64 / decided.as_secs_f64();
    let asked = n as f64 / t.spread_secs.max(1) as f64;

    // The measured runs: due from `lead` on, spread evenly in a scrambled order.
    let t0 = SystemClock.now();
    let base = t0 + t.lead_secs as Millis * 1_000;
    let spread = t.spread_secs as Millis * 1_000;
    let waiter =
        journey::doc::read(&reminder("reminder")).map_err(|e| anyhow::anyhow!("journey: {e:?}"))?;
    save_journey(store.as_ref(), &ws, &reminder("reminder"), t0)?;
    const STEP: usize = 1_000_003;
    let dues = write_runs(store.as_ref(), &ws, &waiter, &profiles, |i| {
        base + ((i * STEP) % n) as Millis * spread / n as Millis
    })?;
    let written = SystemClock.now();
    drop(processor);
    drop(capture);
    drop(store);
    anyhow::ensure!(
        written + 5_000 < base,
        "writing the runs took {} ms, past the lead of {} s: raise --lead-secs",
        written - t0,
        t.lead_secs
    );

    // The restart: a node on the same files.
    let store = open_store(&config)?;
    let node = Node::start(&config, store.clone()).await?;
    let deadline = Moment::now()
        + Duration::from_millis((base - written + spread) as u64)
        + Duration::from_secs(120);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let counts = store.run_counts(&ws, "reminder")?;
        let open = store.open_rows(&ws, "channel:email")?;
        if counts.active == 0 && open == 0 {
            break;
        }
        anyhow::ensure!(
            Moment::now() < deadline,
            "{} runs still waiting and {open} emails unsent at the deadline",
            counts.active
        );
    }
    node.stop().await;

    let counts = store.run_counts(&ws, "reminder")?;
    let left = store.timer_count(JOURNEY_TIMERS)?;
    let mut fired: HashMap<&str, u32> = HashMap::new();
    let mut decided_late = Vec::new();
    let mut sent_late = Vec::new();
    let rows = emails(store.as_ref(), &ws)?;
    for (run, decided_at, sent_at) in &rows {
        let Some(due) = dues.get(run) else { continue };
        *fired.entry(run.as_str()).or_default() += 1;
        decided_late.push(decided_at - due);
        sent_late.push(sent_at.unwrap_or(Millis::MAX) - due);
    }
    let twice = fired.values().filter(|&&c| c > 1).count();
    let never = n - fired.len();
    decided_late.sort_unstable();
    sent_late.sort_unstable();
    println!(
        "  {n} runs waiting on timers, fired after a restart (embedded store, durability full)"
    );
    println!(
        "    due over {} s from {} s after the build; written in {:.1} s",
        t.spread_secs,
        t.lead_secs,
        (written - t0) as f64 / 1000.0
    );
    println!(
        "    fired: {} runs ended, {} emails, {twice} runs with two, {never} with none, {left} timers left",
        counts.ended,
        fired.len()
    );
    println!(
        "    lateness, run decided: p50 {} ms  p99 {} ms  max {} ms",
        percentile_ms(&decided_late, 0.5),
        percentile_ms(&decided_late, 0.99),
        decided_late.last().copied().unwrap_or(0)
    );
    println!(
        "    lateness, email taken by the capture channel: p50 {} ms  p99 {} ms  max {} ms",
        percentile_ms(&sent_late, 0.5),
        percentile_ms(&sent_late, 0.99),
        sent_late.last().copied().unwrap_or(0)
    );
    println!(
        "    baseline, capacity: {m} runs all due decided in {decided:.2?}: {capacity:.0} runs/s = {:.1}x the {asked:.0}/s the schedule asks",
        capacity / asked
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    anyhow::ensure!(
        twice == 0 && never == 0 && left == 0 && counts.active == 0,
        "runs did not fire exactly once each"
    );
    Ok(())
}
