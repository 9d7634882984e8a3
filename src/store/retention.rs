//! Deleting what retention lets go: runs that ended before a cutoff with their steps,
//! status history and listeners; outgoing webhook deliveries and attempts that ended
//! before it, and business events left without deliveries; events left without runs;
//! expired dashboard sessions.
//!
//! A Stripe event (its dedupe key holds for ever) is not deleted: its payload is dropped
//! and its row kept, so that a redelivery is still answered as a duplicate. Business
//! tables are never touched, and a run that has not ended stays however old it is.
//!
//! `$1` is the cutoff and `$2` the batch size (or, for sessions, now) in every statement.

use serde::{Deserialize, Serialize};

use super::{Dialect, Result, Store, StoreTx};
use crate::args;

/// How many rows of each kind a prune deleted, or would delete.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pruned {
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
    /// Outgoing webhook deliveries that ended before the cutoff.
    pub deliveries: u64,
    /// Their attempts.
    pub attempts: u64,
    /// Business events made before the cutoff and left without deliveries.
    pub messages: u64,
    /// Dashboard sessions that expired.
    pub sessions: u64,
    /// Rows of function statistics (counts and duration bins) of buckets before the
    /// cutoff; the dashboard reads the last day only.
    pub statistics: u64,
}

impl Pruned {
    /// Whether nothing at all was (or would be) deleted.
    pub fn is_empty(&self) -> bool {
        *self == Pruned::default()
    }

