//! The payments read model: payments with their refunds and disputes inline, the most
//! recent refunds, and disputes by status.
//!
//! A payment's `status` is Stripe's, except that a `succeeded` payment some money was
//! refunded from reads `refunded` (all of it) or `partially_refunded` (less than its
//! amount, or an amount paysteps does not know). Filters apply to that status.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::store::{Arg, Result, Store};

/// Rows a list answers when the caller names no limit.
pub const DEFAULT_LIMIT: i64 = 50;
/// The most rows one list answers.
pub const MAX_LIMIT: i64 = 500;

/// A payment's status as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentStatus {
    /// Checkout completed, the money not there yet (a delayed payment method).
    Pending,
    /// The PaymentIntent is processing.
    Processing,
    /// The money is there, nothing refunded.
    Succeeded,
    /// Part of the money was refunded.
    PartiallyRefunded,
    /// All of it was refunded.
    Refunded,
    /// The payment failed.
    Failed,
    /// The PaymentIntent was canceled.
    Canceled,
}

impl PaymentStatus {
    /// Every status, in the order of a payment's life.
    pub const ALL: [PaymentStatus; 7] = [
        PaymentStatus::Pending,
        PaymentStatus::Processing,
        PaymentStatus::Succeeded,
        PaymentStatus::PartiallyRefunded,
        PaymentStatus::Refunded,
        PaymentStatus::Failed,
        PaymentStatus::Canceled,
    ];

    /// The status as the API writes it (`partially_refunded`).
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Pending => "pending",
            PaymentStatus::Processing => "processing",
            PaymentStatus::Succeeded => "succeeded",
            PaymentStatus::PartiallyRefunded => "partially_refunded",
            PaymentStatus::Refunded => "refunded",
            PaymentStatus::Failed => "failed",
            PaymentStatus::Canceled => "canceled",
        }
    }
}

/// A payment status filter that names no [`PaymentStatus`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown payment status '{0}' (expected one of pending, processing, succeeded, \
     partially_refunded, refunded, failed, canceled)"
)]
pub struct UnknownPaymentStatus(pub String);

impl FromStr for PaymentStatus {
    type Err = UnknownPaymentStatus;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        PaymentStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownPaymentStatus(s.to_owned()))
    }
}

impl fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which payments to list; every field set narrows the selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentFilter {
    /// Only payments of this application user.
    pub user: Option<String>,
    /// Only payments of this Stripe customer, `cus_…`.
    pub customer: Option<String>,
    /// Only payments whose status, as the API shows it, is this.
    pub status: Option<PaymentStatus>,
    /// Only payments made at or after this time, in seconds since the Unix epoch: when
    /// the payment succeeded (`succeeded_at`), or, for one that has not, the `created` of
    /// the newest event about it (`event_created`).
    pub since: Option<i64>,
    /// Only payments made before this time, in the same terms as `since`.
    pub until: Option<i64>,
    /// How many payments at most, 1 to [`MAX_LIMIT`] (others mean [`DEFAULT_LIMIT`]).
    pub limit: i64,
}

impl Default for PaymentFilter {
    fn default() -> Self {
        PaymentFilter {
            user: None,
            customer: None,
            status: None,
            since: None,
            until: None,
            limit: DEFAULT_LIMIT,
        }
    }
}

