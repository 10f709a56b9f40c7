//! The HTTP server: the accept loop with what keeps slow or greedy clients from holding a node
//! (a deadline for a request's headers, also closing idle keep-alive connections; a deadline
//! for its body; a cap on the connections one client address holds), and the body guard that
//! refuses an oversized `Content-Length` before reading anything (so no `100 Continue` is
//! sent for it) and reads every body within its limit and deadline.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use http_body_util::BodyExt;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use parcours_core::limits::Size;
use parcours_core::spec::{MAX_BATCH_BYTES, MAX_EVENT_BYTES};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::error::ApiError;
use crate::AppState;

/// The largest admin API body.
pub const MAX_ADMIN_BODY_BYTES: usize = 2 * 1024 * 1024;

/// How much of an oversized body is read and thrown away before the 413, so that a client
/// still sending gets the answer instead of a reset connection. Beyond it the connection is
/// closed as soon as the answer is written.
const DISCARD_MAX_BYTES: usize = 8 * 1024 * 1024;

/// How long in-flight requests may take to finish once the server is told to stop.
const DRAIN: Duration = Duration::from_secs(10);

/// What a client may hold of the server.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// A request's headers must arrive within this (an idle keep-alive connection is closed
    /// after it).
    pub header_timeout: Duration,
    /// A request's body must arrive within this.
    pub body_timeout: Duration,
    /// Open connections per client address; more are answered 429 and closed.
    pub max_connections_per_ip: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections_per_ip: 256,
        }
    }
}

/// Open connections per client address.
#[derive(Default)]
struct Connections(Mutex<HashMap<IpAddr, usize>>);

/// One open connection, counted until dropped.
struct Slot {
    table: Arc<Connections>,
    ip: IpAddr,
}

