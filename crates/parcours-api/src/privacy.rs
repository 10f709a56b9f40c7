//! Data subjects' requests and the audit log over HTTP (under `/api/v1`). Thin over
//! `parcours_service::privacy`; requests run on a blocking thread after they are answered.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use parcours_core::time::{format_timestamp, Millis};
use parcours_service::privacy;
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
        .routes(routes!(list_requests, file_request))
        .routes(routes!(get_request))
        .routes(routes!(get_archive))
        .routes(routes!(extend_request))
        .routes(routes!(suppressed))
        .routes(routes!(get_settings, put_settings))
        .routes(routes!(audit_log))
        .routes(routes!(audit_export))
}

/// The node as a privacy request needs it.
struct Node(Arc<AppState>);

impl privacy::Runtime for Node {
    fn now(&self) -> Millis {
        self.0.engine.now()
    }

    fn settle(&self) {
        self.0.engine.settle(Duration::from_secs(30));
    }

    fn erased(&self, workspace: &str) {
        self.0.engine.erased_list().invalidate(workspace);
        self.0.measure.forget(workspace);
    }

    fn notify(
        &self,
        doc: &parcours_engine::destinations::DestinationDoc,
        webhook_id: &str,
        body: Vec<u8>,
    ) -> Result<u16, String> {
        // On a blocking thread of the runtime: its handle runs the request.
        tokio::runtime::Handle::current().block_on(parcours_engine::destinations::send_notice(
            doc,
            webhook_id,
            body,
            self.0.engine.allows_private_destinations(),
            self.0.engine.now(),
        ))
    }

    fn notify_webhook(&self, url: &str, webhook_id: &str, body: String) -> Result<String, String> {
        let Some(caller) = self.0.engine.senders().webhook.clone() else {
            return Err(
                "no webhook signing secret is configured (PARCOURS__CHANNELS__WEBHOOK__SECRET)"
                    .into(),
            );
        };
        caller.notify(url, webhook_id, body, self.0.engine.now())
    }
}

/// Runs a request on a thread of its own (its outcome is in its state and the audit log).
pub fn start(state: &Arc<AppState>, workspace: String, id: String) {
    let state = state.clone();
    tokio::task::spawn_blocking(move || {
        let st = state.engine.store().clone();
        if let Err(e) = privacy::run(st.as_ref(), &Node(state.clone()), (&workspace, &id)) {
            tracing::error!(request = %id, error = %e, "a privacy request failed");
        }
    });
}

/// Resumes the requests a stopped node left open (received or interrupted midway: each
/// step of an erasure can run again).
pub fn resume(state: &Arc<AppState>) {
    let open = match state.engine.store().open_privacy_requests() {
        Ok(open) => open,
        Err(e) => {
            tracing::error!(error = %e, "open privacy requests were not read");
            return;
        }
    };
    for r in open {
        start(state, r.workspace_id, r.id);
    }
}

fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Files a data subject's request: `{"kind": "access" | "erasure", "identifier": {"type":
/// "email", "value": "…"}}` (any identifier type). Answered at once with its id, state
/// `received` and legal deadline (one month, ICO calculation); it then runs in the
/// background: `GET /privacy/requests/{id}` shows it `in_progress`, then `done`.
#[utoipa::path(post, path = "/privacy/requests", tag = "privacy", request_body = Answer,
    security(("bearer" = [])),
    responses((status = 202, description = "received", body = Answer), Refusals))]
async fn file_request(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: Option<Json<Value>>,
) -> Result<Response, ApiError> {
    privacy::require_requests(&caller.actor(), privacy::ACCESS)?;
    let Some(Json(body)) = body else {
        return Err(ApiError::bad_request(
            "invalid_request",
            "send {\"kind\": \"access\" | \"erasure\", \"identifier\": {\"type\", \"value\"}}",
        ));
    };
    let kind = text(&body, "kind").unwrap_or_default().to_string();
    let id = body.get("identifier").cloned().unwrap_or(Value::Null);
    let (Some(id_type), Some(id_value)) = (text(&id, "type"), text(&id, "value")) else {
        return Err(ApiError::bad_request(
            "invalid_identifier",
            "`identifier` must be an object with a `type` (email, phone, user_id …) and a `value`",
        ));
    };
    let (id_type, id_value) = (id_type.to_string(), id_value.to_string());
    let (st, actor, now) = (store(&state), caller.actor(), state.engine.now());
    let name = caller.0.name.clone();
    let r = blocking(move || {
        Ok(privacy::file_request(
            st.as_ref(),
            &actor,
            &name,
            &kind,
            &id_type,
            &id_value,
            now,
        )?)
    })
    .await?;
    start(&state, r.workspace_id.clone(), r.id.clone());
    Ok((StatusCode::ACCEPTED, Json(answer(&r))).into_response())
}

