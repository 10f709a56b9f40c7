//! The audience processor: keeps memberships and computed traits up to date.
//!
//! It follows the unify processor through the event log. For each profile that received
//! events it re-evaluates the audiences and computed traits those events can affect, writes
//! the changes with the profile's next re-evaluation (a window passing) in one transaction,
//! and publishes every membership change to the event log as `Audience Entered` /
//! `Audience Exited`. Timers re-evaluate a profile at the instant its answer can change;
//! a changed definition is computed again over every profile, with its progress stored.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::definitions::{readable, report_once, AudienceDoc};
use crate::facts::facts;
use crate::health::Health;
use crate::held::Held;
pub use crate::held::HELD_MAX;
use parcours_core::audience::{self, Condition, EventFact, Subject};
use parcours_core::computed::{wide_scores, ComputedTrait, WideInput};
use parcours_core::profile::ConsentState;
use parcours_core::rules::{AnalyticsOptOut, IdentityRules, UnknownConsent};
use parcours_core::spec::{AcceptedEvent, EventType};
use parcours_core::time::{Clock, Millis};
use parcours_core::Channel;
use parcours_store::{
    AudienceWrite, ComputationProgress, ComputedValue, CursorMove, DefinitionKind,
    DefinitionVersion, DefinitionsSeen, Fence, IngestBatch, MembershipChange, ReevaluationTimer,
    Result, SettledWork, Store, StoreError, WorkScope,
};
use serde_json::{json, Value};

/// The source of the events Parcours writes itself (membership changes).
pub const INTERNAL_SOURCE: &str = "parcours:audiences";
pub const AUDIENCE_ENTERED: &str = "Audience Entered";
pub const AUDIENCE_EXITED: &str = "Audience Exited";
/// Published when a profile id stops naming a profile (merged into another, or its events
/// now belong to another after a late event or an undo), with the profile that took over.
pub const PROFILE_RETIRED: &str = "Profile Retired";

const PUBLISHED: &str = "published";

/// How many replays rebuilt the projections (and, per workspace, `replayed:WS`: the last replay
/// whose retired ids the workspace's computation took out of its audiences).
pub const REPLAYED: &str = "replayed";
/// Profiles per page of a full computation.
const RECOMPUTE_PAGE: usize = 1_000;
/// How long a step evaluates pages of a full computation while no real-time work waits.
pub const PAGE_BUDGET: Duration = Duration::from_millis(40);
/// Timers a full computation writes per step once every profile is evaluated (a tenth of
/// it when real-time work waits).
const TIMER_CHUNK: usize = 50_000;

/// An audience as the processor uses it.
#[derive(Debug, Clone)]
pub struct AudienceDef {
    pub id: String,
    pub name: String,
    pub condition: Condition,
    pub version: i64,
    pub computed_version: i64,
    events: BTreeSet<String>,
    reads_profile: bool,
}

#[derive(Debug, Clone)]
pub struct TraitDef {
    pub def: ComputedTrait,
    pub version: i64,
    pub computed_version: i64,
}

/// One workspace's definitions, audiences in evaluation order.
#[derive(Debug, Clone, Default)]
pub struct WorkspaceDefs {
    pub audiences: Vec<AudienceDef>,
    pub traits: Vec<TraitDef>,
    /// Every event name a definition reads.
    names: BTreeSet<String>,
    /// Some audience reads the profile itself (so any event may change it).
    reads_profile: bool,
    /// Some audience reads events of any name ([`Condition::reads_every_event`]): a full
    /// computation then reads each profile's whole timeline, as the real-time path does.
    every_event: bool,
    /// The workspace's rules (which profile holds an event; what unknown consent counts as).
    pub rules: IdentityRules,
    /// Its audiences and computed traits as read (unreadable ones included), which a write
    /// of real-time evaluations checks are unchanged ([`DefinitionsSeen`]).
    seen: Vec<DefinitionVersion>,
}

impl WorkspaceDefs {
    /// Whether a profile is left out of audiences, computed traits and scores: it withdrew
    /// consent to analytics and the workspace excludes such people.
    pub fn excludes(&self, profile: &parcours_core::Profile) -> bool {
        self.rules.config.analytics_opt_out == AnalyticsOptOut::Exclude
            && profile.consent_for("analytics", None).0 == ConsentState::Withdrawn
    }

    /// What conditions see of one profile.
    pub fn subject<'a>(&self, l: &'a Loaded) -> Subject<'a> {
        Subject {
            profile: &l.profile,
            events: &l.events,
            computed: &l.computed,
            memberships: &l.memberships,
            unknown_consent_granted: self.rules.config.unknown_consent == UnknownConsent::Granted,
        }
    }
}

impl WorkspaceDefs {
    /// The version a definition's current answers were computed for.
    fn computed_version(&self, kind: DefinitionKind, id: &str) -> i64 {
        match kind {
            DefinitionKind::Audience => self.audience(id).map(|a| a.computed_version),
            DefinitionKind::ComputedTrait => self
                .traits
                .iter()
                .find(|t| t.def.id == id)
                .map(|t| t.computed_version),
            DefinitionKind::Destination => None,
        }
        .unwrap_or_default()
    }

    pub fn audience(&self, id: &str) -> Option<&AudienceDef> {
        self.audiences.iter().find(|a| a.id == id)
    }

    fn stale(&self) -> Versions {
        let a = self
            .audiences
            .iter()
            .filter(|a| a.version > a.computed_version)
            .map(|a| (DefinitionKind::Audience, a.id.clone(), a.version));
        let t = self
            .traits
            .iter()
            .filter(|t| !t.def.kind.workspace_wide() && t.version > t.computed_version)
            .map(|t| (DefinitionKind::ComputedTrait, t.def.id.clone(), t.version));
        a.chain(t).collect()
    }
}

/// Definitions not computed at their current version: (kind, id, version).
type Versions = Vec<(DefinitionKind, String, i64)>;

