//! `scriptbox serve`: opens the database, starts the sandbox and serves
//! until a shutdown signal, on two listeners: the admin one (API, dashboard,
//! metrics, health; keep it private) and the public one (webhooks only, on
//! an origin of its own).

use std::future::{Future, IntoFuture};

use anyhow::{Context, Result};
use tokio::net::TcpListener;

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
    let scheduler = node.config.scheduler.enabled.then(|| {
        let scheduler = Scheduler::new(
            node.db.clone(),
            node.exec.clone(),
            node.metrics.scheduler.clone(),
            node.scheduler.clone(),
        );
        let mut rx = stop_rx.clone();
        tokio::spawn(scheduler.run(async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }))
    });
    let pool_history = PoolHistory::default();
    let sampler = tokio::spawn(pool_history.clone().sample(node.sandbox.clone(), {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }));
    // Without a configured public URL, webhook URLs name the address the
    // public listener is bound to (its real port, when it was 0).
    let public_addr = listeners
        .public
        .local_addr()
        .context("the public listener's address")?;
    let public_url = PublicUrl::parse(&node.config.webhooks.public_url, &public_addr.to_string())
        .map_err(anyhow::Error::msg)?;
    let state = AppState::new(&node, public_url, pool_history);
    let mut public = tokio::spawn(
        axum::serve(
            listeners.public,
            crate::http::observe::traced(
                crate::http::webhooks::public_app(state.clone()),
                "public",
            ),
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
        axum::serve(
            listeners.admin,
            crate::http::observe::traced(app(state), "admin"),
        )
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
    let shutdown_timeout = std::time::Duration::from_millis(node.config.shutdown_timeout_ms);
    let deadline = tokio::time::Instant::now() + shutdown_timeout;
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
    node.db.close().await;
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
