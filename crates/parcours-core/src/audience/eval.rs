//! Evaluating a [`Condition`] on one profile at one instant.
//!
//! Evaluation is a pure function of the profile, its events, its computed traits, its other
//! memberships and `now`. Besides the answer it gives the next instant at which the answer
//! could change with no new event (an event leaving a window, a date trait crossing
//! "30 days ago"): the runtime schedules a re-evaluation then, so a profile leaves "added to
//! cart in the last hour" when the hour passes, not at the next batch.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use super::{Aggregate, Condition, Filter, Measure, Step, Test, Window};
use crate::channel::Channel;
use crate::profile::{ConsentState, Profile};
use crate::time::{parse_timestamp, Millis};

/// One event as conditions see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventFact {
    /// The track event's name; `Page Viewed` for a page, `Screen Viewed` for a screen.
    pub name: String,
    pub ts: Millis,
    pub channel: Channel,
    /// The event's `properties` (an object, or `Null`).
    pub properties: Value,
}

/// Everything a condition may look at, for one profile.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub profile: &'a Profile,
    /// The profile's events, in any order.
    pub events: &'a [EventFact],
    pub computed: &'a BTreeMap<String, Value>,
    /// Ids of the audiences the profile is in.
    pub memberships: &'a BTreeSet<String>,
    /// Whether the workspace counts consent never asked for as granted (by default it does
    /// not: `consent marketing granted` needs a record).
    pub unknown_consent_granted: bool,
}

/// The answer for one condition (and, when explaining, for each of its parts).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub matched: bool,
    /// The next instant at which the answer may change with no new event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_change: Option<Millis>,
    /// The condition, as text.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub condition: String,
    /// What was found, for a person reading it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub found: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<Verdict>,
}

/// Instants [`Condition::qualified_since`] evaluates, walking back from now.
pub const SINCE_INSTANTS: usize = 64;

/// Instants [`Condition::changes_at`] evaluates before it settles for a wake-up.
pub const LOOKAHEAD: usize = 16;

impl Condition {
    /// Whether the subject matches at `now`, and when that may change.
    pub fn evaluate(&self, subject: &Subject<'_>, now: Millis) -> Verdict {
        Evaluator {
            subject,
            now,
            explain: false,
        }
        .eval(self)
    }

    /// The first instant after `now` at which the answer differs from `verdict` (the answer
    /// at `now`) if nothing else happens: no new event, and the profile, its computed traits
    /// and its memberships as they are. The instants at which the answer only may change
    /// (an event leaving a window that still holds enough) are looked through, up to
    /// [`LOOKAHEAD`] of them; past those, the next one is returned (being evaluated then sets
    /// the one after). `None` when the answer stays.
    ///
    /// A person who can no longer leave or enter needs no timer: most profiles, for an
    /// audience such as "spent 1,000 or more within 365 days", where only members can change.
    pub fn changes_at(
        &self,
        subject: &Subject<'_>,
        now: Millis,
        verdict: &Verdict,
    ) -> Option<Millis> {
        let mut at = verdict.next_change?;
        for _ in 0..LOOKAHEAD {
            let then = self.evaluate(subject, at);
            if then.matched != verdict.matched {
                return Some(at);
            }
            match then.next_change {
                Some(next) if next > at => at = next,
                Some(_) => return Some(at),
                None => return None,
            }
        }
        debug_assert!(at > now);
        Some(at)
    }

