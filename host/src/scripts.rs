//! `ScriptService`: saving a script is one use case with one owner. A
//! change (a create, or a partial update merged onto the stored script) is
//! validated field by field, compiled, given its next fire time, stored,
//! and then every cache that knew the old script is told: the compile cache
//! keeps the new bytecode and drops the old version's, the webhook route
//! cache forgets both paths, the rate limiter forgets a deleted script, and
//! the scheduler looks again when the next fire time moved.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use crate::cron::{Location, Time};
use crate::model::{ScriptId, Trigger};
use crate::retention::ScriptRetention;
use crate::sandbox::{Bytecode, CompileFailure, LimitOverrides, Sandbox};
use crate::scheduler::{SchedulerConfig, SchedulerHandle};
use crate::secrets::{SecretError, Secrets, validate_name as validate_secret_name};
use crate::settings::{self, AuthType, Misconfigured, RateLimit, WebhookAuth};
use crate::store::{Db, NewScript, RETRY_DELAY_RANGE_MS, ScriptRecord, StoreError, Tenant};
use crate::typescript::{self, Language};
use crate::webhooks::{Limiters, Routes};

/// The largest source accepted, bytes.
pub const MAX_SOURCE_BYTES: usize = 1 << 20;
/// The most a script's vars may hold (names and values), bytes.
pub const MAX_VARS_BYTES: usize = 64 * 1024;

/// A create or update. On update, missing fields keep their values; on
/// create, `name`, `source` and `trigger_type` are required (docs/api.md).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScriptChange {
    /// 1-200 characters.
    pub name: Option<String>,
    /// An ES module whose default export (or `fetch`/`scheduled`/`run`
    /// handler) is called; at most 1 MiB.
    pub source: Option<String>,
    /// `javascript` (default) or `typescript`.
    pub language: Option<Language>,
    pub trigger_type: Option<Trigger>,
    /// A cron expression (robfig/cron syntax), for `scheduled`.
    pub schedule: Option<String>,
    /// The IANA zone of the schedule (default UTC).
    pub timezone: Option<String>,
    /// For `webhook`: the path under the tenant's webhook URL.
    pub webhook_path: Option<String>,
    pub enabled: Option<bool>,
    pub limits: Option<LimitOverrides>,
    pub rate_limit: Option<RateLimit>,
    pub webhook_auth: Option<WebhookAuth>,
    /// The methods a webhook takes, upper-case (default: any).
    #[schema(value_type = Option<Vec<MethodName>>)]
    pub webhook_methods: Option<Vec<String>>,
    /// Names of the tenant's secrets the script may read (each must be set).
    pub secrets: Option<Vec<String>>,
    /// Plain variables, by name; given to the script with its secrets.
    pub vars: Option<BTreeMap<String, String>>,
    /// Numbers are checked by hand so that a value out of range (or not an
    /// integer at all) is an error naming the field, never wrapped.
    /// Retries of a failed scheduled run (0 to `[scheduler] max_retries_cap`).
    #[schema(value_type = Option<i64>, minimum = 0)]
    pub max_retries: Option<serde_json::Number>,
    /// Delay before a retry, 1000 to 604800000 ms.
    #[schema(value_type = Option<i64>, minimum = 1000, maximum = 604_800_000)]
    pub retry_delay_ms: Option<serde_json::Number>,
    /// How long and how many of its executions are kept, when not as the
    /// node's `[retention]` says.
    pub retention: Option<ScriptRetention>,
}

/// An HTTP method name as `webhook_methods` takes them (in the API
/// document; the values are plain strings).
pub struct MethodName;

impl utoipa::PartialSchema for MethodName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .pattern(Some("^[A-Za-z]{1,20}$"))
            .description(Some("An HTTP method, stored upper-case"))
            .examples([serde_json::json!("POST")])
            .into()
    }
}

impl utoipa::ToSchema for MethodName {}

/// Why a change was refused.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// The change is wrong; the message names the field and why.
    #[error("{0}")]
    Invalid(String),
    /// The source is over [`MAX_SOURCE_BYTES`].
    #[error("{0}")]
    TooLarge(String),
    /// The sandbox could not compile it (not the script's fault).
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(message: impl Into<String>) -> ScriptError {
    ScriptError::Invalid(message.into())
}

