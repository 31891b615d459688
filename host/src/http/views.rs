//! The API's replies as types: what a client sees of a script, an
//! execution and a page of either. Times are RFC 3339 in UTC with
//! milliseconds; JSON stored as text (input, output, logs) is sent as JSON.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::model::{ExecutionId, ExecutionStatus, FailureKind, ScriptId, TenantId, Trigger};
use crate::retention::ScriptRetention;
use crate::sandbox::LimitOverrides;
use crate::settings::{self, AuthType, RateLimit};
use crate::store::{ExecutionRecord, ScriptRecord, SecretEntry};
use crate::typescript::Language;

/// Milliseconds since the epoch, sent as RFC 3339.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rfc3339(pub i64);

impl utoipa::PartialSchema for Rfc3339 {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some("A time, RFC 3339 in UTC with milliseconds"))
            .examples([serde_json::json!("2026-01-31T09:30:00.000Z")])
            .into()
    }
}

impl utoipa::ToSchema for Rfc3339 {}

impl Serialize for Rfc3339 {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&rfc3339(self.0))
    }
}

/// Milliseconds since the epoch as RFC 3339 (UTC, millisecond precision).
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A list answer: `items`, and the cursor of the next page (`null` on the
/// last).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// The page of `limit` items from `limit + 1` rows fetched newest
    /// first: the extra row, if any, says there is a next page, whose
    /// cursor is the last id shown.
    pub fn of<R>(
        mut rows: Vec<R>,
        limit: i64,
        id: impl Fn(&R) -> &str,
        view: impl Fn(R) -> T,
    ) -> Self {
        let next_cursor = if rows.len() as i64 > limit {
            rows.truncate(limit as usize);
            rows.last().map(|row| id(row).to_owned())
        } else {
            None
        };
        Page {
            items: rows.into_iter().map(view).collect(),
            next_cursor,
        }
    }
}

/// Every error reply's body: `{"error": "what is wrong"}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorView {
    pub error: String,
}

impl ErrorView {
    /// The reply: `status` with this body.
    pub fn reply(
        status: axum::http::StatusCode,
        message: impl Into<String>,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        let body = ErrorView {
            error: message.into(),
        };
        (status, axum::Json(body)).into_response()
    }
}

/// The tenant an API key belongs to (`GET /api/tenant`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TenantView {
    pub id: TenantId,
    pub name: String,
    pub created_at: Rfc3339,
}

/// A run accepted to finish later (`?async=true`, async webhooks): where
/// to find it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AcceptedView {
    pub execution_id: ExecutionId,
}

/// A sync webhook call's reply when the script returned a value rather
/// than a `Response`: `{"result": value}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ResultView {
    pub result: Value,
}

/// A scheduled script's next fire times in its zone (RFC 3339 with the
/// zone's offset), starting with the stored `next_run_at`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NextRunsView {
    pub script_id: ScriptId,
    pub schedule: Option<String>,
    pub zone: String,
    pub enabled: bool,
    pub items: Vec<String>,
}

/// The webhook's auth as shown: its type; the secret never leaves.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuthView {
    #[serde(rename = "type")]
    kind: AuthType,
}

/// A script as the API shows it. `webhook_url` is where the public listener
/// serves a webhook script. A stored setting that does not decode shows as
/// `null`, and `settings_error` says which and why.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ScriptView {
    id: ScriptId,
    name: String,
    source: String,
    language: Language,
    version: i64,
    trigger_type: Trigger,
    schedule: Option<String>,
    timezone: Option<String>,
    webhook_path: Option<String>,
    webhook_url: Option<String>,
    enabled: bool,
    limits: Option<LimitOverrides>,
    rate_limit: Option<RateLimit>,
    webhook_auth: Option<AuthView>,
    webhook_methods: Option<Vec<String>>,
    /// Names of the secrets the script may read (never their values).
    secrets: Option<Vec<String>>,
    vars: Option<BTreeMap<String, String>>,
    max_retries: i64,
    retry_delay_ms: i64,
    /// The script's own retention limits (`null`: the node's).
    retention: ScriptRetention,
    next_run_at: Option<Rfc3339>,
    last_executed_at: Option<Rfc3339>,
    created_at: Rfc3339,
    updated_at: Rfc3339,
    #[serde(skip_serializing_if = "Option::is_none")]
    settings_error: Option<String>,
}

