//! The durable execution engine: functions registered in Rust, runs started by events,
//! memoized steps, retries, sleeps, leases and recovery.

mod clock;
mod cron;
mod error;
mod event;
pub(crate) mod expr;
mod flow;
mod function;
mod intake;
pub mod operations;
pub mod path;
mod registry;
mod retry;
mod shutdown;
mod step;
mod worker;

use std::sync::atomic::{AtomicBool, AtomicI64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

pub use crate::ids::new_id;
pub use crate::state::RunStatus;
pub use clock::{Clock, system_now_ms};
pub use cron::{Schedule, ScheduleError};
pub use error::{EngineError, NonRetriable, StepError};
pub use event::{CRON_TICK, Event, EventInput, FUNCTION_FAILED, Failure};
pub(crate) use event::{FUNCTION_INVOKED, Finished};
pub use flow::{CancelOn, Concurrency, Throttle};
pub(crate) use flow::{ExprKeys, Flow};
pub(crate) use function::Starter;
pub use function::{DEFAULT_RETRIES, Function, Trigger};
pub use retry::Backoff;
pub use shutdown::Stopped;
pub use step::{Ctx, Interrupt, Step, WaitFor};
#[cfg(feature = "testing")]
pub use step::{FaultPlan, InjectedFault};
pub(crate) use step::{Invoked, RemoteStep};

use crate::ids::FunctionId;
use crate::metrics::Metrics;
use crate::store::{IngestOutcome, NewLease, Store, Write};
use registry::Registry;

/// How the engine runs its workers.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Runs executed at once by this process.
    pub workers: usize,
    /// How long a claimed run stays ours without renewal; renewed every third of it.
    pub lease: Duration,
    /// Longest idle wait before looking for due runs again (timers, other processes).
    pub poll_interval: Duration,
    /// Delays between the attempts of a failed step.
    pub backoff: Backoff,
    /// Where the engine reads the time; [`Clock::manual`] in tests.
    pub clock: Clock,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            workers: 32,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
            backoff: Backoff::default(),
            clock: Clock::System,
        }
    }
}

/// The engine handle: cheap to clone; every clone drives the same workers.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub store: Store,
    pub config: EngineConfig,
    pub registry: Arc<Registry>,
    /// Identifies this engine's leases.
    pub owner: String,
    pub wake: Arc<Notify>,
    pub shutdown: CancellationToken,
    pub tasks: Mutex<Vec<JoinHandle<()>>>,
    pub metrics: Metrics,
    /// Runs this engine is executing now; only their leases are renewed.
    pub active: Mutex<Vec<crate::ids::RunId>>,
    /// One permit per worker; an execution holds one from its claim (or from before its
    /// event is stored, for runs handed over at intake) to its end.
    pub slots: Arc<Semaphore>,
    /// The executions in progress.
    pub running: Mutex<JoinSet<()>>,
    /// Whether the dispatch loop runs, so runs may be handed over at intake.
    pub dispatching: AtomicBool,
    /// What [`Engine::idle`] watches; told whenever an execution ends.
    pub activity: watch::Sender<Activity>,
    /// When the idle dispatch loop looks for due runs again (engine clock, ms); 0 while
    /// it is not waiting and will look again anyway.
    pub next_look: AtomicI64,
}

/// Where the engine's background tasks are, as [`Engine::idle`] needs to know.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Activity {
    /// The dispatch loop found nothing more to claim and waits.
    pub waiting: bool,
    /// Runs queued by other processes wake this engine (or no other process can queue any).
    pub listening: bool,
}

/// Collects the functions and settings of an [`Engine`]; made by [`Engine::builder`].
pub struct EngineBuilder {
    store: Store,
    config: EngineConfig,
    functions: Vec<Function>,
    metrics: Option<Metrics>,
    #[cfg(feature = "testing")]
    fault_plan: FaultPlan,
}

