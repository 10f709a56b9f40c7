//! Audiences: the list with sizes, the editor with live validation, an audience with its
//! computation's progress and its members.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use parcours_api::AppState;
use parcours_service::dashboard::{self, DayRange};
use parcours_service::definitions::{self, AudienceInput};
use parcours_service::ServiceError;
use parcours_store::Definition;
use serde::Deserialize;
use serde_json::Value;

use crate::i18n::Tr;
use crate::pages::{blocking, render, see_other, service_problem, Chrome, Session};

/// Members per page.
const MEMBERS_PAGE: usize = 50;

pub(crate) struct AudienceRow {
    pub id: String,
    pub name: String,
    pub size: String,
    pub definition: String,
    pub progress: Option<String>,
    /// Its size at the end of each of the last 30 days, as a line.
    pub trend: Trend,
}

/// A sparkline: the points of a polyline in a 120 × 28 box, and what it says in words.
pub(crate) struct Trend {
    pub points: String,
    pub label: String,
}

/// Days a trend covers.
const TREND_DAYS: i64 = 30;

fn trend(tr: crate::Tr, values: &[i64]) -> Trend {
    let (lo, hi) = (
        values.iter().copied().min().unwrap_or(0),
        values.iter().copied().max().unwrap_or(0),
    );
    let span = (hi - lo).max(1) as f64;
    let step = 120.0 / (values.len().max(2) - 1) as f64;
    let points = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let y = 26.0 - 24.0 * (v - lo) as f64 / span;
            format!("{:.1},{:.1}", i as f64 * step, y)
        })
        .collect::<Vec<_>>()
        .join(" ");
    let n = |v: Option<&i64>| tr.number(v.copied().unwrap_or(0).max(0) as u64);
    Trend {
        points,
        label: format!(
            "{}: {} → {}",
            tr.t("trend_30"),
            n(values.first()),
            n(values.last())
        ),
    }
}

/// Where a definition does not read: the message, and its line split at the column so the
/// page can mark the place.
pub(crate) struct Mistake {
    pub message: String,
    pub line: usize,
    pub column: usize,
    pub before: String,
    pub at: String,
    pub after: String,
}

fn mistake(text: &str) -> Option<Mistake> {
    let e = definitions::check_audience(text).err()?;
    let line = text.lines().nth(e.line.saturating_sub(1)).unwrap_or("");
    let chars: Vec<char> = line.chars().collect();
    let col = e.column.saturating_sub(1).min(chars.len());
    let at_end = col >= chars.len();
    Some(Mistake {
        message: e.message.clone(),
        line: e.line,
        column: e.column,
        before: chars[..col].iter().collect(),
        at: if at_end {
            " ".into()
        } else {
            chars[col].to_string()
        },
        after: if at_end {
            String::new()
        } else {
            chars[col + 1..].iter().collect()
        },
    })
}

fn progress(tr: Tr, d: &Definition) -> Option<String> {
    (d.computed_version < d.version).then(|| {
        format!(
            "{} {} / {}",
            tr.t("computing"),
            tr.number(d.done),
            tr.number(d.total)
        )
    })
}

fn text_of(d: &Definition) -> String {
    d.doc
        .get("condition")
        .and_then(|c| serde_json::from_value::<parcours_core::audience::Condition>(c.clone()).ok())
        .map(|c| c.to_string())
        .unwrap_or_default()
}

