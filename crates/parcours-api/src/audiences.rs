//! The audience API: audiences and computed traits (create, replace, delete, list), size and
//! members, a profile's memberships with their history, explain, and exports (CSV, NDJSON,
//! Google Customer Match and Meta Custom Audiences lists).

use parcours_service::definitions::{self, AudienceInput};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use parcours_core::computed::ComputedTrait;
use parcours_core::time::format_timestamp;
use parcours_core::Profile;
use parcours_engine::definitions::{AudienceDoc, DefinitionError};
use parcours_store::{Definition, DefinitionKind, Store};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::error::{blocking, ApiError};
use crate::openapi::{Answer, Refusals, TraitBody};
use crate::AppState;

type Api = Result<Json<Value>, ApiError>;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, replace, remove))
        .routes(routes!(members))
        .routes(routes!(export))
        .routes(routes!(explain))
        .routes(routes!(list_traits, create_trait))
        .routes(routes!(show_trait, replace_trait, remove_trait))
        .routes(routes!(profile_audiences))
        .routes(routes!(profile_traits))
}

pub(crate) fn store(state: &Arc<AppState>) -> Arc<dyn Store> {
    state.engine.store().clone()
}

impl From<DefinitionError> for ApiError {
    fn from(e: DefinitionError) -> Self {
        match e {
            DefinitionError::Invalid { code, message } => ApiError::bad_request(code, message),
            DefinitionError::Store(s) => s.into(),
        }
    }
}

/// A definition's computation: `ready`, `computing`, or `unreadable` (stored before
/// definitions were checked against every reader's limits: it is not evaluated; delete it).
fn progress(d: &Definition, readable: bool) -> Value {
    let status = if !readable {
        "unreadable"
    } else if d.computed_version >= d.version {
        "ready"
    } else {
        "computing"
    };
    json!({
        "status": status,
        "done": d.done,
        "total": d.total,
    })
}

fn audience_json(d: &Definition, size: u64) -> Value {
    let doc: Option<AudienceDoc> = serde_json::from_value(d.doc.clone()).ok();
    json!({
        "id": d.id,
        "name": doc.as_ref().map(|a| a.name.clone()),
        "description": doc.as_ref().map(|a| a.description.clone()),
        "definition": doc.as_ref().map(|a| a.condition.to_string()),
        "condition": doc.as_ref().map(|a| &a.condition),
        "version": d.version,
        "size": size,
        "computation": progress(d, doc.is_some()),
        "created_at": format_timestamp(d.created_at),
        "updated_at": format_timestamp(d.updated_at),
    })
}

fn trait_json(d: &Definition) -> Value {
    let readable = serde_json::from_value::<ComputedTrait>(d.doc.clone()).is_ok();
    json!({
        "id": d.id,
        "definition": d.doc,
        "version": d.version,
        "computation": progress(d, readable),
        "created_at": format_timestamp(d.created_at),
        "updated_at": format_timestamp(d.updated_at),
    })
}

pub(crate) fn find(
    st: &dyn Store,
    ws: &str,
    kind: DefinitionKind,
    id: &str,
) -> Result<Definition, ApiError> {
    st.definitions(Some(ws))?
        .into_iter()
        .find(|d| d.kind == kind && d.id == id)
        .ok_or_else(|| {
            let what = match kind {
                DefinitionKind::Audience => "audience",
                DefinitionKind::ComputedTrait => "computed trait",
                DefinitionKind::Destination => "destination",
            };
            ApiError::not_found(format!("{what} {id}"))
        })
}

/// The body of a create or replace: the condition as text (`definition`) or as a JSON tree
/// (`condition`), not both.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AudienceBody {
    id: Option<String>,
    name: String,
    #[serde(default)]
    description: String,
    definition: Option<String>,
    condition: Option<Value>,
}

/// A definition's body: `what` names it in the message, `code` is the error for a body of
/// the wrong shape.
pub(crate) fn definition_body<T: serde::de::DeserializeOwned>(
    body: Option<Json<Value>>,
    what: &str,
    code: &'static str,
) -> Result<T, ApiError> {
    crate::error::object_body(body, &format!("send the {what} as a JSON object"), code)
}

/// A replace names its id in the path; a body that names another one is refused.
pub(crate) fn same_id(path: &str, body: Option<&str>, code: &'static str) -> Result<(), ApiError> {
    match body {
        Some(b) if b != path => Err(ApiError::bad_request(
            code,
            "the `id` in the body differs from the one in the path",
        )),
        _ => Ok(()),
    }
}

