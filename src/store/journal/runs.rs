//! The `runs` table: creating, claiming, parking and ending runs, and reading them.

use super::{ClaimedRun, NewRun, RunFilter};
use crate::args;
use crate::ids::{EventId, RunId};
use crate::state::RunStatus;
use crate::store::postgres::{Made, RunEnd};
use crate::store::rows::RunRow;
use crate::store::{Arg, Backend, Dialect, Durability, Generation, Result, Store, StoreTx, Write};

pub(in crate::store) const RUN_COLUMNS: &str = "id, function_id, event_id, status, run_at, \
     attempt, lease_owner, lease_expires_at, output, error, replay_of, created_at, started_at, \
     ended_at, updated_at";

const FINISH_RUN: &str = "UPDATE runs SET status = $3, output = $4, error = $5, ended_at = $6, \
     updated_at = $6, lease_owner = NULL, lease_expires_at = NULL, due_at = NULL \
     WHERE id = $1 AND lease_owner = $2 AND status = 'running'";

impl StoreTx {
    /// Creates a run of `event_id`, queued and due at `now` (milliseconds since the Unix
    /// epoch).
    #[doc(hidden)]
    pub async fn insert_run(&mut self, event_id: &EventId, run: &NewRun, now: i64) -> Result<()> {
        self.insert_run_as(event_id, run, RunStatus::Queued, now, None, now)
            .await
    }

    /// Ends a run held by `owner` with a final status.
    #[doc(hidden)]
    pub async fn finish_run(
        &mut self,
        run_id: &RunId,
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
    pub(crate) async fn park_run(
        &mut self,
        run_id: &RunId,
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
}

impl Store {
    /// Claims up to `limit` runs that are due, or whose lease expired, for `owner`, in
    /// one statement committed alone.
    #[doc(hidden)]
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
        self.execute_returning(sql, args![owner, now + lease_ms, now, limit])
            .await
    }

    /// [`Store::finish_run`] for a run that completed with `output`, answered before its
    /// commit is durable. Same effect as
    /// `write(Write::isolated().answer_early().after(after), …)` running
    /// [`StoreTx::finish_run`] on SQLite; on PostgreSQL it is [`Store::finish_run`],
    /// batched with other runs ending and answered once committed.
    pub(crate) async fn complete_run_early(
        &self,
        run_id: &RunId,
        owner: &str,
        output: String,
        now: i64,
        after: Option<Generation>,
    ) -> Result<(bool, Option<Durability>)> {
        let output = Some(output);
        if let Backend::Postgres(_) = &self.0 {
            let finished = self
                .finish_run(run_id, owner, RunStatus::Completed, output, None, now)
                .await?;
            return Ok((finished, None));
        }
        let args = args![
            run_id,
            owner,
            RunStatus::Completed.as_str(),
            output,
            None::<String>,
            now
        ];
        let early = Write::isolated().answer_early().after(after);
        let (changed, durability) = self
            .write(early, move |tx| {
                Box::pin(async move { tx.execute(FINISH_RUN, args).await })
            })
            .await?;
        Ok((changed == 1, durability))
    }

    /// [`StoreTx::finish_run`], committed alone. Same effect as
    /// `write(Write::shared(), …)` running it; on PostgreSQL it is made by one statement
    /// with the other runs ending meanwhile.
    #[doc(hidden)]
    pub async fn finish_run(
        &self,
        run_id: &RunId,
        owner: &str,
        status: RunStatus,
        output: Option<String>,
        error: Option<String>,
        now: i64,
    ) -> Result<bool> {
        if let Backend::Postgres(pg) = &self.0 {
            let write = RunEnd {
                run_id: run_id.clone(),
                owner: owner.to_owned(),
                status,
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
        Ok(self.execute(FINISH_RUN.to_owned(), args).await? == 1)
    }

    /// The earliest time a queued or sleeping run, or a lease, falls due.
    #[doc(hidden)]
    pub async fn next_due(&self) -> Result<Option<i64>> {
        let row: (Option<i64>,) = self
            .fetch_one(
                "SELECT MIN(due_at) FROM runs WHERE due_at IS NOT NULL",
                vec![],
            )
            .await?;
        Ok(row.0)
    }

    /// The run with this id (`run_…`), if any.
    #[doc(hidden)]
    pub async fn run(&self, run_id: &RunId) -> Result<Option<RunRow>> {
        self.fetch_optional(
            &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"),
            args![run_id],
        )
        .await
    }

    /// Runs matching `filter`, newest first.
    #[doc(hidden)]
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
