//! Storage: tenants, scripts, executions, secrets and `sdk.db` data, in
//! SQLite or PostgreSQL.
//!
//! [`Db`] holds a pool of either kind. Every query is written once with `$N`
//! placeholders, which both drivers accept, and runs on whichever pool is
//! open (`on_pool!`); rows decode through the same `FromRow` structs. Times
//! are stored as milliseconds since the Unix epoch. Ids are UUIDv7, so
//! ordering by id is ordering by creation and serves as the list cursor.

mod checkpoints;
mod executions;
mod kv;
mod nodes;
mod retention;
mod schedule;
mod scripts;
mod secrets;
mod stats;
mod tenants;
mod writer;

use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{
    SqliteAutoVacuum, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{PgPool, SqlitePool};

pub use checkpoints::WalCheckpoints;
pub use executions::{ExecutionFilter, ExecutionRecord, FinishedRun, NewExecution};
pub use kv::DbKv;
pub use nodes::Presence;
pub use retention::{AgeOverride, RetentionCandidate, RetentionLock};
pub use schedule::{
    Backoff, Claim, DueScript, Plan, RETRY_DELAY_RANGE_MS, RetryPolicy, scheduled_input,
};
pub use scripts::{NewScript, ScriptRecord};
pub use secrets::{MAX_SECRETS_PER_TENANT, Sealed, SecretEntry};
pub use stats::{MinuteStats, TenantStats};
pub use tenants::{Tenant, hash_api_key, new_api_key, validate_name as tenants_validate_name};
pub use writer::{Pending, Writer};

/// `[database]`: where data lives and how many connections to keep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://FILE` (created if missing) or `postgres://USER@HOST/DB`.
    pub url: String,
    /// Most open connections.
    pub max_connections: u32,
    /// Connections kept open when idle.
    pub min_idle: u32,
    /// A connection is closed after this many seconds, idle or not.
    pub max_lifetime_secs: u64,
    /// An idle connection above `min_idle` is closed after this many seconds.
    pub idle_timeout_secs: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://scriptbox.db".into(),
            max_connections: 25,
            min_idle: 10,
            max_lifetime_secs: 300,
            idle_timeout_secs: 60,
        }
    }
}

impl DatabaseConfig {
    pub fn validate(&self) -> Result<(), String> {
        let url = &self.url;
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(format!(
                "database.url must start with sqlite: or postgres://, got {url:?}"
            ));
        }
        if self.max_connections == 0 {
            return Err("database.max_connections must be at least 1".into());
        }
        if self.min_idle > self.max_connections {
            return Err("database.min_idle must not exceed database.max_connections".into());
        }
        Ok(())
    }

    pub fn max_lifetime(&self) -> Duration {
        Duration::from_secs(self.max_lifetime_secs)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }
}

/// An open database of either kind.
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same code against whichever pool is open: `$pool` is a
/// `&SqlitePool` in one arm and a `&PgPool` in the other.
macro_rules! on_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::store::Db::Sqlite($pool) => $body,
            $crate::store::Db::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// Errors callers branch on; anything else is an internal error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// Input the store refuses; the message says why.
    #[error("{0}")]
    Invalid(String),
    /// A unique constraint: the message names what is taken.
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            other => StoreError::Other(other.into()),
        }
    }
}

impl StoreError {
    /// Whether the database could not be reached (a dropped connection, a
    /// server shutting down or starting, no connection within the pool's
    /// timeout), as opposed to a write it refused: the same write may
    /// succeed once it is back.
    pub fn is_unreachable(&self) -> bool {
        let StoreError::Other(error) = self else {
            return false;
        };
        match error.downcast_ref::<sqlx::Error>() {
            Some(sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Protocol(_)) => true,
            Some(sqlx::Error::Tls(_)) => true,
            // Class 08: connection exceptions, except 08P01 (protocol
            // violation: the server refused what was sent, say a statement
            // bound with the wrong number of parameters, and would refuse
            // it again); 57P01-57P03: the server is shutting down, crashed,
            // or not yet accepting connections.
            Some(sqlx::Error::Database(e)) => e.code().is_some_and(|code| {
                (code.starts_with("08") && code != "08P01")
                    || matches!(&*code, "57P01" | "57P02" | "57P03")
            }),
            _ => false,
        }
    }
}

pub type StoreResult<T> = std::result::Result<T, StoreError>;

/// `(…), (…), …`: `rows` rows of `columns` parameters for a multi-row
/// `VALUES`, numbered from `$1` on PostgreSQL and anonymous `?` on SQLite,
/// where binding numbered parameters looks each name up in a list (a cost
/// that grows with the square of the parameters in a statement).
pub(crate) fn values_rows(db: &Db, rows: usize, columns: usize) -> String {
    values_list(matches!(db, Db::Postgres(_)), rows, columns)
}

