//! Step tools that reach beyond the run: waiting for an event, sending events, and
//! invoking another function.

use std::time::Duration;

use serde_json::Value;

use super::super::clock::duration_ms;
use super::super::error::StepError;
use super::super::event::{Event, EventInput, FUNCTION_FINISHED, FUNCTION_INVOKED, Finished};
use super::super::intake::{self, Intake, PlannedRun};
use super::super::{new_id, path};
use super::{Halt, Interrupt, Step};
use crate::ids::EventId;
use crate::state::{ListenerKind, RunStatus, StepKind, StepStatus};
use crate::store::{IngestOutcome, NewListener, StepRow, StepUpdate, Write};

/// What [`Step::wait_for_event`] waits for: an event name, optionally a field that must
/// match the run's own event, and how long to wait.
///
/// ```no_run
/// use std::time::Duration;
///
/// use paysteps::{Function, Trigger, WaitFor};
///
/// let f = Function::new("onboarding", Trigger::event("app/user.signed_up"), |ctx| async move {
///     // The profile event of this user, not any user's.
///     let wait = WaitFor::event("app/profile.completed")
///         .matching("data.user_id")
///         .timeout(Duration::from_secs(3 * 24 * 3600));
///     Ok(match ctx.step.wait_for_event("wait for the profile", wait).await? {
///         Some(event) => format!("profile completed at {} ms", event.ts),
///         None => "no profile after three days".to_owned(),
///     })
/// });
/// ```
#[derive(Debug, Clone)]
pub struct WaitFor {
    event: String,
    /// The path read in the run's own event, when a match is asked for.
    own: Option<String>,
    /// The path read in the awaited event.
    matching: Option<String>,
    /// A CEL condition over `event` (the run's own event) and `async` (the awaited one).
    condition: Option<String>,
    timeout: Duration,
}

impl WaitFor {
    /// The next event named `name`, for at most a day unless [`WaitFor::timeout`] says.
    pub fn event(name: impl Into<String>) -> WaitFor {
        WaitFor {
            event: name.into(),
            own: None,
            matching: None,
            condition: None,
            timeout: Duration::from_secs(24 * 60 * 60),
        }
    }

    /// Only an event whose value at `path` (e.g. `data.object.customer`, read in both
    /// events; see [`crate::engine::path`]) equals the run's event's value there. When
    /// the run's event has no value there, no event matches.
    pub fn matching(mut self, path: impl Into<String>) -> WaitFor {
        let path = path.into();
        self.own = Some(path.clone());
        self.matching = Some(path);
        self
    }

    /// Only an event whose value at `theirs` equals the run's event's value at `ours`,
    /// for events of different shapes: a Stripe invoice's `data.object.id` against an
    /// application event's `data.invoice`, say.
    pub fn matching_paths(mut self, ours: impl Into<String>, theirs: impl Into<String>) -> WaitFor {
        self.own = Some(ours.into());
        self.matching = Some(theirs.into());
        self
    }

    /// Only an event for which `condition`, a CEL expression over `event` (the run's own
    /// event) and `async` (the candidate), holds; checked by [`crate::engine::expr`].
    pub(crate) fn condition(mut self, condition: impl Into<String>) -> WaitFor {
        self.condition = Some(condition.into());
        self
    }

    /// How long to wait before giving up with `None`.
    pub fn timeout(mut self, timeout: Duration) -> WaitFor {
        self.timeout = timeout;
        self
    }
}

/// How an invocation ended.
#[derive(Debug)]
pub(crate) enum Invoked {
    /// The invoked run ended: its output, or its error.
    Finished(Result<Value, String>),
    /// It had not ended by the timeout.
    TimedOut,
}

/// Where a waiting step stands when the run is executed again.
enum WaitState {
    Done(Option<String>),
    Waiting { row: Box<StepRow>, wake_at: i64 },
    New,
}

impl Step {
    /// Parks the run until a matching event arrives, and returns it; returns `None` once
    /// the timeout passes first. Only events stored after the wait began can match. The
    /// worker is freed meanwhile.
    pub async fn wait_for_event(
        &self,
        name: &str,
        wait: WaitFor,
    ) -> Result<Option<Event>, Interrupt> {
        let key = self.next_key(name);
        self.wait_keyed(&key, name, wait).await
    }