/// Reads every workspace's definitions (or one's).
pub fn load_definitions(
    store: &dyn Store,
    workspace: Option<&str>,
) -> Result<BTreeMap<String, WorkspaceDefs>> {
    let mut raw: BTreeMap<String, (Vec<AudienceDef>, Vec<TraitDef>)> = BTreeMap::new();
    let mut seen: BTreeMap<String, Vec<DefinitionVersion>> = BTreeMap::new();
    for d in store.definitions(workspace)? {
        let slot = raw.entry(d.workspace_id.clone()).or_default();
        if d.kind != DefinitionKind::Destination {
            let wide = d.kind == DefinitionKind::ComputedTrait
                && serde_json::from_value::<ComputedTrait>(d.doc.clone())
                    .is_ok_and(|t| t.kind.workspace_wide());
            seen.entry(d.workspace_id.clone())
                .or_default()
                .push(DefinitionVersion {
                    kind: d.kind,
                    id: d.id.clone(),
                    version: d.version,
                    // RFM scores and lifetime values are computed by their own pass,
                    // whatever else runs.
                    computed: !wide && d.computed_version >= d.version,
                });
        }
        match d.kind {
            DefinitionKind::Audience => {
                let Some(doc) = readable::<AudienceDoc>(&d) else {
                    continue;
                };
                slot.0.push(AudienceDef {
                    events: doc
                        .condition
                        .event_names()
                        .into_iter()
                        .map(str::to_string)
                        .collect(),
                    reads_profile: doc.condition.reads_profile(),
                    id: d.id,
                    name: doc.name,
                    condition: doc.condition,
                    version: d.version,
                    computed_version: d.computed_version,
                });
            }
            DefinitionKind::ComputedTrait => {
                let Some(def) = readable::<ComputedTrait>(&d) else {
                    continue;
                };
                slot.1.push(TraitDef {
                    def,
                    version: d.version,
                    computed_version: d.computed_version,
                });
            }
            DefinitionKind::Destination => {}
        }
    }
    let mut rules: BTreeMap<String, IdentityRules> = BTreeMap::new();
    for w in store.workspaces()? {
        if workspace.is_none_or(|ws| ws == w.id) && raw.contains_key(&w.id) {
            // Rules are checked when they are set; ones that no longer read count as the
            // defaults rather than stopping every workspace.
            rules.insert(
                w.id,
                IdentityRules::new(w.identity_rules).unwrap_or_default(),
            );
        }
    }
    let mut out = BTreeMap::new();
    for (ws, (audiences, traits)) in raw {
        let all: Vec<(&str, &Condition)> = audiences
            .iter()
            .map(|a| (a.id.as_str(), &a.condition))
            .collect();
        // An audience that refers to one no reader reads is left out, the others go on.
        let audience::Resolvable {
            kept: pairs,
            dangling,
        } = audience::resolvable(&all);
        for (id, gone) in &dangling {
            report_once(
                &ws,
                id,
                &format!("refers to `{gone}`, which cannot be evaluated"),
            );
        }
        let order = match audience::evaluation_order(&pairs) {
            Ok(order) => order.into_iter().map(str::to_string).collect::<Vec<_>>(),
            Err(e) => {
                // The API refuses such definitions; stored ones are skipped, not guessed at.
                tracing::error!(workspace = %ws, error = %e, "audiences not evaluated");
                continue;
            }
        };
        let mut by_id: BTreeMap<String, AudienceDef> =
            audiences.into_iter().map(|a| (a.id.clone(), a)).collect();
        let audiences: Vec<AudienceDef> = order.iter().filter_map(|id| by_id.remove(id)).collect();
        let mut names: BTreeSet<String> = traits.iter().map(|t| t.def.event.clone()).collect();
        names.extend(audiences.iter().flat_map(|a| a.events.iter().cloned()));
        let reads_profile = audiences.iter().any(|a| a.reads_profile);
        let every_event = audiences.iter().any(|a| a.condition.reads_every_event());
        let ws_rules = rules.remove(&ws).unwrap_or_default();
        let mut ws_seen = seen.remove(&ws).unwrap_or_default();
        ws_seen.sort();
        out.insert(
            ws,
            WorkspaceDefs {
                seen: ws_seen,
                audiences,
                traits,
                names,
                reads_profile,
                every_event,
                rules: ws_rules,
            },
        );
    }
    Ok(out)
}

/// Which definitions to evaluate.
#[derive(Clone, Copy)]
enum Trigger<'a> {
    /// Events of these names arrived.
    Events(&'a BTreeSet<String>),
    /// Everything (a timer, a full computation).
    All,
}

/// What conditions need to know about one profile (the processor and the explain API).
pub struct Loaded {
    pub profile: parcours_core::Profile,
    pub events: Vec<EventFact>,
    pub computed: BTreeMap<String, Value>,
    pub memberships: BTreeSet<String>,
}

/// Every event of a profile (and of those merged into it) as conditions see them.
fn timeline_facts(
    store: &dyn Store,
    ws: &str,
    defs: &WorkspaceDefs,
    profile: &str,
) -> Result<Vec<EventFact>> {
    let timeline = store.timeline(ws, profile, None, i32::MAX as usize)?;
    Ok(facts(&timeline, &defs.names))
}

/// Loads what conditions need to know about a profile (following merges).
pub fn load_profile(
    store: &dyn Store,
    ws: &str,
    defs: &WorkspaceDefs,
    profile: &str,
) -> Result<Option<Loaded>> {
    let Some(profile) = store.profile(ws, profile)? else {
        return Ok(None);
    };
    let events = timeline_facts(store, ws, defs, &profile.id)?;
    let computed = store.computed_values(ws, &profile.id)?;
    let memberships = store
        .memberships(ws, &profile.id)?
        .into_iter()
        .map(|m| m.audience_id)
        .collect();
    Ok(Some(Loaded {
        profile,
        events,
        computed,
        memberships,
    }))
}

/// What one step writes, and the profiles it evaluated.
#[derive(Default)]
struct Step {
    write: AudienceWrite,
    seen: BTreeSet<(String, String)>,
}

/// Re-evaluates one profile and adds what changed to `out`. `now` is the instant evaluated
/// (and the time of the changes); `cause` says why. Only the events some definition names
/// are read (all of them when one reads events of any name).
fn evaluate_profile(
    store: &dyn Store,
    ws: &str,
    defs: &WorkspaceDefs,
    profile_id: &str,
    (now, cause): (Millis, &str),
    trigger: Trigger<'_>,
    out: &mut Step,
) -> Result<()> {
    match store.profile(ws, profile_id)? {
        Some(profile) => evaluate_loaded(
            store,
            ws,
            defs,
            (profile_id, profile),
            (now, cause),
            trigger,
            out,
        ),
        None => Ok(()),
    }
}

/// [`evaluate_profile`] with the profile `profile_id` leads to already read.
fn evaluate_loaded(
    store: &dyn Store,
    ws: &str,
    defs: &WorkspaceDefs,
    (profile_id, profile): (&str, parcours_core::Profile),
    (now, cause): (Millis, &str),
    trigger: Trigger<'_>,
    out: &mut Step,
) -> Result<()> {
    let pid = profile.id.clone();
    // Two ids of one person (a merged one and its winner) are evaluated once per step: the
    // second would not see the first's changes.
    if !out.seen.insert((ws.to_string(), pid.clone())) {
        if pid != profile_id {
            out.write
                .timers
                .push(ReevaluationTimer::new(ws, profile_id, None));
        }
        return Ok(());
    }
    if pid != profile_id {
        // A merged profile's timer: the winner's evaluation takes over.
        out.write
            .timers
            .push(ReevaluationTimer::new(ws, profile_id, None));
    }
    let names: Vec<String> = if defs.every_event {
        Vec::new()
    } else {
        defs.names.iter().cloned().collect()
    };
    let mut inputs = store.audience_inputs(ws, std::slice::from_ref(&pid), &names, 0, true)?;
    let i = inputs.remove(&pid).unwrap_or_default();
    let events = if defs.every_event {
        timeline_facts(store, ws, defs, &pid)?
    } else {
        facts(&i.events, &defs.names)
    };
    let loaded = Loaded {
        profile,
        events,
        computed: i.computed,
        memberships: i.memberships.into_iter().collect(),
    };
    decide(
        ws,
        defs,
        loaded,
        i.timer,
        (now, cause),
        trigger,
        &mut out.write,
    );
    Ok(())
}

