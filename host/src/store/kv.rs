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
            // A range instead of LIKE: no escaping, and it uses the primary
            // key. Keys compare by code point on both backends (SQLite's
            // binary collation, `COLLATE "C"` on PostgreSQL).
            let rows: Vec<(String,)> = match prefix_successor(prefix) {
                Some(upper) => on_pool!(&self.db, pool => {
                    sqlx::query_as("SELECT key FROM kv WHERE tenant_id = $1 AND key >= $2 AND key < $3 ORDER BY key LIMIT $4")
                        .bind(tenant).bind(prefix).bind(&upper).bind(limit as i64)
                        .fetch_all(pool).await
                })?,
                None => on_pool!(&self.db, pool => {
                    sqlx::query_as("SELECT key FROM kv WHERE tenant_id = $1 AND key >= $2 ORDER BY key LIMIT $3")
                        .bind(tenant).bind(prefix).bind(limit as i64)
                        .fetch_all(pool).await
                })?,
            };
            Ok(rows.into_iter().map(|(k,)| k).collect())
        })
    }
}

/// The least string greater than every string that starts with `prefix`
/// (the prefix with its last character incremented, after dropping trailing
/// U+10FFFF); `None` when there is none (empty or all U+10FFFF).
pub fn prefix_successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last {
            '\u{D7FF}' => Some('\u{E000}'),
            c => char::from_u32(c as u32 + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::prefix_successor;

    #[test]
    fn successors_bound_every_key_with_the_prefix() {
        assert_eq!(prefix_successor("user:").as_deref(), Some("user;"));
        assert_eq!(prefix_successor("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_successor("\u{D7FF}").as_deref(), Some("\u{E000}"));
        assert_eq!(prefix_successor(""), None);
        assert_eq!(prefix_successor("\u{10FFFF}"), None);
        let upper = prefix_successor("user:").unwrap();
        assert!("user:\u{10FFFF}x" < upper.as_str());
    }
}
