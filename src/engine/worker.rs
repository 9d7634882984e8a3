//! Workers: claim due runs, execute their handlers, apply what the handler left,
//! and keep the leases of runs in flight alive.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinSet;

use super::Trigger;
use super::clock::duration_ms;
use super::cron::{self, TickDecision};
use super::event::{
    CRON_TICK, Event, EventInput, FUNCTION_FAILED, FUNCTION_FINISHED, FUNCTION_INVOKED, Failure,
    Finished,
};
use super::intake::{self, Intake};
use super::step::{Ctx, Halt, Reason, Step, StepSettings};
use super::{Inner, new_id};
use crate::store::{
    self, ClaimedRun, Durability, IngestOutcome, NewEvent, NewRun, StepUpdate, StoreTx,
};

/// Most runs claimed in one statement.
const CLAIM_BATCH: usize = 64;

pub(super) async fn claim(inner: &Inner, limit: usize) -> store::Result<Vec<ClaimedRun>> {
    let now = inner.config.clock.now_ms();
    let lease = duration_ms(inner.config.lease);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    inner
        .store
        .claim_runs(&inner.owner, now, lease, limit)
        .await
}

pub(super) async fn claim_one(inner: &Inner) -> store::Result<Option<ClaimedRun>> {
    Ok(claim(inner, 1).await?.pop())
}

/// Claims due runs for every free worker slot in one statement and executes each on a
/// task of its own; waits for new runs, a due time or a freed slot when there is
/// nothing to claim. On shutdown, waits for every execution, those of runs handed over
/// at intake ([`hand_over`]) included.
pub(super) async fn dispatch_loop(inner: Arc<Inner>) {
    inner.dispatching.store(true, Ordering::Release);
    loop {
        let wake = inner.wake.notified();
        tokio::pin!(wake);
        wake.as_mut().enable();
        let first = tokio::select! {
            permit = inner.slots.clone().acquire_owned() => permit,
            _ = inner.shutdown.cancelled() => break,
        };
        let Ok(first) = first else { break };
        let mut permits = vec![first];
        while permits.len() < CLAIM_BATCH {
            match inner.slots.clone().try_acquire_owned() {
                Ok(permit) => permits.push(permit),
                Err(_) => break,
            }
        }
        {
            let mut running = executions(&inner);
            while running.try_join_next().is_some() {}
        }
        if inner.shutdown.is_cancelled() {
            break;
        }
        let wanted = permits.len();
        let claimed = match claim(&inner, wanted).await {
            Ok(runs) => runs,
            Err(err) => {
                tracing::warn!(error = %err, "claiming runs failed");
                Vec::new()
            }
        };
        let full = claimed.len() == wanted;
        for run in claimed {
            let Some(permit) = permits.pop() else { break };
            spawn_execution(&inner, run, Start::claimed(permit));
        }
        drop(permits);
        if full {
            continue;
        }
        let wait = idle_wait(&inner).await;
        inner.activity.send_modify(|a| a.waiting = true);
        tokio::select! {
            _ = &mut wake => {}
            _ = tokio::time::sleep(wait) => {}
            _ = inner.shutdown.cancelled() => break,
        }
        inner.activity.send_modify(|a| a.waiting = false);
    }
    // Every execution stops at its next step boundary once shutdown is signalled.
    loop {
        let mut running = std::mem::take(&mut *executions(&inner));
        if running.is_empty() {
            break;
        }
        while running.join_next().await.is_some() {}
    }
    // An event stored just before shutdown may still be handing its runs over: each holds
    // its slot until its execution ends.
    let workers = u32::try_from(inner.config.workers.max(1)).unwrap_or(u32::MAX);
    let _all = inner.slots.acquire_many(workers).await;
}

