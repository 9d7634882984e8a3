//! What ending a run sets off besides its own row: the failure event that starts its
//! failure handlers, its concurrency slot passed on, its listeners dropped, and the
//! report of an invoked run to its caller.

use super::super::Inner;
use super::super::event::{
    Event, EventInput, FUNCTION_FAILED, FUNCTION_FINISHED, FUNCTION_INVOKED, Failure, Finished,
};
use super::super::intake::{self, Intake};
use crate::ids::{EventId, RunId};
use crate::state::RunStatus;
use crate::store::{self, ClaimedRun, NewEvent, NewRun, StoreTx};

/// The `paysteps/function.failed` event for a failed run and the runs it starts, or
/// `None` when nothing listens.
pub(super) fn failure_follow_up(
    inner: &Inner,
    run: &ClaimedRun,
    error: &str,
    event: &Event,
    now: i64,
) -> store::Result<Option<(NewEvent, Vec<NewRun>)>> {
    let Some(function) = inner.registry.get(&run.function_id) else {
        return Ok(None);
    };
    if function.is_internal() || function.listens_to(FUNCTION_FAILED) {
        return Ok(None);
    }
    let failure = Failure {
        function_id: run.function_id.clone(),
        run_id: run.id.clone(),
        error: error.to_owned(),
        event: event.clone(),
    };
    let failed = Event {
        id: EventId::new(),
        external_id: None,
        name: FUNCTION_FAILED.to_owned(),
        data: serde_json::to_value(&failure)?,
        ts: now,
    };
    let listeners = inner
        .registry
        .started_by(&failed)
        .into_iter()
        .map(|f| f.id.clone());
    let runs: Vec<NewRun> = function
        .on_failure
        .clone()
        .into_iter()
        .chain(listeners)
        .map(|function_id| NewRun {
            id: RunId::new(),
            function_id,
            replay_of: None,
        })
        .collect();
    if runs.is_empty() {
        return Ok(None);
    }
    let failure_event = NewEvent {
        id: failed.id,
        dedupe_key: Some(format!("failed:{}", run.id)),
        dedupe_for_ms: None,
        external_id: None,
        name: failed.name,
        source: "internal".to_owned(),
        data: failed.data.to_string(),
        ts: now,
        received_at: now,
        object_id: None,
        customer: None,
    };
    Ok(Some((failure_event, runs)))
}

/// What ending a run sets off, worked out before its transaction and applied inside it:
/// its concurrency slot passes to the next pending run, its cancel listeners go, and an
/// invoked run reports back to its caller.
pub(super) struct Ending {
    release_slot: bool,
    drop_listeners: bool,
    finished: Option<Intake>,
}

impl Ending {
    pub(super) fn new(
        inner: &Inner,
        run: &ClaimedRun,
        event: Option<&Event>,
        result: Result<&serde_json::Value, &str>,
        now: i64,
    ) -> store::Result<Ending> {
        let function = inner.registry.get(&run.function_id);
        let flow = function.as_ref().map(|f| &f.flow);
        let finished = match event {
            Some(event) if event.name == FUNCTION_INVOKED => {
                let finished = Finished {
                    run_id: run.id.clone(),
                    function_id: run.function_id.clone(),
                    status: if result.is_ok() {
                        RunStatus::Completed
                    } else {
                        RunStatus::Failed
                    },
                    output: result.ok().cloned(),
                    error: result.err().map(str::to_owned),
                };
                let mut input =
                    EventInput::new(FUNCTION_FINISHED, &serde_json::to_value(&finished)?);
                input.source = "internal";
                Some(inner.registry.plan(input.into_new_event(now)))
            }
            _ => None,
        };
        Ok(Ending {
            release_slot: flow.is_some_and(|f| f.concurrency.is_some()),
            drop_listeners: flow
                .is_some_and(|f| !f.cancel_on.is_empty() || !f.cancel_when.is_empty()),
            finished,
        })
    }

    /// Whether the ending sets nothing off, so the run's last statement can commit alone.
    pub(super) fn is_quiet(&self) -> bool {
        !self.release_slot && !self.drop_listeners && self.finished.is_none()
    }

    /// Applies the ending; true when it queued runs that workers should look for.
    pub(super) async fn apply(
        &self,
        tx: &mut StoreTx,
        run_id: &RunId,
        now: i64,
    ) -> store::Result<bool> {
        let mut woke = false;
        if self.release_slot && tx.release_slot(run_id, now).await?.is_some() {
            tx.signal_new_runs().await?;
            woke = true;
        }
        if self.drop_listeners {
            tx.delete_listeners(run_id, None).await?;
        }
        if let Some(intake) = &self.finished {
            intake::admit(tx, intake).await?;
            woke = true;
        }
        Ok(woke)
    }
}
