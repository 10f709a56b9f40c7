//! Settings: sources with the snippet to paste for each kind, and tokens with their roles
//! (create, revoke). A new write key or token secret is shown once, on the page that made it.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use parcours_api::AppState;
use parcours_service::keys;
use parcours_service::ServiceError;
use serde::Deserialize;

use crate::pages::{blocking, render, see_other, service_problem, Chrome, Session};

pub(crate) struct SourceRow {
    pub id: String,
    pub name: String,
    pub channel: String,
    pub created: String,
    pub snippet: String,
}

pub(crate) struct TokenRow {
    pub id: String,
    pub name: String,
    pub role: &'static str,
    pub created: String,
    pub expires: String,
    pub live: bool,
    /// The parts of the admin API it may call (empty: all its role allows).
    pub scopes: String,
}

/// A secret made by this request, shown once.
pub(crate) struct Made {
    pub what: &'static str,
    pub name: String,
    pub secret: String,
    pub snippet: String,
}

#[derive(Template)]
#[template(path = "settings.html")]
struct Settings {
    c: Chrome,
    workspace: String,
    sources: Vec<SourceRow>,
    tokens: Vec<TokenRow>,
    admin: bool,
    made: Option<Made>,
    error: Option<String>,
    rules: String,
    rules_saved: bool,
    channels: Vec<(&'static str, &'static str)>,
    roles: Vec<(&'static str, &'static str)>,
    senders: Vec<SenderRow>,
    tested: Option<String>,
    test_error: Option<String>,
    test_channel: String,
    test_address: String,
    preview: Option<PreviewView>,
    instance_admin: bool,
    webhooks_signed: bool,
}

/// A preview of identity rules, as the page shows it.
pub(crate) struct PreviewView {
    pub read: String,
    pub profiles_now: String,
    pub profiles_with: String,
    pub merges_now: String,
    pub merges_with: String,
    pub changed: String,
    pub examples: Vec<String>,
}

impl PreviewView {
    fn of(tr: crate::Tr, p: &parcours_service::identity::RulesPreview) -> Self {
        let n = |v: usize| tr.number(v as u64);
        let span = match (p.from, p.to) {
            (Some(a), Some(b)) => format!(" ({} – {})", tr.date(a), tr.date(b)),
            _ => String::new(),
        };
        PreviewView {
            read: format!("{} {}{span}.", tr.t("preview_read"), n(p.events)),
            profiles_now: n(p.now.profiles),
            profiles_with: n(p.with.profiles),
            merges_now: n(p.now.merges),
            merges_with: n(p.with.merges),
            changed: n(p.changed),
            examples: p.examples.iter().map(|e| e.join(" · ")).collect(),
        }
    }
}

/// A message channel as this node sends it.
pub(crate) struct SenderRow {
    pub channel: &'static str,
    pub name: &'static str,
    pub sender: &'static str,
    pub about: String,
    pub rate: String,
}