impl EngineBuilder {
    /// Replaces the default [`EngineConfig`].
    pub fn config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }

    /// Records into these metrics instead of a fresh set.
    #[doc(hidden)]
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Test builds only: fails the steps that `plan` names, in every function.
    #[cfg(feature = "testing")]
    pub fn fault_plan(mut self, plan: FaultPlan) -> Self {
        self.fault_plan = plan;
        self
    }

    /// Adds a function (and its failure handler, if it has one).
    pub fn register(mut self, function: Function) -> Self {
        self.functions.push(function);
        self
    }

    /// Builds the engine; no worker runs until [`Engine::start`].
    ///
    /// # Errors
    ///
    /// [`EngineError::DuplicateFunction`] when two registered functions share an id.
    pub fn build(self) -> Result<Engine, EngineError> {
        let registry = Registry::build(self.functions)?;
        #[cfg(feature = "testing")]
        let registry = registry.with_fault_plan(self.fault_plan);
        let registry = Arc::new(registry);
        let metrics = self.metrics.unwrap_or_default();
        self.store
            .report_batch_sizes(metrics.commit_batch_size.clone());
        Ok(Engine {
            inner: Arc::new(Inner {
                metrics,
                store: self.store,
                slots: Arc::new(Semaphore::new(self.config.workers.max(1))),
                config: self.config,
                registry,
                owner: new_id("wrk"),
                wake: Arc::new(Notify::new()),
                shutdown: CancellationToken::new(),
                tasks: Mutex::new(Vec::new()),
                active: Mutex::new(Vec::new()),
                running: Mutex::new(JoinSet::new()),
                dispatching: AtomicBool::new(false),
                activity: watch::Sender::new(Activity::default()),
                next_look: AtomicI64::new(0),
            }),
        })
    }
}

/// A function as listed by the API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FunctionInfo {
    /// The function's id as registered.
    pub id: FunctionId,
    /// The event name that starts it; `None` for cron functions and failure handlers.
    pub trigger: Option<String>,
    /// The cron expression and its time zone, for cron functions.
    pub cron: Option<String>,
    /// Retries per step after the first attempt.
    pub retries: u32,
    /// The step timeout in milliseconds, if the function sets one.
    pub step_timeout_ms: Option<u128>,
    /// The id of the function's failure handler (`<id>.on_failure`), if it has one.
    pub on_failure: Option<FunctionId>,
    /// Its flow control in words (`concurrency 1 per event.data.user`, …).
    pub flow: Vec<String>,
    /// The URL of the SDK app that runs it; `None` for a function compiled into paysteps.
    pub app: Option<String>,
}

