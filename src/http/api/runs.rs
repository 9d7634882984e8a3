use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::json_field;
use crate::engine::RunStatus;
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::store::{RunFilter, RunRow, StepRow};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/runs", get(list))
        .route("/api/v1/runs/{id}", get(show))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    status: Option<String>,
    function: Option<String>,
    event: Option<String>,
    since: Option<i64>,
    until: Option<i64>,
    limit: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct RunView {
    pub id: String,
    pub function_id: String,
    pub event_id: String,
    pub status: String,
    pub attempt: i64,
    pub output: Value,
    pub error: Option<String>,
    pub replay_of: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    /// When a queued or sleeping run is next due.
    pub run_at: i64,
}

impl From<RunRow> for RunView {
    fn from(row: RunRow) -> Self {
        RunView {
            output: json_field(row.output.as_deref()),
            id: row.id,
            function_id: row.function_id,
            event_id: row.event_id,
            status: row.status,
            attempt: row.attempt,
            error: row.error,
            replay_of: row.replay_of,
            created_at: row.created_at,
            started_at: row.started_at,
            ended_at: row.ended_at,
            run_at: row.run_at,
        }
    }
}

#[derive(Debug, Serialize)]
struct StepView {
    key: String,
    name: String,
    kind: String,
    status: String,
    attempts: i64,
    output: Value,
    error: Option<String>,
    wake_at: Option<i64>,
    started_at: i64,
    ended_at: Option<i64>,
}

impl From<StepRow> for StepView {
    fn from(row: StepRow) -> Self {
        StepView {
            output: json_field(row.output.as_deref()),
            key: row.step_key,
            name: row.name,
            kind: row.kind,
            status: row.status,
            attempts: row.attempts,
            error: row.error,
            wake_at: row.wake_at,
            started_at: row.started_at,
            ended_at: row.ended_at,
        }
    }
}

async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query?;
    let status = query
        .status
        .map(|s| s.parse::<RunStatus>())
        .transpose()
        .map_err(|e| ApiError::bad_request("invalid_status", e.to_string()))?;
    let filter = RunFilter {
        status: status.map(|s| s.as_str().to_owned()),
        function_id: query.function,
        event_id: query.event,
        since: query.since,
        until: query.until,
        limit: query.limit.unwrap_or(100).clamp(1, 1000),
    };
    let runs: Vec<RunView> = state
        .engine
        .store()
        .runs(&filter)
        .await?
        .into_iter()
        .map(RunView::from)
        .collect();
    Ok(Json(serde_json::json!({ "runs": runs })))
}

async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = state.engine.store();
    let run = store
        .run(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("run", &id))?;
    let steps: Vec<StepView> = store
        .steps(&id)
        .await?
        .into_iter()
        .map(StepView::from)
        .collect();
    let mut body = serde_json::to_value(RunView::from(run)).map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            e.to_string(),
        )
    })?;
    body["steps"] = serde_json::to_value(steps).unwrap_or_default();
    Ok(Json(body))
}
