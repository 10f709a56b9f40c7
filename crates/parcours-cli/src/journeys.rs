//! `parcours journey …`: journey documents from the command line.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context};
use parcours_core::journey::{self, Action, Journey, Target, Trigger};
use parcours_core::time::Clock;
use parcours_engine::SystemClock;
use parcours_service::journeys::{self as service, Saved};
use parcours_service::{Actor, ServiceError};
use parcours_store::Role;

use crate::commands::resolve_workspace;
use crate::config::Config;
use crate::node::open_store;

/// Reads the document at `path` (`-`: stdin).
fn load(path: &Path) -> anyhow::Result<String> {
    if path == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the document from stdin")?;
        return Ok(s);
    }
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// `parcours journey validate FILE`: every problem as `FILE:LINE:COLUMN: CODE: MESSAGE` on
/// stdout, or a summary of the journey when there is none.
pub fn validate(path: &Path) -> anyhow::Result<()> {
    let text = load(path)?;
    let name = path.display();
    match journey::read(&text) {
        Ok(j) => {
            println!("{name}: valid");
            for line in summary(&j) {
                println!("  {line}");
            }
            Ok(())
        }
        Err(problems) => {
            for p in &problems {
                println!(
                    "{name}:{}:{}: {}: {}",
                    p.at.line, p.at.column, p.code, p.message
                );
            }
            let n = problems.len();
            bail!("{name}: {n} problem{} found", if n == 1 { "" } else { "s" })
        }
    }
}

/// The document's problems as `FILE:LINE:COLUMN: CODE: MESSAGE` lines, or the error itself.
fn refused(name: &str, e: ServiceError) -> anyhow::Error {
    match e {
        ServiceError::Document { problems } => {
            for p in &problems {
                println!(
                    "{name}:{}:{}: {}: {}",
                    p.at.line, p.at.column, p.code, p.message
                );
            }
            anyhow::anyhow!(
                "{name}: {} problem(s) found; nothing was saved",
                problems.len()
            )
        }
        e => anyhow::anyhow!("{e}"),
    }
}

fn print_plan(plan: &Saved, header: &str) {
    println!("{header}");
    for c in &plan.changes {
        println!("  - {c}");
    }
    match &plan.diff {
        // A new journey is all additions: the document itself says more.
        _ if plan.version.is_none() => {}
        Some(lines) if !lines.is_empty() => {
            println!();
            for l in lines {
                println!("{l}");
            }
        }
        Some(_) => {}
        None => println!("  (too large to compare line by line)"),
    }
}

/// The file's journey id: the document's own, or the problems that keep it from reading.
fn planned(
    config: &Config,
    path: &Path,
    workspace: Option<&str>,
) -> anyhow::Result<(
    std::sync::Arc<dyn parcours_store::Store>,
    Actor,
    String,
    Saved,
)> {
    let text = load(path)?;
    let name = path.display().to_string();
    let id = journey::read(&text)
        .map(|j| j.id)
        .map_err(|problems| refused(&name, ServiceError::Document { problems }))?;
    let store = open_store(config)?;
    let ws = resolve_workspace(store.as_ref(), workspace)?;
    let actor = Actor::new(ws, Role::Admin);
    let plan = service::plan(store.as_ref(), &actor, &id, &text).map_err(|e| refused(&name, e))?;
    Ok((store, actor, text, plan))
}

/// `parcours journey diff FILE`: what saving it would change. Saves nothing.
pub fn diff(config: &Config, path: &Path, workspace: Option<&str>) -> anyhow::Result<()> {
    let (_, _, _, plan) = planned(config, path, workspace)?;
    let header = match (&plan.version, plan.changed) {
        (None, _) => format!("journey `{}` is new", plan.journey.id),
        (Some(v), false) => format!(
            "journey `{}` version {} is this document: nothing to save",
            plan.journey.id, v.version
        ),
        (Some(v), true) => format!(
            "journey `{}`: against version {}",
            plan.journey.id, v.version
        ),
    };
    print_plan(&plan, &header);
    Ok(())
}

/// `parcours journey apply FILE`: prints what changes, then saves the next version.
pub fn apply(config: &Config, path: &Path, workspace: Option<&str>) -> anyhow::Result<()> {
    let (store, actor, text, plan) = planned(config, path, workspace)?;
    if !plan.changed {
        println!(
            "journey `{}` version {} is this document: nothing saved",
            plan.journey.id,
            plan.version.as_ref().map_or(0, |v| v.version)
        );
        return Ok(());
    }
    let id = plan.journey.id.clone();
    let next = plan.version.as_ref().map_or(1, |v| v.version + 1);
    print_plan(&plan, &format!("journey `{id}`: saving version {next}"));
    let saved = service::save(store.as_ref(), &actor, &id, &text, SystemClock.now())
        .map_err(|e| refused(&path.display().to_string(), e))?;
    println!(
        "saved journey `{id}` version {}",
        saved.version.as_ref().map_or(0, |v| v.version)
    );
    Ok(())
}

/// A date (`2026-11-01`, its start in UTC) or a timestamp.
fn instant(text: &str, what: &str) -> anyhow::Result<parcours_core::time::Millis> {
    parcours_core::time::parse_date_or_timestamp(text).ok_or_else(|| {
        anyhow::anyhow!(
            "{what} `{text}` is not a date (2026-11-01) or a timestamp (2026-11-01T09:00:00Z)"
        )
    })
}