type Result<T, E = ScriptError> = std::result::Result<T, E>;

/// Saves, updates and deletes scripts, keeping the caches around them right.
#[derive(Clone)]
pub struct ScriptService {
    db: Db,
    sandbox: Sandbox,
    scheduler: SchedulerHandle,
    routes: Routes,
    limiters: Limiters,
    /// Retry defaults and bounds (`[scheduler]`).
    defaults: SchedulerConfig,
    /// Which secrets a tenant has set, for the names a script declares.
    secrets: Secrets,
}

impl ScriptService {
    pub fn new(
        db: Db,
        sandbox: Sandbox,
        scheduler: SchedulerHandle,
        routes: Routes,
        limiters: Limiters,
        defaults: SchedulerConfig,
        secrets: Secrets,
    ) -> Self {
        Self {
            db,
            sandbox,
            scheduler,
            routes,
            limiters,
            defaults,
            secrets,
        }
    }

    /// One script of `tenant` (another tenant's is not found).
    pub async fn get(&self, tenant: &Tenant, id: &ScriptId) -> Result<ScriptRecord> {
        Ok(self.db.script(&tenant.id, id).await?)
    }

    /// A page of `tenant`'s scripts (named `name`, if given), newest first,
    /// older than `cursor`.
    pub async fn list(
        &self,
        tenant: &Tenant,
        name: Option<&str>,
        cursor: Option<&ScriptId>,
        limit: i64,
    ) -> Result<Vec<ScriptRecord>> {
        Ok(self
            .db
            .list_scripts(&tenant.id, name, cursor, limit)
            .await?)
    }

    pub async fn create(&self, tenant: &Tenant, change: ScriptChange) -> Result<ScriptRecord> {
        let (new, bytecode) = self.prepare(tenant, change, None).await?;
        let script = self.db.create_script(&tenant.id, &new).await?;
        self.sandbox
            .remember(script.id.as_str(), script.version, bytecode);
        if script.next_run_at.is_some() {
            self.scheduler.wake();
        }
        self.routes
            .invalidate(&tenant.name, script.webhook_path.as_deref())
            .await;
        Ok(script)
    }

    pub async fn update(
        &self,
        tenant: &Tenant,
        id: &ScriptId,
        change: ScriptChange,
    ) -> Result<ScriptRecord> {
        let current = self.db.script(&tenant.id, id).await?;
        let (new, bytecode) = self.prepare(tenant, change, Some(&current)).await?;
        let script = self.db.update_script(&tenant.id, id, &new).await?;
        self.sandbox
            .remember(script.id.as_str(), script.version, bytecode);
        self.sandbox.forget(current.id.as_str(), current.version);
        if script.next_run_at != current.next_run_at {
            self.scheduler.wake();
        }
        for path in [&current.webhook_path, &script.webhook_path] {
            self.routes.invalidate(&tenant.name, path.as_deref()).await;
        }
        Ok(script)
    }

    pub async fn delete(&self, tenant: &Tenant, id: &ScriptId) -> Result<()> {
        let current = self.db.script(&tenant.id, id).await?;
        self.db.delete_script(&tenant.id, id).await?;
        self.sandbox.forget(current.id.as_str(), current.version);
        self.routes
            .invalidate(&tenant.name, current.webhook_path.as_deref())
            .await;
        self.limiters.forget(&current.id);
        Ok(())
    }

    /// The next `count` fire times of a scheduled script, in its zone,
    /// starting with the stored `next_run_at`; and that zone.
    pub async fn next_runs(
        &self,
        tenant: &Tenant,
        id: &ScriptId,
        count: usize,
    ) -> Result<(ScriptRecord, Location, Vec<Time>)> {
        let script = self.db.script(&tenant.id, id).await?;
        let Some(expr) = script.schedule.as_deref() else {
            return Err(invalid(format!(
                "script {id} is not scheduled (trigger_type {})",
                script.trigger_type
            )));
        };
        let schedule = crate::cron::parse(expr)
            .map_err(|why| invalid(format!("invalid cron expression: {why}")))?;
        let zone = crate::scheduler::script_zone(&schedule, script.timezone.as_deref());
        let mut times = Vec::with_capacity(count);
        let after = match script.next_run_at {
            Some(at) => {
                let first = Time::from_unix_ms(at, zone);
                times.push(first);
                first
            }
            None => Time::from_unix_ms(crate::store::now_ms(), zone),
        };
        times.extend(schedule.upcoming(after, count - times.len()));
        Ok((script, zone, times))
    }

