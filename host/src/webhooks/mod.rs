//! Webhooks, below the HTTP edge: the settings of the public listener, the
//! route cache (`routes`), signature checks (`auth`), per-script rate limits
//! (`limiter`), `public_url` and host routing (`public`), the checked reply
//! a script's `Response` becomes (`reply`), and the input a request becomes
//! ([`request_input`]). The handler that puts them together, in order, is
//! `http::webhooks`; docs/webhooks.md describes the behaviour.

pub mod auth;
mod limiter;
pub mod public;
pub mod reply;
mod routes;

use std::collections::BTreeMap;

use axum::http::{HeaderMap, Method, Uri, header};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use limiter::Limiters;
pub use public::{PublicUrl, Routing};
pub use routes::Routes;

pub use crate::settings::{AuthType, RateLimit, WebhookAuth};

/// `webhooks.*` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// Address of the public listener, which serves webhooks only.
    pub listen: String,
    /// Where the world reaches the public listener, for `webhook_url`.
    /// Empty: `http://<listen>`. With `{tenant}` in the host name
    /// (`https://{tenant}.hooks.example.com`) tenants are routed by `Host`
    /// and each has an origin of its own.
    pub public_url: String,
    /// How long a synchronous call waits for its run, ms; then 504 (the run
    /// goes on and is recorded).
    pub sync_timeout_ms: u64,
    /// Largest request body, bytes; larger is 413.
    pub body_limit: usize,
    /// Requests per second per script, for scripts without `rate_limit`.
    pub rps: u32,
    /// Burst per script, for scripts without `rate_limit`.
    pub burst: u32,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8081".into(),
            public_url: String::new(),
            sync_timeout_ms: 30_000,
            body_limit: 1 << 20,
            rps: 10,
            burst: 20,
        }
    }
}

impl WebhookConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.sync_timeout_ms == 0 {
            return Err("webhooks.sync_timeout_ms must be at least 1".into());
        }
        if self.rps == 0 || self.burst == 0 {
            return Err("webhooks.rps and webhooks.burst must be at least 1".into());
        }
        Ok(())
    }

    /// The parsed `public_url`.
    pub fn public_url(&self) -> Result<PublicUrl, String> {
        PublicUrl::parse(&self.public_url, &self.listen)
    }

    pub fn default_limit(&self) -> RateLimit {
        RateLimit {
            rps: self.rps,
            burst: self.burst,
        }
    }
}

/// Header naming the execution a webhook call started.
pub const EXECUTION_HEADER: &str = "x-scriptbox-execution-id";

/// The run's input: `{ method, url, path, headers, query, body }`. `url` is
/// the public URL called, with its query; `body` is the parsed JSON when the
/// content type is JSON and it parses, else the text (`null` when empty).
pub fn request_input(
    method: &Method,
    url: &str,
    path: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    hide_authorization: bool,
) -> Value {
    let mut header_map: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = if hide_authorization && name == header::AUTHORIZATION {
            "[redacted]".to_owned()
        } else {
            String::from_utf8_lossy(value.as_bytes()).into_owned()
        };
        header_map
            .entry(name.as_str().to_owned())
            .and_modify(|existing| {
                existing.push_str(", ");
                existing.push_str(&value);
            })
            .or_insert(value);
    }
    let mut query: BTreeMap<String, Value> = BTreeMap::new();
    for (key, value) in url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()) {
        let value = Value::String(value.into_owned());
        match query.get_mut(key.as_ref()) {
            Some(Value::Array(values)) => values.push(value),
            Some(existing) => *existing = Value::Array(vec![existing.take(), value]),
            None => {
                query.insert(key.into_owned(), value);
            }
        }
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|mime| mime == "application/json" || mime.ends_with("+json"));
    let body = if body.is_empty() {
        Value::Null
    } else if let Some(parsed) = is_json
        .then(|| serde_json::from_slice::<Value>(body).ok())
        .flatten()
    {
        parsed
    } else {
        Value::String(String::from_utf8_lossy(body).into_owned())
    };
    json!({
        "method": method.as_str(),
        "url": url,
        "path": path,
        "headers": header_map,
        "query": query,
        "body": body,
    })
}