/// `parcours journey simulate FILE --from --to`: what the journey would have done.
pub fn simulate(
    config: &Config,
    path: &Path,
    from: &str,
    to: &str,
    workspace: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    let text = load(path)?;
    let name = path.display().to_string();
    let (from, to) = (instant(from, "--from")?, instant(to, "--to")?);
    let store = open_store(config)?;
    let ws = resolve_workspace(store.as_ref(), workspace)?;
    let actor = Actor::new(ws, Role::Analyst);
    let mut told = 0;
    let mut progress = |n: u64| {
        if n / 1_000 > told / 1_000 {
            eprintln!("replayed {n} customers…");
            told = n;
        }
    };
    let sim = service::simulate(store.as_ref(), &actor, &text, from, to, &mut progress)
        .map_err(|e| refused(&name, e))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&sim)?);
        return Ok(());
    }
    print!("{}", describe_simulation(&sim));
    Ok(())
}

/// A simulation in words.
pub fn describe_simulation(sim: &parcours_engine::journeys::Simulation) -> String {
    use std::fmt::Write as _;
    let list = |m: &std::collections::BTreeMap<String, u64>| {
        if m.is_empty() {
            return "none".to_string();
        }
        m.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let iso = parcours_core::time::format_timestamp;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "journey `{}` replayed from {} to {} over {} customers ({} events); nothing was saved or sent",
        sim.journey,
        iso(sim.from),
        iso(sim.to),
        sim.customers,
        sim.events
    );
    let _ = writeln!(
        out,
        "entered: {} ({} in the holdout group)",
        sim.entered, sim.holdout
    );
    let _ = writeln!(out, "not entered: {}", list(&sim.not_entered));
    let _ = writeln!(
        out,
        "ended: {}; still running at the end: {}",
        list(&sim.ended),
        sim.running
    );
    let _ = writeln!(
        out,
        "converted: {} ({} in the holdout group)",
        sim.converted, sim.converted_holdout
    );
    let _ = writeln!(out, "sent: {}", list(&sim.sent));
    let _ = writeln!(
        out,
        "quiet hours: {} deferred, {} dropped; caps: {} deferred, {} dropped",
        sim.decided("deferred_quiet_hours"),
        sim.decided("quiet_hours"),
        sim.decided("deferred_cap"),
        sim.decided("capped")
    );
    let _ = writeln!(out, "decisions by step:");
    for s in &sim.steps {
        let _ = writeln!(out, "  {:<16} {}", s.step, list(&s.decisions));
    }
    if sim.conflicts.is_empty() {
        let _ = writeln!(out, "conflicts with live journeys: none");
    } else {
        let _ = writeln!(
            out,
            "conflicts with live journeys (their messages within a day of one this journey would send):"
        );
        for c in &sim.conflicts {
            let _ = writeln!(
                out,
                "  {:<16} {} customers, {} messages",
                c.journey, c.customers, c.messages
            );
        }
    }
    out
}

/// What a journey does, one line per part.
pub fn summary(j: &Journey) -> Vec<String> {
    let mut out = vec![format!(
        "journey `{}` ({}), {}, priority {}",
        j.id,
        j.name,
        j.status.as_str(),
        j.priority
    )];
    out.push(format!(
        "entry: {}{}",
        match &j.entry.trigger {
            Trigger::Event { event, filters } if filters.is_empty() => format!("on `{event}`"),
            Trigger::Event { event, filters } =>
                format!("on `{event}` with {} filter(s)", filters.len()),
            Trigger::Audience { audience, leave } => format!(
                "on {} audience `{audience}`",
                if *leave { "leaving" } else { "entering" }
            ),
            Trigger::Api => "by API call".into(),
            Trigger::Schedule { every_ms, .. } =>
                if every_ms.is_some() {
                    "on a recurring schedule".into()
                } else {
                    "on a schedule".into()
                },
        },
        j.entry
            .key
            .as_ref()
            .map(|k| format!(", one run per `{k}`"))
            .unwrap_or_default()
    ));
    if j.holdout_bp > 0 {
        out.push(format!("holdout: {}%", f64::from(j.holdout_bp) / 100.0));
    }
    for (i, s) in j.steps.iter().enumerate() {
        let then = match j.after(i) {
            Target::Step(id) => format!(" → {id}"),
            Target::End => " → end".into(),
        };
        let then = match &s.action {
            Action::WaitFor {
                on_event,
                on_timeout,
                ..
            } => format!(
                " → {} on the event, {} on timeout",
                target(on_event),
                target(on_timeout)
            ),
            Action::Branch {
                then, otherwise, ..
            } => {
                format!(" → {} / else {}", target(then), target(otherwise))
            }
            Action::Split { variants } => format!(
                " → {}",
                variants
                    .iter()
                    .map(|v| format!("{} ({}): {}", v.name, v.weight, target(&v.next)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Action::Exit => String::new(),
            _ => then,
        };
        let what = match &s.action {
            Action::Send(m) => format!("send {}", m.channel.as_str()),
            a => a.kind().to_string(),
        };
        out.push(format!("step {}: {what}{then}", s.id));
    }
    out
}

fn target(t: &Target) -> &str {
    match t {
        Target::Step(id) => id,
        Target::End => "end",
    }
}
