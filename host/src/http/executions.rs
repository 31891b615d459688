//! `/api/executions`: history, one execution, retry.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;

use super::json::Query;
use super::scripts::page_limit;
use super::views::{ExecutionView, Page};
use super::{AppError, AppState, Auth};
use crate::model::{ExecutionId, ExecutionStatus, ScriptId};
use crate::store::ExecutionFilter;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    script_id: Option<ScriptId>,
    status: Option<String>,
    limit: Option<i64>,
    cursor: Option<ExecutionId>,
}

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

pub async fn show(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Path(id): Path<ExecutionId>,
) -> Result<Json<ExecutionView>, AppError> {
    let execution = state.exec.get(&tenant.id, &id).await?;
    Ok(Json(execution.into()))
}

/// Runs a failed or dead execution again, as a new execution with the same
/// input and the next attempt number; answers with the new execution.
pub async fn retry(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Path(id): Path<ExecutionId>,
) -> Result<Json<ExecutionView>, AppError> {
    let execution = state.exec.retry(&tenant.id, &id).await?;
    Ok(Json(execution.into()))
}
