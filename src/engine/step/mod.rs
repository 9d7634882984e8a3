//! The step tools a function uses: memoized `run`, transactional `run_tx`, and sleeps.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use super::clock::{Clock, duration_ms};
use super::error::StepError;
use super::event::{Event, FUNCTION_FAILED, Failure};
use super::intake::Intake;
use super::retry::{AfterFailure, Backoff, after_failure};
use crate::store::{
    Durability, Generation, NewListener, StepRow, StepUpdate, Store, StoreTx, Write,
};

/// What a handler is given: its event, its run, and the step tools.
#[derive(Clone)]
pub struct Ctx {
    /// The event that started the run.
    pub event: Event,
    /// paysteps' id of the run, `run_…`; the same across retries and re-entries.
    pub run_id: String,
    /// The id of the function being run (`<id>.on_failure` in a failure handler).
    pub function_id: String,
    /// Executions of this run so far, counting this one.
    pub attempt: i64,
    /// The step tools: [`Step::run`], [`Step::run_tx`], [`Step::sleep`],
    /// [`Step::wait_for_event`], [`Step::send_event`], [`Step::invoke`].
    pub step: Step,
}

impl Ctx {
    /// In a failure handler: what failed. `None` in an ordinary function.
    pub fn failure(&self) -> Option<Failure> {
        (self.event.name == FUNCTION_FAILED)
            .then(|| serde_json::from_value(self.event.data.clone()).ok())
            .flatten()
    }
}

/// Returned by step tools when the run must stop here for now (a retry is scheduled,
/// the run sleeps, it failed, or the worker is shutting down). Propagate it with `?`.
#[derive(Debug)]
pub struct Interrupt(pub(crate) Reason);

#[derive(Debug)]
pub(crate) enum Reason {
    /// The step tools recorded why; see [`Halt`].
    Parked,
    /// The handler itself gave up outside any step.
    Failed(String),
}

impl Interrupt {
    /// Fails the run now, without retries.
    pub fn fail(message: impl Into<String>) -> Interrupt {
        Interrupt(Reason::Failed(message.into()))
    }
}

impl From<StepError> for Interrupt {
    fn from(err: StepError) -> Self {
        Interrupt::fail(err.to_string())
    }
}

/// Why the step tools stopped a run, applied by the worker when the handler returns.
#[derive(Debug)]
pub(crate) enum Halt {
    Retry {
        step: StepUpdate,
        at: i64,
    },
    Fail {
        step: StepUpdate,
        error: String,
    },
    Sleep {
        step: StepUpdate,
        until: i64,
    },
    /// Parks the run as `waiting` until `until`, listening for an event or for an
    /// invoked run, whose intake is stored in the same transaction.
    Wait {
        step: StepUpdate,
        until: i64,
        listener: Option<Box<NewListener>>,
        intake: Option<Box<Intake>>,
    },
    /// The worker is shutting down: hand the run back untouched.
    Release,
    /// Another worker holds the run now, or it ended elsewhere: do nothing more.
    Lost,
    /// The store failed; the lease will expire and the run is taken up again.
    Store(String),
}

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
/// use paysteps::engine::{Function, Trigger};
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
    pub run_id: String,
    pub function_id: String,
    pub metrics: crate::metrics::Metrics,
    pub owner: String,
    pub retries: u32,
    pub timeout: Option<Duration>,
    pub backoff: Backoff,
    pub store: Store,
    pub clock: Clock,
    pub shutdown: CancellationToken,
    /// Where `send_event` and `invoke` find the functions an event starts.
    pub registry: std::sync::Arc<super::registry::Registry>,
    /// The run's own event, which `wait_for_event` matches against.
    pub event: Event,
    /// Wakes this process's idle workers when a step queued runs.
    pub wake: std::sync::Arc<tokio::sync::Notify>,
}

struct StepState {
    settings: StepSettings,
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
}

/// A step about to execute: its key and place in the run.
#[derive(Clone)]
pub(super) struct Planned {
    pub key: String,
    pub name: String,
    pub position: i64,
    pub attempts: i64,
    pub started_at: i64,
}

impl Planned {
    pub(super) fn update(
        &self,
        status: &'static str,
        output: Option<String>,
        error: Option<String>,
        ended_at: i64,
    ) -> StepUpdate {
        StepUpdate {
            key: self.key.clone(),
            name: self.name.clone(),
            position: self.position,
            kind: "run",
            status,
            attempts: self.attempts,
            output,
            error,
            wake_at: None,
            started_at: self.started_at,
            ended_at: Some(ended_at),
        }
    }
}

pub(super) enum Lookup<T> {
    Done(T),
    Execute(Planned),
}

