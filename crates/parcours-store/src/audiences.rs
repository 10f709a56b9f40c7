//! The audiences port: audience, computed-trait and destination definitions, memberships
//! with their change log, computed values, and the write set of an audience step.

use parcours_core::time::Millis;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::*;

/// A stored definition's document as both adapters read it: one that cannot be read (saved
/// before definitions were checked against every reader's limits) is `null`, which the
/// engine skips and the API shows as unreadable, instead of failing every read of every
/// definition of every workspace.
pub fn definition_doc(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// What a definition defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DefinitionKind {
    Audience,
    ComputedTrait,
    /// Where membership changes are sent (a webhook).
    Destination,
}

impl DefinitionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DefinitionKind::Audience => "audience",
            DefinitionKind::ComputedTrait => "computed_trait",
            DefinitionKind::Destination => "destination",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "audience" => Some(DefinitionKind::Audience),
            "computed_trait" => Some(DefinitionKind::ComputedTrait),
            "destination" => Some(DefinitionKind::Destination),
            _ => None,
        }
    }
}

/// The name of a destination's position in the membership change log (see
/// [`crate::Audiences::audience_cursor`]). Deleting the destination deletes it.
pub fn destination_cursor(workspace: &str, id: &str) -> String {
    format!("destination:{workspace}:{id}")
}

/// The outbox lane of a destination's webhook calls. Deleting the destination deletes its
/// rows.
pub fn destination_lane(id: &str) -> String {
    format!("webhook:{id}")
}

/// An audience, a computed trait or a destination, as stored. `doc` is the definition itself (JSON); the
/// store does not read it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Definition {
    pub workspace_id: String,
    pub kind: DefinitionKind,
    pub id: String,
    pub doc: Value,
    /// Bumped by every change of the definition.
    pub version: i64,
    /// The version every profile has been evaluated against (a full computation finished).
    pub computed_version: i64,
    /// Progress of the running full computation: profiles done out of total.
    pub done: u64,
    pub total: u64,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// A profile's membership of an audience.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Membership {
    pub audience_id: String,
    pub profile_id: String,
    pub since: Millis,
}

/// A profile entering or leaving an audience.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MembershipChange {
    /// Position in the change log (assigned by the store; ignored when recording).
    pub id: i64,
    pub workspace_id: String,
    pub audience_id: String,
    pub profile_id: String,
    pub entered: bool,
    pub at: Millis,
    /// What caused it: an event's `messageId`, `time` (a window passed), `recompute`.
    pub cause: String,
}

/// The bucket whose owner evaluates a profile's audiences: that of its id, so that one node
/// at a time evaluates each profile, whatever buckets its events came from.
pub fn profile_bucket(workspace: &str, profile: &str) -> u16 {
    parcours_core::bucket::of(workspace, Some(profile), None)
}

/// A profile the unify processor queues for audience evaluation, in the transaction that
/// changed it: it was assigned an event, or reshaped (created, merged, re-derived, undone),
/// or its id retired. Several for one profile fold into one ([`QueuedProfile::fold`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueuedProfile {
    pub profile_id: String,
    /// The names of the events it was assigned (what the evaluation reads and decides on).
    pub names: Vec<String>,
    /// Every definition is evaluated (its events changed, or it recorded consent).
    pub everything: bool,
    /// The id no longer names a live profile: it leaves every audience, and destinations
    /// that hold it are told where it went.
    pub retired: bool,
    /// The event that caused it (its place in the log), and its `messageId`: the cause the
    /// membership changes it brings name.
    pub seq: i64,
    pub cause: String,
}

impl QueuedProfile {
    /// An event assigned to a profile.
    pub fn event(profile: &str, seq: i64, name: Option<&str>, cause: &str) -> Self {
        QueuedProfile {
            profile_id: profile.into(),
            names: name.map(str::to_string).into_iter().collect(),
            everything: false,
            retired: false,
            seq,
            // Stored as text: no NUL (a messageId stored before ingest refused them).
            cause: cause.replace('\0', ""),
        }
    }

