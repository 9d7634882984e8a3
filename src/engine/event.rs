use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::{EventId, FunctionId, RunId};
use crate::state::RunStatus;

/// An event as a function sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    /// paysteps' own id for the event, `ev_…`.
    pub id: EventId,
    /// The id the sender gave it (`evt_…` for Stripe).
    pub external_id: Option<String>,
    /// `stripe/<type>` for Stripe deliveries.
    pub name: String,
    /// The payload; for Stripe events, the whole event envelope as delivered.
    pub data: Value,
    /// When the event happened, in milliseconds since the Unix epoch.
    pub ts: i64,
}

impl Event {
    /// The event as handlers see it, from its stored form and its parsed payload.
    pub(crate) fn from_new(event: &crate::store::NewEvent, data: Value) -> Event {
        Event {
            id: event.id.clone(),
            external_id: event.external_id.clone(),
            name: event.name.clone(),
            data,
            ts: event.ts,
        }
    }
}

/// An event handed to [`crate::engine::Engine::ingest`].
///
/// ```no_run
/// use std::time::Duration;
///
/// use paysteps::{Engine, EventInput};
/// use paysteps::IngestOutcome;
///
/// # async fn demo(engine: Engine) -> Result<(), paysteps::StoreError> {
/// let data = serde_json::json!({ "user_id": "u_1", "plan": "pro" });
/// let mut event = EventInput::new("app/user.upgraded", &data);
/// // Sent twice within a day (a client retry), it starts its functions once.
/// event.dedupe_key = Some("upgrade:u_1:pro".to_owned());
/// event.dedupe_window = Some(Duration::from_secs(24 * 3600));
/// match engine.ingest(event).await? {
///     IngestOutcome::Accepted { runs, .. } => println!("started {} runs", runs.len()),
///     IngestOutcome::Duplicate { event_id } => println!("already stored as {event_id}"),
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct EventInput {
    /// The name functions are triggered by, e.g. `app/user.signed_up`; Stripe events are
    /// `stripe/<type>`.
    pub name: String,
    /// The payload as JSON text, stored as received.
    pub data: String,
    /// The sender's own id for the event (`evt_…` for Stripe), kept for search.
    pub external_id: Option<String>,
    /// Dedupe key: a second event with the same key is a duplicate (for ever, or
    /// within `dedupe_window`).
    pub dedupe_key: Option<String>,
    /// How long `dedupe_key` holds; `None` dedupes for ever.
    pub dedupe_window: Option<std::time::Duration>,
    /// When the event happened, in milliseconds since the Unix epoch; `None` means when it
    /// is received.
    pub ts: Option<i64>,
    /// Where the event came from, as metrics label it: `api`, `stripe`, `cron` or `internal`.
    pub source: &'static str,
    /// The main object's id (`sub_…`, `pi_…`), for search.
    pub object_id: Option<String>,
    /// The customer the event concerns (`cus_…`), for search.
    pub customer: Option<String>,
}

impl EventInput {
    /// An event with a JSON payload and no dedupe key, as an application sends it.
    pub fn new(name: impl Into<String>, data: &Value) -> EventInput {
        EventInput {
            name: name.into(),
            data: data.to_string(),
            external_id: None,
            dedupe_key: None,
            dedupe_window: None,
            ts: None,
            source: "api",
            object_id: None,
            customer: None,
        }
    }
}

/// The event that starts a failure handler: what failed, and on which event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Failure {
    /// The id of the function whose run failed.
    pub function_id: FunctionId,
    /// paysteps' id of the run that failed, `run_…`.
    pub run_id: RunId,
    /// The error the run failed with, as text.
    pub error: String,
    /// The event that started the failed run.
    pub event: Event,
}

/// Name of the internal event that starts failure handlers.
pub const FUNCTION_FAILED: &str = "paysteps/function.failed";

/// Name of the event each cron tick stores; its data names the function and the tick.
pub const CRON_TICK: &str = "paysteps/cron.tick";

/// Name of the event that starts a run through [`crate::engine::Step::invoke`]; its data
/// is what the caller passed.
pub const FUNCTION_INVOKED: &str = "paysteps/function.invoked";

/// Name of the event stored when an invoked run ends; its data is a [`Finished`].
pub const FUNCTION_FINISHED: &str = "paysteps/function.finished";

/// How an invoked run ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finished {
    /// paysteps' id of the invoked run, `run_…`.
    pub run_id: RunId,
    /// The id of the invoked function.
    pub function_id: FunctionId,
    /// `completed` or `failed`, in lowercase.
    pub status: RunStatus,
    /// The run's output when it completed.
    pub output: Option<Value>,
    /// The run's error, as text, when it failed.
    pub error: Option<String>,
}

impl EventInput {
    /// The stored form of this event, received at `now`.
    pub(crate) fn into_new_event(self, now: i64) -> crate::store::NewEvent {
        crate::store::NewEvent {
            id: EventId::new(),
            dedupe_key: self.dedupe_key,
            dedupe_for_ms: self.dedupe_window.map(super::clock::duration_ms),
            external_id: self.external_id,
            name: self.name,
            source: self.source.to_owned(),
            data: self.data,
            ts: self.ts.unwrap_or(now),
            received_at: now,
            object_id: self.object_id,
            customer: self.customer,
        }
    }
}
