//! `sdk.db` in the database: the sandbox's [`KvStore`] over the `kv` table.

use futures::future::BoxFuture;

use super::{Db, now_ms, on_pool};
use crate::sandbox::KvStore;

/// Persistent per-tenant key-value data in the service's database.
#[derive(Clone)]
pub struct DbKv {
    db: Db,
}

impl DbKv {
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

impl KvStore for DbKv {
    fn get<'a>(
        &'a self,
        tenant: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<Option<String>>> {
        Box::pin(async move {
            let value: Option<(String,)> = on_pool!(&self.db, pool => {
                sqlx::query_as("SELECT value FROM kv WHERE tenant_id = $1 AND key = $2")
                    .bind(tenant).bind(key).fetch_optional(pool).await
            })?;
            Ok(value.map(|(v,)| v))
        })
    }

    fn set<'a>(
        &'a self,
        tenant: &'a str,
        key: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let sql = "INSERT INTO kv (tenant_id, key, value, updated_at) VALUES ($1, $2, $3, $4) \
                ON CONFLICT (tenant_id, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at";
            on_pool!(&self.db, pool => {
                sqlx::query(sql).bind(tenant).bind(key).bind(value).bind(now_ms()).execute(pool).await.map(|r| r.rows_affected())
            })?;
            Ok(())
        })
    }

    fn delete<'a>(&'a self, tenant: &'a str, key: &'a str) -> BoxFuture<'a, anyhow::Result<bool>> {
        Box::pin(async move {
            let done = on_pool!(&self.db, pool => {
                sqlx::query("DELETE FROM kv WHERE tenant_id = $1 AND key = $2")
                    .bind(tenant).bind(key).execute(pool).await.map(|r| r.rows_affected())
            })?;
            Ok(done > 0)
        })
    }

    fn list<'a>(
        &'a self,
        tenant: &'a str,
        prefix: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, anyhow::Result<Vec<String>>> {
        Box::pin(async move {
            // A range instead of LIKE: no escaping, and it uses the primary key.
            // Keys are text; the upper bound is the prefix followed by the
            // largest code point.
            let upper = format!("{prefix}\u{10FFFF}");
            let rows: Vec<(String,)> = on_pool!(&self.db, pool => {
                sqlx::query_as("SELECT key FROM kv WHERE tenant_id = $1 AND key >= $2 AND key < $3 ORDER BY key LIMIT $4")
                    .bind(tenant).bind(prefix).bind(&upper).bind(limit as i64)
                    .fetch_all(pool).await
            })?;
            Ok(rows.into_iter().map(|(k,)| k).collect())
        })
    }
}