impl ScriptView {
    pub fn new(s: ScriptRecord, webhook_url: Option<String>) -> Self {
        let mut error = None;
        let limits = shown(settings::limits(&s), &mut error);
        let rate_limit = shown(settings::rate_limit(&s), &mut error).flatten();
        let webhook_auth = shown(settings::webhook_auth(&s), &mut error)
            .flatten()
            .map(|auth| AuthView { kind: auth.kind });
        let webhook_methods = shown(settings::webhook_methods(&s), &mut error).flatten();
        let secrets = shown(settings::secrets(&s), &mut error);
        let vars = shown(settings::vars(&s), &mut error);
        let retention = ScriptRetention::of(&s);
        Self {
            limits,
            secrets,
            vars,
            rate_limit,
            webhook_auth,
            webhook_methods,
            settings_error: error,
            webhook_url,
            id: s.id,
            name: s.name,
            source: s.source,
            language: s.language,
            version: s.version,
            trigger_type: s.trigger_type,
            schedule: s.schedule,
            timezone: s.timezone,
            webhook_path: s.webhook_path,
            enabled: s.enabled,
            max_retries: s.max_retries,
            retry_delay_ms: s.retry_delay_ms,
            retention,
            next_run_at: s.next_run_at.map(Rfc3339),
            last_executed_at: s.last_executed_at.map(Rfc3339),
            created_at: Rfc3339(s.created_at),
            updated_at: Rfc3339(s.updated_at),
        }
    }
}

/// A tenant's secret as listed: its name and when it was set; the value
/// is write-only.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SecretView {
    name: String,
    updated_at: Rfc3339,
}

impl From<SecretEntry> for SecretView {
    fn from(e: SecretEntry) -> Self {
        Self {
            name: e.name,
            updated_at: Rfc3339(e.updated_at),
        }
    }
}

/// `GET /api/secrets`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SecretsView {
    pub items: Vec<SecretView>,
}

/// A decoded setting, or `None` with the first error kept in `error`.
fn shown<T>(decoded: Result<T, settings::Misconfigured>, error: &mut Option<String>) -> Option<T> {
    match decoded {
        Ok(value) => Some(value),
        Err(misconfigured) => {
            error.get_or_insert(misconfigured.to_string());
            None
        }
    }
}

/// An execution as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExecutionView {
    id: ExecutionId,
    script_id: ScriptId,
    script_version: i64,
    trigger_type: Trigger,
    status: ExecutionStatus,
    input: Value,
    output: Option<Value>,
    error_type: Option<FailureKind>,
    error_message: Option<String>,
    error_stack: Option<String>,
    logs: Value,
    attempt: i64,
    queued_at: Rfc3339,
    started_at: Option<Rfc3339>,
    finished_at: Option<Rfc3339>,
    duration_ms: Option<i64>,
    /// Wall time in microseconds (`null` on runs recorded before it was kept).
    duration_us: Option<i64>,
    fuel_used: Option<i64>,
    memory_peak_bytes: Option<i64>,
    cpu_time_us: Option<i64>,
    scheduled_for: Option<Rfc3339>,
    /// A pending retry's earliest start.
    retry_at: Option<Rfc3339>,
}

impl From<ExecutionRecord> for ExecutionView {
    fn from(e: ExecutionRecord) -> Self {
        // Stored by the service as JSON; text that is not shows as null.
        let parse = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
        Self {
            input: parse(&e.input),
            output: e.output.as_deref().map(parse),
            logs: parse(&e.logs),
            id: e.id,
            script_id: e.script_id,
            script_version: e.script_version,
            trigger_type: e.trigger_type,
            status: e.status,
            error_type: e.error_type,
            error_message: e.error_message,
            error_stack: e.error_stack,
            attempt: e.attempt,
            queued_at: Rfc3339(e.queued_at),
            started_at: e.started_at.map(Rfc3339),
            finished_at: e.finished_at.map(Rfc3339),
            duration_ms: e.duration_ms,
            duration_us: e.duration_us,
            fuel_used: e.fuel_used,
            memory_peak_bytes: e.memory_peak_bytes,
            cpu_time_us: e.cpu_time_us,
            scheduled_for: e.scheduled_for.map(Rfc3339),
            retry_at: e.run_after.map(Rfc3339),
        }
    }
}
