//! `/api/scripts`: create, list, show, update, delete, run.

use std::sync::Arc;

use super::json::Query;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::json::Body;
use super::{AppError, AppState, Auth};
use crate::api::executions::execution_json;
use crate::exec::Trigger;
use crate::sandbox::{Bytecode, CompileFailure, LimitOverrides};
use crate::settings::{self, AuthType, RateLimit, WebhookAuth};
use crate::store::{NewScript, ScriptRecord, Tenant};

const MAX_SOURCE_BYTES: usize = 1 << 20;
const DEFAULT_PAGE: i64 = 50;
const MAX_PAGE: i64 = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TriggerType {
    Manual,
    Scheduled,
    Webhook,
}

impl TriggerType {
    fn as_str(self) -> &'static str {
        match self {
            TriggerType::Manual => "manual",
            TriggerType::Scheduled => "scheduled",
            TriggerType::Webhook => "webhook",
        }
    }
}

/// A create or update body. On update, missing fields keep their values.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptBody {
    name: Option<String>,
    source: Option<String>,
    trigger_type: Option<TriggerType>,
    schedule: Option<String>,
    timezone: Option<String>,
    webhook_path: Option<String>,
    enabled: Option<bool>,
    limits: Option<LimitOverrides>,
    rate_limit: Option<RateLimit>,
    webhook_auth: Option<WebhookAuth>,
    webhook_methods: Option<Vec<String>>,
    /// Numbers are checked by hand so that a value out of range (or not an
    /// integer at all) is a 400 naming the field, never wrapped.
    max_retries: Option<serde_json::Number>,
    retry_delay_ms: Option<serde_json::Number>,
}

/// `number` as an integer within `range`, or a 400 naming `field`.
fn bounded(
    field: &str,
    number: &serde_json::Number,
    range: std::ops::RangeInclusive<u64>,
) -> Result<i64, AppError> {
    match number.as_u64() {
        Some(n) if range.contains(&n) => Ok(n as i64),
        _ => Err(AppError::bad(format!(
            "{field} must be an integer from {} to {}, got {number}",
            range.start(),
            range.end()
        ))),
    }
}

/// The API's view of a script: secrets never leave. `webhook_url` is where
/// the public listener serves a webhook script. A stored setting that does
/// not decode shows as `null`, and `settings_error` says which and why.
pub fn script_json(s: &ScriptRecord, webhook_url: Option<String>) -> Value {
    let show = |value: Result<Value, _>, error: &mut Option<String>| match value {
        Ok(value) => value,
        Err(misconfigured) => {
            let misconfigured: crate::settings::Misconfigured = misconfigured;
            error.get_or_insert(misconfigured.to_string());
            Value::Null
        }
    };
    let mut error = None;
    let limits = show(settings::limits(s).map(|l| json!(l)), &mut error);
    let rate_limit = show(settings::rate_limit(s).map(|r| json!(r)), &mut error);
    let webhook_auth = show(
        settings::webhook_auth(s).map(|a| match a {
            Some(auth) => json!({ "type": auth.kind }),
            None => Value::Null,
        }),
        &mut error,
    );
    let webhook_methods = show(settings::webhook_methods(s).map(|m| json!(m)), &mut error);
    let mut script = json!({
        "id": s.id,
        "name": s.name,
        "source": s.source,
        "version": s.version,
        "trigger_type": s.trigger_type,
        "schedule": s.schedule,
        "timezone": s.timezone,
        "webhook_path": s.webhook_path,
        "webhook_url": webhook_url,
        "enabled": s.enabled,
        "limits": limits,
        "rate_limit": rate_limit,
        "webhook_auth": webhook_auth,
        "webhook_methods": webhook_methods,
        "max_retries": s.max_retries,
        "retry_delay_ms": s.retry_delay_ms,
        "next_run_at": s.next_run_at.map(rfc3339),
        "last_executed_at": s.last_executed_at.map(rfc3339),
        "created_at": rfc3339(s.created_at),
        "updated_at": rfc3339(s.updated_at),
    });
    if let Some(error) = error {
        script["settings_error"] = Value::String(error);
    }
    script
}

/// `script_json` for a script of `tenant`, with its webhook URL.
fn script_view(state: &AppState, tenant: &Tenant, s: &ScriptRecord) -> Value {
    let url = s
        .webhook_path
        .as_deref()
        .map(|path| state.public_url.webhook_url(&tenant.name, path));
    script_json(s, url)
}

/// Milliseconds since the epoch as RFC 3339 (UTC, millisecond precision).
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Checks a script's schedule and zone; the message is the API's 400.
fn check_schedule(expr: &str, timezone: Option<&str>) -> Result<(), AppError> {
    crate::cron::parse(expr)
        .map_err(|why| AppError::bad(format!("invalid cron expression: {why}")))?;
    if let Some(zone) = timezone {
        crate::cron::Location::named(zone).map_err(|why| {
            AppError::bad(format!(
                "invalid timezone {zone:?}: {why} (use an IANA name such as Europe/Paris)"
            ))
        })?;
    }
    Ok(())
}

