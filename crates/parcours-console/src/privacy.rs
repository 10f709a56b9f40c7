//! Privacy: a customer's data exported or erased from her page (erasure after a confirmation
//! page), the workspace's requests with their deadlines and archives, the privacy settings
//! (IP addresses, precise locations, retention), and the audit log with its export. Admins
//! and agents see requests; only admins erase, change settings and read the audit log.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use parcours_api::AppState;
use parcours_core::privacy::{IpAddresses, PreciseLocation, PrivacySettings};
use parcours_service::{customers, privacy, ServiceError};
use serde::Deserialize;

use crate::pages::{blocking, render, see_other, service_problem, Chrome, CsrfForm, Session};

pub(crate) struct RequestRow {
    pub id: String,
    pub kind: &'static str,
    pub state: &'static str,
    pub received: String,
    pub deadline: String,
    pub done: String,
    pub archive: bool,
    pub extension: String,
}

/// A request as the console's tables show it.
pub(crate) fn request_row(tr: crate::Tr, r: &parcours_store::PrivacyRequest) -> RequestRow {
    RequestRow {
        id: r.id.clone(),
        kind: tr.t(&format!("req_{}", r.kind)),
        state: tr.t(&format!("req_state_{}", r.state)),
        received: tr.date(r.received_at),
        deadline: r.deadline.clone(),
        done: r.done_at.map(|d| tr.date(d)).unwrap_or_default(),
        archive: r.kind == privacy::ACCESS && r.state == "done",
        extension: r.extension_reason.clone().unwrap_or_default(),
    }
}

pub(crate) struct AuditRow {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
}

/// An option of a select.
pub(crate) struct Choice {
    pub value: &'static str,
    pub label: &'static str,
    pub selected: bool,
}

fn choices(tr: crate::Tr, prefix: &str, values: &[&'static str], current: &str) -> Vec<Choice> {
    values
        .iter()
        .map(|v| Choice {
            value: v,
            label: tr.t(&format!("{prefix}{v}")),
            selected: *v == current,
        })
        .collect()
}

/// A retention field of the form: its name, label key and days (empty: kept).
pub(crate) struct Days {
    pub name: &'static str,
    pub label: &'static str,
    pub value: String,
}

#[derive(Template)]
#[template(path = "privacy.html")]
struct PrivacyPage {
    c: Chrome,
    admin: bool,
    filed: Option<String>,
    saved: bool,
    error: Option<String>,
    requests: Vec<RequestRow>,
    /// What is kept of IP addresses and locations, in words.
    ip: &'static str,
    location: &'static str,
    ip_options: Vec<Choice>,
    location_options: Vec<Choice>,
    days: Vec<Days>,
    rules: String,
    audit: Vec<AuditRow>,
    older_before: Option<i64>,
}

#[derive(Deserialize, Default)]
pub(crate) struct PageQuery {
    filed: Option<String>,
    saved: Option<String>,
    before: Option<i64>,
}

fn ip_name(ip: IpAddresses) -> &'static str {
    match ip {
        IpAddresses::Keep => "keep",
        IpAddresses::Truncate => "truncate",
        IpAddresses::Drop => "drop",
    }
}

fn location_name(l: PreciseLocation) -> &'static str {
    match l {
        PreciseLocation::Keep => "keep",
        PreciseLocation::WithConsent => "with_consent",
        PreciseLocation::Drop => "drop",
    }
}

fn days_of(s: &PrivacySettings) -> Vec<Days> {
    let r = &s.retention;
    let v = |d: Option<u32>| d.map(|d| d.to_string()).unwrap_or_default();
    vec![
        Days {
            name: "events_days",
            label: "ret_events",
            value: v(r.events_days),
        },
        Days {
            name: "message_bodies_days",
            label: "ret_bodies",
            value: v(r.message_bodies_days),
        },
        Days {
            name: "messages_days",
            label: "ret_messages",
            value: v(r.messages_days),
        },
        Days {
            name: "quarantine_days",
            label: "ret_quarantine",
            value: v(r.quarantine_days),
        },
        Days {
            name: "delivery_logs_days",
            label: "ret_deliveries",
            value: v(r.delivery_logs_days),
        },
    ]
}

/// The rules by name and type, as the page shows them (`Product Viewed: 90 days`).
fn rules_of(s: &PrivacySettings) -> String {
    s.retention
        .events_by_name
        .iter()
        .map(|(n, d)| format!("“{n}”: {d}"))
        .chain(
            s.retention
                .events_by_type
                .iter()
                .map(|(t, d)| format!("{t}: {d}")),
        )
        .collect::<Vec<_>>()
        .join(", ")
}

