//! Statements behind flow control and waiting runs: concurrency slots, throttle
//! schedules and event listeners.

use super::journal::NewRun;
use super::params::{Columns, Params};
use super::{Result, StoreTx};
use crate::args;
use crate::ids::{EventId, RunId};
use crate::state::{ListenerKind, RunStatus};

/// A run that listens for an event.
#[derive(Debug, Clone)]
pub struct NewListener {
    /// The listener's id, `lis_…`.
    pub id: String,
    /// paysteps' id of the listening run, `run_…`.
    pub run_id: RunId,
    /// `wait` completes a waiting step; `cancel` cancels the run.
    pub kind: ListenerKind,
    /// The waiting step's key (for `wait`); `None` for `cancel`.
    pub step_key: Option<String>,
    /// Name of the event listened for.
    pub event_name: String,
    /// A path read in both events (see [`crate::engine::path`]); `None` matches any event
    /// with the name.
    pub match_path: Option<String>,
    /// The value at `match_path` in the run's own event, as JSON text.
    pub match_value: Option<String>,
    /// A CEL condition over `event` (the run's own event) and `async` (the arriving one)
    /// that must hold as well.
    pub condition: Option<String>,
    /// When the listener lapses, in milliseconds since the Unix epoch; `None` never.
    pub expires_at: Option<i64>,
}

/// A stored listener, as matched against an arriving event.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ListenerRow {
    /// paysteps' id of the listening run, `run_…`.
    pub run_id: RunId,
    /// `wait` or `cancel`, as in [`NewListener::kind`].
    pub kind: ListenerKind,
    /// The waiting step's key, for `wait`.
    pub step_key: Option<String>,
    /// The path read in both events, if the listener matches on one.
    pub match_path: Option<String>,
    /// The value at `match_path` in the run's own event, as JSON text.
    pub match_value: Option<String>,
    /// The listener's condition, if it has one.
    pub condition: Option<String>,
    /// With a condition: the name of the run's own event.
    pub own_name: Option<String>,
    /// With a condition: the payload of the run's own event, as JSON text.
    pub own_data: Option<String>,
}

impl StoreTx {
    /// Inserts a run in a given state: `queued` from `run_at`, or `pending` (no due
    /// time) until a concurrency slot frees.
    pub(crate) async fn insert_run_as(
        &mut self,
        event_id: &EventId,
        run: &NewRun,
        status: RunStatus,
        run_at: i64,
        concurrency_key: Option<&str>,
        now: i64,
    ) -> Result<()> {
        let due_at = (status == RunStatus::Queued).then_some(run_at);
        let mut params = Params::default();
        let now = params.bind(now);
        let row = Columns::default()
            .bind(&mut params, "id", &run.id)
            .bind(&mut params, "function_id", &run.function_id)
            .bind(&mut params, "event_id", event_id)
            .bind(&mut params, "status", status.as_str())
            .bind(&mut params, "run_at", run_at)
            .bind(&mut params, "due_at", due_at)
            .bind(&mut params, "replay_of", run.replay_of.clone())
            .bind(
                &mut params,
                "concurrency_key",
                concurrency_key.map(str::to_owned),
            )
            .value("created_at", &now)
            .value("updated_at", &now);
        let sql = format!(
            "INSERT INTO runs ({}) VALUES ({})",
            row.names(),
            row.values()
        );
        self.execute(&sql, params.into_args()).await?;
        Ok(())
    }

    /// Takes a slot under `key` if fewer than `limit` are taken. The key's row is locked
    /// either way, so a run ending elsewhere sees this transaction's pending run.
    pub(crate) async fn take_slot(&mut self, key: &str, limit: i64) -> Result<bool> {
        self.execute(
            "INSERT INTO concurrency_slots (key, active) VALUES ($1, 0) \
             ON CONFLICT (key) DO NOTHING",
            args![key],
        )
        .await?;
        let (active,): (i64,) = self
            .fetch_one(
                "UPDATE concurrency_slots SET active = active + 1 WHERE key = $1 RETURNING active",
                args![key],
            )
            .await?;
        if active <= limit {
            return Ok(true);
        }
        self.execute(
            "UPDATE concurrency_slots SET active = active - 1 WHERE key = $1",
            args![key],
        )
        .await?;
        Ok(false)
    }

    /// Gives back the slot an ended run held and queues the oldest run pending on its key;
    /// returns that run's id. Does nothing for a run without a concurrency key.
    pub(crate) async fn release_slot(&mut self, run_id: &RunId, now: i64) -> Result<Option<RunId>> {
        let key: Option<(String,)> = self
            .fetch_optional(
                "UPDATE concurrency_slots SET active = active - 1 WHERE key = \
                 (SELECT concurrency_key FROM runs WHERE id = $1) RETURNING key",
                args![run_id],
            )
            .await?;
        let Some((key,)) = key else { return Ok(None) };
        let promoted: Option<(RunId,)> = self
            .fetch_optional(
                "UPDATE runs SET status = 'queued', \
                 due_at = CASE WHEN run_at > $2 THEN run_at ELSE $2 END, updated_at = $2 \
                 WHERE id = (SELECT id FROM runs WHERE concurrency_key = $1 \
                 AND status = 'pending' ORDER BY created_at, id LIMIT 1) RETURNING id",
                args![&key, now],
            )
            .await?;
        if promoted.is_some() {
            self.execute(
                "UPDATE concurrency_slots SET active = active + 1 WHERE key = $1",
                args![&key],
            )
            .await?;
        }
        Ok(promoted.map(|r| r.0))
    }

