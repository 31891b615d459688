//! The HTTP API (SPEC section 5): tenant-scoped routes for scripts and
//! executions. Every `/api` route needs `Authorization: Bearer <api key>`;
//! every query is scoped to the key's tenant, so another tenant's object is
//! a 404. Errors are `{"error": "<message>"}`.

mod error;
mod executions;
mod health;
mod json;
pub(crate) mod scripts;
mod stats;

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

use crate::config::SchedulerConfig;
use crate::exec::ExecutionService;
use crate::metrics::Metrics;
use crate::scheduler::SchedulerHandle;
use crate::store::{StoreError, Tenant, hash_api_key};
use crate::webhooks::{Limiters, PublicUrl, Routes, WebhookConfig};

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub exec: ExecutionService,
    /// Tenants by API-key hash, so a request costs no key lookup in the
    /// database once seen. Entries live a minute.
    tenants: Cache<String, Arc<Tenant>>,
    pub metrics: Metrics,
    /// Told when a schedule changes, so the loop looks again at once.
    pub scheduler: SchedulerHandle,
    /// Defaults for scripts that do not set their retries.
    pub retry_defaults: SchedulerConfig,
    pub webhooks: WebhookConfig,
    /// Where the public listener serves webhooks, for `webhook_url`.
    pub public_url: PublicUrl,
    /// `[metrics] token`: empty when `/metrics` is open.
    pub metrics_token: String,
    pub routes: Routes,
    pub limiters: Limiters,
    pub pool_history: crate::metrics::PoolHistory,
}

impl AppState {
    pub fn new(exec: ExecutionService) -> Self {
        Self {
            exec,
            tenants: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
            metrics: Metrics::new(),
            scheduler: SchedulerHandle::default(),
            retry_defaults: SchedulerConfig::default(),
            public_url: WebhookConfig::default()
                .public_url()
                .expect("the default public URL is valid"),
            webhooks: WebhookConfig::default(),
            metrics_token: String::new(),
            routes: Routes::default(),
            limiters: Limiters::default(),
            pool_history: Default::default(),
        }
    }

    pub fn with_pool_history(mut self, history: crate::metrics::PoolHistory) -> Self {
        self.pool_history = history;
        self
    }

    /// Webhook settings. `webhook_url`s follow `config.public_url` once
    /// [`Self::with_public_url`] gives the parsed form (`serve` does, with the
    /// public listener's bound address).
    pub fn with_webhooks(mut self, config: WebhookConfig) -> Self {
        self.webhooks = config;
        self
    }

    pub fn with_public_url(mut self, url: PublicUrl) -> Self {
        self.public_url = url;
        self
    }

    pub fn with_metrics_token(mut self, token: String) -> Self {
        self.metrics_token = token;
        self
    }

    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn with_scheduler(mut self, scheduler: SchedulerHandle) -> Self {
        self.scheduler = scheduler;
        self
    }

    pub fn with_retry_defaults(mut self, defaults: SchedulerConfig) -> Self {
        self.retry_defaults = defaults;
        self
    }
}

/// The admin listener's routes, without a listener: tests can drive them
/// with `oneshot`. Webhooks are served by [`crate::webhooks::public_app`].
pub fn app(state: AppState) -> Router {
    Router::new()
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
        .route("/api/scripts/{id}/next-runs", get(scripts::next_runs))
        .route(
            "/api/webhooks/{tenant}/{*path}",
            axum::routing::any(crate::webhooks::moved),
        )
        .route("/api/executions", get(executions::list))
        .route("/api/executions/{id}", get(executions::show))
        .route("/api/executions/{id}/retry", post(executions::retry))
        .route("/health", get(health::health))
        .route("/health/live", get(|| async { "OK" }))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(metrics))
        .merge(crate::dashboard::routes())
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

/// `GET /api/tenant`: the tenant the key belongs to.
async fn tenant(Auth(tenant): Auth) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({
        "id": tenant.id,
        "name": tenant.name,
        "created_at": scripts::rfc3339(tenant.created_at),
    }))
}

/// `GET /metrics`: Prometheus text format; with `[metrics] token` set, only
/// for `Authorization: Bearer <token>`.
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
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
        match state.exec.db().tenant_by_key(key).await {
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