    /// Every kind with its count, in the order an operator reads them.
    pub fn kinds(&self) -> [(&'static str, u64); 10] {
        [
            ("runs", self.runs),
            ("steps", self.steps),
            ("status changes", self.history),
            ("events", self.events),
            ("event payloads", self.payloads),
            ("webhook deliveries", self.deliveries),
            ("webhook attempts", self.attempts),
            ("webhook messages", self.messages),
            ("dashboard sessions", self.sessions),
            ("function statistics", self.statistics),
        ]
    }
}

impl std::ops::AddAssign for Pruned {
    fn add_assign(&mut self, other: Pruned) {
        self.runs += other.runs;
        self.steps += other.steps;
        self.history += other.history;
        self.events += other.events;
        self.payloads += other.payloads;
        self.deliveries += other.deliveries;
        self.attempts += other.attempts;
        self.messages += other.messages;
        self.sessions += other.sessions;
        self.statistics += other.statistics;
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

/// A delivery of `d` that a prune keeps: pending, or ended since the cutoff.
fn delivery_kept(d: &str) -> String {
    format!("({d}.status = 'pending' OR {d}.ended_at IS NULL OR {d}.ended_at >= $1)")
}

/// A business event of `w` that goes once the deliveries that go are gone.
fn message_goes(w: &str) -> String {
    format!(
        "{w}.created_at < $1 AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d \
         WHERE d.event_id = {w}.id AND {})",
        delivery_kept("d")
    )
}

/// A whole event of `e` received before the cutoff that no surviving run or business
/// event needs.
fn event_goes(e: &str) -> String {
    format!(
        "{e}.pruned_at IS NULL AND {e}.received_at < $1 \
         AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.event_id = {e}.id AND NOT ({})) \
         AND NOT EXISTS (SELECT 1 FROM webhook_events w WHERE w.engine_event_id = {e}.id \
         AND NOT ({}))",
        run_goes("r"),
        message_goes("w")
    )
}

/// The rows of a JSON array of ids bound as `$n`.
fn ids(dialect: Dialect, n: usize) -> String {
    match dialect {
        Dialect::Sqlite => format!("SELECT value FROM json_each(${n})"),
        Dialect::Postgres => format!("SELECT jsonb_array_elements_text(${n}::jsonb)"),
    }
}

impl StoreTx {
    /// Deletes one batch of at most `limit` rows of each kind (runs with all their rows,
    /// deliveries with their attempts, business events, events, sessions) that ended
    /// before `cutoff`; `None` keeps the journal and deletes only sessions expired at
    /// `now`. Repeat until it answers [`Pruned::is_empty`].
    #[doc(hidden)]
    pub async fn prune_batch(
        &mut self,
        cutoff: Option<i64>,
        now: i64,
        limit: i64,
    ) -> Result<Pruned> {
        let mut pruned = Pruned::default();
        if let Some(cutoff) = cutoff {
            self.prune_runs(cutoff, limit, &mut pruned).await?;
            self.prune_deliveries(cutoff, limit, &mut pruned).await?;
            pruned.messages = self
                .execute(
                    "DELETE FROM webhook_events WHERE id IN (SELECT w.id FROM webhook_events w \
                     WHERE w.created_at < $1 AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d \
                     WHERE d.event_id = w.id) ORDER BY w.created_at LIMIT $2)",
                    args![cutoff, limit],
                )
                .await?;
            self.prune_events(cutoff, now, limit, &mut pruned).await?;
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

    async fn prune_runs(&mut self, cutoff: i64, limit: i64, pruned: &mut Pruned) -> Result<()> {
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

    async fn prune_deliveries(
        &mut self,
        cutoff: i64,
        limit: i64,
        pruned: &mut Pruned,
    ) -> Result<()> {
        let deliveries: Vec<(String,)> = self
            .fetch_all(
                "SELECT id FROM webhook_deliveries WHERE status <> 'pending' AND ended_at < $1 \
                 ORDER BY ended_at LIMIT $2",
                args![cutoff, limit],
            )
            .await?;
        if deliveries.is_empty() {
            return Ok(());
        }
        let list = id_list(deliveries);
        let within = ids(self.dialect(), 1);
        pruned.attempts = self
            .execute(
                &format!("DELETE FROM webhook_attempts WHERE delivery_id IN ({within})"),
                args![&list],
            )
            .await?;
        pruned.deliveries = self
            .execute(
                &format!("DELETE FROM webhook_deliveries WHERE id IN ({within})"),
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
        pruned: &mut Pruned,
    ) -> Result<()> {
        let events: Vec<(String, Option<String>)> = self
            .fetch_all(
                "SELECT e.id, e.dedupe_key FROM events e WHERE e.pruned_at IS NULL \
                 AND e.received_at < $1 \
                 AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.event_id = e.id) \
                 AND NOT EXISTS (SELECT 1 FROM webhook_events w WHERE w.engine_event_id = e.id) \
                 ORDER BY e.received_at LIMIT $2",
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
    /// What [`StoreTx::prune_batch`], repeated until nothing is left, would delete for
    /// `cutoff` and `now`; deletes nothing. A run replayed by a replay that is itself
    /// replayed by a surviving run may be counted although it stays.
    pub(crate) async fn prunable(&self, cutoff: Option<i64>, now: i64) -> Result<Pruned> {
        let sessions = self
            .count(
                "SELECT COUNT(*) FROM dashboard_sessions WHERE expires_at <= $1",
                args![now],
            )
            .await?;
        let mut pruned = Pruned {
            sessions: as_count(sessions),
            ..Pruned::default()
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
            event_goes("e")
        ))
        .await?;
        pruned.payloads = count(format!(
            "SELECT COUNT(*) FROM events e WHERE e.dedupe_key IS NOT NULL AND {}",
            event_goes("e")
        ))
        .await?;
        pruned.deliveries = count(format!(
            "SELECT COUNT(*) FROM webhook_deliveries d WHERE NOT {}",
            delivery_kept("d")
        ))
        .await?;
        pruned.attempts = count(format!(
            "SELECT COUNT(*) FROM webhook_attempts a JOIN webhook_deliveries d \
             ON d.id = a.delivery_id WHERE NOT {}",
            delivery_kept("d")
        ))
        .await?;
        pruned.messages = count(format!(
            "SELECT COUNT(*) FROM webhook_events w WHERE {}",
            message_goes("w")
        ))
        .await?;
        for table in ["function_stats", "function_durations"] {
            pruned.statistics +=
                count(format!("SELECT COUNT(*) FROM {table} WHERE bucket < $1")).await?;
        }
        Ok(pruned)
    }
}

/// The ids as a JSON array, bound as one text parameter.
fn id_list(rows: Vec<(String,)>) -> String {
    serde_json::Value::from(rows.into_iter().map(|(id,)| id).collect::<Vec<_>>()).to_string()
}

fn as_count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}
