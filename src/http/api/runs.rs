use std::collections::BTreeMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::events::event_view;
use super::json_field;
use super::params::{parse_limit, parse_opt_time, parse_statuses};
use crate::engine::RunStatus;
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::ids::{EventId, FunctionId, RunId};
use crate::state::{StepKind, StepStatus};
use crate::store::operations::RunQuery;
use crate::store::{RunRow, StepRow};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/runs", get(list))
        .route("/api/v1/runs/{id}", get(show))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    /// Comma-separated statuses.
    status: Option<String>,
    function: Option<String>,
    /// An event id; kept for older clients, `q` finds the same runs.
    event: Option<String>,
    /// Milliseconds since the epoch, or a span back from now (`1h`).
    since: Option<String>,
    until: Option<String>,
    /// Run id, event id, Stripe object id, customer id, or a customer's user id or email.
    q: Option<String>,
    limit: Option<String>,
}

/// Runs listed when the request names no `limit`, and the most it may name.
pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 1000;

#[derive(Debug, Serialize)]
pub struct RunView {
    pub id: RunId,
    pub function_id: FunctionId,
    pub event_id: EventId,
    pub status: RunStatus,
    pub attempt: i64,
    pub output: Value,
    pub error: Option<String>,
    pub replay_of: Option<RunId>,
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
    kind: StepKind,
    status: StepStatus,
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

/// Counts per status stop here: a count above it reads "more than 10,000", so a listing
/// costs the same at a million runs as at a thousand.
const COUNT_CAP: i64 = 10_000;

async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query?;
    let limit = parse_limit(query.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    let now = state.engine.clock().now_ms();
    let statuses = parse_statuses(query.status.as_deref())?;
    let search = query
        .q
        .filter(|q| !q.trim().is_empty())
        .or(query.event.filter(|e| !e.is_empty()));
    let filter = RunQuery {
        statuses: statuses.iter().map(|s| s.as_str().to_owned()).collect(),
        function_id: query.function.filter(|f| !f.is_empty()),
        since: parse_opt_time("since", query.since.as_deref(), now)?,
        until: parse_opt_time("until", query.until.as_deref(), now)?,
        search,
        without_replays: false,
    };
    let store = state.engine.store();
    let runs: Vec<RunView> = store
        .search_runs(&filter, limit)
        .await?
        .into_iter()
        .map(RunView::from)
        .collect();
    let mut counts: BTreeMap<&str, i64> = RunStatus::ALL.iter().map(|s| (s.as_str(), 0)).collect();
    let mut total = 0;
    let all: Vec<&str> = RunStatus::ALL.iter().map(|s| s.as_str()).collect();
    for (status, n) in store.count_runs_by_status(&filter, &all, COUNT_CAP).await? {
        let status = status.as_str();
        if statuses.is_empty() || statuses.iter().any(|s| s.as_str() == status) {
            total += n;
        }
        if let Some(count) = RunStatus::ALL
            .iter()
            .find(|s| s.as_str() == status)
            .and_then(|s| counts.get_mut(s.as_str()))
        {
            *count = n;
        }
    }
    Ok(Json(
        json!({ "runs": runs, "counts": counts, "total": total, "count_cap": COUNT_CAP }),
    ))
}

/// A run with its event, steps (the failing one marked), status history and replays.
async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = state.engine.store();
    // An id that is no run id names no run: the same answer as an unknown one.
    let Ok(id) = id.parse::<RunId>() else {
        return Err(ApiError::not_found("run", &id));
    };
    let run = store
        .run(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("run", id.as_str()))?;
    let event = store.event(run.event_id.as_str()).await?;
    let steps: Vec<StepView> = store
        .steps(&id)
        .await?
        .into_iter()
        .map(StepView::from)
        .collect();
    let failed_step = if run.status == RunStatus::Failed {
        steps
            .iter()
            .rev()
            .find(|s| matches!(s.status, StepStatus::Failed | StepStatus::Errored))
            .map(|s| s.key.clone())
    } else {
        None
    };
    let history = store.run_history(&id).await?;
    let replays: Vec<RunView> = store
        .replays_of(&id)
        .await?
        .into_iter()
        .map(RunView::from)
        .collect();
    let mut body = serde_json::to_value(RunView::from(run)).map_err(ApiError::internal)?;
    body["steps"] = serde_json::to_value(steps).unwrap_or_default();
    body["failed_step"] = json!(failed_step);
    body["history"] = serde_json::to_value(history).unwrap_or_default();
    body["replays"] = serde_json::to_value(replays).unwrap_or_default();
    body["event"] = event.as_ref().map_or(Value::Null, event_view);
    Ok(Json(body))
}
