//! The suppression list at ingest: an event that names an erased person's identifier (her
//! user id, an anonymous id of hers, her email or phone) is refused before it is stored, and
//! counted against the entry that refused it.
//!
//! Each workspace's list is read from the store at most every [`REFRESH`] (so an erasure on
//! another node applies here within that time) and at once after an erasure on this node.
//! A workspace with an empty list costs one lookup per batch.
//!
//! The same place applies the workspace's privacy settings to what is kept: IP addresses
//! truncated or dropped, precise locations dropped without consent.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use parcours_core::observation::{EventMeta, Observation};
use parcours_core::privacy::{suppression_hash, PrivacySettings};
use parcours_core::rules::IdentityRules;
use parcours_core::spec::{AcceptedEvent, EventType};
use parcours_store::{IngestBatch, Store};
use serde_json::Value;

/// The name of a workspace's privacy settings among its settings.
pub const PRIVACY_SETTINGS: &str = "privacy";

/// A workspace's preference-link secret, made the first time it is needed (two nodes
/// making it at once keep the same one).
pub fn preference_secret(
    store: &dyn Store,
    workspace: &str,
    now: parcours_core::time::Millis,
) -> parcours_store::Result<String> {
    use parcours_core::privacy::PREFERENCE_SECRET;
    use parcours_core::sealed;
    if let Some(s) = stored_preference_secret(store, workspace)? {
        return Ok(s);
    }
    let made = format!(
        "{:032x}{:032x}",
        rand::random::<u128>(),
        rand::random::<u128>()
    );
    let standing =
        store.init_workspace_setting(workspace, PREFERENCE_SECRET, &sealed::seal(&made), now)?;
    sealed::open(&standing).map_err(|e| parcours_store::StoreError::Backend(e.to_string()))
}

/// A workspace's preference-link secret if one was made (opened when sealed).
pub fn stored_preference_secret(
    store: &dyn Store,
    workspace: &str,
) -> parcours_store::Result<Option<String>> {
    store
        .workspace_setting(workspace, parcours_core::privacy::PREFERENCE_SECRET)?
        .map(|s| {
            parcours_core::sealed::open(&s)
                .map_err(|e| parcours_store::StoreError::Backend(e.to_string()))
        })
        .transpose()
}

/// How long a node trusts its copy of a workspace's list.
pub const REFRESH: Duration = Duration::from_secs(5);

struct Entry {
    hashes: Arc<HashSet<String>>,
    settings: Arc<PrivacySettings>,
    read_at: Duration,
}

#[derive(Default)]
pub struct ErasedList {
    lists: Mutex<HashMap<String, Entry>>,
}

impl ErasedList {
    /// Forgets a workspace's copy: the next batch reads the list again.
    pub fn invalidate(&self, workspace: &str) {
        self.lists
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(workspace);
    }

    /// The workspace's suppression list and privacy settings, read again after [`REFRESH`].
    fn read(
        &self,
        store: &dyn Store,
        workspace: &str,
        now: Duration,
    ) -> (Arc<HashSet<String>>, Arc<PrivacySettings>) {
        let mut lists = self.lists.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = lists.get(workspace) {
            if now.saturating_sub(e.read_at) < REFRESH {
                return (e.hashes.clone(), e.settings.clone());
            }
        }
        let read = store.suppressed_hashes(workspace).and_then(|h| {
            let settings = store
                .workspace_setting(workspace, PRIVACY_SETTINGS)?
                .and_then(|json| PrivacySettings::parse(&json).ok())
                .unwrap_or_default();
            Ok((h, settings))
        });
        let (hashes, settings) = match read {
            Ok((h, s)) => (Arc::new(h.into_iter().collect::<HashSet<_>>()), Arc::new(s)),
            // Unreadable: keep the last copy rather than let everyone in (or refuse all).
            Err(e) => {
                tracing::warn!(error = %e, "the suppression list was not read");
                return lists
                    .get(workspace)
                    .map(|e| (e.hashes.clone(), e.settings.clone()))
                    .unwrap_or_default();
            }
        };
        lists.insert(
            workspace.to_string(),
            Entry {
                hashes: hashes.clone(),
                settings: settings.clone(),
                read_at: now,
            },
        );
        (hashes, settings)
    }

