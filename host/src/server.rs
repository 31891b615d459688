//! `scriptbox serve`: opens the database, starts the sandbox and serves the
//! API until a shutdown signal.

use std::future::Future;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::net::TcpListener;

use crate::api::{AppState, app};
use crate::config::Config;
use crate::exec::ExecutionService;
use crate::metrics::Metrics;
use crate::sandbox::Sandbox;
use crate::scheduler::{Scheduler, SchedulerHandle};
use crate::store::{Db, DbKv, RetryPolicy};

/// A running node's parts, for tests and the command line.
pub struct Node {
    pub exec: ExecutionService,
    pub metrics: Metrics,
    pub scheduler: SchedulerHandle,
    /// Whether this node runs the scheduler loop, and retry defaults.
    pub scheduler_config: crate::config::SchedulerConfig,
    pub webhooks: crate::webhooks::WebhookConfig,
}

/// Opens the database (applying migrations), starts the sandbox, and marks
/// runs left open by stopped nodes as abandoned.
pub async fn start(config: &Config) -> Result<Node> {
    let db = Db::open(&config.database).await?;
    let sandbox = Sandbox::start(
        config.sandbox.clone(),
        config.fetch.clone(),
        Arc::new(DbKv::new(db.clone())),
    )?;
    let node_id = uuid::Uuid::new_v4().to_string();
    let retry = RetryPolicy::from_config(&config.scheduler);
    let exec = ExecutionService::new(db, sandbox, node_id, retry);
    exec.db()
        .heartbeat(exec.node_id())
        .await
        .context("registering this node")?;
    let abandoned = exec.recover().await.context("recovering open runs")?;
    if abandoned > 0 {
        tracing::warn!(
            count = abandoned,
            "marked runs left open by a stopped node as abandoned"
        );
    }
    Ok(Node {
        exec,
        metrics: Metrics::new(),
        scheduler: SchedulerHandle::default(),
        scheduler_config: config.scheduler.clone(),
        webhooks: config.webhooks.clone(),
    })
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    node: Node,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let keep_alive = tokio::spawn(node.exec.clone().keep_alive({
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }));
    let scheduler = node.scheduler_config.enabled.then(|| {
        let scheduler = Scheduler::new(
            node.exec.clone(),
            node.metrics.scheduler.clone(),
            node.scheduler.clone(),
        );
        let mut rx = stop_rx.clone();
        tokio::spawn(scheduler.run(async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }))
    });
    let state = AppState::new(node.exec.clone())
        .with_metrics(node.metrics.clone())
        .with_scheduler(node.scheduler.clone())
        .with_retry_defaults(node.scheduler_config.clone())
        .with_webhooks(node.webhooks.clone());
    let router = app(state);
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        })
        .await
        .context("serving HTTP")?;
    let _ = keep_alive.await;
    if let Some(scheduler) = scheduler {
        let _ = scheduler.await;
    }
    node.exec.db().close().await;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutting down");
}
