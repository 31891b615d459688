//! The imports of the WIT world: what a script can ask of the host.
//!
//! Each instance's store holds a [`HostState`]. The parts that belong to one
//! run (tenant, logs, deadline) are filled in when the pool hands the
//! instance to that run; the shared services (HTTP client, key-value stores)
//! are the same for every run.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use wasmtime::component::{HasSelf, Linker};

use super::fetch::{FetchRequest, Fetcher};
use super::kv::{self, KvStore, TenantCache};
use super::limits::{LOG_LINE_OVERHEAD, LogBudget, MemoryLimiter};

wasmtime::component::bindgen!({
    world: "script-runtime",
    path: "../wit",
    imports: { default: async | trappable },
    exports: { default: async },
});

use self::scriptbox::sandbox::{cache, clock, db, http, log, random};

/// Services shared by every run.
pub struct HostServices {
    pub fetcher: Fetcher,
    pub db: Arc<dyn KvStore>,
    pub cache: TenantCache,
}

/// One line of console output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    pub level: LogLevel,
    pub message: String,
    /// Milliseconds since the run started.
    pub at_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

/// Calls a run made to one kind of host API, for metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiUsage {
    pub calls: u32,
    pub total: Duration,
    /// Each call's duration, in call order.
    pub each: Vec<Duration>,
}

/// Host API calls of one run, by `api_type` (http, db, cache).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiCalls {
    pub http: ApiUsage,
    pub db: ApiUsage,
    pub cache: ApiUsage,
}

/// The per-run half of the host state.
#[derive(Debug)]
pub struct RunState {
    pub tenant: String,
    pub started: Instant,
    pub deadline: Instant,
    pub logs: Vec<LogLine>,
    /// Bytes of `logs`, each line counted with [`LOG_LINE_OVERHEAD`].
    pub log_bytes: usize,
    pub log_budget: LogBudget,
    /// Lines written after the budget ran out, counted but not kept.
    pub dropped_lines: u64,
    pub api: ApiCalls,
}

impl RunState {
    pub fn new(tenant: String, timeout: Duration, log_budget: LogBudget) -> Self {
        let started = Instant::now();
        Self {
            tenant,
            started,
            deadline: started + timeout,
            logs: Vec::new(),
            log_bytes: 0,
            log_budget,
            dropped_lines: 0,
            api: ApiCalls::default(),
        }
    }

    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// The run's console lines, ending with a note of how many more were
    /// written past the budget, if any.
    pub fn take_logs(&mut self) -> Vec<LogLine> {
        let mut logs = std::mem::take(&mut self.logs);
        if self.dropped_lines > 0 {
            logs.push(LogLine {
                level: LogLevel::Warn,
                message: format!("[truncated: {} more lines]", self.dropped_lines),
                at_ms: self.started.elapsed().as_millis() as u64,
            });
        }
        logs
    }
}

/// The data of one store: the memory limiter and the current run.
pub struct HostState {
    pub limiter: MemoryLimiter,
    pub services: Arc<HostServices>,
    pub run: RunState,
}

impl HostState {
    pub fn new(services: Arc<HostServices>, memory_cap: usize) -> Self {
        Self {
            limiter: MemoryLimiter::new(memory_cap),
            services,
            run: RunState::new(
                String::new(),
                Duration::from_secs(3600),
                LogBudget::default(),
            ),
        }
    }
}

/// Adds the world's imports to a linker. They are all the guest imports:
/// it answers its C library's WASI calls itself, from `clock` and `random`
/// (guest-js-engine/runtime/src/system.rs).
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    ScriptRuntime::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    Ok(())
}

/// Times a host call into the run's usage for `api_type`.
fn record(usage: &mut ApiUsage, started: Instant) {
    let took = started.elapsed();
    usage.calls += 1;
    usage.total += took;
    usage.each.push(took);
}