fn name_of(d: &Definition) -> String {
    d.doc
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

#[derive(Template)]
#[template(path = "audiences.html")]
struct Audiences {
    c: Chrome,
    rows: Vec<AudienceRow>,
    form: NewAudience,
    editor: bool,
}

#[derive(Default, Deserialize)]
pub(crate) struct NewAudience {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub definition: String,
    #[serde(default)]
    pub csrf: String,
    #[serde(skip)]
    pub error: Option<String>,
    #[serde(skip)]
    pub mistake: Option<Mistake>,
}

async fn list(state: &Arc<AppState>, session: &Session, form: NewAudience) -> Response {
    let (store, actor) = (state.engine.store().clone(), session.actor());
    let tr = session.tr();
    let range = DayRange::last(TREND_DAYS, state.engine.now());
    let found = blocking(move || {
        let all = definitions::audiences(store.as_ref(), &actor)?;
        let sizes: Vec<(String, u64)> = all.iter().map(|(d, n)| (d.id.clone(), *n)).collect();
        let trends = dashboard::audience_sizes(store.as_ref(), &actor, &sizes, range)?;
        Ok((all, trends))
    })
    .await;
    match found {
        Ok((all, trends)) => render(Audiences {
            c: session.chrome(),
            rows: all
                .iter()
                .map(|(d, size)| AudienceRow {
                    id: d.id.clone(),
                    name: name_of(d),
                    size: tr.number(*size),
                    definition: text_of(d),
                    progress: progress(tr, d),
                    trend: trend(tr, trends.get(&d.id).map_or(&[][..], |v| &v[..])),
                })
                .collect(),
            form,
            editor: session.editor(),
        }),
        Err(e) => service_problem(session.chrome(), e),
    }
}

pub(crate) async fn audiences(State(state): State<Arc<AppState>>, session: Session) -> Response {
    list(&state, &session, NewAudience::default()).await
}

pub(crate) async fn create(
    State(state): State<Arc<AppState>>,
    session: Session,
    Form(mut form): Form<NewAudience>,
) -> Response {
    if let Some(r) = session.refusal(&form.csrf) {
        return r;
    }
    let (store, actor, now) = (
        state.engine.store().clone(),
        session.actor(),
        state.engine.now(),
    );
    let (id, input) = (
        form.id.trim().to_string(),
        AudienceInput {
            name: form.name.trim().to_string(),
            description: String::new(),
            definition: Some(form.definition.clone()),
            condition: None,
        },
    );
    let wanted = id.clone();
    let saved =
        blocking(move || definitions::create_audience(store.as_ref(), &actor, &wanted, input, now))
            .await;
    match saved {
        Ok(_) => see_other(&format!("/console/audiences/{id}")),
        Err(ServiceError::Forbidden(m)) => {
            service_problem(session.chrome(), ServiceError::Forbidden(m))
        }
        Err(e) => {
            form.mistake = mistake(&form.definition);
            form.error = Some(e.to_string());
            let mut r = list(&state, &session, form).await;
            *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            r
        }
    }
}

#[derive(Template)]
#[template(path = "audience_check.html")]
struct Check {
    c: Chrome,
    mistake: Option<Mistake>,
    reads: String,
}

#[derive(Deserialize)]
pub(crate) struct CheckQuery {
    #[serde(default)]
    definition: String,
}

/// Live validation: where the text does not read, or how it reads.
pub(crate) async fn check(session: Session, Query(q): Query<CheckQuery>) -> Response {
    let reads = definitions::check_audience(&q.definition).unwrap_or_default();
    render(Check {
        c: session.chrome(),
        mistake: if q.definition.trim().is_empty() {
            None
        } else {
            mistake(&q.definition)
        },
        reads,
    })
}

#[derive(Template)]
#[template(
    source = "<p id=\"a-estimate\" aria-live=\"polite\" class=\"{{ class }}\">{{ text }}</p>",
    ext = "html"
)]
struct EstimateView {
    class: &'static str,
    text: String,
}

/// How large a draft audience would be (a fragment for the editor).
pub(crate) async fn estimate(
    State(state): State<Arc<AppState>>,
    session: Session,
    Query(q): Query<CheckQuery>,
) -> Response {
    let (store, actor, now) = (
        state.engine.store().clone(),
        session.actor(),
        state.engine.now(),
    );
    let text = q.definition.clone();
    let tr = session.tr();
    let found =
        blocking(move || definitions::estimate_audience(store.as_ref(), &actor, &text, now)).await;
    render(match found {
        Ok(e) if e.exact => EstimateView {
            class: "ok",
            text: format!("{} {}", tr.t("estimate_exact"), tr.number(e.size)),
        },
        Ok(e) => EstimateView {
            class: "ok",
            text: format!(
                "{} {} ({} {} {})",
                tr.t("estimate_about"),
                tr.number(e.size),
                tr.number(e.matched),
                tr.t("estimate_of"),
                tr.number(e.sampled)
            ),
        },
        Err(e) => EstimateView {
            class: "error",
            text: e.to_string(),
        },
    })
}

#[derive(Template)]
#[template(path = "audience.html")]
struct AudiencePage {
    c: Chrome,
    id: String,
    name: String,
    definition: String,
    size: String,
    progress: Option<String>,
    members: Vec<(String, String)>,
    next: Option<String>,
    destinations: Vec<DestinationRow>,
}

/// A destination that sends an audience's changes, and how its delivery goes.
pub(crate) struct DestinationRow {
    pub id: String,
    pub name: String,
    pub host: String,
    pub state: String,
    pub delivered: String,
    pub pending: String,
    pub dead: String,
    pub last_error: String,
}