/// Evaluates a loaded profile's computed traits and audiences and adds what changed to
/// `write`; `previous` is its timer. No I/O: a full computation runs it on several threads.
fn decide(
    ws: &str,
    defs: &WorkspaceDefs,
    mut l: Loaded,
    previous: Option<Millis>,
    (now, cause): (Millis, &str),
    trigger: Trigger<'_>,
    write: &mut AudienceWrite,
) {
    let pid = l.profile.id.clone();
    let excluded = defs.excludes(&l.profile);
    let affected = |events: &BTreeSet<String>| match trigger {
        Trigger::All => true,
        Trigger::Events(names) => events.iter().any(|n| names.contains(n)),
    };
    let mut next: Option<Millis> = None;
    let mut earliest = |t: Option<Millis>| {
        if let Some(t) = t {
            next = Some(next.map_or(t, |n: Millis| n.min(t)));
        }
    };
    for t in &defs.traits {
        if t.def.kind.workspace_wide() {
            // Scored against every customer by the workspace pass (`AudienceProcessor::wide`).
            continue;
        }
        if let Trigger::Events(names) = trigger {
            if !names.contains(&t.def.event) {
                continue;
            }
        }
        let (value, due) = if !excluded && t.def.scores(l.profile.is_known()) {
            t.def.compute(&l.events, now)
        } else {
            (Value::Null, None)
        };
        earliest(due);
        let value = (!value.is_null() && storable(&value, &t.def.id)).then_some(value);
        if l.computed.get(&t.def.id) != value.as_ref() {
            write.computed.push(ComputedValue {
                workspace_id: ws.into(),
                profile_id: pid.clone(),
                trait_id: t.def.id.clone(),
                value: value.clone(),
            });
            match value {
                Some(v) => l.computed.insert(t.def.id.clone(), v),
                None => l.computed.remove(&t.def.id),
            };
        }
    }
    for a in &defs.audiences {
        if !(a.reads_profile || excluded || affected(&a.events)) {
            continue;
        }
        let subject = defs.subject(&l);
        let verdict = if excluded {
            parcours_core::audience::Verdict {
                matched: false,
                next_change: None,
                condition: String::new(),
                found: String::new(),
                parts: vec![],
            }
        } else {
            a.condition.evaluate(&subject, now)
        };
        // Woken only when the answer changes (what it depends on changes at its own
        // instants, which wake the profile too).
        if !excluded {
            earliest(a.condition.changes_at(&subject, now, &verdict));
        }
        let member = l.memberships.contains(&a.id);
        if verdict.matched != member {
            // An entry is dated when she qualified (the event that made it true), not when it
            // was computed; an exit when it is seen.
            let at = if verdict.matched {
                a.condition.qualified_since(&subject, now)
            } else {
                now
            };
            write.changes.push(MembershipChange {
                id: 0,
                workspace_id: ws.into(),
                audience_id: a.id.clone(),
                profile_id: pid.clone(),
                entered: verdict.matched,
                at,
                cause: cause.into(),
            });
            if verdict.matched {
                l.memberships.insert(a.id.clone());
            } else {
                l.memberships.remove(&a.id);
            }
        }
    }
    let timer = match trigger {
        Trigger::All => next,
        // Definitions not evaluated keep their own instant (a spurious wake-up is harmless:
        // it evaluates everything and sets the exact one).
        Trigger::Events(_) => {
            let kept = previous.filter(|t| *t > now);
            match (next, kept) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
    };
    if timer != previous {
        write.timers.push(ReevaluationTimer::new(ws, pid, timer));
    }
}

/// Whether every store can hold a computed value. One derived from an event stored before
/// ingest refused NUL characters cannot be held by PostgreSQL: it is left out (logged), not
/// allowed to fail every step of the processor.
fn storable(value: &Value, trait_id: &str) -> bool {
    match parcours_core::limits::check_value(value) {
        Ok(()) => true,
        Err(problem) => {
            tracing::warn!(trait_id, %problem, "computed value left out");
            false
        }
    }
}

/// A running full computation of one workspace: it reads the log (the first half of its
/// progress), then evaluates every profile, a page per step (the second half).
struct Recompute {
    versions: Vec<(DefinitionKind, String, i64)>,
    held: Held,
    /// Profiles the real-time path evaluated since the log was read: they may have events
    /// the held ones miss (or a new timer), so they are read in full.
    touched: HashSet<String>,
    /// Where the evaluation is, in storage order.
    after: String,
    done: u64,
    total: u64,
    /// The timers the evaluation changed (profile → next instant), written once every
    /// profile is evaluated, in key order: written page by page, in storage order, they
    /// were random writes that cost more than the evaluation itself.
    timers: Vec<(String, Option<Millis>)>,
    /// Whether every profile is evaluated, and how many of `timers` (then sorted) are written.
    evaluated: bool,
    flushed: usize,
}

/// How often RFM scores and lifetime values are computed again (recency moves with the
/// days, quintiles and the lifetime model with every customer's purchases).
pub const RFM_REFRESH: Millis = 3_600_000;

/// A running workspace-wide pass (an `rfm` or `clv` trait): the log is read, every
/// customer's inputs are gathered, then the values written. Progress counts the three in turn.
enum WidePhase {
    Scan(Vec<WideInput>),
    Write(BTreeMap<String, Value>),
}

struct WideRun {
    version: i64,
    held: Held,
    phase: WidePhase,
    after: String,
    /// Profiles gathered or written in this phase.
    done: u64,
    profiles: u64,
}

impl WideRun {
    /// (done, total) of the whole pass, with every phase counted as `profiles`.
    fn progress(&self) -> (u64, u64) {
        let p = self.profiles.max(self.done);
        let done = match self.phase {
            _ if !self.held.is_read() => (p as f64 * self.held.fraction()) as u64,
            WidePhase::Scan(_) => p + self.done,
            WidePhase::Write(_) => 2 * p + self.done,
        };
        (done, 3 * p)
    }
}

/// Whether an error is about the data at hand (a row that cannot be read, a value the store
/// refuses), so that the same call fails again: the profile or workspace it came from is
/// skipped and reported, and the rest goes on. Other errors (the store is unreachable) fail
/// the step, which is retried.
fn is_data_error(e: &StoreError) -> bool {
    matches!(e, StoreError::Corrupt(_) | StoreError::Rejected(_))
}

/// A profile the real-time path could not evaluate, and why.
type Skipped = Vec<(String, String, StoreError)>;

/// The processor's state between steps.
pub struct AudienceProcessor {
    recompute: BTreeMap<String, Recompute>,
    /// How many events a full computation may hold ([`HELD_MAX`]).
    held_max: usize,
    /// How long a step may evaluate pages of a full computation when no real-time work
    /// waits ([`PAGE_BUDGET`]; one page when there is).
    page_budget: Duration,
    wide: BTreeMap<(String, String), WideRun>,
    /// (workspace, trait) → (version, when) of the last finished workspace-wide pass.
    wide_done: BTreeMap<(String, String), (i64, Millis)>,
    /// Workspaces whose full computation failed on their data, with the versions it was for.
    failed: BTreeMap<String, Vec<(DefinitionKind, String, i64)>>,
    /// Profiles evaluated in real time since it started.
    evaluated: u64,
    /// Full computations waiting to start: their versions, and the place in the log unify
    /// must have applied first.
    starting: BTreeMap<String, (Versions, i64)>,
    health: Option<Arc<Health>>,
    /// Measures the page budget.
    clock: Arc<dyn Clock>,
}

/// What one step did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StepReport {
    /// Profiles taken from the queue.
    pub events: usize,
    pub timers: usize,
    pub recomputed: usize,
    pub published: usize,
    /// The writes were fenced off (a lease moved, a definition changed): step again.
    pub retried: bool,
}