    /// Merges `change` onto `current` (or defaults), validates the result
    /// and compiles it: the row to store and its bytecode.
    async fn prepare(
        &self,
        tenant: &Tenant,
        change: ScriptChange,
        current: Option<&ScriptRecord>,
    ) -> Result<(NewScript, Arc<Bytecode>)> {
        let ScriptChange {
            name,
            source,
            language,
            trigger_type,
            schedule,
            timezone,
            webhook_path,
            enabled,
            limits,
            rate_limit,
            webhook_auth,
            webhook_methods,
            secrets,
            vars,
            max_retries,
            retry_delay_ms,
            retention,
        } = change;
        let (name, source) = identity(name, source, current)?;
        let runs = Runs::merge(trigger_type, schedule, timezone, webhook_path, current)?;
        let limits = self.limits(limits, current)?;
        let rate_limit = merge_rate_limit(rate_limit, current)?;
        let webhook_auth = merge_webhook_auth(webhook_auth, current)?;
        let webhook_methods = merge_methods(webhook_methods, current)?;
        let (max_retries, retry_delay_ms) = self.retries(max_retries, retry_delay_ms, current)?;
        let (secrets, vars) = self.environment(tenant, secrets, vars, current).await?;
        let retention = match (retention, current) {
            (Some(retention), _) => {
                retention.check().map_err(ScriptError::Invalid)?;
                retention
            }
            (None, Some(c)) => ScriptRetention::of(c),
            (None, None) => ScriptRetention::default(),
        };
        // Syntax errors are caught on save, not at the first run; the
        // bytecode is kept for the saved version, so the first run does not
        // compile the same source again.
        let language = language.or(current.map(|c| c.language)).unwrap_or_default();
        let bytecode = self.compile(language, &source).await?;
        let enabled = enabled.or(current.map(|c| c.enabled)).unwrap_or(true);
        let next_run_at = runs.next_run_at(enabled, current);
        let new = NewScript {
            name,
            source,
            language,
            trigger_type: runs.trigger,
            schedule: runs.schedule,
            timezone: runs.timezone,
            webhook_path: runs.webhook_path,
            enabled,
            limits: to_json(&limits),
            rate_limit: rate_limit.as_ref().map(to_json),
            webhook_auth: webhook_auth.as_ref().map(to_json),
            webhook_methods: webhook_methods.as_ref().map(to_json),
            secrets: to_json(&secrets),
            vars: to_json(&vars),
            max_retries,
            retry_delay_ms,
            next_run_at,
            retention_max_age_ms: retention.max_age.map(|age| age.as_ms()),
            retention_max_per_script: retention.max_per_script,
        };
        Ok((new, bytecode))
    }

    /// The limits to store: within the node's bounds.
    fn limits(
        &self,
        limits: Option<LimitOverrides>,
        current: Option<&ScriptRecord>,
    ) -> Result<LimitOverrides> {
        let limits = match (limits, current) {
            (Some(limits), _) => limits,
            (None, Some(c)) => settings::limits(c).map_err(replace_it)?,
            (None, None) => LimitOverrides::default(),
        };
        self.sandbox
            .config()
            .limits_with(&limits)
            .map_err(ScriptError::Invalid)?;
        Ok(limits)
    }