fn read_body(body: Option<Json<Value>>) -> Result<AudienceBody, ApiError> {
    definition_body(body, "audience", "invalid_audience")
}

fn input_of(body: AudienceBody) -> AudienceInput {
    AudienceInput {
        name: body.name,
        description: body.description,
        definition: body.definition,
        condition: body.condition,
    }
}

/// Create an audience; it is computed over the whole history, then kept up to date.
#[utoipa::path(post, path = "/audiences", tag = "audiences", request_body = crate::openapi::AudienceBody, security(("bearer" = [])), responses((status = 201, description = "created", body = crate::openapi::AudienceAnswer), Refusals))]
async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: Option<Json<Value>>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require_editor()?;
    let body = read_body(body)?;
    let Some(id) = body.id.clone() else {
        return Err(ApiError::bad_request(
            "invalid_audience",
            "`id` is required",
        ));
    };
    let (st, actor, now) = (store(&state), caller.actor(), state.engine.now());
    let d = blocking(move || {
        Ok(definitions::create_audience(
            st.as_ref(),
            &actor,
            &id,
            input_of(body),
            now,
        )?)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(audience_json(&d, 0))))
}

/// Replace an audience (recomputed).
#[utoipa::path(put, path = "/audiences/{id}", tag = "audiences", params(("id" = String, Path, description = "the id")), request_body = crate::openapi::AudienceBody, security(("bearer" = [])), responses((status = 200, description = "success", body = crate::openapi::AudienceAnswer), Refusals))]
async fn replace(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Option<Json<Value>>,
) -> Api {
    caller.require_editor()?;
    let body = read_body(body)?;
    same_id(&id, body.id.as_deref(), "invalid_audience")?;
    let (st, actor, now) = (store(&state), caller.actor(), state.engine.now());
    let d = blocking(move || {
        Ok(definitions::replace_audience(
            st.as_ref(),
            &actor,
            &id,
            input_of(body),
            now,
        )?)
    })
    .await?;
    Ok(Json(audience_json(&d, 0)))
}

/// Audiences with their size and computation state.
#[utoipa::path(get, path = "/audiences", tag = "audiences", security(("bearer" = [])), responses((status = 200, description = "success", body = crate::openapi::AudienceList), Refusals))]
async fn list(State(state): State<Arc<AppState>>, caller: Caller) -> Api {
    let (st, actor) = (store(&state), caller.actor());
    blocking(move || {
        let out: Vec<Value> = definitions::audiences(st.as_ref(), &actor)?
            .iter()
            .map(|(d, size)| audience_json(d, *size))
            .collect();
        Ok(Json(json!({ "audiences": out })))
    })
    .await
}

/// An audience.
#[utoipa::path(get, path = "/audiences/{id}", tag = "audiences", params(("id" = String, Path, description = "the id")), security(("bearer" = [])), responses((status = 200, description = "success", body = crate::openapi::AudienceAnswer), Refusals))]
async fn show(State(state): State<Arc<AppState>>, caller: Caller, Path(id): Path<String>) -> Api {
    let (st, actor) = (store(&state), caller.actor());
    blocking(move || {
        let (d, size) = definitions::audience(st.as_ref(), &actor, &id)?;
        Ok(Json(audience_json(&d, size)))
    })
    .await
}

/// Delete an audience.
#[utoipa::path(delete, path = "/audiences/{id}", tag = "audiences", params(("id" = String, Path, description = "the id")), security(("bearer" = [])), responses((status = 200, description = "success", body = Answer), Refusals))]
async fn remove(State(state): State<Arc<AppState>>, caller: Caller, Path(id): Path<String>) -> Api {
    remove_kind(&state, &caller, DefinitionKind::Audience, id).await
}

pub(crate) async fn remove_kind(
    state: &Arc<AppState>,
    caller: &Caller,
    kind: DefinitionKind,
    id: String,
) -> Api {
    let (st, actor, gone) = (store(state), caller.actor(), id.clone());
    blocking(move || Ok(definitions::delete(st.as_ref(), &actor, kind, &gone)?)).await?;
    Ok(Json(json!({ "deleted": id })))
}

#[derive(Deserialize)]
struct MemberPage {
    cursor: Option<String>,
    limit: Option<usize>,
}

