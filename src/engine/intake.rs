//! Storing an event with the runs it starts, inside a transaction: flow control decides
//! how each run begins, and runs listening for the event are resumed or cancelled.

use std::collections::HashMap;

use serde_json::Value;

use super::event::{Event, EventInput};
use super::expr::{self, Expr};
use super::flow::{Flow, IDEMPOTENCY_WINDOW, RunFlow, throttle_slot};
use super::registry::Registry;
use super::{Engine, clock::duration_ms, new_id, path};
use crate::ids::{EventId, FunctionId, RunId};
use crate::metrics::SourceLabels;
use crate::state::{ListenerKind, RunStatus};
use crate::store::{
    self, IngestOutcome, NewEvent, NewLease, NewListener, NewRun, Store, StoreTx, Write,
};

/// An event about to be stored and the runs it may start.
#[derive(Debug, Clone)]
pub(crate) struct Intake {
    pub event: NewEvent,
    pub runs: Vec<PlannedRun>,
    /// Stores the runs running under this lease, for this engine to execute at once;
    /// only for runs without flow control ([`Intake::can_lease`]).
    pub lease: Option<NewLease>,
}

/// What storing an intake did, and whether runs became due for the workers to claim
/// (queued runs, or waiting runs the event resumed).
pub(crate) struct Admitted {
    pub outcome: IngestOutcome,
    pub claimable: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct PlannedRun {
    pub run: NewRun,
    pub flow: RunFlow,
}

impl Intake {
    /// Whether the runs can be stored leased: there are some and none has flow control.
    pub fn can_lease(&self) -> bool {
        !self.runs.is_empty() && self.all_plain()
    }

    fn all_plain(&self) -> bool {
        self.runs.iter().all(|r| r.flow.is_plain())
    }

