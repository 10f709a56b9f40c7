//! The live event debugger: `GET /api/v1/sources/{id}/live` streams a source's events as they
//! arrive (server-sent events), each with its outcome, for checking an integration in
//! minutes. It reads the event log and the quarantine, so it shows what every node of a
//! cluster received, not only this one.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use parcours_store::{QuarantineEntry, Store, StoredEvent};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::{blocking, ApiError};
use crate::openapi::Refusals;
use crate::AppState;

/// How often the stream looks for new events.
const POLL: Duration = Duration::from_millis(250);
/// How far back the log is read on connect for the source's recent events.
const LOOK_BACK_EVENTS: i64 = 2_000;
/// Events read from the log at a time (a page of large events is a few megabytes at most).
const PAGE: usize = 200;
/// Streams one node serves at once; more are answered 429.
pub const MAX_STREAMS: usize = 32;

static OPEN_STREAMS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// One open stream, counted until its stream is dropped.
struct Slot;

impl Slot {
    fn take() -> Option<Slot> {
        use std::sync::atomic::Ordering;
        let mut n = OPEN_STREAMS.load(Ordering::SeqCst);
        loop {
            if n >= MAX_STREAMS {
                return None;
            }
            match OPEN_STREAMS.compare_exchange(n, n + 1, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return Some(Slot),
                Err(now) => n = now,
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        OPEN_STREAMS.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[derive(Deserialize)]
pub struct LiveQuery {
    /// How many of the source's recent events to send first (default 20, at most 200).
    recent: Option<usize>,
}

/// One event as the debugger shows it.
fn event_line(e: &StoredEvent) -> Value {
    let body: Value = serde_json::from_str(&e.body).unwrap_or(Value::Null);
    let violations = body["context"]["protocols"]["violations"].clone();
    json!({
        "seq": e.seq,
        "outcome": if violations.is_array() { "flagged" } else { "accepted" },
        "violations": violations,
        "type": e.kind.as_str(),
        "event": e.event,
        "message_id": e.message_id,
        "received_at": parcours_core::time::format_timestamp(e.received_at),
        "channel": e.channel,
        "body": body,
    })
}

fn quarantine_line(q: &QuarantineEntry) -> Value {
    json!({
        "quarantine_id": q.id,
        "outcome": "quarantined",
        "code": q.code,
        "reason": q.reason,
        "message_id": q.message_id,
        "received_at": parcours_core::time::format_timestamp(q.received_at),
        "body": serde_json::from_str::<Value>(&q.body).unwrap_or(Value::String(q.body.clone())),
    })
}

struct Cursor {
    _slot: Slot,
    state: Arc<AppState>,
    store: Arc<dyn Store>,
    workspace: String,
    source: String,
    after_seq: i64,
    after_quarantine: i64,
    pending: std::collections::VecDeque<Event>,
    started: bool,
}

impl Cursor {
    /// New lines since the last look (runs on the blocking pool).
    fn poll(&mut self) -> Result<Vec<Event>, parcours_store::StoreError> {
        let mut out = Vec::new();
        loop {
            let page = self
                .store
                .workspace_events(&self.workspace, self.after_seq, 1_000)?;
            let Some(last) = page.last() else { break };
            self.after_seq = last.seq;
            for e in page.iter().filter(|e| e.source_id == self.source) {
                out.push(sse("event", &event_line(e)));
            }
            if page.len() < PAGE {
                break;
            }
        }
        loop {
            let page = self
                .store
                .quarantined(&self.workspace, None, self.after_quarantine, 500)?;
            let Some(last) = page.last() else { break };
            self.after_quarantine = last.id;
            for q in page.iter().filter(|q| q.sources.contains(&self.source)) {
                out.push(sse("quarantined", &quarantine_line(q)));
            }
            if page.len() < 500 {
                break;
            }
        }
        Ok(out)
    }
}

fn sse(kind: &str, data: &Value) -> Event {
    Event::default().event(kind).data(data.to_string())
}

/// Where the stream starts: the source's last `recent` events, and the ends of the log and
/// of the quarantine.
fn start(
    slot: Slot,
    state: Arc<AppState>,
    store: Arc<dyn Store>,
    workspace: String,
    source: String,
    recent: usize,
) -> Result<Cursor, ApiError> {
    let last = store.last_seq()?;
    let mut cursor = Cursor {
        _slot: slot,
        state,
        store: store.clone(),
        workspace: workspace.clone(),
        source: source.clone(),
        after_seq: (last - LOOK_BACK_EVENTS).max(0),
        after_quarantine: 0,
        pending: Default::default(),
        started: false,
    };
    // The recent events are the last ones of the look-back window; the quarantine's past is
    // skipped (it has its own API).
    let mut recent_events = Vec::new();
    loop {
        let page = store.workspace_events(&workspace, cursor.after_seq, 1_000)?;
        let Some(end) = page.last() else { break };
        cursor.after_seq = end.seq;
        recent_events.extend(
            page.iter()
                .filter(|e| e.source_id == source)
                .map(event_line),
        );
        if recent_events.len() > recent {
            recent_events.drain(..recent_events.len() - recent);
        }
        if page.len() < 1_000 {
            break;
        }
    }
    loop {
        let page = store.quarantined(&workspace, None, cursor.after_quarantine, 1_000)?;
        let Some(end) = page.last() else { break };
        cursor.after_quarantine = end.id;
        if page.len() < 1_000 {
            break;
        }
    }
    cursor.pending.push_back(sse(
        "ready",
        &json!({"source": source, "recent": recent_events.len(), "poll_ms": POLL.as_millis() as u64}),
    ));
    cursor
        .pending
        .extend(recent_events.iter().map(|e| sse("event", e)));
    Ok(cursor)
}

/// The source's events as they arrive, with their outcome (server-sent events of type ready, event, quarantined, error).
#[utoipa::path(get, path = "/sources/{id}/live", tag = "sources", params(("id" = String, Path, description = "the id"), ("recent" = Option<u32>, Query, maximum = 200, description = "how many recent events first, default 20")), security(("bearer" = [])), responses((status = 200, description = "success", content_type = "text/event-stream", body = String), Refusals))]
pub async fn live(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<LiveQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>>, ApiError> {
    caller.require_personal_data()?;
    let recent = q.recent.unwrap_or(20).min(200);
    let slot = Slot::take().ok_or_else(|| {
        let mut e = ApiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "too_many_streams",
            format!(
                "this node already serves {MAX_STREAMS} live streams; close one or retry later"
            ),
        );
        e.retry_after = Some(5);
        e
    })?;
    let (store, ws) = (state.engine.store().clone(), caller.workspace().to_string());
    let cursor = blocking(move || {
        if !store.sources(&ws)?.iter().any(|s| s.id == id) {
            return Err(ApiError::not_found(format!("source {id}")));
        }
        start(slot, state, store, ws, id, recent)
    })
    .await?;
    let stream = stream::unfold(cursor, |mut cursor| async move {
        loop {
            if let Some(e) = cursor.pending.pop_front() {
                return Some((Ok(e), cursor));
            }
            // A node that is stopping ends its streams (the client reconnects to another).
            if !cursor.state.ready.load(std::sync::atomic::Ordering::SeqCst) {
                return None;
            }
            if cursor.started {
                tokio::time::sleep(POLL).await;
            }
            cursor.started = true;
            let polled = tokio::task::spawn_blocking(move || {
                let lines = cursor.poll();
                (cursor, lines)
            })
            .await;
            let Ok((back, lines)) = polled else {
                return None;
            };
            cursor = back;
            match lines {
                Ok(lines) => cursor.pending.extend(lines),
                Err(e) => {
                    // A store that fails now is told to the client, and the stream goes on.
                    tracing::warn!(error = %e, "the live debugger could not read the store");
                    cursor.pending.push_back(sse(
                        "error",
                        &json!({"message": "the store did not answer; retrying"}),
                    ));
                }
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
