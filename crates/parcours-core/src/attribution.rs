//! Channel attribution over customer paths: the rule-based models (first, last, linear,
//! position-based, time decay), the Markov removal effect solved exactly on its absorbing
//! chain (first order and higher orders, with or without the paths that did not convert), and
//! the simplified Shapley value. For conversions and for value.
//!
//! The definitions follow ChannelAttribution (`heuristic_models`, `markov_model`) where it
//! defines them, so that its published results can be checked against ours:
//! - linear credits each occurrence: a channel seen twice in a path of four gets half;
//! - position-based gives 40 % to the first touch, 40 % to the last and 20 % evenly over the
//!   ones between; a path of one touch gives it everything, a path of two splits 50/50;
//! - time decay weighs a touch `2^(−Δt / half-life)` before the conversion (7 days by
//!   default);
//! - the Markov chain goes from `(start)` through the channels to `(conversion)` or `(null)`;
//!   each path adds its weight to every consecutive transition (self-loops included), the last
//!   channel's to `(conversion)` with its conversions and to `(null)` with its nulls (only when
//!   nulls are counted). The removal effect of a channel is `1 − P(conversion | channel
//!   removed) / P(conversion)`, a removed channel (or, in a higher order, every state holding
//!   it) leading to `(null)`; conversions are shared in proportion to the removal effects.
//!   ChannelAttribution estimates `P` by simulation; we solve the chain, so small differences
//!   from its figures are its sampling error;
//! - simplified Shapley (Zhao, Mahboobi & Bagheri 2018): each converting path's conversions
//!   go in equal shares to the distinct channels it holds.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::table::{self, ParseError, Separator};

/// A customer path: its touches in order, and what it came to.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Path {
    pub channels: Vec<String>,
    /// When each touch happened, in milliseconds (for time decay; empty when unknown).
    pub at: Vec<i64>,
    pub conversions: f64,
    pub value: f64,
    /// How many times the path ended without a conversion.
    pub nulls: f64,
    /// When it converted (for time decay).
    pub converted_at: Option<i64>,
}

/// Conversions and value credited to one channel.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Credit {
    pub conversions: f64,
    pub value: f64,
}

/// Credits per channel, by channel name.
pub type Credits = BTreeMap<String, Credit>;

fn add(credits: &mut Credits, channel: &str, share: f64, path: &Path) {
    let c = credits.entry(channel.to_string()).or_default();
    c.conversions += share * path.conversions;
    c.value += share * path.value;
}

/// The rule-based models: what each touch of a path gets (shares summing to 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rule {
    First,
    Last,
    Linear,
    PositionBased,
    /// Weights halve every `half_life_ms` before the conversion.
    TimeDecay {
        half_life_ms: i64,
    },
}

/// Seven days: the half-life of Google Ads' time decay.
pub const HALF_LIFE_MS: i64 = 7 * 86_400_000;

impl Rule {
    /// Each touch's share of a path's conversions (empty for an empty path).
    pub fn shares(&self, path: &Path) -> Vec<f64> {
        let n = path.channels.len();
        if n == 0 {
            return Vec::new();
        }
        let mut shares = vec![0.0; n];
        match self {
            Rule::First => shares[0] = 1.0,
            Rule::Last => shares[n - 1] = 1.0,
            Rule::Linear => shares.iter_mut().for_each(|s| *s = 1.0 / n as f64),
            Rule::PositionBased => match n {
                1 => shares[0] = 1.0,
                2 => shares.iter_mut().for_each(|s| *s = 0.5),
                _ => {
                    shares[0] = 0.4;
                    shares[n - 1] = 0.4;
                    let middle = 0.2 / (n - 2) as f64;
                    shares[1..n - 1].iter_mut().for_each(|s| *s = middle);
                }
            },
            Rule::TimeDecay { half_life_ms } => {
                let end = path
                    .converted_at
                    .or_else(|| path.at.last().copied())
                    .unwrap_or(0);
                let weights: Vec<f64> = (0..n)
                    .map(|i| {
                        let dt = path.at.get(i).map_or(0, |t| (end - t).max(0));
                        (-(dt as f64) / (*half_life_ms).max(1) as f64).exp2()
                    })
                    .collect();
                let total: f64 = weights.iter().sum();
                for (s, w) in shares.iter_mut().zip(&weights) {
                    *s = w / total;
                }
            }
        }
        shares
    }