    /// When a condition that holds at `now` started to hold: walking back through the
    /// instants its inputs changed (events, traits and consent as they were recorded then,
    /// windows and funnels passing, channels first and last seen), the earliest instant from
    /// which it held at each of them. This is a membership's `since`: when she qualified, not
    /// when the audience was computed. A condition that reads computed traits or other
    /// audiences (which keep no history) is dated when it was found true; at most
    /// [`SINCE_INSTANTS`] instants are looked at (beyond, the earliest of them).
    pub fn qualified_since(&self, subject: &Subject<'_>, now: Millis) -> Millis {
        // Computed traits and other audiences have no history here: when a condition reads
        // them, the instant it was found true is all that can be said.
        if !self.computed_traits().is_empty() || !self.audiences().is_empty() {
            return now;
        }
        let mut spans: BTreeSet<Millis> = BTreeSet::new();
        self.visit(&mut |c| match c {
            Condition::Event {
                window: Window::Within { ms },
                ..
            }
            | Condition::SeenOn {
                window: Window::Within { ms },
                ..
            } => {
                spans.insert(*ms);
            }
            Condition::Funnel { within_ms, .. } => {
                spans.insert(*within_ms);
            }
            _ => {}
        });
        let p = subject.profile;
        let mut instants: BTreeSet<Millis> = BTreeSet::new();
        let mut add = |t: Millis| {
            if t <= now {
                instants.insert(t);
            }
        };
        for e in subject.events {
            add(e.ts);
            for ms in &spans {
                add(e.ts.saturating_add(*ms));
            }
        }
        p.traits.values().for_each(|t| add(t.ts));
        p.consent.values().for_each(|c| add(c.ts));
        for s in p.channels.values() {
            add(s.first_seen);
            add(s.last_seen);
            for ms in &spans {
                add(s.last_seen.saturating_add(*ms));
            }
        }
        let mut since = now;
        for at in instants
            .into_iter()
            .rev()
            .filter(|t| *t < now)
            .take(SINCE_INSTANTS)
        {
            let events: Vec<EventFact> = subject
                .events
                .iter()
                .filter(|e| e.ts <= at)
                .cloned()
                .collect();
            let profile = p.as_of(at);
            let then = Subject {
                profile: &profile,
                events: &events,
                ..*subject
            };
            if !self.evaluate(&then, at).matched {
                break;
            }
            since = at;
        }
        since
    }

    /// The same answer with the reason for every part of the condition.
    pub fn explain(&self, subject: &Subject<'_>, now: Millis) -> Verdict {
        Evaluator {
            subject,
            now,
            explain: true,
        }
        .eval(self)
    }

    /// The event names this condition looks at (an event of another name cannot change the
    /// answer through event conditions).
    pub fn event_names(&self) -> BTreeSet<&str> {
        let mut out = BTreeSet::new();
        self.visit(&mut |c| match c {
            Condition::Event { event, .. } => {
                out.insert(event.as_str());
            }
            Condition::Funnel { steps, .. } => out.extend(steps.iter().map(|s| s.event.as_str())),
            _ => {}
        });
        out
    }

    /// The audiences this condition refers to.
    pub fn audiences(&self) -> BTreeSet<&str> {
        let mut out = BTreeSet::new();
        self.visit(&mut |c| {
            if let Condition::InAudience { audience } = c {
                out.insert(audience.as_str());
            }
        });
        out
    }

    /// The computed traits this condition refers to (`rfm` for `computed rfm.segment`).
    pub fn computed_traits(&self) -> BTreeSet<&str> {
        let mut out = BTreeSet::new();
        self.visit(&mut |c| {
            if let Condition::Computed { name, .. } = c {
                out.insert(computed_id(name));
            }
        });
        out
    }

    /// Whether some part depends on the profile itself (traits, channels, identifiers,
    /// consent, computed traits, other audiences) rather than only on named events.
    pub fn reads_profile(&self) -> bool {
        let mut found = false;
        self.visit(&mut |c| {
            found |= !matches!(
                c,
                Condition::And { .. }
                    | Condition::Or { .. }
                    | Condition::Not { .. }
                    | Condition::Event { .. }
                    | Condition::Funnel { .. }
            )
        });
        found
    }

