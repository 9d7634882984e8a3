use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;

use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::store::stats::{DurationBin, FunctionCounts};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/functions", get(list))
}

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// How a function did over a window: the five-minute buckets from the one holding the
/// window's start to now.
#[derive(Debug, Default, Serialize, PartialEq)]
struct WindowStats {
    /// Runs created in the window.
    runs: i64,
    completed: i64,
    failed: i64,
    cancelled: i64,
    /// Completed out of ended (completed + failed), or `None` when none ended.
    success_rate: Option<f64>,
    /// Duration from first start to end of the runs that completed or failed, in ms: the
    /// upper bound of the histogram bin holding the percentile (never above the longest).
    p50_ms: Option<i64>,
    p95_ms: Option<i64>,
}

/// The statistics of one function from its counts and its duration bins (ascending).
fn window_stats(counts: Option<&FunctionCounts>, bins: &[&DurationBin]) -> WindowStats {
    let Some(counts) = counts else {
        return WindowStats::default();
    };
    let ended = counts.completed + counts.failed;
    WindowStats {
        runs: counts.runs,
        completed: counts.completed,
        failed: counts.failed,
        cancelled: counts.cancelled,
        success_rate: (ended > 0).then(|| counts.completed as f64 / ended as f64),
        p50_ms: percentile(bins, counts.max_ms, 50),
        p95_ms: percentile(bins, counts.max_ms, 95),
    }
}

/// The nearest-rank percentile of a histogram, as its bin's upper bound, capped by the
/// largest value seen.
fn percentile(bins: &[&DurationBin], max_ms: Option<i64>, p: i64) -> Option<i64> {
    let total: i64 = bins.iter().map(|b| b.count).sum();
    if total == 0 {
        return None;
    }
    let rank = ((p * total + 99) / 100).max(1);
    let mut seen = 0;
    let bound = bins.iter().find_map(|bin| {
        seen += bin.count;
        (seen >= rank).then_some(bin.le_ms)
    })?;
    Some(max_ms.map_or(bound, |max| bound.min(max)))
}

/// Every registered function with its trigger and configuration, its volume, success
/// rate and p50/p95 duration over the last hour and day, and its latest errors; read
/// from the statistics kept as runs are created and end.
async fn list(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let now = state.engine.clock().now_ms();
    let store = state.engine.store();
    let hour_counts = store.function_counts(now - HOUR_MS).await?;
    let day_counts = store.function_counts(now - DAY_MS).await?;
    let hour_bins = store.function_durations(now - HOUR_MS).await?;
    let day_bins = store.function_durations(now - DAY_MS).await?;
    let of = |counts: &[FunctionCounts], bins: &[DurationBin], id: &str| {
        let counts = counts.iter().find(|c| c.function_id == id);
        let bins: Vec<&DurationBin> = bins.iter().filter(|b| b.function_id == id).collect();
        window_stats(counts, &bins)
    };
    let mut functions = Vec::new();
    for info in state.engine.functions() {
        let hour = of(&hour_counts, &hour_bins, info.id.as_str());
        let day = of(&day_counts, &day_bins, info.id.as_str());
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

    fn bin(le_ms: i64, count: i64) -> DurationBin {
        DurationBin {
            function_id: "f".parse().unwrap(),
            le_ms,
            count,
        }
    }

    #[test]
    fn stats_count_outcomes_and_take_percentiles_from_bins() {
        let counts = FunctionCounts {
            function_id: "f".parse().unwrap(),
            runs: 21,
            completed: 19,
            failed: 1,
            cancelled: 0,
            max_ms: Some(1_000),
        };
        // 20 durations: 10 of at most 50 ms, 9 at most 200 ms, 1 above 500 ms.
        let bins = [bin(50, 10), bin(200, 9), bin(i64::MAX, 1)];
        let refs: Vec<&DurationBin> = bins.iter().collect();
        let stats = window_stats(Some(&counts), &refs);
        assert_eq!(stats.runs, 21);
        assert_eq!((stats.completed, stats.failed), (19, 1));
        assert_eq!(stats.success_rate, Some(0.95));
        assert_eq!(stats.p50_ms, Some(50));
        assert_eq!(stats.p95_ms, Some(200));
        assert_eq!(percentile(&refs, Some(1_000), 100), Some(1_000));
        assert_eq!(percentile(&refs, Some(30), 50), Some(30));
        assert_eq!(window_stats(None, &[]), WindowStats::default());
        assert_eq!(percentile(&[], None, 50), None);
    }
}
