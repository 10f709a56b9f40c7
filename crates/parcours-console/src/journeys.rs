//! Journeys: the list with live counts, and each journey's graph (its steps as nodes, with
//! how many runs wait at each and what each decided).

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Form;
use parcours_api::AppState;
use parcours_core::journey::{Action, Journey, Target};
use parcours_service::{journeys, ServiceError};
use serde::Deserialize;

use crate::messages::segment;
use crate::pages::{blocking, render, see_other, service_problem, Chrome, Session};

pub(crate) struct JourneyRow {
    pub id: String,
    pub name: String,
    pub status: String,
    pub version: u32,
    pub active: String,
    pub ended: String,
}

#[derive(Template)]
#[template(path = "journeys.html")]
struct Journeys {
    c: Chrome,
    rows: Vec<JourneyRow>,
    editor: bool,
}

#[derive(Deserialize)]
pub(crate) struct NewQuery {
    #[serde(default)]
    id: String,
}

/// To the editor of a new journey.
pub(crate) async fn new(
    session: Session,
    axum::extract::Query(q): axum::extract::Query<NewQuery>,
) -> Response {
    let _ = &session;
    see_other(&format!("/console/journeys/{}/edit", segment(q.id.trim())))
}

pub(crate) async fn list(State(state): State<Arc<AppState>>, session: Session) -> Response {
    let (store, actor) = (state.engine.store().clone(), session.actor());
    let tr = session.tr();
    let found = blocking(move || {
        let mut out = Vec::new();
        for v in journeys::list(store.as_ref(), &actor)? {
            let counts = journeys::run_counts(store.as_ref(), &actor, &v.journey_id)?;
            out.push((v, counts));
        }
        Ok(out)
    })
    .await;
    match found {
        Ok(all) => render(Journeys {
            c: session.chrome(),
            editor: session.editor(),
            rows: all
                .iter()
                .map(|(v, n)| JourneyRow {
                    name: journeys::read(&v.journey_id, &v.source)
                        .map(|j| j.name)
                        .unwrap_or_default(),
                    id: v.journey_id.clone(),
                    status: v.status.clone(),
                    version: v.version,
                    active: tr.number(n.active),
                    ended: tr.number(n.ended),
                })
                .collect(),
        }),
        Err(e) => service_problem(session.chrome(), e),
    }
}

/// A group of a journey's runs: a variant, the treated, or the holdout.
pub(crate) struct GroupRow {
    pub name: String,
    pub entered: String,
    pub converted: String,
    pub rate: String,
}

/// The treated against the holdout.
pub(crate) struct Uplift {
    pub uplift: String,
    pub relative: String,
    pub ci: String,
    pub p_value: String,
    pub significant: bool,
    pub underpowered: bool,
}

/// One step of the graph.
pub(crate) struct Node {
    pub id: String,
    pub kind: String,
    pub what: String,
    pub waiting: String,
    pub decisions: String,
    pub y: usize,
    /// Where it goes, as `(label, target)`, the end being `end`.
    pub edges: Vec<(String, String)>,
}

/// An arrow between two boxes: straight down to the next one, or around on the right.
pub(crate) struct Arrow {
    pub path: String,
    pub label: String,
    pub label_x: usize,
    pub label_y: usize,
}

const BOX_H: usize = 64;
const GAP: usize = 36;
const TOP: usize = 10;

fn target_name(t: &Target) -> String {
    match t {
        Target::Step(s) => s.clone(),
        Target::End => "end".into(),
    }
}

fn describe(a: &Action) -> String {
    match a {
        Action::Wait { ms } => parcours_core::journey::doc::format_duration(*ms),
        Action::WaitUntil {
            time, date_trait, ..
        } => {
            let at = time
                .map(|t| format!("{:02}:{:02}", t.hour(), t.minute()))
                .unwrap_or_default();
            match date_trait {
                Some(d) => format!("{d} {at}"),
                None => at,
            }
        }
        Action::WaitFor {
            event, timeout_ms, ..
        } => format!(
            "{event} ≤ {}",
            parcours_core::journey::doc::format_duration(*timeout_ms)
        ),
        Action::Branch { condition, .. } => condition.to_string(),
        Action::Split { variants } => variants
            .iter()
            .map(|v| format!("{} {}", v.name, v.weight))
            .collect::<Vec<_>>()
            .join(" / "),
        Action::Send(m) => m.channel.as_str().to_string(),
        Action::UpdateTrait { name, .. } => name.clone(),
        Action::Webhook { url, .. } => url.clone(),
        Action::AdAudience { destination, add } => {
            format!("{} {destination}", if *add { "+" } else { "−" })
        }
        Action::Exit => String::new(),
    }
}

