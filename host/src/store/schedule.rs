//! The scheduler's bookkeeping: due scripts claimed occurrence by
//! occurrence, and the dead-letter queue of failed scheduled runs.
//!
//! A script's next fire time is `scripts.next_run_at` (indexed; set only for
//! enabled scheduled scripts). Claiming an occurrence moves `next_run_at`
//! on and inserts its execution in one transaction, with the script rows
//! locked (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite's single writer
//! with `BEGIN IMMEDIATE`), so each occurrence is claimed once however many
//! nodes share the database; the unique index on (script, occurrence,
//! attempt) refuses a second execution of the same occurrence regardless.
//!
//! A failed scheduled run is followed by a retry: an execution row with
//! status `queued`, no node, and `run_after` its earliest start. Any node
//! claims it when due. After the script's last retry the run is `dead`.

use serde_json::json;

use std::sync::Arc;

use super::{Db, ScriptRecord, StoreResult, on_pool};
use crate::model::{ExecutionId, ScriptId};
use serde::{Deserialize, Serialize};

/// How the delay before a retry grows with the attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backoff {
    /// Every retry waits the script's `retry_delay_ms`.
    Fixed,
    /// Retry n waits `retry_delay_ms * 2^(n-1)`, capped at
    /// `backoff_max_ms`, with ±20 % jitter.
    Exponential,
}

/// The range of `retry_delay_ms` (and of `backoff_max_ms`): one second to
/// seven days.
pub const RETRY_DELAY_RANGE_MS: std::ops::RangeInclusive<u64> = 1_000..=604_800_000;

/// How long to wait before a retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub backoff: Backoff,
    pub max_delay_ms: i64,
    /// `[scheduler] max_retries_cap`: rows stored before it existed (or
    /// edited by hand) never retry more often than this.
    pub max_retries: i64,
}

impl RetryPolicy {
    /// The delay before retry number `attempt` (1 for the first), given the
    /// script's `retry_delay_ms`.
    pub fn delay_ms(&self, base_ms: i64, attempt: i64) -> i64 {
        // Out-of-range stored delays (rows older than the bounds, or edited
        // by hand) are brought back within 1 s - 7 days.
        let range = RETRY_DELAY_RANGE_MS;
        let base_ms = base_ms.clamp(*range.start() as i64, *range.end() as i64);
        match self.backoff {
            Backoff::Fixed => base_ms,
            Backoff::Exponential => {
                let doublings = (attempt - 1).clamp(0, 40) as u32;
                let grown = base_ms.saturating_mul(1_i64 << doublings);
                let capped = grown.min(self.max_delay_ms.max(base_ms));
                // +-20 %, so retries of many scripts failing together spread out.
                let mut byte = [0u8; 2];
                let _ = getrandom::fill(&mut byte);
                let unit = f64::from(u16::from_le_bytes(byte)) / f64::from(u16::MAX);
                (capped as f64 * (0.8 + 0.4 * unit)).round() as i64
            }
        }
    }
}

impl Default for RetryPolicy {
    /// The policy of the default `[scheduler]` settings.
    fn default() -> Self {
        Self {
            backoff: Backoff::Fixed,
            max_delay_ms: 3_600_000,
            max_retries: 25,
        }
    }
}

