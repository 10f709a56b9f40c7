//! Measurement over HTTP (under `/api/v1/measure`): the commerce KPIs of the workspace's event
//! log, as JSON or CSV. Thin over `parcours_service::measure`.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use parcours_core::kpi::{Breakdown, Period, TouchKey};
use parcours_service::dashboard::{date, DayRange};
use parcours_service::measure;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audiences::store;
use crate::auth::Caller;
use crate::error::{blocking, ApiError};
use crate::openapi::{
    Answer, AttributionAnswer, ClvAnswer, CohortAnswer, FunnelAnswer, KpiAnswer,
    MeasureStatusAnswer, Refusals, SpendAnswer, UpliftAnswer,
};
use crate::AppState;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(kpis))
        .routes(routes!(kpis_export))
        .routes(routes!(attribution))
        .routes(routes!(attribution_export))
        .routes(routes!(funnel))
        .routes(routes!(funnel_export))
        .routes(routes!(cohorts))
        .routes(routes!(cohorts_export))
        .routes(routes!(clv))
        .routes(routes!(clv_export))
        .routes(routes!(get_spend, import_spend))
        .routes(routes!(uplift))
        .routes(routes!(uplift_export))
        .routes(routes!(status))
}

/// How the measurement of the workspace is read: every answer of `/measure/*` is computed
/// from one reading of the event log, kept while the log does not change; `reading` is the
/// reading under way (its phase, rows read of about `total`, when it started) and `snapshot`
/// the last one (when it was read, its events, the log position profiles had reached).
#[utoipa::path(get, path = "/measure/status", tag = "measure", security(("bearer" = [])),
    responses((status = 200, description = "success", body = MeasureStatusAnswer), Refusals))]
async fn status(State(state): State<Arc<AppState>>, caller: Caller) -> Json<Value> {
    let s = state.measure.status(&caller.actor().workspace);
    let mut v = json!(s);
    if let Some(p) = &s.reading {
        v["reading"]["percent"] = json!((p.fraction() * 1000.0).round() / 10.0);
    }
    Json(v)
}

/// A journey and the window after entry in which orders count.
#[derive(Debug, Deserialize)]
struct UpliftParams {
    journey: String,
    window: Option<i64>,
}

async fn compute_uplift(
    state: &Arc<AppState>,
    caller: &Caller,
    q: UpliftParams,
) -> Result<measure::uplift::Uplift, ApiError> {
    let (st, actor, app) = (store(state), caller.actor(), state.clone());
    let window = q.window.unwrap_or(measure::uplift::DEFAULT_WINDOW_DAYS);
    blocking(move || {
        Ok(measure::uplift::uplift(
            st.as_ref(),
            &app.measure,
            &actor,
            &q.journey,
            window,
        )?)
    })
    .await
}

/// Did a journey work? Its runs by group (the treatment, each variant of its splits, its
/// holdout and the workspace's global control group), each group's goal conversions and the
/// orders its customers placed within `window` days of entering, and every treated group
/// against each control group: uplift of the conversion rate, incremental conversions,
/// two-proportion z-test, 95% interval and the underpowered warning; difference of revenue
/// per entrant, incremental revenue and its 95% interval.
#[utoipa::path(get, path = "/measure/uplift", tag = "measure", params(("journey" = String, Query, description = "the journey id"), ("window" = Option<i64>, Query, minimum = 1, maximum = 90, description = "days after entry in which orders count (default 30)")), security(("bearer" = [])), responses((status = 200, description = "success", body = UpliftAnswer), Refusals))]
async fn uplift(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<UpliftParams>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(compute_uplift(&state, &caller, q).await?)))
}

/// The uplift report as CSV: a line per group, then a line per comparison.
#[utoipa::path(get, path = "/measure/uplift/export", tag = "measure", params(("journey" = String, Query, description = "the journey id"), ("window" = Option<i64>, Query, minimum = 1, maximum = 90, description = "days after entry in which orders count (default 30)")), security(("bearer" = [])), responses((status = 200, description = "success", content_type = "text/csv", body = String), Refusals))]
async fn uplift_export(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<UpliftParams>,
) -> Result<Response, ApiError> {
    let u = compute_uplift(&state, &caller, q).await?;
    let name: String = u
        .journey
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok(csv(
        measure::uplift::uplift_csv(&u.report),
        format!("uplift-{name}"),
    ))
}

