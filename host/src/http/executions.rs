//! `/api/executions`: history, one execution, retry, the live stream.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::json::Query;
use super::scripts::page_limit;
use super::views::{ErrorView, ExecutionView, Page};
use super::{AppError, AppState, Auth};
use crate::exec::{ExecutionEvent, Received};
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

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Only this script's executions.
    script_id: Option<ScriptId>,
}

/// How often an idle stream sends a comment, so proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Follow executions as they finish (Server-Sent Events).
///
/// First an event `ready` (`{}`): the subscription is in place. Then one
/// event `execution` per run of the tenant (of `script_id`, if given) that
/// finishes on this node, once its record is committed: status, error,
/// logs, duration in microseconds and usage; no input or output (read those
/// with `GET /api/executions/{id}`). A reader too slow for its buffer of
/// 256 events gets `missed` (`{"missed": N}`) before the next event instead
/// of the ones dropped; runs never wait for a reader. The stream ends when
/// the node shuts down. With several nodes on one PostgreSQL database, a
/// stream carries the runs of the node it is connected to.
#[utoipa::path(get, path = "/api/executions/stream", tag = "executions", security(("api_key" = [])),
    params(StreamQuery),
    responses(
        (status = 200, description = "`text/event-stream`: events `ready`, `execution` (an ExecutionEvent as JSON), `missed`", content_type = "text/event-stream", body = ExecutionEvent),
        (status = 400, description = "A bad query parameter, named", body = ErrorView),
        (status = 401, description = "No valid API key", body = ErrorView),
        (status = 404, description = "No such script for this tenant", body = ErrorView),
    ))]
pub async fn stream(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Query(query): Query<StreamQuery>,
) -> Result<Response, AppError> {
    if let Some(id) = &query.script_id {
        state.scripts.get(&tenant, id).await?;
    }
    let subscription = state
        .exec
        .events()
        .subscribe(tenant.id.clone(), query.script_id);
    let ready = futures::stream::once(async { Ok(Event::default().event("ready").data("{}")) });
    let events = futures::stream::unfold(subscription, |mut subscription| async move {
        let event = match subscription.next().await {
            Received::Event(execution) => Event::default()
                .event("execution")
                .id(execution.id.as_str())
                .json_data(&*execution)
                .unwrap_or_else(|_| Event::default().event("execution").data("{}")),
            Received::Missed(n) => Event::default()
                .event("missed")
                .data(format!("{{\"missed\":{n}}}")),
            Received::Closed => return None,
        };
        Some((Ok::<_, Infallible>(event), subscription))
    });
    let sse = Sse::new(futures::StreamExt::chain(ready, events))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE));
    // Proxies that buffer responses (nginx) pass this one through at once.
    Ok(([("x-accel-buffering", "no")], sse).into_response())
}
