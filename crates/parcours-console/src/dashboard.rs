//! The dashboard: events per channel, new and merged profiles, audience entries and exits,
//! and messages and conversions per journey, per day over a date range (ECharts, with every
//! figure also in a table for keyboards, screen readers and people who want the numbers).

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use parcours_api::AppState;
use parcours_service::dashboard::{self, date, DayRange, Series};
use serde::Deserialize;
use serde_json::json;

use crate::pages::{blocking, render, service_problem, Chrome, Session};
use crate::Tr;

/// Ranges offered as one click, in days.
const PRESETS: [i64; 3] = [7, 30, 90];

pub(crate) struct Total {
    pub label: &'static str,
    pub value: String,
    pub id: &'static str,
}

pub(crate) struct DayRow {
    pub day: String,
    pub values: Vec<String>,
}

pub(crate) struct KeyRow {
    pub key: String,
    pub values: Vec<String>,
}

pub(crate) struct Preset {
    pub label: String,
    pub href: String,
    pub current: bool,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct Page {
    c: Chrome,
    from: String,
    to: String,
    error: Option<String>,
    presets: Vec<Preset>,
    totals: Vec<Total>,
    /// What the charts draw, as JSON (read by `dashboard.js`, through `charts.js`).
    chart: String,
    channels: Vec<String>,
    by_day: Vec<DayRow>,
    profiles: Vec<DayRow>,
    audiences: Vec<KeyRow>,
    journeys: Vec<KeyRow>,
}

#[derive(Deserialize)]
pub(crate) struct RangeQuery {
    pub from: Option<String>,
    pub to: Option<String>,
}

/// A day as the axis shows it: `30 Nov` / `30 nov.` (the date without its year and time).
fn short(tr: Tr, day: i64) -> String {
    let full = tr.date(parcours_store::tallies::start_of_day(day));
    full.split(' ').take(2).collect::<Vec<_>>().join(" ")
}

/// A value per day, summed over series.
fn per_day(list: &[Series], days: usize) -> Vec<i64> {
    let mut sum = vec![0; days];
    for s in list {
        for (i, v) in s.values.iter().enumerate() {
            sum[i] += v;
        }
    }
    sum
}

fn total(list: &[Series]) -> i64 {
    list.iter().map(|s| s.total).sum()
}

/// The range asked for, or the default one with the reason the asked one was refused.
pub(crate) fn range_or_default(q: &RangeQuery, now: i64) -> (DayRange, Option<String>) {
    match DayRange::parse(q.from.as_deref(), q.to.as_deref(), now) {
        Ok(r) => (r, None),
        Err(e) => (
            DayRange::last(dashboard::DEFAULT_DAYS, now),
            Some(e.to_string()),
        ),
    }
}

pub(crate) async fn page(
    State(state): State<Arc<AppState>>,
    session: Session,
    Query(q): Query<RangeQuery>,
) -> Response {
    let now = state.engine.now();
    let (range, error) = range_or_default(&q, now);
    let (store, actor) = (state.engine.store().clone(), session.actor());
    let found = blocking(move || dashboard::dashboard(store.as_ref(), &actor, range)).await;
    let d = match found {
        Ok(d) => d,
        Err(e) => return service_problem(session.chrome(), e),
    };
    let tr = session.tr();
    let n = |v: i64| tr.number(v.max(0) as u64);
    let days = d.days.len();
    let labels: Vec<String> = range.days().map(|day| short(tr, day)).collect();
    let entered = per_day(&d.entered, days);
    let exited = per_day(&d.exited, days);
    let converted = per_day(&d.converted, days);
    let chart = json!({
        "days": labels,
        "events": d.events.iter().map(|s| json!({"name": tr.channel(&s.key), "values": s.values})).collect::<Vec<_>>(),
        "profiles": [
            {"name": tr.t("dash_new_profiles"), "values": d.new_profiles.values},
            {"name": tr.t("dash_merges"), "values": d.merges.values},
        ],
        "audiences": [
            {"name": tr.t("dash_entered"), "values": entered},
            {"name": tr.t("dash_exited"), "values": exited.iter().map(|v| -v).collect::<Vec<_>>()},
        ],
        "journeys": {
            "names": d.journeys.iter().map(|j| j.journey.clone()).collect::<Vec<_>>(),
            "series": [
                {"name": tr.t("dash_sent"), "values": d.journeys.iter().map(|j| j.sent).collect::<Vec<_>>()},
                {"name": tr.t("dash_converted"), "values": d.journeys.iter().map(|j| j.converted).collect::<Vec<_>>()},
            ],
        },
    })
    .to_string();
    let totals = vec![
        Total {
            label: tr.t("dash_events"),
            value: n(total(&d.events)),
            id: "total-events",
        },
        Total {
            label: tr.t("dash_new_profiles"),
            value: n(d.new_profiles.total),
            id: "total-profiles",
        },
        Total {
            label: tr.t("dash_merges"),
            value: n(d.merges.total),
            id: "total-merges",
        },
        Total {
            label: tr.t("dash_entered"),
            value: n(total(&d.entered)),
            id: "total-entered",
        },
        Total {
            label: tr.t("dash_exited"),
            value: n(total(&d.exited)),
            id: "total-exited",
        },
        Total {
            label: tr.t("dash_sent"),
            value: n(total(&d.sent)),
            id: "total-sent",
        },
        Total {
            label: tr.t("dash_converted"),
            value: n(converted.iter().sum()),
            id: "total-converted",
        },
    ];
    let by_day = (0..days)
        .map(|i| DayRow {
            day: labels[i].clone(),
            values: d.events.iter().map(|s| n(s.values[i])).collect(),
        })
        .collect();
    let profiles = (0..days)
        .map(|i| DayRow {
            day: labels[i].clone(),
            values: vec![n(d.new_profiles.values[i]), n(d.merges.values[i])],
        })
        .collect();
    let mut audience_ids: Vec<&str> = d
        .entered
        .iter()
        .chain(&d.exited)
        .map(|s| s.key.as_str())
        .collect();
    audience_ids.sort_unstable();
    audience_ids.dedup();
    let of = |list: &[Series], key: &str| list.iter().find(|s| s.key == key).map_or(0, |s| s.total);
    let audiences = audience_ids
        .into_iter()
        .map(|a| KeyRow {
            key: a.to_string(),
            values: vec![n(of(&d.entered, a)), n(of(&d.exited, a))],
        })
        .collect();
    let journeys = d
        .journeys
        .iter()
        .map(|j| KeyRow {
            key: j.journey.clone(),
            values: vec![n(j.sent), n(j.converted), n(j.converted_holdout)],
        })
        .collect();
    let to = date(range.to);
    let presets = PRESETS
        .iter()
        .map(|days| {
            let r = DayRange::last(*days, now);
            Preset {
                label: tr.t(&format!("dash_last_{days}")).to_string(),
                href: format!("/console/dashboard?from={}&to={}", date(r.from), date(r.to)),
                current: r == range,
            }
        })
        .collect();
    render(Page {
        c: session.chrome(),
        from: d.from.clone(),
        to,
        error,
        presets,
        totals,
        chart,
        channels: d
            .events
            .iter()
            .map(|s| tr.channel(&s.key).to_string())
            .collect(),
        by_day,
        profiles,
        audiences,
        journeys,
    })
}
