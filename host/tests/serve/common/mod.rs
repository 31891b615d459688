//! Running the real `scriptbox` binary: commands, `serve` processes, and
//! calls to their API.

#![allow(dead_code)] // each test file uses part of this

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Held by the tests that put a node under sustained load (crash, chaos,
/// soak), so that they take turns instead of slowing each other on a
/// 2-core machine, and by the tests whose assertions need runs to start on
/// time (cluster).
pub static HEAVY_LOAD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Says, past the test harness's output capture, that the calling test did
/// not run and why: it shows in the plain `cargo test` output, where a
/// skipped test would otherwise pass as `ok` unnoticed.
pub fn skipped(reason: &str) {
    use std::io::Write;
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test}: {reason}");
}

pub fn scriptbox() -> Command {
    Command::new(env!("CARGO_BIN_EXE_scriptbox"))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `scriptbox serve` process, killed when dropped.
pub struct Server {
    pub child: Child,
    /// The admin listener's port (API, dashboard, metrics, health).
    pub port: u16,
    /// The public listener's port (webhooks).
    pub public_port: u16,
}

impl Server {
    /// SIGTERM, as a service manager stops the service.
    pub fn terminate(&self) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill -TERM {pid}");
    }

    /// Waits for the process to exit, at most `within`; its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the process did not exit within {within:?}");
    }

    /// SIGKILL: the process gets no chance to clean up.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `scriptbox serve` on `database` and a free port; returns once it
/// answers.
pub async fn serve(database: &str) -> Server {
    serve_with(database, &[]).await
}

/// `serve` with extra environment variables (`SCRIPTBOX_*` settings).
pub async fn serve_with(database: &str, env: &[(&str, &str)]) -> Server {
    let server = spawn_serve(database, env, Stdio::inherit());
    wait_ready(server).await
}

/// Lines a process has written to a pipe so far.
pub type Lines = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// The lines `pipe` gives, collected as they come by a thread of their own.
pub fn lines_of(pipe: impl std::io::Read + Send + 'static) -> Lines {
    use std::io::BufRead;
    let lines = Lines::default();
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

/// `serve` whose stderr is kept: the lines it has written so far are in the
/// returned vector.
pub async fn serve_logging(database: &str, env: &[(&str, &str)]) -> (Server, Lines) {
    let mut server = spawn_serve(database, env, Stdio::piped());
    let lines = lines_of(server.child.stderr.take().unwrap());
    (wait_ready(server).await, lines)
}

fn spawn_serve(database: &str, env: &[(&str, &str)], stderr: Stdio) -> Server {
    let port = free_port();
    let public_port = free_port();
    let child = scriptbox()
        .envs(env.iter().copied())
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--public-listen",
            &format!("127.0.0.1:{public_port}"),
            "--database",
            database,
        ])
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    Server {
        child,
        port,
        public_port,
    }
}

/// Returns `server` once it answers.
async fn wait_ready(server: Server) -> Server {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if reqwest::get(format!("http://127.0.0.1:{}/health/live", server.port))
            .await
            .is_ok()
        {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("scriptbox serve did not start");
}

/// `scriptbox tenant create NAME`; returns the API key.
pub fn create_tenant(database: &str, name: &str) -> String {
    let created = scriptbox()
        .args(["tenant", "create", name, "--database", database])
        .output()
        .unwrap();
    assert!(created.status.success(), "{created:?}");
    let stdout = String::from_utf8(created.stdout).unwrap();
    let key = stdout.lines().last().unwrap().trim().to_owned();
    assert!(
        key.starts_with("sbx_"),
        "the key is the last line: {stdout}"
    );
    key
}

pub async fn call(port: u16, method: &str, path: &str, key: &str, body: Option<Value>) -> Value {
    let client = reqwest::Client::new();
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = client
        .request(method, format!("http://127.0.0.1:{port}{path}"))
        .bearer_auth(key);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let text = request.send().await.unwrap().text().await.unwrap();
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

/// `GET /api/executions/{id}`.
pub async fn execution(port: u16, key: &str, id: &str) -> Value {
    call(port, "GET", &format!("/api/executions/{id}"), key, None).await
}

/// Waits (up to 30 s) until execution `id` has `status`.
pub async fn wait_for_status(port: u16, key: &str, id: &str, status: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let e = execution(port, key, id).await;
        if e["status"] == status {
            return;
        }
        assert!(Instant::now() < deadline, "never {status}: {e}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `tests/e2e` when headless Chromium and its `npm ci` are there; `None`
/// (the test says it was skipped) otherwise, except in CI, where a missing
/// browser fails the test.
pub fn browser_tests() -> Option<std::path::PathBuf> {
    let e2e = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/e2e");
    let ready = std::path::Path::new("/usr/bin/chromium").exists()
        && e2e.join("node_modules/playwright-core").exists();
    if !ready {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium and tests/e2e/node_modules are required in CI"
        );
        skipped("needs Chromium and `npm ci --prefix tests/e2e` (README, Tests)");
        return None;
    }
    Some(e2e)
}