impl StepReport {
    pub fn is_idle(&self) -> bool {
        *self == StepReport::default()
    }
}

impl Default for AudienceProcessor {
    fn default() -> Self {
        AudienceProcessor {
            recompute: BTreeMap::new(),
            held_max: HELD_MAX,
            page_budget: PAGE_BUDGET,
            wide: BTreeMap::new(),
            wide_done: BTreeMap::new(),
            failed: BTreeMap::new(),
            evaluated: 0,
            starting: BTreeMap::new(),
            health: None,
            clock: Arc::new(crate::clock::SystemClock),
        }
    }
}

impl AudienceProcessor {
    /// A processor whose full computations hold at most `max` events (beyond, they read
    /// each profile's events themselves).
    pub fn with_held_max(max: usize) -> Self {
        AudienceProcessor {
            held_max: max,
            ..AudienceProcessor::default()
        }
    }

    /// A processor whose steps evaluate pages of a full computation for at most `budget`
    /// while no real-time work waits (zero: one page per step).
    pub fn with_page_budget(mut self, budget: Duration) -> Self {
        self.page_budget = budget;
        self
    }

    /// Measures its page budget on `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Reports skipped work to a node's health.
    pub fn reporting_to(mut self, health: Arc<Health>) -> Self {
        self.health = Some(health);
        self
    }

    /// Reports a profile or a workspace skipped because of its data.
    fn report_skipped(&self, ws: &str, what: &str, e: &StoreError) {
        let what = format!("{what} of workspace {ws}");
        match &self.health {
            Some(h) => h.set_aside(AUDIENCES, "unreadable_data", &what, &e.to_string()),
            None => tracing::warn!(what, error = %e, "skipped"),
        }
    }

    /// One step of a node alone: every bucket, and the leader's work.
    pub fn step(&mut self, store: &dyn Store, now: Millis, batch: usize) -> Result<StepReport> {
        self.step_as(store, now, batch, None)
    }

    /// Evaluates the profiles waiting in the buckets `owned` (a node and the buckets it
    /// holds; `None`: a node alone, every bucket) and fires their due timers. The leader
    /// (the holder of bucket 0, or a node alone) also advances full computations and RFM
    /// passes and publishes changes to the event log.
    pub fn step_as(
        &mut self,
        store: &dyn Store,
        now: Millis,
        batch: usize,
        owned: Option<(&str, &[u16])>,
    ) -> Result<StepReport> {
        let leader = owned.is_none_or(|(_, buckets)| buckets.contains(&0));
        let defs = load_definitions(store, None)?;
        let place = Place::of(&defs, owned, leader, now);
        let mut report = StepReport::default();
        // Profiles evaluated in real time (events, timers) are read in full by a running
        // full computation.
        let mut skipped = Skipped::new();
        let mut seen = BTreeSet::new();
        match follow_work(store, &defs, (now, batch), &place, &mut skipped) {
            Ok((n, s)) => {
                report.events = n;
                seen = s;
            }
            // A lease moved or a definition changed since they were read: again, afresh.
            Err(StoreError::Conflict(why)) => {
                tracing::debug!(why, "audience evaluations fenced off; retrying");
                report.retried = true;
            }
            Err(e) => return Err(e),
        }
        if !report.retried {
            match fire_timers(store, &defs, (now, batch), &place, &mut skipped) {
                Ok((n, fired)) => {
                    report.timers = n;
                    seen.extend(fired);
                }
                Err(StoreError::Conflict(why)) => {
                    tracing::debug!(why, "audience timers fenced off; retrying");
                    report.retried = true;
                }
                Err(e) => return Err(e),
            }
        }
        for (ws, profile, e) in &skipped {
            self.report_skipped(ws, &format!("the evaluation of profile {profile}"), e);
        }
        self.evaluated += (report.events + report.timers) as u64;
        if !leader {
            return Ok(report);
        }
        for (ws, profile) in seen {
            if let Some(r) = self.recompute.get_mut(&ws) {
                r.touched.insert(profile);
            }
        }
        let idle = report.events == 0 && report.timers == 0;
        report.recomputed = self.recompute(store, &defs, now, idle)?;
        report.recomputed += self.wide(store, &defs, now)?;
        report.published = publish(store, &defs, now)?;
        Ok(report)
    }

    /// How many profiles this processor evaluated in real time (events and timers).
    pub fn evaluated(&self) -> u64 {
        self.evaluated
    }

