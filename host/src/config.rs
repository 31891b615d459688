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

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::logging::LogConfig;
use crate::metrics::MetricsConfig;
use crate::retention::RetentionConfig;
use crate::sandbox::{FetchConfig, SandboxConfig};
use crate::scheduler::SchedulerConfig;
use crate::secrets::SecretsConfig;
use crate::store::DatabaseConfig;
use crate::webhooks::WebhookConfig;

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
    pub webhooks: WebhookConfig,
    pub metrics: MetricsConfig,
    pub log: LogConfig,
    pub secrets: SecretsConfig,
    pub retention: RetentionConfig,
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
            webhooks: WebhookConfig::default(),
            metrics: MetricsConfig::default(),
            log: LogConfig::default(),
            secrets: SecretsConfig::default(),
            retention: RetentionConfig::default(),
            shutdown_timeout_ms: 30_000,
        }
    }
}

impl Config {
    /// Reads `file` (if given), applies `SCRIPTBOX_*` variables from `env`,
    /// and validates the result.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self> {
        let text = match file {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("reading config file {}", path.display()))?,
            None => String::new(),
        };
        match file {
            Some(path) => {
                Self::parse(&text, env).with_context(|| format!("config file {}", path.display()))
            }
            None => Self::parse(&text, env),
        }
    }

    /// Reads a config file's text, applies `SCRIPTBOX_*` variables from
    /// `env`, and validates the result.
    pub fn parse(text: &str, env: impl IntoIterator<Item = (String, String)>) -> Result<Self> {
        let mut table = text.parse::<toml::Table>().context("parsing TOML")?;
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
        self.database.validate().map_err(anyhow::Error::msg)?;
        self.sandbox.validate().map_err(anyhow::Error::msg)?;
        self.webhooks.validate().map_err(anyhow::Error::msg)?;
        self.scheduler.validate().map_err(anyhow::Error::msg)?;
        self.retention.validate().map_err(anyhow::Error::msg)?;
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
                let optional: &[&str] = match name.as_str() {
                    "sandbox" => &["artifact_dir"],
                    "secrets" => &["key", "key_file"],
                    _ => &[],
                };
                for key in optional {
                    if !keys.iter().any(|k| k == key) {
                        keys.push((*key).into());
                    }
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
    fn the_secrets_key_comes_from_the_environment_and_is_never_printed() {
        let key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
        let config = Config::load(
            None,
            env(&[
                ("SCRIPTBOX_SECRETS_KEY", key),
                ("SCRIPTBOX_SECRETS_KEY_FILE", "/var/lib/scriptbox/key"),
            ]),
        )
        .unwrap();
        assert_eq!(config.secrets.key.as_deref(), Some(key));
        assert_eq!(
            config.secrets.key_file.as_deref(),
            Some(Path::new("/var/lib/scriptbox/key"))
        );
        let shown = format!("{config:?}");
        assert!(
            !shown.contains(key) && shown.contains("[redacted]"),
            "{shown}"
        );
    }

    #[test]
    fn the_example_file_matches_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scriptbox.example.toml");
        let config = Config::load(Some(&path), env(&[])).unwrap();
        assert_eq!(config, Config::default());
    }
}
