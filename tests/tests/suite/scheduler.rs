//! The scheduler inside a real node, on SQLite and on PostgreSQL: fire
//! times, lag, catch-up, overlap, retries and the dead-letter queue.
//! Claims are also driven directly with chosen times ("now" as a
//! parameter), where waiting for the wall clock would be slow.

use std::time::{Duration, Instant};

use scriptbox::store::DueScript;
use scriptbox_tests::service::{TestNode, metric};
use serde_json::{Value, json};

scriptbox_tests::on_both_backends!(
    an_every_second_schedule_fires_each_second_on_time,
    next_run_at_and_next_runs_follow_the_zone,
    a_missed_occurrence_runs_once_then_the_schedule_resumes,
    claims_with_a_chosen_clock_catch_up_once_and_never_twice,
    an_occurrence_whose_previous_run_is_still_going_is_skipped,
    an_open_run_blocks_the_next_occurrence_only_while_its_node_lives,
    failed_runs_are_retried_then_dead,
    pending_retries_survive_a_restart,
    finding_due_work_uses_the_indexes,
);

fn ms(text: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text.as_str().unwrap_or_else(|| panic!("{text}")))
        .unwrap()
        .timestamp_millis()
}

async fn create(node: &TestNode, key: &str, body: Value) -> Value {
    let (status, created) = node
        .call("POST", "/api/scripts", Some(key), Some(body))
        .await;
    assert_eq!(status, 201, "{created}");
    created
}

