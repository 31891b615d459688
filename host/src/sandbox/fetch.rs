//! `fetch` for scripts: the HTTP client and the policy that says where it may
//! go.
//!
//! By default a script may reach only globally reachable addresses: every
//! special-purpose block that is not (loopback, private, link-local with
//! cloud metadata at 169.254.169.254, CGNAT, documentation, benchmarking,
//! unique-local, multicast, reserved, IPv4 inside IPv6 forms judged by the
//! IPv4 address) and this machine's own addresses are refused, whether
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

/// Whether an address is one a script may not reach unless allow-listed:
/// every block of the IANA IPv4 and IPv6 special-purpose address registries
/// that is not globally reachable, multicast, the reserved 240.0.0.0/4, and
/// this machine's own addresses. IPv6 forms that carry an IPv4 address
/// (mapped, compatible, translated, NAT64, 6to4) are judged by that address.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => is_internal_v4(v4),
            None => in_blocks(u128::from(v6), 128, SPECIAL_V6) || is_local(IpAddr::V6(v6)),
        },
    }
}

/// IPv4 blocks that are not globally reachable (IANA IPv4 Special-Purpose
/// Address Registry, plus multicast and broadcast), as (network, prefix).
const SPECIAL_V4: &[(u32, u32)] = &[
    (0x0000_0000, 8),  // 0.0.0.0/8 "this network"
    (0x0a00_0000, 8),  // 10.0.0.0/8 private
    (0x6440_0000, 10), // 100.64.0.0/10 shared address space (CGNAT)
    (0x7f00_0000, 8),  // 127.0.0.0/8 loopback
    (0xa9fe_0000, 16), // 169.254.0.0/16 link local (cloud metadata)
    (0xac10_0000, 12), // 172.16.0.0/12 private
    (0xc000_0000, 24), // 192.0.0.0/24 IETF protocol assignments
    (0xc000_0200, 24), // 192.0.2.0/24 documentation (TEST-NET-1)
    (0xc058_6300, 24), // 192.88.99.0/24 6to4 relay anycast (deprecated)
    (0xc0a8_0000, 16), // 192.168.0.0/16 private
    (0xc612_0000, 15), // 198.18.0.0/15 benchmarking
    (0xc633_6400, 24), // 198.51.100.0/24 documentation (TEST-NET-2)
    (0xcb00_7100, 24), // 203.0.113.0/24 documentation (TEST-NET-3)
    (0xe000_0000, 4),  // 224.0.0.0/4 multicast
    (0xf000_0000, 4),  // 240.0.0.0/4 reserved, and 255.255.255.255 broadcast
];

/// IPv6 blocks that are not globally reachable (IANA IPv6 Special-Purpose
/// Address Registry, plus multicast and deprecated site-local). Blocks
/// that embed an IPv4 address are handled by [`embedded_v4`] first.
const SPECIAL_V6: &[(u128, u32)] = &[
    (0, 128),                          // ::/128 unspecified
    (1, 128),                          // ::1/128 loopback
    (0x0064_ff9b_0001 << 80, 48),      // 64:ff9b:1::/48 local-use NAT64
    (0x0100 << 112, 64),               // 100::/64 discard-only
    (0x0100_0000_0000_0001 << 64, 64), // 100:0:0:1::/64 dummy prefix
    (0x2001 << 112, 23),               // 2001::/23 IETF protocol assignments (Teredo, ORCHID, …)
    (0x2001_0db8 << 96, 32),           // 2001:db8::/32 documentation
    (0x3fff << 112, 20),               // 3fff::/20 documentation
    (0x5f00 << 112, 16),               // 5f00::/16 segment routing SIDs
    (0xfc00 << 112, 7),                // fc00::/7 unique local
    (0xfe80 << 112, 10),               // fe80::/10 link local
    (0xfec0 << 112, 10),               // fec0::/10 site local (deprecated)
    (0xff00 << 112, 8),                // ff00::/8 multicast
];

/// IPv6 forms that carry an IPv4 address, as (network, prefix, where the
/// IPv4 address starts counting from the right, in bits).
const EMBEDDING_V6: &[(u128, u32, u32)] = &[
    (0xffff << 32, 96, 0),      // ::ffff:0:0/96 IPv4-mapped
    (0xffff_0000 << 32, 96, 0), // ::ffff:0:0:0/96 IPv4-translated
    (0, 96, 0),                 // ::/96 IPv4-compatible (deprecated)
    (0x0064_ff9b << 96, 96, 0), // 64:ff9b::/96 NAT64 well-known prefix
    (0x2002 << 112, 16, 80),    // 2002::/16 6to4
];

fn in_blocks<T>(addr: T, bits: u32, blocks: &[(T, u32)]) -> bool
where
    T: Copy + PartialEq + std::ops::Shr<u32, Output = T>,
{
    blocks.iter().any(|&(network, prefix)| {
        let shift = bits - prefix;
        // A shift by the full width is not defined; /0 matches everything.
        prefix == 0 || (addr >> shift) == (network >> shift)
    })
}

