//! The unify processor: applies committed events, in log order, to the identity graph and the
//! profiles, in transactions that also move the processing cursor (each event is applied
//! exactly once). It loads only the part of the graph each event touches.
//!
//! No event can stop it: one it cannot read, or one whose changes the store refuses, is set
//! aside in the quarantine (the event stays in the log) and skipped, and the rest go on.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use parcours_core::bucket;
use parcours_core::graph::{Lateness, Separation};
use parcours_core::identifier::Identifier;
use parcours_core::observation::Observation;
use parcours_core::rules::IdentityRules;
use parcours_core::spec::Violation;
use parcours_core::time::Millis;
use parcours_core::Graph;
use parcours_store::{
    profile_bucket, tallies, CursorMove, JourneyWork, ProjectionTx, QueuedProfile, Result, Store,
    StoreError, StoredEvent,
};

use crate::health::Health;

/// The processor's name in health reports and metrics.
pub const UNIFY: &str = "unify";

/// The unify processor as the runner runs it: per bucket in a cluster.
pub(crate) struct UnifyProcessor {
    pub unifier: Unifier,
    pub batch: usize,
}

impl crate::runner::Processor for UnifyProcessor {
    fn name(&self) -> &'static str {
        UNIFY
    }

    fn placement(&self) -> crate::runner::Placement {
        crate::runner::Placement::PerBucket
    }

    fn step(&mut self, cx: &crate::runner::StepContext) -> Result<usize> {
        let n = match cx.owned {
            None => self.unifier.step(cx.store, cx.now, self.batch)?,
            Some((node, buckets)) => self
                .unifier
                .step_owned(cx.store, cx.now, self.batch, node, buckets)?,
        };
        metrics::counter!("parcours_events_unified_total").increment(n as u64);
        Ok(n)
    }
}

/// Applies the next events after the cursor with a fresh processor. Returns how many.
pub fn step(store: &dyn Store, now: Millis, batch: usize) -> Result<usize> {
    Unifier::default().step(store, now, batch)
}

/// What a step read: its last event, and the event itself when it was the only one (the one to
/// set aside if the store refuses it).
#[derive(Default)]
struct Page {
    last: Option<i64>,
    only: Option<StoredEvent>,
}

/// Most profiles one workspace's cache holds before it is dropped and refilled from the store.
const CACHE_PROFILES: usize = 200_000;

/// The unify processor's state between transactions: the part of each workspace's graph it
/// has already read, valid as long as nobody else rewrote the projections (same cursor, same
/// epoch).
#[derive(Default)]
pub struct Unifier {
    loaded: BTreeMap<String, Loaded>,
    seen: Option<(i64, i64)>,
    /// After the store refused a page: events up to this one are applied one per
    /// transaction, to find the one it refuses.
    isolate_upto: Option<i64>,
    /// Events set aside (in the quarantine) since this processor started: skipped.
    skip: BTreeSet<i64>,
    /// Events set aside since this processor started.
    set_aside: u64,
    /// A replay queues nothing for the audience processor: every definition is computed
    /// anew after it.
    replaying: bool,
    health: Option<Arc<Health>>,
}

impl Unifier {
    /// Reports set-aside events to a node's health.
    pub fn reporting_to(mut self, health: Arc<Health>) -> Self {
        self.health = Some(health);
        self
    }

    /// How many events this processor set aside (quarantined as unreadable or unprocessable).
    pub fn set_aside_count(&self) -> u64 {
        self.set_aside
    }

    /// Moves an event to the quarantine: it stays in the log and is skipped from now on.
    fn set_aside(
        &mut self,
        store: &dyn Store,
        e: &StoredEvent,
        violation: Violation,
        error: &str,
        now: Millis,
    ) -> Result<()> {
        store.set_aside(e, violation, error, now)?;
        self.note_set_aside(e, violation, error);
        Ok(())
    }