/// Where pages reach this node, as the request says (the proxy's headers first).
fn base_url(headers: &HeaderMap) -> String {
    let get = |h: &str| {
        headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let host = get("x-forwarded-host")
        .or_else(|| get(header::HOST.as_str()))
        .unwrap_or_else(|| "127.0.0.1:8750".into());
    let scheme = get("x-forwarded-proto").unwrap_or_else(|| "http".into());
    format!("{scheme}://{host}")
}

/// What to paste to send from a source of this channel.
fn snippet(channel: Option<&str>, base: &str, key: &str) -> String {
    let host = base.split_once("://").map_or(base, |(_, h)| h);
    let https = base.starts_with("https");
    match channel {
        Some("web") => format!(
            "import {{ AnalyticsBrowser }} from '@segment/analytics-next'\n\n\
             export const analytics = AnalyticsBrowser.load(\n  \
             {{ writeKey: '{key}', cdnURL: '{base}' }},\n  \
             {{ integrations: {{ 'Segment.io': {{ apiHost: '{host}/v1', protocol: '{}' }} }} }},\n)\n\
             analytics.track('Product Viewed', {{ sku: 'sku-1' }})",
            if https { "https" } else { "http" }
        ),
        Some("server") | None => format!(
            "import {{ Analytics }} from '@segment/analytics-node'\n\n\
             const analytics = new Analytics({{ writeKey: '{key}', host: '{base}' }})\n\
             analytics.track({{ userId: 'cus_1', event: 'Order Completed', properties: {{ total: 42 }} }})"
        ),
        Some(_) => format!(
            "curl -u '{key}:' {base}/v1/batch -H 'content-type: application/json' \\\n  \
             -d '{{\"batch\": [{{\"type\": \"track\", \"userId\": \"cus_1\", \"event\": \"Order Completed\"}}]}}'"
        ),
    }
}

/// What a settings page shows besides the lists: a secret just made, a refusal, the identity
/// rules as typed (after a refused save) or whether they were just saved.
#[derive(Default)]
struct Outcome {
    made: Option<Made>,
    error: Option<String>,
    rules: Option<String>,
    rules_saved: bool,
    /// The last test message: what became of it, or why it was refused, and what was typed.
    tested: Option<String>,
    test_error: Option<String>,
    test: Option<(String, String)>,
    preview: Option<PreviewView>,
}

async fn page(
    state: &Arc<AppState>,
    session: &Session,
    headers: &HeaderMap,
    made: Option<Made>,
    error: Option<String>,
) -> Response {
    let outcome = Outcome {
        made,
        error,
        ..Outcome::default()
    };
    page_with(state, session, headers, outcome).await
}

async fn page_with(
    state: &Arc<AppState>,
    session: &Session,
    headers: &HeaderMap,
    outcome: Outcome,
) -> Response {
    let Outcome {
        made,
        error,
        rules: typed_rules,
        rules_saved,
        tested,
        test_error,
        test,
        preview,
    } = outcome;
    let (test_channel, test_address) = test.unwrap_or_else(|| ("email".into(), String::new()));
    let senders = parcours_service::sending::channels(state.engine.senders(), &session.actor())
        .into_iter()
        .map(|v| SenderRow {
            channel: v.channel,
            name: session.tr().channel(v.channel),
            sender: v.sender,
            about: v.about,
            rate: if v.rate_per_second == 0 {
                session.tr().t("no_limit").to_string()
            } else {
                format!("{}/s", session.tr().number(u64::from(v.rate_per_second)))
            },
        })
        .collect();
    let (store, actor) = (state.engine.store().clone(), session.actor());
    let admin = session.admin();
    let tr = session.tr();
    let now = state.engine.now();
    let found = blocking(move || {
        let sources = keys::sources_of(store.as_ref(), &actor)?;
        let tokens = if admin {
            keys::tokens_of(store.as_ref(), &actor)?
        } else {
            Vec::new()
        };
        let rules = parcours_service::identity::identity_rules(store.as_ref(), &actor)?;
        Ok((sources, tokens, rules))
    })
    .await;
    let base = base_url(headers);
    match found {
        Ok((sources, tokens, rules)) => render(Settings {
            rules: typed_rules
                .unwrap_or_else(|| serde_json::to_string_pretty(&rules).unwrap_or_default()),
            rules_saved,
            c: session.chrome(),
            workspace: session.actor().workspace,
            sources: sources
                .iter()
                .map(|s| {
                    let channel = s.channel.map(|c| c.as_str());
                    SourceRow {
                        id: s.id.clone(),
                        name: s.name.clone(),
                        channel: channel.map(|c| tr.channel(c)).unwrap_or("").to_string(),
                        created: tr.date(s.created_at),
                        snippet: snippet(channel, &base, "wk_…"),
                    }
                })
                .collect(),
            tokens: tokens
                .iter()
                .map(|t| TokenRow {
                    id: t.id.clone(),
                    name: t.name.clone(),
                    role: tr.t(&format!("role_{}", t.role.as_str())),
                    created: tr.date(t.created_at),
                    expires: t.expires_at.map(|at| tr.date(at)).unwrap_or_default(),
                    live: t.expires_at.is_none_or(|at| at > now),
                    scopes: t.scopes.join(", "),
                })
                .collect(),
            admin,
            made,
            error,
            channels: parcours_core::Channel::ALL
                .iter()
                .map(|c| (c.as_str(), tr.channel(c.as_str())))
                .collect(),
            roles: ["read_only", "analyst", "agent", "marketer", "admin"]
                .iter()
                .map(|r| (*r, tr.t(&format!("role_{r}"))))
                .collect(),
            senders,
            tested,
            test_error,
            test_channel,
            test_address,
            preview,
            instance_admin: session.instance_admin(),
            webhooks_signed: parcours_service::sending::webhooks_signed(state.engine.senders()),
        }),
        Err(e) => service_problem(session.chrome(), e),
    }
}

#[derive(Deserialize)]
pub(crate) struct TestForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    address: String,
}