/// A range of days.
#[derive(Debug, Deserialize)]
struct SpendRange {
    from: Option<String>,
    to: Option<String>,
}

/// Advertising spend of a range of days, by day, channel and campaign.
#[utoipa::path(get, path = "/measure/spend", tag = "measure", params(("from" = Option<String>, Query, format = Date, description = "first day; default: 29 days before `to`"), ("to" = Option<String>, Query, format = Date, description = "last day; default: today (UTC)")), security(("bearer" = [])), responses((status = 200, description = "success", body = SpendAnswer), Refusals))]
async fn get_spend(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<SpendRange>,
) -> Result<Json<Value>, ApiError> {
    let (st, actor, now) = (store(&state), caller.actor(), state.engine.now());
    blocking(move || {
        let range = DayRange::parse(q.from.as_deref(), q.to.as_deref(), now)?;
        let rows = measure::spend(st.as_ref(), &actor, range)?;
        let rows: Vec<Value> = rows
            .iter()
            .map(|r| json!({"date": date(r.day), "channel": r.channel, "campaign": r.campaign, "amount": r.amount}))
            .collect();
        Ok(Json(json!({"from": date(range.from), "to": date(range.to), "rows": rows})))
    })
    .await
}

/// Imports advertising spend (admins and marketers): a CSV with a header naming `date`,
/// `channel`, `amount` and optionally `campaign`, a row per day, channel and campaign; each
/// row replaces the one of its day, channel and campaign. What customer acquisition cost
/// divides (`cac` in `GET /measure/kpis`). A file with a bad line is refused whole, with the
/// line's number.
#[utoipa::path(post, path = "/measure/spend", tag = "measure", request_body(content = String, content_type = "text/csv", description = "date,channel,campaign,amount"), security(("bearer" = [])), responses((status = 200, description = "stored", body = Answer), Refusals))]
async fn import_spend(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: String,
) -> Result<Json<Value>, ApiError> {
    let (st, actor, now) = (store(&state), caller.actor(), state.engine.now());
    let stored =
        blocking(move || Ok(measure::import_spend(st.as_ref(), &actor, &body, now)?)).await?;
    Ok(Json(json!({"stored": stored})))
}

/// How lifetime value is projected.
#[derive(Debug, Deserialize)]
struct ClvParams {
    end: Option<String>,
    horizon: Option<f64>,
    months: Option<u32>,
    discount: Option<f64>,
    limit: Option<usize>,
}

async fn compute_clv(
    state: &Arc<AppState>,
    caller: &Caller,
    q: ClvParams,
) -> Result<measure::Clv, ApiError> {
    let bad = |m: &str| ApiError::bad_request("invalid_parameter", m);
    let horizon = q.horizon.unwrap_or(52.0);
    if !(horizon.is_finite() && (0.0..=520.0).contains(&horizon)) {
        return Err(bad("`horizon` is 0 to 520 weeks"));
    }
    let months = q.months.unwrap_or(12);
    if !(1..=120).contains(&months) {
        return Err(bad("`months` is 1 to 120"));
    }
    let discount = q.discount.unwrap_or(0.01);
    if !(discount.is_finite() && (0.0..1.0).contains(&discount)) {
        return Err(bad(
            "`discount` is a monthly rate from 0 to below 1, such as 0.01",
        ));
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(bad("`limit` is 1 to 1000"));
    }
    let (st, actor, now) = (store(state), caller.actor(), state.engine.now());
    let app = state.clone();
    blocking(move || {
        let end = DayRange::parse(q.end.as_deref(), q.end.as_deref(), now)?.to;
        let query = measure::ClvQuery {
            end_day: end,
            horizon_weeks: horizon,
            months,
            discount,
            limit,
        };
        Ok(measure::clv(st.as_ref(), &app.measure, &actor, query)?)
    })
    .await
}