fn answer(r: &parcours_store::PrivacyRequest) -> Value {
    let mut v = json!(r);
    if let Some(result) = r
        .result
        .as_deref()
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
    {
        v["result"] = result;
    }
    if r.kind == privacy::ACCESS && r.state == "done" {
        v["archive"] = json!(format!("/api/v1/privacy/requests/{}/archive", r.id));
    }
    v
}

/// The workspace's requests, newest first (the identifier only while a request is open).
#[utoipa::path(get, path = "/privacy/requests", tag = "privacy", security(("bearer" = [])),
    responses((status = 200, description = "success", body = Answer), Refusals))]
async fn list_requests(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let (st, actor) = (store(&state), caller.actor());
    let all = blocking(move || Ok(privacy::requests(st.as_ref(), &actor)?)).await?;
    Ok(Json(
        json!({ "requests": all.iter().map(answer).collect::<Vec<_>>() }),
    ))
}

/// One request: its state (`received`, `in_progress`, `done`, `failed`), its deadline, what
/// was done and, for access, the archive's address.
#[utoipa::path(get, path = "/privacy/requests/{id}", tag = "privacy",
    params(("id" = String, Path, description = "the request's id")),
    security(("bearer" = [])),
    responses((status = 200, description = "success", body = Answer), Refusals))]
async fn get_request(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (st, actor) = (store(&state), caller.actor());
    let r = blocking(move || Ok(privacy::request(st.as_ref(), &actor, &id)?)).await?;
    Ok(Json(answer(&r)))
}

/// An access request's archive: a zip of JSON files (profile, identifiers, consents,
/// events, merges, audience memberships, journeys, messages, loyalty) and CSV tables.
#[utoipa::path(get, path = "/privacy/requests/{id}/archive", tag = "privacy",
    params(("id" = String, Path, description = "the request's id")),
    security(("bearer" = [])),
    responses((status = 200, description = "the archive", content_type = "application/zip", body = Vec<u8>), Refusals))]
async fn get_archive(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (st, actor) = (store(&state), caller.actor());
    let name: String = id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect();
    let zip = blocking(move || Ok(privacy::archive(st.as_ref(), &actor, &id)?)).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.zip\""),
            ),
        ],
        zip,
    )
        .into_response())
}

/// Extends an open request's deadline by one or two further months: `{"months": 1 | 2,
/// "reason": "…"}` (the person must be told why within the first month).
#[utoipa::path(post, path = "/privacy/requests/{id}/extend", tag = "privacy",
    params(("id" = String, Path, description = "the request's id")), request_body = Answer,
    security(("bearer" = [])),
    responses((status = 200, description = "extended", body = Answer), Refusals))]
async fn extend_request(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Option<Json<Value>>,
) -> Result<Json<Value>, ApiError> {
    caller.actor().require_admin()?;
    let body = body.map(|Json(b)| b).unwrap_or(Value::Null);
    let months = body.get("months").and_then(Value::as_u64).unwrap_or(0);
    let reason = text(&body, "reason").unwrap_or_default().to_string();
    let (st, actor, now) = (store(&state), caller.actor(), state.engine.now());
    let name = caller.0.name.clone();
    let r = blocking(move || {
        Ok(privacy::extend(
            st.as_ref(),
            &actor,
            &name,
            &id,
            months.min(100) as u32,
            &reason,
            now,
        )?)
    })
    .await?;
    Ok(Json(answer(&r)))
}

/// The suppression list: how many erased identifiers it holds (hashed) and how many events
/// naming one it refused at ingest.
#[utoipa::path(get, path = "/privacy/suppressed", tag = "privacy", security(("bearer" = [])),
    responses((status = 200, description = "success", body = Answer), Refusals))]
