//! SIGTERM through the real binary: running executions finish within
//! `shutdown_timeout` and are stored; those that cannot are recorded as
//! failed with kind `shutdown`; the process exits 0 either way.

mod common;

use std::time::{Duration, Instant};

use common::{call, create_tenant, execution, serve, serve_with, wait_for_status};
use serde_json::{Value, json};

/// A script that keeps the CPU busy for `ms`.
fn busy(ms: u64) -> Value {
    json!({
        "name": format!("busy-{ms}"),
        "source": format!("export default () => {{ const t = Date.now(); while (Date.now() - t < {ms}) {{}} return 'finished' }}"),
        "trigger_type": "manual",
        "limits": { "fuel": 50_000_000_000u64, "timeout_ms": 60_000 },
    })
}

async fn start_run(port: u16, key: &str, script: Value) -> String {
    let created = call(port, "POST", "/api/scripts", key, Some(script)).await;
    let id = created["id"].as_str().expect("created").to_owned();
    let accepted = call(
        port,
        "POST",
        &format!("/api/scripts/{id}/run?async=true"),
        key,
        None,
    )
    .await;
    let execution = accepted["execution_id"].as_str().unwrap().to_owned();
    wait_for_status(port, key, &execution, "running").await;
    execution
}

/// The stored execution, read through a fresh node on the same database.
async fn after_restart(db: &str, key: &str, id: &str) -> Value {
    let server = serve(db).await;
    execution(server.port, key, id).await
}

fn database(name: &str) -> (std::path::PathBuf, String) {
    let dir =
        std::env::temp_dir().join(format!("scriptbox-shutdown-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("node.db").display());
    (dir, url)
}

#[tokio::test]
async fn sigterm_lets_a_running_execution_finish_and_exits_0() {
    let (dir, db) = database("finish");
    let key = create_tenant(&db, "acme");
    let mut server = serve(&db).await;
    let execution = start_run(server.port, &key, busy(2_000)).await;
    let signalled = Instant::now();
    server.terminate();
    assert_eq!(server.wait_exit(Duration::from_secs(30)), Some(0));
    assert!(
        signalled.elapsed() >= Duration::from_millis(1_000),
        "it waited for the run"
    );
    drop(server);

    let e = after_restart(&db, &key, &execution).await;
    assert_eq!(e["status"], "completed", "{e}");
    assert_eq!(e["output"], "finished");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_run_longer_than_the_shutdown_timeout_is_failed_with_kind_shutdown() {
    let (dir, db) = database("cut");
    let key = create_tenant(&db, "acme");
    let mut server = serve_with(&db, &[("SCRIPTBOX_SHUTDOWN_TIMEOUT_MS", "1000")]).await;
    let execution = start_run(server.port, &key, busy(20_000)).await;
    let signalled = Instant::now();
    server.terminate();
    assert_eq!(server.wait_exit(Duration::from_secs(15)), Some(0));
    let took = signalled.elapsed();
    assert!(took < Duration::from_secs(10), "exited after {took:?}");
    drop(server);

    let e = after_restart(&db, &key, &execution).await;
    assert_eq!(e["status"], "failed", "{e}");
    assert_eq!(e["error_type"], "shutdown");
    assert!(e["finished_at"].is_string());
    let _ = std::fs::remove_dir_all(dir);
}
