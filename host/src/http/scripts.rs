//! `/api/scripts`: create, list, show, update, delete, run, next runs.
//! Each handler parses, calls one service method and shapes the reply;
//! saving is [`crate::scripts::ScriptService`]'s.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

use super::json::{Body, Query};
use super::views::{AcceptedView, ErrorView, ExecutionView, NextRunsView, Page, ScriptView};
use super::{AppError, AppState, Auth};
use crate::exec::Record;
use crate::model::{ScriptId, Trigger};
use crate::scripts::ScriptChange;
use crate::store::{ScriptRecord, Tenant};

const DEFAULT_PAGE: i64 = 50;
const MAX_PAGE: i64 = 500;

/// A script of `tenant` as shown, with its webhook URL.
fn view(state: &AppState, tenant: &Tenant, s: ScriptRecord) -> ScriptView {
    let url = s
        .webhook_path
        .as_deref()
        .map(|path| state.public_url.webhook_url(&tenant.name, path));
    ScriptView::new(s, url)
}

/// Create a script.
///
/// The source is compiled on save: a syntax error is a 400 naming the line
/// and column. Scheduled scripts get their first fire time; webhook scripts
/// their `webhook_url`.
#[utoipa::path(post, path = "/api/scripts", tag = "scripts", security(("api_key" = [])),
    request_body = ScriptChange,
    responses(
        (status = 201, description = "The script as stored", body = ScriptView),
        (status = 400, description = "A field is missing or wrong; the message names it", body = ErrorView),
        (status = 401, description = "No valid API key", body = ErrorView),
        (status = 409, description = "The webhook path is taken", body = ErrorView),
        (status = 413, description = "The source is over 1 MiB", body = ErrorView),
        (status = 503, description = "The sandbox cannot compile now", body = ErrorView),
    ))]
pub async fn create(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Body(change): Body<ScriptChange>,
) -> Result<Response, AppError> {
    let script = state.scripts.create(&tenant, change).await?;
    Ok((StatusCode::CREATED, Json(view(&state, &tenant, script))).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1-500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<ScriptId>,
    /// Only scripts with exactly this name.
    name: Option<String>,
}

pub fn page_limit(limit: Option<i64>) -> Result<i64, AppError> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(n) => Err(AppError::bad(format!(
            "limit must be from 1 to {MAX_PAGE}, got {n}"
        ))),
    }
}

/// List the tenant's scripts, newest first (`name`: only those so named).
#[utoipa::path(get, path = "/api/scripts", tag = "scripts", security(("api_key" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "A page of scripts", body = Page<ScriptView>),
        (status = 400, description = "A bad query parameter, named", body = ErrorView),
        (status = 401, description = "No valid API key", body = ErrorView),
    ))]
pub async fn list(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Query(page): Query<PageQuery>,
) -> Result<Json<Page<ScriptView>>, AppError> {
    let limit = page_limit(page.limit)?;
    let rows = state
        .scripts
        .list(
            &tenant,
            page.name.as_deref(),
            page.cursor.as_ref(),
            limit + 1,
        )
        .await?;
    Ok(Json(Page::of(
        rows,
        limit,
        |s| s.id.as_str(),
        |s| view(&state, &tenant, s),
    )))
}

/// Show one script.
#[utoipa::path(get, path = "/api/scripts/{id}", tag = "scripts", security(("api_key" = [])),
    params(("id" = String, Path, description = "The script's id")),
    responses(
        (status = 200, description = "The script", body = ScriptView),
        (status = 401, description = "No valid API key", body = ErrorView),
        (status = 404, description = "No such script for this tenant", body = ErrorView),
    ))]
pub async fn show(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Path(id): Path<ScriptId>,
) -> Result<Json<ScriptView>, AppError> {
    let script = state.scripts.get(&tenant, &id).await?;
    Ok(Json(view(&state, &tenant, script)))
}

/// Update a script: fields left out keep their values; the version goes up.
#[utoipa::path(put, path = "/api/scripts/{id}", tag = "scripts", security(("api_key" = [])),
    params(("id" = String, Path, description = "The script's id")),
    request_body = ScriptChange,
    responses(
        (status = 200, description = "The script as stored", body = ScriptView),
        (status = 400, description = "A field is wrong; the message names it", body = ErrorView),
        (status = 401, description = "No valid API key", body = ErrorView),
        (status = 404, description = "No such script for this tenant", body = ErrorView),
        (status = 409, description = "The webhook path is taken", body = ErrorView),
        (status = 413, description = "The source is over 1 MiB", body = ErrorView),
        (status = 503, description = "The sandbox cannot compile now", body = ErrorView),
    ))]