async fn suppressed(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let (st, actor) = (store(&state), caller.actor());
    let s = blocking(move || Ok(privacy::suppressed(st.as_ref(), &actor)?)).await?;
    Ok(Json(json!(s)))
}

/// The workspace's privacy settings: what is kept of IP addresses (`keep`, `truncate`,
/// `drop`) and precise locations (`keep`, `with_consent`, `drop`), retention per category in
/// days, holidays (for the legal deadlines) and the consents the preference page offers.
#[utoipa::path(get, path = "/privacy/settings", tag = "privacy", security(("bearer" = [])),
    responses((status = 200, description = "success", body = Answer), Refusals))]
async fn get_settings(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let (st, actor) = (store(&state), caller.actor());
    let s = blocking(move || Ok(privacy::settings(st.as_ref(), &actor)?)).await?;
    Ok(Json(json!(s)))
}

/// Replaces the privacy settings (admins; recorded in the audit log). Fields left out take
/// their defaults: IP addresses truncated, precise locations kept only with consent to
/// `location`, message bodies kept 90 days, everything else until deleted.
#[utoipa::path(put, path = "/privacy/settings", tag = "privacy", request_body = Answer,
    security(("bearer" = [])),
    responses((status = 200, description = "saved", body = Answer), Refusals))]
async fn put_settings(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: Option<Json<Value>>,
) -> Result<Json<Value>, ApiError> {
    caller.actor().require_admin()?;
    let Some(Json(body)) = body else {
        return Err(ApiError::bad_request(
            "invalid_privacy_settings",
            "send the settings as a JSON object",
        ));
    };
    let (st, actor, now) = (store(&state), caller.actor(), state.engine.now());
    let name = caller.0.name.clone();
    let s = blocking(move || {
        Ok(privacy::put_settings(
            st.as_ref(),
            &actor,
            &name,
            &body.to_string(),
            now,
        )?)
    })
    .await?;
    state
        .engine
        .erased_list()
        .invalidate(&caller.actor().workspace);
    Ok(Json(json!(s)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// Entries after this id (default 0: from the first).
    #[param(minimum = 0)]
    after: Option<i64>,
    /// At most this many (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// The audit log: privacy requests and their outcome, consent changes, admin actions,
/// oldest first; append-only. Admins only.
#[utoipa::path(get, path = "/audit", tag = "privacy", params(AuditQuery),
    security(("bearer" = [])),
    responses((status = 200, description = "success", body = Answer), Refusals))]
async fn audit_log(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    let after = q.after.unwrap_or(0);
    if !(1..=1000).contains(&limit) || after < 0 {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            "`limit` must be between 1 and 1000 and `after` at least 0",
        ));
    }
    let (st, actor) = (store(&state), caller.actor());
    let entries =
        blocking(move || Ok(privacy::audit_log(st.as_ref(), &actor, after, limit)?)).await?;
    let next = entries.last().map(|e| e.id);
    Ok(Json(json!({ "entries": entries, "next_after": next })))
}

/// The whole audit log as CSV (`id,at,actor,action,target,detail`).
#[utoipa::path(get, path = "/audit/export", tag = "privacy", security(("bearer" = [])),
    responses((status = 200, description = "success", content_type = "text/csv", body = String), Refusals))]
async fn audit_export(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let (st, actor) = (store(&state), caller.actor());
    let csv = blocking(move || {
        let field = |s: &str| {
            if s.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.to_string()
            }
        };
        let mut out = String::from("id,at,actor,action,target,detail\r\n");
        let mut after = 0;
        loop {
            let page = privacy::audit_log(st.as_ref(), &actor, after, 1000)?;
            for e in &page {
                out.push_str(&format!(
                    "{},{},{},{},{},{}\r\n",
                    e.id,
                    format_timestamp(e.at),
                    field(&e.actor),
                    field(&e.action),
                    field(&e.target),
                    field(&e.detail)
                ));
            }
            match page.last() {
                Some(last) if page.len() == 1000 => after = last.id,
                _ => break,
            }
        }
        Ok(out)
    })
    .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"audit-log.csv\"",
            ),
        ],
        csv,
    )
        .into_response())
}
