//! The console's pages: sessions, the language switch, customers and their 360 page.

use std::sync::Arc;

use askama::Template;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Form;
use parcours_api::AppState;
use parcours_core::Channel;
use parcours_service::{customers, keys};
use parcours_service::{Actor, ServiceError};
use parcours_store::{Role, StoredEvent, Token};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::i18n::{Lang, Tr};

use parcours_api::{cookie, CONSOLE_SESSION_COOKIE as SESSION_COOKIE};

const LANG_COOKIE: &str = "parcours_lang";
/// The tokens of the other workspaces this browser is signed in to (the switcher's).
const OTHERS_COOKIE: &str = "parcours_workspaces";
/// Workspaces one browser may hold besides the current one.
const MAX_OTHERS: usize = 8;
/// A session lasts a working day; signing in again starts a new one.
const SESSION_SECONDS: u64 = 12 * 3600;
/// Timeline events per page.
const TIMELINE_PAGE: usize = 50;
/// Customers per page of the list.
const CUSTOMERS_PAGE: usize = 50;

/// The page's language: the user's choice (a cookie), else her browser's.
fn lang_of(headers: &HeaderMap) -> Lang {
    cookie(headers, LANG_COOKIE)
        .and_then(Lang::parse)
        .unwrap_or_else(|| {
            Lang::from_accept(
                headers
                    .get(header::ACCEPT_LANGUAGE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or(""),
            )
        })
}

/// The CSRF token of a session: derived from its secret, so only a page that was given it
/// (by this console, in a form) knows it.
fn csrf_of(secret: &str) -> String {
    let digest = Sha256::digest(format!("parcours-console-csrf\0{secret}").as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// A request of a signed-in user.
pub(crate) struct Session {
    token: Token,
    secret: String,
    csrf: String,
    lang: Lang,
    path: String,
    /// The other workspaces this browser is signed in to: (workspace, its name, the secret).
    others: Vec<(String, String, String)>,
}

impl Session {
    pub(crate) fn tr(&self) -> Tr {
        Tr { lang: self.lang }
    }

    /// Admins manage sources, tokens and the quarantine.
    pub(crate) fn admin(&self) -> bool {
        self.token.role == Role::Admin
    }

    /// The instance admin token (it creates workspaces).
    pub(crate) fn instance_admin(&self) -> bool {
        self.token.instance_admin
    }

    /// Admins and agents file and read privacy requests.
    pub(crate) fn privacy(&self) -> bool {
        matches!(self.token.role, Role::Admin | Role::Agent)
    }

    /// The token's name (who did it, in the audit log).
    pub(crate) fn token_name(&self) -> String {
        self.token.name.clone()
    }

    /// Admins and marketers change audiences and journeys.
    pub(crate) fn editor(&self) -> bool {
        matches!(self.token.role, Role::Admin | Role::Marketer)
    }

    pub(crate) fn actor(&self) -> Actor {
        Actor {
            instance_admin: self.token.instance_admin,
            ..Actor::new(self.token.workspace_id.clone(), self.token.role)
        }
    }

    pub(crate) fn chrome(&self) -> Chrome {
        let tr = Tr { lang: self.lang };
        Chrome {
            tr,
            other: self.lang.other(),
            path: self.path.clone(),
            signed: Some(Signed {
                workspace: self.token.workspace_id.clone(),
                role: tr.t(&format!("role_{}", self.token.role.as_str())),
                csrf: self.csrf.clone(),
                admin: self.token.role == Role::Admin,
                others: self
                    .others
                    .iter()
                    .map(|(ws, name, _)| (ws.clone(), name.clone()))
                    .collect(),
            }),
        }
    }

    /// The refusal of a form that does not carry this session's CSRF token.
    pub(crate) fn refusal(&self, given: &str) -> Option<Response> {
        // Compared as hashes: the time taken says nothing about the token.
        if Sha256::digest(given.as_bytes()) == Sha256::digest(self.csrf.as_bytes()) {
            None
        } else {
            Some(problem(
                self.chrome(),
                StatusCode::FORBIDDEN,
                "forbidden",
                self.chrome().tr.t("bad_form").to_string(),
            ))
        }
    }
}

/// Where a page is, to come back to it (the language switch, signing in).
fn here(parts: &Parts) -> String {
    parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/console".into())
}

/// Only console pages are places to go back to (never another site).
fn safe_back(back: &str) -> &str {
    if back.starts_with("/console") && !back.starts_with("//") && !back.contains('\\') {
        back
    } else {
        "/console/dashboard"
    }
}

/// A `303 See Other` to a console page. A header carries only visible ASCII, so anything else
/// in `location` (a customer id in another script, a control character in a crafted `back`)
/// is percent-encoded; a place outside the console becomes the customers page.
pub(crate) fn see_other(location: &str) -> Response {
    let mut encoded = String::new();
    for c in safe_back(location).chars() {
        if c.is_ascii_graphic() {
            encoded.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                encoded.push_str(&format!("%{b:02X}"));
            }
        }
    }
    let mut r = StatusCode::SEE_OTHER.into_response();
    r.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(&encoded)
            .unwrap_or_else(|_| HeaderValue::from_static("/console/dashboard")),
    );
    r
}

/// A post whose `Origin` is another site's is refused, whatever it carries. The site is the
/// request's `Host`, or the one a proxy in front says it forwarded (`X-Forwarded-Host`).
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let Some((_, origin_host)) = origin.split_once("://") else {
        return false;
    };
    let origin_host = origin_host.trim_end_matches('/');
    [header::HOST.as_str(), "x-forwarded-host"]
        .iter()
        .any(|name| {
            headers
                .get(*name)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|host| host.split(',').any(|h| h.trim() == origin_host))
        })
}

