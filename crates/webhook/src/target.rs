//! A webhook's URL, parsed and checked: https (http only with private targets allowed), no credentials, and
//! the host resolved here to addresses that pass the SSRF guard ([`crate::ssrf`]).

use std::net::{IpAddr, SocketAddr};

use crate::error::WebhookError;
use crate::ssrf;

/// A parsed webhook URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Whether TLS is used (`https`).
    pub tls: bool,
    /// The host as written (a name, or an IP literal as the URL parser normalised it, without brackets).
    pub host: String,
    /// The host as parsed: an IP literal is known without resolving.
    pub literal: Option<IpAddr>,
    /// The port.
    pub port: u16,
    /// Path and query, sent in the request line.
    pub path_and_query: String,
    /// The `Host` header's value.
    pub authority: String,
    /// Whether private targets (and plain http) are allowed.
    pub allow_private: bool,
}

impl Target {
    /// Parses `url` for a connector that does (`allow_private`) or does not allow private targets. IP literals
    /// in any form the WHATWG URL standard accepts (`0x7f.1`, `2130706433`, `[::ffff:7f00:1]`) are
    /// normalised first, then checked.
    pub fn parse(url: &str, allow_private: bool) -> Result<Self, WebhookError> {
        let bad = |reason: &str| WebhookError::BadUrl {
            reason: reason.to_owned(),
        };
        let parsed = url::Url::parse(url).map_err(|e| bad(&format!("not a URL ({e})")))?;
        let tls = match parsed.scheme() {
            "https" => true,
            "http" if allow_private => false,
            "http" => {
                return Err(bad(
                    "http:// is refused: use https:// (plain http only with --webhook-allow-private, for local development)",
                ))
            }
            other => return Err(bad(&format!("scheme {other}:// is not http(s)"))),
        };
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(bad(
                "credentials in the URL are refused: the receiver authenticates requests by their signature",
            ));
        }
        let (host, literal) = match parsed.host() {
            Some(url::Host::Domain(d)) => (d.to_owned(), None),
            Some(url::Host::Ipv4(ip)) => (ip.to_string(), Some(IpAddr::V4(ip))),
            Some(url::Host::Ipv6(ip)) => (ip.to_string(), Some(IpAddr::V6(ip))),
            None => return Err(bad("no host")),
        };
        let port = parsed
            .port_or_known_default()
            .ok_or_else(|| bad("no port"))?;
        let target = Self {
            tls,
            authority: match parsed.port() {
                Some(p) if literal.is_some_and(|ip| ip.is_ipv6()) => format!("[{host}]:{p}"),
                Some(p) => format!("{host}:{p}"),
                None if literal.is_some_and(|ip| ip.is_ipv6()) => format!("[{host}]"),
                None => host.clone(),
            },
            host,
            literal,
            port,
            path_and_query: match parsed.query() {
                Some(q) => format!("{}?{q}", parsed.path()),
                None => parsed.path().to_owned(),
            },
            allow_private,
        };
        if let Some(ip) = literal {
            target.check(ip)?;
        }
        Ok(target)
    }

    /// The URL for messages (no query: it may hold a token).
    pub fn display(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        let path = self.path_and_query.split('?').next().unwrap_or_default();
        format!("{scheme}://{}{path}", self.authority)
    }

    fn check(&self, ip: IpAddr) -> Result<(), WebhookError> {
        ssrf::check(ip, self.allow_private).map_err(|reason| WebhookError::Forbidden {
            host: self.host.clone(),
            ip,
            reason,
        })
    }

    /// The address to connect to: the literal, or the host resolved now. Every address the name resolves
    /// to must pass the guard (a name that also points inside is refused, whichever address would be used).
    pub async fn resolve(&self) -> Result<SocketAddr, WebhookError> {
        if let Some(ip) = self.literal {
            self.check(ip)?;
            return Ok(SocketAddr::new(ip, self.port));
        }
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| WebhookError::Resolve {
                host: self.host.clone(),
                source: e,
            })?
            .collect();
        for addr in &addrs {
            self.check(addr.ip())?;
        }
        addrs.first().copied().ok_or_else(|| WebhookError::Resolve {
            host: self.host.clone(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no address"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssrf::Forbidden;

    fn forbidden(url: &str) -> Option<Forbidden> {
        match Target::parse(url, false) {
            Err(WebhookError::Forbidden { reason, .. }) => Some(reason),
            _ => None,
        }
    }

    #[test]
    fn ip_literals_in_every_spelling_are_checked() {
        assert_eq!(
            forbidden("https://169.254.169.254/latest/meta-data/"),
            Some(Forbidden::LinkLocal)
        );
        assert_eq!(
            forbidden("https://0xa9.0xfe.0xa9.0xfe/"),
            Some(Forbidden::LinkLocal)
        );
        assert_eq!(forbidden("https://2852039166/"), Some(Forbidden::LinkLocal));
        assert_eq!(forbidden("https://0x7f.1/"), Some(Forbidden::Loopback));
        assert_eq!(forbidden("https://[::1]:8443/x"), Some(Forbidden::Loopback));
        assert_eq!(
            forbidden("https://[::ffff:169.254.169.254]/"),
            Some(Forbidden::LinkLocal)
        );
        assert_eq!(
            forbidden("https://[::ffff:a9fe:a9fe]/"),
            Some(Forbidden::LinkLocal)
        );
        assert_eq!(forbidden("https://0.0.0.0/"), Some(Forbidden::Unspecified));
        assert_eq!(forbidden("https://10.1.2.3/"), Some(Forbidden::Private));
        assert_eq!(forbidden("https://8.8.8.8/"), None);
    }

    #[test]
    fn http_and_credentials_are_refused_unless_private_is_allowed() {
        for url in [
            "http://example.com/hook",
            "ftp://example.com/",
            "https://u:p@example.com/",
            "not a url",
        ] {
            assert!(
                matches!(Target::parse(url, false), Err(WebhookError::BadUrl { .. })),
                "{url}"
            );
        }
        let t =
            Target::parse("http://127.0.0.1:9000/in?x=1", true).unwrap_or_else(|e| panic!("{e}"));
        assert!(!t.tls);
        assert_eq!(
            (t.port, t.path_and_query.as_str(), t.authority.as_str()),
            (9000, "/in?x=1", "127.0.0.1:9000")
        );
        assert_eq!(t.display(), "http://127.0.0.1:9000/in");
        let t = Target::parse("https://Example.COM/hook", false).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (t.host.as_str(), t.port, t.literal),
            ("example.com", 443, None)
        );
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_at_resolution() {
        let t = Target::parse("https://localhost:8443/", false).unwrap_or_else(|e| panic!("{e}"));
        match t.resolve().await {
            Err(WebhookError::Forbidden { reason, .. }) => assert_eq!(reason, Forbidden::Loopback),
            other => panic!("expected a refusal, got {other:?}"),
        }
        let allowed =
            Target::parse("http://localhost:8443/", true).unwrap_or_else(|e| panic!("{e}"));
        let addr = allowed.resolve().await.unwrap_or_else(|e| panic!("{e}"));
        assert!(addr.ip().is_loopback());
    }
}
