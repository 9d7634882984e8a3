//! Recording a decided [`Next`]: one function per outcome, each writing the run's new
//! state, and what goes with it, in one transaction under the run's lease. A write that
//! finds the lease gone changes nothing.

use serde_json::Value;

use super::super::Inner;
use super::super::event::Event;
use super::super::intake::{self, Intake};
use super::dispatch::wakes_dispatch;
use super::ending::{Ending, failure_follow_up};
use super::next::{Next, Outcome};
use crate::state::RunStatus;
use crate::store::{self, ClaimedRun, NewListener, StepUpdate, Write};

/// Where an execution left its run, and whether work became due at once (so idle
/// workers should look).
pub(super) struct Stop {
    pub(super) outcome: Outcome,
    pub(super) wake_others: bool,
}

impl Stop {
    pub(super) fn new(outcome: Outcome, wake_others: bool) -> Stop {
        Stop {
            outcome,
            wake_others,
        }
    }

    pub(super) fn failed(wake_others: bool) -> Stop {
        Stop::new(Outcome::Failed, wake_others)
    }
}

/// Records `next` for `run`, whose handler ran on `event`; `now` is when it stopped.
pub(super) async fn apply(
    inner: &Inner,
    run: &ClaimedRun,
    event: &Event,
    next: Next,
    now: i64,
) -> store::Result<Stop> {
    match next {
        Next::Complete { output } => complete(inner, run, event, output, now).await,
        Next::Retry { step, at, error } => retry(inner, run, step, at, error, now).await,
        Next::Sleep { step, until } => sleep(inner, run, step, until, now).await,
        Next::Wait {
            step,
            until,
            listener,
            intake,
        } => wait(inner, run, step, until, listener, intake, now).await,
        Next::Fail { step, error } => fail(inner, run, step, error, Some(event))
            .await
            .map(Stop::failed),
        Next::Release => release(inner, run, now).await,
        Next::Lost => Ok(Stop::new(Outcome::Lost, false)),
        Next::StoreFailed { error, at } => retry_after_store_failure(inner, run, error, at).await,
    }
}

/// Completes the run with `output` and applies what its ending sets off, in one
/// transaction; a run whose ending sets nothing off is finished by one statement.
async fn complete(
    inner: &Inner,
    run: &ClaimedRun,
    event: &Event,
    output: Value,
    now: i64,
) -> store::Result<Stop> {
    let ending = Ending::new(inner, run, Some(event), Ok(&output), now)?;
    let output = serde_json::to_string(&output)?;
    let (run_id, owner) = (run.id.clone(), inner.owner.clone());
    if ending.is_quiet() {
        inner
            .store
            .finish_run(
                &run_id,
                &owner,
                RunStatus::Completed,
                Some(output),
                None,
                now,
            )
            .await?;
        return Ok(Stop::new(Outcome::Completed, false));
    }
    let woke = inner
        .store
        .write(Write::shared(), move |tx| {
            Box::pin(async move {
                if tx
                    .finish_run(
                        &run_id,
                        &owner,
                        RunStatus::Completed,
                        Some(output),
                        None,
                        now,
                    )
                    .await?
                {
                    ending.apply(tx, &run_id, now).await
                } else {
                    Ok(false)
                }
            })
        })
        .await?;
    Ok(Stop::new(Outcome::Completed, woke))
}

/// Queues the run again for its failed step's retry at `at`.
async fn retry(
    inner: &Inner,
    run: &ClaimedRun,
    step: StepUpdate,
    at: i64,
    error: Option<String>,
    now: i64,
) -> store::Result<Stop> {
    park(inner, run, RunStatus::Queued, at, Some(step), error).await?;
    Ok(Stop::new(Outcome::Retrying, wakes_dispatch(inner, at, now)))
}

/// Parks the run as sleeping until `until`.
async fn sleep(
    inner: &Inner,
    run: &ClaimedRun,
    step: StepUpdate,
    until: i64,
    now: i64,
) -> store::Result<Stop> {
    park(inner, run, RunStatus::Sleeping, until, Some(step), None).await?;
    Ok(Stop::new(
        Outcome::Sleeping,
        wakes_dispatch(inner, until, now),
    ))
}

