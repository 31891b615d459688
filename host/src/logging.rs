//! What the service writes to stderr: `tracing` events, filtered by
//! `RUST_LOG`, as text for people or as one JSON object per line for log
//! shippers (`[log] format`). docs/operations.md lists what is logged at
//! which level.

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

/// `[log]`: how events are written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One line per event; colours only when stderr is a terminal.
    #[default]
    Text,
    /// One JSON object per event: `timestamp`, `level`, `target`, the
    /// event's fields (`message` among them), the current `span` and the
    /// list of enclosing `spans` with their fields (request id, tenant,
    /// script, execution, trigger).
    Json,
}

/// Installs the global subscriber. `default_filter` applies when
/// `RUST_LOG` is unset or does not parse.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
}
