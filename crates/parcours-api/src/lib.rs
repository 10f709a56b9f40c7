//! HTTP interfaces of Parcours: the Segment-compatible tracking API (`/v1/*`), the admin API
//! (`/api/v1/*`, bearer tokens, OpenAPI at `/api/openapi.json`), health and metrics.
//!
//! Handlers validate at the edge and hand work to `parcours-engine`; storage reads run on the
//! blocking pool, never on the executor.

mod admin;
mod audiences;
mod audit;
mod auth;
mod browser;
mod commerce;
mod destinations;
mod error;
mod journeys;
pub mod keys;
mod live;
mod measure;
mod messages;
pub mod openapi;
mod preferences;
pub mod privacy;
pub mod server;
mod tracking;
mod unsubscribe;
mod webhooks;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

use axum::middleware::{from_fn, from_fn_with_state};
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use parcours_engine::Engine;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use admin::consent_json;
pub use audit::{cookie, AUDIT_TARGET, CONSOLE_SESSION_COOKIE};
pub use auth::{hash_secret, new_secret};
pub use error::ApiError;
pub use parcours_service::workspaces::{provision_workspace, Provisioned};
pub use server::{serve, ServerLimits};

/// The admin token a secret is (cached for a few seconds, as for bearer tokens): what the
/// console's sessions check on every request. `ApiError` when it is unknown, expired or
/// revoked.
pub async fn admin_token(
    state: &Arc<AppState>,
    secret: &str,
) -> Result<parcours_store::Token, ApiError> {
    auth::token_of(state, secret).await
}

#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Tracking requests per second allowed per workspace; 0 turns the limit off.
    pub rate_limit_per_second: u32,
    /// `/readyz` fails when a processor has failed without a success for this long.
    pub failing_after: std::time::Duration,
    /// A processor this many events behind the log is reported `lagging`; 0 turns it off.
    pub max_lag_events: i64,
    /// Whether `/readyz` fails while a processor is lagging (off: the lag is the whole
    /// cluster's, so every node would leave the load balancer at once, and ingest does not
    /// need the processors).
    pub unready_when_lagging: bool,
    /// What one client may hold of the server.
    pub server: ServerLimits,
    /// Whether `/metrics` needs a bearer token: `metrics_token` or an instance admin token.
    pub metrics_require_token: bool,
    pub metrics_token: Option<String>,
    /// Tracking requests per second per source write key; 0 turns the limit off.
    pub key_rate_limit_per_second: u32,
    /// Admin API requests per second per token; 0 turns the limit off.
    pub token_rate_limit_per_second: u32,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            rate_limit_per_second: 0,
            failing_after: std::time::Duration::from_secs(30),
            max_lag_events: 100_000,
            unready_when_lagging: false,
            server: ServerLimits::default(),
            metrics_require_token: false,
            metrics_token: None,
            key_rate_limit_per_second: 0,
            token_rate_limit_per_second: 0,
        }
    }
}

pub struct AppState {
    pub engine: Arc<Engine>,
    pub config: ApiConfig,
    pub ready: AtomicBool,
    /// The last reading of each workspace's log, for the measurement requests.
    pub measure: parcours_service::measure::Snapshots,
    auth: auth::AuthCache,
    limiter: tracking::RateLimiter,
    key_limiter: tracking::RateLimiter,
    token_limiter: tracking::RateLimiter,
    metrics: PrometheusHandle,
}

fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .install_recorder()
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder().handle())
        })
        .clone()
}

impl AppState {
    pub fn new(engine: Arc<Engine>, config: ApiConfig) -> Arc<Self> {
        let measure = parcours_service::measure::Snapshots::new(engine.clock().clone());
        Arc::new(Self {
            engine,
            limiter: tracking::RateLimiter::new(config.rate_limit_per_second),
            key_limiter: tracking::RateLimiter::new(config.key_rate_limit_per_second),
            token_limiter: tracking::RateLimiter::new(config.token_rate_limit_per_second),
            config,
            ready: AtomicBool::new(true),
            measure,
            auth: auth::AuthCache::default(),
            metrics: prometheus(),
        })
    }
}

/// Every route with its documentation, before the state and the layers. Routes are only
/// registered through `utoipa_axum::routes!`, which documents them (clippy refuses the
/// other ways).
pub(crate) fn routes_and_document() -> (Router<Arc<AppState>>, utoipa::openapi::OpenApi) {
    let admin = admin::routes()
        .merge(keys::routes())
        .merge(webhooks::admin_routes())
        .merge(audiences::routes())
        .merge(journeys::routes())
        .merge(messages::routes())
        .merge(destinations::routes())
        .merge(commerce::routes())
        .merge(measure::routes())
        .merge(privacy::routes());
    OpenApiRouter::new()
        .merge(tracking::routes())
        .merge(browser::routes())
        .merge(webhooks::tracking_routes())
        .merge(unsubscribe::routes())
        .merge(preferences::routes())
        .merge(messages::public_routes())
        .nest("/api/v1", admin)
        .merge(admin::operations_routes())
        .routes(routes!(openapi::document))
        .split_for_parts()
}

/// Every route of a node.
pub fn router(state: Arc<AppState>) -> Router {
    router_with(state, Router::new())
}

/// Every route of a node, with `extra` routes (the console's) served beside the API's: behind
/// the same body guard, outside the OpenAPI document.
pub fn router_with(state: Arc<AppState>, extra: Router<Arc<AppState>>) -> Router {
    let (routes, document) = routes_and_document();
    openapi::publish(document);
    routes
        .merge(extra)
        .fallback(error::not_found)
        .layer(from_fn_with_state(state.clone(), audit::changes))
        .layer(from_fn_with_state(state.clone(), server::guard_body))
        .layer(from_fn(error::envelope))
        .layer(from_fn(browser::cors))
        .with_state(state)
}
