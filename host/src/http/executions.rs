//! `/api/executions`: history, one execution, retry.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::Value;

use super::json::Query;
use super::scripts::page_limit;
use super::views::{ExecutionView, Page};
use super::{AppError, AppState, Auth};
use crate::model::ExecutionStatus;
use crate::store::{ExecutionFilter, StoreError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    script_id: Option<String>,
    status: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
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
    let rows = state.exec.db().list_executions(&tenant.id, &filter).await?;
    Ok(Json(Page::of(rows, limit, |e| &e.id, ExecutionView::from)))
}

pub async fn show(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Path(id): Path<String>,
) -> Result<Json<ExecutionView>, AppError> {
    let execution = state.exec.db().execution(&tenant.id, &id).await?;
    Ok(Json(execution.into()))
}

/// Runs a failed or dead execution again, as a new execution with the same
/// input and the next attempt number; answers with the new execution.
pub async fn retry(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Path(id): Path<String>,
) -> Result<Json<ExecutionView>, AppError> {
    let db = state.exec.db();
    let original = db.execution(&tenant.id, &id).await?;
    if !original.status.is_retryable() {
        return Err(AppError::Conflict(format!(
            "only failed or dead executions can be retried; this one is {}",
            original.status
        )));
    }
    let script = match db.script(&tenant.id, &original.script_id).await {
        Ok(script) => script,
        Err(StoreError::NotFound) => {
            return Err(AppError::Conflict(
                "the script of this execution has been deleted".into(),
            ));
        }
        Err(error) => return Err(error.into()),
    };
    let input: Value = serde_json::from_str(&original.input).unwrap_or(Value::Null);
    let attempt = original.attempt + 1;
    let execution = state
        .exec
        .run_to_end(
            std::sync::Arc::new(script),
            original.trigger_type,
            &input,
            attempt,
        )
        .await?;
    Ok(Json(execution.into()))
}
