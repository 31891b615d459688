//! Webhooks end to end over a real socket, on SQLite and on PostgreSQL:
//! routing, every status code, bodies, signatures (checked against values
//! computed by `openssl`, or published in GitHub's docs), rate limits.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use scriptbox_tests::service::TestNode;
use serde_json::{Value, json};

scriptbox_tests::on_both_backends!(
    calls_reach_the_script_of_their_tenant_and_path,
    route_changes_are_seen_at_once,
    another_nodes_changes_are_seen_within_seconds,
    replies_are_the_result_the_error_or_the_scripts_own_response,
    bodies_are_json_when_they_parse_else_text,
    async_calls_answer_202_and_run_later,
    a_call_over_the_deadline_is_504_and_still_recorded,
    a_call_whose_client_goes_away_is_still_recorded,
    methods_body_size_and_auth_are_checked_before_any_run,
    signatures_verify_against_independently_computed_values,
    a_burst_over_the_rate_limit_is_429_for_that_script_only,
);

async fn create(node: &TestNode, key: &str, body: Value) -> Value {
    let (status, created) = node
        .call("POST", "/api/scripts", Some(key), Some(body))
        .await;
    assert_eq!(status, 201, "{created}");
    created
}

fn hook(name: &str, path: &str, source: &str) -> Value {
    json!({ "name": name, "source": source, "trigger_type": "webhook", "webhook_path": path })
}

const ECHO: &str = "export default (input, ctx) => ({ input, trigger: ctx.trigger })";

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|_| panic!("not JSON: {}", self.text))
    }
}

