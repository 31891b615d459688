//! `GET /api/stats?minutes=N`: the tenant's last N minutes (default 60) for
//! the dashboard's overview charts: runs per minute by status, p50/p95
//! duration, scheduler lag, errors by kind, and this node's pool use.

use std::collections::BTreeMap;

use super::json::Query;
use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::scripts::rfc3339;
use super::{AppError, AppState, Auth};

/// Most executions read for one answer.
const MAX_ROWS: i64 = 100_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    minutes: Option<i64>,
}

/// The value at quantile `q` of sorted `values`.
fn quantile(sorted: &[i64], q: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((sorted.len() as f64) * q).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[derive(Default)]
struct Minute {
    by_status: BTreeMap<String, u64>,
    durations: Vec<i64>,
    lags: Vec<i64>,
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
    let rows = state
        .exec
        .db()
        .executions_since(&tenant.id, first, MAX_ROWS)
        .await?;
    let mut buckets: Vec<Minute> = (0..minutes).map(|_| Minute::default()).collect();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for row in &rows {
        let index = ((row.queued_at - first) / 60_000).clamp(0, minutes - 1) as usize;
        let bucket = &mut buckets[index];
        *bucket.by_status.entry(row.status.clone()).or_default() += 1;
        if let Some(ms) = row.duration_ms {
            bucket.durations.push(ms);
        }
        if let (Some(started), Some(scheduled)) = (row.started_at, row.scheduled_for)
            && row.attempt == 0
        {
            bucket.lags.push((started - scheduled).max(0));
        }
        if let Some(kind) = &row.error_type {
            *errors.entry(kind.clone()).or_default() += 1;
        }
    }
    let series: Vec<Value> = buckets
        .iter_mut()
        .enumerate()
        .map(|(i, m)| {
            m.durations.sort_unstable();
            m.lags.sort_unstable();
            json!({
                "t": rfc3339(first + i as i64 * 60_000),
                "runs": m.by_status,
                "p50_ms": quantile(&m.durations, 0.50),
                "p95_ms": quantile(&m.durations, 0.95),
                "lag_p95_ms": quantile(&m.lags, 0.95),
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
        "errors_by_kind": errors,
        "pool": pool,
        "truncated": rows.len() as i64 >= MAX_ROWS,
    })))
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn quantiles_are_nearest_rank() {
        let values: Vec<i64> = (1..=100).collect();
        assert_eq!(quantile(&values, 0.5), Some(50));
        assert_eq!(quantile(&values, 0.95), Some(95));
        assert_eq!(quantile(&[7], 0.95), Some(7));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