impl Engine {
    /// Starts building an engine on `store`, with the default [`EngineConfig`].
    ///
    /// ```no_run
    /// use paysteps::{Engine, EventInput, Function, Trigger};
    /// use paysteps::Store;
    ///
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = Store::connect("sqlite://paysteps.db").await?;
    /// store.migrate().await?;
    /// let welcome = Function::new("welcome", Trigger::event("app/user.signed_up"), |ctx| async move {
    ///     let user = ctx.event.data["user"].as_str().unwrap_or_default().to_owned();
    ///     ctx.step.run("send email", || async move { Ok(format!("sent to {user}")) }).await
    /// });
    /// let engine = Engine::builder(store).register(welcome).build()?;
    /// engine.start();
    /// let data = serde_json::json!({ "user": "u_1" });
    /// engine.ingest(EventInput::new("app/user.signed_up", &data)).await?;
    /// // …
    /// engine.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn builder(store: Store) -> EngineBuilder {
        EngineBuilder {
            store,
            config: EngineConfig::default(),
            functions: Vec::new(),
            metrics: None,
            #[cfg(feature = "testing")]
            fault_plan: FaultPlan::default(),
        }
    }

    /// The database the engine records events, runs and steps in.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The engine's counters and histograms.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The clock the engine schedules by.
    pub fn clock(&self) -> &Clock {
        &self.inner.config.clock
    }

    /// Every registered function, failure handlers and SDK apps' functions included.
    pub fn functions(&self) -> Vec<FunctionInfo> {
        self.inner
            .registry
            .all()
            .iter()
            .map(|f| {
                let events: Vec<String> = f
                    .starters
                    .iter()
                    .filter_map(|s| match (&s.trigger, &s.condition_text) {
                        (Trigger::Event(name), None) => Some(name.clone()),
                        (Trigger::Event(name), Some(when)) => Some(format!("{name} if {when}")),
                        (Trigger::Cron(_) | Trigger::Internal, _) => None,
                    })
                    .collect();
                let crons: Vec<String> = f
                    .crons()
                    .map(|(_, s)| format!("{} ({})", s.expr(), s.time_zone()))
                    .collect();
                FunctionInfo {
                    id: f.id.clone(),
                    trigger: (!events.is_empty()).then(|| events.join(", ")),
                    cron: (!crons.is_empty()).then(|| crons.join(", ")),
                    retries: f.retries,
                    step_timeout_ms: f.timeout.map(|t| t.as_millis()),
                    on_failure: f.on_failure.clone(),
                    flow: f.flow.describe(),
                    app: f.app.clone(),
                }
            })
            .collect()
    }

    /// Replaces the functions of the SDK app at `app` with `functions`; their crons are
    /// fired from now on. Refused, changing nothing, when an id is taken outside the app.
    pub(crate) fn install_app(
        &self,
        app: &str,
        functions: Vec<Function>,
    ) -> Result<(), EngineError> {
        self.inner.registry.install_app(app, functions)
    }

    /// Stores an event and one queued run per function it triggers, in one transaction;
    /// returns once both are committed. A second event with the same dedupe key is
    /// answered as a duplicate and starts nothing.
    ///
    /// # Errors
    ///
    /// A [`store::Error`](crate::store::Error) when the database fails; nothing is stored
    /// then. When [`is_unavailable`](crate::store::Error::is_unavailable) says so, sending
    /// the event again later is safe (give it a dedupe key to be sure it is stored once).
    pub async fn ingest(&self, input: EventInput) -> crate::store::Result<IngestOutcome> {
        let now = self.inner.config.clock.now_ms();
        let source = input.source;
        let event = input.into_new_event(now);
        let mut intake = self.inner.registry.plan(event);
        let admitted = match worker::reserve(&self.inner, &intake) {
            Some(permits) => {
                intake.lease = Some(NewLease {
                    owner: self.inner.owner.clone(),
                    expires_at: now + clock::duration_ms(self.inner.config.lease),
                });
                // Once stored, the runs are this engine's until their lease lapses: the
                // hand-over must not be dropped with a caller that stops waiting.
                let inner = self.inner.clone();
                let stored = tokio::spawn(async move {
                    let (admitted, intake, durability) = admit(&inner, intake).await?;
                    if matches!(admitted.outcome, IngestOutcome::Accepted { .. }) {
                        worker::hand_over(&inner, intake, permits, durability.clone());
                    }
                    if let Some(durability) = durability {
                        durability.wait().await?;
                    }
                    Ok::<_, crate::store::Error>(admitted)
                });
                match stored.await {
                    Ok(admitted) => admitted?,
                    Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
                    Err(_) => return Err(crate::store::Error::Closed),
                }
            }
            None => {
                let (admitted, _, durability) = admit(&self.inner, intake).await?;
                if let Some(durability) = durability {
                    durability.wait().await?;
                }
                admitted
            }
        };
        let labels = crate::metrics::SourceLabels {
            source: source.to_owned(),
        };
        let outcome = admitted.outcome;
        match &outcome {
            IngestOutcome::Accepted { .. } => {
                self.inner
                    .metrics
                    .events_received
                    .get_or_create(&labels)
                    .inc();
                if admitted.claimable {
                    self.inner.wake.notify_waiters();
                }
            }
            IngestOutcome::Duplicate { .. } => {
                self.inner
                    .metrics
                    .events_duplicate
                    .get_or_create(&labels)
                    .inc();
            }
        }
        Ok(outcome)
    }

    /// Starts the worker pool and the lease renewer. Stop them with [`Engine::shutdown`].
    pub fn start(&self) {
        let mut tasks = self
            .inner
            .tasks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        tasks.push(tokio::spawn(worker::dispatch_loop(self.inner.clone())));
        tasks.push(tokio::spawn(worker::renew_loop(self.inner.clone())));
        tasks.push(tokio::spawn(worker::signal_loop(self.inner.clone())));
        tasks.push(tokio::spawn(cron::cron_loop(self.inner.clone())));
    }

    /// Waits until the started engine has nothing to do right now: its workers looked
    /// for due runs and found none left to claim, no execution is in progress, and it
    /// listens for runs that other processes queue. A test of a function can wait for
    /// it before asserting that something did not happen.
    #[doc(hidden)]
    pub async fn idle(&self) {
        let workers = self.inner.config.workers.max(1);
        let mut activity = self.inner.activity.subscribe();
        loop {
            let now = *activity.borrow_and_update();
            if now.waiting && now.listening && self.inner.slots.available_permits() >= workers {
                return;
            }
            if activity.changed().await.is_err() {
                return;
            }
        }
    }

    /// Stops claiming, lets every in-flight step finish and checkpoint, and hands the
    /// runs that were cut short back to the queue (their leases released).
    pub async fn shutdown(&self) {
        for task in self.stop_tasks() {
            let _ = task.await;
        }
    }

    /// Stops every task at once, as a crash would: no lease is released. For tests of
    /// recovery.
    #[doc(hidden)]
    pub fn abort(&self) {
        for task in self.stop_tasks() {
            task.abort();
        }
        worker::executions(&self.inner).abort_all();
    }

    /// Signals shutdown to the background tasks and takes their handles, for the caller
    /// to wait on or abort.
    fn stop_tasks(&self) -> Vec<JoinHandle<()>> {
        self.inner.shutdown.cancel();
        self.inner
            .tasks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .drain(..)
            .collect()
    }

    /// Fires every cron tick that is due now (at most one per function, however many
    /// were missed) and returns how many runs it started. Processes sharing the
    /// database may all call it: each tick starts one run in all.
    #[doc(hidden)]
    pub async fn fire_cron(&self) -> crate::store::Result<usize> {
        cron::fire_cron(&self.inner).await
    }

    /// Executes runs that are due now, one after another, until none is left; returns
    /// how many executions it made. For tests and tools that drive time themselves.
    #[doc(hidden)]
    pub async fn run_until_idle(&self) -> crate::store::Result<usize> {
        let mut executed = 0;
        while let Some(run) = worker::claim_one(&self.inner).await? {
            worker::execute(&self.inner, run, worker::Start::unslotted()).await;
            executed += 1;
        }
        Ok(executed)
    }
}

/// Stores the intake's event and runs; gives the intake back for its runs to be handed
/// over. The answer may come before the commit is durable: then with the
/// [`Durability`](crate::store::Durability) to wait for before telling anyone outside.
async fn admit(
    inner: &Inner,
    intake: intake::Intake,
) -> crate::store::Result<(
    intake::Admitted,
    intake::Intake,
    Option<crate::store::Durability>,
)> {
    if let Some(admitted) = intake::admit_alone(&inner.store, &intake).await? {
        return Ok((admitted, intake, None));
    }
    let ((admitted, intake), durability) = inner
        .store
        .write(Write::shared().answer_early(), move |tx| {
            Box::pin(async move {
                let admitted = intake::admit(tx, &intake).await?;
                Ok((admitted, intake))
            })
        })
        .await?;
    Ok((admitted, intake, durability))
}
