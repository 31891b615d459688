//! Soak: a `serve` node (SQLite, retention keeping 1,000 executions per
//! script, swept every 5 s) takes webhook calls at half the rate it
//! managed flat out, and reports per window its RSS, database size,
//! latency p50/p99 and errors; no call may fail, and RSS and the database
//! may not grow once retention has caught up. CI runs a minute of it (at a
//! quarter of the maximum, sharing the machine with other tests);
//! `benches/soak.sh` runs ten minutes in release and prints the table.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{call, create_tenant, serve_with};
use serde_json::json;

/// One window's figures.
#[derive(Debug, Clone, Default)]
struct Window {
    calls: usize,
    errors: usize,
    p50_ms: f64,
    p99_ms: f64,
    rss_mib: f64,
    database_mib: f64,
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn database_mib(path: &std::path::Path) -> f64 {
    let size = |p: std::path::PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    (size(path.to_path_buf()) + size(wal.into())) as f64 / (1024.0 * 1024.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Calls the webhook from `workers` connections as fast as it answers for
/// `for_`: calls per second.
async fn flat_out(client: &reqwest::Client, url: &str, workers: usize, for_: Duration) -> f64 {
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let until = Instant::now() + for_;
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (client, url, done) = (client.clone(), url.to_owned(), done.clone());
            tokio::spawn(async move {
                while Instant::now() < until {
                    if let Ok(r) = client.post(&url).body("{}").send().await
                        && r.bytes().await.is_ok()
                    {
                        done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    done.load(std::sync::atomic::Ordering::Relaxed) as f64 / for_.as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_under_steady_webhook_load_stays_flat() {
    let _turn = common::HEAVY_LOAD.lock().await;
    let seconds: u64 = std::env::var("SCRIPTBOX_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let window = Duration::from_secs(if seconds >= 300 { 60 } else { 10 });
    let dir = std::env::temp_dir().join(format!("scriptbox-soak-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("soak.db");
    let database = format!("sqlite://{}", file.display());
    let key = create_tenant(&database, "acme");
    let node = serve_with(
        &database,
        &[
            ("SCRIPTBOX_RETENTION_MAX_PER_SCRIPT", "1000"),
            ("SCRIPTBOX_RETENTION_INTERVAL_SECS", "5"),
            ("SCRIPTBOX_SCHEDULER_ENABLED", "false"),
        ],
    )
    .await;
    let created = call(
        node.port,
        "POST",
        "/api/scripts",
        &key,
        Some(json!({
            "name": "hook",
            "source": "export default (input) => ({ ok: true, size: JSON.stringify(input.body).length })",
            "trigger_type": "webhook",
            "webhook_path": "/hook",
            "rate_limit": { "rps": 1000000, "burst": 1000000 },
        })),
    )
    .await;
    assert!(created["id"].is_string(), "{created}");
    let url = format!("http://127.0.0.1:{}/acme/hook", node.public_port);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    // Half the maximum, as the soak asks; a quarter in the minute-long run,
    // which shares the machine with other tests.
    let maximum = flat_out(&client, &url, 16, Duration::from_secs(5)).await;
    let share = if seconds >= 300 { 2.0 } else { 4.0 };
    let rate = (maximum / share).max(10.0);
    eprintln!("soak: flat out {maximum:.0} calls/s; driving {rate:.0} calls/s for {seconds} s");

    // Open loop: a call every 1/rate s whatever the answers, at most 1,024
    // in flight; each call's latency and outcome, by window.
    let samples = Arc::new(Mutex::new(Vec::<(f64, bool)>::new()));
    let failures = Arc::new(Mutex::new(
        std::collections::BTreeMap::<String, usize>::new(),
    ));
    let in_flight = Arc::new(tokio::sync::Semaphore::new(1024));
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let body =
        json!({ "order": 1234, "items": ["a", "b", "c"], "note": "x".repeat(512) }).to_string();
    let started = Instant::now();
    let mut next_window = started + window;
    let mut windows = Vec::new();
    while started.elapsed() < Duration::from_secs(seconds) {
        ticks.tick().await;
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            samples.lock().unwrap().push((0.0, false)); // could not even send
            *failures
                .lock()
                .unwrap()
                .entry("1024 calls in flight".into())
                .or_default() += 1;
            continue;
        };
        let (client, url, body, sink) =
            (client.clone(), url.clone(), body.clone(), samples.clone());
        let failed = failures.clone();
        tokio::spawn(async move {
            let sent = Instant::now();
            let outcome = match client
                .post(&url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
            {
                Ok(r) if r.status() == 200 => {
                    r.bytes().await.map(|_| ()).map_err(|e| e.to_string())
                }
                Ok(r) => {
                    let status = r.status();
                    Err(format!("{status}: {}", r.text().await.unwrap_or_default()))
                }
                Err(e) => Err(format!("{e:?}")),
            };
            let ok = outcome.is_ok();
            if let Err(why) = outcome {
                *failed
                    .lock()
                    .unwrap()
                    .entry(why.chars().take(160).collect())
                    .or_default() += 1;
            }
            sink.lock()
                .unwrap()
                .push((sent.elapsed().as_secs_f64() * 1000.0, ok));
            drop(permit);
        });
        if Instant::now() >= next_window {
            next_window += window;
            let taken = std::mem::take(&mut *samples.lock().unwrap());
            let mut latencies: Vec<f64> = taken
                .iter()
                .filter(|(_, ok)| *ok)
                .map(|(ms, _)| *ms)
                .collect();
            latencies.sort_by(f64::total_cmp);
            windows.push(Window {
                calls: taken.len(),
                errors: taken.iter().filter(|(_, ok)| !ok).count(),
                p50_ms: percentile(&latencies, 0.5),
                p99_ms: percentile(&latencies, 0.99),
                rss_mib: rss_mib(node.child.id()),
                database_mib: database_mib(&file),
            });
        }
    }

    eprintln!("soak: window | calls | errors | p50 ms | p99 ms | RSS MiB | database MiB");
    for (i, w) in windows.iter().enumerate() {
        eprintln!(
            "soak: {:>4} s | {} | {} | {:.1} | {:.1} | {:.0} | {:.1}",
            (i as u64 + 1) * window.as_secs(),
            w.calls,
            w.errors,
            w.p50_ms,
            w.p99_ms,
            w.rss_mib,
            w.database_mib
        );
    }
    assert!(windows.len() >= 3, "{windows:?}");
    let errors: usize = windows.iter().map(|w| w.errors).sum();
    assert_eq!(errors, 0, "calls failed: {:#?}", failures.lock().unwrap());
    // Flat once warm: the last window's RSS and database size within 1.5x
    // (plus a little) of the second window's.
    let (warm, last) = (&windows[1], &windows[windows.len() - 1]);
    assert!(
        last.rss_mib <= warm.rss_mib * 1.5 + 64.0,
        "RSS grew: {windows:#?}"
    );
    assert!(
        last.database_mib <= warm.database_mib * 1.5 + 16.0,
        "the database grew: {windows:#?}"
    );
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}