/// A payment, its refunds and its disputes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PaymentView {
    /// Stripe's PaymentIntent id, `pi_…` (the Checkout session's id, `cs_…`, when it has none).
    pub id: String,
    /// The application's user id, if known.
    pub user_id: Option<String>,
    /// Stripe's customer id, `cus_…`.
    pub customer_id: Option<String>,
    /// The amount in the currency's minor unit.
    pub amount: Option<i64>,
    /// Three-letter ISO currency code in lowercase.
    pub currency: Option<String>,
    /// The status as the API shows it: [`PaymentStatus`].
    pub status: String,
    /// The status as Stripe reported it (`succeeded` for a refunded payment).
    pub stripe_status: String,
    /// The Checkout session the payment came through, `cs_…`.
    pub checkout_session_id: Option<String>,
    /// The payment's charge, `ch_…`.
    pub charge_id: Option<String>,
    /// When the payment succeeded, in seconds since the Unix epoch.
    pub succeeded_at: Option<i64>,
    /// How much is refunded now, in the currency's minor unit.
    pub amount_refunded: i64,
    /// Whether any dispute was opened on the payment.
    pub disputed: bool,
    /// Its refunds, oldest first.
    pub refunds: Vec<RefundRow>,
    /// Its disputes, oldest first.
    pub disputes: Vec<DisputeRow>,
    /// `created` of the newest event applied, in seconds since the Unix epoch.
    pub event_created: i64,
    /// When paysteps last wrote the row, in milliseconds since the Unix epoch.
    pub updated_at: i64,
    /// False for test mode.
    pub livemode: bool,
    /// The connected account it belongs to; `None` for the platform.
    pub account: Option<String>,
}

#[derive(sqlx::FromRow)]
struct PaymentRow {
    id: String,
    user_id: Option<String>,
    customer_id: Option<String>,
    amount: Option<i64>,
    currency: Option<String>,
    status: String,
    stripe_status: String,
    checkout_session_id: Option<String>,
    charge_id: Option<String>,
    succeeded_at: Option<i64>,
    amount_refunded: i64,
    event_created: i64,
    updated_at: i64,
    livemode: i64,
    account: Option<String>,
}

/// A refund, as stored in the `refunds` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct RefundRow {
    /// Stripe's Refund id, `re_…`.
    pub id: String,
    /// The payment refunded: its PaymentIntent (the charge when it has none).
    pub payment_id: String,
    /// The charge refunded, `ch_…`.
    pub charge_id: Option<String>,
    /// The amount in the currency's minor unit.
    pub amount: i64,
    /// Three-letter ISO currency code in lowercase.
    pub currency: String,
    /// Stripe's status: `pending`, `requires_action`, `succeeded`, `failed` or `canceled`.
    pub status: String,
    /// Why it was made (`requested_by_customer`, `duplicate`, `fraudulent`…).
    pub reason: Option<String>,
    /// Why it failed, for a failed refund.
    pub failure_reason: Option<String>,
    /// When it was made, in seconds since the Unix epoch.
    pub created: i64,
}

/// A refund with the payment's user and customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct RecentRefund {
    /// The refund.
    #[serde(flatten)]
    #[sqlx(flatten)]
    pub refund: RefundRow,
    /// The payment's application user, if known.
    pub user_id: Option<String>,
    /// The payment's Stripe customer.
    pub customer_id: Option<String>,
}

/// A dispute, as stored in the `disputes` table, with the money it took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct DisputeRow {
    /// Stripe's Dispute id, `dp_…`.
    pub id: String,
    /// The payment disputed: its PaymentIntent (the charge when it has none).
    pub payment_id: String,
    /// The charge disputed, `ch_…`.
    pub charge_id: Option<String>,
    /// The amount disputed, in the currency's minor unit.
    pub amount: i64,
    /// Three-letter ISO currency code in lowercase.
    pub currency: String,
    /// Why the cardholder disputed (`fraudulent`, `product_not_received`…).
    pub reason: Option<String>,
    /// Stripe's status: [`DisputeStatus`].
    pub status: String,
    /// When evidence is due, in seconds since the Unix epoch.
    pub evidence_due_by: Option<i64>,
    /// When the dispute was opened, in seconds since the Unix epoch.
    pub created: i64,
    /// Money the dispute withdrew less money it reinstated, in the dispute's currency's
    /// minor unit: positive while money is taken.
    pub withdrawn: i64,
}

