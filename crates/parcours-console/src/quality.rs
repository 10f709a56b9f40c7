//! Data quality: how far behind the log profiles and audiences are, and the quarantine (each
//! event set aside with its reason, fixed and replayed, or discarded).

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Form;
use parcours_api::AppState;
use parcours_service::quarantine;
use parcours_service::ServiceError;
use parcours_store::QuarantineStatus;
use serde::Deserialize;

use crate::pages::{blocking, render, see_other, service_problem, Chrome, Session};

/// Entries per page.
const PAGE: usize = 50;

pub(crate) struct EntryRow {
    pub id: i64,
    pub when: String,
    pub code: String,
    pub reason: String,
    pub occurrences: String,
    pub source: String,
}

#[derive(Template)]
#[template(path = "quality.html")]
struct Quality {
    c: Chrome,
    status: &'static str,
    rows: Vec<EntryRow>,
    next: Option<i64>,
    unify_lag: String,
    audience_lag: String,
    sources: Vec<ArrivalRow>,
    channels: Vec<ArrivalRow>,
}

/// Events arrived from a source or on a channel.
pub(crate) struct ArrivalRow {
    pub key: String,
    pub name: String,
    pub today: String,
    pub yesterday: String,
    pub week: String,
    pub month: String,
}

fn arrival_rows(
    tr: crate::Tr,
    list: &[parcours_service::dashboard::Arrivals],
    channels: bool,
) -> Vec<ArrivalRow> {
    let n = |v: i64| tr.number(v.max(0) as u64);
    list.iter()
        .map(|a| ArrivalRow {
            key: a.key.clone(),
            name: if channels {
                tr.channel(&a.key).to_string()
            } else {
                a.name.clone()
            },
            today: n(a.today),
            yesterday: n(a.yesterday),
            week: n(a.week),
            month: n(a.month),
        })
        .collect()
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    status: Option<String>,
    after: Option<i64>,
}

pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    session: Session,
    Query(q): Query<ListQuery>,
) -> Response {
    let status = q
        .status
        .as_deref()
        .and_then(QuarantineStatus::parse)
        .unwrap_or(QuarantineStatus::Pending);
    let (store, actor, engine) = (
        state.engine.store().clone(),
        session.actor(),
        state.engine.clone(),
    );
    let tr = session.tr();
    let after = q.after.unwrap_or(0);
    let now = state.engine.now();
    let found = blocking(move || {
        // The quarantined events themselves are personal data: counts only for the others.
        let rows = if actor.may_read_personal_data() {
            quarantine::page(store.as_ref(), &actor, Some(status), after, PAGE)?
        } else {
            Vec::new()
        };
        let arrivals = parcours_service::dashboard::arrivals(store.as_ref(), &actor, now)?;
        let lag = |r: Result<i64, parcours_engine::EngineError>| {
            r.map_err(|e| ServiceError::Store(parcours_store::StoreError::Backend(e.to_string())))
        };
        let lags = (lag(engine.unify_lag())?, lag(engine.audience_lag())?);
        Ok((rows, lags, arrivals))
    })
    .await;
    match found {
        Ok((rows, (unify, audiences), (sources, channels))) => render(Quality {
            sources: arrival_rows(tr, &sources, false),
            channels: arrival_rows(tr, &channels, true),
            c: session.chrome(),
            status: status.as_str(),
            next: (rows.len() == PAGE)
                .then(|| rows.last().map(|e| e.id))
                .flatten(),
            rows: rows
                .iter()
                .map(|e| EntryRow {
                    id: e.id,
                    when: tr.date(e.last_seen),
                    code: e.code.clone(),
                    reason: e.reason.chars().take(160).collect(),
                    occurrences: tr.number(e.occurrences),
                    source: e.source_id.clone(),
                })
                .collect(),
            unify_lag: tr.number(unify.max(0) as u64),
            audience_lag: tr.number(audiences.max(0) as u64),
        }),
        Err(e) => service_problem(session.chrome(), e),
    }
}

#[derive(Template)]
#[template(path = "quarantined.html")]
struct Quarantined {
    c: Chrome,
    id: i64,
    code: String,
    reason: String,
    status: String,
    first: String,
    last: String,
    occurrences: String,
    sources: String,
    body: String,
    error: Option<String>,
}

fn entry_page(
    session: &Session,
    e: &parcours_store::QuarantineEntry,
    body: String,
    error: Option<String>,
) -> Response {
    let tr = session.tr();
    render(Quarantined {
        c: session.chrome(),
        id: e.id,
        code: e.code.clone(),
        reason: e.reason.clone(),
        status: e.status.as_str().to_string(),
        first: tr.date(e.received_at),
        last: tr.date(e.last_seen),
        occurrences: tr.number(e.occurrences),
        sources: e.sources.join(", "),
        body,
        error,
    })
}

/// The body as an editor shows it: indented when it is JSON.
fn pretty(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| body.to_string())
}

pub(crate) async fn entry(
    State(state): State<Arc<AppState>>,
    session: Session,
    Path(id): Path<i64>,
) -> Response {
    let (store, actor) = (state.engine.store().clone(), session.actor());
    match blocking(move || quarantine::entry(store.as_ref(), &actor, id)).await {
        Ok(e) => {
            let body = pretty(&e.body);
            entry_page(&session, &e, body, None)
        }
        Err(e) => service_problem(session.chrome(), e),
    }
}

#[derive(Deserialize)]
pub(crate) struct ActForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    action: String,
}

/// Replays the event as corrected in the form, or discards it (admins).
pub(crate) async fn act(
    State(state): State<Arc<AppState>>,
    session: Session,
    Path(id): Path<i64>,
    Form(form): Form<ActForm>,
) -> Response {
    if let Some(r) = session.refusal(&form.csrf) {
        return r;
    }
    let (store, actor, now) = (
        state.engine.store().clone(),
        session.actor(),
        state.engine.now(),
    );
    let discard = form.action == "discard";
    let body = form.body.clone();
    let done = blocking(move || {
        if discard {
            quarantine::discard(store.as_ref(), &actor, id, now)
        } else {
            quarantine::replay(store.as_ref(), &actor, id, Some(&body), now).map(|_| ())
        }
    })
    .await;
    match done {
        Ok(()) => {
            let mut r = see_other("/console/quality");
            let what = if discard { "discard" } else { "replay" };
            if let Ok(v) = format!("quarantine/{{id}}/{what}").parse() {
                r.headers_mut().insert(parcours_api::AUDIT_TARGET, v);
            }
            r
        }
        Err(e @ (ServiceError::Unprocessable { .. } | ServiceError::Invalid { .. })) => {
            // Shown on the entry, the corrected text kept.
            let (store, actor) = (state.engine.store().clone(), session.actor());
            match blocking(move || quarantine::entry(store.as_ref(), &actor, id)).await {
                Ok(entry) => {
                    let mut r = entry_page(&session, &entry, form.body, Some(e.to_string()));
                    *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
                    r
                }
                Err(e) => service_problem(session.chrome(), e),
            }
        }
        Err(e) => service_problem(session.chrome(), e),
    }
}