    /// Whether the answer can depend on events of any name, not only those of
    /// [`Condition::event_names`]: a channel seen between two dates (the profile's channel
    /// statistics keep only the first and last sight, so the events in between count).
    pub fn reads_every_event(&self) -> bool {
        let mut found = false;
        self.visit(&mut |c| {
            found |= matches!(
                c,
                Condition::SeenOn {
                    window: Window::Between { .. },
                    ..
                }
            )
        });
        found
    }

    fn visit<'a>(&'a self, f: &mut dyn FnMut(&'a Condition)) {
        f(self);
        match self {
            Condition::And { all: list } | Condition::Or { any: list } => {
                list.iter().for_each(|c| c.visit(f))
            }
            Condition::Not { not } => not.visit(f),
            _ => {}
        }
    }
}

struct Evaluator<'s, 'a> {
    subject: &'s Subject<'a>,
    now: Millis,
    explain: bool,
}

fn earliest(a: Option<Millis>, b: Option<Millis>) -> Option<Millis> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Evaluator<'_, '_> {
    fn eval(&self, c: &Condition) -> Verdict {
        let (matched, next, found, parts) = match c {
            Condition::And { all } => self.group(all, true),
            Condition::Or { any } => self.group(any, false),
            Condition::Not { not } => {
                let inner = self.eval(not);
                let next = inner.next_change;
                (!inner.matched, next, String::new(), self.keep(vec![inner]))
            }
            Condition::Trait { name, test } => {
                let value = self.subject.profile.traits.get(name).map(|s| &s.value);
                let (m, next) = self.test(value, test);
                (m, next, self.show(value), vec![])
            }
            Condition::Computed { name, test } => {
                let value = match self.subject.computed.get(name) {
                    Some(v) => Some(v),
                    // `rfm.segment`: a field of an object value.
                    None => name
                        .split_once('.')
                        .and_then(|(id, path)| property(self.subject.computed.get(id)?, path)),
                };
                let (m, next) = self.test(value, test);
                (m, next, self.show(value), vec![])
            }
            Condition::Event {
                event,
                did,
                channels,
                filters,
                measure,
                window,
            } => self.event((event, channels), *did, filters, measure.as_ref(), window),
            Condition::Funnel { steps, within_ms } => self.funnel(steps, *within_ms),
            Condition::SeenOn { channel, window } => self.seen_on(channel, window),
            Condition::LastChannel { channel } => {
                let last = self.subject.profile.last_channel;
                (
                    channel_is(last, channel),
                    None,
                    self.text(last.as_str()),
                    vec![],
                )
            }
            Condition::HasIdentifier { kind } => {
                let n = self.subject.profile.count_of(kind);
                (n > 0, None, self.text(&format!("{n} {kind}")), vec![])
            }
            Condition::Known { known } => {
                let is = self.subject.profile.is_known();
                let found = if is { "known" } else { "anonymous" };
                (is == *known, None, self.text(found), vec![])
            }
            Condition::InAudience { audience } => {
                let m = self.subject.memberships.contains(audience);
                let found = if m { "a member" } else { "not a member" };
                (m, None, self.text(found), vec![])
            }
            Condition::Consent {
                purpose,
                channel,
                state,
            } => {
                let (found, record) = self
                    .subject
                    .profile
                    .consent_for(purpose, channel.as_deref());
                let matched = match state {
                    // Never asked counts as the workspace says (by default: not granted).
                    ConsentState::Granted => {
                        found == ConsentState::Granted
                            || (found == ConsentState::Unknown
                                && self.subject.unknown_consent_granted)
                    }
                    other => found == *other,
                };
                let why = || match record {
                    Some((key, _)) => format!("{} (recorded for `{key}`)", found.as_str()),
                    None if self.subject.unknown_consent_granted => {
                        "unknown (never asked; the workspace counts that as granted)".into()
                    }
                    None => "unknown (never asked)".into(),
                };
                (matched, None, self.text_with(why), vec![])
            }
        };
        Verdict {
            matched,
            next_change: next,
            condition: if self.explain {
                match c {
                    Condition::And { .. } => "all of".into(),
                    Condition::Or { .. } => "any of".into(),
                    Condition::Not { .. } => "not".into(),
                    _ => c.to_string(),
                }
            } else {
                String::new()
            },
            found,
            parts,
        }
    }

    fn keep(&self, parts: Vec<Verdict>) -> Vec<Verdict> {
        if self.explain {
            parts
        } else {
            Vec::new()
        }
    }

    fn text(&self, s: &str) -> String {
        if self.explain {
            s.to_string()
        } else {
            String::new()
        }
    }

    /// An explanation built only when explaining.
    fn text_with(&self, s: impl FnOnce() -> String) -> String {
        if self.explain {
            s()
        } else {
            String::new()
        }
    }

    fn show(&self, value: Option<&Value>) -> String {
        match value {
            _ if !self.explain => String::new(),
            None | Some(Value::Null) => "no value".into(),
            Some(v) => v.to_string(),
        }
    }

    /// `and` / `or`. Every part is evaluated (not short-circuited) so that the next change of
    /// a part that does not decide the answer now is still scheduled.
    fn group(&self, list: &[Condition], all: bool) -> (bool, Option<Millis>, String, Vec<Verdict>) {
        let mut matched = all;
        let mut next = None;
        let mut parts = Vec::new();
        for c in list {
            let v = self.eval(c);
            if all {
                matched &= v.matched;
            } else {
                matched |= v.matched;
            }
            next = earliest(next, v.next_change);
            parts.push(v);
        }
        (matched, next, String::new(), self.keep(parts))
    }

    fn test(&self, value: Option<&Value>, test: &Test) -> (bool, Option<Millis>) {
        test_value(value, test, self.now)
    }

    /// Events of this name passing the filters that count at `now` in the window, and when
    /// that set changes next (an event leaving the window, or a future-dated one entering).
    fn matching<'e>(
        &'e self,
        (name, channels): (&str, &[String]),
        filters: &[Filter],
        window: &Window,
    ) -> (Vec<&'e EventFact>, Option<Millis>) {
        let mut out = Vec::new();
        let mut next = None;
        for e in self.subject.events {
            if e.name != name || !passes(e, filters, self.now) {
                continue;
            }
            if !on_channels(e, channels) {
                continue;
            }
            if e.ts > self.now {
                next = earliest(next, Some(e.ts));
                continue;
            }
            match *window {
                Window::Ever => out.push(e),
                Window::Between { from, to } => {
                    if e.ts >= from && e.ts < to {
                        out.push(e)
                    }
                }
                Window::Within { ms } => {
                    let leaves = e.ts.saturating_add(ms);
                    if leaves > self.now {
                        next = earliest(next, Some(leaves));
                        out.push(e)
                    }
                }
            }
        }
        (out, next)
    }

    fn event(
        &self,
        name: (&str, &[String]),
        did: bool,
        filters: &[Filter],
        measure: Option<&Measure>,
        window: &Window,
    ) -> (bool, Option<Millis>, String, Vec<Verdict>) {
        let (events, next) = self.matching(name, filters, window);
        let (holds, found) = match measure {
            None => (
                !events.is_empty(),
                self.text(&format!("{} matching event(s)", events.len())),
            ),
            Some(m) => {
                let value = aggregate(m, &events);
                let (holds, _) = test_value(value.as_ref(), &m.test, self.now);
                let shown = match &value {
                    Some(v) => format!("{} = {v}", m.aggregate.as_str()),
                    None => format!("{}: no value", m.aggregate.as_str()),
                };
                (
                    holds,
                    self.text(&format!("{} matching event(s), {shown}", events.len())),
                )
            }
        };
        (holds == did, next, found, vec![])
    }

    fn funnel(
        &self,
        steps: &[Step],
        within: Millis,
    ) -> (bool, Option<Millis>, String, Vec<Verdict>) {
        let mut per_step: Vec<Vec<Millis>> = Vec::with_capacity(steps.len());
        let mut next = None;
        for step in steps {
            let mut times = Vec::new();
            for e in self.subject.events {
                if e.name == step.event
                    && on_channels(e, &step.channels)
                    && passes(e, &step.filters, self.now)
                {
                    if e.ts > self.now {
                        next = earliest(next, Some(e.ts));
                    } else {
                        times.push(e.ts);
                    }
                }
            }
            times.sort_unstable();
            per_step.push(times);
        }
        let (done, reached) = funnel_completed(&per_step, within);
        let found = if done {
            "completed".to_string()
        } else {
            format!("reached step {reached} of {}", steps.len())
        };
        (done, next, self.text(&found), vec![])
    }

    fn seen_on(
        &self,
        channel: &str,
        window: &Window,
    ) -> (bool, Option<Millis>, String, Vec<Verdict>) {
        let profile = self.subject.profile;
        let stats: Vec<_> = profile
            .channels
            .iter()
            .filter(|(c, _)| channel_is(**c, channel))
            .map(|(_, s)| *s)
            .collect();
        let last = stats.iter().map(|s| s.last_seen).max();
        let (m, next) = match *window {
            Window::Ever => (!stats.is_empty(), None),
            Window::Within { ms } => match last.map(|t| t.saturating_add(ms)) {
                Some(until) if until > self.now => (true, Some(until)),
                _ => (false, None),
            },
            Window::Between { from, to } => {
                // Channel statistics keep only first and last sight: the events say the rest.
                let seen = self
                    .subject
                    .events
                    .iter()
                    .any(|e| channel_is(e.channel, channel) && e.ts >= from && e.ts < to)
                    || stats.iter().any(|s| {
                        (s.first_seen >= from && s.first_seen < to)
                            || (s.last_seen >= from && s.last_seen < to)
                    });
                (seen, None)
            }
        };
        let found = match last {
            Some(t) => format!("last seen {}", crate::time::format_timestamp(t)),
            None => "never seen".into(),
        };
        (m, next, self.text(&found), vec![])
    }
}

