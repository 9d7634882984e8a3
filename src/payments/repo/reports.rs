//! The statements behind [`reports`](crate::payments::reports): the aggregates a day's
//! figures are made of, read from the business tables, and the `daily_reports` rows.
//!
//! Days are passed as `[start, end)` in seconds since the Unix epoch, or as the epoch day
//! (`seconds / 86400`) where a statement groups by day.

use crate::args;
use crate::payments::reports::DailyReport;
use crate::store::{Result, Store, StoreTx};

/// The failures a report counts: the first report of each failed payment attempt.
const COUNTED_FAILURES: &str = "kind IN ('payment', 'invoice') AND id = attempt";

/// Refunds that still take the money (not failed or canceled).
const LIVE_REFUNDS: &str = "status NOT IN ('failed', 'canceled')";

/// The times of a payment written since some moment, in seconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct ChangedPayment {
    /// The earliest time an event reported its success.
    pub succeeded_at: Option<i64>,
    /// The `created` of the newest event applied to it.
    pub event_created: i64,
    /// When the charge's refunded figure was last reported.
    pub charge_refunds_as_of: Option<i64>,
}

/// Payments with a known currency written at or after `since_ms`.
pub async fn changed_payments(tx: &mut StoreTx, since_ms: i64) -> Result<Vec<ChangedPayment>> {
    tx.fetch_all(
        "SELECT succeeded_at, event_created, charge_refunds_as_of FROM payments \
         WHERE updated_at >= $1 AND currency IS NOT NULL",
        args![since_ms],
    )
    .await
}

/// The epoch days of refunds written at or after `since_ms`.
pub async fn changed_refund_days(tx: &mut StoreTx, since_ms: i64) -> Result<Vec<i64>> {
    let days: Vec<(i64,)> = tx
        .fetch_all(
            "SELECT DISTINCT created / 86400 FROM refunds WHERE updated_at >= $1",
            args![since_ms],
        )
        .await?;
    Ok(days.into_iter().map(|(n,)| n).collect())
}

/// The epoch days of the balance transactions of disputes written at or after `since_ms`.
pub async fn changed_dispute_fund_days(tx: &mut StoreTx, since_ms: i64) -> Result<Vec<i64>> {
    let days: Vec<(i64,)> = tx
        .fetch_all(
            "SELECT DISTINCT f.created / 86400 FROM dispute_funds f \
             JOIN disputes d ON d.id = f.dispute_id WHERE d.updated_at >= $1",
            args![since_ms],
        )
        .await?;
    Ok(days.into_iter().map(|(n,)| n).collect())
}

/// Counted failures per epoch day and currency: `(epoch day, currency, count)`.
pub async fn counted_failures_per_day(tx: &mut StoreTx) -> Result<Vec<(i64, String, i64)>> {
    tx.fetch_all(
        &format!(
            "SELECT created / 86400, currency, COUNT(*) FROM payment_failures \
             WHERE {COUNTED_FAILURES} AND currency IS NOT NULL \
             GROUP BY created / 86400, currency"
        ),
        vec![],
    )
    .await
}

/// The stored failure count of every report row: `(day, currency, failed_payments)`.
pub async fn stored_failure_counts(tx: &mut StoreTx) -> Result<Vec<(String, String, i64)>> {
    tx.fetch_all(
        "SELECT day, currency, failed_payments FROM daily_reports",
        vec![],
    )
    .await
}

/// When the rollup last wrote a row (milliseconds), if ever.
pub async fn last_computed_at(tx: &mut StoreTx) -> Result<Option<i64>> {
    let row: Option<(Option<i64>,)> = tx
        .fetch_optional("SELECT MAX(computed_at) FROM daily_reports", vec![])
        .await?;
    Ok(row.and_then(|(at,)| at))
}

/// Succeeded payments whose success falls in `[start, end)`, per currency:
/// `(currency, amount, count)`.
pub async fn succeeded_payments(
    tx: &mut StoreTx,
    start: i64,
    end: i64,
) -> Result<Vec<(String, i64, i64)>> {
    tx.fetch_all(
        "SELECT currency, CAST(COALESCE(SUM(amount), 0) AS BIGINT), COUNT(*) FROM payments \
         WHERE status = 'succeeded' AND currency IS NOT NULL \
         AND succeeded_at >= $1 AND succeeded_at < $2 GROUP BY currency",
        args![start, end],
    )
    .await
}

/// Counted failures reported in `[start, end)`, per currency: `(currency, count)`.
pub async fn failed_payments(tx: &mut StoreTx, start: i64, end: i64) -> Result<Vec<(String, i64)>> {
    tx.fetch_all(
        &format!(
            "SELECT currency, COUNT(*) FROM payment_failures \
             WHERE {COUNTED_FAILURES} AND currency IS NOT NULL \
             AND created >= $1 AND created < $2 GROUP BY currency"
        ),
        args![start, end],
    )
    .await
}

/// Money refunded in `[start, end)`, per currency: live refunds made then, plus the part of
/// a charge's refunded figure reported then that no stored refund accounts for.
pub async fn refunded(tx: &mut StoreTx, start: i64, end: i64) -> Result<Vec<(String, i64)>> {
    tx.fetch_all(
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
    .await
}

/// Money disputes withdrew in `[start, end)`, less money they reinstated, per currency.
pub async fn disputed(tx: &mut StoreTx, start: i64, end: i64) -> Result<Vec<(String, i64)>> {
    tx.fetch_all(
        "SELECT currency, CAST(-SUM(amount) AS BIGINT) FROM dispute_funds \
         WHERE created >= $1 AND created < $2 GROUP BY currency",
        args![start, end],
    )
    .await
}

/// The currencies `day` (`YYYY-MM-DD`) has a stored row of.
pub async fn stored_currencies(tx: &mut StoreTx, day: &str) -> Result<Vec<String>> {
    let rows: Vec<(String,)> = tx
        .fetch_all(
            "SELECT currency FROM daily_reports WHERE day = $1",
            args![day],
        )
        .await?;
    Ok(rows.into_iter().map(|(currency,)| currency).collect())
}

/// Removes the row of `day` and `currency`.
pub async fn delete_report(tx: &mut StoreTx, day: &str, currency: &str) -> Result<()> {
    tx.execute(
        "DELETE FROM daily_reports WHERE day = $1 AND currency = $2",
        args![day, currency],
    )
    .await?;
    Ok(())
}

/// Stores `report`, replacing the row of the same day and currency.
pub async fn upsert_report(tx: &mut StoreTx, report: &DailyReport) -> Result<()> {
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
            &report.day,
            &report.currency,
            report.revenue,
            report.payments,
            report.failed_payments,
            report.refunds,
            report.disputed,
            report.net,
            report.computed_at
        ],
    )
    .await?;
    Ok(())
}

/// The stored rows from `from` to `to` (`YYYY-MM-DD`, both included), optionally of one
/// currency, ordered by day then currency.
pub async fn daily_reports(
    store: &Store,
    from: &str,
    to: &str,
    currency: Option<&str>,
) -> Result<Vec<DailyReport>> {
    const COLUMNS: &str = "SELECT day, currency, revenue, payments, failed_payments, refunds, \
                           disputed, net, computed_at FROM daily_reports \
                           WHERE day >= $1 AND day <= $2";
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
