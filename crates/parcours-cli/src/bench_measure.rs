//! `parcours bench measure`: the measurement engines at scale.
//!
//! 1. **Lifetime value**: BG/NBD and Gamma-Gamma fitted on CDNOW (the published summary, see
//!    `scripts/reference-data.py`), beside `lifetimes` fitting the same file in the same run
//!    when a Python with `lifetimes` is given (`--python`): parameters side by side and the
//!    ratio of the times.
//! 2. **Attribution**: every model over generated paths (1,000,000 by default), against one
//!    bare pass over every touch of the same paths.
//! 3. **Funnel**: a 4-step ordered funnel with a 7-day window over generated events
//!    (10,000,000 by default) of 1,000,000 people, against one bare pass over the events.
//!
//! Generated data come from a fixed seed, so every run measures the same work.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use parcours_core::attribution::{self, Path, Rule, HALF_LIFE_MS};
use parcours_core::clv::{self, BgNbd, GammaGamma, Input, Summary};
use parcours_core::funnel::{self, Touch};
use parcours_engine::clock::Moment;

#[derive(Debug, Clone)]
pub struct MeasureBench {
    /// Paths for the attribution run.
    pub paths: usize,
    /// Events for the funnel run.
    pub events: usize,
    /// A Python with `lifetimes` installed, to fit the same file beside Parcours.
    pub python: Option<PathBuf>,
    /// Where the reference data sets are (default `target/reference-data`).
    pub data: Option<PathBuf>,
}

/// A fixed-seed generator (PCG-style LCG with the high bits taken).
struct Draw(u64);

impl Draw {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        self.next() as f64 / (1u64 << 31) as f64
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The best of `runs` timings of `f` (the least disturbed by the machine), and its last result.
fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..runs.max(1) {
        let started = Moment::now();
        let out = f();
        best = best.min(started.elapsed());
        last = Some(out);
    }
    (best, last.expect("at least one run"))
}

