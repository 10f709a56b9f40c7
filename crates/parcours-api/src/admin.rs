//! The admin API under `/api/v1`: profiles, identity, quarantine, workspaces, sources, tokens.
//! Every call is scoped to the workspace of its bearer token.

use parcours_service::quarantine;
use parcours_service::{dashboard, identity, sending, workspaces};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use parcours_core::rules::IdentityRulesConfig;
use parcours_core::time::format_timestamp;
use parcours_core::Profile;
use parcours_store::{QuarantineStatus, StoredEvent};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::error::{blocking, object_body, ApiError};
use crate::openapi::{
    Answer, ChannelTestBody, ChannelsAnswer, DashboardAnswer, IdentityRulesBody, ProfileAnswer,
    QuarantineAnswer, QuarantinePage, Refusals, RulesPreviewAnswer, SegmentEvent, TestSentAnswer,
    WorkspaceAnswer, WorkspaceBody,
};
use crate::AppState;

type Api = Result<Json<Value>, ApiError>;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(lookup))
        .routes(routes!(profile))
        .routes(routes!(traits))
        .routes(routes!(identifiers))
        .routes(routes!(merges))
        .routes(routes!(consent_question))
        .routes(routes!(events))
        .routes(routes!(unmerge_profile))
        .routes(routes!(merge))
        .routes(routes!(undo))
        .routes(routes!(dashboard))
        .routes(routes!(channels))
        .routes(routes!(channel_test))
        .routes(routes!(preview_rules))
        .routes(routes!(quarantine_list))
        .routes(routes!(quarantine_entry))
        .routes(routes!(quarantine_replay))
        .routes(routes!(quarantine_discard))
        .routes(routes!(workspace))
        .routes(routes!(set_rules))
        .routes(routes!(create_workspace))
        .routes(routes!(status))
}

/// Health, readiness and metrics, at the root.
pub fn operations_routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

fn store(state: &Arc<AppState>) -> Arc<dyn parcours_store::Store> {
    state.engine.store().clone()
}

fn iso(ms: i64) -> String {
    format_timestamp(ms)
}

/// A profile's consents as the API and exports show them.
pub fn consent_json(p: &Profile) -> serde_json::Map<String, Value> {
    p.consent
        .iter()
        .map(|(k, c)| {
            (
                k.clone(),
                json!({
                    "granted": c.granted, "at": iso(c.ts), "received_at": iso(c.received_at),
                    "message_id": c.message_id, "source_id": c.source_id, "channel": c.channel, "method": c.method,
                    "text_version": c.text_version,
                }),
            )
        })
        .collect()
}

/// A profile as the API shows it.
fn profile_json(p: &Profile, requested: &str) -> Value {
    let traits: serde_json::Map<String, Value> = p.trait_values();
    let consent = consent_json(p);
    let channels: serde_json::Map<String, Value> = p
        .channels
        .iter()
        .map(|(c, s)| (c.as_str().to_string(), json!({"first_seen": iso(s.first_seen), "last_seen": iso(s.last_seen), "events": s.events})))
        .collect();
    json!({
        "id": p.id,
        "requested_id": requested,
        "merged": requested != p.id,
        "traits": traits,
        "identifiers": p.identifiers,
        "consent": consent,
        "channels": channels,
        "last_channel": p.last_channel,
        "first_seen": iso(p.first.ts),
        "last_seen": iso(p.last.ts),
        "events": p.events,
        "shares_identifiers": p.entangled,
        "known": p.is_known(),
    })
}

fn event_json(e: &StoredEvent) -> Value {
    let mut v = e.to_json();
    v["seq"] = json!(e.seq);
    v
}

async fn load_profile(state: &Arc<AppState>, ws: String, id: String) -> Result<Profile, ApiError> {
    let st = store(state);
    blocking(move || {
        st.profile(&ws, &id)?
            .ok_or_else(|| ApiError::not_found(format!("profile {id}")))
    })
    .await
}

