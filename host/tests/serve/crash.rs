//! A node SIGKILLed under webhook load loses nothing it acknowledged: after
//! a restart on the same SQLite file, every call that got a reply (200 and
//! 4xx from a script, 500 from a script's error, 202 for an async call) has
//! its execution record, in a final state that matches the reply. Calls cut
//! off without a reply may have none (docs/api.md, "When a run is
//! recorded"). Runs the real binary with a load generator of its own, which
//! keeps each reply's execution id.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{call, create_tenant, execution, serve};
use serde_json::json;

/// A reply the load generator got: what was called, its status and the
/// execution it names.
#[derive(Debug, Clone)]
struct Replied {
    path: &'static str,
    status: u16,
    execution_id: String,
}

const CALLS: [&str; 4] = ["/ok", "/teapot", "/throws", "/ok?async=true"];

#[tokio::test]
async fn every_acknowledged_call_has_a_final_record_after_sigkill_under_load() {
    let _turn = common::HEAVY_LOAD.lock().await;
    let dir = std::env::temp_dir().join(format!("scriptbox-crash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let database = format!("sqlite://{}", dir.join("node.db").display());
    let key = create_tenant(&database, "acme");
    let server = serve(&database).await;
    let hooks = [
        (
            "ok",
            "export default (input) => ({ ok: true, method: input.method })",
        ),
        (
            "teapot",
            "export default () => new Response('short and stout', { status: 418 })",
        ),
        ("throws", "export default () => { throw new Error('no') }"),
    ];
    for (name, source) in hooks {
        let created = call(
            server.port,
            "POST",
            "/api/scripts",
            &key,
            Some(json!({
                "name": name,
                "source": source,
                "trigger_type": "webhook",
                "webhook_path": format!("/{name}"),
                "rate_limit": { "rps": 1000000, "burst": 1000000 },
            })),
        )
        .await;
        assert!(created["id"].is_string(), "{created}");
    }

    // 32 connections, each calling the four kinds in turn until the node
    // stops answering.
    let replied = Arc::new(Mutex::new(Vec::<Replied>::new()));
    let base = format!("http://127.0.0.1:{}/acme", server.public_port);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let workers: Vec<_> = (0..32)
        .map(|worker| {
            let (client, base, replied) = (client.clone(), base.clone(), replied.clone());
            tokio::spawn(async move {
                for n in worker.. {
                    let path = CALLS[n % CALLS.len()];
                    let Ok(response) = client.post(format!("{base}{path}")).body("{}").send().await
                    else {
                        return;
                    };
                    let status = response.status().as_u16();
                    let execution_id = response
                        .headers()
                        .get("x-scriptbox-execution-id")
                        .map(|v| v.to_str().unwrap().to_owned());
                    // A reply is only a reply once its body has arrived.
                    if response.bytes().await.is_err() {
                        return;
                    }
                    let execution_id =
                        execution_id.unwrap_or_else(|| panic!("{path}: {status} without an id"));
                    replied.lock().unwrap().push(Replied {
                        path,
                        status,
                        execution_id,
                    });
                }
            })
        })
        .collect();

    // Kill once the load is well under way.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while replied.lock().unwrap().len() < 2_000 {
        assert!(
            std::time::Instant::now() < deadline,
            "the load never got going"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill();
    for worker in workers {
        worker.await.unwrap();
    }
    let replied = replied.lock().unwrap().clone();

    let server = serve(&database).await;
    let mut by_kind = std::collections::BTreeMap::<(&str, u16), usize>::new();
    for call in &replied {
        let e = execution(server.port, &key, &call.execution_id).await;
        let expected = match (call.path, call.status) {
            ("/ok", 200) | ("/teapot", 418) => "completed",
            ("/throws", 500) => "failed",
            // Finished before the kill, or closed as abandoned at restart.
            ("/ok?async=true", 202) => {
                assert!(
                    e["status"] == "completed" || e["error_type"] == "abandoned",
                    "{e}"
                );
                e["status"].as_str().unwrap()
            }
            other => panic!("unexpected reply {other:?}"),
        };
        assert_eq!(e["status"], expected, "{call:?}: {e}");
        assert!(e["finished_at"].is_string(), "{call:?}: {e}");
        *by_kind.entry((call.path, call.status)).or_default() += 1;
    }
    // Every kind of reply was seen and checked.
    assert_eq!(by_kind.len(), CALLS.len(), "{by_kind:?}");
    eprintln!("checked {} replied calls: {by_kind:?}", replied.len());
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
