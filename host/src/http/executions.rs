//! `/api/executions`: history, one execution, retry.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;

use super::json::Query;
use super::scripts::page_limit;
use super::views::{ErrorView, ExecutionView, Page};
use super::{AppError, AppState, Auth};
use crate::model::{ExecutionId, ExecutionStatus, ScriptId};
use crate::store::ExecutionFilter;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this script's executions.
    script_id: Option<ScriptId>,
    /// Only executions in this status (`dead`: the dead-letter queue);
    /// empty: any.
    #[param(value_type = Option<String>, pattern = "^(|queued|running|completed|failed|dead)$")]
    status: Option<String>,
    /// Items per page, 1-500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<ExecutionId>,
}

/// List the tenant's executions, newest first.
#[utoipa::path(get, path = "/api/executions", tag = "executions", security(("api_key" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "A page of executions", body = Page<ExecutionView>),
        (status = 400, description = "A bad query parameter, named", body = ErrorView),
        (status = 401, description = "No valid API key", body = ErrorView),
    ))]
pub async fn list(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Query(query): Query<ListQuery>,
) -> Result<Json<Page<ExecutionView>>, AppError> {
    let limit = page_limit(query.limit)?;
    let status = match query.status.as_deref() {
        None | Some("") => None,
        Some(text) => Some(text.parse::<ExecutionStatus>().map_err(|_| {
            AppError::bad(format!(
                "invalid status {text:?}: use queued, running, completed, failed or dead"
            ))
        })?),
    };
    let filter = ExecutionFilter {
        script_id: query.script_id,
        status,
        before: query.cursor,
        limit: limit + 1,
    };
    let rows = state.exec.list(&tenant.id, &filter).await?;
    Ok(Json(Page::of(
        rows,
        limit,
        |e| e.id.as_str(),
        ExecutionView::from,
    )))
}

/// Show one execution: input, output, logs, error, usage.
#[utoipa::path(get, path = "/api/executions/{id}", tag = "executions", security(("api_key" = [])),
    params(("id" = String, Path, description = "The execution's id")),
    responses(
        (status = 200, description = "The execution", body = ExecutionView),
        (status = 401, description = "No valid API key", body = ErrorView),
        (status = 404, description = "No such execution for this tenant", body = ErrorView),
    ))]
pub async fn show(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Path(id): Path<ExecutionId>,
) -> Result<Json<ExecutionView>, AppError> {
    let execution = state.exec.get(&tenant.id, &id).await?;
    Ok(Json(execution.into()))
}

/// Retry a failed or dead execution.
///
/// Runs it again as a new execution with the same input and the next
/// attempt number, and answers with the new execution once it finished.
#[utoipa::path(post, path = "/api/executions/{id}/retry", tag = "executions", security(("api_key" = [])),
    params(("id" = String, Path, description = "The execution's id")),
    responses(
        (status = 200, description = "The new execution, finished", body = ExecutionView),
        (status = 401, description = "No valid API key", body = ErrorView),
        (status = 404, description = "No such execution for this tenant", body = ErrorView),
        (status = 409, description = "Not failed or dead, or its script is gone or disabled", body = ErrorView),
        (status = 429, description = "The tenant's queue is full", body = ErrorView),
    ))]
pub async fn retry(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Path(id): Path<ExecutionId>,
) -> Result<Json<ExecutionView>, AppError> {
    let execution = state.exec.retry(&tenant.id, &id).await?;
    Ok(Json(execution.into()))
}
