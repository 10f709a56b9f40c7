//! Simulation: a journey document replayed over a workspace's stored events on a virtual
//! clock, decided by the same code as a node decides live runs (entry rules, the state
//! machine, consent, suppression, quiet hours, caps against the messages live journeys really
//! sent, rendering, fallbacks), writing and sending nothing.
//!
//! Each customer is replayed on her own, in time order: her events in the window, her
//! audience changes (from the membership log), the schedule's occurrences on her clock, and
//! the timers her runs set. What is not in the log is read as it is today: her traits,
//! consent, computed traits and addresses.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use parcours_core::journey::machine::{self, Fact, History};
use parcours_core::journey::{self, Admission, Input, Journey, RunState, Status, Trigger};
use parcours_core::time::Millis;
use parcours_store::{profile_bucket, Result, Store, StoredRun, JOURNEY_SENDS};
use serde::Serialize;
use serde_json::Value;

use super::{decision, load_customer, run_id, JourneyProcessor, Live};

/// What a simulation found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Simulation {
    pub journey: String,
    #[serde(serialize_with = "parcours_core::time::serialize_iso")]
    pub from: Millis,
    #[serde(serialize_with = "parcours_core::time::serialize_iso")]
    pub to: Millis,
    /// Customers read, and their events within the window.
    pub customers: u64,
    pub events: u64,
    /// Runs started (the holdout group's among them, the global control group's included).
    pub entered: u64,
    pub holdout: u64,
    /// Why customers the entry would have taken did not enter, by reason.
    pub not_entered: BTreeMap<String, u64>,
    /// How the runs ended within the window: `goal`, `exited`, `completed`; and how many
    /// were still going at its end.
    pub ended: BTreeMap<String, u64>,
    pub running: u64,
    /// Conversions credited to the journey (the holdout's among them).
    pub converted: u64,
    pub converted_holdout: u64,
    /// Messages that would go, by channel.
    pub sent: BTreeMap<String, u64>,
    /// Each step's decisions, by code, in the order of the document's steps (`-`: the
    /// journey's own, such as entering and ending).
    pub steps: Vec<StepDecisions>,
    /// Live journeys that sent the same customers a message within a day of one this journey
    /// would send: how many customers, and how many of this journey's messages.
    pub conflicts: Vec<Conflict>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StepDecisions {
    pub step: String,
    pub decisions: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Conflict {
    pub journey: String,
    pub customers: u64,
    pub messages: u64,
}

impl Simulation {
    /// How many times a decision was taken at any step.
    pub fn decided(&self, code: &str) -> u64 {
        self.steps
            .iter()
            .filter_map(|s| s.decisions.get(code))
            .sum()
    }
}

/// What moves a customer's replay, in time order.
enum Item {
    Event(usize),
    Audience { audience: String, entered: bool },
    Occurrence(Millis),
}

const DAY: Millis = 86_400_000;

/// What the replay adds up across customers.
#[derive(Default)]
struct Totals {
    /// Decisions by step, then code.
    decisions: BTreeMap<String, BTreeMap<String, u64>>,
    /// By live journey: the customers and how many of this journey's messages.
    conflicts: BTreeMap<String, (BTreeSet<String>, u64)>,
    /// Entries so far (stored ones included), for the entry cap.
    entries: u64,
}

/// What comes due in one customer's replay: her runs' timers (by run id), and her deferred
/// messages `(due, run id, key, payload)`.
#[derive(Default)]
struct Due {
    runs: BTreeMap<String, Millis>,
    messages: Vec<(Millis, String, String, Value)>,
}

impl JourneyProcessor {
    /// Replays `journey` (as if it were live) over the workspace's customers between `from`
    /// and `to`. `progress` is told how many customers were replayed, every few hundred.
    pub fn simulate(
        &mut self,
        store: &dyn Store,
        ws: &str,
        journey: &Journey,
        from: Millis,
        to: Millis,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Simulation> {
        let mut j = journey.clone();
        j.status = Status::Live;
        let journey = Arc::new(j);
        let mut sim = Simulation {
            journey: journey.id.clone(),
            from,
            to,
            ..Simulation::default()
        };
        let mut totals = Totals {
            entries: store.journey_entries(ws, &journey.id)?,
            ..Totals::default()
        };
        let mut after = String::new();
        loop {
            let page = store.profiles_page(ws, &after, 200)?;
            let Some(last) = page.last() else { break };
            after = last.id.clone();
            for p in &page {
                self.replay(store, ws, &journey, &p.id, &mut sim, &mut totals)?;
                sim.customers += 1;
            }
            progress(sim.customers);
        }
        let mut order: Vec<String> = vec!["-".into()];
        order.extend(journey.steps.iter().map(|s| s.id.clone()));
        for step in order {
            if let Some(d) = totals.decisions.remove(&step) {
                sim.steps.push(StepDecisions { step, decisions: d });
            }
        }
        sim.conflicts = totals
            .conflicts
            .into_iter()
            .map(|(journey, (who, messages))| Conflict {
                journey,
                customers: who.len() as u64,
                messages,
            })
            .collect();
        sim.conflicts
            .sort_by(|a, b| b.messages.cmp(&a.messages).then(a.journey.cmp(&b.journey)));
        Ok(sim)
    }

    fn replay(
        &mut self,
        store: &dyn Store,
        ws: &str,
        journey: &Arc<Journey>,
        profile: &str,
        sim: &mut Simulation,
        totals: &mut Totals,
    ) -> Result<()> {
        let (from, to) = (sim.from, sim.to);
        let share = self.share(store, ws)?;
        let Some(mut who) = load_customer(
            store,
            ws,
            profile,
            std::slice::from_ref(journey),
            to,
            share.unknown_granted,
        )?
        else {
            return Ok(());
        };
        who.global_control = share.policy.in_global_control(&who.profile.id);
        // Her condition events, handed to her as the virtual clock reaches them.
        let mut pending_facts = std::mem::take(&mut who.events);
        pending_facts.sort_by_key(|f| std::cmp::Reverse(f.ts));
        // Her audiences as they were: today's, with the later changes undone.
        let history = store.membership_history(ws, profile, 10_000)?;
        let today = who.memberships.clone();
        let members_at = |t: Millis| {
            let mut m = today.clone();
            let mut later: Vec<_> = history.iter().filter(|c| c.at > t).collect();
            later.sort_by_key(|c| std::cmp::Reverse(c.at));
            for c in later {
                if c.entered {
                    m.remove(&c.audience_id);
                } else {
                    m.insert(c.audience_id.clone());
                }
            }
            m
        };
        // Her events in the window, as entries and waits read them.
        let timeline = store.timeline(ws, profile, None, i32::MAX as usize)?;
        let mut bodies: Vec<(String, Value, Millis)> = Vec::new();
        for e in &timeline {
            if e.timestamp < from || e.timestamp > to {
                continue;
            }
            let Some(name) = crate::facts::event_name(e) else {
                continue;
            };
            let body: Value = serde_json::from_str(&e.body).unwrap_or(Value::Null);
            bodies.push((name.to_string(), body, e.timestamp));
        }
        sim.events += bodies.len() as u64;
        let mut items: Vec<(Millis, Item)> = bodies
            .iter()
            .enumerate()
            .map(|(i, b)| (b.2, Item::Event(i)))
            .collect();
        for c in history.iter().filter(|c| c.at >= from && c.at <= to) {
            items.push((
                c.at,
                Item::Audience {
                    audience: c.audience_id.clone(),
                    entered: c.entered,
                },
            ));
        }
        if let Trigger::Schedule { audience, .. } = &journey.entry.trigger {
            let trigger = &journey.entry.trigger;
            let mut next = machine::next_occurrence(trigger, from.saturating_sub(DAY));
            while let Some(at) = next {
                if machine::occurrence_starts(trigger, at) > to {
                    break;
                }
                let hers = machine::entry_instant(journey, at, &who);
                let member = audience
                    .as_ref()
                    .is_none_or(|a| members_at(hers).contains(a));
                if hers >= from && hers <= to && member {
                    items.push((hers, Item::Occurrence(at)));
                }
                next =
                    machine::next_occurrence(trigger, machine::occurrence_starts(trigger, at) + 1);
            }
        }
        if items.is_empty() {
            return Ok(());
        }
        items.sort_by_key(|(t, _)| *t);
        let mut d = decision(store, ws, profile, from, share.policy.clone())?;
        // Caps count the messages live journeys really sent her, and this journey's.
        let real = store.contacts(ws, profile, from.saturating_sub(7 * DAY))?;
        d.contacts = real
            .iter()
            .filter_map(|c| {
                Some(parcours_core::journey::policy::Contact {
                    at: c.at,
                    channel: journey::MessageChannel::parse(&c.channel)?,
                })
            })
            .collect();
        let mut runs: Vec<Live> = Vec::new();
        let mut due = Due::default();
        let mut seq = 0i64;
        let mut clock = |t: Millis, who: &mut super::Customer| {
            while pending_facts.last().is_some_and(|f| f.ts <= t) {
                who.events.push(pending_facts.pop().expect("checked"));
            }
            who.memberships = members_at(t);
            who.now = t;
        };
        let until_end = std::iter::once((to, None));
        let stops = items
            .into_iter()
            .map(|(t, i)| (t, Some(i)))
            .chain(until_end);
        for (t, item) in stops {
            // Everything due before this moment happens first, in time order.
            loop {
                let next_run = due.runs.iter().map(|(r, at)| (*at, r.clone())).min();
                let next_message = due.messages.iter().map(|x| x.0).min();
                let Some(at) = next_run
                    .as_ref()
                    .map(|x| x.0)
                    .into_iter()
                    .chain(next_message)
                    .min()
                else {
                    break;
                };
                if at > t {
                    break;
                }
                clock(at, &mut who);
                d.now = at;
                if let Some((_, id)) = next_run.filter(|(run_at, _)| *run_at == at) {
                    due.runs.remove(&id);
                    let live = runs.iter_mut().find(|l| l.run.id == id).expect("a run");
                    let (next, fx) = journey::step(
                        &live.journey,
                        live.run.clone(),
                        Input::Timer { due: at },
                        at,
                        &who,
                    );
                    live.run = next;
                    self.apply(&mut d, live, fx, &who);
                } else {
                    let i = due.messages.iter().position(|x| x.0 == at).expect("due");
                    let (_, id, key, payload) = due.messages.remove(i);
                    let live = runs.iter().find(|l| l.run.id == id).expect("a run");
                    let run = live.run.clone();
                    self.deferred(store, &mut d, journey, &run, &key, &payload, &who)?;
                }
                tally(&mut d, sim, totals, &real, &mut due);
            }
            let Some(item) = item else { break };
            clock(t, &mut who);
            d.now = t;
            let empty = Value::Null;
            let (input, fact, body) = match &item {
                Item::Event(i) => {
                    let (name, body, at) = &bodies[*i];
                    let fact = Fact {
                        name,
                        properties: body.get("properties").unwrap_or(&empty),
                        at: *at,
                    };
                    (Input::Event(fact), Some(fact), body.clone())
                }
                Item::Audience { audience, entered } => (
                    Input::Changed,
                    None,
                    serde_json::json!({"properties": {"audience": audience, "entered": entered}}),
                ),
                Item::Occurrence(at) => (
                    Input::Changed,
                    None,
                    serde_json::json!({"properties": {"journey": journey.id,
                        "occurrence": parcours_core::time::format_timestamp(*at)}}),
                ),
            };
            for live in runs.iter_mut() {
                if matches!(live.run.state, RunState::Done { .. }) {
                    continue;
                }
                let (next, fx) = journey::step(&live.journey, live.run.clone(), input, t, &who);
                if fx.is_empty() && next == live.run {
                    continue;
                }
                live.run = next;
                self.apply(&mut d, live, fx, &who);
            }
            let enters = match (&item, fact) {
                (Item::Event(_), Some(fact)) => machine::triggers(journey, fact, t),
                (Item::Audience { audience, entered }, _) => {
                    machine::enters_on_audience(journey, audience, *entered, t, t)
                }
                (Item::Occurrence(_), _) => true,
                _ => false,
            };
            let key = enters.then(|| machine::entry_key(journey, &body)).flatten();
            if let Some(key) = key {
                let mine = runs.iter().filter(|r| r.run.key == key);
                let history = History {
                    active: mine
                        .clone()
                        .any(|r| matches!(r.run.state, RunState::Waiting { .. })),
                    last_entered: mine.map(|r| r.run.entered_at).max(),
                    total_entries: totals.entries,
                };
                match machine::admit(journey, history, t, &who) {
                    Admission::Refused(why) => {
                        *sim.not_entered.entry(why.to_string()).or_default() += 1;
                    }
                    Admission::Enter => {
                        seq += 1;
                        let id = run_id(ws, &journey.id, profile, &key, -seq);
                        let (run, fx) = journey::enter(
                            journey,
                            1,
                            id.clone(),
                            profile.to_string(),
                            key.clone(),
                            body.clone(),
                            t,
                            &who,
                        );
                        totals.entries += 1;
                        sim.entered += 1;
                        sim.holdout += u64::from(run.holdout);
                        let mut live = Live {
                            stored: StoredRun {
                                workspace_id: ws.to_string(),
                                run_id: id,
                                journey_id: journey.id.clone(),
                                version: 1,
                                profile_id: profile.to_string(),
                                key,
                                bucket: profile_bucket(ws, profile),
                                active: true,
                                state: Value::Null,
                                entered_at: t,
                                ended_at: None,
                                outcome: None,
                                revision: 0,
                            },
                            run,
                            journey: journey.clone(),
                            touched: true,
                        };
                        self.apply(&mut d, &mut live, fx, &who);
                        runs.push(live);
                    }
                }
            }
            tally(&mut d, sim, totals, &real, &mut due);
        }
        if let Some(e) = d.failed.take() {
            return Err(e);
        }
        for live in &runs {
            match &live.run.state {
                RunState::Waiting { .. } => sim.running += 1,
                RunState::Done { outcome, .. } => {
                    *sim.ended.entry(outcome.as_str().to_string()).or_default() += 1
                }
            }
        }
        Ok(())
    }
}

/// Takes what the last decision wrote: its notes and messages into the report, its timers
/// into the replay.
fn tally(
    d: &mut super::Decision<'_>,
    sim: &mut Simulation,
    totals: &mut Totals,
    real: &[parcours_store::ContactRow],
    due: &mut Due,
) {
    for n in d.write.notes.drain(..) {
        let step = n.step.unwrap_or_else(|| "-".into());
        if n.code == "converted" {
            sim.converted += 1;
            sim.converted_holdout += u64::from(
                n.detail.contains("holdout group") || n.detail.contains("global control group"),
            );
        }
        *totals
            .decisions
            .entry(step)
            .or_default()
            .entry(n.code)
            .or_default() += 1;
    }
    for c in d.write.contacts.drain(..) {
        *sim.sent.entry(c.channel.clone()).or_default() += 1;
        let near: BTreeSet<&str> = real
            .iter()
            .filter(|r| r.journey_id != c.journey_id && r.at.abs_diff(c.at) <= DAY as u64)
            .map(|r| r.journey_id.as_str())
            .collect();
        for j in near {
            let e = totals.conflicts.entry(j.to_string()).or_default();
            e.0.insert(c.profile_id.clone());
            e.1 += 1;
        }
    }
    d.write.outbox.clear();
    for t in d.write.set_timers.drain(..) {
        if t.kind == JOURNEY_SENDS {
            let payload: Value = serde_json::from_str(&t.payload).unwrap_or(Value::Null);
            let run = payload
                .get("run")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            due.messages.retain(|x| x.2 != t.key);
            due.messages.push((t.due_at, run, t.key, payload));
        }
    }
    for (run, at) in std::mem::take(&mut d.timers) {
        match at {
            Some(at) => due.runs.insert(run, at),
            None => due.runs.remove(&run),
        };
    }
}
