//! Helpers shared by the integration tests in `tests/tests/`.

use std::sync::Arc;

use scriptbox::sandbox::{
    FetchConfig, MemoryKv, RunContext, RunLimits, RunOutcome, RunRequest, Sandbox, SandboxConfig,
};

/// A sandbox with a small pool and default limits.
pub fn sandbox() -> Sandbox {
    sandbox_with(FetchConfig::default())
}

pub fn sandbox_with(fetch: FetchConfig) -> Sandbox {
    let config = SandboxConfig {
        pool_min: 1,
        pool_max: 4,
        ..SandboxConfig::default()
    };
    Sandbox::start(config, fetch, Arc::new(MemoryKv::default())).expect("the sandbox starts")
}

/// Compiles and runs `source` with `input` for tenant `t1`.
pub async fn run(sandbox: &Sandbox, source: &str, input: serde_json::Value) -> RunOutcome {
    run_as(
        sandbox,
        "t1",
        source,
        input,
        sandbox.config().default_limits(),
    )
    .await
}

pub async fn run_as(
    sandbox: &Sandbox,
    tenant: &str,
    source: &str,
    input: serde_json::Value,
    limits: RunLimits,
) -> RunOutcome {
    let bytecode = sandbox.compile(source).await.expect("the script compiles");
    let context = RunContext {
        script_id: "s1".into(),
        execution_id: "e1".into(),
        tenant_id: tenant.into(),
        trigger: "manual",
        attempt: 0,
        env: Default::default(),
        cron: None,
    };
    let request = RunRequest::new(&context, input.to_string(), limits);
    sandbox.run(&bytecode, request).await
}

/// The output of a run that must succeed, parsed.
pub fn output(outcome: &RunOutcome) -> serde_json::Value {
    match &outcome.result {
        Ok(success) => serde_json::from_str(&success.output).expect("output is JSON"),
        Err(failure) => panic!("the run failed: {failure:?}; logs: {:?}", outcome.logs),
    }
}

/// The fields of a plain manual script (`export default () => 1`), for
/// tests that write rows through the store directly.
pub fn manual_script() -> scriptbox::store::NewScript {
    scriptbox::store::NewScript {
        name: "s".into(),
        source: "export default () => 1".into(),
        language: Default::default(),
        trigger_type: scriptbox::model::Trigger::Manual,
        schedule: None,
        timezone: None,
        webhook_path: None,
        enabled: true,
        limits: "{}".into(),
        rate_limit: None,
        webhook_auth: None,
        webhook_methods: None,
        secrets: "[]".into(),
        vars: "{}".into(),
        max_retries: 0,
        retry_delay_ms: 1000,
        next_run_at: None,
        retention_max_age_ms: None,
        retention_max_per_script: None,
    }
}

pub mod service;
