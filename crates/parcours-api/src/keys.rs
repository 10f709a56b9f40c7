//! The life cycle of sources, write keys and admin tokens: create, list, change, rotate with
//! an overlap, revoke, delete. The operations are shared by the admin API and the CLI; the
//! handlers below only read requests and shape answers.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use parcours_core::plan::TrackingPlan;
use parcours_core::time::{format_timestamp, Millis, HOUR};
use parcours_core::webhook::WebhookSource;
use parcours_core::Channel;
use parcours_store::{Role, Source, Store, StoreError, Token, WriteKey};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{hash_secret, new_secret, Caller};
use crate::error::{blocking, object_body, ApiError};
use crate::openapi::{
    KeyRotated, NewSourceBody, NewTokenBody, Refusals, RotationBody, SourceAnswer,
    SourceChangeBody, SourceCreated, SourceList, TokenCreated, TokenList, TokenRotated,
};
use crate::AppState;

/// How long a rotated key or token keeps working unless told otherwise.
pub const DEFAULT_OVERLAP_HOURS: u32 = 24;
/// The longest overlap a rotation may give the old secret.
pub const MAX_OVERLAP_HOURS: u32 = 24 * 90;

/// Why a key operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<KeyError> for ApiError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::Invalid(m) => ApiError::bad_request("invalid_parameter", m),
            KeyError::Store(e) => e.into(),
        }
    }
}

pub fn parse_channel(c: &str) -> Result<Channel, KeyError> {
    Channel::parse(c).ok_or_else(|| {
        let all: Vec<&str> = Channel::ALL.iter().map(|c| c.as_str()).collect();
        KeyError::Invalid(format!(
            "`{c}` is not a channel; use one of {}",
            all.join(", ")
        ))
    })
}

/// Allowed origins as a browser sends them: `scheme://host[:port]`, or `scheme://*.domain`.
pub fn check_origins(origins: &[String]) -> Result<Vec<String>, KeyError> {
    origins
        .iter()
        .map(|o| {
            let o = o.trim().trim_end_matches('/');
            let valid = o == "*"
                || o.split_once("://").is_some_and(|(scheme, host)| {
                    matches!(scheme, "http" | "https")
                        && !host.is_empty()
                        && !host.contains('/')
                        && !host.contains(char::is_whitespace)
                        && (!host.contains('*') || host.starts_with("*.") && host.len() > 2 && !host[2..].contains('*'))
                        && valid_port(host)
                });
            if valid {
                Ok(o.to_ascii_lowercase())
            } else {
                Err(KeyError::Invalid(format!(
                    "`{o}` is not an origin; write it as a browser sends it, `https://shop.example` \
                     or `https://*.example.com` (no path)"
                )))
            }
        })
        .collect()
}

/// A host's port, when it has one, is 1 to 65535 (an IPv6 literal's colons are not a port).
fn valid_port(host: &str) -> bool {
    let after_bracket = host.rsplit_once(']').map_or(host, |(_, rest)| rest);
    match after_bracket.rsplit_once(':') {
        Some((_, port)) => port.parse::<u16>().is_ok_and(|p| p > 0),
        None => true,
    }
}

/// The longest name a source or a token may have.
pub const MAX_NAME_CHARS: usize = 200;

