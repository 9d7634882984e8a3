//! The billing summary: subscriptions by status, recent payments, refunds and payment
//! failures, and paying customers not linked to a user yet.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::params::parse_limit;
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::payments::repo;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/billing", get(show))
}

#[derive(Debug, Deserialize)]
struct BillingQuery {
    /// Rows of each list.
    limit: Option<String>,
}

/// Rows of each list when the request names no `limit`, and the most it may name.
const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 500;

async fn show(
    State(state): State<AppState>,
    query: Result<Query<BillingQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query?;
    let limit = parse_limit(query.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    let store = state.engine.store();
    let subscriptions: Vec<Value> = repo::recent_subscriptions(store, limit)
        .await?
        .into_iter()
        .map(|s| {
            let entitled = state.entitlement.entitles(&s.status);
            let mut row = json!(s);
            row["entitled"] = entitled.into();
            row
        })
        .collect();
    Ok(Json(json!({
        "subscriptions_by_status": repo::subscriptions_by_status(store).await?,
        "subscriptions": subscriptions,
        "payments": repo::payments(store, limit).await?,
        "refunds": repo::recent_refunds(store, limit).await?,
        "payment_failures": repo::payment_failures(store, limit).await?,
        "unlinked_customers": repo::unlinked_customers(store, limit).await?,
    })))
}
