//! The sandbox: the only module that knows wasmtime.
//!
//! [`Sandbox`] compiles scripts to QuickJS bytecode (cached per script id and
//! version) and runs bytecode in a fresh guest instance from the
//! [`pool::SandboxPool`], under the run's [`RunLimits`]. Everything a run used
//! and produced comes back in a [`RunOutcome`]; a run that breaks a limit
//! fails with its [`ErrorKind`] and the sandbox keeps serving.
//!
//! - `engine`: wasmtime configuration and the embedded guest
//! - `pool`: pre-instantiated instances, adaptive sizing, teardown
//! - `limits`: limits, error kinds, the memory limiter
//! - `host_api`: the imports scripts call (log, fetch, db, cache, clock)
//! - `fetch`, `kv`: the services behind those imports

pub mod engine;
pub mod fetch;
pub mod host_api;
pub mod kv;
pub mod limits;
pub mod pool;

mod cpu_time;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use moka::sync::Cache;
use serde::{Deserialize, Serialize};
use wasmtime::Trap;

pub use fetch::FetchConfig;
pub use host_api::{ApiCalls, ApiUsage, LogLevel, LogLine};
pub use kv::{KvStore, MemoryKv};
pub use limits::{ErrorKind, RunLimits};
pub use pool::{PoolStats, RENEW_ABOVE_BYTES};

use host_api::exports::scriptbox::sandbox::engine as guest;
use host_api::{HostServices, RunState};
use pool::SandboxPool;

/// `[sandbox]` in the config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxConfig {
    /// Default fuel per run (wasm instructions, about 10 M per ms of CPU:
    /// docs/sandbox.md, "Fuel and time").
    pub fuel: u64,
    /// Default memory cap per run, MiB.
    pub memory_mb: u32,
    /// Default wall-clock deadline per run, ms.
    pub timeout_ms: u64,
    /// Largest JSON output per run, bytes.
    pub max_output_bytes: u32,
    /// Largest console output per run, bytes; each line costs its bytes
    /// plus [`limits::LOG_LINE_OVERHEAD`].
    pub max_log_bytes: u32,
    /// Most console lines kept per run.
    pub max_log_lines: u32,
    /// The most a script may raise `fuel` to.
    pub max_fuel: u64,
    /// The most a script may raise `memory_mb` to. Also sizes each pool slot.
    pub max_memory_mb: u32,
    /// The most a script may raise `timeout_ms` to.
    pub max_timeout_ms: u64,
    /// Instances kept ready when idle.
    pub pool_min: usize,
    /// Most runs in flight at once; more wait for a slot. Each slot reserves
    /// about 4 GiB of address space (not memory) three times over: running,
    /// ready and being torn down.
    pub pool_max: usize,
    /// Most runs of one tenant in flight on this node; 0 means half of
    /// `pool_max` (at least 1).
    pub tenant_max_concurrent: usize,
    /// Most runs of one tenant waiting for a slot on this node; past it new
    /// runs are refused (429) and scheduled occurrences skipped.
    pub tenant_max_queued: usize,
    /// Compiled scripts kept in memory.
    pub compile_cache_size: u64,
    /// Bytes `sdk.cache` may hold across all tenants.
    pub cache_max_bytes: u64,
    /// Where the compiled guest is cached; empty for the default
    /// (`$XDG_CACHE_HOME/scriptbox`).
    pub artifact_dir: Option<PathBuf>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        let run = RunLimits::default();
        Self {
            fuel: run.fuel,
            memory_mb: run.memory_mb,
            timeout_ms: run.timeout_ms,
            max_output_bytes: run.max_output_bytes,
            max_log_bytes: run.max_log_bytes,
            max_log_lines: run.max_log_lines,
            max_fuel: 50_000_000_000,
            max_memory_mb: 256,
            max_timeout_ms: 60_000,
            pool_min: 2,
            pool_max: 16,
            tenant_max_concurrent: 0,
            tenant_max_queued: 1_000,
            compile_cache_size: 10_000,
            cache_max_bytes: 64 << 20,
            artifact_dir: None,
        }
    }
}

