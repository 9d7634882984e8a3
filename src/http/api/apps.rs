//! `/api/v1/apps`: the SDK apps paysteps runs functions of, and syncing one now.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use reqwest::Url;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::apps::{SyncError, SyncOutcome};
use crate::http::error::ApiError;
use crate::http::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/apps", get(list))
        .route("/api/v1/apps/sync", post(sync))
}

/// Every app: its URL, SDK, last sync and the error of the last attempt, if it failed.
async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let apps = match &state.apps {
        Some(apps) => apps.list().await?,
        None => Vec::new(),
    };
    Ok(Json(json!({ "apps": apps })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncRequest {
    url: String,
}

/// Syncs one app now and answers what changed, or why the sync failed.
async fn sync(
    State(state): State<AppState>,
    body: Result<Json<SyncRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(request) = body?;
    let apps = state
        .apps
        .as_ref()
        .ok_or_else(|| ApiError::not_found("app", &request.url))?;
    let url = Url::parse(&request.url).map_err(|_| {
        ApiError::bad_request("invalid_url", format!("'{}' is not a URL", request.url))
    })?;
    if !apps.knows(&url) {
        return Err(ApiError::not_found("app", &request.url));
    }
    match apps.sync(&url).await {
        Ok(outcome) => Ok(Json(match outcome {
            SyncOutcome::Updated { functions } => json!({ "synced": true, "functions": functions }),
            SyncOutcome::Unchanged => json!({ "synced": true, "modified": false }),
            SyncOutcome::Awaiting => json!({ "synced": false, "awaiting_registration": true }),
        })),
        Err(SyncError::Store(err)) => Err(err.into()),
        Err(err) => Err(ApiError::new(
            axum::http::StatusCode::BAD_GATEWAY,
            "sync_failed",
            err.to_string(),
        )),
    }
}
