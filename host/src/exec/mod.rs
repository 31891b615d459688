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

pub mod events;
pub mod fair;

pub use events::{Events, ExecutionEvent, Received, Subscription};
pub use fair::{Admission, Slot, TenantBusy, TenantGate};

pub use crate::model::Trigger;
use crate::model::{ExecutionId, ExecutionStatus, FailureKind, TenantId};
use crate::sandbox::{
    Bytecode, CompileError, CompileFailure, Env, RunContext, RunFailure, RunOutcome, RunRequest,
    Sandbox,
};
use crate::secrets::{Masks, Secrets};
use crate::settings::ScriptSettings;
use crate::store::{
    Db, ExecutionFilter, ExecutionRecord, FinishedRun, NewExecution, Pending, Presence,
    RetryPolicy, ScriptRecord, StoreError, StoreResult, Writer,
};
use crate::typescript::{self, Language};
use tracing::Instrument;

/// How often a node records that it is alive, and how old a heartbeat may be
/// before the node's open runs count as abandoned.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
pub const HEARTBEAT_STALE_AFTER: Duration = Duration::from_secs(30);

/// When a run's row is first written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    /// Before [`ExecutionService::submit`] returns: for a reply that
    /// promises the record exists (a 202).
    First,
    /// Once, at the run's end, for a caller that waits for the result (a
    /// sync webhook call or API run) and replies only after that write has
    /// committed. A caller that stops waiting calls
    /// [`Accepted::record_now`] before it replies.
    AtEnd,
}

/// A run accepted by [`ExecutionService::submit`]: its id, and the task
/// running it (its result once stored).
pub struct Accepted {
    pub execution_id: ExecutionId,
    pub done: tokio::task::JoinHandle<StoreResult<Executed>>,
    /// The row, while a [`Record::AtEnd`] run has not written it.
    unwritten: Option<Arc<Unwritten>>,
}

impl Accepted {
    /// Makes sure the execution is recorded now (as `queued` or `running`,
    /// unless it has finished and is recorded already): for a caller that
    /// replies before the run ends.
    pub async fn record_now(&self) -> StoreResult<()> {
        match &self.unwritten {
            Some(unwritten) => unwritten.write_now().await,
            None => Ok(()),
        }
    }
}

/// A [`Record::AtEnd`] run's row, shared by the run and its caller.
struct Unwritten {
    writer: Writer,
    state: tokio::sync::Mutex<RowState>,
}

enum RowState {
    /// Not written: the row, when the run was accepted, and when it started.
    Pending {
        new: NewExecution,
        queued_at: i64,
        started_at: Option<i64>,
    },
    /// Written by `record_now` while the run waited for a slot.
    Queued(ExecutionId),
    /// Written as running.
    Running,
}

impl Unwritten {
    /// `record_now`: the row as it stands, unless written already.
    async fn write_now(&self) -> StoreResult<()> {
        let mut state = self.state.lock().await;
        if let RowState::Pending {
            new,
            queued_at,
            started_at,
        } = &*state
        {
            let (status, next) = match started_at {
                Some(_) => (ExecutionStatus::Running, RowState::Running),
                None => (ExecutionStatus::Queued, RowState::Queued(new.id.clone())),
            };
            self.writer.open_at(new.clone(), status, *queued_at).await?;
            *state = next;
        }
        Ok(())
    }

    /// The run got its slot: noted, or written when the row exists.
    async fn started(&self) -> StoreResult<()> {
        let mut state = self.state.lock().await;
        match &mut *state {
            RowState::Pending { started_at, .. } => *started_at = Some(crate::store::now_ms()),
            RowState::Queued(id) => {
                self.writer.start(id.clone()).await?;
                *state = RowState::Running;
            }
            RowState::Running => {}
        }
        Ok(())
    }
}

/// Where a run's result goes: its row, written already, being moved to
/// `running`, or not written yet.
enum Row {
    Open,
    /// The start was queued with the writer; `NotFound` from it means the
    /// row was closed before it (the result is then not stored).
    Starting(Pending),
    Unwritten(Arc<Unwritten>),
}

