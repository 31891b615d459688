//! `ExecutionService`: the one path every run takes, whatever triggered it.
//!
//! admit (a slot of the tenant's fair share, or a place in its queue) →
//! record (`running`, or `queued` while it waits) → compile (cached per
//! script version) → run in the sandbox → store result, logs and usage
//! (`completed` or `failed`). The row exists before any work starts, so an
//! accepted run is never lost: a crash leaves it open, and recovery marks it
//! `abandoned`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

pub mod fair;

pub use fair::{Admission, Slot, TenantBusy, TenantGate};

pub use crate::model::Trigger;
use crate::model::{ExecutionId, ExecutionStatus, FailureKind, TenantId};
use crate::sandbox::{CompileFailure, RunContext, RunFailure, RunOutcome, RunRequest, Sandbox};
use crate::settings::ScriptSettings;
use crate::store::{
    Db, ExecutionFilter, ExecutionRecord, FinishedRun, NewExecution, RetryPolicy, ScriptRecord,
    StoreError, StoreResult,
};
use tracing::Instrument;

/// How often a node records that it is alive, and how old a heartbeat may be
/// before the node's open runs count as abandoned.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
pub const HEARTBEAT_STALE_AFTER: Duration = Duration::from_secs(30);

/// A run accepted by [`ExecutionService::submit`]: its recorded id, and the
/// task running it (its result once stored).
pub struct Accepted {
    pub execution_id: ExecutionId,
    pub done: tokio::task::JoinHandle<StoreResult<Executed>>,
}

/// Why an execution was not retried.
#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    #[error("only failed or dead executions can be retried; this one is {0}")]
    NotRetryable(ExecutionStatus),
    #[error("the script of this execution has been deleted")]
    ScriptDeleted,
    #[error(transparent)]
    Submit(#[from] SubmitError),
}

/// Why a run was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The tenant's queue is full; try again later.
    #[error(transparent)]
    Busy(#[from] TenantBusy),
    /// Recording it failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

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
    gate: TenantGate,
}

