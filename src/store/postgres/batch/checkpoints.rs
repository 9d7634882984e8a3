//! A run's progress, saved in batches with other runs': step checkpoints made outside a
//! transaction, and runs ending. Each is made only while its run's lease is held, as the
//! single statements it stands for are.

use crate::ids::RunId;
use crate::state::RunStatus;
use std::sync::LazyLock;

use super::{BatchQuery, Batched, column};
use crate::store::journal::{STEP_COLUMNS, STEP_UPSERT, StepUpdate};

/// Saves each checkpoint whose run is running under the given owner.
static SAVE_STEPS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH held AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], \
         $4::int8[], $5::text[], $6::text[], $7::int8[], $8::text[], $9::text[], $10::int8[], \
         $11::int8[], $12::int8[], $13::text[]) WITH ORDINALITY AS s({STEP_COLUMNS}, owner, n) \
         WHERE EXISTS (SELECT 1 FROM runs WHERE runs.id = s.run_id \
         AND runs.lease_owner = s.owner AND runs.status = 'running')), \
         saved AS (INSERT INTO steps ({STEP_COLUMNS}) SELECT {STEP_COLUMNS} FROM held \
         {STEP_UPSERT} RETURNING run_id, step_key) \
         SELECT held.n FROM held JOIN saved USING (run_id, step_key)"
    )
});

/// Ends each run that is running under the given owner.
const FINISH_RUNS: &str = "UPDATE runs SET status = f.status, output = f.output, \
     error = f.error, ended_at = f.at, updated_at = f.at, lease_owner = NULL, \
     lease_expires_at = NULL, due_at = NULL \
     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[]) \
     WITH ORDINALITY AS f(id, owner, status, output, error, at, n) \
     WHERE runs.id = f.id AND runs.lease_owner = f.owner AND runs.status = 'running' \
     RETURNING f.n";

/// A step checkpoint of a run held by `owner`.
pub(in crate::store) struct StepCheckpoint {
    pub run_id: RunId,
    pub owner: String,
    pub step: StepUpdate,
}

impl Batched for StepCheckpoint {
    fn statement(writes: &[StepCheckpoint]) -> BatchQuery<'_> {
        sqlx::query_as(SAVE_STEPS.as_str())
            .bind(column(writes, |w| w.run_id.as_str()))
            .bind(column(writes, |w| w.step.key.as_str()))
            .bind(column(writes, |w| w.step.name.as_str()))
            .bind(column(writes, |w| w.step.position))
            .bind(column(writes, |w| w.step.kind.as_str()))
            .bind(column(writes, |w| w.step.status.as_str()))
            .bind(column(writes, |w| w.step.attempts))
            .bind(column(writes, |w| w.step.output.as_deref()))
            .bind(column(writes, |w| w.step.error.as_deref()))
            .bind(column(writes, |w| w.step.wake_at))
            .bind(column(writes, |w| w.step.started_at))
            .bind(column(writes, |w| w.step.ended_at))
            .bind(column(writes, |w| w.owner.as_str()))
    }
}

/// The end of a run held by `owner`: its final status, output or error, and when.
pub(in crate::store) struct RunEnd {
    pub run_id: RunId,
    pub owner: String,
    pub status: RunStatus,
    pub output: Option<String>,
    pub error: Option<String>,
    pub at: i64,
}

impl Batched for RunEnd {
    fn statement(writes: &[RunEnd]) -> BatchQuery<'_> {
        sqlx::query_as(FINISH_RUNS)
            .bind(column(writes, |w| w.run_id.as_str()))
            .bind(column(writes, |w| w.owner.as_str()))
            .bind(column(writes, |w| w.status.as_str()))
            .bind(column(writes, |w| w.output.as_deref()))
            .bind(column(writes, |w| w.error.as_deref()))
            .bind(column(writes, |w| w.at))
    }
}
