//! `fetch` for scripts: the HTTP client and the policy that says where it may
//! go.
//!
//! By default a script may reach only public addresses: loopback, private,
//! link-local (which includes cloud metadata at 169.254.169.254), CGNAT,
//! unique-local, multicast and unspecified addresses are refused, whether
//! written as a literal or reached through DNS. The check runs in the DNS
//! resolver the client connects with, so a name cannot resolve to one address
//! when checked and another when used. Hosts on the allow-list skip the check.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect;
use serde::{Deserialize, Serialize};

/// `[fetch]` in the config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FetchConfig {
    /// Hosts a script may reach even at a private or loopback address:
    /// `api.internal`, `*.corp.example`, `127.0.0.1`, `localhost`.
    pub allow: Vec<String>,
    /// Hosts a script may never reach, whatever they resolve to.
    pub deny: Vec<String>,
    /// Per-request timeout in ms (a run's deadline also bounds it).
    pub timeout_ms: u64,
    /// Largest response body in bytes.
    pub max_response_bytes: usize,
    /// Redirects followed before giving up.
    pub max_redirects: usize,
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            deny: Vec::new(),
            timeout_ms: 10_000,
            max_response_bytes: 5 << 20,
            max_redirects: 5,
        }
    }
}

#[derive(Debug, Clone)]
struct HostRules {
    allow: Vec<String>,
    deny: Vec<String>,
}

impl HostRules {
    fn matches(patterns: &[String], host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        patterns.iter().any(|p| match p.strip_prefix("*.") {
            Some(suffix) => host.ends_with(&format!(".{suffix}")),
            None => host == p,
        })
    }

    fn allowed(&self, host: &str) -> bool {
        Self::matches(&self.allow, host)
    }

    fn denied(&self, host: &str) -> bool {
        Self::matches(&self.deny, host)
    }
}

/// Whether an address is one a script may not reach unless allow-listed.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal_v4(v4);
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local, fc00::/7
                || (first & 0xffc0) == 0xfe80 // link local, fe80::/10
                || (first == 0x64 && v6.segments()[1] == 0xff9b) // NAT64 can reach v4 internals
                || v6 == Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 1)
        }
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || a >= 240 // reserved
}

/// The client's resolver: looks names up and drops internal addresses.
struct PolicyResolver {
    rules: Arc<HostRules>,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let rules = self.rules.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            if rules.denied(&host) {
                return Err(format!("{host} is on the deny-list").into());
            }
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if rules.allowed(&host) {
                return Ok(Box::new(found.into_iter()) as Addrs);
            }
            let public: Vec<SocketAddr> =
                found.into_iter().filter(|a| !is_internal(a.ip())).collect();
            if public.is_empty() {
                return Err(format!(
                    "{host} resolves only to internal addresses (loopback, private, link-local); \
                     allow-list it in [fetch] to reach it"
                )
                .into());
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// Checks a URL before a request or a redirect: scheme, deny-list, and
/// internal IP literals (names are checked by the resolver).
fn check_url(rules: &HostRules, url: &reqwest::Url) -> Result<(), String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "only http and https URLs can be fetched, not {}:",
            url.scheme()
        ));
    }
    let host = url.host_str().ok_or("the URL has no host")?;
    if rules.denied(host) {
        return Err(format!("{host} is on the deny-list"));
    }
    let literal = match url.host() {
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        _ => None,
    };
    if let Some(ip) = literal
        && is_internal(ip)
        && !rules.allowed(host)
    {
        return Err(format!(
            "{ip} is an internal address (loopback, private, link-local or metadata); \
             allow-list it in [fetch] to reach it"
        ));
    }
    Ok(())
}

/// One outbound request, as the guest asked for it.
#[derive(Debug)]
pub struct FetchRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

#[derive(Debug)]
pub struct FetchResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The HTTP client scripts use, shared by every run.
pub struct Fetcher {
    client: reqwest::Client,
    rules: Arc<HostRules>,
    config: FetchConfig,
}

impl Fetcher {
    pub fn new(config: FetchConfig) -> anyhow::Result<Self> {
        let lower = |v: &[String]| v.iter().map(|h| h.to_ascii_lowercase()).collect();
        let rules = Arc::new(HostRules {
            allow: lower(&config.allow),
            deny: lower(&config.deny),
        });
        let redirect_rules = rules.clone();
        let max_redirects = config.max_redirects;
        let client = reqwest::Client::builder()
            .no_proxy()
            .user_agent(concat!("scriptbox/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(PolicyResolver {
                rules: rules.clone(),
            }))
            .redirect(redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= max_redirects {
                    return attempt.error(format!("more than {max_redirects} redirects"));
                }
                match check_url(&redirect_rules, attempt.url()) {
                    Ok(()) => attempt.follow(),
                    Err(why) => attempt.error(why),
                }
            }))
            .connect_timeout(Duration::from_millis(config.timeout_ms))
            .build()?;
        Ok(Self {
            client,
            rules,
            config,
        })
    }

    /// Performs the request within `budget`; errors are messages for the
    /// script.
    pub async fn fetch(
        &self,
        request: FetchRequest,
        budget: Duration,
    ) -> Result<FetchResponse, String> {
        let url = reqwest::Url::parse(&request.url)
            .map_err(|e| format!("invalid URL {:?}: {e}", request.url))?;
        check_url(&self.rules, &url)?;
        let method = reqwest::Method::from_bytes(request.method.as_bytes())
            .map_err(|_| format!("invalid HTTP method {:?}", request.method))?;
        let timeout = budget.min(Duration::from_millis(self.config.timeout_ms));
        let mut builder = self.client.request(method, url).timeout(timeout);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        if let Some(body) = request.body {
            builder = builder.body(body);
        }
        let response = builder.send().await.map_err(describe)?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let limit = self.config.max_response_bytes;
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(describe)?;
            if body.len() + chunk.len() > limit {
                return Err(format!("the response body exceeds {limit} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(FetchResponse {
            status,
            headers,
            body,
        })
    }
}

/// reqwest's errors nest their cause; scripts see the whole chain.
fn describe(error: reqwest::Error) -> String {
    if error.is_timeout() {
        return "the request timed out".into();
    }
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_recognised() {
        for internal in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
        ] {
            assert!(is_internal(internal.parse().unwrap()), "{internal}");
        }
        for public in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(!is_internal(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn host_patterns_match_exactly_or_by_suffix() {
        let rules = HostRules {
            allow: vec!["localhost".into(), "*.corp.example".into(), "::1".into()],
            deny: vec![],
        };
        assert!(rules.allowed("LOCALHOST"));
        assert!(rules.allowed("api.corp.example"));
        assert!(!rules.allowed("corp.example"));
        assert!(!rules.allowed("evilcorp.example"));
        assert!(rules.allowed("[::1]"));
    }
}