/// The script's executions, oldest first.
async fn executions(node: &TestNode, key: &str, script_id: &str) -> Vec<Value> {
    let (status, page) = node
        .call(
            "GET",
            &format!("/api/executions?script_id={script_id}&limit=500"),
            Some(key),
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let mut items = page["items"].as_array().unwrap().clone();
    items.reverse();
    items
}

/// Waits until `done` holds for the script's executions.
async fn wait_for(
    node: &TestNode,
    key: &str,
    script_id: &str,
    within: Duration,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let items = executions(node, key, script_id).await;
        if done(&items) {
            return items;
        }
        assert!(
            Instant::now() < deadline,
            "gave up waiting; executions: {items:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn an_every_second_schedule_fires_each_second_on_time(url: String) {
    let node = TestNode::start(&url).await;
    let key = node.tenant("acme").await;
    let script = create(
        &node,
        &key,
        json!({
            "name": "tick",
            "source": "export default (input, ctx) => ({ at: input.scheduledAt, trigger: ctx.trigger })",
            "trigger_type": "scheduled",
            "schedule": "@every 1s",
        }),
    )
    .await;
    let id = script["id"].as_str().unwrap();
    let first = ms(&script["next_run_at"]);
    let runs = wait_for(&node, &key, id, Duration::from_secs(20), |items| {
        items.iter().filter(|e| e["status"] == "completed").count() >= 3
    })
    .await;
    for (n, run) in runs.iter().take(3).enumerate() {
        assert_eq!(run["trigger_type"], "scheduled");
        assert_eq!(run["attempt"], 0);
        // Consecutive seconds from the first fire time, none missed or doubled.
        let scheduled = ms(&run["scheduled_for"]);
        assert_eq!(scheduled, first + 1000 * n as i64, "{run}");
        assert_eq!(run["output"]["at"], run["input"]["scheduledAt"]);
        assert_eq!(run["output"]["trigger"], "scheduled");
        let lag = ms(&run["started_at"]) - scheduled;
        assert!(
            (0..1000).contains(&lag),
            "started {lag} ms after its time: {run}"
        );
    }
    let metrics = node.metrics().await;
    assert!(metric(&metrics, "scheduler_ticks_total") >= 3.0);
    assert!(metric(&metrics, "scriptbox_scheduler_lag_seconds_count") >= 3.0);
    assert!(
        metric(
            &metrics,
            "scriptbox_scheduler_lag_seconds_bucket{le=\"1.024\"}"
        ) >= 3.0
    );
    // The script's last run time follows its runs.
    let (_, shown) = node
        .call("GET", &format!("/api/scripts/{id}"), Some(&key), None)
        .await;
    assert!(ms(&shown["last_executed_at"]) >= ms(&runs[2]["finished_at"]) - 1);
    node.stop().await;
}

async fn next_run_at_and_next_runs_follow_the_zone(url: String) {
    let node = TestNode::start_with(&url, |c| c.scheduler.enabled = false).await;
    let key = node.tenant("acme").await;
    let ny = create(
        &node,
        &key,
        json!({
            "name": "ny",
            "source": "export default () => 1",
            "trigger_type": "scheduled",
            "schedule": "CRON_TZ=America/New_York 0 9 * * MON-FRI",
        }),
    )
    .await;
    let id = ny["id"].as_str().unwrap();
    let (status, next) = node
        .call(
            "GET",
            &format!("/api/scripts/{id}/next-runs?count=7"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, 200, "{next}");
    assert_eq!(next["zone"], "America/New_York");
    let items = next["items"].as_array().unwrap();
    assert_eq!(items.len(), 7);
    assert_eq!(ms(&items[0]), ms(&ny["next_run_at"]));
    for item in items {
        let t = chrono::DateTime::parse_from_rfc3339(item.as_str().unwrap()).unwrap();
        use chrono::{Datelike, Timelike};
        assert_eq!((t.hour(), t.minute()), (9, 0), "{item}");
        assert!(t.weekday().number_from_monday() <= 5, "{item}");
        let offset = t.offset().local_minus_utc();
        assert!(offset == -5 * 3600 || offset == -4 * 3600, "{item}");
    }
    // The `timezone` field places a schedule without a prefix.
    let tokyo = create(
        &node,
        &key,
        json!({
            "name": "tokyo",
            "source": "export default () => 1",
            "trigger_type": "scheduled",
            "schedule": "@daily",
            "timezone": "Asia/Tokyo",
        }),
    )
    .await;
    let id = tokyo["id"].as_str().unwrap();
    let (_, next) = node
        .call(
            "GET",
            &format!("/api/scripts/{id}/next-runs?count=2"),
            Some(&key),
            None,
        )
        .await;
    let items = next["items"].as_array().unwrap();
    assert!(
        items[0].as_str().unwrap().ends_with("T00:00:00+09:00"),
        "{next}"
    );
    assert_eq!(ms(&items[1]) - ms(&items[0]), 86_400_000);

    // Bad input names what is wrong.
    let bad = [
        (
            json!({ "schedule": "0 0 * * 7" }),
            "invalid cron expression: end of range (7) above maximum (6): 7",
        ),
        (
            json!({ "schedule": "* * * *" }),
            "invalid cron expression: expected exactly 5 fields, found 4: [* * * *]",
        ),
        (
            json!({ "schedule": "TZ=Mars/Base 0 0 * * *" }),
            "invalid cron expression: provided bad location Mars/Base",
        ),
        (
            json!({ "schedule": "@daily", "timezone": "Europe/Atlantis" }),
            "invalid timezone \"Europe/Atlantis\"",
        ),
    ];
    for (patch, message) in bad {
        let (status, body) = node
            .call(
                "PUT",
                &format!("/api/scripts/{id}"),
                Some(&key),
                Some(patch),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        let error = body["error"].as_str().unwrap();
        assert!(error.starts_with(message), "{error}");
    }
    let (status, body) = node
        .call(
            "GET",
            &format!("/api/scripts/{id}/next-runs?count=0"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, 400, "{body}");
    // Disabled: no next run; enabled again: one.
    let (_, off) = node
        .call(
            "PUT",
            &format!("/api/scripts/{id}"),
            Some(&key),
            Some(json!({ "enabled": false })),
        )
        .await;
    assert!(off["next_run_at"].is_null(), "{off}");
    let (_, on) = node
        .call(
            "PUT",
            &format!("/api/scripts/{id}"),
            Some(&key),
            Some(json!({ "enabled": true })),
        )
        .await;
    assert!(on["next_run_at"].is_string(), "{on}");
    node.stop().await;
}

async fn a_missed_occurrence_runs_once_then_the_schedule_resumes(url: String) {
    let node = TestNode::start(&url).await;
    let key = node.tenant("acme").await;
    let script = create(
        &node,
        &key,
        json!({
            "name": "hourly",
            "source": "export default (input) => input.scheduledAt",
            "trigger_type": "scheduled",
            "schedule": "0 * * * *",
        }),
    )
    .await;
    let id = script["id"].as_str().unwrap();
    // As if no node had run for three hours: the stored next fire time is
    // three hours old, and three more occurrences have passed since.
    let now = scriptbox::store::now_ms();
    let missed = now - now.rem_euclid(3_600_000) - 3 * 3_600_000;
    node.exec
        .db()
        .set_next_run(&id.into(), Some(missed))
        .await
        .unwrap();
    let runs = wait_for(&node, &key, id, Duration::from_secs(20), |items| {
        items.iter().any(|e| e["status"] == "completed")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let runs_later = executions(&node, &key, id).await;
    assert_eq!(
        runs_later.len(),
        1,
        "one catch-up run only: {runs_later:#?}"
    );
    assert_eq!(ms(&runs[0]["scheduled_for"]), missed);
    // Back on the schedule: the next top of the hour after now.
    let (_, shown) = node
        .call("GET", &format!("/api/scripts/{id}"), Some(&key), None)
        .await;
    let next = ms(&shown["next_run_at"]);
    assert_eq!(next, now - now.rem_euclid(3_600_000) + 3_600_000, "{shown}");
    node.stop().await;
}

async fn claims_with_a_chosen_clock_catch_up_once_and_never_twice(url: String) {
    let node = TestNode::start_with(&url, |c| c.scheduler.enabled = false).await;
    let key = node.tenant("acme").await;
    let script = create(
        &node,
        &key,
        json!({
            "name": "quarter",
            "source": "export default () => 1",
            "trigger_type": "scheduled",
            "schedule": "*/15 * * * *",
            "timezone": "Europe/Paris",
        }),
    )
    .await;
    let id = script["id"].as_str().unwrap();
    let db = node.exec.db();
    let at = |text: &str| {
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_millis()
    };
    let t0 = at("2030-01-01T10:00:00+01:00");
    db.set_next_run(&id.into(), Some(t0)).await.unwrap();
    let plan = |s: &DueScript, now: i64| scriptbox::scheduler::plan(s, now);
    // Claims made as this node, so its recovery sweep leaves them alone.
    let me = node.exec.node_id();

    // Before its time: nothing to claim.
    let early = t0 - 1;
    let claims = db
        .claim_due_scripts(early, 10, me, |s| plan(s, early))
        .await
        .unwrap();
    assert!(claims.is_empty());

    // On time: claimed once; the next fire time is the next quarter hour.
    let claims = db
        .claim_due_scripts(t0, 10, me, |s| plan(s, t0))
        .await
        .unwrap();
    assert_eq!(claims.len(), 1);
    assert!(claims[0].execution_id.is_some());
    assert_eq!(claims[0].input["scheduledAt"], "2030-01-01T10:00:00+01:00");
    let again = db
        .claim_due_scripts(t0, 10, "n2", |s| plan(s, t0))
        .await
        .unwrap();
    assert!(again.is_empty(), "claimed twice: {again:?}");
    let tenant = db.tenant_by_key(&key).await.unwrap();
    let stored = db.script(&tenant.id, &id.into()).await.unwrap();
    assert_eq!(stored.next_run_at, Some(at("2030-01-01T10:15:00+01:00")));

    // Its run is still open: the next occurrence is skipped, not doubled.
    let t1 = at("2030-01-01T10:15:00+01:00");
    let claims = db
        .claim_due_scripts(t1, 10, me, |s| plan(s, t1))
        .await
        .unwrap();
    assert_eq!(claims.len(), 1);
    assert!(claims[0].execution_id.is_none(), "overlap must skip");

    // Close the open run, then stay away for five hours: one catch-up
    // run for the oldest missed occurrence, then the next quarter after now.
    let first = claims_open_execution(&node, &key, id).await;
    node.exec.db().start_execution(&first).await.unwrap();
    let done = scriptbox::store::FinishedRun {
        status: scriptbox::model::ExecutionStatus::Completed,
        output: Some("1".into()),
        error_type: None,
        error_message: None,
        error_stack: None,
        logs: "[]".into(),
        duration_ms: 1,
        duration_us: 1_000,
        fuel_used: 1,
        memory_peak_bytes: 1,
        cpu_time_us: 1,
    };
    db.finish_execution(&first, &done, None).await.unwrap();
    let late = at("2030-01-01T15:07:00+01:00");
    let claims = db
        .claim_due_scripts(late, 10, me, |s| plan(s, late))
        .await
        .unwrap();
    assert_eq!(claims.len(), 1);
    assert!(claims[0].execution_id.is_some());
    assert_eq!(claims[0].script.occurrence, at("2030-01-01T10:30:00+01:00"));
    let stored = db.script(&tenant.id, &id.into()).await.unwrap();
    assert_eq!(stored.next_run_at, Some(at("2030-01-01T15:15:00+01:00")));
    let claims = db
        .claim_due_scripts(late, 10, me, |s| plan(s, late))
        .await
        .unwrap();
    assert!(claims.is_empty(), "caught up more than once: {claims:?}");
    node.stop().await;
}

/// The overlap rule across nodes: another node's open run blocks the
/// script's next occurrence while that node lives. On PostgreSQL, once the
/// node's connections end (as when its process is killed) its run no
/// longer blocks, long before recovery would close it; a SQLite file has
/// one node, whose open runs block until its next start closes them.
async fn an_open_run_blocks_the_next_occurrence_only_while_its_node_lives(url: String) {
    use scriptbox::store::{DatabaseConfig, Db, Presence};
    use sqlx::Connection;

    let node = TestNode::start_with(&url, |c| c.scheduler.enabled = false).await;
    let key = node.tenant("acme").await;
    let script = create(
        &node,
        &key,
        json!({
            "name": "quarter",
            "source": "export default () => 1",
            "trigger_type": "scheduled",
            "schedule": "*/15 * * * *",
        }),
    )
    .await;
    let id = script["id"].as_str().unwrap();
    let db = node.exec.db();
    let plan = |s: &DueScript, now: i64| scriptbox::scheduler::plan(s, now);
    let quarter = 15 * 60_000;
    let t0 = chrono::DateTime::parse_from_rfc3339("2030-01-01T10:00:00Z")
        .unwrap()
        .timestamp_millis();
    db.set_next_run(&id.into(), Some(t0)).await.unwrap();

    // Another node, with connections of its own, claims an occurrence and
    // has not run it yet.
    let other = Db::open(&DatabaseConfig {
        url: url.clone(),
        ..DatabaseConfig::default()
    })
    .await
    .unwrap();
    let presence = Presence::default();
    other.heartbeat("other").await.unwrap();
    other.hold_presence("other", &presence).await.unwrap();
    let claims = other
        .claim_due_scripts(t0, 10, "other", |s| plan(s, t0))
        .await
        .unwrap();
    assert!(claims[0].execution_id.is_some(), "{claims:?}");

    // While it lives, its open run blocks the next occurrence.
    let t1 = t0 + quarter;
    let claims = db
        .claim_due_scripts(t1, 10, node.exec.node_id(), |s| plan(s, t1))
        .await
        .unwrap();
    assert!(claims[0].execution_id.is_none(), "overlap must skip");

    // It dies: its connections end.
    let postgres = url.starts_with("postgres");
    let advisory_locks = "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' \
        AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";
    let mut watcher = if postgres {
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        let (held,): (i64,) = sqlx::query_as(advisory_locks)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(held, 2, "each node holds its presence lock");
        Some(conn)
    } else {
        None
    };
    drop(presence);
    other.close().await;
    if let Some(conn) = watcher.as_mut() {
        // The server notices the closed socket on its own time.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (held,): (i64,) = sqlx::query_as(advisory_locks)
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            if held == 1 {
                break;
            }
            assert!(Instant::now() < deadline, "the dead node's lock stayed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    let t2 = t1 + quarter;
    let claims = db
        .claim_due_scripts(t2, 10, node.exec.node_id(), |s| plan(s, t2))
        .await
        .unwrap();
    assert_eq!(
        claims[0].execution_id.is_some(),
        postgres,
        "on PostgreSQL a dead node's run must not block; on SQLite it does until recovery"
    );
    // The dead node's run is still open: only recovery closes it.
    let open = executions(&node, &key, id)
        .await
        .into_iter()
        .filter(|e| e["status"] == "queued")
        .count();
    assert_eq!(open, if postgres { 2 } else { 1 });
    node.stop().await;
}

/// The one open execution of a script.
async fn claims_open_execution(
    node: &TestNode,
    key: &str,
    script_id: &str,
) -> scriptbox::model::ExecutionId {
    let items = executions(node, key, script_id).await;
    let open: Vec<&Value> = items.iter().filter(|e| e["status"] == "queued").collect();
    assert_eq!(open.len(), 1, "{items:#?}");
    open[0]["id"].as_str().unwrap().into()
}

async fn an_occurrence_whose_previous_run_is_still_going_is_skipped(url: String) {
    let node = TestNode::start(&url).await;
    let key = node.tenant("acme").await;
    // Each run busies itself for 1.6 s; the schedule fires every second.
    let script = create(
        &node,
        &key,
        json!({
            "name": "slow",
            "source": "export default () => { const t = Date.now(); while (Date.now() - t < 1600) {} return 1 }",
            "trigger_type": "scheduled",
            "schedule": "@every 1s",
            "limits": { "fuel": 50000000000u64, "timeout_ms": 10000 },
        }),
    )
    .await;
    let id = script["id"].as_str().unwrap();
    let runs = wait_for(&node, &key, id, Duration::from_secs(30), |items| {
        items.iter().filter(|e| e["status"] == "completed").count() >= 2
    })
    .await;
    node.call(
        "PUT",
        &format!("/api/scripts/{id}"),
        Some(&key),
        Some(json!({ "enabled": false })),
    )
    .await;
    let done: Vec<&Value> = runs.iter().filter(|e| e["status"] == "completed").collect();
    // Never two at once: each run starts after the previous one finished.
    for pair in done.windows(2) {
        assert!(
            ms(&pair[1]["started_at"]) >= ms(&pair[0]["finished_at"]),
            "{pair:#?}"
        );
        // and the occurrence in between was skipped.
        assert!(ms(&pair[1]["scheduled_for"]) - ms(&pair[0]["scheduled_for"]) >= 2000);
    }
    let metrics = node.metrics().await;
    assert!(
        metric(
            &metrics,
            "scriptbox_scheduler_skipped_total{reason=\"overlap\"}"
        ) >= 1.0
    );
    node.stop().await;
}

async fn failed_runs_are_retried_then_dead(url: String) {
    let node = TestNode::start(&url).await;
    let key = node.tenant("acme").await;
    let script = create(
        &node,
        &key,
        json!({
            "name": "flaky",
            "source": "export default (input, ctx) => { throw new Error(`boom ${ctx.attempt}`) }",
            "trigger_type": "scheduled",
            "schedule": "@every 1h",
            "max_retries": 2,
            "retry_delay_ms": 1000,
        }),
    )
    .await;
    let id = script["id"].as_str().unwrap();
    node.exec
        .db()
        .set_next_run(&id.into(), Some(scriptbox::store::now_ms()))
        .await
        .unwrap();
    let runs = wait_for(&node, &key, id, Duration::from_secs(30), |items| {
        items.iter().any(|e| e["status"] == "dead")
    })
    .await;
    assert_eq!(runs.len(), 3, "{runs:#?}");
    let statuses: Vec<(&str, i64)> = runs
        .iter()
        .map(|e| {
            (
                e["status"].as_str().unwrap(),
                e["attempt"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(statuses, [("failed", 0), ("failed", 1), ("dead", 2)]);
    for (n, run) in runs.iter().enumerate() {
        assert_eq!(run["error_message"], format!("Error: boom {n}"));
        // Every retry belongs to the same occurrence.
        assert_eq!(run["scheduled_for"], runs[0]["scheduled_for"]);
    }
    for pair in runs.windows(2) {
        let waited = ms(&pair[1]["started_at"]) - ms(&pair[0]["finished_at"]);
        assert!(
            (1000..3000).contains(&waited),
            "retry after {waited} ms: {pair:#?}"
        );
    }

    // The dead-letter queue lists it; a retry by hand runs it again once.
    let (_, dead) = node
        .call("GET", "/api/executions?status=dead", Some(&key), None)
        .await;
    let dead = dead["items"].as_array().unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["id"], runs[2]["id"]);
    let (status, retried) = node
        .call(
            "POST",
            &format!("/api/executions/{}/retry", runs[2]["id"].as_str().unwrap()),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, 200, "{retried}");
    assert_eq!(retried["attempt"], 3);
    assert_eq!(retried["status"], "failed");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        executions(&node, &key, id).await.len(),
        4,
        "a retry by hand is not retried again"
    );
    // The gauge is refreshed every few seconds.
    let deadline = Instant::now() + Duration::from_secs(15);
    while metric(&node.metrics().await, "scriptbox_dead_letter_queue_size") != 1.0 {
        assert!(Instant::now() < deadline, "{}", node.metrics().await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    node.stop().await;
}

async fn pending_retries_survive_a_restart(url: String) {
    let configure = |c: &mut scriptbox::config::Config| c.scheduler.retry_delay_ms = 3000;
    let node = TestNode::start_with(&url, configure).await;
    let key = node.tenant("acme").await;
    let script = create(
        &node,
        &key,
        json!({
            "name": "flaky",
            "source": "export default () => { throw new Error('boom') }",
            "trigger_type": "scheduled",
            "schedule": "@every 1h",
            "max_retries": 1,
        }),
    )
    .await;
    let id = script["id"].as_str().unwrap().to_owned();
    assert_eq!(script["retry_delay_ms"], 3000, "the configured default");
    node.exec
        .db()
        .set_next_run(&id.as_str().into(), Some(scriptbox::store::now_ms()))
        .await
        .unwrap();
    let runs = wait_for(&node, &key, &id, Duration::from_secs(20), |items| {
        items.len() == 2 && items[0]["status"] == "failed"
    })
    .await;
    assert_eq!(runs[1]["status"], "queued");
    assert_eq!(runs[1]["attempt"], 1);
    let retry_at = ms(&runs[1]["retry_at"]);
    let url = node.shut_down().await;

    let node = TestNode::start_with(&url, configure).await;
    let runs = wait_for(&node, &key, &id, Duration::from_secs(20), |items| {
        items.len() == 2 && items[1]["status"] == "dead"
    })
    .await;
    assert!(ms(&runs[1]["started_at"]) >= retry_at, "{runs:#?}");
    assert!(ms(&runs[1]["started_at"]) - ms(&runs[0]["finished_at"]) >= 3000);
    node.stop().await;
}

async fn finding_due_work_uses_the_indexes(url: String) {
    let node = TestNode::start_with(&url, |c| c.scheduler.enabled = false).await;
    let due = "SELECT id FROM scripts WHERE next_run_at <= 1 ORDER BY next_run_at LIMIT 200";
    let retries = "SELECT id FROM executions WHERE run_after <= 1 ORDER BY run_after LIMIT 200";
    for (query, index) in [(due, "scripts_due"), (retries, "executions_retries_due")] {
        let plan: Vec<String> = match node.exec.db() {
            scriptbox::store::Db::Sqlite(pool) => {
                let rows: Vec<(i64, i64, i64, String)> =
                    sqlx::query_as(&format!("EXPLAIN QUERY PLAN {query}"))
                        .fetch_all(pool)
                        .await
                        .unwrap();
                rows.into_iter().map(|r| r.3).collect()
            }
            scriptbox::store::Db::Postgres(pool) => {
                // The tables are tiny here; forbid the sequential scan to see
                // whether the index serves the query.
                let mut tx = pool.begin().await.unwrap();
                sqlx::query("SET LOCAL enable_seqscan = off")
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                let rows: Vec<(String,)> = sqlx::query_as(&format!("EXPLAIN {query}"))
                    .fetch_all(&mut *tx)
                    .await
                    .unwrap();
                rows.into_iter().map(|r| r.0).collect()
            }
        };
        let plan = plan.join("\n");
        assert!(plan.contains(index), "{query}:\n{plan}");
        assert!(
            !plan.contains("SCAN scripts\n") && !plan.contains("Seq Scan"),
            "{plan}"
        );
    }
    node.stop().await;
}
