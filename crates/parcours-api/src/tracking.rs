//! The Segment HTTP Tracking API: `/v1/{track,identify,page,screen,group,alias,batch}`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use parcours_core::plan::{flag, report_key, OnViolation};
use parcours_core::spec::{self, Checked, Edge, EnvelopeError, EventType, MAX_BATCH_BYTES};
use parcours_core::spec::{QuarantinedEvent, Violation as SpecViolation};
use parcours_store::{IngestBatch, PlanViolationCount, Source};
use serde_json::{json, Value};

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::basic_write_key;
use crate::error::{blocking, ApiError};
use crate::openapi::{Committed, Refusals, SegmentBatch, SegmentEvent};
use crate::AppState;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(batch))
        .routes(routes!(import))
        .routes(routes!(single))
}

/// A batch of Segment calls.
#[utoipa::path(post, path = "/v1/batch", tag = "tracking",
    request_body = SegmentBatch, security(("writeKey" = [])),
    responses((status = 200, description = "committed to the event log", body = Committed), Refusals))]
pub async fn batch(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    ingest(state, headers, body, None).await
}

/// A batch of Segment calls (Segment's import endpoint, the same as `/v1/batch`).
#[utoipa::path(post, path = "/v1/import", tag = "tracking",
    request_body = SegmentBatch, security(("writeKey" = [])),
    responses((status = 200, description = "committed to the event log", body = Committed), Refusals))]
pub async fn import(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    ingest(state, headers, body, None).await
}

/// One Segment call; the path names its type (`t`, `i`, `p`, `s`, `g`, `a` are the short
/// paths browser SDKs use).
#[utoipa::path(post, path = "/v1/{kind}", tag = "tracking",
    params(("kind" = String, Path, description = "track, identify, page, screen, group, alias, or t, i, p, s, g, a",
        pattern = "^(track|identify|page|screen|group|alias|t|i|p|s|g|a)$")),
    request_body = SegmentEvent, security(("writeKey" = [])),
    responses((status = 200, description = "committed to the event log", body = Committed), Refusals))]
pub async fn single(
    State(state): State<Arc<AppState>>,
    Path(kind): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let kind = match kind.as_str() {
        "t" => EventType::Track,
        "i" => EventType::Identify,
        "p" => EventType::Page,
        "s" => EventType::Screen,
        "g" => EventType::Group,
        "a" => EventType::Alias,
        other => EventType::parse(other).ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "route_not_found",
                format!("no tracking endpoint /v1/{other}"),
            )
        })?,
    };
    ingest(state, headers, body, Some(kind)).await
}

fn envelope_error(e: EnvelopeError) -> ApiError {
    let status = match e {
        EnvelopeError::TooLarge { .. }
        | EnvelopeError::EventTooLarge { .. }
        | EnvelopeError::TooManyEvents { .. }
        | EnvelopeError::ContextTooLarge { .. }
        | EnvelopeError::MergedTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    };
    ApiError::new(status, e.code(), e.to_string())
}

/// The source a write key belongs to, or 401.
async fn authenticate(state: &Arc<AppState>, key: &str) -> Result<Source, ApiError> {
    state.source_for_key(key).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_write_key",
            "the write key is not valid",
        )
    })
}

async fn ingest(
    state: Arc<AppState>,
    headers: HeaderMap,
    body: Body,
    path_type: Option<EventType>,
) -> Result<Response, ApiError> {
    // The key is checked before the body is: from the header, or else found in the body
    // without validating it (a body that is not JSON has no key to find).
    let header_source = match basic_write_key(&headers) {
        Some(key) => Some(authenticate(&state, &key).await?),
        None => None,
    };
    let limit = if path_type.is_some() {
        spec::MAX_EVENT_BYTES
    } else {
        MAX_BATCH_BYTES
    };
    let bytes = axum::body::to_bytes(body, limit + 1).await.map_err(|_| {
        envelope_error(EnvelopeError::TooLarge {
            size: limit + 1,
            limit,
        })
    })?;
    let mut headers = headers;
    let bytes = crate::server::decode(&mut headers, bytes, limit)?;
    let source = match header_source {
        Some(source) => source,
        None => {
            let key = spec::body_write_key(&bytes).ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "missing_write_key",
                    "send the source's write key as HTTP Basic `key:` or as `writeKey`",
                )
            })?;
            authenticate(&state, &key).await?
        }
    };
    if let Some(refused) = crate::browser::refused_origin(&source, &headers) {
        return Ok(refused);
    }
    crate::tracking::within_limits(&state, &source)?;
    let received_at = state.engine.now();
    // Reading and checking 2,500 events takes milliseconds: not on the executor.
    let (batch, violations) = blocking(move || {
        let mut batch = checked_batch(&bytes, path_type, received_at, &source)?;
        let violations = apply_plan(&source, &mut batch, received_at);
        Ok((batch, violations))
    })
    .await?;
    commit(&state, batch, violations).await?;
    Ok(Json(json!({ "success": true })).into_response())
}

/// Appends a checked batch, then adds its plan violations to the report (a report that
/// fails to update is logged; the events are what must not be lost).
pub(crate) async fn commit(
    state: &Arc<AppState>,
    batch: IngestBatch,
    violations: Vec<PlanViolationCount>,
) -> Result<(), ApiError> {
    let workspace = batch.workspace_id.clone();
    state.engine.ingest(batch).await?;
    if !violations.is_empty() {
        let store = state.engine.store().clone();
        let _ = blocking(move || {
            if let Err(e) = store.record_plan_violations(&workspace, &violations) {
                tracing::warn!(error = %e, "the tracking plan's violations report was not updated");
            }
            Ok(())
        })
        .await;
    }
    Ok(())
}

