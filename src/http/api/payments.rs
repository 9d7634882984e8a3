//! `GET /api/v1/payments`: payments with their refunds and disputes.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::http::api::params::{parse_limit, parse_opt_seconds};
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::payments::repo::{self, DEFAULT_LIMIT, MAX_LIMIT, PaymentFilter, PaymentView};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/payments", get(list))
}

/// The query as sent: every value checked by [`PaymentQuery::filter`].
#[derive(Debug, Default, Deserialize)]
struct PaymentQuery {
    user: Option<String>,
    customer: Option<String>,
    status: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<String>,
}

#[derive(Debug, Serialize)]
struct PaymentList {
    payments: Vec<PaymentView>,
}

/// A text value, `None` when absent or blank.
fn text(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

impl PaymentQuery {
    fn filter(&self) -> Result<PaymentFilter, ApiError> {
        let status = text(&self.status).map(|s| s.parse()).transpose().map_err(
            |e: repo::UnknownPaymentStatus| ApiError::bad_request("invalid_status", e.to_string()),
        )?;
        let since = parse_opt_seconds("since", self.since.as_deref())?;
        let until = parse_opt_seconds("until", self.until.as_deref())?;
        if let (Some(since), Some(until)) = (since, until)
            && since > until
        {
            return Err(ApiError::bad_request(
                "invalid_range",
                format!("since ({since}) is after until ({until})"),
            ));
        }
        Ok(PaymentFilter {
            user: text(&self.user),
            customer: text(&self.customer),
            status,
            since,
            until,
            limit: parse_limit(self.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?,
        })
    }
}

/// Payments, the most recently made first, filtered by user, customer, status (as shown:
/// `refunded` and `partially_refunded` included) and time made (`since` inclusive,
/// `until` exclusive, in seconds).
async fn list(
    State(state): State<AppState>,
    query: Result<Query<PaymentQuery>, QueryRejection>,
) -> Result<Json<PaymentList>, ApiError> {
    let Query(query) = query?;
    let filter = query.filter()?;
    let payments = repo::list_payments(state.engine.store(), &filter).await?;
    Ok(Json(PaymentList { payments }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payments::repo::PaymentStatus;

    fn query(pairs: &[(&str, &str)]) -> PaymentQuery {
        let mut q = PaymentQuery::default();
        for (k, v) in pairs {
            let v = Some((*v).to_owned());
            match *k {
                "user" => q.user = v,
                "customer" => q.customer = v,
                "status" => q.status = v,
                "since" => q.since = v,
                "until" => q.until = v,
                "limit" => q.limit = v,
                _ => unreachable!(),
            }
        }
        q
    }

    #[test]
    fn an_empty_query_lists_the_default_page() {
        assert_eq!(query(&[]).filter().unwrap(), PaymentFilter::default());
        assert_eq!(
            query(&[("status", ""), ("user", " ")]).filter().unwrap(),
            PaymentFilter::default()
        );
    }

    #[test]
    fn every_value_is_checked() {
        let f = query(&[
            ("user", "user_1"),
            ("status", "partially_refunded"),
            ("since", "100"),
            ("until", "100"),
            ("limit", "7"),
        ])
        .filter()
        .unwrap();
        assert_eq!(f.user.as_deref(), Some("user_1"));
        assert_eq!(f.status, Some(PaymentStatus::PartiallyRefunded));
        assert_eq!((f.since, f.until, f.limit), (Some(100), Some(100), 7));

        let code = |pairs: &[(&str, &str)]| query(pairs).filter().expect_err("refused").code;
        assert_eq!(code(&[("status", "paid")]), "invalid_status");
        assert_eq!(code(&[("since", "soon")]), "invalid_time");
        assert_eq!(code(&[("since", "200"), ("until", "100")]), "invalid_range");
        assert_eq!(code(&[("limit", "0")]), "invalid_limit");
    }
}
