//! Destinations may not point into the server's own networks: a webhook URL on loopback,
//! link-local (cloud metadata at 169.254.169.254), private, shared (CGNAT), unspecified,
//! multicast or broadcast addresses is refused, for IP literals and for every address a host
//! name resolves to, unless the server allows private destinations (`--allow-private-webhooks`).
//! The check runs when a rule is written (a clear 400) and again on every connection (the
//! sender's resolver), so a name that later resolves inward is refused too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::{Ipv4Net, Ipv6Net};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPolicy {
    pub allow_private: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GuardError {
    #[error("not a valid URL: {0}")]
    Invalid(String),
    #[error("the URL must use http or https, not {0}")]
    Scheme(String),
    #[error("the URL has no host")]
    NoHost,
    #[error("the URL must not carry a user name or password")]
    Credentials,
    #[error("{0} is a loopback, link-local, private or otherwise internal address; refused (the server allows such destinations only with --allow-private-webhooks)")]
    Private(IpAddr),
    #[error("{host} resolves to {ip}, a loopback, link-local, private or otherwise internal address; refused (the server allows such destinations only with --allow-private-webhooks)")]
    ResolvesPrivate { host: String, ip: IpAddr },
    #[error("{host} does not resolve: {error}")]
    Resolve { host: String, error: String },
}

fn internal_v4() -> [Ipv4Net; 13] {
    let n = |a, b, c, d, p| Ipv4Net::new(Ipv4Addr::new(a, b, c, d), p).expect("valid prefix");
    [
        n(0, 0, 0, 0, 8),       // "this network", unspecified
        n(10, 0, 0, 0, 8),      // private
        n(100, 64, 0, 0, 10),   // shared address space (CGNAT)
        n(127, 0, 0, 0, 8),     // loopback
        n(169, 254, 0, 0, 16),  // link-local (cloud metadata)
        n(172, 16, 0, 0, 12),   // private
        n(192, 0, 0, 0, 24),    // IETF protocol assignments
        n(192, 168, 0, 0, 16),  // private
        n(198, 18, 0, 0, 15),   // benchmarking
        n(224, 0, 0, 0, 4),     // multicast
        n(240, 0, 0, 0, 4),     // reserved, broadcast
        n(192, 88, 99, 0, 24),  // 6to4 relay anycast (deprecated)
        n(198, 51, 100, 0, 24), // documentation (TEST-NET-2)
    ]
}

fn internal_v6() -> [Ipv6Net; 5] {
    let n = |s: &str, p| Ipv6Net::new(s.parse().expect("valid address"), p).expect("valid prefix");
    [
        n("::", 128),    // unspecified
        n("::1", 128),   // loopback
        n("fc00::", 7),  // unique local (private)
        n("fe80::", 10), // link-local
        n("ff00::", 8),  // multicast
    ]
}

/// Whether an address is internal (refused unless private destinations are allowed).
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => internal_v4().iter().any(|n| n.contains(&v4)),
        IpAddr::V6(v6) => {
            // IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible forms reach IPv4 hosts.
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            if v6.segments()[..6] == [0, 0, 0, 0, 0, 0]
                && v6 != Ipv6Addr::LOCALHOST
                && v6 != Ipv6Addr::UNSPECIFIED
            {
                return is_internal(IpAddr::V4(Ipv4Addr::from(v6.to_bits() as u32)));
            }
            internal_v6().iter().any(|n| n.contains(&v6))
        }
    }
}

impl AddressPolicy {
    pub fn permits(&self, ip: IpAddr) -> Result<(), GuardError> {
        if !self.allow_private && is_internal(ip) {
            return Err(GuardError::Private(ip));
        }
        Ok(())
    }
}