/// Customer lifetime value: BG/NBD and Gamma-Gamma fitted by maximum likelihood on the
/// workspace's orders (in weeks, with the `lifetimes` package's conventions), and per buyer the
/// probability of being alive, expected purchases over the horizon, expected spend and
/// discounted lifetime value; the most valuable first.
#[utoipa::path(get, path = "/measure/clv", tag = "measure", params(("end" = Option<String>, Query, format = Date, description = "the last day observed (default today)"), ("horizon" = Option<f64>, Query, minimum = 0, maximum = 520, description = "weeks of expected purchases (default 52)"), ("months" = Option<u32>, Query, minimum = 1, maximum = 120, description = "months of discounted value (default 12)"), ("discount" = Option<f64>, Query, minimum = 0, maximum = 0.99, description = "monthly discount rate (default 0.01)"), ("limit" = Option<usize>, Query, minimum = 1, maximum = 1000, description = "customers listed (default 100)")), security(("bearer" = [])), responses((status = 200, description = "success", body = ClvAnswer), Refusals))]
async fn clv(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<ClvParams>,
) -> Result<Json<Value>, ApiError> {
    let c = compute_clv(&state, &caller, q).await?;
    Ok(Json(json!(c)))
}

/// Every buyer's lifetime figures as CSV (the columns of `parcours report clv`).
#[utoipa::path(get, path = "/measure/clv/export", tag = "measure", params(("end" = Option<String>, Query, format = Date, description = "the last day observed (default today)"), ("horizon" = Option<f64>, Query, minimum = 0, maximum = 520, description = "weeks of expected purchases (default 52)"), ("months" = Option<u32>, Query, minimum = 1, maximum = 120, description = "months of discounted value (default 12)"), ("discount" = Option<f64>, Query, minimum = 0, maximum = 0.99, description = "monthly discount rate (default 0.01)")), security(("bearer" = [])), responses((status = 200, description = "success", content_type = "text/csv", body = String), Refusals))]
async fn clv_export(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<ClvParams>,
) -> Result<Response, ApiError> {
    let c = compute_clv(&state, &caller, q).await?;
    let name = format!("clv-{}", c.end);
    Ok(csv(measure::clv_csv(&c), name))
}

/// A range of days, a period and a breakdown.
#[derive(Debug, Deserialize)]
struct CohortParams {
    from: Option<String>,
    to: Option<String>,
    period: Option<String>,
    by: Option<String>,
}

async fn compute_cohorts(
    state: &Arc<AppState>,
    caller: &Caller,
    q: CohortParams,
) -> Result<measure::Cohorts, ApiError> {
    let period = match q.period.as_deref() {
        None | Some("month") => Period::Month,
        Some("week") => Period::Week,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                "`period` is week or month",
            ))
        }
    };
    let by_channel = match q.by.as_deref() {
        None | Some("total") => false,
        Some("channel") => true,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                "`by` is total or channel",
            ))
        }
    };
    let (st, actor, now) = (store(state), caller.actor(), state.engine.now());
    let app = state.clone();
    blocking(move || {
        let range = DayRange::parse(q.from.as_deref(), q.to.as_deref(), now)?;
        Ok(measure::cohorts(
            st.as_ref(),
            &app.measure,
            &actor,
            range,
            period,
            by_channel,
        )?)
    })
    .await
}

/// Retention and revenue by acquisition cohort: the customers whose first order ever is in the
/// range, by week or month of that order (and its channel), with how many of them ordered
/// and what they spent in each period after.
#[utoipa::path(get, path = "/measure/cohorts", tag = "measure", params(("from" = Option<String>, Query, format = Date, description = "first day; default: 29 days before `to`"), ("to" = Option<String>, Query, format = Date, description = "last day; default: today (UTC)"), ("period" = Option<String>, Query, pattern = "^(week|month)$", description = "week or month (default month)"), ("by" = Option<String>, Query, pattern = "^(total|channel)$", description = "total (default) or the channel of the first order")), security(("bearer" = [])), responses((status = 200, description = "success", body = CohortAnswer), Refusals))]
async fn cohorts(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<CohortParams>,
) -> Result<Json<Value>, ApiError> {
    let c = compute_cohorts(&state, &caller, q).await?;
    Ok(Json(json!(c)))
}

