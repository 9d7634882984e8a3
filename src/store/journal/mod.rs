//! The engine's journal: events, runs and steps, plus the small tables beside them
//! (cron state, settings). Statements are written once with `$n` placeholders for every
//! backend; the few that differ by dialect are built in `sqlite/` and `postgres/`.

mod events;
mod runs;
mod settings;
mod steps;

use serde::Serialize;

use crate::ids::{EventId, FunctionId, RunId};
use crate::state::{StepKind, StepStatus};

use super::rows::RunRow;

pub(super) use events::EventStatement;
pub(super) use steps::{STEP_COLUMNS, STEP_UPSERT};

/// An event about to be stored.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// paysteps' id for the event, `ev_…`.
    pub id: EventId,
    /// Dedupe key (`stripe:evt_…`); `None` stores the event unconditionally.
    pub dedupe_key: Option<String>,
    /// How long the key holds, in milliseconds; `None` holds it for ever.
    pub dedupe_for_ms: Option<i64>,
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
}

/// A run to create together with its event.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// paysteps' id for the run, `run_…`.
    pub id: RunId,
    /// The id of the function the run executes.
    pub function_id: FunctionId,
    /// The run this one replays, if it is a replay.
    pub replay_of: Option<RunId>,
}

/// A lease on an event's runs taken as they are stored, so that the engine storing
/// them can execute them at once without claiming them.
#[derive(Debug, Clone)]
pub struct NewLease {
    /// The engine that holds the lease (`wrk_…`).
    pub owner: String,
    /// When the lease lapses unless renewed, in milliseconds since the Unix epoch.
    pub expires_at: i64,
}

/// Whether storing `runs` with their event queues them for the workers to claim: there
/// are some, and no lease hands them to the engine storing them.
pub fn queues_runs(runs: &[NewRun], lease: Option<&NewLease>) -> bool {
    lease.is_none() && !runs.is_empty()
}

/// What storing an event did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum IngestOutcome {
    /// The event was stored and started these runs (ids `run_…`, possibly none).
    Accepted {
        /// paysteps' id for the stored event, `ev_…`.
        event_id: EventId,
        /// The runs it started, `run_…`.
        runs: Vec<RunId>,
    },
    /// An event with the same dedupe key was already stored; nothing was started.
    Duplicate {
        /// paysteps' id of the event already stored, `ev_…`.
        event_id: EventId,
    },
}

/// A run handed to a worker, with the lease it now holds.
pub type ClaimedRun = RunRow;

/// A step checkpoint: the row is replaced as a whole each time the step moves on.
#[derive(Debug, Clone)]
pub struct StepUpdate {
    /// The step's key: unique within the run, derived from its name.
    pub key: String,
    /// The step's name as the function gave it.
    pub name: String,
    /// Order of the step within the run, from 0.
    pub position: i64,
    /// What the step does.
    pub kind: StepKind,
    /// The step's state (`errored`: an attempt failed and a retry is due at `wake_at`).
    pub status: StepStatus,
    /// Attempts made so far.
    pub attempts: i64,
    /// The checkpointed output, as JSON text, once completed.
    pub output: Option<String>,
    /// The last attempt's error, as text.
    pub error: Option<String>,
    /// When a sleeping step, a retry or a wait's timeout is due, in milliseconds since the
    /// Unix epoch.
    pub wake_at: Option<i64>,
    /// When the step was first attempted, in milliseconds since the Unix epoch.
    pub started_at: i64,
    /// When it completed or failed for good, in milliseconds since the Unix epoch.
    pub ended_at: Option<i64>,
}

/// Which runs to list; every field narrows the selection. The fields are text as a
/// caller gave it: a value that names no run (a malformed id included) selects nothing.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Only runs with this status (lowercase, e.g. `failed`).
    pub status: Option<String>,
    /// Only runs of this function.
    pub function_id: Option<String>,
    /// Only runs started by this event (paysteps' id, `ev_…`).
    pub event_id: Option<String>,
    /// Only runs created at or after this time, in milliseconds since the Unix epoch.
    pub since: Option<i64>,
    /// Only runs created before this time, in milliseconds since the Unix epoch.
    pub until: Option<i64>,
    /// Most runs returned, newest first; 0 or less means 100.
    pub limit: i64,
}
