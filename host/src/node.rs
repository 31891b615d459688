//! A node's services, assembled once from its configuration: the store,
//! the sandbox, the execution and script services, metrics, the scheduler's
//! handle and the webhook caches. `server` serves them; tests and benches
//! start one without listeners.

use std::sync::Arc;

use anyhow::{Context, Result};

use crate::config::Config;
use crate::exec::ExecutionService;
use crate::metrics::Metrics;
use crate::sandbox::Sandbox;
use crate::scheduler::SchedulerHandle;
use crate::scripts::ScriptService;
use crate::secrets::Secrets;
use crate::store::{Db, DbKv};
use crate::webhooks::{Limiters, Routes};

/// A started node's parts.
pub struct Node {
    pub config: Config,
    pub db: Db,
    pub sandbox: Sandbox,
    pub exec: ExecutionService,
    pub scripts: ScriptService,
    pub metrics: Metrics,
    /// Wakes the scheduler loop (when this node runs one).
    pub scheduler: SchedulerHandle,
    /// Webhook routes by tenant and path, cached.
    pub routes: Routes,
    /// Per-script webhook rate limiters.
    pub limiters: Limiters,
    /// Tenants' secrets.
    pub secrets: Secrets,
}

/// Opens the database (applying migrations) and checks the secrets key
/// against it, starts the sandbox, and marks
/// runs left open by stopped nodes as abandoned.
pub async fn start(config: &Config) -> Result<Node> {
    let db = Db::open(&config.database).await?;
    let secrets = Secrets::open(db.clone(), &config.secrets, &config.database.url).await?;
    let sandbox = Sandbox::start(
        config.sandbox.clone(),
        config.fetch.clone(),
        Arc::new(DbKv::new(db.clone())),
    )?;
    let node_id = uuid::Uuid::new_v4().to_string();
    let mut metrics = Metrics::with_config(&config.metrics);
    metrics.attach_sandbox(&sandbox);
    let exec = ExecutionService::new(
        db.clone(),
        sandbox.clone(),
        node_id,
        config.scheduler.retry_policy(),
        metrics.runs.clone(),
        secrets.clone(),
    );
    exec.announce().await.context("registering this node")?;
    let abandoned = exec.recover().await.context("recovering open runs")?;
    if abandoned > 0 {
        tracing::warn!(
            count = abandoned,
            "marked runs left open by a stopped node as abandoned"
        );
    }
    let scheduler = SchedulerHandle::default();
    let routes = Routes::default();
    let limiters = Limiters::default();
    let scripts = ScriptService::new(
        db.clone(),
        sandbox.clone(),
        scheduler.clone(),
        routes.clone(),
        limiters.clone(),
        config.scheduler.clone(),
        secrets.clone(),
    );
    Ok(Node {
        config: config.clone(),
        db,
        sandbox,
        exec,
        scripts,
        metrics,
        scheduler,
        routes,
        limiters,
        secrets,
    })
}
