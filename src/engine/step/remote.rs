//! Step tools for functions whose code runs elsewhere (an SDK app's): the app names each
//! step by a key of its own and reports how it ended; these record it as such.

use tokio_util::sync::CancellationToken;

use super::{Halt, Interrupt, Step};
use crate::engine::retry::{AfterFailure, after_failure};
use crate::state::{StepKind, StepStatus};
use crate::store::{StepRow, StepUpdate};

/// A step as an app reported it.
#[derive(Debug, Clone)]
pub(crate) struct RemoteStep {
    /// The app's key for it (for the SDKs, a hash of its id).
    pub key: String,
    /// The name to show.
    pub name: String,
    pub kind: StepKind,
    pub status: StepStatus,
    pub attempts: i64,
    pub output: Option<String>,
    pub error: Option<String>,
    /// When the step began, when the caller says (else when it was first stored).
    pub since: Option<i64>,
}

impl Step {
    /// The steps stored by earlier executions, in the order they ended (those not ended
    /// last, by position).
    pub(crate) fn stored_rows(&self) -> Vec<StepRow> {
        let mut rows: Vec<StepRow> = self.inner.memo.values().cloned().collect();
        rows.sort_by_key(|r| (r.ended_at.unwrap_or(i64::MAX), r.position));
        rows
    }

    fn update_for(&self, step: RemoteStep, ended: bool) -> StepUpdate {
        let existing = self.memo(&step.key);
        let position = existing.map_or_else(|| self.take_position(), |row| row.position);
        let now = self.now();
        let started_at = step
            .since
            .unwrap_or_else(|| existing.map_or(now, |row| row.started_at));
        let ended_at = ended.then(|| {
            let mut progress = self.progress();
            let at = now.max(progress.last_ended_at + 1);
            progress.last_ended_at = at;
            at
        });
        StepUpdate {
            key: step.key,
            name: step.name,
            position,
            kind: step.kind,
            status: step.status,
            attempts: step.attempts,
            output: step.output,
            error: step.error,
            wake_at: None,
            started_at,
            ended_at,
        }
    }

    /// The step stored under `key` when this execution began.
    pub(crate) fn stored_step(&self, key: &str) -> Option<&StepRow> {
        self.memo(key)
    }

    /// Records a step the app ran: completed, or failed for good (its error memoized for
    /// the app, which may go on).
    pub(crate) async fn record_remote(&self, step: RemoteStep) -> Result<(), Interrupt> {
        let update = self.update_for(step, true);
        self.checkpoint(update).await
    }

    /// Parks the run until `at`, when the step's next attempt is due.
    pub(crate) fn retry_later(&self, step: RemoteStep, at: i64) -> Interrupt {
        let mut update = self.update_for(step, false);
        update.status = StepStatus::Errored;
        update.wake_at = Some(at);
        self.halt(Halt::Retry { step: update, at })
    }

    /// How long before the next attempt, after `attempts` failed ones; `None` once the
    /// function's retries are spent or the error is final.
    pub(crate) fn retry_delay(&self, attempts: u32, retriable: bool) -> Option<i64> {
        let settings = self.settings();
        match after_failure(
            &settings.backoff,
            settings.retries,
            attempts,
            retriable,
            rand::random::<f64>(),
        ) {
            AfterFailure::RetryIn(delay) => Some(delay),
            AfterFailure::GiveUp => None,
        }
    }

    /// Whether a function with this id is registered (for an invocation's target).
    pub(crate) fn is_registered(&self, function_id: &str) -> bool {
        self.settings().registry.get(function_id).is_some()
    }

    /// Cancelled when the worker shuts down.
    pub(crate) fn shutdown_token(&self) -> CancellationToken {
        self.settings().shutdown.clone()
    }

    /// Hands the run back untouched, for another execution to take up.
    pub(crate) fn release(&self) -> Interrupt {
        self.halt(Halt::Release)
    }
}
