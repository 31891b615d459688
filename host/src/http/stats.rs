//! `GET /api/stats?minutes=N`: the tenant's last N minutes (default 60) for
//! the dashboard's overview charts: runs per minute by status, p50/p95
//! duration, scheduler lag, errors by kind, and this node's pool use.

use super::json::Query;
use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::views::rfc3339;
use super::{AppError, AppState, Auth};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    minutes: Option<i64>,
}

pub async fn stats(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Query(query): Query<StatsQuery>,
) -> Result<Json<Value>, AppError> {
    let minutes = query.minutes.unwrap_or(60);
    if !(1..=1440).contains(&minutes) {
        return Err(AppError::bad(format!(
            "minutes must be from 1 to 1440, got {minutes}"
        )));
    }
    let now = crate::store::now_ms();
    let first = (now / 60_000 - minutes + 1) * 60_000;
    let stats = state
        .exec
        .db()
        .tenant_stats(&tenant.id, first, minutes as usize)
        .await?;
    let series: Vec<Value> = stats
        .minutes
        .iter()
        .enumerate()
        .map(|(i, m)| {
            json!({
                "t": rfc3339(first + i as i64 * 60_000),
                "runs": m.runs,
                "p50_ms": m.p50_ms,
                "p95_ms": m.p95_ms,
                "lag_p95_ms": m.lag_p95_ms,
            })
        })
        .collect();
    let pool: Vec<Value> = state
        .pool_history
        .since(first)
        .into_iter()
        .map(|s| json!({ "t": rfc3339(s.at_ms), "in_use": s.in_use, "size": s.size }))
        .collect();
    Ok(Json(json!({
        "from": rfc3339(first),
        "minutes": series,
        "errors_by_kind": stats.errors_by_kind,
        "pool": pool,
    })))
}
