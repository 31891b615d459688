//! The public listener: `ANY /{tenant}/{path...}` (or `ANY /{path...}` on
//! the tenant's own host, see [`crate::webhooks::public`]) runs the enabled
//! webhook script of that tenant whose `webhook_path` matches. Nothing else
//! is served there: the API and the dashboard live on the admin listener, on
//! another origin.
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
//! [`crate::webhooks::reply`]); with `Prefer: respond-async` or
//! `?async=true` it is 202 `{"execution_id"}`.

use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::views::{AcceptedView, ErrorView, ResultView};
use super::{AppError, AppState};
use crate::exec::{Accepted, Record, SubmitError, Trigger};
use crate::settings::{AuthType, ScriptSettings, ScriptTrigger, WebhookSettings};
use crate::store::ScriptRecord;
use crate::webhooks::{EXECUTION_HEADER, Routing, auth, reply, request_input};

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

/// Webhooks are not served here.
///
/// The admin listener's old webhook route: webhooks moved to the public
/// listener, on another origin; the 404 names the URL to call.
#[utoipa::path(get, path = "/api/webhooks/{tenant}/{path}", tag = "webhooks",
    params(
        ("tenant" = String, Path, description = "The tenant's name"),
        ("path" = String, Path, description = "The script's webhook path (may contain `/`)"),
    ),
    responses((status = 404, description = "Names the public URL of this webhook", body = ErrorView)))]
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

/// Call a webhook script (public listener).
///
/// Any method the script allows. The checks, in order: the route (404),
/// the script's settings (500 `script misconfigured`), the method (405),
/// the rate limit (429), the body size (413), the script's auth (401), the
/// tenant's queue (429). Then the run is recorded and the reply waits for
/// it: `{"result": ...}`, `{"error": ...}` (500) or the script's own
/// `Response`; with `Prefer: respond-async` or `?async=true`, 202 with the
/// execution id. Served on `webhooks.listen`, not on the admin listener.
#[utoipa::path(post, path = "/{tenant}/{path}", tag = "webhooks",
    params(
        ("tenant" = String, Path, description = "The tenant's name", example = "acme"),
        ("path" = String, Path, description = "The script's webhook path (may contain `/`)", example = "echo"),
        ("async" = Option<bool>, Query, description = "Answer 202 once the call is recorded"),
    ),
    request_body(content = Option<String>, description = "Any body up to `webhooks.max_body_bytes`; JSON bodies reach the script parsed", content_type = "*/*"),
    responses(
        (status = 200, description = "The script's result, `{\"result\": ...}`, or its own response"),
        (status = 202, description = "Accepted and recorded", body = AcceptedView),
        (status = 401, description = "The script's auth refused the call", body = ErrorView),
        (status = 404, description = "No enabled webhook script at this path", body = ErrorView),
        (status = 405, description = "The script does not take this method", body = ErrorView),
        (status = 413, description = "The body is too large", body = ErrorView),
        (status = 429, description = "Over the script's rate limit, or the tenant's queue is full", body = ErrorView),
        (status = 500, description = "The script failed, or its settings do not decode", body = ErrorView),
        (status = 504, description = "The run took longer than `webhooks.sync_timeout_ms`", body = ErrorView),
    ))]
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

/// Counts a call refused before it ran, by reason.
fn rejected(state: &AppState, reason: &str) {
    state
        .metrics
        .webhooks
        .rejected
        .with_label_values(&[reason])
        .inc();
}

/// One webhook call: each check in the order the module documents, then
/// the run, then the reply.
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
    let Some(script) = state.routes.lookup(&state.db, tenant, &path).await? else {
        rejected(&state, "not_found");
        return Err(AppError::NotFound("Webhook endpoint not found".into()));
    };
    let hook = match ScriptSettings::decode(&script) {
        Ok(ScriptSettings {
            trigger: ScriptTrigger::Webhook(hook),
            ..
        }) => hook,
        // The route cache holds webhook scripts only.
        Ok(_) => return Err(AppError::NotFound("Webhook endpoint not found".into())),
        Err(misconfigured) => return Ok(misconfigured_reply(&state, &script, &misconfigured)),
    };
    if let Some(refusal) = check_method(&state, &hook, &method) {
        return Ok(refusal);
    }
    check_rate(&state, &script, &hook)?;
    let body = read_body(&state, &headers, body).await?;
    if let Some(auth) = &hook.auth {
        let now = crate::store::now_ms() / 1000;
        if let Err(why) = auth::verify(auth, &headers, &body, now) {
            rejected(&state, "unauthorized");
            return Err(AppError::UnauthorizedWebhook(why.0));
        }
    }

    let hide_authorization = hook
        .auth
        .as_ref()
        .is_some_and(|a| a.kind == AuthType::Bearer);
    let mut url = state.public_url.webhook_url(tenant, &path);
    if let Some(query) = uri.query() {
        url = format!("{url}?{query}");
    }
    let input = request_input(
        &method,
        &url,
        &path,
        &uri,
        &headers,
        &body,
        hide_authorization,
    );
    drop(body);
    // A 202 promises a record; a sync reply leaves after the run's one
    // write has committed (docs/api.md, "When a run is recorded").
    let run_async = wants_async(&uri, &headers);
    let record = if run_async {
        Record::First
    } else {
        Record::AtEnd
    };
    let accepted = submit(&state, script, &input, record).await?;
    drop(input);
    let id_header = HeaderValue::from_str(accepted.execution_id.as_str()).expect("ids are ASCII");
    let mut response = if run_async {
        let body = AcceptedView {
            execution_id: accepted.execution_id,
        };
        (StatusCode::ACCEPTED, axum::Json(body)).into_response()
    } else {
        sync_reply(&state, accepted).await?
    };
    response.headers_mut().insert(EXECUTION_HEADER, id_header);
    Ok(response)
}