fn edges(j: &Journey, i: usize) -> Vec<(String, String)> {
    let step = &j.steps[i];
    let following = || match &step.next {
        Some(t) => target_name(t),
        None => j
            .steps
            .get(i + 1)
            .map(|s| s.id.clone())
            .unwrap_or_else(|| "end".into()),
    };
    match &step.action {
        Action::WaitFor {
            on_event,
            on_timeout,
            ..
        } => vec![
            ("event".into(), target_name(on_event)),
            ("timeout".into(), target_name(on_timeout)),
        ],
        Action::Branch {
            then, otherwise, ..
        } => vec![
            ("yes".into(), target_name(then)),
            ("no".into(), target_name(otherwise)),
        ],
        Action::Split { variants } => variants
            .iter()
            .map(|v| (v.name.clone(), target_name(&v.next)))
            .collect(),
        Action::Exit => vec![(String::new(), "end".into())],
        _ => vec![(String::new(), following())],
    }
}

#[derive(Template)]
#[template(path = "journey.html")]
struct JourneyPage {
    c: Chrome,
    groups: Vec<GroupRow>,
    uplift: Option<Uplift>,
    editor: bool,
    id: String,
    name: String,
    status: String,
    version: u32,
    entered: String,
    active: String,
    converted: String,
    exited: String,
    completed: String,
    nodes: Vec<Node>,
    arrows: Vec<Arrow>,
    end_y: usize,
    height: usize,
    source: String,
}

pub(crate) async fn journey(
    State(state): State<Arc<AppState>>,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    let (store, actor) = (state.engine.store().clone(), session.actor());
    let tr = session.tr();
    let wanted = id.clone();
    let found = blocking(move || {
        let (v, _) = journeys::get(store.as_ref(), &actor, &wanted, None)?;
        let j = journeys::read(&wanted, &v.source)?;
        let (counts, stats) = journeys::counts(store.as_ref(), &actor, &wanted)?;
        Ok((v, j, counts, stats))
    })
    .await;
    let (v, j, counts, stats) = match found {
        Ok(x) => x,
        Err(e) => return service_problem(session.chrome(), e),
    };
    let waiting: BTreeMap<&str, u64> = counts
        .waiting
        .iter()
        .map(|(s, n)| (s.as_str(), *n))
        .collect();
    let mut decided: BTreeMap<&str, Vec<(String, u64)>> = BTreeMap::new();
    for (step, code, n) in &stats.decisions {
        if let Some(step) = step {
            decided
                .entry(step.as_str())
                .or_default()
                .push((code.clone(), *n));
        }
    }
    let y_of = |i: usize| TOP + i * (BOX_H + GAP);
    let nodes: Vec<Node> = j
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| Node {
            id: s.id.clone(),
            kind: s.action.kind().to_string(),
            what: describe(&s.action).chars().take(48).collect(),
            waiting: tr.number(waiting.get(s.id.as_str()).copied().unwrap_or(0)),
            decisions: decided
                .get(s.id.as_str())
                .map(|d| {
                    d.iter()
                        .map(|(code, n)| format!("{code} {}", tr.number(*n)))
                        .collect::<Vec<_>>()
                        .join(" · ")
                })
                .unwrap_or_default(),
            y: y_of(i),
            edges: edges(&j, i),
        })
        .collect();
    let index: BTreeMap<&str, usize> = j
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .chain(std::iter::once(("end", j.steps.len())))
        .collect();
    let mut arrows = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        for (k, (label, to)) in n.edges.iter().enumerate() {
            let Some(&t) = index.get(to.as_str()) else {
                continue;
            };
            let (from_y, to_y) = (y_of(i) + BOX_H, y_of(t));
            if t == i + 1 && k == 0 {
                arrows.push(Arrow {
                    path: format!("M 200 {from_y} L 200 {}", to_y - 2),
                    label: label.clone(),
                    label_x: 208,
                    label_y: from_y + GAP / 2 + 4,
                });
            } else {
                // Around the boxes on the right, further out for each further edge; into
                // the end's box on its right side.
                let x = 400 + 24 * (k + 1) + 12 * (i % 3);
                let mid = y_of(i) + BOX_H / 2;
                let (end, into) = if t == j.steps.len() {
                    (y_of(t) + 18, 262)
                } else {
                    (y_of(t) + BOX_H / 2, 382)
                };
                arrows.push(Arrow {
                    path: format!("M 380 {mid} L {x} {mid} L {x} {end} L {into} {end}"),
                    label: label.clone(),
                    label_x: x + 4,
                    label_y: mid.min(end) + mid.abs_diff(end) / 2 + 4,
                });
            }
        }
    }
    let end_y = y_of(j.steps.len());
    // Each group (variants, holdout), then the treated against the holdout.
    let pct = |x: f64| format!("{:.1} %", x * 100.0);
    let groups: Vec<GroupRow> = stats
        .groups
        .iter()
        .map(|g| GroupRow {
            name: if g.global_control {
                tr.t("global_control").to_string()
            } else if g.holdout {
                tr.t("holdout").to_string()
            } else {
                g.variant
                    .clone()
                    .unwrap_or_else(|| tr.t("treated").to_string())
            },
            entered: tr.number(g.entered),
            converted: tr.number(g.converted),
            rate: if g.entered > 0 {
                pct(g.converted as f64 / g.entered as f64)
            } else {
                "–".into()
            },
        })
        .collect();
    let sum = |holdout: bool| {
        stats
            .groups
            .iter()
            .filter(|g| g.holdout == holdout && !g.global_control)
            .fold((0, 0), |(c, n), g| (c + g.converted, n + g.entered))
    };
    let ((ct, nt), (ch, nh)) = (sum(false), sum(true));
    let uplift = parcours_core::stats::two_proportions(ct, nt, ch, nh).map(|c| Uplift {
        uplift: format!("{:+.1} pp", c.uplift * 100.0),
        relative: c
            .relative
            .map(|r| format!("{:+.0} %", r * 100.0))
            .unwrap_or_default(),
        ci: format!("{:+.1} … {:+.1} pp", c.ci_low * 100.0, c.ci_high * 100.0),
        p_value: format!("{:.4}", c.p_value),
        significant: c.p_value < 0.05,
        underpowered: c.underpowered,
    });
    let group = |f: fn(&parcours_store::GroupStats) -> u64| -> String {
        tr.number(stats.groups.iter().map(f).sum())
    };
    render(JourneyPage {
        c: session.chrome(),
        groups,
        uplift,
        editor: session.editor(),
        name: j.name.clone(),
        status: v.status.clone(),
        version: v.version,
        entered: group(|g| g.entered),
        active: tr.number(counts.active),
        converted: group(|g| g.converted),
        exited: group(|g| g.exited),
        completed: group(|g| g.completed),
        height: end_y + 50,
        end_y,
        nodes,
        arrows,
        source: v.source.clone(),
        id,
    })
}

