//! The journeys port: every version of every journey document, append-only.
//!
//! A version is the document as it was given (YAML or JSON, kept byte for byte so that what
//! users keep in git reads back the same) with its parsed form. Versions are numbered from 1
//! per journey; a new version names the one it replaces, and is refused when another writer
//! got there first, so two concurrent edits never silently overwrite each other.

use parcours_core::time::Millis;
use serde::Serialize;
use serde_json::Value;

use crate::{Fence, NewOutboxRow, NewTimer, Result};

/// The kind of journey runs' timers (key: the run id).
pub const JOURNEY_TIMERS: &str = "journey";
/// Timers of messages deferred by quiet hours or caps (key: the message's key, which starts
/// with its run's id and a colon).
pub const JOURNEY_SENDS: &str = "journey_send";
/// Timers of journeys entered on a schedule: the next occurrence of one (key: the journey
/// id), or one customer's entry waiting for her local time (key: journey, occurrence and
/// profile, joined by `/`).
pub const JOURNEY_SCHEDULES: &str = "journey_schedule";

/// A version to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJourneyVersion {
    pub workspace_id: String,
    pub journey_id: String,
    /// The version this one replaces: `None` for a new journey.
    pub replaces: Option<u32>,
    /// The document as given.
    pub source: String,
    /// Its parsed form ([`parcours_core::journey::Journey`] as JSON).
    pub doc: Value,
    /// `draft`, `live`, `paused` or `archived` (the document's own status).
    pub status: String,
    /// What happens to runs in flight on the previous version: `stay` or `move`.
    pub in_flight: String,
    pub created_at: Millis,
}

/// A stored version.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JourneyVersion {
    pub workspace_id: String,
    pub journey_id: String,
    pub version: u32,
    pub source: String,
    pub doc: Value,
    pub status: String,
    pub in_flight: String,
    #[serde(serialize_with = "parcours_core::time::serialize_iso")]
    pub created_at: Millis,
}

/// An event applied to a profile of a workspace with live journeys, waiting for the journey
/// processor of the profile's bucket. Unify queues one per (event, profile), in the same
/// transaction that applies the event.
#[derive(Debug, Clone, PartialEq)]
pub struct JourneyWork {
    pub workspace_id: String,
    /// The event's place in the log.
    pub seq: i64,
    pub profile_id: String,
    /// [`crate::profile_bucket`] of the profile.
    pub bucket: u16,
    /// The event's name (`track` name, `Page Viewed`, `Identify` …, as facts name it).
    pub name: String,
    pub message_id: String,
    pub timestamp: Millis,
    /// The event as stored (JSON), for filters, keys and templates.
    pub body: String,
}

/// The journey work of a change of audience membership, queued with the change: her runs
/// check their goal and exit conditions again, and journeys entered on that audience take her
/// in (or on leaving it). Its `seq` is the change's id, negated (event work has positive
/// ones), its name empty (a profile change, not an event), and its body says which audience
/// and which way: `{"audience_change": {"audience", "entered", "cause"}, "properties":
/// {"audience", "entered"}}` (templates read `event.properties.audience`).
pub fn audience_change_work(c: &crate::MembershipChange) -> JourneyWork {
    JourneyWork {
        workspace_id: c.workspace_id.clone(),
        seq: -c.id,
        profile_id: c.profile_id.clone(),
        bucket: crate::profile_bucket(&c.workspace_id, &c.profile_id),
        name: String::new(),
        message_id: format!("audience-change:{}", c.id),
        timestamp: c.at,
        body: serde_json::json!({
            "audience_change": {"audience": c.audience_id, "entered": c.entered, "cause": c.cause},
            "properties": {"audience": c.audience_id, "entered": c.entered},
        })
        .to_string(),
    }
}

