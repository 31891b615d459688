//! `scriptbox backup FILE` copies a SQLite database that a node is using,
//! with its secrets key, and the copy opens and serves: its scripts run,
//! its secrets decrypt, its history is there.

use crate::common;

use common::{call, create_tenant, scriptbox, serve};
use serde_json::json;

#[tokio::test]
async fn a_backup_taken_under_load_restores_and_serves() {
    let dir = std::env::temp_dir().join(format!("scriptbox-backup-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let database = format!("sqlite://{}", dir.join("live.db").display());
    let key = create_tenant(&database, "acme");
    let live = serve(&database).await;
    let port = live.port;
    let put = call(
        port,
        "PUT",
        "/api/secrets/GREETING",
        &key,
        Some(json!({ "value": "bonjour-from-the-vault" })),
    )
    .await;
    assert!(put.is_null() || put == "", "{put}");
    let script = call(
        port,
        "POST",
        "/api/scripts",
        &key,
        Some(json!({
            "name": "greet",
            "source": "export default (input, ctx) => ctx.env.GREETING.length + input.n",
            "trigger_type": "manual",
            "secrets": ["GREETING"],
        })),
    )
    .await;
    let id = script["id"].as_str().expect("created").to_owned();

    // Runs keep being written while the copy is taken.
    let writer = tokio::spawn({
        let (key, id) = (key.clone(), id.clone());
        async move {
            let mut ran = 0;
            for n in 0..200 {
                let run = call(
                    port,
                    "POST",
                    &format!("/api/scripts/{id}/run"),
                    &key,
                    Some(json!({ "input": { "n": n } })),
                )
                .await;
                assert_eq!(run["status"], "completed", "{run}");
                ran += 1;
            }
            ran
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let copy = dir.join("copy.db");
    let backup = scriptbox()
        .args(["backup", copy.to_str().unwrap(), "--database", &database])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&backup.stdout);
    assert!(backup.status.success(), "{backup:?}");
    assert!(stdout.contains("copy.db.secrets-key"), "{stdout}");
    assert_eq!(writer.await.unwrap(), 200);

    // A second backup to the same file is refused, naming it.
    let again = scriptbox()
        .args(["backup", copy.to_str().unwrap(), "--database", &database])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    drop(live);

    // The copy serves: the script, its secret, and part of its history.
    let restored = serve(&format!("sqlite://{}", copy.display())).await;
    let run = call(
        restored.port,
        "POST",
        &format!("/api/scripts/{id}/run"),
        &key,
        Some(json!({ "input": { "n": 1 } })),
    )
    .await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["output"], json!("bonjour-from-the-vault".len() + 1));
    let page = call(
        restored.port,
        "GET",
        &format!("/api/executions?script_id={id}&limit=500"),
        &key,
        None,
    )
    .await;
    let items = page["items"].as_array().unwrap();
    assert!(items.len() > 1, "the history came along: {page}");
    assert!(items.iter().all(|e| e["status"] == "completed"), "{page}");
    drop(restored);
    let _ = std::fs::remove_dir_all(&dir);
}
