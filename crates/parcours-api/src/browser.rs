//! What browser SDKs need to send to Parcours with no other server: CORS on the tracking
//! endpoints, and the settings documents Segment's `analytics-next` and RudderStack's
//! `analytics-js` v3 fetch from their CDN, served here instead.
//!
//! A write key is public (it is in the page), so any origin may send by default, without
//! credentials; a source can be limited to its sites (`allowed_origins`), and then a page of
//! another origin is refused (403, no `Access-Control-Allow-Origin`).

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use parcours_store::Source;
use serde::Deserialize;
use serde_json::{json, Value};

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::basic_write_key;
use crate::error::ApiError;
use crate::openapi::{Answer, Refusals};
use crate::AppState;

/// Marks a response refused for its origin: it gets no CORS headers.
#[derive(Clone, Copy)]
pub struct OriginRefused;

/// Whether browsers call this path (the tracking API and the SDK settings documents).
fn is_browser_path(path: &str) -> bool {
    path.starts_with("/v1/") || path == "/sourceConfig" || path == "/sourceConfig/"
}

const EXPOSED_HEADERS: &str = "retry-after, x-ratelimit-reset";

/// Answers CORS preflights of the browser paths, and adds `Access-Control-Allow-Origin` to
/// their answers (errors included, so that a page can read why it was refused).
pub async fn cors(req: Request, next: Next) -> Response {
    if !is_browser_path(req.uri().path()) {
        return next.run(req).await;
    }
    let origin = req.headers().get(header::ORIGIN).cloned();
    if req.method() == Method::OPTIONS {
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        allow_origin(h, origin.as_ref());
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        // Whatever headers the page asks to send are allowed: they carry no authority (the
        // write key is checked on the call itself, and no cookie is ever read), and the SDKs
        // add their own (`SentAt`, `AnonymousId`, retry counters) from version to version.
        if let Some(asked) = req.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
            let valid = asked.len() <= 2_048
                && asked.to_str().is_ok_and(|list| {
                    list.split(',')
                        .map(str::trim)
                        .all(|name| name.parse::<header::HeaderName>().is_ok() || name.is_empty())
                });
            if valid {
                h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
            }
        }
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
        return r;
    }
    let mut resp = next.run(req).await;
    if resp.extensions().get::<OriginRefused>().is_none() {
        let h = resp.headers_mut();
        allow_origin(h, origin.as_ref());
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSED_HEADERS),
        );
    }
    resp
}

fn allow_origin(h: &mut HeaderMap, origin: Option<&HeaderValue>) {
    match origin {
        // The page's own origin rather than `*`: a client that sends credentials still works
        // (none are needed: the write key is the only secret, and it is public).
        Some(o) => {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o.clone());
            h.append(header::VARY, HeaderValue::from_static("Origin"));
        }
        None => {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        }
    }
}

/// The answer that refuses a request from a page whose origin the source does not allow.
pub fn refused_origin(source: &Source, headers: &HeaderMap) -> Option<Response> {
    let origin = headers.get(header::ORIGIN)?;
    let origin = origin.to_str().unwrap_or("");
    if source.allows_origin(origin) {
        return None;
    }
    let mut r = ApiError::new(
        StatusCode::FORBIDDEN,
        "origin_not_allowed",
        format!(
            "pages of {origin} may not send with this write key; add the origin to the source's allowed_origins"
        ),
    )
    .into_response();
    r.extensions_mut().insert(OriginRefused);
    Some(r)
}

/// The source of a write key, or the answer that refuses it (boxed: it is the rare path).
async fn source_of(
    state: &Arc<AppState>,
    key: &str,
    headers: &HeaderMap,
) -> Result<Source, Box<Response>> {
    let source = match state.source_for_key(key).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Err(Box::new(
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "invalid_write_key",
                    "no source has this write key",
                )
                .into_response(),
            ))
        }
        Err(e) => return Err(Box::new(e.into_response())),
    };
    match refused_origin(&source, headers) {
        Some(r) => Err(Box::new(r)),
        None => Ok(source),
    }
}

