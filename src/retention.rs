//! Retention: how long the journal keeps what ended, and the daily cron function that
//! deletes the rest in batches.
//!
//! Each owner of tables prunes its own, and this module drives them in order, each batch
//! a write (a transactional step) of its own:
//!
//! 1. [`webhooks::repo::prune_batch`]: outgoing webhook deliveries that ended before the
//!    cutoff with their attempts, and business events left without deliveries;
//! 2. [`StoreTx::prune_journal`](crate::store::StoreTx::prune_journal): runs that ended
//!    (completed, failed, cancelled) before the cutoff with their steps and status
//!    history, events left without runs (a Stripe event keeps its id, so a redelivery is
//!    still a duplicate), old function statistics, and expired dashboard sessions.
//!
//! An engine event that a business event still refers to stays: the store is handed
//! [`webhooks::repo::ENGINE_EVENT_HOLD`] and keeps every event a row of `webhook_events`
//! names. The webhook tables go first so that the events their business events held go
//! in the same prune. Business tables and webhook endpoints are never touched.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::engine::{Ctx, Function, Interrupt, Trigger};
use crate::store::{self, EventHold, JournalPruned, Store, Write};
use crate::webhooks::repo::{self as webhooks, ENGINE_EVENT_HOLD, WebhooksPruned};

/// The retention function's id.
pub const FUNCTION_ID: &str = "journal-retention";

/// 03:30 UTC every day.
pub const SCHEDULE: &str = "30 3 * * *";

/// Days kept unless `PAYSTEPS_RETENTION_DAYS` says otherwise.
pub const DEFAULT_DAYS: u32 = 30;

/// Rows of each kind deleted per transaction: small enough that no lock is held long.
pub const BATCH_SIZE: i64 = 1000;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// The step of one batch of the engine's tables.
const BATCH_STEP: &str = "prune-batch";

/// The step of one batch of the outgoing webhook tables.
const WEBHOOKS_STEP: &str = "prune-webhooks";

/// The tables outside the engine's whose rows keep events.
const HOLDS: [EventHold; 1] = [ENGINE_EVENT_HOLD];

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

impl From<JournalPruned> for Pruned {
    fn from(journal: JournalPruned) -> Pruned {
        let JournalPruned {
            runs,
            steps,
            history,
            events,
            payloads,
            sessions,
            statistics,
        } = journal;
        Pruned {
            runs,
            steps,
            history,
            events,
            payloads,
            sessions,
            statistics,
            ..Pruned::default()
        }
    }
}

impl From<WebhooksPruned> for Pruned {
    fn from(webhooks: WebhooksPruned) -> Pruned {
        let WebhooksPruned {
            deliveries,
            attempts,
            messages,
        } = webhooks;
        Pruned {
            deliveries,
            attempts,
            messages,
            ..Pruned::default()
        }
    }
}

/// How long what ended is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Nothing of the journal is deleted (`PAYSTEPS_RETENTION_DAYS=0`); expired dashboard
    /// sessions still are.
    Forever,
    /// What ended more than this many days ago is deleted (at least 1).
    Days(u32),
}

/// Why a retention setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "PAYSTEPS_RETENTION_DAYS (--retention-days) must be a whole number of days, 0 to keep \
     everything for ever (got '{0}')"
)]
pub struct RetentionError(String);

impl Retention {
    /// Reads a number of days: `30`, or `0` for [`Retention::Forever`]. A negative or
    /// fractional number is refused.
    pub fn parse(value: &str) -> Result<Retention, RetentionError> {
        match value.trim().parse::<u32>() {
            Ok(0) => Ok(Retention::Forever),
            Ok(days) => Ok(Retention::Days(days)),
            Err(_) => Err(RetentionError(value.to_owned())),
        }
    }

    /// What ended before this time (milliseconds since the Unix epoch) goes, at `now_ms`;
    /// `None` when nothing does.
    pub fn cutoff(self, now_ms: i64) -> Option<i64> {
        match self {
            Retention::Forever => None,
            Retention::Days(days) => Some(now_ms.saturating_sub(i64::from(days) * DAY_MS)),
        }
    }
}

impl Default for Retention {
    fn default() -> Self {
        Retention::Days(DEFAULT_DAYS)
    }
}

impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Retention::Forever => f.write_str("kept for ever"),
            Retention::Days(1) => f.write_str("1 day"),
            Retention::Days(days) => write!(f, "{days} days"),
        }
    }
}

