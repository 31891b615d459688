//! SQLite WAL checkpoints off the run writer's path.
//!
//! By default the connection that commits also checkpoints: once the WAL
//! has passed 1,000 pages, a commit copies them into the database file and
//! syncs both files before it returns. Under webhook load the writer's own
//! connection did that every 40-50 ms, two `fsync`s of 3-5 ms each, and
//! every run waiting for a commit waited for them too (measured with
//! `perf record -e syscalls:sys_enter_fsync,...` over `cargo bench --bench
//! webhooks`; docs/architecture.md, "Checkpoints").
//!
//! So the writer's connection does not checkpoint (`wal_autocheckpoint =
//! 0`). After a commit, at most every [`WalCheckpoints::every`] and one at
//! a time, a task checkpoints (`PASSIVE`) on a pooled connection, on that
//! connection's thread, while the writer goes on committing. Such a
//! checkpoint copies the WAL as it was when it began, but the writer has
//! appended to it meanwhile, and SQLite starts the WAL over only when a
//! commit finds every page of it copied: under steady load that never
//! happens by itself, and the WAL would grow for as long as the load
//! lasts. So when a checkpoint reports a WAL of more than
//! [`WalCheckpoints::restart_above_pages`], the writer itself checkpoints
//! once between two batches: little is left to copy, and its next commit
//! starts the WAL over.

use std::time::{Duration, Instant};

use sqlx::{SqliteConnection, SqlitePool};
use tokio::task::JoinHandle;

/// When the run writer checkpoints SQLite's WAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalCheckpoints {
    /// At most this often a checkpoint starts beside the writer.
    pub every: Duration,
    /// A WAL longer than this many pages (4 KiB each) is finished by the
    /// writer, so that it starts over.
    pub restart_above_pages: i64,
}

impl Default for WalCheckpoints {
    /// Every 250 ms; the writer's own pass above 8,192 pages (32 MiB).
    /// Under webhook load the writer's pass takes 4-8 ms; 4,096 and 16,384
    /// pages gave the same throughput (`cargo bench --bench webhooks`).
    fn default() -> Self {
        Self {
            every: Duration::from_millis(250),
            restart_above_pages: 8_192,
        }
    }
}

/// The state of the writer's checkpoints.
pub(super) struct Checkpoints {
    policy: WalCheckpoints,
    /// The checkpoint running beside the writer; it ends with the WAL's
    /// length in pages as it found it.
    running: Option<JoinHandle<Option<i64>>>,
    last: Option<Instant>,
}

impl Checkpoints {
    pub(super) fn new(policy: WalCheckpoints) -> Self {
        Self {
            policy,
            running: None,
            last: None,
        }
    }

    /// Called by the writer after each commit on SQLite: collects the last
    /// checkpoint (finishing it on `own` when the WAL is long) and starts
    /// the next when it is time.
    pub(super) async fn after_commit(
        &mut self,
        pool: &SqlitePool,
        own: Option<&mut SqliteConnection>,
    ) {
        if self
            .running
            .as_ref()
            .is_some_and(|task| !task.is_finished())
        {
            return;
        }
        if let Some(task) = self.running.take()
            && task.await.ok().flatten() > Some(self.policy.restart_above_pages)
            && let Some(own) = own
        {
            checkpoint(own).await;
        }
        if self.last.is_some_and(|at| at.elapsed() < self.policy.every) {
            return;
        }
        self.last = Some(Instant::now());
        let pool = pool.clone();
        self.running = Some(tokio::spawn(async move {
            let mut conn = pool
                .acquire()
                .await
                .inspect_err(|error| tracing::warn!(%error, "no connection to checkpoint on"))
                .ok()?;
            checkpoint(&mut conn).await
        }));
    }
}

/// `PRAGMA wal_checkpoint(PASSIVE)`: the WAL's length in pages, or `None`
/// when it failed (logged; the next one tries again).
async fn checkpoint(conn: &mut SqliteConnection) -> Option<i64> {
    let done: Result<(i64, i64, i64), sqlx::Error> =
        sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(conn)
            .await;
    match done {
        Ok((_busy, pages, _copied)) => Some(pages),
        Err(error) => {
            tracing::warn!(%error, "checkpointing the SQLite WAL failed");
            None
        }
    }
}
