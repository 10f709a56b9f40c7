//! Measurement over HTTP (under `/api/v1/measure`): the commerce KPIs of the workspace's event
//! log, as JSON or CSV. Thin over `parcours_service::measure`.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use parcours_core::kpi::Breakdown;
use parcours_service::dashboard::DayRange;
use parcours_service::measure;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audiences::store;
use crate::auth::Caller;
use crate::error::{blocking, ApiError};
use crate::openapi::{KpiAnswer, Refusals};
use crate::AppState;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(kpis))
        .routes(routes!(kpis_export))
}

/// A range of days and a breakdown.
#[derive(Debug, Deserialize)]
struct KpiQuery {
    from: Option<String>,
    to: Option<String>,
    by: Option<String>,
}

impl KpiQuery {
    fn breakdown(&self) -> Result<Breakdown, ApiError> {
        match self.by.as_deref() {
            None => Ok(Breakdown::Total),
            Some(b) => Breakdown::parse(b).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_parameter",
                    "`by` is one of total, channel, side, shop, campaign, day, week, month",
                )
            }),
        }
    }
}

async fn compute(
    state: &Arc<AppState>,
    caller: &Caller,
    q: KpiQuery,
) -> Result<measure::Kpis, ApiError> {
    let by = q.breakdown()?;
    let (st, actor, now) = (store(state), caller.actor(), state.engine.now());
    blocking(move || {
        let range = DayRange::parse(q.from.as_deref(), q.to.as_deref(), now)?;
        Ok(measure::kpis(st.as_ref(), &actor, range, by)?)
    })
    .await
}

/// Conversion, orders, revenue, average order value, repeat purchase rate, purchase
/// frequency, new customers, cart abandonment and NPS over a range of days, per channel,
/// online or offline, shop, campaign, day, week or month (definitions in
/// docs/measurement.md).
#[utoipa::path(get, path = "/measure/kpis", tag = "measure", params(("from" = Option<String>, Query, format = Date, description = "first day (2026-11-01); default: 29 days before `to`"), ("to" = Option<String>, Query, format = Date, description = "last day; default: today (UTC)"), ("by" = Option<String>, Query, pattern = "^(total|channel|side|shop|campaign|day|week|month)$", description = "the breakdown (default total)")), security(("bearer" = [])), responses((status = 200, description = "success", body = KpiAnswer), Refusals))]
async fn kpis(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<KpiQuery>,
) -> Result<Json<Value>, ApiError> {
    let k = compute(&state, &caller, q).await?;
    Ok(Json(json!(k)))
}

/// The same as `GET /measure/kpis`, as CSV: one line per key, then the total.
#[utoipa::path(get, path = "/measure/kpis/export", tag = "measure", params(("from" = Option<String>, Query, format = Date, description = "first day (2026-11-01); default: 29 days before `to`"), ("to" = Option<String>, Query, format = Date, description = "last day; default: today (UTC)"), ("by" = Option<String>, Query, pattern = "^(total|channel|side|shop|campaign|day|week|month)$", description = "the breakdown (default total)")), security(("bearer" = [])), responses((status = 200, description = "success", content_type = "text/csv", body = String), Refusals))]
async fn kpis_export(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<KpiQuery>,
) -> Result<Response, ApiError> {
    let k = compute(&state, &caller, q).await?;
    let name = format!(
        "attachment; filename=\"kpis-{}-{}-{}.csv\"",
        k.by.as_str(),
        k.from,
        k.to
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, name),
        ],
        measure::kpis_csv(&k),
    )
        .into_response())
}