/// Sends a test message through a channel now, and shows what became of it.
pub(crate) async fn send_test(
    State(state): State<Arc<AppState>>,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<TestForm>,
) -> Response {
    if let Some(refused) = session.refusal(&form.csrf) {
        return refused;
    }
    let (engine, actor, now) = (state.engine.clone(), session.actor(), state.engine.now());
    let (channel, address) = (form.channel.clone(), form.address.clone());
    let sent = blocking(move || {
        parcours_service::sending::send_test(engine.senders(), &actor, &channel, &address, now)
    })
    .await;
    let tr = session.tr();
    let mut outcome = Outcome {
        test: Some((form.channel, form.address)),
        ..Outcome::default()
    };
    match sent {
        Ok(t) => {
            outcome.tested = Some(if t.sender == "capture" {
                format!("{} {}", tr.t("test_captured"), t.to)
            } else {
                format!("{} {} ({})", tr.t("test_sent"), t.to, t.sender)
            });
            page_with(&state, &session, &headers, outcome).await
        }
        Err(e @ ServiceError::Forbidden(_)) => service_problem(session.chrome(), e),
        Err(e) => {
            outcome.test_error = Some(e.to_string());
            refused_page(&state, &session, &headers, outcome).await
        }
    }
}

pub(crate) async fn settings(
    State(state): State<Arc<AppState>>,
    session: Session,
    headers: HeaderMap,
) -> Response {
    page(&state, &session, &headers, None, None).await
}

/// The page again, as the outcome says, answered `422`: what was sent was refused.
async fn refused_page(
    state: &Arc<AppState>,
    session: &Session,
    headers: &HeaderMap,
    outcome: Outcome,
) -> Response {
    let mut r = page_with(state, session, headers, outcome).await;
    if r.status() == StatusCode::OK {
        *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    r
}

/// A refusal (`Invalid`) shown on the page with what was typed (`rules`), anything else on
/// the problem page.
async fn refusal_or_problem(
    state: &Arc<AppState>,
    session: &Session,
    headers: &HeaderMap,
    e: ServiceError,
    rules: Option<String>,
) -> Response {
    match e {
        ServiceError::Invalid { message, .. } => {
            let outcome = Outcome {
                error: Some(message),
                rules,
                ..Outcome::default()
            };
            refused_page(state, session, headers, outcome).await
        }
        other => service_problem(session.chrome(), other),
    }
}

/// Identity rules as typed in the editor.
fn read_rules(text: &str) -> Result<parcours_core::rules::IdentityRulesConfig, ServiceError> {
    serde_json::from_str(text).map_err(|e| {
        ServiceError::invalid(
            "invalid_identity_rules",
            format!("the rules are not valid JSON rules: {e}"),
        )
    })
}

#[derive(Deserialize)]
pub(crate) struct SourceForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    channel: String,
}

pub(crate) async fn new_source(
    State(state): State<Arc<AppState>>,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<SourceForm>,
) -> Response {
    if let Some(r) = session.refusal(&form.csrf) {
        return r;
    }
    let (store, actor, now) = (
        state.engine.store().clone(),
        session.actor(),
        state.engine.now(),
    );
    let (name, channel) = (form.name.clone(), form.channel.clone());
    let made = blocking(move || {
        keys::create_source_as(store.as_ref(), &actor, &name, Some(&channel), now)
    })
    .await;
    match made {
        Ok((source, key)) => {
            let base = base_url(&headers);
            let snippet = snippet(source.channel.map(|c| c.as_str()), &base, &key);
            page(
                &state,
                &session,
                &headers,
                Some(Made {
                    what: "write_key",
                    name: source.name,
                    secret: key,
                    snippet,
                }),
                None,
            )
            .await
        }
        Err(e) => refusal_or_problem(&state, &session, &headers, e, None).await,
    }
}

#[derive(Deserialize)]
pub(crate) struct TokenForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    expires_in_days: String,
    /// Comma-separated scopes (empty: every part).
    #[serde(default)]
    scopes: String,
}

pub(crate) async fn new_token(
    State(state): State<Arc<AppState>>,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    if let Some(r) = session.refusal(&form.csrf) {
        return r;
    }
    let days = match form.expires_in_days.trim() {
        "" => None,
        d => match d.parse::<u32>() {
            Ok(n) => Some(n),
            Err(_) => {
                let outcome = Outcome {
                    error: Some(session.tr().t("bad_days").to_string()),
                    ..Outcome::default()
                };
                return refused_page(&state, &session, &headers, outcome).await;
            }
        },
    };
    let (store, actor, now) = (
        state.engine.store().clone(),
        session.actor(),
        state.engine.now(),
    );
    let (name, role) = (form.name.clone(), form.role.clone());
    let scopes: Vec<String> = form
        .scopes
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    let made = blocking(move || {
        keys::create_token_as(store.as_ref(), &actor, &name, &role, days, &scopes, now)
    })
    .await;
    match made {
        Ok((token, secret)) => {
            page(
                &state,
                &session,
                &headers,
                Some(Made {
                    what: "token_made",
                    name: token.name,
                    secret,
                    snippet: String::new(),
                }),
                None,
            )
            .await
        }
        Err(e) => refusal_or_problem(&state, &session, &headers, e, None).await,
    }
}