/// Stripe's dispute statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisputeStatus {
    /// An inquiry (not yet a chargeback) waiting for a response.
    WarningNeedsResponse,
    /// An inquiry whose response is under review.
    WarningUnderReview,
    /// An inquiry closed without becoming a chargeback.
    WarningClosed,
    /// A chargeback waiting for evidence.
    NeedsResponse,
    /// A chargeback whose evidence is under review.
    UnderReview,
    /// Decided for the business: the money comes back.
    Won,
    /// Decided for the cardholder: the money stays withdrawn.
    Lost,
    /// Prevented before it became a dispute.
    Prevented,
}

impl DisputeStatus {
    /// Every status, as Stripe lists them.
    pub const ALL: [DisputeStatus; 8] = [
        DisputeStatus::WarningNeedsResponse,
        DisputeStatus::WarningUnderReview,
        DisputeStatus::WarningClosed,
        DisputeStatus::NeedsResponse,
        DisputeStatus::UnderReview,
        DisputeStatus::Won,
        DisputeStatus::Lost,
        DisputeStatus::Prevented,
    ];

    /// The status as Stripe writes it (`needs_response`).
    pub fn as_str(self) -> &'static str {
        match self {
            DisputeStatus::WarningNeedsResponse => "warning_needs_response",
            DisputeStatus::WarningUnderReview => "warning_under_review",
            DisputeStatus::WarningClosed => "warning_closed",
            DisputeStatus::NeedsResponse => "needs_response",
            DisputeStatus::UnderReview => "under_review",
            DisputeStatus::Won => "won",
            DisputeStatus::Lost => "lost",
            DisputeStatus::Prevented => "prevented",
        }
    }

    /// Whether the dispute is still open: waiting for a response or under review.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            DisputeStatus::WarningNeedsResponse
                | DisputeStatus::WarningUnderReview
                | DisputeStatus::NeedsResponse
                | DisputeStatus::UnderReview
        )
    }
}

/// Which disputes to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisputeFilter {
    /// Every open dispute ([`DisputeStatus::is_open`]).
    Open,
    /// Disputes with exactly this status.
    Status(DisputeStatus),
}

impl DisputeFilter {
    fn statuses(self) -> Vec<DisputeStatus> {
        match self {
            DisputeFilter::Open => DisputeStatus::ALL
                .into_iter()
                .filter(|s| s.is_open())
                .collect(),
            DisputeFilter::Status(status) => vec![status],
        }
    }
}

/// A dispute status filter that is neither `open` nor a [`DisputeStatus`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown dispute status '{0}' (expected open, or one of warning_needs_response, \
     warning_under_review, warning_closed, needs_response, under_review, won, lost, prevented)"
)]
pub struct UnknownDisputeStatus(pub String);

impl FromStr for DisputeFilter {
    type Err = UnknownDisputeStatus;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        if s == "open" {
            return Ok(DisputeFilter::Open);
        }
        DisputeStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .map(DisputeFilter::Status)
            .ok_or_else(|| UnknownDisputeStatus(s.to_owned()))
    }
}

/// The status the API shows, from Stripe's status and the amounts.
const DERIVED_STATUS: &str = "CASE WHEN status = 'succeeded' AND amount_refunded > 0 THEN \
     CASE WHEN amount IS NOT NULL AND amount_refunded >= amount THEN 'refunded' \
     ELSE 'partially_refunded' END ELSE status END";

/// When a payment counts as made, for `since`, `until` and the order of the list.
const MADE_AT: &str = "COALESCE(succeeded_at, event_created)";

const REFUND_COLUMNS: &str = "r.id, r.payment_id, r.charge_id, r.amount, r.currency, r.status, r.reason, \
     r.failure_reason, r.created";

const DISPUTE_COLUMNS: &str = "d.id, d.payment_id, d.charge_id, d.amount, d.currency, \
     d.reason, d.status, d.evidence_due_by, d.created, \
     CAST(-COALESCE((SELECT SUM(f.amount) FROM dispute_funds f WHERE f.dispute_id = d.id), 0) \
     AS BIGINT) AS withdrawn";