    /// The secrets a script declares (valid names, each set for the
    /// tenant) and its vars (valid names, none also a declared secret, at
    /// most 64 KiB in all).
    async fn environment(
        &self,
        tenant: &Tenant,
        secrets: Option<Vec<String>>,
        vars: Option<BTreeMap<String, String>>,
        current: Option<&ScriptRecord>,
    ) -> Result<(Vec<String>, BTreeMap<String, String>)> {
        let secrets = match (secrets, current) {
            (Some(secrets), _) => secrets,
            (None, Some(c)) => settings::secrets(c).map_err(replace_it)?,
            (None, None) => Vec::new(),
        };
        let vars = match (vars, current) {
            (Some(vars), _) => vars,
            (None, Some(c)) => settings::vars(c).map_err(replace_it)?,
            (None, None) => BTreeMap::new(),
        };
        for name in &secrets {
            validate_secret_name(name).map_err(|why| invalid(format!("secrets: {why}")))?;
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(twice) = secrets.iter().find(|name| !seen.insert(name.as_str())) {
            return Err(invalid(format!("secrets: {twice} is listed twice")));
        }
        for name in vars.keys() {
            validate_secret_name(name).map_err(|why| invalid(format!("vars: {why}")))?;
            if seen.contains(name.as_str()) {
                return Err(invalid(format!(
                    "{name} is both a var and a declared secret; a name is one or the other"
                )));
            }
        }
        let size: usize = vars.iter().map(|(k, v)| k.len() + v.len()).sum();
        if size > MAX_VARS_BYTES {
            return Err(invalid(format!(
                "vars hold {size} bytes; at most {MAX_VARS_BYTES} are allowed"
            )));
        }
        let missing = self
            .secrets
            .missing(&tenant.id, &secrets)
            .await
            .map_err(|e| match e {
                SecretError::Unavailable => invalid(format!("secrets: {e}")),
                SecretError::Store(e) => ScriptError::Store(e),
            })?;
        if let Some(name) = missing.first() {
            return Err(invalid(format!(
                "secrets: {name} is not set for this tenant; set it first with \
                 PUT /api/secrets/{name}"
            )));
        }
        Ok((secrets, vars))
    }

    /// `max_retries` (up to `[scheduler] max_retries_cap`) and
    /// `retry_delay_ms` (1 s to 7 days).
    fn retries(
        &self,
        max_retries: Option<serde_json::Number>,
        retry_delay_ms: Option<serde_json::Number>,
        current: Option<&ScriptRecord>,
    ) -> Result<(i64, i64)> {
        let defaults = &self.defaults;
        let max_retries = match &max_retries {
            Some(n) => bounded("max_retries", n, 0..=u64::from(defaults.max_retries_cap))?,
            None => current
                .map(|c| c.max_retries)
                .unwrap_or(i64::from(defaults.max_retries)),
        };
        let retry_delay_ms = match &retry_delay_ms {
            Some(n) => bounded("retry_delay_ms", n, RETRY_DELAY_RANGE_MS)?,
            None => current
                .map(|c| c.retry_delay_ms)
                .unwrap_or(defaults.retry_delay_ms as i64),
        };
        Ok((max_retries, retry_delay_ms))
    }

    async fn compile(&self, language: Language, source: &str) -> Result<Arc<Bytecode>> {
        let javascript = typescript::to_javascript(language, source).map_err(|e| {
            invalid(format!(
                "syntax error at line {}, column {}: {}",
                e.line, e.column, e.message
            ))
        })?;
        match self.sandbox.compile(&javascript).await {
            Ok(bytecode) => Ok(bytecode),
            Err(CompileFailure::Syntax(e)) => {
                let hint = if language == Language::JavaScript
                    && typescript::looks_like_typescript(source)
                {
                    " (this looks like TypeScript: set language to typescript)"
                } else {
                    ""
                };
                Err(invalid(format!(
                    "syntax error at line {}, column {}: {}{hint}",
                    e.line, e.column, e.message
                )))
            }
            Err(CompileFailure::Sandbox(failure)) => Err(ScriptError::Unavailable(format!(
                "the script could not be compiled: {failure}"
            ))),
        }
    }
}

/// A setting's stored JSON text.
fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("settings serialise")
}

/// A stored setting that no longer decodes must be replaced, not kept.
fn replace_it(e: Misconfigured) -> ScriptError {
    invalid(format!("{e}; send {} to replace it", e.field))
}