    /// A live profile whose events changed: evaluated in full.
    pub fn reshaped(profile: &str, seq: i64, cause: &str) -> Self {
        QueuedProfile {
            everything: true,
            ..QueuedProfile::event(profile, seq, None, cause)
        }
    }

    /// An id that no longer names a profile.
    pub fn retired(profile: &str, seq: i64, cause: &str) -> Self {
        QueuedProfile {
            retired: true,
            ..QueuedProfile::reshaped(profile, seq, cause)
        }
    }

    /// Folds rows of the same profiles into one each (in first-appearance order): names
    /// unite, flags add up, the earliest event is kept as the place and the latest as the
    /// cause.
    pub fn fold(rows: Vec<QueuedProfile>) -> Vec<QueuedProfile> {
        let mut out: Vec<QueuedProfile> = Vec::with_capacity(rows.len());
        let mut at: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for r in rows {
            match at.get(&r.profile_id) {
                Some(&i) => out[i].absorb(r),
                None => {
                    at.insert(r.profile_id.clone(), out.len());
                    out.push(r);
                }
            }
        }
        out
    }

    /// Adds a later row of the same profile to this one.
    pub fn absorb(&mut self, later: QueuedProfile) {
        for n in later.names {
            if !self.names.contains(&n) {
                self.names.push(n);
            }
        }
        self.names.sort();
        self.everything |= later.everything;
        self.retired |= later.retired;
        self.seq = match (self.seq, later.seq) {
            (0, s) | (s, 0) => s,
            (a, b) => a.min(b),
        };
        self.cause = later.cause;
    }
}

/// A profile waiting for audience evaluation ([`Audiences::audience_work`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AudienceWork {
    pub workspace_id: String,
    pub profile_id: String,
    /// [`profile_bucket`] of the profile.
    pub bucket: u16,
    /// What was queued since the last evaluation, folded.
    pub names: Vec<String>,
    pub everything: bool,
    pub retired: bool,
    /// The earliest event not yet evaluated (how far behind the audiences are).
    pub first_seq: i64,
    pub cause: String,
    pub at: Millis,
    /// Bumped by every queuing: an evaluation settles the row only if it is unchanged
    /// ([`SettledWork`]).
    pub version: i64,
}

/// Which waiting work a node takes: its buckets, plus whole workspaces it evaluates alone
/// (a full computation runs for them), minus workspaces another node evaluates alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkScope {
    pub buckets: Vec<u16>,
    pub whole: Vec<String>,
    pub except: Vec<String>,
}

impl WorkScope {
    /// Every bucket of every workspace (a node alone).
    pub fn everything() -> Self {
        WorkScope {
            buckets: parcours_core::bucket::all(),
            ..WorkScope::default()
        }
    }
}

/// A waiting row evaluated: removed if it is still at `version` (otherwise more came in
/// meanwhile, and it stays for the next evaluation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettledWork {
    pub workspace_id: String,
    pub profile_id: String,
    pub version: i64,
}

/// Buckets a node must still hold when a write commits (see
/// [`crate::ProjectionTx::fence`]); otherwise the write fails with a conflict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub node: String,
    pub buckets: Vec<u16>,
    pub now: Millis,
}

/// One audience or computed trait as an evaluation saw it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DefinitionVersion {
    pub kind: DefinitionKind,
    pub id: String,
    pub version: i64,
    /// Whether its full computation had finished (`computed_version >= version`).
    pub computed: bool,
}

/// The audiences and computed traits of a workspace as an evaluation saw them: its write
/// fails with a conflict if they changed before it commits (a full computation may have
/// started, which evaluates the workspace alone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionsSeen {
    pub workspace_id: String,
    /// In (kind, id) order.
    pub definitions: Vec<DefinitionVersion>,
}

impl DefinitionsSeen {
    /// Whether the stored definitions, `(kind, id, version, computed_version)` in (kind, id)
    /// order, are the ones seen.
    pub fn still(&self, stored: &[(DefinitionKind, String, i64, i64)]) -> bool {
        stored.len() == self.definitions.len()
            && stored
                .iter()
                .zip(&self.definitions)
                .all(|((k, id, v, c), seen)| {
                    *k == seen.kind
                        && *id == seen.id
                        && *v == seen.version
                        && (!seen.computed || c >= v)
                })
    }
}

