//! Isolation around the sandbox, tried as an attacker would, on SQLite and
//! PostgreSQL over real sockets: tenant replies cannot frame HTTP or reach
//! the admin origin, stored settings fail closed, one tenant's flood leaves
//! others (and saving scripts) unaffected, retry settings and query strings
//! are checked, console output is bounded, `sdk.db` keys are checked.

use std::sync::Arc;
use std::time::Duration;

use scriptbox_tests::service::TestNode;
use serde_json::{Value, json};
use sqlx::Connection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

scriptbox_tests::on_both_backends!(
    script_replies_cannot_split_or_upgrade_the_connection,
    public_replies_are_sandboxed_and_the_admin_origin_serves_no_webhooks,
    corrupt_stored_settings_fail_closed,
    a_tenants_flood_leaves_other_tenants_and_saves_unaffected,
    a_busy_tenants_scheduled_occurrences_and_webhooks_are_refused,
    retry_settings_are_bounded_and_named,
    query_string_errors_are_json,
    endless_empty_logs_stay_bounded_in_storage_and_replies,
    sdk_db_keys_with_nul_are_refused_and_prefixes_list_every_key,
);

async fn create(node: &TestNode, key: &str, body: Value) -> Value {
    let (status, created) = node
        .call("POST", "/api/scripts", Some(key), Some(body))
        .await;
    assert_eq!(status, 201, "{created}");
    created
}

fn hook(path: &str, source: &str) -> Value {
    json!({ "name": path.trim_start_matches('/'), "source": source, "trigger_type": "webhook", "webhook_path": path })
}

/// Sends `requests` (raw HTTP/1.1) on one connection to `base` and reads
/// until the peer closes or `expected` responses have come.
async fn raw_exchange(base: &str, request: &str, times: usize) -> String {
    let addr = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut seen = String::new();
    for _ in 0..times {
        stream.write_all(request.as_bytes()).await.unwrap();
        // Read one response: head, then exactly Content-Length bytes.
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut byte))
                .await
                .expect("an answer")
                .unwrap();
            if n == 0 {
                seen.push_str(&String::from_utf8_lossy(&buf));
                seen.push_str("<closed>");
                return seen;
            }
            buf.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&buf).to_string();
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap())
            })
            .expect("the server frames the body with Content-Length");
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body).await.unwrap();
        seen.push_str(&head);
        seen.push_str(&String::from_utf8_lossy(&body));
        seen.push('\n');
    }
    seen
}

async fn script_replies_cannot_split_or_upgrade_the_connection(url: String) {
    let node = TestNode::start(&url).await;
    let key = node.tenant("acme").await;
    create(
        &node,
        &key,
        hook(
            "/split",
            r#"export default () => new Response("hello", { headers: {
                "content-length": "2", "connection": "close", "keep-alive": "timeout=1",
                "x-kept": "yes" } })"#,
        ),
    )
    .await;
    create(
        &node,
        &key,
        hook(
            "/two-framings",
            r#"export default () => new Response("hello", { headers: {
                "content-length": "5", "transfer-encoding": "chunked" } })"#,
        ),
    )
    .await;

    // Two requests on one keep-alive connection both answer "hello": the
    // script's Content-Length (2) did not leave "llo" as the start of the
    // next response, and its Connection: close did not end the connection.
    let request = "GET /acme/split HTTP/1.1\r\nHost: hooks\r\n\r\n";
    let seen = raw_exchange(&node.public, request, 2).await;
    assert_eq!(seen.matches("HTTP/1.1 200 OK").count(), 2, "{seen}");
    assert_eq!(seen.matches("\r\n\r\nhello\n").count(), 2, "{seen}");
    assert!(seen.to_ascii_lowercase().contains("x-kept: yes"), "{seen}");
    assert!(!seen.contains("<closed>"), "{seen}");

    // Both framing headers at once: still one well-framed reply.
    let request = "GET /acme/two-framings HTTP/1.1\r\nHost: hooks\r\n\r\n";
    let seen = raw_exchange(&node.public, request, 2).await;
    assert_eq!(seen.matches("\r\n\r\nhello\n").count(), 2, "{seen}");
    assert!(
        !seen.to_ascii_lowercase().contains("transfer-encoding"),
        "{seen}"
    );

    // A status outside 200-599 (set after construction, past the guest's
    // own check) fails the run with output_error; 101 is never sent.
    let upgrade = create(
        &node,
        &key,
        hook(
            "/upgrade",
            r#"export default () => { const r = new Response("", { headers: { upgrade: "websocket", connection: "upgrade" } }); r.status = 101; return r; }"#,
        ),
    )
    .await;
    let request = "GET /acme/upgrade HTTP/1.1\r\nHost: hooks\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";
    let seen = raw_exchange(&node.public, request, 1).await;
    assert!(seen.starts_with("HTTP/1.1 500"), "{seen}");
    assert!(!seen.contains("HTTP/1.1 101"), "{seen}");
    let (_, list) = node
        .call(
            "GET",
            &format!(
                "/api/executions?script_id={}",
                upgrade["id"].as_str().unwrap()
            ),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(list["items"][0]["error_type"], "output_error", "{list}");

    // A header value with a line break is an output_error, never sent.
    create(
        &node,
        &key,
        hook(
            "/crlf",
            r#"export default () => new Response("x", { headers: { "x-a": "1\r\nx-injected: yes" } })"#,
        ),
    )
    .await;
    let request = "GET /acme/crlf HTTP/1.1\r\nHost: hooks\r\n\r\n";
    let seen = raw_exchange(&node.public, request, 1).await;
    assert!(seen.starts_with("HTTP/1.1 500"), "{seen}");
    assert!(!seen.to_ascii_lowercase().contains("x-injected"), "{seen}");

    // 204 never carries a body.
    create(
        &node,
        &key,
        hook("/empty", r#"export default () => { const r = new Response("surprise"); r.status = 204; return r; }"#),
    )
    .await;
    let reply = node
        .client
        .get(format!("{}/acme/empty", node.public))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 204);
    assert_eq!(reply.text().await.unwrap(), "");
    node.stop().await;
}

