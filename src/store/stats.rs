//! Reads of the aggregates that database triggers keep as events and runs are written
//! (tables `event_names`, `function_stats`, `function_durations`), and the queue gauges
//! of `/metrics`. None of them reads more rows than the aggregates hold, whatever the
//! number of events and runs stored.

use serde::Serialize;

use super::{Dialect, Result, Store};
use crate::args;
use crate::ids::FunctionId;

/// Width of a `function_stats` bucket: runs are counted by the five minutes they were
/// created in (the triggers of migration `function_stats` round `created_at` down to it).
pub const BUCKET_MS: i64 = 300_000;

/// The start of the bucket holding `at_ms`.
pub fn bucket_of(at_ms: i64) -> i64 {
    at_ms.div_euclid(BUCKET_MS) * BUCKET_MS
}

/// An event name and the number of stored events of that name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct EventName {
    /// The event name (`stripe/invoice.paid`, `app/signup`…).
    pub name: String,
    /// Events of that name stored.
    pub count: i64,
}

/// A function's runs created in a window, and how many of them ended how.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct FunctionCounts {
    /// The function's id.
    pub function_id: FunctionId,
    /// Runs created in the window.
    pub runs: i64,
    /// Those that completed.
    pub completed: i64,
    /// Those that failed for good.
    pub failed: i64,
    /// Those cancelled.
    pub cancelled: i64,
    /// The longest duration of the completed and failed ones, in ms.
    pub max_ms: Option<i64>,
}

/// How many completed or failed runs of a function took at most `le_ms` (and more than
/// the bin below).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DurationBin {
    /// The function's id.
    pub function_id: FunctionId,
    /// The bin's upper bound in ms (`i64::MAX` for the last bin).
    pub le_ms: i64,
    /// Runs in the bin.
    pub count: i64,
}

/// Runs not yet ended, each count read up to a cap, and the oldest due queued run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct QueueGauges {
    /// Runs waiting for a concurrency slot.
    pub pending: i64,
    /// Runs queued (due or not).
    pub queued: i64,
    /// Runs being executed.
    pub running: i64,
    /// Runs asleep until a time.
    pub sleeping: i64,
    /// Runs waiting for an event or an invoked run.
    pub waiting: i64,
    /// `run_at` of the queued run due first.
    pub oldest_queued_at: Option<i64>,
}

impl Store {
    /// At most `limit` event names with their counts, the most frequent first; with a
    /// `prefix`, only the names starting with it.
    pub(crate) async fn event_names(
        &self,
        prefix: Option<&str>,
        limit: i64,
    ) -> Result<Vec<EventName>> {
        match prefix.filter(|p| !p.is_empty()) {
            None => {
                self.fetch_all(
                    "SELECT name, count FROM event_names ORDER BY count DESC, name LIMIT $1",
                    args![limit],
                )
                .await
            }
            // substr compares characters the same way on both backends, where LIKE
            // differs in case and needs escaping; the table holds one row per name.
            Some(prefix) => {
                let chars = prefix.chars().count() as i64;
                self.fetch_all(
                    "SELECT name, count FROM event_names WHERE substr(name, 1, CAST($2 AS INTEGER)) = $1 \
                     ORDER BY count DESC, name LIMIT $3",
                    args![prefix, chars, limit],
                )
                .await
            }
        }
    }

    /// Per function, its runs created from the bucket holding `since_ms` on.
    pub(crate) async fn function_counts(&self, since_ms: i64) -> Result<Vec<FunctionCounts>> {
        self.fetch_all(
            "SELECT function_id, CAST(SUM(runs) AS BIGINT) AS runs, \
             CAST(SUM(completed) AS BIGINT) AS completed, CAST(SUM(failed) AS BIGINT) AS failed, \
             CAST(SUM(cancelled) AS BIGINT) AS cancelled, MAX(max_ms) AS max_ms \
             FROM function_stats WHERE bucket >= $1 GROUP BY function_id",
            args![bucket_of(since_ms)],
        )
        .await
    }

    /// Per function, the duration histogram of its runs created from the bucket holding
    /// `since_ms` on that completed or failed.
    pub(crate) async fn function_durations(&self, since_ms: i64) -> Result<Vec<DurationBin>> {
        self.fetch_all(
            "SELECT function_id, le_ms, CAST(SUM(count) AS BIGINT) AS count \
             FROM function_durations WHERE bucket >= $1 \
             GROUP BY function_id, le_ms ORDER BY function_id, le_ms",
            args![bucket_of(since_ms)],
        )
        .await
    }

    /// Open runs by status, each count stopping at `cap`, and the oldest due queued run:
    /// index reads bounded by `cap`, never a scan of `runs`.
    pub(crate) async fn queue_gauges(&self, cap: i64) -> Result<QueueGauges> {
        // A queued run is due at its `run_at`: the oldest is the first queued entry of
        // `runs_claimable` (what claims read), found without reading the others and
        // without an index of its own that every run would pay for when queued and claimed.
        let claimable = match self.dialect() {
            Dialect::Sqlite => "INDEXED BY runs_claimable",
            Dialect::Postgres => "",
        };
        let count = |status: &str| {
            format!(
                "(SELECT COUNT(*) FROM (SELECT 1 FROM runs WHERE status = '{status}' \
                 LIMIT $1) capped_{status})"
            )
        };
        let sql = format!(
            "SELECT {} AS pending, {} AS queued, {} AS running, {} AS sleeping, {} AS waiting, \
             (SELECT due_at FROM runs {claimable} WHERE due_at IS NOT NULL \
             AND status = 'queued' ORDER BY due_at LIMIT 1) AS oldest_queued_at",
            count("pending"),
            count("queued"),
            count("running"),
            count("sleeping"),
            count("waiting"),
        );
        self.fetch_one(&sql, args![cap]).await
    }
}
