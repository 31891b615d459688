//! Deleting old executions in bounded batches, and what the database
//! occupies. The policy (what is old, how often) is `crate::retention`'s;
//! these are its statements.
//!
//! Only finished executions are deleted: `queued` and `running` ones (which
//! include pending retries) never are. Every statement deletes at most
//! `batch` rows, picked through an index (the primary key, whose UUIDv7 ids
//! sort by creation time, or `executions_by_script`), so each holds the
//! write lock briefly.

use super::{Db, StoreResult, on_pool};
use crate::model::{ExecutionId, ExecutionStatus, ScriptId, TenantId};

/// A script with executions created since some time, and its own count
/// limit if it has one (`None` also for executions of deleted scripts).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RetentionCandidate {
    pub tenant_id: TenantId,
    pub script_id: ScriptId,
    pub max_per_script: Option<i64>,
}

/// A script with its own age limit.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AgeOverride {
    pub tenant_id: TenantId,
    pub script_id: ScriptId,
    pub max_age_ms: i64,
}

impl Db {
    /// Deletes up to `batch` finished executions created before `before`
    /// (an id from [`ExecutionId::lowest_at`]) and after `after`, of
    /// scripts without an age limit of their own; returns how many, and
    /// the highest id deleted (the `after` of the next batch: rows skipped
    /// below it stay skipped).
    pub async fn delete_expired(
        &self,
        before: &ExecutionId,
        after: Option<&ExecutionId>,
        batch: i64,
    ) -> StoreResult<(u64, Option<ExecutionId>)> {
        let sql = "DELETE FROM executions WHERE id IN ( \
            SELECT e.id FROM executions e WHERE e.id < $1 AND ($2 IS NULL OR e.id > $2) \
            AND e.status IN ('completed', 'failed', 'dead') \
            AND NOT EXISTS (SELECT 1 FROM scripts s WHERE s.id = e.script_id \
                AND s.retention_max_age_ms IS NOT NULL) \
            ORDER BY e.id LIMIT $3) RETURNING id";
        let ids: Vec<(ExecutionId,)> = on_pool!(self, pool => {
            sqlx::query_as(sql).bind(before).bind(after).bind(batch).fetch_all(pool).await
        })?;
        let last = ids.iter().map(|(id,)| id).max().cloned();
        Ok((ids.len() as u64, last))
    }

    /// Scripts with an age limit of their own.
    pub async fn retention_age_overrides(&self) -> StoreResult<Vec<AgeOverride>> {
        let sql = "SELECT tenant_id, id AS script_id, retention_max_age_ms AS max_age_ms \
            FROM scripts WHERE retention_max_age_ms IS NOT NULL";
        Ok(on_pool!(self, pool => sqlx::query_as(sql).fetch_all(pool).await)?)
    }

    /// Deletes up to `batch` of one script's executions created before
    /// `before` whose status is one of `statuses`; returns how many.
    pub async fn delete_script_executions_before(
        &self,
        tenant_id: &TenantId,
        script_id: &ScriptId,
        before: &ExecutionId,
        statuses: &[ExecutionStatus],
        batch: i64,
    ) -> StoreResult<u64> {
        // Literals, not parameters: the enum's names are fixed.
        let statuses: Vec<String> = statuses
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        let sql = format!(
            "DELETE FROM executions WHERE id IN ( \
             SELECT id FROM executions WHERE tenant_id = $1 AND script_id = $2 AND id < $3 \
             AND status IN ({}) ORDER BY id LIMIT $4)",
            statuses.join(", ")
        );
        let deleted = on_pool!(self, pool => {
            sqlx::query(&sql).bind(tenant_id).bind(script_id).bind(before).bind(batch)
                .execute(pool).await.map(|r| r.rows_affected())
        })?;
        Ok(deleted)
    }

