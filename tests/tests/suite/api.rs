//! The HTTP API (docs/api.md) over a real socket, against SQLite and
//! against PostgreSQL: every test runs once per backend. PostgreSQL tests
//! read `SCRIPTBOX_TEST_POSTGRES_URL` and say they were skipped without it.

use scriptbox::model::{ExecutionStatus, FailureKind, Trigger};
use scriptbox_tests::service::TestNode;
use serde_json::{Value, json};

scriptbox_tests::on_both_backends!(
    requests_without_a_valid_key_are_401,
    scripts_are_created_shown_listed_updated_and_deleted,
    bad_input_is_400_naming_what_is_wrong,
    duplicate_webhook_paths_are_409_within_a_tenant_only,
    another_tenants_objects_are_404,
    a_manual_run_is_recorded_with_output_logs_and_usage,
    an_async_run_answers_202_and_finishes_later,
    updating_a_script_bumps_its_version_and_runs_the_new_source,
    lists_are_paged_with_a_cursor,
    sdk_db_is_persisted_per_tenant,
    failed_runs_can_be_retried,
    a_thousand_concurrent_runs_are_all_recorded,
    a_run_whose_client_goes_away_still_finishes_and_is_recorded,
    open_runs_of_silent_nodes_are_abandoned,
    every_request_carries_an_id_on_both_listeners,
    stats_are_aggregated_per_minute_by_the_database,
);

async fn every_request_carries_an_id_on_both_listeners(url: String) {
    let node = TestNode::start(&url).await;
    let mut seen = std::collections::HashSet::new();
    for base in [&node.base, &node.public, &node.base] {
        // Made up when the request has none: a UUID, new each time.
        let reply = node
            .client
            .get(format!("{base}/nothing/here"))
            .send()
            .await
            .unwrap();
        let id = reply.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
        assert!(seen.insert(id), "ids are not reused");
        // Kept when the caller sends one (a proxy's id follows the request).
        let reply = node
            .client
            .get(format!("{base}/health/live"))
            .header("x-request-id", "edge-42")
            .send()
            .await
            .unwrap();
        assert_eq!(reply.headers()["x-request-id"], "edge-42");
    }
    node.stop().await;
}

/// `$body` with `$pool` bound to the node's pool, whichever backend it is.
macro_rules! on_db {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            scriptbox::store::Db::Sqlite($pool) => $body,
            scriptbox::store::Db::Postgres($pool) => $body,
        }
    };
}

/// One execution row written as the store would leave it, at `queued_at`.
#[allow(clippy::too_many_arguments)]
async fn insert_execution(
    db: &scriptbox::store::Db,
    tenant_id: &scriptbox::model::TenantId,
    queued_at: i64,
    status: &str,
    duration_ms: Option<i64>,
    error_type: Option<&str>,
    scheduled: Option<(i64, i64, i64)>,
) -> String {
    let sql = "INSERT INTO executions (id, tenant_id, script_id, script_version, trigger_type, \
        status, input, logs, attempt, node_id, queued_at, duration_ms, error_type, \
        scheduled_for, started_at) \
        VALUES ($1, $2, 'script', 1, 'manual', $3, 'null', '[]', $4, 'node', $5, $6, $7, $8, $9)";
    let (scheduled_for, started_at, attempt) = match scheduled {
        Some((fire, start, attempt)) => (Some(fire), Some(start), attempt),
        None => (None, None, 0),
    };
    // As a node makes them: a UUIDv7 of the moment the run is queued.
    let id = uuid_at(queued_at);
    let inserted = on_db!(db, pool => sqlx::query(sql)
        .bind(&id)
        .bind(tenant_id)
        .bind(status)
        .bind(attempt)
        .bind(queued_at)
        .bind(duration_ms)
        .bind(error_type)
        .bind(scheduled_for)
        .bind(started_at)
        .execute(pool)
        .await
        .unwrap()
        .rows_affected());
    assert_eq!(inserted, 1);
    id
}

/// A random UUIDv7 of the millisecond `ms`.
fn uuid_at(ms: i64) -> String {
    let random = uuid::Uuid::new_v4();
    uuid::Builder::from_unix_timestamp_millis(
        ms as u64,
        &random.as_bytes()[..10].try_into().unwrap(),
    )
    .into_uuid()
    .to_string()
}

