//! Group commit for the rows runs write: one task per node takes every
//! execution insert, start and finish from a channel and commits whatever
//! is queued in one transaction, so a thousand concurrent runs cost a few
//! transactions instead of thousands of writers taking turns at SQLite's
//! write lock (or PostgreSQL round trips).
//!
//! Each caller still waits for its own commit: [`Writer`]'s methods return
//! once the transaction holding their write has committed, with that write's
//! result. A batch is a few statements whatever its size (see [`commit`]);
//! a script's `last_executed_at` is written once per batch. When a batch
//! fails, its writes are tried again one transaction each, so one bad write
//! fails only its own caller.

use std::collections::{HashMap, HashSet};

use sqlx::{ConnectOptions, Connection};
use tokio::sync::{mpsc, oneshot};

use super::checkpoints::{Checkpoints, WalCheckpoints};
use super::executions::{FinishedRun, NewExecution};
use super::schedule::{RetryPolicy, follow_up};
use super::{Db, StoreError, StoreResult, now_ms, values_list, values_rows};
use crate::model::{ExecutionId, ExecutionStatus, ScriptId};

/// Writes waiting beyond this make callers wait to send (backpressure).
const QUEUE: usize = 16_384;
/// The most writes one transaction takes.
const BATCH: usize = 1_024;
/// Rows per multi-row `INSERT`: 24 parameters a row stays well under
/// SQLite's 32,766 and PostgreSQL's 65,535.
const ROWS_PER_INSERT: usize = 256;

/// The executions' columns, in the order a new row binds them.
const COLUMNS: &str = "id, tenant_id, script_id, script_version, trigger_type, status, input, \
    output, error_type, error_message, error_stack, logs, attempt, node_id, queued_at, \
    started_at, finished_at, duration_ms, fuel_used, memory_peak_bytes, cpu_time_us, \
    scheduled_for, run_after, duration_us";
const COLUMN_COUNT: usize = 24;

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
        Self::spawn_with(db, WalCheckpoints::default())
    }

    /// [`Self::spawn`] with other checkpoint thresholds (tests use small
    /// ones).
    #[doc(hidden)]
    pub fn spawn_with(db: Db, wal: WalCheckpoints) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(run(db, wal, receiver));
        Writer { queue }
    }

    /// Queues `write`; its result comes through the returned [`Pending`].
    async fn enqueue(&self, write: Write) -> StoreResult<Pending> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Queued { write, reply })
            .await
            .map_err(|_| writer_gone())?;
        Ok(Pending(answer))
    }

    async fn send(&self, write: Write) -> StoreResult<ExecutionStatus> {
        self.enqueue(write).await?.committed().await
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
        self.start_queued(id).await?.committed().await.map(|_| ())
    }

    /// [`Self::start`] without waiting for the commit: the start is queued
    /// ahead of anything sent after it (a finish of the same run lands in
    /// the same or a later transaction), and its result is read from the
    /// returned [`Pending`].
    pub async fn start_queued(&self, id: ExecutionId) -> StoreResult<Pending> {
        let at = now_ms();
        self.enqueue(Write::Start { id, at }).await
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

/// A queued write whose transaction may not have committed yet.
#[derive(Debug)]
pub struct Pending(oneshot::Receiver<StoreResult<ExecutionStatus>>);

impl Pending {
    /// Waits for the write's transaction; the write's result.
    pub async fn committed(self) -> StoreResult<ExecutionStatus> {
        self.0.await.map_err(|_| writer_gone())?
    }
}

fn writer_gone() -> StoreError {
    StoreError::Other(anyhow::anyhow!("the run writer has stopped"))
}

/// The writer task: a batch of whatever is queued, one transaction, the
/// replies; until every sender is gone.
async fn run(db: Db, wal: WalCheckpoints, mut receiver: mpsc::Receiver<Queued>) {
    let mut own = OwnConnection::default();
    let mut checkpoints = Checkpoints::new(wal);
    let mut batch = Vec::with_capacity(BATCH);
    while receiver.recv_many(&mut batch, BATCH).await > 0 {
        let writes: Vec<&Write> = batch.iter().map(|q| &q.write).collect();
        match commit_while_unreachable(&db, &mut own, &writes).await {
            Ok(results) => {
                for (queued, result) in batch.drain(..).zip(results) {
                    let _ = queued.reply.send(result);
                }
                if let Db::Sqlite(pool) = &db {
                    checkpoints.after_commit(pool, own.as_mut()).await;
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
                    let result = match commit(&db, &mut own, &[&queued.write]).await {
                        Ok(mut results) => results.pop().expect("one result"),
                        Err(error) => Err(error),
                    };
                    let _ = queued.reply.send(result);
                }
            }
        }
    }
}

/// How long a batch is tried again while the database cannot be reached
/// (a restart, a failover), its callers waiting, before they are failed.
const UNREACHABLE_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// [`commit`], tried again with a growing pause (0.1 s to 2 s) while the
/// database cannot be reached, for up to [`UNREACHABLE_FOR`]: a run's
/// result is in memory and must not be lost to a database restart. A
/// commit whose reply was lost may have committed: a second try of its
/// starts and finishes then changes nothing (they apply to open rows
/// only), and its new rows are refused as duplicates.
async fn commit_while_unreachable(
    db: &Db,
    own: &mut OwnConnection,
    writes: &[&Write],
) -> StoreResult<Vec<StoreResult<ExecutionStatus>>> {
    let since = std::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(100);
    loop {
        match commit(db, own, writes).await {
            Err(error) if error.is_unreachable() && since.elapsed() < UNREACHABLE_FOR => {
                tracing::warn!(
                    writes = writes.len(),
                    error = format!("{error:#}"),
                    "the database is unreachable; the batch of run records will be tried again"
                );
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(2));
            }
            result => return result,
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
                .bind(None::<i64>)
                .bind(Some(run.duration_us)),
            Write::Start { .. } | Write::Finish { .. } => unreachable!("only new rows are bound"),
        }
    }};
}

