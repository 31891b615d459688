//! One typed configuration, read from a TOML file and the environment,
//! validated at start. `scriptbox.example.toml` documents every key with its
//! default.
//!
//! Every key can be overridden by `SCRIPTBOX_<SECTION>_<KEY>` (for example
//! `SCRIPTBOX_SANDBOX_POOL_MAX=32`, `SCRIPTBOX_FETCH_ALLOW='["localhost"]'`),
//! and the top-level `listen` by `SCRIPTBOX_LISTEN`. Values are read as TOML
//! (numbers, booleans, arrays), and as plain strings when they are not valid
//! TOML. Unknown keys in the file are an error.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::sandbox::{FetchConfig, SandboxConfig};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address of the admin listener: the API, the dashboard, `/metrics`
    /// and health. Keep it private; webhooks are served on
    /// `webhooks.listen`.
    pub listen: String,
    pub database: DatabaseConfig,
    pub sandbox: SandboxConfig,
    pub fetch: FetchConfig,
    pub scheduler: SchedulerConfig,
    pub webhooks: crate::webhooks::WebhookConfig,
    pub metrics: crate::metrics::MetricsConfig,
    /// On SIGINT/SIGTERM, how long running executions may take to finish,
    /// ms; the rest are recorded as failed (`shutdown`).
    pub shutdown_timeout_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            database: DatabaseConfig::default(),
            sandbox: SandboxConfig::default(),
            fetch: FetchConfig::default(),
            scheduler: SchedulerConfig::default(),
            webhooks: crate::webhooks::WebhookConfig::default(),
            metrics: crate::metrics::MetricsConfig::default(),
            shutdown_timeout_ms: 30_000,
        }
    }
}

/// How the delay before a retry grows with the attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backoff {
    /// Every retry waits the script's `retry_delay_ms`.
    Fixed,
    /// Retry n waits `retry_delay_ms * 2^(n-1)`, capped at
    /// `backoff_max_ms`, with ±20 % jitter.
    Exponential,
}

/// `[scheduler]`: cron runs and the dead-letter queue of failed ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerConfig {
    /// Run scheduled scripts on this node.
    pub enabled: bool,
    /// Retries of a failed scheduled run, for scripts that do not set
    /// `max_retries`.
    pub max_retries: u32,
    /// The most retries a script may ask for.
    pub max_retries_cap: u32,
    /// Delay before a retry, ms, for scripts that do not set `retry_delay_ms`.
    pub retry_delay_ms: u64,
    pub backoff: Backoff,
    /// Longest delay exponential backoff reaches, ms.
    pub backoff_max_ms: u64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_retries: 3,
            max_retries_cap: 25,
            retry_delay_ms: 300_000,
            backoff: Backoff::Fixed,
            backoff_max_ms: 3_600_000,
        }
    }
}

/// The range of `retry_delay_ms` (and of `backoff_max_ms`): one second to
/// seven days.
pub const RETRY_DELAY_RANGE_MS: std::ops::RangeInclusive<u64> = 1_000..=604_800_000;

/// `[database]`: where data lives and how many connections to keep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://FILE` (created if missing) or `postgres://USER@HOST/DB`.
    pub url: String,
    /// Most open connections.
    pub max_connections: u32,
    /// Connections kept open when idle.
    pub min_idle: u32,
    /// A connection is closed after this many seconds, idle or not.
    pub max_lifetime_secs: u64,
    /// An idle connection above `min_idle` is closed after this many seconds.
    pub idle_timeout_secs: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://scriptbox.db".into(),
            max_connections: 25,
            min_idle: 10,
            max_lifetime_secs: 300,
            idle_timeout_secs: 60,
        }
    }
}

impl DatabaseConfig {
    pub fn max_lifetime(&self) -> Duration {
        Duration::from_secs(self.max_lifetime_secs)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }
}

