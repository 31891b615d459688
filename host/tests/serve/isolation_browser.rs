//! A tenant's webhook page attacks a signed-in dashboard in a real browser:
//! headless Chromium, driven by `tests/e2e/isolation.mjs`, against a real
//! `serve` process with its two listeners. The page must reach neither the
//! dashboard's storage nor its origin, register no service worker, and see
//! nothing another tenant's page wrote. Needs `chromium` and `npm ci` in
//! `tests/e2e` (`.ci/run` does both); says it was skipped without them,
//! except in CI.

use crate::common;

use std::process::Command;

use common::{call, create_tenant, serve};
use serde_json::json;

/// The attacker's page: tries every way to the dashboard's key and leaves
/// what it found in `document.body.dataset.result`.
fn attacker_page(admin: &str) -> String {
    let html = r#"<!doctype html><title>tenant page</title><body><script>
(async () => {
  const ADMIN = "__ADMIN__";
  const r = { origin: String(self.origin) };
  const tryIt = (name, f) => { try { r[name] = String(f()); } catch (e) { r[name] = "blocked: " + e.name; } };
  tryIt("sessionStorage", () => JSON.stringify(Object.entries(sessionStorage)));
  tryIt("localStorage", () => { localStorage.setItem("acme-secret", "planted"); return localStorage.getItem("acme-secret"); });
  tryIt("cookie", () => { document.cookie = "planted=1; path=/"; return document.cookie; });
  try { await navigator.serviceWorker.register("/acme/sw.js", { scope: "/" }); r.serviceWorker = "registered"; }
  catch (e) { r.serviceWorker = "blocked: " + e.name; }
  r.framedKey = await new Promise((resolve) => {
    const f = document.createElement("iframe");
    f.src = ADMIN + "/";
    f.onload = () => { try { resolve(JSON.stringify(Object.entries(f.contentWindow.sessionStorage))); } catch (e) { resolve("blocked: " + e.name); } };
    document.body.appendChild(f);
    setTimeout(() => resolve("blocked: never loaded"), 5000);
  });
  r.openedKey = await new Promise((resolve) => {
    let w;
    try { w = window.open(ADMIN + "/"); } catch (e) { return resolve("blocked: " + e.name); }
    if (!w) return resolve("blocked: no window");
    setTimeout(() => {
      try { resolve(JSON.stringify(Object.entries(w.sessionStorage))); } catch (e) { resolve("blocked: " + e.name); }
      try { w.close(); } catch (e) {}
    }, 1500);
  });
  try {
    const res = await fetch(ADMIN + "/api/tenant", { credentials: "include" });
    r.api = res.status === 401 ? "refused" : "answered " + res.status + " " + (await res.text());
  } catch (e) { r.api = "refused"; }
  document.body.dataset.result = JSON.stringify(r);
})();
</script></body>"#;
    html.replace("__ADMIN__", admin)
}

const OTHER_TENANT_PAGE: &str = r#"<!doctype html><body><script>
const r = {};
try { r.localStorage = String(localStorage.getItem("acme-secret")); } catch (e) { r.localStorage = "blocked: " + e.name; }
document.body.dataset.result = JSON.stringify(r);
</script></body>"#;

/// A service worker that would answer every request of its scope.
const SERVICE_WORKER: &str =
    "self.addEventListener('fetch', (e) => e.respondWith(new Response('owned')));";

fn html_hook(path: &str, html: &str) -> serde_json::Value {
    json!({
        "name": path.trim_start_matches('/').replace('.', "-"),
        "trigger_type": "webhook",
        "webhook_path": path,
        "source": format!(
            "export default () => new Response({}, {{ headers: {{ 'content-type': 'text/html; charset=utf-8' }} }})",
            serde_json::to_string(html).unwrap()
        ),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_page_cannot_reach_the_dashboard_or_other_tenants() {
    let Some(e2e) = common::browser_tests() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("scriptbox-isolation-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = format!("sqlite://{}", dir.join("node.db").display());
    let acme = create_tenant(&db, "acme");
    let globex = create_tenant(&db, "globex");
    let server = serve(&db).await;
    let admin = format!("http://127.0.0.1:{}", server.port);
    let public = format!("http://127.0.0.1:{}", server.public_port);

    let page = call(
        server.port,
        "POST",
        "/api/scripts",
        &acme,
        Some(html_hook("/page", &attacker_page(&admin))),
    )
    .await;
    assert_eq!(page["webhook_url"], format!("{public}/acme/page"), "{page}");
    let worker = json!({
        "name": "sw", "trigger_type": "webhook", "webhook_path": "/sw.js",
        "source": format!(
            "export default () => new Response({}, {{ headers: {{ 'content-type': 'text/javascript', 'service-worker-allowed': '/' }} }})",
            serde_json::to_string(SERVICE_WORKER).unwrap()
        ),
    });
    let worker = call(server.port, "POST", "/api/scripts", &acme, Some(worker)).await;
    assert!(worker["id"].is_string(), "{worker}");
    let other = call(
        server.port,
        "POST",
        "/api/scripts",
        &globex,
        Some(html_hook("/page", OTHER_TENANT_PAGE)),
    )
    .await;
    assert!(other["id"].is_string(), "{other}");

    let out = Command::new("node")
        .arg(e2e.join("isolation.mjs"))
        .args([&admin, &public, &acme])
        .output()
        .expect("node runs");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{log}");
    assert!(log.contains("ok"), "{log}");
    eprintln!("{log}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