async fn send(
    node: &TestNode,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> Reply {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = node
        .client
        .request(method, format!("{}/{path}", node.public))
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("answered");
    Reply {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        text: response.text().await.unwrap(),
    }
}

async fn post(node: &TestNode, path: &str, body: &str) -> Reply {
    send(
        node,
        "POST",
        path,
        &[("content-type", "application/json")],
        body.to_owned(),
    )
    .await
}

async fn execution(node: &TestNode, key: &str, id: &str) -> Value {
    let (status, e) = node
        .call("GET", &format!("/api/executions/{id}"), Some(key), None)
        .await;
    assert_eq!(status, 200, "{e}");
    e
}

/// Waits for an execution to finish.
async fn finished(node: &TestNode, key: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let e = execution(node, key, id).await;
        if e["status"] == "completed" || e["status"] == "failed" {
            return e;
        }
        assert!(Instant::now() < deadline, "never finished: {e}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn calls_reach_the_script_of_their_tenant_and_path(url: String) {
    let node = TestNode::start(&url).await;
    let acme = node.tenant("acme").await;
    let globex = node.tenant("globex").await;
    create(
        &node,
        &acme,
        hook("a", "/hooks/in", "export default () => 'acme'"),
    )
    .await;
    create(
        &node,
        &globex,
        hook("g", "hooks/in", "export default () => 'globex'"),
    )
    .await;

    let reply = post(&node, "acme/hooks/in?x=1&x=2&y=3", r#"{"n": 1}"#).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json(), json!({ "result": "acme" }));
    let reply = post(&node, "globex/hooks/in", "{}").await;
    assert_eq!(reply.json(), json!({ "result": "globex" }));

    // The execution is recorded with trigger `webhook` and the request as input.
    let echo = create(&node, &acme, hook("echo", "/echo", ECHO)).await;
    let reply = send(
        &node,
        "PUT",
        "acme/echo/?x=1&x=2&y=3",
        &[("content-type", "application/json"), ("x-custom", "yes")],
        r#"{"method": "body's own", "n": 1}"#,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let result = &reply.json()["result"];
    assert_eq!(result["trigger"], "webhook");
    let input = &result["input"];
    assert_eq!(input["method"], "PUT");
    assert_eq!(input["path"], "/echo");
    assert_eq!(
        input["url"],
        format!("{}/acme/echo?x=1&x=2&y=3", node.public)
    );
    assert_eq!(input["query"], json!({ "x": ["1", "2"], "y": "3" }));
    assert_eq!(input["headers"]["x-custom"], "yes");
    // Metadata never overwrites body fields.
    assert_eq!(input["body"], json!({ "method": "body's own", "n": 1 }));
    let id = reply.headers["x-scriptbox-execution-id"].to_str().unwrap();
    let stored = execution(&node, &acme, id).await;
    assert_eq!(stored["trigger_type"], "webhook");
    assert_eq!(stored["script_id"], echo["id"]);
    assert_eq!(stored["input"], *input);

    for missing in ["acme/nope", "nobody/hooks/in", "acme", "acme/"] {
        let reply = post(&node, missing, "{}").await;
        assert_eq!(reply.status, 404, "{missing}: {}", reply.text);
    }
    let reply = post(&node, "acme/nope", "{}").await;
    assert_eq!(
        reply.json(),
        json!({ "error": "Webhook endpoint not found" })
    );
    node.stop().await;
}

async fn route_changes_are_seen_at_once(url: String) {
    let node = TestNode::start(&url).await;
    let key = node.tenant("acme").await;
    let created = create(&node, &key, hook("a", "/v1", "export default () => 1")).await;
    let id = created["id"].as_str().unwrap();
    let path = format!("/api/scripts/{id}");
    assert_eq!(post(&node, "acme/v1", "{}").await.status, 200);

    let change = |body: Value| node.call("PUT", &path, Some(&key), Some(body));
    let (status, _) =
        change(json!({ "webhook_path": "/v2", "source": "export default () => 2" })).await;
    assert_eq!(status, 200);
    assert_eq!(post(&node, "acme/v1", "{}").await.status, 404);
    assert_eq!(
        post(&node, "acme/v2", "{}").await.json(),
        json!({ "result": 2 })
    );

    change(json!({ "enabled": false })).await;
    assert_eq!(post(&node, "acme/v2", "{}").await.status, 404);
    change(json!({ "enabled": true })).await;
    assert_eq!(post(&node, "acme/v2", "{}").await.status, 200);

    let (status, _) = node.call("DELETE", &path, Some(&key), None).await;
    assert_eq!(status, 204);
    assert_eq!(post(&node, "acme/v2", "{}").await.status, 404);
    node.stop().await;
}

async fn another_nodes_changes_are_seen_within_seconds(url: String) {
    let first = TestNode::start(&url).await;
    let second = TestNode::start(&url).await;
    let key = first.tenant("acme").await;
    let created = create(
        &first,
        &key,
        hook("a", "/shared", "export default () => 'v1'"),
    )
    .await;
    let path = format!("/api/scripts/{}", created["id"].as_str().unwrap());
    assert_eq!(
        post(&second, "acme/shared", "{}").await.json()["result"],
        "v1"
    );

    // Changed and then deleted on the first node: the second follows.
    let (status, _) = first
        .call(
            "PUT",
            &path,
            Some(&key),
            Some(json!({ "source": "export default () => 'v2'" })),
        )
        .await;
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    while post(&second, "acme/shared", "{}").await.json()["result"] != "v2" {
        assert!(
            Instant::now() < deadline,
            "the second node kept the old script"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    first.call("DELETE", &path, Some(&key), None).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while post(&second, "acme/shared", "{}").await.status != 404 {
        assert!(
            Instant::now() < deadline,
            "the second node kept the deleted route"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    second.shut_down().await;
    first.stop().await;
}

async fn replies_are_the_result_the_error_or_the_scripts_own_response(url: String) {
    let node = TestNode::start(&url).await;
    let key = node.tenant("acme").await;
    create(
        &node,
        &key,
        hook(
            "fail",
            "/fail",
            "export default () => { throw new Error('nope') }",
        ),
    )
    .await;
    create(
        &node,
        &key,
        hook(
            "own",
            "/own",
            "export default () => new Response('<p>made</p>', { status: 201, headers: { 'content-type': 'text/html', 'x-made-by': 'script' } })",
        ),
    )
    .await;

    let reply = post(&node, "acme/fail", "{}").await;
    assert_eq!(reply.status, 500);
    assert_eq!(reply.json(), json!({ "error": "Error: nope" }));
    let id = reply.headers["x-scriptbox-execution-id"].to_str().unwrap();
    let stored = execution(&node, &key, id).await;
    assert_eq!(stored["status"], "failed");
    assert_eq!(stored["error_type"], "js_error");

    let reply = post(&node, "acme/own", "{}").await;
    assert_eq!(reply.status, 201);
    assert_eq!(reply.headers["content-type"], "text/html");
    assert_eq!(reply.headers["x-made-by"], "script");
    assert_eq!(reply.text, "<p>made</p>");
    node.stop().await;
}

async fn bodies_are_json_when_they_parse_else_text(url: String) {
    let node = TestNode::start(&url).await;
    let key = node.tenant("acme").await;
    create(
        &node,
        &key,
        hook("body", "/body", "export default (input) => input.body"),
    )
    .await;
    let cases: [(&str, &str, Value); 5] = [
        (
            "application/json",
            r#"{"a": [1, 2]}"#,
            json!({ "a": [1, 2] }),
        ),
        (
            "application/vnd.api+json; charset=utf-8",
            "[true]",
            json!([true]),
        ),
        ("application/json", "{not json", json!("{not json")),
        ("text/plain", r#"{"a": 1}"#, json!(r#"{"a": 1}"#)),
        ("text/plain", "", Value::Null),
    ];
    for (content_type, body, expected) in cases {
        let reply = send(
            &node,
            "POST",
            "acme/body",
            &[("content-type", content_type)],
            body.to_owned(),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.json()["result"], expected, "{content_type} {body:?}");
    }
    node.stop().await;
}

async fn async_calls_answer_202_and_run_later(url: String) {
    let node = TestNode::start(&url).await;
    let key = node.tenant("acme").await;
    create(
        &node,
        &key,
        hook(
            "later",
            "/later",
            "export default (input) => input.body.n * 2",
        ),
    )
    .await;
    for (path, headers) in [
        (
            "acme/later?async=true",
            vec![("content-type", "application/json")],
        ),
        (
            "acme/later",
            vec![
                ("content-type", "application/json"),
                ("prefer", "respond-async"),
            ],
        ),
    ] {
        let reply = send(&node, "POST", path, &headers, r#"{"n": 21}"#).await;
        assert_eq!(reply.status, 202, "{}", reply.text);
        let id = reply.json()["execution_id"].as_str().unwrap().to_owned();
        let done = finished(&node, &key, &id).await;
        assert_eq!(done["status"], "completed");
        assert_eq!(done["output"], 42);
    }
    node.stop().await;
}

const SLOW: &str =
    "export default () => { const t = Date.now(); while (Date.now() - t < 1500) {} return 'done' }";

fn slow_hook(path: &str) -> Value {
    let mut body = hook("slow", path, SLOW);
    body["limits"] = json!({ "fuel": 50_000_000_000u64, "timeout_ms": 10_000 });
    body
}

async fn a_call_over_the_deadline_is_504_and_still_recorded(url: String) {
    let node = TestNode::start_with(&url, |c| c.webhooks.sync_timeout_ms = 300).await;
    let key = node.tenant("acme").await;
    create(&node, &key, slow_hook("/slow")).await;
    let reply = post(&node, "acme/slow", "{}").await;
    assert_eq!(reply.status, 504, "{}", reply.text);
    let id = reply.headers["x-scriptbox-execution-id"].to_str().unwrap();
    let done = finished(&node, &key, id).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"], "done");
    node.stop().await;
}

async fn a_call_whose_client_goes_away_is_still_recorded(url: String) {
    let node = TestNode::start(&url).await;
    let key = node.tenant("acme").await;
    let script = create(&node, &key, slow_hook("/slow")).await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let gone = impatient
        .post(format!("{}/acme/slow", node.public))
        .body("{}")
        .send()
        .await;
    assert!(gone.is_err(), "the client gave up first");
    let list = format!(
        "/api/executions?script_id={}",
        script["id"].as_str().unwrap()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, page) = node.call("GET", &list, Some(&key), None).await;
        let items = page["items"].as_array().unwrap();
        if items.len() == 1 && items[0]["status"] == "completed" {
            assert_eq!(items[0]["trigger_type"], "webhook");
            break;
        }
        assert!(Instant::now() < deadline, "{page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    node.stop().await;
}

async fn methods_body_size_and_auth_are_checked_before_any_run(url: String) {
    let node = TestNode::start_with(&url, |c| c.webhooks.body_limit = 1024).await;
    let key = node.tenant("acme").await;
    let mut only_post = hook("post", "/post", "export default () => 1");
    only_post["webhook_methods"] = json!(["post", "PUT"]);
    let only_post = create(&node, &key, only_post).await;
    let mut bearer = hook(
        "bearer",
        "/bearer",
        "export default (input) => input.headers.authorization",
    );
    bearer["webhook_auth"] = json!({ "type": "bearer", "secret": "t0ken" });
    let bearer = create(&node, &key, bearer).await;
    assert_eq!(
        bearer["webhook_auth"],
        json!({ "type": "bearer" }),
        "the secret is never shown"
    );

    let reply = send(&node, "GET", "acme/post", &[], "").await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.headers["allow"], "POST, PUT");
    assert!(reply.json()["error"].as_str().unwrap().contains("GET"));
    assert_eq!(send(&node, "PUT", "acme/post", &[], "").await.status, 200);

    let reply = post(&node, "acme/post", &"x".repeat(1025)).await;
    assert_eq!(reply.status, 413, "{}", reply.text);
    assert!(reply.json()["error"].as_str().unwrap().contains("1024"));
    assert_eq!(
        post(&node, "acme/post", &"x".repeat(1024)).await.status,
        200
    );
    // A streamed body (no Content-Length) is cut off at the limit too.
    let chunks: Vec<Result<&'static [u8], std::io::Error>> =
        vec![Ok(&[b'x'; 800]), Ok(&[b'y'; 800])];
    let stream = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    assert_eq!(
        send(&node, "POST", "acme/post", &[], stream).await.status,
        413
    );

    for (headers, why) in [
        (vec![], "missing authorization header"),
        (
            vec![("authorization", "Bearer wrong")],
            "invalid bearer token",
        ),
    ] {
        let reply = send(&node, "POST", "acme/bearer", &headers, "").await;
        assert_eq!(reply.status, 401);
        assert_eq!(reply.json()["error"], why);
    }
    let reply = send(
        &node,
        "POST",
        "acme/bearer",
        &[("authorization", "Bearer t0ken")],
        "",
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.json()["result"],
        "[redacted]",
        "the token is not stored with the input"
    );

    // Only the accepted calls left executions.
    for (script, expected) in [(&only_post, 2), (&bearer, 1)] {
        let (_, page) = node
            .call(
                "GET",
                &format!(
                    "/api/executions?script_id={}",
                    script["id"].as_str().unwrap()
                ),
                Some(&key),
                None,
            )
            .await;
        assert_eq!(page["items"].as_array().unwrap().len(), expected, "{page}");
    }
    let metrics = node.metrics().await;
    for series in [
        "scriptbox_webhook_rejected_total{reason=\"method_not_allowed\"} 1",
        "scriptbox_webhook_rejected_total{reason=\"body_too_large\"} 2",
        "scriptbox_webhook_rejected_total{reason=\"unauthorized\"} 2",
    ] {
        assert!(metrics.contains(series), "{series} in\n{metrics}");
    }
    node.stop().await;
}

/// HMAC-SHA256 of `data` with `key`, computed by `openssl`: the hex digest.
fn openssl_hmac(key: &[u8], data: &[u8]) -> String {
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-mac", "HMAC", "-macopt"])
        .arg(format!("hexkey:{}", hex::encode(key)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl is installed");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    // "HMAC-SHA2-256(stdin)= <hex>" or "(stdin)= <hex>", by version.
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .last()
        .unwrap()
        .to_owned()
}

async fn signatures_verify_against_independently_computed_values(url: String) {
    let node = TestNode::start(&url).await;
    let key = node.tenant("acme").await;
    let with_auth = |name: &str, auth: Value| {
        let mut body = hook(
            name,
            &format!("/{name}"),
            "export default (input) => input.body",
        );
        body["webhook_auth"] = auth;
        body
    };
    create(
        &node,
        &key,
        with_auth(
            "github",
            json!({ "type": "hmac-github", "secret": "It's a Secret to Everybody" }),
        ),
    )
    .await;
    create(
        &node,
        &key,
        with_auth(
            "stripe",
            json!({ "type": "hmac-stripe", "secret": "whsec_stripe_test" }),
        ),
    )
    .await;
    let standard_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    create(
        &node,
        &key,
        with_auth(
            "standard",
            json!({ "type": "standard-webhooks", "secret": standard_secret }),
        ),
    )
    .await;

    // GitHub's documented example.
    let good = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    let reply = send(
        &node,
        "POST",
        "acme/github",
        &[("x-hub-signature-256", good)],
        "Hello, World!",
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json()["result"], "Hello, World!");
    let reply = send(
        &node,
        "POST",
        "acme/github",
        &[("x-hub-signature-256", good)],
        "Hello, World?",
    )
    .await;
    assert_eq!(reply.status, 401);

    // Stripe: t=<now>,v1=HMAC(secret, "<t>.<body>") by openssl.
    let now = chrono::Utc::now().timestamp();
    let body = r#"{"id": "evt_1"}"#;
    let stripe = |t: i64| {
        let v1 = openssl_hmac(b"whsec_stripe_test", format!("{t}.{body}").as_bytes());
        format!("t={t},v0=ignored,v1={v1}")
    };
    let headers = |sig: &str| {
        vec![
            ("content-type", "application/json"),
            ("stripe-signature", sig),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.to_owned()))
        .collect::<Vec<_>>()
    };
    for (signature, status) in [
        (stripe(now), 200),
        (stripe(now - 250), 200),
        (stripe(now - 400), 401),
        (format!("t={now},v1={}", "0".repeat(64)), 401),
    ] {
        let h = headers(&signature);
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let reply = send(&node, "POST", "acme/stripe", &h, body).await;
        assert_eq!(reply.status, status, "{signature}: {}", reply.text);
    }

    // Standard Webhooks: base64 of HMAC(key, "<id>.<t>.<body>") by openssl.
    let key_bytes = base64::engine::general_purpose::STANDARD
        .decode(standard_secret.trim_start_matches("whsec_"))
        .unwrap();
    let sign = |id: &str, t: i64, body: &str| {
        let digest = hex::decode(openssl_hmac(
            &key_bytes,
            format!("{id}.{t}.{body}").as_bytes(),
        ))
        .unwrap();
        format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(digest)
        )
    };
    let body = r#"{"test": 2432232314}"#;
    let t = now.to_string();
    for (signature, status) in [
        (sign("msg_1", now, body), 200),
        (format!("v1,AAAA {}", sign("msg_1", now, body)), 200),
        (sign("msg_2", now, body), 401),
        (sign("msg_1", now, "{}"), 401),
    ] {
        let h = [
            ("content-type", "application/json"),
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", t.as_str()),
            ("webhook-signature", signature.as_str()),
        ];
        let reply = send(&node, "POST", "acme/standard", &h, body).await;
        assert_eq!(reply.status, status, "{signature}: {}", reply.text);
    }
    // The specification's own example is signed in 2021: outside the window.
    let h = [
        ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
        ("webhook-timestamp", "1614265330"),
        (
            "webhook-signature",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ),
    ];
    let reply = send(&node, "POST", "acme/standard", &h, body).await;
    assert_eq!(reply.status, 401);
    assert!(reply.json()["error"].as_str().unwrap().contains("300 s"));
    node.stop().await;
}

async fn a_burst_over_the_rate_limit_is_429_for_that_script_only(url: String) {
    let node = TestNode::start(&url).await;
    let key = node.tenant("acme").await;
    let mut limited = hook("limited", "/limited", "export default () => 1");
    limited["rate_limit"] = json!({ "rps": 10, "burst": 20 });
    create(&node, &key, limited).await;
    create(
        &node,
        &key,
        hook("other", "/other", "export default () => 1"),
    )
    .await;

    let burst = (0..40).map(|_| send(&node, "POST", "acme/limited?async=true", &[], ""));
    let replies = futures::future::join_all(burst).await;
    let accepted = replies.iter().filter(|r| r.status == 202).count();
    let limited: Vec<&Reply> = replies.iter().filter(|r| r.status == 429).collect();
    assert_eq!(accepted + limited.len(), 40);
    assert!((20..=23).contains(&accepted), "{accepted} accepted");
    let retry_after: u64 = limited[0].headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");

    // Another script keeps its own allowance.
    let reply = send(&node, "POST", "acme/other?async=true", &[], "").await;
    assert_eq!(reply.status, 202);
    node.stop().await;
}