    /// Credits of every channel over these paths.
    pub fn attribute(&self, paths: &[Path]) -> Credits {
        let mut credits = Credits::new();
        for p in paths
            .iter()
            .filter(|p| p.conversions > 0.0 || p.value > 0.0)
        {
            for (channel, share) in p.channels.iter().zip(self.shares(p)) {
                add(&mut credits, channel, share, p);
            }
        }
        credits
    }
}

/// Simplified Shapley: each converting path's conversions and value in equal shares to the
/// distinct channels it holds (so the credits sum to the conversions: efficiency).
pub fn shapley(paths: &[Path]) -> Credits {
    let mut credits = Credits::new();
    for p in paths
        .iter()
        .filter(|p| p.conversions > 0.0 || p.value > 0.0)
    {
        let distinct: BTreeSet<&str> = p.channels.iter().map(String::as_str).collect();
        let share = 1.0 / distinct.len().max(1) as f64;
        for c in distinct {
            add(&mut credits, c, share, p);
        }
    }
    credits
}

/// Reads the path format of ChannelAttribution: a header naming the columns `path` and
/// `total_conversions`, optionally `total_conversion_value` and `total_null` (any order, other
/// columns ignored), then one path a line, its channels joined by `>` (` > ` in its files).
/// Fields are separated by `;` (or `,` or a tab, whichever the header uses).
pub fn parse_paths(text: &str) -> Result<Vec<Path>, ParseError> {
    let mut lines = table::lines(text);
    let Some((_, header)) = lines.next() else {
        return Err(ParseError {
            line: 1,
            message: "the file is empty: a header line (path;total_conversions;…) comes first"
                .into(),
        });
    };
    let sep = Separator::of(header);
    let names = sep.split(header);
    let column = |name: &str| names.iter().position(|n| n.eq_ignore_ascii_case(name));
    let (Some(path_at), Some(conv_at)) = (column("path"), column("total_conversions")) else {
        return Err(ParseError {
            line: 1,
            message: format!(
                "the header names the columns {names:?}; it needs `path` and `total_conversions` \
                 (and may name `total_conversion_value` and `total_null`)"
            ),
        });
    };
    let (value_at, null_at) = (column("total_conversion_value"), column("total_null"));
    let mut paths = Vec::new();
    for (line, text) in lines {
        let fields = sep.split(text);
        let field = |at: usize| -> Result<&str, ParseError> {
            fields.get(at).copied().ok_or_else(|| ParseError {
                line,
                message: format!(
                    "{} fields where the header names {}",
                    fields.len(),
                    names.len()
                ),
            })
        };
        let channels: Vec<String> = field(path_at)?
            .split('>')
            .map(|c| c.trim().to_string())
            .collect();
        if channels.iter().any(String::is_empty) {
            return Err(ParseError {
                line,
                message: "a path holds an empty channel (channels are joined by ` > `)".into(),
            });
        }
        let optional = |at: Option<usize>, what: &str| match at {
            Some(at) => table::amount(field(at)?, what, line),
            None => Ok(0.0),
        };
        paths.push(Path {
            channels,
            conversions: table::amount(field(conv_at)?, "total_conversions", line)?,
            value: optional(value_at, "total_conversion_value")?,
            nulls: optional(null_at, "total_null")?,
            ..Path::default()
        });
    }
    Ok(paths)
}

/// What the Markov model found.
#[derive(Debug, Clone, PartialEq)]
pub struct Markov {
    /// Credits in proportion to the removal effects.
    pub credits: Credits,
    /// The removal effect of each channel (conversions).
    pub removal_effects: BTreeMap<String, f64>,
    /// The removal effect of each channel on value.
    pub value_removal_effects: BTreeMap<String, f64>,
    /// The probability of converting from `(start)`.
    pub conversion_probability: f64,
    /// States of the chain (besides start, conversion and null).
    pub states: usize,
    /// Every solve of the chain settled (to 1e-15) within its budget of sweeps
    /// ([`SWEEP_BUDGET`]). A chain whose walks take very long to end (a path of hundreds of
    /// thousands of touches) may not: its figures are then the last sweep's, and not exact.
    pub settled: bool,
}

