//! The journeys API: a journey is a document (YAML or JSON) saved with `PUT`, every version
//! kept; `GET` answers it as it was written, with its versions.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use parcours_core::time::format_timestamp;
use parcours_service::journeys::{self, Saved};
use parcours_store::JourneyVersion;
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
        .routes(routes!(list))
        .routes(routes!(show, put))
        .routes(routes!(profile_journeys))
        .routes(routes!(messages))
        .routes(routes!(get_policy, put_policy))
        .routes(routes!(report))
        .routes(routes!(enter))
        .routes(routes!(preview))
        .routes(routes!(simulate))
}

#[derive(Deserialize)]
struct SimulateQuery {
    from: Option<String>,
    to: Option<String>,
}

/// Replays a journey document (the request body, YAML or JSON, as for `PUT`) over the
/// workspace's stored events between `from` and `to` (dates or timestamps, at most 400 days
/// apart), as if it had been live: entries and why others did not enter, how runs ended,
/// conversions, messages per channel, each step's decisions (quiet hours and caps among them)
/// and the live journeys that wrote to the same customers within a day. Saves and sends
/// nothing.
#[utoipa::path(post, path = "/journeys/simulate", tag = "journeys",
    params(("from" = String, Query, description = "the start: 2026-11-01 or a timestamp"),
           ("to" = String, Query, description = "the end")),
    security(("bearer" = [])),
    responses((status = 200, description = "what the journey would have done", body = Answer), Refusals))]
async fn simulate(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<SimulateQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let instant = |v: Option<&str>, name: &str| {
        let v = v.unwrap_or_default();
        parcours_core::time::parse_date_or_timestamp(v).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_simulation",
                format!("`{name}` must be a date (2026-11-01) or a timestamp, got `{v}`"),
            )
        })
    };
    let from = instant(q.from.as_deref(), "from")?;
    let to = instant(q.to.as_deref(), "to")?;
    let text = document(&headers, &body)?;
    let (st, actor) = (store(&state), caller.actor());
    let sim = blocking(move || {
        Ok(journeys::simulate(
            st.as_ref(),
            &actor,
            &text,
            from,
            to,
            &mut |_| {},
        )?)
    })
    .await?;
    Ok(Json(json!(sim)))
}

/// A message step rendered for one customer, as it would go now (her traits, computed
/// traits, the entry properties given), on its channel or one of its fallbacks: nothing is
/// sent or stored. `422 render_failed` names the part that does not render.
#[utoipa::path(post, path = "/journeys/{id}/preview", tag = "journeys", request_body = Answer,
    params(("id" = String, Path, description = "the journey id")),
    security(("bearer" = [])),
    responses((status = 200, description = "the message as she would get it", body = Answer), Refusals))]
async fn preview(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Option<Json<Value>>,
) -> Result<Json<Value>, ApiError> {
    caller.require_personal_data()?;
    let Some(Json(body)) = body else {
        return Err(ApiError::bad_request(
            "invalid_preview",
            "send the preview request as a JSON object",
        ));
    };
    let (st, actor, now) = (store(&state), caller.actor(), state.engine.now());
    let shown =
        blocking(move || Ok(journeys::preview(st.as_ref(), &actor, &id, &body, now)?)).await?;
    Ok(Json(json!(shown)))
}

/// Enters a customer into a journey whose entry is `api: true`: `{"identifier": {"type":
/// "email", "value": "…"}, "properties": {…}, "message_id": "…"}`. Answers `202` once the
/// entry is in the log; the journey decides it like any entry (the explain API says what it
/// decided). The same `message_id` twice is one entry.
#[utoipa::path(post, path = "/journeys/{id}/entries", tag = "journeys", request_body = Answer,
    params(("id" = String, Path, description = "the journey id")),
    security(("bearer" = [])),
    responses((status = 202, description = "the entry is recorded", body = Answer), Refusals))]