impl FromRequestParts<Arc<AppState>> for Session {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let lang = lang_of(&parts.headers);
        let path = here(parts);
        let sign_in = || see_other(&format!("/console/sign-in?next={}", urlencoding(&path)));
        let Some(secret) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(sign_in());
        };
        let Ok(token) = parcours_api::admin_token(state, secret).await else {
            return Err(sign_in());
        };
        if parts.method == axum::http::Method::POST && !same_origin(&parts.headers) {
            let tr = Tr { lang };
            return Err(problem(
                Chrome::anonymous(lang, path.clone()),
                StatusCode::FORBIDDEN,
                "forbidden",
                tr.t("bad_form").to_string(),
            ));
        }
        let others = others_of(state, &parts.headers, &token).await;
        Ok(Session {
            csrf: csrf_of(secret),
            secret: secret.to_string(),
            token,
            lang,
            path,
            others,
        })
    }
}

/// Only what a token can be goes into a cookie.
fn plausible(secret: &str) -> bool {
    !secret.is_empty()
        && secret.len() <= 200
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The secrets of the other workspaces' tokens a browser holds (as they are: each is checked
/// when used).
fn other_secrets(headers: &HeaderMap) -> Vec<&str> {
    cookie(headers, OTHERS_COOKIE)
        .map(|v| {
            v.split('.')
                .filter(|s| plausible(s))
                .take(MAX_OTHERS)
                .collect()
        })
        .unwrap_or_default()
}

/// The other workspaces this browser may switch to: each token still valid, of another
/// workspace than the current one, once per workspace, with the workspace's name.
async fn others_of(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    current: &Token,
) -> Vec<(String, String, String)> {
    let mut found: Vec<(String, String)> = Vec::new();
    for secret in other_secrets(headers) {
        if let Ok(t) = parcours_api::admin_token(state, secret).await {
            if t.workspace_id != current.workspace_id
                && !found.iter().any(|(ws, _)| *ws == t.workspace_id)
            {
                found.push((t.workspace_id, secret.to_string()));
            }
        }
    }
    if found.is_empty() {
        return Vec::new();
    }
    let store = state.engine.store().clone();
    let ids: Vec<String> = found.iter().map(|(ws, _)| ws.clone()).collect();
    let names = tokio::task::spawn_blocking(move || {
        ids.iter()
            .map(|id| {
                store
                    .workspace(id)
                    .ok()
                    .flatten()
                    .map_or_else(|| id.clone(), |w| w.name)
            })
            .collect::<Vec<String>>()
    })
    .await
    .unwrap_or_default();
    found
        .into_iter()
        .enumerate()
        .map(|(i, (ws, secret))| {
            let name = names.get(i).cloned().unwrap_or_else(|| ws.clone());
            (ws, name, secret)
        })
        .collect()
}

fn session_cookie(secret: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={secret}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECONDS}"
    ))
    .ok()
}