    fn recompute(
        &mut self,
        store: &dyn Store,
        all: &BTreeMap<String, WorkspaceDefs>,
        now: Millis,
        idle: bool,
    ) -> Result<usize> {
        self.recompute.retain(|ws, _| all.contains_key(ws));
        self.starting.retain(|ws, _| all.contains_key(ws));
        self.failed.retain(|ws, _| all.contains_key(ws));
        let mut work = 0;
        for (ws, defs) in all {
            // Failed on its data: not tried again until a definition changes.
            if self.failed.get(ws).is_some_and(|v| *v == defs.stale()) {
                continue;
            }
            // One workspace's failure is its own: the others go on.
            match self.recompute_workspace(store, ws, defs, now, idle) {
                Ok(n) => work += n,
                Err(e) if is_data_error(&e) => {
                    self.recompute.remove(ws);
                    self.failed.insert(ws.clone(), defs.stale());
                    self.report_skipped(ws, "full computation", &e);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(work)
    }

    /// Advances one workspace's full computation; returns how much it did.
    fn recompute_workspace(
        &mut self,
        store: &dyn Store,
        ws: &String,
        defs: &WorkspaceDefs,
        now: Millis,
        idle: bool,
    ) -> Result<usize> {
        let no_names = BTreeSet::new();
        let mut work = 0;
        let stale = defs.stale();
        if stale.is_empty() {
            self.recompute.remove(ws);
            return Ok(0);
        }
        if self.recompute.get(ws).is_none_or(|r| r.versions != stale) {
            // A new or changed definition: start over (evaluations are idempotent), once
            // unify has applied every event committed before it was seen. Unify queues nothing
            // for a workspace without definitions, so the computation must hold those events.
            let target = match self.starting.get(ws) {
                Some((versions, target)) if *versions == stale => *target,
                _ => {
                    let target = store.last_seq()?;
                    self.starting.insert(ws.clone(), (stale.clone(), target));
                    target
                }
            };
            if store.processed_seq()? < target {
                return Ok(0);
            }
            self.starting.remove(ws);
            self.recompute.insert(
                ws.clone(),
                Recompute {
                    versions: stale.clone(),
                    // Nothing held when each profile's timeline is read anyway.
                    held: Held::start(
                        store,
                        ws,
                        if defs.every_event {
                            &no_names
                        } else {
                            &defs.names
                        },
                        self.held_max,
                    )?,
                    touched: HashSet::new(),
                    after: String::new(),
                    done: 0,
                    total: store.profile_count(ws)?,
                    timers: Vec::new(),
                    evaluated: false,
                    flushed: 0,
                },
            );
        }
        let state = self.recompute.get_mut(ws).expect("just inserted");
        let progress = |state: &Recompute, finished: bool, write: &mut AudienceWrite| {
            let half = state.total.max(state.done);
            let done = if finished {
                half + state.done
            } else if state.held.is_read() {
                // Short of the end while timers remain to be written.
                (half + state.done).min((2 * half).saturating_sub(1))
            } else {
                (half as f64 * state.held.fraction()) as u64
            };
            for (kind, id, version) in &stale {
                let computed = if finished {
                    *version
                } else {
                    defs.computed_version(*kind, id)
                };
                let total = if finished { done } else { 2 * half };
                write.progress.push(ComputationProgress {
                    workspace_id: ws.clone(),
                    kind: *kind,
                    id: id.clone(),
                    computed_version: computed,
                    done,
                    total,
                });
            }
        };
        if !state.held.is_read() || !state.held.is_matched() {
            if !state.held.is_read() {
                state.held.read_next(store, ws)?;
            } else {
                state.held.match_next(store, ws)?;
            }
            let mut write = AudienceWrite::default();
            progress(state, false, &mut write);
            store.record(&write)?;
            return Ok(1);
        }
        // One page, or while no real-time work waits, pages until the budget is spent
        // (written together: fewer steps and commits).
        let started = self.clock.monotonic();
        let mut write = AudienceWrite::default();
        while !state.evaluated {
            let page = evaluate_page(store, ws, defs, state, now)?;
            write.changes.extend(page.write.changes);
            write.computed.extend(page.write.computed);
            state.timers.extend(
                page.write
                    .timers
                    .into_iter()
                    .map(|t| (t.profile_id, t.due_at)),
            );
            state.done += page.count as u64;
            state.after = page.next;
            work += page.count.max(1);
            if page.finished {
                state.evaluated = true;
                state.timers.sort_unstable();
            }
            if page.finished
                || !idle
                || self.clock.monotonic().saturating_sub(started) >= self.page_budget
            {
                break;
            }
        }
        if state.evaluated {
            let chunk = if idle { TIMER_CHUNK } else { TIMER_CHUNK / 10 };
            write_timers(store, ws, state, chunk, &mut write)?;
            work += 1;
        }
        let finished = state.evaluated && state.flushed == state.timers.len();
        if finished {
            // After a replay, ids that are no longer profiles (it retired them without
            // following each) leave their audiences before the computation counts as done.
            let replayed = store.audience_cursor(REPLAYED)?;
            let swept = format!("{REPLAYED}:{ws}");
            if replayed > store.audience_cursor(&swept)? {
                store.record(&std::mem::take(&mut write))?;
                sweep_orphans(store, ws, now)?;
                write.cursors.push(CursorMove::new(swept, replayed));
            }
        }
        progress(state, finished, &mut write);
        store.record(&write)?;
        if finished {
            self.recompute.remove(ws);
        }
        Ok(work)
    }
}

impl AudienceProcessor {
    /// Advances the workspace-wide pass of one `rfm` or `clv` trait by a page of profiles
    /// (the cause of the membership changes it makes is the trait's id). A pass runs when the
    /// trait is new or changed and then every [`RFM_REFRESH`]: it gathers every customer's
    /// inputs, scores them together (`wide_scores`), then writes the scores that changed and
    /// re-evaluates those customers' audiences.
    fn wide(
        &mut self,
        store: &dyn Store,
        all: &BTreeMap<String, WorkspaceDefs>,
        now: Millis,
    ) -> Result<usize> {
        let live: BTreeSet<(String, String)> = all
            .iter()
            .flat_map(|(ws, d)| {
                d.traits
                    .iter()
                    .filter(|t| t.def.kind.workspace_wide())
                    .map(move |t| (ws.clone(), t.def.id.clone()))
            })
            .collect();
        self.wide.retain(|k, _| live.contains(k));
        self.wide_done.retain(|k, _| live.contains(k));
        for key in live {
            let (ws, id) = (&key.0, &key.1);
            let defs = &all[ws];
            let Some(t) = defs.traits.iter().find(|t| &t.def.id == id) else {
                continue;
            };
            let due = match self.wide_done.get(&key) {
                Some((v, at)) => *v != t.version || now - at >= RFM_REFRESH,
                None => true,
            };
            if !due && !self.wide.contains_key(&key) {
                continue;
            }
            if self.wide.get(&key).is_none_or(|r| r.version != t.version) {
                self.wide.insert(
                    key.clone(),
                    WideRun {
                        version: t.version,
                        held: Held::start(store, ws, &defs.names, self.held_max)?,
                        phase: WidePhase::Scan(Vec::new()),
                        after: String::new(),
                        done: 0,
                        profiles: store.profile_count(ws)?,
                    },
                );
            }
            let run = self.wide.get_mut(&key).expect("just inserted");
            let progress = |run: &WideRun, finished: bool, write: &mut AudienceWrite| {
                let (done, total) = run.progress();
                write.progress.push(ComputationProgress {
                    workspace_id: ws.clone(),
                    kind: DefinitionKind::ComputedTrait,
                    id: id.clone(),
                    computed_version: if finished {
                        t.version
                    } else {
                        t.computed_version
                    },
                    done,
                    total: if finished { done } else { total },
                });
            };
            if !run.held.is_read() {
                run.held.read_next(store, ws)?;
                let mut write = AudienceWrite::default();
                progress(run, false, &mut write);
                store.record(&write)?;
                return Ok(1);
            }
            let page = store.profiles_page(ws, &run.after, RECOMPUTE_PAGE)?;
            let finished = page.len() < RECOMPUTE_PAGE;
            run.done += page.len() as u64;
            if let Some(last) = page.last() {
                run.after = last.id.clone();
            }
            let count = page.len();
            let known = run.held.known_upto();
            let ids: Vec<String> = page.iter().map(|p| p.id.clone()).collect();
            match &mut run.phase {
                WidePhase::Scan(inputs) => {
                    let names = [t.def.event.clone()];
                    // Scored against known customers only, unless the trait says otherwise.
                    let ids: Vec<String> = page
                        .iter()
                        .filter(|p| t.def.scores(p.is_known()) && !defs.excludes(p))
                        .map(|p| p.id.clone())
                        .collect();
                    let read = store.audience_inputs(ws, &ids, &names, known, true)?;
                    for (pid, i) in &read {
                        let facts = run.held.facts(&i.known, &i.events);
                        if let Some(input) = t.def.wide_input(pid, &facts, now) {
                            inputs.push(input);
                        }
                    }
                    if finished {
                        let scores = wide_scores(inputs, now);
                        run.phase = WidePhase::Write(scores);
                        run.after = String::new();
                        run.done = 0;
                    }
                    let mut write = AudienceWrite::default();
                    progress(run, false, &mut write);
                    store.record(&write)?;
                }
                WidePhase::Write(scores) => {
                    // Only customers whose scores changed are read in full and re-evaluated
                    // (an hourly refresh mostly changes few).
                    let stored = store.audience_inputs(ws, &ids, &[], known, true)?;
                    let changed: Vec<_> = page
                        .into_iter()
                        .filter(|p| {
                            stored.get(&p.id).and_then(|i| i.computed.get(id)) != scores.get(&p.id)
                        })
                        .collect();
                    let ids: Vec<String> = changed.iter().map(|p| p.id.clone()).collect();
                    let names: Vec<String> = defs.names.iter().cloned().collect();
                    let mut read = store.audience_inputs(ws, &ids, &names, known, true)?;
                    let mut write = AudienceWrite::default();
                    for profile in changed {
                        let mut i = read.remove(&profile.id).unwrap_or_default();
                        let value = scores.get(&profile.id).cloned();
                        write.computed.push(ComputedValue {
                            workspace_id: ws.clone(),
                            profile_id: profile.id.clone(),
                            trait_id: id.clone(),
                            value: value.clone(),
                        });
                        match value {
                            Some(v) => i.computed.insert(id.clone(), v),
                            None => i.computed.remove(id),
                        };
                        let events = if defs.every_event {
                            timeline_facts(store, ws, defs, &profile.id)?
                        } else {
                            run.held.facts(&i.known, &i.events)
                        };
                        let loaded = Loaded {
                            events,
                            computed: i.computed,
                            memberships: i.memberships.into_iter().collect(),
                            profile,
                        };
                        decide(
                            ws,
                            defs,
                            loaded,
                            i.timer,
                            (now, id.as_str()),
                            Trigger::All,
                            &mut write,
                        );
                    }
                    progress(run, finished, &mut write);
                    store.record(&write)?;
                    // A full computation running meanwhile reads them in full, and keeps
                    // the timers just written if earlier than its own.
                    if let Some(r) = self.recompute.get_mut(ws) {
                        r.touched.extend(ids);
                    }
                    if finished {
                        self.wide.remove(&key);
                        self.wide_done.insert(key.clone(), (t.version, now));
                    }
                }
            }
            // One page per step: real-time work goes on between pages.
            return Ok(count.max(1));
        }
        Ok(0)
    }
}

/// Adds the next `chunk` of a full computation's timers to `write`. A profile the real-time
/// path evaluated meanwhile keeps the earlier of its stored timer and the computed one (a
/// timer that comes early only makes the profile evaluated again, which sets the exact one).
fn write_timers(
    store: &dyn Store,
    ws: &str,
    state: &mut Recompute,
    chunk: usize,
    write: &mut AudienceWrite,
) -> Result<()> {
    let end = (state.flushed + chunk).min(state.timers.len());
    for (profile, due) in &state.timers[state.flushed..end] {
        let due = if state.touched.contains(profile) {
            match (*due, store.timer_of(ws, profile)?) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        } else {
            *due
        };
        write
            .timers
            .push(ReevaluationTimer::new(ws, profile.clone(), due));
    }
    state.flushed = end;
    Ok(())
}

/// One page of a full computation.
struct Page {
    write: AudienceWrite,
    count: usize,
    next: String,
    finished: bool,
}

/// Evaluates every definition for the next page of live profiles, spread over the cores:
/// each thread reads its share of the page (consecutive in storage order) and its inputs in
/// one go, and evaluates them.
fn evaluate_page(
    store: &dyn Store,
    ws: &str,
    defs: &WorkspaceDefs,
    state: &Recompute,
    now: Millis,
) -> Result<Page> {
    let (held, touched, position) = (&state.held, &state.touched, state.after.as_str());
    let names: Vec<String> = defs.names.iter().cloned().collect();
    let names = &names;
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let share = RECOMPUTE_PAGE.div_ceil(threads);
    type Part = (AudienceWrite, usize, String);
    let parts: Vec<Result<Part>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let (rows, next) =
                        store.profiles_in_storage_order(ws, position, (t * share, share), false)?;
                    let count = rows.len();
                    let part: Vec<_> = rows.into_iter().filter_map(|r| r.profile).collect();
                    // The held events of each profile are known, except for profiles the
                    // real-time path evaluated since (or when none are held): those are
                    // read in full.
                    let (full, snapshot): (Vec<String>, Vec<String>) = part
                        .iter()
                        .map(|p| p.id.clone())
                        .partition(|id| held.known_upto() == 0 || touched.contains(id));
                    let read = if defs.every_event { &[][..] } else { names };
                    let mut inputs =
                        store.audience_inputs(ws, &full, read, held.known_upto(), true)?;
                    inputs.extend(store.audience_inputs(ws, &snapshot, &[], 0, false)?);
                    let full: HashSet<String> = full.into_iter().collect();
                    let mut write = AudienceWrite::default();
                    for profile in part {
                        let i = inputs.remove(&profile.id).unwrap_or_default();
                        let (events, timer) = if defs.every_event {
                            (timeline_facts(store, ws, defs, &profile.id)?, i.timer)
                        } else if full.contains(&profile.id) {
                            (held.facts(&i.known, &i.events), i.timer)
                        } else {
                            (held.owned_facts(&profile.id), held.timer(&profile.id))
                        };
                        let loaded = Loaded {
                            events,
                            computed: i.computed,
                            memberships: i.memberships.into_iter().collect(),
                            profile,
                        };
                        decide(
                            ws,
                            defs,
                            loaded,
                            timer,
                            (now, "recompute"),
                            Trigger::All,
                            &mut write,
                        );
                    }
                    Ok((write, count, next))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("an evaluation thread panicked"))
            .collect()
    });
    let mut page = Page {
        write: AudienceWrite::default(),
        count: 0,
        next: position.to_string(),
        finished: false,
    };
    for part in parts {
        let (w, count, next) = part?;
        page.write.changes.extend(w.changes);
        page.write.computed.extend(w.computed);
        page.write.timers.extend(w.timers);
        page.count += count;
        // A short share is the end; the position is the last full share's.
        if count < share {
            page.finished = true;
        } else if !page.finished {
            page.next = next;
        }
    }
    Ok(page)
}