/// The writer's own SQLite connection, for every batch: opened on first
/// use, closed after a failure. Always the same connection, so its
/// page cache and prepared statements stay valid from one batch to the
/// next; in WAL mode a connection drops its page cache whenever another
/// connection has written since its last transaction, which a pooled
/// connection taken in turn nearly always finds.
type OwnConnection = Option<sqlx::SqliteConnection>;

/// Rows per multi-row `UPDATE ... FROM (VALUES ...)` of starts and finishes
/// (at most 13 parameters a row).
const ROWS_PER_UPDATE: usize = 512;

/// Whether `write` is a finish whose failure is followed up (a retry queued
/// or the run marked `dead`), which takes statements of its own.
fn follows_up(write: &Write) -> bool {
    matches!(write, Write::Finish { run, retry: Some(_), .. } if run.status == ExecutionStatus::Failed)
}

/// Writes `writes` in one transaction; the result of each, in order. An
/// `Err` means nothing was committed.
///
/// Whatever the batch's size, the statements are few: new rows in multi-row
/// `INSERT`s, then starts, then finishes, then the scripts' last run times,
/// each kind as multi-row `UPDATE ... FROM (VALUES ...)`s. On SQLite every
/// statement is a hop to the connection's thread, so a statement per write
/// would cost more than the writes. Only finishes that queue a retry take
/// statements of their own. Writes of one run arrive in order (its start
/// before its finish), and this order of kinds keeps them so.
async fn commit(
    db: &Db,
    own: &mut OwnConnection,
    writes: &[&Write],
) -> StoreResult<Vec<StoreResult<ExecutionStatus>>> {
    if let Db::Sqlite(pool) = db
        && writes.len() <= ROWS_PER_INSERT
        && writes.iter().all(|w| w.is_insert())
    {
        return commit_inserts(pool, own, writes).await;
    }
    let inserts: Vec<&Write> = writes.iter().copied().filter(|w| w.is_insert()).collect();
    let insert_sql: Vec<String> = inserts
        .chunks(ROWS_PER_INSERT)
        .map(|chunk| {
            let rows = values_rows(db, chunk.len(), COLUMN_COUNT);
            format!("INSERT INTO executions ({COLUMNS}) VALUES {rows}")
        })
        .collect();
    let starts: Vec<(&ExecutionId, i64)> = writes
        .iter()
        .filter_map(|w| match w {
            Write::Start { id, at } => Some((id, *at)),
            _ => None,
        })
        .collect();
    let executed = last_executed(writes);
    let update_sql = |rows: usize, columns: usize, sql: &str| {
        sql.replace("{rows}", &values_rows(db, rows, columns))
    };
    let begin = db.begin_write();
    // The batch's statements, in the transaction `$tx`: the same for both
    // backends.
    macro_rules! in_transaction {
        ($tx:ident) => {{
            // New rows first: a start or finish in the same batch may be for one.
            for (chunk, sql) in inserts.chunks(ROWS_PER_INSERT).zip(&insert_sql) {
                let mut query = sqlx::query(sql);
                for write in chunk {
                    query = bind_row!(query, write);
                }
                query.execute(&mut *$tx).await?;
            }
            let mut started: HashSet<ExecutionId> = HashSet::new();
            for chunk in starts.chunks(ROWS_PER_UPDATE) {
                let sql = update_sql(chunk.len(), 2,
                    "UPDATE executions SET status = 'running', started_at = v.column2 \
                     FROM (VALUES {rows}) AS v \
                     WHERE executions.id = v.column1 AND executions.status = 'queued' RETURNING id");
                let mut query = sqlx::query_as::<_, (ExecutionId,)>(&sql);
                for (id, at) in chunk {
                    query = query.bind(*id).bind(*at);
                }
                started.extend(query.fetch_all(&mut *$tx).await?.into_iter().map(|(id,)| id));
            }
            let mut followed: HashMap<usize, ExecutionStatus> = HashMap::new();
            for (i, write) in writes.iter().enumerate() {
                if let Write::Finish { id, retry: Some(policy), at, .. } = write
                    && follows_up(write)
                {
                    followed.insert(i, follow_up!(&mut *$tx, id, *at, policy));
                }
            }
            // Followed-up finishes are written with the plain ones, each with
            // the status its follow-up chose.
            let closing: Vec<(&Write, ExecutionStatus)> = writes
                .iter()
                .enumerate()
                .filter_map(|(i, w)| match w {
                    Write::Finish { run, .. } => Some((*w, followed.get(&i).copied().unwrap_or(run.status))),
                    _ => None,
                })
                .collect();
            for chunk in closing.chunks(ROWS_PER_UPDATE) {
                let sql = update_sql(chunk.len(), 13,
                    "UPDATE executions SET status = v.column2, output = v.column3, \
                     error_type = v.column4, error_message = v.column5, error_stack = v.column6, \
                     logs = v.column7, finished_at = v.column8, duration_ms = v.column9, \
                     fuel_used = v.column10, memory_peak_bytes = v.column11, cpu_time_us = v.column12, \
                     duration_us = v.column13 \
                     FROM (VALUES {rows}) AS v \
                     WHERE executions.id = v.column1 AND executions.status IN ('queued', 'running')");
                let mut query = sqlx::query(&sql);
                for (write, status) in chunk {
                    let Write::Finish { id, run, at, .. } = write else { unreachable!("finishes only") };
                    query = query
                        .bind(id).bind(*status).bind(&run.output).bind(run.error_type)
                        .bind(&run.error_message).bind(&run.error_stack).bind(&run.logs).bind(*at)
                        .bind(run.duration_ms).bind(run.fuel_used).bind(run.memory_peak_bytes)
                        .bind(run.cpu_time_us).bind(run.duration_us);
                }
                query.execute(&mut *$tx).await?;
            }
            for chunk in executed.chunks(ROWS_PER_UPDATE) {
                let sql = update_sql(chunk.len(), 2,
                    "UPDATE scripts SET last_executed_at = v.column2 FROM (VALUES {rows}) AS v \
                     WHERE scripts.id = v.column1 \
                     AND (scripts.last_executed_at IS NULL OR scripts.last_executed_at < v.column2)");
                let mut query = sqlx::query(&sql);
                for (script, at) in chunk {
                    query = query.bind(*script).bind(*at);
                }
                query.execute(&mut *$tx).await?;
            }
            $tx.commit().await?;
            let results = writes
                .iter()
                .enumerate()
                .map(|(i, write)| match write {
                    Write::Open { .. } | Write::Complete { .. } => Ok(inserted_status(write)),
                    Write::Start { id, .. } if started.contains(id) => Ok(ExecutionStatus::Running),
                    Write::Start { .. } => Err(StoreError::NotFound),
                    Write::Finish { run, .. } => Ok(followed.get(&i).copied().unwrap_or(run.status)),
                })
                .collect();
            Ok(results)
        }};
    }
    match db {
        // On the writer's own connection, whose checkpoints are the
        // writer's (`checkpoints.rs`); closed after a failure, which rolls
        // back whatever it left open.
        Db::Sqlite(pool) => {
            let done: StoreResult<_> = async {
                let conn = own_connection(pool, own).await?;
                let mut tx = conn.begin_with(begin).await?;
                in_transaction!(tx)
            }
            .await;
            if done.is_err() {
                close(own).await;
            }
            done
        }
        Db::Postgres(pool) => {
            let mut tx = pool.begin_with(begin).await?;
            in_transaction!(tx)
        }
    }
}

