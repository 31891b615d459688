//! Finding and claiming due schedules among 100,000, on SQLite and on
//! PostgreSQL.
//!
//! `cargo bench -p scriptbox-benches --bench schedule` (or `just
//! bench-schedule`) loads 100,000 enabled schedules into a fresh SQLite file
//! and, when `SCRIPTBOX_TEST_POSTGRES_URL` is set, a fresh PostgreSQL
//! database, with 1,000 of them due. It reports, per backend, medians of:
//! - the scheduler's sleep query (earliest due time; index on next fire time);
//! - claiming the 1,000 due scripts (moving their next fire time and
//!   inserting their executions), in the scheduler's batches;
//! - a pass with nothing due;
//! - for contrast, what an index-less scheduler does every tick: read every
//!   schedule and work out which are due.
//!
//! `SCRIPTBOX_BENCH_SCHEDULES` and `SCRIPTBOX_BENCH_DUE` change the sizes,
//! `SCRIPTBOX_BENCH_CLAIM_BATCH` the claims per transaction (default: the
//! scheduler's own for the backend, `scheduler::claim_batch`).

use std::time::{Duration, Instant};

use anyhow::Result;
use scriptbox::cron::{Location, Time};
use scriptbox::store::Db;
use scriptbox_benches::env_usize;