#[derive(Deserialize)]
pub(crate) struct RevokeForm {
    #[serde(default)]
    csrf: String,
}

pub(crate) async fn revoke_token(
    State(state): State<Arc<AppState>>,
    session: Session,
    Path(id): Path<String>,
    Form(form): Form<RevokeForm>,
) -> Response {
    if let Some(r) = session.refusal(&form.csrf) {
        return r;
    }
    let (store, actor, now) = (
        state.engine.store().clone(),
        session.actor(),
        state.engine.now(),
    );
    match blocking(move || keys::revoke_token_as(store.as_ref(), &actor, &id, now)).await {
        Ok(()) => {
            state.forget_credentials();
            see_other("/console/settings")
        }
        Err(e) => service_problem(session.chrome(), e),
    }
}

#[derive(Deserialize)]
pub(crate) struct RulesForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    rules: String,
}

/// Replaces the identity rules (admins); refused with the reason, the text kept.
pub(crate) async fn set_rules(
    State(state): State<Arc<AppState>>,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<RulesForm>,
) -> Response {
    if let Some(r) = session.refusal(&form.csrf) {
        return r;
    }
    let config = match read_rules(&form.rules) {
        Ok(c) => c,
        Err(e) => return refusal_or_problem(&state, &session, &headers, e, Some(form.rules)).await,
    };
    let (store, actor, now) = (
        state.engine.store().clone(),
        session.actor(),
        state.engine.now(),
    );
    let saved = blocking(move || {
        parcours_service::identity::set_identity_rules(store.as_ref(), &actor, &config, now)
    })
    .await;
    match saved {
        Ok(()) => {
            let outcome = Outcome {
                rules_saved: true,
                ..Outcome::default()
            };
            page_with(&state, &session, &headers, outcome).await
        }
        Err(e) => refusal_or_problem(&state, &session, &headers, e, Some(form.rules)).await,
    }
}

/// What identity rules as typed would change, on the latest events: nothing is saved.
pub(crate) async fn preview_rules(
    State(state): State<Arc<AppState>>,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<RulesForm>,
) -> Response {
    if let Some(r) = session.refusal(&form.csrf) {
        return r;
    }
    let config = match read_rules(&form.rules) {
        Ok(c) => c,
        Err(e) => return refusal_or_problem(&state, &session, &headers, e, Some(form.rules)).await,
    };
    let (store, actor) = (state.engine.store().clone(), session.actor());
    let found = blocking(move || {
        parcours_service::identity::preview_identity_rules(store.as_ref(), &actor, &config)
    })
    .await;
    match found {
        Ok(p) => {
            let outcome = Outcome {
                rules: Some(form.rules),
                preview: Some(PreviewView::of(session.tr(), &p)),
                ..Outcome::default()
            };
            page_with(&state, &session, &headers, outcome).await
        }
        Err(e) => refusal_or_problem(&state, &session, &headers, e, Some(form.rules)).await,
    }
}

#[derive(Deserialize)]
pub(crate) struct WorkspaceForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

/// Creates a workspace (the instance admin): its admin token and write key are shown once,
/// and this browser is signed in to it too, for the switcher.
pub(crate) async fn new_workspace(
    State(state): State<Arc<AppState>>,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<WorkspaceForm>,
) -> Response {
    if let Some(r) = session.refusal(&form.csrf) {
        return r;
    }
    let (store, actor, now) = (
        state.engine.store().clone(),
        session.actor(),
        state.engine.now(),
    );
    let name = form.name.clone();
    let made = blocking(move || {
        parcours_service::workspaces::create_workspace(store.as_ref(), &actor, &name, now)
    })
    .await;
    match made {
        Ok(p) => {
            let joined = crate::pages::with_other(&session, &p.admin_token);
            let mut r = page(
                &state,
                &session,
                &headers,
                Some(Made {
                    what: "workspace_made",
                    name: format!("{} ({})", p.workspace.name, p.workspace.id),
                    secret: p.admin_token,
                    snippet: format!("write key ({}): {}", p.source.name, p.write_key),
                }),
                None,
            )
            .await;
            if let Some(v) = joined {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
            r
        }
        Err(e) => refusal_or_problem(&state, &session, &headers, e, None).await,
    }
}