/// `/hooks/a` and `hooks/a` are the same path; stored with one leading slash.
fn normalise_path(path: &str) -> Result<String, AppError> {
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
        return Err(AppError::bad(format!(
            "invalid webhook_path {path:?}: use segments of letters, digits and - _ . ~ separated by /"
        )));
    }
    Ok(format!("/{trimmed}"))
}

/// Merges `body` onto `current` (or defaults) and validates the result.
async fn prepare(
    state: &AppState,
    body: ScriptBody,
    current: Option<&ScriptRecord>,
) -> Result<(NewScript, Arc<Bytecode>), AppError> {
    let stored = |f: fn(&ScriptRecord) -> Option<String>| current.and_then(f);

    let name = body
        .name
        .or_else(|| current.map(|c| c.name.clone()))
        .ok_or_else(|| AppError::bad("missing field `name`"))?;
    if name.trim().is_empty() || name.len() > 200 {
        return Err(AppError::bad("name must be 1-200 characters"));
    }
    let source = body
        .source
        .or_else(|| current.map(|c| c.source.clone()))
        .ok_or_else(|| AppError::bad("missing field `source`"))?;
    if source.len() > MAX_SOURCE_BYTES {
        return Err(AppError::PayloadTooLarge(format!(
            "source is {} bytes, over the limit of {MAX_SOURCE_BYTES}",
            source.len()
        )));
    }
    let trigger = match body.trigger_type {
        Some(t) => t,
        None => match current.map(|c| c.trigger_type.as_str()) {
            Some("manual") => TriggerType::Manual,
            Some("scheduled") => TriggerType::Scheduled,
            Some("webhook") => TriggerType::Webhook,
            _ => return Err(AppError::bad("missing field `trigger_type`")),
        },
    };
    let schedule = body.schedule.or_else(|| stored(|c| c.schedule.clone()));
    let timezone = body.timezone.or_else(|| stored(|c| c.timezone.clone()));
    let webhook_path = match body.webhook_path {
        Some(path) => Some(normalise_path(&path)?),
        None => stored(|c| c.webhook_path.clone()),
    };
    match trigger {
        TriggerType::Scheduled => {
            let expr = schedule
                .as_deref()
                .ok_or_else(|| AppError::bad("a scheduled script needs `schedule`"))?;
            check_schedule(expr, timezone.as_deref())?;
        }
        TriggerType::Webhook if webhook_path.is_none() => {
            return Err(AppError::bad("a webhook script needs `webhook_path`"));
        }
        _ => {}
    }
    if let Some(zone) = &timezone {
        crate::cron::Location::named(zone).map_err(|why| {
            AppError::bad(format!(
                "invalid timezone {zone:?}: {why} (use an IANA name such as Europe/Paris)"
            ))
        })?;
    }

    // A stored setting that no longer decodes must be replaced, not kept.
    let stored_setting = |e: crate::settings::Misconfigured| {
        AppError::bad(format!("{e}; send {} to replace it", e.field))
    };
    let limits = match (body.limits, current) {
        (Some(limits), _) => limits,
        (None, Some(c)) => settings::limits(c).map_err(stored_setting)?,
        (None, None) => LimitOverrides::default(),
    };
    state
        .exec
        .sandbox()
        .config()
        .limits_with(&limits)
        .map_err(AppError::BadRequest)?;

    if let Some(rate) = &body.rate_limit
        && (rate.rps == 0 || rate.burst == 0)
    {
        return Err(AppError::bad(
            "rate_limit.rps and rate_limit.burst must be at least 1",
        ));
    }
    let rate_limit = match (body.rate_limit, current) {
        (Some(rate), _) => Some(rate),
        (None, Some(c)) => settings::rate_limit(c).map_err(stored_setting)?,
        (None, None) => None,
    }
    .map(|rate| serde_json::to_string(&rate).expect("serialisable"));

    let webhook_auth = match body.webhook_auth {
        Some(mut auth) => {
            if auth.kind == AuthType::None {
                auth.secret = None;
            } else if auth.secret.as_deref().is_none_or(str::is_empty) {
                // Keep the stored secret when only the type is resent.
                let previous = match current {
                    Some(c) => settings::webhook_auth(c).unwrap_or(None),
                    None => None,
                };
                match previous {
                    Some(p) if p.kind == auth.kind && p.secret.is_some() => auth.secret = p.secret,
                    _ => {
                        return Err(AppError::bad(
                            "webhook_auth.secret is required for this auth type",
                        ));
                    }
                }
            }
            auth.check()
                .map_err(|why| AppError::bad(format!("invalid webhook_auth.secret: {why}")))?;
            Some(auth)
        }
        None => match current {
            Some(c) => settings::webhook_auth(c).map_err(stored_setting)?,
            None => None,
        },
    }
    .map(|auth| serde_json::to_string(&auth).expect("serialisable"));
    let webhook_methods = match body.webhook_methods {
        Some(methods) => {
            let mut upper = Vec::with_capacity(methods.len());
            for method in methods {
                let m = method.trim().to_ascii_uppercase();
                if !settings::valid_method(&m) {
                    return Err(AppError::bad(format!("invalid HTTP method {method:?}")));
                }
                upper.push(m);
            }
            Some(upper)
        }
        None => match current {
            Some(c) => settings::webhook_methods(c).map_err(stored_setting)?,
            None => None,
        },
    }
    .map(|methods| serde_json::to_string(&methods).expect("serialisable"));

    let defaults = &state.retry_defaults;
    let max_retries = match &body.max_retries {
        Some(n) => bounded("max_retries", n, 0..=u64::from(defaults.max_retries_cap))?,
        None => current
            .map(|c| c.max_retries)
            .unwrap_or(i64::from(defaults.max_retries)),
    };
    let retry_delay_ms = match &body.retry_delay_ms {
        Some(n) => bounded("retry_delay_ms", n, crate::config::RETRY_DELAY_RANGE_MS)?,
        None => current
            .map(|c| c.retry_delay_ms)
            .unwrap_or(defaults.retry_delay_ms as i64),
    };

    // Syntax errors are caught on save, not at the first run.
    // The bytecode is kept for the saved version, so the first run does not
    // compile the same source again.
    let bytecode = match state.exec.sandbox().compile(&source).await {
        Ok(bytecode) => bytecode,
        Err(CompileFailure::Syntax(e)) => {
            return Err(AppError::bad(format!(
                "syntax error at line {}, column {}: {}",
                e.line, e.column, e.message
            )));
        }
        Err(CompileFailure::Sandbox(failure)) => {
            return Err(AppError::Unavailable(format!(
                "the script could not be compiled: {failure}"
            )));
        }
    };

    let enabled = body.enabled.or(current.map(|c| c.enabled)).unwrap_or(true);
    let schedule = (trigger == TriggerType::Scheduled)
        .then_some(schedule)
        .flatten();
    // The next fire time: kept while the schedule, zone and state are
    // unchanged (so a due occurrence is not lost to an edit), else computed
    // from now.
    let next_run_at = match (&schedule, enabled) {
        (Some(expr), true) => {
            let unchanged = current.filter(|c| {
                c.enabled && c.schedule.as_deref() == Some(expr.as_str()) && c.timezone == timezone
            });
            match unchanged.and_then(|c| c.next_run_at) {
                Some(at) => Some(at),
                None => {
                    crate::scheduler::next_fire(expr, timezone.as_deref(), crate::store::now_ms())
                        .map(|t| t.unix_ms())
                }
            }
        }
        _ => None,
    };
    let new = NewScript {
        name,
        source,
        trigger_type: trigger.as_str().into(),
        schedule,
        timezone,
        webhook_path: if trigger == TriggerType::Webhook {
            webhook_path
        } else {
            None
        },
        enabled,
        limits: serde_json::to_string(&limits).expect("serialisable"),
        rate_limit,
        webhook_auth,
        webhook_methods,
        max_retries,
        retry_delay_ms,
        next_run_at,
    };
    Ok((new, bytecode))
}