async fn enter(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Option<Json<Value>>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Some(Json(body)) = body else {
        return Err(ApiError::bad_request(
            "invalid_entry",
            "send the entry as a JSON object",
        ));
    };
    let (st, actor, now) = (store(&state), caller.actor(), state.engine.now());
    let journey = id.clone();
    let asked = blocking(move || {
        Ok(journeys::request_entry(
            st.as_ref(),
            &actor,
            &journey,
            &body,
            now,
        )?)
    })
    .await?;
    let (message_id, profile_id) = (asked.message_id.clone(), asked.profile_id.clone());
    state.engine.ingest(asked.batch).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"journey": id, "message_id": message_id, "profile_id": profile_id})),
    ))
}

/// Did it work? A journey's runs (entered, waiting, converted, exited, completed), the
/// decisions taken at each step (sent, deferred, skipped and why), and each variant against
/// the holdout: conversion rates, uplift, incremental conversions and a two-proportion z-test.
#[utoipa::path(get, path = "/journeys/{id}/report", tag = "journeys",
    params(("id" = String, Path, description = "the journey id")),
    security(("bearer" = [])),
    responses((status = 200, description = "the report", body = Answer), Refusals))]
async fn report(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    use parcours_core::journey::report::compare;
    let (st, actor) = (store(&state), caller.actor());
    let journey = id.clone();
    let (stats, receipts) = blocking(move || {
        journeys::get(st.as_ref(), &actor, &journey, None)?;
        Ok((
            st.journey_stats(&actor.workspace, &journey)?,
            st.receipt_counts(&actor.workspace, &journey)?,
        ))
    })
    .await?;
    // Which group a run is in: treated (`Some(false)`), the journey's holdout (`Some(true)`);
    // the global control group's runs are summed apart.
    let sum = |f: fn(&parcours_store::GroupStats) -> u64, holdout: Option<bool>| -> u64 {
        stats
            .groups
            .iter()
            .filter(|g| holdout.is_none_or(|h| g.holdout == h && !g.global_control))
            .map(f)
            .sum()
    };
    let global_sum = |f: fn(&parcours_store::GroupStats) -> u64| -> u64 {
        stats
            .groups
            .iter()
            .filter(|g| g.global_control)
            .map(f)
            .sum()
    };
    let mut steps: Vec<Value> = Vec::new();
    // Decisions at each step (`sent`, `deferred_cap` …), then what became of the messages
    // it sent (`delivered`, `opened`, `clicked`, `bounced` …, each message counted once).
    let decided = stats
        .decisions
        .iter()
        .filter_map(|(step, code, n)| Some((step.as_ref()?, code, *n)));
    let received = receipts.iter().map(|(step, kind, n)| (step, kind, *n));
    let mut totals = serde_json::Map::new();
    for (step, code, n) in decided.chain(received.clone()) {
        match steps.iter_mut().find(|s| s["step"] == step.as_str()) {
            Some(s) => s[code.as_str()] = json!(n),
            None => {
                let mut s = json!({"step": step});
                s[code.as_str()] = json!(n);
                steps.push(s);
            }
        }
    }
    let control = (
        sum(|g| g.converted, Some(true)),
        sum(|g| g.entered, Some(true)),
    );
    let rate = |(c, n): (u64, u64)| {
        if n == 0 {
            Value::Null
        } else {
            json!(c as f64 / n as f64)
        }
    };
    let global = (global_sum(|g| g.converted), global_sum(|g| g.entered));
    let mut groups = vec![
        json!({"group": "holdout", "entered": control.1, "converted": control.0,
        "rate": rate(control)}),
    ];
    if global.1 > 0 {
        groups.push(json!({"group": "global control", "entered": global.1,
            "converted": global.0, "rate": rate(global)}));
    }
    let mut variants: Vec<Option<String>> = stats
        .groups
        .iter()
        .filter(|g| !g.holdout)
        .map(|g| g.variant.clone())
        .collect();
    variants.dedup();
    for v in variants {
        let (c, n) = stats
            .groups
            .iter()
            .filter(|g| !g.holdout && g.variant == v)
            .fold((0, 0), |(c, n), g| (c + g.converted, n + g.entered));
        groups.push(json!({
            "group": v.as_deref().map_or("treatment".to_string(), |v| format!("variant {v}")),
            "variant": v,
            "entered": n,
            "converted": c,
            "rate": rate((c, n)),
            "against_holdout": compare(control, (c, n)),
            "against_global_control": compare(global, (c, n)),
        }));
    }
    let treatment = (
        sum(|g| g.converted, Some(false)),
        sum(|g| g.entered, Some(false)),
    );
    let sent: u64 = stats
        .decisions
        .iter()
        .filter(|(_, code, _)| code == "sent")
        .map(|(_, _, n)| n)
        .sum();
    totals.insert("sent".into(), json!(sent));
    for (_, kind, n) in received {
        let was = totals
            .get(kind.as_str())
            .and_then(Value::as_u64)
            .unwrap_or(0);
        totals.insert(kind.clone(), json!(was + n));
    }
    for kind in [
        "delivered",
        "opened",
        "clicked",
        "bounced",
        "complained",
        "failed",
    ] {
        totals.entry(kind).or_insert(json!(0));
    }
    Ok(Json(json!({
        "journey": id,
        "messages": totals,
        "entered": sum(|g| g.entered, None),
        "waiting": sum(|g| g.active, None),
        "converted": sum(|g| g.converted, None),
        "exited": sum(|g| g.exited, None),
        "completed": sum(|g| g.completed, None),
        "steps": steps,
        "groups": groups,
        "treatment_against_holdout": compare(control, treatment),
        "treatment_against_global_control": compare(global, treatment),
    })))
}

