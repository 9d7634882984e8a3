//! The `daily_reports` table: revenue and failed payments per UTC day and currency,
//! recomputed from the business tables by the daily rollup and read by the API.
//!
//! Each figure counts on the UTC day the money moved:
//!
//! - gross revenue: a succeeded payment on the day of `succeeded_at`, the earliest time
//!   an event reported its success (the PaymentIntent's event or the charge itself, not
//!   the Checkout session's completion that may arrive after midnight);
//! - refunds: a refund that is not failed or canceled on the day it was made, and the
//!   part of a charge's refunded figure no stored refund accounts for on the day of that
//!   figure;
//! - disputed: money a dispute withdrew, less money it reinstated, on the day of each
//!   balance transaction;
//! - net: gross − refunds − disputed;
//! - failed payments: one per failed charge attempt (see
//!   [`attempts`](crate::payments::attempts)), on the day of its earliest report. Failed
//!   processing runs are not payments.
//!
//! Amounts stay in the currency's minor unit (zero-decimal currencies such as `jpy` in
//! whole units); only rows that know their currency count.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Days, NaiveDate};
use serde::Serialize;

use crate::args;
use crate::store::{Result, Store, StoreTx};

const SECONDS_PER_DAY: i64 = 86_400;

/// A calendar day in UTC, written `YYYY-MM-DD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(NaiveDate);

/// A day that is not a valid `YYYY-MM-DD` date.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a date written YYYY-MM-DD")]
pub struct InvalidDay(pub String);

impl Day {
    /// The day holding `secs` seconds since the Unix epoch.
    pub fn of_secs(secs: i64) -> Day {
        Day::of_epoch_day(secs.div_euclid(SECONDS_PER_DAY))
    }

    /// The day holding `ms` milliseconds since the Unix epoch.
    pub fn of_millis(ms: i64) -> Day {
        Day::of_secs(ms.div_euclid(1000))
    }

    /// The day `n` days after 1970-01-01 (dates chrono cannot hold are clamped to its range).
    fn of_epoch_day(n: i64) -> Day {
        let date = DateTime::from_timestamp(n.saturating_mul(SECONDS_PER_DAY), 0)
            .map(|t| t.date_naive())
            .unwrap_or(if n < 0 {
                NaiveDate::MIN
            } else {
                NaiveDate::MAX
            });
        Day(date)
    }

    /// The first second of the day (00:00:00 UTC), in seconds since the Unix epoch.
    pub fn start_secs(self) -> i64 {
        self.0
            .and_time(chrono::NaiveTime::MIN)
            .and_utc()
            .timestamp()
    }

    /// The first second of the next day: the day is `start_secs()..end_secs()`.
    pub fn end_secs(self) -> i64 {
        self.start_secs() + SECONDS_PER_DAY
    }

    /// The day before (the same day at the start of chrono's range).
    pub fn previous(self) -> Day {
        Day(self.0.checked_sub_days(Days::new(1)).unwrap_or(self.0))
    }

    /// `n` days earlier (clamped to the start of chrono's range).
    pub fn minus_days(self, n: u64) -> Day {
        Day(self
            .0
            .checked_sub_days(Days::new(n))
            .unwrap_or(NaiveDate::MIN))
    }

    /// How many days `self` is after `earlier` (negative when it is before).
    pub fn days_since(self, earlier: Day) -> i64 {
        (self.0 - earlier.0).num_days()
    }
}

impl FromStr for Day {
    type Err = InvalidDay;

    fn from_str(s: &str) -> std::result::Result<Day, InvalidDay> {
        // Exactly four-digit years, so that the text form sorts as the dates do.
        let well_formed = s.len() == 10 && s.as_bytes()[4] == b'-' && s.as_bytes()[7] == b'-';
        match NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            Ok(date) if well_formed => Ok(Day(date)),
            _ => Err(InvalidDay(s.to_owned())),
        }
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%d"))
    }
}

