//! What SDK apps call on paysteps besides `/e/{key}`: `POST /fn/register`, through which
//! an app registers its functions (out-of-band sync), and the read endpoint apps poll,
//! `GET /v1/events/{id}/runs`. Both require the app's signing key (the hashed bearer)
//! when paysteps has one.
//!
//! The SDK reads `/fn/register`'s answer from its body, never its HTTP status: a failure
//! carries `"status"` and `"error"` there.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::state::AppState;
use crate::apps::{SyncError, SyncOutcome};
use crate::state::RunStatus;
use crate::store::RunFilter;

/// Largest registration accepted.
const MAX_REGISTRATION_BYTES: usize = 8 << 20;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/fn/register", post(register))
        .route("/v1/events/{id}/runs", get(event_runs))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_REGISTRATION_BYTES))
}

/// An answer in the shape the SDK reads: the status in the body as well.
fn answer(status: StatusCode, body: Value) -> Response {
    let mut body = body;
    body["status"] = json!(status.as_u16());
    (status, Json(body)).into_response()
}

fn failure(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    answer(status, json!({ "code": code, "error": message.into() }))
}

/// Whether the request proves it comes from an app holding paysteps' signing key;
/// without a key (dev) every request does.
fn authorized(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(keys) = state.apps.as_ref().and_then(|apps| apps.keys()) else {
        return true;
    };
    keys.authorizes(
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    )
}

async fn register(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(apps) = &state.apps else {
        return failure(
            StatusCode::NOT_FOUND,
            "no_apps",
            "this paysteps runs no SDK apps: start it with --app-url",
        );
    };
    if !authorized(&state, &headers) {
        return failure(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the Authorization bearer is not paysteps' signing key",
        );
    }
    match apps.register(&body).await {
        Ok(outcome) => answer(
            StatusCode::OK,
            json!({ "ok": true, "modified": !matches!(outcome, SyncOutcome::Unchanged) }),
        ),
        Err(SyncError::Store(err)) => {
            tracing::error!(error = %err, "storing a registration failed");
            failure(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the registration could not be stored",
            )
        }
        Err(err) => failure(
            StatusCode::BAD_REQUEST,
            "registration_refused",
            err.to_string(),
        ),
    }
}

/// `{"data":[{run_id, status, output, …}], "metadata":{}}`, statuses spelt as Inngest's.
async fn event_runs(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if !authorized(&state, &headers) {
        return failure(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the Authorization bearer is not paysteps' signing key",
        );
    }
    let filter = RunFilter {
        event_id: Some(id),
        limit: 1000,
        ..RunFilter::default()
    };
    let runs = match state.engine.store().runs(&filter).await {
        Ok(runs) => runs,
        Err(err) => {
            tracing::error!(error = %err, "reading an event's runs failed");
            return failure(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            );
        }
    };
    let data: Vec<Value> = runs
        .into_iter()
        .map(|run| {
            let status = inngest_status(run.status);
            json!({
                "run_id": run.id,
                "function_id": run.function_id,
                "event_id": run.event_id,
                "status": status,
                "output": run.output.as_deref().and_then(|o| serde_json::from_str::<Value>(o).ok()),
                "run_started_at": rfc3339(run.created_at),
                "ended_at": run.ended_at.map(rfc3339),
            })
        })
        .collect();
    (
        StatusCode::OK,
        Json(json!({ "data": data, "metadata": {} })),
    )
        .into_response()
}

fn inngest_status(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Completed => "Completed",
        RunStatus::Failed => "Failed",
        RunStatus::Cancelled => "Cancelled",
        RunStatus::Pending | RunStatus::Queued => "Queued",
        RunStatus::Running | RunStatus::Sleeping | RunStatus::Waiting => "Running",
    }
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}
