//! Prometheus metrics: one registry per node, rendered at `GET /metrics`.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder, exponential_buckets,
};

/// Every metric a node exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub scheduler: SchedulerMetrics,
    pub webhooks: WebhookMetrics,
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
        let registry = Registry::new();
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
        Self {
            registry,
            scheduler,
            webhooks,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
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
