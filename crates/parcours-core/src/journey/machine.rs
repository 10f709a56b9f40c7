//! The journey state machine: [`admit`] decides whether a customer enters, [`enter`] starts a
//! run, [`step`] moves a run on one input. Pure: time comes in as `now`, what is known about
//! the customer comes through [`Look`], and everything that must happen goes out as
//! [`Effect`]s, for the engine to commit in one write with the run.
//!
//! Guarantees (property-tested):
//! - a run that ended (goal, exit, completion) never produces another effect;
//! - a goal or exit ends a run on the input that meets it, also in the middle of a wait;
//! - steps only go forward, so a run passes each step at most once and sends at most one
//!   message per send step;
//! - an effect's key is `run:step:epoch`: the same run replayed on the same inputs produces
//!   the same keys, which is what makes sending exactly once possible downstream.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::local;
use super::{Action, Goal, Journey, Reentry, Status, Target, Trigger};
use crate::audience::eval::{property, test_value};
use crate::audience::{Condition, Filter};
use crate::time::Millis;

/// What the machine may ask about the run's customer, as she is now.
pub trait Look {
    /// Whether an audience-syntax condition holds for her.
    fn holds(&self, condition: &Condition) -> bool;
    /// Her time zone (an IANA name), when her profile says.
    fn time_zone(&self) -> Option<String>;
    /// One of her traits.
    fn trait_value(&self, name: &str) -> Option<Value>;
    /// Whether she is in the workspace's global control group (no journey sends her anything).
    fn in_global_control(&self) -> bool {
        false
    }
}

/// An event of the run's customer.
#[derive(Debug, Clone, Copy)]
pub struct Fact<'a> {
    pub name: &'a str,
    pub properties: &'a Value,
    pub at: Millis,
}

impl Fact<'_> {
    /// Whether a `wait_for` of `run` may take this event: an event about a message Parcours
    /// sent (an open, a click, a delivery: it names the message's `run` and `message_key`)
    /// counts only for the run that sent the message.
    fn concerns(&self, run: &str) -> bool {
        let p = |k: &str| self.properties.get(k).and_then(Value::as_str);
        match (p("message_key"), p("run")) {
            (Some(_), Some(r)) => r == run,
            _ => true,
        }
    }

    fn matches(&self, event: &str, filters: &[Filter], now: Millis) -> bool {
        self.name == event
            && filters
                .iter()
                .all(|f| test_value(property(self.properties, &f.property), &f.test, now).0)
    }
}

/// What moves a run.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// One of her events.
    Event(Fact<'a>),
    /// The run's timer, set for `due`, fired.
    Timer { due: Millis },
    /// Her profile changed (traits, consent, audiences): goal and exit conditions are
    /// checked again.
    Changed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub id: String,
    pub journey: String,
    pub version: u32,
    pub profile: String,
    /// The entry key's value (`properties.cart_id`), empty for unkeyed journeys.
    pub key: String,
    pub entered_at: Millis,
    pub state: RunState,
    /// Counts the steps the run has entered. Effects carry it in their keys.
    pub epoch: u32,
    /// In the control group: goes through the steps, is sent nothing.
    pub holdout: bool,
    /// Held out because she is in the workspace's global control group (then `holdout` too),
    /// not in this journey's own holdout.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub global_control: bool,
    /// The variant of the last split the run went through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Messages sent so far.
    pub sends: u32,
    /// The entry event's properties (or the API call's), for templates.
    #[serde(default)]
    pub context: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RunState {
    /// At a step that waits, since `since`: until `until` (the run's timer), and for an event
    /// when the step is a `wait_for` (any of her events read after the wait began: events
    /// are read in the order Parcours received them).
    Waiting {
        step: String,
        since: Millis,
        until: Millis,
    },
    Done {
        at: Millis,
        outcome: Outcome,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Went through its last step.
    Completed,
    /// Met the journey's goal.
    Goal,
    /// The exit condition held, or an `exit` step was reached.
    Exited { reason: String },
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Goal => "goal",
            Outcome::Exited { .. } => "exited",
        }
    }
}

