//! The scheduler: starts scheduled scripts when their cron expression says,
//! and retries failed scheduled runs (the dead-letter queue).
//!
//! The loop sleeps until shortly before the earliest fire time or pending
//! retry in the database (at most [`MAX_IDLE`], so schedules saved on other
//! nodes are seen), claims what is due (see `store::schedule`: each
//! occurrence once, whichever node claims it), and runs the claimed
//! executions through the `ExecutionService` like any other run.
//!
//! - Claiming ahead: occurrences are claimed up to [`CLAIM_AHEAD`] before
//!   their fire time and their runs wait for it, so a second on which a
//!   thousand scripts fire starts them on time instead of after the claims
//!   of all of them (a claim writes two rows and takes ~0.1 ms). The claim
//!   is the moment the overlap rule below looks at the previous run.
//!
//! - Catch-up: an occurrence missed by more than [`MISFIRE_GRACE`] (the
//!   service was down) runs once, then the schedule continues from now.
//!   Occurrences that are merely late run in turn.
//! - Overlap: an occurrence whose script still has a scheduled run open is
//!   skipped and counted (`scriptbox_scheduler_skipped_total{reason="overlap"}`).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Notify;

use crate::cron::{self, Location, Schedule, Time};
use crate::exec::{ExecutionService, SubmitError};
use crate::metrics::SchedulerMetrics;
use crate::model::{ExecutionId, ExecutionStatus, FailureKind, ScriptId, TenantId};
use crate::store::{
    Backoff, Claim, Db, DueScript, ExecutionRecord, FinishedRun, Plan, RETRY_DELAY_RANGE_MS,
    RetryPolicy, ScriptRecord, StoreError, StoreResult, now_ms, scheduled_input,
};

/// `[scheduler]`: cron runs and the dead-letter queue of failed ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerConfig {
    /// Run scheduled scripts on this node.
    pub enabled: bool,
    /// Retries of a failed scheduled run, for scripts that do not set
    /// `max_retries`.
    pub max_retries: u32,
    /// The most retries a script may ask for.
    pub max_retries_cap: u32,
    /// Delay before a retry, ms, for scripts that do not set `retry_delay_ms`.
    pub retry_delay_ms: u64,
    pub backoff: Backoff,
    /// Longest delay exponential backoff reaches, ms.
    pub backoff_max_ms: u64,
}

impl SchedulerConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_retries > self.max_retries_cap {
            return Err("scheduler.max_retries must not exceed scheduler.max_retries_cap".into());
        }
        for (key, value) in [
            ("retry_delay_ms", self.retry_delay_ms),
            ("backoff_max_ms", self.backoff_max_ms),
        ] {
            if !RETRY_DELAY_RANGE_MS.contains(&value) {
                return Err(format!(
                    "scheduler.{key} must be from {} to {} (7 days), got {value}",
                    RETRY_DELAY_RANGE_MS.start(),
                    RETRY_DELAY_RANGE_MS.end()
                ));
            }
        }
        if self.backoff_max_ms < self.retry_delay_ms {
            return Err(
                "scheduler.backoff_max_ms must be at least scheduler.retry_delay_ms".into(),
            );
        }
        Ok(())
    }

    /// How the store spaces and bounds retries.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            backoff: self.backoff,
            max_delay_ms: self.backoff_max_ms as i64,
            max_retries: i64::from(self.max_retries_cap),
        }
    }
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_retries: 3,
            max_retries_cap: 25,
            retry_delay_ms: 300_000,
            backoff: Backoff::Fixed,
            backoff_max_ms: 3_600_000,
        }
    }
}

