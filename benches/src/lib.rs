//! Helpers the benches share. The benches themselves are in benches/.

use anyhow::{Context, Result};
use sqlx::Connection;

/// A whole-number setting of a bench from the environment, else `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The database a bench's node runs on: a fresh PostgreSQL database when
/// `SCRIPTBOX_BENCH_DATABASE=postgres` (returned too, to be dropped at the
/// end), else a new SQLite file `{label}.db` in `dir`.
pub async fn bench_database(
    label: &str,
    dir: &std::path::Path,
) -> Result<(String, Option<ScratchPostgres>)> {
    if std::env::var("SCRIPTBOX_BENCH_DATABASE").as_deref() != Ok("postgres") {
        let url = format!("sqlite://{}", dir.join(format!("{label}.db")).display());
        return Ok((url, None));
    }
    let scratch = ScratchPostgres::create(label)
        .await?
        .context("SCRIPTBOX_BENCH_DATABASE=postgres needs SCRIPTBOX_TEST_POSTGRES_URL")?;
    Ok((scratch.url.clone(), Some(scratch)))
}

/// A PostgreSQL database made for one bench run on the server of
/// `SCRIPTBOX_TEST_POSTGRES_URL`, and dropped by [`ScratchPostgres::drop_now`].
pub struct ScratchPostgres {
    admin: sqlx::PgConnection,
    name: String,
    /// The new database's URL.
    pub url: String,
}

impl ScratchPostgres {
    /// `None` when `SCRIPTBOX_TEST_POSTGRES_URL` is not set.
    pub async fn create(label: &str) -> Result<Option<Self>> {
        let admin_url = match std::env::var("SCRIPTBOX_TEST_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => return Ok(None),
        };
        let name = format!("sbx_bench_{label}_{}", std::process::id());
        let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await?;
        let (base, _) = admin_url
            .rsplit_once('/')
            .context("SCRIPTBOX_TEST_POSTGRES_URL has no database path")?;
        let url = format!("{base}/{name}");
        Ok(Some(Self { admin, name, url }))
    }

    /// Drops the database (closing its connections).
    pub async fn drop_now(mut self) -> Result<()> {
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut self.admin)
        .await?;
        Ok(())
    }
}