/// What must happen because of a decision. The engine commits effects with the run, in one
/// write; sends, webhooks and ad-audience changes go through the outbox with their key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Effect {
    /// Set the run's one timer (replacing any earlier one).
    Timer { at: Millis },
    /// The run no longer needs its timer.
    ClearTimer,
    /// Send the message of a send step.
    Send { step: String, key: String },
    /// Update one of the customer's traits.
    UpdateTrait {
        step: String,
        name: String,
        value: Value,
    },
    /// Call a webhook step's URL.
    Webhook { step: String, key: String },
    /// Add her to (or remove her from) an ad-audience destination.
    AdAudience {
        step: String,
        key: String,
        destination: String,
        add: bool,
    },
    /// The run met the goal: credit the journey, the run's variant, or its holdout.
    Converted {
        variant: Option<String>,
        holdout: bool,
    },
    /// A decision and its reason, for "why did (or didn't) she get it?".
    Note {
        step: Option<String>,
        code: String,
        detail: String,
    },
    /// The run ended.
    Ended { outcome: Outcome },
}

/// What is known about a customer's earlier runs of a journey (for the same key).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct History {
    /// A run of hers (with this key) is in progress.
    pub active: bool,
    /// When her latest run (with this key) began.
    pub last_entered: Option<Millis>,
    /// Runs the journey has had, everyone together (for the entry cap).
    pub total_entries: u64,
}

/// Whether a customer enters, and if not, why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Enter,
    Refused(&'static str),
}

/// Decides entry: the journey is live, her earlier runs allow it (re-entry rule), the cap is
/// not reached, the entry condition holds, and she has not already met the goal or the exit.
pub fn admit(journey: &Journey, history: History, now: Millis, look: &dyn Look) -> Admission {
    if journey.status != Status::Live {
        return Admission::Refused("journey_not_live");
    }
    if history.active {
        return Admission::Refused("already_in_journey");
    }
    match (journey.entry.reentry, history.last_entered) {
        (_, None) => {}
        (Reentry::Never, Some(_)) => return Admission::Refused("reentry_never"),
        (Reentry::AfterExit, Some(_)) => {}
        (Reentry::Cooldown { ms }, Some(last)) => {
            if now < last.saturating_add(ms) {
                return Admission::Refused("reentry_cooldown");
            }
        }
    }
    if journey
        .entry
        .cap
        .is_some_and(|cap| history.total_entries >= cap)
    {
        return Admission::Refused("entry_cap_reached");
    }
    if let Some(c) = &journey.entry.condition {
        if !look.holds(c) {
            return Admission::Refused("entry_condition_false");
        }
    }
    if let Some(Goal::Condition { condition }) = &journey.goal {
        if look.holds(condition) {
            return Admission::Refused("goal_already_met");
        }
    }
    if let Some(c) = &journey.exit_if {
        if look.holds(c) {
            return Admission::Refused("exit_condition_holds");
        }
    }
    Admission::Enter
}

/// Whether an event is one that enters the journey: its trigger, with filters, and recent
/// enough (`entry.max_age`).
pub fn triggers(journey: &Journey, fact: Fact<'_>, now: Millis) -> bool {
    let fresh = now.saturating_sub(fact.at) <= journey.entry.max_age_ms;
    match &journey.entry.trigger {
        Trigger::Event { event, filters } => fresh && fact.matches(event, filters, now),
        // An entry asked through the API is an event of hers in the log, naming the journey.
        Trigger::Api => {
            fresh
                && fact.name == API_ENTRY_EVENT
                && fact.properties.get("journey").and_then(Value::as_str) == Some(&journey.id)
        }
        _ => false,
    }
}

/// Whether her entering (`entered`) or leaving an audience at `at` enters a journey whose
/// entry is that audience (`on: enter`, or `on: leave`).
pub fn enters_on_audience(
    journey: &Journey,
    audience: &str,
    entered: bool,
    at: Millis,
    now: Millis,
) -> bool {
    match &journey.entry.trigger {
        Trigger::Audience { audience: a, leave } => {
            a == audience && entered != *leave && now.saturating_sub(at) <= journey.entry.max_age_ms
        }
        _ => false,
    }
}

/// How far ahead of UTC a clock can be (Kiribati, UTC+14): a schedule at a local time of day
/// starts this long before that time of day in UTC, when the first customers' clocks read it.
pub const MAX_AHEAD_MS: Millis = 14 * 3_600_000;

/// The occurrence of a journey's schedule that the scheduler takes next, at or after `from`:
/// the `n`th occurrence is `at + n × every`; `None` once a one-shot schedule has started (or
/// for a journey not on a schedule). An occurrence at a local time of day counts from when it
/// starts ([`occurrence_starts`]), so a schedule saved after it started waits for the next.
pub fn next_occurrence(trigger: &Trigger, from: Millis) -> Option<Millis> {
    let Trigger::Schedule { at, every_ms, .. } = trigger else {
        return None;
    };
    let first = *at;
    let starts = |t: Millis| occurrence_starts(trigger, t);
    if starts(first) >= from {
        return Some(first);
    }
    let every = (*every_ms)?.max(1);
    // The first n with starts(at + n × every) >= from (starts is at most a day before).
    let behind = from.saturating_sub(starts(first));
    let mut n = behind / every;
    loop {
        let t = first.saturating_add(n.saturating_mul(every));
        if starts(t) >= from || t == Millis::MAX {
            return Some(t);
        }
        n += 1;
    }
}