impl Step {
    pub(crate) fn new(settings: StepSettings, steps: Vec<StepRow>) -> Step {
        let next_position = steps.iter().map(|s| s.position + 1).max().unwrap_or(0);
        let memo = steps.into_iter().map(|s| (s.step_key.clone(), s)).collect();
        Step {
            inner: Arc::new(StepState {
                settings,
                memo,
                progress: Mutex::new(Progress {
                    next_position,
                    ..Progress::default()
                }),
            }),
        }
    }

    /// Runs `work` once and checkpoints its output; when the run is re-entered, the
    /// stored output is returned without running `work` again. A failed attempt is
    /// retried with backoff up to the function's retries.
    pub async fn run<T, F, Fut>(&self, name: &str, work: F) -> Result<T, Interrupt>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, StepError>>,
    {
        let planned = match self.lookup(name)? {
            Lookup::Done(value) => return Ok(value),
            Lookup::Execute(planned) => planned,
        };
        // Whatever `work` does outside the database, it does after every earlier
        // checkpoint of the run is durable.
        self.settle_or_halt().await?;
        self.execute(planned, work).await
    }

    /// Like [`Step::run`], for work that has no effect outside the run: a computation
    /// over the event and earlier steps' outputs, such as parsing or validating. It
    /// starts without waiting for earlier checkpoints to be durable, so it overlaps
    /// their commit; a step that calls, sends or writes anything belongs in `run`.
    pub async fn compute<T, F, Fut>(&self, name: &str, work: F) -> Result<T, Interrupt>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, StepError>>,
    {
        match self.lookup(name)? {
            Lookup::Done(value) => Ok(value),
            Lookup::Execute(planned) => self.execute(planned, work).await,
        }
    }

    async fn execute<T, F, Fut>(&self, planned: Planned, work: F) -> Result<T, Interrupt>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, StepError>>,
    {
        let began = std::time::Instant::now();
        let result = self.with_timeout(work()).await;
        self.observe(began);
        match result {
            Ok(value) => {
                let output = to_json(&value)?;
                let update = planned.update("completed", Some(output), None, self.now());
                self.checkpoint(update).await?;
                Ok(value)
            }
            Err(err) => Err(self.failed(planned, err)),
        }
    }

