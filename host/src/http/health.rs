//! `/health`, `/health/live`, `/health/ready` (docs/operations.md).
//!
//! `/health` checks the sandbox pool (fails when it cannot make instances,
//! warns when nearly every instance is busy), the database (a real query,
//! 2 s timeout) and the scheduler (its loop passed recently); 503 when any
//! check fails. `/health/live` answers as long as the process serves HTTP.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::AppState;
use super::views::Rfc3339;

/// A scheduler that has not passed its loop for this long has stalled (it
/// passes at least every 500 ms).
pub const SCHEDULER_STALL: Duration = Duration::from_secs(5);
pub(super) const DATABASE_TIMEOUT: Duration = Duration::from_secs(2);

/// A check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

/// One check's result.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Check {
    status: Status,
    message: String,
}

/// The body of `/health` (and of a failing `/health/ready`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Report {
    healthy: bool,
    timestamp: Rfc3339,
    checks: Checks,
}

/// The checks, by name.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Checks {
    vm_pool: Check,
    database: Check,
    scheduler: Check,
}

fn check(status: Status, message: impl Into<String>) -> Check {
    Check {
        status,
        message: message.into(),
    }
}

fn vm_pool(state: &AppState) -> Check {
    let sandbox = &state.sandbox;
    if let Some(error) = sandbox.pool_error() {
        return check(
            Status::Fail,
            format!("cannot make sandbox instances: {error}"),
        );
    }
    let stats = sandbox.pool_stats();
    let message = format!(
        "{} of {} in use, {} ready",
        stats.in_use, stats.max, stats.ready
    );
    if stats.in_use * 10 >= stats.max * 9 {
        check(Status::Warn, format!("busy: {message}"))
    } else {
        check(Status::Pass, message)
    }
}

async fn database(state: &AppState) -> Check {
    let db = &state.db;
    match tokio::time::timeout(DATABASE_TIMEOUT, db.ping()).await {
        Ok(Ok(())) => check(Status::Pass, format!("{} answers", db.dialect())),
        Ok(Err(error)) => check(
            Status::Fail,
            format!("{} query failed: {error:#}", db.dialect()),
        ),
        Err(_) => check(
            Status::Fail,
            format!(
                "{} did not answer within {} s",
                db.dialect(),
                DATABASE_TIMEOUT.as_secs()
            ),
        ),
    }
}

fn scheduler(state: &AppState) -> Check {
    if !state.scheduler_enabled {
        return check(
            Status::Pass,
            "disabled on this node ([scheduler] enabled = false)",
        );
    }
    let last = state.scheduler.last_tick_ms();
    let now = crate::store::now_ms();
    if last == 0 {
        // A node answers requests as soon as it listens, which may be just
        // before its scheduler task first runs.
        if now - state.scheduler.created_ms() < SCHEDULER_STALL.as_millis() as i64 {
            return check(Status::Pass, "the scheduler loop is starting");
        }
        return check(Status::Fail, "the scheduler loop has not run");
    }
    let age = now - last;
    if age > SCHEDULER_STALL.as_millis() as i64 {
        return check(
            Status::Fail,
            format!(
                "the scheduler loop last ran {:.1} s ago",
                age as f64 / 1000.0
            ),
        );
    }
    check(Status::Pass, format!("last pass {age} ms ago"))
}

/// The checks; healthy when none fails (a warning passes).
async fn report(state: &AppState) -> Report {
    let checks = Checks {
        vm_pool: vm_pool(state),
        database: database(state).await,
        scheduler: scheduler(state),
    };
    let healthy = [&checks.vm_pool, &checks.database, &checks.scheduler]
        .iter()
        .all(|check| check.status != Status::Fail);
    Report {
        healthy,
        timestamp: Rfc3339(crate::store::now_ms()),
        checks,
    }
}

/// The node's health: the sandbox pool, the database and the scheduler.
#[utoipa::path(get, path = "/health", tag = "health",
    responses(
        (status = 200, description = "No check fails (a warning passes)", body = Report),
        (status = 503, description = "A check fails", body = Report),
    ))]
pub async fn health(State(state): State<AppState>) -> Response {
    let body = report(&state).await;
    let status = if body.healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Readiness, for load balancers: `Ready`, or 503 with the health report.
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses(
        (status = 200, description = "Ready", body = String, content_type = "text/plain"),
        (status = 503, description = "A check fails", body = Report),
    ))]
pub async fn ready(State(state): State<AppState>) -> Response {
    let body = report(&state).await;
    if body.healthy {
        "Ready".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

/// Liveness: `OK` while the process serves HTTP.
#[utoipa::path(get, path = "/health/live", tag = "health",
    responses((status = 200, description = "The process serves HTTP", body = String, content_type = "text/plain")))]
pub async fn live() -> &'static str {
    "OK"
}
