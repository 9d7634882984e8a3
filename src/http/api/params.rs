//! Query and body values shared by the endpoints: times, limits, statuses, selections.

use crate::engine::RunStatus;
use crate::engine::operations::Selection;
use crate::http::error::ApiError;

/// A time bound: milliseconds since the Unix epoch (`1732400000000`), or a span back
/// from now (`30s`, `15m`, `1h`, `7d`).
pub fn parse_time(field: &'static str, value: &str, now: i64) -> Result<i64, ApiError> {
    let value = value.trim();
    if let Ok(ms) = value.parse::<i64>() {
        return Ok(ms);
    }
    let invalid = || {
        ApiError::bad_request(
            "invalid_time",
            format!(
                "{field} must be milliseconds since the epoch or a span back from now such as 15m, 1h, 7d (got '{value}')"
            ),
        )
    };
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(invalid)?;
    let (n, unit) = value.split_at(split);
    let n: i64 = n.parse().map_err(|_| invalid())?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(invalid()),
    };
    Ok(now - n.saturating_mul(unit_ms))
}

/// An optional time bound.
pub fn parse_opt_time(
    field: &'static str,
    value: Option<&str>,
    now: i64,
) -> Result<Option<i64>, ApiError> {
    value
        .filter(|v| !v.trim().is_empty())
        .map(|v| parse_time(field, v, now))
        .transpose()
}

/// A list's `limit`: a whole number from 1 to `max`, `default` when absent.
pub fn parse_limit(value: Option<&str>, default: i64, max: i64) -> Result<i64, ApiError> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(default);
    };
    match value.parse::<i64>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit must be a whole number from 1 to {max} (got '{value}')"),
        )),
    }
}

/// An optional time bound in seconds since the Unix epoch, as Stripe gives times.
pub fn parse_opt_seconds(
    field: &'static str,
    value: Option<&str>,
) -> Result<Option<i64>, ApiError> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    match value.parse::<i64>() {
        Ok(secs) if secs >= 0 => Ok(Some(secs)),
        _ => Err(ApiError::bad_request(
            "invalid_time",
            format!(
                "{field} must be a time in seconds since the Unix epoch, such as 1790000000 (got '{value}')"
            ),
        )),
    }
}

/// Comma-separated run statuses (`failed,cancelled`); empty means all.
pub fn parse_statuses(value: Option<&str>) -> Result<Vec<RunStatus>, ApiError> {
    value
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<RunStatus>()
                .map_err(|e| ApiError::bad_request("invalid_status", e.to_string()))
        })
        .collect()
}

/// The selection fields of a bulk request, as sent.
#[derive(Debug, Default, Clone)]
pub struct SelectionInput {
    pub function: Option<String>,
    /// Comma-separated statuses.
    pub status: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub search: Option<String>,
}

impl SelectionInput {
    pub fn selection(&self, now: i64) -> Result<Selection, ApiError> {
        Ok(Selection {
            function_id: self.function.clone().filter(|f| !f.is_empty()),
            statuses: parse_statuses(self.status.as_deref())?,
            since: parse_opt_time("since", self.since.as_deref(), now)?,
            until: parse_opt_time("until", self.until.as_deref(), now)?,
            search: self.search.clone().filter(|s| !s.trim().is_empty()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_epoch_ms_or_spans_back_from_now() {
        let now = 10_000_000;
        assert_eq!(parse_time("since", "1234", now).unwrap(), 1234);
        assert_eq!(parse_time("since", "1h", now).unwrap(), now - 3_600_000);
        assert_eq!(parse_time("since", "15m", now).unwrap(), now - 900_000);
        assert_eq!(parse_time("since", "2d", now).unwrap(), now - 172_800_000);
        for bad in ["", "h", "1w", "1.5h", "yesterday"] {
            assert!(parse_time("since", bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_are_whole_numbers_within_bounds() {
        assert_eq!(parse_limit(None, 50, 500).unwrap(), 50);
        assert_eq!(parse_limit(Some(""), 50, 500).unwrap(), 50);
        assert_eq!(parse_limit(Some("500"), 50, 500).unwrap(), 500);
        for bad in ["0", "501", "-1", "ten", "1.5"] {
            let err = parse_limit(Some(bad), 50, 500).expect_err(bad);
            assert_eq!(err.code, "invalid_limit");
            assert!(err.message.contains(bad), "{}", err.message);
        }
    }

    #[test]
    fn seconds_are_non_negative_whole_numbers() {
        assert_eq!(parse_opt_seconds("since", None).unwrap(), None);
        assert_eq!(
            parse_opt_seconds("since", Some("1790000000")).unwrap(),
            Some(1_790_000_000)
        );
        for bad in ["yesterday", "-5", "1h", "17e8"] {
            let err = parse_opt_seconds("until", Some(bad)).expect_err(bad);
            assert_eq!(err.code, "invalid_time");
            assert!(err.message.starts_with("until "), "{}", err.message);
        }
    }

    #[test]
    fn statuses_are_comma_separated_and_checked() {
        assert_eq!(
            parse_statuses(Some("failed, cancelled")).unwrap(),
            vec![RunStatus::Failed, RunStatus::Cancelled]
        );
        assert!(parse_statuses(None).unwrap().is_empty());
        assert!(parse_statuses(Some("failed,done")).is_err());
    }
}
