//! Who sent a request: the connection's peer, or — when the peer is one of the configured
//! trusted proxies (`--trusted-proxies`, e.g. nginx in front) — the client the proxies name in
//! `X-Forwarded-For`.
//!
//! The header is believed only as far as trusted hops vouch for it: read from the right (the
//! entry the nearest proxy appended), trusted addresses are skipped, and the first address not
//! trusted is the client. Whatever a client wrote into the header itself stands left of that
//! and is never reached. Without trusted proxies the header is ignored altogether.
//!
//! Handlers take [`ClientAddr`] as an extractor (logs, per-address limits).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;

use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::serve::IncomingStream;
use ipnet::IpNet;

use crate::state::AppState;

/// The address ranges whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses `CIDR,CIDR,…` (a bare address is a single host: `127.0.0.1` = `127.0.0.1/32`).
    /// The error names the entry that is not an address range.
    pub fn parse(list: &str) -> Result<TrustedProxies, String> {
        let mut nets = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let net = IpNet::from_str(entry)
                .or_else(|_| IpAddr::from_str(entry).map(IpNet::from))
                .map_err(|_| {
                    format!("{entry:?} is not an address or CIDR range (e.g. 10.0.0.0/8, ::1)")
                })?;
            nets.push(net.trunc());
        }
        Ok(TrustedProxies(nets))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }
}

impl std::fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list: Vec<String> = self.0.iter().map(IpNet::to_string).collect();
        f.write_str(&list.join(","))
    }
}

/// The peer address of a connection, recorded by [`crate::serve`] for every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