async fn stats_are_aggregated_per_minute_by_the_database(url: String) {
    let node = TestNode::start(&url).await;
    let key = node.tenant("acme").await;
    let other_key = node.tenant("other").await;
    let db = node.exec.db();
    let acme = db.tenant_by_key(&key).await.unwrap().id;
    let other = db.tenant_by_key(&other_key).await.unwrap().id;
    // The window is whole minutes ending with the current one: keep clear
    // of a minute's end so the node's window is the one computed here.
    let mut now = scriptbox::store::now_ms();
    if now % 60_000 > 50_000 {
        tokio::time::sleep(std::time::Duration::from_millis(
            (60_000 - now % 60_000) as u64 + 50,
        ))
        .await;
        now = scriptbox::store::now_ms();
    }
    let first = (now / 60_000 - 2) * 60_000;

    // Minute 0: twenty completed runs of 1..=20 ms (nearest rank: p50 10, p95 19).
    for ms in 1..=20 {
        insert_execution(
            db,
            &acme,
            first + 1_000 + ms,
            "completed",
            Some(ms),
            None,
            None,
        )
        .await;
    }
    // Minute 0 too: a run whose id was made a few milliseconds before its
    // queued_at, which is the window's first millisecond.
    let early = insert_execution(db, &acme, first, "queued", None, None, None).await;
    let sql = "UPDATE executions SET id = $2 WHERE id = $1";
    let moved = on_db!(db, pool => sqlx::query(sql)
        .bind(&early)
        .bind(uuid_at(first - 5))
        .execute(pool)
        .await
        .unwrap()
        .rows_affected());
    assert_eq!(moved, 1);
    // Minute 1: three failures of 5, 6, 7 ms (p50 6, p95 7), and scheduled
    // runs: first attempts 250 ms late and early (counts as 0); a retry's
    // delay is not lag.
    for ms in [7, 5, 6] {
        let at = first + 61_000 + ms;
        insert_execution(db, &acme, at, "failed", Some(ms), Some("js_error"), None).await;
    }
    let fire = first + 62_000;
    for scheduled in [
        (fire, fire + 250, 0),
        (fire + 1, fire - 40, 0),
        (fire + 2, fire + 600_000, 1),
    ] {
        insert_execution(db, &acme, fire, "running", None, None, Some(scheduled)).await;
    }
    // Minute 2: a run queued by a node whose clock is ahead counts in the last minute.
    insert_execution(db, &acme, now + 300_000, "queued", None, None, None).await;
    // Not counted: before the window, and another tenant's.
    insert_execution(
        db,
        &acme,
        first - 1,
        "failed",
        Some(1),
        Some("timeout"),
        None,
    )
    .await;
    insert_execution(
        db,
        &other,
        first + 1_000,
        "failed",
        Some(1),
        Some("cpu_limit"),
        None,
    )
    .await;

    let (status, stats) = node
        .call("GET", "/api/stats?minutes=3", Some(&key), None)
        .await;
    assert_eq!(status, 200, "{stats}");
    let minutes = stats["minutes"].as_array().unwrap();
    assert_eq!(minutes.len(), 3, "{stats}");
    assert_eq!(minutes[0]["runs"], json!({ "completed": 20, "queued": 1 }));
    assert_eq!(
        (minutes[0]["p50_ms"].clone(), minutes[0]["p95_ms"].clone()),
        (json!(10), json!(19))
    );
    assert_eq!(minutes[0]["lag_p95_ms"], Value::Null);
    assert_eq!(minutes[1]["runs"], json!({ "failed": 3, "running": 3 }));
    assert_eq!(
        (minutes[1]["p50_ms"].clone(), minutes[1]["p95_ms"].clone()),
        (json!(6), json!(7))
    );
    assert_eq!(minutes[1]["lag_p95_ms"], 250);
    assert_eq!(minutes[2]["runs"], json!({ "queued": 1 }));
    assert_eq!(minutes[2]["p50_ms"], Value::Null);
    assert_eq!(stats["errors_by_kind"], json!({ "js_error": 3 }));

    let (status, body) = node
        .call("GET", "/api/stats?minutes=0", Some(&key), None)
        .await;
    assert_eq!(status, 400, "{body}");
    node.stop().await;
}