/// The longest the loop sleeps when nothing is due sooner.
pub const MAX_IDLE: Duration = Duration::from_millis(500);
/// How late an occurrence may be and still be run in turn; later ones
/// count as missed and collapse into one catch-up run.
pub const MISFIRE_GRACE: Duration = Duration::from_secs(5);
/// Scripts (or retries) claimed per transaction: larger on PostgreSQL, where
/// a transaction's round trips dominate, than on SQLite, where larger
/// statements cost more than they save (docs/scheduler.md has the figures).
pub fn claim_batch(db: &Db) -> i64 {
    match db {
        Db::Sqlite(_) => 200,
        Db::Postgres(_) => 500,
    }
}
/// How long before its fire time an occurrence is claimed (its run then
/// waits for the fire time). A claimed occurrence whose node dies before
/// running it stays open until recovery, but blocks nothing meanwhile: the
/// overlap rule ignores runs of nodes without their presence lock.
pub const CLAIM_AHEAD: Duration = Duration::from_millis(250);

/// The zone a script's schedule runs in: the expression's `CRON_TZ=`/`TZ=`
/// prefix, else the script's `timezone`, else UTC.
pub fn script_zone(schedule: &Schedule, timezone: Option<&str>) -> Location {
    let field = timezone
        .and_then(|name| Location::named(name).ok())
        .unwrap_or(Location::Utc);
    schedule.zone_or(field)
}

/// The first fire time of `expr` after `after_ms`, in the script's zone.
pub fn next_fire(expr: &str, timezone: Option<&str>, after_ms: i64) -> Option<Time> {
    let schedule = cron::parse(expr).ok()?;
    let zone = script_zone(&schedule, timezone);
    schedule.next(Time::from_unix_ms(after_ms, zone))
}

/// What to do with a due script at `now`: its run's input and its following
/// fire time.
pub fn plan(due: &DueScript, now: i64) -> Plan {
    let script = &due.record;
    let parsed = script.schedule.as_deref().map(cron::parse);
    let Some(Ok(schedule)) = parsed else {
        tracing::error!(
            script_id = %script.id,
            schedule = script.schedule,
            "a scheduled script has no valid schedule; it will not fire again"
        );
        let occurrence = Time::from_unix_ms(due.occurrence, Location::Utc);
        return Plan {
            next_run_at: None,
            input: scheduled_input(&occurrence.to_rfc3339()),
        };
    };
    let zone = script_zone(&schedule, script.timezone.as_deref());
    let occurrence = Time::from_unix_ms(due.occurrence, zone);
    let grace = MISFIRE_GRACE.as_millis() as i64;
    let next = match schedule.next(occurrence) {
        Some(t) if t.unix_ms() > now - grace => Some(t),
        // Missed while no node ran: this run is the one catch-up.
        Some(_) => schedule.next(Time::from_unix_ms(now, zone)),
        None => None,
    };
    Plan {
        next_run_at: next.map(|t| t.unix_ms()),
        input: scheduled_input(&occurrence.to_rfc3339()),
    }
}

/// How long to sleep when the earliest due time is `earliest`: until it is
/// within [`CLAIM_AHEAD`].
fn sleep_until(earliest: Option<i64>, now: i64) -> Duration {
    let ahead = CLAIM_AHEAD.as_millis() as i64;
    match earliest {
        // Due already: claimed by another node that has not committed yet,
        // or come due during this pass.
        Some(at) if at - ahead <= now => Duration::from_millis(20),
        Some(at) => Duration::from_millis((at - ahead - now) as u64).min(MAX_IDLE),
        None => MAX_IDLE,
    }
}

/// What the API and health checks see of the scheduler.
#[derive(Clone, Default)]
pub struct SchedulerHandle {
    inner: Arc<Shared>,
}

struct Shared {
    wake: Notify,
    /// When the handle was made: the node's start, for health.
    created_ms: i64,
    last_tick_ms: AtomicI64,
    dead_counted_ms: AtomicI64,
}

impl Default for Shared {
    fn default() -> Self {
        Self {
            wake: Notify::new(),
            created_ms: now_ms(),
            last_tick_ms: AtomicI64::new(0),
            dead_counted_ms: AtomicI64::new(0),
        }
    }
}