pub(crate) fn values_list(numbered: bool, rows: usize, columns: usize) -> String {
    let mut sql = String::with_capacity(rows * columns * 5);
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            if numbered {
                sql.push_str(&format!("${}", row * columns + column + 1));
            } else {
                sql.push('?');
            }
        }
        sql.push(')');
    }
    sql
}

/// Whether an error is a unique-constraint violation.
pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_unique_violation())
}

impl Db {
    /// Opens the database, creating a SQLite file if missing, and applies
    /// the migrations of its dialect.
    pub async fn open(config: &DatabaseConfig) -> Result<Self> {
        let url = config.url.as_str();
        let db = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .with_context(|| format!("invalid SQLite URL {url:?}"))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                // A new file frees pages only when asked (retention does,
                // after deleting); an older file is converted below.
                .auto_vacuum(SqliteAutoVacuum::Incremental)
                .busy_timeout(Duration::from_secs(10));
            incremental_auto_vacuum(&options)
                .await
                .with_context(|| format!("opening {url}"))?;
            let pool = SqlitePoolOptions::new()
                .max_connections(config.max_connections)
                .min_connections(config.min_idle.min(config.max_connections))
                .max_lifetime(config.max_lifetime())
                .idle_timeout(config.idle_timeout())
                .connect_with(options)
                .await
                .with_context(|| format!("opening {url}"))?;
            Db::Sqlite(pool)
        } else {
            let options = PgConnectOptions::from_str(url)
                .with_context(|| format!("invalid PostgreSQL URL {url:?}"))?;
            let pool = PgPoolOptions::new()
                .max_connections(config.max_connections)
                .min_connections(config.min_idle.min(config.max_connections))
                .max_lifetime(config.max_lifetime())
                .idle_timeout(config.idle_timeout())
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await
                .with_context(|| format!("connecting to {}", redact(url)))?;
            Db::Postgres(pool)
        };
        db.migrate().await?;
        Ok(db)
    }

    /// Writes a consistent copy of the SQLite database to `path` (which
    /// must not exist) while it stays in use: `VACUUM INTO`, which reads
    /// one snapshot. PostgreSQL has its own tools (docs/operations.md).
    pub async fn backup_into(&self, path: &std::path::Path) -> Result<()> {
        let Db::Sqlite(pool) = self else {
            anyhow::bail!(
                "backup copies a SQLite database; back up PostgreSQL with pg_dump (docs/operations.md)"
            );
        };
        if path.exists() {
            anyhow::bail!("{} already exists; give a new file name", path.display());
        }
        let target = path
            .to_str()
            .with_context(|| format!("{} is not valid UTF-8", path.display()))?;
        sqlx::query("VACUUM INTO $1")
            .bind(target)
            .execute(pool)
            .await
            .with_context(|| format!("copying the database to {}", path.display()))?;
        Ok(())
    }

    async fn migrate(&self) -> Result<()> {
        match self {
            Db::Sqlite(pool) => sqlx::migrate!("../migrations/sqlite").run(pool).await,
            Db::Postgres(pool) => sqlx::migrate!("../migrations/postgres").run(pool).await,
        }
        .context("applying migrations")
    }

    pub fn dialect(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    /// Whether several nodes may share this database (PostgreSQL): then a
    /// node's open runs are its own only while it sends heartbeats. A
    /// SQLite file belongs to one node.
    pub fn is_shared(&self) -> bool {
        matches!(self, Db::Postgres(_))
    }

    /// A round trip, for health checks.
    pub async fn ping(&self) -> Result<()> {
        on_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await)
    }
}

/// Puts a SQLite file in incremental auto-vacuum mode, so that space freed
/// by deletions can be given back to the file system a little at a time
/// (`Db::give_back_space`). New files are created so; an older file is
/// rewritten once by `VACUUM` (atomic: a crash leaves the old file).
async fn incremental_auto_vacuum(options: &SqliteConnectOptions) -> Result<()> {
    use sqlx::{ConnectOptions, Connection};
    const INCREMENTAL: i64 = 2;
    // On a connection of its own, before the pool opens others.
    let mut conn = options.connect().await?;
    let (mode,): (i64,) = sqlx::query_as("PRAGMA auto_vacuum")
        .fetch_one(&mut conn)
        .await?;
    if mode != INCREMENTAL {
        tracing::info!(
            "converting the database to incremental auto-vacuum (once; rewrites the file)"
        );
        sqlx::query("PRAGMA auto_vacuum = INCREMENTAL")
            .execute(&mut conn)
            .await?;
        sqlx::query("VACUUM").execute(&mut conn).await?;
    }
    conn.close().await?;
    Ok(())
}

/// A URL without its password, for messages.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::values_list;

    #[test]
    fn values_lists_number_every_parameter_once_or_leave_them_anonymous() {
        assert_eq!(values_list(true, 2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(values_list(false, 2, 2), "(?, ?), (?, ?)");
    }
}
