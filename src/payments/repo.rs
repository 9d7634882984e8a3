//! The business tables: upserts made by the Stripe functions inside their transactional
//! steps, and the read model the application queries.
//!
//! Subscriptions are written whole, one view replacing another by the rules of
//! [`ordering`](crate::payments::ordering) (`subscriptions`); invoices by their newest
//! event (`invoices`). Customers and payments are upserts keyed by the Stripe id and
//! ordered by the event's `created` (`event_created`, the row's watermark). Per column, the newer of the stored row and the
//! incoming event wins where it knows the value; the older one only fills what is still
//! unknown (NULL), so an older event never overwrites newer state, an out-of-order
//! delivery still contributes what the newer one lacked, and replays change nothing.

use serde::{Deserialize, Serialize};

use crate::args;
use crate::payments::attempts::AttemptLinks;
use crate::store::{Dialect, Result, StoreTx};

mod billing;
mod disputes;
mod failures;
mod invoices;
mod read;
mod refunds;
pub mod reports;
mod subscriptions;

pub use billing::{
    payment_failures, payments, recent_subscriptions, subscriptions_by_status, unlinked_customers,
};
pub use disputes::{DisputeRecord, FundsRecord, upsert_dispute};
pub use failures::record_failure;
pub use invoices::{InvoiceRecord, upsert_invoice};
pub use read::{
    DEFAULT_LIMIT, DisputeFilter, DisputeRow, DisputeStatus, MAX_LIMIT, PaymentFilter,
    PaymentStatus, PaymentView, UnknownDisputeStatus, UnknownPaymentStatus, list_disputes,
    list_payments, recent_refunds,
};
pub use refunds::{RefundRecord, upsert_refund};
pub use subscriptions::{
    Entitlement, SubscriptionView, UserSubscription, Written, user_subscriptions,
    write_subscription,
};

/// The newer side's value when it has one, else the other side's.
#[rustfmt::skip]
macro_rules! known {
    ($table:literal, $col:literal) => { concat!(
        $col, " = CASE WHEN excluded.event_created >= ", $table, ".event_created ",
        "THEN COALESCE(excluded.", $col, ", ", $table, ".", $col, ") ",
        "ELSE COALESCE(", $table, ".", $col, ", excluded.", $col, ") END, "
    ) };
}

/// The newer side's value, even NULL: for fields whose absence is itself state.
#[rustfmt::skip]
macro_rules! newest {
    ($table:literal, $col:literal) => { concat!(
        $col, " = CASE WHEN excluded.event_created >= ", $table, ".event_created ",
        "THEN excluded.", $col, " ELSE ", $table, ".", $col, " END, "
    ) };
}

/// Moves the row's watermark forward, never back.
#[rustfmt::skip]
macro_rules! watermark {
    ($table:literal) => { concat!(
        "event_created = CASE WHEN excluded.event_created > ", $table, ".event_created ",
        "THEN excluded.event_created ELSE ", $table, ".event_created END, ",
        "updated_at = excluded.updated_at"
    ) };
}

#[rustfmt::skip]
const LINK_CUSTOMER: &str = concat!(
    "INSERT INTO customers (id, user_id, email, event_created, updated_at) ",
    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO UPDATE SET ",
    known!("customers", "user_id"),
    known!("customers", "email"),
    watermark!("customers")
);

/// The earlier of the two times that are known.
#[rustfmt::skip]
macro_rules! earliest {
    ($table:literal, $col:literal) => { concat!(
        $col, " = CASE WHEN ", $table, ".", $col, " IS NULL OR excluded.", $col, " < ",
        $table, ".", $col, " THEN COALESCE(excluded.", $col, ", ", $table, ".", $col, ") ",
        "ELSE ", $table, ".", $col, " END, "
    ) };
}

/// The charge's refunded figure of the newer charge event (the larger in one second).
#[rustfmt::skip]
macro_rules! charge_figure {
    ($col:literal) => { concat!(
        $col, " = CASE WHEN excluded.charge_refunds_as_of IS NOT NULL AND ",
        "(payments.charge_refunds_as_of IS NULL ",
        "OR excluded.charge_refunds_as_of > payments.charge_refunds_as_of ",
        "OR (excluded.charge_refunds_as_of = payments.charge_refunds_as_of ",
        "AND excluded.charge_amount_refunded > payments.charge_amount_refunded)) ",
        "THEN excluded.", $col, " ELSE payments.", $col, " END, "
    ) };
}