/// A name as kept: trimmed, not empty, at most [`MAX_NAME_CHARS`], no control characters.
pub fn check_name(name: &str) -> Result<String, KeyError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(KeyError::Invalid("`name` must not be empty".into()));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(KeyError::Invalid(format!(
            "`name` is at most {MAX_NAME_CHARS} characters; it has {}",
            name.chars().count()
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(KeyError::Invalid(
            "`name` must not hold control characters (tabs, line breaks, NUL)".into(),
        ));
    }
    Ok(name.to_string())
}

fn overlap_until(now: Millis, hours: Option<u32>) -> Result<Millis, KeyError> {
    let hours = hours.unwrap_or(DEFAULT_OVERLAP_HOURS);
    if hours > MAX_OVERLAP_HOURS {
        return Err(KeyError::Invalid(format!(
            "`overlap_hours` is at most {MAX_OVERLAP_HOURS} (90 days); got {hours}"
        )));
    }
    Ok(now + i64::from(hours) * HOUR)
}

/// A new source and its write key (shown once).
pub fn create_source(
    store: &dyn Store,
    workspace: &str,
    name: &str,
    channel: Option<Channel>,
    allowed_origins: &[String],
    now: Millis,
) -> Result<(Source, String), KeyError> {
    create_source_with(
        store,
        NewSourceSpec {
            workspace,
            name,
            channel,
            allowed_origins,
            webhook: None,
            tracking_plan: None,
        },
        now,
    )
}

/// Everything a new source may be given.
pub struct NewSourceSpec<'a> {
    pub workspace: &'a str,
    pub name: &'a str,
    pub channel: Option<Channel>,
    pub allowed_origins: &'a [String],
    pub webhook: Option<WebhookSource>,
    pub tracking_plan: Option<TrackingPlan>,
}

/// A webhook configuration whose mapping resolves and compiles.
pub fn check_webhook(value: &Value) -> Result<WebhookSource, KeyError> {
    // A mapping of its own is read alone first, so that a typo is named (`unknown field
    // evnt`) rather than reported as matching neither form.
    if let Some(own @ Value::Object(_)) = value.get("mapping") {
        parcours_core::webhook::Mapping::from_json(own)
            .map_err(|e| KeyError::Invalid(format!("webhook.{e}")))?;
    }
    let w: WebhookSource = serde_json::from_value(value.clone()).map_err(|e| {
        KeyError::Invalid(format!(
            "`webhook` is {{\"mapping\": \"shopify_orders_create\" or {{\"events\": […]}}, \"signature\": {{\"scheme\": \"shopify\", \"secret\": \"…\"}}}}: {e}"
        ))
    })?;
    w.mapping
        .resolve()
        .and_then(|m| m.compile())
        .map_err(|e| KeyError::Invalid(format!("webhook.{e}")))?;
    if let Some(sig) = &w.signature {
        if sig.secret.trim().is_empty() {
            return Err(KeyError::Invalid(
                "webhook.signature.secret must not be empty".into(),
            ));
        }
    }
    Ok(w)
}

pub fn check_plan(value: &Value) -> Result<TrackingPlan, KeyError> {
    TrackingPlan::from_json(value).map_err(|e| {
        KeyError::Invalid(if e.at == "tracking_plan" {
            e.to_string()
        } else {
            format!("tracking_plan.{e}")
        })
    })
}

/// A new source (any kind) and its write key (shown once).
pub fn create_source_with(
    store: &dyn Store,
    spec: NewSourceSpec<'_>,
    now: Millis,
) -> Result<(Source, String), KeyError> {
    let NewSourceSpec {
        workspace,
        name,
        channel,
        allowed_origins,
        webhook,
        tracking_plan,
    } = spec;
    let name = check_name(name)?;
    let key = new_secret("wk");
    let source = Source {
        id: new_secret("src")[..16].to_string(),
        workspace_id: workspace.to_string(),
        name,
        channel,
        created_at: now,
        allowed_origins: check_origins(allowed_origins)?,
        webhook,
        tracking_plan,
    };
    store.create_source(&source, &hash_secret(&key))?;
    Ok((source, key))
}

/// A source's new write key; its other keys keep working for `overlap_hours` (default 24),
/// then stop. Returns the key and when the old ones stop.
pub fn rotate_write_key(
    store: &dyn Store,
    workspace: &str,
    source: &str,
    overlap_hours: Option<u32>,
    now: Millis,
) -> Result<(String, Millis), KeyError> {
    let until = overlap_until(now, overlap_hours)?;
    let key = new_secret("wk");
    store.rotate_write_key(workspace, source, &hash_secret(&key), now, until)?;
    Ok((key, until))
}