/// The executions in progress; aborted with the engine.
pub(super) fn executions(inner: &Inner) -> MutexGuard<'_, JoinSet<()>> {
    inner
        .running
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What an execution starts with besides its run.
pub(super) struct Start {
    /// The run's event, when the caller has it, so it is not read again.
    event: Option<Event>,
    /// The commit that stored the run, when it may not be durable yet.
    stored: Option<Durability>,
    /// The worker slot the execution holds until its run is done.
    slot: Option<OwnedSemaphorePermit>,
}

impl Start {
    fn claimed(slot: OwnedSemaphorePermit) -> Start {
        Start {
            event: None,
            stored: None,
            slot: Some(slot),
        }
    }

    /// A run executed by a caller that holds no slot.
    pub(super) fn unslotted() -> Start {
        Start {
            event: None,
            stored: None,
            slot: None,
        }
    }
}

fn spawn_execution(inner: &Arc<Inner>, run: ClaimedRun, start: Start) {
    let task_inner = inner.clone();
    executions(inner).spawn(async move {
        execute(&task_inner, run, start).await;
        task_inner.activity.send_modify(|_| {});
    });
}

/// A free worker slot for each run of an event about to be stored, when its runs can be
/// stored leased to this engine and executed at once: none has flow control and the
/// workers are running. `None` leaves them to be queued and claimed.
pub(super) fn reserve(inner: &Inner, intake: &Intake) -> Option<Vec<OwnedSemaphorePermit>> {
    if !inner.dispatching.load(Ordering::Acquire)
        || inner.shutdown.is_cancelled()
        || !intake.can_lease()
    {
        return None;
    }
    intake
        .runs
        .iter()
        .map(|_| inner.slots.clone().try_acquire_owned().ok())
        .collect()
}

/// Executes the runs an event stored under this engine's lease, each in the slot
/// [`reserve`] took for it, with the event as it was received: no claim, no read. When
/// the event's commit is not durable yet (`commit`), the runs start anyway and build on
/// it: their writes run only if it commits, and their effects outside the database wait
/// until it is durable, as they wait for the runs' own checkpoints.
pub(super) fn hand_over(
    inner: &Arc<Inner>,
    intake: Intake,
    permits: Vec<OwnedSemaphorePermit>,
    commit: Option<Durability>,
) {
    let Some(lease) = intake.lease else { return };
    let stored = intake.event;
    let now = stored.received_at;
    let event = serde_json::from_str(&stored.data)
        .ok()
        .map(|data| Event::from_new(&stored, data));
    for (planned, permit) in intake.runs.into_iter().zip(permits) {
        let run = ClaimedRun {
            id: planned.run.id,
            function_id: planned.run.function_id,
            event_id: stored.id.clone(),
            status: "running".to_owned(),
            run_at: now,
            attempt: 1,
            lease_owner: Some(lease.owner.clone()),
            lease_expires_at: Some(lease.expires_at),
            output: None,
            error: None,
            replay_of: planned.run.replay_of,
            created_at: now,
            started_at: Some(now),
            ended_at: None,
            updated_at: now,
        };
        let start = Start {
            event: event.clone(),
            stored: commit.clone(),
            slot: Some(permit),
        };
        spawn_execution(inner, run, start);
    }
}

/// Until the next known due time, but never longer than the poll interval.
async fn idle_wait(inner: &Inner) -> Duration {
    let poll = inner.config.poll_interval;
    match inner.store.next_due().await {
        Ok(Some(due)) => {
            let ms = (due - inner.config.clock.now_ms()).max(1);
            poll.min(Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX)))
        }
        _ => poll,
    }
}

