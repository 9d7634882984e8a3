//! Queries behind the dashboard and the operations API: run search with counts per
//! status, run history and replays, event listings, function statistics, and the
//! writes that replay and cancel runs.

use serde::Serialize;

use super::{Arg, Result, Store, StoreTx};
use crate::args;
use crate::ids::{EventId, FunctionId, RunId};
use crate::state::RunStatus;
use crate::store::rows::RunRow;

/// The run columns, qualified for queries that join `events`.
const RUN_COLUMNS: &str = "r.id, r.function_id, r.event_id, r.status, r.run_at, r.attempt, \
     r.lease_owner, r.lease_expires_at, r.output, r.error, r.replay_of, r.created_at, \
     r.started_at, r.ended_at, r.updated_at";

/// Which runs an operator is looking at; every field narrows the selection.
#[derive(Debug, Clone, Default)]
pub struct RunQuery {
    /// Any of these statuses (all statuses when empty).
    pub statuses: Vec<String>,
    /// Only runs of this function.
    pub function_id: Option<String>,
    /// Created at or after (ms).
    pub since: Option<i64>,
    /// Created before (ms).
    pub until: Option<i64>,
    /// A run id, event id (paysteps' or the sender's), Stripe object id, customer id, or
    /// the user id or email of a known customer.
    pub search: Option<String>,
    /// Leaves out runs that already have a replay.
    pub without_replays: bool,
}

impl RunQuery {
    /// `FROM … WHERE …` for this query, with its arguments; `skip_status` leaves the
    /// status out (for counts per status).
    fn sql_from(&self, skip_status: bool) -> (String, Vec<Arg>) {
        // The event is joined only to search its ids: a plain listing reads runs alone.
        let searching = self.search.as_deref().is_some_and(|s| !s.trim().is_empty());
        let mut q = Sql::new(if searching {
            "FROM runs r JOIN events e ON e.id = r.event_id WHERE 1 = 1"
        } else {
            "FROM runs r WHERE 1 = 1"
        });
        if !skip_status && !self.statuses.is_empty() {
            let list: Vec<String> = self.statuses.iter().map(|s| q.bind(s)).collect();
            q.push(&format!(" AND r.status IN ({})", list.join(", ")));
        }
        if let Some(function_id) = &self.function_id {
            let p = q.bind(function_id);
            q.push(&format!(" AND r.function_id = {p}"));
        }
        q.and_within("r.created_at", self.since, self.until);
        if let Some(p) = q.bind_search(self.search.as_deref()) {
            q.push(&format!(
                " AND (r.id = {p} OR r.event_id = {p} OR e.external_id = {p} \
                 OR e.object_id = {p} OR e.customer = {p} OR e.customer IN \
                 (SELECT c.id FROM customers c WHERE c.user_id = {p} OR c.email = {p}))"
            ));
        }
        if self.without_replays {
            q.push(" AND NOT EXISTS (SELECT 1 FROM runs x WHERE x.replay_of = r.id)");
        }
        (q.sql, q.args)
    }
}

/// SQL text being built with its numbered arguments.
struct Sql {
    sql: String,
    args: Vec<Arg>,
}

impl Sql {
    fn new(start: &str) -> Sql {
        Sql {
            sql: start.to_owned(),
            args: Vec::new(),
        }
    }

    /// Adds an argument and returns its placeholder.
    fn bind(&mut self, value: impl Into<Arg>) -> String {
        self.args.push(value.into());
        format!("${}", self.args.len())
    }

    fn push(&mut self, text: &str) {
        self.sql.push_str(text);
    }

    /// Narrows to `column` at or after `since` and before `until` (ms), each when given.
    fn and_within(&mut self, column: &str, since: Option<i64>, until: Option<i64>) {
        if let Some(since) = since {
            let p = self.bind(since);
            self.push(&format!(" AND {column} >= {p}"));
        }
        if let Some(until) = until {
            let p = self.bind(until);
            self.push(&format!(" AND {column} < {p}"));
        }
    }

