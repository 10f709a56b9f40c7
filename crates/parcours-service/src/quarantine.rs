//! The quarantine: events that broke the spec or that a processor set aside, read, replayed
//! (as they were or corrected) and discarded.

use parcours_core::spec::{check_event, Checked, Edge};
use parcours_core::time::Millis;
use parcours_store::{AppendOutcome, IngestBatch, QuarantineEntry, QuarantineStatus, Store};

use crate::{Actor, ServiceError};

/// A page of the workspace's quarantine, after `after_id`.
pub fn page(
    store: &dyn Store,
    actor: &Actor,
    status: Option<QuarantineStatus>,
    after_id: i64,
    limit: usize,
) -> Result<Vec<QuarantineEntry>, ServiceError> {
    // Quarantined events are events as sent: emails, phones, names.
    actor.require_personal_data()?;
    Ok(store.quarantined(&actor.workspace, status, after_id, limit)?)
}

pub fn entry(store: &dyn Store, actor: &Actor, id: i64) -> Result<QuarantineEntry, ServiceError> {
    actor.require_personal_data()?;
    store
        .quarantine_entry(&actor.workspace, id)?
        .ok_or_else(|| ServiceError::NotFound(format!("quarantined event {id}")))
}

/// Replays a quarantined event, as it was (`corrected: None`) or corrected. It is checked
/// again as its source would check it; if it still breaks the spec it stays where it is and
/// the reason comes back (`still_invalid`). Admins only.
pub fn replay(
    store: &dyn Store,
    actor: &Actor,
    id: i64,
    corrected: Option<&str>,
    now: Millis,
) -> Result<Option<AppendOutcome>, ServiceError> {
    actor.require_admin()?;
    let entry = entry(store, actor, id)?;
    let text = corrected.unwrap_or(&entry.body);
    let raw: Box<serde_json::value::RawValue> = serde_json::from_str(text).map_err(|e| {
        ServiceError::invalid(
            "invalid_json",
            format!("the corrected event is not JSON: {e}"),
        )
    })?;
    let channel = store
        .sources(&actor.workspace)?
        .into_iter()
        .find(|s| s.id == entry.source_id)
        .and_then(|s| s.channel);
    let edge = Edge::single(entry.received_at, channel, entry.path_type);
    let event = match check_event(&raw, &edge, &mut |_| {
        format!("quarantine-{}-{id}", entry.workspace_id)
    }) {
        Checked::Accepted(e) => e,
        Checked::Quarantined(q) => {
            return Err(ServiceError::Unprocessable {
                code: "still_invalid",
                message: format!(
                    "the event still breaks the spec ({}): {}",
                    q.violation.code(),
                    q.violation.message()
                ),
            })
        }
    };
    let batch = IngestBatch {
        workspace_id: entry.workspace_id.clone(),
        source_id: entry.source_id.clone(),
        events: vec![event],
        quarantined: vec![],
    };
    Ok(store.resolve_quarantined(&actor.workspace, id, Some(&batch), now)?)
}

/// Discards a quarantined event. Admins only.
pub fn discard(store: &dyn Store, actor: &Actor, id: i64, now: Millis) -> Result<(), ServiceError> {
    actor.require_admin()?;
    store.resolve_quarantined(&actor.workspace, id, None, now)?;
    Ok(())
}