/// A re-evaluation due for a profile (a window passing, a date condition flipping).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Timer {
    pub workspace_id: String,
    pub profile_id: String,
    pub due_at: Millis,
}

/// One computed trait value of one profile; `None` removes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ComputedValue {
    pub workspace_id: String,
    pub profile_id: String,
    pub trait_id: String,
    pub value: Option<Value>,
}

/// What the audience processor reads about one profile (see
/// [`crate::Audiences::audience_inputs`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AudienceInputs {
    /// Its events and those of the profiles merged into it, newest first (as `timeline`).
    pub events: Vec<StoredEvent>,
    /// Sequence numbers of its events at or before `known_upto`, which were not read, in
    /// ascending order.
    pub known: Vec<i64>,
    pub computed: std::collections::BTreeMap<String, Value>,
    /// Audience ids, in order.
    pub memberships: Vec<String>,
    pub timer: Option<Millis>,
}

/// Everything one audience evaluation step writes, applied atomically.
#[derive(Debug, Clone, Default)]
pub struct AudienceWrite {
    /// Each adds or removes a membership and is appended to the change log.
    pub changes: Vec<MembershipChange>,
    pub computed: Vec<ComputedValue>,
    /// Sets (or with `None` clears) a profile's next re-evaluation.
    pub timers: Vec<ReevaluationTimer>,
    /// Named positions (the processor's place in the event log, a destination's place in
    /// the change log).
    pub cursors: Vec<CursorMove>,
    /// Progress of full computations.
    pub progress: Vec<ComputationProgress>,
    /// Effects of these changes, sent by the outbox's senders ([`crate::Outbox`]).
    pub outbox: Vec<crate::NewOutboxRow>,
    /// Waiting rows this step evaluated.
    pub settled: Vec<SettledWork>,
    /// Checked before anything is written: the leases held, the definitions unchanged.
    pub fence: Option<Fence>,
    pub definitions_seen: Vec<DefinitionsSeen>,
}

/// A profile's next re-evaluation by the audience processor (a timer of kind
/// [`crate::AUDIENCE_TIMERS`]), or with `due_at: None` none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReevaluationTimer {
    pub workspace_id: String,
    pub profile_id: String,
    pub due_at: Option<Millis>,
}

impl ReevaluationTimer {
    pub fn new(
        workspace: impl Into<String>,
        profile: impl Into<String>,
        due_at: Option<Millis>,
    ) -> Self {
        Self {
            workspace_id: workspace.into(),
            profile_id: profile.into(),
            due_at,
        }
    }
}

/// A named position moved to `seq` ([`Audiences::audience_cursor`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorMove {
    pub name: String,
    pub seq: i64,
}

impl CursorMove {
    pub fn new(name: impl Into<String>, seq: i64) -> Self {
        Self {
            name: name.into(),
            seq,
        }
    }
}

/// How far the full computation of a definition's version got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComputationProgress {
    pub workspace_id: String,
    pub kind: DefinitionKind,
    pub id: String,
    /// The version computed (the finished one, or the one kept while a new one computes).
    pub computed_version: i64,
    pub done: u64,
    pub total: u64,
}

impl AudienceWrite {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
            && self.computed.is_empty()
            && self.timers.is_empty()
            && self.cursors.is_empty()
            && self.progress.is_empty()
            && self.outbox.is_empty()
            && self.settled.is_empty()
    }
}