/// Where a step works, and what its writes check before they commit.
struct Place {
    scope: WorkScope,
    fence: Option<Fence>,
}

impl Place {
    /// A node's place: its buckets; the leader (bucket 0's holder) also takes whole the
    /// workspaces whose full computation runs, which the other nodes leave to it (the
    /// computation knows which profiles were evaluated meanwhile only if it evaluated them).
    fn of(
        all: &BTreeMap<String, WorkspaceDefs>,
        owned: Option<(&str, &[u16])>,
        leader: bool,
        now: Millis,
    ) -> Place {
        let Some((node, buckets)) = owned else {
            return Place {
                scope: WorkScope::everything(),
                fence: None,
            };
        };
        let computing: Vec<String> = all
            .iter()
            .filter(|(_, d)| !d.stale().is_empty())
            .map(|(ws, _)| ws.clone())
            .collect();
        let (whole, except) = if leader {
            (computing, Vec::new())
        } else {
            (Vec::new(), computing)
        };
        Place {
            scope: WorkScope {
                buckets: buckets.to_vec(),
                whole,
                except,
            },
            fence: Some(Fence {
                node: node.to_string(),
                buckets: buckets.to_vec(),
                now,
            }),
        }
    }

    /// Adds the checks to a write of evaluations of `workspaces`: the leases still held,
    /// the definitions unchanged (a full computation may have started meanwhile, which
    /// evaluates its workspace alone).
    fn guard<'a>(
        &self,
        all: &BTreeMap<String, WorkspaceDefs>,
        workspaces: impl IntoIterator<Item = &'a str>,
        write: &mut AudienceWrite,
    ) {
        write.fence = self.fence.clone();
        let workspaces: BTreeSet<&str> = workspaces.into_iter().collect();
        write.definitions_seen = workspaces
            .into_iter()
            .map(|ws| DefinitionsSeen {
                workspace_id: ws.to_string(),
                definitions: all.get(ws).map(|d| d.seen.clone()).unwrap_or_default(),
            })
            .collect();
    }
}