fn script(name: &str, source: &str) -> Value {
    json!({ "name": name, "source": source, "trigger_type": "manual" })
}

async fn create(node: &TestNode, key: &str, body: Value) -> Value {
    let (status, created) = node
        .call("POST", "/api/scripts", Some(key), Some(body))
        .await;
    assert_eq!(status, 201, "{created}");
    created
}

async fn requests_without_a_valid_key_are_401(url: String) {
    let node = TestNode::start(&url).await;
    for key in [None, Some("sbx_wrong")] {
        let (status, body) = node.call("GET", "/api/scripts", key, None).await;
        assert_eq!(status, 401);
        assert!(body["error"].is_string(), "{body}");
    }
    let key = node.tenant("acme").await;
    let (status, _) = node.call("GET", "/api/scripts", Some(&key), None).await;
    assert_eq!(status, 200);
    node.stop().await;
}

async fn scripts_are_created_shown_listed_updated_and_deleted(url: String) {
    let node = TestNode::start(&url).await;
    let key = node.tenant("acme").await;
    let body = json!({
        "name": "hook",
        "source": "export default (input) => input",
        "trigger_type": "webhook",
        "webhook_path": "hooks/github",
        "limits": { "fuel": 1000000, "timeout_ms": 1000 },
        "rate_limit": { "rps": 5, "burst": 10 },
        "webhook_auth": { "type": "hmac-github", "secret": "s3cret" },
        "webhook_methods": ["post"],
    });
    let created = create(&node, &key, body).await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["version"], 1);
    assert_eq!(created["webhook_path"], "/hooks/github");
    assert_eq!(created["enabled"], true);
    assert_eq!(
        created["limits"],
        json!({ "fuel": 1000000, "memory_mb": null, "timeout_ms": 1000 })
    );
    assert_eq!(
        created["webhook_auth"],
        json!({ "type": "hmac-github" }),
        "the secret is never returned"
    );
    assert_eq!(created["webhook_methods"], json!(["POST"]));
    assert_eq!(created["max_retries"], 3);
    assert_eq!(created["retry_delay_ms"], 300000);
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));

    let (status, shown) = node
        .call("GET", &format!("/api/scripts/{id}"), Some(&key), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(shown, created);

    let (status, list) = node.call("GET", "/api/scripts", Some(&key), None).await;
    assert_eq!(status, 200);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["next_cursor"], Value::Null);

    let (status, updated) = node
        .call(
            "PUT",
            &format!("/api/scripts/{id}"),
            Some(&key),
            Some(json!({ "enabled": false })),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["version"], 2);
    assert_eq!(updated["enabled"], false);
    assert_eq!(updated["webhook_auth"], json!({ "type": "hmac-github" }));

    let (status, _) = node
        .call("DELETE", &format!("/api/scripts/{id}"), Some(&key), None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = node
        .call("GET", &format!("/api/scripts/{id}"), Some(&key), None)
        .await;
    assert_eq!(status, 404);
    node.stop().await;
}