/// Stored settings that do not decode fail closed: 500, logged with why.
fn misconfigured_reply(
    state: &AppState,
    script: &ScriptRecord,
    misconfigured: &crate::settings::Misconfigured,
) -> Response {
    tracing::error!(
        script_id = %script.id,
        error = %misconfigured,
        "webhook script misconfigured; the call is refused"
    );
    rejected(state, "misconfigured");
    ErrorView::reply(StatusCode::INTERNAL_SERVER_ERROR, "script misconfigured")
}

/// 405 with `Allow` when the script accepts only some methods.
fn check_method(state: &AppState, hook: &WebhookSettings, method: &Method) -> Option<Response> {
    let allowed = hook.methods.as_deref()?;
    if allowed.is_empty() || allowed.iter().any(|m| m == method.as_str()) {
        return None;
    }
    rejected(state, "method_not_allowed");
    let message = format!("method {method} is not allowed; use {}", allowed.join(", "));
    let mut refusal = ErrorView::reply(StatusCode::METHOD_NOT_ALLOWED, message);
    if let Ok(allow) = HeaderValue::from_str(&allowed.join(", ")) {
        refusal.headers_mut().insert(header::ALLOW, allow);
    }
    Some(refusal)
}

/// The script's rate limit (or the listener's default): 429 with the
/// seconds to wait.
fn check_rate(
    state: &AppState,
    script: &ScriptRecord,
    hook: &WebhookSettings,
) -> Result<(), AppError> {
    let limit = hook.rate_limit.unwrap_or(state.webhooks.default_limit());
    let Err(wait) = state.limiters.check(&script.id, limit) else {
        return Ok(());
    };
    rejected(state, "rate_limited");
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    Err(AppError::TooManyRequests {
        message: format!(
            "rate limit of {} requests/s (burst {}) exceeded for this webhook",
            limit.rps, limit.burst
        ),
        retry_after_secs: seconds.max(1),
    })
}

/// The body, refused with 413 as soon as it is known to be over the limit
/// (from `Content-Length`, else while reading).
async fn read_body(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Bytes, AppError> {
    let body_limit = state.webhooks.body_limit;
    let too_large = || {
        rejected(state, "body_too_large");
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
    axum::body::to_bytes(body, body_limit)
        .await
        .map_err(|_| too_large())
}

/// Records the call and starts its run; 429 when the tenant's queue is
/// full, 503 when the record cannot be written.
async fn submit(
    state: &AppState,
    script: std::sync::Arc<ScriptRecord>,
    input: &Value,
    record: Record,
) -> Result<Accepted, AppError> {
    match state
        .exec
        .submit(script, Trigger::Webhook, input, 0, record)
        .await
    {
        Ok(accepted) => Ok(accepted),
        Err(SubmitError::Busy(busy)) => {
            rejected(state, "tenant_busy");
            Err(AppError::TooManyRequests {
                message: busy.to_string(),
                retry_after_secs: 1,
            })
        }
        Err(SubmitError::Store(error)) => {
            tracing::error!(
                error = format!("{error:#}"),
                "recording a webhook call failed"
            );
            Err(AppError::Unavailable(
                "the call could not be recorded".into(),
            ))
        }
    }
}

/// `Prefer: respond-async` or `?async=true`.
fn wants_async(uri: &Uri, headers: &HeaderMap) -> bool {
    query_flag(uri, "async")
        || headers
            .get_all("prefer")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|p| p.trim().eq_ignore_ascii_case("respond-async"))
            })
}

fn query_flag(uri: &Uri, name: &str) -> bool {
    url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .any(|(k, v)| k == name && (v == "true" || v == "1" || v.is_empty()))
}

/// Waits for the run (up to `webhooks.sync_timeout_ms`, else 504) and
/// answers with its result, its error (500) or its own checked `Response`.
async fn sync_reply(state: &AppState, mut accepted: Accepted) -> Result<Response, AppError> {
    let wait = Duration::from_millis(state.webhooks.sync_timeout_ms);
    let executed = match tokio::time::timeout(wait, &mut accepted.done).await {
        Err(_) => {
            // The reply names the execution, so it must exist first.
            if let Err(error) = accepted.record_now().await {
                tracing::error!(
                    error = format!("{error:#}"),
                    "recording a webhook call failed"
                );
                return Err(AppError::Unavailable(
                    "the call could not be recorded".into(),
                ));
            }
            let message = format!(
                "the script did not finish within {} ms; execution {} goes on and will be recorded",
                state.webhooks.sync_timeout_ms, accepted.execution_id
            );
            return Ok(ErrorView::reply(StatusCode::GATEWAY_TIMEOUT, message));
        }
        Ok(Err(join)) => {
            return Err(AppError::Internal(anyhow::anyhow!(
                "the run's task failed: {join}"
            )));
        }
        Ok(Ok(stored)) => stored?,
    };
    Ok(match executed.outcome.result {
        Ok(success) => match success.reply {
            Some(script_reply) => reply::script_response(script_reply),
            None => {
                let output: Value = serde_json::from_str(&success.output).unwrap_or(Value::Null);
                axum::Json(ResultView { result: output }).into_response()
            }
        },
        Err(failure) => ErrorView::reply(StatusCode::INTERNAL_SERVER_ERROR, failure.message),
    })
}
