//! Dispatch: claim due runs for the free worker slots (or take the runs an event hands
//! over at intake) and start each execution on a task of its own; wait, when there is
//! nothing to claim, for new runs, the next due time or a freed slot.

use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinSet;

use super::super::Inner;
use super::super::clock::duration_ms;
use super::super::event::Event;
use super::super::intake::Intake;
use super::execute::execute;
use crate::state::RunStatus;
use crate::store::{self, ClaimedRun, Durability};

/// Most runs claimed in one statement.
const CLAIM_BATCH: usize = 64;

async fn claim(inner: &Inner, limit: usize) -> store::Result<Vec<ClaimedRun>> {
    let now = inner.config.clock.now_ms();
    let lease = duration_ms(inner.config.lease);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    inner
        .store
        .claim_runs(&inner.owner, now, lease, limit)
        .await
}

pub(in crate::engine) async fn claim_one(inner: &Inner) -> store::Result<Option<ClaimedRun>> {
    Ok(claim(inner, 1).await?.pop())
}

/// Claims due runs for every free worker slot in one statement and executes each on a
/// task of its own; waits for new runs, a due time or a freed slot when there is
/// nothing to claim. On shutdown, waits for every execution, those of runs handed over
/// at intake ([`hand_over`]) included.
pub(in crate::engine) async fn dispatch_loop(inner: Arc<Inner>) {
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
        let wait_ms = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
        let look = inner.config.clock.now_ms().saturating_add(wait_ms);
        inner.next_look.store(look, Ordering::Release);
        inner.activity.send_modify(|a| a.waiting = true);
        tokio::select! {
            _ = &mut wake => {}
            _ = tokio::time::sleep(wait) => {}
            _ = inner.shutdown.cancelled() => break,
        }
        inner.next_look.store(0, Ordering::Release);
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
pub(in crate::engine) fn executions(inner: &Inner) -> MutexGuard<'_, JoinSet<()>> {
    inner
        .running
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What an execution starts with besides its run.
pub(in crate::engine) struct Start {
    /// The run's event, when the caller has it, so it is not read again.
    pub(super) event: Option<Event>,
    /// The commit that stored the run, when it may not be durable yet.
    pub(super) stored: Option<Durability>,
    /// The worker slot the execution holds until its run is done.
    pub(super) slot: Option<OwnedSemaphorePermit>,
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
    pub(in crate::engine) fn unslotted() -> Start {
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
pub(in crate::engine) fn reserve(
    inner: &Inner,
    intake: &Intake,
) -> Option<Vec<OwnedSemaphorePermit>> {
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
pub(in crate::engine) fn hand_over(
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
            status: RunStatus::Running,
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

/// Whether a run parked until `due` must wake the dispatch loop: it is due now, or
/// before the loop would look again on its own. While the loop is not waiting it may
/// have read the next due time before this park committed, so it is woken then too.
pub(super) fn wakes_dispatch(inner: &Inner, due: i64, now: i64) -> bool {
    let look = inner.next_look.load(Ordering::Acquire);
    due <= now || look == 0 || due < look
}