    /// Counts and reports an event already in the quarantine, and skips it from now on.
    fn note_set_aside(&mut self, e: &StoredEvent, violation: Violation, error: &str) {
        self.skip.insert(e.seq);
        self.set_aside += 1;
        let what = format!("event {} of workspace {}", e.seq, e.workspace_id);
        match &self.health {
            Some(h) => h.set_aside(UNIFY, violation.code(), &what, error),
            None => tracing::warn!(code = violation.code(), what, error, "event set aside"),
        }
    }

    /// Applies the next events of the whole log (a single node owns every bucket). Returns
    /// how many events it read.
    pub fn step(&mut self, store: &dyn Store, now: Millis, batch: usize) -> Result<usize> {
        self.step_scoped(store, now, batch, None)
    }

    /// Applies the next events of the buckets `node` holds, fenced by their leases: if a lease
    /// changed hands the transaction fails with a conflict and writes nothing. Other nodes
    /// write the same projections, so nothing is cached between steps.
    pub fn step_owned(
        &mut self,
        store: &dyn Store,
        now: Millis,
        batch: usize,
        node: &str,
        buckets: &[u16],
    ) -> Result<usize> {
        self.loaded.clear();
        self.seen = None;
        if buckets.is_empty() {
            return Ok(0);
        }
        self.step_scoped(store, now, batch, Some((node, buckets)))
    }

    /// One step, with the events the store refuses found and set aside: a page it refuses is
    /// applied again one event per transaction, and the event it still refuses alone is
    /// moved to the quarantine.
    fn step_scoped(
        &mut self,
        store: &dyn Store,
        now: Millis,
        batch: usize,
        owner: Option<(&str, &[u16])>,
    ) -> Result<usize> {
        loop {
            let size = if self.isolate_upto.is_some() {
                1
            } else {
                batch
            };
            let mut page = Page::default();
            match self.step_page(store, now, size, owner, &mut page) {
                Ok(n) => {
                    if self
                        .isolate_upto
                        .is_some_and(|upto| page.last.is_none_or(|last| last >= upto))
                    {
                        self.isolate_upto = None;
                    }
                    return Ok(n);
                }
                Err(StoreError::Rejected(error)) => match (page.only, page.last) {
                    (Some(one), _) => {
                        self.set_aside(store, &one, Violation::UnprocessableEvent, &error, now)?
                    }
                    (None, Some(last)) => self.isolate_upto = Some(last),
                    (None, None) => return Err(StoreError::Rejected(error)),
                },
                Err(e) => return Err(e),
            }
        }
    }