/// A statement's text and arguments, built clause by clause: `$?` in a clause is its
/// argument's placeholder.
struct Query {
    sql: String,
    args: Vec<Arg>,
}

impl Query {
    fn new(sql: impl Into<String>) -> Query {
        Query {
            sql: sql.into(),
            args: Vec::new(),
        }
    }

    fn push(&mut self, clause: &str, value: impl Into<Arg>) {
        self.args.push(value.into());
        let placeholder = format!("${}", self.args.len());
        self.sql.push_str(&clause.replace("$?", &placeholder));
    }

    /// `column IN (…)` with one placeholder per value.
    fn push_in<T: Into<Arg>>(&mut self, column: &str, values: impl IntoIterator<Item = T>) {
        let mut placeholders = Vec::new();
        for value in values {
            self.args.push(value.into());
            placeholders.push(format!("${}", self.args.len()));
        }
        self.sql
            .push_str(&format!("{column} IN ({})", placeholders.join(", ")));
    }
}

fn page_limit(limit: i64) -> i64 {
    if (1..=MAX_LIMIT).contains(&limit) {
        limit
    } else {
        DEFAULT_LIMIT
    }
}

/// Payments matching `filter`, the most recently made first (by `succeeded_at`, else
/// `event_created`), each with its refunds and disputes: three queries whatever the
/// number of payments.
pub async fn list_payments(store: &Store, filter: &PaymentFilter) -> Result<Vec<PaymentView>> {
    let mut q = Query::new(format!(
        "SELECT id, user_id, customer_id, amount, currency, status, stripe_status, \
         checkout_session_id, charge_id, succeeded_at, amount_refunded, event_created, \
         updated_at, livemode, account FROM (SELECT id, user_id, customer_id, amount, \
         currency, {DERIVED_STATUS} AS status, status AS stripe_status, checkout_session_id, \
         charge_id, succeeded_at, amount_refunded, event_created, updated_at, livemode, \
         account, {MADE_AT} AS made_at FROM payments) p WHERE 1 = 1"
    ));
    if let Some(user) = &filter.user {
        q.push(" AND user_id = $?", user);
    }
    if let Some(customer) = &filter.customer {
        q.push(" AND customer_id = $?", customer);
    }
    if let Some(status) = filter.status {
        q.push(" AND status = $?", status.as_str());
    }
    if let Some(since) = filter.since {
        q.push(" AND made_at >= $?", since);
    }
    if let Some(until) = filter.until {
        q.push(" AND made_at < $?", until);
    }
    q.push(
        " ORDER BY made_at DESC, id DESC LIMIT $?",
        page_limit(filter.limit),
    );
    let rows: Vec<PaymentRow> = store.fetch_all(&q.sql, q.args).await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }

    let ids = || rows.iter().map(|p| p.id.as_str());
    let mut q = Query::new(format!("SELECT {REFUND_COLUMNS} FROM refunds r WHERE "));
    q.push_in("r.payment_id", ids());
    q.sql.push_str(" ORDER BY r.created, r.id");
    let refunds: Vec<RefundRow> = store.fetch_all(&q.sql, q.args).await?;
    let mut q = Query::new(format!("SELECT {DISPUTE_COLUMNS} FROM disputes d WHERE "));
    q.push_in("d.payment_id", ids());
    q.sql.push_str(" ORDER BY d.created, d.id");
    let disputes: Vec<DisputeRow> = store.fetch_all(&q.sql, q.args).await?;

    Ok(rows
        .into_iter()
        .map(|row| {
            let refunds: Vec<RefundRow> = refunds
                .iter()
                .filter(|r| r.payment_id == row.id)
                .cloned()
                .collect();
            let disputes: Vec<DisputeRow> = disputes
                .iter()
                .filter(|d| d.payment_id == row.id)
                .cloned()
                .collect();
            PaymentView {
                disputed: !disputes.is_empty(),
                refunds,
                disputes,
                id: row.id,
                user_id: row.user_id,
                customer_id: row.customer_id,
                amount: row.amount,
                currency: row.currency,
                status: row.status,
                stripe_status: row.stripe_status,
                checkout_session_id: row.checkout_session_id,
                charge_id: row.charge_id,
                succeeded_at: row.succeeded_at,
                amount_refunded: row.amount_refunded,
                event_created: row.event_created,
                updated_at: row.updated_at,
                livemode: row.livemode != 0,
                account: row.account,
            }
        })
        .collect())
}

