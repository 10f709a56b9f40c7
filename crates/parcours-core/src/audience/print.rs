//! Prints a [`Condition`] in the text form, so that reading it back gives the same tree.

use std::fmt::{self, Display, Formatter, Write};

use serde_json::Value;

use super::parse::duration_text;
use super::{Condition, Filter, Measure, Step, Test, Window};
use crate::time::format_timestamp;

/// A name as a bare word when it reads as one, quoted otherwise.
fn name(s: &str) -> String {
    let simple = s
        .chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
        && s.chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '.')
        && !matches!(s, "true" | "false" | "null");
    if simple {
        s.to_string()
    } else {
        quoted(s)
    }
}

fn quoted(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

impl Display for Test {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Test::Eq { value } => write!(f, "= {value}"),
            Test::Ne { value } => write!(f, "!= {value}"),
            Test::Lt { value } => write!(f, "< {value}"),
            Test::Gt { value } => write!(f, "> {value}"),
            Test::Le { value } => write!(f, "<= {value}"),
            Test::Ge { value } => write!(f, ">= {value}"),
            Test::Contains { value } => write!(f, "contains {}", quoted(value)),
            Test::Exists => f.write_str("exists"),
            Test::In { values } => {
                let list: Vec<String> = values.iter().map(Value::to_string).collect();
                write!(f, "in [{}]", list.join(", "))
            }
            Test::BeforeAgo { ms } => write!(f, "before {} ago", duration_text(*ms)),
            Test::AfterAgo { ms } => write!(f, "after {} ago", duration_text(*ms)),
        }
    }
}

fn filters(out: &mut String, filters: &[Filter]) {
    if filters.is_empty() {
        return;
    }
    let list: Vec<String> = filters
        .iter()
        .map(|x| format!("{} {}", name(&x.property), x.test))
        .collect();
    let _ = write!(out, " where {}", list.join(", "));
}

fn measure(out: &mut String, m: &Option<Measure>) {
    if let Some(m) = m {
        let _ = match &m.property {
            Some(p) => write!(out, " {} of {} {}", m.aggregate.as_str(), name(p), m.test),
            None => write!(out, " {} {}", m.aggregate.as_str(), m.test),
        };
    }
}

fn window(out: &mut String, w: &Window) {
    let _ = match w {
        Window::Ever => Ok(()),
        Window::Within { ms } => write!(out, " within {}", duration_text(*ms)),
        Window::Between { from, to } => write!(
            out,
            " between {} and {}",
            quoted(&format_timestamp(*from)),
            quoted(&format_timestamp(*to))
        ),
    };
}

fn step(out: &mut String, s: &Step) {
    out.push_str(&quoted(&s.event));
    channels(out, &s.channels);
    filters(out, &s.filters);
}

fn channels(out: &mut String, list: &[String]) {
    if !list.is_empty() {
        let _ = write!(out, " on {}", list.join(", "));
    }
}

/// A condition that needs parentheses inside `and`, `or` and `not`.
fn grouped(c: &Condition) -> String {
    match c {
        Condition::And { .. } | Condition::Or { .. } | Condition::Funnel { .. } => {
            format!("({c})")
        }
        _ => c.to_string(),
    }
}

impl Display for Condition {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        match self {
            Condition::And { all } => {
                let parts: Vec<String> = all.iter().map(grouped).collect();
                out.push_str(&parts.join(" and "));
            }
            Condition::Or { any } => {
                let parts: Vec<String> = any.iter().map(grouped).collect();
                out.push_str(&parts.join(" or "));
            }
            Condition::Not { not } => {
                let _ = write!(out, "not {}", grouped(not));
            }
            Condition::Trait { name: n, test } => {
                let _ = write!(out, "trait {} {test}", name(n));
            }
            Condition::Computed { name: n, test } => {
                let _ = write!(out, "computed {} {test}", name(n));
            }
            Condition::Event {
                event,
                did,
                channels,
                filters: fs,
                measure: m,
                window: w,
            } => {
                out.push_str(if *did { "did " } else { "did not " });
                out.push_str(&quoted(event));
                self::channels(&mut out, channels);
                filters(&mut out, fs);
                measure(&mut out, m);
                window(&mut out, w);
            }
            Condition::Funnel { steps, within_ms } => {
                for (i, s) in steps.iter().enumerate() {
                    if i > 0 {
                        out.push_str(" then ");
                    }
                    step(&mut out, s);
                }
                let _ = write!(out, " within {}", duration_text(*within_ms));
            }
            Condition::SeenOn { channel, window: w } => {
                let _ = write!(out, "seen on {channel}");
                window(&mut out, w);
            }
            Condition::LastChannel { channel } => {
                let _ = write!(out, "last channel is {channel}");
            }
            Condition::HasIdentifier { kind } => {
                let _ = write!(out, "has {}", name(kind));
            }
            Condition::InAudience { audience } => {
                let _ = write!(out, "in audience {}", quoted(audience));
            }
            Condition::Known { known } => {
                out.push_str(if *known { "is known" } else { "is anonymous" });
            }
            Condition::Consent {
                purpose,
                channel,
                state,
            } => {
                let _ = write!(out, "consent {}", name(purpose));
                if let Some(c) = channel {
                    let _ = write!(out, ":{}", name(c));
                }
                let _ = write!(out, " {}", state.as_str());
            }
        }
        f.write_str(&out)
    }
}
