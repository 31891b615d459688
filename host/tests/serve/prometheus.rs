//! A real Prometheus (Debian's `prometheus`) scraping a real node answers
//! every query of `ops/dashboard-queries.promql` with data, and the Grafana
//! dashboard asks only those; the alert rules pass `promtool check rules`
//! and their unit tests. Skipped when Prometheus is not installed, except
//! in CI.

use crate::common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{call, create_tenant, free_port, serve};
use serde_json::{Value, json};

fn queries() -> Vec<(String, String)> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/dashboard-queries.promql");
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut name = None;
    for line in lines {
        if let Some(comment) = line.strip_prefix("# ") {
            name = Some(comment.to_owned());
        } else if !line.trim().is_empty() {
            out.push((name.take().unwrap_or_default(), line.to_owned()));
        }
    }
    out
}

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_answers_the_dashboard_queries() {
    if Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "prometheus is required in CI"
        );
        common::skipped("needs prometheus (apt-get install prometheus)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("scriptbox-prometheus-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = format!("sqlite://{}", dir.join("node.db").display());
    let key = create_tenant(&db, "acme");
    let node = serve(&db).await;

    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: scriptbox\n    static_configs:\n      - targets: [\"127.0.0.1:{}\"]\n",
            node.port
        ),
    )
    .unwrap();
    let prometheus_port = free_port();
    let _prometheus = Killed(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prometheus_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // Runs of every kind, spread over a few scrapes.
    let ok = call(
        node.port,
        "POST",
        "/api/scripts",
        &key,
        Some(json!({
            "name": "ok", "trigger_type": "manual",
            "source": "export default async () => { await sdk.db.set('k', 'v'); return 1 }",
        })),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bad = call(
        node.port,
        "POST",
        "/api/scripts",
        &key,
        Some(json!({
            "name": "bad", "trigger_type": "manual",
            "source": "export default () => { throw new Error('x') }",
        })),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A schedule, for the scheduler's lag.
    let scheduled = call(
        node.port,
        "POST",
        "/api/scripts",
        &key,
        Some(json!({
            "name": "tick", "trigger_type": "scheduled", "schedule": "@every 1s",
            "source": "export default () => 1",
        })),
    )
    .await;
    assert!(scheduled["id"].is_string(), "{scheduled}");
    let client = reqwest::Client::new();
    let query = |q: String| {
        let client = client.clone();
        async move {
            let url = format!("http://127.0.0.1:{prometheus_port}/api/v1/query");
            let response = client.get(url).query(&[("query", q)]).send().await.ok()?;
            serde_json::from_str::<Value>(&response.text().await.ok()?).ok()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut answered = Vec::new();
    loop {
        for id in [&ok, &bad] {
            call(
                node.port,
                "POST",
                &format!("/api/scripts/{id}/run"),
                &key,
                None,
            )
            .await;
        }
        answered.clear();
        for (name, q) in queries() {
            let result = query(q.clone()).await;
            let data = result
                .as_ref()
                .and_then(|r| r["data"]["result"].as_array().cloned())
                .unwrap_or_default();
            if !data.is_empty() {
                answered.push(name);
            }
        }
        if answered.len() == queries().len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {answered:?} answered with data"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}

fn ops_file(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../ops")
        .join(name)
}

#[test]
fn every_grafana_panel_asks_a_tested_query() {
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(ops_file("grafana-dashboard.json")).unwrap())
            .unwrap();
    let tested: Vec<String> = queries().into_iter().map(|(_, q)| q).collect();
    let panels = dashboard["panels"].as_array().unwrap();
    let mut asked = Vec::new();
    for panel in panels {
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{} asks nothing", panel["title"]);
        for target in targets {
            let expr = target["expr"].as_str().unwrap().to_owned();
            assert!(
                tested.contains(&expr),
                "panel {}: {expr} is not in ops/dashboard-queries.promql",
                panel["title"]
            );
            asked.push(expr);
        }
        assert_eq!(
            panel["datasource"]["uid"], "${DS_PROMETHEUS}",
            "{}: the data source is chosen at import",
            panel["title"]
        );
    }
    // And every tested query has a panel.
    for query in &tested {
        assert!(asked.contains(query), "no panel shows {query}");
    }
    assert_eq!(dashboard["__inputs"][0]["name"], "DS_PROMETHEUS");
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    if Command::new("promtool").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is required in CI"
        );
        common::skipped("needs promtool (apt-get install prometheus)");
        return;
    }
    for args in [
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts.test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(ops_file(""))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Every rule file alert has tests.
    let rules = std::fs::read_to_string(ops_file("alerts.yml")).unwrap();
    let tests = std::fs::read_to_string(ops_file("alerts.test.yml")).unwrap();
    for line in rules.lines() {
        if let Some(name) = line.trim().strip_prefix("- alert: ") {
            assert!(
                tests.contains(&format!("alertname: {name}")),
                "{name} has no test in ops/alerts.test.yml"
            );
        }
    }
}