/// The switcher's cookie holding `secrets` (none: the cookie goes).
fn others_cookie(secrets: &[&str]) -> Option<HeaderValue> {
    let secrets: Vec<&str> = secrets.iter().copied().take(MAX_OTHERS).collect();
    let max_age = if secrets.is_empty() {
        0
    } else {
        SESSION_SECONDS
    };
    HeaderValue::from_str(&format!(
        "{OTHERS_COOKIE}={}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age}",
        secrets.join(".")
    ))
    .ok()
}

fn urlencoding(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What every page shows around its content.
pub(crate) struct Chrome {
    pub tr: Tr,
    pub other: Lang,
    pub path: String,
    pub signed: Option<Signed>,
}

impl Chrome {
    pub(crate) fn anonymous(lang: Lang, path: String) -> Self {
        Chrome {
            tr: Tr { lang },
            other: lang.other(),
            path,
            signed: None,
        }
    }

    /// The language switch's link back to this page.
    pub fn switch(&self) -> String {
        format!(
            "/console/lang?to={}&back={}",
            self.other.code(),
            urlencoding(&self.path)
        )
    }
}

pub(crate) struct Signed {
    pub workspace: String,
    pub role: &'static str,
    pub csrf: String,
    pub admin: bool,
    /// The other workspaces to switch to: (id, name).
    pub others: Vec<(String, String)>,
}

pub(crate) fn render(t: impl Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a console page did not render");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page did not render").into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "problem.html")]
struct Problem {
    c: Chrome,
    title: &'static str,
    message: String,
}

fn problem(c: Chrome, status: StatusCode, title: &str, message: String) -> Response {
    let title = c.tr.t(title);
    let mut r = render(Problem { c, title, message });
    *r.status_mut() = status;
    r
}

pub(crate) fn service_problem(c: Chrome, e: ServiceError) -> Response {
    let (status, title) = match &e {
        ServiceError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
        ServiceError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        ServiceError::Invalid { .. } | ServiceError::Document { .. } => {
            (StatusCode::BAD_REQUEST, "error")
        }
        ServiceError::Conflict { .. } | ServiceError::OutOfStock { .. } => {
            (StatusCode::CONFLICT, "error")
        }
        ServiceError::Unprocessable { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "error"),
        ServiceError::Store(_) => {
            tracing::error!(error = %e, "a console page failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "error")
        }
    };
    problem(c, status, title, e.to_string())
}

/// Runs a service call on the blocking pool (it reads the store).
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(ServiceError::Store(parcours_store::StoreError::Backend(
            format!("a console task failed: {e}"),
        )))
    })
}

pub(crate) async fn home() -> Response {
    see_other("/console/dashboard")
}

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignIn {
    c: Chrome,
    next: String,
    error: Option<&'static str>,
    /// Signing in to another workspace, staying signed in to this one.
    add: bool,
}

#[derive(Deserialize)]
pub(crate) struct NextQuery {
    next: Option<String>,
    #[serde(default)]
    add: bool,
}

pub(crate) async fn sign_in_page(headers: HeaderMap, Query(q): Query<NextQuery>) -> Response {
    let next = safe_back(q.next.as_deref().unwrap_or("")).to_string();
    render(SignIn {
        c: Chrome::anonymous(lang_of(&headers), "/console/sign-in".into()),
        next,
        error: None,
        add: q.add,
    })
}