impl Connections {
    fn take(table: &Arc<Connections>, ip: IpAddr, max: usize) -> Option<Slot> {
        let mut open = table.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Slot {
            table: table.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.table.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then lets in-flight requests finish
/// (for up to ten seconds).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send,
) {
    let graceful = GracefulShutdown::new();
    let table = Arc::new(Connections::default());
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, most likely: wait for some to close.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = Connections::take(&table, peer.ip(), limits.max_connections_per_ip) else {
            metrics::counter!("parcours_http_connections_refused_total").increment(1);
            tokio::spawn(refuse(stream, limits.max_connections_per_ip));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection closed with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after {DRAIN:?}; closing them");
    }
}

/// Answers a connection over the per-address cap with 429 and closes it.
async fn refuse(mut stream: tokio::net::TcpStream, max: usize) {
    let body = serde_json::json!({
        "message": format!("this address already holds {max} open connections; close some or retry later"),
        "code": "too_many_connections",
        "type": "rate_limit",
        "link": "docs/errors.md#too_many_connections",
    })
    .to_string();
    let response = format!(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// The largest body a route takes.
pub fn body_limit(path: &str) -> usize {
    match path {
        "/v1/batch" | "/v1/import" => MAX_BATCH_BYTES,
        // A platform's webhook (a large order) becomes several events, each checked alone.
        p if p.starts_with("/v1/webhooks/") => MAX_BATCH_BYTES,
        p if p.starts_with("/v1/") => MAX_EVENT_BYTES,
        _ => MAX_ADMIN_BODY_BYTES,
    }
}

/// An error that ends the connection (its body was not read to the end).
fn closing(e: ApiError) -> Response {
    let mut r = e.into_response();
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

fn too_large(size: Option<u64>, limit: usize) -> Response {
    let message = match size {
        Some(size) => format!(
            "request body is {}, over the limit of {}",
            Size(size as usize),
            Size(limit)
        ),
        None => format!("request body is over the limit of {}", Size(limit)),
    };
    closing(ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        message,
    ))
}

/// Reads and throws away what is left of a body, up to [`DISCARD_MAX_BYTES`] and within
/// `timeout`. Returns whether it reached the end.
async fn discard(mut body: Body, timeout: Duration) -> bool {
    let drain = async {
        let mut read = 0usize;
        loop {
            match body.frame().await {
                Some(Ok(frame)) => {
                    read += frame.data_ref().map_or(0, |d| d.len());
                    if read > DISCARD_MAX_BYTES {
                        return false;
                    }
                }
                None => return true,
                Some(Err(_)) => return false,
            }
        }
    };
    tokio::time::timeout(timeout, drain).await.unwrap_or(false)
}

/// How reading a body within its limit ended.
enum Reading {
    Complete,
    TooLarge,
    Broken(axum::Error),
}

/// The 413 for a body over its limit: at once to a client waiting for `100 Continue` (it
/// never gets one and never sends the body); otherwise once the rest of the body is read and
/// thrown away, when it is not huge, so that the client still sending reads the answer.
async fn refuse_body(
    body: Body,
    declared: Option<u64>,
    limit: usize,
    expects_continue: bool,
    timeout: Duration,
) -> Response {
    let drained = !expects_continue && discard(body, timeout).await;
    let mut r = too_large(declared, limit);
    if drained {
        r.headers_mut().remove(header::CONNECTION);
    }
    r
}

/// Reads a request's body within its route's limit and the body deadline, before the handler
/// runs. An oversized `Content-Length` is refused before its body is read (a client that
/// sent `Expect: 100-continue` never gets `100 Continue` for it).
pub async fn guard_body(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let limit = body_limit(req.uri().path());
    let timeout = state.config.server.body_timeout;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let expects_continue = req
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let (parts, body) = req.into_parts();
    if declared.is_some_and(|n| n > limit as u64) {
        return refuse_body(body, declared, limit, expects_continue, timeout).await;
    }
    let mut body = body;
    let mut read = bytes::BytesMut::new();
    let reading = async {
        loop {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        read.extend_from_slice(data);
                    }
                    // Sent without a length (chunked), it is found over the limit as it arrives.
                    if read.len() > limit {
                        return Reading::TooLarge;
                    }
                }
                None => return Reading::Complete,
                Some(Err(e)) => return Reading::Broken(e),
            }
        }
    };
    let bytes = match tokio::time::timeout(timeout, reading).await {
        Ok(Reading::Complete) => read.freeze(),
        Ok(Reading::TooLarge) => return refuse_body(body, None, limit, false, timeout).await,
        Ok(Reading::Broken(e)) => {
            return closing(ApiError::bad_request(
                "invalid_body",
                format!("the request body could not be read: {e}"),
            ))
        }
        Err(_) => {
            return closing(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "the request body did not arrive within {} s",
                    timeout.as_secs_f64()
                ),
            ))
        }
    };
    let mut parts = parts;
    // The tracking endpoints decompress once the write key is checked (a client without a
    // valid key gets its 401 without making the server inflate anything); the admin API here.
    let bytes = if parts.uri.path().starts_with("/v1/") {
        bytes
    } else {
        match decode(&mut parts.headers, bytes, limit) {
            Ok(bytes) => bytes,
            Err(e) => return e.into_response(),
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// A body sent with `Content-Encoding: gzip` or `deflate`, decompressed; the route's limit
/// applies to what it decompresses to, and decompression stops as soon as it is passed (a
/// small body that would inflate to gigabytes costs at most the limit in memory).
pub(crate) fn decode(
    headers: &mut axum::http::HeaderMap,
    bytes: bytes::Bytes,
    limit: usize,
) -> Result<bytes::Bytes, ApiError> {
    if headers.get_all(header::CONTENT_ENCODING).iter().count() > 1 {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_content_encoding",
            "send one `Content-Encoding` header (gzip or deflate), not several",
        ));
    }
    let Some(encoding) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(bytes);
    };
    let encoding = encoding.to_str().unwrap_or("").trim().to_ascii_lowercase();
    let decoded = match encoding.as_str() {
        "" | "identity" => return Ok(bytes),
        "gzip" | "x-gzip" => inflate(flate2::read::MultiGzDecoder::new(&bytes[..]), limit),
        // HTTP's `deflate` is the zlib format; some clients send raw deflate instead.
        "deflate" => match inflate(flate2::read::ZlibDecoder::new(&bytes[..]), limit) {
            Err(Inflate::Corrupt(_)) => inflate(flate2::read::DeflateDecoder::new(&bytes[..]), limit),
            other => other,
        },
        other => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_content_encoding",
                format!("`Content-Encoding: {other}` is not supported; send gzip, deflate or an uncompressed body"),
            ))
        }
    };
    let decoded = match decoded {
        Ok(d) => d,
        Err(Inflate::TooLarge) => {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "the {encoding} body of {} decompresses to more than the limit of {}",
                    Size(bytes.len()),
                    Size(limit)
                ),
            ))
        }
        Err(Inflate::Corrupt(e)) => {
            return Err(ApiError::bad_request(
                "invalid_encoding",
                format!("the {encoding} body could not be decompressed: {e}"),
            ))
        }
    };
    headers.remove(header::CONTENT_ENCODING);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(decoded.len()));
    Ok(bytes::Bytes::from(decoded))
}

enum Inflate {
    TooLarge,
    Corrupt(std::io::Error),
}

/// Reads a decoder to the end, or up to one byte past `limit`.
fn inflate(decoder: impl std::io::Read, limit: usize) -> Result<Vec<u8>, Inflate> {
    use std::io::Read;
    let mut out = Vec::new();
    decoder
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(Inflate::Corrupt)?;
    if out.len() > limit {
        return Err(Inflate::TooLarge);
    }
    Ok(out)
}
