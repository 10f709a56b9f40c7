//! What a new version of a journey changes: in words, for the people who apply it (and for
//! runs in flight), and line by line, for those who review it.

use super::{InFlight, Journey, Status};

/// The changes from `old` (none: a new journey) to `new`, one sentence each, the fate of runs
/// in flight last.
pub fn changes(old: Option<&Journey>, new: &Journey) -> Vec<String> {
    let Some(old) = old else {
        let mut out = vec![format!(
            "new journey `{}` with {} step(s), {}",
            new.id,
            new.steps.len(),
            new.status.as_str()
        )];
        if new.status == Status::Live {
            out.push("it takes entrants from now on".into());
        }
        return out;
    };
    let mut out = Vec::new();
    if old.status != new.status {
        out.push(format!(
            "status: {} → {}{}",
            old.status.as_str(),
            new.status.as_str(),
            match new.status {
                Status::Live => " (it takes entrants from now on)",
                Status::Paused => " (no new entrants; runs in flight go on)",
                Status::Archived => " (no new entrants; runs in flight go on)",
                Status::Draft => " (no new entrants)",
            }
        ));
    }
    if old.name != new.name {
        out.push(format!("name: {:?} → {:?}", old.name, new.name));
    }
    if old.priority != new.priority {
        out.push(format!("priority: {} → {}", old.priority, new.priority));
    }
    if old.entry != new.entry {
        out.push("entry changed: it applies to new entrants".into());
    }
    if old.goal != new.goal {
        out.push("goal changed: it applies to every run from now on".into());
    }
    if old.exit_if != new.exit_if {
        out.push("exit condition changed: it applies to every run from now on".into());
    }
    if old.holdout_bp != new.holdout_bp {
        out.push(format!(
            "holdout: {}% → {}% (for new entrants)",
            f64::from(old.holdout_bp) / 100.0,
            f64::from(new.holdout_bp) / 100.0
        ));
    }
    if old.quiet_hours != new.quiet_hours || old.timezone != new.timezone {
        out.push(
            "quiet hours or time zone changed: they apply to every message from now on".into(),
        );
    }
    let mut gone = Vec::new();
    for s in &old.steps {
        match new.steps.iter().find(|n| n.id == s.id) {
            None => {
                out.push(format!("step `{}` removed", s.id));
                gone.push(s.id.as_str());
            }
            Some(n) if n != s => out.push(format!("step `{}` changed ({})", s.id, n.action.kind())),
            Some(_) => {}
        }
    }
    for s in &new.steps {
        if !old.steps.iter().any(|o| o.id == s.id) {
            out.push(format!("step `{}` added ({})", s.id, s.action.kind()));
        }
    }
    if out.is_empty() {
        out.push("no change to what the journey does".into());
    }
    out.push(match new.in_flight {
        InFlight::Stay => {
            "runs in flight stay on the version they started on and finish there; new entrants take this version".into()
        }
        InFlight::Move if gone.is_empty() => {
            "runs in flight move to the step with the same id in this version (waits keep their end time)".into()
        }
        InFlight::Move => format!(
            "runs in flight move to the step with the same id in this version (waits keep their end time); runs at {} stay on their version",
            gone.iter().map(|g| format!("`{g}`")).collect::<Vec<_>>().join(", ")
        ),
    });
    out
}

/// The largest documents compared line by line (lines of the old times lines of the new).
const MAX_CELLS: usize = 4_000_000;

/// A line diff, `-` for removed lines, `+` for added ones, with two lines of context around
/// each change and `…` for what is skipped. `None` when the documents are too large to
/// compare line by line.
pub fn line_diff(old: &str, new: &str) -> Option<Vec<String>> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    if a.len().saturating_mul(b.len()) > MAX_CELLS {
        return None;
    }
    // Longest common subsequence, from the end.
    let w = b.len() + 1;
    let mut lcs = vec![0u32; (a.len() + 1) * w];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i * w + j] = if a[i] == b[j] {
                lcs[(i + 1) * w + j + 1] + 1
            } else {
                lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
            };
        }
    }
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i * w + j + 1] > lcs[(i + 1) * w + j]) {
            ops.push(('+', b[j]));
            j += 1;
        } else {
            ops.push(('-', a[i]));
            i += 1;
        }
    }
    let near = |k: usize| {
        ops[k.saturating_sub(2)..(k + 3).min(ops.len())]
            .iter()
            .any(|(op, _)| *op != ' ')
    };
    let mut out = Vec::new();
    let mut skipped = false;
    for (k, (op, line)) in ops.iter().enumerate() {
        if near(k) {
            if skipped {
                out.push("…".to_string());
                skipped = false;
            }
            out.push(format!("{op} {line}"));
        } else {
            skipped = true;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journey::read;

    const V1: &str = "id: j\nstatus: draft\nentry: {event: A}\nsteps:\n  - id: a\n    wait: 1h\n  - id: b\n    send: {channel: sms, text: hi}\n";

    #[test]
    fn changes_say_what_happens_to_runs_in_flight() {
        let v1 = read(V1).unwrap();
        assert_eq!(
            changes(None, &v1)[0],
            "new journey `j` with 2 step(s), draft"
        );
        let v2 = read(
            &V1.replace("draft", "live")
                .replace("wait: 1h", "wait: 2h")
                .replace(
                    "  - id: b\n    send: {channel: sms, text: hi}\n",
                    "  - id: c\n    exit: true\n",
                ),
        )
        .unwrap();
        let c = changes(Some(&v1), &v2);
        assert_eq!(
            c[..4],
            [
                "status: draft → live (it takes entrants from now on)",
                "step `a` changed (wait)",
                "step `b` removed",
                "step `c` added (exit)",
            ]
        );
        assert!(c[4].starts_with("runs in flight stay"), "{c:?}");
        let moving = read(&format!(
            "in_flight: move\n{}",
            V1.replace("  - id: b\n    send: {channel: sms, text: hi}\n", "")
        ))
        .unwrap();
        let c = changes(Some(&v1), &moving);
        assert!(
            c.last()
                .unwrap()
                .contains("runs at `b` stay on their version"),
            "{c:?}"
        );
        assert_eq!(
            changes(Some(&v1), &v1)[0],
            "no change to what the journey does"
        );
    }

    #[test]
    fn line_diff_shows_changes_with_context() {
        let new = V1.replace("wait: 1h", "wait: 2h");
        let d = line_diff(V1, &new).unwrap();
        assert_eq!(
            d,
            [
                "…",
                "  steps:",
                "    - id: a",
                "-     wait: 1h",
                "+     wait: 2h",
                "    - id: b",
                "      send: {channel: sms, text: hi}"
            ]
        );
        assert_eq!(line_diff(V1, V1).unwrap(), Vec::<String>::new());
        let big = "x\n".repeat(3000);
        assert_eq!(line_diff(&big, &big), None);
    }
}
