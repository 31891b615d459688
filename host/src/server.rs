//! `scriptbox serve`: opens the database, starts the sandbox and serves
//! until a shutdown signal, on two listeners: the admin one (API, dashboard,
//! metrics, health; keep it private) and the public one (webhooks only, on
//! an origin of its own).

use std::future::{Future, IntoFuture};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::http::observe::traced;
use crate::http::{AppState, app};
use crate::metrics::PoolHistory;
pub use crate::node::{Node, start};
use crate::scheduler::Scheduler;
use crate::webhooks::PublicUrl;

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

/// Serves both listeners until `shutdown` resolves. Then: no new
/// connections or claims; runs in progress get `shutdown_timeout_ms` to
/// finish, the rest are recorded as failed (`shutdown`).
pub async fn run(
    listeners: Listeners,
    node: Node,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let pool_history = PoolHistory::default();
    let background = start_background(&node, &pool_history, &stop_rx);
    // Without a configured public URL, webhook URLs name the address the
    // public listener is bound to (its real port, when it was 0).
    let public_addr = listeners
        .public
        .local_addr()
        .context("the public listener's address")?;
    let public_url = PublicUrl::parse(&node.config.webhooks.public_url, &public_addr.to_string())
        .map_err(anyhow::Error::msg)?;
    let state = AppState::new(&node, public_url, pool_history);
    let public_app = traced(crate::http::webhooks::public_app(state.clone()), "public");
    let mut public = tokio::spawn(
        axum::serve(listeners.public, public_app)
            .with_graceful_shutdown(stopped(&stop_rx))
            .into_future(),
    );
    let mut admin = tokio::spawn(
        axum::serve(listeners.admin, traced(app(state), "admin"))
            .with_graceful_shutdown(async move {
                shutdown.await;
                let _ = stop_tx.send(true);
            })
            .into_future(),
    );

    let mut admin_done = false;
    tokio::select! {
        served = &mut admin => {
            served.context("the HTTP server task failed")?.context("serving HTTP")?;
            admin_done = true;
        }
        _ = stopped(&stop_rx) => {}
    }
    let shutdown_timeout = Duration::from_millis(node.config.shutdown_timeout_ms);
    let deadline = tokio::time::Instant::now() + shutdown_timeout;
    // Live-log streams end now, so they do not hold the admin listener open.
    node.exec.events().close();
    let (waited_for, failed) = finish_runs(&node, deadline).await;
    // Requests still open past the deadline (a synchronous call waiting for
    // a run just failed) are cut.
    if !admin_done && tokio::time::timeout_at(deadline, &mut admin).await.is_err() {
        admin.abort();
    }
    if tokio::time::timeout_at(deadline, &mut public)
        .await
        .is_err()
    {
        public.abort();
    }
    for task in background {
        let _ = task.await;
    }
    node.db.close().await;
    tracing::info!(
        waited_for,
        recorded_failed = failed,
        "stopped: waited for {waited_for} running executions, recorded {failed} as failed"
    );
    Ok(())
}

/// Resolves once `stop` is set.
fn stopped(stop: &watch::Receiver<bool>) -> impl Future<Output = ()> + Send + 'static {
    let mut stop = stop.clone();
    async move {
        let _ = stop.wait_for(|stop| *stop).await;
    }
}

/// The node's background tasks, until `stop`: heartbeats and recovery, the
/// scheduler loop (when enabled), retention, pool sampling for the
/// dashboard.
fn start_background(
    node: &Node,
    pool_history: &PoolHistory,
    stop: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let mut tasks = vec![
        tokio::spawn(node.exec.clone().keep_alive(stopped(stop))),
        tokio::spawn(
            pool_history
                .clone()
                .sample(node.sandbox.clone(), stopped(stop)),
        ),
    ];
    let retention = crate::retention::Retention::new(
        node.db.clone(),
        node.config.retention.clone(),
        node.metrics.retention.clone(),
    );
    tasks.push(tokio::spawn(retention.run(stopped(stop))));
    if node.config.scheduler.enabled {
        let scheduler = Scheduler::new(
            node.db.clone(),
            node.exec.clone(),
            node.metrics.scheduler.clone(),
            node.scheduler.clone(),
        );
        tasks.push(tokio::spawn(scheduler.run(stopped(stop))));
    }
    tasks
}

/// Waits for runs in progress until `deadline`; records the rest as failed.
/// Waits for the runs in progress until `deadline`, then records the rest
/// as failed: how many it waited for, and how many it recorded failed.
async fn finish_runs(node: &Node, deadline: tokio::time::Instant) -> (usize, u64) {
    let in_flight = node.exec.runs_in_flight();
    if in_flight > 0 {
        tracing::info!(runs = in_flight, "waiting for running executions to finish");
    }
    if node.exec.wait_idle(deadline).await {
        return (in_flight, 0);
    }
    match node.exec.fail_unfinished().await {
        Ok(n) => {
            tracing::warn!(
                runs = n,
                "recorded executions still running at the shutdown deadline as failed"
            );
            (in_flight, n)
        }
        Err(error) => {
            tracing::error!(
                error = format!("{error:#}"),
                "could not record unfinished executions"
            );
            (in_flight, 0)
        }
    }
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