/// One row of `daily_reports`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct DailyReport {
    /// The UTC day, `YYYY-MM-DD`.
    pub day: String,
    /// The lowercase ISO currency code, as Stripe gives it.
    pub currency: String,
    /// Gross revenue: the sum of the day's succeeded payments, in the currency's minor unit.
    pub revenue: i64,
    /// How many payments succeeded.
    pub payments: i64,
    /// How many payment attempts failed (declined PaymentIntents, failed invoices and
    /// failed asynchronous checkout payments), each attempt once.
    pub failed_payments: i64,
    /// Refunds made that day (pending or succeeded), in the currency's minor unit.
    pub refunds: i64,
    /// Money disputes withdrew that day, less money they reinstated.
    pub disputed: i64,
    /// `revenue − refunds − disputed`.
    pub net: i64,
    /// When the row was last recomputed, in milliseconds since the Unix epoch.
    pub computed_at: i64,
}

/// What one day holds for one currency, before it is stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Totals {
    revenue: i64,
    payments: i64,
    failed_payments: i64,
    refunds: i64,
    disputed: i64,
}

/// The failures a report counts: the first report of each failed payment attempt.
const COUNTED_FAILURES: &str = "kind IN ('payment', 'invoice') AND id = attempt";

/// Refunds that still take the money (not failed or canceled).
const LIVE_REFUNDS: &str = "status NOT IN ('failed', 'canceled')";

/// How many days apart a payment's reported success and its newest event may be for the
/// rollup to look at every day in between.
const MAX_PAYMENT_SPAN_DAYS: i64 = 31;

/// The days (besides the ones a rollup always recomputes) whose stored rows may be out of
/// date, from rows written since `changed_since_ms` (every row when `None`):
///
/// - a changed payment: every day from its `succeeded_at` to its newest event (its
///   success time only moves earlier, and was some event's time), each with the day
///   before, and the day of its charge's refunded figure;
/// - a changed refund: the day it was made;
/// - a changed dispute: the days of its balance transactions;
/// - failures carry no write time, and linking two reports of one attempt can move a
///   count from one day to another: every day whose count differs from the stored one.
pub async fn stale_days(tx: &mut StoreTx, changed_since_ms: Option<i64>) -> Result<BTreeSet<Day>> {
    let since = changed_since_ms.unwrap_or(i64::MIN);
    let mut days = BTreeSet::new();
    let changed: Vec<(Option<i64>, i64, Option<i64>)> = tx
        .fetch_all(
            "SELECT succeeded_at, event_created, charge_refunds_as_of FROM payments \
             WHERE updated_at >= $1 AND currency IS NOT NULL",
            args![since],
        )
        .await?;
    for (succeeded_at, event_created, refunds_as_of) in changed {
        let last = Day::of_secs(event_created);
        let first = Day::of_secs(succeeded_at.unwrap_or(event_created).min(event_created));
        let span = last.days_since(first).clamp(0, MAX_PAYMENT_SPAN_DAYS);
        for back in 0..=span.unsigned_abs() + 1 {
            days.insert(last.minus_days(back));
        }
        days.extend(refunds_as_of.map(Day::of_secs));
    }
    let refunds: Vec<(i64,)> = tx
        .fetch_all(
            "SELECT DISTINCT created / 86400 FROM refunds WHERE updated_at >= $1",
            args![since],
        )
        .await?;
    days.extend(refunds.into_iter().map(|(n,)| Day::of_epoch_day(n)));
    let funds: Vec<(i64,)> = tx
        .fetch_all(
            "SELECT DISTINCT f.created / 86400 FROM dispute_funds f \
             JOIN disputes d ON d.id = f.dispute_id WHERE d.updated_at >= $1",
            args![since],
        )
        .await?;
    days.extend(funds.into_iter().map(|(n,)| Day::of_epoch_day(n)));

    let failures: Vec<(i64, String, i64)> = tx
        .fetch_all(
            &format!(
                "SELECT created / 86400, currency, COUNT(*) FROM payment_failures \
                 WHERE {COUNTED_FAILURES} AND currency IS NOT NULL \
                 GROUP BY created / 86400, currency"
            ),
            vec![],
        )
        .await?;
    let counted: HashMap<(String, String), i64> = failures
        .into_iter()
        .map(|(n, currency, count)| ((Day::of_epoch_day(n).to_string(), currency), count))
        .collect();
    let stored: Vec<(String, String, i64)> = tx
        .fetch_all(
            "SELECT day, currency, failed_payments FROM daily_reports",
            vec![],
        )
        .await?;
    let stored: HashMap<(String, String), i64> = stored
        .into_iter()
        .map(|(day, currency, failed)| ((day, currency), failed))
        .collect();
    let differs = |key: &(String, String), a: Option<&i64>, b: Option<&i64>| {
        (a.copied().unwrap_or(0) != b.copied().unwrap_or(0)).then(|| key.0.clone())
    };
    let moved = counted
        .iter()
        .filter_map(|(key, count)| differs(key, Some(count), stored.get(key)))
        .chain(
            stored
                .iter()
                .filter_map(|(key, count)| differs(key, Some(count), counted.get(key))),
        );
    for day in moved {
        if let Ok(day) = day.parse::<Day>() {
            days.insert(day);
        }
    }
    Ok(days)
}

