//! Tenants' secrets and scripts' vars, end to end on both backends: set
//! through the API, declared by a script, read in a run as `ctx.env`, masked
//! out of everything the run leaves, refused when undeclared or unknown,
//! bound to their tenant, and sealed with a key a node checks at start.

use scriptbox::store::Db;
use scriptbox_tests::service::TestNode;
use serde_json::{Value, json};

scriptbox_tests::on_both_backends!(
    declared_secrets_and_vars_reach_the_run_and_are_masked_everywhere,
    secrets_are_validated_when_set_declared_and_deleted,
    a_tenant_reads_only_its_own_secrets,
    a_node_with_another_key_refuses_to_start,
);

const STRIPE: &str = "sk_test_4eC39HqLyjWDarjtT1zdp7dc";

async fn put_secret(node: &TestNode, key: &str, name: &str, value: &str) -> (u16, Value) {
    node.call(
        "PUT",
        &format!("/api/secrets/{name}"),
        Some(key),
        Some(json!({ "value": value })),
    )
    .await
}

/// Creates a manual script from `body`.
async fn create(node: &TestNode, key: &str, mut body: Value) -> (u16, Value) {
    body["trigger_type"] = json!("manual");
    node.call("POST", "/api/scripts", Some(key), Some(body))
        .await
}

async fn run(node: &TestNode, key: &str, script: &Value) -> Value {
    let id = script["id"].as_str().unwrap();
    let (status, run) = node
        .call(
            "POST",
            &format!("/api/scripts/{id}/run"),
            Some(key),
            Some(json!({ "input": { "n": 1 } })),
        )
        .await;
    assert_eq!(status, 200, "{run}");
    run
}

fn reversed(text: &str) -> String {
    text.chars().rev().collect()
}

async fn declared_secrets_and_vars_reach_the_run_and_are_masked_everywhere(url: String) {
    let node = TestNode::start(&url).await;
    let key = node.tenant("acme").await;
    assert_eq!(put_secret(&node, &key, "STRIPE_KEY", STRIPE).await.0, 204);
    assert_eq!(
        put_secret(&node, &key, "UNUSED", "not-for-this-script")
            .await
            .0,
        204
    );

    // Listed by name with its time; the value never comes back.
    let (status, list) = node.call("GET", "/api/secrets", Some(&key), None).await;
    assert_eq!(status, 200, "{list}");
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["STRIPE_KEY", "UNUSED"]);
    assert!(list["items"][0]["updated_at"].is_string(), "{list}");
    assert!(!list.to_string().contains(STRIPE), "{list}");

    let (status, script) = create(
        &node,
        &key,
        json!({
            "name": "charge",
            "source": "export default (input, ctx) => {\n\
                const k = ctx.env.STRIPE_KEY;\n\
                console.log('using ' + k);\n\
                return { key: k, reversed: k.split('').reverse().join(''), mode: ctx.env.MODE,\n\
                    names: Object.keys(ctx.env).sort(), unused: ctx.env.UNUSED ?? null };\n\
            }",
            "secrets": ["STRIPE_KEY"],
            "vars": { "MODE": "test" },
        }),
    )
    .await;
    assert_eq!(status, 201, "{script}");
    assert_eq!(script["secrets"], json!(["STRIPE_KEY"]));
    assert_eq!(script["vars"], json!({ "MODE": "test" }));

    let done = run(&node, &key, &script).await;
    assert_eq!(done["status"], "completed", "{done}");
    let output = &done["output"];
    // The run had the real value (its reverse is not masked) ...
    assert_eq!(output["reversed"], reversed(STRIPE));
    // ... but the value itself is masked in the output and the logs.
    assert_eq!(output["key"], "[secret STRIPE_KEY]");
    assert_eq!(done["logs"][0]["message"], "using [secret STRIPE_KEY]");
    // Vars and the declared secret only: nothing else of the tenant's.
    assert_eq!(output["mode"], "test");
    assert_eq!(output["names"], json!(["MODE", "STRIPE_KEY"]));
    assert_eq!(output["unused"], Value::Null);

    // Stored as returned: the execution, its input and the metrics hold no value.
    let id = done["id"].as_str().unwrap();
    let (_, stored) = node
        .call("GET", &format!("/api/executions/{id}"), Some(&key), None)
        .await;
    assert_eq!(stored["output"]["key"], "[secret STRIPE_KEY]");
    assert!(!stored.to_string().contains(STRIPE), "{stored}");
    assert!(!node.metrics().await.contains(STRIPE));
    let (_, shown) = node
        .call(
            "GET",
            &format!("/api/scripts/{}", script["id"].as_str().unwrap()),
            Some(&key),
            None,
        )
        .await;
    assert!(!shown.to_string().contains(STRIPE), "{shown}");

    // Errors and stacks are masked too.
    let (status, failing) = create(
        &node,
        &key,
        json!({
            "name": "leaky",
            "source": "export default (input, ctx) => { throw new Error('bad key ' + ctx.env.STRIPE_KEY) }",
            "secrets": ["STRIPE_KEY"],
        }),
    )
    .await;
    assert_eq!(status, 201, "{failing}");
    let failed = run(&node, &key, &failing).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error_type"], "js_error");
    assert!(
        failed["error_message"]
            .as_str()
            .unwrap()
            .contains("bad key [secret STRIPE_KEY]"),
        "{failed}"
    );
    assert!(!failed.to_string().contains(STRIPE), "{failed}");
    // Its stack is located in the script's own name.
    let stack = failed["error_stack"].as_str().unwrap();
    assert!(stack.contains("at default (leaky.js:1:"), "{stack}");

    // A replaced value is what the next run reads.
    assert_eq!(
        put_secret(&node, &key, "STRIPE_KEY", "sk_test_rotated")
            .await
            .0,
        204
    );
    let again = run(&node, &key, &script).await;
    assert_eq!(again["output"]["reversed"], reversed("sk_test_rotated"));
    node.stop().await;
}

