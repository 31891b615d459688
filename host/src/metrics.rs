//! Prometheus metrics: one registry per node, rendered at `GET /metrics`.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder, exponential_buckets,
};
use serde::{Deserialize, Serialize};

use crate::sandbox::{RunOutcome, Sandbox};

/// `[metrics]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Label run metrics with `script_id`. Off: every label set drops it,
    /// so the number of series does not grow with the number of scripts.
    pub per_script_labels: bool,
    /// When set, `/metrics` answers only `Authorization: Bearer <token>`
    /// (it names every tenant's ids and run counts). Empty: open.
    pub token: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            per_script_labels: true,
            token: String::new(),
        }
    }
}

fn buckets(start: f64, count: usize) -> Vec<f64> {
    exponential_buckets(start, 2.0, count).expect("valid buckets")
}

/// The metrics of runs (docs/operations.md), measured per run.
#[derive(Clone)]
pub struct RunMetrics {
    per_script: bool,
    executions: IntCounterVec,
    duration: HistogramVec,
    errors: IntCounterVec,
    pool_size: IntGauge,
    pool_in_use: IntGauge,
    pool_wait: Histogram,
    pool_renewals: IntCounter,
    /// Held while `pool_renewals` catches up with the pool's count, so two
    /// renders at once do not both add the same renewals.
    pool_renewals_sync: std::sync::Arc<std::sync::Mutex<()>>,
    pool_idle_slot_reset: IntGauge,
    /// Bytes of input of runs waiting for a slot, held in memory.
    pub waiting_input: IntGauge,
    api_calls: IntCounterVec,
    api_duration: HistogramVec,
    memory: HistogramVec,
    cpu: HistogramVec,
    fuel: HistogramVec,
}

impl RunMetrics {
    fn new(per_script: bool) -> Self {
        // Label sets with `script_id` in second place, unless switched off.
        let labels = |names: &[&'static str]| -> Vec<&'static str> {
            names
                .iter()
                .copied()
                .filter(|n| per_script || *n != "script_id")
                .collect()
        };
        let counter = |name: &str, help: &str, names: &[&'static str]| {
            IntCounterVec::new(Opts::new(name, help), &labels(names)).expect("valid metric")
        };
        let histogram = |name: &str, help: &str, names: &[&'static str], b: Vec<f64>| {
            HistogramVec::new(HistogramOpts::new(name, help).buckets(b), &labels(names))
                .expect("valid metric")
        };
        Self {
            per_script,
            executions: counter(
                "script_executions_total",
                "Finished runs by trigger and status",
                &["tenant_id", "script_id", "trigger_type", "status"],
            ),
            duration: histogram(
                "script_execution_duration_seconds",
                "Wall time of runs",
                &["tenant_id", "script_id", "trigger_type"],
                buckets(0.001, 15),
            ),
            errors: counter(
                "script_execution_errors_total",
                "Failed runs by error kind",
                &["tenant_id", "script_id", "error_type"],
            ),
            pool_size: IntGauge::new(
                "jsruntime_vm_pool_size",
                "Sandbox instances: ready plus in use",
            )
            .expect("valid metric"),
            pool_in_use: IntGauge::new(
                "jsruntime_vm_pool_in_use",
                "Sandbox instances serving a run",
            )
            .expect("valid metric"),
            pool_wait: Histogram::with_opts(
                HistogramOpts::new(
                    "jsruntime_vm_pool_wait_seconds",
                    "Time a run waited for a sandbox instance",
                )
                .buckets(buckets(0.0001, 12)),
            )
            .expect("valid metric"),
            pool_renewals: IntCounter::new(
                "scriptbox_sandbox_pool_renewals_total",
                "Times the sandbox pool replaced its engine because idle slots reset too much at teardown",
            )
            .expect("valid metric"),
            pool_renewals_sync: Default::default(),
            pool_idle_slot_reset: IntGauge::new(
                "scriptbox_sandbox_idle_slot_reset_bytes",
                "What an idle sandbox slot of the most worn pool shard resets at each teardown, on average",
            )
            .expect("valid metric"),
            waiting_input: IntGauge::new(
                "scriptbox_waiting_input_bytes",
                "Input of runs waiting for a slot, held in memory (up to 64 MiB; past it, inputs are read back from their rows)",
            )
            .expect("valid metric"),
            api_calls: counter(
                "script_api_calls_total",
                "Host API calls made by scripts: http (fetch), db (sdk.db), cache (sdk.cache)",
                &["tenant_id", "api_type"],
            ),
            api_duration: histogram(
                "script_api_call_duration_seconds",
                "Duration of each host API call",
                &["tenant_id", "api_type"],
                buckets(0.001, 12),
            ),
            memory: histogram(
                "script_memory_usage_bytes",
                "Peak linear memory of runs",
                &["tenant_id", "script_id"],
                buckets(1024.0, 20),
            ),
            cpu: histogram(
                "script_cpu_time_seconds",
                "CPU time of runs",
                &["tenant_id", "script_id"],
                buckets(0.001, 15),
            ),
            fuel: histogram(
                "scriptbox_fuel_consumed",
                "Fuel (wasm instructions) used by runs",
                &["tenant_id", "script_id"],
                exponential_buckets(100_000.0, 4.0, 12).expect("valid buckets"),
            ),
        }
    }

    fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.executions.clone()),
            Box::new(self.duration.clone()),
            Box::new(self.errors.clone()),
            Box::new(self.pool_size.clone()),
            Box::new(self.pool_in_use.clone()),
            Box::new(self.pool_wait.clone()),
            Box::new(self.pool_renewals.clone()),
            Box::new(self.pool_idle_slot_reset.clone()),
            Box::new(self.waiting_input.clone()),
            Box::new(self.api_calls.clone()),
            Box::new(self.api_duration.clone()),
            Box::new(self.memory.clone()),
            Box::new(self.cpu.clone()),
            Box::new(self.fuel.clone()),
        ]
    }
}

