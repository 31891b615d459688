//! Two `scriptbox serve` processes on one PostgreSQL database share the
//! schedules: every occurrence of an `@every 1s` script runs exactly once,
//! none twice and none lost, also when one node is killed (SIGKILL) half
//! way. Needs `SCRIPTBOX_TEST_POSTGRES_URL`; says it was skipped without.

use crate::common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{call, create_tenant, serve};
use serde_json::{Value, json};
use sqlx::Connection;

/// A new database on the test server; `None` when none is configured.
async fn fresh_postgres() -> Option<(String, String, String)> {
    let Some(admin) = std::env::var("SCRIPTBOX_TEST_POSTGRES_URL")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        common::skipped("needs PostgreSQL: set SCRIPTBOX_TEST_POSTGRES_URL (README, Tests)");
        return None;
    };
    let name = format!("sbx_cluster_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let mut url = url::Url::parse(&admin).unwrap();
    url.set_path(&name);
    Some((url.to_string(), admin, name))
}

async fn drop_database(admin: &str, name: &str) {
    if let Ok(mut conn) = sqlx::PgConnection::connect(admin).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await;
    }
}

fn ms(text: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text.as_str().unwrap())
        .unwrap()
        .timestamp_millis()
}

/// How many of a page of executions are not `completed`.
fn unfinished(page: &Value) -> usize {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["status"] != "completed")
        .count()
}

/// Script `id`'s executions once at most `open_allowed` of them are not
/// `completed`, or after 30 s (the caller's assertion then shows them).
async fn settled_executions(port: u16, key: &str, id: &str, open_allowed: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let path = format!("/api/executions?script_id={id}&limit=500");
        let page = call(port, "GET", &path, key, None).await;
        if unfinished(&page) <= open_allowed || Instant::now() > deadline {
            return page;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs an `@every 1s` script on two nodes for ten seconds (killing the
/// first after five when `kill_one`), then checks its executions.
async fn every_occurrence_runs_once(kill_one: bool) {
    // Every second's occurrence must start on time, which nodes starved by
    // another test's load cannot promise (by the no-overlap rule a run still
    // open when the next occurrence is claimed skips that occurrence): take
    // turns with the tests that load the machine.
    let _turn = common::HEAVY_LOAD.lock().await;
    let Some((database, admin, name)) = fresh_postgres().await else {
        return;
    };
    let key = create_tenant(&database, "acme");
    let first = serve(&database).await;
    let second = serve(&database).await;
    let script = call(
        first.port,
        "POST",
        "/api/scripts",
        &key,
        Some(json!({
            "name": "tick",
            "source": "export default (input) => input.scheduledAt",
            "trigger_type": "scheduled",
            "schedule": "@every 1s",
            "max_retries": 0,
        })),
    )
    .await;
    let id = script["id"]
        .as_str()
        .expect("the script is created")
        .to_owned();
    let start = ms(&script["next_run_at"]);

    tokio::time::sleep(Duration::from_secs(5)).await;
    // Both nodes keep running, or the first is killed half way.
    let (survivor, _other) = if kill_one {
        first.kill();
        (second, None)
    } else {
        (first, Some(second))
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    let stopped = call(
        survivor.port,
        "PUT",
        &format!("/api/scripts/{id}"),
        &key,
        Some(json!({ "enabled": false })),
    )
    .await;
    let end = ms(&stopped["updated_at"]);
    // Runs a killed node had in hand stay open until its heartbeat goes
    // stale; everything else completes, including a run claimed just before
    // the script was disabled.
    let open_allowed = if kill_one { 2 } else { 0 };
    let page = settled_executions(survivor.port, &key, &id, open_allowed).await;
    let items = page["items"].as_array().unwrap();
    let mut by_occurrence: BTreeMap<i64, Vec<&Value>> = BTreeMap::new();
    for e in items {
        by_occurrence
            .entry(ms(&e["scheduled_for"]))
            .or_default()
            .push(e);
    }
    for (at, runs) in &by_occurrence {
        assert_eq!(
            runs.len(),
            1,
            "occurrence {at} ran {} times: {runs:#?}",
            runs.len()
        );
        assert_eq!(runs[0]["attempt"], 0);
    }
    // None lost: every second from the first fire time until the script
    // was disabled (less the one that may have been due at that instant).
    let occurrences: Vec<i64> = by_occurrence.keys().copied().collect();
    assert_eq!(occurrences[0], start, "{occurrences:?}");
    for pair in occurrences.windows(2) {
        assert_eq!(pair[1] - pair[0], 1000, "a gap: {occurrences:?}");
    }
    let expected = (end - start) / 1000;
    assert!(
        occurrences.len() as i64 >= expected,
        "{} occurrences from {start} to {end}",
        occurrences.len()
    );
    assert!(unfinished(&page) <= open_allowed, "{items:#?}");
    drop(survivor);
    drop_database(&admin, &name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_run_each_occurrence_exactly_once() {
    every_occurrence_runs_once(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_half_way_loses_and_doubles_nothing() {
    every_occurrence_runs_once(true).await;
}