    /// Applies one page of events; `page` says what it read (to know which event a refusal
    /// came from).
    fn step_page(
        &mut self,
        store: &dyn Store,
        now: Millis,
        batch: usize,
        owner: Option<(&str, &[u16])>,
        page: &mut Page,
    ) -> Result<usize> {
        let every = bucket::all();
        let buckets = owner.map_or(&every[..], |(_, b)| b);
        // Appends commit in log order, so every event up to `high` is visible from here on.
        let high = store.last_seq()?;
        // Every bucket is at `high` or beyond (the lowest cursor is): nothing to do, and no
        // write transaction opened for it.
        if store.processed_seq()? >= high {
            return Ok(0);
        }
        let rules = rules_by_workspace(store)?;
        let loaded = &mut self.loaded;
        let seen = &mut self.seen;
        let skip = &self.skip;
        let queue = !self.replaying;
        let mut unreadable: Vec<(StoredEvent, String)> = Vec::new();
        let mut read = 0;
        let result = store.transact(&mut |tx| {
            if let Some((node, _)) = owner {
                tx.fence(node, buckets, now)?;
            }
            let cursors = tx.bucket_cursors(buckets)?;
            let low = cursors.iter().copied().min().unwrap_or(high);
            if low >= high {
                read = 0;
                return Ok(());
            }
            let events = match owner {
                None => store.events_after(low, batch)?,
                Some(_) => store.bucket_events_after(buckets, low, batch)?,
            };
            read = events.len();
            // A full page ends at its last event; a short one saw everything up to `high`.
            let last = events.last().map_or(high, |e| e.seq);
            let upto = if events.len() == batch {
                last
            } else {
                last.max(high)
            };
            let mut cursor_of = [i64::MAX; bucket::BUCKETS as usize];
            for (b, c) in buckets.iter().zip(&cursors) {
                cursor_of[usize::from(*b)] = *c;
            }
            // A bucket ahead of the others already applied its part of this page; events set
            // aside are skipped.
            let events: Vec<StoredEvent> = events
                .into_iter()
                .filter(|e| {
                    cursor_of
                        .get(usize::from(e.bucket))
                        .is_some_and(|cursor| e.seq > *cursor)
                        && !skip.contains(&e.seq)
                })
                .collect();
            *page = Page {
                last: events.last().map(|e| e.seq),
                only: match events.as_slice() {
                    [one] => Some(one.clone()),
                    _ => None,
                },
            };
            let mut workspaces: Vec<&str> =
                events.iter().map(|e| e.workspace_id.as_str()).collect();
            workspaces.sort_unstable();
            workspaces.dedup();
            tx.lock_workspaces(&workspaces)?;
            let state = (low, tx.epoch()?);
            if *seen != Some(state) {
                loaded.clear();
            }
            loaded.retain(|ws, l| {
                rules
                    .get(ws)
                    .is_some_and(|r| r.config == l.graph.rules().config)
            });
            unreadable.clear();
            process_events(tx, loaded, &events, &rules, (now, queue), &mut unreadable)?;
            // In the quarantine before the cursor moves past them (an entry is made once).
            for (e, error) in &unreadable {
                store.set_aside(e, Violation::UnreadableEvent, error, now)?;
            }
            tx.advance_buckets(buckets, upto)?;
            *seen = Some((upto, state.1));
            Ok(())
        });
        if result.is_err() {
            self.loaded.clear();
            self.seen = None;
        }
        result?;
        for (e, error) in unreadable {
            self.note_set_aside(&e, Violation::UnreadableEvent, &error);
        }
        self.loaded
            .retain(|_, l| l.graph.profiles.len() <= CACHE_PROFILES);
        Ok(read)
    }
}

fn rules_by_workspace(store: &dyn Store) -> Result<HashMap<String, IdentityRules>> {
    store
        .workspaces()?
        .into_iter()
        .map(|w| {
            let rules = IdentityRules::new(w.identity_rules)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            Ok((w.id, rules))
        })
        .collect()
}

/// The part of one workspace's graph loaded into memory.
struct Loaded {
    graph: Graph,
    /// Identifiers whose holder and droppers are in `graph` (found or known absent).
    looked_up: HashSet<Identifier>,
    /// Whether the store had any dropped identifier when this was loaded; if not, only the
    /// drops made in memory exist and the store need not be asked.
    store_has_drops: bool,
}

impl Loaded {
    fn new(tx: &mut dyn ProjectionTx, workspace: &str, rules: &IdentityRules) -> Result<Self> {
        let separations = tx.separations(workspace)?;
        Ok(Self {
            graph: Graph::new(workspace, rules.clone(), separations),
            looked_up: HashSet::new(),
            store_has_drops: tx.has_drops(workspace)?,
        })
    }

    /// Brings in every stored profile that holds or dropped one of `ids`, and, through
    /// entangled profiles, everything that could decide differently.
    fn load(&mut self, tx: &mut dyn ProjectionTx, ids: &[Identifier]) -> Result<()> {
        let ws = self.graph.workspace().to_string();
        let mut queue: Vec<Identifier> = ids
            .iter()
            .filter(|i| !self.looked_up.contains(*i))
            .cloned()
            .collect();
        while let Some(id) = queue.pop() {
            if !self.looked_up.insert(id.clone()) {
                continue;
            }
            let mut found = Vec::new();
            if self.graph.holder(&id).is_none() {
                found.extend(tx.holder(&ws, &id)?);
            }
            if self.store_has_drops {
                found.extend(tx.droppers(&ws, &id)?);
            }
            for pid in found {
                let pid = self.graph.resolve(&pid).to_string();
                if self.graph.profiles.contains_key(&pid) {
                    continue;
                }
                let Some(profile) = tx.profile(&ws, &pid)? else {
                    continue;
                };
                if profile.entangled {
                    for d in tx.drops_of(&ws, &pid)? {
                        self.graph.load_drop(d.clone(), pid.clone());
                        queue.push(d);
                    }
                    queue.extend(profile.identifiers.iter().cloned());
                }
                self.graph.load_profile(profile);
            }
        }
        Ok(())
    }
}