    /// Binds the search text, trimmed, and returns its placeholder; `None` when there is
    /// no text to search for.
    fn bind_search(&mut self, search: Option<&str>) -> Option<String> {
        let search = search.map(str::trim).filter(|s| !s.is_empty())?;
        Some(self.bind(search))
    }
}

/// One change of a run's status (or a new execution of it), oldest first.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct HistoryRow {
    /// The status the run moved to (lowercase, e.g. `running`).
    pub status: RunStatus,
    /// The run's execution count at that moment.
    pub attempt: i64,
    /// The error recorded with the change, if any.
    pub error: Option<String>,
    /// When it happened, in milliseconds since the Unix epoch.
    pub at: i64,
}

/// An event as listed, with how many runs it started.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct EventSummary {
    /// paysteps' id for the event, `ev_…`.
    pub id: EventId,
    /// The sender's own id for the event (`evt_…` for Stripe).
    pub external_id: Option<String>,
    /// The event name, e.g. `stripe/invoice.paid`.
    pub name: String,
    /// Where it came from: `api`, `stripe`, `cron` or `internal`.
    pub source: String,
    /// When the event happened, in milliseconds since the Unix epoch.
    pub ts: i64,
    /// When paysteps received it, in milliseconds since the Unix epoch.
    pub received_at: i64,
    /// The main object's id (`sub_…`, `pi_…`).
    pub object_id: Option<String>,
    /// The customer it concerns (`cus_…`).
    pub customer: Option<String>,
    /// Deliveries of the same event refused as duplicates.
    pub duplicates: i64,
    /// Runs it started.
    pub runs: i64,
}

/// Which events to list.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// Only events with this name.
    pub name: Option<String>,
    /// Only events received at or after this time, in milliseconds since the Unix epoch.
    pub since: Option<i64>,
    /// Only events received before this time, in milliseconds since the Unix epoch.
    pub until: Option<i64>,
    /// An event id (paysteps' or the sender's), Stripe object id or customer id.
    pub search: Option<String>,
    /// Most events returned, newest first; 0 or less means 100.
    pub limit: i64,
}

/// A failed run's error, for a function's latest errors.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct RunError {
    /// paysteps' id of the failed run, `run_…`.
    pub run_id: RunId,
    /// The id of the function the run executed.
    pub function_id: FunctionId,
    /// The error the run failed with.
    pub error: Option<String>,
    /// When it failed, in milliseconds since the Unix epoch.
    pub ended_at: Option<i64>,
}

impl Store {
    /// Runs matching `query`, newest first.
    pub(crate) async fn search_runs(&self, query: &RunQuery, limit: i64) -> Result<Vec<RunRow>> {
        let (from_where, mut args) = query.sql_from(false);
        args.push(limit.into());
        let sql = format!(
            "SELECT {RUN_COLUMNS} {from_where} ORDER BY r.created_at DESC, r.id DESC LIMIT ${}",
            args.len()
        );
        self.fetch_all(&sql, args).await
    }

    /// How many runs match `query` ignoring its statuses, per status, counting at most
    /// `cap + 1` of each (so a count above `cap` means "more than `cap`"): each count reads
    /// a bounded stretch of the status index however many runs are stored.
    pub(crate) async fn count_runs_by_status(
        &self,
        query: &RunQuery,
        statuses: &[&str],
        cap: i64,
    ) -> Result<Vec<(String, i64)>> {
        let (from_where, mut args) = query.sql_from(true);
        args.push(Arg::Text(None));
        args.push((cap + 1).into());
        let (status, limit) = (args.len() - 1, args.len());
        let sql = format!(
            "SELECT COUNT(*) FROM (SELECT 1 {from_where} AND r.status = ${status} LIMIT ${limit}) AS capped"
        );
        let mut counts = Vec::with_capacity(statuses.len());
        for name in statuses {
            let mut args = args.clone();
            args[status - 1] = (*name).into();
            counts.push(((*name).to_owned(), self.count(&sql, args).await?));
        }
        Ok(counts)
    }

