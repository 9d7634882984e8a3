//! Running an SDK function: the handler that, within the run's lease, calls the app with
//! the steps memoized so far and turns each answer into stored steps, sleeps, waits,
//! invocations, retries, completion or failure.
//!
//! The app holds the code; paysteps holds the state. Each call runs the function from
//! the top in the app, memoized steps returning at once, until something new happens:
//! a step ran (stored, then the app is called again), steps were planned to run in
//! parallel (each called on its own, at once), or the function must park (a sleep, a
//! wait, an invocation: the run parks as a Rust function's does, and the next execution
//! calls the app again). Steps are keyed by the id the SDK hashed, so a replay or a
//! restart picks up exactly where the app left off.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use reqwest::Url;
use serde_json::{Map, Value};

use super::client::AppClient;
use super::config::path_equality;
use super::duration;
use super::events::to_sdk;
use super::memo::{self, Stored};
use super::protocol::{
    Answer, CallCtx, CallRequest, DISCOVERY, Memo, Op, OpCode, Stack, VERSION_UNKNOWN, sdk_error,
};
use crate::engine::expr::Expr;
use crate::engine::{Ctx, Interrupt, Invoked, RemoteStep, Step, WaitFor};
use crate::state::{StepKind, StepStatus};

/// What the driver needs to know of the function it runs.
#[derive(Debug, Clone)]
pub struct RemoteFunction {
    /// The function's URL in the app, with `fnId` and `stepId`.
    pub url: Url,
    /// Retries of each step and of the code outside steps.
    pub retries: u32,
}

/// The name shown for errors thrown outside any step.
const FUNCTION_CODE: &str = "(function code)";

/// How an app names a function compiled into paysteps: `referenceFunction({ appId:
/// "paysteps", functionId: "<id>" })`.
const RUST_APP_PREFIX: &str = "paysteps-";

/// How long an app may be unreachable before its runs fail: a day, in milliseconds.
const UNREACHABLE_FOR: i64 = 24 * 3600 * 1000;

/// Calls in a row that may bring nothing new before the run fails.
const MAX_IDLE_ROUNDS: u32 = 3;

/// Longest wait or invocation when the app sets no timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Runs one execution of an SDK function's run.
pub async fn execute(
    client: AppClient,
    function: Arc<RemoteFunction>,
    ctx: Ctx,
) -> Result<Value, Interrupt> {
    let mut run = Execution::new(&function, &ctx)?;
    let mut idle_rounds = 0;
    loop {
        ctx.step.check_boundary()?;
        // What the app is about to do outside must build on every step stored so far.
        ctx.step.settle_or_halt().await?;
        let memoized = run.memo.len();
        let targets = run.targets();
        let mut calls: FuturesUnordered<_> = targets
            .into_iter()
            .map(|(target, attempt)| {
                let request = run.request(attempt);
                let client = client.clone();
                let url = function.url.clone();
                async move {
                    let (answer, version) = client.call(&url, &target, &request).await;
                    (target, attempt, answer, version)
                }
            })
            .collect();
        let mut parks = Vec::new();
        let mut result: Option<Result<Value, Interrupt>> = None;
        let shutdown = ctx.step.shutdown_token();
        loop {
            let next = tokio::select! {
                next = calls.next() => next,
                () = shutdown.cancelled() => return Err(ctx.step.release()),
            };
            let Some((target, attempt, answer, version)) = next else {
                break;
            };
            if let Some(version) = version {
                run.version = version;
            }
            match run.apply(target, attempt, answer, &mut parks).await {
                Ok(None) => {}
                Ok(Some(output)) => result = result.or(Some(Ok(output))),
                Err(interrupt) => result = result.or(Some(Err(interrupt))),
            }
        }
        if let Some(result) = result {
            return result;
        }
        // An app that answers with nothing new, again, would be called for ever.
        if run.memo.len() == memoized && run.planned.is_empty() && parks.is_empty() {
            idle_rounds += 1;
            if idle_rounds >= MAX_IDLE_ROUNDS {
                return Err(Interrupt::fail(
                    "the app answered with no step to run and no result: the function's steps changed while it ran, or the SDK speaks another protocol version",
                ));
            }
        } else {
            idle_rounds = 0;
        }
        if run.planned.is_empty()
            && let Some(op) = parks.into_iter().next()
        {
            run.park(op).await?;
        }
    }
}

/// One execution's view of the run: what is memoized, what is planned, what errored.
struct Execution<'a> {
    step: &'a Step,
    function: &'a RemoteFunction,
    run_id: String,
    event: Value,
    /// The name of the run's event, as stored.
    own_event_name: String,
    /// Memoized steps by hashed id.
    memo: BTreeMap<String, Memo>,
    /// Their ids in the order they completed.
    stack: Vec<String>,
    /// Steps the app planned and paysteps has not run yet, with their names.
    planned: BTreeMap<String, String>,
    /// Targets whose last attempt failed, with the attempts made.
    errored: BTreeMap<String, (String, u32)>,
    /// Whether the app asked for several things at once: it then plans each step.
    parallel: bool,
    version: i64,
}

