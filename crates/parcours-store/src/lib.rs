//! Storage ports of Parcours and the conformance suite every adapter runs.
//!
//! The ports are synchronous: adapters run them on their own threads, never on the async
//! executor. Every adapter (SQLite today, PostgreSQL next) instantiates
//! [`conformance_suite!`] and must pass exactly the same tests.

mod model;
mod outbox;
#[cfg(feature = "suite")]
pub mod suite;
mod timers;

pub use model::*;
pub use outbox::*;
pub use timers::*;

use parcours_core::graph::Separation;
use parcours_core::identifier::Identifier;
use parcours_core::rules::IdentityRulesConfig;
use parcours_core::time::Millis;
use parcours_core::{MergeRecord, Profile};

pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("storage error: {0}")]
    Backend(String),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    /// The backend refused the data itself (a value out of its range, a key too long to
    /// index): retrying the same write fails the same way.
    #[error("the store refused the data: {0}")]
    Rejected(String),
}

/// Workspaces, sources (write keys) and admin tokens.
pub trait Registry: Send + Sync {
    fn create_workspace(&self, workspace: &Workspace) -> Result<()>;
    fn workspaces(&self) -> Result<Vec<Workspace>>;
    fn workspace(&self, id: &str) -> Result<Option<Workspace>>;
    fn set_identity_rules(&self, workspace: &str, rules: &IdentityRulesConfig) -> Result<()>;
    /// Creates a source with its first write key.
    fn create_source(&self, source: &Source, write_key_hash: &str) -> Result<()>;
    /// Changes a source's name, channel and allowed origins.
    fn update_source(&self, source: &Source) -> Result<()>;
    /// Deletes a source and its write keys (its events stay in the log).
    fn delete_source(&self, workspace: &str, id: &str) -> Result<()>;
    fn sources(&self, workspace: &str) -> Result<Vec<Source>>;
    /// The source a write key belongs to, expired or not (the caller compares `expires_at`
    /// with its clock).
    fn source_by_key_hash(&self, key_hash: &str) -> Result<Option<KeyGrant>>;
    /// A source's write keys, oldest first.
    fn write_keys(&self, workspace: &str, source: &str) -> Result<Vec<WriteKey>>;
    /// Adds a write key to a source, and makes its other keys stop working at `old_until`
    /// (or earlier, if they were already to stop before), in one transaction.
    fn rotate_write_key(
        &self,
        workspace: &str,
        source: &str,
        new_hash: &str,
        now: Millis,
        old_until: Millis,
    ) -> Result<()>;
    fn create_token(&self, token: &Token, token_hash: &str) -> Result<()>;
    fn tokens(&self, workspace: &str) -> Result<Vec<Token>>;
    fn token_by_hash(&self, token_hash: &str) -> Result<Option<Token>>;
    /// Makes a token stop working at `at` (or keeps its earlier expiry).
    fn expire_token(&self, workspace: &str, id: &str, at: Millis) -> Result<()>;
    /// Adds to the violations report (each line's `count` is added; `first_seen` kept).
    fn record_plan_violations(&self, workspace: &str, lines: &[PlanViolationCount]) -> Result<()>;
    /// The violations report of a workspace's sources, most frequent first.
    fn plan_violations(&self, workspace: &str) -> Result<Vec<PlanViolationCount>>;
}

