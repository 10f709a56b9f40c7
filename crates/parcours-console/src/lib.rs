//! The web console, served by the node under `/console`: server-rendered pages (askama) with
//! htmx for partial updates, every asset embedded in the binary. It holds no domain logic:
//! each page reads and acts through `parcours-service`, with the signed-in token's role, as
//! the admin API does.
//!
//! Sessions: signing in with an admin token puts that token in an `HttpOnly`, `SameSite=Strict`
//! cookie scoped to `/console`; each request checks it as the API checks a bearer token (a
//! revoked token stops working within seconds). Every form carries a CSRF token derived from
//! the session's token, which a page of another origin can neither read nor compute; a post
//! without it, or from another origin, is refused.

mod audiences;
mod commerce;
mod dashboard;
mod i18n;
mod journeys;
mod measure;
mod messages;
mod pages;
mod privacy;
mod quality;
mod settings;

use std::sync::Arc;

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use parcours_api::AppState;

pub use i18n::{Lang, Tr};

/// The console's routes, to merge into the node's router. They are pages for people, not
/// part of the API: they stay out of its OpenAPI document.
#[allow(clippy::disallowed_methods)]
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/console", get(pages::home))
        .route("/console/", get(pages::home))
        .route(
            "/console/sign-in",
            get(pages::sign_in_page).post(pages::sign_in),
        )
        .route("/console/sign-out", post(pages::sign_out))
        .route("/console/lang", get(pages::set_lang))
        .route("/console/workspace", post(pages::switch_workspace))
        .route("/console/dashboard", get(dashboard::page))
        .route("/console/measure", get(measure::page))
        .route("/console/measure/export", get(measure::export))
        .route("/console/measure/reading", get(measure::reading_progress))
        .route("/console/customers", get(pages::customers))
        .route("/console/customers/{id}", get(pages::customer))
        .route("/console/customers/{id}/timeline", get(pages::timeline))
        .route(
            "/console/customers/{id}/journeys",
            get(journeys::customer_runs),
        )
        .route(
            "/console/customers/{id}/unmerge/{merge}",
            get(pages::unmerge_page).post(pages::unmerge),
        )
        .route(
            "/console/audiences",
            get(audiences::audiences).post(audiences::create),
        )
        .route("/console/audiences/check", get(audiences::check))
        .route("/console/audiences/estimate", get(audiences::estimate))
        .route("/console/audiences/{id}", get(audiences::audience))
        .route("/console/audiences/{id}/size", get(audiences::size))
        .route("/console/audiences/{id}/export", get(audiences::export))
        .route("/console/destinations/{id}", get(audiences::destination))
        .route(
            "/console/audiences/{id}/explain/{profile}",
            get(audiences::explain),
        )
        .route("/console/journeys", get(journeys::list))
        .route("/console/journeys/new", get(journeys::new))
        .route("/console/journeys/{id}", get(journeys::journey))
        .route(
            "/console/journeys/{id}/edit",
            get(journeys::edit).post(journeys::save),
        )
        .route("/console/journeys/{id}/check", post(journeys::check))
        .route("/console/journeys/{id}/simulate", get(journeys::simulate))
        .route("/console/messages", get(messages::list))
        .route("/console/messages/{key}", get(messages::message))
        .route("/console/messages/{key}/html", get(messages::html))
        .route("/console/commerce", get(commerce::page))
        .route("/console/commerce/orders/{id}", get(commerce::order))
        .route("/console/commerce/loyalty/{card}", get(commerce::member))
        .route("/console/quality", get(quality::list))
        .route(
            "/console/quality/{id}",
            get(quality::entry).post(quality::act),
        )
        .route("/console/privacy", get(privacy::page))
        .route("/console/privacy/settings", post(privacy::save_settings))
        .route("/console/privacy/audit.csv", get(privacy::audit_export))
        .route(
            "/console/privacy/requests/{id}/archive",
            get(privacy::archive),
        )
        .route("/console/customers/{id}/access", post(privacy::access))
        .route(
            "/console/customers/{id}/erase",
            get(privacy::erase_page).post(privacy::erase),
        )
        .route("/console/settings", get(settings::settings))
        .route("/console/settings/sources", post(settings::new_source))
        .route(
            "/console/settings/identity-rules",
            post(settings::set_rules),
        )
        .route("/console/settings/channels/test", post(settings::send_test))
        .route(
            "/console/settings/identity-rules/preview",
            post(settings::preview_rules),
        )
        .route(
            "/console/settings/workspaces",
            post(settings::new_workspace),
        )
        .route("/console/settings/tokens", post(settings::new_token))
        .route(
            "/console/settings/tokens/{id}/revoke",
            post(settings::revoke_token),
        )
        .route("/console/assets/{*path}", get(asset))
        .layer(axum::middleware::map_response(secure_headers))
}

/// Every console answer: nothing from another origin, no framing, no sniffing.
async fn secure_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    // A page that sets its own (an email's frame) keeps it.
    if h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        return r;
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; frame-src 'self'; frame-ancestors 'none'; form-action 'self'; \
             base-uri 'none'; object-src 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

#[derive(rust_embed::RustEmbed)]
#[folder = "assets/"]
struct Assets;

/// An embedded asset (the stylesheet, the vendored htmx), cached by the browser for an hour.
async fn asset(axum::extract::Path(path): axum::extract::Path<String>) -> Response {
    let Some(file) = Assets::get(&path) else {
        return (axum::http::StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let kind = match path.rsplit('.').next() {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    (headers, file.data.into_owned()).into_response()
}