impl log::Host for HostState {
    async fn write(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let run = &mut self.run;
        // Past either budget the run goes on; its lines are counted, not
        // kept, and the stored logs end with how many there were.
        let cost = message.len() + LOG_LINE_OVERHEAD;
        if run.dropped_lines > 0
            || run.logs.len() >= run.log_budget.max_lines
            || run.log_bytes + cost > run.log_budget.max_bytes
        {
            run.dropped_lines += 1;
            return Ok(());
        }
        run.log_bytes += cost;
        let level = match level {
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        let at_ms = run.started.elapsed().as_millis() as u64;
        run.logs.push(LogLine {
            level,
            message,
            at_ms,
        });
        Ok(())
    }
}

impl http::Host for HostState {
    async fn fetch(
        &mut self,
        req: http::Request,
    ) -> wasmtime::Result<Result<http::Response, String>> {
        let started = Instant::now();
        let request = FetchRequest {
            method: req.method,
            url: req.url,
            headers: req.headers,
            body: req.body,
        };
        let result = self
            .services
            .fetcher
            .fetch(request, self.run.remaining())
            .await
            .map(|r| http::Response {
                status: r.status,
                headers: r.headers,
                body: r.body,
            });
        record(&mut self.run.api.http, started);
        Ok(result)
    }
}

impl db::Host for HostState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, String>> {
        let started = Instant::now();
        let result = match kv::check_entry(&key, None) {
            Err(why) => Err(why),
            Ok(()) => self
                .services
                .db
                .get(&self.run.tenant, &key)
                .await
                .map_err(storage_error),
        };
        record(&mut self.run.api.db, started);
        Ok(result)
    }

    async fn set(&mut self, key: String, value: String) -> wasmtime::Result<Result<(), String>> {
        let started = Instant::now();
        let result = match kv::check_entry(&key, Some(&value)) {
            Err(why) => Err(why),
            Ok(()) => self
                .services
                .db
                .set(&self.run.tenant, &key, &value)
                .await
                .map_err(storage_error),
        };
        record(&mut self.run.api.db, started);
        Ok(result)
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<bool, String>> {
        let started = Instant::now();
        let result = match kv::check_entry(&key, None) {
            Err(why) => Err(why),
            Ok(()) => self
                .services
                .db
                .delete(&self.run.tenant, &key)
                .await
                .map_err(storage_error),
        };
        record(&mut self.run.api.db, started);
        Ok(result)
    }

    async fn list_keys(&mut self, prefix: String) -> wasmtime::Result<Result<Vec<String>, String>> {
        let started = Instant::now();
        let result = match kv::check_prefix(&prefix) {
            Err(why) => Err(why),
            Ok(()) => self
                .services
                .db
                .list(&self.run.tenant, &prefix, kv::MAX_LIST_KEYS)
                .await
                .map_err(storage_error),
        };
        record(&mut self.run.api.db, started);
        Ok(result)
    }
}

/// Storage failures are logged in full; the script sees a short message.
fn storage_error(error: anyhow::Error) -> String {
    tracing::error!(error = format!("{error:#}"), "sdk.db storage failed");
    "sdk.db is unavailable right now".into()
}

impl cache::Host for HostState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, String>> {
        let started = Instant::now();
        let result =
            kv::check_entry(&key, None).map(|()| self.services.cache.get(&self.run.tenant, &key));
        record(&mut self.run.api.cache, started);
        Ok(result)
    }

    async fn set(
        &mut self,
        key: String,
        value: String,
        ttl_ms: Option<u64>,
    ) -> wasmtime::Result<Result<(), String>> {
        let started = Instant::now();
        let result = kv::check_entry(&key, Some(&value)).map(|()| {
            let ttl = ttl_ms.map(Duration::from_millis);
            self.services.cache.set(&self.run.tenant, &key, &value, ttl)
        });
        record(&mut self.run.api.cache, started);
        Ok(result)
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<bool, String>> {
        let started = Instant::now();
        let result = kv::check_entry(&key, None)
            .map(|()| self.services.cache.delete(&self.run.tenant, &key));
        record(&mut self.run.api.cache, started);
        Ok(result)
    }
}

impl clock::Host for HostState {
    async fn now_ms(&mut self) -> wasmtime::Result<u64> {
        Ok(SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0))
    }

    async fn monotonic_ns(&mut self) -> wasmtime::Result<u64> {
        Ok(self.run.started.elapsed().as_nanos() as u64)
    }
}

/// The most bytes one `random.fill` call returns; the guest asks again for
/// more.
const RANDOM_CHUNK: u32 = 1 << 16;

impl random::Host for HostState {
    async fn fill(&mut self, len: u32) -> wasmtime::Result<Vec<u8>> {
        let mut bytes = vec![0; len.min(RANDOM_CHUNK) as usize];
        getrandom::fill(&mut bytes)
            .map_err(|e| wasmtime::Error::msg(format!("no randomness: {e}")))?;
        Ok(bytes)
    }
}
