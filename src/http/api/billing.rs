//! The billing summary: subscriptions by status, recent payments, refunds and payment
//! failures, and paying customers not linked to a user yet.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::payments::repo;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/billing", get(show))
}

async fn show(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let store = state.engine.store();
    let subscriptions: Vec<Value> = store
        .recent_subscriptions(50)
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
        "subscriptions_by_status": store.subscriptions_by_status().await?,
        "subscriptions": subscriptions,
        "payments": repo::payments(store, 50).await?,
        "refunds": repo::recent_refunds(store, 50).await?,
        "payment_failures": repo::payment_failures(store, 50).await?,
        "unlinked_customers": repo::unlinked_customers(store, 50).await?,
    })))
}
