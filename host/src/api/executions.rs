//! `/api/executions`: history, one execution, retry.

use super::json::Query;
use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::scripts::{page_json, page_limit, rfc3339};
use super::{AppError, AppState, Auth};
use crate::exec::Trigger;
use crate::store::{ExecutionFilter, ExecutionRecord, ExecutionStatus, StoreError};

/// The API's view of an execution.
pub fn execution_json(e: &ExecutionRecord) -> Value {
    let parse = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
    json!({
        "id": e.id,
        "script_id": e.script_id,
        "script_version": e.script_version,
        "trigger_type": e.trigger_type,
        "status": e.status,
        "input": parse(&e.input),
        "output": e.output.as_deref().map(parse),
        "error_type": e.error_type,
        "error_message": e.error_message,
        "error_stack": e.error_stack,
        "logs": parse(&e.logs),
        "attempt": e.attempt,
        "queued_at": rfc3339(e.queued_at),
        "started_at": e.started_at.map(rfc3339),
        "finished_at": e.finished_at.map(rfc3339),
        "duration_ms": e.duration_ms,
        "fuel_used": e.fuel_used,
        "memory_peak_bytes": e.memory_peak_bytes,
        "cpu_time_us": e.cpu_time_us,
        "scheduled_for": e.scheduled_for.map(rfc3339),
        "retry_at": e.run_after.map(rfc3339),
    })
}

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
) -> Result<Json<Value>, AppError> {
    let limit = page_limit(query.limit)?;
    let status = match query.status.as_deref() {
        None | Some("") => None,
        Some(text) => Some(ExecutionStatus::parse(text).ok_or_else(|| {
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
    let mut rows = state.exec.db().list_executions(&tenant.id, &filter).await?;
    Ok(Json(page_json(&mut rows, limit, |e| &e.id, execution_json)))
}

pub async fn show(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    let execution = state.exec.db().execution(&tenant.id, &id).await?;
    Ok(Json(execution_json(&execution)))
}

/// Runs a failed or dead execution again, as a new execution with the same
/// input and the next attempt number; answers with the new execution.
pub async fn retry(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    let db = state.exec.db();
    let original = db.execution(&tenant.id, &id).await?;
    if !matches!(original.status.as_str(), "failed" | "dead") {
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
    let trigger = match original.trigger_type.as_str() {
        "scheduled" => Trigger::Scheduled,
        "webhook" => Trigger::Webhook,
        _ => Trigger::Manual,
    };
    let input: Value = serde_json::from_str(&original.input).unwrap_or(Value::Null);
    let attempt = original.attempt + 1;
    let execution = state
        .exec
        .run_to_end(std::sync::Arc::new(script), trigger, &input, attempt)
        .await?;
    Ok(Json(execution_json(&execution)))
}
