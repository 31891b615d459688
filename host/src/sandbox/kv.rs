//! The storage behind `sdk.db` and `sdk.cache`.
//!
//! `sdk.db` goes through the [`KvStore`] trait so the service can put it in
//! its database; [`MemoryKv`] keeps it in memory for `scriptbox run` and
//! tests. `sdk.cache` is a [`TenantCache`] in memory with per-entry TTLs.
//! Every key is scoped by tenant here, below the script's reach.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use moka::sync::Cache;

/// Largest key, in bytes, for both `sdk.db` and `sdk.cache`.
pub const MAX_KEY_BYTES: usize = 512;
/// Largest value, in bytes, for both `sdk.db` and `sdk.cache`.
pub const MAX_VALUE_BYTES: usize = 256 << 10;
/// Most keys one `sdk.db.list` returns.
pub const MAX_LIST_KEYS: usize = 1_000;

/// Persistent per-tenant key-value data.
pub trait KvStore: Send + Sync + 'static {
    fn get<'a>(
        &'a self,
        tenant: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<Option<String>>>;
    fn set<'a>(
        &'a self,
        tenant: &'a str,
        key: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<()>>;
    fn delete<'a>(&'a self, tenant: &'a str, key: &'a str) -> BoxFuture<'a, anyhow::Result<bool>>;
    /// Up to `limit` keys starting with `prefix`, ascending.
    fn list<'a>(
        &'a self,
        tenant: &'a str,
        prefix: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, anyhow::Result<Vec<String>>>;
}

/// A [`KvStore`] in process memory; lost when the process ends.
#[derive(Default)]
pub struct MemoryKv {
    // A std Mutex: nothing awaits while it is held.
    data: Mutex<BTreeMap<(String, String), String>>,
}

impl KvStore for MemoryKv {
    fn get<'a>(
        &'a self,
        tenant: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<Option<String>>> {
        let value = self
            .lock()
            .get(&(tenant.to_owned(), key.to_owned()))
            .cloned();
        Box::pin(async move { Ok(value) })
    }

    fn set<'a>(
        &'a self,
        tenant: &'a str,
        key: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        self.lock()
            .insert((tenant.to_owned(), key.to_owned()), value.to_owned());
        Box::pin(async { Ok(()) })
    }

    fn delete<'a>(&'a self, tenant: &'a str, key: &'a str) -> BoxFuture<'a, anyhow::Result<bool>> {
        let removed = self
            .lock()
            .remove(&(tenant.to_owned(), key.to_owned()))
            .is_some();
        Box::pin(async move { Ok(removed) })
    }

    fn list<'a>(
        &'a self,
        tenant: &'a str,
        prefix: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, anyhow::Result<Vec<String>>> {
        let start = (tenant.to_owned(), prefix.to_owned());
        let keys = self
            .lock()
            .range(start..)
            .take_while(|((t, k), _)| t == tenant && k.starts_with(prefix))
            .take(limit)
            .map(|((_, k), _)| k.clone())
            .collect();
        Box::pin(async move { Ok(keys) })
    }
}

impl MemoryKv {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), String>> {
        self.data
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[derive(Clone)]
struct CacheEntry {
    value: String,
    expires_at: Option<Instant>,
}

/// `sdk.cache`: bounded by total bytes, entries expire after their TTL.
pub struct TenantCache {
    entries: Cache<(String, String), CacheEntry>,
}

impl TenantCache {
    pub fn new(max_bytes: u64) -> Self {
        let entries = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|(t, k): &(String, String), e: &CacheEntry| {
                (t.len() + k.len() + e.value.len())
                    .try_into()
                    .unwrap_or(u32::MAX)
            })
            .build();
        Self { entries }
    }

    pub fn get(&self, tenant: &str, key: &str) -> Option<String> {
        let id = (tenant.to_owned(), key.to_owned());
        let entry = self.entries.get(&id)?;
        if entry.expires_at.is_some_and(|at| at <= Instant::now()) {
            self.entries.invalidate(&id);
            return None;
        }
        Some(entry.value)
    }

    pub fn set(&self, tenant: &str, key: &str, value: &str, ttl: Option<Duration>) {
        let entry = CacheEntry {
            value: value.to_owned(),
            expires_at: ttl.map(|ttl| Instant::now() + ttl),
        };
        self.entries
            .insert((tenant.to_owned(), key.to_owned()), entry);
    }

    pub fn delete(&self, tenant: &str, key: &str) -> bool {
        self.entries
            .remove(&(tenant.to_owned(), key.to_owned()))
            .is_some()
    }
}

/// Checks one text (`what`: key, value, prefix) against its size limit and
/// for NUL, which PostgreSQL text cannot hold (refused on every backend
/// alike), with a message fit for the script.
fn check_text(what: &str, text: &str, limit: usize) -> Result<(), String> {
    if text.len() > limit {
        return Err(format!(
            "{what} is {} bytes, over the limit of {limit}",
            text.len()
        ));
    }
    if text.contains('\0') {
        return Err(format!("{what} must not contain NUL (\\0)"));
    }
    Ok(())
}

/// Checks a key and an optional value, with a message fit for the script.
pub fn check_entry(key: &str, value: Option<&str>) -> Result<(), String> {
    if key.is_empty() {
        return Err("key must not be empty".into());
    }
    check_text("key", key, MAX_KEY_BYTES)?;
    match value {
        Some(value) => check_text("value", value, MAX_VALUE_BYTES),
        None => Ok(()),
    }
}

/// Checks a `list` prefix, with a message fit for the script.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    check_text("prefix", prefix, MAX_KEY_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_kv_keeps_tenants_apart_and_lists_by_prefix() {
        let kv = MemoryKv::default();
        kv.set("a", "user:1", "x").await.unwrap();
        kv.set("a", "user:2", "y").await.unwrap();
        kv.set("a", "other", "z").await.unwrap();
        kv.set("b", "user:3", "w").await.unwrap();
        assert_eq!(
            kv.list("a", "user:", 10).await.unwrap(),
            ["user:1", "user:2"]
        );
        assert_eq!(kv.list("a", "user:", 1).await.unwrap(), ["user:1"]);
        assert_eq!(kv.get("b", "user:1").await.unwrap(), None);
        assert!(kv.delete("a", "user:1").await.unwrap());
        assert!(!kv.delete("a", "user:1").await.unwrap());
    }

    #[test]
    fn cache_entries_expire_after_their_ttl() {
        let cache = TenantCache::new(1 << 20);
        cache.set("a", "k", "v", Some(Duration::from_millis(30)));
        cache.set("a", "forever", "v", None);
        assert_eq!(cache.get("a", "k").as_deref(), Some("v"));
        assert_eq!(cache.get("b", "k"), None);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(cache.get("a", "k"), None);
        assert_eq!(cache.get("a", "forever").as_deref(), Some("v"));
    }

    #[test]
    fn entry_limits_name_what_is_wrong() {
        assert!(check_entry("k", Some("v")).is_ok());
        assert!(check_entry("a\0b", None).unwrap_err().contains("NUL"));
        assert!(check_entry("k", Some("\0")).unwrap_err().contains("NUL"));
        assert!(check_prefix("u\0").unwrap_err().contains("NUL"));
        assert_eq!(check_entry("", None).unwrap_err(), "key must not be empty");
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        assert!(
            check_entry(&long, None)
                .unwrap_err()
                .contains("key is 513 bytes")
        );
        let big = "v".repeat(MAX_VALUE_BYTES + 1);
        assert!(
            check_entry("k", Some(&big))
                .unwrap_err()
                .starts_with("value is")
        );
    }
}
