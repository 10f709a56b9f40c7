//! Measurement: the commerce KPIs of a date range broken down by channel, shop, campaign or
//! period, sales by channel under every attribution model, and the purchase funnel (ECharts,
//! with every figure in a table too), read from the event log.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use parcours_api::AppState;
use parcours_core::kpi::{Breakdown, Row};
use parcours_service::dashboard::DayRange;
use parcours_service::measure;
use serde::Deserialize;
use serde_json::json;

use crate::dashboard::{range_or_default, KeyRow, RangeQuery, Total};
use crate::pages::{blocking, render, service_problem, Chrome, Session};
use crate::Tr;

/// The breakdowns offered, with their labels.
const BREAKDOWNS: [(Breakdown, &str); 6] = [
    (Breakdown::Channel, "m_by_channel"),
    (Breakdown::Side, "m_by_side"),
    (Breakdown::Shop, "m_by_shop"),
    (Breakdown::Campaign, "m_by_campaign"),
    (Breakdown::Week, "m_by_week"),
    (Breakdown::Month, "m_by_month"),
];

/// The models in the order the table shows them.
const MODELS: [&str; 7] = [
    "first",
    "last",
    "linear",
    "position_based",
    "time_decay",
    "shapley",
    "markov",
];

pub(crate) struct Choice {
    pub value: &'static str,
    pub label: &'static str,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "measure.html")]
struct Page {
    c: Chrome,
    from: String,
    to: String,
    error: Option<String>,
    choices: Vec<Choice>,
    /// The query of the CSV export link.
    export: String,
    totals: Vec<Total>,
    /// What the charts draw, as JSON (read by `measure.js`).
    chart: String,
    kpis: Vec<KeyRow>,
    models: Vec<&'static str>,
    attribution: Vec<KeyRow>,
    funnel: Vec<KeyRow>,
    median: Option<String>,
    uplift_groups: Vec<UpliftGroup>,
    uplift_versus: Vec<UpliftVersus>,
}

#[derive(Deserialize)]
pub(crate) struct MeasureQuery {
    #[serde(flatten)]
    range: RangeQuery,
    by: Option<String>,
}

impl MeasureQuery {
    /// The breakdown asked for if the page offers it, else by channel.
    fn breakdown(&self) -> Breakdown {
        self.by
            .as_deref()
            .and_then(Breakdown::parse)
            .filter(|b| BREAKDOWNS.iter().any(|(x, _)| x == b))
            .unwrap_or(Breakdown::Channel)
    }
}

/// A rate as a percentage, a dash when undefined.
fn rate(tr: Tr, r: Option<f64>) -> String {
    r.map_or_else(|| "–".into(), |r| tr.percent(r))
}

fn kpi_values(tr: Tr, r: &Row) -> Vec<String> {
    vec![
        tr.number(r.visitors),
        tr.number(r.buyers),
        tr.number(r.orders),
        tr.decimal(r.revenue, 2),
        r.average_order_value
            .map_or_else(|| "–".into(), |v| tr.decimal(v, 2)),
        rate(tr, r.conversion_rate),
        rate(tr, r.repeat_purchase_rate),
        tr.number(r.new_customers),
        rate(tr, r.cart_abandonment),
        r.nps.map_or_else(|| "–".into(), |v| tr.decimal(v, 1)),
        r.cac.map_or_else(|| "–".into(), |v| tr.decimal(v, 2)),
    ]
}

/// A duration in seconds, in the largest unit that reads well.
fn duration(seconds: f64) -> String {
    match seconds {
        s if s < 120.0 => format!("{s:.0} s"),
        s if s < 7_200.0 => format!("{:.0} min", s / 60.0),
        s if s < 172_800.0 => format!("{:.1} h", s / 3_600.0),
        s => format!("{:.1} d", s / 86_400.0),
    }
}

/// The KPIs of the page as CSV (the API's export, for the signed-in console user).
pub(crate) async fn export(
    State(state): State<Arc<AppState>>,
    session: Session,
    Query(q): Query<MeasureQuery>,
) -> Response {
    let by = q.breakdown();
    let range = match DayRange::parse(
        q.range.from.as_deref(),
        q.range.to.as_deref(),
        state.engine.now(),
    ) {
        Ok(r) => r,
        Err(e) => return service_problem(session.chrome(), e),
    };
    let (store, actor) = (state.engine.store().clone(), session.actor());
    let app = state.clone();
    let found =
        blocking(move || measure::kpis(store.as_ref(), &app.measure, &actor, range, by)).await;
    match found {
        Ok(k) => {
            // Dates and a breakdown name: safe in a header as they are.
            let name = format!(
                "attachment; filename=\"kpis-{}-{}-{}.csv\"",
                by.as_str(),
                k.from,
                k.to
            );
            let mut r = measure::kpis_csv(&k).into_response();
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            );
            if let Ok(v) = HeaderValue::from_str(&name) {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            r
        }
        Err(e) => service_problem(session.chrome(), e),
    }
}

pub(crate) async fn page(
    State(state): State<Arc<AppState>>,
    session: Session,
    Query(q): Query<MeasureQuery>,
) -> Response {
    let by = q.breakdown();
    let (range, error) = range_or_default(&q.range, state.engine.now());
    let (store, actor, app) = (state.engine.store().clone(), session.actor(), state.clone());
    let workspace = actor.workspace.clone();
    let computing = tokio::task::spawn_blocking(move || {
        measure::overview(
            store.as_ref(),
            &app.measure,
            &actor,
            range,
            by,
            Some(FRESH_ENOUGH_MS),
        )
    });
    // A long reading of the log goes on without the page: the page shows how far it got and
    // comes back until it is done.
    let found = match tokio::time::timeout(WAIT_FOR_READING, computing).await {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => Err(parcours_service::ServiceError::Store(
            parcours_store::StoreError::Backend(format!("a console task failed: {e}")),
        )),
        Err(_) => {
            let status = state.measure.status(&workspace);
            return reading(session.chrome(), &q, status.reading);
        }
    };
    let measure::Overview {
        kpis,
        attribution,
        funnel,
        uplift,
    } = match found {
        Ok(found) => found,
        Err(e) => return service_problem(session.chrome(), e),
    };
    let tr = session.tr();
    let t = &kpis.total;
    let total = |label: &'static str, value: String, id: &'static str| Total { label, value, id };
    let totals = vec![
        total(tr.t("m_orders"), tr.number(t.orders), "kpi-orders"),
        total(tr.t("m_revenue"), tr.decimal(t.revenue, 2), "kpi-revenue"),
        total(
            tr.t("m_aov"),
            t.average_order_value
                .map_or_else(|| "–".into(), |v| tr.decimal(v, 2)),
            "kpi-aov",
        ),
        total(
            tr.t("m_conversion"),
            rate(tr, t.conversion_rate),
            "kpi-conversion",
        ),
        total(
            tr.t("m_repeat"),
            rate(tr, t.repeat_purchase_rate),
            "kpi-repeat",
        ),
        total(
            tr.t("m_frequency"),
            t.purchase_frequency
                .map_or_else(|| "–".into(), |v| tr.decimal(v, 2)),
            "kpi-frequency",
        ),
        total(tr.t("m_new"), tr.number(t.new_customers), "kpi-new"),
        total(
            tr.t("m_abandonment"),
            rate(tr, t.cart_abandonment),
            "kpi-abandonment",
        ),
        total(
            tr.t("m_nps"),
            t.nps.map_or_else(|| "–".into(), |v| tr.decimal(v, 1)),
            "kpi-nps",
        ),
        total(
            tr.t("m_cac"),
            t.cac.map_or_else(|| "–".into(), |v| tr.decimal(v, 2)),
            "kpi-cac",
        ),
    ];
    let key_label = |key: &str| -> String {
        match by {
            Breakdown::Channel => tr.channel(key).to_string(),
            _ => key.to_string(),
        }
    };
    let kpi_rows: Vec<KeyRow> = kpis
        .rows
        .iter()
        .map(|r| KeyRow {
            key: key_label(&r.key),
            values: kpi_values(tr, r),
        })
        .collect();
    let attribution_rows: Vec<KeyRow> = attribution
        .rows
        .iter()
        .map(|r| KeyRow {
            key: tr.channel(&r.key).to_string(),
            values: MODELS
                .iter()
                .map(|m| tr.decimal(r.models.get(m).map_or(0.0, |c| c.conversions), 1))
                .collect(),
        })
        .collect();
    let funnel_rows: Vec<KeyRow> = funnel
        .steps
        .iter()
        .enumerate()
        .map(|(i, step)| KeyRow {
            key: step.clone(),
            values: vec![
                tr.number(funnel.total.reached[i]),
                tr.percent(funnel.total.conversion[i]),
            ],
        })
        .collect();
    let chart = json!({
        "kpis": {
            "keys": kpis.rows.iter().map(|r| key_label(&r.key)).collect::<Vec<_>>(),
            "revenue": {"name": tr.t("m_revenue"), "values": kpis.rows.iter().map(|r| (r.revenue * 100.0).round() / 100.0).collect::<Vec<_>>()},
            "orders": {"name": tr.t("m_orders"), "values": kpis.rows.iter().map(|r| r.orders).collect::<Vec<_>>()},
        },
        "attribution": {
            "channels": attribution.rows.iter().map(|r| tr.channel(&r.key)).collect::<Vec<_>>(),
            "series": MODELS.iter().map(|m| json!({
                "name": tr.t(&format!("m_model_{m}")),
                "values": attribution.rows.iter().map(|r| (r.models.get(m).map_or(0.0, |c| c.conversions) * 10.0).round() / 10.0).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        },
        "funnel": funnel.steps.iter().zip(&funnel.total.reached).map(|(s, n)| json!({"name": s, "value": n})).collect::<Vec<_>>(),
    })
    .to_string();
    let money = |x: Option<f64>| x.map_or_else(|| "–".into(), |v| tr.decimal(v, 2));
    let mut uplift_groups = Vec::new();
    let mut uplift_versus = Vec::new();
    for (name, u) in &uplift {
        for g in &u.report.groups {
            uplift_groups.push(UpliftGroup {
                journey: name.clone(),
                group: group_label(tr, &g.group),
                values: vec![
                    tr.number(g.entered),
                    rate(tr, g.conversion_rate),
                    tr.number(g.orders),
                    tr.decimal(g.revenue, 2),
                    money(g.revenue_per_entrant),
                ],
            });
        }
        for v in &u.report.comparisons {
            let c = v.conversions.as_ref();
            uplift_versus.push(UpliftVersus {
                journey: name.clone(),
                group: group_label(tr, &v.group),
                against: group_label(tr, &v.against),
                uplift: c.map_or_else(|| "–".into(), |c| format!("{:+.1} pp", c.uplift * 100.0)),
                p_value: c.map_or_else(|| "–".into(), |c| format!("{:.3}", c.p_value)),
                incremental_revenue: money(v.revenue.map(|r| r.incremental)),
                underpowered: c.is_none_or(|c| c.underpowered),
            });
        }
    }
    let choices = BREAKDOWNS
        .iter()
        .map(|(b, label)| Choice {
            value: b.as_str(),
            label: tr.t(label),
            selected: *b == by,
        })
        .collect();
    render(Page {
        c: session.chrome(),
        export: format!("from={}&to={}&by={}", kpis.from, kpis.to, by.as_str()),
        from: kpis.from.clone(),
        to: kpis.to.clone(),
        error,
        choices,
        totals,
        chart,
        kpis: kpi_rows,
        models: MODELS
            .iter()
            .map(|m| tr.t(&format!("m_model_{m}")))
            .collect(),
        attribution: attribution_rows,
        funnel: funnel_rows,
        median: funnel.total.median_seconds_to_convert.map(duration),
        uplift_groups,
        uplift_versus,
    })
}

/// A reading of the log this recent is good enough for the page: moving between breakdowns
/// and ranges does not read the log again for every new event.
const FRESH_ENOUGH_MS: i64 = 60_000;

/// How long the page waits for a reading of the log before it shows its progress instead.
const WAIT_FOR_READING: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Template)]
#[template(path = "measure_reading.html")]
struct ReadingPage {
    c: Chrome,
    /// The page's address, to come back to.
    again: String,
    query: String,
    percent: Option<String>,
    permille: u32,
    detail: Option<String>,
}

#[derive(Template)]
#[template(path = "measure_progress.html")]
struct ReadingProgress {
    c: Chrome,
    query: String,
    percent: Option<String>,
    permille: u32,
    detail: Option<String>,
}

impl MeasureQuery {
    /// The page's query, with only the characters dates and breakdown names use.
    fn query(&self) -> String {
        [
            ("from", self.range.from.as_deref()),
            ("to", self.range.to.as_deref()),
            ("by", self.by.as_deref()),
        ]
        .iter()
        .filter_map(|(k, v)| {
            v.map(|v| {
                let v: String = v
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                    .collect();
                format!("{k}={v}")
            })
        })
        .collect::<Vec<_>>()
        .join("&")
    }
}

/// How far a reading is: `45.0%`, its thousandths for the progress bar, and `1,234 events
/// read of 2,345`.
fn progress_figures(
    tr: Tr,
    p: Option<&measure::Progress>,
) -> (Option<String>, u32, Option<String>) {
    match p {
        Some(p) => (
            Some(tr.percent(p.fraction())),
            (p.fraction() * 1000.0).round() as u32,
            Some(format!(
                "{} {} {}",
                tr.number(p.done),
                tr.t(match p.phase {
                    measure::Phase::Owners => "m_reading_owners",
                    measure::Phase::Events => "m_reading_events",
                }),
                tr.number(p.total)
            )),
        ),
        None => (None, 0, None),
    }
}

/// The page while the log is being read: how far it is, updated every two seconds, and the
/// page itself once the reading is done.
fn reading(c: Chrome, q: &MeasureQuery, progress: Option<measure::Progress>) -> Response {
    render(reading_page(c, q, progress.as_ref()))
}

fn reading_page(c: Chrome, q: &MeasureQuery, progress: Option<&measure::Progress>) -> ReadingPage {
    let (percent, permille, detail) = progress_figures(c.tr, progress);
    let query = q.query();
    ReadingPage {
        c,
        again: format!("/console/measure?{query}"),
        query,
        percent,
        permille,
        detail,
    }
}

/// The progress of the reading under way; once there is none, the page (`HX-Redirect`).
pub(crate) async fn reading_progress(
    State(state): State<Arc<AppState>>,
    session: Session,
    Query(q): Query<MeasureQuery>,
) -> Response {
    let status = state.measure.status(&session.actor().workspace);
    let query = q.query();
    match status.reading {
        Some(p) => {
            let c = session.chrome();
            let (percent, permille, detail) = progress_figures(c.tr, Some(&p));
            render(ReadingProgress {
                c,
                query,
                percent,
                permille,
                detail,
            })
        }
        None => {
            let mut r = axum::http::StatusCode::NO_CONTENT.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("/console/measure?{query}")) {
                r.headers_mut().insert("HX-Redirect", v);
            }
            r
        }
    }
}

/// A group of a journey's runs, in the reader's language.
fn group_label(tr: Tr, group: &str) -> String {
    match group {
        "treatment" => tr.t("treated").to_string(),
        "holdout" => tr.t("holdout").to_string(),
        "global control" => tr.t("global_control").to_string(),
        other => other.to_string(),
    }
}

/// A group of a journey's runs and what its customers did.
struct UpliftGroup {
    journey: String,
    group: String,
    values: Vec<String>,
}

/// A treated group against a control group.
struct UpliftVersus {
    journey: String,
    group: String,
    against: String,
    uplift: String,
    p_value: String,
    incremental_revenue: String,
    underpowered: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::i18n::Lang;

