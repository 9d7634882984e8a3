//! Executing a run: read its event and stored steps, run its handler with the step
//! tools, then decide ([`super::next`]) and record ([`super::apply`]) where it stopped.

use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use tokio::sync::OwnedSemaphorePermit;

use super::super::Inner;
use super::super::clock::duration_ms;
use super::super::event::Event;
use super::super::step::{Ctx, Halt, Step, StepSettings};
use super::apply::{self, Stop, fail};
use super::dispatch::Start;
use super::ending::Ending;
use super::next::{self, Outcome};
use crate::ids::RunId;
use crate::store::{self, ClaimedRun};

/// Executes one claimed run up to its next stop and records where it stopped.
pub(in crate::engine) async fn execute(inner: &Inner, run: ClaimedRun, start: Start) {
    set_active(inner, &run.id, true);
    let outcome = execute_inner(inner, &run, start).await;
    set_active(inner, &run.id, false);
    if let Ok(stop) = &outcome {
        inner
            .metrics
            .run_ended(run.function_id.as_str(), stop.outcome.as_str());
        if stop.outcome == Outcome::Completed {
            let ms = (inner.config.clock.now_ms() - run.created_at).max(0);
            inner
                .metrics
                .run_latency_seconds
                .get_or_create(&crate::metrics::FunctionLabels {
                    function: run.function_id.to_string(),
                })
                .observe(ms as f64 / 1000.0);
        }
    }
    let woke_others = matches!(&outcome, Ok(stop) if stop.wake_others);
    if let Err(err) = outcome {
        tracing::warn!(run_id = %run.id, error = %err, "recording the run's progress failed; it resumes when its lease expires");
    }
    if woke_others {
        inner.wake.notify_waiters();
    }
}

async fn execute_inner(inner: &Inner, run: &ClaimedRun, start: Start) -> store::Result<Stop> {
    let Start {
        event: known,
        stored,
        mut slot,
    } = start;
    // Steps are written only under a lease (every claim counts an attempt) or copied into
    // a replay when it is made: a run on its first attempt that is no replay has none.
    let fresh = run.attempt == 1 && run.replay_of.is_none();
    let (event, steps) = match (known, fresh) {
        (Some(event), true) => (Some(event), Vec::new()),
        (_, true) => (stored_event(inner, run).await?, Vec::new()),
        // Both reads at once: each is a round trip to a reader connection's thread.
        (_, false) => tokio::try_join!(stored_event(inner, run), inner.store.steps(&run.id))?,
    };
    let Some(event) = event else {
        return fail(inner, run, None, "the run's event is missing".into(), None)
            .await
            .map(Stop::failed);
    };
    let Some(function) = inner.registry.get(&run.function_id) else {
        let msg = format!(
            "function '{}' is not registered in this process",
            run.function_id
        );
        return fail(inner, run, None, msg, Some(&event))
            .await
            .map(Stop::failed);
    };
    let step = Step::new(
        StepSettings {
            run_id: run.id.clone(),
            function_id: run.function_id.clone(),
            metrics: inner.metrics.clone(),
            owner: inner.owner.clone(),
            retries: function.retries,
            timeout: function.timeout,
            backoff: inner.config.backoff,
            store: inner.store.clone(),
            clock: inner.config.clock.clone(),
            shutdown: inner.shutdown.clone(),
            registry: inner.registry.clone(),
            event: event.clone(),
            wake: inner.wake.clone(),
        },
        steps,
    );
    if let Some(stored) = stored {
        step.builds_on(stored);
    }
    let ctx = Ctx {
        event: event.clone(),
        run_id: run.id.clone(),
        function_id: run.function_id.clone(),
        attempt: run.attempt,
        step: step.clone(),
    };
    let result = AssertUnwindSafe((function.handler)(ctx))
        .catch_unwind()
        .await;
    let output = match &result {
        Ok(Ok(output)) => Some(output),
        _ => None,
    };
    if let Some(stop) = complete_quietly(inner, run, &step, &event, output, &mut slot).await? {
        return Ok(stop);
    }
    // The run's ending is seen outside: it waits until its checkpoints are durable.
    let halt = match step.settle().await {
        Ok(()) => step.take_halt(),
        Err(err) => Some(Halt::Store(err.to_string())),
    };
    let now = inner.config.clock.now_ms();
    let store_retry_at = now + duration_ms(inner.config.backoff.base);
    let next = next::next(halt, result, store_retry_at);
    apply::apply(inner, run, &event, next, now).await
}

/// Ends a run that completed with nothing more to set off: its ending is written at
/// once, building on its last checkpoint's commit, and is waited for until durable,
/// which makes every checkpoint before it durable too. Once the ending ran the run's
/// worker slot is given back: what is left is a wait for the disk. `None` when the run
/// did not end so, or when an earlier commit failed: then the usual ending finds out why.
async fn complete_quietly(
    inner: &Inner,
    run: &ClaimedRun,
    step: &Step,
    event: &Event,
    output: Option<&serde_json::Value>,
    slot: &mut Option<OwnedSemaphorePermit>,
) -> store::Result<Option<Stop>> {
    let Some(output) = output.filter(|_| !step.halted()) else {
        return Ok(None);
    };
    let now = inner.config.clock.now_ms();
    if !Ending::new(inner, run, Some(event), Ok(output), now)?.is_quiet() {
        return Ok(None);
    }
    let output = serde_json::to_string(output)?;
    let finished = inner
        .store
        .complete_run_early(&run.id, &inner.owner, output, now, step.last_early())
        .await;
    let durable = match finished {
        Ok((_, Some(durability))) => {
            drop(slot.take());
            durability.wait().await
        }
        Ok((_, None)) => Ok(()),
        Err(err) => Err(err),
    };
    Ok(durable.ok().map(|()| Stop::new(Outcome::Completed, false)))
}

/// The run's event as stored, if it is.
async fn stored_event(inner: &Inner, run: &ClaimedRun) -> store::Result<Option<Event>> {
    let Some(row) = inner.store.event(run.event_id.as_str()).await? else {
        return Ok(None);
    };
    Ok(Some(Event {
        id: row.id,
        external_id: row.external_id,
        name: row.name,
        data: serde_json::from_str(&row.data)?,
        ts: row.ts,
    }))
}

fn set_active(inner: &Inner, run_id: &RunId, active: bool) {
    let mut runs = inner
        .active
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if active {
        runs.push(run_id.clone());
    } else {
        runs.retain(|id| id != run_id);
    }
}
