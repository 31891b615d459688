//! Executions: one row per run, written before the run starts and completed
//! when it ends, so no accepted run goes unrecorded.

use super::schedule::{RetryPolicy, follow_up};
use super::{Db, StoreError, StoreResult, now_ms, on_pool};
use crate::model::{ExecutionId, ExecutionStatus, FailureKind, ScriptId, TenantId, Trigger};

/// An execution as stored. `input`, `output` and `logs` are JSON text. A
/// row whose status, trigger or error kind is not one the service knows
/// does not decode.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ExecutionRecord {
    pub id: ExecutionId,
    pub tenant_id: TenantId,
    pub script_id: ScriptId,
    pub script_version: i64,
    pub trigger_type: Trigger,
    pub status: ExecutionStatus,
    pub input: String,
    pub output: Option<String>,
    pub error_type: Option<FailureKind>,
    pub error_message: Option<String>,
    pub error_stack: Option<String>,
    pub logs: String,
    pub attempt: i64,
    pub node_id: String,
    pub queued_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub duration_ms: Option<i64>,
    /// Wall time in microseconds (`None` on rows older than the column).
    pub duration_us: Option<i64>,
    pub fuel_used: Option<i64>,
    pub memory_peak_bytes: Option<i64>,
    pub cpu_time_us: Option<i64>,
    /// The occurrence (fire time) of a scheduled run and its retries.
    pub scheduled_for: Option<i64>,
    /// A pending retry's earliest start.
    pub run_after: Option<i64>,
}

/// What is known when a run is accepted.
#[derive(Debug, Clone)]
pub struct NewExecution {
    /// Made ([`ExecutionId::generate`]) when the run is accepted, by the
    /// node that records its `queued_at`: retention and the overview find
    /// rows by time through their ids.
    pub id: ExecutionId,
    pub tenant_id: TenantId,
    pub script_id: ScriptId,
    pub script_version: i64,
    pub trigger_type: Trigger,
    /// JSON text; shared with the run that reads it.
    pub input: std::sync::Arc<str>,
    pub attempt: i64,
    pub node_id: String,
    pub scheduled_for: Option<i64>,
}

/// What a finished run adds.
#[derive(Debug, Clone)]
pub struct FinishedRun {
    pub status: ExecutionStatus,
    pub output: Option<String>,
    pub error_type: Option<FailureKind>,
    pub error_message: Option<String>,
    pub error_stack: Option<String>,
    pub logs: String,
    pub duration_ms: i64,
    pub duration_us: i64,
    pub fuel_used: i64,
    pub memory_peak_bytes: i64,
    pub cpu_time_us: i64,
}

/// Which executions a list returns.
#[derive(Debug, Clone, Default)]
pub struct ExecutionFilter {
    pub script_id: Option<ScriptId>,
    pub status: Option<ExecutionStatus>,
    /// The cursor: only executions older than this id.
    pub before: Option<ExecutionId>,
    pub limit: i64,
}

const COLUMNS: &str = "id, tenant_id, script_id, script_version, trigger_type, status, input, \
    output, error_type, error_message, error_stack, logs, attempt, node_id, queued_at, \
    started_at, finished_at, duration_ms, fuel_used, memory_peak_bytes, cpu_time_us, \
    scheduled_for, run_after, duration_us";

impl Db {
    /// Records an accepted run as `queued`.
    pub async fn insert_execution(&self, new: &NewExecution) -> StoreResult<()> {
        self.insert_execution_as(new, ExecutionStatus::Queued).await
    }

    async fn insert_execution_as(
        &self,
        new: &NewExecution,
        status: ExecutionStatus,
    ) -> StoreResult<()> {
        let sql = "INSERT INTO executions (id, tenant_id, script_id, script_version, trigger_type, \
            status, input, logs, attempt, node_id, queued_at, scheduled_for, started_at) \
            VALUES ($1, $2, $3, $4, $5, $11, $6, '[]', $7, $8, $9, $10, $12)";
        let now = now_ms();
        let started_at = (status == ExecutionStatus::Running).then_some(now);
        on_pool!(self, pool => {
            sqlx::query(sql)
                .bind(&new.id).bind(&new.tenant_id).bind(&new.script_id).bind(new.script_version)
                .bind(new.trigger_type).bind(&*new.input).bind(new.attempt).bind(&new.node_id)
                .bind(now).bind(new.scheduled_for).bind(status).bind(started_at)
                .execute(pool).await.map(|r| r.rows_affected())
        })?;
        Ok(())
    }