impl Config {
    /// Reads `file` (if given), applies `SCRIPTBOX_*` variables from `env`,
    /// and validates the result.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                text.parse::<toml::Table>()
                    .with_context(|| format!("parsing config file {}", path.display()))?
            }
            None => toml::Table::new(),
        };
        apply_env(&mut table, env)?;
        let config: Config = toml::Value::Table(table)
            .try_into()
            .context("invalid configuration")?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<()> {
        self.listen
            .parse::<std::net::SocketAddr>()
            .with_context(|| {
                format!(
                    "listen: {:?} is not an address like 127.0.0.1:8080",
                    self.listen
                )
            })?;
        self.webhooks
            .listen
            .parse::<std::net::SocketAddr>()
            .with_context(|| {
                format!(
                    "webhooks.listen: {:?} is not an address like 127.0.0.1:8081",
                    self.webhooks.listen
                )
            })?;
        let url = &self.database.url;
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            bail!("database.url must start with sqlite: or postgres://, got {url:?}");
        }
        if self.database.max_connections == 0 {
            bail!("database.max_connections must be at least 1");
        }
        if self.database.min_idle > self.database.max_connections {
            bail!("database.min_idle must not exceed database.max_connections");
        }
        self.sandbox.validate().map_err(anyhow::Error::msg)?;
        self.webhooks.validate().map_err(anyhow::Error::msg)?;
        let scheduler = &self.scheduler;
        if scheduler.max_retries > scheduler.max_retries_cap {
            bail!("scheduler.max_retries must not exceed scheduler.max_retries_cap");
        }
        for (key, value) in [
            ("retry_delay_ms", scheduler.retry_delay_ms),
            ("backoff_max_ms", scheduler.backoff_max_ms),
        ] {
            if !RETRY_DELAY_RANGE_MS.contains(&value) {
                bail!(
                    "scheduler.{key} must be from {} to {} (7 days), got {value}",
                    RETRY_DELAY_RANGE_MS.start(),
                    RETRY_DELAY_RANGE_MS.end()
                );
            }
        }
        if scheduler.backoff_max_ms < scheduler.retry_delay_ms {
            bail!("scheduler.backoff_max_ms must be at least scheduler.retry_delay_ms");
        }
        self.webhooks.public_url().map_err(anyhow::Error::msg)?;
        Ok(())
    }
}

/// Overrides keys of `table` with `SCRIPTBOX_<SECTION>_<KEY>` variables. Only
/// names of known keys are read, so other `SCRIPTBOX_*` variables (such as
/// `SCRIPTBOX_CACHE_DIR`) are left alone.
fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<()> {
    let defaults = toml::Table::try_from(Config::default()).context("serialising defaults")?;
    let env: std::collections::HashMap<String, String> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with("SCRIPTBOX_"))
        .collect();
    let known_keys = |section: &toml::Table| -> Vec<String> { section.keys().cloned().collect() };
    for (name, value) in &defaults {
        let keys: Vec<(String, Option<String>)> = match value {
            toml::Value::Table(section) => {
                let mut keys: Vec<String> = known_keys(section);
                // Optional keys have no default to serialise; name them too.
                if name == "sandbox" && !keys.iter().any(|k| k == "artifact_dir") {
                    keys.push("artifact_dir".into());
                }
                keys.into_iter().map(|k| (k, Some(name.clone()))).collect()
            }
            _ => vec![(name.clone(), None)],
        };
        for (key, section) in keys {
            let var = match &section {
                Some(section) => format!("SCRIPTBOX_{}_{}", section, key).to_uppercase(),
                None => format!("SCRIPTBOX_{key}").to_uppercase(),
            };
            let Some(raw) = env.get(&var) else { continue };
            let parsed = format!("v = {raw}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(raw.clone()));
            let target = match &section {
                Some(section) => table
                    .entry(section.clone())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                    .as_table_mut()
                    .with_context(|| format!("{section} must be a table"))?,
                None => &mut *table,
            };
            target.insert(key, parsed);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_valid() {
        let config = Config::load(None, env(&[])).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.database.max_connections, 25);
        assert_eq!(config.database.min_idle, 10);
    }

    #[test]
    fn environment_overrides_file_values() {
        let dir = std::env::temp_dir().join(format!("scriptbox-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\n[sandbox]\npool_max = 8\n",
        )
        .unwrap();
        let config = Config::load(
            Some(&file),
            env(&[
                ("SCRIPTBOX_SANDBOX_POOL_MAX", "12"),
                (
                    "SCRIPTBOX_DATABASE_URL",
                    "postgres://postgres@127.0.0.1/test",
                ),
                ("SCRIPTBOX_FETCH_ALLOW", "[\"localhost\"]"),
                ("SCRIPTBOX_CACHE_DIR", "/elsewhere"),
            ]),
        )
        .unwrap();
        assert_eq!(config.listen, "127.0.0.1:9000");
        assert_eq!(config.sandbox.pool_max, 12);
        assert_eq!(config.database.url, "postgres://postgres@127.0.0.1/test");
        assert_eq!(config.fetch.allow, vec!["localhost".to_string()]);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors_that_name_them() {
        let dir = std::env::temp_dir().join(format!("scriptbox-config-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "[sandbox]\npool_maxx = 8\n").unwrap();
        let error = format!("{:#}", Config::load(Some(&file), env(&[])).unwrap_err());
        assert!(error.contains("pool_maxx"), "{error}");

        let error = format!(
            "{:#}",
            Config::load(None, env(&[("SCRIPTBOX_LISTEN", "nowhere")])).unwrap_err()
        );
        assert!(error.contains("listen"), "{error}");

        let error = format!(
            "{:#}",
            Config::load(None, env(&[("SCRIPTBOX_DATABASE_URL", "mysql://x")])).unwrap_err()
        );
        assert!(error.contains("database.url"), "{error}");
    }

    #[test]
    fn the_example_file_matches_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scriptbox.example.toml");
        let config = Config::load(Some(&path), env(&[])).unwrap();
        assert_eq!(config, Config::default());
    }
}