async fn secrets_are_validated_when_set_declared_and_deleted(url: String) {
    let node = TestNode::start(&url).await;
    let key = node.tenant("acme").await;

    for (name, why) in [("lower", "not a valid name"), ("1ST", "not a valid name")] {
        let (status, body) = put_secret(&node, &key, name, "x").await;
        assert_eq!(status, 400, "{name}: {body}");
        assert!(body["error"].as_str().unwrap().contains(why), "{body}");
    }
    let (status, body) = put_secret(&node, &key, "BIG", &"x".repeat(64 * 1024 + 1)).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("at most 65536"),
        "{body}"
    );
    let (status, body) = node
        .call(
            "PUT",
            "/api/secrets/NO_VALUE",
            Some(&key),
            Some(json!({ "val": "x" })),
        )
        .await;
    assert_eq!(status, 400, "{body}");

    // Declaring a secret that is not set is refused at save, naming it.
    let (status, body) = create(
        &node,
        &key,
        json!({ "name": "s", "source": "export default () => 1", "secrets": ["NOPE"] }),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("NOPE is not set") && error.contains("PUT /api/secrets/NOPE"),
        "{error}"
    );
    // A name is a var or a secret, not both; names are checked in vars too.
    assert_eq!(put_secret(&node, &key, "TOKEN", "abcdefgh").await.0, 204);
    let (status, body) = create(
        &node,
        &key,
        json!({ "name": "s", "source": "export default () => 1",
                "secrets": ["TOKEN"], "vars": { "TOKEN": "x" } }),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = create(
        &node,
        &key,
        json!({ "name": "s", "source": "export default () => 1", "vars": { "bad-name": "x" } }),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("vars:"), "{body}");

    // A secret a script declares cannot be deleted from under it.
    let (status, script) = create(
        &node,
        &key,
        json!({ "name": "uses-token", "source": "export default () => 1", "secrets": ["TOKEN"] }),
    )
    .await;
    assert_eq!(status, 201, "{script}");
    let (status, body) = node
        .call("DELETE", "/api/secrets/TOKEN", Some(&key), None)
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("uses-token"),
        "{body}"
    );
    let id = script["id"].as_str().unwrap();
    let (status, updated) = node
        .call(
            "PUT",
            &format!("/api/scripts/{id}"),
            Some(&key),
            Some(json!({ "secrets": [] })),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    let (status, _) = node
        .call("DELETE", "/api/secrets/TOKEN", Some(&key), None)
        .await;
    assert_eq!(status, 204);
    let (status, body) = node
        .call("DELETE", "/api/secrets/TOKEN", Some(&key), None)
        .await;
    assert_eq!(status, 404, "{body}");
    let (_, list) = node.call("GET", "/api/secrets", Some(&key), None).await;
    assert_eq!(list["items"], json!([]));
    // Without a key the API is closed like every other route.
    let (status, _) = node.call("GET", "/api/secrets", None, None).await;
    assert_eq!(status, 401);
    node.stop().await;
}

