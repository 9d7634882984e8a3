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

use crate::payments::repo::reports::{self as repo, ChangedPayment};
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
    for payment in repo::changed_payments(tx, since).await? {
        days.extend(payment_days(&payment));
    }
    let refunds = repo::changed_refund_days(tx, since).await?;
    days.extend(refunds.into_iter().map(Day::of_epoch_day));
    let funds = repo::changed_dispute_fund_days(tx, since).await?;
    days.extend(funds.into_iter().map(Day::of_epoch_day));

    let counted = repo::counted_failures_per_day(tx).await?;
    let stored = repo::stored_failure_counts(tx).await?;
    days.extend(failure_count_changes(counted, stored));
    Ok(days)
}

/// The days a changed payment's figures may have moved on.
fn payment_days(payment: &ChangedPayment) -> Vec<Day> {
    let event_created = payment.event_created;
    let last = Day::of_secs(event_created);
    let first = Day::of_secs(
        payment
            .succeeded_at
            .unwrap_or(event_created)
            .min(event_created),
    );
    let span = last.days_since(first).clamp(0, MAX_PAYMENT_SPAN_DAYS);
    let mut days: Vec<Day> = (0..=span.unsigned_abs() + 1)
        .map(|back| last.minus_days(back))
        .collect();
    days.extend(payment.charge_refunds_as_of.map(Day::of_secs));
    days
}

/// The days whose counted failures (`(epoch day, currency, count)`) differ from the stored
/// rows' (`(day, currency, count)`), in either direction.
fn failure_count_changes(
    counted: Vec<(i64, String, i64)>,
    stored: Vec<(String, String, i64)>,
) -> BTreeSet<Day> {
    let counted: HashMap<(String, String), i64> = counted
        .into_iter()
        .map(|(n, currency, count)| ((Day::of_epoch_day(n).to_string(), currency), count))
        .collect();
    let stored: HashMap<(String, String), i64> = stored
        .into_iter()
        .map(|(day, currency, failed)| ((day, currency), failed))
        .collect();
    let differs = |key: &(String, String), a: Option<&i64>, b: Option<&i64>| {
        (a.copied().unwrap_or(0) != b.copied().unwrap_or(0)).then(|| key.0.clone())
    };
    counted
        .iter()
        .filter_map(|(key, count)| differs(key, Some(count), stored.get(key)))
        .chain(
            stored
                .iter()
                .filter_map(|(key, count)| differs(key, Some(count), counted.get(key))),
        )
        .filter_map(|day| day.parse::<Day>().ok())
        .collect()
}

/// When the rollup last wrote a row (milliseconds), if ever.
pub async fn last_computed_at(tx: &mut StoreTx) -> Result<Option<i64>> {
    repo::last_computed_at(tx).await
}

/// Recomputes one day from the business tables and stores it: one row per currency
/// with activity, upserted; rows of currencies the day no longer has are removed.
/// Returns how many rows the day has.
pub async fn recompute_day(tx: &mut StoreTx, day: Day, computed_at: i64) -> Result<usize> {
    let (start, end) = (day.start_secs(), day.end_secs());
    let mut totals: BTreeMap<String, Totals> = BTreeMap::new();
    for (currency, revenue, payments) in repo::succeeded_payments(tx, start, end).await? {
        let t = totals.entry(currency).or_default();
        t.revenue = revenue;
        t.payments = payments;
    }
    for (currency, count) in repo::failed_payments(tx, start, end).await? {
        totals.entry(currency).or_default().failed_payments = count;
    }
    for (currency, amount) in repo::refunded(tx, start, end).await? {
        totals.entry(currency).or_default().refunds = amount;
    }
    for (currency, amount) in repo::disputed(tx, start, end).await? {
        totals.entry(currency).or_default().disputed = amount;
    }

    let day_text = day.to_string();
    for currency in repo::stored_currencies(tx, &day_text).await? {
        if !totals.contains_key(&currency) {
            repo::delete_report(tx, &day_text, &currency).await?;
        }
    }
    for (currency, t) in &totals {
        let report = t.report(&day_text, currency, computed_at);
        repo::upsert_report(tx, &report).await?;
    }
    Ok(totals.len())
}

impl Totals {
    /// The stored row these totals make for `day` and `currency`.
    fn report(&self, day: &str, currency: &str, computed_at: i64) -> DailyReport {
        DailyReport {
            day: day.to_owned(),
            currency: currency.to_owned(),
            revenue: self.revenue,
            payments: self.payments,
            failed_payments: self.failed_payments,
            refunds: self.refunds,
            disputed: self.disputed,
            net: self.revenue - self.refunds - self.disputed,
            computed_at,
        }
    }
}

/// The stored rows from `from` to `to` (both included), optionally of one currency,
/// ordered by day then currency.
pub async fn daily_reports(
    store: &Store,
    from: Day,
    to: Day,
    currency: Option<&str>,
) -> Result<Vec<DailyReport>> {
    repo::daily_reports(store, &from.to_string(), &to.to_string(), currency).await
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

    #[test]
    fn a_changed_payment_marks_every_day_its_figures_may_have_moved_on() {
        let day = |s: &str| s.parse::<Day>().expect("day");
        let days = payment_days(&ChangedPayment {
            succeeded_at: Some(secs("2026-11-20T10:00:00Z")),
            event_created: secs("2026-11-22T10:00:00Z"),
            charge_refunds_as_of: Some(secs("2026-11-25T10:00:00Z")),
        });
        let days: BTreeSet<Day> = days.into_iter().collect();
        let expected: BTreeSet<Day> = [
            "2026-11-19",
            "2026-11-20",
            "2026-11-21",
            "2026-11-22",
            "2026-11-25",
        ]
        .into_iter()
        .map(day)
        .collect();
        assert_eq!(days, expected);

        // A success reported after the newest event (clock skew) looks at the event's day
        // and the one before it only.
        let skewed = payment_days(&ChangedPayment {
            succeeded_at: Some(secs("2026-11-23T10:00:00Z")),
            event_created: secs("2026-11-22T10:00:00Z"),
            charge_refunds_as_of: None,
        });
        assert_eq!(skewed, vec![day("2026-11-22"), day("2026-11-21")]);
    }

    #[test]
    fn failure_counts_that_moved_mark_their_days_both_ways() {
        let epoch_day = |s: &str| s.parse::<Day>().expect("day").start_secs() / SECONDS_PER_DAY;
        let counted = vec![
            (epoch_day("2026-11-20"), "usd".to_owned(), 2),
            (epoch_day("2026-11-21"), "usd".to_owned(), 1),
            (epoch_day("2026-11-21"), "eur".to_owned(), 1),
        ];
        let stored = vec![
            ("2026-11-20".to_owned(), "usd".to_owned(), 2),
            ("2026-11-21".to_owned(), "usd".to_owned(), 2),
            ("2026-11-22".to_owned(), "usd".to_owned(), 1),
            ("2026-11-23".to_owned(), "usd".to_owned(), 0),
        ];
        let days: Vec<String> = failure_count_changes(counted, stored)
            .iter()
            .map(Day::to_string)
            .collect();
        // The 20th agrees; the 21st differs (and has a new currency); the 22nd lost its
        // failures; a stored zero with nothing counted agrees.
        assert_eq!(days, ["2026-11-21", "2026-11-22"]);
    }
}
