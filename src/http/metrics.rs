use axum::Router;
use axum::extract::{Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::error::ApiError;
use super::state::AppState;
use crate::metrics::StatusLabels;

/// Open runs counted per status up to this: a scrape reads at most this many index
/// entries per status however long the queue is. A gauge at the cap means "at least".
pub const OPEN_RUNS_CAP: i64 = 100_000;

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

/// Counters and histograms of this process, plus the queue as the database sees it now.
/// With `PAYSTEPS_METRICS_TOKEN` set, only for requests bearing it.
async fn metrics(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let engine = &state.engine;
    let now = engine.clock().now_ms();
    if let Some(refused) = state.access.metrics_refusal(&request, now) {
        return Ok(refused);
    }
    let metrics = engine.metrics();
    let gauges = engine.store().queue_gauges(OPEN_RUNS_CAP).await?;
    for (status, count) in [
        ("pending", gauges.pending),
        ("queued", gauges.queued),
        ("running", gauges.running),
        ("sleeping", gauges.sleeping),
        ("waiting", gauges.waiting),
    ] {
        metrics
            .runs_open
            .get_or_create(&StatusLabels {
                status: status.to_owned(),
            })
            .set(count);
    }
    metrics
        .oldest_queued_ms
        .set(gauges.oldest_queued_at.map_or(0, |at| (now - at).max(0)));
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
        .into_response())
}