#[derive(Deserialize)]
pub(crate) struct SignInForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    next: String,
    /// `true`: keep the workspace this browser is signed in to, for the switcher.
    #[serde(default)]
    add: bool,
}

pub(crate) async fn sign_in(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    let lang = lang_of(&headers);
    let next = safe_back(&form.next).to_string();
    let again = |error: &'static str, status: StatusCode| {
        let mut r = render(SignIn {
            c: Chrome::anonymous(lang, "/console/sign-in".into()),
            next: next.clone(),
            error: Some(error),
            add: form.add,
        });
        *r.status_mut() = status;
        r
    };
    if !same_origin(&headers) {
        return again("bad_form", StatusCode::FORBIDDEN);
    }
    let secret = form.token.trim();
    if secret.is_empty() {
        return again("missing_token", StatusCode::BAD_REQUEST);
    }
    if !plausible(secret) {
        return again("invalid_token", StatusCode::UNAUTHORIZED);
    }
    let Ok(token) = parcours_api::admin_token(&state, secret).await else {
        return again("invalid_token", StatusCode::UNAUTHORIZED);
    };
    let mut r = see_other(&next);
    if let Some(v) = session_cookie(secret) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    // Adding a workspace keeps the one signed in to (and the others) for the switcher; a
    // plain sign-in starts afresh.
    let mut kept: Vec<&str> = Vec::new();
    if form.add {
        if let Some(current) = cookie(&headers, SESSION_COOKIE).filter(|c| plausible(c)) {
            kept.push(current);
        }
        for other in other_secrets(&headers) {
            if !kept.contains(&other) {
                kept.push(other);
            }
        }
        kept.retain(|s| *s != secret);
    }
    if !kept.is_empty() || cookie(&headers, OTHERS_COOKIE).is_some() {
        if let Some(v) = others_cookie(&kept) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    // The language she chose, wherever she chose it, applies in this browser too.
    let store = state.engine.store().clone();
    match blocking(move || keys::language_of(store.as_ref(), &token.id)).await {
        Ok(Some(chosen)) => {
            if let Some(v) = Lang::parse(&chosen).and_then(|l| lang_cookie(l).ok()) {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "the console language of a token could not be read"),
    }
    r
}

fn lang_cookie(lang: Lang) -> Result<HeaderValue, axum::http::header::InvalidHeaderValue> {
    HeaderValue::from_str(&format!(
        "{LANG_COOKIE}={}; Path=/console; SameSite=Lax; Max-Age=31536000",
        lang.code()
    ))
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    pub(crate) csrf: String,
}

pub(crate) async fn sign_out(session: Session, Form(form): Form<CsrfForm>) -> Response {
    if let Some(r) = session.refusal(&form.csrf) {
        return r;
    }
    let mut r = see_other("/console/sign-in");
    r.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "parcours_session=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    if let Some(v) = others_cookie(&[]) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

#[derive(Deserialize)]
pub(crate) struct SwitchForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    to: String,
}

/// Switches to another workspace this browser is signed in to: its token becomes the
/// session's, and the one left joins the others.
pub(crate) async fn switch_workspace(session: Session, Form(form): Form<SwitchForm>) -> Response {
    if let Some(r) = session.refusal(&form.csrf) {
        return r;
    }
    let Some((_, _, secret)) = session.others.iter().find(|(ws, _, _)| *ws == form.to) else {
        let tr = session.tr();
        return problem(
            session.chrome(),
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{} {}", tr.t("not_signed_in_to"), form.to),
        );
    };
    let mut others: Vec<&str> = vec![session.secret.as_str()];
    others.extend(
        session
            .others
            .iter()
            .map(|(_, _, s)| s.as_str())
            .filter(|s| s != secret),
    );
    let mut r = see_other("/console/dashboard");
    for v in [session_cookie(secret), others_cookie(&others)]
        .into_iter()
        .flatten()
    {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

/// The switcher's cookie after a new workspace's token joins it (a workspace just created).
pub(crate) fn with_other(session: &Session, secret: &str) -> Option<HeaderValue> {
    let mut others: Vec<&str> = vec![secret];
    others.extend(session.others.iter().map(|(_, _, s)| s.as_str()));
    others_cookie(&others)
}

#[derive(Deserialize)]
pub(crate) struct LangQuery {
    to: Option<String>,
    back: Option<String>,
}

/// Switches the language and goes back. It is remembered for a year in this browser and,
/// when she is signed in, for her token: she gets it back when she signs in elsewhere. (The
/// session cookie is `SameSite=Strict`: another site's link cannot change what she chose.)
pub(crate) async fn set_lang(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<LangQuery>,
) -> Response {
    let lang = q.to.as_deref().and_then(Lang::parse).unwrap_or(Lang::En);
    if let Some(secret) = cookie(&headers, SESSION_COOKIE) {
        if let Ok(token) = parcours_api::admin_token(&state, secret).await {
            let store = state.engine.store().clone();
            let saved =
                blocking(move || keys::remember_language(store.as_ref(), &token.id, lang.code()))
                    .await;
            if let Err(e) = saved {
                tracing::warn!(error = %e, "the console language of a token could not be saved");
            }
        }
    }
    let mut r = see_other(q.back.as_deref().unwrap_or(""));
    if let Ok(v) = lang_cookie(lang) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

/// A customer in a list.
pub(crate) struct Row {
    pub id: String,
    pub name: String,
    pub email: String,
    pub found_by: String,
    pub last_seen: String,
    pub events: String,
}

#[derive(Template)]
#[template(path = "customers.html")]
struct Customers {
    c: Chrome,
    q: String,
    searched: bool,
    rows: Vec<Row>,
    next: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct CustomersQuery {
    q: Option<String>,
    after: Option<String>,
}

fn display_name(p: &parcours_core::Profile) -> String {
    let t = p.trait_values();
    let s = |k: &str| t.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let name = format!("{} {}", s("first_name"), s("last_name"));
    match name.trim() {
        "" => s("name"),
        n => n.to_string(),
    }
}

fn row(tr: Tr, p: &parcours_core::Profile, found_by: String) -> Row {
    let email = p
        .identifiers
        .iter()
        .find(|i| i.kind == parcours_core::identifier::EMAIL)
        .map(|i| i.value.clone())
        .unwrap_or_default();
    Row {
        id: p.id.clone(),
        name: display_name(p),
        email,
        found_by,
        last_seen: tr.date(p.last.ts),
        events: tr.number(p.events),
    }
}

pub(crate) async fn customers(
    State(state): State<Arc<AppState>>,
    session: Session,
    Query(q): Query<CustomersQuery>,
) -> Response {
    let (store, actor, tr) = (
        state.engine.store().clone(),
        session.actor(),
        Tr { lang: session.lang },
    );
    let query = q.q.unwrap_or_default();
    if !query.trim().is_empty() {
        let (st, a, text) = (store.clone(), actor.clone(), query.clone());
        let found = blocking(move || customers::search(st.as_ref(), &a, &text)).await;
        return match found {
            Ok(found) if found.len() == 1 => {
                see_other(&format!("/console/customers/{}", found[0].0.id))
            }
            Ok(found) => render(Customers {
                c: session.chrome(),
                q: query,
                searched: true,
                rows: found.iter().map(|(p, by)| row(tr, p, by.clone())).collect(),
                next: None,
            }),
            Err(e) => service_problem(session.chrome(), e),
        };
    }
    let after = q.after.unwrap_or_default();
    let page =
        blocking(move || customers::page(store.as_ref(), &actor, &after, CUSTOMERS_PAGE)).await;
    match page {
        Ok(page) => {
            let next = (page.len() == CUSTOMERS_PAGE)
                .then(|| page.last().map(|p| p.id.clone()))
                .flatten();
            render(Customers {
                c: session.chrome(),
                q: String::new(),
                searched: false,
                rows: page.iter().map(|p| row(tr, p, String::new())).collect(),
                next,
            })
        }
        Err(e) => service_problem(session.chrome(), e),
    }
}

/// One event of the timeline, as shown.
pub(crate) struct Line {
    pub when: String,
    pub iso: String,
    pub channel: &'static str,
    pub channel_name: &'static str,
    pub what: String,
    pub summary: String,
    pub raw: String,
}

fn summary(body: &Value) -> String {
    let mut parts = Vec::new();
    let props = body
        .get("properties")
        .or_else(|| body.get("traits"))
        .and_then(Value::as_object);
    if let Some(props) = props {
        for (k, v) in props.iter().take(12) {
            let shown = match v {
                Value::String(s) => s.chars().take(60).collect::<String>(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => continue,
            };
            parts.push(format!("{k}: {shown}"));
            if parts.len() == 4 {
                break;
            }
        }
    }
    parts.join(" · ")
}

fn line(tr: Tr, e: &StoredEvent) -> Line {
    let body: Value = serde_json::from_str(&e.body).unwrap_or(Value::Null);
    let kind = e.kind.as_str();
    let what = match e.event.as_deref() {
        Some(name) => name.to_string(),
        None => match body.get("name").and_then(Value::as_str) {
            Some(n) => format!("{kind}: {n}"),
            None => kind.to_string(),
        },
    };
    Line {
        when: tr.date(e.timestamp),
        iso: parcours_core::time::format_timestamp(e.timestamp),
        channel: e.channel.as_str(),
        channel_name: tr.channel(e.channel.as_str()),
        what,
        summary: summary(&body),
        raw: serde_json::to_string_pretty(&e.to_json()).unwrap_or_default(),
    }
}

#[derive(Deserialize)]
pub(crate) struct TimelineQuery {
    before: Option<i64>,
    channel: Option<String>,
    unmerged: Option<String>,
}

impl TimelineQuery {
    fn channels(&self) -> Vec<Channel> {
        self.channel
            .as_deref()
            .and_then(Channel::parse)
            .into_iter()
            .collect()
    }
}

/// The timeline's rows and its "older" link (the customer page and the htmx partial).
pub(crate) struct Timeline {
    pub profile: String,
    pub lines: Vec<Line>,
    pub channel: String,
    pub older: Option<i64>,
}

impl Timeline {
    pub fn is_channel(&self, code: &str) -> bool {
        self.channel == code
    }

    pub fn older_link(&self, before: impl std::fmt::Display) -> String {
        let mut s = format!("/console/customers/{}?before={before}", self.profile);
        if !self.channel.is_empty() {
            s.push_str(&format!("&channel={}", self.channel));
        }
        s
    }

    pub fn older_partial(&self, before: impl std::fmt::Display) -> String {
        let mut s = format!(
            "/console/customers/{}/timeline?before={before}",
            self.profile
        );
        if !self.channel.is_empty() {
            s.push_str(&format!("&channel={}", self.channel));
        }
        s
    }
}

pub(crate) struct Fact {
    pub name: String,
    pub value: String,
    pub extra: String,
}

pub(crate) struct MergeLine {
    pub id: i64,
    pub other: String,
    pub cause: String,
    pub when: String,
    pub active: bool,
}

pub(crate) struct RunLine {
    pub journey: String,
    pub entered: String,
    pub state: &'static str,
    pub step: String,
}

#[derive(Template)]
#[template(path = "customer.html")]
struct CustomerPage {
    c: Chrome,
    id: String,
    name: String,
    first_seen: String,
    last_seen: String,
    events: String,
    identifiers: Vec<Fact>,
    traits: Vec<Fact>,
    consents: Vec<Fact>,
    audiences: Vec<Fact>,
    runs: Vec<RunLine>,
    messages: Vec<Fact>,
    merges: Vec<MergeLine>,
    channels: Vec<(&'static str, &'static str)>,
    timeline: Timeline,
    unmerged: Option<String>,
    privacy: bool,
    /// Her privacy requests (for who may read them).
    requests: Vec<crate::privacy::RequestRow>,
}

#[derive(Template)]
#[template(path = "timeline_rows.html")]
struct TimelineRows {
    c: Chrome,
    timeline: Timeline,
}

fn short(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(crate) async fn customer(
    State(state): State<Arc<AppState>>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<TimelineQuery>,
) -> Response {
    let (store, actor) = (state.engine.store().clone(), session.actor());
    let channels = q.channels();
    let before = q.before;
    let wanted = id.clone();
    let privacy = session.privacy();
    let loaded = blocking(move || {
        let c = customers::customer(store.as_ref(), &actor, &wanted)?;
        let tl = customers::timeline(
            store.as_ref(),
            &actor,
            &c.profile.id,
            before,
            &channels,
            TIMELINE_PAGE,
        )?;
        let requests = if privacy {
            let hers: Vec<(String, String)> = c
                .identifiers
                .iter()
                .map(|i| (i.identifier.kind.clone(), i.identifier.value.clone()))
                .collect();
            parcours_service::privacy::requests_about(store.as_ref(), &actor, &hers)?
        } else {
            Vec::new()
        };
        Ok((c, tl, requests))
    })
    .await;
    let (c, (events, older), requests) = match loaded {
        Ok(x) => x,
        Err(e) => return service_problem(session.chrome(), e),
    };
    // A merged id shows the profile that holds it, under its own address.
    if c.profile.id != id {
        return see_other(&format!("/console/customers/{}", c.profile.id));
    }
    let tr = Tr { lang: session.lang };
    let p = &c.profile;
    let identifiers = c
        .identifiers
        .iter()
        .map(|i| Fact {
            name: i.identifier.kind.clone(),
            value: i.identifier.value.clone(),
            extra: tr.date(i.linked_at),
        })
        .collect();
    let traits = p
        .traits
        .iter()
        .map(|(k, t)| Fact {
            name: k.clone(),
            value: short(&t.value),
            extra: tr.date(t.ts),
        })
        .collect();
    let consents = p
        .consent
        .iter()
        .map(|(k, r)| {
            let method = serde_json::to_value(r.method)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            Fact {
                name: k.clone(),
                value: tr
                    .t(if r.granted { "granted" } else { "withdrawn" })
                    .to_string(),
                // The proof: when, where, how, from which source, which text, which event.
                extra: format!(
                    "{} · {} · {method} · {} {} · {} {} · {}",
                    tr.date(r.ts),
                    tr.channel(r.channel.as_str()),
                    tr.t("source").to_lowercase(),
                    r.source_id,
                    tr.t("consent_text_version"),
                    r.text_version.as_deref().unwrap_or("—"),
                    r.message_id
                ),
            }
        })
        .collect();
    let audiences = c
        .memberships
        .iter()
        .map(|m| Fact {
            name: m.audience_id.clone(),
            value: String::new(),
            extra: tr.date(m.since),
        })
        .collect();
    let runs = c
        .runs
        .iter()
        .map(|r| RunLine {
            journey: r.journey_id.clone(),
            entered: tr.date(r.entered_at),
            state: tr.run_state(r.active, r.outcome.as_deref()),
            step: r
                .state
                .get("step")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        })
        .collect();
    let messages = c
        .contacts
        .iter()
        .map(|m| Fact {
            name: m.journey_id.clone(),
            value: tr.channel(m.channel.as_str()).to_string(),
            extra: tr.date(m.at),
        })
        .collect();
    let merges = c
        .merges
        .iter()
        .map(|m| MergeLine {
            id: m.id,
            other: if m.merge.winner == p.id {
                m.merge.loser.clone()
            } else {
                m.merge.winner.clone()
            },
            cause: m
                .merge
                .identifiers
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            when: tr.date(m.created_at),
            active: m.undone_at.is_none(),
        })
        .collect();
    let channels = Channel::ALL
        .iter()
        .map(|ch| (ch.as_str(), tr.channel(ch.as_str())))
        .collect();
    let timeline = Timeline {
        profile: p.id.clone(),
        lines: events.iter().map(|e| line(tr, e)).collect(),
        channel: q
            .channel
            .clone()
            .filter(|c| Channel::parse(c).is_some())
            .unwrap_or_default(),
        older,
    };
    render(CustomerPage {
        c: session.chrome(),
        id: p.id.clone(),
        name: display_name(p),
        first_seen: tr.date(p.first.ts),
        last_seen: tr.date(p.last.ts),
        events: tr.number(p.events),
        identifiers,
        traits,
        consents,
        audiences,
        runs,
        messages,
        merges,
        channels,
        timeline,
        unmerged: q.unmerged.filter(|u| !u.is_empty()),
        privacy,
        requests: requests
            .iter()
            .map(|r| crate::privacy::request_row(tr, r))
            .collect(),
    })
}

/// The next page of a timeline (htmx swaps it in place of the "older" row).
pub(crate) async fn timeline(
    State(state): State<Arc<AppState>>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<TimelineQuery>,
) -> Response {
    let (store, actor) = (state.engine.store().clone(), session.actor());
    let channels = q.channels();
    let before = q.before;
    let pid = id.clone();
    let page = blocking(move || {
        customers::timeline(
            store.as_ref(),
            &actor,
            &pid,
            before,
            &channels,
            TIMELINE_PAGE,
        )
    })
    .await;
    let (events, older) = match page {
        Ok(x) => x,
        Err(e) => return service_problem(session.chrome(), e),
    };
    let tr = Tr { lang: session.lang };
    render(TimelineRows {
        c: session.chrome(),
        timeline: Timeline {
            profile: id,
            lines: events.iter().map(|e| line(tr, e)).collect(),
            channel: q
                .channel
                .clone()
                .filter(|c| Channel::parse(c).is_some())
                .unwrap_or_default(),
            older,
        },
    })
}

#[derive(Template)]
#[template(path = "unmerge.html")]
struct Unmerge {
    c: Chrome,
    id: String,
    merge: i64,
    winner: String,
    winner_anchor: String,
    loser: String,
    loser_anchor: String,
    cause: String,
    cause_event: String,
    loser_identifiers: String,
}

pub(crate) async fn unmerge_page(
    State(state): State<Arc<AppState>>,
    session: Session,
    Path((id, merge)): Path<(String, i64)>,
) -> Response {
    let (store, actor) = (state.engine.store().clone(), session.actor());
    let found = blocking(move || customers::merge(store.as_ref(), &actor, merge)).await;
    match found {
        Ok(m) => render(Unmerge {
            c: session.chrome(),
            id,
            merge,
            winner: m.merge.winner.clone(),
            winner_anchor: m.merge.winner_anchor.to_string(),
            loser: m.merge.loser.clone(),
            loser_anchor: m.merge.loser_anchor.to_string(),
            cause_event: m.merge.cause.mid.clone(),
            cause: m
                .merge
                .identifiers
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            loser_identifiers: m
                .merge
                .loser_identifiers
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        }),
        Err(e) => service_problem(session.chrome(), e),
    }
}

pub(crate) async fn unmerge(
    State(state): State<Arc<AppState>>,
    session: Session,
    Path((id, merge)): Path<(String, i64)>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(r) = session.refusal(&form.csrf) {
        return r;
    }
    let (store, actor, now) = (
        state.engine.store().clone(),
        session.actor(),
        state.engine.now(),
    );
    let pid = id.clone();
    let done = blocking(move || {
        parcours_service::identity::unmerge_profile(store.as_ref(), &actor, &pid, merge, now)
    })
    .await;
    match done {
        Ok(outcome) => {
            let winner = outcome.winner_profile.unwrap_or(id);
            let loser = outcome.loser_profile.unwrap_or_default();
            see_other(&format!(
                "/console/customers/{}?unmerged={}",
                urlencoding(&winner),
                urlencoding(&loser)
            ))
        }
        Err(e) => service_problem(session.chrome(), e),
    }
}
