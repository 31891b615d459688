//! The scripts in `examples/` compile and do what their comments say.

use scriptbox_tests::{output, run, sandbox};
use serde_json::json;

fn example(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test]
async fn every_example_compiles() {
    let sandbox = sandbox();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut seen = 0;
    for dir in [root.clone(), root.join("workers")] {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "js") {
                let source = std::fs::read_to_string(&path).unwrap();
                if let Err(e) = sandbox.compile(&source).await {
                    panic!("{}: {e}", path.display());
                }
                seen += 1;
            }
        }
    }
    assert!(seen >= 9, "found {seen} examples");
}

#[tokio::test]
async fn hello_counter_and_webhook_reply_behave_as_documented() {
    let sandbox = sandbox();
    let hello = run(&sandbox, &example("hello.js"), json!({ "name": "Ada" })).await;
    assert_eq!(output(&hello), json!({ "greeting": "Hello, Ada!" }));
    assert_eq!(hello.logs[0].message, "called by manual");
    // Without input, as `scriptbox invoke hello` runs it.
    let alone = run(&sandbox, &example("hello.js"), json!(null)).await;
    assert_eq!(output(&alone), json!({ "greeting": "Hello, world!" }));

    // fib.js, the fuel-per-ms yardstick: fib(25) by default, fib(n) given n.
    let fib = example("fib.js");
    assert_eq!(output(&run(&sandbox, &fib, json!(10)).await), json!(55));
    let fib25 = run(&sandbox, &fib, json!(null)).await;
    assert_eq!(output(&fib25), json!(75025));

    let counter = example("counter.js");
    assert_eq!(
        output(&run(&sandbox, &counter, json!(null)).await),
        json!({ "n": 1 })
    );
    assert_eq!(
        output(&run(&sandbox, &counter, json!(null)).await),
        json!({ "n": 2 })
    );

    let reply = example("webhook-reply.js");
    let post = run(
        &sandbox,
        &reply,
        json!({ "method": "POST", "body": { "id": 7 } }),
    )
    .await;
    let reply_post = post.result.unwrap().reply.unwrap();
    assert_eq!(reply_post.status, 202);
    assert_eq!(reply_post.body, r#"{"received":{"id":7}}"#);
    let get = run(&sandbox, &reply, json!({ "method": "GET" })).await;
    assert_eq!(get.result.unwrap().reply.unwrap().status, 405);
}