/// Profile by id (merged ids resolve to the profile that holds them).
#[utoipa::path(get, path = "/profiles/{id}", tag = "profiles", params(("id" = String, Path, description = "a profile id (a merged id resolves to the profile that holds it)")), security(("bearer" = [])), responses((status = 200, description = "success", body = ProfileAnswer), Refusals))]
async fn profile(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Api {
    caller.require_personal_data()?;
    let p = load_profile(&state, caller.workspace().to_string(), id.clone()).await?;
    Ok(Json(profile_json(&p, &id)))
}

#[derive(Deserialize)]
struct LookupQuery {
    #[serde(rename = "type")]
    kind: Option<String>,
    value: Option<String>,
}

/// Profile by identifier.
#[utoipa::path(get, path = "/profiles/lookup", tag = "profiles", params(("type" = String, Query, description = "email, phone, user_id, anonymous_id, device_id, …"), ("value" = String, Query, description = "the identifier, normalised like ingested values")), security(("bearer" = [])), responses((status = 200, description = "success", body = ProfileAnswer), Refusals))]
async fn lookup(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<LookupQuery>,
) -> Api {
    caller.require_personal_data()?;
    let (Some(kind), Some(value)) = (q.kind, q.value) else {
        return Err(ApiError::bad_request(
            "missing_parameter",
            "give `type` and `value`, e.g. ?type=email&value=a@example.com",
        ));
    };
    let (ws, st) = (caller.workspace().to_string(), store(&state));
    let shown = format!("{kind}:{value}");
    let pid = blocking(move || {
        Ok(parcours_service::identity::find(
            st.as_ref(),
            &ws,
            &kind,
            &value,
        )?)
    })
    .await?
    .ok_or_else(|| ApiError::not_found(format!("identifier {shown}")))?;
    let p = load_profile(&state, caller.workspace().to_string(), pid.clone()).await?;
    Ok(Json(profile_json(&p, &pid)))
}

/// Traits with the event that set each.
#[utoipa::path(get, path = "/profiles/{id}/traits", tag = "profiles", params(("id" = String, Path, description = "a profile id (a merged id resolves to the profile that holds it)")), security(("bearer" = [])), responses((status = 200, description = "success", body = crate::openapi::ProfileTraits), Refusals))]
async fn traits(State(state): State<Arc<AppState>>, caller: Caller, Path(id): Path<String>) -> Api {
    caller.require_personal_data()?;
    let p = load_profile(&state, caller.workspace().to_string(), id).await?;
    let detail: serde_json::Map<String, Value> = p
        .traits
        .iter()
        .map(|(k, t)| {
            (
                k.clone(),
                json!({"value": t.value, "set_at": iso(t.ts), "message_id": t.mid}),
            )
        })
        .collect();
    Ok(Json(
        json!({"profile_id": p.id, "traits": p.trait_values(), "sources": detail}),
    ))
}

#[derive(Deserialize)]
struct ConsentQuery {
    purpose: Option<String>,
    channel: Option<String>,
}

/// Answers "may we, for this purpose (on this channel)?" as an audience or a send would:
/// the state, the record that answered (with its proof), and what unknown counts as.
#[utoipa::path(get, path = "/profiles/{id}/consent", tag = "profiles", params(("id" = String, Path, description = "a profile id (a merged id resolves to the profile that holds it)"), ("purpose" = String, Query, description = "e.g. marketing"), ("channel" = Option<String>, Query, description = "e.g. email; falls back to the purpose")), security(("bearer" = [])), responses((status = 200, description = "success", body = crate::openapi::ConsentAnswer), Refusals))]
async fn consent_question(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<ConsentQuery>,
) -> Api {
    let purpose = q
        .purpose
        .map(|p| p.trim().to_ascii_lowercase())
        .filter(|p| !p.is_empty() && !p.contains(':'))
        .ok_or_else(|| {
            ApiError::bad_request(
                "missing_parameter",
                "give `purpose` (and optionally `channel`), e.g. ?purpose=marketing&channel=email",
            )
        })?;
    let channel = q
        .channel
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty());
    let ws = caller.workspace().to_string();
    let p = load_profile(&state, ws.clone(), id).await?;
    let st = store(&state);
    let rules = blocking(move || {
        Ok(st
            .workspace(&ws)?
            .map(|w| w.identity_rules)
            .unwrap_or_default())
    })
    .await?;
    let (answer, record) = p.consent_for(&purpose, channel.as_deref());
    let unknown_granted = rules.unknown_consent == parcours_core::rules::UnknownConsent::Granted;
    let may = answer == parcours_core::profile::ConsentState::Granted
        || (answer == parcours_core::profile::ConsentState::Unknown && unknown_granted);
    Ok(Json(json!({
        "profile_id": p.id,
        "purpose": purpose,
        "channel": channel,
        "state": answer.as_str(),
        "granted": may,
        "answered_by": record.map(|(key, r)| json!({
            "key": key, "granted": r.granted, "at": iso(r.ts), "received_at": iso(r.received_at),
            "message_id": r.message_id, "source_id": r.source_id, "channel": r.channel, "method": r.method,
            "text_version": r.text_version,
        })),
        "unknown_counts_as": if unknown_granted { "granted" } else { "withdrawn" },
    })))
}