impl SchedulerHandle {
    /// Makes the loop look at the database again now (a schedule changed).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// When the loop last passed, ms since the epoch (0: never).
    pub fn last_tick_ms(&self) -> i64 {
        self.inner.last_tick_ms.load(Ordering::Relaxed)
    }

    /// When this handle was made (the node's start), ms since the epoch.
    pub fn created_ms(&self) -> i64 {
        self.inner.created_ms
    }
}

pub struct Scheduler {
    db: Db,
    exec: ExecutionService,
    metrics: SchedulerMetrics,
    handle: SchedulerHandle,
}

impl Scheduler {
    pub fn new(
        db: Db,
        exec: ExecutionService,
        metrics: SchedulerMetrics,
        handle: SchedulerHandle,
    ) -> Self {
        Self {
            db,
            exec,
            metrics,
            handle,
        }
    }

    /// Runs until `shutdown` resolves.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let wait = match self.tick().await {
                Ok(wait) => wait,
                Err(error) => {
                    tracing::warn!(error = format!("{error:#}"), "scheduler pass failed");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.handle.inner.wake.notified() => {}
                _ = &mut shutdown => return,
            }
        }
    }

    /// One pass: claim and start what is due; returns how long to sleep.
    pub async fn tick(&self) -> StoreResult<Duration> {
        self.metrics.ticks.inc();
        let now = now_ms();
        self.handle.inner.last_tick_ms.store(now, Ordering::Relaxed);
        let db = &self.db;
        let node = self.exec.node_id();

        // Claiming takes a write lock; look first whether anything is due.
        let earliest = db.earliest_due().await?;
        let due_by = now + CLAIM_AHEAD.as_millis() as i64;
        if earliest.is_none_or(|at| at > due_by) {
            self.metrics.due.set(0);
            self.refresh_dead_letter_size(now).await;
            return Ok(sleep_until(earliest, now_ms()));
        }

        let batch = claim_batch(db);
        let mut due = 0;
        loop {
            let claims = db
                .claim_due_scripts(due_by, batch, node, |script| plan(script, now))
                .await?;
            due += claims.len();
            for claim in &claims {
                self.start_occurrence(claim);
            }
            if (claims.len() as i64) < batch {
                break;
            }
        }
        self.metrics.due.set(due as i64);

        loop {
            let retries = db.claim_due_retries(now, batch, node).await?;
            for execution in &retries {
                self.start_retry(execution.clone());
            }
            if (retries.len() as i64) < batch {
                break;
            }
        }

        self.refresh_dead_letter_size(now).await;
        Ok(sleep_until(db.earliest_due().await?, now_ms()))
    }

    /// Counts the dead-letter queue every few seconds.
    async fn refresh_dead_letter_size(&self, now: i64) {
        let last = self.handle.inner.dead_counted_ms.load(Ordering::Relaxed);
        if now - last < 5_000 {
            return;
        }
        self.handle
            .inner
            .dead_counted_ms
            .store(now, Ordering::Relaxed);
        if let Ok(dead) = self.db.dead_letter_count().await {
            self.metrics.dead_letter.set(dead);
        }
    }

    fn start_occurrence(&self, claim: &Claim) {
        let Some(execution_id) = claim.execution_id.clone() else {
            tracing::info!(
                script_id = %claim.script.record.id,
                "previous scheduled run still going; occurrence skipped"
            );
            self.metrics.skipped.with_label_values(&["overlap"]).inc();
            return;
        };
        let script = &claim.script.record;
        let job = Job {
            execution_id,
            tenant_id: script.tenant_id.clone(),
            script_id: script.id.clone(),
            script: Some(script.clone()),
            input: claim.input.clone(),
            attempt: 0,
            scheduled_for: Some(claim.script.occurrence),
        };
        self.spawn(job);
    }

    fn start_retry(&self, execution: ExecutionRecord) {
        let input = serde_json::from_str(&execution.input).unwrap_or(Value::Null);
        let job = Job {
            execution_id: execution.id,
            tenant_id: execution.tenant_id,
            script_id: execution.script_id,
            script: None,
            input,
            attempt: execution.attempt,
            scheduled_for: None,
        };
        self.spawn(job);
    }

    fn spawn(&self, job: Job) {
        let db = self.db.clone();
        let exec = self.exec.clone();
        let metrics = self.metrics.clone();
        metrics.running.inc();
        tokio::spawn(async move {
            if let Some(at) = job.scheduled_for {
                let early = at - now_ms();
                if early > 0 {
                    tokio::time::sleep(Duration::from_millis(early as u64)).await;
                }
            }
            if let Err(error) = run_job(&db, &exec, &metrics, &job).await {
                tracing::error!(
                    execution_id = %job.execution_id,
                    error = format!("{error:#}"),
                    "a scheduled run could not be stored"
                );
            }
            metrics.running.dec();
        });
    }
}