async fn public_replies_are_sandboxed_and_the_admin_origin_serves_no_webhooks(url: String) {
    let node = TestNode::start_with(&url, |c| c.metrics.token = "metrics-s3cret".into()).await;
    let key = node.tenant("acme").await;
    let created = create(
        &node,
        &key,
        hook(
            "/page",
            r#"export default () => new Response("<script>1</script>", { headers: {
                "content-type": "text/html", "service-worker-allowed": "/",
                "set-cookie": "session=stolen; Path=/", "x-content-type-options": "sniff" } })"#,
        ),
    )
    .await;
    assert_eq!(
        created["webhook_url"],
        format!("{}/acme/page", node.public),
        "{created}"
    );

    let reply = node
        .client
        .get(format!("{}/acme/page", node.public))
        .send()
        .await
        .unwrap();
    let h = reply.headers();
    assert_eq!(
        h["content-security-policy"],
        "sandbox allow-scripts allow-forms allow-popups"
    );
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(!h.contains_key("service-worker-allowed"));
    assert!(!h.contains_key("set-cookie"));
    // Refusals on the public listener carry the same headers.
    let missing = node
        .client
        .get(format!("{}/acme/nothing-here", node.public))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.headers()["x-content-type-options"], "nosniff");
    // The API is not served on the public listener.
    let api = node
        .client
        .get(format!("{}/api/scripts", node.public))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 404);

    // The admin listener's old webhook route names the public URL.
    let (status, moved) = node
        .call("POST", "/api/webhooks/acme/page", None, None)
        .await;
    assert_eq!(status, 404);
    assert!(
        moved["error"]
            .as_str()
            .unwrap()
            .contains(&format!("{}/acme/page", node.public)),
        "{moved}"
    );
    // Admin responses carry the security headers.
    for path in ["/", "/api/scripts", "/health"] {
        let reply = node
            .client
            .get(format!("{}{path}", node.base))
            .send()
            .await
            .unwrap();
        let h = reply.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
    }
    // /metrics needs its token.
    let metrics = |token: Option<&str>| {
        let request = node.client.get(format!("{}/metrics", node.base));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
        .send()
    };
    assert_eq!(metrics(None).await.unwrap().status(), 401);
    assert_eq!(metrics(Some("metrics-s3cre")).await.unwrap().status(), 401);
    let right = metrics(Some("metrics-s3cret")).await.unwrap();
    assert_eq!(right.status(), 200);
    let text = right.text().await.unwrap();
    assert!(text.contains("script_executions_total"), "{text}");
    node.stop().await;

    // With {tenant} in the host, tenants are routed by Host.
    let url2 = scriptbox_tests::service::fresh_database(backend_of(&url))
        .await
        .unwrap();
    let node = TestNode::start_with(&url2, |c| {
        c.webhooks.public_url = "http://{tenant}.hooks.test".into();
    })
    .await;
    let key = node.tenant("acme").await;
    let created = create(
        &node,
        &key,
        hook(
            "/in",
            r#"export default () => new Response("mine", { headers: { "set-cookie": "a=1" } })"#,
        ),
    )
    .await;
    assert_eq!(created["webhook_url"], "http://acme.hooks.test/in");
    let own = node
        .client
        .get(format!("{}/in", node.public))
        .header("host", "acme.hooks.test")
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 200);
    assert!(!own.headers().contains_key("content-security-policy"));
    assert_eq!(
        own.headers()["set-cookie"],
        "a=1",
        "a tenant's own origin keeps its cookies"
    );
    assert_eq!(own.text().await.unwrap(), "mine");
    for host in ["globex.hooks.test", "hooks.test", "acme.hooks.test.evil"] {
        let other = node
            .client
            .get(format!("{}/in", node.public))
            .header("host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(other.status(), 404, "{host}");
    }
    node.stop().await;
}

