//! Scripts: source, trigger, limits and the settings of their webhook.
//! Structured fields (limits, rate limit, webhook auth and methods) are JSON
//! text, validated by the API before they get here.

use super::{Db, StoreError, StoreResult, is_unique_violation, now_ms, on_pool};
use crate::model::{ScriptId, TenantId, Trigger};
use crate::typescript::Language;

/// A script as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ScriptRecord {
    pub id: ScriptId,
    pub tenant_id: TenantId,
    pub name: String,
    pub source: String,
    pub language: Language,
    pub version: i64,
    pub trigger_type: Trigger,
    pub schedule: Option<String>,
    pub timezone: Option<String>,
    pub webhook_path: Option<String>,
    pub enabled: bool,
    pub limits: String,
    pub rate_limit: Option<String>,
    pub webhook_auth: Option<String>,
    pub webhook_methods: Option<String>,
    /// JSON array of the secret names the script may read.
    pub secrets: String,
    /// JSON object of plain variables.
    pub vars: String,
    pub max_retries: i64,
    pub retry_delay_ms: i64,
    pub next_run_at: Option<i64>,
    pub last_executed_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    /// How long its executions are kept, ms (`None`: `[retention]
    /// max_age`).
    pub retention_max_age_ms: Option<i64>,
    /// How many of its executions are kept (`None`: `[retention]
    /// max_per_script`).
    pub retention_max_per_script: Option<i64>,
}

/// The fields a create or an update sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewScript {
    pub name: String,
    pub source: String,
    pub language: Language,
    pub trigger_type: Trigger,
    pub schedule: Option<String>,
    pub timezone: Option<String>,
    pub webhook_path: Option<String>,
    pub enabled: bool,
    pub limits: String,
    pub rate_limit: Option<String>,
    pub webhook_auth: Option<String>,
    pub webhook_methods: Option<String>,
    pub secrets: String,
    pub vars: String,
    pub max_retries: i64,
    pub retry_delay_ms: i64,
    pub next_run_at: Option<i64>,
    pub retention_max_age_ms: Option<i64>,
    pub retention_max_per_script: Option<i64>,
}

/// The columns of a [`ScriptRecord`], in its field order.
pub(super) const COLUMNS: &str = "id, tenant_id, name, source, language, version, trigger_type, schedule, \
    timezone, webhook_path, enabled, limits, rate_limit, webhook_auth, webhook_methods, secrets, \
    vars, max_retries, retry_delay_ms, next_run_at, last_executed_at, created_at, updated_at, \
    retention_max_age_ms, retention_max_per_script";

fn conflict(script: &NewScript) -> StoreError {
    StoreError::Conflict(format!(
        "webhook_path {:?} is already used by another script of this tenant",
        script.webhook_path.as_deref().unwrap_or_default()
    ))
}

impl Db {
    pub async fn create_script(
        &self,
        tenant_id: &TenantId,
        new: &NewScript,
    ) -> StoreResult<ScriptRecord> {
        let now = now_ms();
        let record = ScriptRecord {
            id: ScriptId::generate(),
            tenant_id: tenant_id.clone(),
            name: new.name.clone(),
            source: new.source.clone(),
            language: new.language,
            version: 1,
            trigger_type: new.trigger_type,
            schedule: new.schedule.clone(),
            timezone: new.timezone.clone(),
            webhook_path: new.webhook_path.clone(),
            enabled: new.enabled,
            limits: new.limits.clone(),
            rate_limit: new.rate_limit.clone(),
            webhook_auth: new.webhook_auth.clone(),
            webhook_methods: new.webhook_methods.clone(),
            secrets: new.secrets.clone(),
            vars: new.vars.clone(),
            max_retries: new.max_retries,
            retry_delay_ms: new.retry_delay_ms,
            next_run_at: new.next_run_at,
            last_executed_at: None,
            created_at: now,
            updated_at: now,
            retention_max_age_ms: new.retention_max_age_ms,
            retention_max_per_script: new.retention_max_per_script,
        };
        let sql = format!(
            "INSERT INTO scripts ({COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, \
             $20, $21, $22, $23, $24, $25)"
        );
        let r = &record;
        let result = on_pool!(self, pool => {
            sqlx::query(&sql)
                .bind(&r.id).bind(&r.tenant_id).bind(&r.name).bind(&r.source).bind(r.language)
                .bind(r.version)
                .bind(r.trigger_type).bind(&r.schedule).bind(&r.timezone).bind(&r.webhook_path)
                .bind(r.enabled).bind(&r.limits).bind(&r.rate_limit).bind(&r.webhook_auth)
                .bind(&r.webhook_methods).bind(&r.secrets).bind(&r.vars)
                .bind(r.max_retries).bind(r.retry_delay_ms)
                .bind(r.next_run_at).bind(r.last_executed_at).bind(r.created_at).bind(r.updated_at)
                .bind(r.retention_max_age_ms).bind(r.retention_max_per_script)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        });
        match result {
            Ok(_) => Ok(record),
            Err(e) if is_unique_violation(&e) => Err(conflict(new)),
            Err(e) => Err(e.into()),
        }
    }