impl SandboxConfig {
    /// The limits a run gets when nothing overrides them.
    pub fn default_limits(&self) -> RunLimits {
        RunLimits {
            fuel: self.fuel,
            memory_mb: self.memory_mb,
            timeout_ms: self.timeout_ms,
            max_output_bytes: self.max_output_bytes,
            max_log_bytes: self.max_log_bytes,
            max_log_lines: self.max_log_lines,
        }
    }

    /// `tenant_max_concurrent`, with 0 read as half of `pool_max`.
    pub fn tenant_max_concurrent(&self) -> usize {
        match self.tenant_max_concurrent {
            0 => (self.pool_max / 2).max(1),
            n => n.min(self.pool_max),
        }
    }

    /// Applies per-script overrides, refusing any above the caps.
    pub fn limits_with(&self, overrides: &LimitOverrides) -> Result<RunLimits, String> {
        let mut limits = self.default_limits();
        if let Some(fuel) = overrides.fuel {
            if fuel == 0 || fuel > self.max_fuel {
                return Err(format!("limits.fuel must be from 1 to {}", self.max_fuel));
            }
            limits.fuel = fuel;
        }
        if let Some(mb) = overrides.memory_mb {
            if mb < 8 || mb > self.max_memory_mb {
                return Err(format!(
                    "limits.memory_mb must be from 8 to {}",
                    self.max_memory_mb
                ));
            }
            limits.memory_mb = mb;
        }
        if let Some(ms) = overrides.timeout_ms {
            if ms == 0 || ms > self.max_timeout_ms {
                return Err(format!(
                    "limits.timeout_ms must be from 1 to {}",
                    self.max_timeout_ms
                ));
            }
            limits.timeout_ms = ms;
        }
        Ok(limits)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.pool_max == 0 {
            return Err("sandbox.pool_max must be at least 1".into());
        }
        if self.max_log_lines == 0 {
            return Err("sandbox.max_log_lines must be at least 1".into());
        }
        if self.pool_min > self.pool_max {
            return Err("sandbox.pool_min must not exceed sandbox.pool_max".into());
        }
        if self.memory_mb > self.max_memory_mb {
            return Err("sandbox.memory_mb must not exceed sandbox.max_memory_mb".into());
        }
        if self.fuel > self.max_fuel || self.timeout_ms > self.max_timeout_ms {
            return Err("sandbox defaults must not exceed their max_ caps".into());
        }
        Ok(())
    }
}

/// Per-script limit overrides (`limits` in the API).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    pub fuel: Option<u64>,
    pub memory_mb: Option<u32>,
    pub timeout_ms: Option<u64>,
}

/// A syntax error, with where it is (1-based; 0 when unknown).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{message} (line {line}, column {column})")]
pub struct CompileError {
    pub message: String,
    pub line: u32,
    pub column: u32,
}

/// Why compiling did not produce bytecode.
#[derive(Debug, thiserror::Error)]
pub enum CompileFailure {
    #[error("syntax error: {0}")]
    Syntax(CompileError),
    #[error(transparent)]
    Sandbox(#[from] RunFailure),
}

/// QuickJS bytecode produced by this sandbox's guest. Only [`Sandbox::compile`]
/// makes one, so user-supplied bytecode can never reach the guest.
#[derive(Debug)]
pub struct Bytecode(Vec<u8>);

impl Bytecode {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What a run is given. Its `Debug` leaves out the input and the context,
/// which carries the script's secrets.
#[derive(Clone)]
pub struct RunRequest {
    /// The tenant whose `sdk.db` and `sdk.cache` the run sees.
    pub tenant: String,
    /// JSON text of the `input` argument.
    pub input: String,
    /// JSON text of the `ctx` argument.
    pub context: String,
    pub limits: RunLimits,
}

impl std::fmt::Debug for RunRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunRequest")
            .field("tenant", &self.tenant)
            .field("input_bytes", &self.input.len())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// What a script learns about its run: the `ctx` argument
/// (`ctx.scriptId`, `ctx.executionId`, `ctx.tenantId`, `ctx.trigger`,
/// `ctx.attempt`, `ctx.env`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunContext {
    pub script_id: String,
    pub execution_id: String,
    pub tenant_id: String,
    /// `manual`, `scheduled` or `webhook`.
    pub trigger: &'static str,
    pub attempt: i64,
    /// The script's vars and declared secrets.
    pub env: Env,
    /// A scheduled run's cron expression (`controller.cron` in the handler
    /// form).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
}

/// A run's environment: names to values (vars and secrets alike). Its
/// `Debug` shows the names only.
#[derive(Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Env(pub std::collections::BTreeMap<String, String>);

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl RunRequest {
    /// A run for `context`'s tenant, with its `ctx` and `input` (JSON text).
    pub fn new(context: &RunContext, input: String, limits: RunLimits) -> Self {
        Self {
            tenant: context.tenant_id.clone(),
            input,
            context: serde_json::to_string(context).expect("a context serialises"),
            limits,
        }
    }
}

/// A `Response` the script returned, to be sent verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// Whether the reply can be sent as HTTP: a status from 200 to 599 and
    /// header names and values that are valid on the wire (RFC 9110 tokens;
    /// no CR, LF or NUL in values). The message names what is wrong.
    pub fn check(&self) -> Result<(), String> {
        if !(200..=599).contains(&self.status) {
            return Err(format!(
                "the Response status {} is not allowed: use 200-599",
                self.status
            ));
        }
        for (name, value) in &self.headers {
            let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            if name.is_empty() || !name.bytes().all(token) {
                return Err(format!(
                    "the Response header name {name:?} is not valid HTTP"
                ));
            }
            let field = |b: u8| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80;
            if !value.bytes().all(field) {
                return Err(format!(
                    "the Response header {name} has a value that is not valid HTTP"
                ));
            }
        }
        Ok(())
    }
}