/// Label values as the `&str`s prometheus takes.
fn refs(values: &[String]) -> Vec<&str> {
    values.iter().map(String::as_str).collect()
}

impl RunMetrics {
    /// Records one finished run.
    pub fn record(
        &self,
        tenant_id: &str,
        script_id: &str,
        trigger: &str,
        status: &str,
        outcome: &RunOutcome,
    ) {
        let with_script = |rest: &[&'_ str]| -> Vec<String> {
            let mut values = vec![tenant_id.to_owned()];
            if self.per_script {
                values.push(script_id.to_owned());
            }
            values.extend(rest.iter().map(|v| (*v).to_owned()));
            values
        };
        let usage = &outcome.usage;
        self.executions
            .with_label_values(&refs(&with_script(&[trigger, status])))
            .inc();
        self.duration
            .with_label_values(&refs(&with_script(&[trigger])))
            .observe(usage.wall.as_secs_f64());
        if let Err(failure) = &outcome.result {
            self.errors
                .with_label_values(&refs(&with_script(&[failure.kind.as_str()])))
                .inc();
        }
        let per_run = with_script(&[]);
        self.memory
            .with_label_values(&refs(&per_run))
            .observe(usage.memory_peak_bytes as f64);
        self.cpu
            .with_label_values(&refs(&per_run))
            .observe(usage.cpu.as_secs_f64());
        self.fuel
            .with_label_values(&refs(&per_run))
            .observe(usage.fuel_used as f64);
        self.pool_wait.observe(usage.pool_wait.as_secs_f64());
        for (api_type, calls) in [
            ("http", &usage.api.http),
            ("db", &usage.api.db),
            ("cache", &usage.api.cache),
        ] {
            if calls.calls == 0 {
                continue;
            }
            self.api_calls
                .with_label_values(&[tenant_id, api_type])
                .inc_by(u64::from(calls.calls));
            let histogram = self.api_duration.with_label_values(&[tenant_id, api_type]);
            for took in &calls.each {
                histogram.observe(took.as_secs_f64());
            }
        }
    }
}

/// Every metric a node exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub runs: RunMetrics,
    sandbox: Option<Sandbox>,
    pub scheduler: SchedulerMetrics,
    pub webhooks: WebhookMetrics,
    pub retention: RetentionMetrics,
    /// `scriptbox_database_up`: 1 when the database answered the check made
    /// at the last scrape, 0 when it failed or did not answer in time.
    pub database_up: IntGauge,
}

