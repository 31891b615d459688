//! A node killed mid-run (SIGKILL) leaves its run open; the next start marks
//! it `failed` with kind `abandoned`. Runs the real binary: `tenant create`
//! then `serve`, twice, on one SQLite file.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn scriptbox() -> Command {
    Command::new(env!("CARGO_BIN_EXE_scriptbox"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn serve(database: &str, port: u16) -> Server {
    let child = scriptbox()
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database",
            database,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if reqwest::get(format!("http://127.0.0.1:{port}/health/live"))
            .await
            .is_ok()
        {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("scriptbox serve did not start");
}

async fn call(port: u16, method: &str, path: &str, key: &str, body: Option<Value>) -> Value {
    let client = reqwest::Client::new();
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = client
        .request(method, format!("http://127.0.0.1:{port}{path}"))
        .bearer_auth(key);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let text = request.send().await.unwrap().text().await.unwrap();
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

#[tokio::test]
async fn a_run_cut_short_by_sigkill_is_marked_abandoned_on_restart() {
    let dir = std::env::temp_dir().join(format!("scriptbox-recovery-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let database = format!("sqlite://{}", dir.join("node.db").display());

    let created = scriptbox()
        .args(["tenant", "create", "acme", "--database", &database])
        .output()
        .unwrap();
    assert!(created.status.success(), "{created:?}");
    let stdout = String::from_utf8(created.stdout).unwrap();
    let key = stdout.lines().last().unwrap().trim().to_owned();
    assert!(
        key.starts_with("sbx_"),
        "the key is the last line: {stdout}"
    );

    let port = free_port();
    let mut server = serve(&database, port).await;
    let script = call(
        port,
        "POST",
        "/api/scripts",
        &key,
        Some(json!({
            "name": "forever",
            "source": "export default () => { while (true) {} }",
            "trigger_type": "manual",
            "limits": { "timeout_ms": 60000, "fuel": 50000000000u64 },
        })),
    )
    .await;
    let id = script["id"].as_str().expect("the script is created");
    let accepted = call(
        port,
        "POST",
        &format!("/api/scripts/{id}/run?async=true"),
        &key,
        None,
    )
    .await;
    let execution = accepted["execution_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let e = call(
            port,
            "GET",
            &format!("/api/executions/{execution}"),
            &key,
            None,
        )
        .await;
        if e["status"] == "running" {
            break;
        }
        assert!(Instant::now() < deadline, "the run never started: {e}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    server.0.kill().unwrap(); // SIGKILL: no chance to clean up
    server.0.wait().unwrap();
    drop(server);

    let port = free_port();
    let _server = serve(&database, port).await;
    let e = call(
        port,
        "GET",
        &format!("/api/executions/{execution}"),
        &key,
        None,
    )
    .await;
    assert_eq!(e["status"], "failed", "{e}");
    assert_eq!(e["error_type"], "abandoned");
    assert!(e["finished_at"].is_string());

    // Duplicate tenant names are refused with a clear message.
    let again = scriptbox()
        .args(["tenant", "create", "acme", "--database", &database])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let _ = std::fs::remove_dir_all(&dir);
}
