//! `/metrics` and `/health` of a real node, on SQLite and on PostgreSQL:
//! the series that runs change, with their values; `promtool` accepts the
//! output; health fails when the database or the scheduler does.

use std::time::{Duration, Instant};

use scriptbox_tests::service::{TestNode, postgres_url, series};
use serde_json::{Value, json};

scriptbox_tests::on_both_backends!(
    runs_change_exactly_their_series,
    per_script_labels_can_be_switched_off,
    promtool_accepts_the_output,
    health_reports_each_check,
);

async fn create(node: &TestNode, key: &str, name: &str, source: &str, extra: Value) -> String {
    let mut body = json!({ "name": name, "source": source, "trigger_type": "manual" });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, created) = node
        .call("POST", "/api/scripts", Some(key), Some(body))
        .await;
    assert_eq!(status, 201, "{created}");
    created["id"].as_str().unwrap().to_owned()
}

async fn run(node: &TestNode, key: &str, id: &str) -> Value {
    let (status, e) = node
        .call("POST", &format!("/api/scripts/{id}/run"), Some(key), None)
        .await;
    assert_eq!(status, 200, "{e}");
    e
}

async fn runs_change_exactly_their_series(url: String) {
    let node = TestNode::start(&url).await;
    let key = node.tenant("acme").await;
    let tenant = node.exec.db().tenant_by_key(&key).await.unwrap().id;
    let t = tenant.as_str();
    let ok = create(
        &node,
        &key,
        "ok",
        "export default async () => { await sdk.db.set('k', 'v'); await sdk.db.get('k'); await sdk.cache.set('c', '1'); return 1 }",
        json!({}),
    )
    .await;
    let bad = create(
        &node,
        &key,
        "bad",
        "export default () => { throw new Error('x') }",
        json!({}),
    )
    .await;
    let spin = create(
        &node,
        &key,
        "spin",
        "export default () => { while (true) {} }",
        json!({ "limits": { "fuel": 1_000_000 } }),
    )
    .await;

    let before = node.metrics().await;
    assert_eq!(
        series(
            &before,
            "script_executions_total",
            &[
                ("tenant_id", t),
                ("script_id", &ok),
                ("trigger_type", "manual"),
                ("status", "completed")
            ]
        ),
        None
    );

    let first = run(&node, &key, &ok).await;
    run(&node, &key, &ok).await;
    assert_eq!(run(&node, &key, &bad).await["error_type"], "js_error");
    assert_eq!(run(&node, &key, &spin).await["error_type"], "cpu_limit");

    let after = node.metrics().await;
    let get = |name: &str, labels: &[(&str, &str)]| {
        series(&after, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in\n{after}"))
    };
    let manual = |id: &str, status: &str| {
        get(
            "script_executions_total",
            &[
                ("tenant_id", t),
                ("script_id", id),
                ("trigger_type", "manual"),
                ("status", status),
            ],
        )
    };
    assert_eq!(manual(&ok, "completed"), 2.0);
    assert_eq!(manual(&bad, "failed"), 1.0);
    assert_eq!(manual(&spin, "failed"), 1.0);
    assert_eq!(
        series(
            &after,
            "script_executions_total",
            &[
                ("tenant_id", t),
                ("script_id", &ok),
                ("trigger_type", "manual"),
                ("status", "failed")
            ]
        ),
        None
    );
    assert_eq!(
        get(
            "script_execution_errors_total",
            &[
                ("tenant_id", t),
                ("script_id", &bad),
                ("error_type", "js_error")
            ]
        ),
        1.0
    );
    assert_eq!(
        get(
            "script_execution_errors_total",
            &[
                ("tenant_id", t),
                ("script_id", &spin),
                ("error_type", "cpu_limit")
            ]
        ),
        1.0
    );
    assert_eq!(
        get(
            "script_execution_duration_seconds_count",
            &[
                ("tenant_id", t),
                ("script_id", &ok),
                ("trigger_type", "manual")
            ]
        ),
        2.0
    );
    // Measured per run: the histogram's sum of peak memory is what the runs recorded.
    let memory_sum = get(
        "script_memory_usage_bytes_sum",
        &[("tenant_id", t), ("script_id", &bad)],
    );
    let (_, stored) = node
        .call(
            "GET",
            "/api/executions?status=failed&limit=10",
            Some(&key),
            None,
        )
        .await;
    let bad_run = stored["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["script_id"] == bad.as_str())
        .unwrap();
    assert_eq!(memory_sum, bad_run["memory_peak_bytes"].as_f64().unwrap());
    assert_eq!(
        get(
            "script_cpu_time_seconds_count",
            &[("tenant_id", t), ("script_id", &ok)]
        ),
        2.0
    );
    let fuel_sum = get(
        "scriptbox_fuel_consumed_sum",
        &[("tenant_id", t), ("script_id", &spin)],
    );
    assert!(fuel_sum >= 1_000_000.0, "{fuel_sum}");
    // Host API calls by type: two sdk.db and one sdk.cache per run of `ok`.
    assert_eq!(
        get(
            "script_api_calls_total",
            &[("tenant_id", t), ("api_type", "db")]
        ),
        4.0
    );
    assert_eq!(
        get(
            "script_api_calls_total",
            &[("tenant_id", t), ("api_type", "cache")]
        ),
        2.0
    );
    assert_eq!(
        get(
            "script_api_call_duration_seconds_count",
            &[("tenant_id", t), ("api_type", "db")]
        ),
        4.0
    );
    assert_eq!(
        series(
            &after,
            "script_api_calls_total",
            &[("tenant_id", t), ("api_type", "http")]
        ),
        None
    );
    // The pool: every run waited (or not) once; gauges are the real pool.
    assert_eq!(get("jsruntime_vm_pool_wait_seconds_count", &[]), 4.0);
    assert!(get("jsruntime_vm_pool_size", &[]) >= 1.0);
    assert_eq!(get("jsruntime_vm_pool_in_use", &[]), 0.0);
    // Compiled on save, so every run found its bytecode.
    assert_eq!(get("scriptbox_compile_cache_hits_total", &[]), 4.0);
    assert_eq!(get("scriptbox_compile_cache_misses_total", &[]), 0.0);
    assert_eq!(
        get(
            "scriptbox_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert!(first["fuel_used"].as_u64().unwrap() > 0);
    node.stop().await;
}

async fn per_script_labels_can_be_switched_off(url: String) {
    let node = TestNode::start_with(&url, |c| c.metrics.per_script_labels = false).await;
    let key = node.tenant("acme").await;
    let t = node.exec.db().tenant_by_key(&key).await.unwrap().id;
    for name in ["a", "b"] {
        let id = create(&node, &key, name, "export default () => 1", json!({})).await;
        run(&node, &key, &id).await;
    }
    let text = node.metrics().await;
    assert!(!text.contains("script_id="), "{text}");
    let labels = [
        ("tenant_id", t.as_str()),
        ("trigger_type", "manual"),
        ("status", "completed"),
    ];
    assert_eq!(series(&text, "script_executions_total", &labels), Some(2.0));
    node.stop().await;
}

async fn promtool_accepts_the_output(url: String) {
    let node = TestNode::start(&url).await;
    let key = node.tenant("acme").await;
    let id = create(&node, &key, "a", "export default () => 1", json!({})).await;
    run(&node, &key, &id).await;
    let text = node.metrics().await;
    node.stop().await;
    let Ok(mut child) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is required in CI (Debian package prometheus)"
        );
        scriptbox_tests::service::skipped("needs promtool (apt-get install prometheus)");
        return;
    };
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn health(node: &TestNode) -> (u16, Value) {
    node.call("GET", "/health", None, None).await
}

async fn health_reports_each_check(url: String) {
    let node = TestNode::start(&url).await;
    let (status, body) = health(&node).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["healthy"], true);
    for check in ["vm_pool", "database", "scheduler"] {
        assert_eq!(body["checks"][check]["status"], "pass", "{body}");
    }
    let ready = node
        .client
        .get(format!("{}/health/ready", node.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.text().await.unwrap(), "Ready");

    if let (Some(admin), scriptbox::store::Db::Postgres(_)) = (postgres_url(), node.exec.db()) {
        use sqlx::Connection;
        let name = url::Url::parse(&node.database_url)
            .unwrap()
            .path()
            .trim_start_matches('/')
            .to_owned();
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();

        // The scheduler stalls behind a lock on its table: its check fails,
        // the database still answers.
        let mut locker = sqlx::PgConnection::connect(&node.database_url)
            .await
            .unwrap();
        sqlx::query("BEGIN").execute(&mut locker).await.unwrap();
        sqlx::query("LOCK TABLE scripts IN ACCESS EXCLUSIVE MODE")
            .execute(&mut locker)
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        let body = loop {
            let (status, body) = health(&node).await;
            if status == 503 {
                break body;
            }
            assert!(Instant::now() < deadline, "never failed: {body}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        assert_eq!(body["checks"]["scheduler"]["status"], "fail", "{body}");
        assert_eq!(body["checks"]["database"]["status"], "pass", "{body}");
        sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
        drop(locker);
        let deadline = Instant::now() + Duration::from_secs(10);
        while health(&node).await.0 != 200 {
            assert!(Instant::now() < deadline, "the scheduler did not recover");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }

        // The database goes away: /health fails on it, /health/live stays.
        sqlx::query(&format!(
            "ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false"
        ))
        .execute(&mut conn)
        .await
        .unwrap();
        sqlx::query(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        ))
        .execute(&mut conn)
        .await
        .unwrap();
        let (status, body) = health(&node).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["healthy"], false);
        assert_eq!(body["checks"]["database"]["status"], "fail", "{body}");
        let live = node
            .client
            .get(format!("{}/health/live", node.base))
            .send()
            .await
            .unwrap();
        assert_eq!(live.status(), 200);
        assert_eq!(live.text().await.unwrap(), "OK");
        let ready = node
            .client
            .get(format!("{}/health/ready", node.base))
            .send()
            .await
            .unwrap();
        assert_eq!(ready.status(), 503);
        sqlx::query(&format!(
            "ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true"
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    }
    node.stop().await;
}
