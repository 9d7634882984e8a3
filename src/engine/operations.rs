//! What an operator does to runs: replay one or many (from the start, or resuming at
//! the failed step), and cancel one or many.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{Engine, RunStatus};
use crate::ids::{FunctionId, RunId};
use crate::store::operations::RunQuery;
use crate::store::{self, NewRun, RunRow, Write};

/// The error a run cancelled through the API or the dashboard records.
const CANCELLED_BY_OPERATOR: &str = "cancelled by an operator";

/// Most runs one bulk operation touches.
pub const BULK_LIMIT: i64 = 10_000;

/// How a replay treats the original run's steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ReplayMode {
    /// Every step runs again.
    FromStart,
    /// The original's completed steps are kept (memoized); execution resumes at the
    /// step that failed.
    #[default]
    FromFailure,
}

impl ReplayMode {
    /// The mode as the API spells it: `from_start` or `from_failure`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplayMode::FromStart => "from_start",
            ReplayMode::FromFailure => "from_failure",
        }
    }
}

impl fmt::Display for ReplayMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ReplayMode {
    type Err = OperationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "from_start" => Ok(ReplayMode::FromStart),
            "from_failure" => Ok(ReplayMode::FromFailure),
            other => Err(OperationError::Invalid(format!(
                "unknown replay mode '{other}' (expected from_start or from_failure)"
            ))),
        }
    }
}

/// Why an operation was refused or failed. Refusals change nothing.
#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    /// No run has this id; holds the id.
    #[error("no run with id '{0}'")]
    NotFound(String),
    /// The run is in a state the operation does not apply to.
    #[error("{0}")]
    Conflict(String),
    /// The request itself is wrong (an unknown replay mode, a status the operation cannot
    /// apply to, `since` not before `until`…).
    #[error("{0}")]
    Invalid(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// The runs a bulk operation applies to.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only runs of this function.
    pub function_id: Option<String>,
    /// Statuses; a bulk replay defaults to `failed`, a bulk cancel to every status that
    /// has not ended.
    pub statuses: Vec<RunStatus>,
    /// Only runs created at or after this time, in milliseconds since the Unix epoch.
    pub since: Option<i64>,
    /// Only runs created before this time, in milliseconds since the Unix epoch.
    pub until: Option<i64>,
    /// A run id, event id (paysteps' or the sender's), Stripe object id, customer id, or
    /// the user id or email of a known customer.
    pub search: Option<String>,
}

/// What a bulk operation matched (preview) or did.
#[derive(Debug, Clone, Serialize)]
pub struct BulkOutcome {
    /// Runs matched by the selection.
    pub matched: i64,
    /// The runs acted on: the new replays, or the cancelled runs. Empty for a preview.
    pub run_ids: Vec<RunId>,
}

/// Which bulk operation a selection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkKind {
    /// Replaying runs that have ended.
    Replay,
    /// Cancelling runs that have not ended.
    Cancel,
}

impl Selection {
    /// The store query for this selection, checked against what `kind` may touch.
    pub(crate) fn query(&self, kind: BulkKind) -> Result<RunQuery, OperationError> {
        let statuses = if self.statuses.is_empty() {
            match kind {
                BulkKind::Replay => vec![RunStatus::Failed],
                BulkKind::Cancel => {
                    vec![RunStatus::Queued, RunStatus::Sleeping, RunStatus::Running]
                }
            }
        } else {
            self.statuses.clone()
        };
        for status in &statuses {
            match kind {
                BulkKind::Replay if !status.is_final() => {
                    return Err(OperationError::Invalid(format!(
                        "only ended runs can be replayed; '{status}' runs have not ended"
                    )));
                }
                BulkKind::Cancel if status.is_final() => {
                    return Err(OperationError::Invalid(format!(
                        "'{status}' runs have ended and cannot be cancelled"
                    )));
                }
                _ => {}
            }
        }
        if let (Some(since), Some(until)) = (self.since, self.until)
            && since >= until
        {
            return Err(OperationError::Invalid(
                "since must be before until".to_owned(),
            ));
        }
        Ok(RunQuery {
            statuses: statuses.iter().map(|s| s.as_str().to_owned()).collect(),
            function_id: self.function_id.clone(),
            since: self.since,
            until: self.until,
            search: self.search.clone(),
            without_replays: kind == BulkKind::Replay,
        })
    }
}

impl Engine {
    /// Starts a new run of the same function on the same event, linked to the original
    /// by `replay_of`. The original must have ended.
    pub async fn replay(&self, run_id: &RunId, mode: ReplayMode) -> Result<RunRow, OperationError> {
        let registered = self.inner.registry.ids();
        let now = self.clock().now_ms();
        let run_id = run_id.clone();
        let new = self
            .store()
            .write(
                Write::isolated().failing_with::<OperationError>(),
                move |tx| {
                    Box::pin(async move {
                        let original = locked_run(tx, &run_id).await?;
                        check_replayable(&original, &registered)?;
                        let new_id = replay_one(tx, &original, mode, now).await?;
                        tx.signal_new_runs().await?;
                        locked_run(tx, &new_id).await
                    })
                },
            )
            .await?;
        self.wake_workers();
        Ok(new)
    }

    /// How many runs a bulk operation on `selection` would touch.
    pub(crate) async fn preview(
        &self,
        selection: &Selection,
        kind: BulkKind,
    ) -> Result<BulkOutcome, OperationError> {
        let query = selection.query(kind)?;
        let matched = self.store().count_runs(&query).await?;
        Ok(BulkOutcome {
            matched,
            run_ids: Vec::new(),
        })
    }

