//! Retention: old executions are deleted, so the database stays the size
//! of the history one asked for.
//!
//! Every `interval_secs` a background task sweeps (on PostgreSQL one node
//! at a time, under an advisory lock):
//! 1. finished executions (`completed`, `failed`, `dead`) older than
//!    `max_age`, or than the script's own `retention.max_age`;
//! 2. beyond a script's newest `max_per_script` executions (or its own
//!    `retention.max_per_script`), the `completed` and `failed` ones: a
//!    `dead` execution stays until it is too old, so the dead-letter queue
//!    is not emptied by traffic. Only scripts with executions created since
//!    the previous sweep are counted (their counts are the only ones that
//!    grew); the first sweep after a start counts all.
//!
//! Open executions (`queued`, `running`, pending retries) are never
//! deleted. Each statement deletes at most `batch` rows, and the sweep
//! pauses between statements as long as the last one took, so writes of
//! runs and webhook calls get the write lock at least half the time. On
//! SQLite the freed pages are then given back to the file system a few
//! megabytes at a time.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::model::{ExecutionId, ExecutionStatus};
use crate::store::{Db, StoreResult, now_ms};

/// An age such as `30d`, `12h`, `90m` or `45s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Age {
    ms: i64,
}

impl utoipa::PartialSchema for Age {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .pattern(Some("^[0-9]+[smhd]$"))
            .description(Some(
                "A whole number and a unit: s, m, h or d; 1 s to 3660 d",
            ))
            .examples([serde_json::json!("30d")])
            .into()
    }
}

impl utoipa::ToSchema for Age {}

impl Age {
    /// The longest age accepted: ten years.
    pub const MAX_MS: i64 = 10 * 366 * 86_400_000;

    pub fn from_ms(ms: i64) -> Result<Self, String> {
        if !(1_000..=Self::MAX_MS).contains(&ms) {
            return Err(format!("an age must be between 1s and 3660d, got {ms} ms"));
        }
        Ok(Self { ms })
    }

    pub fn as_ms(self) -> i64 {
        self.ms
    }
}

impl std::str::FromStr for Age {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let expected = || {
            format!(
                "invalid age {text:?}: expected a whole number and a unit, as in 30d, 12h, 90m or 45s"
            )
        };
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(expected)?;
        let (number, unit) = text.split_at(split);
        let number: i64 = number.parse().map_err(|_| expected())?;
        let unit_ms = match unit {
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(expected()),
        };
        let ms = number.checked_mul(unit_ms).ok_or_else(expected)?;
        Self::from_ms(ms).map_err(|why| format!("invalid age {text:?}: {why}"))
    }
}

impl std::fmt::Display for Age {
    /// In the largest unit that divides it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (unit, ms) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000)] {
            if self.ms % ms == 0 {
                return write!(f, "{}{unit}", self.ms / ms);
            }
        }
        write!(f, "{}s", self.ms / 1_000)
    }
}

impl TryFrom<String> for Age {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl From<Age> for String {
    fn from(age: Age) -> String {
        age.to_string()
    }
}

/// The most executions a count limit may keep per script.
pub const MAX_PER_SCRIPT: i64 = 10_000_000;
/// The most rows one statement deletes.
pub const MAX_BATCH: u32 = 1_000;

/// A script's own limits (`retention` in the API); a `None` takes the
/// node's `[retention]` setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScriptRetention {
    /// How long its finished executions are kept.
    #[serde(default)]
    pub max_age: Option<Age>,
    /// How many of its executions are kept.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 10_000_000)]
    pub max_per_script: Option<i64>,
}

impl ScriptRetention {
    pub fn check(&self) -> Result<(), String> {
        match self.max_per_script {
            Some(n) if !(1..=MAX_PER_SCRIPT).contains(&n) => Err(format!(
                "retention.max_per_script must be between 1 and {MAX_PER_SCRIPT}, got {n}"
            )),
            _ => Ok(()),
        }
    }