/// Evaluates the profiles waiting in this node's scope, as the unify processor queued them
/// (the event names each was assigned, or everything for a profile it reshaped): a retired
/// id leaves every audience. All in one transaction, which settles the rows evaluated.
/// Returns how many rows it took.
fn follow_work(
    store: &dyn Store,
    all: &BTreeMap<String, WorkspaceDefs>,
    (now, batch): (Millis, usize),
    place: &Place,
    skipped: &mut Skipped,
) -> Result<(usize, BTreeSet<(String, String)>)> {
    let rows = store.audience_work(&place.scope, batch)?;
    if rows.is_empty() {
        return Ok((0, BTreeSet::new()));
    }
    let mut out = Step::default();
    let mut published: BTreeMap<&str, Vec<AcceptedEvent>> = BTreeMap::new();
    for r in &rows {
        let ws = r.workspace_id.as_str();
        out.write.settled.push(SettledWork {
            workspace_id: r.workspace_id.clone(),
            profile_id: r.profile_id.clone(),
            version: r.version,
        });
        // A workspace without definitions has nothing to evaluate (its first definition
        // is computed in full).
        let Some(defs) = all.get(ws) else {
            continue;
        };
        let names: BTreeSet<String> = r.names.iter().cloned().collect();
        // Events no definition reads, of a person whose profile none reads: nothing changes
        // (an id that retired has a row of its own, which evaluates everything).
        if !r.everything && !defs.reads_profile && names.is_disjoint(&defs.names) {
            continue;
        }
        // What counts is the state now: an id retired and then given back (an undo gives a
        // merged-away person their id again) is live, and evaluated as such.
        let (live, successor) = match store.profile(ws, &r.profile_id)? {
            Some(p) if p.id == r.profile_id => (Some(p), None),
            other => (None, other.map(|p| p.id)),
        };
        let Some(profile) = live else {
            let cause = match &successor {
                Some(s) => format!("merged into {s}"),
                None => "retired".to_string(),
            };
            retire(store, ws, &r.profile_id, (now, &cause), &mut out.write)?;
            if r.retired {
                // Destinations and journeys that hold the old id follow it to the new one.
                published.entry(ws).or_default().push(internal_event(
                    PROFILE_RETIRED,
                    format!("profile-retired-{}-{}", r.profile_id, r.version),
                    json!({"profile_id": r.profile_id, "successor_profile_id": successor}),
                    (r.at, now),
                ));
            }
            continue;
        };
        let trigger = if r.everything {
            Trigger::All
        } else {
            Trigger::Events(&names)
        };
        let evaluated = evaluate_loaded(
            store,
            ws,
            defs,
            (&r.profile_id, profile),
            (now, &r.cause),
            trigger,
            &mut out,
        );
        match evaluated {
            Err(e) if is_data_error(&e) => skipped.push((ws.to_string(), r.profile_id.clone(), e)),
            other => other?,
        }
    }
    // Before the rows are settled: a retry after a crash is a duplicate the log drops.
    append_internal(store, published)?;
    place.guard(
        all,
        rows.iter().map(|r| r.workspace_id.as_str()),
        &mut out.write,
    );
    store.record(&out.write)?;
    Ok((rows.len(), out.seen))
}

/// Re-evaluates profiles in this node's scope whose timer is due, at the instant it was due.
fn fire_timers(
    store: &dyn Store,
    all: &BTreeMap<String, WorkspaceDefs>,
    (now, batch): (Millis, usize),
    place: &Place,
    skipped: &mut Skipped,
) -> Result<(usize, BTreeSet<(String, String)>)> {
    let due = store.due_timers(now, &place.scope, batch)?;
    if due.is_empty() {
        return Ok((0, BTreeSet::new()));
    }
    let mut out = Step::default();
    for t in &due {
        match all.get(&t.workspace_id) {
            Some(defs) => {
                let evaluated = evaluate_profile(
                    store,
                    &t.workspace_id,
                    defs,
                    &t.profile_id,
                    (t.due_at, "time"),
                    Trigger::All,
                    &mut out,
                );
                match evaluated {
                    // The timer is cleared below: the next event wakes the profile again.
                    Err(e) if is_data_error(&e) => {
                        skipped.push((t.workspace_id.clone(), t.profile_id.clone(), e))
                    }
                    other => other?,
                }
            }
            None => out.write.timers.push(ReevaluationTimer::new(
                t.workspace_id.clone(),
                t.profile_id.clone(),
                None,
            )),
        }
        // The evaluation set the next instant if there is one; make sure this one is gone.
        if !out
            .write
            .timers
            .iter()
            .any(|r| r.workspace_id == t.workspace_id && r.profile_id == t.profile_id)
        {
            out.write.timers.push(ReevaluationTimer::new(
                t.workspace_id.clone(),
                t.profile_id.clone(),
                None,
            ));
        }
    }
    place.guard(
        all,
        due.iter().map(|t| t.workspace_id.as_str()),
        &mut out.write,
    );
    store.record(&out.write)?;
    Ok((due.len(), out.seen))
}