/// Whether the earliest completion of the funnel exists with its last step within `within`
/// of its first; otherwise how many steps the best attempt reached.
fn funnel_completed(per_step: &[Vec<Millis>], within: Millis) -> (bool, usize) {
    let mut best = 0;
    let Some(first) = per_step.first() else {
        return (false, 0);
    };
    for &start in first {
        let mut at = start;
        let mut reached = 1;
        for times in &per_step[1..] {
            // The earliest later event of this step keeps every option open for the next.
            match times.iter().find(|&&t| t > at) {
                Some(&t) if t.saturating_sub(start) <= within => {
                    at = t;
                    reached += 1;
                }
                _ => break,
            }
        }
        if reached == per_step.len() {
            return (true, reached);
        }
        best = best.max(reached);
    }
    (false, best)
}

/// `app` stands for either mobile app.
/// Whether an event is on one of these channels (none: any).
fn on_channels(e: &EventFact, channels: &[String]) -> bool {
    channels.is_empty() || channels.iter().any(|c| channel_is(e.channel, c))
}

pub fn channel_is(actual: Channel, wanted: &str) -> bool {
    if wanted == "app" {
        matches!(actual, Channel::Ios | Channel::Android)
    } else {
        actual.as_str() == wanted
    }
}

fn passes(e: &EventFact, filters: &[Filter], now: Millis) -> bool {
    filters
        .iter()
        .all(|f| test_value(property(&e.properties, &f.property), &f.test, now).0)
}

