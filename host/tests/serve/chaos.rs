//! Chaos on PostgreSQL: three `serve` nodes share one database under
//! webhook calls and an `@every 1s` schedule. For a minute a random node is
//! SIGKILLed and started again every ~10 s, and once PostgreSQL itself goes
//! down for a few seconds. Afterwards: no occurrence ran twice and none is
//! missing but while the database was down (see the check); every call that got a reply with an execution id has its record
//! in a final state; nothing stays open past the heartbeat window; and the
//! nodes' `/health` failed while the database was down and passed again
//! after.
//!
//! The database is a PostgreSQL server of the test's own (initdb in a
//! temporary directory, a free port on 127.0.0.1), so that stopping it
//! disturbs no other test. Needs PostgreSQL's server binaries; says it was
//! skipped without them, except in CI.

use crate::common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Server, call, create_tenant, execution, free_port, serve_with};
use serde_json::{Value, json};

/// A PostgreSQL server in a temporary directory, stopped when dropped.
struct PrivatePostgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
}

impl PrivatePostgres {
    /// initdb and start; `None` when PostgreSQL's binaries are missing.
    fn start() -> Option<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|versions| versions.filter_map(Result::ok).map(|v| v.path()).max())
            .map(|version| version.join("bin"))
            .filter(|bin| bin.join("initdb").exists());
        let Some(bin) = bin else {
            assert!(
                std::env::var_os("CI").is_none(),
                "PostgreSQL's server binaries (initdb, pg_ctl) are required in CI"
            );
            common::skipped(
                "needs PostgreSQL's server binaries (initdb, pg_ctl) under /usr/lib/postgresql",
            );
            return None;
        };
        let data = std::env::temp_dir().join(format!("sbx-chaos-pg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&data).unwrap();
        let server = Self {
            bin,
            data,
            port: free_port(),
        };
        if is_root() {
            // The server refuses to run as root: the directory is the
            // postgres user's.
            let owner = Command::new("chown")
                .args(["postgres:postgres", server.data.to_str().unwrap()])
                .status()
                .unwrap();
            assert!(owner.success());
        }
        let dir = server.data.join("db");
        server.run(
            "initdb",
            &[
                "-D",
                dir.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        server.pg_ctl("start");
        Some(server)
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// One of PostgreSQL's programs, to run as the postgres user.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    fn run(&self, program: &str, args: &[&str]) {
        let output = self.command(program).args(args).output().unwrap();
        assert!(
            output.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn pg_ctl(&self, action: &str) {
        let dir = self.data.join("db");
        let log = self.data.join("log");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.data.display()
        );
        let mut args = vec![
            action,
            "-D",
            dir.to_str().unwrap(),
            "-l",
            log.to_str().unwrap(),
            "-w",
        ];
        match action {
            "start" => args.extend(["-o", &options]),
            _ => args.extend(["-m", "fast"]),
        }
        self.run("pg_ctl", &args);
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let dir = self.data.join("db");
        let _ = self
            .command("pg_ctl")
            .args(["stop", "-D", dir.to_str().unwrap(), "-m", "immediate"])
            .output();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// Stops the database for 3 s; every node's `/health` answers before,
/// during and after, by admin port: it must fail while the database is
/// down and pass again once it is back.
async fn database_outage(
    postgres: &PrivatePostgres,
    nodes: &Nodes,
    client: &reqwest::Client,
) -> (BTreeMap<u16, Vec<u16>>, std::ops::Range<i64>) {
    let watched: Vec<u16> = ports(nodes).into_iter().map(|(admin, _)| admin).collect();
    let mut seen: BTreeMap<u16, Vec<u16>> = BTreeMap::new();
    let poll = |seen: &mut BTreeMap<u16, Vec<u16>>| {
        let (client, watched) = (client.clone(), watched.clone());
        let mut seen = std::mem::take(seen);
        async move {
            for port in watched {
                let status = client
                    .get(format!("http://127.0.0.1:{port}/health"))
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                seen.entry(port).or_default().push(status);
            }
            seen
        }
    };
    seen = poll(&mut seen).await;
    let from = chrono::Utc::now().timestamp_millis();
    postgres.pg_ctl("stop");
    let down = Instant::now();
    while down.elapsed() < Duration::from_secs(3) {
        seen = poll(&mut seen).await;
    }
    postgres.pg_ctl("start");
    let to = chrono::Utc::now().timestamp_millis();
    let up = Instant::now();
    while up.elapsed() < Duration::from_secs(20) {
        seen = poll(&mut seen).await;
        if seen.values().all(|statuses| statuses.last() == Some(&200)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (seen, from..to)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

fn ms(text: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text.as_str().unwrap())
        .unwrap()
        .timestamp_millis()
}

/// Retention off: the load makes more executions than a script keeps by
/// default, and every one is checked.
const KEEP_EVERYTHING: &[(&str, &str)] = &[("SCRIPTBOX_RETENTION_ENABLED", "false")];

/// A reply the load generator got, with the execution it names.
#[derive(Debug, Clone)]
struct Replied {
    status: u16,
    execution_id: String,
}

/// The nodes running now, by admin and public port.
type Nodes = Arc<Mutex<Vec<Server>>>;

fn ports(nodes: &Nodes) -> Vec<(u16, u16)> {
    nodes
        .lock()
        .unwrap()
        .iter()
        .map(|n| (n.port, n.public_port))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_lose_and_double_nothing_through_kills_and_a_database_restart() {
    let Some(postgres) = PrivatePostgres::start() else {
        return;
    };
    let _turn = common::HEAVY_LOAD.lock().await;
    let admin = postgres.url("postgres");
    {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
        sqlx::query("CREATE DATABASE chaos")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let database = postgres.url("chaos");
    let key = create_tenant(&database, "acme");
    let nodes: Nodes = Arc::new(Mutex::new(Vec::new()));
    for _ in 0..3 {
        let node = serve_with(&database, KEEP_EVERYTHING).await;
        nodes.lock().unwrap().push(node);
    }
    let (first, _) = ports(&nodes)[0];
    let hook = call(
        first,
        "POST",
        "/api/scripts",
        &key,
        Some(json!({
            "name": "hook",
            "source": "export default (input) => ({ ok: true, method: input.method })",
            "trigger_type": "webhook",
            "webhook_path": "/hook",
            "rate_limit": { "rps": 1000000, "burst": 1000000 },
        })),
    )
    .await;
    assert!(hook["id"].is_string(), "{hook}");
    let tick = call(
        first,
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
    let tick_id = tick["id"].as_str().expect("created").to_owned();
    let start = ms(&tick["next_run_at"]);

    // Load: 4 workers calling the webhook on the live nodes in turn.
    let replied = Arc::new(Mutex::new(Vec::<Replied>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let workers: Vec<_> = (0..4)
        .map(|worker| {
            let (client, replied, nodes, stop) =
                (client.clone(), replied.clone(), nodes.clone(), stop.clone());
            tokio::spawn(async move {
                for n in worker.. {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        return;
                    }
                    let live = ports(&nodes);
                    let (_, public) = live[n % live.len()];
                    let sent = client
                        .post(format!("http://127.0.0.1:{public}/acme/hook"))
                        .body("{}")
                        .send()
                        .await;
                    let Ok(response) = sent else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    };
                    let status = response.status().as_u16();
                    let id = response
                        .headers()
                        .get("x-scriptbox-execution-id")
                        .map(|v| v.to_str().unwrap().to_owned());
                    if response.bytes().await.is_err() {
                        continue; // no reply after all
                    }
                    if let Some(execution_id) = id {
                        replied.lock().unwrap().push(Replied {
                            status,
                            execution_id,
                        });
                    }
                }
            })
        })
        .collect();

    // A minute of chaos: a node killed and started again every ~10 s, and
    // the database down for 3 s half way, with every node's /health polled
    // around it.
    let chaos_start = Instant::now();
    let mut round = 0u64;
    let mut health: BTreeMap<u16, Vec<u16>> = BTreeMap::new();
    let mut outage = 0..0;
    while chaos_start.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_secs(9)).await;
        round += 1;
        let victim = {
            let mut live = nodes.lock().unwrap();
            let mut byte = [0u8; 1];
            getrandom::fill(&mut byte).unwrap();
            let index = usize::from(byte[0]) % live.len();
            live.remove(index)
        };
        victim.kill();
        let restarted = serve_with(&database, KEEP_EVERYTHING).await;
        nodes.lock().unwrap().push(restarted);
        if round == 3 {
            (health, outage) = database_outage(&postgres, &nodes, &client).await;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    let (port, _) = ports(&nodes)[0];
    let stopped = call(
        port,
        "PUT",
        &format!("/api/scripts/{tick_id}"),
        &key,
        Some(json!({ "enabled": false })),
    )
    .await;
    let end = ms(&stopped["updated_at"]);

    // /health failed while the database was down and passed after.
    assert!(!health.is_empty(), "the database restart was not reached");
    for (port, statuses) in &health {
        let failed_at = statuses.iter().position(|s| *s == 503);
        let failed_at =
            failed_at.unwrap_or_else(|| panic!("node {port} never failed: {statuses:?}"));
        assert!(
            statuses[failed_at..].contains(&200),
            "node {port} did not pass again: {statuses:?}"
        );
    }

    // Nothing stays open past the heartbeat window (30 s; swept every 5 s).
    let deadline = Instant::now() + Duration::from_secs(50);
    loop {
        let mut open = Vec::new();
        for status in ["queued", "running"] {
            let page = call(
                port,
                "GET",
                &format!("/api/executions?status={status}&limit=500"),
                &key,
                None,
            )
            .await;
            open.extend(page["items"].as_array().unwrap().iter().cloned());
        }
        if open.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still open past the heartbeat window: {open:#?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // Every call that got a reply with an execution id has a final record.
    let replied = replied.lock().unwrap().clone();
    assert!(replied.len() > 100, "only {} replies", replied.len());
    let mut statuses = BTreeMap::<(u16, String), usize>::new();
    for call in &replied {
        let e = execution(port, &key, &call.execution_id).await;
        let status = e["status"]
            .as_str()
            .unwrap_or_else(|| panic!("{call:?}: {e}"));
        assert!(["completed", "failed"].contains(&status), "{call:?}: {e}");
        if call.status == 200 {
            assert_eq!(status, "completed", "{call:?}: {e}");
        }
        *statuses
            .entry((call.status, status.to_owned()))
            .or_default() += 1;
    }

    // Each occurrence once, and none missing, from the first fire time until
    // the script was disabled.
    let mut by_occurrence: BTreeMap<i64, Vec<Value>> = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let after = cursor
            .as_ref()
            .map(|c| format!("&cursor={c}"))
            .unwrap_or_default();
        let page = call(
            port,
            "GET",
            &format!("/api/executions?script_id={tick_id}&limit=500{after}"),
            &key,
            None,
        )
        .await;
        for e in page["items"].as_array().unwrap() {
            by_occurrence
                .entry(ms(&e["scheduled_for"]))
                .or_default()
                .push(e.clone());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    for (at, runs) in &by_occurrence {
        assert_eq!(
            runs.len(),
            1,
            "occurrence {at} ran {} times: {runs:#?}",
            runs.len()
        );
    }
    let occurrences: Vec<i64> = by_occurrence.keys().copied().collect();
    assert_eq!(occurrences[0], start, "{occurrences:?}");
    let gaps: Vec<(i64, i64)> = occurrences
        .windows(2)
        .filter(|pair| pair[1] - pair[0] != 1000)
        .map(|pair| (pair[0], pair[1]))
        .collect();
    let abandoned = by_occurrence
        .values()
        .filter(|runs| runs[0]["error_type"] == "abandoned")
        .count();
    eprintln!(
        "chaos: {} replies {statuses:?}; {} occurrences from {start} to {end}, {abandoned} abandoned by killed nodes, gaps {gaps:?}, database down {outage:?}",
        replied.len(),
        occurrences.len()
    );
    // Missing only where the database was down: an occurrence whose
    // previous run finished while its record could not be written (it is
    // written once the database is back) is skipped by the overlap rule,
    // which reads the records.
    let excused = (outage.start - 1_000)..(outage.end + 3_000);
    let mut missing = Vec::new();
    for (before, after) in &gaps {
        let mut at = before + 1_000;
        while at < *after {
            missing.push(at);
            at += 1_000;
        }
    }
    assert!(
        missing.iter().all(|at| excused.contains(at)),
        "occurrences missing outside the database outage {outage:?}: {missing:?}"
    );
    assert!(
        (occurrences.len() + missing.len()) as i64 >= (end - start) / 1000,
        "{} occurrences from {start} to {end}",
        occurrences.len()
    );
    drop(nodes);
    drop(postgres);
}
