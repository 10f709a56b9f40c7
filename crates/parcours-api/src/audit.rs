//! Every change an admin API call makes to the workspace's configuration and access (tokens,
//! sources, identity rules, audiences, journeys, destinations, offers …) goes into the audit
//! log once it succeeded: who (the token), what (method and path), the answer's status. The
//! console's forms that make the same changes are logged the same way (`console.post`, with
//! the API's name for what changed), under the signed-in token.
//! Paths that would name a customer (a profile, an address) are kept as their template; the
//! body is never kept. Data-subject requests and privacy settings write their own entries.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use serde_json::json;

use crate::auth::{bearer, token_of};
use crate::AppState;

/// Configuration the log keeps with its path as it is (ids of things, not of people).
const CONFIGURATION: &[&str] = &[
    "audiences",
    "computed-traits",
    "destinations",
    "sources",
    "tokens",
    "workspaces",
    "workspace",
    "commerce/items",
    "commerce/locations",
    "commerce/offers",
    "commerce/loyalty/program",
];

/// The response header by which a handler names what it changed more precisely than its
/// path does (removed before the answer leaves).
pub const AUDIT_TARGET: &str = "x-parcours-audit-target";

/// The cookie that holds a console session's token.
pub const CONSOLE_SESSION_COOKIE: &str = "parcours_session";

/// A cookie's value.
pub fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// What a console form that changes something is in the log, `(action, target)`, the target
/// named as the API names it. Questions (checks, previews), privacy requests and settings
/// (which log themselves), signing in and out and the language are not.
fn classify_console(path: &str) -> Option<(String, String)> {
    let rest = path.strip_prefix("/console/")?.trim_end_matches('/');
    let target = match rest.split('/').collect::<Vec<_>>().as_slice() {
        ["audiences"] => "audiences".to_string(),
        ["customers", _, "unmerge", _] => "profiles/{id}/unmerge".into(),
        ["journeys", id, "edit"] => format!("journeys/{id}"),
        ["quality", _] => "quarantine/{id}".into(),
        ["settings", "sources"] => "sources".into(),
        ["settings", "identity-rules"] => "workspace/identity-rules".into(),
        ["settings", "channels", "test"] => "channels/test".into(),
        ["settings", "workspaces"] => "workspaces".into(),
        ["settings", "tokens"] => "tokens".into(),
        ["settings", "tokens", id, "revoke"] => format!("tokens/{id}/revoke"),
        _ => return None,
    };
    Some(("console.post".into(), target))
}

/// What one call is in the log, `(action, target)`; `None` when it is not logged (reads,
/// operations at volume such as sales and entries, and what logs itself).
pub fn classify(method: &Method, path: &str) -> Option<(String, String)> {
    if *method == Method::POST && path.starts_with("/console/") {
        return classify_console(path);
    }
    if !matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) {
        return None;
    }
    let rest = path.strip_prefix("/api/v1/")?.trim_end_matches('/');
    let action = format!("api.{}", method.as_str().to_ascii_lowercase());
    let segments: Vec<&str> = rest.split('/').collect();
    let config = CONFIGURATION
        .iter()
        .any(|c| rest == *c || rest.starts_with(&format!("{c}/")));
    // Questions asked with a body change nothing.
    let question = rest.ends_with("/preview") || rest.ends_with("/simulate");
    if config && !question {
        return Some((action, rest.to_string()));
    }
    match segments.as_slice() {
        // A journey's document (not its entries or previews).
        ["journeys", id] if *id != "simulate" => Some((action, rest.to_string())),
        // Changes to a person's identity or reachability: the template only.
        ["profiles", _, "unmerge"] => Some((action, "profiles/{id}/unmerge".into())),
        ["merges", _, "undo"] => Some((action, "merges/{id}/undo".into())),
        ["suppressions", channel, _] => {
            Some((action, format!("suppressions/{channel}/{{address}}")))
        }
        ["quarantine", _, what @ ("discard" | "replay")] => {
            Some((action, format!("quarantine/{{id}}/{what}")))
        }
        _ => None,
    }
}

