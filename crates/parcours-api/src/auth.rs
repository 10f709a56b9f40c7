//! Write keys (tracking) and bearer tokens (admin). Only SHA-256 hashes of secrets are stored.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use base64::Engine as _;
use parcours_store::{Role, Source, Token};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::error::{blocking, ApiError};
use crate::AppState;

pub fn hash_secret(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new random secret with a readable prefix (`wk_…` for write keys, `pat_…` for tokens).
pub fn new_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 20];
    rand::rng().fill_bytes(&mut bytes);
    let body: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}_{body}")
}

#[derive(Default)]
pub struct AuthCache {
    sources: RwLock<HashMap<String, Source>>,
    tokens: RwLock<HashMap<String, Token>>,
}

impl AppState {
    pub(crate) async fn source_for_key(
        self: &Arc<Self>,
        key: &str,
    ) -> Result<Option<Source>, ApiError> {
        let hash = hash_secret(key);
        if let Some(s) = self
            .auth
            .sources
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&hash)
        {
            return Ok(Some(s.clone()));
        }
        let state = self.clone();
        let h = hash.clone();
        let found = blocking(move || Ok(state.engine.store().source_by_key_hash(&h)?)).await?;
        if let Some(s) = &found {
            self.auth
                .sources
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(hash, s.clone());
        }
        Ok(found)
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

    /// Admins and marketers define audiences and computed traits.
    pub fn require_editor(&self) -> Result<(), ApiError> {
        if matches!(self.0.role, Role::Admin | Role::Marketer) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "this needs the admin or marketer role; the token has {}",
                    self.0.role.as_str()
                ),
            ))
        }
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.0.role == Role::Admin {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "this needs the admin role; the token has {}",
                    self.0.role.as_str()
                ),
            ))
        }
    }
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers)?;
        token_of(state, token).await.map(Caller)
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
    if let Some(t) = state
        .auth
        .tokens
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(&hash)
    {
        return Ok(t.clone());
    }
    let st = state.clone();
    let h = hash.clone();
    let found = blocking(move || Ok(st.engine.store().token_by_hash(&h)?)).await?;
    let token = found.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the admin token is not valid",
        )
    })?;
    state
        .auth
        .tokens
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(hash, token.clone());
    Ok(token)
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