fn lifetime_value(b: &MeasureBench) -> anyhow::Result<()> {
    let dir = b
        .data
        .clone()
        .unwrap_or_else(|| PathBuf::from("target/reference-data"));
    let file = dir.join("cdnow_customers_summary_with_transactions.csv");
    let text = std::fs::read_to_string(&file).with_context(|| {
        format!(
            "reading {} (python3 scripts/reference-data.py {} fetches it)",
            file.display(),
            dir.display()
        )
    })?;
    let Input::Summaries(customers) = clv::parse_input(&text)? else {
        bail!("{} is not a summary file", file.display());
    };
    let summaries: Vec<Summary> = customers.iter().map(|c| c.summary).collect();
    let spenders: Vec<(f64, f64)> = customers
        .iter()
        .map(|c| (c.summary.x, c.monetary))
        .collect();
    let (bg_time, (bg, ll)) = best_of(5, || BgNbd::fit(&summaries));
    let (gg_time, (gg, _)) = best_of(5, || GammaGamma::fit(&spenders));
    println!(
        "lifetime value on CDNOW ({} customers), best of 5:",
        summaries.len()
    );
    println!(
        "  Parcours   BG/NBD r {:.4} alpha {:.4} a {:.4} b {:.4} (log-likelihood {ll:.2}) in {:.4} s; Gamma-Gamma p {:.4} q {:.4} gamma {:.4} in {:.4} s",
        bg.r, bg.alpha, bg.a, bg.b, secs(bg_time), gg.p, gg.q, gg.gamma, secs(gg_time)
    );
    let Some(python) = &b.python else {
        println!(
            "  lifetimes  not measured: give --python PATH (a Python with lifetimes installed)"
        );
        return Ok(());
    };
    let script = PathBuf::from("scripts/bench/lifetimes_fit.py");
    let out = std::process::Command::new(python)
        .arg(&script)
        .arg(&file)
        .output()
        .with_context(|| format!("running {} {}", python.display(), script.display()))?;
    if !out.status.success() {
        bail!(
            "lifetimes failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let theirs: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("reading {}", String::from_utf8_lossy(&out.stdout)))?;
    let get = |path: &[&str]| -> f64 {
        path.iter()
            .fold(&theirs, |v, k| &v[*k])
            .as_f64()
            .unwrap_or(f64::NAN)
    };
    let their_time = get(&["bg_nbd_seconds"]) + get(&["gamma_gamma_seconds"]);
    println!(
        "  lifetimes  BG/NBD r {:.4} alpha {:.4} a {:.4} b {:.4} in {:.4} s; Gamma-Gamma p {:.4} q {:.4} gamma {:.4} in {:.4} s",
        get(&["bg_nbd", "r"]),
        get(&["bg_nbd", "alpha"]),
        get(&["bg_nbd", "a"]),
        get(&["bg_nbd", "b"]),
        get(&["bg_nbd_seconds"]),
        get(&["gamma_gamma", "p"]),
        get(&["gamma_gamma", "q"]),
        get(&["gamma_gamma", "v"]),
        get(&["gamma_gamma_seconds"]),
    );
    let largest_gap = [
        (bg.r, get(&["bg_nbd", "r"])),
        (bg.alpha, get(&["bg_nbd", "alpha"])),
        (bg.a, get(&["bg_nbd", "a"])),
        (bg.b, get(&["bg_nbd", "b"])),
        (gg.p, get(&["gamma_gamma", "p"])),
        (gg.q, get(&["gamma_gamma", "q"])),
        (gg.gamma, get(&["gamma_gamma", "v"])),
    ]
    .iter()
    .map(|(a, b)| (a - b).abs())
    .fold(0.0, f64::max);
    println!(
        "  both fits: Parcours {:.4} s, lifetimes {:.4} s, ratio {:.1}x; largest parameter difference {largest_gap:.1e}",
        secs(bg_time + gg_time),
        their_time,
        their_time / secs(bg_time + gg_time)
    );
    Ok(())
}

/// Paths over 12 channels of uneven popularity, 1 to 12 touches a day apart, a fifth of them
/// converting.
fn generate_paths(n: usize) -> Vec<Path> {
    let channels: Vec<String> = (0..12).map(|i| format!("channel_{i:02}")).collect();
    let mut d = Draw(7);
    (0..n)
        .map(|_| {
            let mut len = 1;
            while len < 12 && d.unit() < 0.55 {
                len += 1;
            }
            // Popularity falls with the channel's index: the lower of two draws.
            let touches: Vec<String> = (0..len)
                .map(|_| channels[d.below(12).min(d.below(12)) as usize].clone())
                .collect();
            let at: Vec<i64> = (0..len as i64).map(|i| i * 86_400_000).collect();
            let converted = d.unit() < 0.2;
            Path {
                channels: touches,
                converted_at: converted.then(|| len as i64 * 86_400_000),
                at,
                conversions: if converted { 1.0 } else { 0.0 },
                value: if converted {
                    20.0 + d.below(200) as f64
                } else {
                    0.0
                },
                nulls: if converted { 0.0 } else { 1.0 },
            }
        })
        .collect()
}

fn attribution_run(n: usize) -> anyhow::Result<()> {
    let paths = generate_paths(n);
    let touches: usize = paths.iter().map(|p| p.channels.len()).sum();
    // The baseline: every touch read once and counted for its channel, the least any
    // per-channel credit does.
    let (bare, check) = best_of(3, || {
        let mut per_channel: std::collections::HashMap<&str, f64> = Default::default();
        for p in std::hint::black_box(&paths) {
            for c in &p.channels {
                *per_channel.entry(c.as_str()).or_default() += p.conversions;
            }
        }
        per_channel.values().sum::<f64>()
    });
    println!("attribution over {n} paths ({touches} touches), best of 3:");
    println!(
        "  bare pass over every touch: {:.3} s (checksum {check})",
        secs(bare)
    );
    let mut total = Duration::ZERO;
    let conversions: f64 = paths.iter().map(|p| p.conversions).sum();
    let mut report = |name: &str, time: Duration, credits: &attribution::Credits| {
        total += time;
        let sum: f64 = credits.values().map(|c| c.conversions).sum();
        println!(
            "  {name:<26} {:.3} s   ratio to the bare pass {:>5.1}   credits {sum:.1} of {conversions}",
            secs(time),
            secs(time) / secs(bare).max(1e-9)
        );
    };
    for (name, rule) in [
        ("first", Rule::First),
        ("last", Rule::Last),
        ("linear", Rule::Linear),
        ("position-based", Rule::PositionBased),
        (
            "time decay (7 days)",
            Rule::TimeDecay {
                half_life_ms: HALF_LIFE_MS,
            },
        ),
    ] {
        let (t, c) = best_of(3, || rule.attribute(&paths));
        report(name, t, &c);
    }
    let (t, c) = best_of(3, || attribution::shapley(&paths));
    report("Shapley (simplified)", t, &c);
    let (t, m) = best_of(3, || attribution::markov(&paths, 1, true));
    report("Markov, order 1, nulls", t, &m.credits);
    println!("  all models: {:.3} s (target < 5 s)", secs(total));
    Ok(())
}

/// Events of `people` people over 90 days, in time order: page views, and visits that go
/// down the funnel's steps (1: product viewed, 2: added to cart, 3: checkout started, 4: order
/// completed), each next step within hours or days of the last, or never.
fn generate_events(n: usize, people: usize) -> Vec<Touch> {
    let mut d = Draw(11);
    let span = 90 * 86_400_000i64;
    let hour = 3_600_000i64;
    let mut events = Vec::with_capacity(n + 8);
    while events.len() < n {
        let person = d.below(people as u64) as u32;
        let mut at = (d.unit() * span as f64) as i64;
        if d.unit() < 0.6 {
            events.push(Touch {
                person,
                at,
                steps: 0,
            });
            continue;
        }
        // A visit from step 1, going on with falling odds; a step can come days later.
        for (step, odds) in [(0, 1.0), (1, 0.45), (2, 0.6), (3, 0.7)] {
            if d.unit() >= odds {
                break;
            }
            at += (d.unit() * if d.unit() < 0.8 { 3.0 } else { 120.0 } * hour as f64) as i64;
            events.push(Touch {
                person,
                at,
                steps: 1 << step,
            });
        }
    }
    events.truncate(n);
    events.sort_by_key(|t| t.at);
    events
}

fn funnel_run(n: usize) -> anyhow::Result<()> {
    let people = (n / 10).max(1);
    let events = generate_events(n, people);
    let (bare, per_step) = best_of(3, || {
        let mut count = [0u64; 5];
        for t in &events {
            count[(t.steps.trailing_zeros() as usize).min(4)] += 1;
        }
        count
    });
    let window = 7 * 86_400_000;
    let (time, out) = best_of(3, || {
        funnel::run(4, window, people, events.iter().copied(), |_| ())
    });
    let counts = out.get(&()).cloned().unwrap_or_default();
    println!("4-step funnel, 7-day window, over {n} events of {people} people, best of 3:");
    println!(
        "  bare pass over every event: {:.3} s (events per step {:?})",
        secs(bare),
        &per_step[..4]
    );
    println!(
        "  funnel: {:.3} s   ratio to the bare pass {:.1}   reached {:?}, median time to convert {:.1} h (target < 2 s)",
        secs(time),
        secs(time) / secs(bare).max(1e-9),
        counts.reached,
        counts.median_time_to_convert().unwrap_or(0) as f64 / 3_600_000.0
    );
    Ok(())
}

pub fn run(b: MeasureBench) -> anyhow::Result<()> {
    if b.paths == 0 || b.events == 0 {
        bail!("give at least one path and one event");
    }
    lifetime_value(&b)?;
    attribution_run(b.paths)?;
    funnel_run(b.events)?;
    Ok(())
}