/// A successful run's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSuccess {
    /// The returned value as JSON text.
    pub output: String,
    pub reply: Option<Reply>,
}

/// A failed run's error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct RunFailure {
    pub kind: ErrorKind,
    pub message: String,
    pub stack: Option<String>,
}

/// The file name the guest compiles every script under.
const GUEST_FILE: &str = "script.js";
/// How frames of the runtime's own JavaScript (the globals' prelude) are
/// located in a stack.
const RUNTIME_FRAME: &str = "(eval_script:";

impl RunFailure {
    /// The stack as the script's author reads it: frames located in
    /// `file` (the script's name, or the path `scriptbox run` was given)
    /// instead of the guest's `script.js`, and none of the runtime's own
    /// frames (`fetch`, `settle`, `sdk` internals).
    pub fn name_frames(&mut self, file: &str) {
        let Some(stack) = &self.stack else { return };
        let from = format!("({GUEST_FILE}:");
        let to = format!("({file}:");
        let named: Vec<String> = stack
            .lines()
            .filter(|line| !line.contains(RUNTIME_FRAME))
            .map(|line| line.replace(&from, &to))
            .collect();
        self.stack = Some(named.join("\n"));
    }

    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            stack: None,
        }
    }
}

/// What a run used, measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    pub fuel_used: u64,
    /// Peak linear memory of the instance, bytes.
    pub memory_peak_bytes: u64,
    /// Wall time of the run itself, from the call into the guest to its end.
    pub wall: Duration,
    /// CPU time the run's thread spent executing it.
    pub cpu: Duration,
    /// Time spent waiting for a pool instance before the run.
    pub pool_wait: Duration,
    pub api: ApiCalls,
}

/// Everything a run produced.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub result: Result<RunSuccess, RunFailure>,
    pub logs: Vec<LogLine>,
    pub usage: Usage,
}

/// Compiles and runs scripts. Cheap to share (`Arc` inside).
#[derive(Clone)]
pub struct Sandbox {
    pool: Arc<SandboxPool>,
    compiled: Cache<(String, i64), Arc<Bytecode>>,
    config: Arc<SandboxConfig>,
    compile_cache: CompileCacheCounters,
    meter_fuel: bool,
}

/// Lookups of the compile cache, for metrics.
#[derive(Clone)]
pub struct CompileCacheCounters {
    pub hits: prometheus::IntCounter,
    pub misses: prometheus::IntCounter,
}

impl Default for CompileCacheCounters {
    fn default() -> Self {
        Self {
            hits: prometheus::IntCounter::new(
                "scriptbox_compile_cache_hits_total",
                "Runs whose bytecode was in the compile cache",
            )
            .expect("valid metric"),
            misses: prometheus::IntCounter::new(
                "scriptbox_compile_cache_misses_total",
                "Runs that had to compile their script first",
            )
            .expect("valid metric"),
        }
    }
}

