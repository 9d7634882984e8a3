use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::payments::repo;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/users/{user_id}/subscription", get(show))
}

/// "Is this user subscribed, to what, until when": 200 with `subscribed` false when the
/// user has no subscription at all.
async fn show(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let subscription = repo::user_subscription(state.engine.store(), &user_id).await?;
    let subscribed = subscription.as_ref().is_some_and(|s| s.active);
    Ok(Json(json!({
        "user_id": user_id,
        "subscribed": subscribed,
        "subscription": subscription,
    })))
}
