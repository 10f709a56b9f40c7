//! Audience definitions: one syntax tree with two spellings, a JSON form for the API and a
//! text form for people. Both parse into [`Condition`]. Text errors point at a line and
//! column, and [`Condition`] prints back as text that parses to the same tree.
//!
//! ```text
//! trait plan = "gold"
//!   and did "Order Completed" where total > 100 count >= 2 within 30 days
//!   and not did "Product Added" within 1 hour
//!   and ("Product Viewed" then "Order Completed" within 2 hours or seen on store within 90 days)
//!   and last channel is web and has email and in audience "vip"
//!   and consent marketing:email granted and computed lifetime_value > 500
//!   and trait signed_up_at before 30 days ago
//! ```
//!
//! [`eval`] evaluates a condition on one profile and explains the answer.

pub mod eval;
mod parse;
mod print;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::profile::ConsentState;
use crate::time::{Millis, DAY};

pub use eval::{EventFact, Subject, Verdict};
pub use parse::{parse, parse_filters, ParseError};

/// How deep `and`, `or`, `not` and parentheses may nest in one definition.
pub const MAX_DEPTH: usize = 32;
/// How many conditions one definition may hold (each test, `and`, `or` and `not` counts).
pub const MAX_CONDITIONS: usize = 1_000;
/// The longest definition in the text form.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;
/// The longest window, age or funnel: 10,000 years (3,652,425 days; longer means `ever`).
/// Beyond it, `now` minus the window leaves the range of time Parcours counts in.
pub const MAX_DURATION_MS: Millis = 3_652_425 * DAY;

/// Why a definition was refused: a stable code (`invalid_audience`, `audience_too_deep`,
/// `audience_too_large`, `duration_out_of_range`) and a message a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new("invalid_audience", message)
    }
}

impl From<String> for Refusal {
    fn from(message: String) -> Self {
        Refusal::invalid(message)
    }
}

/// The refusal of a definition nested deeper than [`MAX_DEPTH`].
pub fn too_deep() -> Refusal {
    Refusal::new(
        "audience_too_deep",
        format!("`and`, `or`, `not` and parentheses nest deeper than {MAX_DEPTH} levels"),
    )
}

/// Checks a window, age or funnel length: positive and at most [`MAX_DURATION_MS`].
pub fn check_duration(ms: Millis, what: &str) -> Result<(), Refusal> {
    if ms <= 0 {
        Err(Refusal::invalid(format!("{what} must be positive")))
    } else if ms > MAX_DURATION_MS {
        Err(Refusal::new(
            "duration_out_of_range",
            format!("{what} is longer than 10,000 years (3,652,425 days); leave the window out to mean `ever`"),
        ))
    } else {
        Ok(())
    }
}

/// Checks a `between` window: its dates in 1970-01-01 … 9999-12-31, the first one first.
pub fn check_between(from: Millis, to: Millis) -> Result<(), Refusal> {
    let range = crate::spec::MIN_TIMESTAMP..=crate::spec::MAX_TIMESTAMP;
    if !range.contains(&from) || !range.contains(&to) {
        return Err(Refusal::new(
            "duration_out_of_range",
            "`between` dates must be within 1970-01-01 and 9999-12-31",
        ));
    }
    if from >= to {
        return Err(Refusal::invalid(
            "`between` needs its first date before its second",
        ));
    }
    Ok(())
}