    /// Applies the workspace's privacy settings to what a batch keeps (IP addresses, precise
    /// locations), then [`ErasedList::filter`]s it.
    pub fn apply(&self, store: &dyn Store, batch: &mut IngestBatch, now: Duration) -> usize {
        let (_, settings) = self.read(store, &batch.workspace_id, now);
        for e in &mut batch.events {
            // Most events carry neither: no parse for them.
            if !(e.body.contains("\"ip\"") || e.body.contains("\"location\"")) {
                continue;
            }
            if let Ok(mut v) = serde_json::from_str::<Value>(&e.body) {
                if settings.apply(&mut v) {
                    e.body = v.to_string();
                }
            }
        }
        self.filter(store, batch, now)
    }

    /// Takes out of `batch` every event that names a suppressed identifier (accepted or
    /// quarantined), and counts them against their entries. Returns how many it took.
    pub fn filter(&self, store: &dyn Store, batch: &mut IngestBatch, now: Duration) -> usize {
        let (hashes, _) = self.read(store, &batch.workspace_id, now);
        if hashes.is_empty() {
            return 0;
        }
        let rules = store
            .workspace(&batch.workspace_id)
            .ok()
            .flatten()
            .map(|w| w.identity_rules)
            .unwrap_or_default();
        let Ok(rules) = IdentityRules::new(rules) else {
            return 0;
        };
        let ws = batch.workspace_id.clone();
        let mut refused: HashMap<String, u64> = HashMap::new();
        let mut hit = |kind: EventType, user: Option<&str>, anon: Option<&str>, body: &str| {
            let Ok(value) = serde_json::from_str::<Value>(body) else {
                return false;
            };
            match suppressed(&ws, &hashes, &rules, kind, user, anon, &value) {
                Some(hash) => {
                    *refused.entry(hash).or_default() += 1;
                    true
                }
                None => false,
            }
        };
        let before = batch.events.len() + batch.quarantined.len();
        batch.events.retain(|e: &AcceptedEvent| {
            !hit(
                e.kind,
                e.user_id.as_deref(),
                e.anonymous_id.as_deref(),
                &e.body,
            )
        });
        batch.quarantined.retain(|q| {
            let value: Value = serde_json::from_str(&q.body).unwrap_or(Value::Null);
            let text = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_string);
            let kind = q
                .path_type
                .or_else(|| text("type").as_deref().and_then(EventType::parse))
                .unwrap_or(EventType::Track);
            !hit(
                kind,
                text("userId").as_deref(),
                text("anonymousId").as_deref(),
                &q.body,
            )
        });
        let taken = before - batch.events.len() - batch.quarantined.len();
        for (hash, n) in refused {
            if let Err(e) = store.count_refused(&ws, &hash, n) {
                tracing::warn!(error = %e, "refused events were not counted");
            }
        }
        taken
    }
}

/// The suppression entry an event names, if any: its identifiers as unify would read them.
fn suppressed(
    workspace: &str,
    hashes: &HashSet<String>,
    rules: &IdentityRules,
    kind: EventType,
    user_id: Option<&str>,
    anonymous_id: Option<&str>,
    body: &Value,
) -> Option<String> {
    let meta = EventMeta {
        seq: 0,
        message_id: "",
        kind,
        event: None,
        user_id,
        anonymous_id,
        timestamp: 0,
        received_at: 0,
        channel: parcours_core::channel::Channel::Server,
        source_id: "",
    };
    Observation::from_event(&meta, body, rules)
        .identifiers
        .iter()
        .map(|id| suppression_hash(workspace, &id.kind, &id.value))
        .find(|h| hashes.contains(h))
}
