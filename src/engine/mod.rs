//! The durable execution engine: functions registered in Rust, runs started by events,
//! memoized steps, retries, sleeps, leases and recovery.

mod clock;
mod cron;
mod error;
mod event;
mod function;
pub mod operations;
mod retry;
mod run;
mod step;
mod worker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use clock::{Clock, system_now_ms};
pub use cron::{Schedule, ScheduleError};
pub use error::{EngineError, NonRetriable, StepError};
pub use event::{CRON_TICK, Event, EventInput, FUNCTION_FAILED, Failure};
pub use function::{DEFAULT_RETRIES, Function, Trigger};
pub use retry::Backoff;
pub use run::{RunStatus, UnknownStatus};
pub use step::{Ctx, Interrupt, Step};

use crate::metrics::Metrics;
use crate::store::{IngestOutcome, NewEvent, NewRun, Store};
use function::{Handler, failure_id};

/// How the engine runs its workers.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Runs executed at once by this process.
    pub workers: usize,
    /// How long a claimed run stays ours without renewal; renewed every third of it.
    pub lease: Duration,
    /// Longest idle wait before looking for due runs again (timers, other processes).
    pub poll_interval: Duration,
    pub backoff: Backoff,
    pub clock: Clock,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            workers: 16,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
            backoff: Backoff::default(),
            clock: Clock::System,
        }
    }
}

/// A registered function as the workers see it.
#[derive(Clone)]
pub(crate) struct Registered {
    pub id: String,
    pub trigger: Trigger,
    pub retries: u32,
    pub timeout: Option<Duration>,
    pub handler: Handler,
    /// The failure handler's function id, when there is one.
    pub on_failure: Option<String>,
}

/// The engine handle: cheap to clone; every clone drives the same workers.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub store: Store,
    pub config: EngineConfig,
    pub functions: HashMap<String, Registered>,
    /// Function ids in registration order, for listings.
    pub order: Vec<String>,
    /// Identifies this engine's leases.
    pub owner: String,
    pub wake: Notify,
    pub shutdown: CancellationToken,
    pub tasks: Mutex<Vec<JoinHandle<()>>>,
    pub metrics: Metrics,
    /// Runs this engine is executing now; only their leases are renewed.
    pub active: Mutex<Vec<String>>,
}

pub struct EngineBuilder {
    store: Store,
    config: EngineConfig,
    functions: Vec<Function>,
    metrics: Option<Metrics>,
}

impl EngineBuilder {
    pub fn config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }

    /// Records into these metrics instead of a fresh set.
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    pub fn register(mut self, function: Function) -> Self {
        self.functions.push(function);
        self
    }

    pub fn build(self) -> Result<Engine, EngineError> {
        let mut functions = HashMap::new();
        let mut order = Vec::new();
        for f in self.functions {
            let on_failure = f.on_failure.as_ref().map(|_| failure_id(&f.id));
            let mut entries = vec![Registered {
                id: f.id.clone(),
                trigger: f.trigger.clone(),
                retries: f.retries,
                timeout: f.step_timeout,
                handler: f.handler.clone(),
                on_failure: on_failure.clone(),
            }];
            if let (Some(id), Some(handler)) = (on_failure, f.on_failure) {
                entries.push(Registered {
                    id,
                    trigger: Trigger::Internal,
                    retries: f.retries,
                    timeout: f.step_timeout,
                    handler,
                    on_failure: None,
                });
            }
            for entry in entries {
                if functions.contains_key(&entry.id) {
                    return Err(EngineError::DuplicateFunction(entry.id));
                }
                order.push(entry.id.clone());
                functions.insert(entry.id.clone(), entry);
            }
        }
        let metrics = self.metrics.unwrap_or_default();
        self.store
            .report_batch_sizes(metrics.commit_batch_size.clone());
        Ok(Engine {
            inner: Arc::new(Inner {
                metrics,
                store: self.store,
                config: self.config,
                functions,
                order,
                owner: new_id("wrk"),
                wake: Notify::new(),
                shutdown: CancellationToken::new(),
                tasks: Mutex::new(Vec::new()),
                active: Mutex::new(Vec::new()),
            }),
        })
    }
}

/// A function as listed by the API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FunctionInfo {
    pub id: String,
    /// The event name that starts it; `None` for cron functions and failure handlers.
    pub trigger: Option<String>,
    /// The cron expression and its time zone, for cron functions.
    pub cron: Option<String>,
    pub retries: u32,
    pub step_timeout_ms: Option<u128>,
    pub on_failure: Option<String>,
}