    /// A stored script's limits. A stored age out of range (edited by
    /// hand) is brought within bounds.
    pub fn of(script: &crate::store::ScriptRecord) -> Self {
        Self {
            max_age: script.retention_max_age_ms.map(|ms| Age {
                ms: ms.clamp(1_000, Age::MAX_MS),
            }),
            max_per_script: script.retention_max_per_script,
        }
    }
}

/// `[retention]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Sweep at all. Off: executions are kept forever.
    pub enabled: bool,
    /// Finished executions older than this are deleted.
    pub max_age: Age,
    /// At most this many executions are kept per script (`dead` ones
    /// younger than `max_age` are kept beyond it).
    pub max_per_script: i64,
    /// Seconds between sweeps.
    pub interval_secs: u64,
    /// Rows deleted per statement (at most 1,000).
    pub batch: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_age: Age {
                ms: 30 * 86_400_000,
            },
            max_per_script: 10_000,
            interval_secs: 60,
            batch: 500,
        }
    }
}

impl RetentionConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_PER_SCRIPT).contains(&self.max_per_script) {
            return Err(format!(
                "retention.max_per_script must be between 1 and {MAX_PER_SCRIPT}"
            ));
        }
        if !(1..=MAX_BATCH).contains(&self.batch) {
            return Err(format!("retention.batch must be between 1 and {MAX_BATCH}"));
        }
        if self.interval_secs == 0 {
            return Err("retention.interval_secs must be at least 1".into());
        }
        Ok(())
    }
}

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Whether this node swept (on PostgreSQL another node may hold the
    /// lock).
    pub ran: bool,
    pub deleted: u64,
}

/// SQLite pages given back per statement after a sweep (4 MiB of 4 KiB
/// pages).
const PAGES_PER_VACUUM: i64 = 1_024;

/// The sweeper of one node.
pub struct Retention {
    db: Db,
    config: RetentionConfig,
    metrics: crate::metrics::RetentionMetrics,
    /// The lowest id of the previous sweep's start: scripts with
    /// executions above it are the ones to count.
    since: Option<ExecutionId>,
}

impl Retention {
    pub fn new(db: Db, config: RetentionConfig, metrics: crate::metrics::RetentionMetrics) -> Self {
        Self {
            db,
            config,
            metrics,
            since: None,
        }
    }