/// Retention metrics.
#[derive(Clone)]
pub struct RetentionMetrics {
    /// `scriptbox_retention_deleted_total`: executions deleted by
    /// retention on this node.
    pub deleted: IntCounter,
    /// `scriptbox_database_bytes`: what the database occupies (the SQLite
    /// file's pages, or `pg_database_size`), as of the last sweep.
    pub database_bytes: IntGauge,
}

/// Webhook metrics.
#[derive(Clone)]
pub struct WebhookMetrics {
    /// `scriptbox_webhook_rejected_total{reason}`: calls refused before a
    /// run (not_found, method_not_allowed, rate_limited, body_too_large,
    /// unauthorized).
    pub rejected: IntCounterVec,
}

/// The scheduler's metrics.
#[derive(Clone)]
pub struct SchedulerMetrics {
    /// `scheduler_ticks_total`: passes of the scheduler loop.
    pub ticks: IntCounter,
    /// `scheduled_scripts_due`: scripts found due by the last pass.
    pub due: IntGauge,
    /// `scheduled_scripts_running`: scheduled runs (and retries) in
    /// progress on this node.
    pub running: IntGauge,
    /// `scriptbox_scheduler_lag_seconds`: start of a scheduled run minus
    /// its fire time.
    pub lag: Histogram,
    /// `scriptbox_scheduler_skipped_total{reason}`: occurrences not run.
    pub skipped: IntCounterVec,
    /// `scriptbox_scheduler_retries_total`: retries queued after a failure.
    pub retries: IntCounter,
    /// `scriptbox_dead_letter_queue_size`: executions that are `dead`.
    pub dead_letter: IntGauge,
}

impl Metrics {
    pub fn new() -> Self {
        Self::with_config(&MetricsConfig::default())
    }