/// `number` as an integer within `range`, or an error naming `field`.
fn bounded(
    field: &str,
    number: &serde_json::Number,
    range: std::ops::RangeInclusive<u64>,
) -> Result<i64> {
    match number.as_u64() {
        Some(n) if range.contains(&n) => Ok(n as i64),
        _ => Err(invalid(format!(
            "{field} must be an integer from {} to {}, got {number}",
            range.start(),
            range.end()
        ))),
    }
}

/// `name` (1-200 characters) and `source` (at most [`MAX_SOURCE_BYTES`]).
fn identity(
    name: Option<String>,
    source: Option<String>,
    current: Option<&ScriptRecord>,
) -> Result<(String, String)> {
    let name = name
        .or_else(|| current.map(|c| c.name.clone()))
        .ok_or_else(|| invalid("missing field `name`"))?;
    if name.trim().is_empty() || name.len() > 200 {
        return Err(invalid("name must be 1-200 characters"));
    }
    let source = source
        .or_else(|| current.map(|c| c.source.clone()))
        .ok_or_else(|| invalid("missing field `source`"))?;
    if source.len() > MAX_SOURCE_BYTES {
        return Err(ScriptError::TooLarge(format!(
            "source is {} bytes, over the limit of {MAX_SOURCE_BYTES}",
            source.len()
        )));
    }
    Ok((name, source))
}

/// When a script runs: its trigger and what that trigger needs.
struct Runs {
    trigger: Trigger,
    /// Kept only for a scheduled script.
    schedule: Option<String>,
    timezone: Option<String>,
    /// Kept only for a webhook script.
    webhook_path: Option<String>,
}

impl Runs {
    fn merge(
        trigger: Option<Trigger>,
        schedule: Option<String>,
        timezone: Option<String>,
        webhook_path: Option<String>,
        current: Option<&ScriptRecord>,
    ) -> Result<Self> {
        let trigger = trigger
            .or(current.map(|c| c.trigger_type))
            .ok_or_else(|| invalid("missing field `trigger_type`"))?;
        let schedule = schedule.or_else(|| current.and_then(|c| c.schedule.clone()));
        let timezone = timezone.or_else(|| current.and_then(|c| c.timezone.clone()));
        let webhook_path = match webhook_path {
            Some(path) => Some(normalise_path(&path)?),
            None => current.and_then(|c| c.webhook_path.clone()),
        };
        match trigger {
            Trigger::Scheduled => {
                let expr = schedule
                    .as_deref()
                    .ok_or_else(|| invalid("a scheduled script needs `schedule`"))?;
                check_schedule(expr, None)?;
            }
            Trigger::Webhook if webhook_path.is_none() => {
                return Err(invalid("a webhook script needs `webhook_path`"));
            }
            _ => {}
        }
        if let Some(zone) = &timezone {
            check_zone(zone)?;
        }
        Ok(Self {
            schedule: schedule.filter(|_| trigger == Trigger::Scheduled),
            webhook_path: webhook_path.filter(|_| trigger == Trigger::Webhook),
            timezone,
            trigger,
        })
    }

    /// The next fire time: kept while the schedule, zone and state are
    /// unchanged (so a due occurrence is not lost to an edit), else
    /// computed from now.
    fn next_run_at(&self, enabled: bool, current: Option<&ScriptRecord>) -> Option<i64> {
        let expr = self.schedule.as_deref().filter(|_| enabled)?;
        let unchanged = current.filter(|c| {
            c.enabled && c.schedule.as_deref() == Some(expr) && c.timezone == self.timezone
        });
        unchanged.and_then(|c| c.next_run_at).or_else(|| {
            crate::scheduler::next_fire(expr, self.timezone.as_deref(), crate::store::now_ms())
                .map(|t| t.unix_ms())
        })
    }
}

fn merge_rate_limit(
    rate_limit: Option<RateLimit>,
    current: Option<&ScriptRecord>,
) -> Result<Option<RateLimit>> {
    match (rate_limit, current) {
        (Some(rate), _) => {
            if rate.rps == 0 || rate.burst == 0 {
                return Err(invalid(
                    "rate_limit.rps and rate_limit.burst must be at least 1",
                ));
            }
            Ok(Some(rate))
        }
        (None, Some(c)) => settings::rate_limit(c).map_err(replace_it),
        (None, None) => Ok(None),
    }
}