async fn bad_input_is_400_naming_what_is_wrong(url: String) {
    let node = TestNode::start(&url).await;
    let key = node.tenant("acme").await;
    let cases = [
        (
            json!({ "source": "export default () => 1", "trigger_type": "manual" }),
            "name",
        ),
        (json!({ "name": "x", "trigger_type": "manual" }), "source"),
        (
            json!({ "name": "x", "source": "export default () => 1", "trigger_type": "sometimes" }),
            "trigger_type",
        ),
        (
            json!({ "name": "x", "source": "export default () => 1", "trigger_type": "manual", "colour": 1 }),
            "colour",
        ),
        (
            json!({ "name": "x", "source": "export default () => {\n  let = ;\n}", "trigger_type": "manual" }),
            "line 2",
        ),
        (
            json!({ "name": "x", "source": "export default () => 1", "trigger_type": "scheduled", "schedule": "* * *" }),
            "invalid cron expression",
        ),
        (
            json!({ "name": "x", "source": "export default () => 1", "trigger_type": "scheduled" }),
            "schedule",
        ),
        (
            json!({ "name": "x", "source": "export default () => 1", "trigger_type": "webhook" }),
            "webhook_path",
        ),
        (
            json!({ "name": "x", "source": "export default () => 1", "trigger_type": "manual", "limits": { "memory_mb": 100000 } }),
            "limits.memory_mb",
        ),
        (
            json!({ "name": "x", "source": "export default () => 1", "trigger_type": "webhook", "webhook_path": "a", "webhook_auth": { "type": "bearer" } }),
            "secret",
        ),
    ];
    for (body, expected) in cases {
        let (status, answer) = node
            .call("POST", "/api/scripts", Some(&key), Some(body.clone()))
            .await;
        assert_eq!(status, 400, "{body} -> {answer}");
        let message = answer["error"].as_str().unwrap();
        assert!(
            message.contains(expected),
            "{body}: {message:?} should mention {expected:?}"
        );
    }
    // Not JSON at all.
    let response = node
        .client
        .post(format!("{}/api/scripts", node.base))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let answer: Value = response.json().await.unwrap();
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON body")
    );
    let (status, _) = node
        .call("GET", "/api/executions?status=bogus", Some(&key), None)
        .await;
    assert_eq!(status, 400);
    node.stop().await;
}

async fn duplicate_webhook_paths_are_409_within_a_tenant_only(url: String) {
    let node = TestNode::start(&url).await;
    let (a, b) = (node.tenant("acme").await, node.tenant("globex").await);
    let hook = json!({ "name": "h", "source": "export default () => 1", "trigger_type": "webhook", "webhook_path": "/in" });
    create(&node, &a, hook.clone()).await;
    let (status, answer) = node
        .call("POST", "/api/scripts", Some(&a), Some(hook.clone()))
        .await;
    assert_eq!(status, 409, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("/in"));
    create(&node, &b, hook).await;
    node.stop().await;
}

async fn another_tenants_objects_are_404(url: String) {
    let node = TestNode::start(&url).await;
    let (a, b) = (node.tenant("acme").await, node.tenant("globex").await);
    let created = create(&node, &a, script("mine", "export default () => 1")).await;
    let id = created["id"].as_str().unwrap();
    let (_, run) = node
        .call(
            "POST",
            &format!("/api/scripts/{id}/run"),
            Some(&a),
            Some(json!({})),
        )
        .await;
    let execution = run["id"].as_str().unwrap();
    for (method, path) in [
        ("GET", format!("/api/scripts/{id}")),
        ("PUT", format!("/api/scripts/{id}")),
        ("DELETE", format!("/api/scripts/{id}")),
        ("POST", format!("/api/scripts/{id}/run")),
        ("GET", format!("/api/executions/{execution}")),
        ("POST", format!("/api/executions/{execution}/retry")),
    ] {
        let body = (method != "GET" && method != "DELETE").then(|| json!({}));
        let (status, _) = node.call(method, &path, Some(&b), body).await;
        assert_eq!(status, 404, "{method} {path}");
    }
    let (_, list) = node.call("GET", "/api/scripts", Some(&b), None).await;
    assert_eq!(list["items"], json!([]));
    let (_, list) = node.call("GET", "/api/executions", Some(&b), None).await;
    assert_eq!(list["items"], json!([]));
    node.stop().await;
}

