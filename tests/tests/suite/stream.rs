//! `GET /api/executions/stream`: finished runs as Server-Sent Events, each
//! sent once its record is committed, scoped to the key's tenant (and to
//! one script when asked), on both backends.

use scriptbox::client::sse::{Event, Events};
use scriptbox_tests::service::TestNode;
use serde_json::{Value, json};

scriptbox_tests::on_both_backends!(
    a_stream_carries_its_tenants_finished_runs_once_recorded,
    a_stream_is_refused_without_a_key_or_for_another_tenants_script,
);

async fn create(node: &TestNode, key: &str, name: &str, source: &str) -> String {
    let (status, script) = node
        .call(
            "POST",
            "/api/scripts",
            Some(key),
            Some(json!({ "name": name, "source": source, "trigger_type": "manual" })),
        )
        .await;
    assert_eq!(status, 201, "{script}");
    script["id"].as_str().unwrap().to_owned()
}

async fn run(node: &TestNode, key: &str, id: &str) -> Value {
    let (status, execution) = node
        .call("POST", &format!("/api/scripts/{id}/run"), Some(key), None)
        .await;
    assert_eq!(status, 200, "{execution}");
    execution
}

/// Opens a stream and waits for its `ready` event.
async fn subscribe(node: &TestNode, key: &str, query: &str) -> Events {
    let response = node
        .client
        .get(format!("{}/api/executions/stream{query}", node.base))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert_eq!(content_type, "text/event-stream");
    let mut events = Events::new(response);
    assert_eq!(next(&mut events).await.name, "ready");
    events
}

async fn next(events: &mut Events) -> Event {
    tokio::time::timeout(std::time::Duration::from_secs(30), events.next())
        .await
        .expect("an event within 30 s")
        .unwrap()
        .expect("the stream is open")
}

async fn next_execution(events: &mut Events) -> Value {
    let event = next(events).await;
    assert_eq!(event.name, "execution", "{event:?}");
    serde_json::from_str(&event.data).unwrap()
}

async fn a_stream_carries_its_tenants_finished_runs_once_recorded(url: String) {
    let node = TestNode::start(&url).await;
    let acme = node.tenant("acme").await;
    let beta = node.tenant("beta").await;
    let logs = create(
        &node,
        &acme,
        "logs",
        "export default (input) => { console.log('line one'); console.warn('two'); return input; }",
    )
    .await;
    let fails = create(
        &node,
        &acme,
        "fails",
        "export default () => { throw new TypeError('boom') }",
    )
    .await;
    let other = create(&node, &beta, "other", "export default () => 1").await;

    let mut all = subscribe(&node, &acme, "").await;
    let mut one = subscribe(&node, &acme, &format!("?script_id={logs}")).await;
    let mut theirs = subscribe(&node, &beta, "").await;

    let first = run(&node, &acme, &logs).await;
    run(&node, &acme, &fails).await;

    let event = next_execution(&mut all).await;
    assert_eq!(event["id"], first["id"]);
    assert_eq!(event["script_id"], logs.as_str());
    assert_eq!(event["status"], "completed");
    assert_eq!(event["trigger_type"], "manual");
    assert_eq!(event["logs"][0]["message"], "line one");
    assert_eq!(event["logs"][1]["level"], "warn");
    assert!(event["duration_us"].as_i64().unwrap() > 0, "{event}");
    assert!(event["fuel_used"].as_i64().unwrap() > 0, "{event}");
    // Input and output stay in the record; the tenant's id is not sent.
    assert!(event.get("input").is_none() && event.get("output").is_none());
    assert!(event.get("tenant_id").is_none(), "{event}");
    // The record is committed when the event is sent.
    let id = event["id"].as_str().unwrap();
    let (status, stored) = node
        .call("GET", &format!("/api/executions/{id}"), Some(&acme), None)
        .await;
    assert_eq!((status, &stored["status"]), (200, &json!("completed")));

    let event = next_execution(&mut all).await;
    assert_eq!(event["script_id"], fails.as_str());
    assert_eq!(event["status"], "failed");
    assert_eq!(event["error_type"], "js_error");
    assert_eq!(event["error_message"], "TypeError: boom");

    // One script's stream: only its runs.
    run(&node, &acme, &logs).await;
    assert_eq!(next_execution(&mut one).await["id"], first["id"]);
    assert_eq!(next_execution(&mut one).await["script_id"], logs.as_str());

    // The other tenant's stream saw none of acme's runs: its first event
    // is its own.
    let own = run(&node, &beta, &other).await;
    assert_eq!(next_execution(&mut theirs).await["id"], own["id"]);
    assert_eq!(node.exec.events().subscribers(), 3);
    drop((all, one, theirs));
    node.stop().await;
}

async fn a_stream_is_refused_without_a_key_or_for_another_tenants_script(url: String) {
    let node = TestNode::start(&url).await;
    let acme = node.tenant("acme").await;
    let beta = node.tenant("beta").await;
    let theirs = create(&node, &beta, "theirs", "export default () => 1").await;
    let (status, _) = node.call("GET", "/api/executions/stream", None, None).await;
    assert_eq!(status, 401);
    let (status, body) = node
        .call(
            "GET",
            &format!("/api/executions/stream?script_id={theirs}"),
            Some(&acme),
            None,
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = node
        .call(
            "GET",
            "/api/executions/stream?status=failed",
            Some(&acme),
            None,
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("status"), "{body}");
    assert_eq!(node.exec.events().subscribers(), 0);
    node.stop().await;
}
