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
use serde_json::{Value, json};

use super::AppState;

/// A scheduler that has not passed its loop for this long has stalled (it
/// passes at least every 500 ms).
pub const SCHEDULER_STALL: Duration = Duration::from_secs(5);
const DATABASE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Status {
    Pass,
    Warn,
    Fail,
}

fn check(status: Status, message: impl Into<String>) -> (Status, Value) {
    let name = match status {
        Status::Pass => "pass",
        Status::Warn => "warn",
        Status::Fail => "fail",
    };
    (status, json!({ "status": name, "message": message.into() }))
}

fn vm_pool(state: &AppState) -> (Status, Value) {
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

async fn database(state: &AppState) -> (Status, Value) {
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

fn scheduler(state: &AppState) -> (Status, Value) {
    if !state.scheduler_enabled {
        return check(
            Status::Pass,
            "disabled on this node ([scheduler] enabled = false)",
        );
    }
    let last = state.scheduler.last_tick_ms();
    if last == 0 {
        return check(Status::Fail, "the scheduler loop has not run");
    }
    let age = crate::store::now_ms() - last;
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

/// The checks, and whether all of them pass (a warning passes).
async fn report(state: &AppState) -> (bool, Value) {
    let checks = [
        ("vm_pool", vm_pool(state)),
        ("database", database(state).await),
        ("scheduler", scheduler(state)),
    ];
    let healthy = checks
        .iter()
        .all(|(_, (status, _))| *status != Status::Fail);
    let body = json!({
        "healthy": healthy,
        "timestamp": super::views::rfc3339(crate::store::now_ms()),
        "checks": checks.iter().map(|(name, (_, value))| (name.to_string(), value.clone())).collect::<serde_json::Map<_, _>>(),
    });
    (healthy, body)
}

pub async fn health(State(state): State<AppState>) -> Response {
    let (healthy, body) = report(&state).await;
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

pub async fn ready(State(state): State<AppState>) -> Response {
    let (healthy, body) = report(&state).await;
    if healthy {
        "Ready".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}
