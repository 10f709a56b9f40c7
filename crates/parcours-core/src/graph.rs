//! The identity graph: which identifiers belong to which profile, and the merges that joined
//! profiles.
//!
//! Matching is flat, as in Segment: an event whose identifiers match no profile creates one,
//! matching one profile adds to it, matching several merges them. Rules guard every decision:
//! blocked values never count, a profile holds at most `limit` values of a type, and profiles
//! an operator has separated (an undone merge) never join again. When a decision would break a
//! rule, the event's least important identifier is dropped and matching is retried, which is
//! what keeps two customers on a shared in-store tablet apart.
//!
//! The graph is a fold over events in [`EventKey`] order. Folding the same events gives the
//! same graph whatever order they arrived in: an event that arrives after a later event of the
//! same profiles is detected by [`Graph::lateness`], and the caller re-derives that
//! component from its events in order. A profile's id comes from its first event in the log
//! (the lowest `seq`), and a merge keeps the id of the profile first seen in the log, so the
//! ids are a function of which events each profile holds: live, re-derived and replayed
//! graphs give the same ids.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::identifier::Identifier;
use crate::observation::Observation;
use crate::profile::Profile;
use crate::rules::IdentityRules;
use crate::time::EventKey;

/// One merge of two profiles, with its cause.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergeRecord {
    pub winner: String,
    pub loser: String,
    /// The event whose identifiers joined the two profiles.
    pub cause: EventKey,
    pub cause_seq: i64,
    /// The event's identifiers that matched the loser.
    pub identifiers: Vec<Identifier>,
    /// The most important identifier of each side before the merge; undoing the merge keeps
    /// these two apart.
    pub winner_anchor: Identifier,
    pub loser_anchor: Identifier,
    /// Everything the loser held, now held by the winner.
    #[serde(default)]
    pub loser_identifiers: Vec<Identifier>,
    pub rule: String,
}

/// What applying one event did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Applied {
    pub profile: Option<String>,
    pub created: bool,
    pub merged: Vec<String>,
    pub linked: Vec<Identifier>,
    pub dropped: Vec<Identifier>,
}

/// Largest group of profiles re-derived for one late event.
pub const MAX_REDERIVED_PROFILES: usize = 64;

/// See [`Graph::lateness`].
#[derive(Debug, Clone, PartialEq)]
pub enum Lateness {
    /// Applying the event now gives what applying it in event-time order gives.
    InOrder,
    /// Re-derive these profiles with the event.
    Late(BTreeSet<String>),
    /// Late, in a group too wide to re-derive; applied in arrival order.
    TooWide,
}

/// A pair of identifiers that must never be on one profile.
pub type Separation = (Identifier, Identifier);

#[derive(Debug, Clone)]
pub struct Graph {
    workspace: String,
    rules: IdentityRules,
    pub profiles: BTreeMap<String, Profile>,
    index: HashMap<Identifier, String>,
    /// Identifiers a profile observed without holding them (a rule dropped them).
    drops: BTreeMap<Identifier, BTreeSet<String>>,
    drops_by_profile: BTreeMap<String, BTreeSet<Identifier>>,
    separations: Vec<Separation>,
    /// Profiles merged into another: loser → winner.
    pub redirects: BTreeMap<String, String>,
    /// Changes since the last [`Graph::take_changes`].
    changes: Changes,
}

/// What changed in the graph, for a store to write back.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    pub dirty: BTreeSet<String>,
    pub merges: Vec<MergeRecord>,
    /// Event seq → profile it was assigned to.
    pub assignments: Vec<(i64, String)>,
    /// New identifier links: identifier → profile, with the event that linked it.
    pub links: Vec<(Identifier, String, EventKey)>,
    /// Profiles created, with the event (seq, messageId) that created them.
    pub created: Vec<(String, i64, String)>,
}