/// The workspace's contact policy: frequency caps (per channel or for all, over a rolling
/// window or her calendar day), quiet hours for every journey, and how long a message held
/// back by a cap may wait.
#[utoipa::path(get, path = "/workspace/contact-policy", tag = "journeys", security(("bearer" = [])),
    responses((status = 200, description = "the policy", body = Answer), Refusals))]
async fn get_policy(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let (st, actor) = (store(&state), caller.actor());
    Ok(Json(
        blocking(move || Ok(journeys::policy(st.as_ref(), &actor)?)).await?,
    ))
}

/// Sets the contact policy (admin).
#[utoipa::path(put, path = "/workspace/contact-policy", tag = "journeys", request_body = Answer, security(("bearer" = [])),
    responses((status = 200, description = "the policy", body = Answer), Refusals))]
async fn put_policy(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: Option<Json<Value>>,
) -> Result<Json<Value>, ApiError> {
    let Some(Json(doc)) = body else {
        return Err(ApiError::bad_request(
            "invalid_contact_policy",
            "send the policy as a JSON object",
        ));
    };
    let (st, actor, now) = (store(&state), caller.actor(), state.engine.now());
    Ok(Json(
        blocking(move || Ok(journeys::set_policy(st.as_ref(), &actor, &doc, now)?)).await?,
    ))
}

fn version_json(v: &JourneyVersion) -> Value {
    json!({
        "version": v.version,
        "status": v.status,
        "in_flight": v.in_flight,
        "created_at": format_timestamp(v.created_at),
    })
}

fn journey_json(v: &JourneyVersion) -> Value {
    json!({
        "id": v.journey_id,
        "name": v.doc.get("name"),
        "status": v.status,
        "priority": v.doc.get("priority"),
        "version": v.version,
        "updated_at": format_timestamp(v.created_at),
    })
}

fn saved_json(s: &Saved) -> Value {
    json!({
        "id": s.journey.id,
        "version": s.version.as_ref().map(|v| v.version),
        "status": s.journey.status.as_str(),
        "changed": s.changed,
        "changes": s.changes,
        "diff": s.diff,
        "journey": s.journey,
    })
}