/// Identifiers with the event that linked each.
#[utoipa::path(get, path = "/profiles/{id}/identifiers", tag = "profiles", params(("id" = String, Path, description = "a profile id (a merged id resolves to the profile that holds it)")), security(("bearer" = [])), responses((status = 200, description = "success", body = crate::openapi::ProfileIdentifiers), Refusals))]
async fn identifiers(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Api {
    caller.require_personal_data()?;
    let p = load_profile(&state, caller.workspace().to_string(), id).await?;
    let (st, ws, pid) = (store(&state), caller.workspace().to_string(), p.id.clone());
    let rows = blocking(move || Ok(st.identifiers(&ws, &pid)?)).await?;
    let rows: Vec<Value> = rows
        .iter()
        .map(|r| json!({"type": r.identifier.kind, "value": r.identifier.value, "linked_by": r.linked_by, "linked_at": iso(r.linked_at)}))
        .collect();
    Ok(Json(json!({"profile_id": p.id, "identifiers": rows})))
}

/// Merge history.
#[utoipa::path(get, path = "/profiles/{id}/merges", tag = "identity", params(("id" = String, Path, description = "a profile id (a merged id resolves to the profile that holds it)")), security(("bearer" = [])), responses((status = 200, description = "success", body = crate::openapi::MergeList), Refusals))]
async fn merges(State(state): State<Arc<AppState>>, caller: Caller, Path(id): Path<String>) -> Api {
    caller.require_personal_data()?;
    let p = load_profile(&state, caller.workspace().to_string(), id).await?;
    let (st, ws, pid) = (store(&state), caller.workspace().to_string(), p.id.clone());
    let rows = blocking(move || Ok(st.merges_of(&ws, &pid)?)).await?;
    let rows: Vec<Value> = rows.iter().map(merge_json).collect();
    Ok(Json(json!({"profile_id": p.id, "merges": rows})))
}

/// One merge with its cause.
#[utoipa::path(get, path = "/merges/{id}", tag = "identity", params(("id" = i64, Path, minimum = 1, description = "the id")), security(("bearer" = [])), responses((status = 200, description = "success", body = Answer), Refusals))]
async fn merge(State(state): State<Arc<AppState>>, caller: Caller, Path(id): Path<i64>) -> Api {
    caller.require_personal_data()?;
    let (st, ws) = (store(&state), caller.workspace().to_string());
    let row = blocking(move || {
        st.merge(&ws, id)?
            .ok_or_else(|| ApiError::not_found(format!("merge {id}")))
    })
    .await?;
    Ok(Json(merge_json(&row)))
}

/// A merge as the API shows it: its cause's event time in ISO-8601 like every other time.
fn merge_json(row: &parcours_store::MergeRow) -> Value {
    let mut v = json!(row);
    v["cause"]["ts"] = json!(iso(row.merge.cause.ts));
    v
}

#[derive(Deserialize)]
struct Page {
    cursor: Option<String>,
    limit: Option<usize>,
    status: Option<String>,
}

impl Page {
    fn limit(&self) -> Result<usize, ApiError> {
        match self.limit {
            None => Ok(50),
            Some(n) if (1..=1000).contains(&n) => Ok(n),
            Some(_) => Err(ApiError::bad_request(
                "invalid_parameter",
                "`limit` must be between 1 and 1000",
            )),
        }
    }

    fn cursor(&self) -> Result<Option<i64>, ApiError> {
        self.cursor
            .as_deref()
            .map(|c| {
                c.parse::<i64>().map_err(|_| {
                    ApiError::bad_request(
                        "invalid_cursor",
                        "`cursor` is not a cursor this API returned",
                    )
                })
            })
            .transpose()
    }
}

/// Cross-channel event timeline, newest first.
#[utoipa::path(get, path = "/profiles/{id}/events", tag = "profiles", params(("id" = String, Path, description = "a profile id (a merged id resolves to the profile that holds it)"), ("cursor" = Option<String>, Query, description = "from next_cursor of the previous page"), ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "1 to 1000, default 50")), security(("bearer" = [])), responses((status = 200, description = "success", body = crate::openapi::EventsPage), Refusals))]
async fn events(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(page): Query<Page>,
) -> Api {
    caller.require_personal_data()?;
    let limit = page.limit()?;
    let before = page.cursor()?;
    let p = load_profile(&state, caller.workspace().to_string(), id).await?;
    let (st, ws, pid) = (store(&state), caller.workspace().to_string(), p.id.clone());
    let events = blocking(move || Ok(st.timeline(&ws, &pid, before, limit)?)).await?;
    let next = (events.len() == limit)
        .then(|| events.last().map(|e| e.seq.to_string()))
        .flatten();
    Ok(Json(json!({
        "profile_id": p.id,
        "events": events.iter().map(event_json).collect::<Vec<_>>(),
        "next_cursor": next,
    })))
}

async fn do_undo(state: &Arc<AppState>, caller: &Caller, merge_id: i64) -> Api {
    let (st, actor, now) = (store(state), caller.actor(), state.engine.now());
    let outcome =
        blocking(move || Ok(identity::undo_merge(st.as_ref(), &actor, merge_id, now)?)).await?;
    Ok(Json(json!(outcome)))
}

/// Undo a merge and re-derive both profiles from their events.
#[utoipa::path(post, path = "/merges/{id}/undo", tag = "identity", params(("id" = i64, Path, minimum = 1, description = "the id")), security(("bearer" = [])), responses((status = 200, description = "success", body = Answer), Refusals))]
async fn undo(State(state): State<Arc<AppState>>, caller: Caller, Path(id): Path<i64>) -> Api {
    do_undo(&state, &caller, id).await
}

#[derive(Deserialize)]
struct UnmergeBody {
    merge_id: i64,
}

/// Undo one merge of this profile.
#[utoipa::path(post, path = "/profiles/{id}/unmerge", tag = "identity", params(("id" = String, Path, description = "a profile id (a merged id resolves to the profile that holds it)")), request_body = crate::openapi::UnmergeBody, security(("bearer" = [])), responses((status = 200, description = "success", body = Answer), Refusals))]
async fn unmerge_profile(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Option<Json<Value>>,
) -> Api {
    caller.require_admin()?;
    let body: UnmergeBody = object_body(
        body,
        "give the merge to undo: {\"merge_id\": 12}",
        "invalid_json",
    )?;
    let (st, actor, now) = (store(&state), caller.actor(), state.engine.now());
    let outcome = blocking(move || {
        Ok(identity::unmerge_profile(
            st.as_ref(),
            &actor,
            &id,
            body.merge_id,
            now,
        )?)
    })
    .await?;
    Ok(Json(json!(outcome)))
}

/// The message channels of this node: what each sends through (SMTP, an HTTP provider, or
/// the capture channel), without credentials, and its rate limit.
#[utoipa::path(get, path = "/channels", tag = "journeys", security(("bearer" = [])), responses((status = 200, description = "success", body = ChannelsAnswer), Refusals))]
async fn channels(State(state): State<Arc<AppState>>, caller: Caller) -> Api {
    let senders = state.engine.senders();
    let list = sending::channels(senders, &caller.actor());
    Ok(Json(
        json!({"channels": list, "webhook_steps_signed": sending::webhooks_signed(senders)}),
    ))
}

/// What a test message is sent to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestBody {
    channel: String,
    to: String,
}

