//! A real `scriptbox serve` node on 127.0.0.1:0, on a fresh SQLite file or a
//! fresh PostgreSQL database, with an HTTP client.

use std::time::Duration;

use scriptbox::config::Config;
use scriptbox::exec::ExecutionService;
use serde_json::Value;
use sqlx::Connection;

/// Says, past the test harness's output capture, that the calling test did
/// not run and why: it shows in the plain `cargo test` output, where a
/// skipped test would otherwise pass as `ok`.
pub fn skipped(reason: &str) {
    use std::io::Write;
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test}: {reason}");
}

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// `SCRIPTBOX_TEST_POSTGRES_URL`, or `None` (the test says it was skipped).
pub fn postgres_url() -> Option<String> {
    std::env::var("SCRIPTBOX_TEST_POSTGRES_URL")
        .ok()
        .filter(|v| !v.is_empty())
}

/// A database URL of its own for one test: a new SQLite file, or a new
/// database on the PostgreSQL server. `None` when PostgreSQL is not set up.
pub async fn fresh_database(backend: Backend) -> Option<String> {
    let name = format!("sbx_{}", uuid::Uuid::new_v4().simple());
    match backend {
        Backend::Sqlite => {
            let dir = std::env::temp_dir().join("scriptbox-tests");
            std::fs::create_dir_all(&dir).unwrap();
            Some(format!(
                "sqlite://{}",
                dir.join(format!("{name}.db")).display()
            ))
        }
        Backend::Postgres => {
            let Some(admin) = postgres_url() else {
                skipped("SCRIPTBOX_TEST_POSTGRES_URL is not set");
                return None;
            };
            let mut conn = sqlx::PgConnection::connect(&admin)
                .await
                .expect("connecting to SCRIPTBOX_TEST_POSTGRES_URL");
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .expect("creating a test database");
            let mut url = url::Url::parse(&admin).expect("a valid URL");
            url.set_path(&name);
            Some(url.to_string())
        }
    }
}

/// The secrets key of test nodes on PostgreSQL (32 bytes, base64).
pub const TEST_SECRETS_KEY: &str = "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

pub struct TestNode {
    /// The admin listener: API, dashboard, metrics, health.
    pub base: String,
    /// The public listener: webhooks only.
    pub public: String,
    /// The PostgreSQL database made for this test, dropped by `stop`.
    pub postgres_admin: Option<(String, String)>,
    pub client: reqwest::Client,
    pub exec: ExecutionService,
    pub database_url: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestNode {
    /// Starts a node on `database_url`.
    pub async fn start(database_url: &str) -> Self {
        Self::start_with(database_url, |_| {}).await
    }

    /// Starts a node on `database_url` with `configure` applied to the
    /// test configuration.
    pub async fn start_with(database_url: &str, configure: impl FnOnce(&mut Config)) -> Self {
        // Server-side errors show in the failing test's output.
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter("scriptbox=warn")
            .try_init();
        let mut config = Config::default();
        config.database.url = database_url.to_owned();
        config.database.min_idle = 1;
        config.sandbox.pool_min = 2;
        config.sandbox.pool_max = 8;
        if database_url.starts_with("postgres") {
            // SQLite keeps its key in a file beside the database; a
            // PostgreSQL deployment is given one.
            config.secrets.key = Some(TEST_SECRETS_KEY.into());
        }
        configure(&mut config);
        let node = scriptbox::server::start(&config)
            .await
            .expect("the node starts");
        let exec = node.exec.clone();
        let listeners = scriptbox::server::Listeners::bind("127.0.0.1:0", "127.0.0.1:0")
            .await
            .unwrap();
        let base = format!("http://{}", listeners.admin.local_addr().unwrap());
        let public = format!("http://{}", listeners.public.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            scriptbox::server::run(listeners, node, async {
                let _ = rx.await;
            })
            .await
            .expect("the server runs");
        });
        Self {
            base,
            public,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            exec,
            database_url: database_url.to_owned(),
            postgres_admin: postgres_url().and_then(|admin| {
                let name = url::Url::parse(database_url)
                    .ok()?
                    .path()
                    .trim_start_matches('/')
                    .to_owned();
                database_url
                    .starts_with("postgres")
                    .then_some((admin, name))
            }),
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Creates a tenant; returns its API key.
    pub async fn tenant(&self, name: &str) -> String {
        self.exec.db().create_tenant(name).await.unwrap().1
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .client
            .request(method, format!("{}{}", self.base, path));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the request is answered");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, json)
    }

    /// The node's `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("/metrics answers")
            .text()
            .await
            .unwrap()
    }

    /// The value of an unlabelled series in the node's `/metrics`.
    pub async fn metric(&self, series: &str) -> f64 {
        metric(&self.metrics().await, series)
    }

    /// Stops the node and keeps its database, for a restart on it.
    pub async fn shut_down(mut self) -> String {
        self.halt().await;
        self.database_url.clone()
    }

    async fn halt(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.exec.db().close().await;
    }

    /// Stops the node and removes its database.
    pub async fn stop(mut self) {
        self.halt().await;
        if let Some((admin, name)) = self.postgres_admin.take()
            && let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await
        {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn)
                .await;
        } else if let Some(path) = self.database_url.strip_prefix("sqlite://") {
            for suffix in ["", "-wal", "-shm", ".secrets-key"] {
                let _ = std::fs::remove_file(format!("{path}{suffix}"));
            }
        }
    }
}

/// Defines `mod sqlite { #[tokio::test] fn NAME }` and `mod postgres { ... }`
/// from one `async fn NAME(url: String)` per test, each given a fresh
/// database of its backend. PostgreSQL tests are `ignored`, with the reason,
/// when `SCRIPTBOX_TEST_POSTGRES_URL` was not set at build time (tests/build.rs).
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let backend = $crate::service::Backend::Sqlite;
                    let url = $crate::service::fresh_database(backend).await.unwrap();
                    super::$name(url).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr(
                    not(scriptbox_postgres),
                    ignore = "needs PostgreSQL: set SCRIPTBOX_TEST_POSTGRES_URL (README, Tests)"
                )]
                async fn $name() {
                    let backend = $crate::service::Backend::Postgres;
                    let Some(url) = $crate::service::fresh_database(backend).await else {
                        return;
                    };
                    super::$name(url).await;
                }
            )*
        }
    };
}

/// The value of the unlabelled series `name` in a `/metrics` text.
pub fn metric(text: &str, name: &str) -> f64 {
    series(text, name, &[]).unwrap_or_else(|| panic!("no series {name} in\n{text}"))
}

/// The value of the series `name{labels}` in a `/metrics` text (all its
/// labels given, in any order; none for an unlabelled series).
pub fn series(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (set, value) = match rest.strip_prefix('{') {
            Some(rest) => rest.split_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        let pairs: Vec<&str> = if set.is_empty() {
            Vec::new()
        } else {
            set.split(',').collect()
        };
        let wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        let same =
            pairs.len() == wanted.len() && wanted.iter().all(|w| pairs.contains(&w.as_str()));
        same.then(|| value.trim().parse().unwrap())
    })
}
