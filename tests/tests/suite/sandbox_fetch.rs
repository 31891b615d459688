//! `fetch` from scripts: internal addresses are refused unless allow-listed;
//! allow-listed hosts work over a real socket.

use scriptbox::sandbox::FetchConfig;
use scriptbox_tests::{output, run, sandbox, sandbox_with};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A one-route HTTP/1.1 server on 127.0.0.1 that echoes the method, path and
/// body it received as JSON.
async fn echo_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Read the head, then as much body as Content-Length says.
                let (head_end, length) = loop {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..at]).to_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map(|v| v.trim().parse::<usize>().unwrap())
                            .unwrap_or(0);
                        break (at + 4, length);
                    }
                };
                while buf.len() < head_end + length {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let mut request_line = head.lines().next().unwrap_or("").split(' ');
                let method = request_line.next().unwrap_or("");
                let path = request_line.next().unwrap_or("");
                let body = String::from_utf8_lossy(&buf[head_end..]).to_string();
                let reply = json!({ "method": method, "path": path, "body": body }).to_string();
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-test: yes\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
                    reply.len(),
                    reply
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    addr
}

const TRY_FETCH: &str = "export default async (input) => {
    try {
        const r = await fetch(input.url);
        return { status: r.status };
    } catch (e) {
        return { error: e.message };
    }
}";

#[tokio::test]
async fn internal_addresses_are_refused_by_default() {
    let addr = echo_server().await;
    let sandbox = sandbox();
    for url in [
        format!("http://127.0.0.1:{}/", addr.port()),
        format!("http://localhost:{}/", addr.port()),
        "http://[::1]/".to_string(),
        "http://10.0.0.1/".to_string(),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://[::ffff:127.0.0.1]/".to_string(),
    ] {
        let outcome = run(&sandbox, TRY_FETCH, json!({ "url": url })).await;
        let result = output(&outcome);
        let error = result["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{url} was fetched"));
        assert!(error.contains("may not reach"), "{url}: {error}");
    }
}

#[tokio::test]
async fn other_schemes_and_bad_urls_are_refused() {
    let sandbox = sandbox();
    for (url, expected) in [
        ("file:///etc/passwd", "only http and https"),
        ("not a url", "invalid URL"),
    ] {
        let result = output(&run(&sandbox, TRY_FETCH, json!({ "url": url })).await);
        let error = result["error"].as_str().unwrap();
        assert!(error.contains(expected), "{url}: {error}");
    }
}

#[tokio::test]
async fn an_allow_listed_local_server_can_be_fetched() {
    let addr = echo_server().await;
    let sandbox = sandbox_with(FetchConfig {
        allow: vec!["127.0.0.1".into(), "localhost".into()],
        ..FetchConfig::default()
    });
    let script = "export default async (input) => {
        const got = await fetch(input.base + '/hello?x=1');
        const posted = await fetch(input.base + '/items', { method: 'POST', body: JSON.stringify({ a: 1 }), headers: { 'content-type': 'application/json' } });
        return { status: got.status, header: got.headers.get('X-Test'), got: await got.json(), posted: await posted.json() };
    }";
    for base in [
        format!("http://127.0.0.1:{}", addr.port()),
        format!("http://localhost:{}", addr.port()),
    ] {
        let outcome = run(&sandbox, script, json!({ "base": base })).await;
        assert_eq!(
            output(&outcome),
            json!({
                "status": 200,
                "header": "yes",
                "got": { "method": "GET", "path": "/hello?x=1", "body": "" },
                "posted": { "method": "POST", "path": "/items", "body": "{\"a\":1}" },
            })
        );
        assert_eq!(outcome.usage.api.http.calls, 2);
    }
}
