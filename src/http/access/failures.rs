//! Wrong dashboard tokens per client address, so the token cannot be guessed at speed:
//! after [`LIMIT`] wrong tokens within [`WINDOW`], every attempt from that client is
//! refused until the oldest of them is a window old. Kept in each process's memory.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

/// Wrong tokens one client may send within [`WINDOW`].
pub const LIMIT: usize = 10;
/// The sliding window [`LIMIT`] counts over.
pub const WINDOW: Duration = Duration::from_secs(60);
const WINDOW_MS: i64 = WINDOW.as_millis() as i64;
/// Clients remembered before stale ones are forgotten.
const PRUNE_ABOVE: usize = 4096;

/// Recent wrong tokens, by client.
#[derive(Debug, Default)]
pub struct Failures {
    recent: Mutex<HashMap<Client, VecDeque<i64>>>,
}

/// Who is counted: an IPv4 address, an IPv6 /64 (one subscriber's network), or every
/// client whose address is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Client(Option<IpAddr>);

impl Client {
    /// The client at `ip`, if known.
    pub fn new(ip: Option<IpAddr>) -> Client {
        Client(ip.map(|ip| match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
            },
            v4 => v4,
        }))
    }
}

impl Failures {
    /// How long `client` must wait, when it has used up its wrong tokens.
    pub fn blocked(&self, client: Client, now_ms: i64) -> Option<Duration> {
        let mut recent = self
            .recent
            .lock()
            .expect("the failures lock is never poisoned");
        let times = recent.get_mut(&client)?;
        forget_old(times, now_ms);
        if times.len() < LIMIT {
            return None;
        }
        let oldest = times.front().copied().unwrap_or(now_ms);
        let wait = (oldest + WINDOW_MS - now_ms).max(1);
        Some(Duration::from_millis(wait as u64))
    }

    /// Counts a wrong token from `client`.
    pub fn record(&self, client: Client, now_ms: i64) {
        let mut recent = self
            .recent
            .lock()
            .expect("the failures lock is never poisoned");
        if recent.len() >= PRUNE_ABOVE {
            recent.retain(|_, times| {
                forget_old(times, now_ms);
                !times.is_empty()
            });
        }
        let times = recent.entry(client).or_default();
        forget_old(times, now_ms);
        times.push_back(now_ms);
        if times.len() > LIMIT {
            times.pop_front();
        }
    }
}

fn forget_old(times: &mut VecDeque<i64>, now_ms: i64) {
    while times.front().is_some_and(|&at| at + WINDOW_MS <= now_ms) {
        times.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eleventh_attempt_in_a_window_waits_for_the_oldest_to_age() {
        let failures = Failures::default();
        let a = Client::new(Some("203.0.113.7".parse().unwrap()));
        let b = Client::new(Some("203.0.113.8".parse().unwrap()));
        for i in 0..LIMIT as i64 {
            assert_eq!(failures.blocked(a, 1_000 + i), None);
            failures.record(a, 1_000 + i);
        }
        let wait = failures.blocked(a, 2_000).expect("blocked");
        assert_eq!(wait, Duration::from_millis(59_000));
        assert_eq!(failures.blocked(b, 2_000), None, "per client");
        assert!(failures.blocked(a, 60_999).is_some());
        assert_eq!(failures.blocked(a, 61_000), None, "the oldest has aged out");
    }

    #[test]
    fn an_ipv6_network_counts_as_one_client() {
        let one = Client::new(Some("2001:db8:1:2::1".parse().unwrap()));
        let same = Client::new(Some("2001:db8:1:2:ffff::9".parse().unwrap()));
        let other = Client::new(Some("2001:db8:1:3::1".parse().unwrap()));
        assert_eq!(one, same);
        assert_ne!(one, other);
        assert_eq!(
            Client::new(Some("::ffff:203.0.113.7".parse().unwrap())),
            Client::new(Some("203.0.113.7".parse().unwrap()))
        );
    }
}