/// The most edge visits all the solves of one chain may take together (sweeps × edges).
pub const SWEEP_BUDGET: usize = 400_000_000;

/// The Markov removal-effect model of `order` (1 or more), counting the paths' nulls or not.
pub fn markov(paths: &[Path], order: usize, with_nulls: bool) -> Markov {
    let order = order.max(1);
    // States: 0 start; then one per distinct window of `order` touches.
    let mut ids: HashMap<Vec<String>, usize> = HashMap::new();
    let mut names: Vec<Vec<String>> = vec![Vec::new()];
    let mut edges: HashMap<(usize, usize), f64> = HashMap::new();
    // Per state: weight to conversion, to null, and value that converted from it.
    let mut to_conv: HashMap<usize, f64> = HashMap::new();
    let mut to_null: HashMap<usize, f64> = HashMap::new();
    let mut value_from: HashMap<usize, f64> = HashMap::new();
    let (mut total_conv, mut total_value) = (0.0, 0.0);
    for p in paths {
        let weight = p.conversions + if with_nulls { p.nulls } else { 0.0 };
        total_conv += p.conversions;
        total_value += p.value;
        if p.channels.is_empty() || weight <= 0.0 {
            continue;
        }
        let n = p.channels.len();
        let mut previous = 0;
        for end in 0..n {
            let window = p.channels[end.saturating_sub(order - 1)..=end].to_vec();
            let next = *ids.entry(window.clone()).or_insert_with(|| {
                names.push(window);
                names.len() - 1
            });
            *edges.entry((previous, next)).or_default() += weight;
            previous = next;
        }
        *to_conv.entry(previous).or_default() += p.conversions;
        *value_from.entry(previous).or_default() += p.value;
        if with_nulls {
            *to_null.entry(previous).or_default() += p.nulls;
        }
    }
    let states = names.len();
    // Transition probabilities out of each transient state.
    let mut out: Vec<Vec<(usize, f64)>> = vec![Vec::new(); states];
    let mut total_out = vec![0.0; states];
    for (&(a, _), w) in &edges {
        total_out[a] += w;
    }
    for (s, total) in total_out.iter_mut().enumerate() {
        *total += to_conv.get(&s).copied().unwrap_or(0.0) + to_null.get(&s).copied().unwrap_or(0.0);
    }
    let mut sorted: Vec<(&(usize, usize), &f64)> = edges.iter().collect();
    sorted.sort_by_key(|(k, _)| **k);
    for (&(a, b), w) in sorted {
        out[a].push((b, w / total_out[a]));
    }
    let p_conv: Vec<f64> = (0..states)
        .map(|s| {
            if total_out[s] > 0.0 {
                to_conv.get(&s).copied().unwrap_or(0.0) / total_out[s]
            } else {
                0.0
            }
        })
        .collect();
    // The value a conversion from a state is worth: the mean of what converted from it.
    let unit_value: Vec<f64> = (0..states)
        .map(|s| {
            let c = to_conv.get(&s).copied().unwrap_or(0.0);
            if c > 0.0 {
                value_from.get(&s).copied().unwrap_or(0.0) / c
            } else {
                0.0
            }
        })
        .collect();
    let gain_conv = p_conv.clone();
    let gain_value: Vec<f64> = p_conv.iter().zip(&unit_value).map(|(p, v)| p * v).collect();
    let none = vec![false; states];
    let channels: BTreeSet<&str> = names.iter().flatten().map(String::as_str).collect();
    // The budget shared by every solve: two, then two per channel removed.
    let visits: usize = out.iter().map(Vec::len).sum::<usize>() + states;
    let sweeps = (SWEEP_BUDGET / (visits * (2 + 2 * channels.len())).max(1)).clamp(10, 1_000_000);
    let mut settled = true;
    let mut solve = |gain: &[f64], removed: &[bool]| {
        let (x, done) = absorb(&out, gain, removed, sweeps);
        settled &= done;
        x
    };
    let base = solve(&gain_conv, &none);
    let base_value = solve(&gain_value, &none);
    let mut removal_effects = BTreeMap::new();
    let mut value_removal_effects = BTreeMap::new();
    for c in &channels {
        let removed: Vec<bool> = names.iter().map(|n| n.iter().any(|x| x == c)).collect();
        let p = solve(&gain_conv, &removed);
        let v = solve(&gain_value, &removed);
        let effect = |without: f64, with: f64| {
            if with > 0.0 {
                (1.0 - without / with).max(0.0)
            } else {
                0.0
            }
        };
        removal_effects.insert(c.to_string(), effect(p, base));
        value_removal_effects.insert(c.to_string(), effect(v, base_value));
    }
    let sum: f64 = removal_effects.values().sum();
    let sum_value: f64 = value_removal_effects.values().sum();
    let credits = channels
        .iter()
        .map(|c| {
            let share = |effects: &BTreeMap<String, f64>, total: f64| {
                if total > 0.0 {
                    effects[*c] / total
                } else {
                    0.0
                }
            };
            (
                c.to_string(),
                Credit {
                    conversions: total_conv * share(&removal_effects, sum),
                    value: total_value * share(&value_removal_effects, sum_value),
                },
            )
        })
        .collect();
    Markov {
        credits,
        removal_effects,
        value_removal_effects,
        conversion_probability: base,
        states: states - 1,
        settled,
    }
}

