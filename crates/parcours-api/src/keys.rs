//! The admin API of sources, write keys and admin tokens: create, list, change, rotate with
//! an overlap, revoke, delete. The operations are the service's (`parcours_service::keys`,
//! re-exported here for the CLI); the handlers below read requests and shape answers.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use parcours_core::time::format_timestamp;
use parcours_store::{Store, StoreError};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::error::{blocking, object_body, ApiError};
use crate::openapi::{
    KeyRotated, NewSourceBody, NewTokenBody, Refusals, RotationBody, SourceAnswer,
    SourceChangeBody, SourceCreated, SourceList, TokenCreated, TokenList, TokenRotated,
};
use crate::AppState;

pub use parcours_service::keys::*;

impl From<KeyError> for ApiError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::Invalid(m) => ApiError::bad_request("invalid_parameter", m),
            KeyError::Store(e) => e.into(),
        }
    }
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
    #[serde(default)]
    scopes: Vec<String>,
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
        let made = create_token_with(
            st.as_ref(),
            &ws,
            &body.name,
            role,
            body.expires_in_days,
            &body.scopes,
            now,
        )
        .map_err(|e| match e {
            KeyError::Invalid(m) if m.contains("is not a scope") => {
                parcours_service::ServiceError::invalid("invalid_scope", m)
            }
            e => e.into(),
        })?;
        Ok(made)
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