pub async fn create(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Body(body): Body<ScriptBody>,
) -> Result<Response, AppError> {
    let (new, bytecode) = prepare(&state, body, None).await?;
    let script = state.exec.db().create_script(&tenant.id, &new).await?;
    state
        .exec
        .sandbox()
        .remember(&script.id, script.version, bytecode);
    if script.next_run_at.is_some() {
        state.scheduler.wake();
    }
    state
        .routes
        .invalidate(&tenant.name, script.webhook_path.as_deref())
        .await;
    Ok((
        StatusCode::CREATED,
        Json(script_view(&state, &tenant, &script)),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    limit: Option<i64>,
    cursor: Option<String>,
}

pub fn page_limit(limit: Option<i64>) -> Result<i64, AppError> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(n) => Err(AppError::bad(format!(
            "limit must be from 1 to {MAX_PAGE}, got {n}"
        ))),
    }
}

pub async fn list(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Query(page): Query<Page>,
) -> Result<Json<Value>, AppError> {
    let limit = page_limit(page.limit)?;
    let mut rows = state
        .exec
        .db()
        .list_scripts(&tenant.id, page.cursor.as_deref(), limit + 1)
        .await?;
    Ok(Json(page_json(
        &mut rows,
        limit,
        |s| &s.id,
        |s| script_view(&state, &tenant, s),
    )))
}

