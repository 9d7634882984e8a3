//! The engine's statements over events, runs and steps, written once with `$n`
//! placeholders for every backend.

use serde::Serialize;

use super::batch::{EventWrite, Finish, Made, StepCheckpoint};
use super::{Arg, Backend, Dialect, Durability, Error, Result, Store, StoreTx, TxFn};
use crate::args;
use crate::state::RunStatus;
use crate::store::rows::{EventRow, RunRow, StepRow};

/// An event about to be stored.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// paysteps' id for the event, `ev_…`.
    pub id: String,
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
    pub id: String,
    /// The id of the function the run executes.
    pub function_id: String,
    /// The run this one replays, if it is a replay.
    pub replay_of: Option<String>,
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
        event_id: String,
        /// The runs it started, `run_…`.
        runs: Vec<String>,
    },
    /// An event with the same dedupe key was already stored; nothing was started.
    Duplicate {
        /// paysteps' id of the event already stored, `ev_…`.
        event_id: String,
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
    /// What the step does: `run`, `sleep`, `wait` or `invoke`.
    pub kind: &'static str,
    /// The step's state: `completed`, `errored` (an attempt failed; a retry is due at
    /// `wake_at`), `failed`, `sleeping` or `waiting`.
    pub status: &'static str,
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

/// Which runs to list; every field narrows the selection.
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

const RUN_COLUMNS: &str = "id, function_id, event_id, status, run_at, attempt, lease_owner, \
     lease_expires_at, output, error, replay_of, created_at, started_at, ended_at, updated_at";
pub(super) const STEP_COLUMNS: &str = "run_id, step_key, name, position, kind, status, attempts, output, \
     error, wake_at, started_at, ended_at";
const STEP_VALUES: &str = "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12";
pub(super) const STEP_UPSERT: &str = "ON CONFLICT (run_id, step_key) DO UPDATE SET status = excluded.status, \
     attempts = excluded.attempts, output = excluded.output, error = excluded.error, \
     wake_at = excluded.wake_at, ended_at = excluded.ended_at";
const EVENT_COLUMNS: &str =
    "id, external_id, name, source, data, ts, received_at, object_id, customer, duplicates";

impl StoreTx {
    /// Stores an event and its runs, unless an event with the same dedupe key exists,
    /// in which case only its duplicate count moves and no run is created.
    pub async fn insert_event(
        &mut self,
        event: &NewEvent,
        runs: &[NewRun],
    ) -> Result<IngestOutcome> {
        Ok(self.store_event(event, runs, None).await?.0)
    }

    /// [`StoreTx::insert_event`], and whether any listener waits for events of this
    /// name (false only when that is known for sure), learned in the same round trip.
    /// With a `lease`, the runs are stored running under it, on their first attempt.
    pub(crate) async fn store_event(
        &mut self,
        event: &NewEvent,
        runs: &[NewRun],
        lease: Option<&NewLease>,
    ) -> Result<(IngestOutcome, bool)> {
        let (sql, args) = event_statement(self.dialect(), event, runs, lease, false);
        let claim = match self.dialect() {
            Dialect::Sqlite => {
                let (holder, listened): (String, bool) = self.fetch_one(&sql, args).await?;
                if holder == event.id {
                    Claim::Won { listened }
                } else {
                    Claim::Lost { holder }
                }
            }
            Dialect::Postgres => {
                let (stored, listened): (Option<String>, bool) = self.fetch_one(&sql, args).await?;
                match stored {
                    Some(_) => Claim::Won { listened },
                    None => Claim::Lost {
                        holder: self.count_duplicate(event).await?,
                    },
                }
            }
        };
        match claim {
            Claim::Lost { holder } => Ok((IngestOutcome::Duplicate { event_id: holder }, false)),
            Claim::Won { listened } => {
                if queues_runs(runs, lease) {
                    self.signal_new_runs().await?;
                }
                Ok((accepted(event, runs), listened))
            }
        }
    }

    /// On PostgreSQL, after the event's statement stored nothing: counts a duplicate on
    /// the event that holds the key and answers its id. The statement's snapshot may
    /// predate the holder's commit, so this takes statements of its own.
    async fn count_duplicate(&mut self, event: &NewEvent) -> Result<String> {
        let holder = match key_window(event) {
            Some((key, _)) => {
                let (holder,): (String,) = self
                    .fetch_one("SELECT event_id FROM event_keys WHERE key = $1", args![key])
                    .await?;
                self.execute(
                    "UPDATE events SET duplicates = duplicates + 1 WHERE id = $1",
                    args![&holder],
                )
                .await?;
                holder
            }
            None => {
                let (holder,): (String,) = self
                    .fetch_one(
                        "UPDATE events SET duplicates = duplicates + 1 WHERE dedupe_key = $1 \
                         RETURNING id",
                        args![event.dedupe_key.clone()],
                    )
                    .await?;
                holder
            }
        };
        Ok(holder)
    }

    /// Takes `key` for `event_id` until `now + window`, unless another event holds it
    /// still; then returns that event's id.
    pub(crate) async fn claim_event_key(
        &mut self,
        key: &str,
        event_id: &str,
        now: i64,
        window: i64,
    ) -> Result<Option<String>> {
        let taken: Option<(String,)> = self
            .fetch_optional(
                "INSERT INTO event_keys (key, event_id, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (key) DO UPDATE SET event_id = excluded.event_id, \
                 expires_at = excluded.expires_at WHERE event_keys.expires_at <= $4 \
                 RETURNING event_id",
                args![key, event_id, now.saturating_add(window), now],
            )
            .await?;
        if taken.is_some() {
            return Ok(None);
        }
        let (holder,): (String,) = self
            .fetch_one("SELECT event_id FROM event_keys WHERE key = $1", args![key])
            .await?;
        Ok(Some(holder))
    }

    /// Creates a run of `event_id`, queued and due at `now` (milliseconds since the Unix
    /// epoch).
    pub async fn insert_run(&mut self, event_id: &str, run: &NewRun, now: i64) -> Result<()> {
        self.insert_run_as(event_id, run, RunStatus::Queued, now, None, now)
            .await
    }

    /// Confirms `owner` still holds the run's lease; false once the run was taken over,
    /// cancelled or finished elsewhere.
    pub async fn holds_lease(&mut self, run_id: &str, owner: &str, now: i64) -> Result<bool> {
        let changed = self
            .execute(
                "UPDATE runs SET updated_at = $3 WHERE id = $1 AND lease_owner = $2 \
                 AND status = 'running'",
                args![run_id, owner, now],
            )
            .await?;
        Ok(changed == 1)
    }

    /// Writes a step checkpoint, replacing the step's previous row.
    pub async fn save_step(&mut self, run_id: &str, step: &StepUpdate) -> Result<()> {
        self.execute(
            &format!("INSERT INTO steps ({STEP_COLUMNS}) VALUES ({STEP_VALUES}) {STEP_UPSERT}"),
            step_args(run_id, step),
        )
        .await?;
        Ok(())
    }

    /// Saves a step checkpoint provided `owner` still holds the run's lease, in one
    /// statement; false (and nothing written) once the run was taken over, cancelled or
    /// finished elsewhere.
    pub async fn save_step_if_leased(
        &mut self,
        run_id: &str,
        owner: &str,
        step: &StepUpdate,
    ) -> Result<bool> {
        let (sql, args) = leased_step(run_id, owner, step);
        Ok(self.execute(&sql, args).await? == 1)
    }

    /// Ends a run held by `owner` with a final status.
    pub async fn finish_run(
        &mut self,
        run_id: &str,
        owner: &str,
        status: RunStatus,
        output: Option<String>,
        error: Option<String>,
        now: i64,
    ) -> Result<bool> {
        let changed = self
            .execute(
                FINISH_RUN,
                args![run_id, owner, status.as_str(), output, error, now],
            )
            .await?;
        Ok(changed == 1)
    }

    /// Gives up the lease and parks the run as `queued` or `sleeping` until `run_at`.
    pub async fn park_run(
        &mut self,
        run_id: &str,
        owner: &str,
        status: RunStatus,
        run_at: i64,
        error: Option<String>,
        now: i64,
    ) -> Result<bool> {
        let changed = self
            .execute(
                "UPDATE runs SET status = $3, run_at = $4, due_at = $4, error = $5, \
                 updated_at = $6, lease_owner = NULL, lease_expires_at = NULL \
                 WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
                args![run_id, owner, status.as_str(), run_at, error, now],
            )
            .await?;
        Ok(changed == 1)
    }

    /// Records when a cron schedule starts, unless it already has a last tick.
    pub async fn start_cron(&mut self, function_id: &str, now: i64) -> Result<()> {
        self.execute(
            "INSERT INTO cron_state (function_id, last_tick) VALUES ($1, $2) \
             ON CONFLICT (function_id) DO NOTHING",
            args![function_id, now],
        )
        .await?;
        Ok(())
    }

    /// Moves a cron function's last tick forward (never back).
    pub async fn advance_cron(&mut self, function_id: &str, tick: i64) -> Result<()> {
        self.execute(
            "INSERT INTO cron_state (function_id, last_tick) VALUES ($1, $2) \
             ON CONFLICT (function_id) DO UPDATE SET last_tick = excluded.last_tick \
             WHERE excluded.last_tick > cron_state.last_tick",
            args![function_id, tick],
        )
        .await?;
        Ok(())
    }

    /// Stores `value` under `key` in the settings table, replacing any previous value.
    pub async fn set_setting(&mut self, key: &str, value: &str) -> Result<()> {
        self.execute(
            "INSERT INTO settings (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            args![key, value],
        )
        .await?;
        Ok(())
    }

    /// Stores `value` unless the key is set, and returns what is stored.
    pub async fn setting_or_insert(&mut self, key: &str, value: &str) -> Result<String> {
        self.execute(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            args![key, value],
        )
        .await?;
        let (stored,): (String,) = self
            .fetch_one("SELECT value FROM settings WHERE key = $1", args![key])
            .await?;
        Ok(stored)
    }
}

/// The statements of [`StoreTx`] that need no transaction around them, each committed
/// alone (see [`Store::write_statement`]).
impl Store {
    /// [`StoreTx::insert_event`] as one statement committed alone, where that can be
    /// done: on PostgreSQL, when no listener waits for the event's name. An event without
    /// a window shares its statement, and its commit, with the others waiting to be
    /// stored. `None` means nothing was written and the event is for
    /// [`StoreTx::insert_event`] to store (a duplicate is also answered `None`).
    pub async fn store_event_alone(
        &self,
        event: &NewEvent,
        runs: &[NewRun],
        lease: Option<&NewLease>,
    ) -> Result<Option<IngestOutcome>> {
        let Backend::Postgres(pg) = &self.0 else {
            return Ok(None);
        };
        if key_window(event).is_none() {
            let write = EventWrite {
                event: event.clone(),
                runs: runs.to_vec(),
                lease: lease.cloned(),
            };
            let made = pg.store_event(write).await?;
            return Ok((made == Made::Yes).then(|| accepted(event, runs)));
        }
        let (sql, args) = event_statement(Dialect::Postgres, event, runs, lease, true);
        let row: Option<(Option<String>, bool)> = self.write_statement(sql, args).await?;
        if !matches!(row, Some((Some(_), _))) {
            return Ok(None);
        }
        if queues_runs(runs, lease) {
            self.signal_new_runs();
        }
        Ok(Some(accepted(event, runs)))
    }

    /// Claims up to `limit` runs that are due, or whose lease expired, for `owner`, in
    /// one statement committed alone.
    pub async fn claim_runs(
        &self,
        owner: &str,
        now: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<ClaimedRun>> {
        // SQLite has one writer, so a plain subquery cannot race; PostgreSQL skips rows
        // another process is claiming rather than waiting for them.
        // `+status` keeps SQLite's planner on the small due_at index: reading the status
        // index instead means sorting every live run for each claim.
        let (status, lock) = match self.dialect() {
            Dialect::Sqlite => ("+status", ""),
            Dialect::Postgres => ("status", " FOR UPDATE SKIP LOCKED"),
        };
        let sql = format!(
            "UPDATE runs SET status = 'running', lease_owner = $1, lease_expires_at = $2, \
             due_at = $2, attempt = attempt + 1, started_at = COALESCE(started_at, $3), \
             updated_at = $3 \
             WHERE id IN (SELECT id FROM runs WHERE due_at <= $3 \
             AND {status} IN ('queued', 'sleeping', 'running', 'waiting') \
             ORDER BY due_at LIMIT $4{lock}) \
             RETURNING {RUN_COLUMNS}"
        );
        self.write_statement_all(sql, args![owner, now + lease_ms, now, limit])
            .await
    }

    /// [`StoreTx::save_step_if_leased`], committed alone and answered before its commit is
    /// durable, as [`Store::transaction_early`] describes. On PostgreSQL it is made, with
    /// no `BEGIN` or `COMMIT`, by one statement with the other runs' checkpoints waiting,
    /// and answered once committed.
    pub async fn save_step_early(
        &self,
        run_id: &str,
        owner: &str,
        step: &StepUpdate,
        after: Option<u64>,
    ) -> Result<(bool, Option<Durability>)> {
        if let Backend::Postgres(pg) = &self.0 {
            let write = StepCheckpoint {
                run_id: run_id.to_owned(),
                owner: owner.to_owned(),
                step: step.clone(),
            };
            let saved = match pg.save_step(write).await? {
                Made::Yes => true,
                Made::No => false,
                Made::Alone => {
                    let (sql, args) = leased_step(run_id, owner, step);
                    self.execute_statement(sql, args).await? == 1
                }
            };
            return Ok((saved, None));
        }
        let (sql, args) = leased_step(run_id, owner, step);
        let (changed, durability) = self.execute_early(sql, args, after).await?;
        Ok((changed == 1, durability))
    }

    /// [`Store::finish_run`] for a run that completed with `output`, answered before its
    /// commit is durable, as [`Store::transaction_early`] describes: on SQLite it runs
    /// only if the commit of generation `after` (the run's last early write) committed,
    /// and the returned [`Durability`] says when it is on disk. PostgreSQL answers once
    /// committed.
    pub async fn complete_run_early(
        &self,
        run_id: &str,
        owner: &str,
        output: String,
        now: i64,
        after: Option<u64>,
    ) -> Result<(bool, Option<Durability>)> {
        let output = Some(output);
        if let Backend::Postgres(_) = &self.0 {
            let finished = self
                .finish_run(run_id, owner, RunStatus::Completed, output, None, now)
                .await?;
            return Ok((finished, None));
        }
        let args = args![run_id, owner, "completed", output, None::<String>, now];
        let (changed, durability) = self
            .execute_early(FINISH_RUN.to_owned(), args, after)
            .await?;
        Ok((changed == 1, durability))
    }

    /// One statement run by [`Store::transaction_early`]; answers how many rows it changed.
    async fn execute_early(
        &self,
        sql: String,
        args: Vec<Arg>,
        after: Option<u64>,
    ) -> Result<(u64, Option<Durability>)> {
        let work: TxFn<u64, Error> =
            Box::new(move |tx| Box::pin(async move { tx.execute(&sql, args).await }));
        let (changed, durability) = self.transaction_early(work, after).await?;
        Ok((changed?, durability))
    }

    /// [`StoreTx::finish_run`], committed alone: on PostgreSQL by one statement with the
    /// other runs ending meanwhile.
    pub async fn finish_run(
        &self,
        run_id: &str,
        owner: &str,
        status: RunStatus,
        output: Option<String>,
        error: Option<String>,
        now: i64,
    ) -> Result<bool> {
        if let Backend::Postgres(pg) = &self.0 {
            let write = Finish {
                run_id: run_id.to_owned(),
                owner: owner.to_owned(),
                status: status.as_str().to_owned(),
                output: output.clone(),
                error: error.clone(),
                at: now,
            };
            match pg.finish_run(write).await? {
                Made::Yes => return Ok(true),
                Made::No => return Ok(false),
                Made::Alone => {}
            }
        }
        let args = args![run_id, owner, status.as_str(), output, error, now];
        Ok(self.execute_statement(FINISH_RUN.to_owned(), args).await? == 1)
    }
}

impl Store {
    /// The earliest time a queued or sleeping run, or a lease, falls due.
    pub async fn next_due(&self) -> Result<Option<i64>> {
        let row: (Option<i64>,) = self
            .fetch_one(
                "SELECT MIN(due_at) FROM runs WHERE due_at IS NOT NULL",
                vec![],
            )
            .await?;
        Ok(row.0)
    }

    /// The last tick a cron function fired (milliseconds since the Unix epoch); `None`
    /// before its first.
    pub async fn cron_last_tick(&self, function_id: &str) -> Result<Option<i64>> {
        let row: Option<(i64,)> = self
            .fetch_optional(
                "SELECT last_tick FROM cron_state WHERE function_id = $1",
                args![function_id],
            )
            .await?;
        Ok(row.map(|r| r.0))
    }

    /// The value stored under `key` in the settings table, if any.
    pub async fn setting(&self, key: &str) -> Result<Option<String>> {
        let row: Option<(String,)> = self
            .fetch_optional("SELECT value FROM settings WHERE key = $1", args![key])
            .await?;
        Ok(row.map(|r| r.0))
    }

    /// The run with this id (`run_…`), if any.
    pub async fn run(&self, run_id: &str) -> Result<Option<RunRow>> {
        self.fetch_optional(
            &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"),
            args![run_id],
        )
        .await
    }

    /// A run's steps, in the order they first ran.
    pub async fn steps(&self, run_id: &str) -> Result<Vec<StepRow>> {
        self.fetch_all(
            "SELECT run_id, step_key, name, position, kind, status, attempts, output, error, \
             wake_at, started_at, ended_at FROM steps WHERE run_id = $1 ORDER BY position",
            args![run_id],
        )
        .await
    }

    /// Finds an event by its own id or by the id its sender gave it (`evt_…`).
    pub async fn event(&self, id: &str) -> Result<Option<EventRow>> {
        self.fetch_optional(
            &format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE id = $1 \
                 UNION ALL SELECT {EVENT_COLUMNS} FROM events WHERE external_id = $1 LIMIT 1"
            ),
            args![id],
        )
        .await
    }

    /// Runs matching `filter`, newest first.
    pub async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRow>> {
        let mut sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE 1 = 1");
        let mut args: Vec<Arg> = Vec::new();
        let mut push = |clause: &str, value: Arg, sql: &mut String| {
            args.push(value);
            sql.push_str(&clause.replace("$?", &format!("${}", args.len())));
        };
        if let Some(status) = &filter.status {
            push(" AND status = $?", status.into(), &mut sql);
        }
        if let Some(function_id) = &filter.function_id {
            push(" AND function_id = $?", function_id.into(), &mut sql);
        }
        if let Some(event_id) = &filter.event_id {
            push(" AND event_id = $?", event_id.into(), &mut sql);
        }
        if let Some(since) = filter.since {
            push(" AND created_at >= $?", since.into(), &mut sql);
        }
        if let Some(until) = filter.until {
            push(" AND created_at < $?", until.into(), &mut sql);
        }
        let limit = if filter.limit > 0 { filter.limit } else { 100 };
        push(
            " ORDER BY created_at DESC, id DESC LIMIT $?",
            limit.into(),
            &mut sql,
        );
        self.fetch_all(&sql, args).await
    }

    /// Counts rows of a query that returns one integer.
    pub async fn count(&self, sql: &str, args: Vec<Arg>) -> Result<i64> {
        let (n,): (i64,) = self.fetch_one(sql, args).await?;
        Ok(n)
    }
}

const QUEUED_RUN_COLUMNS: &str = "id, function_id, event_id, status, run_at, due_at, replay_of, \
     concurrency_key, created_at, updated_at";
const LEASED_RUN_COLUMNS: &str = "id, function_id, event_id, status, run_at, due_at, replay_of, \
     concurrency_key, created_at, updated_at, attempt, lease_owner, lease_expires_at, started_at";

const FINISH_RUN: &str = "UPDATE runs SET status = $3, output = $4, error = $5, ended_at = $6, \
     updated_at = $6, lease_owner = NULL, lease_expires_at = NULL, due_at = NULL \
     WHERE id = $1 AND lease_owner = $2 AND status = 'running'";

/// Writes a step checkpoint provided `owner` holds the run's lease: the statement and
/// its arguments.
fn leased_step(run_id: &str, owner: &str, step: &StepUpdate) -> (String, Vec<Arg>) {
    let mut args = step_args(run_id, step);
    args.push(owner.into());
    let sql = format!(
        "INSERT INTO steps ({STEP_COLUMNS}) SELECT {STEP_VALUES} WHERE EXISTS \
         (SELECT 1 FROM runs WHERE id = $1 AND lease_owner = $13 \
         AND status = 'running') {STEP_UPSERT}"
    );
    (sql, args)
}

/// The key and window of an event whose dedupe key holds for a window.
fn key_window(event: &NewEvent) -> Option<(&str, i64)> {
    match (&event.dedupe_key, event.dedupe_for_ms) {
        (Some(key), Some(window)) => Some((key.as_str(), window)),
        _ => None,
    }
}

/// The one statement that stores an event and its runs, and its arguments. `alone` is
/// for a PostgreSQL statement committed on its own (see [`keyed_event_postgres`]).
fn event_statement(
    dialect: Dialect,
    event: &NewEvent,
    runs: &[NewRun],
    lease: Option<&NewLease>,
    alone: bool,
) -> (String, Vec<Arg>) {
    let window = key_window(event);
    let new_runs = NewRuns {
        count: runs.len(),
        leased: lease.is_some(),
    };
    let sql = match (dialect, window.is_some()) {
        (Dialect::Sqlite, true) => keyed_event_sqlite(new_runs),
        (Dialect::Sqlite, false) => event_sqlite(new_runs),
        (Dialect::Postgres, true) => keyed_event_postgres(new_runs, alone),
        (Dialect::Postgres, false) => event_postgres(new_runs),
    };
    (sql, event_args(event, window, runs, lease))
}

/// The arguments of an event's statement: `$1` the dedupe key, `$2` the event id, then
/// for a key that holds for a window the key's expiry, then now and the event's other
/// columns, then three per run ([`Params::run`]), then the lease's owner and expiry if
/// there is one ([`Params::lease`]). [`KEYED`] and [`PLAIN`] number them.
fn event_args(
    event: &NewEvent,
    window: Option<(&str, i64)>,
    runs: &[NewRun],
    lease: Option<&NewLease>,
) -> Vec<Arg> {
    let now = event.received_at;
    let mut args = match window {
        Some((key, window)) => args![key, &event.id, now.saturating_add(window)],
        None => args![event.dedupe_key.clone(), &event.id],
    };
    args.extend(args![
        now,
        event.external_id.clone(),
        &event.name,
        &event.source,
        &event.data,
        event.ts,
        event.object_id.clone(),
        event.customer.clone(),
    ]);
    for run in runs {
        args.extend(args![&run.id, &run.function_id, run.replay_of.clone()]);
    }
    if let Some(lease) = lease {
        args.extend(args![&lease.owner, lease.expires_at]);
    }
    args
}

/// The runs an event's statement inserts: how many, and whether under a lease.
#[derive(Clone, Copy)]
struct NewRuns {
    count: usize,
    leased: bool,
}

/// Where [`event_args`] puts what the statements read besides the key and the event id.
struct Params {
    now: usize,
    name: usize,
    /// The event's columns in `INSERT INTO events ({NEW_EVENT_COLUMNS})` order.
    values: &'static str,
    first_run: usize,
}

/// An event whose dedupe key holds for a window: `$3` is the key's expiry.
const KEYED: Params = Params {
    now: 4,
    name: 6,
    values: "$2, NULL, $5, $6, $7, $8, $9, $4, $10, $11",
    first_run: 12,
};

/// An event without a key, or whose key holds for ever (a column of `events`).
const PLAIN: Params = Params {
    now: 3,
    name: 5,
    values: "$2, $1, $4, $5, $6, $7, $8, $3, $9, $10",
    first_run: 11,
};

const NEW_EVENT_COLUMNS: &str =
    "id, dedupe_key, external_id, name, source, data, ts, received_at, object_id, customer";

impl Params {
    /// The parameters of run `i`: its id, function and replayed run.
    fn run(&self, i: usize) -> (usize, usize, usize) {
        let first = self.first_run + 3 * i;
        (first, first + 1, first + 2)
    }

    /// The parameters of the lease's owner and expiry, after the last of `runs` runs.
    fn lease(&self, runs: usize) -> (usize, usize) {
        let owner = self.first_run + 3 * runs;
        (owner, owner + 1)
    }

    /// The columns a new run is inserted with, and their values given the SQL of its
    /// id, function, event and replayed run: queued and due now, or running under the
    /// lease on its first attempt.
    fn new_run(
        &self,
        runs: NewRuns,
        id: &str,
        function: &str,
        event: &str,
        replay_of: &str,
    ) -> (&'static str, String) {
        let now = self.now;
        if runs.leased {
            let (owner, expires) = self.lease(runs.count);
            let values = format!(
                "{id}, {function}, {event}, 'running', ${now}, ${expires}, {replay_of}, NULL, \
                 ${now}, ${now}, 1, ${owner}, ${expires}, ${now}"
            );
            (LEASED_RUN_COLUMNS, values)
        } else {
            let values = format!(
                "{id}, {function}, {event}, 'queued', ${now}, ${now}, {replay_of}, NULL, \
                 ${now}, ${now}"
            );
            (QUEUED_RUN_COLUMNS, values)
        }
    }

    /// SQLite statements inserting the runs, provided the event `$2` was stored.
    fn insert_runs_sqlite(&self, runs: NewRuns) -> String {
        (0..runs.count)
            .map(|i| {
                let (id, function, replay_of) = self.run(i);
                let (columns, values) = self.new_run(
                    runs,
                    &format!("${id}"),
                    &format!("${function}"),
                    "$2",
                    &format!("${replay_of}"),
                );
                format!(
                    "INSERT INTO runs ({columns}) SELECT {values} \
                     WHERE EXISTS (SELECT 1 FROM events WHERE id = $2); "
                )
            })
            .collect()
    }

    /// A PostgreSQL CTE inserting the runs for the event in CTE `stored`.
    fn insert_runs_postgres(&self, runs: NewRuns) -> String {
        if runs.count == 0 {
            return String::new();
        }
        let rows: Vec<String> = (0..runs.count)
            .map(|i| {
                let (id, function, replay_of) = self.run(i);
                format!("(${id}::text, ${function}::text, ${replay_of}::text)")
            })
            .collect();
        let (columns, values) =
            self.new_run(runs, "v.id", "v.function_id", "stored.id", "v.replay_of");
        // It runs although nothing reads it: data-modifying CTEs always do.
        format!(
            ", started AS (INSERT INTO runs ({columns}) SELECT {values} \
             FROM stored, (VALUES {}) AS v(id, function_id, replay_of))",
            rows.join(", ")
        )
    }

    /// The row an `INSERT` takes from `values`: with `alone`, only while no listener
    /// waits for the event's name.
    fn row(&self, values: &str, alone: bool) -> String {
        if alone {
            format!("SELECT {values} WHERE NOT {}", self.listened())
        } else {
            format!("VALUES ({values})")
        }
    }

    /// Whether any listener waits for the event's name, as an SQL expression.
    fn listened(&self) -> String {
        format!(
            "EXISTS (SELECT 1 FROM listeners WHERE event_name = ${})",
            self.name
        )
    }
}

/// The answer for an event stored with these runs.
fn accepted(event: &NewEvent, runs: &[NewRun]) -> IngestOutcome {
    IngestOutcome::Accepted {
        event_id: event.id.clone(),
        runs: runs.iter().map(|r| r.id.clone()).collect(),
    }
}

/// How claiming an event's dedupe key went.
enum Claim {
    /// The key is this event's: the event and its runs are stored; `listened` says
    /// whether any listener waits for its name.
    Won { listened: bool },
    /// Another event holds the key; its duplicate count moved.
    Lost { holder: String },
}

/// [`StoreTx::store_event`] on SQLite for an event without a window; answers the key's
/// holder (the event itself when it has no key) and whether any listener waits for the
/// name.
fn event_sqlite(runs: NewRuns) -> String {
    let p = PLAIN;
    format!(
        "INSERT INTO events ({NEW_EVENT_COLUMNS}) VALUES ({}) ON CONFLICT (dedupe_key) DO NOTHING; \
         {}UPDATE events SET duplicates = duplicates + 1 WHERE dedupe_key = $1 AND id <> $2; \
         SELECT COALESCE((SELECT id FROM events WHERE dedupe_key = $1), $2), {}",
        p.values,
        p.insert_runs_sqlite(runs),
        p.listened()
    )
}

/// [`StoreTx::store_event`] on PostgreSQL for an event without a window; answers the
/// event id when it was stored and whether any listener waits for the name.
fn event_postgres(runs: NewRuns) -> String {
    let p = PLAIN;
    format!(
        "WITH stored AS (INSERT INTO events ({NEW_EVENT_COLUMNS}) VALUES ({}) \
         ON CONFLICT (dedupe_key) DO NOTHING RETURNING id){} \
         SELECT (SELECT id FROM stored), {}",
        p.values,
        p.insert_runs_postgres(runs),
        p.listened()
    )
}

/// [`StoreTx::store_event`] on SQLite for an event whose key holds for a window; answers
/// the key's holder and whether any listener waits for the name.
fn keyed_event_sqlite(runs: NewRuns) -> String {
    let p = KEYED;
    format!(
        "INSERT INTO event_keys (key, event_id, expires_at) VALUES ($1, $2, $3) \
         ON CONFLICT (key) DO UPDATE SET event_id = excluded.event_id, \
         expires_at = excluded.expires_at WHERE event_keys.expires_at <= $4; \
         INSERT INTO events ({NEW_EVENT_COLUMNS}) SELECT {} \
         WHERE EXISTS (SELECT 1 FROM event_keys WHERE key = $1 AND event_id = $2); \
         {}UPDATE events SET duplicates = duplicates + 1 \
         WHERE id = (SELECT event_id FROM event_keys WHERE key = $1) AND id <> $2; \
         SELECT event_id, {} FROM event_keys WHERE key = $1",
        p.values,
        p.insert_runs_sqlite(runs),
        p.listened()
    )
}

/// [`StoreTx::store_event`] on PostgreSQL for an event whose key holds for a window;
/// answers the event id when the claim succeeded and whether any listener waits for the
/// name. `alone` (for [`Store::store_event_alone`]) claims nothing while a listener waits
/// for the name, as matching it needs a transaction around the whole.
fn keyed_event_postgres(runs: NewRuns, alone: bool) -> String {
    let p = KEYED;
    let claim = p.row("$1, $2, $3", alone);
    format!(
        "WITH claimed AS (INSERT INTO event_keys (key, event_id, expires_at) \
         {claim} ON CONFLICT (key) DO UPDATE SET event_id = excluded.event_id, \
         expires_at = excluded.expires_at WHERE event_keys.expires_at <= $4 \
         RETURNING event_id), \
         stored AS (INSERT INTO events ({NEW_EVENT_COLUMNS}) \
         SELECT {} FROM claimed RETURNING id){} \
         SELECT (SELECT event_id FROM claimed), {}",
        p.values,
        p.insert_runs_postgres(runs),
        p.listened()
    )
}

fn step_args(run_id: &str, step: &StepUpdate) -> Vec<Arg> {
    args![
        run_id,
        &step.key,
        &step.name,
        step.position,
        step.kind,
        step.status,
        step.attempts,
        step.output.clone(),
        step.error.clone(),
        step.wake_at,
        step.started_at,
        step.ended_at,
    ]
}