/// Takes an id that no longer names a live profile out of everything it held: each
/// membership ends (an exit, published like any other, so a destination that received the id
/// receives its removal), its computed values and its timer go.
fn retire(
    store: &dyn Store,
    ws: &str,
    profile: &str,
    (now, cause): (Millis, &str),
    write: &mut AudienceWrite,
) -> Result<()> {
    for m in store.memberships(ws, profile)? {
        write.changes.push(MembershipChange {
            id: 0,
            workspace_id: ws.into(),
            audience_id: m.audience_id,
            profile_id: profile.into(),
            entered: false,
            at: now,
            cause: cause.into(),
        });
    }
    for trait_id in store.computed_values(ws, profile)?.into_keys() {
        write.computed.push(ComputedValue {
            workspace_id: ws.into(),
            profile_id: profile.into(),
            trait_id,
            value: None,
        });
    }
    write.timers.push(ReevaluationTimer::new(ws, profile, None));
    Ok(())
}

/// Retires every id of a workspace that holds memberships, computed values or a timer but
/// is no longer a live profile (after a replay, which rebuilds profiles without following
/// each retirement). Returns how many.
fn sweep_orphans(store: &dyn Store, ws: &str, now: Millis) -> Result<usize> {
    let mut after = String::new();
    let mut swept = 0;
    loop {
        let page = store.orphans(ws, &after, 1000)?;
        let Some(last) = page.last().cloned() else {
            return Ok(swept);
        };
        let mut write = AudienceWrite::default();
        for id in &page {
            retire(store, ws, id, (now, "retired"), &mut write)?;
        }
        store.record(&write)?;
        swept += page.len();
        after = last;
    }
}

/// A track event of the internal source (it names no person, so it never changes a
/// profile); its `messageId` makes a retry a duplicate.
fn internal_event(
    event: &str,
    message_id: String,
    properties: Value,
    (timestamp, now): (Millis, Millis),
) -> AcceptedEvent {
    let body = json!({
        "type": "track",
        "event": event,
        "messageId": message_id,
        "properties": properties,
        "context": {"library": {"name": "parcours"}},
    });
    AcceptedEvent {
        message_id,
        kind: EventType::Track,
        event: Some(event.into()),
        user_id: None,
        anonymous_id: None,
        timestamp,
        received_at: now,
        channel: Channel::Server,
        body: body.to_string(),
    }
}

/// Appends internal events, per workspace, far enough back in the dedup window to drop any
/// retry of them.
fn append_internal(store: &dyn Store, events: BTreeMap<&str, Vec<AcceptedEvent>>) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let batches: Vec<IngestBatch> = events
        .into_iter()
        .map(|(ws, events)| IngestBatch {
            workspace_id: ws.into(),
            source_id: INTERNAL_SOURCE.into(),
            events,
            quarantined: Vec::new(),
        })
        .collect();
    store.append(&batches, 0)?;
    Ok(())
}

/// Writes membership changes to the event log. The `messageId` comes from the change, so a
/// retry after a crash is a duplicate the log drops.
fn publish(store: &dyn Store, all: &BTreeMap<String, WorkspaceDefs>, now: Millis) -> Result<usize> {
    let cursor = store.audience_cursor(PUBLISHED)?;
    let changes = store.changes_after(cursor, 1000)?;
    let Some(last) = changes.last().map(|c| c.id) else {
        return Ok(0);
    };
    let mut batches: BTreeMap<&str, Vec<AcceptedEvent>> = BTreeMap::new();
    for c in &changes {
        let name = all
            .get(&c.workspace_id)
            .and_then(|d| d.audience(&c.audience_id))
            .map_or(c.audience_id.as_str(), |a| a.name.as_str());
        let event = if c.entered {
            AUDIENCE_ENTERED
        } else {
            AUDIENCE_EXITED
        };
        let properties = json!({
            "audience_id": c.audience_id,
            "audience_name": name,
            "profile_id": c.profile_id,
            "cause": c.cause,
        });
        batches
            .entry(c.workspace_id.as_str())
            .or_default()
            .push(internal_event(
                event,
                format!("audience-change-{}", c.id),
                properties,
                (c.at, now),
            ));
    }
    append_internal(store, batches)?;
    store.record(&AudienceWrite {
        cursors: vec![CursorMove::new(PUBLISHED, last)],
        ..AudienceWrite::default()
    })?;
    Ok(changes.len())
}

/// The processor's name in health reports.
pub const AUDIENCES: &str = "audiences";

/// The processor's place in the log: every event unify applied up to it has been evaluated
/// (the earliest event still waiting, less one).
pub fn position(store: &dyn Store) -> Result<i64> {
    let applied = store.processed_seq()?;
    Ok(match store.earliest_audience_work()? {
        Some(first) => (first - 1).min(applied),
        None => applied,
    })
}

impl crate::runner::Processor for AudienceProcessor {
    fn name(&self) -> &'static str {
        AUDIENCES
    }

    /// In a cluster, every node evaluates the profiles of its buckets; the holder of bucket
    /// 0 also runs full computations and publishes.
    fn placement(&self) -> crate::runner::Placement {
        crate::runner::Placement::PerBucket
    }

    fn step(&mut self, cx: &crate::runner::StepContext) -> Result<usize> {
        let r = AudienceProcessor::step_as(self, cx.store, cx.now, 2_000, cx.owned)?;
        metrics::counter!("parcours_audience_events_total").increment(r.events as u64);
        metrics::counter!("parcours_audience_changes_published_total")
            .increment(r.published as u64);
        Ok(if r.is_idle() {
            0
        } else {
            (r.events + r.timers + r.recomputed + r.published).max(1)
        })
    }
}

/// Forgets every profile waiting for evaluation (a benchmark starts where a running node
/// would be, so that only the new definitions are computed).
pub fn forget_waiting(store: &dyn Store) -> Result<()> {
    loop {
        let rows = store.audience_work(&WorkScope::everything(), 10_000)?;
        if rows.is_empty() {
            return Ok(());
        }
        store.record(&AudienceWrite {
            settled: rows
                .into_iter()
                .map(|r| SettledWork {
                    workspace_id: r.workspace_id,
                    profile_id: r.profile_id,
                    version: r.version,
                })
                .collect(),
            ..AudienceWrite::default()
        })?;
    }
}