    /// Like [`Step::run`], but `work` writes through the transaction that records the
    /// step as done: its writes and the checkpoint commit together or not at all.
    pub async fn run_tx<T, F>(&self, name: &str, work: F) -> Result<T, Interrupt>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: for<'c> FnOnce(&'c mut StoreTx) -> BoxFuture<'c, Result<T, StepError>> + Send + 'static,
    {
        let planned = match self.lookup(name)? {
            Lookup::Done(value) => return Ok(value),
            Lookup::Execute(planned) => planned,
        };
        let (run_id, owner, _) = self.lease_args();
        let this = self.clone();
        let plan = planned.clone();
        let timeout = self.inner.settings.timeout;
        let began = std::time::Instant::now();
        let after = self.progress().last_early;
        let outcome = self
            .inner
            .settings
            .store
            .write(
                Write::isolated()
                    .failing_with::<TxStepError>()
                    .answer_early()
                    .after(after),
                move |tx| {
                    Box::pin(async move {
                        let value = match timeout {
                            Some(limit) => tokio::time::timeout(limit, work(tx))
                                .await
                                .map_err(|_| TxStepError::Step(timeout_error(limit)))?,
                            None => work(tx).await,
                        }
                        .map_err(TxStepError::Step)?;
                        let output = serde_json::to_string(&value)
                            .map_err(|e| TxStepError::Step(StepError::non_retriable(e)))?;
                        let update = plan.update("completed", Some(output), None, this.now());
                        // Last, so a lost lease rolls the work back with the checkpoint.
                        if !tx.save_step_if_leased(&run_id, &owner, &update).await? {
                            return Err(TxStepError::Lost);
                        }
                        Ok(value)
                    })
                },
            )
            .await;
        self.observe(began);
        match outcome {
            Ok((value, durability)) => {
                self.unsettled(durability);
                Ok(value)
            }
            Err(TxStepError::Step(err)) => Err(self.failed(planned, err)),
            Err(TxStepError::Lost) => Err(self.halt(Halt::Lost)),
            Err(TxStepError::Store(err)) => Err(self.halt(Halt::Store(err.to_string()))),
        }
    }

    /// Parks the run for `duration`; the worker is freed meanwhile.
    pub async fn sleep(&self, name: &str, duration: Duration) -> Result<(), Interrupt> {
        self.sleep_inner(name, Wake::After(duration)).await
    }

    /// Parks the run until `until_ms` (milliseconds since the Unix epoch).
    pub async fn sleep_until(&self, name: &str, until_ms: i64) -> Result<(), Interrupt> {
        self.sleep_inner(name, Wake::At(until_ms)).await
    }

    async fn sleep_inner(&self, name: &str, wake: Wake) -> Result<(), Interrupt> {
        let key = self.next_key(name);
        let now = self.now();
        let existing = self.inner.memo.get(&key);
        if existing.is_some_and(|row| row.status == "completed") {
            return Ok(());
        }
        self.check_boundary()?;
        let (position, started_at, wake_at) = match existing {
            Some(row) => (row.position, row.started_at, row.wake_at.unwrap_or(now)),
            None => {
                let wake_at = match wake {
                    Wake::After(d) => now.saturating_add(duration_ms(d)),
                    Wake::At(at) => at,
                };
                (self.take_position(), now, wake_at)
            }
        };
        let mut update = StepUpdate {
            key,
            name: name.to_owned(),
            position,
            kind: "sleep",
            status: "sleeping",
            attempts: 1,
            output: None,
            error: None,
            wake_at: Some(wake_at),
            started_at,
            ended_at: None,
        };
        if wake_at > now {
            return Err(self.halt(Halt::Sleep {
                step: update,
                until: wake_at,
            }));
        }
        update.status = "completed";
        update.ended_at = Some(now);
        self.checkpoint(update).await
    }

    /// The next attempt of a step already recorded.
    pub(super) fn planned_from(&self, row: &StepRow) -> Planned {
        Planned {
            key: row.step_key.clone(),
            name: row.name.clone(),
            position: row.position,
            attempts: row.attempts,
            started_at: row.started_at,
        }
    }

    pub(super) fn settings(&self) -> &StepSettings {
        &self.inner.settings
    }

    pub(super) fn memo(&self, key: &str) -> Option<&StepRow> {
        self.inner.memo.get(key)
    }

    pub(crate) fn take_halt(&self) -> Option<Halt> {
        self.progress().halt.take()
    }

    /// Whether a halt is pending.
    pub(super) fn halted(&self) -> bool {
        self.progress().halt.is_some()
    }

    /// The commit generation of the execution's latest early write, which a write made
    /// after it builds on.
    pub(super) fn last_early(&self) -> Option<Generation> {
        self.progress().last_early
    }

    pub(super) fn lookup<T: DeserializeOwned>(&self, name: &str) -> Result<Lookup<T>, Interrupt> {
        let key = self.next_key(name);
        let existing = self.inner.memo.get(&key);
        if let Some(row) = existing.filter(|row| row.status == "completed") {
            let output = row.output.as_deref().unwrap_or("null");
            return serde_json::from_str(output).map(Lookup::Done).map_err(|e| {
                Interrupt::fail(format!(
                    "stored output of step '{name}' no longer decodes: {e}"
                ))
            });
        }
        self.check_boundary()?;
        let position = existing.map_or_else(|| self.take_position(), |row| row.position);
        Ok(Lookup::Execute(Planned {
            key,
            name: name.to_owned(),
            position,
            attempts: existing.map_or(0, |row| row.attempts) + 1,
            started_at: self.now(),
        }))
    }

    /// A step boundary: stop here when a halt is pending or the worker is shutting down.
    pub(super) fn check_boundary(&self) -> Result<(), Interrupt> {
        if self.progress().halt.is_some() {
            return Err(Interrupt(Reason::Parked));
        }
        if self.inner.settings.shutdown.is_cancelled() {
            return Err(self.halt(Halt::Release));
        }
        Ok(())
    }

    pub(super) fn failed(&self, planned: Planned, err: StepError) -> Interrupt {
        let settings = &self.inner.settings;
        let attempts = u32::try_from(planned.attempts).unwrap_or(u32::MAX);
        let decision = after_failure(
            &settings.backoff,
            settings.retries,
            attempts,
            err.is_retriable(),
            rand::random::<f64>(),
        );
        let now = self.now();
        let message = err.to_string();
        let mut step = planned.update("errored", None, Some(message.clone()), now);
        let halt = match decision {
            AfterFailure::RetryIn(delay) => {
                step.wake_at = Some(now + delay);
                Halt::Retry {
                    step,
                    at: now + delay,
                }
            }
            AfterFailure::GiveUp => {
                step.status = "failed";
                let error = format!("step '{}' failed: {message}", planned.name);
                Halt::Fail { step, error }
            }
        };
        self.halt(halt)
    }

    /// Records a step as done, provided the run's lease is still ours. The answer may
    /// come before the commit is durable (see [`Step::settle`]).
    pub(super) async fn checkpoint(&self, update: StepUpdate) -> Result<(), Interrupt> {
        let (run_id, owner, _) = self.lease_args();
        let after = self.progress().last_early;
        let saved = self
            .inner
            .settings
            .store
            .save_step_early(&run_id, &owner, &update, after)
            .await;
        match saved {
            Ok((true, durability)) => {
                self.unsettled(durability);
                Ok(())
            }
            Ok((false, _)) => Err(self.halt(Halt::Lost)),
            Err(err) => Err(self.halt(Halt::Store(err.to_string()))),
        }
    }

    /// Makes the execution build on a commit that may not be durable yet (the one that
    /// stored its run): its writes run only if that commit succeeds, and what leaves the
    /// database waits for it like for the execution's own checkpoints.
    pub(super) fn builds_on(&self, commit: Durability) {
        self.unsettled(Some(commit));
    }

    fn unsettled(&self, durability: Option<Durability>) {
        if let Some(durability) = durability {
            let mut progress = self.progress();
            progress.last_early = Some(durability.generation());
            progress.unsettled.push(durability);
        }
    }

    /// Waits until every checkpoint of this execution is durable.
    ///
    /// Checkpoints and `run_tx` writes are answered once they ran, before their commit
    /// reaches the disk, so that a run's next write can join the same commit. What
    /// leaves the database waits here first: a `run` step's work, and the worker's
    /// ending of the run. A crash loses at most a tail of a run's checkpoints, never one
    /// that anything outside the database has seen the effects of; and a write that
    /// builds on a commit that failed does not run.
    pub(crate) async fn settle(&self) -> crate::store::Result<()> {
        let unsettled = std::mem::take(&mut self.progress().unsettled);
        for durability in unsettled {
            durability.wait().await?;
        }
        Ok(())
    }

    pub(super) async fn settle_or_halt(&self) -> Result<(), Interrupt> {
        self.settle()
            .await
            .map_err(|err| self.halt(Halt::Store(err.to_string())))
    }

    pub(super) fn halt(&self, halt: Halt) -> Interrupt {
        let mut progress = self.progress();
        if progress.halt.is_none() {
            progress.halt = Some(halt);
        }
        Interrupt(Reason::Parked)
    }

    async fn with_timeout<T>(
        &self,
        work: impl Future<Output = Result<T, StepError>>,
    ) -> Result<T, StepError> {
        match self.inner.settings.timeout {
            Some(limit) => tokio::time::timeout(limit, work)
                .await
                .unwrap_or_else(|_| Err(timeout_error(limit))),
            None => work.await,
        }
    }

    fn observe(&self, began: std::time::Instant) {
        let settings = &self.inner.settings;
        settings
            .metrics
            .step_seconds
            .get_or_create(&crate::metrics::FunctionLabels {
                function: settings.function_id.clone(),
            })
            .observe(began.elapsed().as_secs_f64());
    }

    pub(super) fn next_key(&self, name: &str) -> String {
        let mut progress = self.progress();
        let n = progress.occurrences.entry(name.to_owned()).or_insert(0);
        let key = format!("{name}:{n}");
        *n += 1;
        key
    }

    pub(super) fn take_position(&self) -> i64 {
        let mut progress = self.progress();
        let position = progress.next_position;
        progress.next_position += 1;
        position
    }

    fn lease_args(&self) -> (String, String, i64) {
        let s = &self.inner.settings;
        (s.run_id.clone(), s.owner.clone(), self.now())
    }

    /// The engine's clock, in milliseconds since the Unix epoch: the time to record in a
    /// step's writes, so tests that move a manual clock see it there too.
    pub fn now_ms(&self) -> i64 {
        self.now()
    }

    pub(super) fn now(&self) -> i64 {
        self.inner.settings.clock.now_ms()
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        // A poisoned lock only means a handler panicked mid-update; the data is still usable.
        self.inner
            .progress
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

enum Wake {
    After(Duration),
    At(i64),
}

enum TxStepError {
    Step(StepError),
    Lost,
    Store(crate::store::Error),
}

impl From<crate::store::Error> for TxStepError {
    fn from(err: crate::store::Error) -> Self {
        TxStepError::Store(err)
    }
}

fn timeout_error(limit: Duration) -> StepError {
    StepError::retriable(format!("step timed out after {} ms", limit.as_millis()))
}

fn to_json<T: Serialize>(value: &T) -> Result<String, Interrupt> {
    serde_json::to_string(value)
        .map_err(|e| Interrupt::fail(format!("step output is not JSON: {e}")))
}