/// The append-only event log, with `messageId` deduplication.
pub trait EventLog: Send + Sync {
    /// Appends the batches in one transaction (a group commit). An event whose `messageId` was
    /// accepted in its workspace at or after `dedup_since` is a duplicate and is not stored.
    fn append(&self, batches: &[IngestBatch], dedup_since: Millis) -> Result<Vec<AppendOutcome>>;
    /// Events of every workspace after a sequence number, in order.
    fn events_after(&self, after_seq: i64, limit: usize) -> Result<Vec<StoredEvent>>;
    /// Events of one workspace after a sequence number, in order.
    fn workspace_events(
        &self,
        workspace: &str,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>>;
    /// The event stored under a `messageId` accepted within the dedup window.
    fn event_by_message_id(&self, workspace: &str, message_id: &str)
        -> Result<Option<StoredEvent>>;
    fn event_count(&self, workspace: &str) -> Result<u64>;
    fn last_seq(&self) -> Result<i64>;
    /// Forgets `messageId`s accepted before `before` (outside the dedup window).
    fn prune_message_ids(&self, before: Millis) -> Result<usize>;
    /// Events of one workspace with `after_seq < seq <= upto_seq` whose names are in `names`
    /// (named as [`Audiences::audience_inputs`] names them), in order. A full computation
    /// reads the log this way, in ranges, instead of each profile's events one by one.
    fn named_events(
        &self,
        workspace: &str,
        after_seq: i64,
        upto_seq: i64,
        names: &[String],
    ) -> Result<Vec<StoredEvent>>;
    /// Events of these buckets after a sequence number, in order.
    fn bucket_events_after(
        &self,
        buckets: &[u16],
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>>;
    /// Retention: removes every event received on a UTC day that ended at or before `before`
    /// (whole days, so PostgreSQL drops day partitions instead of deleting rows). Returns how
    /// many events were removed.
    fn drop_events_before(&self, before: Millis) -> Result<u64>;
    /// Housekeeping a backend needs from time to time (PostgreSQL creates the coming days'
    /// event partitions). Nodes call it hourly.
    fn maintain(&self, _now: Millis) -> Result<()> {
        Ok(())
    }
}

/// Events that parsed but broke the spec, kept for inspection and replay.
pub trait Quarantine: Send + Sync {
    fn quarantined(
        &self,
        workspace: &str,
        status: Option<QuarantineStatus>,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<QuarantineEntry>>;
    fn quarantine_entry(&self, workspace: &str, id: i64) -> Result<Option<QuarantineEntry>>;
    /// Sets aside a stored event that a processor cannot read or apply (it stays in the log
    /// and processors skip it): one entry per event, whatever the number of calls. Returns
    /// whether the entry is new.
    fn set_aside(
        &self,
        event: &StoredEvent,
        violation: parcours_core::spec::Violation,
        detail: &str,
        at: Millis,
    ) -> Result<bool>;
    /// Resolves a pending entry: appends the fixed event (if any) to the log and marks the
    /// entry replayed (or discarded), in one transaction. The replacement of an event set
    /// aside takes over its `messageId` (the original stays in the log, skipped).
    fn resolve_quarantined(
        &self,
        workspace: &str,
        id: i64,
        replacement: Option<&IngestBatch>,
        at: Millis,
    ) -> Result<Option<AppendOutcome>>;
}

/// One write transaction over the identity and profile projections.
pub trait ProjectionTx {
    /// The processing cursor of the whole log: the lowest bucket cursor.
    fn cursor(&mut self) -> Result<i64>;
    /// Moves every bucket's cursor to `seq`.
    fn set_cursor(&mut self, seq: i64) -> Result<()>;
    /// The cursors of these buckets, in the same order.
    fn bucket_cursors(&mut self, buckets: &[u16]) -> Result<Vec<i64>>;
    /// Moves these buckets' cursors forward to `seq` (a cursor never moves back).
    fn advance_buckets(&mut self, buckets: &[u16], seq: i64) -> Result<()>;
    /// Fails with [`StoreError::Conflict`] unless `node` holds the lease of every one of these
    /// buckets at `now`, and keeps the leases from changing hands until this transaction ends
    /// (fencing: a node that lost a bucket can never commit work for it).
    fn fence(&mut self, node: &str, buckets: &[u16], now: Millis) -> Result<()>;
    /// Serialises this transaction with every other one that locks one of these workspaces
    /// (a no-op where there is only one writer). Call it once, before reading projections.
    fn lock_workspaces(&mut self, workspaces: &[&str]) -> Result<()>;
    /// Changes whenever projections are rewritten outside the unify processor (an undone
    /// merge, a replay), so a processor knows its in-memory cache is stale.
    fn epoch(&mut self) -> Result<i64>;
    fn bump_epoch(&mut self) -> Result<()>;
    /// Whether any identifier was dropped in this workspace (most have none).
    fn has_drops(&mut self, workspace: &str) -> Result<bool>;
    /// A hint: [`holder`](Self::holder) and [`profile`](Self::profile) are about to be asked
    /// for these identifiers and their holders. A backend with costly round trips reads them
    /// at once and answers from memory until the next write; the answers never change.
    fn prefetch(&mut self, _workspace: &str, _ids: &[Identifier]) -> Result<()> {
        Ok(())
    }
    fn holder(&mut self, workspace: &str, id: &Identifier) -> Result<Option<String>>;
    fn droppers(&mut self, workspace: &str, id: &Identifier) -> Result<Vec<String>>;
    fn drops_of(&mut self, workspace: &str, profile: &str) -> Result<Vec<Identifier>>;
    fn profile(&mut self, workspace: &str, id: &str) -> Result<Option<Profile>>;
    fn separations(&mut self, workspace: &str) -> Result<Vec<Separation>>;
    fn save_profile(&mut self, workspace: &str, profile: &Profile, at: Millis) -> Result<()>;
    /// Turns a profile into a pointer to the one that now holds its person.
    fn redirect_profile(&mut self, workspace: &str, from: &str, to: &str, at: Millis)
        -> Result<()>;
    fn link(
        &mut self,
        workspace: &str,
        id: &Identifier,
        profile: &str,
        linked_by: &str,
        at: Millis,
    ) -> Result<()>;
    /// [`link`](Self::link) for many identifiers at once; when one appears twice, the last wins.
    fn link_many(
        &mut self,
        workspace: &str,
        links: &[(&Identifier, &str, &str)],
        at: Millis,
    ) -> Result<()> {
        for (id, profile, linked_by) in links {
            self.link(workspace, id, profile, linked_by, at)?;
        }
        Ok(())
    }
    /// Points these (already linked) identifiers at another profile, keeping who linked them.
    fn relink(&mut self, workspace: &str, ids: &[Identifier], profile: &str) -> Result<()>;
    fn set_drops(&mut self, workspace: &str, profile: &str, drops: &[Identifier]) -> Result<()>;
    fn assign(&mut self, workspace: &str, seq: i64, profile: &str) -> Result<()>;
    /// [`assign`](Self::assign) for many events at once (one round trip where it matters).
    fn assign_many(&mut self, workspace: &str, assignments: &[(i64, &str)]) -> Result<()> {
        for (seq, profile) in assignments {
            self.assign(workspace, *seq, profile)?;
        }
        Ok(())
    }
    /// [`save_profile`](Self::save_profile) for many profiles at once.
    fn save_profiles(&mut self, workspace: &str, profiles: &[&Profile], at: Millis) -> Result<()> {
        for p in profiles {
            self.save_profile(workspace, p, at)?;
        }
        Ok(())
    }
    fn record_merge(&mut self, workspace: &str, merge: &MergeRecord, at: Millis) -> Result<()>;
    /// The profile and every profile merged into it, transitively.
    fn family(&mut self, workspace: &str, profile: &str) -> Result<Vec<String>>;
    /// Events assigned to these profiles (not following redirects).
    fn events_of(&mut self, workspace: &str, profiles: &[String]) -> Result<Vec<StoredEvent>>;
    /// Removes these profiles' identifiers (those listed in their documents), drops and
    /// assignments, and supersedes the merges
    /// they won, before a re-derivation writes them anew.
    fn clear_profiles(&mut self, workspace: &str, profiles: &[String]) -> Result<()>;
    fn add_separation(
        &mut self,
        workspace: &str,
        separation: &Separation,
        merge_id: i64,
        at: Millis,
    ) -> Result<()>;
    fn mark_merge_undone(&mut self, workspace: &str, merge_id: i64, at: Millis) -> Result<bool>;
    /// Journals live profiles whose events changed (created, merged, re-derived, undone) and
    /// ids retired (with the profile that holds their first event now, if any), in this order,
    /// for the audience processor ([`Audiences::reshaped_after`]). `id`, `workspace_id` and
    /// `at` of the rows are set by the store.
    fn note_reshaped(&mut self, workspace: &str, rows: &[Reshaped], at: Millis) -> Result<()>;
    /// Drops every projection row of every workspace (replay starts from the first event).
    fn reset_all(&mut self) -> Result<()>;
}

/// The identity and profile projections: writes in transactions, reads on their own.
pub trait Projections: Send + Sync {
    fn transact(&self, f: &mut dyn FnMut(&mut dyn ProjectionTx) -> Result<()>) -> Result<()>;
    fn processed_seq(&self) -> Result<i64>;
    /// A profile by id, following merges; `None` if the id never existed.
    fn profile(&self, workspace: &str, id: &str) -> Result<Option<Profile>>;
    fn lookup(&self, workspace: &str, id: &Identifier) -> Result<Option<String>>;
    fn identifiers(&self, workspace: &str, profile: &str) -> Result<Vec<IdentifierRow>>;
    fn merges_of(&self, workspace: &str, profile: &str) -> Result<Vec<MergeRow>>;
    fn merge(&self, workspace: &str, merge_id: i64) -> Result<Option<MergeRow>>;
    /// The events of a profile and of every profile merged into it, newest first, before
    /// `before_seq` (exclusive) when given.
    fn timeline(
        &self,
        workspace: &str,
        profile: &str,
        before_seq: Option<i64>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>>;
    /// Live (not merged) profiles in id order after `after_id`.
    fn profiles_page(&self, workspace: &str, after_id: &str, limit: usize) -> Result<Vec<Profile>>;
    fn profile_count(&self, workspace: &str) -> Result<u64>;
    /// Profile rows of a workspace in the order the backend reads fastest (a full
    /// computation reads them all), from an opaque `position` ("" for the start): the live
    /// ones with their profile, or with `merged` the merged ones with the profile each was
    /// merged into. With `page` = (skip, limit) it skips `skip` rows first (so that several
    /// threads can read consecutive pages). Returns the rows and the position after them;
    /// fewer rows than `limit` means the end.
    fn profiles_in_storage_order(
        &self,
        workspace: &str,
        position: &str,
        page: (usize, usize),
        merged: bool,
    ) -> Result<(Vec<ProfileRow>, String)>;
    /// Which profile each event was applied to: calls `visit(profile, seq)` for up to `limit`
    /// events of a workspace, in profile order from `position` ("" for the start, or an
    /// [`owners_position`]: [`owners_start`] for the first rows of a profile id or of the ids
    /// after it), and only for profiles ordered before `until` when given (so several threads
    /// can each read a range). Returns how many it visited and the position after them.
    fn event_owners(
        &self,
        workspace: &str,
        position: &str,
        until: Option<&str>,
        limit: usize,
        visit: &mut dyn FnMut(&str, i64),
    ) -> Result<(usize, String)>;
}

/// Nodes and bucket leases: how the nodes of a cluster share the work.
pub trait Cluster: Send + Sync {
    /// Records that a node is alive (inserts or refreshes it).
    fn heartbeat(&self, node: &NodeInfo) -> Result<()>;
    /// Nodes seen at or after `since`.
    fn nodes(&self, since: Millis) -> Result<Vec<NodeInfo>>;
    /// Forgets a node (it stopped cleanly).
    fn remove_node(&self, node: &str) -> Result<()>;
    fn leases(&self) -> Result<Vec<Lease>>;
    /// Renews this node's leases until `until`, gives back its highest buckets above `target`,
    /// and claims free or expired buckets (lease ended before `now`) up to `target`. A bucket
    /// that another node is working on (inside [`ProjectionTx::fence`]) is not claimed. Returns
    /// the buckets the node holds, in order.
    fn balance_leases(
        &self,
        node: &str,
        target: usize,
        now: Millis,
        until: Millis,
    ) -> Result<Vec<u16>>;
    /// Gives back every lease of a node.
    fn release_leases(&self, node: &str) -> Result<()>;
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

/// Everything a node needs from storage.
pub trait Store:
    Registry + EventLog + Quarantine + Projections + Cluster + Audiences + Outbox + Timers
{
}
impl<T: Registry + EventLog + Quarantine + Projections + Cluster + Audiences + Outbox + Timers>
    Store for T
{
}
