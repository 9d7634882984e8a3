//! Deleting what retention lets go from the engine's tables: runs that ended before a
//! cutoff with their steps, status history and listeners; events left without runs;
//! function statistics from before the cutoff; expired dashboard sessions.
//!
//! A Stripe event (its dedupe key holds for ever) is not deleted: its payload is dropped
//! and its row kept, so that a redelivery is still answered as a duplicate. A run that has
//! not ended stays however old it is. Tables outside the engine's are pruned by their
//! owners; those whose rows refer to events say so with an [`EventHold`], and an event
//! they still refer to stays.
//!
//! `$1` is the cutoff and `$2` the batch size (or, for sessions, now) in every statement.

use serde::{Deserialize, Serialize};

use super::{Dialect, Result, Store, StoreTx};
use crate::args;

/// How many rows of the engine's tables a prune deleted, or would delete.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalPruned {
    /// Runs that ended before the cutoff.
    pub runs: u64,
    /// Their steps (memoized outputs).
    pub steps: u64,
    /// Their status changes.
    pub history: u64,
    /// Events received before the cutoff and left without runs, deleted.
    pub events: u64,
    /// Stripe events of that kind whose payload was dropped; the id stays for dedupe.
    pub payloads: u64,
    /// Dashboard sessions that expired.
    pub sessions: u64,
    /// Rows of function statistics (counts and duration bins) of buckets before the
    /// cutoff; the dashboard reads the last day only.
    pub statistics: u64,
}

impl JournalPruned {
    /// Whether nothing at all was (or would be) deleted.
    pub fn is_empty(&self) -> bool {
        *self == JournalPruned::default()
    }
}

/// Another owner's table whose rows refer to events by id: retention deletes no event
/// that one of its rows still refers to, and keeps the row of a Stripe event whole.
#[derive(Debug, Clone, Copy)]
pub struct EventHold {
    /// The table.
    pub table: &'static str,
    /// Its column holding an event's id.
    pub column: &'static str,
    /// Which of its rows stay when its owner prunes at the cutoff `$1`: an SQL condition
    /// on the row named by the alias given. What a dry run counts assumes that the
    /// owner's prune ran first, so that only those rows still refer to events.
    pub stays: fn(&str) -> String,
}

impl EventHold {
    /// An event of `e` that one of the hold's rows refers to now.
    fn refers(&self, e: &str) -> String {
        let EventHold { table, column, .. } = self;
        format!("EXISTS (SELECT 1 FROM {table} h WHERE h.{column} = {e}.id)")
    }

    /// An event of `e` that one of the hold's rows refers to once its owner pruned.
    fn keeps(&self, e: &str) -> String {
        let EventHold {
            table,
            column,
            stays,
        } = self;
        format!(
            "EXISTS (SELECT 1 FROM {table} h WHERE h.{column} = {e}.id AND ({}))",
            stays("h")
        )
    }
}

const ENDED: &str = "('completed', 'failed', 'cancelled')";

/// A run of `r` that ended before the cutoff. It was created before it too, which lets
/// `runs_created` find it: an index on `ended_at` would cost every run's end a write.
fn run_ended(r: &str) -> String {
    format!("{r}.created_at < $1 AND {r}.status IN {ENDED} AND {r}.ended_at < $1")
}

/// A run of `r` that a prune keeps: not ended, or ended since the cutoff.
fn run_kept(r: &str) -> String {
    format!("({r}.status NOT IN {ENDED} OR {r}.ended_at IS NULL OR {r}.ended_at >= $1)")
}

/// A run that goes: ended before the cutoff, and no replay of it stays.
fn run_goes(r: &str) -> String {
    format!(
        "{} AND NOT EXISTS (SELECT 1 FROM runs x WHERE x.replay_of = {r}.id AND {})",
        run_ended(r),
        run_kept("x")
    )
}

