//! The step tools a function uses: memoized `run`, transactional `run_tx`, and sleeps.
//!
//! [`Step`] holds one execution's state; its tools are spread by stage: `memo` finds a
//! step among those stored, `run` executes one, `checkpoint` records it and tracks when
//! the record is durable, `sleep` parks the run, `halt` says why a run stops, and
//! `events` reaches beyond the run: waiting for events, sending them, invoking functions.

mod checkpoint;
mod ctx;
mod events;
#[cfg(feature = "testing")]
mod faults;
mod halt;
mod memo;
mod remote;
mod run;
mod sleep;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::clock::Clock;
use super::event::Event;
use super::registry::Registry;
use super::retry::Backoff;
use crate::ids::{FunctionId, RunId};
use crate::store::{Durability, Generation, StepRow, Store};

pub use ctx::Ctx;
pub(crate) use events::Invoked;
pub use events::WaitFor;
#[cfg(feature = "testing")]
pub use faults::{FaultPlan, InjectedFault};
pub use halt::Interrupt;
pub(crate) use halt::{Halt, Reason};
pub(crate) use remote::RemoteStep;

/// The step tools of one execution of a run.
///
/// Each step has a name unique within the run; a step that completed is never executed
/// again for that run: when the run is re-entered (after a retry, a sleep, a crash) its
/// stored output is returned instead. Code outside steps runs again on every re-entry,
/// so keep side effects inside steps.
///
/// ```no_run
/// use std::time::Duration;
///
/// use paysteps::args;
/// use paysteps::{Function, Trigger};
///
/// let f = Function::new("trial", Trigger::event("app/trial.started"), |ctx| async move {
///     let user = ctx.event.data["user"].as_str().unwrap_or_default().to_owned();
///     // Written in the same transaction that records the step as done.
///     let now = ctx.step.now_ms();
///     ctx.step
///         .run_tx("record trial", move |tx| {
///             Box::pin(async move {
///                 tx.execute("INSERT INTO trials (user_id, started_at) VALUES ($1, $2)", args![user, now])
///                     .await?;
///                 Ok(())
///             })
///         })
///         .await?;
///     ctx.step.sleep("wait for the trial to end", Duration::from_secs(14 * 24 * 3600)).await?;
///     ctx.step.run("send the reminder", || async { Ok(true) }).await
/// });
/// ```
#[derive(Clone)]
pub struct Step {
    inner: Arc<StepState>,
}

pub(crate) struct StepSettings {
    pub run_id: RunId,
    pub function_id: FunctionId,
    pub metrics: crate::metrics::Metrics,
    pub owner: String,
    pub retries: u32,
    pub timeout: Option<Duration>,
    pub backoff: Backoff,
    pub store: Store,
    pub clock: Clock,
    pub shutdown: CancellationToken,
    /// Where `send_event` and `invoke` find the functions an event starts.
    pub registry: Arc<Registry>,
    /// The run's own event, which `wait_for_event` matches against.
    pub event: Event,
    /// Wakes this process's idle workers when a step queued runs.
    pub wake: Arc<tokio::sync::Notify>,
}

struct StepState {
    settings: StepSettings,
    /// The run's steps stored by earlier executions, by key.
    memo: HashMap<String, StepRow>,
    progress: Mutex<Progress>,
}

#[derive(Default)]
struct Progress {
    occurrences: HashMap<String, u32>,
    next_position: i64,
    halt: Option<Halt>,
    /// Checkpoints answered before their commit was durable, not yet waited for.
    unsettled: Vec<Durability>,
    /// The commit generation of the latest of them, which the next one builds on.
    last_early: Option<Generation>,
    /// When the run's latest step ended: remote steps end strictly after it, so their
    /// order of completion is kept.
    last_ended_at: i64,
}

impl Step {
    pub(crate) fn new(settings: StepSettings, steps: Vec<StepRow>) -> Step {
        let next_position = steps.iter().map(|s| s.position + 1).max().unwrap_or(0);
        let last_ended_at = steps.iter().filter_map(|s| s.ended_at).max().unwrap_or(0);
        let memo = steps.into_iter().map(|s| (s.step_key.clone(), s)).collect();
        Step {
            inner: Arc::new(StepState {
                settings,
                memo,
                progress: Mutex::new(Progress {
                    next_position,
                    last_ended_at,
                    ..Progress::default()
                }),
            }),
        }
    }

    /// The engine's clock, in milliseconds since the Unix epoch: the time to record in a
    /// step's writes, so tests that move a manual clock see it there too.
    pub fn now_ms(&self) -> i64 {
        self.now()
    }

    pub(in crate::engine) fn now(&self) -> i64 {
        self.inner.settings.clock.now_ms()
    }

    pub(in crate::engine) fn settings(&self) -> &StepSettings {
        &self.inner.settings
    }

    fn lease_args(&self) -> (RunId, String, i64) {
        let s = &self.inner.settings;
        (s.run_id.clone(), s.owner.clone(), self.now())
    }

    fn progress(&self) -> MutexGuard<'_, Progress> {
        // A poisoned lock only means a handler panicked mid-update; the data is still usable.
        self.inner
            .progress
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