    /// [`Step::wait_for_event`] for a wait an app asked for under its own `key`.
    pub(crate) async fn wait_keyed(
        &self,
        key: &str,
        name: &str,
        wait: WaitFor,
    ) -> Result<Option<Event>, Interrupt> {
        let key = key.to_owned();
        match self.wait_state(&key)? {
            WaitState::Done(output) => decode(name, output.as_deref()),
            WaitState::Waiting { row, wake_at } => self.keep_waiting(row, wake_at).await,
            WaitState::New => {
                let now = self.now();
                let until = now.saturating_add(duration_ms(wait.timeout));
                let own = &self.settings().event;
                let match_value = wait.own.as_deref().and_then(|p| {
                    path::lookup(&own.name, &own.data, p).map(|v| path::key_text(&v))
                });
                let listener = NewListener {
                    id: new_id("lis"),
                    run_id: self.settings().run_id.clone(),
                    kind: ListenerKind::Wait,
                    step_key: Some(key.clone()),
                    event_name: wait.event,
                    match_path: wait.matching,
                    match_value,
                    condition: wait.condition,
                    expires_at: Some(until),
                };
                Err(self.halt(Halt::Wait {
                    step: self.waiting_step(key, name, StepKind::Wait, now, until),
                    until,
                    listener: Some(Box::new(listener)),
                    intake: None,
                }))
            }
        }
    }

    /// Stores `events` and starts the functions they trigger, exactly once for this step
    /// however often the run is retried or replayed from here on; returns their ids
    /// (paysteps' ids, `ev_…`; a duplicate's is the id of the event already stored).
    ///
    /// ```no_run
    /// use paysteps::{EventInput, Function, Trigger};
    ///
    /// let f = Function::new("fan-out", Trigger::event("app/invoice.batch"), |ctx| async move {
    ///     let events = ["in_1", "in_2"]
    ///         .iter()
    ///         .map(|id| EventInput::new("app/invoice.send", &serde_json::json!({ "invoice": id })))
    ///         .collect();
    ///     ctx.step.send_event("send invoices", events).await
    /// });
    /// ```
    pub async fn send_event(
        &self,
        name: &str,
        events: Vec<EventInput>,
    ) -> Result<Vec<EventId>, Interrupt> {
        let registry = self.settings().registry.clone();
        let clock = self.settings().clock.clone();
        let ids = self
            .run_tx(name, move |tx| {
                Box::pin(async move {
                    let now = clock.now_ms();
                    let mut ids = Vec::with_capacity(events.len());
                    for input in events {
                        let intake = registry.plan(input.into_new_event(now));
                        let admitted = intake::admit(tx, &intake)
                            .await
                            .map_err(StepError::retriable)?;
                        ids.push(match admitted.outcome {
                            IngestOutcome::Accepted { event_id, .. }
                            | IngestOutcome::Duplicate { event_id } => event_id,
                        });
                    }
                    Ok(ids)
                })
            })
            .await?;
        self.settings().wake.notify_waiters();
        Ok(ids)
    }

    /// Starts a run of `function_id` with `data` as its event's data, parks this run
    /// until that run ends, and returns its output, or its error as `Err`. A run that
    /// has not ended within `timeout` fails this step.
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// use paysteps::{Function, Interrupt, Trigger};
    ///
    /// let f = Function::new("checkout", Trigger::event("app/cart.paid"), |ctx| async move {
    ///     let data = serde_json::json!({ "cart": ctx.event.data["cart"] });
    ///     match ctx.step.invoke("reserve stock", "reserve-stock", &data, Duration::from_secs(600)).await? {
    ///         Ok(output) => Ok(output),
    ///         Err(error) => Err(Interrupt::fail(format!("stock not reserved: {error}"))),
    ///     }
    /// });
    /// ```
    pub async fn invoke(
        &self,
        name: &str,
        // Text, as the function's author writes it: an id that is no registered
        // function's (an empty one included) fails the run, as an unknown one always has.
        function_id: &str,
        data: &Value,
        timeout: Duration,
    ) -> Result<Result<Value, String>, Interrupt> {
        let key = self.next_key(name);
        match self
            .invoke_keyed(&key, name, function_id, data, timeout)
            .await?
        {
            Invoked::Finished(result) => Ok(result),
            Invoked::TimedOut => {
                let row = self.memo(&key).cloned().ok_or_else(|| {
                    Interrupt::fail(format!("step '{name}' timed out with no record"))
                })?;
                let planned = self.planned_from(&row);
                Err(self.failed(
                    planned,
                    StepError::non_retriable(format!(
                        "'{function_id}' did not finish within {} ms",
                        timeout.as_millis()
                    )),
                ))
            }
        }
    }