/// The same as `GET /measure/cohorts`, as CSV: one line per cohort and period.
#[utoipa::path(get, path = "/measure/cohorts/export", tag = "measure", params(("from" = Option<String>, Query, format = Date, description = "first day; default: 29 days before `to`"), ("to" = Option<String>, Query, format = Date, description = "last day; default: today (UTC)"), ("period" = Option<String>, Query, pattern = "^(week|month)$", description = "week or month (default month)"), ("by" = Option<String>, Query, pattern = "^(total|channel)$", description = "total (default) or the channel of the first order")), security(("bearer" = [])), responses((status = 200, description = "success", content_type = "text/csv", body = String), Refusals))]
async fn cohorts_export(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<CohortParams>,
) -> Result<Response, ApiError> {
    let c = compute_cohorts(&state, &caller, q).await?;
    let name = format!("cohorts-{}-{}", c.from, c.to);
    Ok(csv(measure::cohorts_csv(&c), name))
}

fn csv(body: String, name: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.csv\""),
            ),
        ],
        body,
    )
        .into_response()
}

/// A range of days, a touch key and the model's settings.
#[derive(Debug, Deserialize)]
struct AttributionParams {
    from: Option<String>,
    to: Option<String>,
    by: Option<String>,
    lookback: Option<i64>,
    order: Option<usize>,
    nulls: Option<bool>,
}

async fn compute_attribution(
    state: &Arc<AppState>,
    caller: &Caller,
    q: AttributionParams,
) -> Result<measure::Attribution, ApiError> {
    let by = match q.by.as_deref() {
        None | Some("channel") => TouchKey::Channel,
        Some("campaign") => TouchKey::Campaign,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                "`by` is channel or campaign",
            ))
        }
    };
    let query = measure::AttributionQuery::new(
        by,
        q.lookback.unwrap_or(30),
        q.order.unwrap_or(1),
        q.nulls.unwrap_or(true),
    )?;
    let (st, actor, now) = (store(state), caller.actor(), state.engine.now());
    let app = state.clone();
    blocking(move || {
        let range = DayRange::parse(q.from.as_deref(), q.to.as_deref(), now)?;
        Ok(measure::attribution(
            st.as_ref(),
            &app.measure,
            &actor,
            range,
            query,
        )?)
    })
    .await
}

/// The range's orders credited to channels or campaigns by every model: first, last, linear,
/// position-based (40/20/40), time decay (7-day half-life), simplified Shapley and the Markov
/// removal effect (exact), for conversions and value (definitions in docs/measurement.md).
#[utoipa::path(get, path = "/measure/attribution", tag = "measure", params(("from" = Option<String>, Query, format = Date, description = "first day; default: 29 days before `to`"), ("to" = Option<String>, Query, format = Date, description = "last day; default: today (UTC)"), ("by" = Option<String>, Query, pattern = "^(channel|campaign)$", description = "what a touch is (default channel)"), ("lookback" = Option<i64>, Query, minimum = 1, maximum = 90, description = "days before an order its touches count (default 30)"), ("order" = Option<usize>, Query, minimum = 1, maximum = 4, description = "the Markov chain's order (default 1)"), ("nulls" = Option<bool>, Query, description = "count the paths that did not convert in the Markov chain (default true)")), security(("bearer" = [])), responses((status = 200, description = "success", body = AttributionAnswer), Refusals))]
async fn attribution(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<AttributionParams>,
) -> Result<Json<Value>, ApiError> {
    let a = compute_attribution(&state, &caller, q).await?;
    Ok(Json(json!(a)))
}

/// The same as `GET /measure/attribution`, as CSV.
#[utoipa::path(get, path = "/measure/attribution/export", tag = "measure", params(("from" = Option<String>, Query, format = Date, description = "first day; default: 29 days before `to`"), ("to" = Option<String>, Query, format = Date, description = "last day; default: today (UTC)"), ("by" = Option<String>, Query, pattern = "^(channel|campaign)$", description = "what a touch is (default channel)"), ("lookback" = Option<i64>, Query, minimum = 1, maximum = 90, description = "days before an order its touches count (default 30)"), ("order" = Option<usize>, Query, minimum = 1, maximum = 4, description = "the Markov chain's order (default 1)"), ("nulls" = Option<bool>, Query, description = "count the paths that did not convert in the Markov chain (default true)")), security(("bearer" = [])), responses((status = 200, description = "success", content_type = "text/csv", body = String), Refusals))]
async fn attribution_export(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<AttributionParams>,
) -> Result<Response, ApiError> {
    let a = compute_attribution(&state, &caller, q).await?;
    let name = format!("attribution-{}-{}", a.from, a.to);
    Ok(csv(measure::attribution_csv(&a), name))
}

