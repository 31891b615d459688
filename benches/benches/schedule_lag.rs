//! A node keeping many schedules on time: 1,000 scripts on `@every 1s`
//! (ten tenants of 100), run for a while, then every occurrence in the
//! measured window is read back: how late each run started after its fire
//! time (p50, p99, max), and whether any occurrence is missing.
//!
//! `cargo bench -p scriptbox-benches --bench schedule_lag` runs it on a fresh
//! SQLite file; `SCRIPTBOX_BENCH_DATABASE=postgres` on a fresh database of
//! `SCRIPTBOX_TEST_POSTGRES_URL`'s server. `SCRIPTBOX_BENCH_SCRIPTS`
//! (default 1,000) and `SCRIPTBOX_BENCH_SECONDS` (measured window, default
//! 10) change the load; `SCRIPTBOX_<SECTION>_<KEY>` settings apply to the
//! node.

use std::time::Duration;

use anyhow::{Result, bail};
use scriptbox::config::Config;
use scriptbox::scripts::ScriptChange;
use scriptbox::store::Db;
use scriptbox_benches::env_usize;

const TENANTS: usize = 10;

/// `(started_at - scheduled_for, script_id)` of the first attempts fired in
/// `[from, to)`.
async fn occurrences(db: &Db, from: i64, to: i64) -> Result<Vec<(Option<i64>, String)>> {
    let sql = "SELECT started_at - scheduled_for, script_id FROM executions \
        WHERE trigger_type = 'scheduled' AND attempt = 0 \
        AND scheduled_for >= $1 AND scheduled_for < $2";
    Ok(match db {
        Db::Sqlite(pool) => {
            sqlx::query_as(sql)
                .bind(from)
                .bind(to)
                .fetch_all(pool)
                .await?
        }
        Db::Postgres(pool) => {
            sqlx::query_as(sql)
                .bind(from)
                .bind(to)
                .fetch_all(pool)
                .await?
        }
    })
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn main() -> Result<()> {
    let scripts = env_usize("SCRIPTBOX_BENCH_SCRIPTS", 1_000);
    let seconds = env_usize("SCRIPTBOX_BENCH_SECONDS", 10) as i64;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let dir = std::env::temp_dir().join(format!("scriptbox-bench-lag-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    runtime.block_on(async {
        let mut config = Config::load(None, std::env::vars())?;
        let (url, scratch) = scriptbox_benches::bench_database("lag", &dir).await?;
        config.database.url = url;
        config.scheduler.enabled = true;
        let label = if scratch.is_some() {
            "postgres"
        } else {
            "sqlite"
        };
        let node = scriptbox::server::start(&config).await?;
        let db = node.db.clone();
        let service = node.scripts.clone();
        let mut tenants = Vec::new();
        for t in 0..TENANTS {
            tenants.push(db.create_tenant(&format!("t{t}")).await?.0);
        }
        for n in 0..scripts {
            let change: ScriptChange = serde_json::from_value(serde_json::json!({
                "name": format!("tick-{n}"),
                "source": "export default (input) => input.scheduledAt",
                "trigger_type": "scheduled",
                "schedule": "@every 1s",
            }))?;
            service.create(&tenants[n % TENANTS], change).await?;
        }
        let listeners = scriptbox::server::Listeners::bind("127.0.0.1:0", "127.0.0.1:0").await?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(scriptbox::server::run(listeners, node, async {
            let _ = stopped.await;
        }));

        // Two seconds to settle, the measured window, two seconds for its
        // last occurrences to be run and recorded.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let from = scriptbox::store::now_ms().div_euclid(1000) * 1000 + 1000;
        let to = from + seconds * 1000;
        let wait = (to + 2_000 - scriptbox::store::now_ms()).max(0) as u64;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let rows = occurrences(&db, from, to).await?;
        let _ = stop.send(());
        let _ = server.await;

        let mut per_script = std::collections::HashMap::<String, i64>::new();
        let mut lags = Vec::with_capacity(rows.len());
        let mut not_started = 0;
        for (lag, script) in rows {
            *per_script.entry(script).or_default() += 1;
            match lag {
                Some(lag) => lags.push(lag),
                None => not_started += 1,
            }
        }
        lags.sort_unstable();
        // Each script fires once a second; a window of whole seconds holds
        // `seconds` of its occurrences, whatever its phase.
        let expected = scripts as i64 * seconds;
        let missing: i64 = expected - per_script.values().sum::<i64>();
        if lags.is_empty() {
            bail!("no scheduled run started in the window");
        }
        println!(
            "{label}: {scripts} scripts on @every 1s for {seconds} s: {} runs ({:.0}/s), \
             lag p50 {} ms, p99 {} ms, max {} ms; missing {missing}, not started {not_started}, \
             scripts with a doubled occurrence {}",
            lags.len(),
            lags.len() as f64 / seconds as f64,
            percentile(&lags, 0.50),
            percentile(&lags, 0.99),
            lags[lags.len() - 1],
            per_script.values().filter(|&&n| n > seconds).count(),
        );
        if let Some(scratch) = scratch {
            scratch.drop_now().await?;
        }
        anyhow::Ok(())
    })?;
    drop(runtime);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
