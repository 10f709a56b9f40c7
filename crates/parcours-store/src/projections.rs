//! The projections port: the identity graph and profiles, written in transactions by the
//! unify processor, read by everything else.

use parcours_core::graph::Separation;
use parcours_core::identifier::Identifier;
use parcours_core::time::Millis;
use parcours_core::{MergeRecord, Profile};
use serde::Serialize;

use crate::*;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IdentifierRow {
    pub identifier: Identifier,
    pub profile_id: String,
    /// The event that linked it.
    pub linked_by: String,
    pub linked_at: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeStatus {
    Active,
    Undone,
    /// A re-derivation (late event, undo of another merge) no longer produced it.
    Superseded,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MergeRow {
    pub id: i64,
    pub workspace_id: String,
    #[serde(flatten)]
    pub merge: MergeRecord,
    pub status: MergeStatus,
    #[serde(serialize_with = "parcours_core::time::serialize_iso")]
    pub created_at: Millis,
    #[serde(serialize_with = "parcours_core::time::serialize_iso_opt")]
    pub undone_at: Option<Millis>,
}

/// A profile row read in storage order (see
/// [`crate::Projections::profiles_in_storage_order`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileRow {
    pub id: String,
    /// The profile it was merged into (merged rows).
    pub merged_into: Option<String>,
    /// The profile (live rows).
    pub profile: Option<parcours_core::Profile>,
}

/// A position of [`crate::Projections::event_owners`]: `seq:profile` of the last row read
/// (the profile id last, as it may hold a colon).
pub fn owners_position(profile: &str, seq: i64) -> String {
    format!("{seq}:{profile}")
}

/// The [`owners_position`] just before the rows of `profile` (and of the ids after it).
pub fn owners_start(profile: &str) -> String {
    owners_position(profile, i64::MIN)
}

/// Reads an [`owners_position`]; "" is the start.
pub fn parse_owners_position(position: &str) -> crate::Result<(String, i64)> {
    let bad = || crate::StoreError::Corrupt(format!("position `{position}`"));
    match position.split_once(':') {
        Some((seq, profile)) => Ok((profile.to_string(), seq.parse().map_err(|_| bad())?)),
        None if position.is_empty() => Ok((String::new(), 0)),
        None => Err(bad()),
    }
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
    /// Whether the workspace has an audience or a computed trait, read under this
    /// transaction's workspace lock ([`ProjectionTx::lock_workspaces`]): saving a definition
    /// takes the same lock, so a transaction that finds none commits before the first
    /// definition does (and that definition's full computation reads its events).
    fn evaluates_audiences(&mut self, workspace: &str) -> Result<bool>;
    /// Queues profiles for audience evaluation, in the bucket of each ([`profile_bucket`]):
    /// a profile already waiting folds the new rows in ([`QueuedProfile::absorb`]) and its
    /// version is bumped. `at` is when.
    fn queue_audience_work(
        &mut self,
        workspace: &str,
        rows: &[QueuedProfile],
        at: Millis,
    ) -> Result<()>;
    /// Whether the workspace has a live journey (only then does unify queue journey work).
    fn runs_journeys(&mut self, workspace: &str) -> Result<bool>;
    /// Queues events applied to profiles for the journey processor ([`crate::JourneyWork`]).
    fn queue_journey_work(&mut self, rows: &[crate::JourneyWork]) -> Result<()>;
    /// Adds daily counts to the tallies ([`crate::tallies`]).
    fn add_tallies(&mut self, tallies: &[crate::Tally]) -> Result<()>;
    /// Drops every projection row of every workspace (replay starts from the first event),
    /// with the tallies the unify step counted.
    fn reset_all(&mut self) -> Result<()>;
}

/// The identity and profile projections: writes in transactions, reads on their own.
pub trait Projections: Send + Sync {
    fn transact(&self, f: &mut dyn FnMut(&mut dyn ProjectionTx) -> Result<()>) -> Result<()>;
    fn processed_seq(&self) -> Result<i64>;
    /// [`ProjectionTx::epoch`] read on its own: a reader holding something computed from the
    /// projections (a measurement snapshot) knows it is stale when it changed.
    fn projections_epoch(&self) -> Result<i64>;
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
    /// A workspace's daily tallies from day `from` to day `to` (both included), by metric,
    /// day and key.
    fn tallies(&self, workspace: &str, from: i64, to: i64) -> Result<Vec<crate::Tally>>;
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