/// Sends a test message through a channel at once (admin), and answers what the provider
/// said: `test_send_failed` (422) with its refusal. It reaches no customer's history.
#[utoipa::path(post, path = "/channels/test", tag = "journeys", request_body = ChannelTestBody, security(("bearer" = [])), responses((status = 200, description = "accepted by the channel", body = TestSentAnswer), Refusals))]
async fn channel_test(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: Option<Json<Value>>,
) -> Api {
    caller.require_admin()?;
    let body: TestBody = object_body(
        body,
        "send {\"channel\": \"email\", \"to\": \"ops@shop.example\"}",
        "invalid_json",
    )?;
    let (engine, actor, now) = (state.engine.clone(), caller.actor(), state.engine.now());
    let sent = blocking(move || {
        Ok(sending::send_test(
            engine.senders(),
            &actor,
            &body.channel,
            &body.to,
            now,
        )?)
    })
    .await?;
    Ok(Json(json!(sent)))
}

/// The range of a dashboard: dates, both included.
#[derive(Debug, Deserialize)]
struct DashboardRange {
    from: Option<String>,
    to: Option<String>,
}

/// Per UTC day over a range: events per channel, profiles made and merged, audience entries
/// and exits, and messages and conversions per journey.
#[utoipa::path(get, path = "/dashboard", tag = "dashboard", params(("from" = Option<String>, Query, format = Date, description = "first day (2026-11-01); default: 29 days before `to`"), ("to" = Option<String>, Query, format = Date, description = "last day; default: today (UTC)")), security(("bearer" = [])), responses((status = 200, description = "success", body = DashboardAnswer), Refusals))]
async fn dashboard(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(range): Query<DashboardRange>,
) -> Api {
    let (st, actor, now) = (store(&state), caller.actor(), state.engine.now());
    let answer = blocking(move || {
        let range = dashboard::DayRange::parse(range.from.as_deref(), range.to.as_deref(), now)?;
        Ok(dashboard::dashboard(st.as_ref(), &actor, range)?)
    })
    .await?;
    Ok(Json(json!(answer)))
}