/// What an event tells the graph, or why its body cannot be read (an event stored before
/// ingest checked the limits every reader has).
fn observe(e: &StoredEvent, rules: &IdentityRules) -> std::result::Result<Observation, String> {
    let body = serde_json::from_str(&e.body).map_err(|err| err.to_string())?;
    Ok(Observation::from_event(&e.meta(), &body, rules))
}

/// Applies events (in log order) to the projections inside one transaction, reading the
/// graph through `loaded` (kept by the caller between transactions). Events whose body
/// cannot be read are skipped and listed in `unreadable`.
fn process_events(
    tx: &mut dyn ProjectionTx,
    loaded: &mut BTreeMap<String, Loaded>,
    events: &[StoredEvent],
    rules: &HashMap<String, IdentityRules>,
    (now, queue): (Millis, bool),
    unreadable: &mut Vec<(StoredEvent, String)>,
) -> Result<()> {
    let default_rules = IdentityRules::default();
    let applied: HashMap<i64, &StoredEvent> = events.iter().map(|e| (e.seq, e)).collect();
    let applied = queue.then_some(&applied);
    let mut readable: Vec<&StoredEvent> = Vec::with_capacity(events.len());
    let mut observed: Vec<Observation> = Vec::with_capacity(events.len());
    for e in events {
        match observe(
            e,
            rules.get(e.workspace_id.as_str()).unwrap_or(&default_rules),
        ) {
            Ok(o) => {
                readable.push(e);
                observed.push(o);
            }
            Err(error) => unreadable.push((e.clone(), error)),
        }
    }
    // One round trip for what the whole step will look up, where the store benefits.
    let mut wanted: BTreeMap<&str, Vec<Identifier>> = BTreeMap::new();
    for (e, obs) in readable.iter().zip(&observed) {
        wanted
            .entry(e.workspace_id.as_str())
            .or_default()
            .extend(obs.identifiers.iter().cloned());
    }
    for (ws, mut ids) in wanted {
        ids.sort();
        ids.dedup();
        tx.prefetch(ws, &ids)?;
    }
    // What the dashboard counts, on the day each event happened: a late event re-derives its
    // group of profiles, which makes and merges no profile the count would see.
    let mut counts = tallies::Tallies::default();
    for (e, obs) in readable.into_iter().zip(observed) {
        let ws = e.workspace_id.as_str();
        let rules = rules.get(ws).unwrap_or(&default_rules);
        counts.add(ws, tallies::EVENTS, e.channel.as_str(), e.timestamp, 1);
        counts.add(ws, tallies::RECEIVED, &e.source_id, e.received_at, 1);
        counts.add(
            ws,
            tallies::RECEIVED_CHANNEL,
            e.channel.as_str(),
            e.received_at,
            1,
        );
        if obs.identifiers.is_empty() {
            continue;
        }
        if !loaded.contains_key(ws) {
            loaded.insert(ws.to_string(), Loaded::new(tx, ws, rules)?);
        }
        let slot = loaded.get_mut(ws).expect("just inserted");
        slot.load(tx, &obs.identifiers)?;
        match slot.graph.lateness(&obs) {
            lateness @ (Lateness::InOrder | Lateness::TooWide) => {
                if lateness == Lateness::TooWide {
                    metrics::counter!("parcours_late_events_in_arrival_order_total").increment(1);
                    tracing::debug!(
                        seq = e.seq,
                        "late event in a wide group of profiles applied in arrival order"
                    );
                }
                let applied = slot.graph.apply(&obs);
                metrics::counter!("parcours_profile_merges_total")
                    .increment(applied.merged.len() as u64);
                counts.add(
                    ws,
                    tallies::PROFILES,
                    "",
                    e.timestamp,
                    i64::from(applied.created),
                );
                counts.add(
                    ws,
                    tallies::MERGES,
                    "",
                    e.timestamp,
                    applied.merged.len() as i64,
                );
            }
            Lateness::Late(component) => {
                flush(tx, &mut slot.graph, now, applied)?;
                // The late event is queued like any other (journeys follow it, audiences
                // read what it names); the component's other events were queued when
                // they were applied.
                let late = HashMap::from([(e.seq, e)]);
                let late = queue.then_some(&late);
                rederive(tx, ws, rules, component, Some(e.clone()), (now, late))?;
                *slot = Loaded::new(tx, ws, rules)?;
            }
        }
    }
    for slot in loaded.values_mut() {
        flush(tx, &mut slot.graph, now, applied)?;
    }
    tx.add_tallies(&counts.into_rows())
}