async fn page_with(
    state: &Arc<AppState>,
    session: &Session,
    q: PageQuery,
    error: Option<(String, PrivacySettings)>,
) -> Response {
    let (store, actor) = (state.engine.store().clone(), session.actor());
    let admin = session.admin();
    let before = q.before;
    let loaded = blocking(move || {
        let requests = privacy::requests(store.as_ref(), &actor)?;
        let settings = privacy::settings(store.as_ref(), &actor)?;
        let audit = if admin {
            privacy::audit_log_newest(store.as_ref(), &actor, before, 100)?
        } else {
            Vec::new()
        };
        Ok((requests, settings, audit))
    })
    .await;
    let (requests, stored, audit) = match loaded {
        Ok(x) => x,
        Err(e) => return service_problem(session.chrome(), e),
    };
    let tr = session.chrome().tr;
    let (error, settings) = match error {
        Some((e, typed)) => (Some(e), typed),
        None => (None, stored),
    };
    let older_before = (audit.len() == 100)
        .then(|| audit.last().map(|e| e.id))
        .flatten();
    render(PrivacyPage {
        c: session.chrome(),
        admin,
        filed: q.filed.filter(|f| !f.is_empty()),
        saved: q.saved.is_some(),
        error,
        requests: requests.iter().map(|r| request_row(tr, r)).collect(),
        ip: tr.t(&format!("ip_{}", ip_name(settings.ip_addresses))),
        location: tr.t(&format!("loc_{}", location_name(settings.precise_location))),
        ip_options: choices(
            tr,
            "ip_",
            &["truncate", "drop", "keep"],
            ip_name(settings.ip_addresses),
        ),
        location_options: choices(
            tr,
            "loc_",
            &["with_consent", "drop", "keep"],
            location_name(settings.precise_location),
        ),
        days: days_of(&settings),
        rules: rules_of(&settings),
        audit: audit
            .into_iter()
            .map(|e| AuditRow {
                at: tr.date(e.at),
                actor: e.actor,
                action: e.action,
                target: e.target,
                detail: e.detail,
            })
            .collect(),
        older_before,
    })
}

/// The privacy page.
pub(crate) async fn page(
    State(state): State<Arc<AppState>>,
    session: Session,
    Query(q): Query<PageQuery>,
) -> Response {
    page_with(&state, &session, q, None).await
}

#[derive(Deserialize)]
pub(crate) struct SettingsForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    ip_addresses: String,
    #[serde(default)]
    precise_location: String,
    #[serde(default)]
    events_days: String,
    #[serde(default)]
    message_bodies_days: String,
    #[serde(default)]
    messages_days: String,
    #[serde(default)]
    quarantine_days: String,
    #[serde(default)]
    delivery_logs_days: String,
}

/// Puts what the form says into the settings, or says what does not read.
fn read_form(s: &mut PrivacySettings, form: &SettingsForm) -> Result<(), String> {
    s.ip_addresses = serde_json::from_value(serde_json::json!(form.ip_addresses))
        .map_err(|_| format!("`{}` is not keep, truncate or drop", form.ip_addresses))?;
    s.precise_location =
        serde_json::from_value(serde_json::json!(form.precise_location)).map_err(|_| {
            format!(
                "`{}` is not keep, with_consent or drop",
                form.precise_location
            )
        })?;
    let days = |v: &str| -> Result<Option<u32>, String> {
        let v = v.trim();
        if v.is_empty() {
            return Ok(None);
        }
        v.parse::<u32>()
            .map(Some)
            .map_err(|_| format!("`{v}` is not a number of days"))
    };
    let r = &mut s.retention;
    r.events_days = days(&form.events_days)?;
    r.message_bodies_days = days(&form.message_bodies_days)?;
    r.messages_days = days(&form.messages_days)?;
    r.quarantine_days = days(&form.quarantine_days)?;
    r.delivery_logs_days = days(&form.delivery_logs_days)?;
    Ok(())
}

/// Saves the settings the form shows; the rules by name and type, the holidays and the
/// preference page's consents are kept as they are.
pub(crate) async fn save_settings(
    State(state): State<Arc<AppState>>,
    session: Session,
    Form(form): Form<SettingsForm>,
) -> Response {
    if let Some(r) = session.refusal(&form.csrf) {
        return r;
    }
    let (store, actor, now) = (
        state.engine.store().clone(),
        session.actor(),
        state.engine.now(),
    );
    let name = session.token_name();
    // A refusal comes back with what was typed, to show it again.
    let saved = blocking(move || {
        let mut s = privacy::settings(store.as_ref(), &actor)?;
        if let Err(m) = read_form(&mut s, &form) {
            return Ok(Some((m, s)));
        }
        let doc = serde_json::to_string(&s).expect("settings serialise");
        match privacy::put_settings(store.as_ref(), &actor, &name, &doc, now) {
            Ok(_) => Ok(None),
            Err(ServiceError::Invalid { message, .. }) => Ok(Some((message, s))),
            Err(e) => Err(e),
        }
    })
    .await;
    match saved {
        Ok(None) => {
            state
                .engine
                .erased_list()
                .invalidate(&session.actor().workspace);
            see_other("/console/privacy?saved=1")
        }
        Ok(Some(refused)) => {
            let mut r = page_with(&state, &session, PageQuery::default(), Some(refused)).await;
            *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            r
        }
        Err(e) => service_problem(session.chrome(), e),
    }
}