#[rustfmt::skip]
const UPSERT_PAYMENT: &str = concat!(
    "INSERT INTO payments (id, user_id, customer_id, amount, currency, status, ",
    "checkout_session_id, event_created, updated_at, charge_id, succeeded_at, ",
    "charge_amount_refunded, charge_refunds_as_of, livemode, account) ",
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) ",
    "ON CONFLICT (id) DO UPDATE SET ",
    known!("payments", "user_id"),
    known!("payments", "customer_id"),
    known!("payments", "amount"),
    known!("payments", "currency"),
    newest!("payments", "status"),
    known!("payments", "checkout_session_id"),
    known!("payments", "charge_id"),
    earliest!("payments", "succeeded_at"),
    charge_figure!("charge_amount_refunded"),
    charge_figure!("charge_refunds_as_of"),
    known!("payments", "account"),
    "livemode = excluded.livemode, ",
    watermark!("payments")
);

/// A customer's application user, as learned from an event created at `event_created`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerLink {
    /// Stripe's customer id, `cus_…`.
    pub customer_id: String,
    /// The application's user id.
    pub user_id: String,
    /// The customer's email, if the event gave one.
    pub email: Option<String>,
    /// The event's `created`, in seconds since the Unix epoch (the row's watermark).
    pub event_created: i64,
}

/// A payment, keyed by its PaymentIntent id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRecord {
    /// Stripe's PaymentIntent id, `pi_…` (the Checkout session's id, `cs_…`, when it has none).
    pub id: String,
    /// The application's user id, if known.
    pub user_id: Option<String>,
    /// Stripe's customer id, `cus_…`.
    pub customer_id: Option<String>,
    /// The amount in the currency's minor unit (cents for `usd`).
    pub amount: Option<i64>,
    /// Three-letter ISO currency code in lowercase (`eur`).
    pub currency: Option<String>,
    /// Stripe's status of the payment (`succeeded`, `requires_payment_method`…).
    pub status: String,
    /// The Checkout session the payment came through, `cs_…`.
    pub checkout_session_id: Option<String>,
    /// The event's `created`, in seconds since the Unix epoch (the row's watermark).
    pub event_created: i64,
    /// The payment's charge, `ch_…`.
    #[serde(default)]
    pub charge_id: Option<String>,
    /// When the event says the payment succeeded, if it says so: the stored time is the
    /// earliest any event gave.
    #[serde(default)]
    pub succeeded_at: Option<i64>,
    /// The charge's `amount_refunded`, as of `event_created`, from a charge event.
    #[serde(default)]
    pub charge_amount_refunded: Option<i64>,
    /// False for test mode.
    #[serde(default)]
    pub livemode: bool,
    /// The connected account; `None` for the platform.
    #[serde(default)]
    pub account: Option<String>,
}

/// What kind of failure a `payment_failures` row records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureKind {
    /// A payment (PaymentIntent or Checkout session) failed.
    Payment,
    /// Collecting an invoice's payment failed.
    Invoice,
    /// paysteps could not process a Stripe event (a run failed for good).
    Processing,
}

impl FailureKind {
    /// The kind as stored: `payment`, `invoice` or `processing`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Payment => "payment",
            FailureKind::Invoice => "invoice",
            FailureKind::Processing => "processing",
        }
    }
}

