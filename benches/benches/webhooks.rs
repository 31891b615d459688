//! Webhook throughput and latency over loopback, against a minimal axum
//! handler in the same process (the HTTP floor) and a Node.js http server
//! running the same script in a fresh `vm` context per request, driven by
//! `wrk`.
//!
//! `cargo bench -p scriptbox-benches --bench webhooks` (or `just
//! bench-webhooks`, which installs `wrk` if missing) starts a node with a
//! trivial webhook script (rate limit raised out of the way), an axum server
//! answering a constant, and `benches/node/vm-http.js`. It runs `wrk`
//! against each in turn with the same settings and prints requests/s, p50
//! and p99 latency, and the ratios. Every webhook request is a full run:
//! route lookup, execution recorded, sandbox run, result stored.
//!
//! `SCRIPTBOX_BENCH_SECONDS` (default 8), `SCRIPTBOX_BENCH_CONNECTIONS`
//! (default 32) and `SCRIPTBOX_BENCH_THREADS` (wrk's threads, default 2)
//! change the load; `SCRIPTBOX_BENCH_DATABASE=postgres` runs the node on a
//! fresh database on the server of `SCRIPTBOX_TEST_POSTGRES_URL` instead of
//! a fresh SQLite file; `SCRIPTBOX_<SECTION>_<KEY>` settings apply to the
//! node.
//! `SCRIPTBOX_BENCH_ASYNC=1` adds a run of the same load with `?async=true`:
//! requests/s and latency of the 202 answers (answers other than 2xx, such
//! as 429 when the tenant's queue is full, are counted apart), then the runs those calls recorded divided
//! by the time from the load's start until the last of them finished.
//! Without Node.js the Node line is left out.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use scriptbox::config::Config;
use scriptbox::model::{ExecutionStatus, TenantId, Trigger};
use scriptbox::store::{Db, NewScript, now_ms};