impl Engine {
    pub fn builder(store: Store) -> EngineBuilder {
        EngineBuilder {
            store,
            config: EngineConfig::default(),
            functions: Vec::new(),
            metrics: None,
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub fn clock(&self) -> &Clock {
        &self.inner.config.clock
    }

    pub fn functions(&self) -> Vec<FunctionInfo> {
        self.inner
            .order
            .iter()
            .filter_map(|id| self.inner.functions.get(id))
            .map(|f| FunctionInfo {
                id: f.id.clone(),
                trigger: match &f.trigger {
                    Trigger::Event(name) => Some(name.clone()),
                    Trigger::Cron(_) | Trigger::Internal => None,
                },
                cron: match &f.trigger {
                    Trigger::Cron(s) => Some(format!("{} ({})", s.expr(), s.time_zone())),
                    _ => None,
                },
                retries: f.retries,
                step_timeout_ms: f.timeout.map(|t| t.as_millis()),
                on_failure: f.on_failure.clone(),
            })
            .collect()
    }

    /// Stores an event and one queued run per function it triggers, in one transaction;
    /// returns once both are committed. A second event with the same dedupe key is
    /// answered as a duplicate and starts nothing.
    pub async fn ingest(&self, input: EventInput) -> crate::store::Result<IngestOutcome> {
        let now = self.inner.config.clock.now_ms();
        let source = input.source;
        let event = NewEvent {
            id: new_id("ev"),
            dedupe_key: input.dedupe_key,
            dedupe_for_ms: input.dedupe_window.map(clock::duration_ms),
            external_id: input.external_id,
            name: input.name,
            source: input.source.to_owned(),
            data: input.data,
            ts: input.ts.unwrap_or(now),
            received_at: now,
            object_id: input.object_id,
            customer: input.customer,
        };
        let runs: Vec<NewRun> = self
            .inner
            .order
            .iter()
            .filter_map(|id| self.inner.functions.get(id))
            .filter(|f| f.trigger.matches(&event.name))
            .map(|f| NewRun {
                id: new_id("run"),
                function_id: f.id.clone(),
                replay_of: None,
            })
            .collect();
        let outcome = self
            .inner
            .store
            .write(move |tx| Box::pin(async move { tx.insert_event(&event, &runs).await }))
            .await?;
        let labels = crate::metrics::SourceLabels {
            source: source.to_owned(),
        };
        match &outcome {
            IngestOutcome::Accepted { runs, .. } => {
                self.inner
                    .metrics
                    .events_received
                    .get_or_create(&labels)
                    .inc();
                if !runs.is_empty() {
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
        for _ in 0..self.inner.config.workers.max(1) {
            tasks.push(tokio::spawn(worker::work_loop(self.inner.clone())));
        }
        tasks.push(tokio::spawn(worker::renew_loop(self.inner.clone())));
        tasks.push(tokio::spawn(worker::signal_loop(self.inner.clone())));
        tasks.push(tokio::spawn(worker::cron_loop(self.inner.clone())));
    }

    /// Stops claiming, lets every in-flight step finish and checkpoint, and hands the
    /// runs that were cut short back to the queue (their leases released).
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        let tasks: Vec<_> = self
            .inner
            .tasks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .drain(..)
            .collect();
        for task in tasks {
            let _ = task.await;
        }
    }

    /// Stops every task at once, as a crash would: no lease is released.
    pub fn abort(&self) {
        self.inner.shutdown.cancel();
        for task in self
            .inner
            .tasks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }

    /// Fires every cron tick that is due now (at most one per function, however many
    /// were missed) and returns how many runs it started. Processes sharing the
    /// database may all call it: each tick starts one run in all.
    pub async fn fire_cron(&self) -> crate::store::Result<usize> {
        worker::fire_cron(&self.inner).await
    }

    /// Executes runs that are due now, one after another, until none is left; returns
    /// how many executions it made. For tests and tools that drive time themselves.
    pub async fn run_until_idle(&self) -> crate::store::Result<usize> {
        let mut executed = 0;
        while let Some(run) = worker::claim_one(&self.inner).await? {
            worker::execute(&self.inner, run).await;
            executed += 1;
        }
        Ok(executed)
    }
}

/// A new sortable id with a readable prefix: `run_0192…`.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}
