//! One-click unsubscribe (RFC 8058): the link in every journey email. `POST` (what mail
//! clients send, with `List-Unsubscribe=One-Click`) records the withdrawal at once; `GET`
//! (a person following the link) shows a page with a button that posts, because link
//! scanners follow links and must not unsubscribe anyone.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use parcours_service::journeys;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audiences::store;
use crate::error::{blocking, ApiError};
use crate::AppState;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(confirm, one_click))
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{title}</title><body style=\"font-family:sans-serif;max-width:32em;margin:4em auto\"><h1>{title}</h1>{body}</body></html>"
    );
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}

/// The page a person sees following the link: one button that unsubscribes.
#[utoipa::path(get, path = "/v1/unsubscribe/{workspace}/{key}/{nonce}", tag = "journeys",
    params(("workspace" = String, Path, description = "the workspace"), ("key" = String, Path, description = "the message's key"), ("nonce" = String, Path, description = "the link's secret")),
    responses((status = 200, description = "a page with the button", content_type = "text/html"), (status = 404, description = "not a link Parcours sent")))]
async fn confirm(Path((_ws, _key, nonce)): Path<(String, String, String)>) -> Response {
    if nonce.len() < 16 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
        return page(
            StatusCode::NOT_FOUND,
            "Link not found",
            "<p>This unsubscribe link is not valid.</p>",
        );
    }
    page(
        StatusCode::OK,
        "Unsubscribe",
        "<p>Stop receiving these emails?</p><form method=\"post\"><input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\"><button type=\"submit\">Unsubscribe</button></form>",
    )
}

/// Unsubscribes: records her withdrawal of email marketing (an `Unsubscribed` event in the
/// log, with this message as proof). Twice is once.
#[utoipa::path(post, path = "/v1/unsubscribe/{workspace}/{key}/{nonce}", tag = "journeys",
    params(("workspace" = String, Path, description = "the workspace"), ("key" = String, Path, description = "the message's key"), ("nonce" = String, Path, description = "the link's secret")),
    responses((status = 200, description = "unsubscribed", content_type = "text/html"), (status = 404, description = "not a link Parcours sent")))]
async fn one_click(
    State(state): State<Arc<AppState>>,
    Path((ws, key, nonce)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let (st, now) = (store(&state), state.engine.now());
    let found =
        blocking(move || Ok(journeys::unsubscribe(st.as_ref(), &ws, &key, &nonce, now))).await?;
    let batch = match found {
        Ok(batch) => batch,
        Err(parcours_service::ServiceError::NotFound(_)) => {
            return Ok(page(
                StatusCode::NOT_FOUND,
                "Link not found",
                "<p>This unsubscribe link is not valid.</p>",
            ))
        }
        Err(e) => return Err(e.into()),
    };
    state.engine.ingest(batch).await?;
    Ok(page(
        StatusCode::OK,
        "You are unsubscribed",
        "<p>You will not receive these emails any more.</p>",
    ))
}
