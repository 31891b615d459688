//! The `scriptbox` command line as a client of a running node's API:
//! `login`, `deploy`, `scripts`, `invoke`, `executions`, `logs`.
//!
//! It speaks only HTTP to the admin listener, with the tenant's API key, so
//! it works the same against a node on this machine or another one. Where
//! it connects and with which key: `--url` / `--api-key`, else
//! `SCRIPTBOX_URL` / `SCRIPTBOX_API_KEY`, else what `scriptbox login` saved
//! ([`login`]).

pub mod commands;
pub mod login;
pub mod sse;
mod table;

use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;

pub use login::Credentials;
pub use table::render as render_table;

/// A failed call, with what to try next.
#[derive(Debug)]
pub enum ClientError {
    /// No URL or key from flags, environment or a saved login.
    NotLoggedIn,
    /// The server could not be reached.
    Unreachable { url: String, error: String },
    /// The server answered with an error status.
    Status {
        status: u16,
        message: String,
        /// Seconds from `Retry-After`, on a 429.
        retry_after: Option<String>,
    },
    /// Something else: a bad reply, a file that cannot be read, bad input.
    Other(String),
}

impl ClientError {
    /// The process exit code: 2 for what the user must fix before trying
    /// again (bad input, no login), 1 for the rest.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::NotLoggedIn => 2,
            ClientError::Status { status: 400, .. } => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::NotLoggedIn => write!(
                f,
                "no server to talk to: run `scriptbox login URL` (it asks for the API key), \
                 or set SCRIPTBOX_URL and SCRIPTBOX_API_KEY"
            ),
            ClientError::Unreachable { url, error } => write!(
                f,
                "cannot reach {url}: {error}\n\
                 hint: is `scriptbox serve` running there? The URL is the admin listener \
                 (default http://127.0.0.1:8080)"
            ),
            ClientError::Status {
                status: 401,
                message,
                ..
            } => write!(
                f,
                "the server refused the API key (401: {message})\n\
                 hint: is this key from the database this server uses? `scriptbox tenant create` \
                 prints the database it wrote to; `scriptbox tenant rotate-key NAME` gives a \
                 tenant a new key; `scriptbox login URL` saves it"
            ),
            ClientError::Status {
                status: 429,
                message,
                retry_after,
            } => {
                write!(f, "{message} (429)")?;
                if let Some(seconds) = retry_after {
                    write!(f, "\nhint: try again in {seconds} s")?;
                }
                Ok(())
            }
            ClientError::Status {
                status, message, ..
            } if *status >= 500 => write!(f, "the server failed ({status}): {message}"),
            ClientError::Status { message, .. } => f.write_str(message),
            ClientError::Other(message) => f.write_str(message),
        }
    }
}

pub type ClientResult<T> = Result<T, ClientError>;

/// A connection to one node's API as one tenant.
pub struct Client {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl Client {
    pub fn new(credentials: Credentials) -> ClientResult<Self> {
        let base = credentials.url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::Other(format!(
                "invalid server URL {base:?}: it starts with http:// or https://"
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("scriptbox/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Other(format!("cannot make an HTTP client: {e}")))?;
        Ok(Self {
            base,
            key: credentials.api_key,
            http,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key)
    }

    /// Sends `request`; the reply when its status is a success.
    async fn send(&self, request: reqwest::RequestBuilder) -> ClientResult<reqwest::Response> {
        let response = request.send().await.map_err(|e| self.unreachable(e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| {
                if body.is_empty() {
                    format!("HTTP {status}")
                } else {
                    body
                }
            });
        Err(ClientError::Status {
            status,
            message,
            retry_after,
        })
    }

    fn unreachable(&self, error: reqwest::Error) -> ClientError {
        // The innermost cause says it best ("Connection refused").
        let mut source: &dyn std::error::Error = &error;
        while let Some(inner) = source.source() {
            source = inner;
        }
        ClientError::Unreachable {
            url: self.base.clone(),
            error: source.to_string(),
        }
    }

    async fn json<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> ClientResult<T> {
        let response = self.send(request).await?;
        let text = response.text().await.map_err(|e| self.unreachable(e))?;
        serde_json::from_str(&text).map_err(|e| {
            ClientError::Other(format!("the server's reply is not what I expected: {e}"))
        })
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> ClientResult<T> {
        self.json(self.request(reqwest::Method::GET, path)).await
    }

    pub async fn send_json<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
    ) -> ClientResult<T> {
        let request = self
            .request(method, path)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        self.json(request).await
    }

    /// A Server-Sent Events stream from `path`.
    pub async fn events(&self, path: &str) -> ClientResult<sse::Events> {
        let request = self
            .request(reqwest::Method::GET, path)
            .header(reqwest::header::ACCEPT, "text/event-stream");
        let response = self.send(request).await?;
        Ok(sse::Events::new(response))
    }
}

/// `s` for a query string.
pub(crate) fn query_value(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
