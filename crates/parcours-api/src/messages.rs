//! What became of journey messages: the open pixel and signed click redirects in every
//! tracked email (public: customers' mail clients call them), delivery receipts from
//! providers, one message with its receipts, and the suppressed addresses.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use parcours_core::time::{format_timestamp, parse_timestamp};
use parcours_service::messages::{self, Outcome};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audiences::store;
use crate::auth::Caller;
use crate::error::{blocking, ApiError};
use crate::openapi::{Answer, Refusals};
use crate::AppState;

/// A transparent 1×1 GIF.
const PIXEL: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// The public routes (no token: the links' signatures are the proof).
pub fn public_routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(open))
        .routes(routes!(click))
        .routes(routes!(status))
}

/// The admin routes (under `/api/v1`).
pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(receipts))
        .routes(routes!(message))
        .routes(routes!(list_suppressions))
        .routes(routes!(put_suppression, delete_suppression))
}

/// Ingests what a hit or a receipt asks for, then keeps its receipts.
async fn record(state: &Arc<AppState>, outcome: Outcome) -> Result<(), ApiError> {
    for batch in outcome.batches {
        state.engine.ingest(batch).await?;
    }
    if !outcome.receipts.is_empty() {
        let st = store(state);
        blocking(move || Ok(messages::keep(st.as_ref(), &outcome.receipts)?)).await?;
    }
    Ok(())
}

fn gone() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "This link is not valid.",
    )
        .into_response()
}

/// The open pixel: the first load records `Email Opened` for the customer the email went to.
#[utoipa::path(get, path = "/v1/m/{workspace}/{key}/open/{sig}", tag = "messages",
    params(("workspace" = String, Path, description = "the workspace"), ("key" = String, Path, description = "the message's key"), ("sig" = String, Path, description = "the link's signature")),
    responses((status = 200, description = "a transparent 1×1 GIF", content_type = "image/gif"), (status = 404, description = "not a link Parcours sent")))]
async fn open(
    State(state): State<Arc<AppState>>,
    Path((ws, key, sig)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let (st, now) = (store(&state), state.engine.now());
    let found = blocking(move || Ok(messages::opened(st.as_ref(), &ws, &key, &sig, now))).await?;
    match found {
        Ok(outcome) => record(&state, outcome).await?,
        Err(parcours_service::ServiceError::NotFound(_)) => return Ok(gone()),
        Err(e) => return Err(e.into()),
    }
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "image/gif"),
            (header::CACHE_CONTROL, "no-store, max-age=0"),
        ],
        PIXEL,
    )
        .into_response())
}

/// A tracked link: records `Email Link Clicked` (and `Email Opened`, the first time), then
/// redirects to the address the email held. A link whose signature does not check redirects
/// nowhere.
#[utoipa::path(get, path = "/v1/m/{workspace}/{key}/click/{index}/{sig}", tag = "messages",
    params(("workspace" = String, Path, description = "the workspace"), ("key" = String, Path, description = "the message's key"),
           ("index" = usize, Path, description = "which link of the message"), ("sig" = String, Path, description = "the link's signature")),
    responses((status = 302, description = "to the link's address"), (status = 404, description = "not a link Parcours sent")))]
async fn click(
    State(state): State<Arc<AppState>>,
    Path((ws, key, index, sig)): Path<(String, String, String, String)>,
) -> Result<Response, ApiError> {
    let Ok(index) = index.parse::<usize>() else {
        return Ok(gone());
    };
    let (st, now) = (store(&state), state.engine.now());
    let found =
        blocking(move || Ok(messages::clicked(st.as_ref(), &ws, &key, index, &sig, now))).await?;
    let (url, outcome) = match found {
        Ok(found) => found,
        Err(parcours_service::ServiceError::NotFound(_)) => return Ok(gone()),
        Err(e) => return Err(e.into()),
    };
    // She gets where she was going even if the click could not be recorded.
    if let Err(e) = record(&state, outcome).await {
        tracing::warn!(code = e.code, error = %e.message, "a click could not be recorded");
    }
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, location(&url).as_str()),
            (header::CACHE_CONTROL, "no-store"),
        ],
    )
        .into_response())
}