/// Members, with when each entered.
#[utoipa::path(get, path = "/audiences/{id}/members", tag = "audiences", params(("id" = String, Path, description = "the id"), ("cursor" = Option<String>, Query, description = "from next_cursor of the previous page"), ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "1 to 1000, default 50")), security(("bearer" = [])), responses((status = 200, description = "success", body = crate::openapi::MembersPage), Refusals))]
async fn members(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(page): Query<MemberPage>,
) -> Api {
    let limit = match page.limit {
        None => 50,
        Some(n) if (1..=1000).contains(&n) => n,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                "`limit` must be between 1 and 1000",
            ))
        }
    };
    let (st, ws) = (store(&state), caller.workspace().to_string());
    blocking(move || {
        find(st.as_ref(), &ws, DefinitionKind::Audience, &id)?;
        let after = page.cursor.unwrap_or_default();
        let rows = st.members(&ws, &id, &after, limit)?;
        let next = (rows.len() == limit)
            .then(|| rows.last().map(|m| m.profile_id.clone()))
            .flatten();
        let members: Vec<Value> = rows
            .iter()
            .map(|m| json!({"profile_id": m.profile_id, "since": format_timestamp(m.since)}))
            .collect();
        Ok(Json(json!({
            "audience_id": id,
            "size": st.member_count(&ws, &id)?,
            "members": members,
            "next_cursor": next,
        })))
    })
    .await
}

/// A profile by id, following merges.
fn live_profile(st: &dyn Store, ws: &str, id: &str) -> Result<Profile, ApiError> {
    st.profile(ws, id)?
        .ok_or_else(|| ApiError::not_found(format!("profile {id}")))
}

