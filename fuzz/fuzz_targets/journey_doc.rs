//! Journey documents: any text either reads, or is refused with problems that point at a line
//! and column; what reads has a JSON form that reads back the same, and its runs move through
//! every step without panicking.

#![no_main]

use libfuzzer_sys::fuzz_target;
use parcours_core::audience::Condition;
use parcours_core::journey::{self, machine, Input, Journey, Look, RunState};
use serde_json::{json, Value};


struct Nobody;

impl Look for Nobody {
    fn holds(&self, _: &Condition) -> bool {
        false
    }
    fn time_zone(&self) -> Option<String> {
        Some("Europe/Paris".into())
    }
    fn trait_value(&self, _: &str) -> Option<Value> {
        Some(json!("2026-12-25"))
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match journey::read(text) {
        Err(problems) => {
            assert!(!problems.is_empty());
            for p in problems {
                assert!(p.at.line >= 1 && p.at.column >= 1, "{p:?}");
            }
        }
        Ok(j) => {
            let again: Journey = serde_json::from_value(serde_json::to_value(&j).unwrap()).unwrap();
            assert_eq!(again, j);
            let now = 1_790_000_000_000;
            let (mut run, _) = journey::enter(&j, 1, "r".into(), "p".into(), String::new(), Value::Null, now, &Nobody);
            // Fire the run's timers until it ends: steps only go forward, so it must.
            for _ in 0..=j.steps.len() {
                let RunState::Waiting { until, .. } = run.state else { break };
                let (next, _) = machine::step(&j, run, Input::Timer { due: until }, until.max(now), &Nobody);
                run = next;
            }
            assert!(matches!(run.state, RunState::Done { .. }), "{run:?}");
        }
    }
});
