//! Retention on SQLite and PostgreSQL: what a sweep deletes (old finished
//! executions; beyond a script's newest N, the completed and failed ones)
//! and what it keeps (open runs, pending retries, young `dead` ones);
//! scripts' own limits through the API; one sweeper at a time on
//! PostgreSQL; SQLite giving the space back.

use std::time::Duration;

use scriptbox::metrics::Metrics;
use scriptbox::model::{ExecutionId, ExecutionStatus, FailureKind, Trigger};
use scriptbox::retention::{Retention, RetentionConfig};
use scriptbox::store::{DatabaseConfig, Db, FinishedRun, NewExecution, ScriptRecord};
use scriptbox_tests::service::TestNode;
use serde_json::json;

scriptbox_tests::on_both_backends!(
    old_finished_executions_go_and_open_ones_stay,
    a_script_keeps_its_newest_executions_and_its_young_dead_ones,
    scripts_set_their_own_limits_through_the_api,
    one_node_sweeps_at_a_time,
);

async fn open(url: &str) -> Db {
    Db::open(&DatabaseConfig {
        url: url.to_owned(),
        ..Default::default()
    })
    .await
    .unwrap()
}

async fn new_script(db: &Db, tenant: &str) -> ScriptRecord {
    let (tenant, _) = db.create_tenant(tenant).await.unwrap();
    db.create_script(&tenant.id, &scriptbox_tests::manual_script())
        .await
        .unwrap()
}

/// An execution of `script` left in `status` (`queued` stays open), with
/// `input_bytes` of input.
async fn execution(
    db: &Db,
    script: &ScriptRecord,
    status: ExecutionStatus,
    input_bytes: usize,
) -> ExecutionId {
    let id = ExecutionId::generate();
    let input = serde_json::to_string(&"x".repeat(input_bytes)).unwrap();
    db.insert_execution(&NewExecution {
        id: id.clone(),
        tenant_id: script.tenant_id.clone(),
        script_id: script.id.clone(),
        script_version: script.version,
        trigger_type: Trigger::Manual,
        input: input.into(),
        attempt: 0,
        node_id: "node".into(),
        scheduled_for: None,
    })
    .await
    .unwrap();
    if status != ExecutionStatus::Queued {
        let failed = status != ExecutionStatus::Completed;
        let run = FinishedRun {
            status,
            output: (!failed).then(|| "1".into()),
            error_type: failed.then_some(FailureKind::JsError),
            error_message: failed.then(|| "no".into()),
            error_stack: None,
            logs: "[]".into(),
            duration_ms: 1,
            duration_us: 1_000,
            fuel_used: 1,
            memory_peak_bytes: 1,
            cpu_time_us: 1,
        };
        db.finish_execution(&id, &run, None).await.unwrap();
    }
    id
}

/// The ids of a script's executions, oldest first.
async fn remaining(db: &Db, script: &ScriptRecord) -> Vec<ExecutionId> {
    let filter = scriptbox::store::ExecutionFilter {
        script_id: Some(script.id.clone()),
        limit: 1000,
        ..Default::default()
    };
    let mut ids: Vec<ExecutionId> = db
        .list_executions(&script.tenant_id, &filter)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    ids.reverse();
    ids
}

fn sweeper(db: &Db, config: RetentionConfig) -> (Retention, Metrics) {
    let metrics = Metrics::new();
    (
        Retention::new(db.clone(), config, metrics.retention.clone()),
        metrics,
    )
}

async fn old_finished_executions_go_and_open_ones_stay(url: String) {
    let db = open(&url).await;
    let script = new_script(&db, "acme").await;
    let completed = execution(&db, &script, ExecutionStatus::Completed, 10).await;
    let failed = execution(&db, &script, ExecutionStatus::Failed, 10).await;
    let dead = execution(&db, &script, ExecutionStatus::Dead, 10).await;
    let open = execution(&db, &script, ExecutionStatus::Queued, 10).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let young = execution(&db, &script, ExecutionStatus::Completed, 10).await;

    let (mut retention, metrics) = sweeper(
        &db,
        RetentionConfig {
            max_age: "1s".parse().unwrap(),
            batch: 2, // several statements
            ..RetentionConfig::default()
        },
    );
    let swept = retention.sweep().await.unwrap();
    assert!(swept.ran);
    assert_eq!(swept.deleted, 3);
    let left = remaining(&db, &script).await;
    assert_eq!(
        left,
        vec![open, young],
        "deleted {completed} {failed} {dead}?"
    );
    assert_eq!(metrics.retention.deleted.get(), 3);
    retention.refresh_size().await;
    assert!(metrics.retention.database_bytes.get() > 0);
    let text = metrics.render();
    assert!(
        text.contains("scriptbox_retention_deleted_total 3"),
        "{text}"
    );
    assert!(text.contains("scriptbox_database_bytes "), "{text}");
    db.close().await;
}

