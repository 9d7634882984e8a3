//! The `daily_reports` table: revenue and failed payments per UTC day and currency,
//! recomputed from the business tables by the daily rollup and read by the API.
//!
//! A payment counts on the UTC day of its `event_created` (the newest event applied to it)
//! and only once it has succeeded; a failure counts on the day of its `created`. Only
//! payment and invoice failures count (not failed processing runs), and only rows that
//! know their currency.

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
    /// failed asynchronous checkout payments).
    pub failed_payments: i64,
    /// When the row was last recomputed, in milliseconds since the Unix epoch.
    pub computed_at: i64,
}

/// What one day holds for one currency, before it is stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Totals {
    revenue: i64,
    payments: i64,
    failed_payments: i64,
}

const FAILURE_KINDS: &str = "kind IN ('payment', 'invoice')";

/// The days (besides the ones a rollup always recomputes) whose stored rows may be out of
/// date: days of payments changed since `changed_since_ms` (every day with payments when
/// `None`), each with the day before it, and days whose failure count differs from the
/// stored one (failures are only ever added, and carry no write time of their own).
///
/// A payment's day only moves forward, when a newer event about it arrives; those come
/// close together (a PaymentIntent's success, then its Checkout session's completion), so
/// the day a changed payment may have left is the day before its own.
pub async fn stale_days(tx: &mut StoreTx, changed_since_ms: Option<i64>) -> Result<BTreeSet<Day>> {
    let mut days = BTreeSet::new();
    let changed: Vec<(i64,)> = tx
        .fetch_all(
            "SELECT DISTINCT event_created / 86400 FROM payments \
             WHERE updated_at >= $1 AND currency IS NOT NULL",
            args![changed_since_ms.unwrap_or(i64::MIN)],
        )
        .await?;
    for (n,) in changed {
        let day = Day::of_epoch_day(n);
        days.extend([day.previous(), day]);
    }

    let failures: Vec<(i64, String, i64)> = tx
        .fetch_all(
            &format!(
                "SELECT created / 86400, currency, COUNT(*) FROM payment_failures \
                 WHERE {FAILURE_KINDS} AND currency IS NOT NULL \
                 GROUP BY created / 86400, currency"
            ),
            vec![],
        )
        .await?;
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
    for (n, currency, count) in failures {
        let day = Day::of_epoch_day(n);
        if stored.get(&(day.to_string(), currency)) != Some(&count) {
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
             AND event_created >= $1 AND event_created < $2 GROUP BY currency",
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
                 WHERE {FAILURE_KINDS} AND currency IS NOT NULL \
                 AND created >= $1 AND created < $2 GROUP BY currency"
            ),
            args![start, end],
        )
        .await?;
    for (currency, count) in failed {
        totals.entry(currency).or_default().failed_payments = count;
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
             (day, currency, revenue, payments, failed_payments, computed_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (day, currency) DO UPDATE SET \
             revenue = excluded.revenue, payments = excluded.payments, \
             failed_payments = excluded.failed_payments, computed_at = excluded.computed_at",
            args![
                &day_text,
                currency,
                t.revenue,
                t.payments,
                t.failed_payments,
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
    const COLUMNS: &str = "SELECT day, currency, revenue, payments, failed_payments, \
                           computed_at FROM daily_reports WHERE day >= $1 AND day <= $2";
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
