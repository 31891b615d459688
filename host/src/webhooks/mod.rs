//! The public listener: `ANY /{tenant}/{path...}` (or `ANY /{path...}` on
//! the tenant's own host, see [`public`]) runs the enabled webhook script of
//! that tenant whose `webhook_path` matches. Nothing else is served there:
//! the API and the dashboard live on the admin listener, on another origin.
//!
//! Before anything runs, in this order: the route (404), the script's
//! stored settings (500 `script misconfigured` when they do not decode), the
//! method (405), the script's rate limit (429 with `Retry-After`), the body
//! limit (413), the script's auth (401) and the tenant's fair share (429
//! when its queue is full). Then the call is accepted: its execution is
//! recorded (trigger `webhook`) and run in a task of its own, so it finishes
//! and is stored even if the client goes away. The reply waits for the run
//! (up to `webhooks.sync_timeout_ms`, else 504) and is `{"result": ...}`,
//! `{"error": ...}` (500), or the script's own `Response`, checked (see
//! [`reply`]); with `Prefer: respond-async` or `?async=true` it is 202
//! `{"execution_id"}`.

pub mod auth;
mod limiter;
pub mod public;
mod reply;
mod routes;

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use limiter::Limiters;
pub use public::{PublicUrl, Routing};
pub use routes::Routes;

pub use crate::settings::{AuthType, RateLimit, WebhookAuth};

use crate::api::{AppError, AppState};
use crate::exec::{SubmitError, Trigger};
use crate::settings::ScriptSettings;

/// `webhooks.*` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// Address of the public listener, which serves webhooks only.
    pub listen: String,
    /// Where the world reaches the public listener, for `webhook_url`.
    /// Empty: `http://<listen>`. With `{tenant}` in the host name
    /// (`https://{tenant}.hooks.example.com`) tenants are routed by `Host`
    /// and each has an origin of its own.
    pub public_url: String,
    /// How long a synchronous call waits for its run, ms; then 504 (the run
    /// goes on and is recorded).
    pub sync_timeout_ms: u64,
    /// Largest request body, bytes; larger is 413.
    pub body_limit: usize,
    /// Requests per second per script, for scripts without `rate_limit`.
    pub rps: u32,
    /// Burst per script, for scripts without `rate_limit`.
    pub burst: u32,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8081".into(),
            public_url: String::new(),
            sync_timeout_ms: 30_000,
            body_limit: 1 << 20,
            rps: 10,
            burst: 20,
        }
    }
}

impl WebhookConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.sync_timeout_ms == 0 {
            return Err("webhooks.sync_timeout_ms must be at least 1".into());
        }
        if self.rps == 0 || self.burst == 0 {
            return Err("webhooks.rps and webhooks.burst must be at least 1".into());
        }
        Ok(())
    }

    /// The parsed `public_url`.
    pub fn public_url(&self) -> Result<PublicUrl, String> {
        PublicUrl::parse(&self.public_url, &self.listen)
    }

    pub fn default_limit(&self) -> RateLimit {
        RateLimit {
            rps: self.rps,
            burst: self.burst,
        }
    }
}

/// Header naming the execution a webhook call started.
pub const EXECUTION_HEADER: &str = "x-scriptbox-execution-id";

fn rejected(state: &AppState, reason: &str) {
    state
        .metrics
        .webhooks
        .rejected
        .with_label_values(&[reason])
        .inc();
}

/// The public listener's routes: webhooks, and 404 for anything else.
pub fn public_app(state: AppState) -> Router {
    let routing = state.public_url.routing().clone();
    let router = match routing {
        Routing::Path => Router::new().route("/{tenant}/{*path}", axum::routing::any(by_path)),
        Routing::Host { .. } => Router::new()
            .route("/", axum::routing::any(by_host))
            .route("/{*path}", axum::routing::any(by_host)),
    };
    router
        .fallback(|| async { AppError::NotFound("Webhook endpoint not found".into()) })
        .layer(axum::middleware::map_response(move |response: Response| {
            let routing = routing.clone();
            async move { reply::public_headers(response, &routing) }
        }))
        .with_state(state)
}

