//! Write keys (tracking) and bearer tokens (admin). Only SHA-256 hashes of secrets are stored.

use parcours_service::Actor;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use base64::Engine as _;
use parcours_store::{KeyGrant, Source, Token};

use crate::error::{blocking, ApiError};
use crate::AppState;

pub use parcours_service::secrets::{hash_secret, new_secret};

/// Secrets recently found valid, by hash, with when (the clock's monotonic time). An entry is
/// trusted for [`CACHE_TTL`]: a key or token revoked on another node stops working here
/// within that time (at once on this node).
#[derive(Default)]
pub struct AuthCache {
    sources: RwLock<HashMap<String, (KeyGrant, Duration)>>,
    tokens: RwLock<HashMap<String, (Token, Duration)>>,
}

/// How long a looked-up secret is trusted without reading the store again.
const CACHE_TTL: Duration = Duration::from_secs(5);

fn cached<T: Clone>(
    map: &RwLock<HashMap<String, (T, Duration)>>,
    hash: &str,
    now: Duration,
) -> Option<T> {
    let map = map.read().unwrap_or_else(|e| e.into_inner());
    map.get(hash)
        .filter(|(_, at)| now.saturating_sub(*at) < CACHE_TTL)
        .map(|(v, _)| v.clone())
}

fn remember<T>(
    map: &RwLock<HashMap<String, (T, Duration)>>,
    hash: String,
    value: T,
    now: Duration,
) {
    let mut map = map.write().unwrap_or_else(|e| e.into_inner());
    // Stale entries go when the map grows, so that random keys cannot fill memory.
    if map.len() >= 10_000 {
        map.retain(|_, (_, at)| now.saturating_sub(*at) < CACHE_TTL);
    }
    if map.len() < 10_000 {
        map.insert(hash, (value, now));
    }
}

impl AppState {
    /// The source a write key sends to, if the key exists and has not expired.
    pub(crate) async fn source_for_key(
        self: &Arc<Self>,
        key: &str,
    ) -> Result<Option<Source>, ApiError> {
        let hash = hash_secret(key);
        let grant = match cached(&self.auth.sources, &hash, self.engine.clock().monotonic()) {
            Some(g) => Some(g),
            None => {
                let state = self.clone();
                let h = hash.clone();
                let found =
                    blocking(move || Ok(state.engine.store().source_by_key_hash(&h)?)).await?;
                if let Some(g) = &found {
                    remember(
                        &self.auth.sources,
                        hash,
                        g.clone(),
                        self.engine.clock().monotonic(),
                    );
                }
                found
            }
        };
        let now = self.engine.now();
        Ok(grant
            .filter(|g| g.expires_at.is_none_or(|at| at > now))
            .map(|g| g.source))
    }

    /// Forgets every cached secret (after a revocation, rotation or deletion on this node).
    pub fn forget_credentials(&self) {
        self.auth
            .sources
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.auth
            .tokens
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

/// The write key of a tracking request from HTTP Basic (`key:`), if any.
pub fn basic_write_key(parts: &axum::http::HeaderMap) -> Option<String> {
    let value = parts.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let key = text.split_once(':').map(|(k, _)| k).unwrap_or(&text);
    (!key.is_empty()).then(|| key.to_string())
}

/// The caller of an admin request: a valid bearer token, scoped to its workspace.
pub struct Caller(pub Token);

impl Caller {
    pub fn workspace(&self) -> &str {
        &self.0.workspace_id
    }

    /// Who calls, as the service layer knows callers.
    pub fn actor(&self) -> Actor {
        Actor {
            instance_admin: self.0.instance_admin,
            ..Actor::new(self.0.workspace_id.clone(), self.0.role)
        }
    }

    /// Admins and marketers define audiences and computed traits ([`Actor::require_editor`]).
    pub fn require_editor(&self) -> Result<(), ApiError> {
        Ok(self.actor().require_editor()?)
    }

    /// [`Actor::require_admin`].
    pub fn require_admin(&self) -> Result<(), ApiError> {
        Ok(self.actor().require_admin()?)
    }

    /// [`Actor::require_personal_data`].
    pub fn require_personal_data(&self) -> Result<(), ApiError> {
        Ok(self.actor().require_personal_data()?)
    }
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers)?;
        let token = token_of(state, token).await?;
        // Inside the API's router the path has lost its `/api/v1` prefix; both forms are read.
        if !parcours_service::keys::in_scope(&token, parts.uri.path()) {
            return Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "out_of_scope",
                format!(
                    "this token is limited to {}; this call is outside them",
                    token.scopes.join(", ")
                ),
            ));
        }
        if let Some(retry_after) = state
            .token_limiter
            .check(&token.id, state.engine.clock().monotonic())
        {
            let mut e = ApiError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests for this token; retry later",
            );
            e.retry_after = Some(retry_after);
            return Err(e);
        }
        Ok(Caller(token))
    }
}

/// The bearer token of a request, or 401.
pub(crate) fn bearer(headers: &axum::http::HeaderMap) -> Result<&str, ApiError> {
    let missing = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing_token",
            "send an admin token as `Authorization: Bearer <token>`",
        )
    };
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(missing)?
        .to_str()
        .map_err(|_| missing())?;
    Ok(value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or_else(missing)?
        .trim())
}

/// The admin token a secret is, or 401.
pub(crate) async fn token_of(state: &Arc<AppState>, token: &str) -> Result<Token, ApiError> {
    let hash = hash_secret(token);
    let found = match cached(&state.auth.tokens, &hash, state.engine.clock().monotonic()) {
        Some(t) => Some(t),
        None => {
            let st = state.clone();
            let h = hash.clone();
            let found = blocking(move || Ok(st.engine.store().token_by_hash(&h)?)).await?;
            if let Some(t) = &found {
                remember(
                    &state.auth.tokens,
                    hash,
                    t.clone(),
                    state.engine.clock().monotonic(),
                );
            }
            found
        }
    };
    let now = state.engine.now();
    match found {
        Some(t) if t.expires_at.is_none_or(|at| at > now) => Ok(t),
        Some(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "expired_token",
            "the admin token has expired or was revoked",
        )),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the admin token is not valid",
        )),
    }
}

/// Lets a request read `/metrics`: its bearer token is the configured metrics token or an
/// instance admin token.
pub(crate) async fn authorize_metrics(
    state: &Arc<AppState>,
    headers: &axum::http::HeaderMap,
) -> Result<(), ApiError> {
    let given = bearer(headers)?;
    if let Some(expected) = &state.config.metrics_token {
        // Compared as hashes: the time taken says nothing about the secret.
        if hash_secret(given) == hash_secret(expected) {
            return Ok(());
        }
    }
    let token = token_of(state, given).await?;
    if token.instance_admin {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "metrics need the metrics token or the instance admin token",
        ))
    }
}
