use serde::Serialize;

use crate::ids::{EventId, FunctionId, RunId};
use crate::state::{ListenerKind, RunStatus, StepKind, StepStatus};

/// Reads each of these types from a text column, through its `FromStr`: text that does
/// not parse is a decode error, not a panic.
macro_rules! text_column {
    ($($ty:ty),* $(,)?) => {$(
        impl<DB: sqlx::Database> sqlx::Type<DB> for $ty
        where
            String: sqlx::Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <String as sqlx::Type<DB>>::type_info()
            }

            fn compatible(ty: &DB::TypeInfo) -> bool {
                <String as sqlx::Type<DB>>::compatible(ty)
            }
        }

        impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for $ty
        where
            String: sqlx::Decode<'r, DB>,
        {
            fn decode(
                value: <DB as sqlx::Database>::ValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                Ok(<String as sqlx::Decode<'r, DB>>::decode(value)?.parse::<$ty>()?)
            }
        }
    )*};
}

text_column!(
    RunId,
    EventId,
    FunctionId,
    RunStatus,
    StepStatus,
    StepKind,
    ListenerKind,
);

/// An event as stored. `data` is the JSON payload as received.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct EventRow {
    /// paysteps' id for the event, `ev_…`.
    pub id: EventId,
    /// The sender's own id for the event (`evt_…` for Stripe).
    pub external_id: Option<String>,
    /// The event name, e.g. `stripe/invoice.paid`.
    pub name: String,
    /// Where it came from: `api`, `stripe`, `cron` or `internal`.
    pub source: String,
    /// The payload as JSON text.
    pub data: String,
    /// When the event happened, in milliseconds since the Unix epoch.
    pub ts: i64,
    /// When paysteps received it, in milliseconds since the Unix epoch.
    pub received_at: i64,
    /// The main object's id (`sub_…`, `pi_…`), for search.
    pub object_id: Option<String>,
    /// The customer it concerns (`cus_…`), for search.
    pub customer: Option<String>,
    /// Deliveries of the same event refused as duplicates.
    pub duplicates: i64,
}

/// A run as stored.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct RunRow {
    /// paysteps' id for the run, `run_…`.
    pub id: RunId,
    /// The id of the function the run executes.
    pub function_id: FunctionId,
    /// paysteps' id of the event that started it, `ev_…`.
    pub event_id: EventId,
    /// Its status, stored and serialized in lowercase.
    pub status: RunStatus,
    /// When a queued or sleeping run is due, in milliseconds since the Unix epoch.
    pub run_at: i64,
    /// Executions so far, counting the current one.
    pub attempt: i64,
    /// The engine holding its lease while it runs (`wrk_…`).
    pub lease_owner: Option<String>,
    /// When that lease lapses unless renewed, in milliseconds since the Unix epoch.
    pub lease_expires_at: Option<i64>,
    /// The function's output as JSON text, once completed.
    pub output: Option<String>,
    /// The error it failed (or was cancelled) with.
    pub error: Option<String>,
    /// The run this one replays, if it is a replay.
    pub replay_of: Option<RunId>,
    /// When it was created, in milliseconds since the Unix epoch.
    pub created_at: i64,
    /// When a worker first claimed it, in milliseconds since the Unix epoch.
    pub started_at: Option<i64>,
    /// When it ended, in milliseconds since the Unix epoch.
    pub ended_at: Option<i64>,
    /// When the row last changed, in milliseconds since the Unix epoch.
    pub updated_at: i64,
}

/// A step as stored: its latest checkpoint.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct StepRow {
    /// paysteps' id of the step's run, `run_…`.
    pub run_id: RunId,
    /// The step's key: unique within the run, derived from its name.
    pub step_key: String,
    /// The step's name as the function gave it.
    pub name: String,
    /// Order of the step within the run, from 0.
    pub position: i64,
    /// What the step does: `run`, `sleep`, `wait` or `invoke`.
    pub kind: StepKind,
    /// The step's state: `completed`, `errored` (an attempt failed; a retry is due at
    /// `wake_at`), `failed`, `sleeping` or `waiting`.
    pub status: StepStatus,
    /// Attempts made so far.
    pub attempts: i64,
    /// The checkpointed output, as JSON text, once completed.
    pub output: Option<String>,
    /// The last attempt's error, as text.
    pub error: Option<String>,
    /// When a sleep, a retry or a wait's timeout is due, in milliseconds since the Unix
    /// epoch.
    pub wake_at: Option<i64>,
    /// When the step was first attempted, in milliseconds since the Unix epoch.
    pub started_at: i64,
    /// When it completed or failed for good, in milliseconds since the Unix epoch.
    pub ended_at: Option<i64>,
}