/// Where the SDKs should send: this server, as the page reached it.
fn api_host(headers: &HeaderMap) -> (String, &'static str) {
    let host = headers
        .get("x-forwarded-host")
        .or_else(|| headers.get(header::HOST))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1:8750")
        .to_string();
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    (host, if https { "https" } else { "http" })
}

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(segment_settings))
        .routes(routes!(rudderstack_config))
        .routes(routes!(rudderstack_config_slash))
}

/// `GET /v1/projects/{writeKey}/settings`: the document `@segment/analytics-next` loads from
/// its `cdnURL`. It names Parcours as the only destination and turns off what would load
/// code or send data elsewhere (remote plugins, device-mode integrations, metrics).
#[utoipa::path(get, path = "/v1/projects/{key}/settings", tag = "tracking",
    params(("key" = String, Path, description = "the source's write key")),
    responses((status = 200, description = "the settings document", body = Answer), Refusals))]
pub async fn segment_settings(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = source_of(&state, &key, &headers).await {
        return *r;
    }
    let (host, protocol) = api_host(&headers);
    let doc = json!({
        "integrations": {
            "Segment.io": {
                "apiKey": key,
                "apiHost": format!("{host}/v1"),
                "protocol": protocol,
                "unbundledIntegrations": [],
                "addBundledMetadata": true,
                "maybeBundledConfigIds": {},
                "versionSettings": { "version": "4.4.7", "componentTypes": ["browser"] },
            }
        },
        "plan": {
            "track": { "__default": { "enabled": true, "integrations": {} } },
            "identify": { "__default": { "enabled": true } },
            "group": { "__default": { "enabled": true } },
        },
        "edgeFunction": {},
        "analyticsNextEnabled": true,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "metrics": { "sampleRate": 0 },
        "legacyVideoPluginsEnabled": false,
        "remotePlugins": [],
    });
    no_store(Json(doc).into_response())
}

/// The settings documents name the host the request came to: never kept by a shared cache.
fn no_store(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[derive(Deserialize)]
pub struct ConfigQuery {
    #[serde(rename = "writeKey")]
    write_key: Option<String>,
}

/// `GET /sourceConfig`: the source configuration `@rudderstack/analytics-js` v3 loads from its
/// `configUrl` (the write key as HTTP Basic or `?writeKey=`), with no device-mode
/// destinations and its own error reporting and metrics off.
#[utoipa::path(get, path = "/sourceConfig", tag = "tracking",
    params(("writeKey" = Option<String>, Query, description = "the source's write key, if not sent as HTTP Basic")),
    responses((status = 200, description = "the source configuration", body = Answer), Refusals))]
pub async fn rudderstack_config(
    state: State<Arc<AppState>>,
    q: Query<ConfigQuery>,
    headers: HeaderMap,
) -> Response {
    source_config(state, q, headers).await
}

/// `GET /sourceConfig/`: the same, at the path the SDK asks for.
#[utoipa::path(get, path = "/sourceConfig/", tag = "tracking",
    params(("writeKey" = Option<String>, Query, description = "the source's write key, if not sent as HTTP Basic")),
    responses((status = 200, description = "the source configuration", body = Answer), Refusals))]
pub async fn rudderstack_config_slash(
    state: State<Arc<AppState>>,
    q: Query<ConfigQuery>,
    headers: HeaderMap,
) -> Response {
    source_config(state, q, headers).await
}

async fn source_config(
    State(state): State<Arc<AppState>>,
    Query(q): Query<ConfigQuery>,
    headers: HeaderMap,
) -> Response {
    let Some(key) = basic_write_key(&headers).or(q.write_key) else {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing_write_key",
            "send the source's write key as HTTP Basic `key:` or as `?writeKey=`",
        )
        .into_response();
    };
    let source = match source_of(&state, &key, &headers).await {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let doc: Value = json!({
        "isHosted": false,
        "source": {
            "id": source.id,
            "name": source.name,
            "writeKey": key,
            "workspaceId": source.workspace_id,
            "enabled": true,
            "config": {
                "statsCollection": {
                    "errors": { "enabled": false },
                    "metrics": { "enabled": false },
                },
            },
            "destinations": [],
        },
    });
    no_store(Json(doc).into_response())
}