/// Inputs of runs waiting for a slot are kept in memory up to this many
/// bytes on a node. Past it, a waiting run reads its input back from its
/// row when its turn comes ([`Record::AtEnd`] runs are then recorded as
/// `queued` first, as [`Record::First`] runs always are). Reading it back
/// costs a query while the run holds its tenant's slot: measured on the
/// async webhook bench, that query was most of the time a slot was held.
const WAITING_INPUT_BUDGET: usize = 64 << 20;

/// Bytes of waiting input held in memory, given back when dropped.
struct HeldInput {
    budget: WaitingInput,
    bytes: usize,
}

/// The node's waiting input: the bytes held, and their gauge.
#[derive(Clone)]
struct WaitingInput {
    held: Arc<std::sync::atomic::AtomicUsize>,
    gauge: prometheus::IntGauge,
}

impl HeldInput {
    /// `bytes` more held, unless that is over [`WAITING_INPUT_BUDGET`].
    fn take(budget: &WaitingInput, bytes: usize) -> Option<Self> {
        use std::sync::atomic::Ordering::Relaxed;
        budget
            .held
            .fetch_update(Relaxed, Relaxed, |now| {
                (now + bytes <= WAITING_INPUT_BUDGET).then_some(now + bytes)
            })
            .ok()?;
        budget.gauge.add(bytes as i64);
        Some(Self {
            budget: budget.clone(),
            bytes,
        })
    }
}

