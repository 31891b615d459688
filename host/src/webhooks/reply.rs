//! What goes out of the public listener.
//!
//! A script's `Response` is never passed raw. The sandbox has already
//! refused statuses outside 200-599 and header names or values that are not
//! valid HTTP (the run fails with `output_error`). Here the headers that
//! frame the message or belong to one connection are dropped, so only the
//! server decides where a response ends and a script cannot split it or
//! take over the connection; `Service-Worker-Allowed` is dropped so no
//! script can widen a service worker's scope; 204 and 304 carry no body.
//!
//! Every reply of the public listener is sent with
//! `X-Content-Type-Options: nosniff`. With path routing, where all tenants
//! share one origin, every reply also carries
//! `Content-Security-Policy: sandbox allow-scripts allow-forms allow-popups`:
//! a tenant's page is a document of an opaque origin, with no cookies,
//! storage or service workers of the shared origin, so no tenant can read or
//! plant anything another tenant's page will see. For the same reason
//! scripts cannot set cookies there (`Set-Cookie` is dropped); with host
//! routing each tenant has an origin of its own and keeps both.

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;

use super::Routing;
use crate::sandbox::Reply;

/// Headers a script may not set: framing, hop-by-hop, and scope widening.
const DROPPED: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "service-worker-allowed",
];

/// The sandbox policy every reply carries with path routing.
pub const SANDBOX_CSP: &str = "sandbox allow-scripts allow-forms allow-popups";

fn dropped(name: &str, routing: &Routing) -> bool {
    DROPPED.contains(&name)
        || name.starts_with("proxy-")
        || (name == "set-cookie" && *routing == Routing::Path)
}

/// The script's `Response` as an HTTP response (checked by the sandbox
/// already; anything invalid left is skipped, never sent).
pub fn script_response(reply: Reply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let bodiless = status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    let body = if bodiless {
        Body::empty()
    } else {
        Body::from(reply.body)
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    for (name, value) in reply.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

/// Applies the public listener's rules to any of its responses.
pub fn public_headers(mut response: Response, routing: &Routing) -> Response {
    let headers = response.headers_mut();
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|name| dropped(name.as_str(), routing))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if *routing == Routing::Path {
        // Appended: a script's own policy still applies too.
        headers.append(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(SANDBOX_CSP),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, headers: &[(&str, &str)], body: &str) -> Reply {
        Reply {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.into(),
        }
    }

    #[test]
    fn framing_and_scope_headers_never_go_out() {
        let r = reply(
            200,
            &[
                ("Content-Length", "2"),
                ("Transfer-Encoding", "chunked"),
                ("Connection", "close"),
                ("Upgrade", "websocket"),
                ("Proxy-Authenticate", "Basic"),
                ("Service-Worker-Allowed", "/"),
                ("Set-Cookie", "a=1; Path=/"),
                ("X-Custom", "kept"),
                ("X-Content-Type-Options", "sniff-please"),
            ],
            "hello",
        );
        let out = public_headers(script_response(r), &Routing::Path);
        let h = out.headers();
        for gone in [
            "content-length",
            "transfer-encoding",
            "connection",
            "upgrade",
            "proxy-authenticate",
            "service-worker-allowed",
            "set-cookie",
        ] {
            assert!(!h.contains_key(gone), "{gone} went out");
        }
        assert_eq!(h["x-custom"], "kept");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["content-security-policy"], SANDBOX_CSP);
    }

    #[test]
    fn tenants_with_their_own_origin_keep_cookies_and_get_no_sandbox() {
        let r = reply(200, &[("Set-Cookie", "a=1")], "");
        let host = Routing::Host {
            prefix: String::new(),
            suffix: ".hooks.example".into(),
        };
        let out = public_headers(script_response(r), &host);
        assert_eq!(out.headers()["set-cookie"], "a=1");
        assert!(!out.headers().contains_key("content-security-policy"));
        assert_eq!(out.headers()["x-content-type-options"], "nosniff");
    }

    #[tokio::test]
    async fn no_content_carries_no_body() {
        for status in [204, 304] {
            let out = script_response(reply(status, &[], "surprise"));
            let body = axum::body::to_bytes(out.into_body(), 1 << 10)
                .await
                .unwrap();
            assert!(body.is_empty(), "{status}");
        }
    }
}