/// Parses a destination URL and checks its scheme and host (IP literal); host names are
/// checked by [`check_url`].
pub fn parse_url(raw: &str) -> Result<url::Url, GuardError> {
    let url = url::Url::parse(raw).map_err(|e| GuardError::Invalid(e.to_string()))?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err(GuardError::Scheme(url.scheme().to_string()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(GuardError::Credentials);
    }
    match url.host() {
        None => Err(GuardError::NoHost),
        Some(_) => Ok(url),
    }
}

/// The whole check: the URL's form, and every address its host is (an IP literal) or resolves
/// to.
pub async fn check_url(raw: &str, policy: AddressPolicy) -> Result<url::Url, GuardError> {
    let url = parse_url(raw)?;
    let port = url.port_or_known_default().unwrap_or(443);
    match url.host() {
        Some(url::Host::Ipv4(ip)) => policy.permits(IpAddr::V4(ip))?,
        Some(url::Host::Ipv6(ip)) => policy.permits(IpAddr::V6(ip))?,
        Some(url::Host::Domain(host)) => {
            let addrs = resolve(host, port).await?;
            for a in addrs {
                if policy.permits(a.ip()).is_err() {
                    return Err(GuardError::ResolvesPrivate {
                        host: host.to_string(),
                        ip: a.ip(),
                    });
                }
            }
        }
        None => return Err(GuardError::NoHost),
    }
    Ok(url)
}

pub(crate) async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, GuardError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| GuardError::Resolve {
            host: host.to_string(),
            error: e.to_string(),
        })?
        .collect();
    if addrs.is_empty() {
        return Err(GuardError::Resolve {
            host: host.to_string(),
            error: "no addresses".into(),
        });
    }
    Ok(addrs)
}

/// The sender's resolver: a name resolves only to permitted addresses (DNS rebinding after the
/// rule was written is refused at connect time).
#[derive(Debug, Clone)]
pub(crate) struct GuardedResolver {
    pub(crate) policy: AddressPolicy,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs = resolve(&host, 0).await?;
            for a in &addrs {
                if policy.permits(a.ip()).is_err() {
                    return Err(Box::new(GuardError::ResolvesPrivate {
                        host: host.clone(),
                        ip: a.ip(),
                    })
                        as Box<dyn std::error::Error + Send + Sync>);
                }
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DENY: AddressPolicy = AddressPolicy {
        allow_private: false,
    };
    const ALLOW: AddressPolicy = AddressPolicy {
        allow_private: true,
    };

    #[tokio::test]
    async fn internal_literals_are_refused_unless_allowed() {
        for url in [
            "http://127.0.0.1:8080/hook",
            "http://[::1]/",
            "http://10.1.2.3/",
            "http://172.20.0.1/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://0.0.0.0/",
            "http://[::ffff:127.0.0.1]/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://100.64.0.1/",
        ] {
            let err = check_url(url, DENY).await.unwrap_err();
            assert!(matches!(err, GuardError::Private(_)), "{url}: {err}");
            assert!(check_url(url, ALLOW).await.is_ok(), "{url} allowed");
        }
        // Public addresses pass.
        assert!(check_url("https://8.8.8.8/x", DENY).await.is_ok());
        assert!(check_url("https://[2606:4700::1111]/", DENY).await.is_ok());
    }

    #[tokio::test]
    async fn names_resolving_inward_are_refused() {
        let err = check_url("http://localhost:9/hook", DENY)
            .await
            .unwrap_err();
        assert!(matches!(err, GuardError::ResolvesPrivate { .. }), "{err}");
        assert!(err.to_string().contains("--allow-private-webhooks"));
    }

    #[tokio::test]
    async fn malformed_urls_say_why() {
        assert!(
            matches!(check_url("ftp://example.com/", ALLOW).await, Err(GuardError::Scheme(s)) if s == "ftp")
        );
        assert!(matches!(
            check_url("not a url", ALLOW).await,
            Err(GuardError::Invalid(_))
        ));
        assert!(matches!(
            check_url("https://u:p@example.com/", ALLOW).await,
            Err(GuardError::Credentials)
        ));
    }
}