/// A new admin token and its secret (shown once).
pub fn create_token(
    store: &dyn Store,
    workspace: &str,
    name: &str,
    role: Role,
    expires_in_days: Option<u32>,
    now: Millis,
) -> Result<(Token, String), KeyError> {
    let name = check_name(name)?;
    let expires_at =
        match expires_in_days {
            Some(0) => return Err(KeyError::Invalid(
                "`expires_in_days` is at least 1 (leave it out for a token that does not expire)"
                    .into(),
            )),
            Some(d) if d > 3650 => {
                return Err(KeyError::Invalid(format!(
                    "`expires_in_days` is at most 3650; got {d}"
                )))
            }
            Some(d) => Some(now + i64::from(d) * 24 * HOUR),
            None => None,
        };
    let secret = new_secret("pat");
    let token = Token {
        id: new_secret("tok")[..16].to_string(),
        workspace_id: workspace.to_string(),
        name,
        role,
        instance_admin: false,
        created_at: now,
        expires_at,
    };
    store.create_token(&token, &hash_secret(&secret))?;
    Ok((token, secret))
}

/// A token's successor (same name, role and expiry); the old one keeps working for
/// `overlap_hours`, then stops.
pub fn rotate_token(
    store: &dyn Store,
    workspace: &str,
    id: &str,
    overlap_hours: Option<u32>,
    now: Millis,
) -> Result<(Token, String, Millis), KeyError> {
    let until = overlap_until(now, overlap_hours)?;
    let old = store
        .tokens(workspace)?
        .into_iter()
        .find(|t| t.id == id)
        .ok_or_else(|| StoreError::NotFound(format!("token {id}")))?;
    if old.expires_at.is_some_and(|at| at <= now) {
        return Err(KeyError::Invalid(format!(
            "token {id} has expired; create a new one instead"
        )));
    }
    let secret = new_secret("pat");
    let token = Token {
        id: new_secret("tok")[..16].to_string(),
        created_at: now,
        ..old
    };
    store.create_token(&token, &hash_secret(&secret))?;
    store.expire_token(workspace, id, until)?;
    Ok((token, secret, until))
}

/// A source as the API shows it, with its keys when given.
pub fn source_json(s: &Source, keys: Option<&[WriteKey]>, now: Millis) -> Value {
    let mut v = json!({
        "id": s.id,
        "workspace_id": s.workspace_id,
        "name": s.name,
        "channel": s.channel,
        "created_at": format_timestamp(s.created_at),
        "allowed_origins": s.allowed_origins,
        "kind": if s.webhook.is_some() { "webhook" } else { "tracking" },
        "webhook": s.webhook.as_ref().map(|w| json!({
            "mapping": w.mapping,
            // The secret is write-only: it verifies calls, it is never shown again.
            "signature": w.signature.as_ref().map(|sig| json!({"scheme": sig.scheme, "secret": "(set)"})),
        })),
        "tracking_plan": s.tracking_plan,
    });
    if let Some(keys) = keys {
        v["write_keys"] = keys
            .iter()
            .map(|k| {
                json!({
                    "fingerprint": k.fingerprint,
                    "created_at": format_timestamp(k.created_at),
                    "expires_at": k.expires_at.map(format_timestamp),
                    "active": k.expires_at.is_none_or(|at| at > now),
                })
            })
            .collect();
    }
    v
}

/// A token as the API shows it (never its secret: only its hash is kept).
pub fn token_json(t: &Token, now: Millis) -> Value {
    json!({
        "id": t.id,
        "workspace_id": t.workspace_id,
        "name": t.name,
        "role": t.role,
        "instance_admin": t.instance_admin,
        "created_at": format_timestamp(t.created_at),
        "expires_at": t.expires_at.map(format_timestamp),
        "active": t.expires_at.is_none_or(|at| at > now),
    })
}

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(sources, new_source))
        .routes(routes!(source, change_source, delete_source))
        .routes(routes!(rotate_source_key))
        .routes(routes!(crate::live::live))
        .routes(routes!(tokens, new_token))
        .routes(routes!(revoke_token))
        .routes(routes!(rotate_admin_token))
}

type Api = Result<Json<Value>, ApiError>;
type Created = Result<(StatusCode, Json<Value>), ApiError>;

fn store(state: &Arc<AppState>) -> Arc<dyn Store> {
    state.engine.store().clone()
}

