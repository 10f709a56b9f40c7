//! `parcours journey …`: journey documents from the command line.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context};
use parcours_core::journey::{self, Action, Journey, Target, Trigger};

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