    /// Moves a queued execution to `running`; returns the start time.
    pub async fn start_execution(&self, id: &ExecutionId) -> StoreResult<i64> {
        let now = now_ms();
        let done = on_pool!(self, pool => {
            sqlx::query("UPDATE executions SET status = 'running', started_at = $2 WHERE id = $1 AND status = 'queued'")
                .bind(id).bind(now).execute(pool).await.map(|r| r.rows_affected())
        })?;
        if done == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(now)
    }

    /// Stores a run's result and returns the status stored. Only a running
    /// (or queued) execution can finish, so a run already recorded as
    /// abandoned stays so.
    ///
    /// With `retry`, a failed run of a scheduled occurrence is followed up
    /// in the same transaction: a retry is queued for later, or, after the
    /// script's last retry, the run is stored as `dead`.
    pub async fn finish_execution(
        &self,
        id: &ExecutionId,
        run: &FinishedRun,
        retry: Option<&RetryPolicy>,
    ) -> StoreResult<ExecutionStatus> {
        let sql = "UPDATE executions SET status = $2, output = $3, error_type = $4, \
            error_message = $5, error_stack = $6, logs = $7, finished_at = $8, duration_ms = $9, \
            fuel_used = $10, memory_peak_bytes = $11, cpu_time_us = $12, duration_us = $13 \
            WHERE id = $1 AND status IN ('queued', 'running')";
        let now = now_ms();
        // The one statement, with the status to store, on `$conn`.
        macro_rules! finish {
            ($conn:expr, $status:expr) => {
                sqlx::query(sql)
                    .bind(id)
                    .bind($status)
                    .bind(&run.output)
                    .bind(&run.error_type)
                    .bind(&run.error_message)
                    .bind(&run.error_stack)
                    .bind(&run.logs)
                    .bind(now)
                    .bind(run.duration_ms)
                    .bind(run.fuel_used)
                    .bind(run.memory_peak_bytes)
                    .bind(run.cpu_time_us)
                    .bind(run.duration_us)
                    .execute($conn)
                    .await
            };
        }
        let Some(policy) = retry.filter(|_| run.status == ExecutionStatus::Failed) else {
            // Nothing to follow up: one statement, no transaction.
            on_pool!(self, pool => finish!(pool, run.status).map(|_| ()))?;
            return Ok(run.status);
        };
        let begin = self.begin_write();
        on_pool!(self, pool => {
            let mut tx = pool.begin_with(begin).await?;
            let status = follow_up!(&mut *tx, id, now, policy);
            finish!(&mut *tx, status)?;
            tx.commit().await?;
            Ok(status)
        })
    }

    pub async fn execution(
        &self,
        tenant_id: &TenantId,
        id: &ExecutionId,
    ) -> StoreResult<ExecutionRecord> {
        let sql = format!("SELECT {COLUMNS} FROM executions WHERE tenant_id = $1 AND id = $2");
        on_pool!(self, pool => {
            sqlx::query_as::<_, ExecutionRecord>(&sql).bind(tenant_id).bind(id).fetch_one(pool).await
        })
        .map_err(Into::into)
    }

    /// An execution whatever its tenant, for the node's own bookkeeping.
    pub async fn execution_by_id(&self, id: &ExecutionId) -> StoreResult<ExecutionRecord> {
        let sql = format!("SELECT {COLUMNS} FROM executions WHERE id = $1");
        on_pool!(self, pool => {
            sqlx::query_as::<_, ExecutionRecord>(&sql).bind(id).fetch_one(pool).await
        })
        .map_err(Into::into)
    }