    pub fn with_config(config: &MetricsConfig) -> Self {
        let registry = Registry::new();
        let runs = RunMetrics::new(config.per_script_labels);
        for collector in runs.collectors() {
            registry.register(collector).expect("unique metric names");
        }
        let build_info = IntGaugeVec::new(
            Opts::new("scriptbox_build_info", "The running scriptbox version"),
            &["version"],
        )
        .expect("valid metric");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        registry
            .register(Box::new(build_info))
            .expect("unique metric names");
        let scheduler = SchedulerMetrics {
            ticks: IntCounter::new("scheduler_ticks_total", "Passes of the scheduler loop")
                .expect("valid metric"),
            due: IntGauge::new(
                "scheduled_scripts_due",
                "Scheduled scripts found due by the last scheduler pass",
            )
            .expect("valid metric"),
            running: IntGauge::new(
                "scheduled_scripts_running",
                "Scheduled runs in progress on this node",
            )
            .expect("valid metric"),
            lag: Histogram::with_opts(
                HistogramOpts::new(
                    "scriptbox_scheduler_lag_seconds",
                    "Start of a scheduled run minus its fire time",
                )
                .buckets(exponential_buckets(0.001, 2.0, 15).expect("valid buckets")),
            )
            .expect("valid metric"),
            skipped: IntCounterVec::new(
                Opts::new(
                    "scriptbox_scheduler_skipped_total",
                    "Scheduled occurrences not run, by reason",
                ),
                &["reason"],
            )
            .expect("valid metric"),
            retries: IntCounter::new(
                "scriptbox_scheduler_retries_total",
                "Retries queued after a scheduled run failed",
            )
            .expect("valid metric"),
            dead_letter: IntGauge::new(
                "scriptbox_dead_letter_queue_size",
                "Executions in the dead-letter queue (status dead)",
            )
            .expect("valid metric"),
        };
        let webhooks = WebhookMetrics {
            rejected: IntCounterVec::new(
                Opts::new(
                    "scriptbox_webhook_rejected_total",
                    "Webhook calls refused before a run, by reason",
                ),
                &["reason"],
            )
            .expect("valid metric"),
        };
        registry
            .register(Box::new(webhooks.rejected.clone()))
            .expect("unique metric names");
        for reason in [
            "not_found",
            "method_not_allowed",
            "rate_limited",
            "body_too_large",
            "unauthorized",
        ] {
            webhooks.rejected.with_label_values(&[reason]);
        }
        let retention = RetentionMetrics {
            deleted: IntCounter::new(
                "scriptbox_retention_deleted_total",
                "Executions deleted by retention on this node",
            )
            .expect("valid metric"),
            database_bytes: IntGauge::new(
                "scriptbox_database_bytes",
                "Bytes the database occupies, as of the last retention sweep",
            )
            .expect("valid metric"),
        };
        for metric in [
            Box::new(retention.deleted.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(retention.database_bytes.clone()),
        ] {
            registry.register(metric).expect("unique metric names");
        }
        let s = &scheduler;
        for metric in [
            Box::new(s.ticks.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(s.due.clone()),
            Box::new(s.running.clone()),
            Box::new(s.lag.clone()),
            Box::new(s.skipped.clone()),
            Box::new(s.retries.clone()),
            Box::new(s.dead_letter.clone()),
        ] {
            registry.register(metric).expect("unique metric names");
        }
        // Known label values show from the start, at zero.
        s.skipped.with_label_values(&["overlap"]);
        let database_up = IntGauge::new(
            "scriptbox_database_up",
            "1 when the database answered a check at this scrape, else 0",
        )
        .expect("valid metric");
        registry
            .register(Box::new(database_up.clone()))
            .expect("unique metric names");
        Self {
            registry,
            runs,
            sandbox: None,
            scheduler,
            webhooks,
            retention,
            database_up,
        }
    }

    /// Exports the sandbox's pool gauges and compile-cache counters.
    pub fn attach_sandbox(&mut self, sandbox: &Sandbox) {
        let counters = sandbox.compile_cache_counters();
        for counter in [&counters.hits, &counters.misses] {
            self.registry
                .register(Box::new(counter.clone()))
                .expect("unique metric names");
        }
        self.sandbox = Some(sandbox.clone());
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        if let Some(sandbox) = &self.sandbox {
            let stats = sandbox.pool_stats();
            self.runs.pool_size.set((stats.ready + stats.in_use) as i64);
            self.runs.pool_in_use.set(stats.in_use as i64);
            let _sync = self.runs.pool_renewals_sync.lock().expect("not poisoned");
            let renewals = self.runs.pool_renewals.get();
            self.runs
                .pool_renewals
                .inc_by((stats.renewals as u64).saturating_sub(renewals));
            self.runs
                .pool_idle_slot_reset
                .set(stats.idle_slot_reset_bytes as i64);
        }
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("encoding metrics");
        String::from_utf8(buffer).expect("metrics are UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// One sample of the sandbox pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSample {
    pub at_ms: i64,
    pub in_use: usize,
    pub size: usize,
}

/// The pool's use over the last hour, sampled every [`PoolHistory::EVERY`],
/// for the dashboard.
#[derive(Clone, Default)]
pub struct PoolHistory {
    samples: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<PoolSample>>>,
}

impl PoolHistory {
    pub const EVERY: std::time::Duration = std::time::Duration::from_secs(10);
    const KEEP: usize = 360;

    pub fn record(&self, sample: PoolSample) {
        let mut samples = self.samples.lock().expect("not poisoned");
        if samples.len() == Self::KEEP {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    pub fn since(&self, from_ms: i64) -> Vec<PoolSample> {
        let samples = self.samples.lock().expect("not poisoned");
        samples
            .iter()
            .filter(|s| s.at_ms >= from_ms)
            .copied()
            .collect()
    }

    /// Samples `sandbox` until `stop` resolves.
    pub async fn sample(self, sandbox: Sandbox, stop: impl std::future::Future<Output = ()>) {
        let mut stop = std::pin::pin!(stop);
        loop {
            let stats = sandbox.pool_stats();
            self.record(PoolSample {
                at_ms: crate::store::now_ms(),
                in_use: stats.in_use,
                size: stats.ready + stats.in_use,
            });
            tokio::select! {
                _ = tokio::time::sleep(Self::EVERY) => {}
                _ = &mut stop => return,
            }
        }
    }
}