/// Sources of the workspace, with their write keys (fingerprints and expiry).
#[utoipa::path(get, path = "/sources", tag = "sources", security(("bearer" = [])), responses((status = 200, description = "success", body = SourceList), Refusals))]
async fn sources(State(state): State<Arc<AppState>>, caller: Caller) -> Api {
    let (st, ws, now) = (
        store(&state),
        caller.workspace().to_string(),
        state.engine.now(),
    );
    blocking(move || {
        let list = st
            .sources(&ws)?
            .iter()
            .map(|s| Ok(source_json(s, Some(&st.write_keys(&ws, &s.id)?), now)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Json(json!({ "sources": list })))
    })
    .await
}

/// A source with its write keys (fingerprints and expiry).
#[utoipa::path(get, path = "/sources/{id}", tag = "sources", params(("id" = String, Path, description = "the id")), security(("bearer" = [])), responses((status = 200, description = "success", body = SourceAnswer), Refusals))]
async fn source(State(state): State<Arc<AppState>>, caller: Caller, Path(id): Path<String>) -> Api {
    let (st, ws, now) = (
        store(&state),
        caller.workspace().to_string(),
        state.engine.now(),
    );
    blocking(move || {
        let s = st
            .sources(&ws)?
            .into_iter()
            .find(|s| s.id == id)
            .ok_or_else(|| ApiError::not_found(format!("source {id}")))?;
        let keys = st.write_keys(&ws, &id)?;
        Ok(Json(json!({ "source": source_json(&s, Some(&keys), now) })))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSource {
    name: String,
    channel: Option<String>,
    #[serde(default)]
    allowed_origins: Vec<String>,
    webhook: Option<Value>,
    tracking_plan: Option<Value>,
}

/// Create a source; its write key is answered once.
#[utoipa::path(post, path = "/sources", tag = "sources", request_body = NewSourceBody, security(("bearer" = [])), responses((status = 201, description = "created", body = SourceCreated), Refusals))]
async fn new_source(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: Option<Json<Value>>,
) -> Created {
    caller.require_admin()?;
    let body: NewSource = object_body(
        body,
        "send {\"name\": \"…\", \"channel\": \"store\", \"allowed_origins\": [\"https://shop.example\"]}",
        "invalid_json",
    )?;
    let channel = body.channel.as_deref().map(parse_channel).transpose()?;
    let webhook = body.webhook.as_ref().map(check_webhook).transpose()?;
    let tracking_plan = body.tracking_plan.as_ref().map(check_plan).transpose()?;
    let (st, ws, now) = (
        store(&state),
        caller.workspace().to_string(),
        state.engine.now(),
    );
    let (source, key) = blocking(move || {
        Ok(create_source_with(
            st.as_ref(),
            NewSourceSpec {
                workspace: &ws,
                name: &body.name,
                channel,
                allowed_origins: &body.allowed_origins,
                webhook,
                tracking_plan,
            },
            now,
        )?)
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"source": source_json(&source, None, now), "write_key": key})),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceChange {
    name: Option<String>,
    /// `null` clears it.
    #[serde(default, with = "double_option")]
    channel: Option<Option<String>>,
    allowed_origins: Option<Vec<String>>,
    /// `null` makes it a tracking source again.
    #[serde(default, with = "double_value")]
    webhook: Option<Option<Value>>,
    /// `null` removes the plan.
    #[serde(default, with = "double_value")]
    tracking_plan: Option<Option<Value>>,
}

mod double_value {
    use serde::{Deserialize, Deserializer};
    use serde_json::Value;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<Value>>, D::Error> {
        Option::<Value>::deserialize(d).map(Some)
    }
}

mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
    }
}

/// Change a source's name, channel, allowed origins, webhook or tracking plan.
#[utoipa::path(patch, path = "/sources/{id}", tag = "sources", params(("id" = String, Path, description = "the id")), request_body = SourceChangeBody, security(("bearer" = [])), responses((status = 200, description = "success", body = SourceAnswer), Refusals))]
async fn change_source(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Option<Json<Value>>,
) -> Api {
    caller.require_admin()?;
    let change: SourceChange = object_body(
        body,
        "send the fields to change: {\"name\": \"…\", \"channel\": \"web\", \"allowed_origins\": [\"https://shop.example\"]}",
        "invalid_json",
    )?;
    let channel = match change.channel {
        Some(Some(c)) => Some(Some(parse_channel(&c)?)),
        Some(None) => Some(None),
        None => None,
    };
    let origins = change
        .allowed_origins
        .as_deref()
        .map(check_origins)
        .transpose()?;
    let webhook = match &change.webhook {
        Some(Some(w)) => Some(Some(check_webhook(w)?)),
        Some(None) => Some(None),
        None => None,
    };
    let plan = match &change.tracking_plan {
        Some(Some(p)) => Some(Some(check_plan(p)?)),
        Some(None) => Some(None),
        None => None,
    };
    let new_name = change.name.as_deref().map(check_name).transpose()?;
    let (st, ws, now) = (
        store(&state),
        caller.workspace().to_string(),
        state.engine.now(),
    );
    let state2 = state.clone();
    blocking(move || {
        let mut s = st
            .sources(&ws)?
            .into_iter()
            .find(|s| s.id == id)
            .ok_or_else(|| ApiError::not_found(format!("source {id}")))?;
        if let Some(name) = new_name {
            s.name = name;
        }
        if let Some(channel) = channel {
            s.channel = channel;
        }
        if let Some(origins) = origins {
            s.allowed_origins = origins;
        }
        if let Some(webhook) = webhook {
            s.webhook = webhook;
        }
        if let Some(plan) = plan {
            s.tracking_plan = plan;
        }
        st.update_source(&s)?;
        state2.forget_credentials();
        let keys = st.write_keys(&ws, &id)?;
        Ok(Json(json!({ "source": source_json(&s, Some(&keys), now) })))
    })
    .await
}

/// Delete a source and its write keys (its events stay).
#[utoipa::path(delete, path = "/sources/{id}", tag = "sources", params(("id" = String, Path, description = "the id")), security(("bearer" = [])), responses((status = 204, description = "done"), Refusals))]
async fn delete_source(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin()?;
    let (st, ws) = (store(&state), caller.workspace().to_string());
    blocking(move || Ok(st.delete_source(&ws, &id)?)).await?;
    state.forget_credentials();
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Rotation {
    overlap_hours: Option<u32>,
}

/// A rotation's body: none (or an empty one, or `{}`) keeps the default overlap.
fn rotation(body: &[u8]) -> Result<Rotation, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Rotation::default());
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!("send {{\"overlap_hours\": 24}} or no body: {e}"),
        )
    })?;
    object_body(
        Some(Json(value)),
        "send {\"overlap_hours\": 24} or no body",
        "invalid_json",
    )
}