/// Runs in progress or waiting for a slot on this node, so shutdown can
/// wait for them.
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
        let config = sandbox.config();
        let gate = TenantGate::new(
            config.pool_max,
            config.tenant_max_concurrent(),
            config.tenant_max_queued,
        );
        Self {
            db,
            sandbox,
            node_id: node_id.into(),
            retry,
            metrics,
            in_flight: Arc::default(),
            gate,
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

    /// The store this service records runs in (for tests and tools; the
    /// service's callers use its methods).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The sandbox runs go to (for tests and tools, as [`Self::db`]).
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// One execution of `tenant_id`.
    pub async fn get(&self, tenant_id: &TenantId, id: &ExecutionId) -> StoreResult<ExecutionRecord> {
        self.db.execution(tenant_id, id).await
    }

    /// A page of `tenant_id`'s executions, newest first.
    pub async fn list(
        &self,
        tenant_id: &TenantId,
        filter: &ExecutionFilter,
    ) -> StoreResult<Vec<ExecutionRecord>> {
        self.db.list_executions(tenant_id, filter).await
    }

    /// Runs a failed or dead execution again, as a new execution with the
    /// same trigger and input and the next attempt number, and waits for it.
    pub async fn retry(
        &self,
        tenant_id: &TenantId,
        id: &ExecutionId,
    ) -> Result<ExecutionRecord, RetryError> {
        let original = self
            .db
            .execution(tenant_id, id)
            .await
            .map_err(SubmitError::from)?;
        if !original.status.is_retryable() {
            return Err(RetryError::NotRetryable(original.status));
        }
        let script = match self.db.script(tenant_id, &original.script_id).await {
            Ok(script) => script,
            Err(StoreError::NotFound) => return Err(RetryError::ScriptDeleted),
            Err(error) => return Err(SubmitError::from(error).into()),
        };
        let input: Value = serde_json::from_str(&original.input).unwrap_or(Value::Null);
        let attempt = original.attempt + 1;
        Ok(self
            .run_to_end(Arc::new(script), original.trigger_type, &input, attempt)
            .await?)
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// A slot for a run of `tenant`: at once, after a wait in the tenant's
    /// queue, or refused when that queue is full.
    pub fn admit(&self, tenant_id: &TenantId) -> Result<Admission, TenantBusy> {
        self.gate.admit(tenant_id.as_str())
    }

    /// The row of a run of `script` on this node.
    fn new_execution(
        &self,
        script: &ScriptRecord,
        trigger: Trigger,
        input: String,
        attempt: i64,
    ) -> NewExecution {
        NewExecution {
            id: ExecutionId::generate(),
            tenant_id: script.tenant_id.clone(),
            script_id: script.id.clone(),
            script_version: script.version,
            trigger_type: trigger,
            input,
            attempt,
            node_id: self.node_id.to_string(),
            scheduled_for: None,
        }
    }

    /// Accepts a run of `script`: takes a slot for its tenant (or a place
    /// in the tenant's queue), records the execution, and runs it in a task
    /// of its own. Returns once the execution is recorded; the run goes on
    /// (and is stored) even if the caller goes away.
    ///
    /// A run with a slot at once is recorded as `running` in one write. A
    /// run that must wait is recorded as `queued` and keeps nothing of its
    /// input in memory: it reads it back when its turn comes.
    pub async fn submit(
        &self,
        script: Arc<ScriptRecord>,
        trigger: Trigger,
        input: &Value,
        attempt: i64,
    ) -> Result<Accepted, SubmitError> {
        let admission = self.admit(&script.tenant_id)?;
        // Counted from now, waiting included, so shutdown waits for it.
        let in_flight = InFlightGuard::new(&self.in_flight);
        let new = self.new_execution(&script, trigger, input.to_string(), attempt);
        let service = self.clone();
        let (accepted_tx, accepted_rx) = tokio::sync::oneshot::channel();
        // Recording happens inside the task: a caller that goes away cannot
        // leave a row that nothing will run. The task stays in the caller's
        // span (a request's), so the run's span and logs carry its id.
        let caller = tracing::Span::current();
        let done = tokio::spawn(
            async move {
                let _in_flight = in_flight;
                let id = new.id.clone();
                let slot = match admission {
                    Admission::Now(slot) => {
                        service.db.insert_running_execution(&new).await?;
                        let _ = accepted_tx.send(id.clone());
                        return service
                            .run_started(slot, &id, &script, trigger, &new.input, attempt)
                            .await;
                    }
                    Admission::Wait(ticket) => {
                        service.db.insert_execution(&new).await?;
                        let _ = accepted_tx.send(id.clone());
                        drop(new);
                        ticket.wait().await
                    }
                };
                service
                    .execute(slot, &id, &script, trigger, None, attempt)
                    .await?
                    .ok_or_else(|| {
                        StoreError::Invalid(format!(
                            "execution {id} was no longer queued when its turn came"
                        ))
                    })
            }
            .instrument(caller),
        );
        match accepted_rx.await {
            Ok(execution_id) => Ok(Accepted { execution_id, done }),
            // The task ended before recording: the insert failed.
            Err(_) => match done.await {
                Ok(Err(error)) => Err(error.into()),
                Ok(Ok(_)) => unreachable!("a run is recorded before it ends"),
                Err(join) => {
                    Err(StoreError::Other(anyhow::anyhow!("the run's task failed: {join}")).into())
                }
            },
        }
    }

    /// Submits a run and waits for it; returns the stored execution.
    pub async fn run_to_end(
        &self,
        script: Arc<ScriptRecord>,
        trigger: Trigger,
        input: &Value,
        attempt: i64,
    ) -> Result<ExecutionRecord, SubmitError> {
        let tenant_id = script.tenant_id.clone();
        let accepted = self.submit(script, trigger, input, attempt).await?;
        match accepted.done.await {
            Ok(result) => {
                result?;
            }
            Err(join) => {
                return Err(
                    StoreError::Other(anyhow::anyhow!("the run's task failed: {join}")).into(),
                );
            }
        }
        Ok(self
            .db
            .execution(&tenant_id, &accepted.execution_id)
            .await?)
    }

    /// Runs an execution the scheduler claimed (recorded as `queued`), once
    /// its tenant has a slot. `Ok(None)` when the record could no longer be
    /// started (recovery marked it abandoned meanwhile).
    pub async fn run_claimed(
        &self,
        execution_id: &ExecutionId,
        script: &ScriptRecord,
        input: &Value,
        attempt: i64,
    ) -> Result<Option<Executed>, SubmitError> {
        let admission = self.admit(&script.tenant_id)?;
        let _in_flight = InFlightGuard::new(&self.in_flight);
        let slot = match admission {
            Admission::Now(slot) => slot,
            Admission::Wait(ticket) => ticket.wait().await,
        };
        let input = input.to_string();
        Ok(self
            .execute(
                slot,
                execution_id,
                script,
                Trigger::Scheduled,
                Some(&input),
                attempt,
            )
            .await?)
    }

    /// Moves a queued execution to `running` and runs it. Without `input`
    /// the input is read back from the record.
    async fn execute(
        &self,
        slot: Slot,
        execution_id: &ExecutionId,
        script: &ScriptRecord,
        trigger: Trigger,
        input: Option<&str>,
        attempt: i64,
    ) -> StoreResult<Option<Executed>> {
        if self.db.start_execution(execution_id).await.is_err() {
            return Ok(None);
        }
        let stored;
        let input = match input {
            Some(input) => input,
            None => {
                stored = self.db.execution_by_id(execution_id).await?.input;
                &stored
            }
        };
        self.run_started(slot, execution_id, script, trigger, input, attempt)
            .await
            .map(Some)
    }

    /// Runs an execution recorded as `running` and stores the result. A
    /// failed run of a scheduled occurrence is followed by a retry, or is
    /// `dead` after the script's last one.
    async fn run_started(
        &self,
        slot: Slot,
        execution_id: &ExecutionId,
        script: &ScriptRecord,
        trigger: Trigger,
        input: &str,
        attempt: i64,
    ) -> StoreResult<Executed> {
        let span = tracing::info_span!(
            "run",
            tenant_id = %script.tenant_id,
            script_id = %script.id,
            %execution_id,
            trigger = trigger.as_str(),
        );
        let outcome = self
            .run_script(execution_id, script, trigger, input, attempt)
            .instrument(span.clone())
            .await;
        drop(slot);
        if let Err(failure) = &outcome.result {
            span.in_scope(|| {
                tracing::warn!(
                    error_type = failure.kind.as_str(),
                    error = %failure.message,
                    "run failed"
                )
            });
        }
        let finished = finished_run(&outcome);
        let retry = (trigger == Trigger::Scheduled).then_some(&self.retry);
        let status = self
            .db
            .finish_execution(execution_id, &finished, retry)
            .await?;
        self.metrics.record(
            script.tenant_id.as_str(),
            script.id.as_str(),
            trigger.as_str(),
            status.as_str(),
            &outcome,
        );
        self.db
            .mark_script_executed(&script.id, crate::store::now_ms())
            .await?;
        Ok(Executed { outcome, status })
    }

    async fn run_script(
        &self,
        execution_id: &ExecutionId,
        script: &ScriptRecord,
        trigger: Trigger,
        input: &str,
        attempt: i64,
    ) -> RunOutcome {
        let failed = |failure: RunFailure| RunOutcome {
            result: Err(failure),
            logs: Vec::new(),
            usage: Default::default(),
        };
        // Settings that do not decode fail closed: nothing runs (the
        // failure is logged once, with the run, by `run_started`).
        let settings = match ScriptSettings::decode(script) {
            Ok(settings) => settings,
            Err(misconfigured) => {
                return failed(RunFailure {
                    kind: crate::sandbox::ErrorKind::Internal,
                    message: format!("script misconfigured: {misconfigured}"),
                    stack: None,
                });
            }
        };
        let limits = match self.sandbox.config().limits_with(&settings.limits) {
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
            .compile_cached(script.id.as_str(), script.version, &script.source)
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
        let context = RunContext {
            script_id: script.id.to_string(),
            execution_id: execution_id.to_string(),
            tenant_id: script.tenant_id.to_string(),
            trigger: trigger.as_str(),
            attempt,
        };
        let request = RunRequest::new(&context, input.to_owned(), limits);
        self.sandbox.run(&bytecode, request).await
    }

    /// Marks open runs of dead nodes (all others, on an unshared database)
    /// as abandoned.
    pub async fn recover(&self) -> StoreResult<u64> {
        let alive_since = if self.db.is_shared() {
            crate::store::now_ms() - HEARTBEAT_STALE_AFTER.as_millis() as i64
        } else {
            i64::MAX
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
            if self.db.is_shared() {
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
            Some(FailureKind::from(failure.kind)),
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
