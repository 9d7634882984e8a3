//! Executing a step: `run`, `compute` and the transactional `run_tx`, with their timeout,
//! their checkpoint, and what a failed attempt leads to.

use std::future::Future;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::memo::{Lookup, Planned};
use super::{Halt, Interrupt, Step};
use crate::engine::error::StepError;
use crate::engine::retry::{AfterFailure, after_failure};
use crate::state::StepStatus;
use crate::store::{StoreTx, Write};

impl Step {
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
        let began = Instant::now();
        let result = match self.injected_fault(&planned.name) {
            Ok(()) => self.with_timeout(work()).await,
            Err(err) => Err(err),
        };
        self.observe(began);
        match result {
            Ok(value) => {
                let output = to_json(&value)?;
                let update = planned.update(StepStatus::Completed, Some(output), None, self.now());
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
        let timeout = self.settings().timeout;
        let began = Instant::now();
        let after = self.last_early();
        let outcome = self
            .settings()
            .store
            .write(
                Write::isolated()
                    .failing_with::<TxStepError>()
                    .answer_early()
                    .after(after),
                move |tx| {
                    Box::pin(async move {
                        this.injected_fault(&plan.name).map_err(TxStepError::Step)?;
                        let value = match timeout {
                            Some(limit) => tokio::time::timeout(limit, work(tx))
                                .await
                                .map_err(|_| TxStepError::Step(timeout_error(limit)))?,
                            None => work(tx).await,
                        }
                        .map_err(TxStepError::Step)?;
                        let output = serde_json::to_string(&value)
                            .map_err(|e| TxStepError::Step(StepError::non_retriable(e)))?;
                        let update =
                            plan.update(StepStatus::Completed, Some(output), None, this.now());
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

    /// Ends a failed attempt: schedules the next one with backoff, or fails the step once
    /// the error is not retriable or the function's retries are spent.
    pub(in crate::engine) fn failed(&self, planned: Planned, err: StepError) -> Interrupt {
        let settings = self.settings();
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
        let mut step = planned.update(StepStatus::Errored, None, Some(message.clone()), now);
        let halt = match decision {
            AfterFailure::RetryIn(delay) => {
                step.wake_at = Some(now + delay);
                Halt::Retry {
                    step,
                    at: now + delay,
                }
            }
            AfterFailure::GiveUp => {
                step.status = StepStatus::Failed;
                let error = format!("step '{}' failed: {message}", planned.name);
                Halt::Fail { step, error }
            }
        };
        self.halt(halt)
    }

    /// Test builds only: the engine's [`FaultPlan`](crate::engine::FaultPlan) counts the
    /// attempt and may fail it, before the step's own work runs.
    #[cfg(feature = "testing")]
    fn injected_fault(&self, name: &str) -> Result<(), StepError> {
        self.settings().registry.fault_plan().check(name)
    }

    #[cfg(not(feature = "testing"))]
    #[inline(always)]
    fn injected_fault(&self, _name: &str) -> Result<(), StepError> {
        Ok(())
    }

    async fn with_timeout<T>(
        &self,
        work: impl Future<Output = Result<T, StepError>>,
    ) -> Result<T, StepError> {
        match self.settings().timeout {
            Some(limit) => tokio::time::timeout(limit, work)
                .await
                .unwrap_or_else(|_| Err(timeout_error(limit))),
            None => work.await,
        }
    }

    fn observe(&self, began: Instant) {
        let settings = self.settings();
        settings
            .metrics
            .step_seconds
            .get_or_create(&crate::metrics::FunctionLabels {
                function: settings.function_id.to_string(),
            })
            .observe(began.elapsed().as_secs_f64());
    }
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