/// Audience and computed-trait definitions, memberships with their change log, computed
/// values and scheduled re-evaluations. One processor writes them (through
/// [`Audiences::record`], atomically); everything else reads.
pub trait Audiences: Send + Sync {
    /// Creates or replaces a definition. The caller sets its version; a new version starts
    /// a full computation (`computed_version` is kept, progress starts at zero).
    fn put_definition(&self, definition: &Definition) -> Result<()>;
    /// Deletes a definition with its memberships (and their history), its computed values,
    /// or (a destination) its cursor [`crate::destination_cursor`].
    /// Returns whether it existed.
    fn delete_definition(&self, workspace: &str, kind: DefinitionKind, id: &str) -> Result<bool>;
    /// Definitions of one workspace, or of all workspaces, in (workspace, kind, id) order.
    fn definitions(&self, workspace: Option<&str>) -> Result<Vec<Definition>>;
    /// A profile's current memberships, by audience id.
    fn memberships(&self, workspace: &str, profile: &str) -> Result<Vec<Membership>>;
    /// A profile's entries and exits, newest first.
    fn membership_history(
        &self,
        workspace: &str,
        profile: &str,
        limit: usize,
    ) -> Result<Vec<MembershipChange>>;
    /// Members of an audience in profile id order after `after_profile`.
    fn members(
        &self,
        workspace: &str,
        audience: &str,
        after_profile: &str,
        limit: usize,
    ) -> Result<Vec<Membership>>;
    fn member_count(&self, workspace: &str, audience: &str) -> Result<u64>;
    /// A profile's computed trait values.
    fn computed_values(
        &self,
        workspace: &str,
        profile: &str,
    ) -> Result<std::collections::BTreeMap<String, serde_json::Value>>;
    /// For each of `profiles`: its timeline, computed values, memberships and timer, read
    /// together (a full computation reads pages of profiles this way). Only events named in
    /// `names` are read: a track call by its event, a page call as `Page Viewed`, a screen
    /// call as `Screen Viewed`. Every requested id is in the answer, with empty inputs when
    /// it has none. Events at or before `known_upto` are not read: the sequence numbers of
    /// all of them (whatever their names) are listed in `known` instead, for a caller that
    /// already holds them ([`EventLog::named_events`]); 0 reads every event. Timers are
    /// read only with `timers` (a full computation holds them, [`Audiences::timers_page`]).
    fn audience_inputs(
        &self,
        workspace: &str,
        profiles: &[String],
        names: &[String],
        known_upto: i64,
        timers: bool,
    ) -> Result<std::collections::BTreeMap<String, AudienceInputs>>;
    /// Scheduled re-evaluations of a workspace, `(profile, due_at)` in profile id order
    /// after `after_profile`.
    fn timers_page(
        &self,
        workspace: &str,
        after_profile: &str,
        limit: usize,
    ) -> Result<Vec<(String, Millis)>>;
    /// Profiles waiting for evaluation in `scope`, the longest waiting (earliest event)
    /// first.
    fn audience_work(&self, scope: &WorkScope, limit: usize) -> Result<Vec<AudienceWork>>;
    /// The earliest event waiting for evaluation, if any (with the unify processor's
    /// position, how far behind the audiences are).
    fn earliest_audience_work(&self) -> Result<Option<i64>>;
    /// Ids after `after` (in id order) that hold a membership, a computed value or a timer
    /// but are not a live profile (retired while nothing followed them: a replay).
    fn orphans(&self, workspace: &str, after: &str, limit: usize) -> Result<Vec<String>>;
    /// The change log after `after_id`, oldest first.
    fn changes_after(&self, after_id: i64, limit: usize) -> Result<Vec<MembershipChange>>;
    /// Re-evaluations in `scope` due at or before `now`, earliest first.
    fn due_timers(&self, now: Millis, scope: &WorkScope, limit: usize) -> Result<Vec<Timer>>;
    /// A profile's next re-evaluation, if one is scheduled.
    fn timer_of(&self, workspace: &str, profile: &str) -> Result<Option<Millis>>;
    /// A named position; 0 when never set.
    fn audience_cursor(&self, name: &str) -> Result<i64>;
    /// Applies one step's changes in one transaction. A change that does not change
    /// anything (entering an audience the profile is in) is an error: the processor's view
    /// was stale. So is a lost lease or a changed definition (`fence`,
    /// `definitions_seen`): nothing is written. Changes get their ids in commit order, so
    /// a reader following the change log never skips one that commits late.
    fn record(&self, write: &AudienceWrite) -> Result<()>;
    /// Marks every definition for a full computation (replay). Memberships, computed values
    /// and the change log stay: the computation writes only what differs, and the ids a replay
    /// retired leave their audiences ([`Audiences::orphans`]), so destinations see every
    /// `remove` that matches an earlier `add`.
    fn reset_audiences(&self) -> Result<()>;
}