impl<'a> Execution<'a> {
    fn new(function: &'a RemoteFunction, ctx: &'a Ctx) -> Result<Execution<'a>, Interrupt> {
        let mut run = Execution {
            step: &ctx.step,
            function,
            run_id: ctx.run_id.to_string(),
            event: to_sdk(&ctx.event),
            own_event_name: ctx.event.name.clone(),
            memo: BTreeMap::new(),
            stack: Vec::new(),
            planned: BTreeMap::new(),
            errored: BTreeMap::new(),
            parallel: false,
            version: VERSION_UNKNOWN,
        };
        for row in ctx.step.stored_rows() {
            match memo::read(&row) {
                Stored::Memo(memo) => {
                    run.stack.push(row.step_key.clone());
                    run.memo.insert(row.step_key, memo);
                }
                Stored::Errored { attempts } => {
                    run.errored.insert(row.step_key, (row.name, attempts));
                }
                Stored::Pending => {}
            }
        }
        Ok(run)
    }

    /// What to call now: the planned steps, else the targets due for a retry, else the
    /// function from the top. Each with the attempts it has had.
    fn targets(&mut self) -> Vec<(String, u32)> {
        if !self.planned.is_empty() {
            return self
                .planned
                .keys()
                .map(|id| (id.clone(), self.errored.get(id).map_or(0, |e| e.1)))
                .collect();
        }
        if !self.errored.is_empty() {
            return self
                .errored
                .iter()
                .map(|(id, (_, attempts))| (id.clone(), *attempts))
                .collect();
        }
        vec![(DISCOVERY.to_owned(), 0)]
    }

    fn request(&self, attempt: u32) -> CallRequest {
        let steps: Map<String, Value> = self
            .memo
            .iter()
            .map(|(id, memo)| (id.clone(), memo.to_json()))
            .collect();
        CallRequest {
            event: self.event.clone(),
            events: vec![self.event.clone()],
            steps,
            ctx: CallCtx {
                run_id: self.run_id.clone(),
                attempt,
                max_attempts: self.function.retries + 1,
                disable_immediate_execution: self.parallel,
                use_api: false,
                stack: Stack {
                    current: self.stack.len(),
                    stack: self.stack.clone(),
                },
            },
            version: self.version,
        }
    }

    /// Takes in one answer. `Some(output)` when the function returned; an interrupt when
    /// the run stops here (a retry, a failure, a lost lease).
    async fn apply(
        &mut self,
        target: String,
        attempt: u32,
        answer: Answer,
        parks: &mut Vec<Op>,
    ) -> Result<Option<Value>, Interrupt> {
        match answer {
            Answer::Returned(output) => {
                self.clear_target(&target).await?;
                Ok(Some(output))
            }
            Answer::Error {
                error,
                retriable,
                retry_after,
            } => {
                let name = self.target_name(&target);
                Err(self.failed_attempt(&target, &name, attempt, error, retriable, retry_after))
            }
            Answer::Unreachable(message) => {
                let name = self.target_name(&target);
                Err(self.unreachable(&target, &name, attempt, &message))
            }
            Answer::Ops {
                ops,
                no_retry,
                retry_after,
            } => {
                self.planned.remove(&target);
                if target != DISCOVERY {
                    self.errored.remove(&target);
                }
                self.parallel =
                    ops.len() > 1 || ops.iter().any(|op| op.code() == OpCode::StepPlanned);
                let mut outcome = Ok(None);
                for op in ops {
                    if self.memo.contains_key(&op.id) {
                        continue;
                    }
                    match op.code() {
                        OpCode::StepRun => {
                            let data = op.data.clone().unwrap_or(Value::Null);
                            self.store(&op, StepStatus::Completed, Memo::Data(data), attempt)
                                .await?;
                        }
                        OpCode::StepFailed => {
                            let error = op.error_or_default();
                            self.store(&op, StepStatus::Failed, Memo::Error(error), attempt)
                                .await?;
                        }
                        OpCode::StepError => {
                            let error = op.error_or_default();
                            let name = op.label().to_owned();
                            if outcome.is_ok() {
                                outcome = Err(self.failed_attempt(
                                    &op.id,
                                    &name,
                                    self.errored.get(&op.id).map_or(attempt, |e| e.1),
                                    error,
                                    !no_retry,
                                    retry_after,
                                ));
                            }
                        }
                        OpCode::StepPlanned => {
                            self.planned.insert(op.id.clone(), op.label().to_owned());
                        }
                        OpCode::RunComplete => {
                            outcome = outcome.and(Ok(Some(op.data.clone().unwrap_or(Value::Null))));
                        }
                        OpCode::DiscoveryRequest => {}
                        OpCode::Sleep | OpCode::WaitForEvent | OpCode::InvokeFunction => {
                            parks.push(op);
                        }
                        OpCode::Unsupported(name) => {
                            return Err(Interrupt::fail(format!(
                                "the app asked for {name} (step '{}'), which paysteps does not support",
                                op.label()
                            )));
                        }
                    }
                }
                if target == DISCOVERY {
                    self.clear_target(DISCOVERY).await?;
                }
                outcome
            }
        }
    }

    /// Stores a step's end and memoizes it for the next call.
    async fn store(
        &mut self,
        op: &Op,
        status: StepStatus,
        memo: Memo,
        attempt: u32,
    ) -> Result<(), Interrupt> {
        let (output, error) = match &memo {
            Memo::Data(data) => (Some(data.to_string()), None),
            Memo::Error(error) => (None, Some(error.to_string())),
            Memo::Nothing | Memo::Event(_) => (None, None),
        };
        memo::check_limits(op.label(), self.memo.len(), output.as_deref())?;
        self.step
            .record_remote(RemoteStep {
                key: op.id.clone(),
                name: op.label().to_owned(),
                kind: StepKind::Run,
                status,
                attempts: i64::from(attempt) + 1,
                output,
                error,
                since: None,
            })
            .await?;
        self.errored.remove(&op.id);
        self.planned.remove(&op.id);
        self.stack.push(op.id.clone());
        self.memo.insert(op.id.clone(), memo);
        Ok(())
    }

    /// A successful call of the function's code: an earlier error outside steps is over.
    async fn clear_target(&mut self, target: &str) -> Result<(), Interrupt> {
        if target == DISCOVERY && self.errored.remove(DISCOVERY).is_some() {
            self.step
                .record_remote(RemoteStep {
                    key: DISCOVERY.to_owned(),
                    name: FUNCTION_CODE.to_owned(),
                    kind: StepKind::Run,
                    status: StepStatus::Completed,
                    attempts: 0,
                    output: None,
                    error: None,
                    since: None,
                })
                .await?;
        }
        Ok(())
    }

    fn target_name(&self, target: &str) -> String {
        if target == DISCOVERY {
            return FUNCTION_CODE.to_owned();
        }
        self.planned
            .get(target)
            .or(self.errored.get(target).map(|e| &e.0))
            .cloned()
            .unwrap_or_else(|| target.to_owned())
    }

    /// An attempt of `target` failed: retry it later, or, once its retries are spent or
    /// the error is final, fail the run (code outside steps; a step's final failure is
    /// reported by the app itself as `StepFailed`).
    fn failed_attempt(
        &self,
        target: &str,
        name: &str,
        attempt: u32,
        error: Value,
        retriable: bool,
        retry_after: Option<Duration>,
    ) -> Interrupt {
        let message = error_message(&error);
        let attempts = attempt + 1;
        match self.step.retry_delay(attempts, retriable) {
            Some(delay) => {
                let delay = retry_after.map_or(delay, |d| d.as_millis() as i64);
                self.step.retry_later(
                    RemoteStep {
                        key: target.to_owned(),
                        name: name.to_owned(),
                        kind: StepKind::Run,
                        status: StepStatus::Errored,
                        attempts: i64::from(attempts),
                        output: None,
                        error: Some(error.to_string()),
                        since: None,
                    },
                    self.step.now_ms() + delay,
                )
            }
            None if target == DISCOVERY => Interrupt::fail(message),
            None => Interrupt::fail(format!("step '{name}' failed: {message}")),
        }
    }

    /// The app could not be reached: nothing ran, so no attempt is spent. The target is
    /// called again after a delay that grows with how long the app has been away (a
    /// quarter of it, from 1 s to 1 min), so a deploy or a restart loses no run; after a
    /// day away, the run fails.
    fn unreachable(&self, target: &str, name: &str, attempts: u32, message: &str) -> Interrupt {
        let now = self.step.now_ms();
        let since = self
            .step
            .stored_step(target)
            .filter(|row| row.status == StepStatus::Errored)
            .filter(|row| memo::is_unreachable(row.error.as_deref()))
            .map_or(now, |row| row.started_at);
        let away = now - since;
        if away > UNREACHABLE_FOR {
            return Interrupt::fail(format!(
                "the app has not been reachable for a day: {message}"
            ));
        }
        let delay = (away / 4).clamp(1_000, 60_000);
        self.step.retry_later(
            RemoteStep {
                key: target.to_owned(),
                name: name.to_owned(),
                kind: StepKind::Run,
                status: StepStatus::Errored,
                attempts: i64::from(attempts),
                output: None,
                error: Some(memo::unreachable_error(message).to_string()),
                since: Some(since),
            },
            now + delay,
        )
    }

    /// Parks the run for a sleep, a wait or an invocation the app asked for; once it is
    /// over, memoizes its outcome and returns.
    async fn park(&mut self, op: Op) -> Result<(), Interrupt> {
        let name = op.label().to_owned();
        let memo = match op.code() {
            OpCode::Sleep => {
                let text = op
                    .opts
                    .get("duration")
                    .and_then(Value::as_str)
                    .or(op.name.as_deref())
                    .unwrap_or_default();
                let until = match duration::parse_time(text) {
                    Some(at) => at,
                    None => {
                        let d = duration::parse(text)
                            .map_err(|e| Interrupt::fail(format!("sleep '{name}': {e}")))?;
                        self.step.now_ms() + d.as_millis() as i64
                    }
                };
                self.step.sleep_keyed(&op.id, &name, until).await?;
                Memo::Nothing
            }
            OpCode::WaitForEvent => {
                let wait = wait_for(&op, &name, &self.own_event_name)?;
                match self.step.wait_keyed(&op.id, &name, wait).await? {
                    Some(event) => Memo::Event(to_sdk(&event)),
                    None => Memo::Nothing,
                }
            }
            OpCode::InvokeFunction => {
                let named = op
                    .opts
                    .get("function_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| Interrupt::fail(format!("invoke '{name}' names no function")))?;
                // A function compiled into paysteps is addressed as one of app "paysteps".
                let function_id = match named.strip_prefix(RUST_APP_PREFIX) {
                    Some(rust) if !self.step.is_registered(named) => rust,
                    _ => named,
                }
                .to_owned();
                let data = op
                    .opts
                    .pointer("/payload/data")
                    .cloned()
                    .unwrap_or_else(|| Value::Object(Map::new()));
                let timeout = timeout_of(&op, &name)?;
                match self
                    .step
                    .invoke_keyed(&op.id, &name, &function_id, &data, timeout)
                    .await?
                {
                    Invoked::Finished(Ok(output)) => Memo::Data(output),
                    Invoked::Finished(Err(error)) => Memo::Error(sdk_error("Error", &error)),
                    Invoked::TimedOut => Memo::Error(sdk_error(
                        "InngestInvokeTimeoutError",
                        "Timed out waiting for invoked function to complete",
                    )),
                }
            }
            _ => return Ok(()),
        };
        self.stack.push(op.id.clone());
        self.memo.insert(op.id, memo);
        Ok(())
    }
}

