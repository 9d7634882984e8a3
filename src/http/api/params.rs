//! What every `/api/v1` route checks of its input (no NUL character anywhere: PostgreSQL's
//! text refuses it), and the query and body values shared by the endpoints: times,
//! limits, statuses, selections.

use axum::Json;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::engine::RunStatus;
use crate::engine::operations::Selection;
use crate::http::error::ApiError;

/// The code of every refusal of a NUL character.
pub const NUL_CODE: &str = "invalid_character";

/// Middleware: refuses, before any handler runs, a request whose path or query string
/// holds a NUL character (`%00`, the only way a URI can carry one), naming where.
pub async fn refuse_nul_in_uri(request: Request, next: Next) -> Response {
    match nul_in_uri(request.uri()) {
        Some(err) => err.into_response(),
        None => next.run(request).await,
    }
}

fn nul_in_uri(uri: &Uri) -> Option<ApiError> {
    if uri.path().contains("%00") {
        return Some(ApiError::bad_request(
            NUL_CODE,
            "the path contains a NUL character (%00)",
        ));
    }
    let pair = uri.query()?.split('&').find(|pair| pair.contains("%00"))?;
    let name: String = pair
        .split('=')
        .next()
        .unwrap_or_default()
        .replace("%00", "")
        .chars()
        .take(64)
        .collect();
    Some(ApiError::bad_request(
        NUL_CODE,
        format!("query parameter '{name}' contains a NUL character (%00)"),
    ))
}

/// A JSON request body read as `T`, refused when any string or key in it holds a NUL
/// character (`\u0000`). Rejections are [`ApiError`]s: `invalid_json` (400 for a body
/// that is not JSON, 415 without a JSON content type, 422 for one of the wrong shape)
/// and `invalid_character` (400).
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let Json(value) = Json::<Value>::from_request(request, state).await?;
        let body = serde_path_to_error::deserialize(&value).map_err(|err| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_json",
                format!("Failed to deserialize the JSON body into the target type: {err}"),
            )
        })?;
        if let Some(at) = nul_in_json(&value) {
            return Err(ApiError::bad_request(
                NUL_CODE,
                format!("{at} contains a NUL character (\\u0000)"),
            ));
        }
        Ok(JsonBody(body))
    }
}

/// Where in `value` a NUL character is, as `field 'a.b[2]'`, if anywhere.
fn nul_in_json(value: &Value) -> Option<String> {
    fn walk(value: &Value, path: &mut String) -> Option<String> {
        match value {
            Value::String(text) if text.contains('\0') => Some(format!("field '{path}'")),
            Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                let found = walk(item, path);
                path.truncate(len);
                found
            }),
            Value::Object(fields) => fields.iter().find_map(|(key, item)| {
                if key.contains('\0') {
                    return Some("a field name".to_owned());
                }
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                let found = walk(item, path);
                path.truncate(len);
                found
            }),
            _ => None,
        }
    }
    walk(value, &mut String::new()).map(|at| {
        if at == "field ''" {
            "the body".to_owned()
        } else {
            at
        }
    })
}

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
    use serde_json::json;

    use super::*;

    #[test]
    fn a_nul_anywhere_in_the_uri_is_named() {
        let refusal = |uri: &str| nul_in_uri(&uri.parse().unwrap()).map(|e| e.message);
        assert_eq!(refusal("/api/v1/runs/run_1?status=failed&q=cus_1"), None);
        assert_eq!(refusal("/api/v1/runs/run_%2500"), None);
        assert!(refusal("/api/v1/runs/run%00").unwrap().contains("path"));
        assert!(
            refusal("/api/v1/runs?status=failed&q=a%00b")
                .unwrap()
                .contains("'q'")
        );
        assert!(
            refusal("/api/v1/events?na%00me=x")
                .unwrap()
                .contains("'name'")
        );
    }

    #[test]
    fn a_nul_anywhere_in_a_json_body_is_named() {
        assert_eq!(nul_in_json(&json!({"a": ["x", {"b": "y"}], "c": 1})), None);
        assert_eq!(
            nul_in_json(&json!({"a": ["x", {"b": "y\u{0}"}]})).as_deref(),
            Some("field 'a[1].b'")
        );
        assert_eq!(
            nul_in_json(&json!({"description": "\u{0}"})).as_deref(),
            Some("field 'description'")
        );
        assert_eq!(
            nul_in_json(&json!({"a\u{0}": 1})).as_deref(),
            Some("a field name")
        );
        assert_eq!(nul_in_json(&json!("\u{0}")).as_deref(), Some("the body"));
    }

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
