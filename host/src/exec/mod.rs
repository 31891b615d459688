//! `ExecutionService`: the one path every run takes, whatever triggered it.
//!
//! accept (insert `queued`) → start (`running`) → compile (cached per script
//! version) → run in the sandbox → store result, logs and usage
//! (`completed` or `failed`). The row exists before any work starts, so an
//! accepted run is never lost: a crash leaves it open, and recovery marks it
//! `abandoned`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::sandbox::{CompileFailure, LimitOverrides, RunFailure, RunOutcome, RunRequest, Sandbox};
use crate::store::{
    Db, ExecutionRecord, ExecutionStatus, FinishedRun, NewExecution, RetryPolicy, ScriptRecord,
    StoreResult, new_id,
};

/// How a run was triggered; stored as `trigger_type` and passed as
/// `ctx.trigger`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Manual,
    Scheduled,
    Webhook,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::Scheduled => "scheduled",
            Trigger::Webhook => "webhook",
        }
    }
}

/// How often a node records that it is alive, and how old a heartbeat may be
/// before the node's open runs count as abandoned.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
pub const HEARTBEAT_STALE_AFTER: Duration = Duration::from_secs(30);

/// A run that went through: what the sandbox said and the status stored.
#[derive(Debug)]
pub struct Executed {
    pub outcome: RunOutcome,
    pub status: ExecutionStatus,
}

#[derive(Clone)]
pub struct ExecutionService {
    db: Db,
    sandbox: Sandbox,
    node_id: Arc<str>,
    retry: RetryPolicy,
    metrics: crate::metrics::RunMetrics,
    in_flight: Arc<InFlight>,
}

/// Runs in progress on this node, so shutdown can wait for them.
#[derive(Default)]
struct InFlight {
    count: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
}

/// Counts a run as in flight until dropped.
struct InFlightGuard(Arc<InFlight>);

impl InFlightGuard {
    fn new(in_flight: &Arc<InFlight>) -> Self {
        in_flight
            .count
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Self(in_flight.clone())
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self
            .0
            .count
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst)
            == 1
        {
            self.0.idle.notify_waiters();
        }
    }
}

impl ExecutionService {
    pub fn new(
        db: Db,
        sandbox: Sandbox,
        node_id: String,
        retry: RetryPolicy,
        metrics: crate::metrics::RunMetrics,
    ) -> Self {
        Self {
            db,
            sandbox,
            node_id: node_id.into(),
            retry,
            metrics,
            in_flight: Arc::default(),
        }
    }