pub(crate) fn destination_rows(
    state: &AppState,
    tr: crate::Tr,
    list: &[(Definition, parcours_engine::destinations::DestinationDoc)],
) -> Vec<DestinationRow> {
    list.iter()
        .map(|(d, doc)| {
            let status = state.engine.delivery(&d.workspace_id, &d.id).ok().flatten();
            let n = |v: Option<u64>| v.map(|v| tr.number(v)).unwrap_or_default();
            DestinationRow {
                id: d.id.clone(),
                name: doc.name.clone(),
                host: parcours_engine::outbound::shown_host(&doc.url),
                state: status.as_ref().map_or("starting", |s| s.state).to_string(),
                delivered: n(status.as_ref().map(|s| s.delivered)),
                pending: n(status.as_ref().map(|s| s.pending)),
                dead: n(status.as_ref().map(|s| s.dead)),
                last_error: status
                    .as_ref()
                    .and_then(|s| s.last_error.clone())
                    .unwrap_or_default(),
            }
        })
        .collect()
}

#[derive(Template)]
#[template(path = "audience_size.html")]
struct Size {
    c: Chrome,
    id: String,
    size: String,
    progress: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct MembersQuery {
    after: Option<String>,
}

pub(crate) async fn audience(
    State(state): State<Arc<AppState>>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<MembersQuery>,
) -> Response {
    let (store, actor) = (state.engine.store().clone(), session.actor());
    let tr = session.tr();
    let wanted = id.clone();
    let after = q.after.unwrap_or_default();
    let found = blocking(move || {
        let (d, size) = definitions::audience(store.as_ref(), &actor, &wanted)?;
        let members = definitions::members(store.as_ref(), &actor, &wanted, &after, MEMBERS_PAGE)?;
        let destinations = definitions::destinations_of(store.as_ref(), &actor, &wanted)?;
        Ok((d, size, members, destinations))
    })
    .await;
    match found {
        Ok((d, size, members, destinations)) => {
            let next = (members.len() == MEMBERS_PAGE)
                .then(|| members.last().map(|m| m.profile_id.clone()))
                .flatten();
            render(AudiencePage {
                c: session.chrome(),
                name: name_of(&d),
                definition: text_of(&d),
                size: tr.number(size),
                progress: progress(tr, &d),
                members: members
                    .iter()
                    .map(|m| (m.profile_id.clone(), tr.date(m.since)))
                    .collect(),
                next,
                destinations: destination_rows(&state, tr, &destinations),
                id,
            })
        }
        Err(e) => service_problem(session.chrome(), e),
    }
}

#[derive(Deserialize)]
pub(crate) struct ExportQuery {
    format: Option<String>,
}

/// An audience's members as a file (the API's export, with this session's role).
pub(crate) async fn export(
    State(state): State<Arc<AppState>>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<ExportQuery>,
) -> Response {
    let format = q.format.unwrap_or_else(|| "csv".into());
    let (store, actor) = (state.engine.store().clone(), session.actor());
    let (wanted, fmt) = (id.clone(), format.clone());
    let body =
        blocking(move || definitions::export(store.as_ref(), &actor, &wanted, &fmt, None)).await;
    match body {
        Ok(body) => {
            let (kind, ext) = if format == "ndjson" {
                ("application/x-ndjson", "ndjson")
            } else {
                ("text/csv; charset=utf-8", "csv")
            };
            // The id is `[a-z0-9_-]`: safe in a header as it is.
            let safe: String = id
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                .collect();
            let disposition = format!("attachment; filename=\"{safe}-{format}.{ext}\"");
            let mut r = body.into_response();
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
            if let Ok(v) = HeaderValue::from_str(&disposition) {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            r
        }
        Err(e) => service_problem(session.chrome(), e),
    }
}

#[derive(Deserialize)]
pub(crate) struct SizeQuery {
    #[serde(default)]
    was: String,
}

/// The size and the computation's progress (polled by the page while it computes; when the
/// computation ends, the page reloads to list the members).
pub(crate) async fn size(
    State(state): State<Arc<AppState>>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<SizeQuery>,
) -> Response {
    let (store, actor) = (state.engine.store().clone(), session.actor());
    let tr = session.tr();
    let wanted = id.clone();
    match blocking(move || definitions::audience(store.as_ref(), &actor, &wanted)).await {
        Ok((d, size)) => {
            let progress = progress(tr, &d);
            let done = progress.is_none() && q.was == "computing";
            let mut r = render(Size {
                c: session.chrome(),
                id,
                size: tr.number(size),
                progress,
            });
            if done {
                r.headers_mut()
                    .insert("hx-refresh", axum::http::HeaderValue::from_static("true"));
            }
            r
        }
        Err(e) => service_problem(session.chrome(), e),
    }
}

/// One condition of an explanation, indented by its depth.
pub(crate) struct Reason {
    pub depth: usize,
    pub condition: String,
    pub matched: bool,
    pub found: String,
}

fn flatten(v: &parcours_core::audience::Verdict, depth: usize, out: &mut Vec<Reason>) {
    out.push(Reason {
        depth,
        condition: v.condition.clone(),
        matched: v.matched,
        found: v.found.clone(),
    });
    for p in &v.parts {
        flatten(p, depth + 1, out);
    }
}

#[derive(Template)]
#[template(path = "explain.html")]
struct Explain {
    c: Chrome,
    id: String,
    profile: String,
    matches: bool,
    member: bool,
    next_change: String,
    reasons: Vec<Reason>,
}

/// Why a customer is or is not in an audience, condition by condition.
pub(crate) async fn explain(
    State(state): State<Arc<AppState>>,
    session: Session,
    Path((id, profile)): Path<(String, String)>,
) -> Response {
    let (store, actor, now) = (
        state.engine.store().clone(),
        session.actor(),
        state.engine.now(),
    );
    let tr = session.tr();
    let (a, p) = (id.clone(), profile.clone());
    match blocking(move || definitions::explain(store.as_ref(), &actor, &a, &p, now)).await {
        Ok(e) => {
            let mut reasons = Vec::new();
            flatten(&e.verdict, 0, &mut reasons);
            render(Explain {
                c: session.chrome(),
                id,
                profile: e.profile_id,
                matches: e.verdict.matched,
                member: e.member,
                next_change: e
                    .verdict
                    .next_change
                    .map(|t| tr.date(t))
                    .unwrap_or_default(),
                reasons,
            })
        }
        Err(e) => service_problem(session.chrome(), e),
    }
}

/// One request of a destination's delivery log.
pub(crate) struct LogRow {
    pub created: String,
    pub state: String,
    pub changes: String,
    pub attempts: String,
    pub settled: String,
    pub error: String,
}

#[derive(Template)]
#[template(path = "destination.html")]
struct DestinationPage {
    c: Chrome,
    id: String,
    name: String,
    host: String,
    audiences: Vec<String>,
    row: DestinationRow,
    log: Vec<LogRow>,
    next: Option<i64>,
}

#[derive(Deserialize)]
pub(crate) struct LogQuery {
    before: Option<i64>,
}

/// Requests of the delivery log per page.
const LOG_PAGE: usize = 50;

/// A destination: how its delivery goes, and its delivery log, newest first.
pub(crate) async fn destination(
    State(state): State<Arc<AppState>>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<LogQuery>,
) -> Response {
    let (store, actor) = (state.engine.store().clone(), session.actor());
    let wanted = id.clone();
    let found = blocking(move || {
        let d = parcours_service::definition(
            store.as_ref(),
            &actor,
            parcours_store::DefinitionKind::Destination,
            &wanted,
        )?;
        let doc: parcours_engine::destinations::DestinationDoc =
            serde_json::from_value(d.doc.clone()).map_err(|e| {
                ServiceError::Store(parcours_store::StoreError::Corrupt(format!(
                    "destination {wanted}: {e}"
                )))
            })?;
        let log = parcours_service::deliveries::page(
            store.as_ref(),
            &actor,
            &wanted,
            None,
            q.before,
            LOG_PAGE,
        )?;
        Ok((d, doc, log))
    })
    .await;
    let tr = session.tr();
    match found {
        Ok((d, doc, log)) => {
            let next = (log.len() == LOG_PAGE)
                .then(|| log.last().map(|r| r.id))
                .flatten();
            let audiences = doc.audiences.clone();
            let name = doc.name.clone();
            let host = parcours_engine::outbound::shown_host(&doc.url);
            let row = destination_rows(&state, tr, &[(d, doc)])
                .pop()
                .expect("one destination, one row");
            render(DestinationPage {
                c: session.chrome(),
                id,
                name,
                host,
                audiences,
                row,
                log: log
                    .iter()
                    .map(|r| LogRow {
                        created: tr.date(r.created_at),
                        state: r.state.as_str().to_string(),
                        changes: tr.number(u64::from(r.items)),
                        attempts: tr.number(u64::from(r.attempts)),
                        settled: r.settled_at.map(|at| tr.date(at)).unwrap_or_default(),
                        error: r.last_error.clone().unwrap_or_default(),
                    })
                    .collect(),
                next,
            })
        }
        Err(e) => service_problem(session.chrome(), e),
    }
}
