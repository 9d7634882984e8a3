//! Properties of the address guard: an IPv4 address carried inside an IPv6 one is judged
//! as that IPv4 address, however the URL writes it, and no URL makes the check panic.

use proptest::prelude::*;

use super::*;

/// IPv4 addresses, with the ranges the guard names drawn as often as the rest.
fn ipv4() -> impl Strategy<Value = Ipv4Addr> {
    let in_range = |first: u8, second: std::ops::RangeInclusive<u8>| {
        (second, any::<[u8; 2]>()).prop_map(move |(b, [c, d])| Ipv4Addr::new(first, b, c, d))
    };
    prop_oneof![
        any::<u32>().prop_map(Ipv4Addr::from),
        in_range(0, 0..=255),
        in_range(10, 0..=255),
        in_range(100, 60..=130),
        in_range(127, 0..=255),
        in_range(169, 254..=254),
        in_range(172, 14..=33),
        in_range(192, 0..=168),
        in_range(198, 17..=20),
        in_range(224, 0..=255),
        in_range(255, 255..=255),
    ]
}

fn v6(segments: [u16; 8]) -> Ipv6Addr {
    Ipv6Addr::from(segments)
}

fn halves(v4: Ipv4Addr) -> (u16, u16) {
    let bits = u32::from(v4);
    ((bits >> 16) as u16, bits as u16)
}

/// Teredo servers and clients of these tests that are public addresses.
const PUBLIC_SERVER: Ipv4Addr = Ipv4Addr::new(65, 54, 227, 120);
const PUBLIC_CLIENT: Ipv4Addr = Ipv4Addr::new(93, 184, 215, 14);

/// The IPv6 forms that carry `v4` as the address a packet ends up at, each named.
fn carriers(v4: Ipv4Addr, rest: [u16; 5], flags: [u16; 2]) -> Vec<(&'static str, Ipv6Addr)> {
    let (hi, lo) = halves(v4);
    let (server_hi, server_lo) = halves(PUBLIC_SERVER);
    let inverted = halves(Ipv4Addr::from(!u32::from(v4)));
    let [r0, r1, r2, r3, r4] = rest;
    vec![
        ("mapped", v4.to_ipv6_mapped()),
        ("translated", v6([0, 0, 0, 0, 0xffff, 0, hi, lo])),
        ("compatible", v4.to_ipv6_compatible()),
        ("NAT64", v6([0x64, 0xff9b, 0, 0, 0, 0, hi, lo])),
        ("NAT64 local-use", v6([0x64, 0xff9b, 1, 0, 0, 0, hi, lo])),
        ("6to4", v6([0x2002, hi, lo, r0, r1, r2, r3, r4])),
        (
            "Teredo client",
            v6([
                0x2001, 0, server_hi, server_lo, flags[0], flags[1], inverted.0, inverted.1,
            ]),
        ),
    ]
}

fn refused(url: &str) -> Result<bool, TestCaseError> {
    let url = reqwest::Url::parse(url).map_err(|e| TestCaseError::fail(format!("{url}: {e}")))?;
    Ok(Destinations::PublicOnly.check_url(&url).is_err())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn an_ipv4_address_inside_ipv6_is_judged_as_itself(
        v4 in ipv4(),
        rest in any::<[u16; 5]>(),
        flags in any::<[u16; 2]>(),
    ) {
        let alone = forbidden_kind(IpAddr::V4(v4));
        for (form, ip) in carriers(v4, rest, flags) {
            let carried = forbidden_kind(IpAddr::V6(ip));
            // `::` and `::1` are their own addresses before they are `::0.0.0.0` and
            // `::0.0.0.1`; both are refused either way.
            if ip.is_unspecified() || ip.is_loopback() {
                prop_assert!(carried.is_some() && alone.is_some(), "{form} {ip}");
            } else {
                prop_assert_eq!(carried, alone, "{} {} carrying {}", form, ip, v4);
            }
            prop_assert_eq!(refused(&format!("http://[{ip}]:8080/"))?, alone.is_some(), "{} {}", form, ip);
        }
    }

    #[test]
    fn a_teredo_server_inside_the_network_is_refused_too(
        server in ipv4(),
        flags in any::<[u16; 2]>(),
    ) {
        let (hi, lo) = halves(server);
        let client = halves(Ipv4Addr::from(!u32::from(PUBLIC_CLIENT)));
        let ip = v6([0x2001, 0, hi, lo, flags[0], flags[1], client.0, client.1]);
        prop_assert_eq!(forbidden_kind(IpAddr::V6(ip)), forbidden_kind(IpAddr::V4(server)));
    }

    #[test]
    fn every_way_of_writing_an_ipv4_host_is_judged_alike(v4 in ipv4(), port in 1u16..) {
        let bits = u32::from(v4);
        let [a, b, c, d] = v4.octets();
        let refuse = forbidden_kind(IpAddr::V4(v4)).is_some();
        for host in [
            format!("{v4}"),
            format!("{v4}."),
            format!("{bits}"),
            format!("{bits:#x}"),
            format!("0{bits:o}"),
            format!("{a:#x}.{b:#x}.{c:#x}.{d:#x}"),
            format!("{a}.{}", (u32::from(b) << 16) | (u32::from(c) << 8) | u32::from(d)),
        ] {
            for url in [format!("http://{host}/"), format!("https://{host}:{port}/hook?x=1")] {
                prop_assert_eq!(refused(&url)?, refuse, "{}", url);
            }
        }
    }

    #[test]
    fn an_ipv6_literal_is_judged_as_the_address_it_is(ip in any::<Ipv6Addr>()) {
        let refuse = forbidden_kind(IpAddr::V6(ip)).is_some();
        prop_assert_eq!(refused(&format!("http://[{ip}]/"))?, refuse);
        let full = ip.segments().map(|s| format!("{s:04X}")).join(":");
        prop_assert_eq!(refused(&format!("https://[{full}]:443/"))?, refuse);
    }

    #[test]
    fn no_url_makes_the_check_panic(
        text in prop_oneof![
            any::<String>(),
            "(https?|ftp|file|data|x)://[^/]{0,30}(/.{0,10})?",
            "http://\\[[0-9a-fA-F:.%]{0,40}\\]/",
            "http://[0-9a-zA-Z.]{0,30}\\.?/",
        ],
    ) {
        if let Ok(url) = reqwest::Url::parse(&text) {
            let _ = Destinations::PublicOnly.check_url(&url);
            prop_assert!(Destinations::AllowPrivate.check_url(&url).is_ok());
        }
    }
}
