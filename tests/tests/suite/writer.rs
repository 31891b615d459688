//! The writer of run records (group commit, docs/api.md): concurrent
//! writes share transactions, yet each caller gets its own write's result,
//! and one bad write fails only its own caller. On SQLite and PostgreSQL.

use std::sync::Arc;

use scriptbox::model::{ExecutionId, ExecutionStatus, FailureKind, Trigger};
use scriptbox::store::{
    DatabaseConfig, Db, FinishedRun, NewExecution, StoreError, WalCheckpoints, Writer,
};
use scriptbox_tests::service::{Backend, fresh_database};

scriptbox_tests::on_both_backends!(
    concurrent_writes_each_get_their_own_result,
    a_bad_write_fails_only_its_own_caller,
    a_statement_the_server_refuses_is_not_an_outage,
);

async fn open(url: &str) -> Db {
    let config = DatabaseConfig {
        url: url.to_owned(),
        ..Default::default()
    };
    Db::open(&config).await.unwrap()
}

/// A tenant with one manual script; the script's row.
async fn script(db: &Db) -> scriptbox::store::ScriptRecord {
    let (tenant, _) = db.create_tenant("acme").await.unwrap();
    db.create_script(&tenant.id, &scriptbox_tests::manual_script())
        .await
        .unwrap()
}

fn new_run(script: &scriptbox::store::ScriptRecord, n: usize) -> NewExecution {
    NewExecution {
        id: ExecutionId::generate(),
        tenant_id: script.tenant_id.clone(),
        script_id: script.id.clone(),
        script_version: script.version,
        trigger_type: Trigger::Manual,
        input: format!("{{\"n\":{n}}}").into(),
        attempt: 0,
        node_id: "node".into(),
        scheduled_for: None,
    }
}

fn finished(n: usize) -> FinishedRun {
    let even = n.is_multiple_of(2);
    FinishedRun {
        status: if even {
            ExecutionStatus::Completed
        } else {
            ExecutionStatus::Failed
        },
        output: even.then(|| n.to_string()),
        error_type: (!even).then_some(FailureKind::JsError),
        error_message: (!even).then(|| format!("run {n} failed")),
        error_stack: None,
        logs: "[]".into(),
        duration_ms: n as i64,
        duration_us: n as i64 * 1_000 + 7,
        fuel_used: 1000 + n as i64,
        memory_peak_bytes: 65536,
        cpu_time_us: 10,
    }
}

/// Records run `n` as finished: opened as `running` and then finished
/// (`open_first`), or in one write at its end. The status stored.
async fn record(
    writer: &Writer,
    script: &scriptbox::store::ScriptRecord,
    new: NewExecution,
    n: usize,
    open_first: bool,
) -> ExecutionStatus {
    if open_first {
        let id = new.id.clone();
        writer.open(new, ExecutionStatus::Running).await.unwrap();
        writer
            .finish(id, script.id.clone(), finished(n), None)
            .await
            .unwrap()
    } else {
        let now = scriptbox::store::now_ms();
        writer
            .complete(new, now - 5, now - 3, finished(n))
            .await
            .unwrap()
    }
}

async fn concurrent_writes_each_get_their_own_result(url: String) {
    let db = open(&url).await;
    let script = Arc::new(script(&db).await);
    let writer = Writer::spawn(db.clone());
    // 200 runs at once: half opened, run and finished; half recorded once
    // at their end.
    let tasks: Vec<_> = (0..200)
        .map(|n| {
            let (writer, script) = (writer.clone(), script.clone());
            tokio::spawn(async move {
                let new = new_run(&script, n);
                let id = new.id.clone();
                let status = record(&writer, &script, new, n, n < 100).await;
                (n, id, status)
            })
        })
        .collect();
    let mut last_finished = None;
    for task in tasks {
        let (n, id, status) = task.await.unwrap();
        assert_eq!(status, finished(n).status);
        let stored = db.execution(&script.tenant_id, &id).await.unwrap();
        last_finished = last_finished.max(stored.finished_at);
        assert_eq!(stored.status, finished(n).status, "run {n}");
        assert_eq!(stored.input, format!("{{\"n\":{n}}}"));
        assert_eq!(stored.duration_ms, Some(n as i64));
        assert_eq!(stored.duration_us, Some(n as i64 * 1_000 + 7));
        assert_eq!(stored.output, finished(n).output);
        assert_eq!(stored.error_message, finished(n).error_message);
        assert!(stored.started_at.is_some() && stored.finished_at.is_some());
        assert!(stored.started_at <= stored.finished_at, "{stored:?}");
    }
    // Written once per batch, to the latest run's end.
    let stored = db.script(&script.tenant_id, &script.id).await.unwrap();
    assert_eq!(stored.last_executed_at, last_finished);
}