impl Sandbox {
    /// Builds the engine, loads the guest and starts the pool. `db` backs
    /// `sdk.db`. Must be called inside a tokio runtime.
    pub fn start(config: SandboxConfig, fetch: FetchConfig, db: Arc<dyn KvStore>) -> Result<Self> {
        Self::start_with(config, fetch, db, true, None)
    }

    /// [`Sandbox::start`] with the pool in `shards` shards instead of one
    /// per worker thread of the current runtime. For measuring what the
    /// shards change (`cargo bench --bench sandbox`) and for tests that need
    /// a fixed number of shards, never for serving.
    #[doc(hidden)]
    pub fn start_sharded(
        config: SandboxConfig,
        fetch: FetchConfig,
        db: Arc<dyn KvStore>,
        shards: usize,
    ) -> Result<Self> {
        Self::start_with(config, fetch, db, true, Some(shards))
    }

    /// [`Sandbox::start`] with fuel metering off: runs have no CPU budget,
    /// and their deadline is checked only at host calls, since without fuel
    /// a guest never yields. For measuring what metering costs (`cargo bench
    /// --bench sandbox`), never for serving.
    #[doc(hidden)]
    pub fn start_unmetered(
        config: SandboxConfig,
        fetch: FetchConfig,
        db: Arc<dyn KvStore>,
    ) -> Result<Self> {
        Self::start_with(config, fetch, db, false, None)
    }

    fn start_with(
        config: SandboxConfig,
        fetch: FetchConfig,
        db: Arc<dyn KvStore>,
        meter_fuel: bool,
        shards: Option<usize>,
    ) -> Result<Self> {
        config.validate().map_err(anyhow::Error::msg)?;
        let limits = engine::EngineLimits {
            instance_slots: ((config.pool_max + pool::COMPILE_SLOTS) as u32) * 3 + 4,
            max_memory_mb: config.max_memory_mb,
            meter_fuel,
        };
        let guest = engine::GuestLoader::new(
            config
                .artifact_dir
                .clone()
                .or_else(engine::default_cache_dir),
        );
        let factory: pool::EngineFactory = Arc::new(move || {
            let engine = engine::build_engine(limits)?;
            let component = guest.load(&engine)?;
            Ok((engine, component))
        });
        let services = Arc::new(HostServices {
            fetcher: fetch::Fetcher::new(fetch).context("building the fetch client")?,
            db,
            cache: kv::TenantCache::new(config.cache_max_bytes),
        });
        // One shard per thread that runs scripts (pool.rs says why).
        let shards = shards.unwrap_or_else(|| {
            tokio::runtime::Handle::current()
                .metrics()
                .num_workers()
                .min(pool::MAX_SHARDS)
        });
        let pool = SandboxPool::start(
            factory,
            services,
            (config.max_memory_mb as usize) << 20,
            meter_fuel,
            (config.pool_min, config.pool_max),
            shards,
        )?;
        Ok(Self {
            pool,
            compiled: Cache::new(config.compile_cache_size),
            config: Arc::new(config),
            compile_cache: CompileCacheCounters::default(),
            meter_fuel,
        })
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    pub fn compile_cache_counters(&self) -> &CompileCacheCounters {
        &self.compile_cache
    }

    pub fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }

    /// Why the pool last failed to make an instance, if it did.
    pub fn pool_error(&self) -> Option<String> {
        self.pool.last_error()
    }

    /// Compiles source to bytecode in a fresh instance. Nothing in it runs.
    pub async fn compile(&self, source: &str) -> Result<Arc<Bytecode>, CompileFailure> {
        let limits = self.config.default_limits();
        let mut lease = self.lease(pool::Purpose::Compile).await?;
        let (store, bindings) = lease.parts();
        prepare(store, &limits, String::new(), self.meter_fuel)?;
        let call = bindings
            .scriptbox_sandbox_engine()
            .call_compile(&mut *store, source);
        let result = tokio::time::timeout(limits.timeout(), call).await;
        match result {
            Ok(Ok(Ok(bytes))) => Ok(Arc::new(Bytecode(bytes))),
            Ok(Ok(Err(e))) => Err(CompileFailure::Syntax(CompileError {
                message: e.message,
                line: e.line,
                column: e.column,
            })),
            Ok(Err(trap)) => Err(classify_trap(store, trap).into()),
            Err(_) => Err(RunFailure::new(ErrorKind::Timeout, "compiling took too long").into()),
        }
    }