    /// The scripts with executions created after `since` (all of them when
    /// `None`), with their own count limits.
    pub async fn retention_candidates(
        &self,
        since: Option<&ExecutionId>,
    ) -> StoreResult<Vec<RetentionCandidate>> {
        let sql = "SELECT e.tenant_id, e.script_id, s.retention_max_per_script AS max_per_script \
            FROM (SELECT DISTINCT tenant_id, script_id FROM executions \
                  WHERE $1 IS NULL OR id > $1) e \
            LEFT JOIN scripts s ON s.id = e.script_id";
        Ok(on_pool!(self, pool => sqlx::query_as(sql).bind(since).fetch_all(pool).await)?)
    }

    /// The id of a script's `n`th newest execution (1 for the newest), if
    /// it has that many.
    pub async fn nth_newest_execution(
        &self,
        tenant_id: &TenantId,
        script_id: &ScriptId,
        n: i64,
    ) -> StoreResult<Option<ExecutionId>> {
        let sql = "SELECT id FROM executions WHERE tenant_id = $1 AND script_id = $2 \
            ORDER BY id DESC LIMIT 1 OFFSET $3";
        let row: Option<(ExecutionId,)> = on_pool!(self, pool => {
            sqlx::query_as(sql).bind(tenant_id).bind(script_id).bind(n - 1)
                .fetch_optional(pool).await
        })?;
        Ok(row.map(|(id,)| id))
    }

    /// The bytes the database occupies: the SQLite file's pages in use, or
    /// `pg_database_size` of this database.
    pub async fn size_bytes(&self) -> StoreResult<i64> {
        match self {
            Db::Sqlite(pool) => {
                let (size,): (i64,) = sqlx::query_as(
                    "SELECT p.page_count * s.page_size FROM pragma_page_count() p, pragma_page_size() s",
                )
                .fetch_one(pool)
                .await?;
                Ok(size)
            }
            Db::Postgres(pool) => {
                let (size,): (i64,) = sqlx::query_as("SELECT pg_database_size(current_database())")
                    .fetch_one(pool)
                    .await?;
                Ok(size)
            }
        }
    }

    /// Gives up to `pages` free pages back to the file system (SQLite in
    /// incremental auto-vacuum mode); returns how many were free before.
    /// Nothing on PostgreSQL, whose autovacuum reuses the space.
    pub async fn give_back_space(&self, pages: i64) -> StoreResult<i64> {
        let Db::Sqlite(pool) = self else {
            return Ok(0);
        };
        let mut conn = pool.acquire().await?;
        let (free,): (i64,) = sqlx::query_as("PRAGMA freelist_count")
            .fetch_one(&mut *conn)
            .await?;
        if free > 0 {
            // The pragma returns a row per page freed; fetch them all so it
            // runs to the end.
            sqlx::query(&format!("PRAGMA incremental_vacuum({})", pages.max(1)))
                .fetch_all(&mut *conn)
                .await?;
        }
        Ok(free)
    }

    /// Whether this node may sweep now: on PostgreSQL only one node at a
    /// time holds the retention lock (a session advisory lock, released
    /// when the returned guard is dropped or the node dies). Always on
    /// SQLite.
    pub async fn retention_lock(&self) -> StoreResult<Option<RetentionLock>> {
        match self {
            Db::Sqlite(_) => Ok(Some(RetentionLock { _held: None })),
            Db::Postgres(pool) => {
                let mut conn = pool.acquire().await?.detach();
                let (taken,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1)")
                    .bind(RETENTION_LOCK_KEY)
                    .fetch_one(&mut conn)
                    .await?;
                Ok(taken.then_some(RetentionLock { _held: Some(conn) }))
            }
        }
    }
}

/// The advisory lock key of the retention sweep ("sbxretnt"). Presence
/// locks draw random keys; one landing here would only make that node skip
/// a sweep.
const RETENTION_LOCK_KEY: i64 = 0x7362_7872_6574_6e74;

/// Held while sweeping; dropping it closes its connection, which releases
/// the lock.
pub struct RetentionLock {
    _held: Option<sqlx::PgConnection>,
}
