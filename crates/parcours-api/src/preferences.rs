//! A customer's hosted preference page (`/v1/preferences/{workspace}/{profile}/{sig}`), in
//! English or French: the consents the workspace offers, ticked as she stands, and a button
//! that records her choice. Withdrawing is as easy as giving: one page, no sign-in. The
//! link is signed; anything else is not found. And the API that gives an agent the link.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use parcours_service::preferences::{self, Choice, Lang, Page};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audiences::store;
use crate::auth::Caller;
use crate::error::{blocking, ApiError};
use crate::openapi::{Answer, Refusals};
use crate::AppState;

pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(show, choose))
        .routes(routes!(link))
}

/// A consent's label on the page.
fn label(key: &str, lang: Lang) -> String {
    let (purpose, channel) = key.split_once(':').unwrap_or((key, ""));
    let fr = lang == Lang::Fr;
    let channel = match (channel, fr) {
        ("email", false) => "by email",
        ("email", true) => "par e-mail",
        ("sms", false) => "by SMS",
        ("sms", true) => "par SMS",
        ("push", false) => "as app notifications",
        ("push", true) => "en notifications de l'application",
        ("ads", false) => "in advertising on other sites and apps",
        ("ads", true) => "dans la publicité sur d'autres sites et applications",
        ("", _) => "",
        (other, _) => other,
    };
    let purpose = match (purpose, fr) {
        ("marketing", false) => "Offers and news",
        ("marketing", true) => "Offres et nouveautés",
        ("analytics", false) => "Measuring how our site and app are used",
        ("analytics", true) => "Mesure de l'utilisation de notre site et de notre application",
        ("personalization", false) => "Content chosen for you",
        ("personalization", true) => "Contenus choisis pour vous",
        ("location", false) => "Using your precise location",
        ("location", true) => "Utilisation de votre position précise",
        (other, _) => other,
    };
    if channel.is_empty() {
        purpose.to_string()
    } else {
        format!("{purpose} {channel}")
    }
}

struct Texts {
    title: &'static str,
    intro: &'static str,
    save: &'static str,
    saved: &'static str,
    not_found_title: &'static str,
    not_found: &'static str,
}

fn texts(lang: Lang) -> Texts {
    match lang {
        Lang::En => Texts {
            title: "Your preferences",
            intro: "Choose what we may send you and how. Untick anything to stop it: it applies at once.",
            save: "Save my choices",
            saved: "Your choices are saved.",
            not_found_title: "Link not found",
            not_found: "This preference link is not valid.",
        },
        Lang::Fr => Texts {
            title: "Vos préférences",
            intro: "Choisissez ce que nous pouvons vous envoyer, et comment. Décochez pour arrêter : c'est immédiat.",
            save: "Enregistrer mes choix",
            saved: "Vos choix sont enregistrés.",
            not_found_title: "Lien introuvable",
            not_found: "Ce lien de préférences n'est pas valide.",
        },
    }
}

fn html(status: StatusCode, lang: Lang, title: &str, body: &str) -> Response {
    let page = format!(
        "<!doctype html><html lang=\"{}\"><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <meta name=\"robots\" content=\"noindex\"><title>{title}</title>\
         <body style=\"font-family:sans-serif;max-width:34em;margin:3em auto;padding:0 1em;line-height:1.5\"><h1>{title}</h1>{body}</body></html>",
        lang.code()
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        page,
    )
        .into_response()
}

fn not_found(lang: Lang) -> Response {
    let t = texts(lang);
    html(
        StatusCode::NOT_FOUND,
        lang,
        t.not_found_title,
        &format!("<p>{}</p>", t.not_found),
    )
}

fn form(page: &Page, lang: Lang, note: Option<&str>) -> String {
    let t = texts(lang);
    let mut out = String::new();
    if let Some(n) = note {
        out.push_str(&format!("<p role=\"status\"><strong>{n}</strong></p>"));
    }
    out.push_str(&format!(
        "<p>{}</p><form method=\"post\"><input type=\"hidden\" name=\"lang\" value=\"{}\">",
        t.intro,
        lang.code()
    ));
    for Choice { key, granted } in &page.choices {
        // Keys are a-z, 0-9, `_` and `:` (the settings refuse others): safe in HTML as they are.
        out.push_str(&format!(
            "<p><label><input type=\"checkbox\" name=\"{key}\" value=\"yes\"{}> {}</label></p>",
            if *granted { " checked" } else { "" },
            label(key, lang)
        ));
    }
    out.push_str(&format!(
        "<p><button type=\"submit\">{}</button></p></form>",
        t.save
    ));
    out
}