async fn a_manual_run_is_recorded_with_output_logs_and_usage(url: String) {
    let node = TestNode::start(&url).await;
    let key = node.tenant("acme").await;
    let source = "export default (input, ctx) => { console.log('hi', input.n); console.warn('w'); return { n: input.n * 2, trigger: ctx.trigger }; }";
    let created = create(&node, &key, script("double", source)).await;
    let id = created["id"].as_str().unwrap();
    let (status, run) = node
        .call(
            "POST",
            &format!("/api/scripts/{id}/run"),
            Some(&key),
            Some(json!({ "input": { "n": 21 } })),
        )
        .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "completed");
    assert_eq!(run["output"], json!({ "n": 42, "trigger": "manual" }));
    assert_eq!(run["input"], json!({ "n": 21 }));
    assert_eq!(run["script_version"], 1);
    assert_eq!(run["trigger_type"], "manual");
    assert_eq!(run["attempt"], 0);
    assert_eq!(run["logs"][0]["message"], "hi 21");
    assert_eq!(run["logs"][0]["level"], "info");
    assert_eq!(run["logs"][1]["level"], "warn");
    assert!(run["fuel_used"].as_i64().unwrap() > 0);
    assert!(run["memory_peak_bytes"].as_i64().unwrap() > 1 << 20);
    assert!(run["duration_ms"].is_i64());
    assert!(run["started_at"].is_string() && run["finished_at"].is_string());

    let (status, stored) = node
        .call(
            "GET",
            &format!("/api/executions/{}", run["id"].as_str().unwrap()),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(stored, run);

    let failing = create(
        &node,
        &key,
        script("boom", "export default () => { throw new Error('boom'); }"),
    )
    .await;
    let (status, failed) = node
        .call(
            "POST",
            &format!("/api/scripts/{}/run", failing["id"].as_str().unwrap()),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error_type"], "js_error");
    assert_eq!(failed["error_message"], "Error: boom");
    assert_eq!(failed["input"], Value::Null);
    // A JSON `null` body is no body.
    let (status, again) = node
        .call(
            "POST",
            &format!("/api/scripts/{}/run", failing["id"].as_str().unwrap()),
            Some(&key),
            Some(Value::Null),
        )
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["input"], Value::Null);

    let (_, list) = node
        .call(
            "GET",
            &format!("/api/executions?script_id={id}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let (_, list) = node
        .call("GET", "/api/executions?status=failed", Some(&key), None)
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    node.stop().await;
}

async fn an_async_run_answers_202_and_finishes_later(url: String) {
    let node = TestNode::start(&url).await;
    let key = node.tenant("acme").await;
    let created = create(
        &node,
        &key,
        script("slow", "export default (input) => input.x + 1"),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    let (status, accepted) = node
        .call(
            "POST",
            &format!("/api/scripts/{id}/run?async=true"),
            Some(&key),
            Some(json!({ "input": { "x": 1 } })),
        )
        .await;
    assert_eq!(status, 202);
    let execution = accepted["execution_id"].as_str().unwrap();
    let mut last = Value::Null;
    for _ in 0..200 {
        let (_, e) = node
            .call(
                "GET",
                &format!("/api/executions/{execution}"),
                Some(&key),
                None,
            )
            .await;
        if e["status"] == "completed" {
            last = e;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(last["output"], json!(2), "{last}");
    node.stop().await;
}

async fn updating_a_script_bumps_its_version_and_runs_the_new_source(url: String) {
    let node = TestNode::start(&url).await;
    let key = node.tenant("acme").await;
    let created = create(&node, &key, script("v", "export default () => 'one'")).await;
    let id = created["id"].as_str().unwrap();
    let path = format!("/api/scripts/{id}/run");
    let (_, first) = node.call("POST", &path, Some(&key), None).await;
    assert_eq!(first["output"], "one");
    assert!(node.exec.sandbox().is_cached(id, 1));

    let (status, updated) = node
        .call(
            "PUT",
            &format!("/api/scripts/{id}"),
            Some(&key),
            Some(json!({ "source": "export default () => 'two'" })),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(updated["version"], 2);
    assert!(
        !node.exec.sandbox().is_cached(id, 1),
        "the old bytecode is dropped at once"
    );
    let (_, second) = node.call("POST", &path, Some(&key), None).await;
    assert_eq!(second["output"], "two");
    assert_eq!(second["script_version"], 2);

    let (status, answer) = node
        .call(
            "PUT",
            &format!("/api/scripts/{id}"),
            Some(&key),
            Some(json!({ "source": "export default (" })),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    let (_, unchanged) = node
        .call("GET", &format!("/api/scripts/{id}"), Some(&key), None)
        .await;
    assert_eq!(unchanged["version"], 2, "a rejected update changes nothing");
    node.stop().await;
}

async fn lists_are_paged_with_a_cursor(url: String) {
    let node = TestNode::start(&url).await;
    let key = node.tenant("acme").await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let created = create(
            &node,
            &key,
            script(&format!("s{i}"), "export default () => 1"),
        )
        .await;
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    ids.reverse(); // newest first
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/scripts?limit=3&cursor={c}"),
            None => "/api/scripts?limit=3".to_owned(),
        };
        let (status, page) = node.call("GET", &path, Some(&key), None).await;
        assert_eq!(status, 200, "{page}");
        for item in page["items"].as_array().unwrap() {
            seen.push(item["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    let (status, _) = node
        .call("GET", "/api/scripts?limit=0", Some(&key), None)
        .await;
    assert_eq!(status, 400);

    let id = &ids[0];
    for n in 0..5 {
        node.call(
            "POST",
            &format!("/api/scripts/{id}/run"),
            Some(&key),
            Some(json!({ "input": n })),
        )
        .await;
    }
    let (_, page1) = node
        .call("GET", "/api/executions?limit=2", Some(&key), None)
        .await;
    assert_eq!(page1["items"][0]["input"], 4, "newest first");
    let cursor = page1["next_cursor"].as_str().unwrap();
    let (_, page2) = node
        .call(
            "GET",
            &format!("/api/executions?limit=2&cursor={cursor}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(page2["items"][0]["input"], 2);
    node.stop().await;
}

async fn sdk_db_is_persisted_per_tenant(url: String) {
    let node = TestNode::start(&url).await;
    let (a, b) = (node.tenant("acme").await, node.tenant("globex").await);
    let counter = "export default async () => {
        const n = Number(await sdk.db.get('count') ?? 0) + 1;
        await sdk.db.set('count', String(n));
        return { n, keys: await sdk.db.list('') };
    }";
    for (key, expected) in [(&a, 1), (&a, 2), (&b, 1), (&a, 3)] {
        let created = create(&node, key, script("counter", counter)).await;
        let (_, run) = node
            .call(
                "POST",
                &format!("/api/scripts/{}/run", created["id"].as_str().unwrap()),
                Some(key),
                None,
            )
            .await;
        assert_eq!(
            run["output"],
            json!({ "n": expected, "keys": ["count"] }),
            "{run}"
        );
    }
    node.stop().await;
}

async fn failed_runs_can_be_retried(url: String) {
    let node = TestNode::start(&url).await;
    let key = node.tenant("acme").await;
    let created = create(
        &node,
        &key,
        script(
            "flaky",
            "export default (input) => { throw new Error('no ' + input); }",
        ),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    let (_, failed) = node
        .call(
            "POST",
            &format!("/api/scripts/{id}/run"),
            Some(&key),
            Some(json!({ "input": "luck" })),
        )
        .await;
    assert_eq!(failed["status"], "failed");
    node.call(
        "PUT",
        &format!("/api/scripts/{id}"),
        Some(&key),
        Some(json!({ "source": "export default (input) => 'yes ' + input" })),
    )
    .await;
    let (status, retried) = node
        .call(
            "POST",
            &format!("/api/executions/{}/retry", failed["id"].as_str().unwrap()),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, 200, "{retried}");
    assert_eq!(retried["status"], "completed");
    assert_eq!(retried["output"], "yes luck");
    assert_eq!(retried["attempt"], 1);
    let (status, _) = node
        .call(
            "POST",
            &format!("/api/executions/{}/retry", retried["id"].as_str().unwrap()),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, 409, "a completed run is not retried");
    node.stop().await;
}

async fn a_thousand_concurrent_runs_are_all_recorded(url: String) {
    let node = TestNode::start(&url).await;
    let key = node.tenant("acme").await;
    let created = create(
        &node,
        &key,
        script("echo", "export default (input) => ({ echo: input })"),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let node = std::sync::Arc::new(node);
    let runs: Vec<_> = (0..1000)
        .map(|n| {
            let (node, key, id) = (node.clone(), key.clone(), id.clone());
            tokio::spawn(async move {
                let (status, run) = node
                    .call(
                        "POST",
                        &format!("/api/scripts/{id}/run"),
                        Some(&key),
                        Some(json!({ "input": n })),
                    )
                    .await;
                assert_eq!(status, 200, "{run}");
                (n, run["id"].as_str().unwrap().to_owned())
            })
        })
        .collect();
    let mut ids = Vec::new();
    for run in runs {
        ids.push(run.await.unwrap());
    }
    for (n, execution) in ids {
        let stored = node
            .exec
            .db()
            .execution(
                &node.exec.db().tenant_by_key(&key).await.unwrap().id,
                &execution.into(),
            )
            .await
            .unwrap();
        assert_eq!(stored.status, ExecutionStatus::Completed);
        assert_eq!(
            serde_json::from_str::<Value>(stored.output.as_deref().unwrap()).unwrap(),
            json!({ "echo": n })
        );
    }
}

async fn a_run_whose_client_goes_away_still_finishes_and_is_recorded(url: String) {
    let node = TestNode::start(&url).await;
    let key = node.tenant("acme").await;
    let source = "export default () => { const end = Date.now() + 500; while (Date.now() < end) {} return 'done'; }";
    let created = create(&node, &key, script("slow", source)).await;
    let id = created["id"].as_str().unwrap();
    let impatient = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(100))
        .build()
        .unwrap();
    let gave_up = impatient
        .post(format!("{}/api/scripts/{id}/run", node.base))
        .bearer_auth(&key)
        .send()
        .await;
    assert!(
        gave_up.is_err(),
        "the client timed out before the run ended"
    );
    let mut last = Value::Null;
    for _ in 0..100 {
        let (_, list) = node
            .call(
                "GET",
                &format!("/api/executions?script_id={id}"),
                Some(&key),
                None,
            )
            .await;
        last = list["items"][0].clone();
        if last["status"] == "completed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(last["status"], "completed", "{last}");
    assert_eq!(last["output"], "done");
    node.stop().await;
}

async fn open_runs_of_silent_nodes_are_abandoned(url: String) {
    let node = TestNode::start(&url).await;
    use scriptbox::store::NewExecution;
    use sqlx::Connection;

    let key = node.tenant("acme").await;
    let created = create(&node, &key, script("s", "export default () => 1")).await;
    let db = node.exec.db();
    let tenant = db.tenant_by_key(&key).await.unwrap();
    let script = db
        .script(&tenant.id, &created["id"].as_str().unwrap().into())
        .await
        .unwrap();
    let open = NewExecution {
        id: scriptbox::model::ExecutionId::generate(),
        tenant_id: tenant.id.clone(),
        script_id: script.id.clone(),
        script_version: 1,
        trigger_type: Trigger::Manual,
        input: "null".into(),
        attempt: 0,
        node_id: "ghost".into(),
        scheduled_for: None,
    };
    // The ghost beats first, so this node's own periodic sweep cannot take
    // its run for abandoned in between.
    db.heartbeat("ghost").await.unwrap();
    db.insert_execution(&open).await.unwrap();
    db.start_execution(&open.id).await.unwrap();

    let postgres = node.database_url.starts_with("postgres");
    if postgres {
        // A node that heart-beat just now is alive: its run stays open.
        assert_eq!(node.exec.recover().await.unwrap(), 0);
        assert_eq!(
            db.execution(&tenant.id, &open.id).await.unwrap().status,
            ExecutionStatus::Running
        );
        let mut conn = sqlx::PgConnection::connect(&node.database_url)
            .await
            .unwrap();
        sqlx::query("UPDATE nodes SET heartbeat_at = 0 WHERE id = 'ghost'")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    // SQLite has one node: any other node's open run is abandoned at once.
    assert_eq!(node.exec.recover().await.unwrap(), 1);
    let stored = db.execution(&tenant.id, &open.id).await.unwrap();
    assert_eq!(stored.status, ExecutionStatus::Failed);
    assert_eq!(stored.error_type, Some(FailureKind::Abandoned));
    // This node's own runs are never swept.
    let (_, mine) = node
        .call(
            "POST",
            &format!("/api/scripts/{}/run", script.id),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(mine["status"], "completed");
    node.stop().await;
}