/// What is expected to be gained from `(start)`: each state's `gain` (its probability of
/// converting next, times what that is worth) plus what its next states are expected to
/// gain; a removed state gains nothing. Solved by Gauss–Seidel sweeps until no value moves
/// by more than 1e-15 (the chain is absorbing, so they converge), or `sweeps` of them: the
/// value, and whether it settled.
fn absorb(out: &[Vec<(usize, f64)>], gain: &[f64], removed: &[bool], sweeps: usize) -> (f64, bool) {
    let n = out.len();
    let mut x = vec![0.0f64; n];
    for _ in 0..sweeps {
        let mut moved = 0.0f64;
        for s in (0..n).rev() {
            if removed[s] {
                continue;
            }
            let mut v = gain[s];
            let mut own = 0.0;
            for &(t, p) in &out[s] {
                if t == s {
                    own += p;
                } else if !removed[t] {
                    v += p * x[t];
                }
            }
            // A self-loop only delays what follows: solved for exactly.
            let v = if own < 1.0 { v / (1.0 - own) } else { 0.0 };
            moved = moved.max((v - x[s]).abs());
            x[s] = v;
        }
        if moved <= 1e-15 {
            return (x[0], true);
        }
    }
    (x[0], false)
}

/// Every model over the same paths, by name: first, last, linear, position-based, time decay
/// (7-day half-life; when the paths carry their times), simplified Shapley and Markov.
#[derive(Debug, Clone, PartialEq)]
pub struct EveryModel {
    pub models: Vec<(&'static str, Credits)>,
    pub markov: Markov,
}

/// Runs [`EveryModel`] (the Markov chain of `order`, counting nulls or not).
pub fn every_model(paths: &[Path], order: usize, with_nulls: bool, timed: bool) -> EveryModel {
    let mut rules = vec![
        ("first", Rule::First),
        ("last", Rule::Last),
        ("linear", Rule::Linear),
        ("position_based", Rule::PositionBased),
    ];
    if timed {
        rules.push((
            "time_decay",
            Rule::TimeDecay {
                half_life_ms: HALF_LIFE_MS,
            },
        ));
    }
    let mut models: Vec<(&'static str, Credits)> = rules
        .into_iter()
        .map(|(name, rule)| (name, rule.attribute(paths)))
        .collect();
    models.push(("shapley", shapley(paths)));
    let markov = markov(paths, order, with_nulls);
    models.push(("markov", markov.credits.clone()));
    EveryModel { models, markov }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(channels: &str, conversions: f64, value: f64, nulls: f64) -> Path {
        Path {
            channels: channels.split(" > ").map(str::to_string).collect(),
            conversions,
            value,
            nulls,
            ..Path::default()
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn the_markov_toy_of_the_reference() {
        let paths = [
            path("C1 > C2 > C3", 1.0, 10.0, 0.0),
            path("C1", 0.0, 0.0, 1.0),
            path("C2 > C3", 0.0, 0.0, 1.0),
        ];
        let m = markov(&paths, 1, true);
        assert!(close(m.conversion_probability, 1.0 / 3.0), "{m:?}");
        assert!(close(m.removal_effects["C1"], 0.5));
        assert!(close(m.removal_effects["C2"], 1.0));
        assert!(close(m.removal_effects["C3"], 1.0));
        assert!(close(m.credits["C1"].conversions, 0.2));
        assert!(close(m.credits["C2"].conversions, 0.4));
        assert!(close(m.credits["C3"].conversions, 0.4));
        assert!(close(m.credits["C2"].value, 4.0));
    }

    #[test]
    fn self_loops_do_not_change_the_removal_effects() {
        let plain = markov(
            &[
                path("A > B", 1.0, 0.0, 0.0),
                path("A", 0.0, 0.0, 1.0),
                path("B", 1.0, 0.0, 1.0),
            ],
            1,
            true,
        );
        let looped = markov(
            &[
                path("A > A > B > B", 1.0, 0.0, 0.0),
                path("A > A", 0.0, 0.0, 1.0),
                path("B", 1.0, 0.0, 1.0),
            ],
            1,
            true,
        );
        for c in ["A", "B"] {
            assert!(
                (plain.removal_effects[c] - looped.removal_effects[c]).abs() < 1e-9,
                "{plain:?} {looped:?}"
            );
        }
    }

    #[test]
    fn rules_share_as_documented() {
        let p = path("A > B > C > A", 2.0, 100.0, 0.0);
        assert_eq!(Rule::First.shares(&p), vec![1.0, 0.0, 0.0, 0.0]);
        assert_eq!(Rule::Last.shares(&p), vec![0.0, 0.0, 0.0, 1.0]);
        let linear = Rule::Linear.attribute(std::slice::from_ref(&p));
        assert!(
            close(linear["A"].conversions, 1.0),
            "each occurrence credited"
        );
        assert!(close(linear["A"].value, 50.0));
        assert_eq!(Rule::PositionBased.shares(&p), vec![0.4, 0.1, 0.1, 0.4]);
        assert_eq!(
            Rule::PositionBased.shares(&path("A", 1.0, 0.0, 0.0)),
            vec![1.0]
        );
        assert_eq!(
            Rule::PositionBased.shares(&path("A > B", 1.0, 0.0, 0.0)),
            vec![0.5, 0.5]
        );
        // A click 8 days before the conversion weighs half one a day before.
        let day = 86_400_000;
        let mut timed = path("A > B", 1.0, 0.0, 0.0);
        timed.at = vec![0, 7 * day];
        timed.converted_at = Some(8 * day);
        let s = Rule::TimeDecay {
            half_life_ms: HALF_LIFE_MS,
        }
        .shares(&timed);
        assert!(close(s[0] / s[1], 0.5), "{s:?}");
        assert!(close(s[0] + s[1], 1.0));
    }

    #[test]
    fn shapley_is_efficient_symmetric_and_ignores_null_paths() {
        let paths = [
            path("A > B > A", 3.0, 30.0, 0.0),
            path("B > A", 1.0, 10.0, 0.0),
            path("C", 0.0, 0.0, 5.0),
        ];
        let s = shapley(&paths);
        assert!(
            close(s["A"].conversions, 2.0) && close(s["B"].conversions, 2.0),
            "{s:?}"
        );
        assert!(
            !s.contains_key("C"),
            "a channel that never converted gets nothing"
        );
        let total: f64 = s.values().map(|c| c.conversions).sum();
        assert!(close(total, 4.0));
    }

    #[test]
    fn a_higher_order_chain_removes_every_state_holding_the_channel() {
        let paths = [
            path("A > B > C", 1.0, 0.0, 0.0),
            path("A > C", 0.0, 0.0, 1.0),
            path("B > C", 1.0, 0.0, 1.0),
        ];
        let m1 = markov(&paths, 1, true);
        let m2 = markov(&paths, 2, true);
        assert!(m2.states > m1.states);
        let total: f64 = m2.credits.values().map(|c| c.conversions).sum();
        assert!(close(total, 2.0), "{m2:?}");
        // Without C nothing converts, at any order.
        assert!(close(m2.removal_effects["C"], 1.0));
        // Counting only conversions, every path converts: each channel on a converting
        // path is needed by some of them.
        let only = markov(&paths, 1, false);
        assert!(close(only.conversion_probability, 1.0), "{only:?}");
    }
}