/// What checking a document found: its problems at their place, or what saving it changes.
pub(crate) struct Checked {
    pub problems: Vec<(usize, usize, String)>,
    pub message: String,
    pub changed: bool,
    pub changes: Vec<String>,
    pub diff: Vec<(&'static str, String)>,
}

fn checked(result: Result<journeys::Saved, ServiceError>) -> Result<Checked, ServiceError> {
    let mut c = Checked {
        problems: Vec::new(),
        message: String::new(),
        changed: false,
        changes: Vec::new(),
        diff: Vec::new(),
    };
    match result {
        Ok(plan) => {
            c.changed = plan.changed;
            c.changes = plan.changes;
            c.diff = plan
                .diff
                .unwrap_or_default()
                .into_iter()
                .map(|l| {
                    let kind = match l.chars().next() {
                        Some('+') => "add",
                        Some('-') => "del",
                        _ => "same",
                    };
                    (kind, l)
                })
                .collect();
        }
        Err(ServiceError::Document { problems }) => {
            c.problems = problems
                .iter()
                .map(|p| (p.at.line, p.at.column, p.message.clone()))
                .collect();
        }
        Err(
            e @ (ServiceError::Invalid { .. }
            | ServiceError::Unprocessable { .. }
            | ServiceError::Conflict { .. }),
        ) => c.message = e.to_string(),
        Err(e) => return Err(e),
    }
    Ok(c)
}

#[derive(Template)]
#[template(path = "journey_edit.html")]
struct Edit {
    c: Chrome,
    id: String,
    document: String,
    check: Option<Checked>,
    exists: bool,
}

#[derive(Template)]
#[template(path = "journey_check.html")]
struct CheckFragment {
    c: Chrome,
    check: Option<Checked>,
}

/// A new journey starts from this (a draft: saving it sends nothing).
fn starter(id: &str) -> String {
    format!(
        "id: {id}\nname: {id}\nstatus: draft\nentry:\n  event: Signed Up\nsteps:\n  - id: hello\n    send:\n      channel: email\n      subject: \"Welcome, {{{{ traits.first_name | default: 'friend' }}}}\"\n      text: \"Thank you for joining us.\"\n"
    )
}

/// The document editor: the latest version (or a draft to start a new journey from).
pub(crate) async fn edit(
    State(state): State<Arc<AppState>>,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    if !session.editor() {
        return service_problem(
            session.chrome(),
            ServiceError::Forbidden("this needs the admin or marketer role".into()),
        );
    }
    let (store, actor) = (state.engine.store().clone(), session.actor());
    let wanted = id.clone();
    match blocking(
        move || match journeys::get(store.as_ref(), &actor, &wanted, None) {
            Ok((v, _)) => Ok(Some(v.source)),
            Err(ServiceError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        },
    )
    .await
    {
        Ok(source) => render(Edit {
            c: session.chrome(),
            exists: source.is_some(),
            document: source.unwrap_or_else(|| starter(&id)),
            id,
            check: None,
        }),
        Err(e) => service_problem(session.chrome(), e),
    }
}

#[derive(Deserialize)]
pub(crate) struct DocumentForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    document: String,
}

/// Checks the document as it is typed: its problems, or what saving it would change.
pub(crate) async fn check(
    State(state): State<Arc<AppState>>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<DocumentForm>,
) -> Response {
    if let Some(r) = session.refusal(&form.csrf) {
        return r;
    }
    let (store, actor) = (state.engine.store().clone(), session.actor());
    let planned =
        blocking(move || checked(journeys::plan(store.as_ref(), &actor, &id, &form.document)))
            .await;
    match planned {
        Ok(c) => render(CheckFragment {
            c: session.chrome(),
            check: Some(c),
        }),
        Err(e) => service_problem(session.chrome(), e),
    }
}

/// Saves the document as the next version; refused with its problems, the text kept.
pub(crate) async fn save(
    State(state): State<Arc<AppState>>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<DocumentForm>,
) -> Response {
    if let Some(r) = session.refusal(&form.csrf) {
        return r;
    }
    let (store, actor, now) = (
        state.engine.store().clone(),
        session.actor(),
        state.engine.now(),
    );
    let (wanted, document) = (id.clone(), form.document.clone());
    let saved = blocking(move || {
        Ok(journeys::save(
            store.as_ref(),
            &actor,
            &wanted,
            &document,
            now,
        ))
    })
    .await;
    match saved {
        Ok(Ok(_)) => see_other(&format!("/console/journeys/{}", segment(&id))),
        Ok(Err(ServiceError::Forbidden(m))) => {
            service_problem(session.chrome(), ServiceError::Forbidden(m))
        }
        Ok(Err(e)) => match checked(Err(e)) {
            Ok(c) => {
                let mut r = render(Edit {
                    c: session.chrome(),
                    exists: true,
                    document: form.document,
                    id,
                    check: Some(c),
                });
                *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
                r
            }
            Err(e) => service_problem(session.chrome(), e),
        },
        Err(e) => service_problem(session.chrome(), e),
    }
}

/// A simulation's figures, as shown.
pub(crate) struct SimView {
    pub customers: String,
    pub entered: String,
    pub holdout: String,
    pub converted: String,
    pub running: String,
    pub not_entered: Vec<(String, String)>,
    pub ended: Vec<(String, String)>,
    pub sent: Vec<(String, String)>,
    pub steps: Vec<(String, String)>,
    pub conflicts: Vec<(String, String, String)>,
}

#[derive(Template)]
#[template(path = "journey_simulate.html")]
struct Simulate {
    c: Chrome,
    id: String,
    from: String,
    to: String,
    error: Option<String>,
    sim: Option<SimView>,
}

#[derive(Deserialize)]
pub(crate) struct SimulateQuery {
    from: Option<String>,
    to: Option<String>,
}

/// A day (`2026-11-01`) or a moment, as the simulation window reads it.
fn moment(s: &str) -> Option<parcours_core::time::Millis> {
    let s = s.trim();
    if s.len() == 10 {
        parcours_core::time::parse_timestamp(&format!("{s}T00:00:00Z"))
    } else {
        parcours_core::time::parse_timestamp(s)
    }
}

/// Replays the journey's latest version over the stored events of a window, as if it had
/// been live: who would have entered, what would have gone out, who converted. Nothing is
/// saved or sent.
pub(crate) async fn simulate(
    State(state): State<Arc<AppState>>,
    session: Session,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<SimulateQuery>,
) -> Response {
    let tr = session.tr();
    let now = state.engine.now();
    let day =
        |t: parcours_core::time::Millis| parcours_core::time::format_timestamp(t)[..10].to_string();
    let (from_text, to_text) = (
        q.from.clone().unwrap_or_else(|| day(now - 30 * 86_400_000)),
        q.to.clone().unwrap_or_else(|| day(now + 86_400_000)),
    );
    let page = |sim: Option<SimView>, error: Option<String>| {
        render(Simulate {
            c: session.chrome(),
            id: id.clone(),
            from: from_text.clone(),
            to: to_text.clone(),
            error,
            sim,
        })
    };
    if q.from.is_none() && q.to.is_none() {
        return page(None, None);
    }
    let (Some(from), Some(to)) = (moment(&from_text), moment(&to_text)) else {
        let mut r = page(None, Some(tr.t("bad_window").to_string()));
        *r.status_mut() = StatusCode::BAD_REQUEST;
        return r;
    };
    let (store, actor) = (state.engine.store().clone(), session.actor());
    let wanted = id.clone();
    let ran = blocking(move || {
        let (v, _) = journeys::get(store.as_ref(), &actor, &wanted, None)?;
        journeys::simulate(store.as_ref(), &actor, &v.source, from, to, &mut |_| {})
    })
    .await;
    let pairs = |m: &std::collections::BTreeMap<String, u64>| -> Vec<(String, String)> {
        m.iter().map(|(k, n)| (k.clone(), tr.number(*n))).collect()
    };
    match ran {
        Ok(s) => page(
            Some(SimView {
                customers: tr.number(s.customers),
                entered: tr.number(s.entered),
                holdout: tr.number(s.holdout),
                converted: tr.number(s.converted),
                running: tr.number(s.running),
                not_entered: pairs(&s.not_entered),
                ended: pairs(&s.ended),
                sent: pairs(&s.sent),
                steps: s
                    .steps
                    .iter()
                    .map(|st| {
                        (
                            st.step.clone(),
                            st.decisions
                                .iter()
                                .map(|(code, n)| format!("{code} {}", tr.number(*n)))
                                .collect::<Vec<_>>()
                                .join(" · "),
                        )
                    })
                    .collect(),
                conflicts: s
                    .conflicts
                    .iter()
                    .map(|c| {
                        (
                            c.journey.clone(),
                            tr.number(c.customers),
                            tr.number(c.messages),
                        )
                    })
                    .collect(),
            }),
            None,
        ),
        Err(e @ (ServiceError::Invalid { .. } | ServiceError::Document { .. })) => {
            let mut r = page(None, Some(e.to_string()));
            *r.status_mut() = StatusCode::BAD_REQUEST;
            r
        }
        Err(e) => service_problem(session.chrome(), e),
    }
}

/// One run of hers with every decision taken and its reason.
pub(crate) struct RunView {
    pub journey: String,
    pub entered: String,
    pub state: &'static str,
    pub notes: Vec<(String, String, String, String)>,
}

#[derive(Template)]
#[template(path = "customer_runs.html")]
struct CustomerRuns {
    c: Chrome,
    profile: String,
    journey: String,
    runs: Vec<RunView>,
}

#[derive(Deserialize)]
pub(crate) struct RunsQuery {
    journey: Option<String>,
}

/// "Why did, or didn't, she get it?": her runs (of one journey, or all), each decision in
/// order with its reason.
pub(crate) async fn customer_runs(
    State(state): State<Arc<AppState>>,
    session: Session,
    Path(profile): Path<String>,
    axum::extract::Query(q): axum::extract::Query<RunsQuery>,
) -> Response {
    let (store, actor) = (state.engine.store().clone(), session.actor());
    let tr = session.tr();
    let journey = q.journey.clone().filter(|j| !j.is_empty());
    let (p, j) = (profile.clone(), journey.clone());
    match blocking(move || journeys::runs_of(store.as_ref(), &actor, &p, j.as_deref(), 50)).await {
        Ok(runs) => render(CustomerRuns {
            c: session.chrome(),
            profile,
            journey: journey.unwrap_or_default(),
            runs: runs
                .iter()
                .map(|(r, notes)| RunView {
                    journey: r.journey_id.clone(),
                    entered: tr.date(r.entered_at),
                    state: tr.run_state(r.active, r.outcome.as_deref()),
                    notes: notes
                        .iter()
                        .map(|n| {
                            (
                                tr.date(n.at),
                                n.step.clone().unwrap_or_default(),
                                n.code.clone(),
                                n.detail.clone(),
                            )
                        })
                        .collect(),
                })
                .collect(),
        }),
        Err(e) => service_problem(session.chrome(), e),
    }
}
