//! Every change an admin API call makes to the workspace's configuration and access (tokens,
//! sources, identity rules, audiences, journeys, destinations, offers …) goes into the audit
//! log once it succeeded: who (the token), what (method and path), the answer's status.
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

/// What one call is in the log, `(action, target)`; `None` when it is not logged (reads,
/// operations at volume such as sales and entries, and what logs itself).
pub fn classify(method: &Method, path: &str) -> Option<(String, String)> {
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
    let token = bearer(req.headers()).ok().map(str::to_string);
    let response = next.run(req).await;
    let status = response.status();
    if !status.is_success() {
        return response;
    }
    let Some(token) = token else {
        return response;
    };
    let Ok(t) = token_of(&state, &token).await else {
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
