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
use super::views::{AcceptedView, ExecutionView, NextRunsView, Page, ScriptView};
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

pub async fn create(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Body(change): Body<ScriptChange>,
) -> Result<Response, AppError> {
    let script = state.scripts.create(&tenant, change).await?;
    Ok((StatusCode::CREATED, Json(view(&state, &tenant, script))).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    limit: Option<i64>,
    cursor: Option<ScriptId>,
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

pub async fn list(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Query(page): Query<PageQuery>,
) -> Result<Json<Page<ScriptView>>, AppError> {
    let limit = page_limit(page.limit)?;
    let rows = state
        .scripts
        .list(&tenant, page.cursor.as_ref(), limit + 1)
        .await?;
    Ok(Json(Page::of(
        rows,
        limit,
        |s| s.id.as_str(),
        |s| view(&state, &tenant, s),
    )))
}

pub async fn show(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Path(id): Path<ScriptId>,
) -> Result<Json<ScriptView>, AppError> {
    let script = state.scripts.get(&tenant, &id).await?;
    Ok(Json(view(&state, &tenant, script)))
}

pub async fn update(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Path(id): Path<ScriptId>,
    Body(change): Body<ScriptChange>,
) -> Result<Json<ScriptView>, AppError> {
    let script = state.scripts.update(&tenant, &id, change).await?;
    Ok(Json(view(&state, &tenant, script)))
}

pub async fn remove(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Path(id): Path<ScriptId>,
) -> Result<StatusCode, AppError> {
    state.scripts.delete(&tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NextRunsQuery {
    count: Option<usize>,
}

const MAX_NEXT_RUNS: usize = 100;

/// `GET /api/scripts/{id}/next-runs?count=N`: the next fire times in the
/// script's zone (RFC 3339 with offset), starting with the stored
/// `next_run_at`.
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    #[serde(default)]
    input: Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunQuery {
    #[serde(rename = "async", default)]
    run_async: bool,
}

pub async fn run(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Path(id): Path<ScriptId>,
    Query(query): Query<RunQuery>,
    body: axum::body::Bytes,
) -> Result<Response, AppError> {
    // The body is optional: no body runs with `input: null`.
    let input = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice::<RunBody>(&body)
            .map_err(|e| AppError::bad(format!("invalid JSON body: {e}")))?
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
