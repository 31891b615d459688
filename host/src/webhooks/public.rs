//! Where webhooks are served: the public listener's base URL, and how a
//! request names its tenant there.
//!
//! `[webhooks] public_url` is the address the world reaches the public
//! listener at. Without `{tenant}` (the default, `http://<listen>`), tenants
//! share one origin and are told apart by the first path segment:
//! `<public_url>/<tenant>/<path>`. With `{tenant}` in the host
//! (`https://{tenant}.hooks.example.com`), each tenant has an origin of its
//! own and is told apart by the `Host` header: `<public_url>/<path>`.

/// How the public listener tells tenants apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routing {
    /// `/{tenant}/{path…}` on one shared origin.
    Path,
    /// `{prefix}{tenant}{suffix}` is the request's host (compared without
    /// the port, in lowercase).
    Host { prefix: String, suffix: String },
}

/// The parsed `public_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl {
    /// The URL without a trailing slash, `{tenant}` still in it.
    template: String,
    routing: Routing,
}

const PLACEHOLDER: &str = "{tenant}";

impl PublicUrl {
    /// Parses `public_url`; an empty one is `http://<listen>`.
    pub fn parse(public_url: &str, listen: &str) -> Result<Self, String> {
        let template = if public_url.is_empty() {
            format!("http://{listen}")
        } else {
            public_url.trim_end_matches('/').to_owned()
        };
        let invalid = |why: &str| format!("webhooks.public_url {public_url:?}: {why}");
        let Some((scheme, rest)) = template.split_once("://") else {
            return Err(invalid("must be an http:// or https:// URL"));
        };
        if scheme != "http" && scheme != "https" {
            return Err(invalid("must be an http:// or https:// URL"));
        }
        let (authority, path) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        if path.contains(PLACEHOLDER) || rest.matches(PLACEHOLDER).count() > 1 {
            return Err(invalid("{tenant} may appear once, in the host name only"));
        }
        if path.contains(['?', '#']) {
            return Err(invalid("must not have a query or fragment"));
        }
        // The sample URL (with a tenant name in place) must parse.
        let sample = template.replace(PLACEHOLDER, "tenant");
        let parsed = url::Url::parse(&sample).map_err(|e| invalid(&e.to_string()))?;
        let routing = match authority.split_once(PLACEHOLDER) {
            None => Routing::Path,
            Some((prefix, suffix)) => {
                let host = parsed.host_str().unwrap_or_default();
                if !host.contains("tenant") || prefix.contains('@') {
                    return Err(invalid("{tenant} must be part of the host name"));
                }
                // Ports are not compared: a proxy in front may change them.
                let suffix = match suffix.rsplit_once(':') {
                    Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
                    _ => suffix,
                };
                Routing::Host {
                    prefix: prefix.to_ascii_lowercase(),
                    suffix: suffix.to_ascii_lowercase(),
                }
            }
        };
        Ok(Self { template, routing })
    }

    pub fn routing(&self) -> &Routing {
        &self.routing
    }

    /// Where the public listener serves `path` of the tenant named `tenant`.
    pub fn webhook_url(&self, tenant: &str, path: &str) -> String {
        match self.routing {
            Routing::Path => format!("{}/{tenant}{path}", self.template),
            Routing::Host { .. } => format!("{}{path}", self.template.replace(PLACEHOLDER, tenant)),
        }
    }

    /// With host routing, the tenant a `Host` header names, if it names one.
    pub fn tenant_from_host(&self, host: &str) -> Option<String> {
        let Routing::Host { prefix, suffix } = &self.routing else {
            return None;
        };
        let host = host.to_ascii_lowercase();
        // Drop the port, but not the colons of an IPv6 literal.
        let host = match host.rsplit_once(':') {
            Some((name, port))
                if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) =>
            {
                name.to_owned()
            }
            _ => host,
        };
        let tenant = host
            .strip_prefix(prefix.as_str())?
            .strip_suffix(suffix.as_str())?;
        let slug = !tenant.is_empty()
            && tenant
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        slug.then(|| tenant.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_path_routing_on_the_listen_address() {
        let url = PublicUrl::parse("", "127.0.0.1:8081").unwrap();
        assert_eq!(url.routing(), &Routing::Path);
        assert_eq!(
            url.webhook_url("acme", "/hooks/in"),
            "http://127.0.0.1:8081/acme/hooks/in"
        );
        let url = PublicUrl::parse("https://hooks.example.com/base/", "x").unwrap();
        assert_eq!(
            url.webhook_url("acme", "/in"),
            "https://hooks.example.com/base/acme/in"
        );
    }

    #[test]
    fn a_tenant_in_the_host_routes_by_host() {
        let url = PublicUrl::parse("https://{tenant}.hooks.example.com:8443", "x").unwrap();
        assert_eq!(
            url.webhook_url("acme", "/in"),
            "https://acme.hooks.example.com:8443/in"
        );
        assert_eq!(
            url.tenant_from_host("ACME.hooks.example.com:8443")
                .as_deref(),
            Some("acme")
        );
        assert_eq!(
            url.tenant_from_host("acme.hooks.example.com").as_deref(),
            Some("acme")
        );
        for other in [
            "hooks.example.com",
            ".hooks.example.com",
            "a.b.hooks.example.com",
            "acme.hooks.example.com.evil",
            "acme_1.hooks.example.com",
            "[::1]:8443",
        ] {
            assert_eq!(url.tenant_from_host(other), None, "{other}");
        }
    }

    #[test]
    fn bad_public_urls_are_refused_with_the_key_named() {
        for bad in [
            "ftp://x",
            "hooks.example.com",
            "https://x/{tenant}",
            "https://{tenant}.{tenant}.x",
            "https://x/?a=1",
            "https://{tenant}@x",
        ] {
            let error = PublicUrl::parse(bad, "x").unwrap_err();
            assert!(error.starts_with("webhooks.public_url"), "{bad}: {error}");
        }
    }
}
