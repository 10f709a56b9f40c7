//! Ordered funnels: how many people did step 1, then step 2 after it, … each within a
//! conversion window counted from the step-1 event that started the sequence, and how long
//! the ones who finished took.
//!
//! A person counts once per step, at the furthest step any of her attempts reached: a later
//! step-1 event restarts the clock (so an old start never blocks a newer one), and among
//! attempts that reached a step the one that started last is kept, since it has the most of
//! its window left. One event advances one step at most. Events are read once, in time order,
//! with per-person state of one start time per step: O(events × steps).

use std::collections::BTreeMap;

use crate::time::Millis;

/// One event, already mapped: the person's dense index (0..people), when, and which steps its
/// event matches (a bit per step: bit `k` for step `k`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Touch {
    pub person: u32,
    pub at: Millis,
    pub steps: u64,
}

/// The most steps a funnel may have (one bit each in [`Touch::steps`]).
pub const MAX_STEPS: usize = 32;

/// What a funnel found for one group of people.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Counts {
    /// People who reached each step (step 0 first).
    pub reached: Vec<u64>,
    /// For those who finished: the time from the start to the last step, sorted.
    pub times_to_convert: Vec<Millis>,
}

impl Counts {
    /// The share of step 0 that reached each step.
    pub fn conversion(&self) -> Vec<f64> {
        let first = self.reached.first().copied().unwrap_or(0);
        self.reached
            .iter()
            .map(|&n| {
                if first > 0 {
                    n as f64 / first as f64
                } else {
                    0.0
                }
            })
            .collect()
    }

    /// The median time to convert (the lower middle of an even count).
    pub fn median_time_to_convert(&self) -> Option<Millis> {
        let t = &self.times_to_convert;
        (!t.is_empty()).then(|| t[(t.len() - 1) / 2])
    }
}

/// Runs a funnel of `steps` steps (1..=[`MAX_STEPS`]) over `touches` in time order (ties in
/// any order), for `people` people. Returns the counts per group, `group_of(person)` naming
/// each person's group (her first channel, her shop); people with no step-0 event are in no
/// count.
pub fn run<G: Ord + Clone>(
    steps: usize,
    window: Millis,
    people: usize,
    touches: impl IntoIterator<Item = Touch>,
    group_of: impl Fn(u32) -> G,
) -> BTreeMap<G, Counts> {
    let steps = steps.clamp(1, MAX_STEPS);
    const NONE: Millis = Millis::MIN;
    // Per person and step: the start of the latest-started attempt that reached it.
    let mut start = vec![NONE; people * steps];
    // Per person: when she finished, from the start of that attempt (the first finish).
    let mut finished: Vec<Option<Millis>> = vec![None; people];
    for t in touches {
        let p = t.person as usize;
        if p >= people || t.steps == 0 {
            continue;
        }
        let row = &mut start[p * steps..(p + 1) * steps];
        // The deepest step this event can advance, so one event moves one step at most.
        let mut advanced = false;
        for k in (1..steps).rev() {
            if t.steps & (1 << k) == 0 {
                continue;
            }
            let from = row[k - 1];
            if from != NONE && t.at - from <= window && from > row[k] {
                row[k] = from;
                if k == steps - 1 && finished[p].is_none() {
                    finished[p] = Some(t.at - from);
                }
                advanced = true;
                break;
            }
        }
        if !advanced && t.steps & 1 == 1 {
            row[0] = t.at;
            if steps == 1 && finished[p].is_none() {
                finished[p] = Some(0);
            }
        }
    }
    let mut out: BTreeMap<G, Counts> = BTreeMap::new();
    for p in 0..people {
        let row = &start[p * steps..(p + 1) * steps];
        let depth = row.iter().take_while(|s| **s != NONE).count();
        if depth == 0 {
            continue;
        }
        let counts = out.entry(group_of(p as u32)).or_insert_with(|| Counts {
            reached: vec![0; steps],
            times_to_convert: Vec::new(),
        });
        for r in counts.reached.iter_mut().take(depth) {
            *r += 1;
        }
        if let Some(t) = finished[p] {
            counts.times_to_convert.push(t);
        }
    }
    for c in out.values_mut() {
        c.times_to_convert.sort_unstable();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(person: u32, at: Millis, step: u32) -> Touch {
        Touch {
            person,
            at,
            steps: 1 << step,
        }
    }

    fn one(steps: usize, window: Millis, people: usize, touches: Vec<Touch>) -> Counts {
        run(steps, window, people, touches, |_| ())
            .remove(&())
            .unwrap_or_default()
    }

    #[test]
    fn steps_count_in_order_within_the_window() {
        let c = one(
            3,
            100,
            4,
            vec![
                // 0: all three in order.
                touch(0, 0, 0),
                touch(0, 10, 1),
                touch(0, 30, 2),
                // 1: step 2 before step 1 does not count; then step 1.
                touch(1, 0, 0),
                touch(1, 5, 2),
                touch(1, 6, 1),
                // 2: step 1 too late.
                touch(2, 0, 0),
                touch(2, 101, 1),
                // 3: never started.
                touch(3, 0, 1),
            ],
        );
        assert_eq!(c.reached, vec![3, 2, 1]);
        assert_eq!(c.times_to_convert, vec![30]);
        assert_eq!(c.conversion(), vec![1.0, 2.0 / 3.0, 1.0 / 3.0]);
    }

    #[test]
    fn a_later_start_restarts_the_window() {
        // Started at 0, too late for step 1 at 150 from it; started again at 100: in time.
        let c = one(
            2,
            100,
            1,
            vec![touch(0, 0, 0), touch(0, 100, 0), touch(0, 150, 1)],
        );
        assert_eq!(c.reached, vec![1, 1]);
        assert_eq!(c.median_time_to_convert(), Some(50));
    }

    #[test]
    fn an_attempt_in_progress_is_not_lost_to_a_new_start() {
        // Reached step 1 from the start at 0; a new start at 50 must not undo that.
        let c = one(
            3,
            100,
            1,
            vec![
                touch(0, 0, 0),
                touch(0, 10, 1),
                touch(0, 50, 0),
                touch(0, 90, 2),
            ],
        );
        assert_eq!(c.reached, vec![1, 1, 1]);
        assert_eq!(c.times_to_convert, vec![90]);
    }

    #[test]
    fn one_event_advances_one_step() {
        // The same event name at steps 1 and 2: one occurrence is not two steps.
        let both = Touch {
            person: 0,
            at: 5,
            steps: 0b110,
        };
        let c = one(3, 100, 1, vec![touch(0, 0, 0), both]);
        assert_eq!(c.reached, vec![1, 1, 0]);
        let c = one(
            3,
            100,
            1,
            vec![touch(0, 0, 0), both, Touch { at: 6, ..both }],
        );
        assert_eq!(c.reached, vec![1, 1, 1]);
    }

    #[test]
    fn groups_count_apart() {
        let out = run(
            2,
            100,
            3,
            vec![
                touch(0, 0, 0),
                touch(0, 1, 1),
                touch(1, 0, 0),
                touch(2, 0, 0),
            ],
            |p| if p == 0 { "email" } else { "ads" },
        );
        assert_eq!(out["email"].reached, vec![1, 1]);
        assert_eq!(out["ads"].reached, vec![2, 0]);
    }
}