/// The webhook's auth. Resending only the type keeps the stored secret.
fn merge_webhook_auth(
    auth: Option<WebhookAuth>,
    current: Option<&ScriptRecord>,
) -> Result<Option<WebhookAuth>> {
    let Some(mut auth) = auth else {
        return match current {
            Some(c) => settings::webhook_auth(c).map_err(replace_it),
            None => Ok(None),
        };
    };
    if auth.kind == AuthType::None {
        auth.secret = None;
    } else if auth.secret.as_deref().is_none_or(str::is_empty) {
        let previous = current.and_then(|c| settings::webhook_auth(c).unwrap_or(None));
        match previous {
            Some(p) if p.kind == auth.kind && p.secret.is_some() => auth.secret = p.secret,
            _ => {
                return Err(invalid(
                    "webhook_auth.secret is required for this auth type",
                ));
            }
        }
    }
    auth.check()
        .map_err(|why| invalid(format!("invalid webhook_auth.secret: {why}")))?;
    Ok(Some(auth))
}

/// The methods the webhook answers, uppercased.
fn merge_methods(
    methods: Option<Vec<String>>,
    current: Option<&ScriptRecord>,
) -> Result<Option<Vec<String>>> {
    let Some(methods) = methods else {
        return match current {
            Some(c) => settings::webhook_methods(c).map_err(replace_it),
            None => Ok(None),
        };
    };
    let mut upper = Vec::with_capacity(methods.len());
    for method in methods {
        let m = method.trim().to_ascii_uppercase();
        if !settings::valid_method(&m) {
            return Err(invalid(format!("invalid HTTP method {method:?}")));
        }
        upper.push(m);
    }
    Ok(Some(upper))
}

/// Checks a schedule and zone; the message is the API's 400.
fn check_schedule(expr: &str, timezone: Option<&str>) -> Result<()> {
    crate::cron::parse(expr).map_err(|why| invalid(format!("invalid cron expression: {why}")))?;
    if let Some(zone) = timezone {
        check_zone(zone)?;
    }
    Ok(())
}

fn check_zone(zone: &str) -> Result<()> {
    Location::named(zone).map(|_| ()).map_err(|why| {
        invalid(format!(
            "invalid timezone {zone:?}: {why} (use an IANA name such as Europe/Paris)"
        ))
    })
}

/// `/hooks/a` and `hooks/a` are the same path; stored with one leading slash.
fn normalise_path(path: &str) -> Result<String> {
    let trimmed = path.trim().trim_start_matches('/');
    let ok = !trimmed.is_empty()
        && trimmed.len() <= 200
        && trimmed
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./~".contains(c))
        && !trimmed
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..");
    if !ok {
        return Err(invalid(format!(
            "invalid webhook_path {path:?}: use segments of letters, digits and - _ . ~ separated by /"
        )));
    }
    Ok(format!("/{trimmed}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_are_checked_with_the_cron_parser() {
        for good in [
            "* * * * *",
            "0 9 * * MON-FRI",
            "@daily",
            "@every 5m",
            "CRON_TZ=UTC 0 0 * * *",
        ] {
            assert!(check_schedule(good, None).is_ok(), "{good}");
        }
        for bad in [
            "* * * *",
            "@sometimes",
            "0 0 * * * *",
            "0 0 * * 7",
            "0 0 * * sun-7",
        ] {
            assert!(check_schedule(bad, None).is_err(), "{bad}");
        }
        assert!(check_schedule("@daily", Some("Europe/Paris")).is_ok());
        assert!(check_schedule("@daily", Some("Europe/Atlantis")).is_err());
    }

    #[test]
    fn webhook_paths_are_normalised() {
        assert_eq!(normalise_path("hooks/github").unwrap(), "/hooks/github");
        assert_eq!(normalise_path("/hooks/github").unwrap(), "/hooks/github");
        for bad in ["", "/", "a//b", "../x", "a b", "a/./b"] {
            assert!(normalise_path(bad).is_err(), "{bad}");
        }
    }
}