/// The document's text: YAML, JSON or plain text, in UTF-8.
fn document(headers: &HeaderMap, body: &Bytes) -> Result<String, ApiError> {
    let kind = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    let accepted = [
        "application/yaml",
        "application/x-yaml",
        "text/yaml",
        "text/x-yaml",
        "application/json",
        "text/plain",
    ];
    if let Some(kind) = &kind {
        if !accepted.contains(&kind.as_str()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("send the journey as application/yaml or application/json, not {kind}"),
            ));
        }
    }
    String::from_utf8(body.to_vec()).map_err(|_| {
        ApiError::bad_request("invalid_journey_syntax", "the document is not UTF-8 text")
    })
}

#[derive(Deserialize)]
struct PutQuery {
    /// Only say what saving would change.
    #[serde(default)]
    dry_run: bool,
}

/// Save a journey document (YAML or JSON) as its next version; `?dry_run=true` only says
/// what it would change, for runs in flight too. The same document as the latest version
/// stores nothing (`changed: false`).
#[utoipa::path(put, path = "/journeys/{id}", tag = "journeys",
    params(("id" = String, Path, description = "the journey id (the document's `id`)"),
           ("dry_run" = Option<bool>, Query, description = "only say what would change")),
    request_body(content = String, content_type = "application/yaml", description = "the journey document, YAML or JSON (docs/journeys.md)"),
    security(("bearer" = [])),
    responses((status = 201, description = "a new journey", body = Answer), (status = 200, description = "a new version, unchanged, or a dry run", body = Answer), Refusals))]
async fn put(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<PutQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let text = document(&headers, &body)?;
    let (st, actor, now) = (store(&state), caller.actor(), state.engine.now());
    let saved = blocking(move || {
        Ok(if q.dry_run {
            actor.require_editor()?;
            journeys::plan(st.as_ref(), &actor, &id, &text)?
        } else {
            journeys::save(st.as_ref(), &actor, &id, &text, now)?
        })
    })
    .await?;
    let created = saved.changed && saved.version.as_ref().is_some_and(|v| v.version == 1);
    let status = if created && !q.dry_run {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(saved_json(&saved))))
}

#[derive(Deserialize)]
struct ShowQuery {
    /// A past version (the latest when absent).
    version: Option<u32>,
}

/// A journey: its document as written (the latest version, or `?version=N`), what it reads
/// as, and every version.
#[utoipa::path(get, path = "/journeys/{id}", tag = "journeys",
    params(("id" = String, Path, description = "the journey id"),
           ("version" = Option<u32>, Query, description = "a past version")),
    security(("bearer" = [])),
    responses((status = 200, description = "the journey", body = Answer), Refusals))]
async fn show(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<ShowQuery>,
) -> Result<Json<Value>, ApiError> {
    let (st, actor) = (store(&state), caller.actor());
    let (chosen, versions, counts) = blocking(move || {
        let (chosen, versions) = journeys::get(st.as_ref(), &actor, &id, q.version)?;
        let counts = st.run_counts(&actor.workspace, &id)?;
        Ok((chosen, versions, counts))
    })
    .await?;
    let mut out = journey_json(&chosen);
    out["document"] = json!(chosen.source);
    out["journey"] = chosen.doc.clone();
    out["latest_version"] = json!(versions.first().map(|v| v.version));
    out["versions"] = versions.iter().map(version_json).collect();
    out["runs"] = json!({
        "active": counts.active,
        "ended": counts.ended,
        "waiting": counts.waiting.iter().map(|(step, n)| json!({"step": step, "runs": n})).collect::<Vec<_>>(),
    });
    Ok(Json(out))
}

/// The workspace's journeys, each at its latest version.
#[utoipa::path(get, path = "/journeys", tag = "journeys", security(("bearer" = [])),
    responses((status = 200, description = "the journeys", body = Answer), Refusals))]