/// A whole event of `e` received before the cutoff that no surviving run, nor any row
/// that stays of the `holds`, needs.
fn event_goes(e: &str, holds: &[EventHold]) -> String {
    let mut sql = format!(
        "{e}.pruned_at IS NULL AND {e}.received_at < $1 \
         AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.event_id = {e}.id AND NOT ({}))",
        run_goes("r")
    );
    for hold in holds {
        sql.push_str(&format!(" AND NOT {}", hold.keeps(e)));
    }
    sql
}

/// The rows of a JSON array of ids bound as `$n`, for `id IN (…)`.
pub(crate) fn ids(dialect: Dialect, n: usize) -> String {
    match dialect {
        Dialect::Sqlite => format!("SELECT value FROM json_each(${n})"),
        Dialect::Postgres => format!("SELECT jsonb_array_elements_text(${n}::jsonb)"),
    }
}

impl StoreTx {
    /// Deletes one batch of at most `limit` rows of each kind of the engine's tables (runs
    /// with all their rows, events, statistics, sessions) that ended before `cutoff`,
    /// keeping every event a row of the `holds` refers to; `None` keeps the journal and
    /// deletes only sessions expired at `now`. Repeat until it answers
    /// [`JournalPruned::is_empty`].
    pub(crate) async fn prune_journal(
        &mut self,
        cutoff: Option<i64>,
        now: i64,
        limit: i64,
        holds: &[EventHold],
    ) -> Result<JournalPruned> {
        let mut pruned = JournalPruned::default();
        if let Some(cutoff) = cutoff {
            self.prune_runs(cutoff, limit, &mut pruned).await?;
            self.prune_events(cutoff, now, limit, holds, &mut pruned)
                .await?;
            for table in ["function_stats", "function_durations"] {
                pruned.statistics += self
                    .execute(
                        &format!(
                            "DELETE FROM {table} WHERE bucket IN (SELECT DISTINCT bucket \
                             FROM {table} WHERE bucket < $1 ORDER BY bucket LIMIT $2)"
                        ),
                        args![cutoff, limit],
                    )
                    .await?;
            }
        }
        pruned.sessions = self.prune_sessions(now, limit).await?;
        Ok(pruned)
    }

    /// [`prune_journal`](StoreTx::prune_journal) with no table outside the engine's
    /// referring to events: for tests of the engine's own pruning.
    #[doc(hidden)]
    pub async fn prune_batch(
        &mut self,
        cutoff: Option<i64>,
        now: i64,
        limit: i64,
    ) -> Result<JournalPruned> {
        self.prune_journal(cutoff, now, limit, &[]).await
    }

    async fn prune_runs(
        &mut self,
        cutoff: i64,
        limit: i64,
        pruned: &mut JournalPruned,
    ) -> Result<()> {
        // A run a surviving run replays stays until that one goes: `replay_of` refers to it.
        let runs: Vec<(String,)> = self
            .fetch_all(
                &format!(
                    "SELECT r.id FROM runs r WHERE {} AND NOT EXISTS \
                     (SELECT 1 FROM runs x WHERE x.replay_of = r.id) ORDER BY r.created_at LIMIT $2",
                    run_ended("r")
                ),
                args![cutoff, limit],
            )
            .await?;
        if runs.is_empty() {
            return Ok(());
        }
        let list = id_list(runs);
        let within = ids(self.dialect(), 1);
        pruned.steps = self
            .execute(
                &format!("DELETE FROM steps WHERE run_id IN ({within})"),
                args![&list],
            )
            .await?;
        pruned.history = self
            .execute(
                &format!("DELETE FROM run_history WHERE run_id IN ({within})"),
                args![&list],
            )
            .await?;
        self.execute(
            &format!("DELETE FROM listeners WHERE run_id IN ({within})"),
            args![&list],
        )
        .await?;
        pruned.runs = self
            .execute(
                &format!("DELETE FROM runs WHERE id IN ({within})"),
                args![&list],
            )
            .await?;
        Ok(())
    }

