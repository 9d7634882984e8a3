//! Where deliveries may go. Under `serve`, addresses inside the host or its network
//! (loopback, private, link-local, unique-local, CGNAT, cloud metadata…) are refused, at
//! creation and again at delivery time after name resolution, so an endpoint cannot be
//! used to reach internal services.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// Which destinations deliveries may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Destinations {
    /// Public addresses only (the default under `serve`).
    #[default]
    PublicOnly,
    /// Any address (`dev`, or `PAYSTEPS_WEBHOOK_ALLOW_PRIVATE` under `serve`).
    AllowPrivate,
}

/// Why a destination is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DestinationError {
    /// The host is, or resolves to, a private, loopback or otherwise internal address.
    #[error(
        "{host} is a {kind} address; deliveries to it are refused \
         (set PAYSTEPS_WEBHOOK_ALLOW_PRIVATE to allow)"
    )]
    Forbidden {
        /// The host as given in the URL.
        host: String,
        /// What kind of address it is (`private`, `loopback`…).
        kind: &'static str,
    },
    /// The host name could not be resolved.
    #[error("{host} does not resolve: {reason}")]
    Unresolved {
        /// The host as given in the URL.
        host: String,
        /// The resolver's error.
        reason: String,
    },
}

/// Host names that always point inside.
const INTERNAL_NAMES: [&str; 4] = [
    "localhost",
    "metadata",
    "metadata.google.internal",
    "instance-data",
];

/// Lookups longer than this count as failed.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

impl Destinations {
    /// Checks what the URL itself says (an IP literal, a known internal name), without
    /// resolving anything.
    pub fn check_url(self, url: &reqwest::Url) -> Result<(), DestinationError> {
        if self == Destinations::AllowPrivate {
            return Ok(());
        }
        let host = url_host(url);
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return check_ip(&host, ip);
        }
        let name = bare.trim_end_matches('.').to_ascii_lowercase();
        if INTERNAL_NAMES.contains(&name.as_str()) || name.ends_with(".localhost") {
            return Err(DestinationError::Forbidden {
                host: name,
                kind: "internal host name",
            });
        }
        Ok(())
    }

    /// Resolves the URL's host and returns the address to connect to, refusing it when
    /// any address it resolves to is forbidden.
    pub async fn resolve(self, url: &reqwest::Url) -> Result<SocketAddr, DestinationError> {
        self.check_url(url)?;
        let host = url_host(url);
        let port = url.port_or_known_default().unwrap_or(443);
        let lookup_host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let unresolved = |reason: String| DestinationError::Unresolved {
            host: host.clone(),
            reason,
        };
        let addrs: Vec<SocketAddr> = tokio::time::timeout(
            RESOLVE_TIMEOUT,
            tokio::net::lookup_host((lookup_host, port)),
        )
        .await
        .map_err(|_| unresolved("lookup timed out".to_owned()))?
        .map_err(|e| unresolved(e.to_string()))?
        .collect();
        if self == Destinations::PublicOnly {
            for addr in &addrs {
                check_ip(&host, addr.ip())?;
            }
        }
        addrs
            .into_iter()
            .next()
            .ok_or_else(|| unresolved("no address".to_owned()))
    }
}

fn url_host(url: &reqwest::Url) -> String {
    url.host_str().unwrap_or_default().to_owned()
}

fn check_ip(host: &str, ip: IpAddr) -> Result<(), DestinationError> {
    match forbidden_kind(ip) {
        Some(kind) => Err(DestinationError::Forbidden {
            host: host.to_owned(),
            kind,
        }),
        None => Ok(()),
    }
}

/// What kind of non-public address `ip` is, if it is one.
pub fn forbidden_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        // 169.254.169.254 and friends: the cloud metadata services live here.
        Some("link-local (metadata)")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared (CGNAT)")
    } else if a == 192 && b == 0 && c == 0 {
        Some("IETF protocol (metadata)")
    } else if a == 198 && (b == 18 || b == 19) {
        Some("benchmarking")
    } else if ip.is_multicast() || ip.is_broadcast() || a >= 240 {
        Some("multicast or reserved")
    } else {
        None
    }
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return forbidden_v4(v4);
    }
    let segments = ip.segments();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if segments[0] & 0xfe00 == 0xfc00 {
        Some("unique-local")
    } else if segments[0] & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        // NAT64: the IPv4 address it carries decides.
        let [_, _, _, _, _, _, hi, lo] = segments;
        forbidden_v4(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(url: &str) -> bool {
        let url = reqwest::Url::parse(url).unwrap();
        Destinations::PublicOnly.check_url(&url).is_err()
    }

    #[test]
    fn inside_addresses_are_refused_and_public_ones_pass() {
        for url in [
            "http://127.0.0.1:8080/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://100.100.100.200/",
            "http://0.0.0.0/",
            "http://[::1]/",
            "http://[fd00:ec2::254]/",
            "http://[fe80::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://localhost:3000/",
            "http://api.localhost/",
            "http://metadata.google.internal/",
        ] {
            assert!(refused(url), "{url}");
        }
        for url in [
            "https://93.184.215.14/",
            "https://[2606:4700::1111]/",
            "https://hooks.example.com/",
        ] {
            assert!(!refused(url), "{url}");
        }
        let local = reqwest::Url::parse("http://127.0.0.1/").unwrap();
        assert!(Destinations::AllowPrivate.check_url(&local).is_ok());
    }

    #[tokio::test]
    async fn names_are_checked_after_resolution() {
        let url = reqwest::Url::parse("http://127.0.0.1:9/").unwrap();
        assert!(Destinations::PublicOnly.resolve(&url).await.is_err());
        let addr = Destinations::AllowPrivate.resolve(&url).await.unwrap();
        assert_eq!(addr, "127.0.0.1:9".parse().unwrap());
    }
}
