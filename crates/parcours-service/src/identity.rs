//! The identity graph's operations: undo a merge, unmerge a profile, change a workspace's
//! identity rules. Admins only.

use parcours_core::rules::{IdentityRules, IdentityRulesConfig};
use parcours_core::time::Millis;
use parcours_engine::UndoOutcome;
use parcours_store::Store;

use crate::{Actor, ServiceError};

/// Undoes a merge and derives both profiles again from their events.
pub fn undo_merge(
    store: &dyn Store,
    actor: &Actor,
    merge_id: i64,
    now: Millis,
) -> Result<UndoOutcome, ServiceError> {
    actor.require_admin()?;
    Ok(parcours_engine::undo_merge(
        store,
        &actor.workspace,
        merge_id,
        now,
    )?)
}

/// Undoes one merge of a profile (`merge_not_on_profile` when the merge is another
/// profile's). A merged id names the profile that holds it.
pub fn unmerge_profile(
    store: &dyn Store,
    actor: &Actor,
    profile: &str,
    merge_id: i64,
    now: Millis,
) -> Result<UndoOutcome, ServiceError> {
    actor.require_admin()?;
    let p = store
        .profile(&actor.workspace, profile)?
        .ok_or_else(|| ServiceError::NotFound(format!("profile {profile}")))?;
    let row = store
        .merge(&actor.workspace, merge_id)?
        .ok_or_else(|| ServiceError::NotFound(format!("merge {merge_id}")))?;
    let current = store
        .profile(&actor.workspace, &row.merge.winner)?
        .map(|p| p.id);
    let family = [&row.merge.winner, &row.merge.loser];
    if current.as_deref() != Some(p.id.as_str()) && !family.contains(&&p.id) {
        return Err(ServiceError::invalid(
            "merge_not_on_profile",
            format!("merge {merge_id} is not part of profile {}", p.id),
        ));
    }
    undo_merge(store, actor, merge_id, now)
}

/// Replaces the workspace's identity rules (`invalid_identity_rules` when they do not hold
/// together). Audiences and computed traits read what unknown consent counts as and whom an
/// analytics opt-out leaves out: when those change, they are computed again. The rules
/// apply to new events; a replay applies them to the past.
pub fn set_identity_rules(
    store: &dyn Store,
    actor: &Actor,
    rules: &IdentityRulesConfig,
    now: Millis,
) -> Result<(), ServiceError> {
    actor.require_admin()?;
    IdentityRules::new(rules.clone())
        .map_err(|e| ServiceError::invalid("invalid_identity_rules", e.to_string()))?;
    let read = |r: &IdentityRulesConfig| (r.unknown_consent, r.analytics_opt_out);
    let before = store
        .workspace(&actor.workspace)?
        .map(|w| read(&w.identity_rules));
    store.set_identity_rules(&actor.workspace, rules)?;
    if before != Some(read(rules)) {
        parcours_engine::definitions::recompute_definitions(store, &actor.workspace, now)?;
    }
    Ok(())
}

/// The profile an identifier belongs to, the value normalised as ingest normalises it (an
/// email in lower case, a phone in E.164 by the workspace's rules): `Invalid` when it cannot
/// be one, `Ok(None)` when no profile has it.
pub fn find(
    store: &dyn Store,
    workspace: &str,
    kind: &str,
    value: &str,
) -> Result<Option<String>, ServiceError> {
    let rules = store
        .workspace(workspace)?
        .map(|w| w.identity_rules)
        .unwrap_or_default();
    find_with(store, workspace, &rules, kind, value)
}

/// [`find`], with the workspace's rules already read.
pub fn find_with(
    store: &dyn Store,
    workspace: &str,
    rules: &IdentityRulesConfig,
    kind: &str,
    value: &str,
) -> Result<Option<String>, ServiceError> {
    let normalized = normalize(rules, kind, value)?;
    Ok(store.lookup(
        workspace,
        &parcours_core::identifier::Identifier::new(kind, normalized),
    )?)
}

/// An identifier's value as ingest stores it (an email in lower case, a phone in E.164 by
/// the workspace's rules): `Invalid` when it cannot be one.
pub fn normalize(
    rules: &IdentityRulesConfig,
    kind: &str,
    value: &str,
) -> Result<String, ServiceError> {
    use parcours_core::identifier::{normalize_email, normalize_phone_with, EMAIL, PHONE};
    match kind {
        EMAIL => normalize_email(value),
        PHONE => normalize_phone_with(value, rules.default_region.as_deref(), rules.phone_numbers),
        _ => Some(value.trim().to_string()).filter(|v| !v.is_empty()),
    }
    .ok_or_else(|| {
        ServiceError::invalid(
            "invalid_identifier",
            format!("`{value}` is not a valid {kind}"),
        )
    })
}

