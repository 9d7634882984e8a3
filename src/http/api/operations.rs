//! Replay and cancel, for one run or a selection of runs (preview first, then confirm).

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::params::{JsonBody, SelectionInput};
use super::runs::RunView;
use crate::engine::operations::{BulkKind, OperationError, ReplayMode};
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::ids::RunId;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/runs/{id}/replay", post(replay))
        .route("/api/v1/runs/{id}/cancel", post(cancel))
        .route("/api/v1/runs/replay", post(bulk_replay))
        .route("/api/v1/runs/cancel", post(bulk_cancel))
}

impl From<OperationError> for ApiError {
    fn from(err: OperationError) -> Self {
        match err {
            OperationError::NotFound(id) => ApiError::not_found("run", &id),
            OperationError::Conflict(msg) => ApiError::new(StatusCode::CONFLICT, "conflict", msg),
            OperationError::Invalid(msg) => ApiError::bad_request("invalid_selection", msg),
            OperationError::Store(err) => ApiError::from(err),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    #[serde(default)]
    mode: ReplayMode,
}

/// A body is optional for single-run operations: none, or an empty one, takes defaults.
fn optional_body<T: Default>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    match body {
        Ok(Json(body)) => Ok(body),
        Err(JsonRejection::MissingJsonContentType(_)) => Ok(T::default()),
        Err(rejection) => Err(rejection.into()),
    }
}

/// The run named in the path; an id that is no run id names no run, and is answered
/// as an unknown one is.
fn run_id(id: String) -> Result<RunId, OperationError> {
    id.parse().map_err(|_| OperationError::NotFound(id))
}

async fn replay(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<ReplayBody>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = optional_body(body)?;
    let run = state.engine.replay(&run_id(id)?, body.mode).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "mode": body.mode, "run": RunView::from(run) })),
    ))
}

async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let run = state.engine.cancel(&run_id(id)?).await?;
    Ok(Json(json!({ "run": RunView::from(run) })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkBody {
    function: Option<String>,
    /// Comma-separated statuses.
    status: Option<String>,
    since: Option<String>,
    until: Option<String>,
    search: Option<String>,
    #[serde(default)]
    mode: Option<ReplayMode>,
    /// False (the default) only counts the runs; true acts on them.
    #[serde(default)]
    confirm: bool,
    /// The count the preview showed; when given, a selection that changed is refused.
    expected: Option<i64>,
}

impl BulkBody {
    fn selection_input(&self) -> SelectionInput {
        SelectionInput {
            function: self.function.clone(),
            status: self.status.clone(),
            since: self.since.clone(),
            until: self.until.clone(),
            search: self.search.clone(),
        }
    }
}

async fn bulk_replay(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<BulkBody>,
) -> Result<Json<Value>, ApiError> {
    let now = state.engine.clock().now_ms();
    let selection = body.selection_input().selection(now)?;
    let mode = body.mode.unwrap_or_default();
    if !body.confirm {
        let preview = state.engine.preview(&selection, BulkKind::Replay).await?;
        return Ok(Json(json!({
            "preview": true,
            "mode": mode,
            "matched": preview.matched,
        })));
    }
    let done = state
        .engine
        .replay_matching(&selection, mode, body.expected)
        .await?;
    Ok(Json(json!({
        "preview": false,
        "mode": mode,
        "matched": done.matched,
        "run_ids": done.run_ids,
    })))
}

async fn bulk_cancel(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<BulkBody>,
) -> Result<Json<Value>, ApiError> {
    if body.mode.is_some() {
        return Err(ApiError::bad_request(
            "invalid_selection",
            "mode applies to replays only",
        ));
    }
    let now = state.engine.clock().now_ms();
    let selection = body.selection_input().selection(now)?;
    if !body.confirm {
        let preview = state.engine.preview(&selection, BulkKind::Cancel).await?;
        return Ok(Json(json!({ "preview": true, "matched": preview.matched })));
    }
    let done = state
        .engine
        .cancel_matching(&selection, body.expected)
        .await?;
    Ok(Json(json!({
        "preview": false,
        "matched": done.matched,
        "run_ids": done.run_ids,
    })))
}
