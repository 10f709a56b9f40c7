//! Reading a journey document: YAML (or JSON) into a [`Journey`], every refusal with its line
//! and column. All problems found are reported, in the order they appear, not only the first.

use std::collections::BTreeMap;
use std::str::FromStr;

use serde_json::Value;

use super::yaml::{self, Key, Kind, Node, Pos};
use super::{
    Action, Entry, Goal, InFlight, Journey, LocalTime, Message, MessageChannel, Problem,
    QuietHours, Reentry, Status, Step, Target, Trigger, Variant,
};
use crate::audience::{self, Condition, Filter, ParseError, MAX_DURATION_MS};
use crate::time::Millis;

/// How many steps one journey may have.
pub const MAX_STEPS: usize = 200;
/// How many problems are reported at most.
const MAX_PROBLEMS: usize = 50;

const INVALID: &str = "invalid_journey";

/// Reads a journey document. On refusal, every problem found, in document order.
pub fn read(text: &str) -> Result<Journey, Vec<Problem>> {
    let root = yaml::parse(text).map_err(|p| vec![p])?;
    let mut r = Reader::default();
    let journey = r.journey(&root);
    let mut problems = r.problems;
    if problems.is_empty() {
        if let Some(j) = journey {
            return Ok(j);
        }
        problems.push(Problem::new(
            INVALID,
            root.at,
            "the journey could not be read",
        ));
    }
    problems.sort_by_key(|p| (p.at.line, p.at.column));
    problems.truncate(MAX_PROBLEMS);
    Err(problems)
}

/// Writes a duration as [`duration`] reads it (`1d12h`, `30m`; `0s` for none; milliseconds
/// below a second are left out).
pub fn format_duration(ms: Millis) -> String {
    let mut left = ms.max(0) / 1_000;
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if left >= size {
            out.push_str(&format!("{}{unit}", left / size));
            left %= size;
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

/// Reads a duration: a whole number and a unit, `s`, `m`, `h` or `d` (`90s`, `30m`, `1h`,
/// `2d`), possibly several (`1h30m`).
pub fn duration(text: &str) -> Result<Millis, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("expected a duration such as `30m`, `1h` or `2d`".into());
    }
    let mut total: Millis = 0;
    let mut digits = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: Millis = match c {
            's' => 1_000,
            'm' => 60_000,
            'h' => 3_600_000,
            'd' => 86_400_000,
            _ => {
                return Err(format!(
                    "`{t}` is not a duration: use a number and s, m, h or d (`30m`, `1h`, `2d`)"
                ))
            }
        };
        if digits.is_empty() {
            return Err(format!(
                "`{t}` is not a duration: a number must come before `{c}`"
            ));
        }
        let n: Millis = digits
            .parse()
            .map_err(|_| format!("`{t}` is longer than 10,000 years"))?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .filter(|v| *v <= MAX_DURATION_MS)
            .ok_or_else(|| format!("`{t}` is longer than 10,000 years"))?;
    }
    if !digits.is_empty() {
        return Err(format!(
            "`{t}` needs a unit: s, m, h or d (`{digits}m`, `{digits}h`, …)"
        ));
    }
    if total <= 0 {
        return Err("a duration must be positive".into());
    }
    Ok(total)
}

/// Reads a time of day, `HH:MM` (24-hour clock).
pub fn local_time(text: &str) -> Result<LocalTime, String> {
    let bad = || format!("`{text}` is not a time of day: use HH:MM, such as `09:00` or `21:30`");
    let (h, m) = text.trim().split_once(':').ok_or_else(bad)?;
    let h: u16 = h.parse().map_err(|_| bad())?;
    let m: u16 = m.parse().map_err(|_| bad())?;
    if h > 23 || m > 59 || text.trim().len() > 5 {
        return Err(bad());
    }
    Ok(LocalTime {
        minute_of_day: h * 60 + m,
    })
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Whether a name can be a journey, step or variant id: 1–64 letters, digits, `_` or `-`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[derive(Default)]
struct Reader {
    problems: Vec<Problem>,
}

/// A mapping being read: the keys taken are remembered, so that the ones left over are
/// reported as unknown.
struct Obj<'a> {
    at: Pos,
    entries: &'a [(Key, Node)],
    taken: Vec<&'a str>,
}

impl<'a> Obj<'a> {
    fn get(&mut self, name: &'a str) -> Option<&'a Node> {
        self.taken.push(name);
        self.entries
            .iter()
            .find(|(k, _)| k.name == name)
            .map(|(_, v)| v)
    }

    fn has(&self, name: &str) -> bool {
        self.entries.iter().any(|(k, _)| k.name == name)
    }
}

impl Reader {
    fn problem(&mut self, at: Pos, message: impl Into<String>) {
        self.problem_code(INVALID, at, message);
    }

    fn problem_code(&mut self, code: &'static str, at: Pos, message: impl Into<String>) {
        if self.problems.len() < MAX_PROBLEMS * 2 {
            self.problems.push(Problem::new(code, at, message));
        }
    }

