//! The handler form: a default export that is an object of handlers, as in
//! Cloudflare Workers. Each trigger calls its own handler (`fetch` for
//! webhook calls, `scheduled` for cron runs, `run` for manual ones) with
//! `env` and a `ctx` whose `waitUntil` holds the run until its promises
//! settle. The function form keeps working beside it.

use std::time::{Duration, Instant};

use scriptbox_tests::service::{Backend, TestNode, fresh_database};
use serde_json::{Value, json};

const HANDLERS: &str = r#"
export default {
  async fetch(request, env, ctx) {
    const body = await request.json();
    return Response.json({
      method: request.method, url: request.url, got: body,
      header: request.headers.get("x-test"), mode: env.MODE, trigger: ctx.trigger,
    }, { status: 201, headers: { "x-handler": "fetch" } });
  },
  async scheduled(controller, env, ctx) {
    return { scheduledTime: controller.scheduledTime, cron: controller.cron, mode: env.MODE,
             trigger: ctx.trigger };
  },
  async run(input, env, ctx) {
    return { input, mode: env.MODE, trigger: ctx.trigger, envOnCtx: "env" in ctx,
             scriptId: ctx.scriptId };
  },
};
"#;

async fn node() -> (TestNode, String) {
    let url = fresh_database(Backend::Sqlite).await.unwrap();
    let node = TestNode::start(&url).await;
    let key = node.tenant("acme").await;
    (node, key)
}

async fn create(node: &TestNode, key: &str, body: Value) -> Value {
    let (status, created) = node
        .call("POST", "/api/scripts", Some(key), Some(body))
        .await;
    assert_eq!(status, 201, "{created}");
    created
}

