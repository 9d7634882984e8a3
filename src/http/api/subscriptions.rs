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

/// "Is this user entitled, by which subscription": `subscribed` is true when any of the
/// user's subscriptions has an entitling status; `subscription` is the entitling one
/// (`active` or `trialing` first, then the newest), else the newest; `subscriptions`
/// lists them all. A user with none is answered 200 with `subscribed` false.
async fn show(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let subscriptions =
        repo::user_subscriptions(state.engine.store(), &user_id, &state.entitlement).await?;
    let subscribed = subscriptions.iter().any(|s| s.entitled);
    Ok(Json(json!({
        "user_id": user_id,
        "subscribed": subscribed,
        "entitled_statuses": state.entitlement.statuses(),
        "subscription": subscriptions.first(),
        "subscriptions": subscriptions,
    })))
}
