//! Where deliveries may go. Under `serve`, addresses inside the host or its network
//! (loopback, private, link-local, unique-local, CGNAT, cloud metadata…) are refused, at
//! creation and again at delivery time after name resolution, so an endpoint cannot be
//! used to reach internal services. An IPv6 address that carries an IPv4 one (mapped,
//! compatible, NAT64, 6to4, Teredo) is judged by the IPv4 address. Deliveries connect
//! to the checked address themselves, never through a proxy: a proxy would make its own
//! lookup, past this check.

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
    let segments = ip.segments();
    if ip.is_loopback() {
        return Some("loopback");
    }
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    match embedded_v4(ip) {
        Embedded::V4(v4) => return forbidden_v4(v4),
        Embedded::Teredo { server, client } => {
            return forbidden_v4(client).or_else(|| forbidden_v4(server));
        }
        Embedded::Unknown => return Some("NAT64 local-use (not a /96 prefix)"),
        Embedded::None => {}
    }
    if segments[0] & 0xffc0 == 0xfec0 {
        Some("site-local (deprecated)")
    } else if segments[0] & 0xfe00 == 0xfc00 {
        Some("unique-local")
    } else if segments[0] & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if segments[..2] == [0x2001, 0xdb8] {
        Some("documentation")
    } else if segments[..4] == [0x100, 0, 0, 0] {
        Some("discard-only")
    } else {
        None
    }
}

/// The IPv4 address an IPv6 address stands for, in the forms that carry one: a packet
/// to it ends up at that IPv4 address (through the host's own stack, a NAT64 gateway or
/// a 6to4 or Teredo relay), so the IPv4 address decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Embedded {
    /// No IPv4 address in it.
    None,
    /// `::ffff:a.b.c.d` (mapped), `::ffff:0:a.b.c.d` (translated), `::a.b.c.d`
    /// (compatible, deprecated), `64:ff9b::a.b.c.d` and `64:ff9b:1::a.b.c.d` (NAT64),
    /// `2002:aabb:ccdd::/48` (6to4).
    V4(Ipv4Addr),
    /// `2001:0:<server>:<flags>:<port>:<client>`, the client address stored inverted.
    Teredo { server: Ipv4Addr, client: Ipv4Addr },
    /// NAT64 local-use (`64:ff9b:1::/48`) with a prefix longer than /48 and shorter
    /// than /96: where the IPv4 address sits depends on a prefix length only the local
    /// network knows.
    Unknown,
}

fn embedded_v4(ip: Ipv6Addr) -> Embedded {
    let s = ip.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match s {
        [0, 0, 0, 0, 0, 0xffff, hi, lo]
        | [0, 0, 0, 0, 0xffff, 0, hi, lo]
        | [0, 0, 0, 0, 0, 0, hi, lo]
        | [0x64, 0xff9b, 0, 0, 0, 0, hi, lo]
        | [0x64, 0xff9b, 1, 0, 0, 0, hi, lo]
        | [0x2002, hi, lo, ..] => Embedded::V4(v4(hi, lo)),
        [0x64, 0xff9b, 1, ..] => Embedded::Unknown,
        [0x2001, 0, server_hi, server_lo, _, _, client_hi, client_lo] => Embedded::Teredo {
            server: v4(server_hi, server_lo),
            client: Ipv4Addr::from(!u32::from(v4(client_hi, client_lo))),
        },
        _ => Embedded::None,
    }
}