/// Checks a batch's accepted events against the source's tracking plan: each breaking one is
/// quarantined, flagged or stripped as the plan says. Returns the report's new lines.
pub(crate) fn apply_plan(
    source: &Source,
    batch: &mut IngestBatch,
    at: i64,
) -> Vec<PlanViolationCount> {
    let Some(plan) = &source.tracking_plan else {
        return vec![];
    };
    let mut counts: std::collections::BTreeMap<(String, String, String), (u64, String)> =
        Default::default();
    let mut kept = Vec::with_capacity(batch.events.len());
    for mut e in std::mem::take(&mut batch.events) {
        let Ok(mut event) = serde_json::from_str::<Value>(&e.body) else {
            kept.push(e);
            continue;
        };
        // A single-event endpoint's body may leave its type to the path.
        if event.get("type").is_none() {
            event["type"] = Value::String(e.kind.as_str().to_string());
        }
        let (mut event, violations) = plan.apply(event);
        if violations.is_empty() {
            kept.push(e);
            continue;
        }
        for v in &violations {
            let entry = counts
                .entry(report_key(&event, v))
                .or_insert((0, String::new()));
            entry.0 += 1;
            entry.1 = v.description.clone();
        }
        if plan.on_violation == OnViolation::Quarantine {
            let detail: Vec<String> = violations
                .iter()
                .map(|v| format!("{} {}", v.field, v.description))
                .collect();
            // Kept with the messageId it was given, so that two identical calls stay two
            // entries (and two events once replayed).
            let mut kept_body = serde_json::from_str::<Value>(&e.body).unwrap_or(Value::Null);
            if kept_body.is_object() {
                kept_body["messageId"] = Value::String(e.message_id.clone());
            }
            batch.quarantined.push(QuarantinedEvent {
                violation: SpecViolation::TrackingPlan,
                detail: Some(detail.join("; ")),
                message_id: Some(e.message_id.clone()),
                received_at: e.received_at,
                body: if kept_body.is_object() {
                    kept_body.to_string()
                } else {
                    e.body
                },
                path_type: Some(e.kind),
            });
            continue;
        }
        flag(&mut event, &violations);
        e.body = event.to_string();
        kept.push(e);
    }
    batch.events = kept;
    counts
        .into_iter()
        .map(
            |((event, field, kind), (count, example))| PlanViolationCount {
                source_id: source.id.clone(),
                event,
                field,
                kind,
                count,
                first_seen: at,
                last_seen: at,
                example,
            },
        )
        .collect()
}

/// A request's events, read and checked: the accepted ones and the quarantined ones.
pub(crate) fn checked_batch(
    bytes: &[u8],
    path_type: Option<EventType>,
    received_at: i64,
    source: &Source,
) -> Result<IngestBatch, ApiError> {
    let envelope = spec::parse_envelope(bytes, path_type).map_err(envelope_error)?;
    let edge = Edge {
        received_at,
        source_channel: source.channel,
        batch_sent_at: envelope.sent_at.as_deref(),
        batch_context: envelope.context,
        batch_integrations: envelope.integrations,
        path_type: envelope.path_type,
    };
    let mut batch = IngestBatch {
        workspace_id: source.workspace_id.clone(),
        source_id: source.id.clone(),
        events: Vec::with_capacity(envelope.items.len()),
        quarantined: Vec::new(),
    };
    let mut assign = |_: &str| message_id(received_at);
    for checked in spec::check_envelope(&envelope, &edge, &mut assign).map_err(envelope_error)? {
        match checked {
            Checked::Accepted(e) => batch.events.push(e),
            Checked::Quarantined(q) => batch.quarantined.push(q),
        }
    }
    Ok(batch)
}

/// A `messageId` for an event that came without one: unique per node and time. Events
/// without a timestamp of their own share the batch's arrival time, and the message id
/// breaks the tie: the counter is padded so that ids sort in the order they were given
/// (the order of the batch).
fn message_id(now: i64) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static NODE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let node = NODE.get_or_init(rand::random::<u64>);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("pcs-{now:x}-{node:016x}-{n:016x}")
}

/// A token bucket per workspace.
/// A tracking request within the workspace's limit and its source key's; else `429
/// rate_limited` with `Retry-After`.
pub(crate) fn within_limits(
    state: &AppState,
    source: &parcours_store::Source,
) -> Result<(), ApiError> {
    let now = state.engine.clock().monotonic();
    for (limiter, who, key) in [
        (&state.limiter, "this workspace", &source.workspace_id),
        (&state.key_limiter, "this write key", &source.id),
    ] {
        if let Some(retry_after) = limiter.check(key, now) {
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many tracking requests for {who}; retry later"),
            );
            e.retry_after = Some(retry_after);
            return Err(e);
        }
    }
    Ok(())
}

pub struct RateLimiter {
    per_second: u32,
    /// Tokens left, and when they were counted (the clock's monotonic time).
    buckets: Mutex<HashMap<String, (f64, std::time::Duration)>>,
}

impl RateLimiter {
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// `None` if the request may go, else the seconds to wait. `now` is the clock's
    /// monotonic time.
    pub fn check(&self, workspace: &str, now: std::time::Duration) -> Option<u64> {
        if self.per_second == 0 {
            return None;
        }
        let rate = self.per_second as f64;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, last) = buckets.entry(workspace.to_string()).or_insert((rate, now));
        *tokens = (*tokens + now.saturating_sub(*last).as_secs_f64() * rate).min(rate);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            None
        } else {
            Some(((1.0 - *tokens) / rate).ceil().max(1.0) as u64)
        }
    }
}