    /// A script version's bytecode if it is cached (counted as a hit).
    pub fn cached(&self, script_id: &str, version: i64) -> Option<Arc<Bytecode>> {
        let hit = self.compiled.get(&(script_id.to_owned(), version))?;
        self.compile_cache.hits.inc();
        Some(hit)
    }

    /// The bytecode of a script version, compiled once and then cached.
    pub async fn compile_cached(
        &self,
        script_id: &str,
        version: i64,
        source: &str,
    ) -> Result<Arc<Bytecode>, CompileFailure> {
        let key = (script_id.to_owned(), version);
        if let Some(hit) = self.compiled.get(&key) {
            self.compile_cache.hits.inc();
            return Ok(hit);
        }
        self.compile_cache.misses.inc();
        let bytecode = self.compile(source).await?;
        self.compiled.insert(key, bytecode.clone());
        Ok(bytecode)
    }

    /// Caches bytecode already compiled for a script version (on save).
    pub fn remember(&self, script_id: &str, version: i64, bytecode: Arc<Bytecode>) {
        self.compiled
            .insert((script_id.to_owned(), version), bytecode);
    }

    /// Drops one script version's bytecode (after an update or delete).
    pub fn forget(&self, script_id: &str, version: i64) {
        self.compiled.invalidate(&(script_id.to_owned(), version));
    }

    /// Whether a script version's bytecode is cached.
    pub fn is_cached(&self, script_id: &str, version: i64) -> bool {
        self.compiled.contains_key(&(script_id.to_owned(), version))
    }

    /// Runs bytecode in a fresh instance under `request.limits`.
    pub async fn run(&self, bytecode: &Bytecode, request: RunRequest) -> RunOutcome {
        let mut lease = match self.lease(pool::Purpose::Run).await {
            Ok(lease) => lease,
            Err(failure) => {
                return RunOutcome {
                    result: Err(failure),
                    logs: Vec::new(),
                    usage: Usage::default(),
                };
            }
        };
        let waited = lease.waited;
        let limits = request.limits;
        let (store, bindings) = lease.parts();
        if let Err(failure) = prepare(store, &limits, request.tenant, self.meter_fuel) {
            return RunOutcome {
                result: Err(failure),
                logs: Vec::new(),
                usage: Usage::default(),
            };
        }
        let options = guest::RunOptions {
            max_output_bytes: limits.max_output_bytes,
        };
        let started = Instant::now();
        let call = bindings.scriptbox_sandbox_engine().call_run(
            &mut *store,
            &bytecode.0,
            &request.input,
            &request.context,
            options,
        );
        // The deadline is checked whenever the call yields: every
        // `engine::YIELD_EVERY_FUEL` of fuel, and at every host call that
        // waits.
        let (result, cpu) = cpu_time::measure(tokio::time::timeout(limits.timeout(), call)).await;
        let wall = started.elapsed();

        let result = match result {
            Ok(Ok(Ok(out))) => {
                let reply = out.reply.map(|r| Reply {
                    status: r.status,
                    headers: r.headers,
                    body: r.body,
                });
                match reply.as_ref().map(Reply::check) {
                    Some(Err(why)) => Err(RunFailure::new(ErrorKind::OutputError, why)),
                    _ => Ok(RunSuccess {
                        output: out.json,
                        reply,
                    }),
                }
            }
            Ok(Ok(Err(e))) => Err(guest_failure(store, e)),
            Ok(Err(trap)) => Err(classify_trap(store, trap)),
            Err(_) => Err(timeout_failure(&limits)),
        };
        // Unmetered, a run reports no fuel used.
        let fuel_left = if self.meter_fuel {
            store.get_fuel().unwrap_or(0)
        } else {
            limits.fuel
        };
        let mut run = std::mem::replace(
            &mut store.data_mut().run,
            RunState::new(String::new(), Duration::ZERO, Default::default()),
        );
        RunOutcome {
            result,
            logs: run.take_logs(),
            usage: Usage {
                fuel_used: limits.fuel.saturating_sub(fuel_left),
                memory_peak_bytes: store.data().limiter.peak_bytes() as u64,
                wall,
                cpu,
                pool_wait: waited,
                api: run.api,
            },
        }
    }

