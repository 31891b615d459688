//! The HTTP edge: the routers of both listeners. Below it are services
//! (`exec`, `scheduler`, `store`, `webhooks`), which never import it.
//!
//! The admin listener ([`app`]) serves the API, the dashboard, `/metrics`
//! and health. Every `/api` route needs `Authorization: Bearer <api key>`;
//! every query is scoped to the key's tenant, so another tenant's object is
//! a 404. Errors are `{"error": "<message>"}` (docs/api.md). The public
//! listener ([`webhooks::public_app`]) serves webhooks only.

pub mod dashboard;
mod error;
mod executions;
mod health;
mod json;
pub mod observe;
pub mod openapi;
mod scripts;
mod secrets;
mod stats;
pub mod views;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use moka::future::Cache;

pub use error::AppError;

use crate::exec::ExecutionService;
use crate::metrics::{Metrics, PoolHistory};
use crate::node::Node;
use crate::sandbox::Sandbox;
use crate::scheduler::SchedulerHandle;
use crate::scripts::ScriptService;
use crate::secrets::Secrets;
use crate::store::{Db, StoreError, Tenant, hash_api_key};
use crate::webhooks::{Limiters, PublicUrl, Routes, WebhookConfig};

/// Shared by every handler: the node's services and the edge's own state.
/// Handlers take it by value (axum's `State`), so it is one `Arc`: a
/// request clones one pointer, not every service.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] points to.
pub struct Shared {
    pub db: Db,
    pub sandbox: Sandbox,
    pub exec: ExecutionService,
    pub scripts: ScriptService,
    pub secrets: Secrets,
    /// Tenants by API-key hash, so a request costs no key lookup in the
    /// database once seen. Entries live a minute.
    tenants: Cache<String, Arc<Tenant>>,
    pub metrics: Metrics,
    pub scheduler: SchedulerHandle,
    /// Whether this node runs the scheduler loop (for health).
    pub scheduler_enabled: bool,
    pub webhooks: WebhookConfig,
    /// Where the public listener serves webhooks, for `webhook_url`.
    pub public_url: PublicUrl,
    /// `[metrics] token`: empty when `/metrics` is open.
    pub metrics_token: String,
    pub routes: Routes,
    pub limiters: Limiters,
    pub pool_history: PoolHistory,
}

impl AppState {
    /// The state of `node`'s listeners; `public_url` is where webhooks are
    /// reached (parsed with the public listener's bound address).
    pub fn new(node: &Node, public_url: PublicUrl, pool_history: PoolHistory) -> Self {
        Self(Arc::new(Shared {
            db: node.db.clone(),
            sandbox: node.sandbox.clone(),
            exec: node.exec.clone(),
            scripts: node.scripts.clone(),
            secrets: node.secrets.clone(),
            tenants: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
            metrics: node.metrics.clone(),
            scheduler: node.scheduler.clone(),
            scheduler_enabled: node.config.scheduler.enabled,
            webhooks: node.config.webhooks.clone(),
            public_url,
            metrics_token: node.config.metrics.token.clone(),
            routes: node.routes.clone(),
            limiters: node.limiters.clone(),
            pool_history,
        }))
    }
}

/// The admin listener's routes, without a listener: tests can drive them
/// with `oneshot`. Webhooks are served by [`crate::webhooks::public_app`].
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/api/openapi.json", get(openapi::openapi_json))
        .route("/api/tenant", get(tenant))
        .route("/api/stats", get(stats::stats))
        .route("/api/scripts", post(scripts::create).get(scripts::list))
        .route(
            "/api/scripts/{id}",
            get(scripts::show)
                .put(scripts::update)
                .delete(scripts::remove),
        )
        .route("/api/scripts/{id}/run", post(scripts::run))
        .route("/api/secrets", get(secrets::list))
        .route(
            "/api/secrets/{name}",
            axum::routing::put(secrets::put).delete(secrets::remove),
        )
        .route("/api/scripts/{id}/next-runs", get(scripts::next_runs))
        .route(
            "/api/webhooks/{tenant}/{*path}",
            axum::routing::any(webhooks::moved),
        )
        .route("/api/executions", get(executions::list))
        .route("/api/executions/stream", get(executions::stream))
        .route("/api/executions/{id}", get(executions::show))
        .route("/api/executions/{id}/retry", post(executions::retry))
        .route("/health", get(health::health))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(metrics))
        .merge(dashboard::routes())
        .fallback(|| async { AppError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|method: axum::http::Method| async move {
            AppError::MethodNotAllowed(format!("method {method} is not allowed on this route"))
        })
        .layer(axum::middleware::map_response(admin_headers))
        .with_state(state)
}

/// The dashboard's policy: its own scripts, styles and API only; never
/// framed; no inline script.
pub const ADMIN_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

/// Security headers on every response of the admin listener.
async fn admin_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(ADMIN_CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// The tenant the API key belongs to.
#[utoipa::path(get, path = "/api/tenant", tag = "tenant", security(("api_key" = [])),
    responses(
        (status = 200, description = "The tenant", body = views::TenantView),
        (status = 401, description = "No valid API key", body = views::ErrorView),
    ))]
pub async fn tenant(Auth(tenant): Auth) -> axum::Json<views::TenantView> {
    axum::Json(views::TenantView {
        id: tenant.id.clone(),
        name: tenant.name.clone(),
        created_at: views::Rfc3339(tenant.created_at),
    })
}

/// Prometheus metrics of this node (text format).
///
/// Open unless `[metrics] token` is set; then only for
/// `Authorization: Bearer <token>`.
#[utoipa::path(get, path = "/metrics", tag = "health", security((), ("metrics_token" = [])),
    responses(
        (status = 200, description = "The metrics", body = String, content_type = "text/plain"),
        (status = 401, description = "A metrics token is set and was not given", body = views::ErrorView),
    ))]
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if !state.metrics_token.is_empty() {
        use sha2::Digest;
        use subtle::ConstantTimeEq;
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        // Hashes first, so the comparison takes as long whatever the lengths.
        let given = sha2::Sha256::digest(given.trim().as_bytes());
        let expected = sha2::Sha256::digest(state.metrics_token.as_bytes());
        if !bool::from(given.ct_eq(&expected)) {
            let mut refused =
                AppError::Unauthorized("/metrics needs Authorization: Bearer <metrics token>")
                    .into_response();
            refused.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"metrics\""),
            );
            return refused;
        }
    }
    // The database's health, as the readiness probe checks it, for alerts.
    let answered = tokio::time::timeout(health::DATABASE_TIMEOUT, state.db.ping()).await;
    let up = matches!(answered, Ok(Ok(())));
    state.metrics.database_up.set(i64::from(up));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// The tenant a request's API key belongs to.
pub struct Auth(pub Arc<Tenant>);

impl FromRequestParts<AppState> for Auth {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(AppError::Unauthorized(
                "missing Authorization: Bearer <api key>",
            ))?;
        let key = header
            .strip_prefix("Bearer ")
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or(AppError::Unauthorized(
                "Authorization must be Bearer <api key>",
            ))?;
        let hash = hash_api_key(key);
        if let Some(tenant) = state.tenants.get(&hash).await {
            return Ok(Auth(tenant));
        }
        let State(state) = State(state.clone());
        match state.db.tenant_by_key(key).await {
            Ok(tenant) => {
                let tenant = Arc::new(tenant);
                state.tenants.insert(hash, tenant.clone()).await;
                Ok(Auth(tenant))
            }
            Err(StoreError::NotFound) => Err(AppError::Unauthorized("invalid API key")),
            Err(error) => Err(error.into()),
        }
    }
}
