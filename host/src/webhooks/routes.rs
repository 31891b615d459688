//! The route table: (tenant name, path) → the enabled webhook script.
//!
//! Looked up in the database (an index on (tenant, webhook_path)) and kept
//! for [`ROUTE_TTL`]. Changes made through this node's API invalidate their
//! entries at once; other nodes sharing a PostgreSQL database see them when
//! the entry expires, within [`ROUTE_TTL`].

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;

use crate::store::{Db, ScriptRecord, StoreError, StoreResult};

/// How long another node's change may take to show.
pub const ROUTE_TTL: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct Routes {
    cache: Cache<(String, String), Arc<ScriptRecord>>,
}

impl Default for Routes {
    fn default() -> Self {
        Self {
            cache: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ROUTE_TTL)
                .build(),
        }
    }
}

impl Routes {
    /// The script serving `path` for the tenant named `tenant`.
    pub async fn lookup(
        &self,
        db: &Db,
        tenant: &str,
        path: &str,
    ) -> StoreResult<Option<Arc<ScriptRecord>>> {
        let key = (tenant.to_owned(), path.to_owned());
        if let Some(script) = self.cache.get(&key).await {
            return Ok(Some(script));
        }
        match db.webhook_script(tenant, path).await {
            Ok(script) => {
                let script = Arc::new(script);
                self.cache.insert(key, script.clone()).await;
                Ok(Some(script))
            }
            Err(StoreError::NotFound) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Forgets the route of `path` for the tenant named `tenant`.
    pub async fn invalidate(&self, tenant: &str, path: Option<&str>) {
        if let Some(path) = path {
            self.cache
                .invalidate(&(tenant.to_owned(), path.to_owned()))
                .await;
        }
    }
}