#[cfg(test)]
mod proptests;

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

    fn kind(ip: &str) -> Option<&'static str> {
        forbidden_kind(ip.parse().unwrap())
    }

    #[test]
    fn ipv6_forms_that_carry_an_ipv4_address_are_judged_by_it() {
        // (form, inside address it may carry, public address it may carry)
        let forms = [
            ("mapped", "::ffff:127.0.0.1", "::ffff:93.184.215.14"),
            ("translated", "::ffff:0:10.1.2.3", "::ffff:0:93.184.215.14"),
            ("compatible", "::169.254.169.254", "::93.184.215.14"),
            ("compatible", "::127.0.0.1", "::8.8.8.8"),
            ("NAT64", "64:ff9b::10.0.0.1", "64:ff9b::93.184.215.14"),
            (
                "NAT64 local-use",
                "64:ff9b:1::192.168.1.1",
                "64:ff9b:1::93.184.215.14",
            ),
            // 6to4: 2002:<IPv4>::/48; c0a8:0101 is 192.168.1.1, 5db8:d70e 93.184.215.14.
            ("6to4", "2002:c0a8:101::1", "2002:5db8:d70e::1"),
            ("6to4", "2002:7f00:1:1::80", "2002:808:808::1"),
            // Teredo: 2001:0:<server>:<flags>:<port>:<client XOR ffff:ffff>; 80ff:fffe is
            // 127.0.0.1 inverted, f5ff:fffe 10.0.0.1, a247:28f1 93.184.215.14.
            (
                "Teredo",
                "2001:0:4136:e378:8000:63bf:80ff:fffe",
                "2001:0:4136:e378:8000:63bf:a247:28f1",
            ),
            (
                "Teredo",
                "2001:0:4136:e378:8000:63bf:f5ff:fffe",
                "2001:0:5db8:d70e:8000:63bf:a247:28f1",
            ),
        ];
        for (form, inside, public) in forms {
            assert!(kind(inside).is_some(), "{form} {inside} must be refused");
            assert_eq!(kind(public), None, "{form} {public} must pass");
        }
        assert_eq!(kind("::ffff:10.0.0.1"), Some("private"));
        assert_eq!(
            kind("2001:0:4136:e378:8000:63bf:80ff:fffe"),
            Some("loopback")
        );
        // A Teredo server inside the network is refused too.
        assert_eq!(kind("2001:0:a00:1:8000:63bf:a247:28f1"), Some("private"));
    }

    #[test]
    fn deprecated_and_unplaceable_ipv6_ranges_are_refused() {
        for (ip, expected) in [
            ("fec0::1", "site-local (deprecated)"),
            ("feff:ffff::1", "site-local (deprecated)"),
            ("64:ff9b:1:2::a00:1", "NAT64 local-use (not a /96 prefix)"),
            (
                "64:ff9b:1:0:0:1:5db8:d70e",
                "NAT64 local-use (not a /96 prefix)",
            ),
            ("2001:db8::1", "documentation"),
            ("100::1", "discard-only"),
            ("fc00::1", "unique-local"),
            ("fe80::1", "link-local"),
            ("ff02::1", "multicast"),
            ("::1", "loopback"),
            ("::", "unspecified"),
        ] {
            assert_eq!(kind(ip), Some(expected), "{ip}");
        }
        for public in ["2606:4700::1111", "2001:4860:4860::8888", "2a00:1450::1"] {
            assert_eq!(kind(public), None, "{public}");
        }
    }

    #[test]
    fn ipv6_literals_in_urls_are_judged_as_they_are_normalised() {
        for url in [
            "http://[::127.0.0.1]/",
            "http://[::ffff:0:169.254.169.254]/",
            "http://[64:ff9b:1::a9fe:a9fe]/",
            "http://[2002:a9fe:a9fe::]/",
            "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/",
            "http://[fec0::1]/",
        ] {
            assert!(refused(url), "{url}");
        }
        assert!(!refused("http://[2002:5db8:d70e::1]/"));
    }

    #[tokio::test]
    async fn names_are_checked_after_resolution() {
        let url = reqwest::Url::parse("http://127.0.0.1:9/").unwrap();
        assert!(Destinations::PublicOnly.resolve(&url).await.is_err());
        let addr = Destinations::AllowPrivate.resolve(&url).await.unwrap();
        assert_eq!(addr, "127.0.0.1:9".parse().unwrap());
    }
}