struct Load {
    requests_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Answers that were not 2xx or 3xx.
    refused: u64,
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `wrk --latency` against `url`; parses requests/s and the 50 % / 99 % lines.
fn wrk(url: &str) -> Result<Load> {
    let seconds = env_u64("SCRIPTBOX_BENCH_SECONDS", 8);
    let connections = env_u64("SCRIPTBOX_BENCH_CONNECTIONS", 32);
    let threads = env_u64("SCRIPTBOX_BENCH_THREADS", 2);
    let out = Command::new("wrk")
        .arg("--latency")
        .arg(format!("-t{threads}"))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{seconds}s"))
        .arg(url)
        .output()
        .context("running wrk (apt-get install wrk, or `just bench-webhooks`)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("wrk failed: {text}");
    }
    let field = |prefix: &str| -> Result<&str> {
        text.lines()
            .find_map(|line| line.trim().strip_prefix(prefix))
            .map(str::trim)
            .with_context(|| format!("no {prefix:?} in wrk output:\n{text}"))
    };
    Ok(Load {
        requests_per_sec: field("Requests/sec:")?.parse()?,
        p50_ms: millis(field("50%")?)?,
        p99_ms: millis(field("99%")?)?,
        refused: match field("Non-2xx or 3xx responses:") {
            Ok(n) => n.parse()?,
            Err(_) => 0,
        },
    })
}

/// [`wrk`], failing if any answer was not 2xx or 3xx.
fn wrk_all_ok(url: &str) -> Result<Load> {
    let load = wrk(url)?;
    if load.refused > 0 {
        bail!("{} requests to {url} were refused", load.refused);
    }
    Ok(load)
}

/// wrk's `850.00us`, `1.23ms`, `1.01s`.
fn millis(text: &str) -> Result<f64> {
    let (number, factor) = if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else {
        bail!("unknown latency {text:?}");
    };
    Ok(number.parse::<f64>()? * factor)
}

/// Runs recorded by an async load and how fast they finished.
struct Drained {
    count: i64,
    per_sec: f64,
}

/// `wrk` against the webhook with `?async=true`, then waits until every run
/// it recorded has finished: their number over the time from the load's
/// start to then.
async fn async_load(db: &Db, tenant: &TenantId, hook_url: &str) -> Result<(Load, Drained)> {
    let started = Instant::now();
    let first_ms = now_ms();
    let url = format!("{hook_url}?async=true");
    let load = tokio::task::spawn_blocking(move || wrk(&url)).await??;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let stats = db.tenant_stats(tenant, first_ms, 10).await?;
        let (mut open, mut count) = (0, 0);
        for minute in &stats.minutes {
            for (status, n) in &minute.runs {
                count += n;
                if matches!(status, ExecutionStatus::Queued | ExecutionStatus::Running) {
                    open += n;
                }
            }
        }
        if open == 0 {
            let per_sec = count as f64 / started.elapsed().as_secs_f64();
            return Ok((load, Drained { count, per_sec }));
        }
        if Instant::now() > deadline {
            bail!("{open} async runs still open two minutes after the load");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `benches/node/vm-http.js`, running until dropped.
struct NodeServer {
    child: std::process::Child,
    url: String,
}

impl NodeServer {
    /// `None` when Node.js is not installed.
    fn start() -> Result<Option<Self>> {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("node/vm-http.js");
        let mut child = match Command::new("node")
            .arg(script)
            .stdout(std::process::Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).context("starting node"),
        };
        let mut port = String::new();
        let stdout = child.stdout.take().context("node's stdout")?;
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut port)?;
        let url = format!("http://127.0.0.1:{}/bench/hook", port.trim());
        // Warm up the JIT as the node is warmed up.
        Command::new("wrk")
            .args(["-t1", "-c4", "-d2s", &url])
            .output()?;
        Ok(Some(Self { child, url }))
    }
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn main() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let dir = std::env::temp_dir().join(format!("scriptbox-bench-hooks-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (hook_url, constant_url, scratch, db, tenant) = runtime.block_on(async {
        // Every SCRIPTBOX_* setting applies (for example
        // SCRIPTBOX_SANDBOX_TENANT_MAX_CONCURRENT=16 lets the one bench tenant
        // use the whole pool); the database is always a fresh one.
        let mut config = Config::load(None, std::env::vars())?;
        let (url, scratch) = scriptbox_benches::bench_database("hooks", &dir).await?;
        config.database.url = url;
        config.scheduler.enabled = false;
        if let Ok(n) = std::env::var("SCRIPTBOX_BENCH_DB_CONNECTIONS") {
            config.database.max_connections = n.parse()?;
            config.database.min_idle = 1;
        }
        let node = scriptbox::server::start(&config).await?;
        let db = node.exec.db().clone();
        let (tenant, _) = db.create_tenant("bench").await?;
        db.create_script(
            &tenant.id,
            &NewScript {
                name: "hook".into(),
                source: "export default (input) => ({ ok: true, method: input.method })".into(),
                language: Default::default(),
                trigger_type: Trigger::Webhook,
                schedule: None,
                timezone: None,
                webhook_path: Some("/hook".into()),
                enabled: true,
                limits: "{}".into(),
                rate_limit: Some(r#"{"rps":1000000000,"burst":1000000000}"#.into()),
                webhook_auth: None,
                webhook_methods: None,
                secrets: "[]".into(),
                vars: "{}".into(),
                max_retries: 0,
                retry_delay_ms: 1000,
                next_run_at: None,
                retention_max_age_ms: None,
                retention_max_per_script: None,
            },
        )
        .await?;
        let listeners = scriptbox::server::Listeners::bind("127.0.0.1:0", "127.0.0.1:0").await?;
        let hook_url = format!("http://{}/bench/hook", listeners.public.local_addr()?);
        tokio::spawn(scriptbox::server::run(
            listeners,
            node,
            std::future::pending(),
        ));

        let constant = axum::Router::new().route(
            "/",
            axum::routing::get(|| async {
                axum::Json(serde_json::json!({ "result": { "ok": true } }))
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let constant_url = format!("http://{}/", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, constant).await });
        anyhow::Ok((hook_url, constant_url, scratch, db, tenant.id))
    })?;
    let node_js = NodeServer::start()?;

    // Warm up: compile the script, fill the pool.
    let warm = Command::new("wrk")
        .args(["-t1", "-c4", "-d2s", &hook_url])
        .output();
    warm.context("running wrk (apt-get install wrk, or `just bench-webhooks`)")?;

    let constant = wrk_all_ok(&constant_url)?;
    let node_vm = node_js.as_ref().map(|n| wrk_all_ok(&n.url)).transpose()?;
    let hook = wrk_all_ok(&hook_url)?;
    let async_hook = if env_u64("SCRIPTBOX_BENCH_ASYNC", 0) == 1 {
        Some(runtime.block_on(async_load(&db, &tenant, &hook_url))?)
    } else {
        None
    };
    let show = |name: &str, l: &Load| {
        println!(
            "{name:<22} {:>9.0} req/s   p50 {:>7.3} ms   p99 {:>7.3} ms",
            l.requests_per_sec, l.p50_ms, l.p99_ms
        );
    };
    show("axum constant handler", &constant);
    if let Some(node_vm) = &node_vm {
        show("node http + vm context", node_vm);
    }
    show("webhook (sandbox run)", &hook);
    println!(
        "ratio webhook/constant: throughput {:.3}x, p50 {:.1}x, p99 {:.1}x",
        hook.requests_per_sec / constant.requests_per_sec,
        hook.p50_ms / constant.p50_ms,
        hook.p99_ms / constant.p99_ms
    );
    match &node_vm {
        Some(node_vm) => println!(
            "ratio webhook/node:     throughput {:.2}x, p50 {:.2}x, p99 {:.2}x",
            hook.requests_per_sec / node_vm.requests_per_sec,
            hook.p50_ms / node_vm.p50_ms,
            hook.p99_ms / node_vm.p99_ms
        ),
        None => println!("node: skipped (no `node` on the PATH)"),
    }
    if let Some((load, runs)) = &async_hook {
        show("webhook async (202)", load);
        println!(
            "async: {} answers not 2xx (429: the tenant's queue was full), {} runs recorded at {:.0} runs/s to the last finish, {:.3}x sync",
            load.refused,
            runs.count,
            runs.per_sec,
            runs.per_sec / hook.requests_per_sec
        );
    }
    drop(node_js);
    if let Some(scratch) = scratch {
        runtime.block_on(scratch.drop_now())?;
    }
    drop(runtime);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