/// A failure to log; `id` is the Stripe event id, or `run:<run id>` for a failed run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewFailure {
    /// The Stripe event id, or `run:<run id>` for a failed run; a second failure with the
    /// same id is not logged.
    pub id: String,
    /// What failed.
    pub kind: FailureKind,
    /// The application's user id, if known.
    pub user_id: Option<String>,
    /// Stripe's customer id, `cus_…`.
    pub customer_id: Option<String>,
    /// The Stripe object that failed (`pi_…`, `in_…`, `cs_…`).
    pub object_id: Option<String>,
    /// The amount in the currency's minor unit.
    pub amount: Option<i64>,
    /// Three-letter ISO currency code in lowercase (`eur`).
    pub currency: Option<String>,
    /// Stripe's failure code (`card_declined`…), or `function_failed` for a failed run.
    pub code: Option<String>,
    /// The card issuer's decline code (`insufficient_funds`…).
    pub decline_code: Option<String>,
    /// A human-readable reason; for a failed run, its error.
    pub message: Option<String>,
    /// The Stripe event that reported it, `evt_…`.
    pub event_id: Option<String>,
    /// Seconds since the Unix epoch.
    pub created: i64,
    /// What else the report names, to find the other report of the same attempt.
    #[serde(default)]
    pub links: AttemptLinks,
    /// False for test mode.
    #[serde(default)]
    pub livemode: bool,
    /// The connected account; `None` for the platform.
    #[serde(default)]
    pub account: Option<String>,
}

/// The user a customer is linked to, if any.
pub async fn linked_user(tx: &mut StoreTx, customer_id: &str) -> Result<Option<String>> {
    let row: Option<(Option<String>,)> = tx
        .fetch_optional(
            "SELECT user_id FROM customers WHERE id = $1",
            args![customer_id],
        )
        .await?;
    Ok(row.and_then(|(user,)| user))
}

/// The user and customer of a recorded payment (`None`s when it is not recorded).
pub async fn payment_party(
    tx: &mut StoreTx,
    payment_id: &str,
) -> Result<(Option<String>, Option<String>)> {
    let row: Option<(Option<String>, Option<String>)> = tx
        .fetch_optional(
            "SELECT user_id, customer_id FROM payments WHERE id = $1",
            args![payment_id],
        )
        .await?;
    Ok(row.unwrap_or_default())
}

/// Links a customer to a user and gives the customer's earlier subscriptions, payments and
/// invoices,
/// written before the link was known, their user. One round trip: a multi-statement
/// query on SQLite, data-modifying CTEs on PostgreSQL.
pub async fn link_customer(tx: &mut StoreTx, link: &CustomerLink, now_ms: i64) -> Result<()> {
    let sql = match tx.dialect() {
        Dialect::Sqlite => {
            format!("{LINK_CUSTOMER}; {LINK_SUBSCRIPTIONS}; {LINK_PAYMENTS}; {LINK_INVOICES}")
        }
        Dialect::Postgres => format!(
            "WITH subscriptions_linked AS ({LINK_SUBSCRIPTIONS}), \
             payments_linked AS ({LINK_PAYMENTS}), \
             invoices_linked AS ({LINK_INVOICES}) {LINK_CUSTOMER}"
        ),
    };
    tx.execute(
        &sql,
        args![
            &link.customer_id,
            &link.user_id,
            link.email.as_deref(),
            link.event_created,
            now_ms
        ],
    )
    .await?;
    Ok(())
}

/// The customer's (`$1`) subscriptions and payments that have no user yet get `$2`.
const LINK_SUBSCRIPTIONS: &str =
    "UPDATE subscriptions SET user_id = $2 WHERE customer_id = $1 AND user_id IS NULL";
const LINK_PAYMENTS: &str =
    "UPDATE payments SET user_id = $2 WHERE customer_id = $1 AND user_id IS NULL";
const LINK_INVOICES: &str =
    "UPDATE invoices SET user_id = $2 WHERE customer_id = $1 AND user_id IS NULL";

/// Writes a payment, the newer of the stored row and the event winning per column.
pub async fn upsert_payment(tx: &mut StoreTx, p: &PaymentRecord, now_ms: i64) -> Result<()> {
    tx.execute(
        UPSERT_PAYMENT,
        args![
            &p.id,
            p.user_id.as_deref(),
            p.customer_id.as_deref(),
            p.amount,
            p.currency.as_deref(),
            &p.status,
            p.checkout_session_id.as_deref(),
            p.event_created,
            now_ms,
            p.charge_id.as_deref(),
            p.succeeded_at,
            p.charge_amount_refunded,
            p.charge_amount_refunded.map(|_| p.event_created),
            i64::from(p.livemode),
            p.account.as_deref()
        ],
    )
    .await?;
    refunds::settle_refunds(tx, &p.id, now_ms).await
}

#[cfg(test)]
mod tests;