/// `ANY /{tenant}/{path...}` with path routing.
async fn by_path(
    State(state): State<AppState>,
    Path((tenant, path)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    serve(state, &tenant, &path, method, uri, headers, body).await
}

/// `ANY /{path...}` on a tenant's own host, with host routing.
async fn by_host(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or_default();
    let Some(tenant) = state.public_url.tenant_from_host(host) else {
        rejected(&state, "not_found");
        return Err(AppError::NotFound("Webhook endpoint not found".into()));
    };
    let path = uri.path().to_owned();
    serve(state, &tenant, &path, method, uri, headers, body).await
}

/// The admin listener's old webhook route: webhooks moved to the public
/// listener, on another origin.
pub async fn moved(
    State(state): State<AppState>,
    Path((tenant, path)): Path<(String, String)>,
) -> AppError {
    let path = format!("/{}", path.trim_matches('/'));
    AppError::NotFound(format!(
        "webhooks are served on the public listener: {}",
        state.public_url.webhook_url(&tenant, &path)
    ))
}

async fn serve(
    state: AppState,
    tenant: &str,
    path: &str,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    // Leading and trailing slashes do not matter: `hooks/a/` is `/hooks/a`.
    let path = format!("/{}", path.trim_matches('/'));
    let Some(script) = state.routes.lookup(state.exec.db(), tenant, &path).await? else {
        rejected(&state, "not_found");
        return Err(AppError::NotFound("Webhook endpoint not found".into()));
    };
    // Stored settings that do not decode fail closed.
    let settings = match ScriptSettings::decode(&script) {
        Ok(settings) => settings,
        Err(misconfigured) => {
            tracing::error!(
                script_id = script.id,
                error = %misconfigured,
                "webhook script misconfigured; the call is refused"
            );
            rejected(&state, "misconfigured");
            return Ok((
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(json!({ "error": "script misconfigured" })),
            )
                .into_response());
        }
    };

    if let Some(allowed) = settings.webhook_methods.as_deref()
        && !allowed.is_empty()
        && !allowed.iter().any(|m| m == method.as_str())
    {
        rejected(&state, "method_not_allowed");
        let message = format!("method {method} is not allowed; use {}", allowed.join(", "));
        return Ok((
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, allowed.join(", "))],
            axum::Json(json!({ "error": message })),
        )
            .into_response());
    }

    let limit = settings
        .rate_limit
        .unwrap_or(state.webhooks.default_limit());
    if let Err(wait) = state.limiters.check(&script.id, limit) {
        rejected(&state, "rate_limited");
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        return Err(AppError::TooManyRequests {
            message: format!(
                "rate limit of {} requests/s (burst {}) exceeded for this webhook",
                limit.rps, limit.burst
            ),
            retry_after_secs: seconds.max(1),
        });
    }

    let body_limit = state.webhooks.body_limit;
    let too_large = || {
        rejected(&state, "body_too_large");
        AppError::PayloadTooLarge(format!(
            "request body is over the limit of {body_limit} bytes"
        ))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > body_limit) {
        return Err(too_large());
    }
    let body = axum::body::to_bytes(body, body_limit)
        .await
        .map_err(|_| too_large())?;

    if let Some(auth) = &settings.webhook_auth {
        let now = crate::store::now_ms() / 1000;
        if let Err(why) = auth::verify(auth, &headers, &body, now) {
            rejected(&state, "unauthorized");
            return Err(AppError::UnauthorizedWebhook(why.0));
        }
    }

    let hide_authorization = settings
        .webhook_auth
        .as_ref()
        .is_some_and(|a| a.kind == AuthType::Bearer);
    let input = request_input(&method, &path, &uri, &headers, &body, hide_authorization);
    drop(body);
    let respond_async = query_flag(&uri, "async")
        || headers
            .get_all("prefer")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|p| p.trim().eq_ignore_ascii_case("respond-async"))
            });

    let accepted = match state.exec.submit(script, Trigger::Webhook, &input, 0).await {
        Ok(accepted) => accepted,
        Err(SubmitError::Busy(busy)) => {
            rejected(&state, "tenant_busy");
            return Err(AppError::TooManyRequests {
                message: busy.to_string(),
                retry_after_secs: 1,
            });
        }
        Err(SubmitError::Store(error)) => {
            tracing::error!(
                error = format!("{error:#}"),
                "recording a webhook call failed"
            );
            return Err(AppError::Unavailable(
                "the call could not be recorded".into(),
            ));
        }
    };
    drop(input);
    let execution_id = accepted.execution_id;
    let id_header = HeaderValue::from_str(&execution_id).expect("ids are ASCII");

    if respond_async {
        let mut response = (
            StatusCode::ACCEPTED,
            axum::Json(json!({ "execution_id": execution_id })),
        )
            .into_response();
        response.headers_mut().insert(EXECUTION_HEADER, id_header);
        return Ok(response);
    }

    let wait = Duration::from_millis(state.webhooks.sync_timeout_ms);
    let mut response = match tokio::time::timeout(wait, accepted.done).await {
        Err(_) => (
            StatusCode::GATEWAY_TIMEOUT,
            axum::Json(json!({
                "error": format!(
                    "the script did not finish within {} ms; execution {execution_id} goes on and will be recorded",
                    state.webhooks.sync_timeout_ms
                )
            })),
        )
            .into_response(),
        Ok(Err(join)) => {
            return Err(AppError::Internal(anyhow::anyhow!("the run's task failed: {join}")));
        }
        Ok(Ok(Err(store))) => return Err(store.into()),
        Ok(Ok(Ok(executed))) => match executed.outcome.result {
            Ok(success) => match success.reply {
                Some(script_reply) => reply::script_response(script_reply),
                None => {
                    let output: Value = serde_json::from_str(&success.output).unwrap_or(Value::Null);
                    axum::Json(json!({ "result": output })).into_response()
                }
            },
            Err(failure) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(json!({ "error": failure.message })),
            )
                .into_response(),
        },
    };
    response.headers_mut().insert(EXECUTION_HEADER, id_header);
    Ok(response)
}