/// A condition on one profile, its events, channels, identifiers, consent and memberships.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Condition {
    And {
        all: Vec<Condition>,
    },
    Or {
        any: Vec<Condition>,
    },
    Not {
        not: Box<Condition>,
    },
    /// A profile trait.
    Trait {
        name: String,
        test: Test,
    },
    /// A computed trait, by name.
    Computed {
        name: String,
        test: Test,
    },
    /// Did (or did not) do an event, optionally filtered by properties, measured (count,
    /// sum, …) within a window.
    Event {
        event: String,
        did: bool,
        /// Only events on these channels (`app` for either app); none: any channel.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        channels: Vec<String>,
        #[serde(default, rename = "where", skip_serializing_if = "Vec::is_empty")]
        filters: Vec<Filter>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        measure: Option<Measure>,
        #[serde(default)]
        window: Window,
    },
    /// Events in this order, the last within `within_ms` of the first.
    Funnel {
        steps: Vec<Step>,
        within_ms: Millis,
    },
    /// Seen on a channel (`web`, `ios`, `android`, `app` for either app, `store`, …).
    SeenOn {
        channel: String,
        #[serde(default)]
        window: Window,
    },
    /// The channel of the profile's latest event.
    LastChannel {
        channel: String,
    },
    /// Holds an identifier of this kind (`email`, `phone`, `user_id`, …).
    HasIdentifier {
        kind: String,
    },
    /// A known customer (holds an identifier that names a person) or anonymous activity
    /// only ([`crate::Profile::is_known`]).
    Known {
        known: bool,
    },
    /// A member of another audience.
    InAudience {
        audience: String,
    },
    /// Consent for a purpose (optionally on one channel) is granted, withdrawn or unknown
    /// (never asked); a channel question falls back to the purpose ([`crate::Profile::consent_for`]),
    /// and `granted` counts an unknown answer as the workspace's default says.
    Consent {
        purpose: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        channel: Option<String>,
        /// Definitions stored before `unknown` existed say `"granted": true | false`.
        #[serde(alias = "granted")]
        state: ConsentState,
    },
}

/// A test on a value (a trait, a property, a measure).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Test {
    Eq {
        value: Value,
    },
    Ne {
        value: Value,
    },
    Lt {
        value: Value,
    },
    Gt {
        value: Value,
    },
    Le {
        value: Value,
    },
    Ge {
        value: Value,
    },
    Contains {
        value: String,
    },
    Exists,
    In {
        values: Vec<Value>,
    },
    /// A date earlier than `ms` before now.
    BeforeAgo {
        ms: Millis,
    },
    /// A date later than `ms` before now.
    AfterAgo {
        ms: Millis,
    },
}

/// A test on one event property.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    pub property: String,
    pub test: Test,
}

/// What is measured over the matching events; without one, "did" means at least one and
/// "did not" means none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measure {
    pub aggregate: Aggregate,
    /// The property aggregated (not for `count`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property: Option<String>,
    pub test: Test,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    Count,
    Sum,
    Avg,
    Min,
    Max,
}

impl Aggregate {
    pub fn as_str(self) -> &'static str {
        match self {
            Aggregate::Count => "count",
            Aggregate::Sum => "sum",
            Aggregate::Avg => "avg",
            Aggregate::Min => "min",
            Aggregate::Max => "max",
        }
    }
}

/// Which events count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Window {
    #[default]
    Ever,
    /// The last `ms` before now.
    Within { ms: Millis },
    /// From `from` (inclusive) to `to` (exclusive).
    Between { from: Millis, to: Millis },
}

/// One step of a funnel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub event: String,
    /// Only events on these channels; none: any channel.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
    #[serde(default, rename = "where", skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Filter>,
}

/// Channel names a condition may use: every channel Parcours knows, plus `app`.
pub fn valid_channel(name: &str) -> bool {
    name == "app" || crate::channel::Channel::parse(name).is_some_and(|c| c.as_str() == name)
}

/// How deep a JSON value nests (a scalar is 0), looked at iteratively: it runs before
/// anything recursive reads the value.
pub fn json_depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack: Vec<(&Value, usize)> = vec![(value, 0)];
    while let Some((v, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        deepest = deepest.max(depth + 1);
        stack.extend(children.map(|c| (c, depth + 1)));
    }
    deepest
}

/// A JSON definition, checked the same way as the text form. Its nesting is measured before
/// it is read, so no input makes the reader recurse beyond the limits.
pub fn from_json(value: &Value) -> Result<Condition, Refusal> {
    // Each level of `and` / `or` is an object and an array, and a test's value may nest a
    // little: anything deeper than this is deeper than the limit.
    if json_depth(value) > 2 * MAX_DEPTH + 8 {
        return Err(too_deep());
    }
    let condition: Condition =
        serde_json::from_value(value.clone()).map_err(|e| Refusal::invalid(e.to_string()))?;
    condition.check()?;
    Ok(condition.simplified())
}

