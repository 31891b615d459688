//! What a run may use, and the kinds of error that end a run.
//!
//! Fuel, memory and the deadline are enforced from outside the guest by
//! wasmtime; output and log sizes by the guest and the host imports. Every
//! limit ends the run with its own [`ErrorKind`] and leaves the host serving.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use wasmtime::ResourceLimiter;

/// Per-run limits. Defaults come from `[sandbox]` in the config; a script may
/// lower or raise them within the caps the config sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunLimits {
    /// Wasm instructions the run may execute (wasmtime fuel). About 10 M fuel
    /// is one millisecond of CPU (docs/sandbox.md, "Fuel and time").
    pub fuel: u64,
    /// Linear memory cap in MiB; the guest starts at about 4 MiB.
    pub memory_mb: u32,
    /// Wall-clock deadline, host calls included.
    pub timeout_ms: u64,
    /// Largest JSON output (or `Response` body) in bytes.
    pub max_output_bytes: u32,
    /// Largest total of console output in bytes, each line counted as its
    /// bytes plus [`LOG_LINE_OVERHEAD`].
    pub max_log_bytes: u32,
    /// Most console lines kept.
    pub max_log_lines: u32,
}

/// What each console line costs against `max_log_bytes` beyond its own
/// bytes: about what storing and returning it costs (level, time, JSON), so
/// empty lines are not free.
pub const LOG_LINE_OVERHEAD: usize = 64;

/// How much console output a run may keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogBudget {
    pub max_bytes: usize,
    pub max_lines: usize,
}

impl RunLimits {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    pub fn memory_bytes(&self) -> usize {
        (self.memory_mb as usize) << 20
    }

    pub fn log_budget(&self) -> LogBudget {
        LogBudget {
            max_bytes: self.max_log_bytes as usize,
            max_lines: self.max_log_lines as usize,
        }
    }
}

impl Default for RunLimits {
    fn default() -> Self {
        Self {
            fuel: 5_000_000_000,
            memory_mb: 64,
            timeout_ms: 5_000,
            max_output_bytes: 1 << 20,
            max_log_bytes: 256 << 10,
            max_log_lines: 1_000,
        }
    }
}

/// Why a run failed. The names (`snake_case`) are part of the API: they are
/// stored as `error_type` and used as the `error_type` metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The run used all its fuel.
    CpuLimit,
    /// The run asked for more linear memory than its cap.
    MemoryLimit,
    /// The run passed its wall-clock deadline.
    Timeout,
    /// The output exceeded its size limit.
    OutputLimit,
    /// Recursion exhausted the JavaScript or wasm stack.
    StackOverflow,
    /// The script threw or its promise rejected.
    JsError,
    /// The returned value has no JSON form.
    OutputError,
    /// The source does not compile.
    CompileError,
    /// The sandbox itself failed (a bug or resource exhaustion on the host).
    Internal,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::CpuLimit => "cpu_limit",
            ErrorKind::MemoryLimit => "memory_limit",
            ErrorKind::Timeout => "timeout",
            ErrorKind::OutputLimit => "output_limit",
            ErrorKind::StackOverflow => "stack_overflow",
            ErrorKind::JsError => "js_error",
            ErrorKind::OutputError => "output_error",
            ErrorKind::CompileError => "compile_error",
            ErrorKind::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Caps linear memory per run and records the peak, so a denied growth can be
/// told apart from any other failure (wasmtime reports it as an ordinary
/// error, not a trap code).
#[derive(Debug)]
pub struct MemoryLimiter {
    cap_bytes: usize,
    peak_bytes: usize,
    denied: bool,
}

impl MemoryLimiter {
    /// A limiter for instantiation, before the run's own cap is known.
    pub fn new(cap_bytes: usize) -> Self {
        Self {
            cap_bytes,
            peak_bytes: 0,
            denied: false,
        }
    }

    pub fn set_cap(&mut self, cap_bytes: usize) {
        self.cap_bytes = cap_bytes;
    }

    pub fn peak_bytes(&self) -> usize {
        self.peak_bytes
    }

    pub fn denied(&self) -> bool {
        self.denied
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.cap_bytes {
            self.denied = true;
            return Ok(false);
        }
        self.peak_bytes = self.peak_bytes.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // QuickJS never grows its function table; a guest that tries to grow
        // it without bound is refused well before the pool's slot size.
        Ok(desired <= 100_000)
    }
}