impl Drop for HeldInput {
    fn drop(&mut self) {
        self.budget
            .held
            .fetch_sub(self.bytes, std::sync::atomic::Ordering::Relaxed);
        self.budget.gauge.sub(self.bytes as i64);
    }
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
    /// Every run's row goes through it (group commit).
    writer: Writer,
    sandbox: Sandbox,
    node_id: Arc<str>,
    retry: RetryPolicy,
    metrics: crate::metrics::RunMetrics,
    in_flight: Arc<InFlight>,
    gate: TenantGate,
    /// Bytes of [`HeldInput`] on this node.
    waiting_input: WaitingInput,
    /// Opens the secrets a script declares, for its runs.
    secrets: Secrets,
    /// This node's presence lock on a shared database.
    presence: Arc<Presence>,
    /// Finished runs, for live logs.
    events: Events,
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
        secrets: Secrets,
    ) -> Self {
        let config = sandbox.config();
        let gate = TenantGate::new(
            config.pool_max,
            config.tenant_max_concurrent(),
            config.tenant_max_queued,
        );
        let waiting_input = WaitingInput {
            held: Arc::default(),
            gauge: metrics.waiting_input.clone(),
        };
        Self {
            writer: Writer::spawn(db.clone()),
            db,
            sandbox,
            node_id: node_id.into(),
            retry,
            metrics,
            in_flight: Arc::default(),
            gate,
            waiting_input,
            secrets,
            presence: Arc::default(),
            events: Events::default(),
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

    /// Finished runs of this node as they are recorded.
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// The sandbox runs go to (for tests and tools, as [`Self::db`]).
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// One execution of `tenant_id`.
    pub async fn get(
        &self,
        tenant_id: &TenantId,
        id: &ExecutionId,
    ) -> StoreResult<ExecutionRecord> {
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

    /// The row of run `id` of `script` on this node.
    fn new_execution(
        &self,
        id: ExecutionId,
        script: &ScriptRecord,
        trigger: Trigger,
        input: Arc<str>,
        attempt: i64,
    ) -> NewExecution {
        NewExecution {
            id,
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
    /// in the tenant's queue) and runs it in a task of its own, which goes
    /// on (and is stored) even if the caller goes away. When the row is
    /// first written is `record`'s choice ([`Record`]); a run that must
    /// wait for a slot is recorded as `queued` before `submit` returns
    /// either way, and keeps nothing of its input in memory: it reads it
    /// back when its turn comes.
    pub async fn submit(
        &self,
        script: Arc<ScriptRecord>,
        trigger: Trigger,
        input: &Value,
        attempt: i64,
        record: Record,
    ) -> Result<Accepted, SubmitError> {
        let admission = self.admit(&script.tenant_id)?;
        // Counted from now, waiting included, so shutdown waits for it.
        let in_flight = InFlightGuard::new(&self.in_flight);
        let id = ExecutionId::generate();
        let new = self.new_execution(id, &script, trigger, input.to_string().into(), attempt);
        let execution_id = new.id.clone();
        if record == Record::AtEnd {
            let held = match &admission {
                Admission::Now(_) => None,
                Admission::Wait(_) => HeldInput::take(&self.waiting_input, new.input.len()),
            };
            if matches!(admission, Admission::Now(_)) || held.is_some() {
                return Ok(self.start_unwritten(admission, held, in_flight, new, script));
            }
        }
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
                let (slot, held) = match admission {
                    Admission::Now(slot) => {
                        service
                            .writer
                            .open(new.clone(), ExecutionStatus::Running)
                            .await?;
                        let _ = accepted_tx.send(());
                        return service.run_started(slot, &new, &script, Row::Open).await;
                    }
                    Admission::Wait(ticket) => {
                        service
                            .writer
                            .open(new.clone(), ExecutionStatus::Queued)
                            .await?;
                        let _ = accepted_tx.send(());
                        // The input waits in memory within the budget, else
                        // it is read back from the row when the turn comes.
                        let held = HeldInput::take(&service.waiting_input, new.input.len())
                            .map(|held| (held, new.input.clone()));
                        drop(new);
                        (ticket.wait().await, held)
                    }
                };
                let input = held.map(|(_, input)| input);
                service
                    .execute(slot, &id, &script, trigger, input, attempt)
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
            Ok(()) => Ok(Accepted {
                execution_id,
                done,
                unwritten: None,
            }),
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

    /// A [`Record::AtEnd`] run: nothing is written before it ends, also
    /// while it waits for a slot (its input `held` in memory then). The
    /// caller hears of the run only through its result, which leaves after
    /// the row is committed, or after `record_now`.
    fn start_unwritten(
        &self,
        admission: Admission,
        held: Option<HeldInput>,
        in_flight: InFlightGuard,
        new: NewExecution,
        script: Arc<ScriptRecord>,
    ) -> Accepted {
        let execution_id = new.id.clone();
        let unwritten = Arc::new(Unwritten {
            writer: self.writer.clone(),
            state: tokio::sync::Mutex::new(RowState::Pending {
                new: new.clone(),
                queued_at: crate::store::now_ms(),
                started_at: None,
            }),
        });
        let service = self.clone();
        let shared = unwritten.clone();
        let done = tokio::spawn(
            async move {
                let _in_flight = in_flight;
                let slot = match admission {
                    Admission::Now(slot) => slot,
                    Admission::Wait(ticket) => ticket.wait().await,
                };
                drop(held);
                shared.started().await?;
                let row = Row::Unwritten(shared);
                service.run_started(slot, &new, &script, row).await
            }
            .instrument(tracing::Span::current()),
        );
        Accepted {
            execution_id,
            done,
            unwritten: Some(unwritten),
        }
    }

    /// Submits a run, waits for it and returns the stored execution (the
    /// row is written once, at the end).
    pub async fn run_to_end(
        &self,
        script: Arc<ScriptRecord>,
        trigger: Trigger,
        input: &Value,
        attempt: i64,
    ) -> Result<ExecutionRecord, SubmitError> {
        let tenant_id = script.tenant_id.clone();
        let accepted = self
            .submit(script, trigger, input, attempt, Record::AtEnd)
            .await?;
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
        let input: Arc<str> = input.to_string().into();
        Ok(self
            .execute(
                slot,
                execution_id,
                script,
                Trigger::Scheduled,
                Some(input),
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
        input: Option<Arc<str>>,
        attempt: i64,
    ) -> StoreResult<Option<Executed>> {
        // The run does not wait for its start to commit while it holds a
        // slot: the finish waits for it instead (see `Row::Starting`). The
        // row belongs to this node, so only recovery can close it first, as
        // it could a moment after the start; the run's result is then not
        // stored, as with any run recovery closed.
        let start = self.writer.start_queued(execution_id.clone()).await?;
        let input: Arc<str> = match input {
            Some(input) => input,
            None => self.db.execution_by_id(execution_id).await?.input.into(),
        };
        let run = self.new_execution(execution_id.clone(), script, trigger, input, attempt);
        match self
            .run_started(slot, &run, script, Row::Starting(start))
            .await
        {
            Ok(executed) => Ok(Some(executed)),
            Err(StoreError::NotFound) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Runs `run` and stores the result on its row (`row` says whether that
    /// row is written yet). A failed run of a scheduled occurrence is
    /// followed by a retry, or is `dead` after the script's last one.
    async fn run_started(
        &self,
        slot: Slot,
        run: &NewExecution,
        script: &ScriptRecord,
        row: Row,
    ) -> StoreResult<Executed> {
        let trigger = run.trigger_type;
        let span = tracing::info_span!(
            "run",
            tenant_id = %script.tenant_id,
            script_id = %script.id,
            execution_id = %run.id,
            trigger = trigger.as_str(),
        );
        let started_at = crate::store::now_ms();
        let outcome = self
            .run_script(&run.id, script, trigger, &run.input, run.attempt)
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
        let retry = (trigger == Trigger::Scheduled).then_some(self.retry);
        let status = match row {
            Row::Open => {
                self.writer
                    .finish(run.id.clone(), script.id.clone(), finished, retry)
                    .await?
            }
            Row::Starting(start) => {
                // A start that failed to write leaves the row `queued`; the
                // finish below closes a queued row just as well.
                if let Err(StoreError::NotFound) = start.committed().await {
                    span.in_scope(|| {
                        tracing::warn!(
                            "the run's record was closed as it started; its result is not stored"
                        )
                    });
                    return Err(StoreError::NotFound);
                }
                self.writer
                    .finish(run.id.clone(), script.id.clone(), finished, retry)
                    .await?
            }
            Row::Unwritten(unwritten) => {
                // Held while writing, so `Accepted::record_now` either wrote
                // the row already or waits for this write.
                let mut state = unwritten.state.lock().await;
                match std::mem::replace(&mut *state, RowState::Running) {
                    RowState::Pending {
                        new,
                        queued_at,
                        started_at: started,
                    } => {
                        let started = started.unwrap_or(started_at);
                        self.writer
                            .complete(new, queued_at, started, finished)
                            .await?
                    }
                    RowState::Queued(_) | RowState::Running => {
                        self.writer
                            .finish(run.id.clone(), script.id.clone(), finished, retry)
                            .await?
                    }
                }
            }
        };
        self.metrics.record(
            script.tenant_id.as_str(),
            script.id.as_str(),
            trigger.as_str(),
            status.as_str(),
            &outcome,
        );
        if self.events.subscribers() > 0 {
            self.events.publish(finished_event(run, status, &outcome));
        }
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
        let bytecode = match self.bytecode(script).await {
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
        // Only the secrets the script declares enter the instance; their
        // values are masked out of everything the run leaves.
        let secrets = match self
            .secrets
            .values(&script.tenant_id, &settings.secrets)
            .await
        {
            Ok(secrets) => secrets,
            Err(why) => {
                return failed(RunFailure {
                    kind: crate::sandbox::ErrorKind::Internal,
                    message: format!("the script's secrets: {why}"),
                    stack: None,
                });
            }
        };
        let masks = Masks::new(secrets.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        let mut env = settings.vars;
        env.extend(secrets);
        let context = RunContext {
            script_id: script.id.to_string(),
            execution_id: execution_id.to_string(),
            tenant_id: script.tenant_id.to_string(),
            trigger: trigger.as_str(),
            attempt,
            env: Env(env),
            cron: match trigger {
                Trigger::Scheduled => script.schedule.clone(),
                _ => None,
            },
        };
        let request = RunRequest::new(&context, input.to_owned(), limits);
        let mut outcome = self.sandbox.run(&bytecode, request).await;
        if let Err(failure) = &mut outcome.result {
            failure.name_frames(&script_file(&script.name, script.language));
        }
        if !masks.is_empty() {
            mask(&mut outcome, &masks);
        }
        outcome
    }

    /// A script version's bytecode: cached, or compiled (TypeScript erased
    /// first) and cached.
    async fn bytecode(&self, script: &ScriptRecord) -> Result<Arc<Bytecode>, CompileFailure> {
        let (id, version) = (script.id.as_str(), script.version);
        if script.language == Language::JavaScript {
            return self
                .sandbox
                .compile_cached(id, version, &script.source)
                .await;
        }
        if let Some(hit) = self.sandbox.cached(id, version) {
            return Ok(hit);
        }
        let javascript =
            typescript::to_javascript(script.language, &script.source).map_err(|e| {
                CompileFailure::Syntax(CompileError {
                    message: e.message,
                    line: e.line,
                    column: e.column,
                })
            })?;
        self.sandbox.compile_cached(id, version, &javascript).await
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

    /// Records that this node is alive: a heartbeat, and on a shared
    /// database its presence lock (taken again if its connection dropped).
    pub async fn announce(&self) -> StoreResult<()> {
        self.db.heartbeat(&self.node_id).await?;
        self.db.hold_presence(&self.node_id, &self.presence).await
    }

    /// Heartbeats and sweeps for abandoned runs until `shutdown` resolves.
    pub async fn keep_alive(self, shutdown: impl std::future::Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            if let Err(error) = self.announce().await {
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

/// The file a script's stack frames are located in: its name, with its
/// language's extension unless it names a file already.
fn script_file(name: &str, language: Language) -> String {
    if [".js", ".mjs", ".ts", ".mts"]
        .iter()
        .any(|ext| name.ends_with(ext))
    {
        name.to_owned()
    } else {
        format!("{name}.{}", language.extension())
    }
}

/// Replaces declared secrets' values in everything a run leaves: output,
/// reply, error, stack and logs.
fn mask(outcome: &mut RunOutcome, masks: &Masks) {
    match &mut outcome.result {
        Ok(success) => {
            success.output = masks.apply(&success.output);
            if let Some(reply) = &mut success.reply {
                reply.body = masks.apply(&reply.body);
                for (_, value) in &mut reply.headers {
                    *value = masks.apply(value);
                }
            }
        }
        Err(failure) => {
            failure.message = masks.apply(&failure.message);
            failure.stack = failure.stack.as_deref().map(|stack| masks.apply(stack));
        }
    }
    for line in &mut outcome.logs {
        line.message = masks.apply(&line.message);
    }
}

/// A finished run as live logs show it.
fn finished_event(
    run: &NewExecution,
    status: ExecutionStatus,
    outcome: &RunOutcome,
) -> ExecutionEvent {
    let (error_type, error_message) = match &outcome.result {
        Ok(_) => (None, None),
        Err(failure) => (
            Some(FailureKind::from(failure.kind)),
            Some(failure.message.clone()),
        ),
    };
    ExecutionEvent {
        id: run.id.clone(),
        script_id: run.script_id.clone(),
        script_version: run.script_version,
        trigger_type: run.trigger_type,
        status,
        attempt: run.attempt,
        error_type,
        error_message,
        logs: outcome.logs.clone(),
        duration_us: outcome.usage.wall.as_micros() as i64,
        fuel_used: outcome.usage.fuel_used as i64,
        memory_peak_bytes: outcome.usage.memory_peak_bytes as i64,
        finished_at_ms: crate::store::now_ms(),
        tenant_id: run.tenant_id.clone(),
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
        duration_us: usage.wall.as_micros() as i64,
        fuel_used: usage.fuel_used as i64,
        memory_peak_bytes: usage.memory_peak_bytes as i64,
        cpu_time_us: usage.cpu.as_micros() as i64,
    }
}
