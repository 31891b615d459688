//! Group commit for the rows runs write: one task per node takes every
//! execution insert, start and finish from a channel and commits whatever
//! is queued in one transaction, so a thousand concurrent runs cost a few
//! transactions instead of thousands of writers taking turns at SQLite's
//! write lock (or PostgreSQL round trips).
//!
//! Each caller still waits for its own commit: [`Writer`]'s methods return
//! once the transaction holding their write has committed, with that write's
//! result. New rows of a batch go in with one multi-row `INSERT`; starts and
//! finishes are one statement each, in the same transaction; a script's
//! `last_executed_at` is written once per batch. When a batch fails, its
//! writes are tried again one transaction each, so one bad write fails only
//! its own caller.

use std::collections::HashMap;

use tokio::sync::{mpsc, oneshot};

use super::executions::{FinishedRun, NewExecution};
use super::schedule::{RetryPolicy, follow_up};
use super::{Db, StoreError, StoreResult, now_ms, on_pool, values_rows};
use crate::model::{ExecutionId, ExecutionStatus, ScriptId};

/// Writes waiting beyond this make callers wait to send (backpressure).
const QUEUE: usize = 16_384;
/// The most writes one transaction takes.
const BATCH: usize = 1_024;
/// Rows per multi-row `INSERT`: 23 parameters a row stays well under
/// SQLite's 32,766 and PostgreSQL's 65,535.
const ROWS_PER_INSERT: usize = 256;

/// The executions' columns, in the order a new row binds them.
const COLUMNS: &str = "id, tenant_id, script_id, script_version, trigger_type, status, input, \
    output, error_type, error_message, error_stack, logs, attempt, node_id, queued_at, \
    started_at, finished_at, duration_ms, fuel_used, memory_peak_bytes, cpu_time_us, \
    scheduled_for, run_after";
const COLUMN_COUNT: usize = 23;

/// One write, as queued.
#[derive(Debug)]
enum Write {
    /// A run accepted: its row as `queued` or `running`.
    Open {
        new: NewExecution,
        status: ExecutionStatus,
        queued_at: i64,
        at: i64,
    },
    /// A queued run whose turn came: `running` from `at`. Answers
    /// `NotFound` when it was no longer queued.
    Start { id: ExecutionId, at: i64 },
    /// A run's result, on its open row.
    Finish {
        id: ExecutionId,
        script_id: ScriptId,
        run: FinishedRun,
        retry: Option<RetryPolicy>,
        at: i64,
    },
    /// A run recorded only at its end: the whole row in one write.
    Complete {
        new: NewExecution,
        queued_at: i64,
        started_at: i64,
        run: FinishedRun,
        at: i64,
    },
}

impl Write {
    /// The script whose `last_executed_at` this write moves, and to when.
    fn executed(&self) -> Option<(&ScriptId, i64)> {
        match self {
            Write::Finish { script_id, at, .. } => Some((script_id, *at)),
            Write::Complete { new, at, .. } => Some((&new.script_id, *at)),
            Write::Open { .. } | Write::Start { .. } => None,
        }
    }

    /// A new row (`Open`, `Complete`).
    fn is_insert(&self) -> bool {
        matches!(self, Write::Open { .. } | Write::Complete { .. })
    }
}

struct Queued {
    write: Write,
    reply: oneshot::Sender<StoreResult<ExecutionStatus>>,
}

/// The node's writer of run records. Cheap to clone; the task behind it
/// ends when the last clone is dropped, after committing what is queued.
#[derive(Clone, Debug)]
pub struct Writer {
    queue: mpsc::Sender<Queued>,
}