async fn run(node: &TestNode, key: &str, id: &str, input: Value) -> Value {
    let (status, run) = node
        .call(
            "POST",
            &format!("/api/scripts/{id}/run"),
            Some(key),
            Some(json!({ "input": input })),
        )
        .await;
    assert_eq!(status, 200, "{run}");
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_trigger_calls_its_handler_with_env_and_ctx() {
    let (node, key) = node().await;
    let vars = json!({ "MODE": "handlers" });

    // run(input, env, ctx) for manual runs.
    let manual = create(
        &node,
        &key,
        json!({ "name": "m", "trigger_type": "manual", "source": HANDLERS, "vars": vars }),
    )
    .await;
    let id = manual["id"].as_str().unwrap();
    let done = run(&node, &key, id, json!({ "n": 1 })).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        done["output"],
        json!({ "input": { "n": 1 }, "mode": "handlers", "trigger": "manual",
                "envOnCtx": false, "scriptId": id })
    );

    // fetch(request, env, ctx) for webhook calls, its Response sent as is.
    create(
        &node,
        &key,
        json!({ "name": "w", "trigger_type": "webhook", "webhook_path": "/hooks/h",
                "source": HANDLERS, "vars": vars }),
    )
    .await;
    let url = format!("{}/acme/hooks/h?a=1", node.public);
    let reply = node
        .client
        .post(&url)
        .header("content-type", "application/json")
        .header("x-test", "yes")
        .body(r#"{"n": 2}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 201);
    assert_eq!(reply.headers()["x-handler"], "fetch");
    let body: Value = reply.json().await.unwrap();
    assert_eq!(
        body,
        json!({ "method": "POST", "url": url, "got": { "n": 2 }, "header": "yes",
                "mode": "handlers", "trigger": "webhook" })
    );

    // scheduled(controller, env, ctx) for cron runs.
    let cron = create(
        &node,
        &key,
        json!({ "name": "c", "trigger_type": "scheduled", "schedule": "@every 1s",
                "source": HANDLERS, "vars": vars }),
    )
    .await;
    let id = cron["id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let ran = loop {
        let (_, page) = node
            .call(
                "GET",
                &format!("/api/executions?script_id={id}&status=completed"),
                Some(&key),
                None,
            )
            .await;
        if let Some(first) = page["items"].as_array().and_then(|items| items.first()) {
            break first.clone();
        }
        assert!(Instant::now() < deadline, "no scheduled run completed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let fired = chrono::DateTime::parse_from_rfc3339(ran["scheduled_for"].as_str().unwrap())
        .unwrap()
        .timestamp_millis();
    assert_eq!(
        ran["output"],
        json!({ "scheduledTime": fired, "cron": "@every 1s", "mode": "handlers",
                "trigger": "scheduled" })
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_until_holds_the_run_and_reports_rejections() {
    let (node, key) = node().await;
    let script = create(
        &node,
        &key,
        json!({ "name": "bg", "trigger_type": "manual", "source": r#"
export default {
  async run(input, env, ctx) {
    ctx.waitUntil((async () => {
      for (let i = 0; i < 3; i++) await null;
      await sdk.db.set("after", "done");
      console.log("background ran");
    })());
    ctx.waitUntil(Promise.reject(new Error("background failed")));
    return (await sdk.db.get("after")) ?? "not yet";
  },
};
"# }),
    )
    .await;
    let id = script["id"].as_str().unwrap();
    let first = run(&node, &key, id, Value::Null).await;
    assert_eq!(first["status"], "completed", "{first}");
    // The reply was computed before the background work ...
    assert_eq!(first["output"], "not yet");
    // ... which still ran inside the run, and its failure was logged.
    let logs: Vec<&str> = first["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert!(logs.contains(&"background ran"), "{logs:?}");
    assert!(
        logs.iter()
            .any(|l| l.starts_with("ctx.waitUntil promise 2 rejected: Error: background failed")),
        "{logs:?}"
    );
    let second = run(&node, &key, id, Value::Null).await;
    assert_eq!(second["output"], "done");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_handler_fails_the_run_naming_it() {
    let (node, key) = node().await;
    let script = create(
        &node,
        &key,
        json!({ "name": "only-fetch", "trigger_type": "manual",
                "source": "export default { fetch() { return new Response('x') } }" }),
    )
    .await;
    let failed = run(&node, &key, script["id"].as_str().unwrap(), Value::Null).await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error_type"], "js_error");
    assert_eq!(
        failed["error_message"],
        "TypeError: the default export has no run() handler for a manual run (it has fetch)"
    );
    // Neither a function nor an object: refused as before.
    let (status, body) = node
        .call(
            "POST",
            "/api/scripts",
            Some(&key),
            Some(json!({ "name": "n", "trigger_type": "manual", "source": "export default 42" })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let failed = run(&node, &key, body["id"].as_str().unwrap(), Value::Null).await;
    assert!(
        failed["error_message"]
            .as_str()
            .unwrap()
            .contains("no default export function or object of handlers"),
        "{failed}"
    );
    node.stop().await;
}

fn workers_example(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/workers")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Saves `file` of examples/workers as a webhook script at `/{path}`.
async fn hook(node: &TestNode, key: &str, file: &str, path: &str, vars: Value) {
    create(
        node,
        key,
        json!({ "name": path, "trigger_type": "webhook", "webhook_path": path,
                "source": workers_example(file), "vars": vars }),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_examples_run_unchanged() {
    let (node, key) = node().await;
    // Redirects are answered, not followed, as a browser would see them.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let at = |path: &str| format!("{}/acme/{path}", node.public);

    hook(&node, &key, "json-api.js", "api", json!({})).await;
    let reply = client.get(at("api?id=7")).send().await.unwrap();
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.headers()["content-type"], "application/json");
    assert_eq!(
        reply.json::<Value>().await.unwrap(),
        json!({ "id": "7", "found": true })
    );
    let reply = client.post(at("api")).body("x").send().await.unwrap();
    assert_eq!(reply.status(), 405);
    assert_eq!(reply.headers()["allow"], "GET");

    hook(
        &node,
        &key,
        "redirect.js",
        "old",
        json!({ "NEW_SITE": "https://new.example" }),
    )
    .await;
    let reply = client.get(at("old?ref=mail")).send().await.unwrap();
    assert_eq!(reply.status(), 301);
    assert_eq!(
        reply.headers()["location"],
        "https://new.example/welcome?ref=mail"
    );

    hook(&node, &key, "read-body.js", "body", json!({})).await;
    for (content_type, body, expected) in [
        (
            "application/json",
            r#"{"a": [1, 2]}"#,
            json!({ "kind": "json", "value": { "a": [1, 2] } }),
        ),
        (
            "application/x-www-form-urlencoded",
            "name=Ada+Lovelace&lang=en%2Dgb",
            json!({ "kind": "form", "value": { "name": "Ada Lovelace", "lang": "en-gb" } }),
        ),
        (
            "text/plain",
            "just text",
            json!({ "kind": "text", "value": "just text" }),
        ),
    ] {
        let reply = client
            .post(at("body"))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200, "{content_type}");
        assert_eq!(reply.json::<Value>().await.unwrap(), expected);
    }

    hook(&node, &key, "cors.js", "cors", json!({})).await;
    let reply = client
        .request(reqwest::Method::OPTIONS, at("cors"))
        .header("origin", "https://app.example")
        .header("access-control-request-headers", "x-custom")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 204);
    assert_eq!(reply.headers()["access-control-allow-headers"], "x-custom");
    assert_eq!(reply.headers()["access-control-allow-origin"], "*");
    let reply = client.get(at("cors")).send().await.unwrap();
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.headers()["access-control-allow-origin"], "*");

    // The cron example counts its runs; its run() handler reports them.
    let cron = create(
        &node,
        &key,
        json!({ "name": "cron", "trigger_type": "scheduled", "schedule": "@every 1s",
                "source": workers_example("cron-counter.js") }),
    )
    .await;
    let id = cron["id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let logs = loop {
        let (_, page) = node
            .call(
                "GET",
                &format!("/api/executions?script_id={id}&status=completed"),
                Some(&key),
                None,
            )
            .await;
        let items = page["items"].as_array().cloned().unwrap_or_default();
        if items.len() >= 2 {
            break items[0]["logs"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "the cron example did not run twice"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let line = logs[0]["message"].as_str().unwrap();
    assert!(
        line.starts_with("run ") && line.contains(" by @every 1s at "),
        "{line}"
    );
    let counted = run(&node, &key, id, Value::Null).await;
    assert!(
        counted["output"]["runs"].as_u64().unwrap() >= 2,
        "{counted}"
    );
    node.stop().await;
}