async fn list(State(state): State<Arc<AppState>>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let (st, actor) = (store(&state), caller.actor());
    let all = blocking(move || Ok(journeys::list(st.as_ref(), &actor)?)).await?;
    Ok(Json(json!({
        "journeys": all.iter().map(journey_json).collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize)]
struct RunsQuery {
    /// Only this journey's runs.
    journey: Option<String>,
    /// At most this many runs (default 50, at most 1,000).
    limit: Option<usize>,
}

/// A customer's journeys: each run with where it is and every decision with its reason, in
/// order (why she did, or did not, get a message).
#[utoipa::path(get, path = "/profiles/{id}/journeys", tag = "journeys",
    params(("id" = String, Path, description = "the profile id"),
           ("journey" = Option<String>, Query, description = "only this journey"),
           ("limit" = Option<usize>, Query, description = "at most this many runs (default 50)")),
    security(("bearer" = [])),
    responses((status = 200, description = "her runs", body = Answer), Refusals))]
async fn profile_journeys(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<RunsQuery>,
) -> Result<Json<Value>, ApiError> {
    let (st, actor) = (store(&state), caller.actor());
    let runs = blocking(move || {
        Ok(journeys::runs_of(
            st.as_ref(),
            &actor,
            &id,
            q.journey.as_deref(),
            q.limit.unwrap_or(50),
        )?)
    })
    .await?;
    let runs: Vec<Value> = runs
        .into_iter()
        .map(|(run, notes)| {
            json!({
                "run_id": run.run_id,
                "journey": run.journey_id,
                "version": run.version,
                "key": run.key,
                "active": run.active,
                "outcome": run.outcome,
                "entered_at": format_timestamp(run.entered_at),
                "ended_at": run.ended_at.map(format_timestamp),
                "state": run.state.get("state"),
                "variant": run.state.get("variant"),
                "holdout": run.state.get("holdout"),
                "decisions": notes.iter().map(|n| json!({
                    "at": format_timestamp(n.at),
                    "step": n.step,
                    "code": n.code,
                    "reason": n.detail,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Json(json!({ "runs": runs })))
}

#[derive(Deserialize)]
struct MessagesQuery {
    /// `email`, `sms` or `push`.
    channel: String,
    /// Only messages older than this one (paging).
    before: Option<i64>,
    /// At most this many (default 50, at most 500).
    limit: Option<usize>,
}

/// The messages journeys sent on a channel, newest first, as the customer received them (or,
/// on the capture channel, would have), with their delivery state.
#[utoipa::path(get, path = "/messages", tag = "journeys",
    params(("channel" = String, Query, description = "email, sms or push"),
           ("before" = Option<i64>, Query, description = "only messages older than this id"),
           ("limit" = Option<usize>, Query, description = "at most this many (default 50)")),
    security(("bearer" = [])),
    responses((status = 200, description = "the messages", body = Answer), Refusals))]
async fn messages(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<MessagesQuery>,
) -> Result<Json<Value>, ApiError> {
    caller.require_personal_data()?;
    let Some(channel) = parcours_core::journey::MessageChannel::parse(&q.channel) else {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            "channel must be email, sms or push",
        ));
    };
    let (st, ws) = (store(&state), caller.actor().workspace);
    let lane = parcours_engine::journeys::destination(channel);
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let rows = blocking(move || {
        Ok(st.outbox_rows(&parcours_store::OutboxPage {
            workspace_id: &ws,
            destination: &lane,
            state: None,
            before_id: q.before,
            limit,
        })?)
    })
    .await?;
    let out: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "key": r.key,
                "state": r.state,
                "attempts": r.attempts,
                "last_error": r.last_error,
                "created_at": format_timestamp(r.created_at),
                "settled_at": r.settled_at.map(format_timestamp),
                "message": crate::messages::shown(&r.payload),
            })
        })
        .collect();
    Ok(Json(json!({ "messages": out })))
}
