//! `GET /api/v1/disputes`: disputes by status, open ones by evidence due date.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::http::api::params::parse_limit;
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::payments::repo::{self, DEFAULT_LIMIT, DisputeFilter, DisputeRow, MAX_LIMIT};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/disputes", get(list))
}

#[derive(Debug, Deserialize)]
struct DisputeQuery {
    status: Option<String>,
    limit: Option<String>,
}

#[derive(Debug, Serialize)]
struct DisputeList {
    disputes: Vec<DisputeRow>,
}

fn status(value: Option<&str>) -> Result<Option<DisputeFilter>, ApiError> {
    value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse().map_err(|e: repo::UnknownDisputeStatus| {
                ApiError::bad_request("invalid_status", e.to_string())
            })
        })
        .transpose()
}

/// Disputes of one status, or every open one (`status=open`: soonest evidence due date
/// first), or all of them (newest first).
async fn list(
    State(state): State<AppState>,
    query: Result<Query<DisputeQuery>, QueryRejection>,
) -> Result<Json<DisputeList>, ApiError> {
    let Query(query) = query?;
    let status = status(query.status.as_deref())?;
    let limit = parse_limit(query.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    let disputes = repo::list_disputes(state.engine.store(), status, limit).await?;
    Ok(Json(DisputeList { disputes }))
}