pub async fn update(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Path(id): Path<ScriptId>,
    Body(change): Body<ScriptChange>,
) -> Result<Json<ScriptView>, AppError> {
    let script = state.scripts.update(&tenant, &id, change).await?;
    Ok(Json(view(&state, &tenant, script)))
}

/// Delete a script. Its executions stay until retention deletes them.
#[utoipa::path(delete, path = "/api/scripts/{id}", tag = "scripts", security(("api_key" = [])),
    params(("id" = String, Path, description = "The script's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid API key", body = ErrorView),
        (status = 404, description = "No such script for this tenant", body = ErrorView),
    ))]
pub async fn remove(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Path(id): Path<ScriptId>,
) -> Result<StatusCode, AppError> {
    state.scripts.delete(&tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NextRunsQuery {
    /// How many fire times, 1-100 (default 5).
    #[param(minimum = 1, maximum = 100)]
    count: Option<usize>,
}

const MAX_NEXT_RUNS: usize = 100;

/// The next fire times of a scheduled script.
///
/// In the script's zone (RFC 3339 with offset), starting with the stored
/// `next_run_at`.
#[utoipa::path(get, path = "/api/scripts/{id}/next-runs", tag = "scripts", security(("api_key" = [])),
    params(("id" = String, Path, description = "The script's id"), NextRunsQuery),
    responses(
        (status = 200, description = "The next fire times", body = NextRunsView),
        (status = 400, description = "A bad count, or the script is not scheduled", body = ErrorView),
        (status = 401, description = "No valid API key", body = ErrorView),
        (status = 404, description = "No such script for this tenant", body = ErrorView),
    ))]
pub async fn next_runs(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Path(id): Path<ScriptId>,
    Query(query): Query<NextRunsQuery>,
) -> Result<Json<NextRunsView>, AppError> {
    let count = query.count.unwrap_or(5);
    if !(1..=MAX_NEXT_RUNS).contains(&count) {
        return Err(AppError::bad(format!(
            "count must be from 1 to {MAX_NEXT_RUNS}, got {count}"
        )));
    }
    let (script, zone, times) = state.scripts.next_runs(&tenant, &id, count).await?;
    Ok(Json(NextRunsView {
        script_id: script.id,
        schedule: script.schedule,
        zone: zone.to_string(),
        enabled: script.enabled,
        items: times.iter().map(|t| t.to_rfc3339()).collect(),
    }))
}

/// `POST /api/scripts/{id}/run`'s body (optional).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    /// The handler's `input` (default `null`).
    #[serde(default)]
    input: Value,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RunQuery {
    /// Answer 202 at once instead of waiting for the run.
    #[serde(rename = "async", default)]
    #[param(rename = "async")]
    run_async: bool,
}

/// Run a script now.
///
/// Waits for the run and answers with the finished execution (whatever its
/// status); with `?async=true`, answers 202 once the execution is recorded.
#[utoipa::path(post, path = "/api/scripts/{id}/run", tag = "scripts", security(("api_key" = [])),
    params(("id" = String, Path, description = "The script's id"), RunQuery),
    request_body(content = Option<RunBody>, description = "The input; no body runs with `input: null`"),
    responses(
        (status = 200, description = "The finished execution", body = ExecutionView),
        (status = 202, description = "Accepted and recorded; look it up by id", body = AcceptedView),
        (status = 400, description = "The body is not `{\"input\": ...}`, or the script's settings do not decode", body = ErrorView),
        (status = 401, description = "No valid API key", body = ErrorView),
        (status = 404, description = "No such script for this tenant", body = ErrorView),
        (status = 429, description = "The tenant's queue is full", body = ErrorView),
    ))]
pub async fn run(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Path(id): Path<ScriptId>,
    Query(query): Query<RunQuery>,
    body: axum::body::Bytes,
) -> Result<Response, AppError> {
    // The body is optional: no body (or `null`) runs with `input: null`.
    let input = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice::<Option<RunBody>>(&body)
            .map_err(|e| AppError::bad(format!("invalid JSON body: {e}")))?
            .unwrap_or_default()
            .input
    };
    let script = Arc::new(state.scripts.get(&tenant, &id).await?);
    if query.run_async {
        let accepted = state
            .exec
            .submit(script, Trigger::Manual, &input, 0, Record::First)
            .await?;
        return Ok((
            StatusCode::ACCEPTED,
            Json(AcceptedView {
                execution_id: accepted.execution_id,
            }),
        )
            .into_response());
    }
    let execution = state
        .exec
        .run_to_end(script, Trigger::Manual, &input, 0)
        .await?;
    Ok(Json(ExecutionView::from(execution)).into_response())
}