/// A journey run as stored: the pure machine's [`parcours_core::journey::Run`] as JSON, and
/// what queries need beside it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredRun {
    pub workspace_id: String,
    pub run_id: String,
    pub journey_id: String,
    /// The journey version it runs on.
    pub version: u32,
    pub profile_id: String,
    /// The entry key's value (empty for unkeyed journeys).
    pub key: String,
    pub bucket: u16,
    pub active: bool,
    pub state: Value,
    #[serde(serialize_with = "parcours_core::time::serialize_iso")]
    pub entered_at: Millis,
    #[serde(serialize_with = "parcours_core::time::serialize_iso_opt")]
    pub ended_at: Option<Millis>,
    /// `goal`, `exited` or `completed` once it ended.
    pub outcome: Option<String>,
    /// Bumped by every write: a write names the revision it read and is refused if another
    /// landed first.
    pub revision: i64,
}

/// A decision of a run and its reason (what explain answers).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunNote {
    pub workspace_id: String,
    pub run_id: String,
    pub journey_id: String,
    pub profile_id: String,
    #[serde(serialize_with = "parcours_core::time::serialize_iso")]
    pub at: Millis,
    pub step: Option<String>,
    pub code: String,
    pub detail: String,
}

/// A message a customer was sent (what frequency caps count).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContactRow {
    pub workspace_id: String,
    pub profile_id: String,
    pub at: Millis,
    /// The message's key.
    pub key: String,
    /// `email`, `sms`, `push`.
    pub channel: String,
    pub journey_id: String,
    pub priority: u8,
}

/// Everything one journey decision writes, in one transaction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JourneyWrite {
    /// Refused (nothing written) unless the node still holds these buckets.
    pub fence: Option<Fence>,
    /// Work rows done: `(workspace, seq, profile)`.
    pub settled: Vec<(String, i64, String)>,
    /// Runs to insert (`revision` 0) or update (the revision they were read at; the stored
    /// one becomes `revision + 1`).
    pub runs: Vec<StoredRun>,
    pub notes: Vec<RunNote>,
    pub set_timers: Vec<NewTimer>,
    /// Timers of kind [`JOURNEY_TIMERS`] to cancel: `(workspace, run id)`.
    pub cancel_timers: Vec<(String, String)>,
    pub outbox: Vec<NewOutboxRow>,
    /// The messages it sends, for frequency caps.
    pub contacts: Vec<ContactRow>,
    /// Work handed on: events queued for a profile that was merged into another since are
    /// settled under the old id and queued again under the profile that holds them now.
    pub requeue: Vec<JourneyWork>,
}

impl JourneyWrite {
    /// Adds another decision's writes to this one, to commit them together; the fence then
    /// covers the buckets of both.
    pub fn absorb(&mut self, other: JourneyWrite) {
        match (&mut self.fence, other.fence) {
            (Some(f), Some(o)) => {
                for b in o.buckets {
                    if !f.buckets.contains(&b) {
                        f.buckets.push(b);
                    }
                }
            }
            (f @ None, Some(o)) => *f = Some(o),
            (_, None) => {}
        }
        self.settled.extend(other.settled);
        self.runs.extend(other.runs);
        self.notes.extend(other.notes);
        self.set_timers.extend(other.set_timers);
        self.cancel_timers.extend(other.cancel_timers);
        self.outbox.extend(other.outbox);
        self.contacts.extend(other.contacts);
        self.requeue.extend(other.requeue);
    }

    /// The profiles this write starts runs for, `(workspace, profile)`, each once.
    pub fn starting_profiles(&self) -> std::collections::BTreeSet<(&str, &str)> {
        self.runs
            .iter()
            .filter(|r| r.revision == 0)
            .map(|r| (r.workspace_id.as_str(), r.profile_id.as_str()))
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.settled.is_empty()
            && self.runs.is_empty()
            && self.notes.is_empty()
            && self.set_timers.is_empty()
            && self.cancel_timers.is_empty()
            && self.outbox.is_empty()
            && self.contacts.is_empty()
            && self.requeue.is_empty()
    }
}

/// What entry rules need about earlier runs of a customer (for one key).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunHistory {
    pub active: bool,
    pub last_entered: Option<Millis>,
}

/// How many runs of a journey are in progress, how many ended, and where the ones in
/// progress wait (step id, runs), by step id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunCounts {
    pub active: u64,
    pub ended: u64,
    pub waiting: Vec<(String, u64)>,
}