/// The workspace's identity rules (every role reads them).
pub fn identity_rules(
    store: &dyn Store,
    actor: &Actor,
) -> Result<IdentityRulesConfig, ServiceError> {
    store
        .workspace(&actor.workspace)?
        .map(|w| w.identity_rules)
        .ok_or_else(|| ServiceError::NotFound(format!("workspace {}", actor.workspace)))
}

/// About how many of the workspace's latest events a preview of identity rules reads.
pub const PREVIEW_EVENTS: usize = 20_000;

/// The profiles a set of rules makes of the events a preview read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Shape {
    pub profiles: usize,
    pub merges: usize,
}

/// What other identity rules would change, on the workspace's latest events.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RulesPreview {
    /// Events read (the latest ones of the workspace, about [`PREVIEW_EVENTS`]).
    pub events: usize,
    /// When the first and the last of them happened.
    #[serde(serialize_with = "parcours_core::time::serialize_iso_opt")]
    pub from: Option<Millis>,
    #[serde(serialize_with = "parcours_core::time::serialize_iso_opt")]
    pub to: Option<Millis>,
    /// What the rules in force make of them, and what the new ones would.
    pub now: Shape,
    pub with: Shape,
    /// Customers the new rules would group differently: profiles (as the new rules make
    /// them) whose identifiers no profile holds together today.
    pub changed: usize,
    /// Up to five of them: their identifiers, `type:value`.
    pub examples: Vec<Vec<String>>,
}

/// Folds the workspace's latest events (about [`PREVIEW_EVENTS`]) under the rules in force and
/// under `candidate`, in memory, and says what would change: nothing is written. Admins only
/// (the examples show identifiers); `invalid_identity_rules` when `candidate` does not hold
/// together. The separations operators made by undoing merges hold in both.
pub fn preview_identity_rules(
    store: &dyn Store,
    actor: &Actor,
    candidate: &IdentityRulesConfig,
) -> Result<RulesPreview, ServiceError> {
    use parcours_core::observation::Observation;
    use parcours_core::Graph;
    use std::collections::BTreeSet;

    actor.require_admin()?;
    let ws = actor.workspace.as_str();
    let with_rules = IdentityRules::new(candidate.clone())
        .map_err(|e| ServiceError::invalid("invalid_identity_rules", e.to_string()))?;
    let now_rules = IdentityRules::new(identity_rules(store, actor)?)
        .map_err(|e| ServiceError::invalid("invalid_identity_rules", e.to_string()))?;
    // The log's sequence is shared by every workspace: look back over a window of it, wider
    // until it holds enough of this workspace's events (or the whole log).
    let last = store.last_seq()?;
    let mut window = PREVIEW_EVENTS as i64;
    let events = loop {
        let after = (last - window).max(0);
        let mut events = Vec::new();
        let mut from = after;
        loop {
            let page = store.workspace_events(ws, from, 5_000)?;
            let Some(tail) = page.last() else { break };
            from = tail.seq;
            events.extend(page);
        }
        if events.len() >= PREVIEW_EVENTS / 2 || after == 0 || window > last {
            let skip = events.len().saturating_sub(PREVIEW_EVENTS);
            break events.split_off(skip);
        }
        window = window.saturating_mul(4);
    };
    let mut separations = Vec::new();
    store.transact(&mut |tx| {
        separations = tx.separations(ws)?;
        Ok(())
    })?;
    let fold = |rules: &IdentityRules| {
        let observations: Vec<Observation> = events
            .iter()
            .filter_map(|e| {
                let body = serde_json::from_str(&e.body).ok()?;
                Some(Observation::from_event(&e.meta(), &body, rules))
            })
            .collect();
        let mut graph = Graph::new(ws, rules.clone(), separations.clone());
        graph.fold(&observations);
        let merges = graph.take_changes().merges.len();
        let groups: BTreeSet<Vec<String>> = graph
            .profiles
            .values()
            .map(|p| {
                p.identifiers
                    .iter()
                    .map(|i| format!("{}:{}", i.kind, i.value))
                    .collect()
            })
            .collect();
        (
            Shape {
                profiles: graph.profiles.len(),
                merges,
            },
            groups,
        )
    };
    let (now, groups_now) = fold(&now_rules);
    let (with, groups_with) = fold(&with_rules);
    let changed: Vec<&Vec<String>> = groups_with.difference(&groups_now).collect();
    Ok(RulesPreview {
        events: events.len(),
        from: events.iter().map(|e| e.timestamp).min(),
        to: events.iter().map(|e| e.timestamp).max(),
        now,
        with,
        changed: changed.len(),
        examples: changed.into_iter().take(5).cloned().collect(),
    })
}
