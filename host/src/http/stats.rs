//! `GET /api/stats?minutes=N`: the tenant's last N minutes (default 60) for
//! the dashboard's overview charts: runs per minute by status, p50/p95
//! duration, scheduler lag, errors by kind, and this node's pool use.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::json::Query;
use super::views::Rfc3339;
use super::{AppError, AppState, Auth};
use crate::model::{ExecutionStatus, FailureKind};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// How many minutes back, 1-1440 (default 60).
    #[param(minimum = 1, maximum = 1440)]
    minutes: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StatsView {
    from: Rfc3339,
    minutes: Vec<MinuteView>,
    errors_by_kind: BTreeMap<FailureKind, i64>,
    /// This node's pool, sampled.
    pool: Vec<PoolSample>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MinuteView {
    t: Rfc3339,
    runs: BTreeMap<ExecutionStatus, i64>,
    p50_ms: Option<i64>,
    p95_ms: Option<i64>,
    lag_p95_ms: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PoolSample {
    t: Rfc3339,
    in_use: usize,
    size: usize,
}

/// The tenant's last minutes: runs by status, durations, lag, errors.
///
/// Per minute: runs by status, p50/p95 duration and p95 scheduler lag;
/// errors by kind over the period; this node's pool use, sampled.
#[utoipa::path(get, path = "/api/stats", tag = "tenant", security(("api_key" = [])),
    params(StatsQuery),
    responses(
        (status = 200, description = "The statistics", body = StatsView),
        (status = 400, description = "A bad query parameter, named", body = super::views::ErrorView),
        (status = 401, description = "No valid API key", body = super::views::ErrorView),
    ))]
pub async fn stats(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Query(query): Query<StatsQuery>,
) -> Result<Json<StatsView>, AppError> {
    let minutes = query.minutes.unwrap_or(60);
    if !(1..=1440).contains(&minutes) {
        return Err(AppError::bad(format!(
            "minutes must be from 1 to 1440, got {minutes}"
        )));
    }
    let now = crate::store::now_ms();
    let first = (now / 60_000 - minutes + 1) * 60_000;
    let stats = state
        .db
        .tenant_stats(&tenant.id, first, minutes as usize)
        .await?;
    let minutes = (0..)
        .zip(stats.minutes)
        .map(|(i, m)| MinuteView {
            t: Rfc3339(first + i * 60_000),
            runs: m.runs,
            p50_ms: m.p50_ms,
            p95_ms: m.p95_ms,
            lag_p95_ms: m.lag_p95_ms,
        })
        .collect();
    let pool = state
        .pool_history
        .since(first)
        .into_iter()
        .map(|s| PoolSample {
            t: Rfc3339(s.at_ms),
            in_use: s.in_use,
            size: s.size,
        })
        .collect();
    Ok(Json(StatsView {
        from: Rfc3339(first),
        minutes,
        errors_by_kind: stats.errors_by_kind,
        pool,
    }))
}