async fn a_bad_write_fails_only_its_own_caller(url: String) {
    let db = open(&url).await;
    let script = Arc::new(script(&db).await);
    let writer = Writer::spawn(db.clone());
    let first = new_run(&script, 0);
    writer
        .open(first.clone(), ExecutionStatus::Queued)
        .await
        .unwrap();
    // Fifty writes at once, one of them a second row with the first's id:
    // that one fails, the others are committed.
    let tasks: Vec<_> = (1..=50)
        .map(|n| {
            let (writer, script) = (writer.clone(), script.clone());
            let mut new = new_run(&script, n);
            if n == 25 {
                new.id = first.id.clone();
            }
            tokio::spawn(async move {
                let id = new.id.clone();
                let result = writer.open(new, ExecutionStatus::Queued).await;
                (n, id, result)
            })
        })
        .collect();
    for task in tasks {
        let (n, id, result) = task.await.unwrap();
        if n == 25 {
            assert!(result.is_err(), "a duplicate id must fail");
        } else {
            result.unwrap();
            let stored = db.execution(&script.tenant_id, &id).await.unwrap();
            assert_eq!(stored.status, ExecutionStatus::Queued);
        }
    }
    // The first row is as it was.
    let stored = db.execution(&script.tenant_id, &first.id).await.unwrap();
    assert_eq!(stored.input, first.input.as_ref());

    // The failed batch left no transaction open on any connection: a run
    // recorded at its end is written, with the script's last run time.
    let late = new_run(&script, 60);
    let now = scriptbox::store::now_ms();
    writer
        .complete(late.clone(), now - 5, now - 3, finished(60))
        .await
        .unwrap();
    let stored = db.execution(&script.tenant_id, &late.id).await.unwrap();
    assert_eq!(stored.status, ExecutionStatus::Completed);
    let scripted = db.script(&script.tenant_id, &script.id).await.unwrap();
    assert_eq!(scripted.last_executed_at, stored.finished_at);

    // A start finds only queued rows; a finish changes only open rows.
    writer.start(first.id.clone()).await.unwrap();
    assert!(matches!(
        writer.start(first.id.clone()).await,
        Err(StoreError::NotFound)
    ));
    writer
        .finish(first.id.clone(), script.id.clone(), finished(0), None)
        .await
        .unwrap();
    writer
        .finish(first.id.clone(), script.id.clone(), finished(1), None)
        .await
        .unwrap();
    let stored = db.execution(&script.tenant_id, &first.id).await.unwrap();
    assert_eq!(stored.status, ExecutionStatus::Completed);
    assert_eq!(stored.output.as_deref(), Some("0"));
}

/// The writer waits out an unreachable database (up to a minute) but fails
/// a write the server refuses at once. A statement bound with fewer
/// parameters than it has is refused by the server itself: PostgreSQL
/// answers SQLSTATE 08P01 (protocol violation), which is in class 08
/// (connection exceptions) and yet no outage: sending it again is refused
/// again. A dropped connection is still an outage.
async fn a_statement_the_server_refuses_is_not_an_outage(url: String) {
    let db = open(&url).await;
    let refused: StoreError = match &db {
        Db::Sqlite(pool) => sqlx::query("SELECT * FROM no_such_table")
            .execute(pool)
            .await
            .unwrap_err()
            .into(),
        Db::Postgres(pool) => {
            let error = sqlx::query("SELECT $1::int + $2::int")
                .bind(1)
                .execute(pool)
                .await
                .unwrap_err();
            let code = error
                .as_database_error()
                .and_then(|e| e.code())
                .map(|c| c.into_owned());
            assert_eq!(code.as_deref(), Some("08P01"), "{error}");
            error.into()
        }
    };
    assert!(!refused.is_unreachable(), "{refused:#}");

    let dropped: StoreError =
        sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset)).into();
    assert!(dropped.is_unreachable());
}

/// How many pages the WAL file of a SQLite database holds after `runs`
/// runs, one commit per write, by a writer checkpointing with `policy`:
/// each recorded at its end, or (`open_first`) opened and then finished.
async fn wal_pages_after(runs: usize, open_first: bool, policy: WalCheckpoints) -> u64 {
    let url = fresh_database(Backend::Sqlite).await.unwrap();
    let db = open(&url).await;
    let script = script(&db).await;
    let writer = Writer::spawn_with(db.clone(), policy);
    let mut ids = Vec::with_capacity(runs);
    for n in 0..runs {
        let new = new_run(&script, n);
        ids.push(new.id.clone());
        let status = record(&writer, &script, new, n, open_first).await;
        assert_eq!(status, finished(n).status);
    }
    let path = format!("{}-wal", url.strip_prefix("sqlite://").unwrap());
    let bytes = std::fs::metadata(&path).unwrap().len();
    // The runs are stored, whatever the checkpoints did.
    for (n, id) in ids.iter().enumerate().step_by(100) {
        let stored = db.execution(&script.tenant_id, id).await.unwrap();
        assert_eq!(stored.input, format!("{{\"n\":{n}}}"));
    }
    bytes / 4096
}

/// A steady stream of commits: checkpoints beside the writer copy the WAL
/// but never find it copied to its end, so SQLite never starts it over by
/// itself; the writer's own pass does, and the WAL file stays near its
/// threshold instead of holding every page written (docs/architecture.md,
/// "Checkpoints"). Runs recorded at their end and runs opened then
/// finished both go through the writer's connection, whose commits do not
/// checkpoint (were they to, the WAL would stay short without the pass).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_wal_starts_over_under_steady_writes() {
    let every = std::time::Duration::from_millis(10);
    for (open_first, runs) in [(false, 1_500), (true, 1_000)] {
        let never = wal_pages_after(
            runs,
            open_first,
            WalCheckpoints {
                every,
                restart_above_pages: i64::MAX,
            },
        )
        .await;
        let restarted = wal_pages_after(
            runs,
            open_first,
            WalCheckpoints {
                every,
                restart_above_pages: 256,
            },
        )
        .await;
        eprintln!(
            "runs opened first: {open_first}; WAL pages: {never} without the writer's pass, \
             {restarted} with it"
        );
        assert!(
            never > 2_000,
            "the stream wrote too little to tell: {never} pages"
        );
        assert!(
            restarted < never / 2,
            "{restarted} pages with the writer's pass, {never} without"
        );
    }
}