/// Runs of one group of a journey (treatment or holdout, by variant) and how they ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GroupStats {
    pub holdout: bool,
    /// Held out as members of the workspace's global control group (then `holdout` too).
    pub global_control: bool,
    pub variant: Option<String>,
    pub entered: u64,
    pub active: u64,
    pub converted: u64,
    pub exited: u64,
    pub completed: u64,
}

/// One run of a journey as its uplift report reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entrant {
    pub profile_id: String,
    pub entered_at: Millis,
    pub holdout: bool,
    pub global_control: bool,
    pub variant: Option<String>,
    /// The run met the journey's goal.
    pub converted: bool,
}

/// What a journey's report is made of.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JourneyStats {
    /// By holdout, then variant.
    pub groups: Vec<GroupStats>,
    /// How many times each decision was taken at each step: `(step, code, count)`.
    pub decisions: Vec<(Option<String>, String, u64)>,
}

pub trait Journeys: Send + Sync {
    /// Stores a new version and returns its number: `replaces + 1`, or 1 for a new journey.
    /// `Conflict` when `replaces` is not the latest version (or the journey exists and
    /// `replaces` is `None`).
    fn put_journey_version(&self, v: &NewJourneyVersion) -> Result<u32>;
    /// The latest version of every journey of a workspace (every workspace: `None`), by id.
    fn journeys(&self, workspace: Option<&str>) -> Result<Vec<JourneyVersion>>;
    /// Every version of one journey, the latest first.
    fn journey_versions(&self, workspace: &str, journey: &str) -> Result<Vec<JourneyVersion>>;
    /// One version.
    fn journey_version(
        &self,
        workspace: &str,
        journey: &str,
        version: u32,
    ) -> Result<Option<JourneyVersion>>;

    /// Waiting work of these buckets (every bucket: `None`), in log order.
    fn journey_work(&self, buckets: Option<&[u16]>, limit: usize) -> Result<Vec<JourneyWork>>;
    /// A customer's runs in progress.
    fn active_runs(&self, workspace: &str, profile: &str) -> Result<Vec<StoredRun>>;
    /// A customer's runs, the latest first (explain, her journeys in the console).
    fn runs_of(&self, workspace: &str, profile: &str, limit: usize) -> Result<Vec<StoredRun>>;
    fn run(&self, workspace: &str, run_id: &str) -> Result<Option<StoredRun>>;
    /// Entry history of a customer (and key) in a journey.
    fn run_history(
        &self,
        workspace: &str,
        journey: &str,
        profile: &str,
        key: &str,
    ) -> Result<RunHistory>;
    /// Runs a journey has had, everyone together (what its entry cap counts; read only for
    /// a journey with a cap: it counts every run).
    fn journey_entries(&self, workspace: &str, journey: &str) -> Result<u64>;
    /// Runs of a journey in progress and ended, and how many wait at each step.
    fn run_counts(&self, workspace: &str, journey: &str) -> Result<RunCounts>;
    /// The counts a journey's report shows.
    fn journey_stats(&self, workspace: &str, journey: &str) -> Result<JourneyStats>;
    /// Every run of a journey, in the order they entered (its uplift report).
    fn journey_entrants(&self, workspace: &str, journey: &str) -> Result<Vec<Entrant>>;
    /// A run's notes, in order.
    fn run_notes(&self, workspace: &str, run_id: &str) -> Result<Vec<RunNote>>;
    /// A customer's messages sent at or after `since`, oldest first.
    fn contacts(&self, workspace: &str, profile: &str, since: Millis) -> Result<Vec<ContactRow>>;
    /// Sets a workspace's contact policy (its JSON form).
    fn put_journey_policy(&self, workspace: &str, doc: &Value, at: Millis) -> Result<()>;
    fn journey_policy(&self, workspace: &str) -> Result<Option<Value>>;
    /// Commits a decision. `Conflict` (and nothing written) when the fence fails, a run was
    /// written by someone else since it was read, or a second run of the same journey, customer
    /// and key would be in progress.
    fn record_journeys(&self, write: &JourneyWrite) -> Result<()>;
}