/// The middleware: runs the call, then logs it when it changed something.
pub async fn changes(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let Some((action, target)) = classify(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    let console = action.starts_with("console.");
    let token = if console {
        cookie(req.headers(), CONSOLE_SESSION_COOKIE).map(str::to_string)
    } else {
        bearer(req.headers()).ok().map(str::to_string)
    };
    // Who, read before the change: a token revoking itself is no longer valid after it.
    let who = match &token {
        Some(token) => token_of(&state, token).await.ok(),
        None => None,
    };
    let mut response = next.run(req).await;
    // A handler that knows better what it changed says so (a console form with several
    // buttons); the header never leaves the node.
    let target = match response.headers_mut().remove(AUDIT_TARGET) {
        Some(v) => v.to_str().map(str::to_string).unwrap_or(target),
        None => target,
    };
    let status = response.status();
    // A console form that succeeded answers with its page or sends to the next one.
    if !(status.is_success() || (console && status.is_redirection())) {
        return response;
    }
    let Some(t) = who else {
        return response;
    };
    let (st, now) = (state.engine.store().clone(), state.engine.now());
    let written = tokio::task::spawn_blocking(move || {
        parcours_service::privacy::audit(
            st.as_ref(),
            &t.workspace_id,
            now,
            &t.name,
            &action,
            &target,
            json!({"status": status.as_u16(), "token": t.id}),
        )
    })
    .await;
    match written {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "an API change was not written to the audit log"),
        Err(e) => tracing::error!(error = %e, "an API change was not written to the audit log"),
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_changes_are_logged_as_the_api_names_them() {
        let c = |p: &str| classify(&Method::POST, p);
        assert_eq!(
            c("/console/settings/tokens/tok_1/revoke"),
            Some(("console.post".into(), "tokens/tok_1/revoke".into()))
        );
        assert_eq!(
            c("/console/customers/p_42/unmerge/m_1"),
            Some(("console.post".into(), "profiles/{id}/unmerge".into()))
        );
        assert_eq!(
            c("/console/journeys/welcome/edit"),
            Some(("console.post".into(), "journeys/welcome".into()))
        );
        for p in [
            "/console/sign-in",
            "/console/journeys/welcome/check",
            "/console/settings/identity-rules/preview",
            "/console/privacy/settings",
            "/console/customers/p_42/erase",
        ] {
            assert_eq!(c(p), None, "{p}");
        }
        assert_eq!(classify(&Method::GET, "/console/audiences"), None);
    }

    #[test]
    fn configuration_is_logged_with_its_path_and_people_as_a_template() {
        let c = |m: Method, p: &str| classify(&m, p);
        assert_eq!(
            c(Method::PUT, "/api/v1/audiences/vip"),
            Some(("api.put".into(), "audiences/vip".into()))
        );
        assert_eq!(
            c(Method::DELETE, "/api/v1/tokens/tok_1"),
            Some(("api.delete".into(), "tokens/tok_1".into()))
        );
        assert_eq!(
            c(Method::PUT, "/api/v1/journeys/welcome"),
            Some(("api.put".into(), "journeys/welcome".into()))
        );
        assert_eq!(
            c(Method::PUT, "/api/v1/suppressions/email/lea@example.com"),
            Some(("api.put".into(), "suppressions/email/{address}".into()))
        );
        assert_eq!(
            c(Method::POST, "/api/v1/profiles/p_42/unmerge"),
            Some(("api.post".into(), "profiles/{id}/unmerge".into()))
        );
        for (m, p) in [
            (Method::GET, "/api/v1/audiences/vip"),
            (Method::POST, "/api/v1/journeys/welcome/entries"),
            (Method::POST, "/api/v1/journeys/simulate"),
            (Method::POST, "/api/v1/workspace/identity-rules/preview"),
            (Method::POST, "/api/v1/commerce/sales"),
            (Method::POST, "/api/v1/privacy/requests"),
            (Method::POST, "/v1/batch"),
        ] {
            assert_eq!(c(m.clone(), p), None, "{m} {p}");
        }
    }
}