/// A claimed execution to run.
struct Job {
    execution_id: ExecutionId,
    tenant_id: TenantId,
    script_id: ScriptId,
    /// The script as claimed with the occurrence; read when the run starts
    /// for retries, which may be days later.
    script: Option<Arc<ScriptRecord>>,
    input: Value,
    attempt: i64,
    /// For first attempts: the fire time, to measure the lag.
    scheduled_for: Option<i64>,
}

async fn run_job(
    db: &Db,
    exec: &ExecutionService,
    metrics: &SchedulerMetrics,
    job: &Job,
) -> StoreResult<()> {
    let script = match &job.script {
        Some(script) => Ok(script.clone()),
        None => db
            .script(&job.tenant_id, &job.script_id)
            .await
            .map(Arc::new),
    };
    let script = match script {
        Ok(script) if script.enabled => script,
        Ok(_) => {
            return cancel(db, job, "the script was disabled before this run started").await;
        }
        Err(StoreError::NotFound) => {
            return cancel(db, job, "the script was deleted before this run started").await;
        }
        Err(error) => return Err(error),
    };
    if let Some(at) = job.scheduled_for {
        let lag = (now_ms() - at).max(0) as f64 / 1000.0;
        metrics.lag.observe(lag);
    }
    let outcome = match exec
        .run_claimed(&job.execution_id, &script, &job.input, job.attempt)
        .await
    {
        Ok(outcome) => outcome,
        Err(SubmitError::Busy(busy)) => {
            // The tenant's queue is full: this occurrence is skipped, and
            // its record says so (no retry: that would only add load).
            tracing::warn!(script_id = %script.id, "{busy}; occurrence skipped");
            metrics
                .skipped
                .with_label_values(&[FailureKind::TenantBusy.as_str()])
                .inc();
            return end_claimed(
                db,
                job,
                ExecutionStatus::Failed,
                FailureKind::TenantBusy,
                &format!("skipped: {busy}"),
            )
            .await;
        }
        Err(SubmitError::Store(error)) => return Err(error),
    };
    if let Some(executed) = outcome
        && executed.status == ExecutionStatus::Failed
    {
        // A failed scheduled run is followed by a retry unless it is dead.
        metrics.retries.inc();
    }
    Ok(())
}

/// Ends a claimed run that cannot start; it goes to the dead-letter queue.
async fn cancel(db: &Db, job: &Job, why: &str) -> StoreResult<()> {
    end_claimed(db, job, ExecutionStatus::Dead, FailureKind::Cancelled, why).await
}

/// Stores a claimed run that never started as ended with `status`.
async fn end_claimed(
    db: &Db,
    job: &Job,
    status: ExecutionStatus,
    kind: FailureKind,
    why: &str,
) -> StoreResult<()> {
    let run = FinishedRun {
        status,
        output: None,
        error_type: Some(kind),
        error_message: Some(why.into()),
        error_stack: None,
        logs: "[]".into(),
        duration_ms: 0,
        duration_us: 0,
        fuel_used: 0,
        memory_peak_bytes: 0,
        cpu_time_us: 0,
    };
    db.finish_execution(&job.execution_id, &run, None)
        .await
        .map(|_| ())
}
