//! The durations and times SDK apps write: `30s`, `1h30m`, `2d`, `1w` (Go-style, plus days
//! and weeks), and ISO 8601 times for `sleepUntil`.

use std::time::Duration;

/// Longest sleep, wait or timeout an app may ask for: a year, as Inngest allows.
pub const MAX: Duration = Duration::from_secs(366 * 24 * 3600);

/// Why a duration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a duration such as 30s, 1h30m, 2d or 1w of at most a year")]
pub struct BadDuration(pub String);

/// Reads `1h30m`, `500ms`, `2d`, `1w`.
pub fn parse(text: &str) -> Result<Duration, BadDuration> {
    let bad = || BadDuration(text.to_owned());
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            "w" => 604_800.0,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += Duration::try_from_secs_f64(number * seconds).map_err(|_| bad())?;
    }
    if total > MAX {
        return Err(bad());
    }
    Ok(total)
}

/// Reads an RFC 3339 time (`2030-01-01T00:00:00.000Z`) as milliseconds since the epoch.
pub fn parse_time(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(|t| t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style_durations_with_days_and_weeks() {
        let cases = [
            ("1s", 1_000),
            ("500ms", 500),
            ("1h30m", 5_400_000),
            ("2d", 172_800_000),
            ("1w", 604_800_000),
            ("1.5m", 90_000),
            ("366d", 31_622_400_000),
        ];
        for (text, ms) in cases {
            assert_eq!(parse(text).unwrap().as_millis(), ms, "{text}");
        }
    }

    #[test]
    fn anything_else_is_refused() {
        for text in ["", "1", "s", "1y", "1 h", "-1s", "367d", "1h-"] {
            assert!(parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn iso_times_read_as_epoch_milliseconds() {
        assert_eq!(
            parse_time("2030-01-01T00:00:00.000Z"),
            Some(1_893_456_000_000)
        );
        assert_eq!(parse_time("tomorrow"), None);
    }
}