/// Writes what changed in a graph. Every profile id is resolved through the merges made in
/// memory, so the order of the changes does not matter.
/// `queue` holds the events applied, by place in the log, to queue their profiles for
/// audience evaluation (`None`: a replay, after which every definition is computed anew).
fn flush(
    tx: &mut dyn ProjectionTx,
    graph: &mut Graph,
    now: Millis,
    queue: Option<&HashMap<i64, &StoredEvent>>,
) -> Result<()> {
    let ws = graph.workspace().to_string();
    let changes = graph.take_changes();
    for m in &changes.merges {
        tx.record_merge(&ws, m, now)?;
        tx.relink(&ws, &m.loser_identifiers, graph.resolve(&m.loser))?;
    }
    let links: Vec<(&Identifier, &str, &str)> = changes
        .links
        .iter()
        .map(|(id, pid, key)| (id, graph.resolve(pid), key.mid.as_str()))
        .collect();
    tx.link_many(&ws, &links, now)?;
    let mut live = Vec::new();
    let mut gone = Vec::new();
    for pid in &changes.dirty {
        match graph.profiles.get(pid) {
            Some(p) => {
                live.push(p);
                if p.entangled {
                    let drops: Vec<Identifier> = graph.drops_of(pid).cloned().collect();
                    tx.set_drops(&ws, pid, &drops)?;
                }
            }
            None => {
                tx.redirect_profile(&ws, pid, graph.resolve(pid), now)?;
                tx.set_drops(&ws, pid, &[])?;
                gone.push(pid);
            }
        }
    }
    tx.save_profiles(&ws, &live, now)?;
    let assignments: Vec<(i64, &str)> = changes
        .assignments
        .iter()
        .map(|(seq, pid)| (*seq, pid.as_str()))
        .collect();
    tx.assign_many(&ws, &assignments)?;
    let Some(applied) = queue else {
        return Ok(());
    };
    // Journeys follow each event of a customer in order, in the bucket of her profile.
    if tx.runs_journeys(&ws)? {
        let work: Vec<JourneyWork> = assignments
            .iter()
            .filter_map(|(seq, pid)| {
                let e = applied.get(seq)?;
                let profile = graph.resolve(pid);
                Some(JourneyWork {
                    workspace_id: ws.clone(),
                    seq: *seq,
                    profile_id: profile.to_string(),
                    bucket: profile_bucket(&ws, profile),
                    name: crate::facts::event_name(e).unwrap_or_default().to_string(),
                    message_id: e.message_id.clone(),
                    timestamp: e.timestamp,
                    body: e.body.clone(),
                })
            })
            .collect();
        tx.queue_journey_work(&work)?;
    }
    // A workspace without audiences or computed traits queues nothing: its first
    // definition's full computation reads every event applied before it.
    if !tx.evaluates_audiences(&ws)? {
        return Ok(());
    }
    // The audience processor of each profile's bucket evaluates what its events name, new
    // profiles and merge winners in full (their events changed), and takes merged-away ids
    // out of their audiences.
    let mut work: Vec<QueuedProfile> = Vec::new();
    for (seq, pid) in &assignments {
        if let Some(e) = applied.get(seq) {
            let mut row = QueuedProfile::event(
                graph.resolve(pid),
                *seq,
                crate::facts::event_name(e),
                &e.message_id,
            );
            // Consent to analytics may take her out of (or back into) everything.
            row.everything = crate::facts::records_consent(e);
            work.push(row);
        }
    }
    for (pid, seq, mid) in &changes.created {
        work.push(QueuedProfile::reshaped(graph.resolve(pid), *seq, mid));
    }
    for m in &changes.merges {
        work.push(QueuedProfile::reshaped(
            graph.resolve(&m.winner),
            m.cause_seq,
            &m.cause.mid,
        ));
    }
    for pid in gone {
        let m = changes.merges.iter().find(|m| &m.loser == pid);
        let (seq, cause) = m.map_or((0, "merge"), |m| (m.cause_seq, m.cause.mid.as_str()));
        work.push(QueuedProfile::retired(pid, seq, cause));
    }
    tx.queue_audience_work(&ws, &work, now)
}