/// Parks the run as waiting until `until`, storing with it the listener that will
/// resume it and, for an invoke, the invoked run.
async fn wait(
    inner: &Inner,
    run: &ClaimedRun,
    step: StepUpdate,
    until: i64,
    listener: Option<Box<NewListener>>,
    intake: Option<Box<Intake>>,
    now: i64,
) -> store::Result<Stop> {
    let (run_id, owner) = (run.id.clone(), inner.owner.clone());
    inner
        .store
        .write(Write::shared(), move |tx| {
            Box::pin(async move {
                if !tx
                    .park_run(&run_id, &owner, RunStatus::Waiting, until, None, now)
                    .await?
                {
                    return Ok(());
                }
                tx.save_step(&run_id, &step).await?;
                if let Some(listener) = &listener {
                    tx.insert_listener(listener).await?;
                }
                if let Some(intake) = &intake {
                    intake::admit(tx, intake).await?;
                }
                Ok(())
            })
        })
        .await?;
    Ok(Stop::new(Outcome::Waiting, true))
}

/// Hands the run back to the queue, due at once, for shutdown.
async fn release(inner: &Inner, run: &ClaimedRun, now: i64) -> store::Result<Stop> {
    park(inner, run, RunStatus::Queued, now, None, None).await?;
    Ok(Stop::new(Outcome::Released, false))
}

/// Queues the run again for `at` after a checkpoint failed to commit.
async fn retry_after_store_failure(
    inner: &Inner,
    run: &ClaimedRun,
    error: String,
    at: i64,
) -> store::Result<Stop> {
    tracing::warn!(run_id = %run.id, error = %error, "a checkpoint failed; the run will be retried");
    park(inner, run, RunStatus::Queued, at, None, Some(error)).await?;
    let now = inner.config.clock.now_ms();
    Ok(Stop::new(Outcome::Retrying, wakes_dispatch(inner, at, now)))
}

/// Gives up the lease and parks the run as `status` until `at`, saving `step` with it.
async fn park(
    inner: &Inner,
    run: &ClaimedRun,
    status: RunStatus,
    at: i64,
    step: Option<StepUpdate>,
    error: Option<String>,
) -> store::Result<()> {
    let (run_id, owner, now) = (
        run.id.clone(),
        inner.owner.clone(),
        inner.config.clock.now_ms(),
    );
    inner
        .store
        .write(Write::shared(), move |tx| {
            Box::pin(async move {
                if tx.park_run(&run_id, &owner, status, at, error, now).await?
                    && let Some(step) = &step
                {
                    tx.save_step(&run_id, step).await?;
                }
                Ok(())
            })
        })
        .await
}

/// Fails the run and, in the same transaction, stores a `paysteps/function.failed`
/// event that starts the function's failure handler and every function triggered by
/// that event, so each runs once per failed run. A function that itself reacts to
/// failures raises no further failure event, so a failing alert cannot loop.
pub(super) async fn fail(
    inner: &Inner,
    run: &ClaimedRun,
    step: Option<StepUpdate>,
    error: String,
    event: Option<&Event>,
) -> store::Result<bool> {
    let now = inner.config.clock.now_ms();
    let follow_up = match event {
        Some(event) => failure_follow_up(inner, run, &error, event, now)?,
        None => None,
    };
    let ending = Ending::new(inner, run, event, Err(&error), now)?;
    let (run_id, owner) = (run.id.clone(), inner.owner.clone());
    inner
        .store
        .write(Write::shared(), move |tx| {
            Box::pin(async move {
                let failed = tx
                    .finish_run(&run_id, &owner, RunStatus::Failed, None, Some(error), now)
                    .await?;
                if !failed {
                    return Ok(false);
                }
                if let Some(step) = &step {
                    tx.save_step(&run_id, step).await?;
                }
                ending.apply(tx, &run_id, now).await?;
                match follow_up {
                    Some((event, runs)) => {
                        tx.insert_event(&event, &runs).await?;
                        Ok(true)
                    }
                    None => Ok(false),
                }
            })
        })
        .await
}