/// The most recently made refunds, whatever their status, newest first.
pub async fn recent_refunds(store: &Store, limit: i64) -> Result<Vec<RecentRefund>> {
    let mut q = Query::new(format!(
        "SELECT {REFUND_COLUMNS}, p.user_id, p.customer_id FROM refunds r \
         LEFT JOIN payments p ON p.id = r.payment_id ORDER BY r.created DESC, r.id DESC"
    ));
    q.push(" LIMIT $?", page_limit(limit));
    store.fetch_all(&q.sql, q.args).await
}

/// Disputes with a status `status` selects (all of them when `None`). Open disputes come
/// by evidence due date, the soonest first and those without one last; any other
/// selection comes newest first.
pub async fn list_disputes(
    store: &Store,
    status: Option<DisputeFilter>,
    limit: i64,
) -> Result<Vec<DisputeRow>> {
    let mut q = Query::new(format!("SELECT {DISPUTE_COLUMNS} FROM disputes d"));
    let statuses = status.map(DisputeFilter::statuses).unwrap_or_default();
    if !statuses.is_empty() {
        q.sql.push_str(" WHERE ");
        q.push_in("d.status", statuses.iter().map(|s| s.as_str()));
    }
    let by_due_date = !statuses.is_empty() && statuses.iter().all(|s| s.is_open());
    q.sql.push_str(if by_due_date {
        // `IS NULL` is false before true on both backends: dates first, the rest last.
        " ORDER BY (d.evidence_due_by IS NULL), d.evidence_due_by, d.created, d.id"
    } else {
        " ORDER BY d.created DESC, d.id DESC"
    });
    q.push(" LIMIT $?", page_limit(limit));
    store.fetch_all(&q.sql, q.args).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_text() {
        for status in PaymentStatus::ALL {
            assert_eq!(status.as_str().parse::<PaymentStatus>(), Ok(status));
        }
        assert!("refunded ".parse::<PaymentStatus>().is_err());
        for status in DisputeStatus::ALL {
            assert_eq!(
                status.as_str().parse::<DisputeFilter>(),
                Ok(DisputeFilter::Status(status))
            );
        }
        assert_eq!("open".parse::<DisputeFilter>(), Ok(DisputeFilter::Open));
        let err = "closed".parse::<DisputeFilter>().expect_err("not a status");
        assert!(err.to_string().contains("'closed'"), "{err}");
    }

    #[test]
    fn open_means_waiting_for_a_response_or_under_review() {
        let open: Vec<_> = DisputeFilter::Open
            .statuses()
            .into_iter()
            .map(DisputeStatus::as_str)
            .collect();
        assert_eq!(
            open,
            [
                "warning_needs_response",
                "warning_under_review",
                "needs_response",
                "under_review"
            ]
        );
    }

    #[test]
    fn clauses_number_their_placeholders_in_order() {
        let mut q = Query::new("SELECT 1 FROM t WHERE a = 1");
        q.push(" AND b = $?", "x");
        q.sql.push_str(" AND ");
        q.push_in("c", ["y", "z"]);
        q.push(" LIMIT $?", 5);
        assert_eq!(
            q.sql,
            "SELECT 1 FROM t WHERE a = 1 AND b = $1 AND c IN ($2, $3) LIMIT $4"
        );
        assert_eq!(q.args.len(), 4);
    }
}
