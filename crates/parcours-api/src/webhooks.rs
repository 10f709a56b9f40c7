//! Webhook sources: `POST /v1/webhooks/{writeKey}` takes any JSON a platform sends and turns
//! it into events with the source's mapping; `POST /api/v1/webhooks/preview` shows what a
//! sample payload becomes; `GET /api/v1/webhooks/mappings` lists the shipped mappings.
//!
//! Platforms cannot send HTTP Basic, so the write key is in the path; a source whose platform
//! signs its calls checks the signature too. A call that cannot be mapped is answered 422 and
//! nothing is stored: the platform retries it (they all do, for hours or days) once the
//! mapping is fixed, so nothing is lost.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use parcours_core::limits;
use parcours_core::webhook::{MappingRef, SignatureCheck, SHIPPED};
use parcours_store::{IngestBatch, Source};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::error::{blocking, object_body, ApiError};
use crate::openapi::{Answer, AnyJson, PreviewBody, Refusals, WebhookCommitted};
use crate::tracking::{apply_plan, checked_batch, commit};
use crate::AppState;

pub fn admin_routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(preview))
        .routes(routes!(mappings))
        .routes(routes!(violations))
}

pub fn tracking_routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(receive))
}

fn mapping_error(e: parcours_core::webhook::MappingError) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "mapping_failed",
        e.to_string(),
    )
}

fn lower_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    headers
        .iter()
        .filter_map(|(k, v)| {
            Some((
                k.as_str().to_ascii_lowercase(),
                v.to_str().ok()?.to_string(),
            ))
        })
        .collect()
}

/// The JSON a webhook sent, within the limits every stored document keeps.
fn payload(body: &[u8]) -> Result<Value, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("invalid_json", "the webhook body is not UTF-8 JSON"))?;
    limits::check_text(text).map_err(|p| {
        ApiError::bad_request(
            "invalid_json",
            format!("the webhook body cannot be read: {p}"),
        )
    })?;
    serde_json::from_str(text).map_err(|e| {
        ApiError::bad_request("invalid_json", format!("the webhook body is not JSON: {e}"))
    })
}

/// The events a payload becomes, as one Segment batch body.
fn mapped_batch(
    mapping: &MappingRef,
    body: &Value,
    headers: &BTreeMap<String, String>,
    fallback_id: &str,
) -> Result<Vec<Value>, ApiError> {
    let compiled = mapping
        .resolve()
        .and_then(|m| m.compile())
        .map_err(mapping_error)?;
    compiled
        .events(body, headers, fallback_id)
        .map_err(mapping_error)
}

/// A stable id for a call: the same body to the same source is the same call (a platform's
/// retry), so its events get the same messageIds and are stored once.
fn call_id(source: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(source.as_bytes());
    h.update([0]);
    h.update(body);
    let d = h.finalize();
    let hex: String = d[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("wh-{hex}")
}

fn check_signature(
    check: &SignatureCheck,
    headers: &BTreeMap<String, String>,
    body: &[u8],
    now: i64,
) -> Result<(), ApiError> {
    check
        .scheme
        .verify(&check.secret, headers, body, now)
        .map_err(|e| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_signature",
                format!("the webhook's signature was refused: {e}"),
            )
        })
}

/// `POST /v1/webhooks/{writeKey}`: a platform's webhook (any JSON), turned into events by the
/// source's mapping.
#[utoipa::path(post, path = "/v1/webhooks/{key}", tag = "tracking",
    params(("key" = String, Path, description = "the webhook source's write key")),
    request_body = AnyJson,
    responses((status = 200, description = "mapped and committed", body = WebhookCommitted), Refusals))]
