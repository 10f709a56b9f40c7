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

/// A profile the unify processor reshaped (merged, re-derived, undone), or an id it retired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reshaped {
    /// Position in the journal (assigned by the store).
    pub id: i64,
    pub workspace_id: String,
    pub profile_id: String,
    /// For a retired id: the profile that holds its first event now (if any).
    pub successor: Option<String>,
    pub retired: bool,
    /// The event whose application did it (0 for none: an undo), and what to name as the
    /// cause of the membership changes it brings (its `messageId`, or `undo`).
    pub seq: i64,
    pub cause: String,
    pub at: Millis,
}

impl Reshaped {
    /// A live profile whose events changed.
    pub fn profile(profile: &str, seq: i64, cause: &str) -> Self {
        Reshaped {
            id: 0,
            workspace_id: String::new(),
            profile_id: profile.into(),
            successor: None,
            retired: false,
            seq,
            // Stored as text: no NUL (a messageId stored before ingest refused them).
            cause: cause.replace('\0', ""),
            at: 0,
        }
    }

    /// An id that no longer names a profile, and the profile that holds its first event now.
    pub fn retired(profile: &str, successor: Option<&str>, seq: i64, cause: &str) -> Self {
        Reshaped {
            successor: successor.map(str::to_string),
            retired: true,
            ..Reshaped::profile(profile, seq, cause)
        }
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
    /// The journal of reshaped and retired profiles after `after_id`, oldest first.
    fn reshaped_after(&self, after_id: i64, limit: usize) -> Result<Vec<Reshaped>>;
    /// Forgets the journal up to `upto` (the audience processor followed it). Returns how many
    /// rows went.
    fn prune_reshaped(&self, upto: i64) -> Result<u64>;
    /// Ids after `after` (in id order) that hold a membership, a computed value or a timer
    /// but are not a live profile (retired while nothing followed them: a replay).
    fn orphans(&self, workspace: &str, after: &str, limit: usize) -> Result<Vec<String>>;
    /// The change log after `after_id`, oldest first.
    fn changes_after(&self, after_id: i64, limit: usize) -> Result<Vec<MembershipChange>>;
    /// Re-evaluations due at or before `now`, earliest first.
    fn due_timers(&self, now: Millis, limit: usize) -> Result<Vec<Timer>>;
    /// A profile's next re-evaluation, if one is scheduled.
    fn timer_of(&self, workspace: &str, profile: &str) -> Result<Option<Millis>>;
    /// A named position; 0 when never set.
    fn audience_cursor(&self, name: &str) -> Result<i64>;
    /// Applies one step's changes in one transaction. A change that does not change
    /// anything (entering an audience the profile is in) is an error: the processor's view
    /// was stale.
    fn record(&self, write: &AudienceWrite) -> Result<()>;
    /// Marks every definition for a full computation (replay). Memberships, computed values
    /// and the change log stay: the computation writes only what differs, and the ids a replay
    /// retired leave their audiences ([`Audiences::orphans`]), so destinations see every
    /// `remove` that matches an earlier `add`.
    fn reset_audiences(&self) -> Result<()>;
}
