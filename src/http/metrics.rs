use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::error::ApiError;
use super::state::AppState;
use crate::metrics::StatusLabels;

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

/// Counters and histograms of this process, plus the queue as the database sees it now.
async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let engine = &state.engine;
    let metrics = engine.metrics();
    let open: Vec<(String, i64)> = engine
        .store()
        .fetch_all(
            "SELECT status, COUNT(*) FROM runs WHERE status IN ('queued', 'running', 'sleeping') \
             GROUP BY status",
            vec![],
        )
        .await?;
    for status in ["queued", "running", "sleeping"] {
        let count = open
            .iter()
            .find(|(s, _)| s == status)
            .map_or(0, |(_, n)| *n);
        metrics
            .runs_open
            .get_or_create(&StatusLabels {
                status: status.to_owned(),
            })
            .set(count);
    }
    let (oldest,): (Option<i64>,) = engine
        .store()
        .fetch_one(
            "SELECT MIN(run_at) FROM runs WHERE status = 'queued'",
            vec![],
        )
        .await?;
    let now = engine.clock().now_ms();
    metrics
        .oldest_queued_ms
        .set(oldest.map_or(0, |at| (now - at).max(0)));
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
        .into_response())
}