    /// Sweeps every `interval_secs` until `stop` resolves (the first sweep
    /// right away). Errors are logged and the next sweep tries again.
    pub async fn run(mut self, stop: impl std::future::Future<Output = ()>) {
        let mut stop = std::pin::pin!(stop);
        let every = Duration::from_secs(self.config.interval_secs);
        loop {
            if self.config.enabled {
                match self.sweep().await {
                    Ok(swept) if swept.deleted > 0 => {
                        tracing::info!(deleted = swept.deleted, "retention deleted old executions")
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(error = format!("{error:#}"), "retention sweep failed")
                    }
                }
            }
            self.refresh_size().await;
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = &mut stop => return,
            }
        }
    }

    /// Updates `scriptbox_database_bytes`.
    pub async fn refresh_size(&self) {
        match self.db.size_bytes().await {
            Ok(bytes) => self.metrics.database_bytes.set(bytes),
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "reading the database size failed"
                )
            }
        }
    }

    /// One sweep, now.
    pub async fn sweep(&mut self) -> StoreResult<Swept> {
        let Some(_lock) = self.db.retention_lock().await? else {
            return Ok(Swept::default());
        };
        let now = now_ms();
        let started = ExecutionId::lowest_at(now);
        let batch = i64::from(self.config.batch);
        let mut deleted = 0;

        // 1. By age, for scripts without an age of their own...
        let before = ExecutionId::lowest_at(now - self.config.max_age.as_ms());
        let mut after = None;
        loop {
            let (n, last) = self
                .paced(self.db.delete_expired(&before, after.as_ref(), batch))
                .await?;
            deleted += n;
            if (n as i64) < batch {
                break;
            }
            after = last;
        }
        // ... and for those with one.
        for script in self.db.retention_age_overrides().await? {
            let before = ExecutionId::lowest_at(now - script.max_age_ms);
            let finished = [
                ExecutionStatus::Completed,
                ExecutionStatus::Failed,
                ExecutionStatus::Dead,
            ];
            deleted += self
                .drain(|db| {
                    db.delete_script_executions_before(
                        &script.tenant_id,
                        &script.script_id,
                        &before,
                        &finished,
                        batch,
                    )
                })
                .await?;
        }

        // 2. By count, for scripts whose count grew since the last sweep.
        for script in self.db.retention_candidates(self.since.as_ref()).await? {
            let keep = script.max_per_script.unwrap_or(self.config.max_per_script);
            let Some(oldest_kept) = self
                .db
                .nth_newest_execution(&script.tenant_id, &script.script_id, keep)
                .await?
            else {
                continue;
            };
            let finished = [ExecutionStatus::Completed, ExecutionStatus::Failed];
            deleted += self
                .drain(|db| {
                    db.delete_script_executions_before(
                        &script.tenant_id,
                        &script.script_id,
                        &oldest_kept,
                        &finished,
                        batch,
                    )
                })
                .await?;
        }
        self.since = Some(started);
        self.metrics.deleted.inc_by(deleted);

        // 3. Give the space back (SQLite), a few megabytes per statement.
        if deleted > 0 {
            loop {
                let free = self
                    .paced(self.db.give_back_space(PAGES_PER_VACUUM))
                    .await?;
                if free <= PAGES_PER_VACUUM {
                    break;
                }
            }
        }
        Ok(Swept { ran: true, deleted })
    }

    /// Runs `delete` until it deletes less than a batch; the total.
    async fn drain<'a, F, Fut>(&'a self, delete: F) -> StoreResult<u64>
    where
        F: Fn(&'a Db) -> Fut,
        Fut: std::future::Future<Output = StoreResult<u64>>,
    {
        let mut total = 0;
        loop {
            let n = self.paced(delete(&self.db)).await?;
            total += n;
            if n < u64::from(self.config.batch) {
                return Ok(total);
            }
        }
    }

    /// Awaits `statement`, then pauses as long as it took, so that other
    /// writers get the database at least half of the time.
    async fn paced<T>(&self, statement: impl std::future::Future<Output = T>) -> T {
        let started = Instant::now();
        let result = statement.await;
        tokio::time::sleep(started.elapsed()).await;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_parse_in_one_unit_and_print_in_the_largest_that_divides() {
        assert_eq!("30d".parse::<Age>().unwrap().as_ms(), 30 * 86_400_000);
        assert_eq!("90m".parse::<Age>().unwrap().to_string(), "90m");
        assert_eq!("120m".parse::<Age>().unwrap().to_string(), "2h");
        assert_eq!("86400s".parse::<Age>().unwrap().to_string(), "1d");
        for bad in [
            "",
            "30",
            "d",
            "-1d",
            "1.5d",
            "1w",
            "0s",
            "99999d",
            "99999999999999999999d",
        ] {
            let error = bad.parse::<Age>().unwrap_err();
            assert!(error.contains(&format!("{bad:?}")), "{bad}: {error}");
        }
    }

    #[test]
    fn lowest_ids_sort_below_every_id_made_at_or_after_that_time() {
        let before = now_ms();
        let id = ExecutionId::generate();
        let after = now_ms();
        assert!(ExecutionId::lowest_at(before) <= id);
        assert!(ExecutionId::lowest_at(after + 1) > id);
    }

    #[test]
    fn the_config_refuses_batches_over_a_thousand() {
        let config = RetentionConfig {
            batch: 1_001,
            ..RetentionConfig::default()
        };
        assert!(config.validate().unwrap_err().contains("retention.batch"));
        assert!(RetentionConfig::default().validate().is_ok());
    }
}