/// After a scheduled run failed (its row still in the transaction `$conn`):
/// queues the next retry and answers `Failed`, or answers `Dead` when the
/// script has no retries left (or is gone). Runs that are not part of a
/// scheduled occurrence (manual retries, webhooks) stay `Failed`.
macro_rules! follow_up {
    ($conn:expr, $id:expr, $now:expr, $policy:expr) => {{
        let row: Option<(i64, Option<i64>, Option<i64>, Option<i64>)> = sqlx::query_as(
            "SELECT e.attempt, e.scheduled_for, s.max_retries, s.retry_delay_ms \
             FROM executions e LEFT JOIN scripts s ON s.id = e.script_id WHERE e.id = $1",
        )
        .bind($id)
        .fetch_optional($conn)
        .await?;
        match row {
            Some((attempt, Some(_), Some(max_retries), Some(delay)))
                if attempt < max_retries.min($policy.max_retries) =>
            {
                let run_after = $now + $policy.delay_ms(delay, attempt + 1);
                sqlx::query(
                    "INSERT INTO executions (id, tenant_id, script_id, script_version, \
                     trigger_type, status, input, logs, attempt, node_id, queued_at, \
                     scheduled_for, run_after) \
                     SELECT $2, tenant_id, script_id, script_version, trigger_type, 'queued', \
                     input, '[]', attempt + 1, '', $3, scheduled_for, $4 \
                     FROM executions WHERE id = $1",
                )
                .bind($id)
                .bind($crate::model::ExecutionId::generate())
                .bind($now)
                .bind(run_after)
                .execute($conn)
                .await?;
                $crate::model::ExecutionStatus::Failed
            }
            Some((_, Some(_), _, _)) => $crate::model::ExecutionStatus::Dead,
            _ => $crate::model::ExecutionStatus::Failed,
        }
    }};
}
pub(crate) use follow_up;

/// A script whose next fire time has come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueScript {
    /// The occurrence being claimed: the script's `next_run_at`.
    pub occurrence: i64,
    /// The script as it stood when claimed, which is what the run runs: the
    /// claim reads the row anyway, so a run needs no second read.
    pub record: Arc<ScriptRecord>,
}

/// What the scheduler decided for a due script: its following fire time
/// (`None`: no more) and the input of the run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub next_run_at: Option<i64>,
    pub input: serde_json::Value,
}

/// One claimed occurrence.
#[derive(Debug, Clone)]
pub struct Claim {
    pub script: DueScript,
    /// The execution created for it; `None` when the occurrence was skipped
    /// because the script's previous scheduled run is still open.
    pub execution_id: Option<ExecutionId>,
    pub input: serde_json::Value,
}