    /// The runs to insert as they are, when none has flow control to apply.
    fn plain_runs(&self) -> Option<Vec<NewRun>> {
        self.all_plain()
            .then(|| self.runs.iter().map(|r| r.run.clone()).collect())
    }
}

impl PlannedRun {
    pub fn plain(function_id: &FunctionId) -> PlannedRun {
        PlannedRun {
            run: NewRun {
                id: RunId::new(),
                function_id: function_id.clone(),
                replay_of: None,
            },
            flow: RunFlow::default(),
        }
    }
}

impl Registry {
    /// The runs `event` starts: one per function it triggers, with each one's flow keys.
    pub fn plan(&self, event: NewEvent) -> Intake {
        let candidates = self.listening_to(&event.name);
        let mut payload: Option<Option<Value>> = None;
        let mut seen: Option<Event> = None;
        let mut runs = Vec::with_capacity(candidates.len());
        for f in candidates {
            let plain_flow = f.flow == Flow::default();
            let value = if f.has_conditions() || !plain_flow {
                payload
                    .get_or_insert_with(|| serde_json::from_str(&event.data).ok())
                    .as_ref()
            } else {
                None
            };
            if f.has_conditions() {
                let Some(data) = value else { continue };
                let seen = seen.get_or_insert_with(|| Event {
                    id: event.id.clone(),
                    external_id: event.external_id.clone(),
                    name: event.name.clone(),
                    data: data.clone(),
                    ts: event.ts,
                });
                if !f.started_by(seen) {
                    continue;
                }
            }
            let mut planned = PlannedRun::plain(&f.id);
            if !plain_flow && let Some(value) = value {
                planned.flow = f.flow.for_event(&f.id, &event.name, value);
            }
            runs.push(planned);
        }
        Intake {
            event,
            runs,
            lease: None,
        }
    }
}

impl Engine {
    /// Stores `events` and the runs they start in one transaction, so with one commit:
    /// all of them or, when the database fails, none. Answers each event's outcome in
    /// order; an event whose dedupe key an earlier one of the batch took is a duplicate
    /// of it. The runs are queued for the workers, which are woken once it committed.
    ///
    /// # Errors
    ///
    /// A [`store::Error`] when the database fails; nothing of the batch is stored then.
    pub async fn ingest_batch(&self, events: Vec<EventInput>) -> store::Result<Vec<IngestOutcome>> {
        let inner = &self.inner;
        let now = inner.config.clock.now_ms();
        let sources: Vec<&'static str> = events.iter().map(|e| e.source).collect();
        let intakes: Vec<Intake> = events
            .into_iter()
            .map(|event| inner.registry.plan(event.into_new_event(now)))
            .collect();
        let admitted = inner
            .store
            .write(Write::isolated(), move |tx| {
                Box::pin(async move {
                    let mut admitted = Vec::with_capacity(intakes.len());
                    for intake in &intakes {
                        admitted.push(admit(tx, intake).await?);
                    }
                    Ok(admitted)
                })
            })
            .await?;
        let mut claimable = false;
        let outcomes = admitted
            .into_iter()
            .zip(sources)
            .map(|(admitted, source)| {
                let labels = SourceLabels {
                    source: source.to_owned(),
                };
                let counter = match &admitted.outcome {
                    IngestOutcome::Accepted { .. } => &inner.metrics.events_received,
                    IngestOutcome::Duplicate { .. } => &inner.metrics.events_duplicate,
                };
                counter.get_or_create(&labels).inc();
                claimable |= admitted.claimable;
                admitted.outcome
            })
            .collect();
        if claimable {
            inner.wake.notify_waiters();
        }
        Ok(outcomes)
    }
}

/// Stores the intake's event and its runs in one statement committed alone, where
/// [`Store::store_event_alone`] can; `None` leaves the intake to [`admit`].
pub(crate) async fn admit_alone(store: &Store, intake: &Intake) -> store::Result<Option<Admitted>> {
    let Some(runs) = intake.plain_runs() else {
        return Ok(None);
    };
    let lease = intake.lease.as_ref();
    let stored = store.store_event_alone(&intake.event, &runs, lease).await?;
    Ok(stored.map(|outcome| Admitted {
        outcome,
        claimable: store::queues_runs(&runs, lease),
    }))
}

/// Stores the intake's event and runs, unless the event is a duplicate, then hands the
/// event to the runs listening for it.
pub(crate) async fn admit(tx: &mut StoreTx, intake: &Intake) -> store::Result<Admitted> {
    let event = &intake.event;
    let now = event.received_at;
    let mut claimable = false;
    let (outcome, listened) = if let Some(runs) = intake.plain_runs() {
        let lease = intake.lease.as_ref();
        claimable = store::queues_runs(&runs, lease);
        tx.store_event(event, &runs, lease).await?
    } else {
        let (outcome, listened) = tx.store_event(event, &[], None).await?;
        if let IngestOutcome::Duplicate { .. } = outcome {
            return Ok(Admitted { outcome, claimable });
        }
        let mut started = Vec::new();
        for planned in &intake.runs {
            if start_run(tx, &event.id, planned, now).await? {
                started.push(planned.run.id.clone());
            }
        }
        if !started.is_empty() {
            tx.signal_new_runs().await?;
            claimable = true;
        }
        let outcome = IngestOutcome::Accepted {
            event_id: event.id.clone(),
            runs: started,
        };
        (outcome, listened)
    };
    if listened && let IngestOutcome::Accepted { .. } = outcome {
        claimable |= notify_listeners(tx, event).await?;
    }
    Ok(Admitted { outcome, claimable })
}

/// Inserts one run under its flow control; false when its idempotency key was taken.
async fn start_run(
    tx: &mut StoreTx,
    event_id: &EventId,
    planned: &PlannedRun,
    now: i64,
) -> store::Result<bool> {
    let flow = &planned.flow;
    if let Some(key) = &flow.idempotency_key {
        let window = duration_ms(IDEMPOTENCY_WINDOW);
        if tx
            .claim_event_key(key, event_id, now, window)
            .await?
            .is_some()
        {
            return Ok(false);
        }
    }
    let mut run_at = now;
    if let Some((key, spacing, burst)) = &flow.throttle {
        let next_free = tx.throttle_next_free(key).await?;
        let (start, after) = throttle_slot(next_free, now, *spacing, *burst);
        tx.set_throttle_next_free(key, after).await?;
        run_at = start;
    }
    let mut status = RunStatus::Queued;
    if let Some((key, limit)) = &flow.concurrency
        && !tx.take_slot(key, *limit).await?
    {
        status = RunStatus::Pending;
    }
    let concurrency_key = flow.concurrency.as_ref().map(|(key, _)| key.as_str());
    tx.insert_run_as(event_id, &planned.run, status, run_at, concurrency_key, now)
        .await?;
    // A cancellation matches a field of the run's event, or holds a condition.
    let by_field = flow
        .cancel_on
        .iter()
        .map(|(name, path, value)| (name, Some(path.clone()), Some(value.clone()), None));
    let by_condition = (flow.cancel_when.iter())
        .map(|(name, condition)| (name, None, None, Some(condition.clone())));
    for (event_name, match_path, match_value, condition) in by_field.chain(by_condition) {
        tx.insert_listener(&NewListener {
            id: new_id("lis"),
            run_id: planned.run.id.clone(),
            kind: ListenerKind::Cancel,
            step_key: None,
            event_name: event_name.clone(),
            match_path,
            match_value,
            condition,
            expires_at: None,
        })
        .await?;
    }
    Ok(true)
}

/// Whether a listener's condition holds for the arriving event (`async`), read beside
/// the run's own (`event`). A condition that cannot be evaluated does not hold.
fn condition_holds(
    condition: &Expr,
    own_name: Option<&str>,
    own_data: Option<&str>,
    arriving: &Value,
) -> bool {
    let own_data = own_data
        .and_then(|d| serde_json::from_str::<Value>(d).ok())
        .unwrap_or(Value::Null);
    let own = expr::view(own_name.unwrap_or_default(), &own_data);
    condition.matches(&[("event", &own), ("async", arriving)])
}

/// Completes the steps waiting for this event and cancels the runs it cancels; true
/// when that may have made runs due.
async fn notify_listeners(tx: &mut StoreTx, event: &NewEvent) -> store::Result<bool> {
    let listeners = tx.listeners_for(&event.name).await?;
    let mut due = false;
    if listeners.is_empty() {
        return Ok(due);
    }
    let payload: Value = serde_json::from_str(&event.data)?;
    let now = event.received_at;
    let mut as_step_output = None;
    let mut arriving = None;
    // Runs waiting on the same condition share its compiled form; one that does not
    // compile matches nothing.
    let mut compiled: HashMap<&str, Option<Expr>> = HashMap::new();
    for listener in &listeners {
        let matched = match (&listener.match_path, &listener.match_value) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(p), Some(expected)) => path::lookup(&event.name, &payload, p)
                .is_some_and(|v| path::key_text(&v) == *expected),
        };
        if !matched {
            continue;
        }
        if let Some(condition) = &listener.condition {
            let compiled = compiled
                .entry(condition.as_str())
                .or_insert_with(|| Expr::compile(condition, &["event", "async"]).ok());
            let Some(condition) = compiled else { continue };
            let arriving = arriving.get_or_insert_with(|| expr::view(&event.name, &payload));
            let (own_name, own_data) = (listener.own_name.as_deref(), listener.own_data.as_deref());
            if !condition_holds(condition, own_name, own_data, arriving) {
                continue;
            }
        }
        match (listener.kind, &listener.step_key) {
            (ListenerKind::Wait, Some(step_key)) => {
                let output = match &as_step_output {
                    Some(output) => output,
                    None => as_step_output.insert(serde_json::to_string(&Some(Event::from_new(
                        event,
                        payload.clone(),
                    )))?),
                };
                if tx
                    .resume_waiting_step(&listener.run_id, step_key, output, now)
                    .await?
                {
                    tx.signal_new_runs().await?;
                    due = true;
                }
            }
            (ListenerKind::Cancel, _) => {
                let reason = format!("cancelled by event {} ({})", event.name, event.id);
                tx.cancel_run(&listener.run_id, &reason, now).await?;
                // A cancelled run may free a concurrency slot for a pending one.
                due = true;
            }
            (ListenerKind::Wait, None) => {}
        }
    }
    Ok(due)
}