    async fn prune_events(
        &mut self,
        cutoff: i64,
        now: i64,
        limit: i64,
        holds: &[EventHold],
        pruned: &mut JournalPruned,
    ) -> Result<()> {
        let held: String = holds
            .iter()
            .map(|hold| format!(" AND NOT {}", hold.refers("e")))
            .collect();
        let events: Vec<(String, Option<String>)> = self
            .fetch_all(
                &format!(
                    "SELECT e.id, e.dedupe_key FROM events e WHERE e.pruned_at IS NULL \
                     AND e.received_at < $1 \
                     AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.event_id = e.id){held} \
                     ORDER BY e.received_at LIMIT $2"
                ),
                args![cutoff, limit],
            )
            .await?;
        let (kept, gone): (Vec<_>, Vec<_>) = events.into_iter().partition(|(_, key)| key.is_some());
        let within = ids(self.dialect(), 1);
        // Checked again as they go: a run may have been started on one since (a replay).
        let unused = "NOT EXISTS (SELECT 1 FROM runs r WHERE r.event_id = events.id)";
        if !gone.is_empty() {
            let list = id_list(gone.into_iter().map(|(id, _)| (id,)).collect());
            pruned.events = self
                .execute(
                    &format!("DELETE FROM events WHERE id IN ({within}) AND {unused}"),
                    args![&list],
                )
                .await?;
        }
        if !kept.is_empty() {
            let list = id_list(kept.into_iter().map(|(id, _)| (id,)).collect());
            pruned.payloads = self
                .execute(
                    &format!(
                        "UPDATE events SET data = 'null', pruned_at = $2 \
                         WHERE id IN ({within}) AND {unused}"
                    ),
                    args![&list, now],
                )
                .await?;
        }
        Ok(())
    }
}

impl Store {
    /// What [`StoreTx::prune_journal`], repeated until nothing is left after the owners of
    /// the `holds` pruned theirs, would delete for `cutoff` and `now`; deletes nothing. A
    /// run replayed by a replay that is itself replayed by a surviving run may be counted
    /// although it stays.
    pub(crate) async fn prunable_journal(
        &self,
        cutoff: Option<i64>,
        now: i64,
        holds: &[EventHold],
    ) -> Result<JournalPruned> {
        let sessions = self
            .count(
                "SELECT COUNT(*) FROM dashboard_sessions WHERE expires_at <= $1",
                args![now],
            )
            .await?;
        let mut pruned = JournalPruned {
            sessions: as_count(sessions),
            ..JournalPruned::default()
        };
        let Some(cutoff) = cutoff else {
            return Ok(pruned);
        };
        let count =
            |sql: String| async move { self.count(&sql, args![cutoff]).await.map(as_count) };
        pruned.runs = count(format!(
            "SELECT COUNT(*) FROM runs r WHERE {}",
            run_goes("r")
        ))
        .await?;
        pruned.steps = count(format!(
            "SELECT COUNT(*) FROM steps s JOIN runs r ON r.id = s.run_id WHERE {}",
            run_goes("r")
        ))
        .await?;
        pruned.history = count(format!(
            "SELECT COUNT(*) FROM run_history h JOIN runs r ON r.id = h.run_id WHERE {}",
            run_goes("r")
        ))
        .await?;
        pruned.events = count(format!(
            "SELECT COUNT(*) FROM events e WHERE e.dedupe_key IS NULL AND {}",
            event_goes("e", holds)
        ))
        .await?;
        pruned.payloads = count(format!(
            "SELECT COUNT(*) FROM events e WHERE e.dedupe_key IS NOT NULL AND {}",
            event_goes("e", holds)
        ))
        .await?;
        for table in ["function_stats", "function_durations"] {
            pruned.statistics +=
                count(format!("SELECT COUNT(*) FROM {table} WHERE bucket < $1")).await?;
        }
        Ok(pruned)
    }
}

/// The ids as a JSON array, bound as one text parameter for [`ids`].
pub(crate) fn id_list(rows: Vec<(String,)>) -> String {
    serde_json::Value::from(rows.into_iter().map(|(id,)| id).collect::<Vec<_>>()).to_string()
}

/// A `COUNT(*)` as a count of rows.
pub(crate) fn as_count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}
