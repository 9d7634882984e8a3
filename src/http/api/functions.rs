use std::collections::HashMap;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Value, json};

use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::store::operations::RunOutcome;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/functions", get(list))
}

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// Most runs read for a day's statistics.
const STATS_LIMIT: i64 = 200_000;

/// How a function did over a window.
#[derive(Debug, Default, Serialize, PartialEq)]
struct WindowStats {
    /// Runs created in the window.
    runs: i64,
    completed: i64,
    failed: i64,
    cancelled: i64,
    /// Completed out of ended (completed + failed), or `None` when none ended.
    success_rate: Option<f64>,
    /// Duration from first start to end of the runs that ended, in ms.
    p50_ms: Option<i64>,
    p95_ms: Option<i64>,
}

fn window_stats<'a>(outcomes: impl Iterator<Item = &'a RunOutcome>) -> WindowStats {
    let mut stats = WindowStats::default();
    let mut durations = Vec::new();
    for outcome in outcomes {
        stats.runs += 1;
        match outcome.status.as_str() {
            "completed" => stats.completed += 1,
            "failed" => stats.failed += 1,
            "cancelled" => stats.cancelled += 1,
            _ => {}
        }
        if matches!(outcome.status.as_str(), "completed" | "failed") {
            durations.extend(outcome.duration_ms);
        }
    }
    let ended = stats.completed + stats.failed;
    if ended > 0 {
        stats.success_rate = Some(stats.completed as f64 / ended as f64);
    }
    durations.sort_unstable();
    stats.p50_ms = percentile(&durations, 50);
    stats.p95_ms = percentile(&durations, 95);
    stats
}

/// The nearest-rank percentile of sorted values.
fn percentile(sorted: &[i64], p: usize) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

/// Every registered function with its trigger and configuration, its volume, success
/// rate and p50/p95 duration over the last hour and day, and its latest errors.
async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let now = state.engine.clock().now_ms();
    let store = state.engine.store();
    let outcomes = store.run_outcomes(now - DAY_MS, STATS_LIMIT).await?;
    let mut by_function: HashMap<&str, Vec<&RunOutcome>> = HashMap::new();
    for outcome in &outcomes {
        by_function
            .entry(outcome.function_id.as_str())
            .or_default()
            .push(outcome);
    }
    let mut functions = Vec::new();
    for info in state.engine.functions() {
        let runs = by_function.remove(info.id.as_str()).unwrap_or_default();
        let hour = window_stats(
            runs.iter()
                .copied()
                .filter(|o| o.created_at >= now - HOUR_MS),
        );
        let day = window_stats(runs.iter().copied());
        let errors = store.latest_errors(&info.id, 5).await?;
        let mut entry = serde_json::to_value(&info).unwrap_or_default();
        entry["stats"] = json!({ "hour": hour, "day": day });
        entry["latest_errors"] = serde_json::to_value(errors).unwrap_or_default();
        functions.push(entry);
    }
    Ok(Json(json!({ "functions": functions })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(status: &str, duration: Option<i64>) -> RunOutcome {
        RunOutcome {
            function_id: "f".into(),
            status: status.into(),
            created_at: 0,
            duration_ms: duration,
        }
    }

    #[test]
    fn stats_count_outcomes_and_take_nearest_rank_percentiles() {
        let mut runs: Vec<RunOutcome> = (1..=19)
            .map(|ms| outcome("completed", Some(ms * 10)))
            .collect();
        runs.push(outcome("failed", Some(1000)));
        runs.push(outcome("queued", None));
        let stats = window_stats(runs.iter());
        assert_eq!(stats.runs, 21);
        assert_eq!((stats.completed, stats.failed), (19, 1));
        assert_eq!(stats.success_rate, Some(0.95));
        assert_eq!(stats.p50_ms, Some(100));
        assert_eq!(stats.p95_ms, Some(190));
        assert_eq!(window_stats(std::iter::empty()), WindowStats::default());
    }
}