impl Connected<IncomingStream<'_, tokio::net::TcpListener>> for PeerAddr {
    fn connect_info(stream: IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, crate::tls::TlsListener>> for PeerAddr {
    fn connect_info(stream: IncomingStream<'_, crate::tls::TlsListener>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

/// The client of a request, as far as this server can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr {
    /// The client's address (`0.0.0.0` when the router runs without connection info, as in
    /// in-process tests).
    pub ip: IpAddr,
    /// Whether the client's connection is encrypted: this server's own TLS, or a trusted
    /// proxy that says `X-Forwarded-Proto: https`.
    pub https: bool,
}

impl ClientAddr {
    /// The client of a request that came from `peer` with `headers`.
    pub fn resolve(
        peer: Option<SocketAddr>,
        headers: &HeaderMap,
        trusted: &TrustedProxies,
        tls: bool,
    ) -> ClientAddr {
        let Some(peer) = peer else {
            return ClientAddr {
                ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                https: tls,
            };
        };
        let peer_ip = peer.ip().to_canonical();
        if !trusted.contains(peer_ip) {
            return ClientAddr {
                ip: peer_ip,
                https: tls,
            };
        }
        let https =
            tls || forwarded_proto(headers).is_some_and(|p| p.eq_ignore_ascii_case("https"));
        // Every X-Forwarded-For header, in order, as one list.
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .collect();
        let mut client = peer_ip;
        for hop in hops.iter().rev() {
            match parse_hop(hop) {
                Some(ip) => {
                    client = ip;
                    if !trusted.contains(ip) {
                        break;
                    }
                }
                // Garbage where an address should be: the last hop that vouched is as far as
                // the chain can be followed.
                None => break,
            }
        }
        ClientAddr { ip: client, https }
    }
}

/// The last `X-Forwarded-Proto` value (the nearest proxy's).
fn forwarded_proto(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all("x-forwarded-proto")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .next_back()
}

/// One `X-Forwarded-For` entry: an address, or an address with a port (`1.2.3.4:5678`,
/// `[2001:db8::1]:443`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    IpAddr::from_str(hop)
        .or_else(|_| SocketAddr::from_str(hop).map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<PeerAddr>>()
            .map(|ConnectInfo(PeerAddr(addr))| *addr);
        Ok(ClientAddr::resolve(
            peer,
            &parts.headers,
            &state.config.trusted_proxies,
            state.config.tls,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    fn peer(ip: &str) -> Option<SocketAddr> {
        Some(SocketAddr::new(ip.parse().unwrap(), 40000))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_ranges_and_names_a_bad_entry() {
        let t = TrustedProxies::parse(" 10.0.0.0/8, 127.0.0.1 ,::1,").unwrap();
        assert_eq!(t.to_string(), "10.0.0.0/8,127.0.0.1/32,::1/128");
        assert!(t.contains(ip("10.200.3.4")));
        assert!(t.contains(ip("::ffff:127.0.0.1")), "IPv4-mapped peers");
        assert!(!t.contains(ip("127.0.0.2")));
        assert!(TrustedProxies::parse("").unwrap().is_empty());
        let err = TrustedProxies::parse("10.0.0.0/8,nginx").unwrap_err();
        assert!(err.contains("\"nginx\""), "{err}");
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
    }

    #[test]
    fn the_header_is_ignored_from_an_untrusted_peer() {
        let trusted = TrustedProxies::parse("127.0.0.1").unwrap();
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
        ]);
        let c = ClientAddr::resolve(peer("198.51.100.7"), &h, &trusted, false);
        assert_eq!(
            c,
            ClientAddr {
                ip: ip("198.51.100.7"),
                https: false
            }
        );
        // No trusted proxies at all: never believed.
        let c = ClientAddr::resolve(peer("127.0.0.1"), &h, &TrustedProxies::default(), false);
        assert_eq!(c.ip, ip("127.0.0.1"));
    }

    #[test]
    fn a_trusted_proxy_names_the_client_and_spoofed_entries_stay_unreached() {
        let trusted = TrustedProxies::parse("10.0.0.0/8").unwrap();
        // nginx appended the address it saw; the client had sent its own claim before it.
        let h = headers(&[("x-forwarded-for", "1.1.1.1, 203.0.113.9")]);
        let c = ClientAddr::resolve(peer("10.0.0.5"), &h, &trusted, false);
        assert_eq!(c.ip, ip("203.0.113.9"));
        // Two trusted hops (a load balancer, then nginx), in two headers.
        let h = headers(&[
            ("x-forwarded-for", "1.1.1.1, 203.0.113.9"),
            ("x-forwarded-for", "10.1.2.3"),
            ("x-forwarded-proto", "http, https"),
        ]);
        let c = ClientAddr::resolve(peer("10.0.0.5"), &h, &trusted, false);
        assert_eq!(
            c,
            ClientAddr {
                ip: ip("203.0.113.9"),
                https: true
            }
        );
        // Ports and IPv6 brackets.
        let h = headers(&[("x-forwarded-for", "[2001:db8::7]:443")]);
        let c = ClientAddr::resolve(peer("10.0.0.5"), &h, &trusted, false);
        assert_eq!(c.ip, ip("2001:db8::7"));
        let h = headers(&[("x-forwarded-for", "198.51.100.1:5678")]);
        let c = ClientAddr::resolve(peer("10.0.0.5"), &h, &trusted, false);
        assert_eq!(c.ip, ip("198.51.100.1"));
    }

    #[test]
    fn garbage_or_a_missing_header_stops_at_the_last_trusted_hop() {
        let trusted = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let h = headers(&[("x-forwarded-for", "203.0.113.9, unknown, 10.1.2.3")]);
        let c = ClientAddr::resolve(peer("10.0.0.5"), &h, &trusted, false);
        assert_eq!(c.ip, ip("10.1.2.3"));
        let c = ClientAddr::resolve(peer("10.0.0.5"), &HeaderMap::new(), &trusted, false);
        assert_eq!(c.ip, ip("10.0.0.5"));
        // Only trusted hops: the leftmost is as far as anyone can say.
        let h = headers(&[("x-forwarded-for", "10.9.9.9, 10.1.2.3")]);
        let c = ClientAddr::resolve(peer("10.0.0.5"), &h, &trusted, false);
        assert_eq!(c.ip, ip("10.9.9.9"));
    }

    #[test]
    fn own_tls_is_https_whatever_the_headers_say() {
        let c = ClientAddr::resolve(
            peer("198.51.100.7"),
            &HeaderMap::new(),
            &TrustedProxies::default(),
            true,
        );
        assert!(c.https);
        let c = ClientAddr::resolve(None, &HeaderMap::new(), &TrustedProxies::default(), false);
        assert_eq!(
            c,
            ClientAddr {
                ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                https: false
            }
        );
    }
}
