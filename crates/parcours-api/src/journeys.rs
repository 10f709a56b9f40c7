//! The journeys API: a journey is a document (YAML or JSON) saved with `PUT`, every version
//! kept; `GET` answers it as it was written, with its versions.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use parcours_core::time::format_timestamp;
use parcours_service::journeys::{self, Saved};
use parcours_store::JourneyVersion;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audiences::store;
use crate::auth::Caller;
use crate::error::{blocking, ApiError};
use crate::openapi::{Answer, Refusals};
use crate::AppState;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show, put))
}

fn version_json(v: &JourneyVersion) -> Value {
    json!({
        "version": v.version,
        "status": v.status,
        "in_flight": v.in_flight,
        "created_at": format_timestamp(v.created_at),
    })
}

fn journey_json(v: &JourneyVersion) -> Value {
    json!({
        "id": v.journey_id,
        "name": v.doc.get("name"),
        "status": v.status,
        "priority": v.doc.get("priority"),
        "version": v.version,
        "updated_at": format_timestamp(v.created_at),
    })
}

fn saved_json(s: &Saved) -> Value {
    json!({
        "id": s.journey.id,
        "version": s.version.as_ref().map(|v| v.version),
        "status": s.journey.status.as_str(),
        "changed": s.changed,
        "changes": s.changes,
        "diff": s.diff,
        "journey": s.journey,
    })
}

/// The document's text: YAML, JSON or plain text, in UTF-8.
fn document(headers: &HeaderMap, body: &Bytes) -> Result<String, ApiError> {
    let kind = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    let accepted = [
        "application/yaml",
        "application/x-yaml",
        "text/yaml",
        "text/x-yaml",
        "application/json",
        "text/plain",
    ];
    if let Some(kind) = &kind {
        if !accepted.contains(&kind.as_str()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("send the journey as application/yaml or application/json, not {kind}"),
            ));
        }
    }
    String::from_utf8(body.to_vec()).map_err(|_| {
        ApiError::bad_request("invalid_journey_syntax", "the document is not UTF-8 text")
    })
}

#[derive(Deserialize)]
struct PutQuery {
    /// Only say what saving would change.
    #[serde(default)]
    dry_run: bool,
}

/// Save a journey document (YAML or JSON) as its next version; `?dry_run=true` only says
/// what it would change, for runs in flight too. The same document as the latest version
/// stores nothing (`changed: false`).
#[utoipa::path(put, path = "/journeys/{id}", tag = "journeys",
    params(("id" = String, Path, description = "the journey id (the document's `id`)"),
           ("dry_run" = Option<bool>, Query, description = "only say what would change")),
    request_body(content = String, content_type = "application/yaml", description = "the journey document, YAML or JSON (docs/journeys.md)"),
    security(("bearer" = [])),
    responses((status = 201, description = "a new journey", body = Answer), (status = 200, description = "a new version, unchanged, or a dry run", body = Answer), Refusals))]
async fn put(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<PutQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let text = document(&headers, &body)?;
    let (st, actor, now) = (store(&state), caller.actor(), state.engine.now());
    let saved = blocking(move || {
        Ok(if q.dry_run {
            actor.require_editor()?;
            journeys::plan(st.as_ref(), &actor, &id, &text)?
        } else {
            journeys::save(st.as_ref(), &actor, &id, &text, now)?
        })
    })
    .await?;
    let created = saved.changed && saved.version.as_ref().is_some_and(|v| v.version == 1);
    let status = if created && !q.dry_run {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(saved_json(&saved))))
}

#[derive(Deserialize)]
struct ShowQuery {
    /// A past version (the latest when absent).
    version: Option<u32>,
}

/// A journey: its document as written (the latest version, or `?version=N`), what it reads
/// as, and every version.
#[utoipa::path(get, path = "/journeys/{id}", tag = "journeys",
    params(("id" = String, Path, description = "the journey id"),
           ("version" = Option<u32>, Query, description = "a past version")),
    security(("bearer" = [])),
    responses((status = 200, description = "the journey", body = Answer), Refusals))]
async fn show(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<ShowQuery>,
) -> Result<Json<Value>, ApiError> {
    let (st, actor) = (store(&state), caller.actor());
    let (chosen, versions) =
        blocking(move || Ok(journeys::get(st.as_ref(), &actor, &id, q.version)?)).await?;
    let mut out = journey_json(&chosen);
    out["document"] = json!(chosen.source);
    out["journey"] = chosen.doc.clone();
    out["latest_version"] = json!(versions.first().map(|v| v.version));
    out["versions"] = versions.iter().map(version_json).collect();
    Ok(Json(out))
}

/// The workspace's journeys, each at its latest version.
#[utoipa::path(get, path = "/journeys", tag = "journeys", security(("bearer" = [])),
    responses((status = 200, description = "the journeys", body = Answer), Refusals))]
async fn list(State(state): State<Arc<AppState>>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let (st, actor) = (store(&state), caller.actor());
    let all = blocking(move || Ok(journeys::list(st.as_ref(), &actor)?)).await?;
    Ok(Json(json!({
        "journeys": all.iter().map(journey_json).collect::<Vec<_>>(),
    })))
}