    /// Replays every run in `selection` (runs already replayed are left out, so a replay
    /// that failed again is picked up instead of its original) in one transaction.
    /// With `expected`, refuses when the selection no longer matches that many runs.
    pub async fn replay_matching(
        &self,
        selection: &Selection,
        mode: ReplayMode,
        expected: Option<i64>,
    ) -> Result<BulkOutcome, OperationError> {
        let query = selection.query(BulkKind::Replay)?;
        let registered = self.inner.registry.ids();
        let now = self.clock().now_ms();
        let outcome = self
            .store()
            .write(
                Write::isolated().failing_with::<OperationError>(),
                move |tx| {
                    Box::pin(async move {
                        let runs = tx.select_runs(&query, BULK_LIMIT + 1).await?;
                        check_bulk(runs.len(), expected)?;
                        for run in &runs {
                            check_replayable(run, &registered)?;
                        }
                        let mut run_ids = Vec::with_capacity(runs.len());
                        for run in &runs {
                            run_ids.push(replay_one(tx, run, mode, now).await?);
                        }
                        if !run_ids.is_empty() {
                            tx.signal_new_runs().await?;
                        }
                        Ok(BulkOutcome {
                            matched: runs.len() as i64,
                            run_ids,
                        })
                    })
                },
            )
            .await?;
        if !outcome.run_ids.is_empty() {
            self.wake_workers();
        }
        Ok(outcome)
    }

    /// Cancels a run that has not ended. A queued or sleeping run is cancelled at once;
    /// a running one loses its lease, and its worker stops at the next step boundary
    /// (the step in flight finishes, but its checkpoint is refused).
    pub async fn cancel(&self, run_id: &RunId) -> Result<RunRow, OperationError> {
        let now = self.clock().now_ms();
        let run_id = run_id.clone();
        self.store()
            .write(
                Write::isolated().failing_with::<OperationError>(),
                move |tx| {
                    Box::pin(async move {
                        let run = locked_run(tx, &run_id).await?;
                        if !tx.cancel_run(&run_id, CANCELLED_BY_OPERATOR, now).await? {
                            return Err(OperationError::Conflict(format!(
                                "run '{}' is {} and cannot be cancelled",
                                run.id, run.status
                            )));
                        }
                        locked_run(tx, &run_id).await
                    })
                },
            )
            .await
    }

    /// Cancels every run in `selection` in one transaction. With `expected`, refuses
    /// when the selection no longer matches that many runs.
    pub async fn cancel_matching(
        &self,
        selection: &Selection,
        expected: Option<i64>,
    ) -> Result<BulkOutcome, OperationError> {
        let query = selection.query(BulkKind::Cancel)?;
        let now = self.clock().now_ms();
        self.store()
            .write(
                Write::isolated().failing_with::<OperationError>(),
                move |tx| {
                    Box::pin(async move {
                        let runs = tx.select_runs(&query, BULK_LIMIT + 1).await?;
                        check_bulk(runs.len(), expected)?;
                        let mut run_ids = Vec::with_capacity(runs.len());
                        for run in &runs {
                            if tx.cancel_run(&run.id, CANCELLED_BY_OPERATOR, now).await? {
                                run_ids.push(run.id.clone());
                            }
                        }
                        Ok(BulkOutcome {
                            matched: runs.len() as i64,
                            run_ids,
                        })
                    })
                },
            )
            .await
    }

    /// Wakes this process's idle workers so newly queued runs start at once.
    pub(crate) fn wake_workers(&self) {
        self.inner.wake.notify_waiters();
    }
}

/// The run `run_id`, locked for this transaction.
async fn locked_run(tx: &mut store::StoreTx, run_id: &RunId) -> Result<RunRow, OperationError> {
    tx.run_for_update(run_id)
        .await?
        .ok_or_else(|| OperationError::NotFound(run_id.to_string()))
}

fn check_replayable(run: &RunRow, registered: &[FunctionId]) -> Result<(), OperationError> {
    if !run.status.is_final() {
        return Err(OperationError::Conflict(format!(
            "run '{}' is {}; only ended runs can be replayed",
            run.id, run.status
        )));
    }
    if !registered.contains(&run.function_id) {
        return Err(OperationError::Conflict(format!(
            "run '{}' belongs to function '{}', which is not registered",
            run.id, run.function_id
        )));
    }
    Ok(())
}

fn check_bulk(found: usize, expected: Option<i64>) -> Result<(), OperationError> {
    let found = found as i64;
    if found > BULK_LIMIT {
        return Err(OperationError::Invalid(format!(
            "the selection matches more than {BULK_LIMIT} runs; narrow it"
        )));
    }
    match expected {
        Some(expected) if expected != found => Err(OperationError::Conflict(format!(
            "the selection now matches {found} runs, not the {expected} previewed; preview again"
        ))),
        _ => Ok(()),
    }
}

async fn replay_one(
    tx: &mut store::StoreTx,
    original: &RunRow,
    mode: ReplayMode,
    now: i64,
) -> store::Result<RunId> {
    let run = NewRun {
        id: RunId::new(),
        function_id: original.function_id.clone(),
        replay_of: Some(original.id.clone()),
    };
    tx.insert_run(&original.event_id, &run, now).await?;
    if mode == ReplayMode::FromFailure {
        tx.copy_completed_steps(&original.id, &run.id).await?;
    }
    Ok(run.id)
}