const ROUNDS: usize = 5;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Inserts `count` enabled scheduled scripts of one tenant, all due an hour
/// from now, in one transaction.
macro_rules! load {
    ($pool:expr, $tenant:expr, $count:expr, $future:expr) => {{
        let mut tx = $pool.begin().await?;
        let schedules = [
            "*/5 * * * *",
            "0 * * * *",
            "@every 1h",
            "30 9 * * MON-FRI",
            "0 0 1 * *",
        ];
        for i in 0..$count {
            sqlx::query(
                "INSERT INTO scripts (id, tenant_id, name, source, version, trigger_type, \
                 schedule, enabled, limits, max_retries, retry_delay_ms, next_run_at, \
                 created_at, updated_at) \
                 VALUES ($1, $2, $3, 'export default () => 1', 1, 'scheduled', $4, TRUE, '{}', \
                 3, 300000, $5, 0, 0)",
            )
            .bind(scriptbox::model::ExecutionId::generate())
            .bind($tenant)
            .bind(format!("s{i}"))
            .bind(schedules[i % schedules.len()])
            .bind($future + (i as i64 % 3_600) * 1_000)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
    }};
}

/// Makes `due` scripts due at `now` again and removes executions.
macro_rules! reset {
    ($pool:expr, $due:expr, $now:expr, $future:expr) => {{
        sqlx::query("DELETE FROM executions").execute($pool).await?;
        sqlx::query(
            "UPDATE scripts SET next_run_at = $1 WHERE next_run_at <= $2 OR next_run_at < $1",
        )
        .bind($future)
        .bind($now)
        .execute($pool)
        .await?;
        sqlx::query(
            "UPDATE scripts SET next_run_at = $1 WHERE id IN \
             (SELECT id FROM scripts ORDER BY id LIMIT $2)",
        )
        .bind($now - 1_000)
        .bind($due as i64)
        .execute($pool)
        .await?;
    }};
}

async fn bench(db: &Db, label: &str, schedules: usize, due: usize) -> Result<()> {
    let (tenant, _) = db.create_tenant("bench").await?;
    let now = scriptbox::store::now_ms();
    let future = now + 3_600_000;
    let started = Instant::now();
    match db {
        Db::Sqlite(pool) => load!(pool, &tenant.id, schedules, future),
        Db::Postgres(pool) => load!(pool, &tenant.id, schedules, future),
    }
    if let Db::Postgres(pool) = db {
        sqlx::query("ANALYZE").execute(pool).await?;
    }
    println!(
        "{label}: loaded {schedules} schedules in {}",
        ms(started.elapsed())
    );

    let node = "bench-node";
    let batch = env_usize(
        "SCRIPTBOX_BENCH_CLAIM_BATCH",
        scriptbox::scheduler::claim_batch(db) as usize,
    ) as i64;
    let mut sleep_query = Vec::new();
    let mut claim_all = Vec::new();
    let mut idle_pass = Vec::new();
    for _ in 0..ROUNDS {
        match db {
            Db::Sqlite(pool) => reset!(pool, due, now, future),
            Db::Postgres(pool) => reset!(pool, due, now, future),
        }
        let t = Instant::now();
        let earliest = db.earliest_due().await?;
        sleep_query.push(t.elapsed());
        assert_eq!(earliest, Some(now - 1_000));

        let t = Instant::now();
        let mut claimed = 0;
        loop {
            let claims = db
                .claim_due_scripts(now, batch, node, |s| scriptbox::scheduler::plan(s, now))
                .await?;
            claimed += claims.len();
            if (claims.len() as i64) < batch {
                break;
            }
        }
        claim_all.push(t.elapsed());
        assert_eq!(claimed, due, "every due script claimed once");

        let t = Instant::now();
        let nothing = db
            .claim_due_scripts(now, batch, node, |s| scriptbox::scheduler::plan(s, now))
            .await?;
        db.claim_due_retries(now, batch, node).await?;
        idle_pass.push(t.elapsed());
        assert!(nothing.is_empty());
    }

    // What a scheduler without the index does every tick.
    let mut scan = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let rows: Vec<(String, String, i64)> = match db {
            Db::Sqlite(pool) => {
                sqlx::query_as("SELECT id, schedule, updated_at FROM scripts WHERE trigger_type = 'scheduled' AND enabled")
                    .fetch_all(pool)
                    .await?
            }
            Db::Postgres(pool) => {
                sqlx::query_as("SELECT id, schedule, updated_at FROM scripts WHERE trigger_type = 'scheduled' AND enabled")
                    .fetch_all(pool)
                    .await?
            }
        };
        let at = Time::from_unix_ms(now - 60_000, Location::Utc);
        let found = rows
            .iter()
            .filter_map(|(_, expr, _)| scriptbox::cron::parse(expr).ok()?.next(at))
            .filter(|t| t.unix_ms() <= now)
            .count();
        scan.push(t.elapsed());
        std::hint::black_box(found);
    }

    // The scheduler's share of a claim: cron parsing and the next fire time.
    let mut record = db
        .list_scripts(&tenant.id, None, None, 1)
        .await?
        .pop()
        .expect("a script was loaded");
    record.schedule = Some("30 9 * * MON-FRI".into());
    record.timezone = Some("Europe/Paris".into());
    let sample = scriptbox::store::DueScript {
        occurrence: now - 1_000,
        record: std::sync::Arc::new(record),
    };
    let t = Instant::now();
    for _ in 0..due {
        std::hint::black_box(scriptbox::scheduler::plan(&sample, now));
    }
    let plan_each = t.elapsed() / due as u32;

    let claim = median(claim_all);
    let idle = median(idle_pass);
    let scan = median(scan);
    println!(
        "{label}: earliest-due query (sleep):       median {}",
        ms(median(sleep_query))
    );
    println!(
        "{label}: claim {due} due of {schedules}:        median {} ({:.1} us per claim)",
        ms(claim),
        claim.as_secs_f64() * 1e6 / due as f64
    );
    println!(
        "{label}:   of which planning (cron next):     {:.1} us per claim",
        plan_each.as_secs_f64() * 1e6
    );
    println!(
        "{label}: pass with nothing due:             median {}",
        ms(idle)
    );
    println!(
        "{label}: full scan + cron of all {schedules}: median {} ({:.0}x the pass with nothing due)",
        ms(scan),
        scan.as_secs_f64() / idle.as_secs_f64()
    );
    Ok(())
}

fn main() -> Result<()> {
    let schedules = env_usize("SCRIPTBOX_BENCH_SCHEDULES", 100_000);
    let due = env_usize("SCRIPTBOX_BENCH_DUE", 1_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let dir = std::env::temp_dir().join(format!("scriptbox-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let mut config = scriptbox::store::DatabaseConfig {
            url: format!("sqlite://{}", dir.join("schedule.db").display()),
            ..Default::default()
        };
        let db = Db::open(&config).await?;
        bench(&db, "sqlite", schedules, due).await?;
        db.close().await;
        let _ = std::fs::remove_dir_all(&dir);

        match scriptbox_benches::ScratchPostgres::create("schedule").await? {
            Some(scratch) => {
                config.url = scratch.url.clone();
                let db = Db::open(&config).await?;
                let result = bench(&db, "postgres", schedules, due).await;
                db.close().await;
                scratch.drop_now().await?;
                result?;
            }
            None => println!("postgres: skipped (SCRIPTBOX_TEST_POSTGRES_URL is not set)"),
        }
        anyhow::Ok(())
    })
}