    fn obj<'a>(&mut self, node: &'a Node, what: &str) -> Option<Obj<'a>> {
        match &node.kind {
            Kind::Map(entries) => Some(Obj {
                at: node.at,
                entries,
                taken: Vec::new(),
            }),
            _ => {
                self.problem(
                    node.at,
                    format!(
                        "{what} must be a mapping (`key: value` lines), found {}",
                        node.what()
                    ),
                );
                None
            }
        }
    }

    /// Reports the keys of `o` that were never asked for.
    fn done(&mut self, o: Obj<'_>, context: &str, known: &[&str]) {
        for (k, _) in o.entries {
            if !o.taken.contains(&k.name.as_str()) {
                let hint = known
                    .iter()
                    .min_by_key(|c| distance(c, &k.name))
                    .filter(|c| distance(c, &k.name) <= 2)
                    .map(|c| format!(" (did you mean `{c}`?)"))
                    .unwrap_or_default();
                self.problem(
                    k.at,
                    format!(
                        "unknown key `{}` in {context}{hint}; expected one of: {}",
                        k.name,
                        known.join(", ")
                    ),
                );
            }
        }
    }

    fn required<'a>(&mut self, o: &mut Obj<'a>, name: &'a str, context: &str) -> Option<&'a Node> {
        let v = o.get(name);
        if v.is_none() {
            self.problem(o.at, format!("{context} needs `{name}`"));
        }
        v
    }

    fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        match &node.kind {
            Kind::Scalar { text, .. } if !text.trim().is_empty() => Some(text.clone()),
            Kind::Scalar { .. } => {
                self.problem(node.at, format!("{what} is empty"));
                None
            }
            _ => {
                self.problem(
                    node.at,
                    format!("{what} must be a value, found {}", node.what()),
                );
                None
            }
        }
    }

    fn id(&mut self, node: &Node, what: &str) -> Option<String> {
        let s = self.string(node, what)?;
        if !valid_id(&s) {
            self.problem(
                node.at,
                format!("{what} `{s}` must be 1–64 letters, digits, `_` or `-`"),
            );
            return None;
        }
        Some(s)
    }

    fn number(&mut self, node: &Node, what: &str, max: u64) -> Option<u64> {
        let s = self.string(node, what)?;
        match s.trim().parse::<u64>() {
            Ok(n) if n <= max => Some(n),
            _ => {
                self.problem(
                    node.at,
                    format!("{what} must be a whole number from 0 to {max}, found `{s}`"),
                );
                None
            }
        }
    }

    fn duration(&mut self, node: &Node, what: &str) -> Option<Millis> {
        let s = self.string(node, what)?;
        match duration(&s) {
            Ok(ms) => Some(ms),
            Err(e) => {
                self.problem_code(
                    if e.contains("10,000 years") {
                        "duration_out_of_range"
                    } else {
                        INVALID
                    },
                    node.at,
                    format!("{what}: {e}"),
                );
                None
            }
        }
    }

    fn signed_duration(&mut self, node: &Node, what: &str) -> Option<Millis> {
        let s = self.string(node, what)?;
        let t = s.trim();
        let (sign, rest) = match t.strip_prefix('-') {
            Some(rest) => (-1, rest),
            None => (1, t.strip_prefix('+').unwrap_or(t)),
        };
        if rest == "0" {
            return Some(0);
        }
        match duration(rest) {
            Ok(ms) => Some(sign * ms),
            Err(e) => {
                self.problem(
                    node.at,
                    format!("{what}: {e} (a sign may come first: `-1d`)"),
                );
                None
            }
        }
    }

    fn local_time(&mut self, node: &Node, what: &str) -> Option<LocalTime> {
        let s = self.string(node, what)?;
        local_time(&s)
            .map_err(|e| self.problem(node.at, format!("{what}: {e}")))
            .ok()
    }

    fn bool(&mut self, node: &Node, what: &str) -> Option<bool> {
        match node.text() {
            Some("true") => Some(true),
            Some("false") => Some(false),
            _ => {
                self.problem(node.at, format!("{what} must be `true` or `false`"));
                None
            }
        }
    }

    /// Places an error from the audience syntax inside the YAML value it came from.
    fn syntax(&mut self, node: &Node, what: &str, e: ParseError) {
        let (text, quoted) = match &node.kind {
            Kind::Scalar { text, quoted } => (text.as_str(), *quoted),
            _ => ("", false),
        };
        let code = if e.code == "invalid_audience_syntax" {
            INVALID
        } else {
            e.code
        };
        if e.line == 1 && !text.contains('\n') {
            let at = Pos {
                line: node.at.line,
                column: node.at.column + e.column - 1 + usize::from(quoted),
            };
            self.problem_code(code, at, format!("{what}: {}", e.message));
        } else {
            self.problem_code(
                code,
                node.at,
                format!(
                    "{what}, at its line {}, column {}: {}",
                    e.line, e.column, e.message
                ),
            );
        }
    }

    fn condition(&mut self, node: &Node, what: &str) -> Option<Condition> {
        let text = self.string(node, what)?;
        audience::parse(&text)
            .map_err(|e| self.syntax(node, what, e))
            .ok()
    }

    fn filters(&mut self, node: Option<&Node>, what: &str) -> Vec<Filter> {
        let Some(node) = node else {
            return Vec::new();
        };
        let Some(text) = self.string(node, what) else {
            return Vec::new();
        };
        audience::parse_filters(&text)
            .map_err(|e| self.syntax(node, what, e))
            .unwrap_or_default()
    }

    fn journey(&mut self, root: &Node) -> Option<Journey> {
        const KEYS: [&str; 12] = [
            "id",
            "in_flight",
            "name",
            "status",
            "priority",
            "entry",
            "goal",
            "exit_if",
            "holdout",
            "quiet_hours",
            "timezone",
            "steps",
        ];
        let mut o = self.obj(root, "a journey")?;
        let id = self
            .required(&mut o, "id", "a journey")
            .and_then(|n| self.id(n, "the journey id"));
        let name = match o.get("name") {
            Some(n) => self.string(n, "the name"),
            None => id.clone(),
        };
        let status = match o.get("status") {
            None => Some(Status::Draft),
            Some(n) => match n.text() {
                Some("draft") => Some(Status::Draft),
                Some("live") => Some(Status::Live),
                Some("paused") => Some(Status::Paused),
                Some("archived") => Some(Status::Archived),
                _ => {
                    self.problem(
                        n.at,
                        "status must be `draft`, `live`, `paused` or `archived`",
                    );
                    None
                }
            },
        };
        let priority = match o.get("priority") {
            None => Some(50),
            Some(n) => self.number(n, "priority", 100).map(|p| p as u8),
        };
        let entry = self
            .required(&mut o, "entry", "a journey")
            .and_then(|n| self.entry(n));
        let goal = o.get("goal").and_then(|n| self.goal(n));
        let exit_if = o
            .get("exit_if")
            .and_then(|n| self.condition(n, "`exit_if`"));
        let holdout_bp = match o.get("holdout") {
            None => Some(0),
            Some(n) => self.percent(n, "holdout"),
        };
        let quiet_hours = o.get("quiet_hours").and_then(|n| self.quiet_hours(n));
        let timezone = o.get("timezone").and_then(|n| {
            let s = self.string(n, "timezone")?;
            match chrono_tz::Tz::from_str(&s) {
                Ok(_) => Some(s),
                Err(_) => {
                    self.problem(
                        n.at,
                        format!(
                            "`{s}` is not a time zone: use an IANA name such as `Europe/Paris`"
                        ),
                    );
                    None
                }
            }
        });
        let in_flight = match o.get("in_flight") {
            None => Some(InFlight::Stay),
            Some(n) => match n.text() {
                Some("stay") => Some(InFlight::Stay),
                Some("move") => Some(InFlight::Move),
                _ => {
                    self.problem(n.at, "in_flight must be `stay` or `move`");
                    None
                }
            },
        };
        let steps = self
            .required(&mut o, "steps", "a journey")
            .and_then(|n| self.steps(n));
        self.done(o, "the journey", &KEYS);
        Some(Journey {
            id: id?,
            name: name?,
            status: status?,
            priority: priority?,
            entry: entry?,
            goal,
            exit_if,
            holdout_bp: holdout_bp?,
            quiet_hours,
            timezone,
            in_flight: in_flight?,
            steps: steps?,
        })
    }

    fn percent(&mut self, node: &Node, what: &str) -> Option<u16> {
        let s = self.string(node, what)?;
        let t = s.trim();
        let number = t.strip_suffix('%').unwrap_or(t).trim();
        match number.parse::<f64>() {
            Ok(p) if (0.0..=100.0).contains(&p) => Some((p * 100.0).round() as u16),
            _ => {
                self.problem(
                    node.at,
                    format!("{what} must be a percentage from 0% to 100%, found `{s}`"),
                );
                None
            }
        }
    }

    fn quiet_hours(&mut self, node: &Node) -> Option<QuietHours> {
        let mut o = self.obj(node, "quiet_hours")?;
        let from = self
            .required(&mut o, "from", "quiet_hours")
            .and_then(|n| self.local_time(n, "quiet_hours.from"));
        let to = self
            .required(&mut o, "to", "quiet_hours")
            .and_then(|n| self.local_time(n, "quiet_hours.to"));
        let drop = match o.get("then") {
            None => Some(false),
            Some(n) => match n.text() {
                Some("defer") => Some(false),
                Some("drop") => Some(true),
                _ => {
                    self.problem(n.at, "quiet_hours.then must be `defer` or `drop`");
                    None
                }
            },
        };
        self.done(o, "quiet_hours", &["from", "to", "then"]);
        let (from, to) = (from?, to?);
        if from == to {
            self.problem(
                node.at,
                "quiet hours must not start and end at the same time",
            );
            return None;
        }
        Some(QuietHours {
            from,
            to,
            drop: drop?,
        })
    }

    fn entry(&mut self, node: &Node) -> Option<Entry> {
        const KEYS: [&str; 10] = [
            "event", "where", "audience", "on", "api", "schedule", "key", "reentry", "cap",
            "max_age",
        ];
        let mut o = self.obj(node, "entry")?;
        let kinds: Vec<&str> = ["event", "audience", "api", "schedule"]
            .into_iter()
            .filter(|k| o.has(k))
            .collect();
        if kinds.len() != 1 {
            self.problem(
                node.at,
                if kinds.is_empty() {
                    "entry needs one of `event`, `audience`, `api` or `schedule`".to_string()
                } else {
                    format!(
                        "entry takes one of `event`, `audience`, `api` or `schedule`, found {}",
                        kinds.join(" and ")
                    )
                },
            );
            o.taken.extend(KEYS);
            self.done(o, "entry", &KEYS);
            return None;
        }
        let trigger = match kinds[0] {
            "event" => {
                let event = o.get("event").and_then(|n| self.string(n, "entry.event"));
                let filters = self.filters(o.get("where"), "entry.where");
                event.map(|event| Trigger::Event { event, filters })
            }
            "audience" => {
                let audience = o
                    .get("audience")
                    .and_then(|n| self.string(n, "entry.audience"));
                let leave = match o.get("on") {
                    None => Some(false),
                    Some(n) => match n.text() {
                        Some("enter") => Some(false),
                        Some("leave") => Some(true),
                        _ => {
                            self.problem(n.at, "entry.on must be `enter` or `leave`");
                            None
                        }
                    },
                };
                audience
                    .zip(leave)
                    .map(|(audience, leave)| Trigger::Audience { audience, leave })
            }
            "api" => {
                let n = o.get("api").expect("checked above");
                match self.bool(n, "entry.api") {
                    Some(true) => Some(Trigger::Api),
                    Some(false) => {
                        self.problem(n.at, "entry.api must be `true` (or leave it out)");
                        None
                    }
                    None => None,
                }
            }
            _ => {
                let n = o.get("schedule").expect("checked above");
                self.schedule(n)
            }
        };
        let key = o.get("key").and_then(|n| {
            let s = self.string(n, "entry.key")?;
            if s.split('.').any(|part| part.trim().is_empty()) || s.len() > 256 {
                self.problem(n.at, format!("entry.key `{s}` must be a dotted path into the event, such as `properties.cart_id`"));
                return None;
            }
            if !matches!(trigger, Some(Trigger::Event { .. }) | Some(Trigger::Api)) && trigger.is_some() {
                self.problem(n.at, "entry.key reads the triggering event: it applies to `event` and `api` entries only");
                return None;
            }
            Some(s)
        });
        let reentry = match o.get("reentry") {
            None => Some(Reentry::AfterExit),
            Some(n) => self.reentry(n),
        };
        let cap = o
            .get("cap")
            .and_then(|n| self.number(n, "entry.cap", u64::MAX));
        let condition = o.get("if").and_then(|n| self.condition(n, "entry.if"));
        let max_age_ms = match o.get("max_age") {
            None => Some(super::DEFAULT_MAX_AGE_MS),
            Some(n) => self.duration(n, "entry.max_age"),
        };
        let mut known = KEYS.to_vec();
        known.push("if");
        self.done(o, "entry", &known);
        Some(Entry {
            trigger: trigger?,
            key,
            reentry: reentry?,
            cap,
            condition,
            max_age_ms: max_age_ms?,
        })
    }

    fn reentry(&mut self, node: &Node) -> Option<Reentry> {
        match &node.kind {
            Kind::Scalar { text, .. } => match text.trim() {
                "never" => Some(Reentry::Never),
                "after_exit" => Some(Reentry::AfterExit),
                t => match t.strip_prefix("cooldown ").map(duration) {
                    Some(Ok(ms)) => Some(Reentry::Cooldown { ms }),
                    Some(Err(e)) => {
                        self.problem(node.at, format!("entry.reentry: {e}"));
                        None
                    }
                    None => {
                        self.problem(
                            node.at,
                            "entry.reentry must be `never`, `after_exit` or `cooldown 7d`",
                        );
                        None
                    }
                },
            },
            Kind::Map(_) => {
                let mut o = self.obj(node, "entry.reentry")?;
                let ms = self
                    .required(&mut o, "cooldown", "entry.reentry")
                    .and_then(|n| self.duration(n, "entry.reentry.cooldown"));
                self.done(o, "entry.reentry", &["cooldown"]);
                ms.map(|ms| Reentry::Cooldown { ms })
            }
            Kind::Seq(_) => {
                self.problem(
                    node.at,
                    "entry.reentry must be `never`, `after_exit` or `cooldown 7d`",
                );
                None
            }
        }
    }

    fn schedule(&mut self, node: &Node) -> Option<Trigger> {
        let mut o = self.obj(node, "entry.schedule")?;
        let at = self
            .required(&mut o, "at", "entry.schedule")
            .and_then(|n| self.date(n, "entry.schedule.at"));
        let every_ms = o.get("every").map(|n| {
            let ms = self.duration(n, "entry.schedule.every")?;
            if ms < 3_600_000 {
                self.problem(
                    n.at,
                    "entry.schedule.every must be at least 1h: a schedule enters its whole audience each time",
                );
                return None;
            }
            Some(ms)
        });
        let local_time = o
            .get("local_time")
            .map(|n| self.local_time(n, "entry.schedule.local_time"));
        let audience = o
            .get("audience")
            .map(|n| self.string(n, "entry.schedule.audience"));
        self.done(
            o,
            "entry.schedule",
            &["at", "every", "local_time", "audience"],
        );
        Some(Trigger::Schedule {
            at: at?,
            every_ms: every_ms.map_or(Some(None), |v| v.map(Some))?,
            local_time: local_time.map_or(Some(None), |v| v.map(Some))?,
            audience: audience.map_or(Some(None), |v| v.map(Some))?,
        })
    }

    fn date(&mut self, node: &Node, what: &str) -> Option<Millis> {
        let s = self.string(node, what)?;
        match crate::time::parse_date_or_timestamp(&s) {
            Some(ms) if (crate::spec::MIN_TIMESTAMP..=crate::spec::MAX_TIMESTAMP).contains(&ms) => {
                Some(ms)
            }
            _ => {
                self.problem(
                    node.at,
                    format!("{what}: `{s}` is not a date (use 2026-12-01 or 2026-12-01T09:00:00Z)"),
                );
                None
            }
        }
    }

    fn goal(&mut self, node: &Node) -> Option<Goal> {
        let mut o = self.obj(node, "goal")?;
        let goal = match (o.has("event"), o.has("if")) {
            (true, false) => {
                let event = o.get("event").and_then(|n| self.string(n, "goal.event"));
                let filters = self.filters(o.get("where"), "goal.where");
                event.map(|event| Goal::Event { event, filters })
            }
            (false, true) => o
                .get("if")
                .and_then(|n| self.condition(n, "goal.if"))
                .map(|condition| Goal::Condition { condition }),
            _ => {
                self.problem(
                    node.at,
                    "goal takes `event` (with an optional `where`) or `if`, one of them",
                );
                o.taken.extend(["event", "if", "where"]);
                None
            }
        };
        self.done(o, "goal", &["event", "where", "if"]);
        goal
    }

    fn steps(&mut self, node: &Node) -> Option<Vec<Step>> {
        let Kind::Seq(items) = &node.kind else {
            self.problem(
                node.at,
                format!(
                    "steps must be a list (`- id: …` items), found {}",
                    node.what()
                ),
            );
            return None;
        };
        if items.is_empty() {
            self.problem(node.at, "a journey needs at least one step");
            return None;
        }
        if items.len() > MAX_STEPS {
            self.problem_code(
                "journey_too_large",
                items[MAX_STEPS].at,
                format!("a journey has at most {MAX_STEPS} steps"),
            );
            return None;
        }
        // Ids first, so that targets can be checked against all of them.
        let mut ids: BTreeMap<String, (usize, Pos)> = BTreeMap::new();
        for (i, item) in items.iter().enumerate() {
            let Kind::Map(entries) = &item.kind else {
                continue;
            };
            let Some((_, n)) = entries.iter().find(|(k, _)| k.name == "id") else {
                continue;
            };
            let Some(id) = n.text() else { continue };
            if let Some((_, first)) = ids.get(id) {
                self.problem(
                    n.at,
                    format!(
                        "step id `{id}` is used twice (first at line {}, column {})",
                        first.line, first.column
                    ),
                );
            } else {
                ids.insert(id.to_string(), (i, n.at));
            }
        }
        let mut steps = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match self.step(item, i, &ids) {
                Some(s) => steps.push(s),
                None => ok = false,
            }
        }
        ok.then_some(steps)
    }

    fn step(
        &mut self,
        node: &Node,
        index: usize,
        ids: &BTreeMap<String, (usize, Pos)>,
    ) -> Option<Step> {
        const ACTIONS: [&str; 10] = [
            "wait",
            "wait_until",
            "wait_for",
            "branch",
            "split",
            "send",
            "update_trait",
            "webhook",
            "ad_audience",
            "exit",
        ];
        let mut o = self.obj(node, "a step")?;
        let id = self
            .required(&mut o, "id", "a step")
            .and_then(|n| self.id(n, "the step id"));
        if id.as_deref() == Some("end") {
            self.problem(
                node.at,
                "`end` is where a run ends; a step cannot be called `end`",
            );
        }
        let present: Vec<&str> = ACTIONS.iter().copied().filter(|a| o.has(a)).collect();
        if present.len() != 1 {
            self.problem(
                node.at,
                if present.is_empty() {
                    format!("a step needs one action: {}", ACTIONS.join(", "))
                } else {
                    format!("a step takes one action, found {}", present.join(" and "))
                },
            );
            let mut known = vec!["id", "next", "on_event", "on_timeout"];
            known.extend(ACTIONS);
            if !present.is_empty() {
                o.taken.extend(known.iter().copied());
            }
            self.done(o, "a step", &known);
            return None;
        }
        let kind = present[0];
        let body = o.get(kind).expect("checked above");
        let mut target = |r: &mut Reader, n: &Node, what: &str| -> Option<Target> {
            let name = r.string(n, what)?;
            if name == "end" {
                return Some(Target::End);
            }
            match ids.get(&name) {
                None => {
                    r.problem(n.at, format!("{what}: there is no step `{name}`"));
                    None
                }
                Some((j, _)) if *j <= index => {
                    r.problem(
                        n.at,
                        format!("{what}: `{name}` is not after this step; steps only go forward (a run that must start again re-enters)"),
                    );
                    None
                }
                Some(_) => Some(Target::Step(name)),
            }
        };
        let following = || -> Target {
            ids.iter()
                .find(|(_, (j, _))| *j == index + 1)
                .map(|(id, _)| Target::Step(id.clone()))
                .unwrap_or(Target::End)
        };
        let action = match kind {
            "wait" => self.duration(body, "wait").map(|ms| Action::Wait { ms }),
            "wait_until" => self.wait_until(body),
            "wait_for" => {
                let mut w = self.obj(body, "wait_for");
                let event = w
                    .as_mut()
                    .and_then(|w| self.required(w, "event", "wait_for"))
                    .and_then(|n| self.string(n, "wait_for.event"));
                let filters = match w.as_mut() {
                    Some(w) => {
                        let f = w.get("where");
                        self.filters(f, "wait_for.where")
                    }
                    None => Vec::new(),
                };
                let timeout = w
                    .as_mut()
                    .and_then(|w| self.required(w, "timeout", "wait_for"))
                    .and_then(|n| self.duration(n, "wait_for.timeout"));
                if let Some(w) = w {
                    self.done(w, "wait_for", &["event", "where", "timeout"]);
                }
                let on_event = match o.get("on_event") {
                    Some(n) => target(self, n, "on_event"),
                    None => Some(following()),
                };
                let on_timeout = match o.get("on_timeout") {
                    Some(n) => target(self, n, "on_timeout"),
                    None => Some(following()),
                };
                Some(Action::WaitFor {
                    event: event?,
                    filters,
                    timeout_ms: timeout?,
                    on_event: on_event?,
                    on_timeout: on_timeout?,
                })
            }
            "branch" => {
                let mut b = self.obj(body, "branch")?;
                let condition = self
                    .required(&mut b, "if", "branch")
                    .and_then(|n| self.condition(n, "branch.if"));
                let then = match b.get("then") {
                    Some(n) => target(self, n, "branch.then"),
                    None => Some(following()),
                };
                let otherwise = match b.get("else") {
                    Some(n) => target(self, n, "branch.else"),
                    None => Some(following()),
                };
                self.done(b, "branch", &["if", "then", "else"]);
                Some(Action::Branch {
                    condition: condition?,
                    then: then?,
                    otherwise: otherwise?,
                })
            }
            "split" => self.split(body, &mut target, following()),
            "send" => self.send(body),
            "update_trait" => {
                let mut u = self.obj(body, "update_trait")?;
                let name = self
                    .required(&mut u, "name", "update_trait")
                    .and_then(|n| self.string(n, "update_trait.name"));
                let value = self
                    .required(&mut u, "value", "update_trait")
                    .map(Node::to_json);
                self.done(u, "update_trait", &["name", "value"]);
                Some(Action::UpdateTrait {
                    name: name?,
                    value: value?,
                })
            }
            "webhook" => {
                let mut w = self.obj(body, "webhook")?;
                let url = self.required(&mut w, "url", "webhook").and_then(|n| {
                    let u = self.string(n, "webhook.url")?;
                    if !(u.starts_with("https://") || u.starts_with("http://")) {
                        self.problem(
                            n.at,
                            format!("webhook.url `{u}` must start with https:// or http://"),
                        );
                        return None;
                    }
                    Some(u)
                });
                let body_text = w.get("body").and_then(|n| self.string(n, "webhook.body"));
                let purpose = match w.get("purpose") {
                    None => Some("marketing".to_string()),
                    Some(n) => self.id(n, "webhook.purpose"),
                };
                self.done(w, "webhook", &["url", "body", "purpose"]);
                Some(Action::Webhook {
                    url: url?,
                    body: body_text,
                    purpose: purpose?,
                })
            }
            "ad_audience" => {
                let mut a = self.obj(body, "ad_audience")?;
                let destination = self
                    .required(&mut a, "destination", "ad_audience")
                    .and_then(|n| self.string(n, "ad_audience.destination"));
                let add = match a.get("action") {
                    None => Some(true),
                    Some(n) => match n.text() {
                        Some("add") => Some(true),
                        Some("remove") => Some(false),
                        _ => {
                            self.problem(n.at, "ad_audience.action must be `add` or `remove`");
                            None
                        }
                    },
                };
                self.done(a, "ad_audience", &["destination", "action"]);
                Some(Action::AdAudience {
                    destination: destination?,
                    add: add?,
                })
            }
            _ => match &body.kind {
                Kind::Scalar { text, .. } if text == "true" || text.is_empty() => {
                    Some(Action::Exit)
                }
                _ => {
                    self.problem(body.at, "exit takes `true`");
                    None
                }
            },
        };
        let next = o.get("next").and_then(|n| target(self, n, "next"));
        if let (Some(a), Some(_)) = (&action, &next) {
            if matches!(
                a,
                Action::WaitFor { .. }
                    | Action::Branch { .. }
                    | Action::Split { .. }
                    | Action::Exit
            ) {
                self.problem(
                    o.get("next").expect("present").at,
                    format!(
                        "a `{}` step chooses where to go itself: remove `next`",
                        a.kind()
                    ),
                );
            }
        }
        let mut known = vec!["id", kind, "next"];
        if kind == "wait_for" {
            known.extend(["on_event", "on_timeout"]);
        }
        self.done(o, "a step", &known);
        Some(Step {
            id: id?,
            action: action?,
            next,
        })
    }

    fn wait_until(&mut self, node: &Node) -> Option<Action> {
        let mut o = self.obj(node, "wait_until")?;
        let time = o.get("time").map(|n| self.local_time(n, "wait_until.time"));
        let days = match o.get("days") {
            None => Some(Vec::new()),
            Some(n) => match &n.kind {
                Kind::Seq(items) => {
                    let mut days = Vec::new();
                    for item in items {
                        match item
                            .text()
                            .and_then(|d| DAYS.iter().position(|x| x.eq_ignore_ascii_case(d)))
                        {
                            Some(d) if !days.contains(&(d as u8)) => days.push(d as u8),
                            Some(_) => self.problem(item.at, "this day is listed twice"),
                            None => self.problem(
                                item.at,
                                "a day is one of mon, tue, wed, thu, fri, sat, sun",
                            ),
                        }
                    }
                    days.sort_unstable();
                    Some(days)
                }
                _ => {
                    self.problem(
                        n.at,
                        "wait_until.days must be a list such as [mon, tue, wed]",
                    );
                    None
                }
            },
        };
        let date_trait = o.get("trait").map(|n| self.string(n, "wait_until.trait"));
        let offset = o
            .get("offset")
            .map(|n| self.signed_duration(n, "wait_until.offset"));
        if time.is_none() && date_trait.is_none() {
            self.problem(
                node.at,
                "wait_until needs `time` (a time of day) or `trait` (a date trait), or both",
            );
        }
        if offset.is_some() && date_trait.is_none() {
            self.problem(
                node.at,
                "wait_until.offset moves a date trait: give `trait` too",
            );
        }
        self.done(o, "wait_until", &["time", "days", "trait", "offset"]);
        Some(Action::WaitUntil {
            time: time.map_or(Some(None), |v| v.map(Some))?,
            days: days?,
            date_trait: date_trait.map_or(Some(None), |v| v.map(Some))?,
            offset_ms: offset.unwrap_or(Some(0))?,
        })
    }

    fn split(
        &mut self,
        node: &Node,
        target: &mut dyn FnMut(&mut Reader, &Node, &str) -> Option<Target>,
        following: Target,
    ) -> Option<Action> {
        let Kind::Seq(items) = &node.kind else {
            self.problem(
                node.at,
                "split must be a list of variants (`- variant: a`, `weight: 50`, `next: step`)",
            );
            return None;
        };
        if items.len() < 2 || items.len() > 10 {
            self.problem(node.at, "a split has 2 to 10 variants");
            return None;
        }
        let mut variants = Vec::new();
        let mut ok = true;
        for item in items {
            let Some(mut v) = self.obj(item, "a variant") else {
                ok = false;
                continue;
            };
            let name = self
                .required(&mut v, "variant", "a variant")
                .and_then(|n| self.id(n, "the variant name"));
            let weight = self
                .required(&mut v, "weight", "a variant")
                .and_then(|n| self.number(n, "weight", 10_000));
            let next = match v.get("next") {
                Some(n) => target(self, n, "the variant's next"),
                None => Some(following.clone()),
            };
            self.done(v, "a variant", &["variant", "weight", "next"]);
            match (name, weight, next) {
                (Some(name), Some(weight), Some(next)) => {
                    if variants.iter().any(|x: &Variant| x.name == name) {
                        self.problem(item.at, format!("variant `{name}` is named twice"));
                        ok = false;
                    }
                    variants.push(Variant {
                        name,
                        weight: weight as u32,
                        next,
                    })
                }
                _ => ok = false,
            }
        }
        if ok && variants.iter().all(|v| v.weight == 0) {
            self.problem(node.at, "at least one variant needs a weight above 0");
            return None;
        }
        ok.then_some(Action::Split { variants })
    }

    fn send(&mut self, node: &Node) -> Option<Action> {
        const KEYS: [&str; 9] = [
            "channel",
            "purpose",
            "subject",
            "html",
            "text",
            "title",
            "fallback",
            "fallback_after",
            "variants",
        ];
        let mut o = self.obj(node, "send")?;
        let channel_node = self.required(&mut o, "channel", "send");
        let channel = channel_node.and_then(|n| {
            let s = self.string(n, "send.channel")?;
            let c = MessageChannel::parse(&s);
            if c.is_none() {
                self.problem(
                    n.at,
                    format!("send.channel `{s}` must be `email`, `sms` or `push`"),
                );
            }
            c
        });
        let purpose = match o.get("purpose") {
            None => Some("marketing".to_string()),
            Some(n) => self.id(n, "send.purpose"),
        };
        let mut text_of = |r: &mut Reader, name: &'static str| -> Option<String> {
            o.get(name).and_then(|n| r.string(n, name))
        };
        let subject = text_of(self, "subject");
        let html = text_of(self, "html");
        let text = text_of(self, "text");
        let title = text_of(self, "title");
        let fallback = match o.get("fallback") {
            None => Some(Vec::new()),
            Some(n) => {
                let items: Vec<&Node> = match &n.kind {
                    Kind::Seq(items) => items.iter().collect(),
                    Kind::Scalar { .. } => vec![n],
                    Kind::Map(_) => Vec::new(),
                };
                let mut out = Vec::new();
                for item in &items {
                    match item.text().and_then(MessageChannel::parse) {
                        Some(c) if Some(c) != channel && !out.contains(&c) => out.push(c),
                        Some(_) => self.problem(item.at, "a fallback channel must differ from the message's channel and the other fallbacks"),
                        None => self.problem(item.at, "a fallback channel is `email`, `sms` or `push`"),
                    }
                }
                if items.is_empty() {
                    self.problem(n.at, "send.fallback is a channel or a list of channels");
                }
                Some(out)
            }
        };
        let fallback_after_ms = o
            .get("fallback_after")
            .map(|n| self.duration(n, "send.fallback_after"));
        let variants_node = o.get("variants");
        let mut variants: std::collections::BTreeMap<MessageChannel, super::ChannelTexts> =
            std::collections::BTreeMap::new();
        if let Some(n) = variants_node {
            match &n.kind {
                Kind::Map(entries) => {
                    for (k, v) in entries {
                        let Some(c) = MessageChannel::parse(&k.name) else {
                            self.problem(
                                k.at,
                                "a variant is named after a channel: `email`, `sms` or `push`",
                            );
                            continue;
                        };
                        let allowed: &[&str] = match c {
                            MessageChannel::Email => &["subject", "html", "text"],
                            MessageChannel::Sms => &["text"],
                            MessageChannel::Push => &["text", "title"],
                        };
                        let Some(mut vo) = self.obj(v, "send.variants") else {
                            continue;
                        };
                        // Only the channel's own parts are read: any other is an unknown key.
                        let mut part = |r: &mut Reader, name: &'static str| {
                            if !allowed.contains(&name) {
                                return None;
                            }
                            vo.get(name).and_then(|n| r.string(n, name))
                        };
                        let variant = super::ChannelTexts {
                            subject: part(self, "subject"),
                            html: part(self, "html"),
                            text: part(self, "text"),
                            title: part(self, "title"),
                        };
                        self.done(vo, &format!("send.variants.{}", c.as_str()), allowed);
                        variants.insert(c, variant);
                    }
                }
                _ => self.problem(
                    n.at,
                    "send.variants maps a channel to its texts: `{sms: {text: …}}`",
                ),
            }
        }
        self.done(o, "send", &KEYS);
        let channel = channel?;
        if let Some(n) = variants_node {
            for c in variants.keys() {
                let on = *c == channel || fallback.iter().flatten().any(|f| f == c);
                if !on {
                    self.problem(
                        n.at,
                        format!(
                            "send.variants.{0}: this message never goes out on {0}: add it to `fallback`",
                            c.as_str()
                        ),
                    );
                }
            }
        }
        let need = |r: &mut Reader, ok: bool, what: &str| {
            if !ok {
                r.problem(
                    node.at,
                    format!("an {} message needs {what}", channel.as_str()),
                );
            }
        };
        // What each channel it may go out on needs: its own, and its fallbacks'.
        let chain: Vec<MessageChannel> = std::iter::once(channel)
            .chain(fallback.iter().flatten().copied())
            .collect();
        let on = |c: MessageChannel| chain.contains(&c);
        // A part is there on a channel when its variant there has it, or the message has.
        type Pick = fn(&super::ChannelTexts) -> &Option<String>;
        let has = |c: MessageChannel, own: &Option<String>, pick: Pick| {
            own.is_some() || variants.get(&c).is_some_and(|v| pick(v).is_some())
        };
        let (p_subject, p_html, p_text): (Pick, Pick, Pick) =
            (|v| &v.subject, |v| &v.html, |v| &v.text);
        match channel {
            MessageChannel::Email => {
                need(self, has(channel, &subject, p_subject), "`subject`");
                need(
                    self,
                    has(channel, &html, p_html) || has(channel, &text, p_text),
                    "`html` or `text`",
                );
            }
            MessageChannel::Sms | MessageChannel::Push => {
                need(self, has(channel, &text, p_text), "`text`");
                if !on(MessageChannel::Email) && (html.is_some() || subject.is_some()) {
                    self.problem(node.at, format!("an {} message takes `text` (and `title` for push), not `subject` or `html` (unless it falls back to email)", channel.as_str()));
                }
            }
        }
        if channel != MessageChannel::Email && on(MessageChannel::Email) {
            need(
                self,
                has(MessageChannel::Email, &subject, p_subject) || title.is_some(),
                "`subject` (or `title`) for its email fallback",
            );
        }
        for c in [MessageChannel::Sms, MessageChannel::Push] {
            if channel == MessageChannel::Email && on(c) {
                need(
                    self,
                    has(c, &text, p_text),
                    "`text` for its SMS or push fallback",
                );
            }
        }
        if title.is_some() && !on(MessageChannel::Push) {
            self.problem(node.at, "`title` is for push messages");
        }
        if fallback_after_ms.is_some() && fallback.as_ref().is_some_and(Vec::is_empty) {
            self.problem(node.at, "send.fallback_after needs `fallback` channels");
        }
        Some(Action::Send(Message {
            channel,
            purpose: purpose?,
            subject,
            html,
            text,
            title,
            fallback: fallback?,
            fallback_after_ms: fallback_after_ms.map_or(Some(None), |v| v.map(Some))?,
            variants,
        }))
    }
}

/// Edit distance between two short names, for "did you mean" hints.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// A journey as a JSON value (the form the API stores beside the document).
pub fn to_json(j: &Journey) -> Value {
    serde_json::to_value(j).expect("a journey always serialises")
}