/// Whether `t` is an occurrence of the schedule.
pub fn is_occurrence(trigger: &Trigger, t: Millis) -> bool {
    let Trigger::Schedule { at, every_ms, .. } = trigger else {
        return false;
    };
    match every_ms {
        None => t == *at,
        Some(every) => t >= *at && (t - at) % (*every).max(1) == 0,
    }
}

/// When the scheduler starts entering customers for an occurrence: the occurrence itself,
/// or, at a local time of day, when the first clocks on Earth read that time on the
/// occurrence's day (its UTC calendar day).
pub fn occurrence_starts(trigger: &Trigger, occurrence: Millis) -> Millis {
    match trigger {
        Trigger::Schedule {
            local_time: Some(time),
            ..
        } => local::on_day_at(chrono_tz::Tz::UTC, occurrence, *time) - MAX_AHEAD_MS,
        _ => occurrence,
    }
}

/// When she enters for an occurrence of the journey's schedule: the occurrence, or at a local
/// time of day, that time on the occurrence's day on her clock (her `timezone` trait, else
/// the journey's, else UTC).
pub fn entry_instant(journey: &Journey, occurrence: Millis, look: &dyn Look) -> Millis {
    match &journey.entry.trigger {
        Trigger::Schedule {
            local_time: Some(time),
            ..
        } => {
            let tz = local::zone(
                look.time_zone()
                    .or_else(|| journey.timezone.clone())
                    .as_deref(),
            );
            let day = local::local_date(chrono_tz::Tz::UTC, occurrence);
            local::instant(
                tz,
                day.and_hms_opt(time.hour(), time.minute(), 0)
                    .expect("a time of day exists"),
            )
        }
        _ => occurrence,
    }
}

/// The event an entry through the API is recorded as (`properties.journey` names the
/// journey; the other properties are the entry's).
pub const API_ENTRY_EVENT: &str = "Journey Entry Requested";

/// The entry key of an event: the value at the journey's `entry.key` path, as text. `None`
/// when the journey is keyed and the event lacks the key (it cannot enter).
pub fn entry_key(journey: &Journey, event: &Value) -> Option<String> {
    let Some(path) = &journey.entry.key else {
        return Some(String::new());
    };
    let mut v = event;
    for part in path.split('.') {
        v = v.get(part)?;
    }
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A number in 0..n drawn from the hash of `parts`: the same parts always draw the same
/// number, and draws for different parts are independent.
pub fn draw(parts: &[&str], n: u64) -> u64 {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    let d = h.finalize();
    let x = u64::from_le_bytes(d[..8].try_into().expect("eight bytes"));
    if n == 0 {
        0
    } else {
        x % n
    }
}

/// Which control group a held-out run is in, for its notes.
fn held(run: &Run) -> &'static str {
    if run.global_control {
        "the global control group"
    } else {
        "the holdout group"
    }
}

/// Whether a customer is in the journey's holdout (sticky: the same answer at every entry).
pub fn in_holdout(journey: &Journey, profile: &str) -> bool {
    journey.holdout_bp > 0
        && draw(&["holdout", &journey.id, profile], 10_000) < u64::from(journey.holdout_bp)
}

/// Starts a run at the journey's first step and moves it as far as it goes without waiting.
#[allow(clippy::too_many_arguments)]
pub fn enter(
    journey: &Journey,
    version: u32,
    id: String,
    profile: String,
    key: String,
    context: Value,
    now: Millis,
    look: &dyn Look,
) -> (Run, Vec<Effect>) {
    let global_control = look.in_global_control();
    let holdout = global_control || in_holdout(journey, &profile);
    let mut run = Run {
        id,
        journey: journey.id.clone(),
        version,
        profile,
        key,
        entered_at: now,
        state: RunState::Waiting {
            step: String::new(),
            since: now,
            until: now,
        },
        epoch: 0,
        holdout,
        global_control,
        variant: None,
        sends: 0,
        context,
    };
    let mut effects = vec![Effect::Note {
        step: None,
        code: "entered".into(),
        detail: if holdout {
            format!("entered, in {}: she is sent nothing", held(&run))
        } else {
            "entered".into()
        },
    }];
    let first = Target::Step(journey.steps[0].id.clone());
    advance(journey, &mut run, first, now, look, &mut effects);
    (run, effects)
}