/// A list answer from `limit + 1` rows fetched newest first: the extra row,
/// if any, says there is a next page, whose cursor is the last id shown.
pub fn page_json<T>(
    rows: &mut Vec<T>,
    limit: i64,
    id: impl Fn(&T) -> &String,
    to_json: impl Fn(&T) -> Value,
) -> Value {
    let next = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|row| id(row).clone())
    } else {
        None
    };
    let items: Vec<Value> = rows.iter().map(to_json).collect();
    json!({ "items": items, "next_cursor": next })
}

pub async fn show(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    let script = state.exec.db().script(&tenant.id, &id).await?;
    Ok(Json(script_view(&state, &tenant, &script)))
}

pub async fn update(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Path(id): Path<String>,
    Body(body): Body<ScriptBody>,
) -> Result<Json<Value>, AppError> {
    let current = state.exec.db().script(&tenant.id, &id).await?;
    let (new, bytecode) = prepare(&state, body, Some(&current)).await?;
    let script = state.exec.db().update_script(&tenant.id, &id, &new).await?;
    state
        .exec
        .sandbox()
        .remember(&script.id, script.version, bytecode);
    state.exec.sandbox().forget(&current.id, current.version);
    if script.next_run_at != current.next_run_at {
        state.scheduler.wake();
    }
    for path in [&current.webhook_path, &script.webhook_path] {
        state.routes.invalidate(&tenant.name, path.as_deref()).await;
    }
    Ok(Json(script_view(&state, &tenant, &script)))
}

pub async fn remove(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    let current = state.exec.db().script(&tenant.id, &id).await?;
    state.exec.db().delete_script(&tenant.id, &id).await?;
    state.exec.sandbox().forget(&current.id, current.version);
    state
        .routes
        .invalidate(&tenant.name, current.webhook_path.as_deref())
        .await;
    state.limiters.forget(&current.id);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NextRunsQuery {
    count: Option<usize>,
}

const MAX_NEXT_RUNS: usize = 100;

/// `GET /api/scripts/{id}/next-runs?count=N`: the next fire times in the
/// script's zone (RFC 3339 with offset), starting with the stored
/// `next_run_at`.
pub async fn next_runs(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Path(id): Path<String>,
    Query(query): Query<NextRunsQuery>,
) -> Result<Json<Value>, AppError> {
    let count = query.count.unwrap_or(5);
    if !(1..=MAX_NEXT_RUNS).contains(&count) {
        return Err(AppError::bad(format!(
            "count must be from 1 to {MAX_NEXT_RUNS}, got {count}"
        )));
    }
    let script = state.exec.db().script(&tenant.id, &id).await?;
    let Some(expr) = script.schedule.as_deref() else {
        return Err(AppError::bad(format!(
            "script {id} is not scheduled (trigger_type {})",
            script.trigger_type
        )));
    };
    let schedule = crate::cron::parse(expr)
        .map_err(|why| AppError::bad(format!("invalid cron expression: {why}")))?;
    let zone = crate::scheduler::script_zone(&schedule, script.timezone.as_deref());
    let mut times = Vec::with_capacity(count);
    let after = match script.next_run_at {
        Some(at) => {
            let first = crate::cron::Time::from_unix_ms(at, zone);
            times.push(first);
            first
        }
        None => crate::cron::Time::from_unix_ms(crate::store::now_ms(), zone),
    };
    times.extend(schedule.upcoming(after, count - times.len()));
    Ok(Json(json!({
        "script_id": script.id,
        "schedule": expr,
        "zone": zone.to_string(),
        "enabled": script.enabled,
        "items": times.iter().map(|t| t.to_rfc3339()).collect::<Vec<_>>(),
    })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    #[serde(default)]
    input: Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunQuery {
    #[serde(rename = "async", default)]
    run_async: bool,
}

pub async fn run(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    Path(id): Path<String>,
    Query(query): Query<RunQuery>,
    body: axum::body::Bytes,
) -> Result<Response, AppError> {
    // The body is optional: no body runs with `input: null`.
    let input = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice::<RunBody>(&body)
            .map_err(|e| AppError::bad(format!("invalid JSON body: {e}")))?
            .input
    };
    let script = Arc::new(state.exec.db().script(&tenant.id, &id).await?);
    if query.run_async {
        let accepted = state
            .exec
            .submit(script, Trigger::Manual, &input, 0)
            .await?;
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "execution_id": accepted.execution_id })),
        )
            .into_response());
    }
    let execution = state
        .exec
        .run_to_end(script, Trigger::Manual, &input, 0)
        .await?;
    Ok(Json(execution_json(&execution)).into_response())
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
