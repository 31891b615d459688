//! The overview charts' numbers, aggregated by the database: runs per
//! minute by status, nearest-rank p50/p95 of duration and p95 of scheduler
//! lag per minute, and errors by kind. Each query reads the window through
//! the `(tenant_id, queued_at)` index and returns one row per minute (and
//! status or kind), so an answer costs the same whatever the rows hold.

use std::collections::BTreeMap;

use super::{Db, StoreResult, on_pool};
use crate::model::{ExecutionStatus, FailureKind};

/// One minute of a tenant's runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MinuteStats {
    pub runs: BTreeMap<ExecutionStatus, i64>,
    pub p50_ms: Option<i64>,
    pub p95_ms: Option<i64>,
    /// p95 of start − fire time over first attempts of scheduled runs.
    pub lag_p95_ms: Option<i64>,
}

/// A tenant's last minutes: `minutes[i]` starts at `from + i` minutes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantStats {
    pub from_ms: i64,
    pub minutes: Vec<MinuteStats>,
    pub errors_by_kind: BTreeMap<FailureKind, i64>,
}

/// The minute of a row, 0 for the one starting at `$2`. Rows queued after
/// the last minute began (a node whose clock is ahead) count in the last
/// one: `$3` is its start and `$4` its index.
const MINUTE: &str = "CASE WHEN queued_at >= $3 THEN $4 ELSE (queued_at - $2) / 60000 END";

/// Rows of the tenant `$1` in the window.
const WINDOW: &str = "FROM executions WHERE tenant_id = $1 AND queued_at >= $2";

impl Db {
    /// The `minutes` whole minutes ending with the current one, where
    /// `first_ms` is the start of the first.
    pub async fn tenant_stats(
        &self,
        tenant_id: &str,
        first_ms: i64,
        minutes: usize,
    ) -> StoreResult<TenantStats> {
        let last = minutes.max(1) as i64 - 1;
        let binds = (tenant_id, first_ms, first_ms + last * 60_000, last);
        let mut out = TenantStats {
            from_ms: first_ms,
            minutes: vec![MinuteStats::default(); minutes.max(1)],
            errors_by_kind: BTreeMap::new(),
        };

        let sql = format!("SELECT {MINUTE} AS m, status, COUNT(*) {WINDOW} GROUP BY 1, 2");
        let rows: Vec<(i64, ExecutionStatus, i64)> = on_pool!(self, pool => {
            sqlx::query_as(&sql).bind(binds.0).bind(binds.1).bind(binds.2).bind(binds.3)
                .fetch_all(pool).await
        })?;
        for (minute, status, count) in rows {
            out.minutes[minute as usize].runs.insert(status, count);
        }

        let durations = self
            .quantiles(binds, "duration_ms", "duration_ms IS NOT NULL")
            .await?;
        for (minute, p50, p95) in durations {
            out.minutes[minute as usize].p50_ms = p50;
            out.minutes[minute as usize].p95_ms = p95;
        }
        let lag = "CASE WHEN started_at > scheduled_for THEN started_at - scheduled_for ELSE 0 END";
        let lags = self
            .quantiles(
                binds,
                lag,
                "attempt = 0 AND started_at IS NOT NULL AND scheduled_for IS NOT NULL",
            )
            .await?;
        for (minute, _, p95) in lags {
            out.minutes[minute as usize].lag_p95_ms = p95;
        }

        let sql = format!(
            "SELECT error_type, COUNT(*) {WINDOW} AND error_type IS NOT NULL GROUP BY error_type"
        );
        let rows: Vec<(FailureKind, i64)> = on_pool!(self, pool => {
            sqlx::query_as(&sql).bind(binds.0).bind(binds.1).fetch_all(pool).await
        })?;
        out.errors_by_kind.extend(rows);
        Ok(out)
    }

    /// Per minute, the nearest-rank p50 and p95 of `value` over the rows
    /// where `condition` holds: rank ⌈n·q⌉ in integer arithmetic, from
    /// window functions both backends have.
    async fn quantiles(
        &self,
        binds: (&str, i64, i64, i64),
        value: &str,
        condition: &str,
    ) -> StoreResult<Vec<(i64, Option<i64>, Option<i64>)>> {
        let sql = format!(
            "SELECT m, MAX(CASE WHEN rn = (n + 1) / 2 THEN v END), \
                    MAX(CASE WHEN rn = (95 * n + 99) / 100 THEN v END) \
             FROM (SELECT {MINUTE} AS m, {value} AS v, \
                     ROW_NUMBER() OVER (PARTITION BY {MINUTE} ORDER BY {value}) AS rn, \
                     COUNT(*) OVER (PARTITION BY {MINUTE}) AS n \
                   {WINDOW} AND {condition}) ranked \
             GROUP BY m"
        );
        let rows = on_pool!(self, pool => {
            sqlx::query_as(&sql).bind(binds.0).bind(binds.1).bind(binds.2).bind(binds.3)
                .fetch_all(pool).await
        })?;
        Ok(rows)
    }
}