/// Moves a run on one input. A run that ended ignores every input.
pub fn step(
    journey: &Journey,
    mut run: Run,
    input: Input<'_>,
    now: Millis,
    look: &dyn Look,
) -> (Run, Vec<Effect>) {
    let mut effects = Vec::new();
    let (step_id, until) = match &run.state {
        RunState::Done { .. } => return (run, effects),
        RunState::Waiting { step, until, .. } => (step.clone(), *until),
    };
    // The goal first: a purchase that also makes the exit condition true is a conversion.
    let goal_met = match (&journey.goal, input) {
        (Some(Goal::Event { event, filters }), Input::Event(f)) => {
            f.at >= run.entered_at && f.matches(event, filters, now)
        }
        (Some(Goal::Condition { condition }), _) => look.holds(condition),
        _ => false,
    };
    if goal_met {
        effects.push(Effect::Converted {
            variant: run.variant.clone(),
            holdout: run.holdout,
        });
        finish(&mut run, Outcome::Goal, now, &mut effects, Some(&step_id));
        return (run, effects);
    }
    if exits(journey, &mut run, now, look, &mut effects, Some(&step_id)) {
        return (run, effects);
    }
    let Some(i) = journey.step_index(&step_id) else {
        // The step is gone from this version: nothing can move the run but a migration.
        return (run, effects);
    };
    let next = match (&journey.steps[i].action, input) {
        (
            Action::WaitFor {
                event,
                filters,
                on_event,
                ..
            },
            Input::Event(f),
        ) if f.matches(event, filters, now) && f.concerns(&run.id) => {
            effects.push(Effect::ClearTimer);
            effects.push(Effect::Note {
                step: Some(step_id.clone()),
                code: "event_arrived".into(),
                detail: format!("`{event}` arrived"),
            });
            on_event.clone()
        }
        (action, Input::Timer { due }) if due == until && now >= until => match action {
            Action::WaitFor {
                on_timeout, event, ..
            } => {
                effects.push(Effect::Note {
                    step: Some(step_id.clone()),
                    code: "timed_out".into(),
                    detail: format!("`{event}` did not arrive in time"),
                });
                on_timeout.clone()
            }
            _ => journey.after(i),
        },
        _ => return (run, effects),
    };
    advance(journey, &mut run, next, now, look, &mut effects);
    (run, effects)
}

fn exits(
    journey: &Journey,
    run: &mut Run,
    now: Millis,
    look: &dyn Look,
    effects: &mut Vec<Effect>,
    step: Option<&str>,
) -> bool {
    match &journey.exit_if {
        Some(c) if look.holds(c) => {
            finish(
                run,
                Outcome::Exited {
                    reason: format!("exit_if: {c}"),
                },
                now,
                effects,
                step,
            );
            true
        }
        _ => false,
    }
}

fn finish(
    run: &mut Run,
    outcome: Outcome,
    now: Millis,
    effects: &mut Vec<Effect>,
    step: Option<&str>,
) {
    if matches!(&run.state, RunState::Waiting { step, .. } if !step.is_empty()) {
        effects.push(Effect::ClearTimer);
    }
    effects.push(Effect::Note {
        step: step.filter(|s| !s.is_empty()).map(str::to_string),
        code: outcome.as_str().into(),
        detail: match &outcome {
            Outcome::Completed => "went through its last step".into(),
            Outcome::Goal => "met the goal".into(),
            Outcome::Exited { reason } => reason.clone(),
        },
    });
    effects.push(Effect::Ended {
        outcome: outcome.clone(),
    });
    run.state = RunState::Done { at: now, outcome };
}

