//! A customer as the people who serve her see her: found by any identifier, with everything
//! Parcours knows about her on one page (the console's customer 360).

use parcours_core::channel::Channel;
use parcours_core::identifier::{ANONYMOUS_ID, DEVICE_ID, EMAIL, PHONE, USER_ID};
use parcours_core::profile::Profile;
use parcours_store::{
    ContactRow, IdentifierRow, Membership, MergeRow, Store, StoredEvent, StoredRun,
};

use crate::{Actor, ServiceError};

/// Customers whose identifiers match `query`: the query is tried as each identifier type the
/// workspace knows (emails and phones normalised as ingest normalises them), then as a
/// profile id. Each profile once, with the identifier that found it.
pub fn search(
    store: &dyn Store,
    actor: &Actor,
    query: &str,
) -> Result<Vec<(Profile, String)>, ServiceError> {
    actor.require_personal_data()?;
    let query = query.trim();
    if query.is_empty() {
        return Ok(Vec::new());
    }
    let rules = store
        .workspace(&actor.workspace)?
        .map(|w| w.identity_rules)
        .unwrap_or_default();
    let mut kinds: Vec<String> = [USER_ID, EMAIL, PHONE, ANONYMOUS_ID, DEVICE_ID]
        .iter()
        .map(|k| k.to_string())
        .collect();
    for k in rules.priority.iter().chain(&rules.identifier_traits) {
        if !kinds.contains(k) {
            kinds.push(k.clone());
        }
    }
    let mut ids: Vec<(String, String)> = Vec::new();
    for kind in &kinds {
        let id = match crate::identity::find_with(store, &actor.workspace, &rules, kind, query) {
            Ok(Some(id)) => id,
            // A value that cannot be of this type (not an email, not a phone) is not one.
            Ok(None) | Err(ServiceError::Invalid { .. }) => continue,
            Err(e) => return Err(e),
        };
        if !ids.iter().any(|(p, _)| *p == id) {
            ids.push((id, format!("{kind}:{query}")));
        }
    }
    if ids.is_empty() {
        ids.push((query.to_string(), format!("id:{query}")));
    }
    let mut found = Vec::new();
    for (id, by) in ids {
        if let Some(p) = store.profile(&actor.workspace, &id)? {
            found.push((p, by));
        }
    }
    Ok(found)
}

/// Everything the customer page shows, but her timeline (read page by page).
#[derive(Debug, Clone)]
pub struct Customer {
    pub profile: Profile,
    pub identifiers: Vec<IdentifierRow>,
    pub memberships: Vec<Membership>,
    pub runs: Vec<StoredRun>,
    pub contacts: Vec<ContactRow>,
    pub merges: Vec<MergeRow>,
}

/// Runs shown on her page, the latest first.
const RUNS_SHOWN: usize = 50;

/// A customer by profile id (a merged id names the profile that holds it).
pub fn customer(store: &dyn Store, actor: &Actor, id: &str) -> Result<Customer, ServiceError> {
    actor.require_personal_data()?;
    let ws = &actor.workspace;
    let profile = store
        .profile(ws, id)?
        .ok_or_else(|| ServiceError::NotFound(format!("profile {id}")))?;
    let pid = profile.id.clone();
    let mut contacts = store.contacts(ws, &pid, 0)?;
    contacts.reverse();
    Ok(Customer {
        identifiers: store.identifiers(ws, &pid)?,
        memberships: store.memberships(ws, &pid)?,
        runs: store.runs_of(ws, &pid, RUNS_SHOWN)?,
        merges: store.merges_of(ws, &pid)?,
        contacts,
        profile,
    })
}

/// One page of her timeline, newest first, on every channel or on those of `channels`:
/// the events and where the next page starts (`None` at the end).
pub fn timeline(
    store: &dyn Store,
    actor: &Actor,
    profile: &str,
    before: Option<i64>,
    channels: &[Channel],
    limit: usize,
) -> Result<(Vec<StoredEvent>, Option<i64>), ServiceError> {
    actor.require_personal_data()?;
    const READ: usize = 500;
    let mut out = Vec::new();
    let mut cursor = before;
    loop {
        let page = store.timeline(&actor.workspace, profile, cursor, READ)?;
        let done = page.len() < READ;
        for e in page {
            cursor = Some(e.seq);
            if channels.is_empty() || channels.contains(&e.channel) {
                out.push(e);
                if out.len() == limit {
                    return Ok((out, cursor));
                }
            }
        }
        if done {
            return Ok((out, None));
        }
    }
}

/// Live customers in profile id order after `after` (the console's list).
pub fn page(
    store: &dyn Store,
    actor: &Actor,
    after: &str,
    limit: usize,
) -> Result<Vec<Profile>, ServiceError> {
    actor.require_personal_data()?;
    Ok(store.profiles_page(&actor.workspace, after, limit)?)
}

/// One merge of the workspace (what an unmerge would undo).
pub fn merge(store: &dyn Store, actor: &Actor, merge_id: i64) -> Result<MergeRow, ServiceError> {
    // A merge names the identifiers that joined two profiles.
    actor.require_personal_data()?;
    store
        .merge(&actor.workspace, merge_id)?
        .ok_or_else(|| ServiceError::NotFound(format!("merge {merge_id}")))
}