/// Quarantined events.
#[utoipa::path(get, path = "/quarantine", tag = "quarantine", params(("cursor" = Option<String>, Query, description = "from next_cursor of the previous page"), ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "1 to 1000, default 50"), ("status" = Option<String>, Query, pattern = "^(pending|replayed|discarded|all)$", description = "pending, replayed, discarded, or all (default)")), security(("bearer" = [])), responses((status = 200, description = "success", body = QuarantinePage), Refusals))]
async fn quarantine_list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(page): Query<Page>,
) -> Api {
    let limit = page.limit()?;
    let after = page.cursor()?.unwrap_or(0);
    let status = match page.status.as_deref() {
        None | Some("all") => None,
        Some(s) => Some(QuarantineStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_parameter",
                "`status` is one of pending, replayed, discarded, all",
            )
        })?),
    };
    let (st, actor) = (store(&state), caller.actor());
    let entries =
        blocking(move || Ok(quarantine::page(st.as_ref(), &actor, status, after, limit)?)).await?;
    let next = (entries.len() == limit)
        .then(|| entries.last().map(|e| e.id.to_string()))
        .flatten();
    Ok(Json(json!({"events": entries, "next_cursor": next})))
}

/// One quarantined event.
#[utoipa::path(get, path = "/quarantine/{id}", tag = "quarantine", params(("id" = i64, Path, minimum = 1, description = "the id")), security(("bearer" = [])), responses((status = 200, description = "success", body = QuarantineAnswer), Refusals))]
async fn quarantine_entry(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Api {
    let (st, actor) = (store(&state), caller.actor());
    let entry = blocking(move || Ok(quarantine::entry(st.as_ref(), &actor, id)?)).await?;
    Ok(Json(json!(entry)))
}

/// Replays a quarantined event, as it was or with a corrected body. It is validated again;
/// if it still breaks the spec it stays in quarantine and the reason comes back.
#[utoipa::path(post, path = "/quarantine/{id}/replay", tag = "quarantine", params(("id" = i64, Path, minimum = 1, description = "the id")), request_body(content = Option<SegmentEvent>, description = "optional"), security(("bearer" = [])), responses((status = 200, description = "success", body = Answer), Refusals))]
async fn quarantine_replay(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<i64>,
    body: axum::body::Bytes,
) -> Api {
    let corrected = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(
            std::str::from_utf8(&body)
                .map_err(|_| {
                    ApiError::bad_request("invalid_json", "the corrected event is not UTF-8")
                })?
                .to_string(),
        )
    };
    let (st, actor, now) = (store(&state), caller.actor(), state.engine.now());
    let outcome = blocking(move || {
        Ok(quarantine::replay(
            st.as_ref(),
            &actor,
            id,
            corrected.as_deref(),
            now,
        )?)
    })
    .await?;
    Ok(Json(
        json!({"id": id, "status": "replayed", "outcome": outcome}),
    ))
}

