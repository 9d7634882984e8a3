//! The daily rollup: a cron function that, shortly after midnight UTC, recomputes
//! `daily_reports` (revenue and failed payments per day and currency) from the business
//! tables.
//!
//! Each run recomputes the day that just ended and the current day so far, and every
//! earlier day that may be out of date: days whose payments changed since the last
//! rollup, and days whose failure count differs from the stored one. A missed tick fires
//! only once after downtime; that one run still fills every day the downtime left behind.
//! Rows are upserted in one transactional step, so a run or a replay of it writes each
//! day's rows once, and running it again only recomputes the same numbers.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::reports::{self, Day};
use crate::engine::{Ctx, Function, Interrupt, Trigger, system_now_ms};

/// The rollup's function id.
pub const FUNCTION_ID: &str = "daily-revenue-rollup";

/// Five minutes past midnight UTC, every day.
pub const SCHEDULE: &str = "5 0 * * *";

const ROLLUP_STEP: &str = "rollup-days";

/// How far before the last rollup a payment change is still looked at: a payment written
/// by a transaction that committed just after the last rollup read the tables.
const LOOKBACK_MS: i64 = 15 * 60 * 1000;

/// What a rollup run did, as its output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollupSummary {
    /// The days recomputed, `YYYY-MM-DD`, in order.
    pub days: Vec<String>,
    /// How many report rows those days have now.
    pub rows: usize,
}

/// The days every run recomputes for a tick at `tick_ms`: the day that just ended and
/// the current one.
pub fn days_for_tick(tick_ms: i64) -> [Day; 2] {
    let today = Day::of_millis(tick_ms);
    [today.previous(), today]
}

/// The rollup function, triggered by [`SCHEDULE`].
pub fn function() -> Function {
    let trigger = match Trigger::cron(SCHEDULE) {
        Ok(trigger) => trigger,
        Err(err) => unreachable!("the rollup schedule is a valid cron expression: {err}"),
    };
    Function::new(FUNCTION_ID, trigger, rollup)
}

async fn rollup(ctx: Ctx) -> Result<RollupSummary, Interrupt> {
    let tick = ctx.event.data["tick"].as_i64().unwrap_or(ctx.event.ts);
    let summary = ctx
        .step
        .run_tx(ROLLUP_STEP, move |tx| {
            Box::pin(async move {
                // The wall clock, as the business tables' updated_at is.
                let computed_at = system_now_ms();
                let since = reports::last_computed_at(tx)
                    .await?
                    .map(|at| at - LOOKBACK_MS);
                let mut days: BTreeSet<Day> = reports::stale_days(tx, since).await?;
                days.extend(days_for_tick(tick));
                let mut rows = 0;
                for day in &days {
                    rows += reports::recompute_day(tx, *day, computed_at).await?;
                }
                Ok(RollupSummary {
                    days: days.iter().map(Day::to_string).collect(),
                    rows,
                })
            })
        })
        .await?;
    tracing::info!(
        days = summary.days.len(),
        rows = summary.rows,
        "daily reports rolled up"
    );
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;
    use crate::engine::Schedule;

    fn ms(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339)
            .expect("time")
            .timestamp_millis()
    }

    fn days(tick: &str) -> [String; 2] {
        days_for_tick(ms(tick)).map(|d| d.to_string())
    }

    #[test]
    fn a_tick_recomputes_the_day_that_ended_and_the_current_one() {
        assert_eq!(days("2026-11-23T00:05:00Z"), ["2026-11-22", "2026-11-23"]);
        assert_eq!(days("2026-11-23T00:00:00Z"), ["2026-11-22", "2026-11-23"]);
        assert_eq!(
            days("2026-11-22T23:59:59.999Z"),
            ["2026-11-21", "2026-11-22"]
        );
        assert_eq!(days("2027-01-01T00:05:00Z"), ["2026-12-31", "2027-01-01"]);
        assert_eq!(days("2028-03-01T00:05:00Z"), ["2028-02-29", "2028-03-01"]);
    }

    #[test]
    fn the_schedule_fires_five_minutes_after_midnight_utc() {
        let schedule = Schedule::parse(SCHEDULE, None).expect("schedule");
        assert_eq!(
            schedule.next_after(ms("2026-11-22T13:00:00Z")),
            Some(ms("2026-11-23T00:05:00Z"))
        );
        assert_eq!(
            schedule.next_after(ms("2026-11-23T00:05:00Z")),
            Some(ms("2026-11-24T00:05:00Z"))
        );
        assert!(matches!(function().trigger(), Trigger::Cron(_)));
    }
}