impl Writer {
    /// Starts the writer task on the current runtime.
    pub fn spawn(db: Db) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(run(db, receiver));
        Writer { queue }
    }

    async fn send(&self, write: Write) -> StoreResult<ExecutionStatus> {
        let (reply, answer) = oneshot::channel();
        let gone = || StoreError::Other(anyhow::anyhow!("the run writer has stopped"));
        self.queue
            .send(Queued { write, reply })
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// Records an accepted run as `queued`, or as `running` when it starts
    /// at once.
    pub async fn open(&self, new: NewExecution, status: ExecutionStatus) -> StoreResult<()> {
        self.open_at(new, status, now_ms()).await
    }

    /// [`Self::open`] for a run accepted at `queued_at` (a `running` row
    /// starts now).
    pub async fn open_at(
        &self,
        new: NewExecution,
        status: ExecutionStatus,
        queued_at: i64,
    ) -> StoreResult<()> {
        let at = now_ms();
        let write = Write::Open {
            new,
            status,
            queued_at,
            at,
        };
        self.send(write).await.map(|_| ())
    }

    /// Moves a queued execution to `running`; `NotFound` when it is no
    /// longer queued (recovery closed it meanwhile).
    pub async fn start(&self, id: ExecutionId) -> StoreResult<()> {
        let at = now_ms();
        self.send(Write::Start { id, at }).await.map(|_| ())
    }

    /// Stores a run's result on its open row and moves the script's
    /// `last_executed_at`; returns the status stored. Only an open row
    /// changes, so a run already closed as abandoned stays so. With
    /// `retry`, a failed run of a scheduled occurrence is followed up in
    /// the same transaction (a retry queued, or `dead` after the last).
    pub async fn finish(
        &self,
        id: ExecutionId,
        script_id: ScriptId,
        run: FinishedRun,
        retry: Option<RetryPolicy>,
    ) -> StoreResult<ExecutionStatus> {
        let at = now_ms();
        self.send(Write::Finish {
            id,
            script_id,
            run,
            retry,
            at,
        })
        .await
    }

    /// Records a run that was not recorded while it ran, finished, in one
    /// write; returns the status stored. Not for scheduled runs, whose
    /// failures are followed up (use `open` and `finish`).
    pub async fn complete(
        &self,
        new: NewExecution,
        queued_at: i64,
        started_at: i64,
        run: FinishedRun,
    ) -> StoreResult<ExecutionStatus> {
        let at = now_ms();
        self.send(Write::Complete {
            new,
            queued_at,
            started_at,
            run,
            at,
        })
        .await
    }
}

/// The writer task: a batch of whatever is queued, one transaction, the
/// replies; until every sender is gone.
async fn run(db: Db, mut receiver: mpsc::Receiver<Queued>) {
    let mut batch = Vec::with_capacity(BATCH);
    while receiver.recv_many(&mut batch, BATCH).await > 0 {
        let writes: Vec<&Write> = batch.iter().map(|q| &q.write).collect();
        match commit(&db, &writes).await {
            Ok(results) => {
                for (queued, result) in batch.drain(..).zip(results) {
                    let _ = queued.reply.send(result);
                }
            }
            Err(error) if batch.len() == 1 => {
                let queued = batch.pop().expect("one write");
                let _ = queued.reply.send(Err(error));
            }
            Err(error) => {
                tracing::warn!(
                    writes = batch.len(),
                    error = format!("{error:#}"),
                    "a batch of run records failed; writing them one by one"
                );
                for queued in batch.drain(..) {
                    let result = match commit(&db, &[&queued.write]).await {
                        Ok(mut results) => results.pop().expect("one result"),
                        Err(error) => Err(error),
                    };
                    let _ = queued.reply.send(result);
                }
            }
        }
    }
}

/// Binds one new row's columns, in [`COLUMNS`]' order.
macro_rules! bind_row {
    ($query:expr, $write:expr) => {{
        let query = $query;
        match $write {
            Write::Open {
                new,
                status,
                queued_at,
                at,
            } => {
                let started_at = (*status == ExecutionStatus::Running).then_some(*at);
                query
                    .bind(&new.id)
                    .bind(&new.tenant_id)
                    .bind(&new.script_id)
                    .bind(new.script_version)
                    .bind(new.trigger_type)
                    .bind(*status)
                    .bind(&*new.input)
                    .bind(None::<String>)
                    .bind(None::<crate::model::FailureKind>)
                    .bind(None::<String>)
                    .bind(None::<String>)
                    .bind("[]")
                    .bind(new.attempt)
                    .bind(&new.node_id)
                    .bind(*queued_at)
                    .bind(started_at)
                    .bind(None::<i64>)
                    .bind(None::<i64>)
                    .bind(None::<i64>)
                    .bind(None::<i64>)
                    .bind(None::<i64>)
                    .bind(new.scheduled_for)
                    .bind(None::<i64>)
            }
            Write::Complete {
                new,
                queued_at,
                started_at,
                run,
                at,
            } => query
                .bind(&new.id)
                .bind(&new.tenant_id)
                .bind(&new.script_id)
                .bind(new.script_version)
                .bind(new.trigger_type)
                .bind(run.status)
                .bind(&*new.input)
                .bind(&run.output)
                .bind(run.error_type)
                .bind(&run.error_message)
                .bind(&run.error_stack)
                .bind(&run.logs)
                .bind(new.attempt)
                .bind(&new.node_id)
                .bind(*queued_at)
                .bind(Some(*started_at))
                .bind(Some(*at))
                .bind(Some(run.duration_ms))
                .bind(Some(run.fuel_used))
                .bind(Some(run.memory_peak_bytes))
                .bind(Some(run.cpu_time_us))
                .bind(new.scheduled_for)
                .bind(None::<i64>),
            Write::Start { .. } | Write::Finish { .. } => unreachable!("only new rows are bound"),
        }
    }};
}