    /// One script of a tenant; another tenant's script is `NotFound`.
    pub async fn script(&self, tenant_id: &TenantId, id: &ScriptId) -> StoreResult<ScriptRecord> {
        let sql = format!("SELECT {COLUMNS} FROM scripts WHERE tenant_id = $1 AND id = $2");
        on_pool!(self, pool => {
            sqlx::query_as::<_, ScriptRecord>(&sql).bind(tenant_id).bind(id).fetch_one(pool).await
        })
        .map_err(Into::into)
    }

    /// A page of a tenant's scripts, newest first, after the cursor `before`.
    pub async fn list_scripts(
        &self,
        tenant_id: &TenantId,
        name: Option<&str>,
        before: Option<&ScriptId>,
        limit: i64,
    ) -> StoreResult<Vec<ScriptRecord>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM scripts WHERE tenant_id = $1 AND ($2 IS NULL OR id < $2) \
             AND ($4 IS NULL OR name = $4) ORDER BY id DESC LIMIT $3"
        );
        on_pool!(self, pool => {
            sqlx::query_as::<_, ScriptRecord>(&sql)
                .bind(tenant_id).bind(before).bind(limit).bind(name)
                .fetch_all(pool).await
        })
        .map_err(Into::into)
    }

    /// Replaces a script's fields and bumps its version.
    pub async fn update_script(
        &self,
        tenant_id: &TenantId,
        id: &ScriptId,
        new: &NewScript,
    ) -> StoreResult<ScriptRecord> {
        let sql = "UPDATE scripts SET name = $3, source = $4, version = version + 1, \
            trigger_type = $5, schedule = $6, timezone = $7, webhook_path = $8, enabled = $9, \
            limits = $10, rate_limit = $11, webhook_auth = $12, webhook_methods = $13, \
            max_retries = $14, retry_delay_ms = $15, next_run_at = $16, updated_at = $17, \
            secrets = $18, vars = $19, language = $20, retention_max_age_ms = $21, \
            retention_max_per_script = $22 \
            WHERE tenant_id = $1 AND id = $2";
        let result = on_pool!(self, pool => {
            sqlx::query(sql)
                .bind(tenant_id).bind(id).bind(&new.name).bind(&new.source)
                .bind(new.trigger_type).bind(&new.schedule).bind(&new.timezone)
                .bind(&new.webhook_path).bind(new.enabled).bind(&new.limits)
                .bind(&new.rate_limit).bind(&new.webhook_auth).bind(&new.webhook_methods)
                .bind(new.max_retries).bind(new.retry_delay_ms).bind(new.next_run_at)
                .bind(now_ms()).bind(&new.secrets).bind(&new.vars).bind(new.language)
                .bind(new.retention_max_age_ms).bind(new.retention_max_per_script)
                .execute(pool).await.map(|r| r.rows_affected())
        });
        match result {
            Ok(0) => Err(StoreError::NotFound),
            Ok(_) => self.script(tenant_id, id).await,
            Err(e) if is_unique_violation(&e) => Err(conflict(new)),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn delete_script(&self, tenant_id: &TenantId, id: &ScriptId) -> StoreResult<()> {
        let done = on_pool!(self, pool => {
            sqlx::query("DELETE FROM scripts WHERE tenant_id = $1 AND id = $2")
                .bind(tenant_id).bind(id).execute(pool).await.map(|r| r.rows_affected())
        })?;
        if done == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// The enabled webhook script of the tenant named `tenant` at `path`.
    pub async fn webhook_script(&self, tenant: &str, path: &str) -> StoreResult<ScriptRecord> {
        // Built once: the script columns qualified with `s.`.
        static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            let columns = COLUMNS
                .split(',')
                .map(|c| format!("s.{}", c.trim()))
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "SELECT {columns} FROM scripts s JOIN tenants t ON t.id = s.tenant_id \
                 WHERE t.name = $1 AND s.webhook_path = $2 AND s.trigger_type = 'webhook' \
                 AND s.enabled = $3"
            )
        });
        on_pool!(self, pool => {
            sqlx::query_as::<_, ScriptRecord>(SQL.as_str())
                .bind(tenant).bind(path).bind(true).fetch_one(pool).await
        })
        .map_err(Into::into)
    }
}