/// The IPv4 address an IPv6 address carries, for the forms that carry one
/// (`::` and `::1` are IPv6's own and are left to the IPv6 table).
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(v6);
    if bits <= 1 {
        return None;
    }
    EMBEDDING_V6.iter().find_map(|&(network, prefix, offset)| {
        let shift = 128 - prefix;
        ((bits >> shift) == (network >> shift))
            .then(|| Ipv4Addr::from(((bits >> offset) & 0xffff_ffff) as u32))
    })
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    in_blocks(u32::from(ip), 32, SPECIAL_V4) || is_local(IpAddr::V4(ip))
}

/// Whether `ip` is assigned to one of this machine's interfaces (its own
/// public address reaches services bound to all interfaces).
fn is_local(ip: IpAddr) -> bool {
    local_addresses().contains(&ip)
}

/// This machine's interface addresses, read with getifaddrs(3) at most once
/// a second.
fn local_addresses() -> Arc<Vec<IpAddr>> {
    use std::sync::Mutex;
    use std::time::Instant;
    static CACHE: Mutex<Option<(Instant, Arc<Vec<IpAddr>>)>> = Mutex::new(None);
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((at, addrs)) = cache.as_ref()
        && at.elapsed() < Duration::from_secs(1)
    {
        return addrs.clone();
    }
    let addrs = Arc::new(read_interface_addresses());
    *cache = Some((Instant::now(), addrs.clone()));
    addrs
}

fn read_interface_addresses() -> Vec<IpAddr> {
    let mut found = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list we only read, and
    // free with freeifaddrs exactly once.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return found;
        }
        let mut entry = list;
        while !entry.is_null() {
            let addr = (*entry).ifa_addr;
            if !addr.is_null() {
                match i32::from((*addr).sa_family) {
                    libc::AF_INET => {
                        let v4 = &*(addr as *const libc::sockaddr_in);
                        found.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr))));
                    }
                    libc::AF_INET6 => {
                        let v6 = &*(addr as *const libc::sockaddr_in6);
                        found.push(IpAddr::V6(Ipv6Addr::from(v6.sin6_addr.s6_addr)));
                    }
                    _ => {}
                }
            }
            entry = (*entry).ifa_next;
        }
        libc::freeifaddrs(list);
    }
    found
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
                    "{host} resolves only to addresses scripts may not reach (loopback, private, \
                     link-local, reserved or this machine's own); allow-list it in [fetch] to reach it"
                )
                .into());
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// What `config` decides for `url` before any connection: a refusal
/// names why. Names that resolve to internal addresses are refused later,
/// by the resolver, on their addresses.
pub fn url_policy(config: &FetchConfig, url: &str) -> Result<(), String> {
    let lower = |v: &[String]| v.iter().map(|h| h.to_ascii_lowercase()).collect();
    let rules = HostRules {
        allow: lower(&config.allow),
        deny: lower(&config.deny),
    };
    let url = reqwest::Url::parse(url).map_err(|e| format!("invalid URL: {e}"))?;
    check_url(&rules, &url)
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
            "{ip} is an address scripts may not reach (loopback, private, link-local, \
             reserved or this machine's own); allow-list it in [fetch] to reach it"
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
    fn special_purpose_addresses_are_refused() {
        for internal in [
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.1",
            "172.16.5.4",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "0.1.2.3",
            "100.64.0.1",
            "100.127.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.88.99.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fec0::1",
            "fd00:ec2::254",
            "fc00::1",
            "ff02::1",
            "100::1",
            "2001::1",
            "2001:db8::1",
            "3fff::1",
            "5f00::1",
            "64:ff9b:1::1",
            // IPv4 inside IPv6, judged by the IPv4 address.
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::127.0.0.1",
            "::ffff:0:127.0.0.1",
            "64:ff9b::127.0.0.1",
            "64:ff9b::192.168.0.1",
            "2002:7f00:1::",
            "2002:a9fe:a9fe::1",
        ] {
            assert!(is_internal(internal.parse().unwrap()), "{internal}");
        }
        for public in [
            "93.184.216.34",
            "1.1.1.1",
            "8.8.8.8",
            "100.128.0.1",
            "172.32.0.1",
            "192.0.3.1",
            "198.20.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001::1",
            "::ffff:1.1.1.1",
            "64:ff9b::1.1.1.1",
            "2002:0101:0101::1",
        ] {
            assert!(!is_internal(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn this_machines_own_addresses_are_refused() {
        let own = read_interface_addresses();
        assert!(own.iter().any(|ip| ip.is_loopback()), "{own:?}");
        for ip in own {
            assert!(is_internal(ip), "{ip}");
        }
    }

    #[test]
    fn literals_and_redirect_targets_are_checked_before_any_connection() {
        let rules = HostRules {
            allow: vec![],
            deny: vec!["evil.example".into()],
        };
        for refused in [
            "http://192.0.2.1/",
            "http://198.18.0.1/",
            "http://[::127.0.0.1]/",
            "http://[::ffff:0:127.0.0.1]/",
            "http://[64:ff9b::a9fe:a9fe]/latest/meta-data",
            "http://evil.example/",
            "file:///etc/passwd",
        ] {
            let url = reqwest::Url::parse(refused).unwrap();
            assert!(check_url(&rules, &url).is_err(), "{refused}");
        }
        let url = reqwest::Url::parse("https://93.184.216.34/").unwrap();
        assert!(check_url(&rules, &url).is_ok());
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
