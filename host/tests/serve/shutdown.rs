//! The `serve` process through the real binary. SIGTERM: running
//! executions finish within `shutdown_timeout` and are stored; those that
//! cannot are recorded as failed with kind `shutdown`; the process exits 0
//! either way. Logs: what it writes to stderr, as text or JSON.

use crate::common;

use std::time::{Duration, Instant};

use common::{call, create_tenant, execution, serve, serve_logging, wait_for_status};
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
    let env = [
        ("SCRIPTBOX_SHUTDOWN_TIMEOUT_MS", "1000"),
        ("SCRIPTBOX_LOG_FORMAT", "json"),
    ];
    let (mut server, lines) = serve_logging(&db, &env).await;
    let execution = start_run(server.port, &key, busy(20_000)).await;
    let signalled = Instant::now();
    server.terminate();
    assert_eq!(server.wait_exit(Duration::from_secs(15)), Some(0));
    let took = signalled.elapsed();
    assert!(took < Duration::from_secs(10), "exited after {took:?}");
    drop(server);
    // The last line says what shutdown did.
    let lines = lines.lock().unwrap().clone();
    let last: Value = serde_json::from_str(lines.last().expect("log lines")).unwrap();
    assert_eq!(last["waited_for"], 1, "{lines:#?}");
    assert_eq!(last["recorded_failed"], 1, "{lines:#?}");

    let e = after_restart(&db, &key, &execution).await;
    assert_eq!(e["status"], "failed", "{e}");
    assert_eq!(e["error_type"], "shutdown");
    assert!(e["finished_at"].is_string());
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_request_and_run_spans() {
    let (dir, db) = database("json-logs");
    let key = create_tenant(&db, "acme");
    let env = [
        ("SCRIPTBOX_LOG_FORMAT", "json"),
        ("RUST_LOG", "scriptbox=debug,warn"),
    ];
    let (mut server, lines) = serve_logging(&db, &env).await;
    let script = json!({
        "name": "fails",
        "source": "export default () => { throw new Error('boom') }",
        "trigger_type": "manual",
    });
    let created = call(server.port, "POST", "/api/scripts", &key, Some(script)).await;
    let id = created["id"].as_str().unwrap();
    let reply = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{}/api/scripts/{id}/run",
            server.port
        ))
        .bearer_auth(&key)
        .header("x-request-id", "req-7")
        .send()
        .await
        .unwrap();
    let ran: Value = serde_json::from_str(&reply.text().await.unwrap()).unwrap();
    let execution_id = ran["id"].as_str().unwrap().to_owned();
    server.terminate();
    assert_eq!(server.wait_exit(Duration::from_secs(30)), Some(0));
    drop(server);

    let lines = lines.lock().unwrap().clone();
    let events: Vec<Value> = lines
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let find = |what: &dyn Fn(&Value) -> bool| events.iter().find(|e| what(e)).cloned();
    let started = find(&|e| {
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("listening"))
    });
    let started = started.unwrap_or_else(|| panic!("no start line in {lines:#?}"));
    assert_eq!(started["level"], "INFO");
    assert_eq!(started["database"], "sqlite");
    let stopped = find(&|e| {
        e["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("stopped"))
    });
    let stopped = stopped.unwrap_or_else(|| panic!("no stop line in {lines:#?}"));
    assert_eq!(stopped["waited_for"], 0, "{stopped}");
    assert_eq!(stopped["recorded_failed"], 0, "{stopped}");

    // The failed run: one warning, inside the run's span and the request's.
    let failed = find(&|e| e["message"] == "run failed");
    let failed = failed.unwrap_or_else(|| panic!("no run warning in {lines:#?}"));
    assert_eq!(failed["level"], "WARN");
    assert_eq!(failed["error_type"], "js_error");
    assert_eq!(failed["span"]["name"], "run");
    assert_eq!(failed["span"]["execution_id"], execution_id.as_str());
    assert_eq!(failed["span"]["script_id"], id);
    assert_eq!(failed["span"]["trigger"], "manual");
    let spans = failed["spans"].as_array().unwrap();
    assert!(
        spans
            .iter()
            .any(|s| s["name"] == "request" && s["id"] == "req-7"),
        "{failed}"
    );
    // The request's own line, at debug, with its status.
    let answered = find(&|e| e["span"]["id"] == "req-7" && e["message"] == "response");
    assert!(answered.is_some_and(|e| e["status"] == 200), "{lines:#?}");
    let _ = std::fs::remove_dir_all(dir);
}