/// When the rollup last wrote a row (milliseconds), if ever.
pub async fn last_computed_at(tx: &mut StoreTx) -> Result<Option<i64>> {
    let row: Option<(Option<i64>,)> = tx
        .fetch_optional("SELECT MAX(computed_at) FROM daily_reports", vec![])
        .await?;
    Ok(row.and_then(|(at,)| at))
}

/// Recomputes one day from the business tables and stores it: one row per currency
/// with activity, upserted; rows of currencies the day no longer has are removed.
/// Returns how many rows the day has.
pub async fn recompute_day(tx: &mut StoreTx, day: Day, computed_at: i64) -> Result<usize> {
    let (start, end) = (day.start_secs(), day.end_secs());
    let mut totals: BTreeMap<String, Totals> = BTreeMap::new();
    let succeeded: Vec<(String, i64, i64)> = tx
        .fetch_all(
            "SELECT currency, CAST(COALESCE(SUM(amount), 0) AS BIGINT), COUNT(*) FROM payments \
             WHERE status = 'succeeded' AND currency IS NOT NULL \
             AND succeeded_at >= $1 AND succeeded_at < $2 GROUP BY currency",
            args![start, end],
        )
        .await?;
    for (currency, revenue, payments) in succeeded {
        let t = totals.entry(currency).or_default();
        t.revenue = revenue;
        t.payments = payments;
    }
    let failed: Vec<(String, i64)> = tx
        .fetch_all(
            &format!(
                "SELECT currency, COUNT(*) FROM payment_failures \
                 WHERE {COUNTED_FAILURES} AND currency IS NOT NULL \
                 AND created >= $1 AND created < $2 GROUP BY currency"
            ),
            args![start, end],
        )
        .await?;
    for (currency, count) in failed {
        totals.entry(currency).or_default().failed_payments = count;
    }
    let refunded: Vec<(String, i64)> = tx
        .fetch_all(
            &format!(
                "SELECT currency, CAST(SUM(amount) AS BIGINT) FROM ( \
                 SELECT currency, amount FROM refunds WHERE {LIVE_REFUNDS} \
                 AND created >= $1 AND created < $2 \
                 UNION ALL \
                 SELECT currency, refunds_unattributed FROM payments \
                 WHERE refunds_unattributed > 0 AND currency IS NOT NULL \
                 AND charge_refunds_as_of >= $1 AND charge_refunds_as_of < $2 \
                 ) refunded GROUP BY currency"
            ),
            args![start, end],
        )
        .await?;
    for (currency, amount) in refunded {
        totals.entry(currency).or_default().refunds = amount;
    }
    let disputed: Vec<(String, i64)> = tx
        .fetch_all(
            "SELECT currency, CAST(-SUM(amount) AS BIGINT) FROM dispute_funds \
             WHERE created >= $1 AND created < $2 GROUP BY currency",
            args![start, end],
        )
        .await?;
    for (currency, amount) in disputed {
        totals.entry(currency).or_default().disputed = amount;
    }

    let day_text = day.to_string();
    let stored: Vec<(String,)> = tx
        .fetch_all(
            "SELECT currency FROM daily_reports WHERE day = $1",
            args![&day_text],
        )
        .await?;
    for (currency,) in stored {
        if !totals.contains_key(&currency) {
            tx.execute(
                "DELETE FROM daily_reports WHERE day = $1 AND currency = $2",
                args![&day_text, &currency],
            )
            .await?;
        }
    }
    for (currency, t) in &totals {
        tx.execute(
            "INSERT INTO daily_reports \
             (day, currency, revenue, payments, failed_payments, refunds, disputed, net, \
             computed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (day, currency) DO UPDATE SET \
             revenue = excluded.revenue, payments = excluded.payments, \
             failed_payments = excluded.failed_payments, refunds = excluded.refunds, \
             disputed = excluded.disputed, net = excluded.net, \
             computed_at = excluded.computed_at",
            args![
                &day_text,
                currency,
                t.revenue,
                t.payments,
                t.failed_payments,
                t.refunds,
                t.disputed,
                t.revenue - t.refunds - t.disputed,
                computed_at
            ],
        )
        .await?;
    }
    Ok(totals.len())
}