/// A range of days, the steps, the window and a breakdown.
#[derive(Debug, Deserialize)]
struct FunnelParams {
    from: Option<String>,
    to: Option<String>,
    steps: Option<String>,
    window: Option<i64>,
    by: Option<String>,
}

async fn compute_funnel(
    state: &Arc<AppState>,
    caller: &Caller,
    q: FunnelParams,
) -> Result<measure::Funnel, ApiError> {
    let by = match q.by.as_deref() {
        None => measure::FunnelBy::Total,
        Some(b) => measure::FunnelBy::parse(b).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_parameter",
                "`by` is one of total, channel, first_touch, shop",
            )
        })?,
    };
    let steps: Vec<String> = q.steps.as_deref().map_or_else(
        || {
            measure::DEFAULT_FUNNEL
                .iter()
                .map(|s| s.to_string())
                .collect()
        },
        |steps| steps.split(',').map(|s| s.trim().to_string()).collect(),
    );
    let (st, actor, now) = (store(state), caller.actor(), state.engine.now());
    let app = state.clone();
    blocking(move || {
        let range = DayRange::parse(q.from.as_deref(), q.to.as_deref(), now)?;
        Ok(measure::funnel(
            st.as_ref(),
            &app.measure,
            &actor,
            range,
            &steps,
            q.window.unwrap_or(7),
            by,
        )?)
    })
    .await
}

/// An ordered funnel over the range's events: how many people did each step after the one
/// before, within the window of their step-1 event, per breakdown group, with the median time
/// to convert.
#[utoipa::path(get, path = "/measure/funnel", tag = "measure", params(("from" = Option<String>, Query, format = Date, description = "first day; default: 29 days before `to`"), ("to" = Option<String>, Query, format = Date, description = "last day; default: today (UTC)"), ("steps" = Option<String>, Query, description = "event names separated by commas, 2 to 32 (`Page Viewed` and `Screen Viewed` for page and screen calls); default Product Viewed,Product Added,Checkout Started,Order Completed"), ("window" = Option<i64>, Query, minimum = 1, maximum = 90, description = "days from step 1 to the last step (default 7)"), ("by" = Option<String>, Query, pattern = "^(total|channel|first_touch|shop)$", description = "the breakdown (default total)")), security(("bearer" = [])), responses((status = 200, description = "success", body = FunnelAnswer), Refusals))]
async fn funnel(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<FunnelParams>,
) -> Result<Json<Value>, ApiError> {
    let f = compute_funnel(&state, &caller, q).await?;
    Ok(Json(json!(f)))
}

/// The same as `GET /measure/funnel`, as CSV.
#[utoipa::path(get, path = "/measure/funnel/export", tag = "measure", params(("from" = Option<String>, Query, format = Date, description = "first day; default: 29 days before `to`"), ("to" = Option<String>, Query, format = Date, description = "last day; default: today (UTC)"), ("steps" = Option<String>, Query, description = "event names separated by commas, 2 to 32"), ("window" = Option<i64>, Query, minimum = 1, maximum = 90, description = "days from step 1 to the last step (default 7)"), ("by" = Option<String>, Query, pattern = "^(total|channel|first_touch|shop)$", description = "the breakdown (default total)")), security(("bearer" = [])), responses((status = 200, description = "success", content_type = "text/csv", body = String), Refusals))]
async fn funnel_export(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(q): Query<FunnelParams>,
) -> Result<Response, ApiError> {
    let f = compute_funnel(&state, &caller, q).await?;
    let name = format!("funnel-{}-{}", f.from, f.to);
    Ok(csv(measure::funnel_csv(&f), name))
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
    let app = state.clone();
    blocking(move || {
        let range = DayRange::parse(q.from.as_deref(), q.to.as_deref(), now)?;
        Ok(measure::kpis(st.as_ref(), &app.measure, &actor, range, by)?)
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
    let name = format!("kpis-{}-{}-{}", k.by.as_str(), k.from, k.to);
    Ok(csv(measure::kpis_csv(&k), name))
}
