//! A node killed mid-run (SIGKILL) leaves its run open; the next start marks
//! it `failed` with kind `abandoned`. Runs the real binary: `tenant create`
//! then `serve`, twice, on one SQLite file.

use crate::common;

use common::{call, create_tenant, execution, scriptbox, serve, wait_for_status};
use serde_json::json;

#[tokio::test]
async fn a_run_cut_short_by_sigkill_is_marked_abandoned_on_restart() {
    let dir = std::env::temp_dir().join(format!("scriptbox-recovery-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let database = format!("sqlite://{}", dir.join("node.db").display());

    let key = create_tenant(&database, "acme");

    let server = serve(&database).await;
    let port = server.port;
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
    let execution_id = accepted["execution_id"].as_str().unwrap().to_owned();
    wait_for_status(port, &key, &execution_id, "running").await;

    server.kill();

    let server = serve(&database).await;
    let e = execution(server.port, &key, &execution_id).await;
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
