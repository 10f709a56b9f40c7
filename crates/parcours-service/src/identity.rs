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
    use parcours_core::identifier::{
        normalize_email, normalize_phone_with, Identifier, EMAIL, PHONE,
    };
    let normalized = match kind {
        EMAIL => normalize_email(value),
        PHONE => normalize_phone_with(value, rules.default_region.as_deref(), rules.phone_numbers),
        _ => Some(value.trim().to_string()).filter(|v| !v.is_empty()),
    }
    .ok_or_else(|| {
        ServiceError::invalid(
            "invalid_identifier",
            format!("`{value}` is not a valid {kind}"),
        )
    })?;
    Ok(store.lookup(workspace, &Identifier::new(kind, normalized))?)
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
