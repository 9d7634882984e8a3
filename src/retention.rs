//! Retention: how long the journal keeps what ended, and the daily cron function that
//! deletes the rest in batches.
//!
//! What goes is decided by [`StoreTx::prune_batch`](crate::store::StoreTx::prune_batch):
//! runs that ended (completed, failed, cancelled) before the cutoff with their steps and
//! status history, webhook deliveries that ended before it with their attempts, events
//! left without runs (a Stripe event keeps its id, so a redelivery is still a
//! duplicate), and expired dashboard sessions. Business tables are never touched.

use std::fmt;

use crate::engine::{Ctx, Function, Interrupt, Trigger};
use crate::store::{self, Pruned, Store, Write};

/// The retention function's id.
pub const FUNCTION_ID: &str = "journal-retention";

/// 03:30 UTC every day.
pub const SCHEDULE: &str = "30 3 * * *";

/// Days kept unless `PAYSTEPS_RETENTION_DAYS` says otherwise.
pub const DEFAULT_DAYS: u32 = 30;

/// Rows of each kind deleted per transaction: small enough that no lock is held long.
pub const BATCH_SIZE: i64 = 1000;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

const BATCH_STEP: &str = "prune-batch";

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
    loop {
        let batch: Pruned = ctx
            .step
            .run_tx(BATCH_STEP, move |tx| {
                Box::pin(async move { Ok(tx.prune_batch(cutoff, now, BATCH_SIZE).await?) })
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
    loop {
        let batch = store
            .write(Write::isolated(), move |tx| {
                Box::pin(async move { tx.prune_batch(cutoff, now_ms, BATCH_SIZE).await })
            })
            .await?;
        if batch.is_empty() {
            return Ok(total);
        }
        total += batch;
    }
}

/// What [`prune`] would delete at `now_ms`, deleting nothing.
pub async fn prunable(store: &Store, retention: Retention, now_ms: i64) -> store::Result<Pruned> {
    store.prunable(retention.cutoff(now_ms), now_ms).await
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