impl Condition {
    /// The same condition with every `and` / `or` of a single condition replaced by that
    /// condition, as the text form reads it (the JSON form can spell both; found by fuzzing).
    /// Called on a checked condition: its depth is bounded.
    pub fn simplified(self) -> Condition {
        match self {
            Condition::And { all: list } | Condition::Or { any: list } if list.len() == 1 => {
                list.into_iter().next().expect("one condition").simplified()
            }
            Condition::And { all } => Condition::And {
                all: all.into_iter().map(Condition::simplified).collect(),
            },
            Condition::Or { any } => Condition::Or {
                any: any.into_iter().map(Condition::simplified).collect(),
            },
            Condition::Not { not } => Condition::Not {
                not: Box::new(not.simplified()),
            },
            other => other,
        }
    }

    /// Checks what the syntax alone cannot: nesting and size, channel names, non-empty
    /// groups, windows and ages in range.
    pub fn check(&self) -> Result<(), Refusal> {
        let mut count = 0;
        self.check_at(1, &mut count)
    }

    fn check_at(&self, depth: usize, count: &mut usize) -> Result<(), Refusal> {
        *count += 1;
        if *count > MAX_CONDITIONS {
            return Err(Refusal::new(
                "audience_too_large",
                format!("a definition holds at most {MAX_CONDITIONS} conditions"),
            ));
        }
        let nested = |inner: &Condition, count: &mut usize| {
            if depth + 1 > MAX_DEPTH {
                return Err(too_deep());
            }
            inner.check_at(depth + 1, count)
        };
        match self {
            Condition::And { all: list } | Condition::Or { any: list } => {
                if list.is_empty() {
                    return Err(Refusal::invalid("`and` / `or` need at least one condition"));
                }
                list.iter().try_for_each(|c| nested(c, count))
            }
            Condition::Not { not } => nested(not, count),
            Condition::Event {
                window,
                channels,
                filters,
                measure,
                ..
            } => {
                channels.iter().try_for_each(|c| check_channel(c))?;
                check_filters(filters)?;
                check_tests(filters.iter().map(|f| &f.test))?;
                check_tests(measure.iter().map(|m| &m.test))?;
                check_window(window)
            }
            Condition::SeenOn { channel, window } => {
                check_channel(channel)?;
                check_window(window)
            }
            Condition::Funnel { steps, within_ms } => {
                if steps.len() < 2 {
                    return Err(Refusal::invalid("a funnel needs at least two steps"));
                }
                steps.iter().try_for_each(|s| check_filters(&s.filters))?;
                steps
                    .iter()
                    .flat_map(|s| &s.channels)
                    .try_for_each(|c| check_channel(c))?;
                check_tests(steps.iter().flat_map(|s| s.filters.iter().map(|f| &f.test)))?;
                check_duration(*within_ms, "a funnel's window")
            }
            Condition::Trait { test, .. } | Condition::Computed { test, .. } => {
                check_tests(std::iter::once(test))
            }
            Condition::LastChannel { channel } => check_channel(channel),
            _ => Ok(()),
        }
    }
}

/// Checks a window's length or dates.
pub fn check_window(window: &Window) -> Result<(), Refusal> {
    match *window {
        Window::Ever => Ok(()),
        Window::Within { ms } => check_duration(ms, "a window"),
        Window::Between { from, to } => check_between(from, to),
    }
}