/// Give the source a new write key; the previous ones keep working for the overlap.
#[utoipa::path(post, path = "/sources/{id}/rotate", tag = "sources", params(("id" = String, Path, description = "the id")), request_body(content = Option<RotationBody>, description = "optional"), security(("bearer" = [])), responses((status = 201, description = "created", body = KeyRotated), Refusals))]
async fn rotate_source_key(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Created {
    caller.require_admin()?;
    let r = rotation(&body)?;
    let (st, ws, now) = (
        store(&state),
        caller.workspace().to_string(),
        state.engine.now(),
    );
    let (key, until) = blocking(move || {
        Ok(rotate_write_key(
            st.as_ref(),
            &ws,
            &id,
            r.overlap_hours,
            now,
        )?)
    })
    .await?;
    state.forget_credentials();
    Ok((
        StatusCode::CREATED,
        Json(json!({"write_key": key, "previous_keys_expire_at": format_timestamp(until)})),
    ))
}

/// Admin tokens of the workspace (never their secrets).
#[utoipa::path(get, path = "/tokens", tag = "sources", security(("bearer" = [])), responses((status = 200, description = "success", body = TokenList), Refusals))]
async fn tokens(State(state): State<Arc<AppState>>, caller: Caller) -> Api {
    caller.require_admin()?;
    let (st, ws, now) = (
        store(&state),
        caller.workspace().to_string(),
        state.engine.now(),
    );
    let list = blocking(move || Ok(st.tokens(&ws)?)).await?;
    let list: Vec<Value> = list.iter().map(|t| token_json(t, now)).collect();
    Ok(Json(json!({ "tokens": list })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
    role: String,
    expires_in_days: Option<u32>,
}

pub fn parse_role(role: &str) -> Result<Role, KeyError> {
    Role::parse(role).ok_or_else(|| {
        KeyError::Invalid(format!(
            "`{role}` is not a role; use one of admin, marketer, analyst, read_only"
        ))
    })
}

/// Create a token; its secret is answered once.
#[utoipa::path(post, path = "/tokens", tag = "sources", request_body = NewTokenBody, security(("bearer" = [])), responses((status = 201, description = "created", body = TokenCreated), Refusals))]
async fn new_token(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: Option<Json<Value>>,
) -> Created {
    caller.require_admin()?;
    let body: NewToken = object_body(
        body,
        "send {\"name\": \"…\", \"role\": \"analyst\", \"expires_in_days\": 90}",
        "invalid_json",
    )?;
    let role =
        parse_role(&body.role).map_err(|e| ApiError::bad_request("invalid_role", e.to_string()))?;
    let (st, ws, now) = (
        store(&state),
        caller.workspace().to_string(),
        state.engine.now(),
    );
    let (token, secret) = blocking(move || {
        Ok(create_token(
            st.as_ref(),
            &ws,
            &body.name,
            role,
            body.expires_in_days,
            now,
        )?)
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"token": token_json(&token, now), "secret": secret})),
    ))
}