/// An access request's archive, to download.
pub(crate) async fn archive(
    State(state): State<Arc<AppState>>,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    let (store, actor) = (state.engine.store().clone(), session.actor());
    let rid = id.clone();
    match blocking(move || privacy::archive(store.as_ref(), &actor, &rid)).await {
        Ok(zip) => (
            [
                (header::CONTENT_TYPE, "application/zip".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{id}.zip\""),
                ),
            ],
            zip,
        )
            .into_response(),
        Err(e) => service_problem(session.chrome(), e),
    }
}

/// The audit log as CSV (admins).
pub(crate) async fn audit_export(State(state): State<Arc<AppState>>, session: Session) -> Response {
    let (store, actor) = (state.engine.store().clone(), session.actor());
    let read = blocking(move || {
        let mut out = String::from("id,at,actor,action,target,detail\r\n");
        let mut after = 0;
        loop {
            let page = privacy::audit_log(store.as_ref(), &actor, after, 1000)?;
            for e in &page {
                let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
                out.push_str(&format!(
                    "{},{},{},{},{},{}\r\n",
                    e.id,
                    parcours_core::time::format_timestamp(e.at),
                    q(&e.actor),
                    q(&e.action),
                    q(&e.target),
                    q(&e.detail)
                ));
                after = e.id;
            }
            if page.len() < 1000 {
                return Ok(out);
            }
        }
    })
    .await;
    match read {
        Ok(csv) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"audit-log.csv\"",
                ),
            ],
            csv,
        )
            .into_response(),
        Err(e) => service_problem(session.chrome(), e),
    }
}

/// The identifier a request about this customer is filed with: her user id, else an email,
/// a phone, an anonymous id, else any (the request finds every profile merged with it).
fn identifier_of(c: &customers::Customer) -> Option<(String, String)> {
    let ids = &c.profile.identifiers;
    ["user_id", "email", "phone", "anonymous_id"]
        .iter()
        .find_map(|k| ids.iter().find(|i| i.kind == *k))
        .or_else(|| ids.iter().next())
        .map(|i| (i.kind.clone(), i.value.clone()))
}

async fn file(
    state: &Arc<AppState>,
    session: &Session,
    id: String,
    kind: &'static str,
) -> Response {
    let (store, actor, now) = (
        state.engine.store().clone(),
        session.actor(),
        state.engine.now(),
    );
    let name = session.token_name();
    let filed = blocking(move || {
        privacy::require_requests(&actor, kind)?;
        let c = customers::customer(store.as_ref(), &actor, &id)?;
        let (t, v) = identifier_of(&c).ok_or_else(|| {
            ServiceError::invalid("invalid_identifier", "this customer has no identifier left")
        })?;
        privacy::file_request(store.as_ref(), &actor, &name, kind, &t, &v, now)
    })
    .await;
    match filed {
        Ok(r) => {
            parcours_api::privacy::start(state, r.workspace_id.clone(), r.id.clone());
            see_other(&format!("/console/privacy?filed={}", r.id))
        }
        Err(e) => service_problem(session.chrome(), e),
    }
}

/// Files an access request for the customer (admins, agents).
pub(crate) async fn access(
    State(state): State<Arc<AppState>>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(r) = session.refusal(&form.csrf) {
        return r;
    }
    file(&state, &session, id, privacy::ACCESS).await
}

#[derive(Template)]
#[template(path = "erase.html")]
struct ErasePage {
    c: Chrome,
    id: String,
    name: String,
    identifiers: usize,
    events: String,
}

/// What an erasure will do, and the button (admins).
pub(crate) async fn erase_page(
    State(state): State<Arc<AppState>>,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    let (store, actor) = (state.engine.store().clone(), session.actor());
    let loaded = blocking(move || {
        actor.require_admin()?;
        customers::customer(store.as_ref(), &actor, &id)
    })
    .await;
    match loaded {
        Ok(c) => {
            let tr = session.chrome().tr;
            let p = &c.profile;
            let name = ["first_name", "firstName", "last_name", "lastName", "name"]
                .iter()
                .filter_map(|k| p.traits.get(*k).and_then(|t| t.value.as_str()))
                .collect::<Vec<_>>()
                .join(" ");
            render(ErasePage {
                c: session.chrome(),
                id: p.id.clone(),
                name,
                identifiers: c.identifiers.len(),
                events: tr.number(p.events),
            })
        }
        Err(e) => service_problem(session.chrome(), e),
    }
}

#[derive(Deserialize)]
pub(crate) struct EraseForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    confirm: String,
}

/// Files the erasure (admins), once the box is ticked.
pub(crate) async fn erase(
    State(state): State<Arc<AppState>>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<EraseForm>,
) -> Response {
    if let Some(r) = session.refusal(&form.csrf) {
        return r;
    }
    if form.confirm != "yes" {
        return service_problem(
            session.chrome(),
            ServiceError::invalid(
                "invalid_request",
                session.chrome().tr.t("erase_unconfirmed").to_string(),
            ),
        );
    }
    file(&state, &session, id, privacy::ERASURE).await
}