/// The daily function that applies `retention`. Each batch is a transactional step, so
/// a run cut short carries on with the next batch, and the cutoff comes from the tick,
/// so a retried run deletes what the first attempt would have.
pub fn function(retention: Retention) -> Function {
    let trigger = match Trigger::cron(SCHEDULE) {
        Ok(trigger) => trigger,
        Err(err) => unreachable!("the retention schedule is a valid cron expression: {err}"),
    };
    Function::new(FUNCTION_ID, trigger, move |ctx| prune_run(ctx, retention))
}

async fn prune_run(ctx: Ctx, retention: Retention) -> Result<Pruned, Interrupt> {
    let now = ctx.event.data["tick"].as_i64().unwrap_or(ctx.event.ts);
    let cutoff = retention.cutoff(now);
    let mut total = Pruned::default();
    if let Some(cutoff) = cutoff {
        loop {
            let batch: Pruned = ctx
                .step
                .run_tx(WEBHOOKS_STEP, move |tx| {
                    Box::pin(async move {
                        Ok(webhooks::prune_batch(tx, cutoff, BATCH_SIZE).await?.into())
                    })
                })
                .await?;
            if batch.is_empty() {
                break;
            }
            total += batch;
        }
    }
    loop {
        let batch: Pruned = ctx
            .step
            .run_tx(BATCH_STEP, move |tx| {
                Box::pin(async move {
                    let batch = tx.prune_journal(cutoff, now, BATCH_SIZE, &HOLDS).await?;
                    Ok(batch.into())
                })
            })
            .await?;
        if batch.is_empty() {
            break;
        }
        total += batch;
    }
    tracing::info!(
        runs = total.runs,
        events = total.events,
        payloads = total.payloads,
        deliveries = total.deliveries,
        sessions = total.sessions,
        statistics = total.statistics,
        "journal pruned"
    );
    Ok(total)
}

/// Deletes, batch after batch, what `retention` lets go at `now_ms`; answers what went.
pub async fn prune(store: &Store, retention: Retention, now_ms: i64) -> store::Result<Pruned> {
    let cutoff = retention.cutoff(now_ms);
    let mut total = Pruned::default();
    if let Some(cutoff) = cutoff {
        loop {
            let batch = store
                .write(Write::isolated(), move |tx| {
                    Box::pin(async move { webhooks::prune_batch(tx, cutoff, BATCH_SIZE).await })
                })
                .await?;
            if batch.is_empty() {
                break;
            }
            total += batch.into();
        }
    }
    loop {
        let batch = store
            .write(Write::isolated(), move |tx| {
                Box::pin(async move { tx.prune_journal(cutoff, now_ms, BATCH_SIZE, &HOLDS).await })
            })
            .await?;
        if batch.is_empty() {
            return Ok(total);
        }
        total += batch.into();
    }
}

/// What [`prune`] would delete at `now_ms`, deleting nothing.
pub async fn prunable(store: &Store, retention: Retention, now_ms: i64) -> store::Result<Pruned> {
    let cutoff = retention.cutoff(now_ms);
    let mut pruned = Pruned::from(store.prunable_journal(cutoff, now_ms, &HOLDS).await?);
    if let Some(cutoff) = cutoff {
        pruned += webhooks::prunable(store, cutoff).await?.into();
    }
    Ok(pruned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Schedule;

    #[test]
    fn days_are_read_and_bad_values_refused() {
        assert_eq!(Retention::parse("30"), Ok(Retention::Days(30)));
        assert_eq!(Retention::parse(" 7 "), Ok(Retention::Days(7)));
        assert_eq!(Retention::parse("0"), Ok(Retention::Forever));
        for bad in ["-1", "1.5", "", "thirty"] {
            let err = Retention::parse(bad).expect_err(bad);
            assert!(err.to_string().contains("0 to keep everything"), "{err}");
        }
        assert_eq!(Retention::default(), Retention::Days(DEFAULT_DAYS));
    }

    #[test]
    fn the_cutoff_is_that_many_days_before_now() {
        let now = 100 * DAY_MS;
        assert_eq!(Retention::Days(30).cutoff(now), Some(70 * DAY_MS));
        assert_eq!(Retention::Days(1).cutoff(now), Some(99 * DAY_MS));
        assert_eq!(Retention::Forever.cutoff(now), None);
        assert!(Retention::Days(u32::MAX).cutoff(now).is_some());
    }

    #[test]
    fn the_function_runs_daily() {
        let schedule = Schedule::parse(SCHEDULE, None).expect("schedule");
        let day = 20_000 * DAY_MS;
        assert_eq!(
            schedule.next_after(day),
            Some(day + 3 * 3_600_000 + 1_800_000)
        );
        assert!(matches!(
            function(Retention::default()).trigger(),
            Trigger::Cron(_)
        ));
    }
}