/// The stored rows from `from` to `to` (both included), optionally of one currency,
/// ordered by day then currency.
pub async fn daily_reports(
    store: &Store,
    from: Day,
    to: Day,
    currency: Option<&str>,
) -> Result<Vec<DailyReport>> {
    const COLUMNS: &str = "SELECT day, currency, revenue, payments, failed_payments, refunds, \
                           disputed, net, computed_at FROM daily_reports \
                           WHERE day >= $1 AND day <= $2";
    let (from, to) = (from.to_string(), to.to_string());
    match currency {
        Some(currency) => {
            store
                .fetch_all(
                    &format!("{COLUMNS} AND currency = $3 ORDER BY day, currency"),
                    args![from, to, currency],
                )
                .await
        }
        None => {
            store
                .fetch_all(
                    &format!("{COLUMNS} ORDER BY day, currency"),
                    args![from, to],
                )
                .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339)
            .expect("time")
            .timestamp()
    }

    #[test]
    fn a_day_runs_from_midnight_utc_to_the_next_midnight() {
        let day: Day = "2026-11-22".parse().expect("day");
        assert_eq!(day.start_secs(), secs("2026-11-22T00:00:00Z"));
        assert_eq!(day.end_secs(), secs("2026-11-23T00:00:00Z"));
        assert_eq!(Day::of_secs(secs("2026-11-22T00:00:00Z")), day);
        assert_eq!(Day::of_secs(secs("2026-11-22T23:59:59Z")), day);
        assert_eq!(
            Day::of_secs(secs("2026-11-23T00:00:00Z")).to_string(),
            "2026-11-23"
        );
        assert_eq!(
            Day::of_millis(secs("2026-11-22T23:59:59Z") * 1000 + 999),
            day
        );
        // Offsets other than UTC do not move the day boundary.
        assert_eq!(
            Day::of_secs(secs("2026-11-22T23:30:00-05:00")).to_string(),
            "2026-11-23"
        );
        assert_eq!(Day::of_secs(-1).to_string(), "1969-12-31");
        assert_eq!(Day::of_secs(0).to_string(), "1970-01-01");
    }

    #[test]
    fn days_step_across_months_years_and_leap_days() {
        let day = |s: &str| s.parse::<Day>().expect("day");
        assert_eq!(day("2026-01-01").previous(), day("2025-12-31"));
        assert_eq!(day("2028-03-01").previous(), day("2028-02-29"));
        assert_eq!(day("2027-03-01").previous(), day("2027-02-28"));
        assert_eq!(day("2026-11-22").minus_days(29), day("2026-10-24"));
        assert_eq!(day("2026-12-31").days_since(day("2026-01-01")), 364);
        assert_eq!(day("2026-01-01").days_since(day("2026-12-31")), -364);
        assert_eq!(
            day("2028-02-29").end_secs() - day("2028-02-28").start_secs(),
            2 * SECONDS_PER_DAY
        );
    }

    #[test]
    fn only_well_formed_dates_parse() {
        for bad in [
            "2026-02-30",
            "2026-13-01",
            "2026-1-05",
            "26-11-22",
            "20261122",
            "2026-11-22T00:00:00Z",
            "",
            "+2026-11-22",
            "yesterday",
        ] {
            assert_eq!(bad.parse::<Day>(), Err(InvalidDay(bad.to_owned())), "{bad}");
        }
        assert!("2028-02-29".parse::<Day>().is_ok());
    }
}