/// An address as a `Location` header carries it: bytes outside visible ASCII (an accented
/// path, a space) percent-encoded, the rest as written.
fn location(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    for b in url.bytes() {
        if (0x21..0x7f).contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The fields of a form-encoded body (`application/x-www-form-urlencoded`).
fn form_fields(body: &[u8]) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() + 1 => {
                    match s
                        .get(i + 1..i + 3)
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                    {
                        Some(b) => {
                            out.push(b);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// The status callback of an SMS or a push, as Twilio-compatible providers post it
/// (form-encoded `MessageStatus`, `ErrorCode`, `MessageSid`): `delivered` records `SMS
/// Delivered` (`Push Delivered`), `undelivered` and `failed` record `SMS Failed`; the others
/// (`queued`, `sent` …) are acknowledged and record nothing.
#[utoipa::path(post, path = "/v1/m/{workspace}/{key}/status/{sig}", tag = "messages",
    params(("workspace" = String, Path, description = "the workspace"), ("key" = String, Path, description = "the message's key"), ("sig" = String, Path, description = "the link's signature")),
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "MessageStatus=delivered&ErrorCode=…"),
    responses((status = 204, description = "recorded (or nothing to record)"), (status = 404, description = "not a link Parcours gave")))]
async fn status(
    State(state): State<Arc<AppState>>,
    Path((ws, key, sig)): Path<(String, String, String)>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let fields = form_fields(&body);
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let (said, error) = (
        field("MessageStatus")
            .or_else(|| field("SmsStatus"))
            .unwrap_or_default(),
        field("ErrorCode"),
    );
    let (st, now) = (store(&state), state.engine.now());
    let found = blocking(move || {
        Ok(messages::provider_status(
            st.as_ref(),
            &ws,
            &key,
            &sig,
            &said,
            error.as_deref(),
            now,
        ))
    })
    .await?;
    match found {
        Ok(outcome) => record(&state, outcome).await?,
        Err(parcours_service::ServiceError::NotFound(_)) => return Ok(gone()),
        Err(e) => return Err(e.into()),
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Delivery receipts from a provider: `{"key", "status": "delivered" | "bounced" |
/// "complained" | "failed", "bounce": "hard" | "soft", "reason", "at"}`, or `{"receipts":
/// [...]}` (up to 1,000). Each becomes an event of the customer (`Email Delivered`, `Email
/// Bounced`, `Email Marked as Spam`, `SMS Delivered` …) once; a hard bounce or a complaint
/// suppresses the address. Each receipt gets its own answer, in order.
#[utoipa::path(post, path = "/messages/receipts", tag = "messages", request_body = Answer,
    security(("bearer" = [])),
    responses((status = 200, description = "one answer per receipt", body = Answer), Refusals))]
async fn receipts(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: Option<Json<Value>>,
) -> Result<Json<Value>, ApiError> {
    let Some(Json(body)) = body else {
        return Err(ApiError::bad_request(
            "invalid_receipt",
            "send the receipts as a JSON object",
        ));
    };
    let (st, actor, now) = (store(&state), caller.actor(), state.engine.now());
    let done =
        blocking(move || Ok(messages::record_receipts(st.as_ref(), &actor, &body, now)?)).await?;
    record(&state, done.outcome).await?;
    Ok(Json(json!({ "receipts": done.results })))
}

/// One message: as the customer received it, its delivery state and what became of it
/// (delivered, opened, clicked, bounced …).
#[utoipa::path(get, path = "/messages/{key}", tag = "messages",
    params(("key" = String, Path, description = "the message's key")),
    security(("bearer" = [])),
    responses((status = 200, description = "the message", body = Answer), Refusals))]
async fn message(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require_personal_data()?;
    let (st, ws) = (store(&state), caller.actor().workspace);
    let (row, receipts) = blocking(move || {
        let row = st
            .outbox_row_by_key(&ws, &key)?
            .filter(|r| r.destination.starts_with("channel:"))
            .ok_or_else(|| parcours_store::StoreError::NotFound(format!("message {key}")))?;
        let receipts = st.receipts(&ws, &key)?;
        Ok((row, receipts))
    })
    .await?;
    Ok(Json(json!({
        "key": row.key,
        "state": row.state,
        "attempts": row.attempts,
        "last_error": row.last_error,
        "created_at": format_timestamp(row.created_at),
        "settled_at": row.settled_at.map(format_timestamp),
        "message": shown(&row.payload),
        "receipts": receipts.iter().map(|r| json!({
            "kind": r.kind, "at": format_timestamp(r.at), "detail": r.detail,
        })).collect::<Vec<_>>(),
    })))
}

/// A message's payload as shown: without the secret that signs its links.
pub fn shown(payload: &str) -> Value {
    let mut v = serde_json::from_str::<Value>(payload).unwrap_or(Value::Null);
    if let Value::Object(o) = &mut v {
        o.remove("secret");
    }
    v
}

#[derive(Debug, Deserialize)]
struct SuppressionsQuery {
    /// The `next` of the previous page.
    after: Option<String>,
    limit: Option<usize>,
}

