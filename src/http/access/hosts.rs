//! Which `Host` names this server answers to, and which requests a browser sends on
//! behalf of another site. A page on another name that resolves to this server (DNS
//! rebinding) sends its own name as `Host`; a form or `fetch` from another site carries
//! `Sec-Fetch-Site: cross-site` or that site's `Origin`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use axum::http::{HeaderMap, Request, header};

/// The `Host` names served.
#[derive(Debug, Clone)]
pub struct Hosts {
    /// `false`: every name is served.
    checked: bool,
    names: Vec<String>,
    ips: Vec<IpAddr>,
    /// Bound to every interface: an address literal cannot be another site's name, so
    /// any is served.
    any_ip: bool,
}

impl Default for Hosts {
    fn default() -> Self {
        Hosts::loopback()
    }
}

impl Hosts {
    /// Every `Host` is served.
    pub fn any() -> Hosts {
        Hosts {
            checked: false,
            names: Vec::new(),
            ips: Vec::new(),
            any_ip: false,
        }
    }

    /// `localhost`, `127.0.0.1` and `[::1]` (and the rest of the loopback range), with
    /// any port.
    pub fn loopback() -> Hosts {
        Hosts {
            checked: true,
            names: vec!["localhost".to_owned()],
            ips: vec![
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ],
            any_ip: false,
        }
    }

    /// These too: names or addresses, each with or without a port (the port is not
    /// compared).
    pub fn with<'a>(mut self, hosts: impl IntoIterator<Item = &'a str>) -> Hosts {
        for host in hosts {
            match Host::parse(host) {
                Some(Host::Ip(ip)) if ip.is_unspecified() => self.any_ip = true,
                Some(Host::Ip(ip)) => self.ips.push(ip),
                Some(Host::Name(name)) => self.names.push(name),
                None => {}
            }
        }
        self
    }

    /// Whether a request naming `authority` (a `Host` value) is served.
    pub fn allows(&self, authority: &str) -> bool {
        if !self.checked {
            return true;
        }
        match Host::parse(authority) {
            Some(Host::Ip(ip)) => self.any_ip || ip.is_loopback() || self.ips.contains(&ip),
            Some(Host::Name(name)) => self.names.contains(&name),
            None => false,
        }
    }
}

#[derive(Debug, PartialEq)]
enum Host {
    Ip(IpAddr),
    Name(String),
}

impl Host {
    /// The host part of `host[:port]`, `[v6]:port` or a bare IPv6 address; `None` when
    /// it is empty or not a plausible name.
    fn parse(authority: &str) -> Option<Host> {
        let authority = authority.trim();
        let host = if let Some(rest) = authority.strip_prefix('[') {
            rest.split_once(']')?.0
        } else if authority.matches(':').count() > 1 {
            authority
        } else {
            authority.split(':').next().unwrap_or_default()
        };
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Some(Host::Ip(ip));
        }
        let name = host.trim_end_matches('.').to_ascii_lowercase();
        let plausible = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
        plausible.then_some(Host::Name(name))
    }
}

/// The name a request was sent to: its `Host`, or the URI's authority (HTTP/2). `None`
/// when it names none, which no browser sends.
pub fn authority<B>(request: &Request<B>) -> Option<&str> {
    request
        .headers()
        .get(header::HOST)
        .map(|v| v.to_str().unwrap_or_default())
        .or_else(|| request.uri().authority().map(|a| a.as_str()))
}

/// Where a browser says a request comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Site {
    /// This site, or no browser at all (SDKs, the CLI and curl send neither
    /// `Sec-Fetch-Site` nor `Origin`).
    Same,
    /// Another site: `Sec-Fetch-Site` other than same-origin/none, or an `Origin` whose
    /// host and port are not the request's `Host`.
    Other,
    /// `Origin: null` without `Sec-Fetch-Site`. Under `Referrer-Policy: no-referrer` a
    /// browser sends that for a form posted by our own page when the server is not a
    /// secure context (no Fetch Metadata over plain HTTP beyond loopback), and so does any
    /// sandboxed or `data:` page.
    Hidden,
}

/// Where a browser says the request comes from. `Sec-Fetch-Site`, which pages cannot
/// forge, decides when present; `Origin` otherwise.
pub fn site(headers: &HeaderMap) -> Site {
    if let Some(site) = headers.get("sec-fetch-site") {
        return if site == "same-origin" || site == "none" {
            Site::Same
        } else {
            Site::Other
        };
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Site::Same;
    };
    let Ok(origin) = origin.to_str() else {
        return Site::Other;
    };
    if origin == "null" {
        return Site::Hidden;
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_host = origin
        .split_once("://")
        .map_or(origin, |(_, rest)| rest)
        .trim_end_matches('/');
    if origin_host.eq_ignore_ascii_case(host) {
        Site::Same
    } else {
        Site::Other
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).expect("header"));
        }
        map
    }

    #[test]
    fn loopback_the_bind_address_and_listed_names_are_served() {
        let hosts = Hosts::loopback().with(["192.168.1.20:8288", "Dash.Example"]);
        for served in [
            "localhost",
            "localhost:8288",
            "LOCALHOST.",
            "127.0.0.1",
            "127.0.0.1:8288",
            "[::1]",
            "[::1]:8288",
            "192.168.1.20",
            "192.168.1.20:9999",
            "dash.example",
            "dash.example:443",
        ] {
            assert!(hosts.allows(served), "{served}");
        }
        for refused in [
            "evil.example",
            "evil.example:8288",
            "localhost.evil.example",
            "dash.example.evil",
            "10.0.0.1",
            "[::2]",
            "",
            "a b",
        ] {
            assert!(!hosts.allows(refused), "{refused}");
        }
        let everywhere = Hosts::loopback().with(["0.0.0.0:8288"]);
        assert!(everywhere.allows("10.0.0.1:8288"));
        assert!(!everywhere.allows("evil.example"));
        assert!(Hosts::any().allows("evil.example"));
    }

    #[test]
    fn cross_site_requests_are_told_apart_from_same_origin_ones() {
        let site = |pairs: &[(&'static str, &str)]| site(&headers(pairs));
        assert_eq!(site(&[]), Site::Same, "no browser hints: not a browser");
        assert_eq!(
            site(&[
                ("host", "dash.example:8288"),
                ("origin", "http://dash.example:8288"),
            ]),
            Site::Same
        );
        assert_eq!(site(&[("sec-fetch-site", "none")]), Site::Same);
        assert_eq!(
            site(&[("sec-fetch-site", "same-origin"), ("origin", "null")]),
            Site::Same,
            "our own form under no-referrer, from a browser that says where it is"
        );
        assert_eq!(site(&[("sec-fetch-site", "cross-site")]), Site::Other);
        assert_eq!(site(&[("sec-fetch-site", "same-site")]), Site::Other);
        assert_eq!(
            site(&[
                ("host", "dash.example:8288"),
                ("origin", "http://dash.example:8288"),
                ("sec-fetch-site", "cross-site"),
            ]),
            Site::Other
        );
        assert_eq!(
            site(&[
                ("host", "dash.example:8288"),
                ("origin", "http://evil.example"),
            ]),
            Site::Other
        );
        assert_eq!(
            site(&[
                ("host", "dash.example:8288"),
                ("origin", "http://dash.example"),
            ]),
            Site::Other
        );
        assert_eq!(
            site(&[("host", "dash.example:8288"), ("origin", "null")]),
            Site::Hidden
        );
    }
}