    /// While the log is read, the page says how far, polls for more, and keeps the query
    /// (without what a query should not hold).
    #[test]
    fn the_reading_page_shows_its_progress_and_comes_back() {
        let q = MeasureQuery {
            range: RangeQuery {
                from: Some("2026-11-01".into()),
                to: Some("2026-11-30\"><script>".into()),
            },
            by: Some("shop".into()),
        };
        let progress = measure::Progress {
            phase: measure::Phase::Events,
            done: 250_000,
            total: 1_000_000,
            started_at: 0,
        };
        let c = Chrome::anonymous(Lang::Fr, "/console/measure".into());
        let html = reading_page(c, &q, Some(&progress)).render().unwrap();
        assert!(
            html.contains("id=\"reading-percent\">62,5\u{202f}%</span>"),
            "{html}"
        );
        assert!(
            html.contains("250\u{202f}000 événements lus, sur 1\u{202f}000\u{202f}000"),
            "{html}"
        );
        assert!(
            html.contains("<progress max=\"1000\" value=\"625\""),
            "{html}"
        );
        assert!(html.contains(
            "hx-get=\"/console/measure/reading?from=2026-11-01&#38;to=2026-11-30script&#38;by=shop\""
        ), "{html}");
        assert!(html.contains("hx-trigger=\"every 2s\""));
        assert!(!html.contains("<script>") && !html.contains("??missing??"));
        let c = Chrome::anonymous(Lang::En, "/console/measure".into());
        let html = reading_page(c, &q, None).render().unwrap();
        assert!(html.contains("Reading the event log…"), "{html}");
    }
}