    async fn lease(&self, purpose: pool::Purpose) -> Result<pool::Lease, RunFailure> {
        self.pool.lease(purpose).await.map_err(|error| {
            tracing::error!(error = format!("{error:#}"), "no sandbox instance");
            RunFailure::new(ErrorKind::Internal, "no sandbox instance is available")
        })
    }
}

/// Gives a leased instance its run: fuel, memory cap, deadline, tenant.
fn prepare(
    store: &mut wasmtime::Store<host_api::HostState>,
    limits: &RunLimits,
    tenant: String,
    meter_fuel: bool,
) -> Result<(), RunFailure> {
    if meter_fuel {
        store
            .set_fuel(limits.fuel)
            .map_err(|e| RunFailure::new(ErrorKind::Internal, e.to_string()))?;
    }
    let state = store.data_mut();
    state.limiter.set_cap(limits.memory_bytes());
    state.run = RunState::new(tenant, limits.timeout(), limits.log_budget());
    Ok(())
}

fn timeout_failure(limits: &RunLimits) -> RunFailure {
    RunFailure::new(
        ErrorKind::Timeout,
        format!("the run exceeded its {} ms deadline", limits.timeout_ms),
    )
}

/// Maps an error the guest reported itself.
fn guest_failure(
    store: &wasmtime::Store<host_api::HostState>,
    error: guest::RunError,
) -> RunFailure {
    use guest::ErrorKind as G;
    let kind = match error.kind {
        G::JsError | G::InvalidScript => ErrorKind::JsError,
        G::OutputError => ErrorKind::OutputError,
        G::OutputLimit => ErrorKind::OutputLimit,
        G::StackOverflow => ErrorKind::StackOverflow,
        G::MemoryLimit => ErrorKind::MemoryLimit,
    };
    // An allocation the limiter refused often surfaces as some other
    // exception; the refusal is the real cause.
    let kind = if store.data().limiter.denied() && kind == ErrorKind::JsError {
        ErrorKind::MemoryLimit
    } else {
        kind
    };
    RunFailure {
        kind,
        message: error.message,
        stack: error.stack,
    }
}

/// Maps a trap (the guest did not return) to the limit that caused it.
fn classify_trap(
    store: &wasmtime::Store<host_api::HostState>,
    error: wasmtime::Error,
) -> RunFailure {
    let state = store.data();
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => {
            return RunFailure::new(ErrorKind::CpuLimit, "the run used all its fuel");
        }
        Some(Trap::StackOverflow) => {
            return RunFailure::new(
                ErrorKind::StackOverflow,
                "maximum call stack size exceeded (recursion too deep)",
            );
        }
        // The guest's shadow stack (C locals, call arguments) sits at the
        // bottom of linear memory and grows down, so overflowing it faults
        // below address 0 instead of overwriting data. Recursion with many
        // arguments per call reaches it before the wasm stack limit.
        Some(Trap::MemoryOutOfBounds) => {
            return RunFailure::new(
                ErrorKind::StackOverflow,
                "maximum call stack size exceeded (the interpreter's stack overflowed)",
            );
        }
        _ => {}
    }
    if state.limiter.denied() {
        return RunFailure::new(
            ErrorKind::MemoryLimit,
            format!(
                "the run needed more than its memory limit ({} MiB at peak)",
                state.limiter.peak_bytes() >> 20
            ),
        );
    }
    tracing::error!(error = format!("{error:?}"), "the guest trapped");
    RunFailure::new(ErrorKind::Internal, format!("the sandbox trapped: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacks_name_the_script_and_hide_the_runtime_frames() {
        let mut failure = RunFailure {
            kind: ErrorKind::JsError,
            message: "Error: refused".into(),
            stack: Some(
                "    at <anonymous> (eval_script:123:60)\n    at settle (eval_script:113:30)\n    \
                 at inner (script.js:2:19)\n    at map (native)\n    at default (script.js:7:16)\n"
                    .into(),
            ),
        };
        failure.name_frames("charge.js");
        assert_eq!(
            failure.stack.as_deref(),
            Some(
                "    at inner (charge.js:2:19)\n    at map (native)\n    at default (charge.js:7:16)"
            )
        );
    }
}