/// The id of the profile created by an event: a function of the workspace, the event's
/// `messageId` and its position in the log (a `messageId` reused after the dedup window is
/// another event, and must not land on the first one's profile).
pub fn profile_id_for(workspace: &str, message_id: &str, seq: i64) -> String {
    let mut h = Sha256::new();
    h.update(workspace.as_bytes());
    h.update([0]);
    h.update(message_id.as_bytes());
    h.update([0]);
    h.update(seq.to_le_bytes());
    let digest = h.finalize();
    let mut id = String::with_capacity(22);
    id.push_str("p_");
    for b in &digest[..10] {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

impl Graph {
    pub fn new(
        workspace: impl Into<String>,
        rules: IdentityRules,
        separations: Vec<Separation>,
    ) -> Self {
        Self {
            workspace: workspace.into(),
            rules,
            profiles: BTreeMap::new(),
            index: HashMap::new(),
            drops: BTreeMap::new(),
            drops_by_profile: BTreeMap::new(),
            separations,
            redirects: BTreeMap::new(),
            changes: Changes::default(),
        }
    }

    pub fn rules(&self) -> &IdentityRules {
        &self.rules
    }

    pub fn workspace(&self) -> &str {
        &self.workspace
    }

    /// Loads a stored profile (a store brings in the part of the graph an event touches).
    pub fn load_profile(&mut self, profile: Profile) {
        for id in &profile.identifiers {
            self.index.insert(id.clone(), profile.id.clone());
        }
        self.profiles.insert(profile.id.clone(), profile);
    }

    /// Loads a stored drop: `profile` observed `id` without holding it.
    pub fn load_drop(&mut self, id: Identifier, profile: String) {
        self.drops_by_profile
            .entry(profile.clone())
            .or_default()
            .insert(id.clone());
        self.drops.entry(id).or_default().insert(profile);
    }

    pub fn holder(&self, id: &Identifier) -> Option<&str> {
        self.index.get(id).map(String::as_str)
    }

    pub fn droppers(&self, id: &Identifier) -> impl Iterator<Item = &String> {
        self.drops.get(id).into_iter().flatten()
    }

    pub fn drops_of(&self, profile: &str) -> impl Iterator<Item = &Identifier> {
        self.drops_by_profile.get(profile).into_iter().flatten()
    }

    /// Follows merges to the profile that holds a possibly merged-away id today.
    pub fn resolve<'a>(&'a self, mut id: &'a str) -> &'a str {
        while let Some(next) = self.redirects.get(id) {
            id = next;
        }
        id
    }

    /// The event → profile assignments made since the last [`Graph::take_changes`].
    pub fn pending_assignments(&self) -> Vec<(i64, String)> {
        self.changes.assignments.clone()
    }

    pub fn take_changes(&mut self) -> Changes {
        std::mem::take(&mut self.changes)
    }

    /// The profiles an event's identifiers reach directly, widened through entangled profiles
    /// to everything that could have decided differently had this event come first.
    pub fn component(&self, ids: &[Identifier]) -> BTreeSet<String> {
        self.bounded_component(ids, usize::MAX).unwrap_or_default()
    }

    /// [`Graph::component`], or `None` as soon as it grows past `max` profiles.
    fn bounded_component(&self, ids: &[Identifier], max: usize) -> Option<BTreeSet<String>> {
        let mut seen = BTreeSet::new();
        let mut frontier: Vec<String> = Vec::new();
        let visit = |id: &Identifier, seen: &mut BTreeSet<String>, frontier: &mut Vec<String>| {
            for p in self.index.get(id).into_iter().chain(self.droppers(id)) {
                if seen.insert(p.clone()) {
                    frontier.push(p.clone());
                }
            }
        };
        for id in ids {
            visit(id, &mut seen, &mut frontier);
        }
        while let Some(p) = frontier.pop() {
            if seen.len() > max {
                return None;
            }
            let Some(profile) = self.profiles.get(&p) else {
                continue;
            };
            if !profile.entangled {
                continue;
            }
            let held: Vec<&Identifier> = profile
                .identifiers
                .iter()
                .chain(self.drops_of(&p))
                .collect();
            for id in held {
                visit(id, &mut seen, &mut frontier);
            }
        }
        (seen.len() <= max).then_some(seen)
    }

    /// Whether an event can be applied as it comes or its component must be re-derived.
    ///
    /// It must when the event is older than something already applied to the profiles it
    /// touches and applying it now could differ from applying it in order. Re-derivation is
    /// bounded: a group of more than [`MAX_REDERIVED_PROFILES`] profiles tied together by
    /// shared identifiers (a store tablet hundreds of customers logged in on) is not re-derived,
    /// and a late event there is applied in arrival order.
    pub fn lateness(&self, obs: &Observation) -> Lateness {
        let Some(component) = self.bounded_component(&obs.identifiers, MAX_REDERIVED_PROFILES)
        else {
            let direct_later = obs
                .identifiers
                .iter()
                .flat_map(|i| self.index.get(i).into_iter().chain(self.droppers(i)))
                .any(|p| {
                    self.profiles
                        .get(p)
                        .is_some_and(|p| p.last > obs.key || p.origin.seq > obs.seq)
                });
            return if direct_later {
                Lateness::TooWide
            } else {
                Lateness::InOrder
            };
        };
        // An event older in the log than a profile's first one (applied out of log order: a
        // bucket another node holds, or a profile stored without its origin) changes which
        // event the profile's id comes from: re-derived too.
        let before = |p: &Profile| p.last > obs.key || p.origin.seq > obs.seq;
        if !component
            .iter()
            .any(|p| self.profiles.get(p).is_some_and(before))
        {
            return Lateness::InOrder;
        }
        // Late, but it only observes: every identifier is already held by one profile whose
        // shape was settled before this event's time. In event-time order it would have found
        // the same profile and changed nothing structural, so applying it now is the same.
        if let [only] = component.iter().collect::<Vec<_>>()[..] {
            let p = &self.profiles[only];
            let held = obs
                .identifiers
                .iter()
                .all(|i| self.index.get(i) == Some(only));
            if held && !p.entangled && p.shaped < obs.key && p.origin.seq < obs.seq {
                return Lateness::InOrder;
            }
        }
        Lateness::Late(component)
    }

    /// Removes a component so that it can be re-derived from its events.
    pub fn remove_component(&mut self, component: &BTreeSet<String>) -> Vec<Profile> {
        let mut removed = Vec::new();
        for pid in component {
            if let Some(p) = self.profiles.remove(pid) {
                for id in &p.identifiers {
                    if self.index.get(id) == Some(pid) {
                        self.index.remove(id);
                    }
                }
                removed.push(p);
            }
            for id in self.drops_by_profile.remove(pid).unwrap_or_default() {
                if let Some(set) = self.drops.get_mut(&id) {
                    set.remove(pid);
                    if set.is_empty() {
                        self.drops.remove(&id);
                    }
                }
            }
        }
        removed
    }

    fn violates(&self, ids: &[Identifier], matched: &BTreeSet<&String>) -> bool {
        let mut all: BTreeSet<&Identifier> = ids.iter().collect();
        for p in matched {
            all.extend(self.profiles[*p].identifiers.iter());
        }
        let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
        for id in &all {
            *counts.entry(id.kind.as_str()).or_default() += 1;
        }
        counts.iter().any(|(kind, n)| *n > self.rules.limit(kind))
            || self
                .separations
                .iter()
                .any(|(a, b)| all.contains(a) && all.contains(b))
    }

    fn anchor(&self, profile: &Profile) -> Identifier {
        let mut ids: Vec<Identifier> = profile.identifiers.iter().cloned().collect();
        self.rules.sort_by_priority(&mut ids);
        ids.into_iter()
            .next()
            .unwrap_or_else(|| Identifier::new("profile", profile.id.clone()))
    }

    /// Applies one event in order. Events with no usable identifier touch no profile.
    pub fn apply(&mut self, obs: &Observation) -> Applied {
        let mut ids = obs.identifiers.clone();
        let mut dropped = Vec::new();
        if ids.is_empty() {
            return Applied::default();
        }
        let matched: BTreeSet<String> = loop {
            let matched: BTreeSet<&String> = ids.iter().filter_map(|i| self.index.get(i)).collect();
            if ids.len() > 1 && self.violates(&ids, &matched) {
                dropped.push(ids.pop().expect("more than one identifier"));
                continue;
            }
            break matched.into_iter().cloned().collect();
        };
        let mut applied = Applied {
            dropped: dropped.clone(),
            ..Applied::default()
        };
        // The profile first seen in the log keeps its id: the same one whatever order the
        // events are applied in.
        let winner = match matched.iter().min_by(|a, b| {
            let (pa, pb) = (&self.profiles[*a], &self.profiles[*b]);
            (pa.origin.seq, a).cmp(&(pb.origin.seq, b))
        }) {
            Some(w) => w.clone(),
            None => {
                let id = profile_id_for(&self.workspace, &obs.key.mid, obs.seq);
                self.redirects.remove(&id);
                self.profiles
                    .insert(id.clone(), Profile::new(id.clone(), obs));
                applied.created = true;
                self.changes
                    .created
                    .push((id.clone(), obs.seq, obs.key.mid.clone()));
                id
            }
        };
        for loser in matched.iter().filter(|p| **p != winner) {
            let via: Vec<Identifier> = ids
                .iter()
                .filter(|i| self.index.get(*i) == Some(loser))
                .cloned()
                .collect();
            self.merge(&winner, loser, obs, via);
            applied.merged.push(loser.clone());
        }
        let structural = applied.created
            || !applied.merged.is_empty()
            || ids.iter().any(|i| self.index.get(i) != Some(&winner));
        for id in ids {
            if self.index.get(&id) != Some(&winner) {
                self.index.insert(id.clone(), winner.clone());
                self.profiles
                    .get_mut(&winner)
                    .expect("winner exists")
                    .identifiers
                    .insert(id.clone());
                self.forget_drop(&id, &winner);
                self.changes
                    .links
                    .push((id.clone(), winner.clone(), obs.key.clone()));
                applied.linked.push(id);
            }
        }
        for id in dropped {
            let mut entangled: BTreeSet<String> = self.droppers(&id).cloned().collect();
            entangled.extend(self.index.get(&id).cloned());
            if self.index.get(&id) != Some(&winner)
                && self
                    .drops
                    .entry(id.clone())
                    .or_default()
                    .insert(winner.clone())
            {
                self.drops_by_profile
                    .entry(winner.clone())
                    .or_default()
                    .insert(id.clone());
            }
            entangled.insert(winner.clone());
            for p in entangled {
                if let Some(profile) = self.profiles.get_mut(&p) {
                    if !profile.entangled {
                        profile.entangled = true;
                        self.changes.dirty.insert(p);
                    }
                }
            }
        }
        let profile = self.profiles.get_mut(&winner).expect("winner exists");
        if structural && profile.shaped < obs.key {
            profile.shaped = obs.key.clone();
        }
        profile.observe(obs, &applied.dropped);
        self.changes.dirty.insert(winner.clone());
        self.changes.assignments.push((obs.seq, winner.clone()));
        applied.profile = Some(winner);
        applied
    }

    fn forget_drop(&mut self, id: &Identifier, profile: &str) {
        if let Some(set) = self.drops.get_mut(id) {
            if set.remove(profile) {
                if let Some(own) = self.drops_by_profile.get_mut(profile) {
                    own.remove(id);
                }
            }
            if set.is_empty() {
                self.drops.remove(id);
            }
        }
    }

    fn merge(&mut self, winner: &str, loser: &str, obs: &Observation, via: Vec<Identifier>) {
        let loser_profile = self.profiles.remove(loser).expect("loser exists");
        let record = MergeRecord {
            winner: winner.to_string(),
            loser: loser.to_string(),
            cause: obs.key.clone(),
            cause_seq: obs.seq,
            identifiers: via,
            winner_anchor: self.anchor(&self.profiles[winner]),
            loser_anchor: self.anchor(&loser_profile),
            loser_identifiers: loser_profile.identifiers.iter().cloned().collect(),
            rule: "shared_identifier".into(),
        };
        for id in &loser_profile.identifiers {
            self.index.insert(id.clone(), winner.to_string());
        }
        for id in self.drops_by_profile.remove(loser).unwrap_or_default() {
            let set = self.drops.entry(id.clone()).or_default();
            set.remove(loser);
            if self.index.get(&id).map(String::as_str) != Some(winner)
                && set.insert(winner.to_string())
            {
                self.drops_by_profile
                    .entry(winner.to_string())
                    .or_default()
                    .insert(id);
            } else if set.is_empty() {
                self.drops.remove(&id);
            }
        }
        let held: Vec<Identifier> = loser_profile.identifiers.iter().cloned().collect();
        for id in held {
            self.forget_drop(&id, winner);
        }
        self.profiles
            .get_mut(winner)
            .expect("winner exists")
            .absorb(loser_profile);
        self.redirects.insert(loser.to_string(), winner.to_string());
        self.changes.dirty.insert(loser.to_string());
        self.changes.dirty.insert(winner.to_string());
        self.changes.merges.push(record);
    }

    /// Folds events in order into a graph: the definition of the projection.
    pub fn fold<'a>(&mut self, events: impl IntoIterator<Item = &'a Observation>) {
        let mut events: Vec<&Observation> = events.into_iter().collect();
        events.sort_by(|a, b| a.key.cmp(&b.key));
        for obs in events {
            self.apply(obs);
        }
        self.settle_ids();
    }

    /// Gives every profile the id of its first event in the log. Folded in event-time order,
    /// a profile is created by its earliest event, which need not be its first in the log (a
    /// backdated event); its id must not depend on that.
    fn settle_ids(&mut self) {
        let renames: Vec<(String, String)> = self
            .profiles
            .values()
            .filter(|p| p.origin.seq != i64::MAX)
            .filter_map(|p| {
                let want = profile_id_for(&self.workspace, &p.origin.mid, p.origin.seq);
                (want != p.id).then(|| (p.id.clone(), want))
            })
            .collect();
        for (old, new) in renames {
            self.rename(&old, &new);
        }
    }

    /// Renames a profile everywhere in the graph and in the changes not yet taken.
    fn rename(&mut self, old: &str, new: &str) {
        let mut profile = self.profiles.remove(old).expect("renamed profile exists");
        profile.id = new.to_string();
        for id in &profile.identifiers {
            self.index.insert(id.clone(), new.to_string());
        }
        self.profiles.insert(new.to_string(), profile);
        if let Some(own) = self.drops_by_profile.remove(old) {
            for id in &own {
                if let Some(set) = self.drops.get_mut(id) {
                    set.remove(old);
                    set.insert(new.to_string());
                }
            }
            self.drops_by_profile.insert(new.to_string(), own);
        }
        // The id of the event that created it in the fold now names nothing.
        self.redirects.remove(new);
        for target in self.redirects.values_mut() {
            if target == old {
                *target = new.to_string();
            }
        }
        let changes = &mut self.changes;
        if changes.dirty.remove(old) {
            changes.dirty.insert(new.to_string());
        }
        for m in &mut changes.merges {
            if m.winner == old {
                m.winner = new.to_string();
            }
        }
        for (_, pid) in &mut changes.assignments {
            if pid == old {
                *pid = new.to_string();
            }
        }
        for (_, pid, _) in &mut changes.links {
            if pid == old {
                *pid = new.to_string();
            }
        }
        for (pid, _, _) in &mut changes.created {
            if pid == old {
                *pid = new.to_string();
            }
        }
    }
}

#[cfg(test)]
mod tests;