    /// Runs in progress on this node.
    pub fn runs_in_flight(&self) -> usize {
        self.in_flight
            .count
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until no run is in progress, or `deadline`; true when idle.
    pub async fn wait_idle(&self, deadline: tokio::time::Instant) -> bool {
        loop {
            let idle = self.in_flight.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.runs_in_flight() == 0 {
                return true;
            }
            tokio::select! {
                _ = &mut idle => {}
                _ = tokio::time::sleep_until(deadline) => return self.runs_in_flight() == 0,
            }
        }
    }

    /// Records this node's unfinished runs as failed (kind `shutdown`).
    pub async fn fail_unfinished(&self) -> StoreResult<u64> {
        self.db
            .fail_unfinished_at_shutdown(&self.node_id, &self.retry)
            .await
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Records a run of `script` as `queued` and returns its id. The run
    /// itself happens in [`Self::execute`].
    pub async fn accept(
        &self,
        script: &ScriptRecord,
        trigger: Trigger,
        input: &Value,
        attempt: i64,
    ) -> StoreResult<String> {
        let new = self.new_execution(script, trigger, input, attempt);
        self.db.insert_execution(&new).await?;
        Ok(new.id)
    }

    /// The row of a run of `script` on this node.
    fn new_execution(
        &self,
        script: &ScriptRecord,
        trigger: Trigger,
        input: &Value,
        attempt: i64,
    ) -> NewExecution {
        NewExecution {
            id: new_id(),
            tenant_id: script.tenant_id.clone(),
            script_id: script.id.clone(),
            script_version: script.version,
            trigger_type: trigger.as_str().into(),
            input: input.to_string(),
            attempt,
            node_id: self.node_id.to_string(),
            scheduled_for: None,
        }
    }

    /// Records a run that starts at once as `running` and returns its id;
    /// continue with [`Self::run_started`].
    pub async fn start_now(
        &self,
        script: &ScriptRecord,
        trigger: Trigger,
        input: &Value,
        attempt: i64,
    ) -> StoreResult<String> {
        let new = self.new_execution(script, trigger, input, attempt);
        self.db.insert_running_execution(&new).await?;
        Ok(new.id)
    }

    /// Runs an execution recorded by [`Self::start_now`] and stores the result.
    pub async fn run_started(
        &self,
        execution_id: &str,
        script: &ScriptRecord,
        trigger: Trigger,
        input: &Value,
        attempt: i64,
    ) -> StoreResult<Executed> {
        let _in_flight = InFlightGuard::new(&self.in_flight);
        let outcome = self
            .run_script(execution_id, script, trigger, input, attempt)
            .await;
        let finished = finished_run(&outcome);
        let retry = (trigger == Trigger::Scheduled).then_some(&self.retry);
        let status = self
            .db
            .finish_execution(execution_id, &finished, retry)
            .await?;
        self.metrics.record(
            &script.tenant_id,
            &script.id,
            trigger.as_str(),
            status.as_str(),
            &outcome,
        );
        self.db
            .mark_script_executed(&script.id, crate::store::now_ms())
            .await?;
        Ok(Executed { outcome, status })
    }

    /// Runs an accepted execution to its end and stores the result. Returns
    /// the sandbox's outcome and the stored status (`None` if the record
    /// could not be started, for instance because recovery already marked
    /// it abandoned). A failed run of a scheduled occurrence is followed by
    /// a retry, or is `dead` after the script's last one.
    pub async fn execute(
        &self,
        execution_id: &str,
        script: &ScriptRecord,
        trigger: Trigger,
        input: &Value,
        attempt: i64,
    ) -> StoreResult<Option<Executed>> {
        if self.db.start_execution(execution_id).await.is_err() {
            return Ok(None);
        }
        self.run_started(execution_id, script, trigger, input, attempt)
            .await
            .map(Some)
    }

    /// Accepts and runs to the end; returns the stored execution.
    pub async fn run_now(
        &self,
        script: &ScriptRecord,
        trigger: Trigger,
        input: &Value,
    ) -> StoreResult<ExecutionRecord> {
        let id = self.accept(script, trigger, input, 0).await?;
        self.finish_accepted(&id, script, trigger, input, 0).await
    }

    /// Runs an accepted execution and returns it stored. The run is a task
    /// of its own, so a caller that goes away (an HTTP client disconnecting)
    /// does not cut it short: it still finishes and is recorded.
    pub async fn finish_accepted(
        &self,
        execution_id: &str,
        script: &ScriptRecord,
        trigger: Trigger,
        input: &Value,
        attempt: i64,
    ) -> StoreResult<ExecutionRecord> {
        let service = self.clone();
        let (id, owned_script, owned_input) =
            (execution_id.to_owned(), script.clone(), input.clone());
        let run = tokio::spawn(async move {
            service
                .execute(&id, &owned_script, trigger, &owned_input, attempt)
                .await
                .map(|_| ())
        });
        match run.await {
            Ok(result) => result?,
            Err(join) => {
                return Err(crate::store::StoreError::Other(anyhow::anyhow!(
                    "the run's task failed: {join}"
                )));
            }
        }
        self.db.execution(&script.tenant_id, execution_id).await
    }

    /// Accepts now and runs in the background; returns the execution id.
    pub async fn run_async(
        &self,
        script: ScriptRecord,
        trigger: Trigger,
        input: Value,
    ) -> StoreResult<String> {
        let id = self.accept(&script, trigger, &input, 0).await?;
        let service = self.clone();
        let execution_id = id.clone();
        tokio::spawn(async move {
            if let Err(error) = service
                .execute(&execution_id, &script, trigger, &input, 0)
                .await
            {
                tracing::error!(
                    execution_id,
                    error = format!("{error:#}"),
                    "storing a run failed"
                );
            }
        });
        Ok(id)
    }

    async fn run_script(
        &self,
        execution_id: &str,
        script: &ScriptRecord,
        trigger: Trigger,
        input: &Value,
        attempt: i64,
    ) -> RunOutcome {
        let failed = |failure: RunFailure| RunOutcome {
            result: Err(failure),
            logs: Vec::new(),
            usage: Default::default(),
        };
        let overrides: LimitOverrides = serde_json::from_str(&script.limits).unwrap_or_default();
        let limits = match self.sandbox.config().limits_with(&overrides) {
            Ok(limits) => limits,
            Err(why) => {
                return failed(RunFailure {
                    kind: crate::sandbox::ErrorKind::Internal,
                    message: format!("the script's limits are no longer allowed: {why}"),
                    stack: None,
                });
            }
        };
        let bytecode = match self
            .sandbox
            .compile_cached(&script.id, script.version, &script.source)
            .await
        {
            Ok(bytecode) => bytecode,
            Err(CompileFailure::Syntax(e)) => {
                return failed(RunFailure {
                    kind: crate::sandbox::ErrorKind::CompileError,
                    message: e.to_string(),
                    stack: None,
                });
            }
            Err(CompileFailure::Sandbox(failure)) => return failed(failure),
        };
        let context = serde_json::json!({
            "scriptId": script.id,
            "executionId": execution_id,
            "tenantId": script.tenant_id,
            "trigger": trigger.as_str(),
            "attempt": attempt,
        });
        let request = RunRequest {
            tenant: script.tenant_id.clone(),
            input: input.to_string(),
            context: context.to_string(),
            limits,
        };
        self.sandbox.run(&bytecode, request).await
    }

    /// Marks open runs of dead nodes (all others, on SQLite) as abandoned.
    pub async fn recover(&self) -> StoreResult<u64> {
        let alive_since = match self.db {
            Db::Sqlite(_) => i64::MAX,
            Db::Postgres(_) => crate::store::now_ms() - HEARTBEAT_STALE_AFTER.as_millis() as i64,
        };
        self.db
            .abandon_executions(&self.node_id, alive_since, &self.retry)
            .await
    }

    /// Heartbeats and sweeps for abandoned runs until `shutdown` resolves.
    pub async fn keep_alive(self, shutdown: impl std::future::Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            if let Err(error) = self.db.heartbeat(&self.node_id).await {
                tracing::warn!(error = format!("{error:#}"), "heartbeat failed");
            }
            if matches!(self.db, Db::Postgres(_)) {
                match self.recover().await {
                    Ok(0) => {}
                    Ok(n) => tracing::warn!(count = n, "marked runs of stopped nodes abandoned"),
                    Err(error) => {
                        tracing::warn!(error = format!("{error:#}"), "recovery sweep failed")
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(HEARTBEAT_EVERY) => {}
                _ = &mut shutdown => return,
            }
        }
    }
}

/// The stored form of a run's outcome.
fn finished_run(outcome: &RunOutcome) -> FinishedRun {
    let logs = serde_json::to_string(&outcome.logs).unwrap_or_else(|_| "[]".into());
    let usage = &outcome.usage;
    let (status, output, error_type, error_message, error_stack) = match &outcome.result {
        Ok(success) => (
            ExecutionStatus::Completed,
            Some(success.output.clone()),
            None,
            None,
            None,
        ),
        Err(failure) => (
            ExecutionStatus::Failed,
            None,
            Some(failure.kind.as_str().to_owned()),
            Some(failure.message.clone()),
            failure.stack.clone(),
        ),
    };
    FinishedRun {
        status,
        output,
        error_type,
        error_message,
        error_stack,
        logs,
        duration_ms: usage.wall.as_millis() as i64,
        fuel_used: usage.fuel_used as i64,
        memory_peak_bytes: usage.memory_peak_bytes as i64,
        cpu_time_us: usage.cpu.as_micros() as i64,
    }
}
