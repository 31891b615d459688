//! `scriptbox serve`: opens the database, starts the sandbox and serves
//! until a shutdown signal, on two listeners: the admin one (API, dashboard,
//! metrics, health; keep it private) and the public one (webhooks only, on
//! an origin of its own).

use std::future::{Future, IntoFuture};
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
    /// `[metrics] token`.
    pub metrics_token: String,
    /// How long running executions may take to finish at shutdown.
    pub shutdown_timeout: std::time::Duration,
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
    let mut metrics = Metrics::with_config(&config.metrics);
    metrics.attach_sandbox(&sandbox);
    let exec = ExecutionService::new(db, sandbox, node_id, retry, metrics.runs.clone());
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
        metrics,
        scheduler: SchedulerHandle::default(),
        scheduler_config: config.scheduler.clone(),
        webhooks: config.webhooks.clone(),
        metrics_token: config.metrics.token.clone(),
        shutdown_timeout: std::time::Duration::from_millis(config.shutdown_timeout_ms),
    })
}

/// The node's two sockets.
pub struct Listeners {
    /// API, dashboard, `/metrics`, health.
    pub admin: TcpListener,
    /// Webhooks only.
    pub public: TcpListener,
}

impl Listeners {
    /// Binds `admin` and `public` (`host:port`; port 0 picks a free one).
    pub async fn bind(admin: &str, public: &str) -> Result<Self> {
        Ok(Self {
            admin: TcpListener::bind(admin)
                .await
                .with_context(|| format!("listening on {admin} (admin)"))?,
            public: TcpListener::bind(public)
                .await
                .with_context(|| format!("listening on {public} (public, webhooks)"))?,
        })
    }
}

/// Serves both listeners until `shutdown` resolves.
pub async fn run(
    listeners: Listeners,
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
    let pool_history = crate::metrics::PoolHistory::default();
    let sampler = tokio::spawn(pool_history.clone().sample(node.exec.sandbox().clone(), {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }));
    let state = AppState::new(node.exec.clone())
        .with_pool_history(pool_history)
        .with_metrics(node.metrics.clone())
        .with_scheduler(node.scheduler.clone())
        .with_retry_defaults(node.scheduler_config.clone())
        .with_webhooks(node.webhooks.clone())
        .with_metrics_token(node.metrics_token.clone());
    // Without a configured public URL, webhook URLs name the address the
    // public listener is bound to (its real port, when it was 0).
    let public_addr = listeners
        .public
        .local_addr()
        .context("the public listener's address")?;
    let state = state.with_public_url(
        crate::webhooks::PublicUrl::parse(&node.webhooks.public_url, &public_addr.to_string())
            .map_err(anyhow::Error::msg)?,
    );
    let mut public = tokio::spawn(
        axum::serve(
            listeners.public,
            crate::observe::traced(crate::webhooks::public_app(state.clone()), "public"),
        )
        .with_graceful_shutdown({
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|stop| *stop).await;
            }
        })
        .into_future(),
    );
    let mut http = tokio::spawn(
        axum::serve(listeners.admin, crate::observe::traced(app(state), "admin"))
            .with_graceful_shutdown(async move {
                shutdown.await;
                let _ = stop_tx.send(true);
            })
            .into_future(),
    );

    // Until a signal: serve. After it: no new connections or claims; runs
    // in progress get `shutdown_timeout` to finish, the rest are failed.
    let mut stopping = stop_rx.clone();
    let mut http_done = false;
    tokio::select! {
        served = &mut http => {
            served.context("the HTTP server task failed")?.context("serving HTTP")?;
            http_done = true;
        }
        _ = stopping.wait_for(|stop| *stop) => {}
    }
    let deadline = tokio::time::Instant::now() + node.shutdown_timeout;
    let in_flight = node.exec.runs_in_flight();
    if in_flight > 0 {
        tracing::info!(runs = in_flight, "waiting for running executions to finish");
    }
    if !node.exec.wait_idle(deadline).await {
        match node.exec.fail_unfinished().await {
            Ok(n) => tracing::warn!(
                runs = n,
                "recorded executions still running at the shutdown deadline as failed"
            ),
            Err(error) => tracing::error!(
                error = format!("{error:#}"),
                "could not record unfinished executions"
            ),
        }
    }
    // Requests still open past the deadline (a synchronous call waiting for
    // a run just failed) are cut.
    if !http_done && tokio::time::timeout_at(deadline, &mut http).await.is_err() {
        http.abort();
    }
    if tokio::time::timeout_at(deadline, &mut public)
        .await
        .is_err()
    {
        public.abort();
    }
    let _ = keep_alive.await;
    let _ = sampler.await;
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