/// A property by name, or by a dotted path into nested objects (`product.sku`).
pub fn property<'v>(properties: &'v Value, name: &str) -> Option<&'v Value> {
    if let Some(v) = properties.get(name) {
        return Some(v);
    }
    let mut at = properties;
    for part in name.split('.') {
        at = at.get(part)?;
    }
    Some(at)
}

/// A number, read from a JSON number or a numeric string.
pub fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A date as milliseconds: an ISO-8601 string, or a number of milliseconds.
fn date(v: &Value) -> Option<Millis> {
    match v {
        Value::String(s) => parse_timestamp(s),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

fn aggregate(m: &Measure, events: &[&EventFact]) -> Option<Value> {
    if m.aggregate == Aggregate::Count {
        return Some(Value::from(events.len() as u64));
    }
    let name = m.property.as_deref().unwrap_or_default();
    let values: Vec<f64> = events
        .iter()
        .filter_map(|e| property(&e.properties, name).and_then(number))
        .collect();
    let result = match m.aggregate {
        Aggregate::Count => unreachable!("handled above"),
        Aggregate::Sum => Some(values.iter().sum()),
        Aggregate::Avg if values.is_empty() => None,
        Aggregate::Avg => Some(values.iter().sum::<f64>() / values.len() as f64),
        Aggregate::Min => values.iter().copied().reduce(f64::min),
        Aggregate::Max => values.iter().copied().reduce(f64::max),
    };
    result.map(float_value)
}

/// A float as JSON, integral values as integers (`3`, not `3.0`), rounded to 6 decimals so
/// that sums of prices read as prices (`5596.62`, not `5596.619999999999`).
pub fn float_value(x: f64) -> Value {
    let x = (x * 1e6).round() / 1e6;
    if x.fract() == 0.0 && x.abs() < 9.0e15 {
        Value::from(x as i64)
    } else {
        serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
    }
}

fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => number(a)?.partial_cmp(&number(b)?),
    }
}

