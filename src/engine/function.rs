use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Serialize;

use super::cron::{Schedule, ScheduleError};
use super::event::Event;
use super::flow::{CancelOn, Concurrency, Flow, Throttle};
use super::step::{Ctx, Interrupt};
use crate::ids::FunctionId;

pub(crate) type Handler =
    Arc<dyn Fn(Ctx) -> BoxFuture<'static, Result<serde_json::Value, Interrupt>> + Send + Sync>;

/// Whether an event a trigger names starts the function after all (an SDK trigger's
/// `expression`).
pub(crate) type Condition = Arc<dyn Fn(&Event) -> bool + Send + Sync>;

/// One of the ways a function starts: a trigger, and for an event trigger, a condition
/// the event must meet.
#[derive(Clone)]
pub(crate) struct Starter {
    pub trigger: Trigger,
    pub condition: Option<Condition>,
    /// The condition as written, to show.
    pub condition_text: Option<String>,
}

impl Starter {
    pub fn new(trigger: Trigger) -> Starter {
        Starter {
            trigger,
            condition: None,
            condition_text: None,
        }
    }
}

/// What starts a function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// Every event with this name (e.g. `stripe/invoice.paid`).
    Event(String),
    /// Each tick of a cron schedule, once across every process.
    Cron(Box<Schedule>),
    /// Only started by the engine itself (failure handlers).
    Internal,
}

impl Trigger {
    /// Starts the function on every event named `name`, e.g. `app/user.signed_up` or
    /// `stripe/invoice.paid`.
    pub fn event(name: impl Into<String>) -> Trigger {
        Trigger::Event(name.into())
    }

    /// A 5-field cron expression read in UTC, e.g. `0 2 * * *` for 02:00 daily.
    pub fn cron(expr: &str) -> Result<Trigger, ScheduleError> {
        Schedule::parse(expr, None).map(|s| Trigger::Cron(Box::new(s)))
    }

    /// A 5-field cron expression read in an IANA time zone such as `Europe/Paris`.
    ///
    /// ```no_run
    /// use paysteps::{Function, Trigger};
    ///
    /// # fn main() -> Result<(), paysteps::ScheduleError> {
    /// // 02:00 Paris time every day, summer and winter.
    /// let nightly = Function::new("nightly-report", Trigger::cron_in("0 2 * * *", "Europe/Paris")?, |ctx| async move {
    ///     ctx.step.run("build report", || async { Ok(0_u32) }).await
    /// });
    /// # Ok(())
    /// # }
    /// ```
    pub fn cron_in(expr: &str, time_zone: &str) -> Result<Trigger, ScheduleError> {
        Schedule::parse(expr, Some(time_zone)).map(|s| Trigger::Cron(Box::new(s)))
    }

    /// Whether an event named `event_name` starts the function (never true for cron and
    /// internal triggers).
    pub fn matches(&self, event_name: &str) -> bool {
        matches!(self, Trigger::Event(name) if name == event_name)
    }
}

/// A durable function: plain Rust registered on the engine.
///
/// ```no_run
/// use paysteps::{Function, Trigger};
///
/// let f = Function::new("greet", Trigger::event("app/user.signed_up"), |ctx| async move {
///     let name: String = ctx.step.run("load", || async { Ok("Ada".to_string()) }).await?;
///     Ok(format!("hello {name}"))
/// })
/// .retries(5);
/// ```
#[derive(Clone)]
pub struct Function {
    pub(crate) id: String,
    /// What starts the function: one trigger for a Rust function, any number (none for
    /// an SDK function only ever invoked) for an SDK function.
    pub(crate) starters: Vec<Starter>,
    pub(crate) retries: u32,
    pub(crate) step_timeout: Option<Duration>,
    pub(crate) handler: Handler,
    pub(crate) on_failure: Option<Handler>,
    pub(crate) flow: Flow,
}

/// Retries per step when a function sets none: 3 retries, so 4 attempts.
pub const DEFAULT_RETRIES: u32 = 3;