fn backend_of(url: &str) -> scriptbox_tests::service::Backend {
    if url.starts_with("sqlite") {
        scriptbox_tests::service::Backend::Sqlite
    } else {
        scriptbox_tests::service::Backend::Postgres
    }
}

/// Overwrites one column of a script's row, as damage or a bad manual edit
/// would.
async fn corrupt(url: &str, script_id: &str, column: &str, value: Option<&str>) {
    let sql = format!("UPDATE scripts SET {column} = $1 WHERE id = $2");
    if url.starts_with("sqlite") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query(&sql)
            .bind(value)
            .bind(script_id)
            .execute(&mut conn)
            .await
            .unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query(&sql)
            .bind(value)
            .bind(script_id)
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

async fn corrupt_stored_settings_fail_closed(url: String) {
    let node = TestNode::start(&url).await;
    let key = node.tenant("acme").await;
    let mut cases: Vec<(&str, Option<&str>)> = vec![
        (
            "webhook_auth",
            Some(r#"{"type":"bearer","secret":"t","extra":1}"#),
        ),
        ("webhook_auth", Some(r#"{"type":"Bearer","secret":"t"}"#)),
        ("webhook_auth", Some(r#"{"type":"bearer","secr"#)),
        ("webhook_auth", Some("")),
        ("webhook_auth", Some("null")),
        ("webhook_auth", Some("[]")),
        ("webhook_auth", Some(r#"{"type":"basic","secret":"t"}"#)),
        ("webhook_auth", Some(r#"{"type":"hmac-github"}"#)),
        (
            "webhook_auth",
            Some(r#"{"type":"hmac-stripe","secret":""}"#),
        ),
        ("webhook_methods", Some("POST")),
        ("webhook_methods", Some(r#"["post"]"#)),
        ("rate_limit", Some(r#"{"rps":"many"}"#)),
        ("limits", Some(r#"{"fuel":-1}"#)),
        ("limits", Some("")),
    ];
    for (i, (column, value)) in cases.drain(..).enumerate() {
        let path = format!("/c{i}");
        let script = create(
            &node,
            &key,
            json!({ "name": format!("c{i}"), "trigger_type": "webhook", "webhook_path": path,
                    "source": "export default () => 'ran'",
                    "webhook_auth": { "type": "bearer", "secret": "t" } }),
        )
        .await;
        let id = script["id"].as_str().unwrap().to_owned();
        corrupt(&url, &id, column, value).await;
        // A fresh node reads the row as stored (no cached route).
        let reply = node
            .client
            .post(format!("{}/acme{path}", node.public))
            .bearer_auth("t")
            .send()
            .await
            .unwrap();
        let status = reply.status().as_u16();
        let body: Value = reply.json().await.unwrap();
        assert_eq!(status, 500, "{column} = {value:?}: {body}");
        assert_eq!(
            body["error"], "script misconfigured",
            "{column} = {value:?}"
        );
        // The API says the setting is broken rather than showing a default.
        let (_, shown) = node
            .call("GET", &format!("/api/scripts/{id}"), Some(&key), None)
            .await;
        assert!(
            shown["settings_error"]
                .as_str()
                .unwrap_or_default()
                .contains(column),
            "{column} = {value:?}: {shown}"
        );
        // A manual run fails with kind internal; nothing ran.
        let (status, run) = node
            .call(
                "POST",
                &format!("/api/scripts/{id}/run"),
                Some(&key),
                Some(json!({})),
            )
            .await;
        assert_eq!(status, 200, "{run}");
        assert_eq!(run["status"], "failed", "{column} = {value:?}: {run}");
        assert_eq!(run["error_type"], "internal");
        assert!(run["output"].is_null());
        let (_, list) = node
            .call(
                "GET",
                &format!("/api/executions?script_id={id}"),
                Some(&key),
                None,
            )
            .await;
        assert_eq!(
            list["items"].as_array().unwrap().len(),
            1,
            "only the manual run is recorded: {list}"
        );
    }
    node.stop().await;
}

/// A local HTTP server whose answers wait until `release` is notified.
async fn held_server() -> (
    std::net::SocketAddr,
    Arc<tokio::sync::Semaphore>,
    Arc<std::sync::atomic::AtomicUsize>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let arrived = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (g, a) = (gate.clone(), arrived.clone());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (g, a) = (g.clone(), a.clone());
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _permit = g.acquire().await;
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    (addr, gate, arrived)
}

async fn a_tenants_flood_leaves_other_tenants_and_saves_unaffected(url: String) {
    let (addr, release, arrived) = held_server().await;
    let node = TestNode::start_with(&url, |c| {
        c.sandbox.pool_max = 8; // so one tenant may hold 4
        c.sandbox.tenant_max_queued = 20;
        c.sandbox.timeout_ms = 60_000;
        c.webhooks.rps = 1000;
        c.webhooks.burst = 1000;
        c.fetch.allow = vec!["127.0.0.1".into()];
        c.fetch.timeout_ms = 60_000;
    })
    .await;
    let flooder = node.tenant("flooder").await;
    let other = node.tenant("other").await;
    let slow = create(
        &node,
        &flooder,
        json!({ "name": "slow", "trigger_type": "manual",
                "source": format!("export default async (input) => (await fetch('http://{addr}/')).status + input.pad.length") }),
    )
    .await;
    let slow_id = slow["id"].as_str().unwrap().to_owned();
    // 64 async runs, each with a 100 KB input.
    let pad = "x".repeat(100_000);
    let mut accepted = Vec::new();
    let mut refused = 0;
    for _ in 0..64 {
        let reply = node
            .client
            .post(format!(
                "{}/api/scripts/{slow_id}/run?async=true",
                node.base
            ))
            .bearer_auth(&flooder)
            .json(&json!({ "input": { "pad": pad } }))
            .send()
            .await
            .unwrap();
        match reply.status().as_u16() {
            202 => accepted.push(
                reply.json::<Value>().await.unwrap()["execution_id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            ),
            429 => {
                assert!(reply.headers().contains_key("retry-after"));
                let body: Value = reply.json().await.unwrap();
                assert!(
                    body["error"].as_str().unwrap().contains("waiting"),
                    "{body}"
                );
                refused += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    // 4 run (half of pool_max), 20 wait, the other 40 are refused.
    assert_eq!(accepted.len(), 24);
    assert_eq!(refused, 40);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while arrived.load(std::sync::atomic::Ordering::SeqCst) < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first four runs reach the server"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The flood is held: another tenant's run and a save both finish now.
    let quick = create(
        &node,
        &other,
        json!({ "name": "quick", "trigger_type": "manual", "source": "export default () => 'fine'" }),
    )
    .await;
    let (status, ran) = node
        .call(
            "POST",
            &format!("/api/scripts/{}/run", quick["id"].as_str().unwrap()),
            Some(&other),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(ran["output"], "fine");
    let (status, saved) = node
        .call(
            "PUT",
            &format!("/api/scripts/{slow_id}"),
            Some(&flooder),
            Some(json!({ "source": "export default () => 2" })),
        )
        .await;
    assert_eq!(status, 200, "{saved}");
    // The flood was still held all along.
    assert_eq!(arrived.load(std::sync::atomic::Ordering::SeqCst), 4);

    // Waiting runs are in the database with their input.
    let mut queued = 0;
    for id in &accepted {
        let (_, e) = node
            .call(
                "GET",
                &format!("/api/executions/{id}"),
                Some(&flooder),
                None,
            )
            .await;
        if e["status"] == "queued" {
            queued += 1;
            assert_eq!(e["input"]["pad"].as_str().unwrap().len(), 100_000);
        }
    }
    assert_eq!(queued, 20);
    // ... and in memory: a waiting run's turn does not wait for a query.
    let input_bytes = json!({ "pad": pad }).to_string().len() as f64;
    assert_eq!(
        node.metric("scriptbox_waiting_input_bytes").await,
        20.0 * input_bytes
    );

    // Released, every accepted run completes.
    release.add_permits(1_000);
    for id in &accepted {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let (_, e) = node
                .call(
                    "GET",
                    &format!("/api/executions/{id}"),
                    Some(&flooder),
                    None,
                )
                .await;
            if e["status"] == "completed" {
                // The script saw its own input: 200 + the pad's length.
                assert_eq!(e["output"], 100_200, "{e}");
                break;
            }
            assert!(e["status"] != "failed", "{e}");
            assert!(tokio::time::Instant::now() < deadline, "{e}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(node.metric("scriptbox_waiting_input_bytes").await, 0.0);
    node.stop().await;
}

async fn a_busy_tenants_scheduled_occurrences_and_webhooks_are_refused(url: String) {
    let (addr, release, arrived) = held_server().await;
    let node = TestNode::start_with(&url, |c| {
        c.sandbox.pool_max = 2; // one slot per tenant
        c.sandbox.tenant_max_queued = 0; // and nobody waits
        c.sandbox.timeout_ms = 60_000;
        c.fetch.allow = vec!["127.0.0.1".into()];
        c.fetch.timeout_ms = 60_000;
    })
    .await;
    let key = node.tenant("acme").await;
    let slow = create(
        &node,
        &key,
        json!({ "name": "slow", "trigger_type": "manual",
                "source": format!("export default async () => (await fetch('http://{addr}/')).status") }),
    )
    .await;
    let (status, _) = node
        .call(
            "POST",
            &format!(
                "/api/scripts/{}/run?async=true",
                slow["id"].as_str().unwrap()
            ),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, 202);
    while arrived.load(std::sync::atomic::Ordering::SeqCst) < 1 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The tenant's one slot is taken: a webhook call is 429 ...
    create(&node, &key, hook("/in", "export default () => 1")).await;
    let reply = node
        .client
        .post(format!("{}/acme/in", node.public))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 429);
    assert_eq!(reply.headers()["retry-after"], "1");
    // ... and a scheduled occurrence is skipped, recorded and counted.
    let every = create(
        &node,
        &key,
        json!({ "name": "tick", "trigger_type": "scheduled", "schedule": "@every 1s", "source": "export default () => 1" }),
    )
    .await;
    let list = format!(
        "/api/executions?script_id={}",
        every["id"].as_str().unwrap()
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let skipped = loop {
        let (_, page) = node.call("GET", &list, Some(&key), None).await;
        if let Some(e) = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["status"] != "queued")
        {
            break e.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "{page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(skipped["status"], "failed", "{skipped}");
    assert_eq!(skipped["error_type"], "tenant_busy", "{skipped}");
    assert!(
        node.metrics()
            .await
            .contains("scriptbox_scheduler_skipped_total{reason=\"tenant_busy\"}"),
        "counted"
    );
    release.add_permits(100);
    node.stop().await;
}

async fn retry_settings_are_bounded_and_named(url: String) {
    let node = TestNode::start(&url).await;
    let key = node.tenant("acme").await;
    let base = || json!({ "name": "r", "trigger_type": "scheduled", "schedule": "@daily", "source": "export default () => 1" });
    for (field, value, ok) in [
        ("max_retries", json!(0), true),
        ("max_retries", json!(25), true),
        ("max_retries", json!(26), false),
        ("max_retries", json!(4294967295_u64), false),
        ("max_retries", json!(-1), false),
        ("max_retries", json!(1.5), false),
        ("retry_delay_ms", json!(1000), true),
        ("retry_delay_ms", json!(604800000), true),
        ("retry_delay_ms", json!(999), false),
        ("retry_delay_ms", json!(0), false),
        ("retry_delay_ms", json!(604800001), false),
        ("retry_delay_ms", json!(18446744073709551615_u64), false),
        ("retry_delay_ms", json!(1e30), false),
    ] {
        let mut body = base();
        body[field] = value.clone();
        let (status, reply) = node
            .call("POST", "/api/scripts", Some(&key), Some(body))
            .await;
        if ok {
            assert_eq!(status, 201, "{field} = {value}: {reply}");
            assert_eq!(reply[field], value);
            let id = reply["id"].as_str().unwrap();
            node.call("DELETE", &format!("/api/scripts/{id}"), Some(&key), None)
                .await;
        } else {
            assert_eq!(status, 400, "{field} = {value}: {reply}");
            assert!(
                reply["error"].as_str().unwrap().starts_with(field),
                "{reply}"
            );
        }
    }
    node.stop().await;
}

async fn query_string_errors_are_json(url: String) {
    let node = TestNode::start(&url).await;
    let key = node.tenant("acme").await;
    for path in [
        "/api/executions?limit=abc",
        "/api/scripts?limit=-",
        "/api/stats?minutes=x",
        "/api/executions?bogus=1",
    ] {
        let (status, reply) = node.call("GET", path, Some(&key), None).await;
        assert_eq!(status, 400, "{path}: {reply}");
        assert!(reply["error"].as_str().is_some(), "{path}: {reply}");
    }
    let (status, reply) = node
        .call("GET", "/api/executions?limit=abc", Some(&key), None)
        .await;
    assert_eq!(status, 400);
    assert!(
        reply["error"].as_str().unwrap().contains("limit"),
        "{reply}"
    );
    // A method a route does not take is a JSON 405 too.
    let (status, reply) = node.call("DELETE", "/api/tenant", Some(&key), None).await;
    assert_eq!(status, 405, "{reply}");
    assert!(
        reply["error"].as_str().unwrap().contains("DELETE"),
        "{reply}"
    );
    node.stop().await;
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap();
    kb * 1024
}

async fn endless_empty_logs_stay_bounded_in_storage_and_replies(url: String) {
    let node = TestNode::start(&url).await;
    let key = node.tenant("acme").await;
    let flood = create(
        &node,
        &key,
        json!({ "name": "flood", "trigger_type": "manual", "source": "export default () => { for (;;) console.log(); }",
                "limits": { "fuel": 50_000_000_000_u64 } }),
    )
    .await;
    let before = rss_bytes();
    let (status, run) = node
        .call(
            "POST",
            &format!("/api/scripts/{}/run", flood["id"].as_str().unwrap()),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(run["status"], "failed", "ends on its fuel or deadline");
    let logs = run["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 1_001, "1,000 lines and the note");
    assert!(
        logs[1000]["message"]
            .as_str()
            .unwrap()
            .starts_with("[truncated: ")
    );
    let reply = node
        .client
        .get(format!(
            "{}/api/executions/{}",
            node.base,
            run["id"].as_str().unwrap()
        ))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(reply.len() < 200_000, "the reply is {} bytes", reply.len());
    let grown = rss_bytes().saturating_sub(before);
    assert!(grown < 256 << 20, "RSS grew by {grown} bytes");
    node.stop().await;
}

async fn sdk_db_keys_with_nul_are_refused_and_prefixes_list_every_key(url: String) {
    let node = TestNode::start(&url).await;
    let key = node.tenant("acme").await;
    let script = create(
        &node,
        &key,
        json!({ "name": "kv", "trigger_type": "manual", "source": r#"export default async () => {
            let nul;
            try { await sdk.db.set("a\u0000b", "v"); nul = "stored"; } catch (e) { nul = String(e.message ?? e); }
            await sdk.db.set("user:\u{10FFFF}x", "1");
            await sdk.db.set("user:a", "2");
            await sdk.db.set("user;", "3");
            return { nul, keys: await sdk.db.list("user:") };
        }"# }),
    )
    .await;
    let (status, run) = node
        .call(
            "POST",
            &format!("/api/scripts/{}/run", script["id"].as_str().unwrap()),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "completed", "{run}");
    assert!(
        run["output"]["nul"].as_str().unwrap().contains("NUL"),
        "{run}"
    );
    assert_eq!(run["output"]["keys"], json!(["user:a", "user:\u{10FFFF}x"]));
    node.stop().await;
}
