//! API errors: `{"message", "code", "type", "link"}` with stable codes (listed in
//! `docs/errors.md`).

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use parcours_engine::EngineError;
use parcours_service::ServiceError;
use parcours_store::StoreError;
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<u64>,
    /// More about the refusal, merged into the body (a document's `problems`).
    pub details: Option<serde_json::Map<String, serde_json::Value>>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            details: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    fn kind(&self) -> &'static str {
        match self.status.as_u16() {
            401 | 403 => "auth",
            429 => "rate_limit",
            500..=599 => "internal",
            _ => "invalid_request",
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::not_found(what),
            StoreError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            e => {
                tracing::error!(error = %e, "storage failure");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "storage_error",
                    "the store failed; the request was not applied",
                )
            }
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Forbidden(m) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", m),
            ServiceError::NotFound(what) => ApiError::not_found(what),
            ServiceError::Invalid { code, message } => ApiError::bad_request(code, message),
            ServiceError::Conflict { code, message } => {
                ApiError::new(StatusCode::CONFLICT, code, message)
            }
            ServiceError::Unprocessable { code, message } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
            }
            ServiceError::Document { problems } => {
                let code = problems.first().map_or("invalid_journey", |p| p.code);
                let mut e = ApiError::bad_request(
                    code,
                    format!(
                        "the document has {} problem(s); the first: {}",
                        problems.len(),
                        problems
                            .first()
                            .map(ToString::to_string)
                            .unwrap_or_default()
                    ),
                );
                let mut details = serde_json::Map::new();
                details.insert("problems".into(), json!(problems));
                e.details = Some(details);
                e
            }
            ServiceError::OutOfStock { shortages } => {
                let mut e = ApiError::new(
                    StatusCode::CONFLICT,
                    "insufficient_stock",
                    parcours_service::commerce::describe_shortages(&shortages),
                );
                let mut details = serde_json::Map::new();
                details.insert("shortages".into(), json!(shortages));
                e.details = Some(details);
                e
            }
            ServiceError::Store(e) => e.into(),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Store(s) => s.into(),
            EngineError::ShuttingDown => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "this node is shutting down; retry on another",
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "message": self.message,
            "code": self.code,
            "type": self.kind(),
            "link": format!("docs/errors.md#{}", self.code),
        });
        if let (Some(details), Some(obj)) = (self.details, body.as_object_mut()) {
            obj.extend(details);
        }
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, secs.into());
            resp.headers_mut().insert("x-ratelimit-reset", secs.into());
        }
        resp
    }
}

/// Turns every error answered outside the handlers (a query string, path or JSON body the
/// framework cannot read, a method a route does not have) into the API's envelope, keeping
/// the framework's explanation as the message.
pub async fn envelope(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    // JSON answers, and the pages made for people (one-click unsubscribe), are kept as they are.
    let is_own = resp.headers().get(header::CONTENT_TYPE).is_some_and(|v| {
        v.as_bytes().starts_with(b"application/json") || v.as_bytes().starts_with(b"text/html")
    });
    if is_own || !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let (status, code) = match status.as_u16() {
        400 | 422 if text.contains("JSON") => (StatusCode::BAD_REQUEST, "invalid_json"),
        400 => (StatusCode::BAD_REQUEST, "invalid_parameter"),
        405 => (status, "method_not_allowed"),
        413 => (status, "payload_too_large"),
        415 => (status, "unsupported_media_type"),
        500..=599 => (status, "internal"),
        _ => (status, "invalid_request"),
    };
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    let mut out = ApiError::new(status, code, message).into_response();
    for name in [header::ALLOW, header::RETRY_AFTER, header::CONNECTION] {
        if let Some(v) = parts.headers.get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    out
}

pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "route_not_found",
        format!("no route for {}", uri.path()),
    )
}

/// A request body read as `T`, which must be a JSON object (a struct also reads from an array
/// of its fields in order, which no client means). `missing` tells what to send instead;
/// `code` is the error of an object of the wrong shape.
pub fn object_body<T: serde::de::DeserializeOwned>(
    body: Option<axum::Json<serde_json::Value>>,
    missing: &str,
    code: &'static str,
) -> Result<T, ApiError> {
    let Some(axum::Json(body @ serde_json::Value::Object(_))) = body else {
        return Err(ApiError::bad_request("invalid_json", missing));
    };
    serde_json::from_value(body).map_err(|e| ApiError::bad_request(code, e.to_string()))
}

/// Runs a blocking storage call on the blocking pool.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
}