fn suppression_json(s: &parcours_store::Suppression) -> Value {
    json!({
        "channel": s.channel,
        "address": s.address,
        "reason": s.reason,
        "message_key": (!s.key.is_empty()).then_some(&s.key),
        "detail": s.detail,
        "at": format_timestamp(s.at),
    })
}

/// The addresses no message goes to (hard bounces, complaints, added by hand), newest first.
#[utoipa::path(get, path = "/suppressions", tag = "messages",
    params(("after" = Option<String>, Query, description = "the `next` of the previous page"),
           ("limit" = Option<usize>, Query, description = "at most this many (default 100, at most 1,000)")),
    security(("bearer" = [])),
    responses((status = 200, description = "the suppressions", body = Answer), Refusals))]
async fn list_suppressions(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<SuppressionsQuery>,
) -> Result<Json<Value>, ApiError> {
    caller.require_personal_data()?;
    let after = match q.after.as_deref() {
        None => None,
        Some(a) => {
            let mut parts = a.splitn(3, ' ');
            match (
                parts.next().and_then(parse_timestamp),
                parts.next(),
                parts.next(),
            ) {
                (Some(t), Some(c), Some(addr)) => Some((t, c.to_string(), addr.to_string())),
                _ => {
                    return Err(ApiError::bad_request(
                        "invalid_parameter",
                        "`after` is the `next` of the previous page",
                    ))
                }
            }
        }
    };
    let limit = q.limit.unwrap_or(100);
    let (st, actor) = (store(&state), caller.actor());
    let page =
        blocking(move || Ok(messages::suppressions(st.as_ref(), &actor, after, limit)?)).await?;
    let next = (page.len() == limit.clamp(1, 1_000)).then(|| {
        let last = page.last().expect("a full page");
        format!(
            "{} {} {}",
            format_timestamp(last.at),
            last.channel,
            last.address
        )
    });
    Ok(Json(json!({
        "suppressions": page.iter().map(suppression_json).collect::<Vec<_>>(),
        "next": next,
    })))
}

/// Suppresses an address by hand (`{"detail": "…"}` optional): `201`, or `200` with the
/// suppression already there.
#[utoipa::path(put, path = "/suppressions/{channel}/{address}", tag = "messages",
    params(("channel" = String, Path, description = "email, sms or push"), ("address" = String, Path, description = "the address")),
    security(("bearer" = [])),
    responses((status = 201, description = "suppressed", body = Answer), (status = 200, description = "it was already", body = Answer), Refusals))]
async fn put_suppression(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((channel, address)): Path<(String, String)>,
    body: Option<Json<Value>>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let detail = match body.as_ref().map(|Json(b)| b.get("detail")) {
        None | Some(None) | Some(Some(Value::Null)) => String::new(),
        Some(Some(Value::String(d))) => d.clone(),
        Some(Some(_)) => {
            return Err(ApiError::bad_request(
                "invalid_suppression",
                "`detail` is text",
            ))
        }
    };
    let (st, actor, now) = (store(&state), caller.actor(), state.engine.now());
    let (s, created) = blocking(move || {
        Ok(messages::suppress(
            st.as_ref(),
            &actor,
            &channel,
            &address,
            &detail,
            now,
        )?)
    })
    .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(suppression_json(&s))))
}

/// Lifts a suppression: messages go to the address again.
#[utoipa::path(delete, path = "/suppressions/{channel}/{address}", tag = "messages",
    params(("channel" = String, Path, description = "email, sms or push"), ("address" = String, Path, description = "the address")),
    security(("bearer" = [])),
    responses((status = 204, description = "lifted"), Refusals))]
async fn delete_suppression(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((channel, address)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (st, actor) = (store(&state), caller.actor());
    blocking(move || {
        Ok(messages::unsuppress(
            st.as_ref(),
            &actor,
            &channel,
            &address,
        )?)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::form_fields;

    #[test]
    fn locations_are_header_safe() {
        assert_eq!(
            super::location("https://shop.example/café?q=a b&x=1#top"),
            "https://shop.example/caf%C3%A9?q=a%20b&x=1#top"
        );
        assert_eq!(
            super::location("https://a.example/\n"),
            "https://a.example/%0A"
        );
    }

    #[test]
    fn form_bodies_decode() {
        assert_eq!(
            form_fields(b"MessageStatus=delivered&ErrorCode=&To=%2B33611&Body=a+b%26c&x&bad=%zz%4"),
            [
                ("MessageStatus".to_string(), "delivered".to_string()),
                ("ErrorCode".into(), "".into()),
                ("To".into(), "+33611".into()),
                ("Body".into(), "a b&c".into()),
                ("x".into(), "".into()),
                ("bad".into(), "%zz%4".into()),
            ]
        );
        assert!(form_fields(b"").is_empty());
    }
}