/// Writes `writes` in one transaction; the result of each, in order. An
/// `Err` means nothing was committed.
async fn commit(db: &Db, writes: &[&Write]) -> StoreResult<Vec<StoreResult<ExecutionStatus>>> {
    let inserts: Vec<&Write> = writes.iter().copied().filter(|w| w.is_insert()).collect();
    let insert_sql: Vec<String> = inserts
        .chunks(ROWS_PER_INSERT)
        .map(|chunk| {
            let rows = values_rows(db, chunk.len(), COLUMN_COUNT);
            format!("INSERT INTO executions ({COLUMNS}) VALUES {rows}")
        })
        .collect();
    let mut executed: HashMap<&ScriptId, i64> = HashMap::new();
    for write in writes {
        if let Some((script, at)) = write.executed() {
            let latest = executed.entry(script).or_insert(at);
            *latest = (*latest).max(at);
        }
    }
    let begin = db.begin_write();
    on_pool!(db, pool => {
        let mut tx = pool.begin_with(begin).await?;
        // New rows first: a start or finish in the same batch may be for one.
        for (chunk, sql) in inserts.chunks(ROWS_PER_INSERT).zip(&insert_sql) {
            let mut query = sqlx::query(sql);
            for write in chunk {
                query = bind_row!(query, write);
            }
            query.execute(&mut *tx).await?;
        }
        let mut results = Vec::with_capacity(writes.len());
        for write in writes {
            let result = match write {
                Write::Open { status, .. } => Ok(*status),
                Write::Complete { run, .. } => Ok(run.status),
                Write::Start { id, at } => {
                    let started = sqlx::query(
                        "UPDATE executions SET status = 'running', started_at = $2 \
                         WHERE id = $1 AND status = 'queued'",
                    )
                    .bind(id).bind(at)
                    .execute(&mut *tx).await?
                    .rows_affected();
                    if started == 1 { Ok(ExecutionStatus::Running) } else { Err(StoreError::NotFound) }
                }
                Write::Finish { id, run, retry, at, .. } => {
                    let status = match retry.as_ref().filter(|_| run.status == ExecutionStatus::Failed) {
                        Some(policy) => follow_up!(&mut *tx, id, *at, policy),
                        None => run.status,
                    };
                    sqlx::query(
                        "UPDATE executions SET status = $2, output = $3, error_type = $4, \
                         error_message = $5, error_stack = $6, logs = $7, finished_at = $8, \
                         duration_ms = $9, fuel_used = $10, memory_peak_bytes = $11, \
                         cpu_time_us = $12 WHERE id = $1 AND status IN ('queued', 'running')",
                    )
                    .bind(id).bind(status).bind(&run.output).bind(run.error_type)
                    .bind(&run.error_message).bind(&run.error_stack).bind(&run.logs).bind(at)
                    .bind(run.duration_ms).bind(run.fuel_used).bind(run.memory_peak_bytes)
                    .bind(run.cpu_time_us)
                    .execute(&mut *tx).await?;
                    Ok(status)
                }
            };
            results.push(result);
        }
        for (script, at) in &executed {
            sqlx::query(
                "UPDATE scripts SET last_executed_at = $2 \
                 WHERE id = $1 AND (last_executed_at IS NULL OR last_executed_at < $2)",
            )
            .bind(*script).bind(at)
            .execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(results)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_insert_has_a_parameter_per_column() {
        assert_eq!(COLUMNS.split(',').count(), COLUMN_COUNT);
    }
}
