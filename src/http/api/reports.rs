//! `GET /api/v1/reports/daily`: the daily revenue rollup's rows.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::payments::reports::{self, DailyReport, Day};

/// The longest range one request may ask for, in days (both ends included).
pub const MAX_RANGE_DAYS: i64 = 366;

/// Days shown when the request names no `from`: the last 30, today included.
const DEFAULT_DAYS: u64 = 30;

/// The report routes under `/api/v1/reports`.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/reports/daily", get(daily))
}

#[derive(Debug, Deserialize)]
struct DailyQuery {
    from: Option<String>,
    to: Option<String>,
    currency: Option<String>,
}

/// The answer: the range asked for and its rows, ordered by day then currency.
#[derive(Debug, Serialize)]
struct DailyAnswer {
    from: String,
    to: String,
    currency: Option<String>,
    days: Vec<DailyReport>,
}

/// What a valid query asks for.
#[derive(Debug, PartialEq, Eq)]
struct Range {
    from: Day,
    to: Day,
    currency: Option<String>,
}

fn parse_day(name: &'static str, value: Option<&str>) -> Result<Option<Day>, ApiError> {
    value
        .map(|v| {
            v.parse::<Day>().map_err(|err| {
                ApiError::bad_request("invalid_date", format!("query parameter '{name}': {err}"))
            })
        })
        .transpose()
}

/// Checks the query against `today`: dates well formed, `from` not after `to`, at most
/// [`MAX_RANGE_DAYS`] days, a three-letter currency code.
fn range(query: &DailyQuery, today: Day) -> Result<Range, ApiError> {
    let to = parse_day("to", query.to.as_deref())?.unwrap_or(today);
    let from = parse_day("from", query.from.as_deref())?
        .unwrap_or_else(|| to.minus_days(DEFAULT_DAYS - 1));
    if from > to {
        return Err(ApiError::bad_request(
            "invalid_range",
            format!("query parameter 'from' ({from}) is after 'to' ({to})"),
        ));
    }
    let days = to.days_since(from) + 1;
    if days > MAX_RANGE_DAYS {
        return Err(ApiError::bad_request(
            "invalid_range",
            format!(
                "query parameters 'from' and 'to' span {days} days; at most {MAX_RANGE_DAYS} \
                 may be asked for at once"
            ),
        ));
    }
    let currency = match query.currency.as_deref() {
        None => None,
        Some(c) if c.len() == 3 && c.chars().all(|ch| ch.is_ascii_alphabetic()) => {
            Some(c.to_ascii_lowercase())
        }
        Some(c) => {
            return Err(ApiError::bad_request(
                "invalid_currency",
                format!("query parameter 'currency': '{c}' is not a three-letter currency code"),
            ));
        }
    };
    Ok(Range { from, to, currency })
}

/// Revenue, succeeded and failed payments per UTC day and currency, from `from` to `to`
/// (both included, `YYYY-MM-DD`; by default the last 30 days), optionally of one
/// `currency`. Days without activity have no rows.
async fn daily(
    State(state): State<AppState>,
    query: Result<Query<DailyQuery>, QueryRejection>,
) -> Result<Json<DailyAnswer>, ApiError> {
    let Query(query) = query?;
    let today = Day::of_millis(state.engine.clock().now_ms());
    let Range { from, to, currency } = range(&query, today)?;
    let days = reports::daily_reports(state.engine.store(), from, to, currency.as_deref()).await?;
    Ok(Json(DailyAnswer {
        from: from.to_string(),
        to: to.to_string(),
        currency,
        days,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(from: Option<&str>, to: Option<&str>, currency: Option<&str>) -> DailyQuery {
        DailyQuery {
            from: from.map(str::to_owned),
            to: to.map(str::to_owned),
            currency: currency.map(str::to_owned),
        }
    }

    fn day(s: &str) -> Day {
        s.parse().expect("day")
    }

    #[test]
    fn the_default_range_is_the_last_thirty_days() {
        let today = day("2026-11-23");
        let r = range(&query(None, None, None), today).expect("range");
        assert_eq!((r.from, r.to), (day("2026-10-25"), today));
        let r = range(&query(None, Some("2026-01-10"), Some("USD")), today).expect("range");
        assert_eq!((r.from, r.to), (day("2025-12-12"), day("2026-01-10")));
        assert_eq!(r.currency.as_deref(), Some("usd"));
    }

    #[test]
    fn a_range_may_span_at_most_366_days() {
        let today = day("2026-11-23");
        assert!(range(&query(Some("2028-01-01"), Some("2028-12-31"), None), today).is_ok());
        let err = range(&query(Some("2027-01-01"), Some("2028-01-02"), None), today)
            .expect_err("367 days");
        assert_eq!(err.code, "invalid_range");
        let err = range(&query(Some("2026-11-02"), Some("2026-11-01"), None), today)
            .expect_err("from after to");
        assert!(err.message.contains("'from'"), "{}", err.message);
    }
}