fn equal(a: &Value, b: &Value) -> bool {
    a == b || (a.is_number() || b.is_number()) && compare(a, b) == Some(std::cmp::Ordering::Equal)
}

/// Applies a test to a value (missing counts as absent). Date tests also give the instant
/// the answer flips as time passes.
pub fn test_value(value: Option<&Value>, test: &Test, now: Millis) -> (bool, Option<Millis>) {
    use std::cmp::Ordering::*;
    let value = value.filter(|v| !v.is_null());
    let ord = |want: &Value| value.and_then(|v| compare(v, want));
    let m = match test {
        Test::Exists => value.is_some(),
        Test::Eq { value: want } => value.is_some_and(|v| equal(v, want)),
        Test::Ne { value: want } => !value.is_some_and(|v| equal(v, want)),
        Test::Lt { value: want } => ord(want) == Some(Less),
        Test::Gt { value: want } => ord(want) == Some(Greater),
        Test::Le { value: want } => matches!(ord(want), Some(Less | Equal)),
        Test::Ge { value: want } => matches!(ord(want), Some(Greater | Equal)),
        Test::Contains { value: want } => match value {
            Some(Value::String(s)) => s.contains(want.as_str()),
            // A list holds the text, or the number it reads as (`contains "755"` on a list of
            // vendor ids).
            Some(Value::Array(items)) => items.iter().any(|i| match i {
                Value::String(s) => s == want,
                Value::Number(n) => n.to_string() == *want,
                _ => false,
            }),
            _ => false,
        },
        Test::In { values } => value.is_some_and(|v| values.iter().any(|w| equal(v, w))),
        Test::BeforeAgo { ms } | Test::AfterAgo { ms } => {
            let Some(t) = value.and_then(date) else {
                return (false, None);
            };
            // "before 30 days ago" holds from t + 30 days on; "after" until then.
            let flip = t.saturating_add(*ms);
            let before = now >= flip;
            let next = (flip > now).then_some(flip);
            let m = if matches!(test, Test::BeforeAgo { .. }) {
                before
            } else {
                !before
            };
            return (m, next);
        }
    };
    (m, None)
}

#[cfg(test)]
mod tests;

/// The computed trait a `computed NAME` condition reads: `rfm` for `rfm.segment`.
pub fn computed_id(name: &str) -> &str {
    name.split_once('.').map_or(name, |(id, _)| id)
}