fn query_flag(uri: &Uri, name: &str) -> bool {
    url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .any(|(k, v)| k == name && (v == "true" || v == "1" || v.is_empty()))
}

/// The run's input: `{ method, path, headers, query, body }`. `body` is the
/// parsed JSON when the content type is JSON and it parses, else the text
/// (`null` when empty).
pub fn request_input(
    method: &Method,
    path: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    hide_authorization: bool,
) -> Value {
    let mut header_map: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = if hide_authorization && name == header::AUTHORIZATION {
            "[redacted]".to_owned()
        } else {
            String::from_utf8_lossy(value.as_bytes()).into_owned()
        };
        header_map
            .entry(name.as_str().to_owned())
            .and_modify(|existing| {
                existing.push_str(", ");
                existing.push_str(&value);
            })
            .or_insert(value);
    }
    let mut query: BTreeMap<String, Value> = BTreeMap::new();
    for (key, value) in url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()) {
        let value = Value::String(value.into_owned());
        match query.get_mut(key.as_ref()) {
            Some(Value::Array(values)) => values.push(value),
            Some(existing) => *existing = Value::Array(vec![existing.take(), value]),
            None => {
                query.insert(key.into_owned(), value);
            }
        }
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|mime| mime == "application/json" || mime.ends_with("+json"));
    let body = if body.is_empty() {
        Value::Null
    } else if let Some(parsed) = is_json
        .then(|| serde_json::from_slice::<Value>(body).ok())
        .flatten()
    {
        parsed
    } else {
        Value::String(String::from_utf8_lossy(body).into_owned())
    };
    json!({
        "method": method.as_str(),
        "path": path,
        "headers": header_map,
        "query": query,
        "body": body,
    })
}