    /// The throttle key's next free start time, locking the key for this transaction.
    pub(crate) async fn throttle_next_free(&mut self, key: &str) -> Result<Option<i64>> {
        let row: Option<(i64,)> = self
            .fetch_optional(
                "UPDATE throttles SET next_free = next_free WHERE key = $1 RETURNING next_free",
                args![key],
            )
            .await?;
        Ok(row.map(|r| r.0))
    }

    /// Sets when the throttle named by `key` next lets a run start (milliseconds since the
    /// Unix epoch).
    pub(crate) async fn set_throttle_next_free(&mut self, key: &str, next_free: i64) -> Result<()> {
        self.execute(
            "INSERT INTO throttles (key, next_free) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET next_free = excluded.next_free",
            args![key, next_free],
        )
        .await?;
        Ok(())
    }

    /// Stores a listener; it holds until deleted or until it expires.
    pub(crate) async fn insert_listener(&mut self, listener: &NewListener) -> Result<()> {
        let mut params = Params::default();
        let row = Columns::default()
            .bind(&mut params, "id", &listener.id)
            .bind(&mut params, "run_id", &listener.run_id)
            .bind(&mut params, "kind", listener.kind.as_str())
            .bind(&mut params, "step_key", listener.step_key.clone())
            .bind(&mut params, "event_name", &listener.event_name)
            .bind(&mut params, "match_path", listener.match_path.clone())
            .bind(&mut params, "match_value", listener.match_value.clone())
            .bind(&mut params, "condition", listener.condition.clone())
            .bind(&mut params, "expires_at", listener.expires_at);
        let sql = format!(
            "INSERT INTO listeners ({}) VALUES ({})",
            row.names(),
            row.values()
        );
        self.execute(&sql, params.into_args()).await?;
        Ok(())
    }

    /// Every listener for events named `event_name`; one with a condition comes with its
    /// run's own event, which the condition reads.
    pub(crate) async fn listeners_for(&mut self, event_name: &str) -> Result<Vec<ListenerRow>> {
        self.fetch_all(
            "SELECT l.run_id, l.kind, l.step_key, l.match_path, l.match_value, l.condition, \
             e.name AS own_name, e.data AS own_data FROM listeners l \
             LEFT JOIN runs r ON l.condition IS NOT NULL AND r.id = l.run_id \
             LEFT JOIN events e ON e.id = r.event_id \
             WHERE l.event_name = $1 ORDER BY l.id",
            args![event_name],
        )
        .await
    }

    /// Deletes the run's listeners: those of one waiting step, or all of them when
    /// `step_key` is `None`.
    pub(crate) async fn delete_listeners(
        &mut self,
        run_id: &RunId,
        step_key: Option<&str>,
    ) -> Result<()> {
        match step_key {
            Some(step_key) => {
                self.execute(
                    "DELETE FROM listeners WHERE run_id = $1 AND step_key = $2",
                    args![run_id, step_key],
                )
                .await?
            }
            None => {
                self.execute("DELETE FROM listeners WHERE run_id = $1", args![run_id])
                    .await?
            }
        };
        Ok(())
    }

    /// Completes a waiting step with `output` and queues its run, if the step still
    /// waits; false when it no longer does (timed out, or the run ended).
    pub(crate) async fn resume_waiting_step(
        &mut self,
        run_id: &RunId,
        step_key: &str,
        output: &str,
        now: i64,
    ) -> Result<bool> {
        let done = self
            .execute(
                "UPDATE steps SET status = 'completed', output = $3, ended_at = $4 \
                 WHERE run_id = $1 AND step_key = $2 AND status = 'waiting'",
                args![run_id, step_key, output, now],
            )
            .await?;
        if done == 0 {
            return Ok(false);
        }
        self.delete_listeners(run_id, Some(step_key)).await?;
        self.execute(
            "UPDATE runs SET status = 'queued', run_at = $2, due_at = $2, updated_at = $2 \
             WHERE id = $1 AND status = 'waiting'",
            args![run_id, now],
        )
        .await?;
        Ok(true)
    }

    /// Cancels a run that has not ended: it is never claimed again, and a worker running
    /// it stops at its next step boundary (its lease is gone). Frees its concurrency slot
    /// and its listeners. False when the run had already ended.
    pub(crate) async fn cancel_run(
        &mut self,
        run_id: &RunId,
        reason: &str,
        now: i64,
    ) -> Result<bool> {
        let cancelled = self
            .execute(
                "UPDATE runs SET status = 'cancelled', error = $2, ended_at = $3, updated_at = $3, \
                 due_at = NULL, lease_owner = NULL, lease_expires_at = NULL \
                 WHERE id = $1 AND status IN ('queued', 'pending', 'running', 'sleeping', 'waiting')",
                args![run_id, reason, now],
            )
            .await?;
        if cancelled == 0 {
            return Ok(false);
        }
        self.delete_listeners(run_id, None).await?;
        self.release_slot(run_id, now).await?;
        Ok(true)
    }

    /// Ends a waiting step with no result, provided it still waits and `owner` holds the
    /// run; false when an event completed it first or the run is no longer ours.
    pub(crate) async fn time_out_waiting_step(
        &mut self,
        run_id: &RunId,
        owner: &str,
        step_key: &str,
        now: i64,
    ) -> Result<bool> {
        let ended = self
            .execute(
                "UPDATE steps SET status = 'completed', output = 'null', ended_at = $4 \
                 WHERE run_id = $1 AND step_key = $3 AND status = 'waiting' AND EXISTS \
                 (SELECT 1 FROM runs WHERE id = $1 AND lease_owner = $2 AND status = 'running')",
                args![run_id, owner, step_key, now],
            )
            .await?;
        Ok(ended == 1)
    }
}
