//! Audience destinations: webhooks that receive adds and removes as they happen.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use parcours_core::time::format_timestamp;
use parcours_engine::destinations::{
    new_secret, save_destination, DestinationDoc, IdentifierFormat,
};
use parcours_store::{destination_cursor, Definition, DefinitionKind, Store};
use rand::RngCore;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audiences::{definition_body, find, remove_kind, same_id, store};
use crate::auth::Caller;
use crate::error::{blocking, ApiError};
use crate::openapi::{Answer, DestinationBody, Refusals};
use crate::AppState;

type Api = Result<Json<Value>, ApiError>;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, replace, remove))
}

/// A create or replace. Without `secret`, a create makes one and a replace keeps the old one.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    id: Option<String>,
    name: String,
    url: String,
    secret: Option<String>,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default)]
    identifiers: IdentifierFormat,
    region: Option<String>,
    #[serde(default = "yes")]
    enabled: bool,
}

fn yes() -> bool {
    true
}

fn read_body(body: Option<Json<Value>>) -> Result<Body, ApiError> {
    definition_body(body, "destination", "invalid_destination")
}

/// A destination as the API shows it; the secret only when it was just set. One whose stored
/// definition cannot be read is shown as such (it can be deleted).
fn destination_json(st: &dyn Store, state: &AppState, d: &Definition, reveal: bool) -> Api {
    let Ok(doc) = serde_json::from_value::<DestinationDoc>(d.doc.clone()) else {
        return Ok(Json(json!({
            "id": d.id,
            "version": d.version,
            "delivery": {"state": "unreadable"},
            "created_at": format_timestamp(d.created_at),
            "updated_at": format_timestamp(d.updated_at),
        })));
    };
    let secret = if reveal {
        doc.secret.clone()
    } else {
        let tail: String = doc
            .secret
            .chars()
            .rev()
            .take(4)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("whsec_…{tail}")
    };
    let delivery = state.engine.delivery(&d.workspace_id, &d.id).map(|s| {
        json!({
            "state": s.state,
            "version": s.version,
            "delivered": s.delivered,
            "failures": s.failures,
            "last_error": s.last_error,
            "last_success_at": s.last_success_at.map(format_timestamp),
            "next_attempt_at": s.next_attempt_at.map(format_timestamp),
        })
    });
    Ok(Json(json!({
        "id": d.id,
        "name": doc.name,
        "url": doc.url,
        "secret": secret,
        "audiences": doc.audiences,
        "identifiers": doc.identifiers,
        "region": doc.region,
        "enabled": doc.enabled,
        "version": d.version,
        "position": st.audience_cursor(&destination_cursor(&d.workspace_id, &d.id))?,
        "delivery": delivery,
        "created_at": format_timestamp(d.created_at),
        "updated_at": format_timestamp(d.updated_at),
    })))
}

async fn save(
    state: &Arc<AppState>,
    caller: &Caller,
    id: String,
    body: Body,
    creating: bool,
) -> Api {
    caller.require_editor()?;
    let (st, ws, now) = (
        store(state),
        caller.workspace().to_string(),
        state.engine.now(),
    );
    let state = state.clone();
    blocking(move || {
        let previous = find(st.as_ref(), &ws, DefinitionKind::Destination, &id).ok();
        if creating && previous.is_some() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "destination_exists",
                format!("destination {id} exists; PUT /api/v1/destinations/{id} replaces it"),
            ));
        }
        // The secret is shown when it is set or made, never after.
        let kept = previous.and_then(|p| p.doc["secret"].as_str().map(str::to_string));
        let reveal = body.secret.is_some() || kept.is_none();
        let secret = body.secret.or(kept).unwrap_or_else(|| {
            let mut bytes = [0u8; 32];
            rand::rng().fill_bytes(&mut bytes);
            new_secret(&bytes)
        });
        let doc = DestinationDoc {
            name: body.name,
            url: body.url,
            secret,
            audiences: body.audiences,
            identifiers: body.identifiers,
            region: body.region,
            enabled: body.enabled,
        };
        let allow = state.engine.allows_private_destinations();
        let d = save_destination(st.as_ref(), &ws, &id, &doc, now, allow)?;
        destination_json(st.as_ref(), &state, &d, reveal)
    })
    .await
}

/// Create a webhook destination (the answer shows its signing secret).
#[utoipa::path(post, path = "/destinations", tag = "destinations", request_body = DestinationBody, security(("bearer" = [])), responses((status = 201, description = "created", body = crate::openapi::DestinationAnswer), Refusals))]
async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: Option<Json<Value>>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = read_body(body)?;
    let Some(id) = body.id.clone() else {
        return Err(ApiError::bad_request(
            "invalid_destination",
            "`id` is required",
        ));
    };
    Ok((
        StatusCode::CREATED,
        save(&state, &caller, id, body, true).await?,
    ))
}

/// Replace a destination (it keeps its place in the change log).
#[utoipa::path(put, path = "/destinations/{id}", tag = "destinations", params(("id" = String, Path, description = "the id")), request_body = DestinationBody, security(("bearer" = [])), responses((status = 200, description = "success", body = crate::openapi::DestinationAnswer), Refusals))]
async fn replace(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Option<Json<Value>>,
) -> Api {
    let body = read_body(body)?;
    same_id(&id, body.id.as_deref(), "invalid_destination")?;
    save(&state, &caller, id, body, false).await
}

/// Audience webhooks with their delivery status.
#[utoipa::path(get, path = "/destinations", tag = "destinations", security(("bearer" = [])), responses((status = 200, description = "success", body = crate::openapi::DestinationList), Refusals))]
async fn list(State(state): State<Arc<AppState>>, caller: Caller) -> Api {
    let (st, ws) = (store(&state), caller.workspace().to_string());
    blocking(move || {
        let mut out = Vec::new();
        for d in st.definitions(Some(&ws))? {
            if d.kind == DefinitionKind::Destination {
                out.push(destination_json(st.as_ref(), &state, &d, false)?.0);
            }
        }
        Ok(Json(json!({ "destinations": out })))
    })
    .await
}

/// A destination and its delivery.
#[utoipa::path(get, path = "/destinations/{id}", tag = "destinations", params(("id" = String, Path, description = "the id")), security(("bearer" = [])), responses((status = 200, description = "success", body = crate::openapi::DestinationAnswer), Refusals))]
async fn show(State(state): State<Arc<AppState>>, caller: Caller, Path(id): Path<String>) -> Api {
    let (st, ws) = (store(&state), caller.workspace().to_string());
    blocking(move || {
        let d = find(st.as_ref(), &ws, DefinitionKind::Destination, &id)?;
        destination_json(st.as_ref(), &state, &d, false)
    })
    .await
}

/// Delete a destination.
#[utoipa::path(delete, path = "/destinations/{id}", tag = "destinations", params(("id" = String, Path, description = "the id")), security(("bearer" = [])), responses((status = 200, description = "success", body = Answer), Refusals))]
async fn remove(State(state): State<Arc<AppState>>, caller: Caller, Path(id): Path<String>) -> Api {
    caller.require_editor()?;
    remove_kind(&state, &caller, DefinitionKind::Destination, id).await
}