/// Goes from step to step, doing what takes no time, until a step waits or the run ends.
fn advance(
    journey: &Journey,
    run: &mut Run,
    mut target: Target,
    now: Millis,
    look: &dyn Look,
    effects: &mut Vec<Effect>,
) {
    // Steps only go forward: at most one pass over them.
    for _ in 0..=journey.steps.len() {
        let id = match target {
            Target::End => {
                finish(run, Outcome::Completed, now, effects, None);
                return;
            }
            Target::Step(id) => id,
        };
        let Some(i) = journey.step_index(&id) else {
            finish(
                run,
                Outcome::Exited {
                    reason: format!("step `{id}` does not exist"),
                },
                now,
                effects,
                None,
            );
            return;
        };
        run.epoch += 1;
        let key = format!("{}:{}:{}", run.id, id, run.epoch);
        let note = |code: &str, detail: String| Effect::Note {
            step: Some(id.clone()),
            code: code.into(),
            detail,
        };
        target = match &journey.steps[i].action {
            Action::Wait { ms } => {
                wait(run, &id, now, now.saturating_add(*ms), effects);
                return;
            }
            Action::WaitFor { timeout_ms, .. } => {
                wait(run, &id, now, now.saturating_add(*timeout_ms), effects);
                return;
            }
            Action::WaitUntil {
                time,
                days,
                date_trait,
                offset_ms,
            } => {
                let tz = local::zone(
                    look.time_zone()
                        .or_else(|| journey.timezone.clone())
                        .as_deref(),
                );
                let until = match date_trait {
                    Some(name) => look
                        .trait_value(name)
                        .and_then(|v| local::date_value(tz, &v))
                        .map(|date| {
                            let moved = date.saturating_add(*offset_ms);
                            match time {
                                Some(t) => local::on_day_at(tz, moved, *t),
                                None => moved,
                            }
                        }),
                    None => time.map(|t| local::next_time_of_day(tz, now, t, days)),
                };
                match until {
                    Some(until) if until > now => {
                        wait(run, &id, now, until, effects);
                        return;
                    }
                    Some(_) => {
                        effects.push(note(
                            "already_past",
                            "the moment has passed: going on".into(),
                        ));
                        journey.after(i)
                    }
                    None => {
                        effects.push(note(
                            "missing_trait",
                            format!(
                                "her profile has no date in `{}`: going on",
                                date_trait.as_deref().unwrap_or_default()
                            ),
                        ));
                        journey.after(i)
                    }
                }
            }
            Action::Branch {
                condition,
                then,
                otherwise,
            } => {
                let yes = look.holds(condition);
                effects.push(note(
                    if yes { "branch_then" } else { "branch_else" },
                    format!("`{condition}` is {yes}"),
                ));
                if yes {
                    then.clone()
                } else {
                    otherwise.clone()
                }
            }
            Action::Split { variants } => {
                let total: u64 = variants.iter().map(|v| u64::from(v.weight)).sum();
                let mut x = draw(&["split", &journey.id, &id, &run.profile], total);
                let chosen = variants
                    .iter()
                    .find(|v| {
                        let w = u64::from(v.weight);
                        if x < w {
                            true
                        } else {
                            x -= w;
                            false
                        }
                    })
                    .expect("the draw is below the total weight");
                run.variant = Some(chosen.name.clone());
                effects.push(note("variant", format!("variant `{}`", chosen.name)));
                chosen.next.clone()
            }
            Action::Send(message) => {
                if exits(journey, run, now, look, effects, Some(&id)) {
                    return;
                }
                if run.holdout {
                    effects.push(note(
                        "holdout",
                        format!("in {}: no {} is sent", held(run), message.channel.as_str()),
                    ));
                } else {
                    run.sends += 1;
                    effects.push(Effect::Send {
                        step: id.clone(),
                        key,
                    });
                }
                journey.after(i)
            }
            Action::UpdateTrait { name, value } => {
                effects.push(Effect::UpdateTrait {
                    step: id.clone(),
                    name: name.clone(),
                    value: value.clone(),
                });
                journey.after(i)
            }
            Action::Webhook { .. } => {
                if run.holdout {
                    effects.push(note(
                        "holdout",
                        format!("in {}: no webhook call", held(run)),
                    ));
                } else {
                    effects.push(Effect::Webhook {
                        step: id.clone(),
                        key,
                    });
                }
                journey.after(i)
            }
            Action::AdAudience { destination, add } => {
                if run.holdout {
                    effects.push(note(
                        "holdout",
                        format!("in {}: no ad-audience change", held(run)),
                    ));
                } else {
                    effects.push(Effect::AdAudience {
                        step: id.clone(),
                        key,
                        destination: destination.clone(),
                        add: *add,
                    });
                }
                journey.after(i)
            }
            Action::Exit => {
                finish(
                    run,
                    Outcome::Exited {
                        reason: format!("reached the exit step `{id}`"),
                    },
                    now,
                    effects,
                    Some(&id),
                );
                return;
            }
        };
    }
    // Unreachable for a journey read by `doc::read` (targets only go forward); a journey
    // built by hand with a cycle ends here rather than looping.
    finish(
        run,
        Outcome::Exited {
            reason: "its steps go round in a circle".into(),
        },
        now,
        effects,
        None,
    );
}

fn wait(run: &mut Run, step: &str, now: Millis, until: Millis, effects: &mut Vec<Effect>) {
    run.state = RunState::Waiting {
        step: step.to_string(),
        since: now,
        until,
    };
    effects.push(Effect::Timer { at: until });
}