/// Checks the ages of `before N days ago` and `after N days ago`, and that values are what
/// the text form can write: a number, a string, true, false or null (found by fuzzing: the
/// JSON form took an object, which no text reads back).
fn check_tests<'a>(tests: impl Iterator<Item = &'a Test>) -> Result<(), Refusal> {
    let scalar = |v: &Value| !matches!(v, Value::Array(_) | Value::Object(_));
    for t in tests {
        match t {
            Test::BeforeAgo { ms } | Test::AfterAgo { ms } => {
                check_duration(*ms, "an age (`before` / `after … ago`)")?
            }
            Test::Eq { value }
            | Test::Ne { value }
            | Test::Lt { value }
            | Test::Gt { value }
            | Test::Le { value }
            | Test::Ge { value }
                if !scalar(value) =>
            {
                return Err(Refusal::invalid(
                    "a test compares with a number, a string, true, false or null",
                ))
            }
            Test::In { values } if values.is_empty() || !values.iter().all(scalar) => {
                return Err(Refusal::invalid(
                    "`in` takes one or more numbers, strings, true, false or null",
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Filters read the event's properties. `channel` is not one of them (the event's channel
/// is `on store`): a filter on it would silently match nothing, so it is refused.
fn check_filters(filters: &[Filter]) -> Result<(), Refusal> {
    for f in filters {
        if f.property == "channel" {
            return Err(Refusal::invalid(
                "`where channel …` filters on a property; the event's channel is written `did \"Order Completed\" on store` (or `on web, app`)",
            ));
        }
    }
    Ok(())
}

fn check_channel(name: &str) -> Result<(), Refusal> {
    if valid_channel(name) {
        Ok(())
    } else {
        Err(Refusal::invalid(format!("unknown channel `{name}`")))
    }
}

/// Checks an audience or computed-trait id: 1 to 64 of `a-z`, `0-9`, `_` and `-`, starting
/// with a letter.
pub fn check_id(id: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{id}` is not a valid id: use 1 to 64 lowercase letters, digits, `_` or `-`, starting with a letter"
        ))
    }
}

/// Splits audiences into those that can be evaluated and those that refer, directly or
/// through others, to an audience not among them (one whose stored definition cannot be
/// read): only the second are left out, each with the audience it misses.
pub fn resolvable<'a>(audiences: &[(&'a str, &'a Condition)]) -> Resolvable<'a> {
    use std::collections::BTreeSet;
    let mut kept: BTreeSet<&str> = audiences.iter().map(|(id, _)| *id).collect();
    let mut missing: Vec<(&'a str, String)> = Vec::new();
    loop {
        let before = missing.len();
        for (id, condition) in audiences {
            if !kept.contains(id) {
                continue;
            }
            if let Some(gone) = condition
                .audiences()
                .into_iter()
                .find(|a| !kept.contains(a))
            {
                kept.remove(id);
                missing.push((id, gone.to_string()));
            }
        }
        if missing.len() == before {
            break;
        }
    }
    Resolvable {
        kept: audiences
            .iter()
            .copied()
            .filter(|(id, _)| kept.contains(id))
            .collect(),
        dangling: missing,
    }
}

/// What [`resolvable`] found.
pub struct Resolvable<'a> {
    /// The audiences that can be evaluated.
    pub kept: Vec<(&'a str, &'a Condition)>,
    /// Each audience left out, with the audience it misses.
    pub dangling: Vec<(&'a str, String)>,
}

/// Orders audiences so that each comes after the audiences it refers to. Fails on a cycle
/// or a reference to an audience that does not exist.
pub fn evaluation_order<'a>(
    audiences: &[(&'a str, &'a Condition)],
) -> Result<Vec<&'a str>, String> {
    use std::collections::BTreeMap;
    let by_id: BTreeMap<&str, &Condition> = audiences.iter().copied().collect();
    let mut order = Vec::new();
    // 0 = not visited, 1 = on the path, 2 = done.
    let mut state: BTreeMap<&str, u8> = BTreeMap::new();
    fn visit<'a>(
        id: &'a str,
        by_id: &BTreeMap<&'a str, &'a Condition>,
        state: &mut BTreeMap<&'a str, u8>,
        order: &mut Vec<&'a str>,
    ) -> Result<(), String> {
        match state.get(id) {
            Some(2) => return Ok(()),
            Some(1) => {
                return Err(format!(
                    "audience `{id}` refers to itself through `in audience`"
                ))
            }
            _ => {}
        }
        let condition = by_id
            .get(id)
            .ok_or_else(|| format!("`in audience \"{id}\"`: no such audience"))?;
        state.insert(id, 1);
        for dep in condition.audiences() {
            visit(dep, by_id, state, order)?;
        }
        state.insert(id, 2);
        order.push(id);
        Ok(())
    }
    for (id, _) in audiences {
        visit(id, &by_id, &mut state, &mut order)?;
    }
    Ok(order)
}