pub async fn receive(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let source = state.source_for_key(&key).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_write_key",
            "the write key is not valid",
        )
    })?;
    let Some(webhook) = source.webhook.clone() else {
        return Err(ApiError::bad_request(
            "not_a_webhook_source",
            format!(
                "source {} has no webhook mapping; give it one (PATCH /api/v1/sources/{} with `webhook`) or send Segment calls to /v1/batch",
                source.id, source.id
            ),
        ));
    };
    let now = state.engine.now();
    // The signature covers the body as sent (compressed or not): checked on what arrived,
    // and the body decompressed after.
    let raw_headers = headers;
    let headers = lower_headers(&raw_headers);
    if let Some(check) = &webhook.signature {
        check_signature(check, &headers, &body, now)?;
    }
    let mut raw_headers = raw_headers;
    let body = crate::server::decode(&mut raw_headers, body, parcours_core::spec::MAX_BATCH_BYTES)?;
    crate::tracking::within_limits(&state, &source)?;
    let (batch, violations, mapped) = blocking(move || {
        let value = payload(&body)?;
        let events = mapped_batch(
            &webhook.mapping,
            &value,
            &headers,
            &call_id(&source.id, &body),
        )?;
        let mapped = events.len();
        let envelope = serde_json::to_vec(&json!({ "batch": events }))
            .map_err(|e| ApiError::bad_request("mapping_failed", e.to_string()))?;
        let mut batch = checked_batch(&envelope, None, now, &source)?;
        let violations = apply_plan(&source, &mut batch, now);
        Ok((batch, violations, mapped))
    })
    .await?;
    let (accepted, quarantined) = (batch.events.len(), batch.quarantined.len());
    commit(&state, batch, violations).await?;
    Ok(Json(json!({
        "success": true,
        "events": mapped,
        "accepted": accepted,
        "quarantined": quarantined,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Preview {
    /// A shipped mapping's name or a mapping; or else `source`, whose mapping is used.
    mapping: Option<MappingRef>,
    source: Option<String>,
    payload: Value,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// What a sample payload becomes: the events, and for each whether it would be accepted or
/// quarantined (and why), with the source's tracking plan applied when a source is named.
#[utoipa::path(post, path = "/webhooks/preview", tag = "sources", request_body = PreviewBody,
    security(("bearer" = [])), responses((status = 200, description = "the events it becomes", body = Answer), Refusals))]
async fn preview(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: Option<Json<Value>>,
) -> Result<Json<Value>, ApiError> {
    let p: Preview = object_body(
        body,
        "send {\"mapping\": \"shopify_orders_create\" or {…}, \"payload\": {…}} or {\"source\": \"src_…\", \"payload\": {…}}",
        "invalid_json",
    )?;
    let (st, ws, now) = (
        state.engine.store().clone(),
        caller.workspace().to_string(),
        state.engine.now(),
    );
    blocking(move || {
        let source = match &p.source {
            Some(id) => Some(
                st.sources(&ws)?
                    .into_iter()
                    .find(|s| &s.id == id)
                    .ok_or_else(|| ApiError::not_found(format!("source {id}")))?,
            ),
            None => None,
        };
        let mapping = match (&p.mapping, &source) {
            (Some(m), _) => m.clone(),
            (
                None,
                Some(Source {
                    webhook: Some(w), ..
                }),
            ) => w.mapping.clone(),
            (None, Some(s)) => {
                return Err(ApiError::bad_request(
                    "not_a_webhook_source",
                    format!("source {} has no webhook mapping; send `mapping`", s.id),
                ))
            }
            (None, None) => {
                return Err(ApiError::bad_request(
                    "missing_parameter",
                    "send `mapping` (a shipped mapping's name or a mapping) or `source`",
                ))
            }
        };
        let raw = serde_json::to_vec(&p.payload).unwrap_or_default();
        limits::check_text(std::str::from_utf8(&raw).unwrap_or("")).map_err(|e| {
            ApiError::bad_request("invalid_json", format!("the payload cannot be read: {e}"))
        })?;
        let headers: BTreeMap<String, String> = p
            .headers
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        let events = mapped_batch(&mapping, &p.payload, &headers, &call_id("preview", &raw))?;
        let envelope = serde_json::to_vec(&json!({ "batch": events })).unwrap_or_default();
        let probe = source.clone().unwrap_or_else(|| Source {
            id: "preview".into(),
            workspace_id: ws.clone(),
            name: "preview".into(),
            channel: None,
            created_at: now,
            allowed_origins: vec![],
            webhook: None,
            tracking_plan: None,
        });
        let mut batch: IngestBatch = checked_batch(&envelope, None, now, &probe)?;
        let violations = apply_plan(&probe, &mut batch, now);
        let accepted: Vec<Value> = batch
            .events
            .iter()
            .map(|e| serde_json::from_str(&e.body).unwrap_or(Value::Null))
            .collect();
        let quarantined: Vec<Value> = batch
            .quarantined
            .iter()
            .map(|q| {
                json!({
                    "code": q.violation.code(),
                    "reason": q.detail.clone().unwrap_or_else(|| q.violation.message().to_string()),
                    "event": serde_json::from_str::<Value>(&q.body).unwrap_or(Value::Null),
                })
            })
            .collect();
        Ok(Json(json!({
            "events": events,
            "accepted": accepted,
            "quarantined": quarantined,
            "plan_violations": violations.len(),
        })))
    })
    .await
}

/// The webhook mappings shipped with Parcours.
#[utoipa::path(get, path = "/webhooks/mappings", tag = "sources",
    security(("bearer" = [])), responses((status = 200, description = "the shipped mappings", body = crate::openapi::MappingList), Refusals))]
async fn mappings(_caller: Caller) -> Json<Value> {
    let list: Vec<Value> = SHIPPED
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "platform": s.platform,
                "description": s.description,
                "signature": s.signature,
                "mapping": s.mapping(),
            })
        })
        .collect();
    Json(json!({ "mappings": list }))
}

/// Tracking plan violations by source, event, field and kind.
#[utoipa::path(get, path = "/tracking-plans/violations", tag = "sources",
    security(("bearer" = [])), responses((status = 200, description = "the violations report", body = crate::openapi::ViolationReport), Refusals))]
async fn violations(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let (st, ws) = (state.engine.store().clone(), caller.workspace().to_string());
    let lines = blocking(move || Ok(st.plan_violations(&ws)?)).await?;
    Ok(Json(json!({ "violations": lines })))
}