async fn a_script_keeps_its_newest_executions_and_its_young_dead_ones(url: String) {
    let db = open(&url).await;
    let script = new_script(&db, "acme").await;
    let other = new_script(&db, "globex").await;
    let dead = execution(&db, &script, ExecutionStatus::Dead, 10).await;
    let ids = completed_runs(&db, &script, 5).await;
    let others = completed_runs(&db, &other, 5).await;

    let config = RetentionConfig {
        max_per_script: 3,
        ..RetentionConfig::default()
    };
    let (mut retention, _) = sweeper(&db, config.clone());
    let swept = retention.sweep().await.unwrap();
    // The newest three stay, and the dead one, younger than max_age.
    assert_eq!(swept.deleted, 2 + 2);
    let mut kept = vec![dead.clone()];
    kept.extend(ids[2..].iter().cloned());
    assert_eq!(remaining(&db, &script).await, kept);
    assert_eq!(remaining(&db, &other).await, others[2..].to_vec());

    // Nothing new: nothing to count, nothing deleted.
    assert_eq!(retention.sweep().await.unwrap().deleted, 0);
    // One more run pushes the oldest kept one out, on the next sweep.
    let newest = execution(&db, &script, ExecutionStatus::Failed, 10).await;
    assert_eq!(retention.sweep().await.unwrap().deleted, 1);
    let mut kept = vec![dead, ids[3].clone(), ids[4].clone()];
    kept.push(newest);
    assert_eq!(remaining(&db, &script).await, kept);

    // A new node (a restart) counts every script at its first sweep.
    let (mut fresh, _) = sweeper(
        &db,
        RetentionConfig {
            max_per_script: 1,
            ..config
        },
    );
    assert_eq!(fresh.sweep().await.unwrap().deleted, 2 + 2);
    db.close().await;
}

async fn completed_runs(db: &Db, script: &ScriptRecord, n: usize) -> Vec<ExecutionId> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(execution(db, script, ExecutionStatus::Completed, 10).await);
    }
    ids
}