    /// A page of a tenant's executions, newest first. The SQL names only the
    /// filters given, so each shape uses its index: (tenant, status, id),
    /// (script, id) or (tenant, id).
    pub async fn list_executions(
        &self,
        tenant_id: &TenantId,
        filter: &ExecutionFilter,
    ) -> StoreResult<Vec<ExecutionRecord>> {
        let mut sql = format!("SELECT {COLUMNS} FROM executions WHERE tenant_id = $1");
        let status = filter.status.map(ExecutionStatus::as_str);
        let mut values: Vec<String> = Vec::new();
        if let Some(script_id) = &filter.script_id {
            values.push(script_id.to_string());
            sql.push_str(&format!(" AND script_id = ${}", values.len() + 1));
        }
        if let Some(status) = status {
            values.push(status.to_owned());
            sql.push_str(&format!(" AND status = ${}", values.len() + 1));
        }
        if let Some(before) = &filter.before {
            values.push(before.to_string());
            sql.push_str(&format!(" AND id < ${}", values.len() + 1));
        }
        sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}", values.len() + 2));
        on_pool!(self, pool => {
            let mut query = sqlx::query_as::<_, ExecutionRecord>(&sql).bind(tenant_id);
            for value in &values {
                query = query.bind(value);
            }
            query.bind(filter.limit).fetch_all(pool).await
        })
        .map_err(Into::into)
    }

    /// Marks runs that can no longer finish as `failed` with kind
    /// `abandoned`: open runs of other nodes whose last heartbeat is older
    /// than `alive_since` (`i64::MAX`: every other node, as on a single-node
    /// SQLite start, where any open run belongs to a process that is gone).
    /// Pending retries belong to no node and are left alone. An abandoned
    /// scheduled run is followed up like a failed one (retry or `dead`).
    pub async fn abandon_executions(
        &self,
        node_id: &str,
        alive_since: i64,
        retry: &RetryPolicy,
    ) -> StoreResult<u64> {
        let sql = "UPDATE executions SET status = $4, error_type = $5, \
            error_message = 'the node running this execution stopped before it finished', \
            finished_at = $3 \
            WHERE status IN ('queued', 'running') AND run_after IS NULL AND node_id <> $1 \
            AND node_id NOT IN (SELECT id FROM nodes WHERE heartbeat_at >= $2) \
            RETURNING id, scheduled_for";
        self.close_open_executions(sql, node_id, alive_since, FailureKind::Abandoned, retry)
            .await
    }

    /// At shutdown, after the grace period: this node's runs still open are
    /// `failed` with kind `shutdown` (scheduled ones followed up like any
    /// failure).
    pub async fn fail_unfinished_at_shutdown(
        &self,
        node_id: &str,
        retry: &RetryPolicy,
    ) -> StoreResult<u64> {
        let sql = "UPDATE executions SET status = $4, error_type = $5, \
            error_message = 'the node shut down before this execution finished', \
            finished_at = $3 \
            WHERE status IN ('queued', 'running') AND run_after IS NULL AND node_id = $1 \
            AND queued_at <= $2 \
            RETURNING id, scheduled_for";
        self.close_open_executions(sql, node_id, now_ms(), FailureKind::Shutdown, retry)
            .await
    }

    /// Runs `sql` (an UPDATE closing open executions that binds the node
    /// id, a time, now, the status `failed` and the failure kind, and
    /// returns id and scheduled_for) and follows up the scheduled ones, in
    /// one transaction.
    ///
    /// `status IN ('queued', 'running')` stays a literal in the SQL of this
    /// module: PostgreSQL uses the partial index `executions_open` only when
    /// the query's predicate visibly implies the index's.
    async fn close_open_executions(
        &self,
        sql: &str,
        node_id: &str,
        alive_since: i64,
        kind: FailureKind,
        retry: &RetryPolicy,
    ) -> StoreResult<u64> {
        let now = now_ms();
        let begin = self.begin_write();
        on_pool!(self, pool => {
            let mut tx = pool.begin_with(begin).await?;
            let rows: Vec<(String, Option<i64>)> = sqlx::query_as(sql)
                .bind(node_id).bind(alive_since).bind(now)
                .bind(ExecutionStatus::Failed).bind(kind)
                .fetch_all(&mut *tx).await?;
            for (id, scheduled_for) in &rows {
                if scheduled_for.is_some() {
                    let status = follow_up!(&mut *tx, id.as_str(), now, retry);
                    sqlx::query("UPDATE executions SET status = $2 WHERE id = $1")
                        .bind(id).bind(status).execute(&mut *tx).await?;
                }
            }
            tx.commit().await?;
            Ok(rows.len() as u64)
        })
    }
}