impl Function {
    /// A function with id `id`, started by `trigger`, running `handler` for each run.
    ///
    /// The id must be unique across the engine; it names the function in the API, the
    /// dashboard and the metrics. The handler's output must serialize to JSON: it is stored
    /// as the run's output. Each step is retried [`DEFAULT_RETRIES`] times unless
    /// [`Function::retries`] says otherwise.
    pub fn new<F, Fut, T>(id: impl Into<String>, trigger: Trigger, handler: F) -> Function
    where
        F: Fn(Ctx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, Interrupt>> + Send + 'static,
        T: Serialize,
    {
        Function {
            id: id.into(),
            starters: vec![Starter::new(trigger)],
            retries: DEFAULT_RETRIES,
            step_timeout: None,
            handler: boxed(handler),
            on_failure: None,
            flow: Flow::default(),
        }
    }

    /// Retries per step after the first attempt.
    pub fn retries(mut self, retries: u32) -> Function {
        self.retries = retries;
        self
    }

    /// Fails a step attempt that runs longer than this (the attempt is retried).
    pub fn step_timeout(mut self, timeout: Duration) -> Function {
        self.step_timeout = Some(timeout);
        self
    }

    /// Runs once, as a run of its own, when a run of this function fails for good.
    /// Its event is `paysteps/function.failed`; read it with [`Ctx::failure`].
    ///
    /// ```no_run
    /// use paysteps::{Function, Trigger};
    ///
    /// let f = Function::new("charge", Trigger::event("app/order.created"), |ctx| async move {
    ///     ctx.step.run("charge the card", || async { Ok(4200_i64) }).await
    /// })
    /// .on_failure(|ctx| async move {
    ///     let Some(failure) = ctx.failure() else { return Ok(()) };
    ///     ctx.step
    ///         .run("alert", move || async move {
    ///             eprintln!("run {} failed: {}", failure.run_id, failure.error);
    ///             Ok(())
    ///         })
    ///         .await
    /// });
    /// ```
    pub fn on_failure<F, Fut, T>(mut self, handler: F) -> Function
    where
        F: Fn(Ctx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, Interrupt>> + Send + 'static,
        T: Serialize,
    {
        self.on_failure = Some(boxed(handler));
        self
    }

    /// At most `limit` runs of this function in progress at once. A run holds its slot
    /// from start to end, sleeps and waits included; runs over the limit wait their turn
    /// in arrival order.
    pub fn concurrency(mut self, limit: u32) -> Function {
        self.flow.concurrency = Some(Concurrency { limit, key: None });
        self
    }

    /// At most `limit` runs in progress per value of `key`, a path into the event such as
    /// `data.object.customer` (see [`crate::engine::path`]). A limit of 1 runs one
    /// customer's events one after another, in the order they arrived.
    pub fn concurrency_per(mut self, key: &str, limit: u32) -> Function {
        self.flow.concurrency = Some(Concurrency {
            limit,
            key: Some(key.to_owned()),
        });
        self
    }

    /// At most `limit` runs started per `period`, spaced evenly; runs over the limit
    /// start later, none is dropped.
    pub fn throttle(mut self, limit: u32, period: Duration) -> Function {
        self.flow.throttle = Some(Throttle {
            limit,
            period,
            burst: 1,
            key: None,
        });
        self
    }

    /// [`Function::throttle`] per value of `key`, a path into the event.
    pub fn throttle_per(mut self, key: &str, limit: u32, period: Duration) -> Function {
        self.flow.throttle = Some(Throttle {
            limit,
            period,
            burst: 1,
            key: Some(key.to_owned()),
        });
        self
    }

    /// Lets the first `burst` runs of a throttle start back to back.
    pub fn throttle_burst(mut self, burst: u32) -> Function {
        if let Some(throttle) = &mut self.flow.throttle {
            throttle.burst = burst.max(1);
        }
        self
    }

    /// Starts no run for an event whose value at `key` (a path into the event) was
    /// already seen by this function in the last 24 hours.
    pub fn idempotency(mut self, key: &str) -> Function {
        self.flow.idempotency = Some(key.to_owned());
        self
    }

    /// Cancels a run when an event named `event` arrives whose value at `matching` (a
    /// path read in both events) equals the run's event's. The run stops at its next
    /// step boundary with status `cancelled`.
    pub fn cancel_on(mut self, event: &str, matching: &str) -> Function {
        self.flow.cancel_on.push(CancelOn {
            event: event.to_owned(),
            matching: matching.to_owned(),
        });
        self
    }

    /// The function's id as registered.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// What starts the function: its first trigger ([`Trigger::Internal`] when it has
    /// none).
    pub fn trigger(&self) -> &Trigger {
        self.starters
            .first()
            .map_or(&Trigger::Internal, |s| &s.trigger)
    }

    /// A function whose code runs elsewhere (an SDK app's), started by `starters`.
    pub(crate) fn remote(
        id: String,
        starters: Vec<Starter>,
        retries: u32,
        flow: Flow,
        handler: Handler,
    ) -> Function {
        Function {
            id,
            starters,
            retries,
            step_timeout: None,
            handler,
            on_failure: None,
            flow,
        }
    }

    /// The id under which this function's failure handler runs.
    pub fn failure_handler_id(&self) -> Option<String> {
        self.on_failure
            .as_ref()
            .map(|_| format!("{}.on_failure", self.id))
    }
}

/// The id under which the failure handler of `function_id` runs.
pub(crate) fn failure_id(function_id: &FunctionId) -> FunctionId {
    FunctionId::try_from(format!("{function_id}.on_failure"))
        .expect("a non-empty id with a suffix is not empty")
}

fn boxed<F, Fut, T>(handler: F) -> Handler
where
    F: Fn(Ctx) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, Interrupt>> + Send + 'static,
    T: Serialize,
{
    Arc::new(move |ctx| {
        let fut = handler(ctx);
        Box::pin(async move {
            let value = fut.await?;
            serde_json::to_value(value)
                .map_err(|e| Interrupt::fail(format!("function output is not JSON: {e}")))
        })
    })
}