    /// How many runs match `query`.
    pub(crate) async fn count_runs(&self, query: &RunQuery) -> Result<i64> {
        let (from_where, args) = query.sql_from(false);
        self.count(&format!("SELECT COUNT(*) {from_where}"), args)
            .await
    }

    /// The run's status changes, oldest first.
    pub(crate) async fn run_history(&self, run_id: &RunId) -> Result<Vec<HistoryRow>> {
        self.fetch_all(
            "SELECT status, attempt, error, at FROM run_history WHERE run_id = $1 ORDER BY id",
            args![run_id],
        )
        .await
    }

    /// The runs that replay `run_id`, oldest first.
    #[doc(hidden)]
    pub async fn replays_of(&self, run_id: &RunId) -> Result<Vec<RunRow>> {
        self.fetch_all(
            &format!(
                "SELECT {RUN_COLUMNS} FROM runs r WHERE r.replay_of = $1 ORDER BY r.created_at, r.id"
            ),
            args![run_id],
        )
        .await
    }

    /// Events matching `query`, newest first, with the number of runs each started.
    pub(crate) async fn list_events(&self, query: &EventQuery) -> Result<Vec<EventSummary>> {
        let mut q = Sql::new(
            "SELECT e.id, e.external_id, e.name, e.source, e.ts, e.received_at, e.object_id, \
             e.customer, e.duplicates, \
             (SELECT COUNT(*) FROM runs r WHERE r.event_id = e.id) AS runs \
             FROM events e WHERE 1 = 1",
        );
        if let Some(name) = &query.name {
            let p = q.bind(name);
            q.push(&format!(" AND e.name = {p}"));
        }
        q.and_within("e.received_at", query.since, query.until);
        if let Some(p) = q.bind_search(query.search.as_deref()) {
            q.push(&format!(
                " AND (e.id = {p} OR e.external_id = {p} OR e.object_id = {p} OR e.customer = {p})"
            ));
        }
        let limit = if query.limit > 0 { query.limit } else { 100 };
        let p = q.bind(limit);
        q.push(&format!(
            " ORDER BY e.received_at DESC, e.id DESC LIMIT {p}"
        ));
        self.fetch_all(&q.sql, q.args).await
    }

    /// The latest errors of failed runs, newest first, per function at most `per_function`.
    pub(crate) async fn latest_errors(
        &self,
        function_id: &FunctionId,
        limit: i64,
    ) -> Result<Vec<RunError>> {
        self.fetch_all(
            "SELECT id AS run_id, function_id, error, ended_at FROM runs \
             WHERE function_id = $1 AND status = 'failed' \
             ORDER BY created_at DESC, id DESC LIMIT $2",
            args![function_id, limit],
        )
        .await
    }
}

impl StoreTx {
    /// A run read inside the transaction.
    pub(crate) async fn run_for_update(&mut self, run_id: &RunId) -> Result<Option<RunRow>> {
        self.fetch_optional(
            &format!("SELECT {RUN_COLUMNS} FROM runs r WHERE r.id = $1"),
            args![run_id],
        )
        .await
    }

    /// The runs matching `query`, oldest first, at most `limit`.
    pub(crate) async fn select_runs(
        &mut self,
        query: &RunQuery,
        limit: i64,
    ) -> Result<Vec<RunRow>> {
        let (from_where, mut args) = query.sql_from(false);
        args.push(limit.into());
        let sql = format!(
            "SELECT {RUN_COLUMNS} {from_where} ORDER BY r.created_at, r.id LIMIT ${}",
            args.len()
        );
        self.fetch_all(&sql, args).await
    }

    /// Copies the completed steps of `from` to `to`, so `to` resumes after them.
    pub(crate) async fn copy_completed_steps(&mut self, from: &RunId, to: &RunId) -> Result<u64> {
        self.execute(
            "INSERT INTO steps (run_id, step_key, name, position, kind, status, attempts, output, \
             error, wake_at, started_at, ended_at) \
             SELECT $2, step_key, name, position, kind, status, attempts, output, error, wake_at, \
             started_at, ended_at FROM steps WHERE run_id = $1 AND status = 'completed'",
            args![from, to],
        )
        .await
    }
}