/// The latest run each script in `writes` finished, for `last_executed_at`.
fn last_executed<'a>(writes: &[&'a Write]) -> Vec<(&'a ScriptId, i64)> {
    let mut executed: HashMap<&ScriptId, i64> = HashMap::new();
    for write in writes {
        if let Some((script, at)) = write.executed() {
            let latest = executed.entry(script).or_insert(at);
            *latest = (*latest).max(at);
        }
    }
    executed.into_iter().collect()
}

/// The status a new row (`Open`, `Complete`) is written with.
fn inserted_status(write: &Write) -> ExecutionStatus {
    match write {
        Write::Open { status, .. } => *status,
        Write::Complete { run, .. } => run.status,
        Write::Start { .. } | Write::Finish { .. } => unreachable!("new rows only"),
    }
}

/// [`commit`] of a batch of new rows only (at most [`ROWS_PER_INSERT`]) on
/// SQLite, which is what runs recorded once at their end (sync webhooks,
/// API runs) make: the whole transaction (`BEGIN IMMEDIATE; INSERT ...;
/// UPDATE ...; COMMIT`) as one call, run on the connection's thread in one
/// go, instead of four hops to that thread (begin, insert,
/// `last_executed_at`, commit), on the writer's own connection
/// ([`OwnConnection`]). A connection on which it fails is closed and the
/// next batch opens another, so no transaction is left open (closing rolls
/// it back).
///
/// PostgreSQL keeps the general path: the same batch as one statement there
/// (the `INSERT` in a `WITH` that moves `last_executed_at`) measured slower
/// against a local server, not faster.
async fn commit_inserts(
    pool: &sqlx::SqlitePool,
    own: &mut OwnConnection,
    writes: &[&Write],
) -> StoreResult<Vec<StoreResult<ExecutionStatus>>> {
    let executed = last_executed(writes);
    let rows = values_list(false, writes.len(), COLUMN_COUNT);
    let mut sql = format!("BEGIN IMMEDIATE; INSERT INTO executions ({COLUMNS}) VALUES {rows};");
    if !executed.is_empty() {
        let latest = values_list(false, executed.len(), 2);
        sql.push_str(&format!(
            " UPDATE scripts SET last_executed_at = v.column2 FROM (VALUES {latest}) AS v \
             WHERE scripts.id = v.column1 \
             AND (scripts.last_executed_at IS NULL OR scripts.last_executed_at < v.column2);"
        ));
    }
    sql.push_str(" COMMIT;");
    let mut query = sqlx::query(&sql);
    for write in writes {
        query = bind_row!(query, write);
    }
    for (script, at) in &executed {
        query = query.bind(*script).bind(*at);
    }
    let conn = own_connection(pool, own).await?;
    if let Err(error) = query.execute(&mut *conn).await {
        close(own).await;
        return Err(error.into());
    }
    Ok(writes.iter().map(|w| Ok(inserted_status(w))).collect())
}

/// The writer's own connection, opened if need be. It does not checkpoint
/// in its commits: checkpoints run beside them (`checkpoints.rs`).
async fn own_connection<'a>(
    pool: &sqlx::SqlitePool,
    own: &'a mut OwnConnection,
) -> StoreResult<&'a mut sqlx::SqliteConnection> {
    Ok(match own {
        Some(conn) => conn,
        None => own.insert(
            pool.connect_options()
                .as_ref()
                .clone()
                .pragma("wal_autocheckpoint", "0")
                .connect()
                .await?,
        ),
    })
}

/// Closes the writer's own connection after a failure; the next batch
/// opens another.
async fn close(own: &mut OwnConnection) {
    if let Some(conn) = own.take() {
        let _ = conn.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_insert_has_a_parameter_per_column() {
        assert_eq!(COLUMNS.split(',').count(), COLUMN_COUNT);
    }
}
