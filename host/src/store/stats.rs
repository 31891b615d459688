//! The overview charts' numbers, aggregated by the database: runs per
//! minute by status, nearest-rank p50/p95 of duration and p95 of scheduler
//! lag per minute, and errors by kind, in one statement that reads the
//! window once and returns one row per minute and measure: nothing per
//! execution reaches the service.
//!
//! The window is found through `(tenant_id, id)`, the index listings use,
//! not one on `queued_at`: ids are UUIDv7 made by the node that queues the
//! run, from the same clock and at the same moment as `queued_at`, so the
//! rows queued since `first_ms` have ids from [`ExecutionId::lowest_at`] of
//! a little earlier ([`ID_SLACK_MS`]). Every run recorded then updates one
//! B-tree fewer.

use std::collections::BTreeMap;

use super::{Db, StoreError, StoreResult, on_pool};
use crate::model::{ExecutionId, ExecutionStatus, FailureKind, TenantId};

/// How much earlier than its `queued_at` a run's id may have been made.
/// Both are read within microseconds of each other; the margin only costs
/// reading this many milliseconds of rows more.
const ID_SLACK_MS: i64 = 10_000;

/// One minute of a tenant's runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MinuteStats {
    pub runs: BTreeMap<ExecutionStatus, i64>,
    pub p50_ms: Option<i64>,
    pub p95_ms: Option<i64>,
    /// p95 of start − fire time over first attempts of scheduled runs.
    pub lag_p95_ms: Option<i64>,
}

/// A tenant's last minutes: `minutes[i]` starts `i` minutes after the
/// first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantStats {
    pub minutes: Vec<MinuteStats>,
    pub errors_by_kind: BTreeMap<FailureKind, i64>,
}

/// The minute of a row, 0 for the one starting at `$2`. Rows queued after
/// the last minute began (a node whose clock is ahead) count in the last
/// one: `$3` is its start and `$4` its index.
const MINUTE: &str = "CASE WHEN queued_at >= $3 THEN $4 ELSE (queued_at - $2) / 60000 END";

/// Start − fire time of a first attempt of a scheduled run (0 when early).
const LAG: &str = "CASE WHEN attempt = 0 AND started_at IS NOT NULL AND scheduled_for IS NOT NULL \
    THEN CASE WHEN started_at > scheduled_for THEN started_at - scheduled_for ELSE 0 END END";

/// Nearest rank ⌈n·q⌉ in integer arithmetic, for q = 0.5 and 0.95.
const P50: &str = "(n + 1) / 2";
const P95: &str = "(95 * n + 99) / 100";

impl Db {
    /// The `minutes` whole minutes ending with the current one, where
    /// `first_ms` is the start of the first.
    ///
    /// One statement: the window's rows (tenant `$1`, queued at or after
    /// `$2`, ids from `$5`) are read once into `w`; counts and nearest-rank quantiles
    /// (window functions both backends have) come back as rows of
    /// `(what, minute, name, value)`.
    pub async fn tenant_stats(
        &self,
        tenant_id: &TenantId,
        first_ms: i64,
        minutes: usize,
    ) -> StoreResult<TenantStats> {
        let sql = format!(
            "WITH w AS MATERIALIZED ( \
               SELECT {MINUTE} AS m, status, error_type, duration_ms AS d, {LAG} AS lag \
               FROM executions WHERE tenant_id = $1 AND id >= $5 AND queued_at >= $2), \
             d AS (SELECT m, d AS v, ROW_NUMBER() OVER (PARTITION BY m ORDER BY d) AS rn, \
                     COUNT(*) OVER (PARTITION BY m) AS n FROM w WHERE d IS NOT NULL), \
             l AS (SELECT m, lag AS v, ROW_NUMBER() OVER (PARTITION BY m ORDER BY lag) AS rn, \
                     COUNT(*) OVER (PARTITION BY m) AS n FROM w WHERE lag IS NOT NULL) \
             SELECT 'runs', m, status, COUNT(*) FROM w GROUP BY m, status \
             UNION ALL SELECT 'error', 0, error_type, COUNT(*) FROM w \
               WHERE error_type IS NOT NULL GROUP BY error_type \
             UNION ALL SELECT 'p50', m, NULL, MAX(CASE WHEN rn = {P50} THEN v END) FROM d GROUP BY m \
             UNION ALL SELECT 'p95', m, NULL, MAX(CASE WHEN rn = {P95} THEN v END) FROM d GROUP BY m \
             UNION ALL SELECT 'lag', m, NULL, MAX(CASE WHEN rn = {P95} THEN v END) FROM l GROUP BY m"
        );
        let last = minutes.max(1) as i64 - 1;
        let lowest = ExecutionId::lowest_at(first_ms - ID_SLACK_MS);
        let rows: Vec<(String, i64, Option<String>, Option<i64>)> = on_pool!(self, pool => {
            sqlx::query_as(&sql)
                .bind(tenant_id).bind(first_ms).bind(first_ms + last * 60_000).bind(last)
                .bind(&lowest)
                .fetch_all(pool).await
        })?;
        let mut out = TenantStats {
            minutes: vec![MinuteStats::default(); minutes.max(1)],
            errors_by_kind: BTreeMap::new(),
        };
        for (what, minute, name, value) in rows {
            let minute = &mut out.minutes[minute.clamp(0, last) as usize];
            let name = name.unwrap_or_default();
            let count = value.unwrap_or(0);
            match what.as_str() {
                "runs" => {
                    minute
                        .runs
                        .insert(name.parse().map_err(decode_error)?, count);
                }
                "error" => {
                    out.errors_by_kind
                        .insert(name.parse().map_err(decode_error)?, count);
                }
                "p50" => minute.p50_ms = value,
                "p95" => minute.p95_ms = value,
                _ => minute.lag_p95_ms = value,
            }
        }
        Ok(out)
    }
}

/// A stored status or error kind the service does not know.
fn decode_error(error: crate::model::UnknownName) -> StoreError {
    StoreError::Other(anyhow::Error::new(error).context("reading the overview's counts"))
}
