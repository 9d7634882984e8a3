//! Query and body values shared by the operations endpoints: times, statuses, selections.

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
    fn statuses_are_comma_separated_and_checked() {
        assert_eq!(
            parse_statuses(Some("failed, cancelled")).unwrap(),
            vec![RunStatus::Failed, RunStatus::Cancelled]
        );
        assert!(parse_statuses(None).unwrap().is_empty());
        assert!(parse_statuses(Some("failed,done")).is_err());
    }
}