impl Db {
    /// `BEGIN` for a transaction that reads and then writes: on SQLite it
    /// takes the write lock at once, so it waits for other writers instead
    /// of failing when it upgrades.
    pub(crate) fn begin_write(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "BEGIN IMMEDIATE",
            Db::Postgres(_) => "BEGIN",
        }
    }

    /// Claims up to `limit` scripts due by `due_by`: moves each one's
    /// `next_run_at` to what `plan` says and, unless its previous scheduled
    /// run is still open (on a live node: see [`super::Presence`]), inserts
    /// a `queued` execution of the occurrence owned by `node_id`. Scripts
    /// another node is claiming are skipped.
    pub async fn claim_due_scripts(
        &self,
        due_by: i64,
        limit: i64,
        node_id: &str,
        plan: impl Fn(&DueScript) -> Plan,
    ) -> StoreResult<Vec<Claim>> {
        let lock = match self {
            Db::Sqlite(_) => "",
            Db::Postgres(_) => " FOR UPDATE SKIP LOCKED",
        };
        let select = format!(
            "SELECT {} FROM scripts WHERE next_run_at <= $1 ORDER BY next_run_at LIMIT $2{lock}",
            super::scripts::COLUMNS
        );
        let begin = self.begin_write();
        on_pool!(self, pool => {
            let mut tx = pool.begin_with(begin).await?;
            let rows: Vec<ScriptRecord> = sqlx::query_as(&select)
                .bind(due_by).bind(limit).fetch_all(&mut *tx).await?;
            let due: Vec<DueScript> = rows.into_iter().filter_map(|record| Some(DueScript {
                occurrence: record.next_run_at?,
                record: Arc::new(record),
            })).collect();
            if due.is_empty() {
                return Ok(Vec::new());
            }
            // Which of them still have a scheduled run open. On a shared
            // database a run counts only if its node is this one or holds
            // its presence lock: a dead node's runs cannot still be going.
            let placeholders: Vec<String> = (1..=due.len()).map(|i| format!("${i}")).collect();
            let open_sql = format!(
                "SELECT DISTINCT script_id, node_id FROM executions \
                 WHERE status IN ('queued', 'running') AND run_after IS NULL \
                 AND trigger_type = 'scheduled' AND script_id IN ({})",
                placeholders.join(", ")
            );
            let mut open_query = sqlx::query_as::<_, (ScriptId, String)>(&open_sql);
            for script in &due {
                open_query = open_query.bind(&script.record.id);
            }
            let open_runs = open_query.fetch_all(&mut *tx).await?;
            let others: Vec<&str> = open_runs
                .iter()
                .map(|(_, node)| node.as_str())
                .filter(|node| *node != node_id)
                .collect();
            // Asked only when another node has an open run (rarely).
            let present: std::collections::HashSet<String> = match self {
                Db::Postgres(_) if !others.is_empty() => {
                    let sql = format!(
                        "SELECT id FROM ({}) present WHERE id IN ({})",
                        super::nodes::PRESENT_NODES,
                        (1..=others.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
                    );
                    let mut query = sqlx::query_as::<_, (String,)>(&sql);
                    for node in &others {
                        query = query.bind(*node);
                    }
                    query.fetch_all(&mut *tx).await?.into_iter().map(|(id,)| id).collect()
                }
                _ => others.iter().map(|node| (*node).to_owned()).collect(),
            };
            let open: std::collections::HashSet<ScriptId> = open_runs
                .into_iter()
                .filter(|(_, node)| node == node_id || present.contains(node))
                .map(|(script, _)| script)
                .collect();

            // Every next fire time in one statement, every new execution
            // in another (one row per script whose previous run is done).
            let plans: Vec<Plan> = due.iter().map(&plan).collect();
            let move_sql = format!(
                "UPDATE scripts SET next_run_at = v.column2 FROM (VALUES {}) AS v \
                 WHERE scripts.id = v.column1",
                super::values_rows(self, due.len(), 2)
            );
            let mut moved = sqlx::query(&move_sql);
            for (script, plan) in due.iter().zip(&plans) {
                moved = moved.bind(&script.record.id).bind(plan.next_run_at);
            }
            moved.execute(&mut *tx).await?;
            let fresh: Vec<(usize, ExecutionId)> = due
                .iter()
                .enumerate()
                .filter(|(_, script)| !open.contains(&script.record.id))
                .map(|(i, _)| (i, ExecutionId::generate()))
                .collect();
            let mut inserted = std::collections::HashSet::new();
            if !fresh.is_empty() {
                let now = super::now_ms();
                // `WHERE true` keeps SQLite from reading `ON CONFLICT` as a
                // join's `ON`.
                let sql = format!(
                    "INSERT INTO executions (id, tenant_id, script_id, script_version, input, \
                     scheduled_for, node_id, queued_at, trigger_type, status, logs, attempt) \
                     SELECT column1, column2, column3, column4, column5, column6, column7, \
                     column8, 'scheduled', 'queued', '[]', 0 FROM (VALUES {}) AS v \
                     WHERE true ON CONFLICT DO NOTHING RETURNING id",
                    super::values_rows(self, fresh.len(), 8)
                );
                let mut insert = sqlx::query_as::<_, (ExecutionId,)>(&sql);
                for (i, id) in &fresh {
                    let script = &due[*i].record;
                    insert = insert
                        .bind(id).bind(&script.tenant_id).bind(&script.id).bind(script.version)
                        .bind(plans[*i].input.to_string()).bind(due[*i].occurrence)
                        .bind(node_id).bind(now);
                }
                inserted = insert.fetch_all(&mut *tx).await?.into_iter().map(|(id,)| id).collect();
            }
            let mut ids = fresh.into_iter().peekable();
            let mut claims = Vec::with_capacity(due.len());
            for (i, (script, plan)) in due.into_iter().zip(plans).enumerate() {
                let execution_id = match ids.peek() {
                    Some((at, _)) if *at == i => ids.next().map(|(_, id)| id).filter(|id| inserted.contains(id)),
                    _ => None,
                };
                claims.push(Claim { script, execution_id, input: plan.input });
            }
            tx.commit().await?;
            Ok(claims)
        })
    }

    /// Claims up to `limit` retries due at `now` for `node_id` and returns
    /// them, ready to run (`queued`, owned by the node, on the script's
    /// current version).
    pub async fn claim_due_retries(
        &self,
        now: i64,
        limit: i64,
        node_id: &str,
    ) -> StoreResult<Vec<super::ExecutionRecord>> {
        let lock = match self {
            Db::Sqlite(_) => "",
            Db::Postgres(_) => " FOR UPDATE SKIP LOCKED",
        };
        let select = format!(
            "SELECT id FROM executions WHERE run_after <= $1 ORDER BY run_after LIMIT $2{lock}"
        );
        let claim = "UPDATE executions SET run_after = NULL, node_id = $2, \
            script_version = COALESCE((SELECT version FROM scripts WHERE scripts.id = executions.script_id), script_version) \
            WHERE id = $1 AND run_after IS NOT NULL";
        let begin = self.begin_write();
        let ids: Vec<ExecutionId> = on_pool!(self, pool => {
            let mut tx = pool.begin_with(begin).await?;
            let ids: Vec<(ExecutionId,)> = sqlx::query_as(&select)
                .bind(now).bind(limit).fetch_all(&mut *tx).await?;
            for (id,) in &ids {
                sqlx::query(claim).bind(id).bind(node_id).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            ids.into_iter().map(|(id,)| id).collect()
        });
        let mut claimed = Vec::with_capacity(ids.len());
        for id in ids {
            claimed.push(self.execution_by_id(&id).await?);
        }
        Ok(claimed)
    }

    /// The earliest time anything is due: a script's next fire time or a
    /// pending retry.
    pub async fn earliest_due(&self) -> StoreResult<Option<i64>> {
        let sql = "SELECT MIN(t) FROM ( \
            SELECT MIN(next_run_at) AS t FROM scripts WHERE next_run_at IS NOT NULL \
            UNION ALL SELECT MIN(run_after) AS t FROM executions WHERE run_after IS NOT NULL) due";
        let (earliest,): (Option<i64>,) =
            on_pool!(self, pool => sqlx::query_as(sql).fetch_one(pool).await)?;
        Ok(earliest)
    }

    /// Executions in the dead-letter queue (all tenants).
    pub async fn dead_letter_count(&self) -> StoreResult<i64> {
        let (count,): (i64,) = on_pool!(self, pool => {
            sqlx::query_as("SELECT COUNT(*) FROM executions WHERE status = 'dead'").fetch_one(pool).await
        })?;
        Ok(count)
    }

    /// Sets a script's next fire time (after a save, or in tests to stand
    /// for time passing while no node ran).
    pub async fn set_next_run(
        &self,
        script_id: &ScriptId,
        next_run_at: Option<i64>,
    ) -> StoreResult<()> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE scripts SET next_run_at = $2 WHERE id = $1")
                .bind(script_id).bind(next_run_at).execute(pool).await.map(|_| ())
        })?;
        Ok(())
    }
}

/// The input of a scheduled run: `{ scheduledAt }` as RFC 3339.
pub fn scheduled_input(scheduled_at: &str) -> serde_json::Value {
    json!({ "scheduledAt": scheduled_at })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_delays_out_of_range_are_brought_back_within_bounds() {
        let policy = RetryPolicy::default();
        // -1 is what u64::MAX became when it was stored unchecked.
        assert_eq!(policy.delay_ms(-1, 1), 1_000);
        assert_eq!(policy.delay_ms(0, 1), 1_000);
        assert_eq!(policy.delay_ms(i64::MAX, 1), 604_800_000);
        assert_eq!(policy.delay_ms(5_000, 1), 5_000);
        assert_eq!(policy.max_retries, 25);
    }
}
