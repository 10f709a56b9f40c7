//! A destination's delivery log: its requests (outbox rows) with their attempts, and
//! "replay from here".

use parcours_core::time::Millis;
use parcours_store::{
    destination_lane, DefinitionKind, DeliveryAttempt, OutboxPage, OutboxRow, OutboxState, Store,
};

use crate::{definition, Actor, ServiceError};

/// The most requests a page shows.
pub const MAX_PAGE: usize = 1_000;

/// A page of a destination's requests, newest first: those with an id below `before` (all
/// when `None`), in `state` when given (`pending`, `leased`, `done`, `dead`).
pub fn page(
    store: &dyn Store,
    actor: &Actor,
    destination: &str,
    state: Option<&str>,
    before: Option<i64>,
    limit: usize,
) -> Result<Vec<OutboxRow>, ServiceError> {
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ServiceError::invalid(
            "invalid_parameter",
            "`limit` must be between 1 and 1000",
        ));
    }
    let state = state
        .map(|s| {
            OutboxState::parse(s).map_err(|_| {
                ServiceError::invalid(
                    "invalid_parameter",
                    "`state` is one of pending, leased, done, dead",
                )
            })
        })
        .transpose()?;
    definition(store, actor, DefinitionKind::Destination, destination)?;
    let lane = destination_lane(destination);
    Ok(store.outbox_rows(&OutboxPage {
        workspace_id: &actor.workspace,
        destination: &lane,
        state,
        before_id: before,
        limit,
    })?)
}

/// One request of a destination with its attempts, oldest first.
pub fn request(
    store: &dyn Store,
    actor: &Actor,
    destination: &str,
    id: i64,
) -> Result<(OutboxRow, Vec<DeliveryAttempt>), ServiceError> {
    definition(store, actor, DefinitionKind::Destination, destination)?;
    let row = store
        .outbox_row(&actor.workspace, id)?
        .filter(|r| r.destination == destination_lane(destination))
        .ok_or_else(|| {
            ServiceError::NotFound(format!("delivery {id} of destination {destination}"))
        })?;
    let attempts = store.delivery_attempts(&actor.workspace, id)?;
    Ok((row, attempts))
}

/// Sends a destination's done and dead requests from `from` on again, under the same
/// webhook-ids and bodies, before the ones still waiting. Returns how many. Admins and
/// marketers.
pub fn replay_from(
    store: &dyn Store,
    actor: &Actor,
    destination: &str,
    from: i64,
    now: Millis,
) -> Result<u64, ServiceError> {
    actor.require_editor()?;
    definition(store, actor, DefinitionKind::Destination, destination)?;
    Ok(store.requeue(&actor.workspace, &destination_lane(destination), from, now)?)
}