    /// [`Step::invoke`] for an invocation an app asked for under its own `key`: how the
    /// invoked run ended, or that it did not within `timeout`.
    pub(crate) async fn invoke_keyed(
        &self,
        key: &str,
        name: &str,
        function_id: &str,
        data: &Value,
        timeout: Duration,
    ) -> Result<Invoked, Interrupt> {
        let key = key.to_owned();
        match self.wait_state(&key)? {
            WaitState::Done(output) => {
                let finished: Finished = decode::<Event>(name, output.as_deref())?
                    .and_then(|event| serde_json::from_value(event.data).ok())
                    .ok_or_else(|| Interrupt::fail(format!("step '{name}' has no result")))?;
                Ok(Invoked::Finished(match finished.status {
                    RunStatus::Completed => Ok(finished.output.unwrap_or(Value::Null)),
                    status => Err(finished.error.unwrap_or_else(|| status.to_string())),
                }))
            }
            WaitState::Waiting { wake_at, .. } if self.now() >= wake_at => Ok(Invoked::TimedOut),
            WaitState::Waiting { row, wake_at } => self
                .keep_waiting(row, wake_at)
                .await
                .map(|_| Invoked::Finished(Ok(Value::Null))),
            WaitState::New => {
                let Some(invoked) = self.settings().registry.get(function_id) else {
                    return Err(Interrupt::fail(format!(
                        "step '{name}' invokes '{function_id}', which is not registered"
                    )));
                };
                let now = self.now();
                let until = now.saturating_add(duration_ms(timeout));
                let child = PlannedRun::plain(&invoked.id);
                let listener = NewListener {
                    id: new_id("lis"),
                    run_id: self.settings().run_id.clone(),
                    kind: ListenerKind::Wait,
                    step_key: Some(key.clone()),
                    event_name: FUNCTION_FINISHED.to_owned(),
                    match_path: Some("data.run_id".to_owned()),
                    match_value: Some(child.run.id.to_string()),
                    condition: None,
                    expires_at: Some(until),
                };
                let mut input = EventInput::new(FUNCTION_INVOKED, data);
                input.source = "invoke";
                let intake = Intake {
                    event: input.into_new_event(now),
                    runs: vec![child],
                    lease: None,
                };
                Err(self.halt(Halt::Wait {
                    step: self.waiting_step(key, name, StepKind::Invoke, now, until),
                    until,
                    listener: Some(Box::new(listener)),
                    intake: Some(Box::new(intake)),
                }))
            }
        }
    }

    fn wait_state(&self, key: &str) -> Result<WaitState, Interrupt> {
        let row = self.memo(key).cloned();
        if let Some(row) = row.as_ref().filter(|r| r.status == StepStatus::Completed) {
            return Ok(WaitState::Done(row.output.clone()));
        }
        self.check_boundary()?;
        Ok(match row {
            Some(row) if row.status == StepStatus::Waiting => {
                let wake_at = row.wake_at.unwrap_or(i64::MIN);
                WaitState::Waiting {
                    row: Box::new(row),
                    wake_at,
                }
            }
            _ => WaitState::New,
        })
    }

    /// A wait the run resumed into before any event matched: parks again until its
    /// deadline, or, once that has passed, ends the wait with `None`.
    async fn keep_waiting(
        &self,
        row: Box<StepRow>,
        wake_at: i64,
    ) -> Result<Option<Event>, Interrupt> {
        let now = self.now();
        if now < wake_at {
            return Err(self.halt(Halt::Wait {
                step: self.waiting_step(
                    row.step_key.clone(),
                    &row.name,
                    if row.kind == StepKind::Invoke {
                        StepKind::Invoke
                    } else {
                        StepKind::Wait
                    },
                    row.started_at,
                    wake_at,
                ),
                until: wake_at,
                listener: None,
                intake: None,
            }));
        }
        self.settle_or_halt().await?;
        let settings = self.settings();
        let (run_id, owner, key) = (
            settings.run_id.clone(),
            settings.owner.clone(),
            row.step_key,
        );
        let timed_out = settings
            .store
            .write(Write::shared(), move |tx| {
                Box::pin(async move {
                    let ended = tx.time_out_waiting_step(&run_id, &owner, &key, now).await?;
                    if ended {
                        tx.delete_listeners(&run_id, Some(&key)).await?;
                    }
                    Ok(ended)
                })
            })
            .await;
        match timed_out {
            Ok(true) => Ok(None),
            // An event completed the step meanwhile: run again from the stored result.
            Ok(false) => Err(self.halt(Halt::Release)),
            Err(err) => Err(self.halt(Halt::Store(err.to_string()))),
        }
    }

    fn waiting_step(
        &self,
        key: String,
        name: &str,
        kind: StepKind,
        started_at: i64,
        until: i64,
    ) -> StepUpdate {
        let position = self
            .memo(&key)
            .map_or_else(|| self.take_position(), |row| row.position);
        StepUpdate {
            key,
            name: name.to_owned(),
            position,
            kind,
            status: StepStatus::Waiting,
            attempts: 1,
            output: None,
            error: None,
            wake_at: Some(until),
            started_at,
            ended_at: None,
        }
    }
}

fn decode<T: serde::de::DeserializeOwned>(
    name: &str,
    output: Option<&str>,
) -> Result<Option<T>, Interrupt> {
    serde_json::from_str(output.unwrap_or("null")).map_err(|e| {
        Interrupt::fail(format!(
            "stored output of step '{name}' no longer decodes: {e}"
        ))
    })
}