/// A `WaitForEvent` op as paysteps' wait: the event name, the match its `if` asks for,
/// and the timeout.
fn wait_for(op: &Op, name: &str, own_event: &str) -> Result<WaitFor, Interrupt> {
    let event = op
        .opts
        .get("event")
        .and_then(Value::as_str)
        .or(op.name.as_deref())
        .ok_or_else(|| Interrupt::fail(format!("wait '{name}' names no event")))?;
    let mut wait = WaitFor::event(event).timeout(timeout_of(op, name)?);
    if let Some(condition) = op.opts.get("if").and_then(Value::as_str) {
        // A field equality is matched through an index; anything else is evaluated
        // against each event of the name that arrives. The index reads a Stripe event's
        // fields from the Stripe event itself, where the app reads them under `data`: a
        // wait that involves one goes by its condition.
        let stripe = is_stripe(event) || is_stripe(own_event);
        wait = match path_equality(condition).filter(|_| !stripe) {
            Some((ours, theirs)) => wait.matching_paths(ours, theirs),
            None => {
                Expr::compile(condition, &["event", "async"])
                    .map_err(|e| Interrupt::fail(format!("wait '{name}': {e}")))?;
                wait.condition(condition)
            }
        };
    }
    Ok(wait)
}

/// Whether an event is a Stripe one (`stripe/<type>`).
pub(super) fn is_stripe(event_name: &str) -> bool {
    event_name.starts_with("stripe/")
}

fn timeout_of(op: &Op, name: &str) -> Result<Duration, Interrupt> {
    match op.opts.get("timeout").and_then(Value::as_str) {
        Some(text) => duration::parse(text)
            .map_err(|e| Interrupt::fail(format!("step '{name}': timeout {e}"))),
        None => Ok(DEFAULT_TIMEOUT),
    }
}

fn error_message(error: &Value) -> String {
    let message = error.get("message").and_then(Value::as_str);
    match (error.get("name").and_then(Value::as_str), message) {
        (Some(name), Some(message)) if name != "Error" => format!("{name}: {message}"),
        (_, Some(message)) => message.to_owned(),
        _ => error.to_string(),
    }
}
