//! The dashboard in a real browser: headless Chromium, driven by
//! `tests/e2e/dashboard.mjs` (playwright-core), against a real `serve`
//! process. Screenshots of each page go to `target/dashboard-screenshots/`.
//! Needs `chromium` and `npm ci` in `tests/e2e` (`.ci/run` does both); says
//! it was skipped without them, except in CI.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::{create_tenant, serve};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_works_in_a_browser() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let Some(e2e) = common::browser_tests() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("scriptbox-dashboard-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = format!("sqlite://{}", dir.join("node.db").display());
    let acme = create_tenant(&db, "acme");
    let globex = create_tenant(&db, "globex");
    let server = serve(&db).await;
    let shots = root.join("target/dashboard-screenshots");
    let out = Command::new("node")
        .arg(e2e.join("dashboard.mjs"))
        .arg(format!("http://127.0.0.1:{}", server.port))
        .args([&acme, &globex])
        .arg(&shots)
        .arg(format!("http://127.0.0.1:{}", server.public_port))
        .output()
        .expect("node runs");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{log}\n(screenshots in {})",
        shots.display()
    );
    assert!(shots.join("04-run-now.png").exists());
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