async fn scripts_set_their_own_limits_through_the_api(url: String) {
    let node = TestNode::start_with(&url, |c| c.retention.enabled = false).await;
    let key = node.tenant("acme").await;
    let (status, refused) = node
        .call(
            "POST",
            "/api/scripts",
            Some(&key),
            Some(json!({
                "name": "bad",
                "source": "export default () => 1",
                "trigger_type": "manual",
                "retention": { "max_age": "2w" },
            })),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    assert!(refused.to_string().contains("2w"), "{refused}");
    let (status, refused) = node
        .call(
            "POST",
            "/api/scripts",
            Some(&key),
            Some(json!({
                "name": "bad",
                "source": "export default () => 1",
                "trigger_type": "manual",
                "retention": { "max_per_script": 0 },
            })),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused.to_string().contains("retention.max_per_script"),
        "{refused}"
    );

    let mut ids = Vec::new();
    for (name, retention) in [
        ("short", json!({ "max_per_script": 2, "max_age": "36h" })),
        ("plain", json!(null)),
    ] {
        let mut body = json!({
            "name": name,
            "source": "export default () => 1",
            "trigger_type": "manual",
        });
        if !retention.is_null() {
            body["retention"] = retention;
        }
        let (status, created) = node
            .call("POST", "/api/scripts", Some(&key), Some(body))
            .await;
        assert_eq!(status, 201, "{created}");
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    let (_, short) = node
        .call("GET", &format!("/api/scripts/{}", ids[0]), Some(&key), None)
        .await;
    assert_eq!(
        short["retention"],
        json!({ "max_age": "36h", "max_per_script": 2 })
    );
    let (_, plain) = node
        .call("GET", &format!("/api/scripts/{}", ids[1]), Some(&key), None)
        .await;
    assert_eq!(
        plain["retention"],
        json!({ "max_age": null, "max_per_script": null })
    );
    // An update without `retention` keeps it.
    let (status, updated) = node
        .call(
            "PUT",
            &format!("/api/scripts/{}", ids[0]),
            Some(&key),
            Some(json!({ "source": "export default () => 2" })),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["retention"]["max_per_script"], 2);

    for id in &ids {
        for _ in 0..4 {
            let (status, run) = node
                .call(
                    "POST",
                    &format!("/api/scripts/{id}/run"),
                    Some(&key),
                    Some(json!({})),
                )
                .await;
            assert_eq!(status, 200, "{run}");
        }
    }
    let (mut retention, _) = sweeper(node.exec.db(), RetentionConfig::default());
    assert_eq!(retention.sweep().await.unwrap().deleted, 2);
    for (id, left) in [(&ids[0], 2), (&ids[1], 4)] {
        let (_, page) = node
            .call(
                "GET",
                &format!("/api/executions?script_id={id}"),
                Some(&key),
                None,
            )
            .await;
        assert_eq!(page["items"].as_array().unwrap().len(), left, "{page}");
    }
    node.stop().await;
}

async fn one_node_sweeps_at_a_time(url: String) {
    let first = open(&url).await;
    let second = open(&url).await;
    let held = first.retention_lock().await.unwrap();
    assert!(held.is_some());
    let other = second.retention_lock().await.unwrap();
    if url.starts_with("postgres") {
        assert!(other.is_none(), "two nodes swept at once");
        let (mut retention, _) = sweeper(&second, RetentionConfig::default());
        assert!(!retention.sweep().await.unwrap().ran);
        drop(held);
        // The server releases the lock when it sees the connection end.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while second.retention_lock().await.unwrap().is_none() {
            assert!(std::time::Instant::now() < deadline, "the lock stayed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    } else {
        // A SQLite file has one node; its statements queue for the lock.
        assert!(other.is_some());
    }
    first.close().await;
    second.close().await;
}

/// SQLite gives deleted rows' space back to the file system: new files are
/// in incremental auto-vacuum mode, older files are converted when opened,
/// and a sweep that deleted most rows leaves a much smaller file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_gives_the_space_back() {
    use sqlx::Connection;

    let url = scriptbox_tests::service::fresh_database(scriptbox_tests::service::Backend::Sqlite)
        .await
        .unwrap();
    let path = url.strip_prefix("sqlite://").unwrap().to_owned();
    // A file made without auto-vacuum, as older versions made them.
    {
        let mut conn = sqlx::SqliteConnection::connect(&format!("{url}?mode=rwc"))
            .await
            .unwrap();
        sqlx::query("CREATE TABLE filler (x TEXT)")
            .execute(&mut conn)
            .await
            .unwrap();
        let (mode,): (i64,) = sqlx::query_as("PRAGMA auto_vacuum")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(mode, 0);
        conn.close().await.unwrap();
    }
    let db = open(&url).await;
    let Db::Sqlite(pool) = &db else {
        unreachable!()
    };
    let (mode,): (i64,) = sqlx::query_as("PRAGMA auto_vacuum")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(mode, 2, "converted to incremental auto-vacuum");

    let script = new_script(&db, "acme").await;
    for _ in 0..400 {
        execution(&db, &script, ExecutionStatus::Completed, 20_000).await;
    }
    let before = db.size_bytes().await.unwrap();
    assert!(before > 8_000_000, "{before}");
    let (mut retention, metrics) = sweeper(
        &db,
        RetentionConfig {
            max_per_script: 10,
            ..RetentionConfig::default()
        },
    );
    assert_eq!(retention.sweep().await.unwrap().deleted, 390);
    retention.refresh_size().await;
    let after = metrics.retention.database_bytes.get();
    assert!(after < before / 4, "{before} -> {after} bytes");
    db.close().await;
    let _ = std::fs::remove_file(&path);
}
