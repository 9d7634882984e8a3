//! When delivery attempts are made: the Standard Webhooks schedule, with jitter, and
//! `Retry-After` when an endpoint asks for more time.

use std::time::Duration;

const SECOND: u64 = 1000;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;

/// Delay before each attempt, in milliseconds: immediately, 5 s, 5 min, 30 min, 2 h, 5 h,
/// 10 h, 14 h, 20 h, 24 h. Ten attempts in all, over about three days.
pub const SCHEDULE_MS: [u64; 10] = [
    0,
    5 * SECOND,
    5 * MINUTE,
    30 * MINUTE,
    2 * HOUR,
    5 * HOUR,
    10 * HOUR,
    14 * HOUR,
    20 * HOUR,
    24 * HOUR,
];

/// Jitter added to a scheduled delay, as a fraction of it (up to +10 %).
const JITTER: f64 = 0.1;

/// The longest `Retry-After` honoured.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// How long an endpoint may fail without a success before it is disabled.
pub const DISABLE_AFTER_MS: i64 = 5 * 24 * 60 * 60 * 1000;

/// The delay before attempt `next` (0-based; `None` once the schedule is exhausted):
/// the scheduled delay plus `unit` (a random number in [0, 1)) of jitter, or the
/// endpoint's `Retry-After` when that is longer.
pub fn delay_before(next: usize, retry_after: Option<Duration>, unit: f64) -> Option<Duration> {
    let base = *SCHEDULE_MS.get(next)?;
    let jitter = (base as f64 * JITTER * unit.clamp(0.0, 1.0)) as u64;
    let scheduled = Duration::from_millis(base + jitter);
    Some(match retry_after {
        Some(asked) if asked > scheduled => asked.min(MAX_RETRY_AFTER),
        _ => scheduled,
    })
}

/// Reads a `Retry-After` value: delay seconds, or an HTTP date relative to `now_ms`.
pub fn parse_retry_after(value: &str, now_ms: i64) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let ms = at.timestamp_millis().saturating_sub(now_ms);
    Some(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_the_specifications_with_bounded_jitter() {
        assert_eq!(delay_before(0, None, 0.9), Some(Duration::ZERO));
        assert_eq!(delay_before(1, None, 0.0), Some(Duration::from_secs(5)));
        assert_eq!(
            delay_before(1, None, 1.0),
            Some(Duration::from_millis(5500))
        );
        assert_eq!(
            delay_before(9, None, 0.0),
            Some(Duration::from_secs(86_400))
        );
        assert_eq!(delay_before(10, None, 0.0), None);
    }

    #[test]
    fn a_longer_retry_after_wins_up_to_a_day() {
        let long = Some(Duration::from_secs(120));
        assert_eq!(delay_before(1, long, 0.0), Some(Duration::from_secs(120)));
        let short = Some(Duration::from_secs(1));
        assert_eq!(delay_before(2, short, 0.0), Some(Duration::from_secs(300)));
        let huge = Some(Duration::from_secs(10 * 86_400));
        assert_eq!(delay_before(1, huge, 0.0), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after(" 30 ", 0), Some(Duration::from_secs(30)));
        let now = chrono::DateTime::parse_from_rfc2822("Sun, 06 Nov 1994 08:49:37 GMT")
            .unwrap()
            .timestamp_millis();
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:37 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(parse_retry_after("soon", 0), None);
    }
}