#[derive(serde::Deserialize)]
struct LangQuery {
    lang: Option<String>,
}

fn accept_language(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
}

/// The page a customer's link opens.
#[utoipa::path(get, path = "/v1/preferences/{workspace}/{profile}/{sig}", tag = "privacy",
    params(("workspace" = String, Path, description = "the workspace"), ("profile" = String, Path, description = "the customer's profile"),
           ("sig" = String, Path, description = "the link's signature"), ("lang" = Option<String>, Query, description = "en or fr (else the browser's language)")),
    responses((status = 200, description = "the page", content_type = "text/html"), (status = 404, description = "not a link Parcours signed")))]
async fn show(
    State(state): State<Arc<AppState>>,
    Path((ws, profile, sig)): Path<(String, String, String)>,
    Query(q): Query<LangQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let lang = Lang::choose(q.lang.as_deref(), accept_language(&headers));
    let st = store(&state);
    let opened = blocking(move || Ok(preferences::open(st.as_ref(), &ws, &profile, &sig))).await?;
    match opened {
        Ok(page) => Ok(html(
            StatusCode::OK,
            lang,
            texts(lang).title,
            &form(&page, lang, None),
        )),
        Err(parcours_service::ServiceError::NotFound(_)) => Ok(not_found(lang)),
        Err(e) => Err(e.into()),
    }
}

/// Records her choice: every consent the page offers, ticked or not, as a `Consent
/// Preference Updated` event of hers (source `parcours:preferences`, the page's text
/// version as proof). The page comes back with her choices.
#[utoipa::path(post, path = "/v1/preferences/{workspace}/{profile}/{sig}", tag = "privacy",
    params(("workspace" = String, Path, description = "the workspace"), ("profile" = String, Path, description = "the customer's profile"),
           ("sig" = String, Path, description = "the link's signature")),
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "the ticked consents (`marketing:email=yes`) and `lang`"),
    responses((status = 200, description = "saved", content_type = "text/html"), (status = 404, description = "not a link Parcours signed"), Refusals))]
async fn choose(
    State(state): State<Arc<AppState>>,
    Path((ws, profile, sig)): Path<(String, String, String)>,
    headers: HeaderMap,
    Form(fields): Form<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let lang = Lang::choose(
        fields.get("lang").map(String::as_str),
        accept_language(&headers),
    );
    let chosen: Vec<String> = fields
        .iter()
        .filter(|(k, v)| *k != "lang" && !v.is_empty())
        .map(|(k, _)| k.clone())
        .collect();
    let (st, now) = (store(&state), state.engine.now());
    let saved = blocking(move || {
        Ok(preferences::save(
            st.as_ref(),
            &ws,
            &profile,
            &sig,
            &chosen,
            lang,
            now,
        ))
    })
    .await?;
    let (batch, page) = match saved {
        Ok(s) => s,
        Err(parcours_service::ServiceError::NotFound(_)) => return Ok(not_found(lang)),
        Err(e) => return Err(e.into()),
    };
    state.engine.ingest(batch).await?;
    let t = texts(lang);
    Ok(html(
        StatusCode::OK,
        lang,
        t.title,
        &form(&page, lang, Some(t.saved)),
    ))
}

/// A customer's preference link, to give her (an agent on the phone, a message template
/// uses `{{ preferences_url }}`): the path, and the URL when the node has a public address
/// (`channels.public_url`).
#[utoipa::path(get, path = "/api/v1/profiles/{id}/preferences-link", tag = "privacy",
    params(("id" = String, Path, description = "a profile id (a merged id resolves to the profile that holds it)")),
    security(("bearer" = [])), responses((status = 200, description = "success", body = Answer), Refusals))]
async fn link(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let actor = caller.actor();
    let (st, now) = (store(&state), state.engine.now());
    let base = state.engine.public_url().map(str::to_string);
    let (path, url) = blocking(move || {
        Ok(preferences::link(
            st.as_ref(),
            &actor,
            &id,
            base.as_deref(),
            now,
        )?)
    })
    .await?;
    Ok(Json(json!({"path": path, "url": url})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_speak_both_languages() {
        assert_eq!(
            label("marketing:email", Lang::En),
            "Offers and news by email"
        );
        assert_eq!(
            label("marketing:sms", Lang::Fr),
            "Offres et nouveautés par SMS"
        );
        assert_eq!(label("surveys", Lang::En), "surveys");
    }
}