/// A profile's audiences and their history.
#[utoipa::path(get, path = "/profiles/{id}/audiences", tag = "audiences", params(("id" = String, Path, description = "a profile id (a merged id resolves to the profile that holds it)")), security(("bearer" = [])), responses((status = 200, description = "success", body = crate::openapi::ProfileAudiences), Refusals))]
async fn profile_audiences(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Api {
    let (st, ws) = (store(&state), caller.workspace().to_string());
    blocking(move || {
        let p = live_profile(st.as_ref(), &ws, &id)?;
        let current: Vec<Value> = st
            .memberships(&ws, &p.id)?
            .iter()
            .map(|m| json!({"audience_id": m.audience_id, "since": format_timestamp(m.since)}))
            .collect();
        let history: Vec<Value> = st
            .membership_history(&ws, &p.id, 1000)?
            .iter()
            .map(|c| {
                json!({
                    "audience_id": c.audience_id,
                    "change": if c.entered { "entered" } else { "exited" },
                    "at": format_timestamp(c.at),
                    "cause": c.cause,
                })
            })
            .collect();
        Ok(Json(json!({
            "profile_id": p.id,
            "audiences": current,
            "history": history,
        })))
    })
    .await
}

/// A profile's computed traits.
#[utoipa::path(get, path = "/profiles/{id}/computed-traits", tag = "audiences", params(("id" = String, Path, description = "a profile id (a merged id resolves to the profile that holds it)")), security(("bearer" = [])), responses((status = 200, description = "success", body = crate::openapi::ProfileTraitValues), Refusals))]
async fn profile_traits(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Api {
    let (st, ws) = (store(&state), caller.workspace().to_string());
    blocking(move || {
        let p = live_profile(st.as_ref(), &ws, &id)?;
        Ok(Json(json!({
            "profile_id": p.id,
            "computed_traits": st.computed_values(&ws, &p.id)?,
        })))
    })
    .await
}

/// Why a profile is or is not in an audience, condition by condition.
#[utoipa::path(get, path = "/audiences/{id}/explain/{profile}", tag = "audiences", params(("id" = String, Path, description = "the id"), ("profile" = String, Path, description = "a profile id")), security(("bearer" = [])), responses((status = 200, description = "success", body = crate::openapi::Explanation), Refusals))]
async fn explain(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((id, profile)): Path<(String, String)>,
) -> Api {
    let (st, actor, now) = (store(&state), caller.actor(), state.engine.now());
    blocking(move || {
        let e = definitions::explain(st.as_ref(), &actor, &id, &profile, now)?;
        Ok(Json(json!({
            "audience_id": id,
            "profile_id": e.profile_id,
            "at": format_timestamp(now),
            "matches": e.verdict.matched,
            "member": e.member,
            "next_change": e.verdict.next_change.map(format_timestamp),
            "explanation": e.verdict,
        })))
    })
    .await
}

#[derive(Deserialize)]
struct ExportQuery {
    format: Option<String>,
    /// Region for national phone numbers (`FR`), for the ad-platform formats.
    region: Option<String>,
}

/// Members as CSV or NDJSON, or hashed for Google Customer Match or Meta custom audiences.
#[utoipa::path(get, path = "/audiences/{id}/export", tag = "audiences", params(("id" = String, Path, description = "the id"), ("format" = Option<String>, Query, pattern = "^(csv|ndjson|google|meta)$", description = "csv (default), ndjson, google, meta"), ("region" = Option<String>, Query, description = "region of national phone numbers for the ad formats, e.g. FR")), security(("bearer" = [])), responses((status = 200, description = "success", content_type = "text/csv", body = String), Refusals))]
async fn export(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    let format = q.format.unwrap_or_else(|| "csv".into());
    let (st, ws) = (store(&state), caller.workspace().to_string());
    let fmt = format.clone();
    let actor = caller.actor();
    let body = blocking(move || {
        find(st.as_ref(), &ws, DefinitionKind::Audience, &id)?;
        Ok(definitions::export(
            st.as_ref(),
            &actor,
            &id,
            &fmt,
            q.region.as_deref(),
        )?)
    })
    .await?;
    let content_type = if format == "ndjson" {
        "application/x-ndjson"
    } else {
        "text/csv; charset=utf-8"
    };
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

fn read_trait(body: Option<Json<Value>>) -> Result<ComputedTrait, ApiError> {
    definition_body(body, "computed trait", "invalid_computed_trait")
}

/// Create a computed trait.
#[utoipa::path(post, path = "/computed-traits", tag = "audiences", request_body = TraitBody, security(("bearer" = [])), responses((status = 201, description = "created", body = crate::openapi::TraitAnswer), Refusals))]
async fn create_trait(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: Option<Json<Value>>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require_editor()?;
    let def = read_trait(body)?;
    let (st, actor, now) = (store(&state), caller.actor(), state.engine.now());
    let d =
        blocking(move || Ok(definitions::create_trait(st.as_ref(), &actor, &def, now)?)).await?;
    Ok((StatusCode::CREATED, Json(trait_json(&d))))
}

/// Replace a computed trait.
#[utoipa::path(put, path = "/computed-traits/{id}", tag = "audiences", params(("id" = String, Path, description = "the id")), request_body = TraitBody, security(("bearer" = [])), responses((status = 200, description = "success", body = crate::openapi::TraitAnswer), Refusals))]
async fn replace_trait(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Option<Json<Value>>,
) -> Api {
    caller.require_editor()?;
    let def = read_trait(body)?;
    same_id(&id, Some(&def.id), "invalid_computed_trait")?;
    let (st, actor, now) = (store(&state), caller.actor(), state.engine.now());
    let d =
        blocking(move || Ok(definitions::replace_trait(st.as_ref(), &actor, &def, now)?)).await?;
    Ok(Json(trait_json(&d)))
}

/// Computed traits.
#[utoipa::path(get, path = "/computed-traits", tag = "audiences", security(("bearer" = [])), responses((status = 200, description = "success", body = crate::openapi::TraitList), Refusals))]
async fn list_traits(State(state): State<Arc<AppState>>, caller: Caller) -> Api {
    let (st, actor) = (store(&state), caller.actor());
    blocking(move || {
        let out: Vec<Value> =
            definitions::list(st.as_ref(), &actor, DefinitionKind::ComputedTrait)?
                .iter()
                .map(trait_json)
                .collect();
        Ok(Json(json!({ "computed_traits": out })))
    })
    .await
}

/// A computed trait.
#[utoipa::path(get, path = "/computed-traits/{id}", tag = "audiences", params(("id" = String, Path, description = "the id")), security(("bearer" = [])), responses((status = 200, description = "success", body = crate::openapi::TraitAnswer), Refusals))]
async fn show_trait(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Api {
    let (st, actor) = (store(&state), caller.actor());
    blocking(move || {
        Ok(Json(trait_json(&parcours_service::definition(
            st.as_ref(),
            &actor,
            DefinitionKind::ComputedTrait,
            &id,
        )?)))
    })
    .await
}

/// Delete a computed trait.
#[utoipa::path(delete, path = "/computed-traits/{id}", tag = "audiences", params(("id" = String, Path, description = "the id")), security(("bearer" = [])), responses((status = 200, description = "success", body = Answer), Refusals))]
async fn remove_trait(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Api {
    remove_kind(&state, &caller, DefinitionKind::ComputedTrait, id).await
}