/// Revoke a token now.
#[utoipa::path(delete, path = "/tokens/{id}", tag = "sources", params(("id" = String, Path, description = "the id")), security(("bearer" = [])), responses((status = 204, description = "done"), Refusals))]
async fn revoke_token(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_admin()?;
    let (st, ws, now) = (
        store(&state),
        caller.workspace().to_string(),
        state.engine.now(),
    );
    blocking(move || Ok(st.expire_token(&ws, &id, now)?)).await?;
    state.forget_credentials();
    Ok(StatusCode::NO_CONTENT)
}

/// Give a token a successor; the old one keeps working for the overlap.
#[utoipa::path(post, path = "/tokens/{id}/rotate", tag = "sources", params(("id" = String, Path, description = "the id")), request_body(content = Option<RotationBody>, description = "optional"), security(("bearer" = [])), responses((status = 201, description = "created", body = TokenRotated), Refusals))]
async fn rotate_admin_token(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Created {
    caller.require_admin()?;
    let r = rotation(&body)?;
    let (st, ws, now) = (
        store(&state),
        caller.workspace().to_string(),
        state.engine.now(),
    );
    let (token, secret, until) =
        blocking(move || Ok(rotate_token(st.as_ref(), &ws, &id, r.overlap_hours, now)?)).await?;
    state.forget_credentials();
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "token": token_json(&token, now),
            "secret": secret,
            "previous_expires_at": format_timestamp(until),
        })),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_and_names_are_checked_before_they_are_kept() {
        let ok = |o: &str| check_origins(&[o.to_string()]).is_ok();
        assert!(ok("https://shop.example:8443"));
        assert!(ok("https://*.shop.example"));
        assert!(ok("http://[::1]:3000"));
        assert!(!ok("https://shop.example:99999"), "a port is at most 65535");
        assert!(!ok("https://shop.example:0"));
        assert!(!ok("https://shop.example/path"));
        assert!(!ok("shop.example"));
        assert_eq!(check_name("  POS  ").unwrap(), "POS");
        assert!(check_name(&"x".repeat(MAX_NAME_CHARS + 1)).is_err());
        assert!(check_name("a\u{0}b").is_err());
        assert!(check_name("   ").is_err());
    }

    #[test]
    fn a_typo_in_an_own_mapping_is_named() {
        let err = check_webhook(
            &serde_json::json!({"mapping": {"events": [{"type": "track", "evnt": "'X'"}]}}),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("evnt"), "{err}");
    }
}
