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

use crate::time::Millis;

pub use eval::{EventFact, Subject, Verdict};
pub use parse::{parse, ParseError};

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
    /// A member of another audience.
    InAudience {
        audience: String,
    },
    /// Consent for a purpose (optionally on one channel) is granted, or withdrawn.
    Consent {
        purpose: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        channel: Option<String>,
        granted: bool,
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
    #[serde(default, rename = "where", skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Filter>,
}

/// Channel names a condition may use: every channel Parcours knows, plus `app`.
pub fn valid_channel(name: &str) -> bool {
    name == "app" || crate::channel::Channel::parse(name).is_some_and(|c| c.as_str() == name)
}

/// A JSON definition, checked the same way as the text form.
pub fn from_json(value: &Value) -> Result<Condition, String> {
    let condition: Condition = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
    condition.check().map(|()| condition)
}

impl Condition {
    /// Checks what the syntax alone cannot: channel names, non-empty groups, positive windows.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Condition::And { all: list } | Condition::Or { any: list } => {
                if list.is_empty() {
                    return Err("`and` / `or` need at least one condition".into());
                }
                list.iter().try_for_each(Condition::check)
            }
            Condition::Not { not } => not.check(),
            Condition::Event { window, .. } | Condition::SeenOn { window, .. } => {
                if let Condition::SeenOn { channel, .. } = self {
                    check_channel(channel)?;
                }
                match window {
                    Window::Within { ms } if *ms <= 0 => Err("a window must be positive".into()),
                    Window::Between { from, to } if from >= to => {
                        Err("`between` needs its first date before its second".into())
                    }
                    _ => Ok(()),
                }
            }
            Condition::Funnel { steps, within_ms } => {
                if steps.len() < 2 {
                    Err("a funnel needs at least two steps".into())
                } else if *within_ms <= 0 {
                    Err("a funnel's window must be positive".into())
                } else {
                    Ok(())
                }
            }
            Condition::LastChannel { channel } => check_channel(channel),
            _ => Ok(()),
        }
    }
}

fn check_channel(name: &str) -> Result<(), String> {
    if valid_channel(name) {
        Ok(())
    } else {
        Err(format!("unknown channel `{name}`"))
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