async fn a_tenant_reads_only_its_own_secrets(url: String) {
    let node = TestNode::start(&url).await;
    let a = node.tenant("a").await;
    let b = node.tenant("b").await;
    assert_eq!(
        put_secret(&node, &a, "API_KEY", "value-of-tenant-a")
            .await
            .0,
        204
    );

    // b cannot declare a's secret, nor list it.
    let source = "export default (input, ctx) => ctx.env.API_KEY.split('').reverse().join('')";
    let (status, body) = create(
        &node,
        &b,
        json!({ "name": "s", "source": source, "secrets": ["API_KEY"] }),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (_, list) = node.call("GET", "/api/secrets", Some(&b), None).await;
    assert_eq!(list["items"], json!([]));

    // With a secret of the same name, b's script reads b's value.
    assert_eq!(
        put_secret(&node, &b, "API_KEY", "value-of-tenant-b")
            .await
            .0,
        204
    );
    let (status, script) = create(
        &node,
        &b,
        json!({ "name": "s", "source": source, "secrets": ["API_KEY"] }),
    )
    .await;
    assert_eq!(status, 201, "{script}");
    let done = run(&node, &b, &script).await;
    assert_eq!(done["output"], reversed("value-of-tenant-b"));

    // a's sealed value copied over b's row does not open as b's: each value
    // is bound to its tenant and name.
    let db = node.exec.db();
    let copy = "UPDATE secrets SET nonce = (SELECT nonce FROM secrets s WHERE s.tenant_id = $1), \
        ciphertext = (SELECT ciphertext FROM secrets s WHERE s.tenant_id = $1) \
        WHERE tenant_id = $2";
    let (a_id, b_id) = (tenant_id(db, "a").await, tenant_id(db, "b").await);
    let copied = match db {
        Db::Sqlite(pool) => sqlx::query(copy)
            .bind(&a_id)
            .bind(&b_id)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()),
        Db::Postgres(pool) => sqlx::query(copy)
            .bind(&a_id)
            .bind(&b_id)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()),
    };
    assert_eq!(copied.unwrap(), 1);
    let refused = run(&node, &b, &script).await;
    assert_eq!(refused["status"], "failed", "{refused}");
    let error = refused["error_message"].as_str().unwrap();
    assert!(error.contains("could not be opened"), "{error}");
    assert!(
        !refused.to_string().contains("value-of-tenant-a"),
        "{refused}"
    );
    node.stop().await;
}

async fn tenant_id(db: &Db, name: &str) -> String {
    let sql = "SELECT id FROM tenants WHERE name = $1";
    let (id,): (String,) = match db {
        Db::Sqlite(pool) => sqlx::query_as(sql).bind(name).fetch_one(pool).await,
        Db::Postgres(pool) => sqlx::query_as(sql).bind(name).fetch_one(pool).await,
    }
    .unwrap();
    id
}

async fn a_node_with_another_key_refuses_to_start(url: String) {
    let first = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    let node = TestNode::start_with(&url, |c| c.secrets.key = Some(first.into())).await;
    let key = node.tenant("acme").await;
    assert_eq!(
        put_secret(&node, &key, "API_KEY", "sealed-with-first")
            .await
            .0,
        204
    );
    let url = node.shut_down().await;

    let mut config = scriptbox::config::Config::default();
    config.database.url = url.clone();
    config.secrets.key = Some("ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=".into());
    let error = match scriptbox::server::start(&config).await {
        Ok(_) => panic!("a node with another key started"),
        Err(error) => format!("{error:#}"),
    };
    assert!(error.contains("secrets key does not match"), "{error}");

    // The right key starts, and the secret still opens.
    let node = TestNode::start_with(&url, |c| c.secrets.key = Some(first.into())).await;
    let (status, script) = create(
        &node,
        &key,
        json!({ "name": "s", "secrets": ["API_KEY"],
                "source": "export default (i, ctx) => ctx.env.API_KEY.length" }),
    )
    .await;
    assert_eq!(status, 201, "{script}");
    assert_eq!(
        run(&node, &key, &script).await["output"],
        "sealed-with-first".len()
    );
    node.stop().await;
}
