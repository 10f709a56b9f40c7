//! Audience destinations: webhooks that receive adds and removes as they happen.

use parcours_service::definitions::{self, DestinationInput};
use parcours_service::deliveries;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use parcours_core::time::format_timestamp;
use parcours_engine::destinations::{DestinationDoc, IdentifierFormat};
use parcours_store::{
    destination_cursor, Definition, DefinitionKind, OutboxRow, OutboxState, Store,
};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audiences::{definition_body, find, remove_kind, same_id, store};
use crate::auth::Caller;
use crate::error::{blocking, ApiError};
use crate::openapi::{Answer, DestinationBody, Refusals, ReplayBody};
use crate::AppState;

type Api = Result<Json<Value>, ApiError>;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, replace, remove))
        .routes(routes!(deliveries))
        .routes(routes!(delivery))
        .routes(routes!(replay))
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
    max_in_flight: Option<u32>,
    max_per_second: Option<f64>,
    purpose: Option<String>,
    channel: Option<String>,
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
    let delivery = state.engine.delivery(&d.workspace_id, &d.id)?.map(|s| {
        json!({
            "state": s.state,
            "version": s.version,
            "delivered": s.delivered,
            "pending": s.pending,
            "dead": s.dead,
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
        "max_in_flight": doc.max_in_flight.unwrap_or(1),
        "max_per_second": doc.max_per_second,
        "purpose": doc.purpose.as_deref().unwrap_or("marketing"),
        "channel": doc.consent().map(|(_, c)| c),
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
    let (st, actor, now) = (store(state), caller.actor(), state.engine.now());
    let allow = state.engine.allows_private_destinations();
    let state = state.clone();
    blocking(move || {
        let input = DestinationInput {
            name: body.name,
            url: body.url,
            secret: body.secret,
            audiences: body.audiences,
            identifiers: body.identifiers,
            region: body.region,
            enabled: body.enabled,
            max_in_flight: body.max_in_flight,
            max_per_second: body.max_per_second,
            purpose: body.purpose,
            channel: body.channel,
        };
        let saved = definitions::save_destination_as(
            st.as_ref(),
            &actor,
            &id,
            input,
            creating,
            allow,
            now,
        )?;
        destination_json(st.as_ref(), &state, &saved.definition, saved.reveal_secret)
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
    caller.require_editor()?;
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
    caller.require_editor()?;
    let body = read_body(body)?;
    same_id(&id, body.id.as_deref(), "invalid_destination")?;
    save(&state, &caller, id, body, false).await
}

/// Audience webhooks with their delivery status.
#[utoipa::path(get, path = "/destinations", tag = "destinations", security(("bearer" = [])), responses((status = 200, description = "success", body = crate::openapi::DestinationList), Refusals))]
async fn list(State(state): State<Arc<AppState>>, caller: Caller) -> Api {
    let (st, actor) = (store(&state), caller.actor());
    blocking(move || {
        let mut out = Vec::new();
        for d in definitions::list(st.as_ref(), &actor, DefinitionKind::Destination)? {
            out.push(destination_json(st.as_ref(), &state, &d, false)?.0);
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
    remove_kind(&state, &caller, DefinitionKind::Destination, id).await
}

#[derive(Deserialize)]
struct DeliveryQuery {
    state: Option<String>,
    before: Option<i64>,
    limit: Option<usize>,
}

/// A request of the delivery log, as the API shows it (without its body).
fn delivery_json(r: &OutboxRow) -> Value {
    json!({
        "id": r.id,
        "webhook_id": parcours_engine::delivery::webhook_id(r),
        "state": r.state,
        "changes": r.items,
        "attempts": r.attempts,
        "last_error": r.last_error,
        "created_at": format_timestamp(r.created_at),
        "next_attempt_at": (r.state == OutboxState::Pending).then(|| format_timestamp(r.not_before)),
        "settled_at": r.settled_at.map(format_timestamp),
    })
}

/// The delivery log: the destination's requests, newest first.
#[utoipa::path(get, path = "/destinations/{id}/deliveries", tag = "destinations", params(("id" = String, Path, description = "the id"), ("state" = Option<String>, Query, description = "pending, leased, done or dead"), ("before" = Option<i64>, Query, description = "only requests with a smaller id (from next_before of the previous page)"), ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "1 to 1000, default 50")), security(("bearer" = [])), responses((status = 200, description = "success", body = crate::openapi::DeliveryPage), Refusals))]
async fn deliveries(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<DeliveryQuery>,
) -> Api {
    let (st, actor) = (store(&state), caller.actor());
    blocking(move || {
        let limit = q.limit.unwrap_or(50);
        let rows = deliveries::page(
            st.as_ref(),
            &actor,
            &id,
            q.state.as_deref(),
            q.before,
            limit,
        )?;
        let next = (rows.len() == limit)
            .then(|| rows.last().map(|r| r.id))
            .flatten();
        Ok(Json(json!({
            "destination": id,
            "deliveries": rows.iter().map(delivery_json).collect::<Vec<_>>(),
            "next_before": next,
        })))
    })
    .await
}

/// One request of the delivery log: the body sent and every attempt.
#[utoipa::path(get, path = "/destinations/{id}/deliveries/{delivery}", tag = "destinations", params(("id" = String, Path, description = "the destination"), ("delivery" = i64, Path, description = "the request's id in the delivery log")), security(("bearer" = [])), responses((status = 200, description = "success", body = crate::openapi::DeliveryAnswer), Refusals))]
async fn delivery(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((id, delivery)): Path<(String, i64)>,
) -> Api {
    caller.require_personal_data()?;
    let (st, actor) = (store(&state), caller.actor());
    blocking(move || {
        let (row, attempts) = deliveries::request(st.as_ref(), &actor, &id, delivery)?;
        let attempts: Vec<Value> = attempts
            .iter()
            .map(|a| {
                json!({
                    "attempt": a.attempt,
                    "at": format_timestamp(a.at),
                    "latency_ms": a.latency_ms,
                    "status": a.status,
                    "ok": a.ok,
                    "detail": a.detail,
                })
            })
            .collect();
        let mut out = delivery_json(&row);
        out["body"] = serde_json::from_str(&row.payload).unwrap_or(Value::String(row.payload));
        out["attempt_log"] = Value::Array(attempts);
        Ok(Json(out))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Replay {
    from: i64,
}

/// Replay from here: sends the destination's done and dead requests from `from` on again,
/// under the same webhook-ids and bodies, before the ones still waiting.
#[utoipa::path(post, path = "/destinations/{id}/replay", tag = "destinations", params(("id" = String, Path, description = "the id")), request_body = ReplayBody, security(("bearer" = [])), responses((status = 200, description = "success", body = crate::openapi::Replayed), Refusals))]
async fn replay(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Option<Json<Value>>,
) -> Api {
    caller.require_editor()?;
    let body: Replay = definition_body(body, "replay", "invalid_replay")?;
    let (st, actor, now) = (store(&state), caller.actor(), state.engine.now());
    blocking(move || {
        let n = deliveries::replay_from(st.as_ref(), &actor, &id, body.from, now)?;
        Ok(Json(
            json!({"destination": id, "from": body.from, "requeued": n}),
        ))
    })
    .await
}