pub(super) async fn renew_loop(inner: Arc<Inner>) {
    let every = inner.config.lease / 3;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = inner.shutdown.cancelled() => return,
        }
        let active = inner
            .active
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        if active.is_empty() {
            continue;
        }
        let owner = inner.owner.clone();
        let now = inner.config.clock.now_ms();
        let expires = now + duration_ms(inner.config.lease);
        let renewed = inner
            .store
            .write(crate::store::Write::isolated(), move |tx| {
                Box::pin(async move {
                    for run_id in &active {
                        tx.execute(
                            "UPDATE runs SET lease_expires_at = $3, due_at = $3 WHERE id = $1 \
                             AND lease_owner = $2 AND status = 'running'",
                            crate::args![run_id, &owner, expires],
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .await;
        if let Err(err) = renewed {
            tracing::warn!(error = %err, "renewing leases failed");
        }
    }
}

/// Fires cron ticks as they fall due.
pub(super) async fn cron_loop(inner: Arc<Inner>) {
    let schedules: Vec<_> = inner
        .registry
        .iter()
        .filter_map(|f| match &f.trigger {
            Trigger::Cron(schedule) => Some(schedule.as_ref().clone()),
            _ => None,
        })
        .collect();
    if schedules.is_empty() {
        return;
    }
    loop {
        if let Err(err) = fire_cron(&inner).await {
            tracing::warn!(error = %err, "firing cron ticks failed");
        }
        let now = inner.config.clock.now_ms();
        let next = schedules.iter().filter_map(|s| s.next_after(now)).min();
        let wait_ms = next.map_or(60_000, |at| (at - now).clamp(10, 60_000));
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait_ms as u64)) => {}
            _ = inner.shutdown.cancelled() => return,
        }
    }
}

pub(super) async fn fire_cron(inner: &Inner) -> store::Result<usize> {
    let mut started = 0;
    for function in inner.registry.iter() {
        let Trigger::Cron(schedule) = &function.trigger else {
            continue;
        };
        let now = inner.config.clock.now_ms();
        let last = inner.store.cron_last_tick(&function.id).await?;
        let function_id = function.id.clone();
        match cron::decide(schedule, last, now) {
            TickDecision::Wait => {}
            TickDecision::Start => {
                inner
                    .store
                    .write(crate::store::Write::isolated(), move |tx| {
                        Box::pin(async move { tx.start_cron(&function_id, now).await })
                    })
                    .await?;
            }
            TickDecision::Fire(tick) => {
                let event = NewEvent {
                    id: new_id("ev"),
                    dedupe_key: Some(format!("cron:{function_id}:{tick}")),
                    dedupe_for_ms: None,
                    external_id: None,
                    name: CRON_TICK.to_owned(),
                    source: "cron".to_owned(),
                    data: serde_json::json!({
                        "function_id": function_id,
                        "tick": tick,
                        "cron": schedule.expr(),
                        "time_zone": schedule.time_zone(),
                    })
                    .to_string(),
                    ts: tick,
                    received_at: now,
                    object_id: None,
                    customer: None,
                };
                let run = NewRun {
                    id: new_id("run"),
                    function_id: function_id.clone(),
                    replay_of: None,
                };
                let outcome = inner
                    .store
                    .write(crate::store::Write::isolated(), move |tx| {
                        Box::pin(async move {
                            let outcome =
                                tx.insert_event(&event, std::slice::from_ref(&run)).await?;
                            tx.advance_cron(&function_id, tick).await?;
                            Ok(outcome)
                        })
                    })
                    .await?;
                if matches!(outcome, IngestOutcome::Accepted { .. }) {
                    started += 1;
                }
            }
        }
    }
    if started > 0 {
        inner.wake.notify_waiters();
    }
    Ok(started)
}

/// Wakes idle workers when another process queues runs (PostgreSQL's LISTEN/NOTIFY).
pub(super) async fn signal_loop(inner: Arc<Inner>) {
    let mut signals = loop {
        match inner.store.run_signals().await {
            Ok(Some(signals)) => break signals,
            Ok(None) => {
                inner.activity.send_modify(|a| a.listening = true);
                return;
            }
            Err(err) => {
                tracing::warn!(error = %err, "listening for new runs failed; polling meanwhile");
                tokio::select! {
                    _ = tokio::time::sleep(inner.config.poll_interval) => continue,
                    _ = inner.shutdown.cancelled() => return,
                }
            }
        }
    };
    inner.activity.send_modify(|a| a.listening = true);
    loop {
        tokio::select! {
            signal = signals.next() => match signal {
                Ok(()) => inner.wake.notify_waiters(),
                Err(_) => tokio::time::sleep(inner.config.poll_interval).await,
            },
            _ = inner.shutdown.cancelled() => return,
        }
    }
}

/// Executes one claimed run up to its next stop and records where it stopped.
pub(super) async fn execute(inner: &Inner, run: ClaimedRun, start: Start) {
    set_active(inner, &run.id, true);
    let outcome = execute_inner(inner, &run, start).await;
    set_active(inner, &run.id, false);
    if let Ok(stop) = &outcome {
        inner.metrics.run_ended(&run.function_id, stop.status);
        if stop.status == "completed" {
            let ms = (inner.config.clock.now_ms() - run.created_at).max(0);
            inner
                .metrics
                .run_latency_seconds
                .get_or_create(&crate::metrics::FunctionLabels {
                    function: run.function_id.clone(),
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

/// Where an execution left its run, and whether work became due at once (so idle
/// workers should look).
struct Stop {
    status: &'static str,
    wake_others: bool,
}

impl Stop {
    fn new(status: &'static str, wake_others: bool) -> Stop {
        Stop {
            status,
            wake_others,
        }
    }

    fn failed(wake_others: bool) -> Stop {
        Stop::new("failed", wake_others)
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
    let owner = inner.owner.clone();
    let run_id = run.id.clone();
    match (halt, result) {
        (Some(Halt::Retry { step, at }), _) => {
            let error = step.error.clone();
            park(inner, run, "queued", at, Some(step), error).await?;
            Ok(Stop::new("retrying", at <= now))
        }
        (Some(Halt::Sleep { step, until }), _) => {
            park(inner, run, "sleeping", until, Some(step), None).await?;
            Ok(Stop::new("sleeping", until <= now))
        }
        (
            Some(Halt::Wait {
                step,
                until,
                listener,
                intake,
            }),
            _,
        ) => {
            let (run_id, owner) = (run.id.clone(), inner.owner.clone());
            inner
                .store
                .write(crate::store::Write::shared(), move |tx| {
                    Box::pin(async move {
                        if !tx
                            .park_run(&run_id, &owner, "waiting", until, None, now)
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
            Ok(Stop::new("waiting", true))
        }
        (Some(Halt::Fail { step, error }), _) => fail(inner, run, Some(step), error, Some(&event))
            .await
            .map(Stop::failed),
        (Some(Halt::Release), _) => {
            park(inner, run, "queued", now, None, None).await?;
            Ok(Stop::new("released", false))
        }
        (Some(Halt::Lost), _) => Ok(Stop::new("lost", false)),
        (Some(Halt::Store(msg)), _) => {
            tracing::warn!(run_id = %run.id, error = %msg, "a checkpoint failed; the run will be retried");
            let retry_at = now + duration_ms(inner.config.backoff.base);
            park(inner, run, "queued", retry_at, None, Some(msg)).await?;
            Ok(Stop::new("retrying", false))
        }
        (None, Ok(Ok(output))) => {
            let ending = Ending::new(inner, run, Some(&event), Ok(&output), now)?;
            let output = serde_json::to_string(&output)?;
            if ending.is_quiet() {
                inner
                    .store
                    .finish_run(&run_id, &owner, "completed", Some(output), None, now)
                    .await?;
                return Ok(Stop::new("completed", false));
            }
            let woke = inner
                .store
                .write(crate::store::Write::shared(), move |tx| {
                    Box::pin(async move {
                        if tx
                            .finish_run(&run_id, &owner, "completed", Some(output), None, now)
                            .await?
                        {
                            ending.apply(tx, &run_id, now).await
                        } else {
                            Ok(false)
                        }
                    })
                })
                .await?;
            Ok(Stop::new("completed", woke))
        }
        (None, Ok(Err(interrupt))) => {
            let msg = match interrupt.0 {
                Reason::Failed(msg) => msg,
                Reason::Parked => "the run stopped without a recorded reason".into(),
            };
            fail(inner, run, None, msg, Some(&event))
                .await
                .map(Stop::failed)
        }
        (None, Err(panic)) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            fail(
                inner,
                run,
                None,
                format!("handler panicked: {msg}"),
                Some(&event),
            )
            .await
            .map(Stop::failed)
        }
    }
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
    Ok(durable.ok().map(|()| Stop::new("completed", false)))
}

/// The run's event as stored, if it is.
async fn stored_event(inner: &Inner, run: &ClaimedRun) -> store::Result<Option<Event>> {
    let Some(row) = inner.store.event(&run.event_id).await? else {
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

async fn park(
    inner: &Inner,
    run: &ClaimedRun,
    status: &'static str,
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
        .write(crate::store::Write::shared(), move |tx| {
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
async fn fail(
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
        .write(crate::store::Write::shared(), move |tx| {
            Box::pin(async move {
                let failed = tx
                    .finish_run(&run_id, &owner, "failed", None, Some(error), now)
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

/// The `paysteps/function.failed` event for a failed run and the runs it starts, or
/// `None` when nothing listens.
fn failure_follow_up(
    inner: &Inner,
    run: &ClaimedRun,
    error: &str,
    event: &Event,
    now: i64,
) -> store::Result<Option<(NewEvent, Vec<NewRun>)>> {
    let Some(function) = inner.registry.get(&run.function_id) else {
        return Ok(None);
    };
    if matches!(function.trigger, Trigger::Internal) || function.trigger.matches(FUNCTION_FAILED) {
        return Ok(None);
    }
    let listeners = inner
        .registry
        .triggered_by(FUNCTION_FAILED)
        .map(|f| f.id.clone());
    let runs: Vec<NewRun> = function
        .on_failure
        .clone()
        .into_iter()
        .chain(listeners)
        .map(|function_id| NewRun {
            id: new_id("run"),
            function_id,
            replay_of: None,
        })
        .collect();
    if runs.is_empty() {
        return Ok(None);
    }
    let failure = Failure {
        function_id: run.function_id.clone(),
        run_id: run.id.clone(),
        error: error.to_owned(),
        event: event.clone(),
    };
    let failure_event = NewEvent {
        id: new_id("ev"),
        dedupe_key: Some(format!("failed:{}", run.id)),
        dedupe_for_ms: None,
        external_id: None,
        name: FUNCTION_FAILED.to_owned(),
        source: "internal".to_owned(),
        data: serde_json::to_string(&failure)?,
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
struct Ending {
    release_slot: bool,
    drop_listeners: bool,
    finished: Option<Intake>,
}

impl Ending {
    fn new(
        inner: &Inner,
        run: &ClaimedRun,
        event: Option<&Event>,
        result: Result<&serde_json::Value, &str>,
        now: i64,
    ) -> store::Result<Ending> {
        let flow = inner.registry.get(&run.function_id).map(|f| &f.flow);
        let finished = match event {
            Some(event) if event.name == FUNCTION_INVOKED => {
                let finished = Finished {
                    run_id: run.id.clone(),
                    function_id: run.function_id.clone(),
                    status: if result.is_ok() {
                        "completed"
                    } else {
                        "failed"
                    }
                    .to_owned(),
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
            drop_listeners: flow.is_some_and(|f| !f.cancel_on.is_empty()),
            finished,
        })
    }

    /// Whether the ending sets nothing off, so the run's last statement can commit alone.
    fn is_quiet(&self) -> bool {
        !self.release_slot && !self.drop_listeners && self.finished.is_none()
    }

    /// Applies the ending; true when it queued runs that workers should look for.
    async fn apply(&self, tx: &mut StoreTx, run_id: &str, now: i64) -> store::Result<bool> {
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

fn set_active(inner: &Inner, run_id: &str, active: bool) {
    let mut runs = inner
        .active
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if active {
        runs.push(run_id.to_owned());
    } else {
        runs.retain(|id| id != run_id);
    }
}