/// Re-derives a component of the graph from its events, in event-time order, optionally with
/// one more event (a late arrival). Old profile ids that no longer exist point to the profile
/// that now holds their first event.
fn rederive(
    tx: &mut dyn ProjectionTx,
    ws: &str,
    rules: &IdentityRules,
    component: BTreeSet<String>,
    extra: Option<StoredEvent>,
    (now, queue): (Millis, Option<&HashMap<i64, &StoredEvent>>),
) -> Result<()> {
    metrics::counter!("parcours_rederivations_total").increment(1);
    let mut old: BTreeSet<String> = BTreeSet::new();
    for pid in &component {
        old.extend(tx.family(ws, pid)?);
    }
    let old: Vec<String> = old.into_iter().collect();
    let mut first_event_of: Vec<(String, i64)> = Vec::new();
    let mut events: Vec<StoredEvent> = Vec::new();
    for pid in &old {
        let own = tx.events_of(ws, std::slice::from_ref(pid))?;
        if let Some(first) = own.iter().map(|e| e.seq).min() {
            first_event_of.push((pid.clone(), first));
        }
        events.extend(own);
    }
    events.extend(extra.clone());
    tx.clear_profiles(ws, &old)?;
    let separations: Vec<Separation> = tx.separations(ws)?;
    let mut graph = Graph::new(ws, rules.clone(), separations);
    // Every event of a profile was read once when it was applied; one that cannot be read
    // never was (it was set aside).
    let observations: Vec<Observation> = events
        .iter()
        .filter_map(|e| match observe(e, rules) {
            Ok(o) => Some(o),
            Err(error) => {
                tracing::warn!(
                    seq = e.seq,
                    error,
                    "unreadable event left out of a re-derivation"
                );
                None
            }
        })
        .collect();
    graph.fold(&observations);
    let owner: HashMap<i64, String> = graph.pending_assignments().into_iter().collect();
    flush(tx, &mut graph, now, queue)?;
    // Every profile of the component is evaluated again in full by the audience processor,
    // and every id that no longer names one leaves its audiences: after the late event, or
    // at once for an undo.
    let (seq, cause) = extra
        .as_ref()
        .map_or((0, "undo"), |e| (e.seq, e.message_id.as_str()));
    let mut work: Vec<QueuedProfile> = graph
        .profiles
        .keys()
        .map(|p| QueuedProfile::reshaped(p, seq, cause))
        .collect();
    for (pid, first) in &first_event_of {
        if graph.profiles.contains_key(pid) || graph.redirects.contains_key(pid) {
            continue;
        }
        let successor = owner.get(first).map(|target| graph.resolve(target));
        if let Some(target) = successor {
            tx.redirect_profile(ws, pid, target, now)?;
        }
        work.push(QueuedProfile::retired(pid, seq, cause));
    }
    if queue.is_some() && tx.evaluates_audiences(ws)? {
        tx.queue_audience_work(ws, &work, now)?;
    }
    Ok(())
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct UndoOutcome {
    pub merge_id: i64,
    /// The profile that now holds the winner's most important identifier.
    pub winner_profile: Option<String>,
    /// The profile that now holds the loser's most important identifier.
    pub loser_profile: Option<String>,
}

/// Undoes a merge: the two anchors of the merge become a separation rule, and the component
/// that holds them is re-derived from its events, so both people get their own profile back.
pub fn undo_merge(
    store: &dyn Store,
    workspace: &str,
    merge_id: i64,
    now: Millis,
) -> Result<UndoOutcome> {
    let row = store
        .merge(workspace, merge_id)?
        .ok_or_else(|| StoreError::NotFound(format!("merge {merge_id}")))?;
    let current = store
        .profile(workspace, &row.merge.winner)?
        .ok_or_else(|| StoreError::NotFound(format!("profile {}", row.merge.winner)))?;
    let ws_rules = store
        .workspace(workspace)?
        .map(|w| w.identity_rules)
        .unwrap_or_default();
    let rules = IdentityRules::new(ws_rules).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    store.transact(&mut |tx| {
        tx.lock_workspaces(&[workspace])?;
        if !tx.mark_merge_undone(workspace, merge_id, now)? {
            return Err(StoreError::Conflict(format!(
                "merge {merge_id} is not active (already undone or superseded)"
            )));
        }
        let separation = (
            row.merge.winner_anchor.clone(),
            row.merge.loser_anchor.clone(),
        );
        tx.add_separation(workspace, &separation, merge_id, now)?;
        // The unify processor's cache holds the merged profile and not the new rule.
        tx.bump_epoch()?;
        let mut loaded = Loaded::new(tx, workspace, &rules)?;
        let ids: Vec<Identifier> = current.identifiers.iter().cloned().collect();
        loaded.load(tx, &ids)?;
        let component = loaded.graph.component(&ids);
        rederive(
            tx,
            workspace,
            &rules,
            component,
            None,
            (now, Some(&HashMap::new())),
        )
    })?;
    let side = |anchor: &Identifier| store.lookup(workspace, anchor);
    Ok(UndoOutcome {
        merge_id,
        winner_profile: side(&row.merge.winner_anchor)?,
        loser_profile: side(&row.merge.loser_anchor)?,
    })
}

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Events read from the log.
    pub events: u64,
    /// Events that could not be read or applied: skipped and listed in the quarantine.
    pub set_aside: u64,
}

/// Rebuilds every projection from the event log. `progress(done, total)` reports along the
/// way. An event that cannot be read or applied is set aside (in the quarantine) and skipped.
pub fn replay(
    store: &dyn Store,
    now: Millis,
    batch: usize,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ReplayReport> {
    store.transact(&mut |tx| tx.reset_all())?;
    // Memberships are projections too: the next node computes every audience again, and takes
    // the ids this replay no longer gives out of their audiences.
    store.reset_audiences()?;
    let replays = store.audience_cursor(crate::audiences::REPLAYED)? + 1;
    store.record(&parcours_store::AudienceWrite {
        cursors: vec![CursorMove::new(crate::audiences::REPLAYED, replays)],
        ..parcours_store::AudienceWrite::default()
    })?;
    let total = store.last_seq()?.max(0) as u64;
    let mut done = 0u64;
    let mut unifier = Unifier {
        replaying: true,
        ..Unifier::default()
    };
    loop {
        let n = unifier.step(store, now, batch)?;
        if n == 0 {
            break;
        }
        done += n as u64;
        progress(store.processed_seq()?.max(0) as u64, total);
    }
    Ok(ReplayReport {
        events: done,
        set_aside: unifier.set_aside_count(),
    })
}
