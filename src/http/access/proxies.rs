//! Which address a request comes from when paysteps sits behind a reverse proxy.
//!
//! Behind a proxy every connection comes from the proxy, so counting wrong tokens by the
//! peer address would lock every user out at once. Only proxies named in
//! `PAYSTEPS_TRUSTED_PROXIES` are believed: for a request from one of them, the client is
//! the right-most `X-Forwarded-For` address that is not itself a trusted proxy (the
//! left-most entries are whatever the client chose to send). Without the setting the
//! header is ignored, so no client can pick its own address.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The networks whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Believes proxies in `networks`.
    pub fn new(networks: impl IntoIterator<Item = IpNet>) -> TrustedProxies {
        TrustedProxies(networks.into_iter().collect())
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client behind a request that arrived from `peer`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return canonical(peer);
        }
        let forwarded: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .collect();
        for entry in forwarded.iter().rev() {
            let Some(ip) = parse_entry(entry) else {
                // Garbage in the chain: nothing left of it can be believed.
                break;
            };
            if !self.trusts(ip) {
                return canonical(ip);
            }
        }
        canonical(peer)
    }
}

/// A network (`10.0.0.0/8`, `fd00::/8`) or a single address, as `PAYSTEPS_TRUSTED_PROXIES`
/// lists them.
pub fn parse_network(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    text.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("{text:?} is neither an IP address nor a network like 10.0.0.0/8"))
}

/// An `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5678`,
/// `[2001:db8::1]:443`).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip);
    }
    entry
        .parse::<std::net::SocketAddr>()
        .ok()
        .map(|addr| addr.ip())
}

/// An IPv4 client seen through an IPv6 socket (`::ffff:a.b.c.d`) is that IPv4 client.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::new(list.iter().map(|n| parse_network(n).unwrap()))
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", value.parse().unwrap());
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn without_trusted_proxies_the_header_is_ignored() {
        let none = TrustedProxies::default();
        let headers = forwarded(&["198.51.100.9"]);
        assert_eq!(none.client(ip("10.0.0.2"), &headers), ip("10.0.0.2"));
    }

    #[test]
    fn a_trusted_proxy_names_the_client_right_most_first() {
        let trusted = proxies(&["10.0.0.0/8"]);
        // The client claims 1.1.1.1; the proxy appended the real 203.0.113.7.
        let headers = forwarded(&["1.1.1.1, 203.0.113.7"]);
        assert_eq!(trusted.client(ip("10.0.0.2"), &headers), ip("203.0.113.7"));
    }

    #[test]
    fn chained_trusted_proxies_are_skipped_across_header_lines() {
        let trusted = proxies(&["10.0.0.0/8", "192.0.2.1"]);
        let headers = forwarded(&["203.0.113.7", "192.0.2.1, 10.1.2.3"]);
        assert_eq!(trusted.client(ip("10.0.0.2"), &headers), ip("203.0.113.7"));
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let headers = forwarded(&["10.0.0.5"]);
        assert_eq!(
            trusted.client(ip("198.51.100.1"), &headers),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn ports_brackets_and_mapped_addresses_are_read() {
        let trusted = proxies(&["127.0.0.1", "::1"]);
        assert_eq!(
            trusted.client(ip("::ffff:127.0.0.1"), &forwarded(&["203.0.113.7:4431"])),
            ip("203.0.113.7")
        );
        assert_eq!(
            trusted.client(ip("::1"), &forwarded(&["[2001:db8::7]:443"])),
            ip("2001:db8::7")
        );
    }

    #[test]
    fn garbage_or_an_all_trusted_chain_falls_back_to_what_can_be_believed() {
        let trusted = proxies(&["10.0.0.0/8"]);
        assert_eq!(
            trusted.client(ip("10.0.0.2"), &forwarded(&["203.0.113.7, nonsense"])),
            ip("10.0.0.2")
        );
        assert_eq!(
            trusted.client(ip("10.0.0.2"), &forwarded(&["10.9.9.9"])),
            ip("10.0.0.2")
        );
        assert_eq!(
            trusted.client(ip("10.0.0.2"), &HeaderMap::new()),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn networks_parse_from_addresses_and_prefixes() {
        assert_eq!(
            parse_network("10.1.2.3/8").unwrap(),
            "10.0.0.0/8".parse::<IpNet>().unwrap()
        );
        assert_eq!(
            parse_network(" 192.0.2.1 ").unwrap(),
            "192.0.2.1/32".parse::<IpNet>().unwrap()
        );
        assert!(parse_network("10.0.0.0/33").is_err());
        assert!(parse_network("proxy.internal").is_err());
    }
}