/// Discard it.
#[utoipa::path(post, path = "/quarantine/{id}/discard", tag = "quarantine", params(("id" = i64, Path, minimum = 1, description = "the id")), security(("bearer" = [])), responses((status = 200, description = "success", body = Answer), Refusals))]
async fn quarantine_discard(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Api {
    let (st, actor, now) = (store(&state), caller.actor(), state.engine.now());
    blocking(move || Ok(quarantine::discard(st.as_ref(), &actor, id, now)?)).await?;
    Ok(Json(json!({"id": id, "status": "discarded"})))
}

/// The token's workspace.
#[utoipa::path(get, path = "/workspace", tag = "workspaces", security(("bearer" = [])), responses((status = 200, description = "success", body = WorkspaceAnswer), Refusals))]
async fn workspace(State(state): State<Arc<AppState>>, caller: Caller) -> Api {
    let (st, ws) = (store(&state), caller.workspace().to_string());
    let w = blocking(move || {
        st.workspace(&ws)?
            .ok_or_else(|| ApiError::not_found("workspace"))
    })
    .await?;
    Ok(Json(json!(w)))
}

/// Identity rules sent by an admin.
fn rules_body(caller: &Caller, body: Option<Json<Value>>) -> Result<IdentityRulesConfig, ApiError> {
    caller.require_admin()?;
    object_body(
        body,
        "send the identity rules as a JSON object",
        "invalid_identity_rules",
    )
}

/// What identity rules would change, on the workspace's latest events (about 20,000), folded
/// in memory under the rules in force and under these: nothing is saved (admin).
#[utoipa::path(post, path = "/workspace/identity-rules/preview", tag = "workspaces", request_body = IdentityRulesBody, security(("bearer" = [])), responses((status = 200, description = "success", body = RulesPreviewAnswer), Refusals))]
async fn preview_rules(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: Option<Json<Value>>,
) -> Api {
    let config = rules_body(&caller, body)?;
    let (st, actor) = (store(&state), caller.actor());
    let preview = blocking(move || {
        Ok(identity::preview_identity_rules(
            st.as_ref(),
            &actor,
            &config,
        )?)
    })
    .await?;
    Ok(Json(json!(preview)))
}

/// Replace the identity rules.
#[utoipa::path(put, path = "/workspace/identity-rules", tag = "workspaces", request_body = IdentityRulesBody, security(("bearer" = [])), responses((status = 200, description = "success", body = Answer), Refusals))]
async fn set_rules(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: Option<Json<Value>>,
) -> Api {
    let config = rules_body(&caller, body)?;
    let (st, actor, now) = (store(&state), caller.actor(), state.engine.now());
    let saved = config.clone();
    blocking(move || {
        Ok(identity::set_identity_rules(
            st.as_ref(),
            &actor,
            &saved,
            now,
        )?)
    })
    .await?;
    Ok(Json(
        json!({"identity_rules": config, "note": "rules apply to new events; run `parcours replay` to apply them to the past"}),
    ))
}

#[derive(Deserialize)]
struct NewWorkspace {
    name: String,
}

/// Create a workspace (instance admin token); its write key and admin token are answered once.
#[utoipa::path(post, path = "/workspaces", tag = "workspaces", request_body = WorkspaceBody, security(("bearer" = [])), responses((status = 201, description = "created", body = Answer), Refusals))]
async fn create_workspace(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: Option<Json<Value>>,
) -> impl IntoResponse {
    let result: Api = async {
        parcours_service::workspaces::require_instance_admin(&caller.actor())?;
        let body: NewWorkspace = object_body(body, "send {\"name\": \"…\"}", "invalid_json")?;
        let (st, actor, now) = (store(&state), caller.actor(), state.engine.now());
        let created = blocking(move || {
            Ok(workspaces::create_workspace(
                st.as_ref(),
                &actor,
                &body.name,
                now,
            )?)
        })
        .await?;
        Ok(Json(json!(created)))
    }
    .await;
    result.map(|j| (StatusCode::CREATED, j))
}

/// Event and profile counts, unify lag, buckets this node holds, and how each processor is doing.
#[utoipa::path(get, path = "/status", tag = "operations", security(("bearer" = [])), responses((status = 200, description = "success", body = crate::openapi::StatusAnswer), Refusals))]
async fn status(State(state): State<Arc<AppState>>, caller: Caller) -> Api {
    let (st, ws) = (store(&state), caller.workspace().to_string());
    let state = state.clone();
    blocking(move || {
        let engine = &state.engine;
        let (processors, _) = processors(&state)?;
        Ok(Json(json!({
            "events": st.event_count(&ws)?,
            "profiles": st.profile_count(&ws)?,
            "unify_lag_events": engine.unify_lag()?,
            // On PostgreSQL: how many of the 256 buckets this node applies (null when the node
            // applies every bucket on its own, on the embedded store).
            "buckets_held": engine.held_buckets().map(|b| b.len()),
            "processors": processors,
        })))
    })
    .await
}

/// This node's processors (`state` ok, failing or lagging, with their health), and the first
/// reason the node is not ready, if any. Runs on the blocking pool (it reads the store).
fn processors(state: &AppState) -> Result<(Value, Option<ApiError>), ApiError> {
    let engine = &state.engine;
    let now = engine.now();
    let grace = state.config.failing_after.as_millis() as i64;
    let lags = [
        ("unify", engine.unify_lag()?),
        ("audiences", engine.audience_lag()?),
    ];
    let mut out = serde_json::Map::new();
    let mut problem = None;
    for (name, h) in engine.health().snapshot() {
        let lag = lags.iter().find(|(n, _)| *n == name).map(|(_, l)| *l);
        let failing = h.failing_since.is_some_and(|since| now - since >= grace);
        let lagging = !h.standby
            && state.config.max_lag_events > 0
            && lag.is_some_and(|l| l > state.config.max_lag_events);
        let status = if h.standby {
            "standby"
        } else if failing {
            "failing"
        } else if lagging {
            "lagging"
        } else {
            "ok"
        };
        let unready = failing || (lagging && state.config.unready_when_lagging);
        if problem.is_none() && unready {
            let (code, message) = if failing {
                (
                    "processor_failing",
                    format!(
                        "the {name} processor has failed for {} s: {}",
                        (now - h.failing_since.unwrap_or(now)) / 1000,
                        h.last_error.as_deref().unwrap_or("unknown error")
                    ),
                )
            } else {
                (
                    "processor_lagging",
                    format!(
                        "the {name} processor is {} events behind (limit {})",
                        lag.unwrap_or_default(),
                        state.config.max_lag_events
                    ),
                )
            };
            problem = Some(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                code,
                message,
            ));
        }
        out.insert(
            name.to_string(),
            json!({
                "state": status,
                "failures": h.failures,
                "failing_since": h.failing_since.map(iso),
                "last_error": h.last_error,
                "last_success_at": h.last_success_at.map(iso),
                "set_aside": h.set_aside,
                "lag_events": lag,
                // What this node did: in a cluster, how the work spreads over the nodes.
                "items": h.items,
            }),
        );
    }
    Ok((Value::Object(out), problem))
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "alive", body = Answer), Refusals))]
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: the store answers and no processor has been failing or lagging beyond its
/// limit (503 says which).
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "ready", body = Answer), Refusals))]
pub async fn readyz(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    if !state.ready.load(Ordering::SeqCst) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "this node is starting or shutting down",
        ));
    }
    let state = state.clone();
    blocking(move || {
        state.engine.store().last_seq()?;
        let (processors, problem) = processors(&state)?;
        match problem {
            Some(e) => Err(e),
            None => Ok(Json(json!({"status": "ready", "processors": processors}))),
        }
    })
    .await
}

/// Prometheus metrics (a bearer token when `metrics.require_token`).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "the metrics", content_type = "text/plain", body = String), Refusals))]
pub async fn metrics(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    if state.config.metrics_require_token {
        crate::auth::authorize_metrics(&state, &headers).await?;
    }
    if let Ok(lag) = state.engine.unify_lag() {
        metrics::gauge!("parcours_unify_lag_events").set(lag as f64);
    }
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    ))
}
