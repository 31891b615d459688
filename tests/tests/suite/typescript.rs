//! TypeScript scripts: saved with `language: "typescript"`, their types
//! erased in place (so errors point at the TypeScript), code-generating
//! syntax refused by name, and a JavaScript script written in TypeScript
//! told so.

use scriptbox_tests::service::{Backend, TestNode, fresh_database};
use serde_json::{Value, json};

const TYPED: &str = "interface Order {\n\
  id: string;\n\
  amount: number;\n\
}\n\
type Reply = { id: string; cents: number };\n\
export default function (input: Order, ctx: { trigger: string }): Reply {\n\
  if (input.amount < 0) throw new RangeError(`negative amount for ${input.id}`);\n\
  const cents: number = Math.round(input.amount * 100);\n\
  return { id: input.id as string, cents };\n\
}\n";

async fn save(node: &TestNode, key: &str, body: Value) -> (u16, Value) {
    node.call("POST", "/api/scripts", Some(key), Some(body))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_scripts_run_with_errors_at_their_own_lines() {
    let url = fresh_database(Backend::Sqlite).await.unwrap();
    let node = TestNode::start(&url).await;
    let key = node.tenant("acme").await;

    let (status, script) = save(
        &node,
        &key,
        json!({ "name": "orders", "trigger_type": "manual", "language": "typescript",
                "source": TYPED }),
    )
    .await;
    assert_eq!(status, 201, "{script}");
    assert_eq!(script["language"], "typescript");
    // The source is kept as written.
    assert_eq!(script["source"], TYPED);
    let id = script["id"].as_str().unwrap();
    let run = |input: Value| {
        let node = &node;
        let key = &key;
        async move {
            node.call(
                "POST",
                &format!("/api/scripts/{id}/run"),
                Some(key),
                Some(json!({ "input": input })),
            )
            .await
            .1
        }
    };
    let done = run(json!({ "id": "o1", "amount": 12.5 })).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["output"], json!({ "id": "o1", "cents": 1250 }));

    // The throw is on line 7 of the TypeScript, and the stack says so.
    let failed = run(json!({ "id": "o2", "amount": -1 })).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(
        failed["error_message"],
        "RangeError: negative amount for o2"
    );
    let stack = failed["error_stack"].as_str().unwrap();
    assert!(stack.contains("(orders.ts:7:"), "{stack}");

    // A syntax error is reported where it is in the TypeScript.
    let broken = TYPED.replace("const cents: number =", "const cents: number = (");
    let (status, body) = save(
        &node,
        &key,
        json!({ "name": "broken", "trigger_type": "manual", "language": "typescript",
                "source": broken }),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.starts_with("syntax error at line 8, column"),
        "{error}"
    );

    // An enum needs generated code: refused, naming it.
    let (status, body) = save(
        &node,
        &key,
        json!({ "name": "enum", "trigger_type": "manual", "language": "typescript",
                "source": "enum Color { Red, Green }\nexport default () => Color.Red;\n" }),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("line 1")
            && error.contains("enum")
            && error.contains("does not generate code"),
        "{error}"
    );

    // TypeScript saved as JavaScript: the JavaScript error, and what to do.
    let (status, body) = save(
        &node,
        &key,
        json!({ "name": "untyped", "trigger_type": "manual", "source": TYPED }),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("this looks like TypeScript: set language to typescript"),
        "{error}"
    );
    // A plain JavaScript error gets no such hint.
    let (status, body) = save(
        &node,
        &key,
        json!({ "name": "js", "trigger_type": "manual", "source": "export default () => (;" }),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        !body["error"].as_str().unwrap().contains("TypeScript"),
        "{body}"
    );
    node.stop().await;
}
