//! The billing summary's reads: subscriptions per status and the most recently changed
//! ones, recent payments and failures, and paying customers not linked to a user yet.

use serde::Serialize;

use crate::args;
use crate::store::{Result, Store};

/// How many subscriptions have one status.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct StatusCount {
    /// The subscription status, as Stripe names it (`active`, `past_due`…).
    pub status: String,
    /// Subscriptions with that status.
    pub count: i64,
}

/// A subscription as listed on the billing page.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct RecentSubscription {
    /// Stripe's subscription id, `sub_…`.
    pub id: String,
    /// The application's user id the customer is linked to, if known.
    pub user_id: Option<String>,
    /// Stripe's customer id, `cus_…`.
    pub customer_id: Option<String>,
    /// The subscription status, as Stripe names it (`active`, `past_due`…).
    pub status: String,
    /// Stripe's price id, `price_…`.
    pub price_id: Option<String>,
    /// End of the current billing period, in seconds since the Unix epoch.
    pub current_period_end: Option<i64>,
    /// When paysteps last changed the row, in milliseconds since the Unix epoch.
    pub updated_at: i64,
    /// `event`, `api`, or `provisional` while no Subscription object was received.
    pub source: String,
    /// The connected account it belongs to (Connect); `None` for the platform.
    pub account: Option<String>,
}

/// Subscriptions counted per status.
pub async fn subscriptions_by_status(store: &Store) -> Result<Vec<StatusCount>> {
    store
        .fetch_all(
            "SELECT status, COUNT(*) AS count FROM subscriptions GROUP BY status ORDER BY status",
            vec![],
        )
        .await
}

/// The most recently changed subscriptions.
pub async fn recent_subscriptions(store: &Store, limit: i64) -> Result<Vec<RecentSubscription>> {
    store
        .fetch_all(
            "SELECT id, user_id, customer_id, status, price_id, current_period_end, updated_at, \
         source, account FROM subscriptions ORDER BY updated_at DESC, id LIMIT $1",
            args![limit],
        )
        .await
}

/// A payment as stored in the `payments` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Payment {
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
    /// `created` of the newest event applied, in seconds since the Unix epoch.
    pub event_created: i64,
    /// When paysteps last wrote the row, in milliseconds since the Unix epoch.
    pub updated_at: i64,
}

/// The most recently updated payments.
pub async fn payments(store: &Store, limit: i64) -> Result<Vec<Payment>> {
    store
        .fetch_all(
            "SELECT id, user_id, customer_id, amount, currency, status, checkout_session_id, \
             event_created, updated_at FROM payments ORDER BY updated_at DESC, id LIMIT $1",
            args![limit],
        )
        .await
}

/// A paying customer no event has linked to a user yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct UnlinkedCustomer {
    /// Stripe's customer id, `cus_…`.
    pub customer_id: String,
    /// How many of its subscriptions are stored without a user.
    pub subscriptions: i64,
    /// How many of its succeeded payments are stored without a user.
    pub payments: i64,
    /// `created` of the newest event about them, in seconds since the Unix epoch.
    pub last_event_created: i64,
}

/// Customers with subscriptions or succeeded payments but no user (sessions made by a
/// Payment Link or in the Stripe dashboard), the most recent first; the platform's only.
pub async fn unlinked_customers(store: &Store, limit: i64) -> Result<Vec<UnlinkedCustomer>> {
    store
        .fetch_all(
            "SELECT customer_id, CAST(SUM(subscriptions) AS BIGINT) AS subscriptions, \
             CAST(SUM(payments) AS BIGINT) AS payments, \
             CAST(MAX(last_event_created) AS BIGINT) AS last_event_created FROM ( \
             SELECT customer_id, COUNT(*) AS subscriptions, 0 AS payments, \
             MAX(event_created) AS last_event_created FROM subscriptions \
             WHERE user_id IS NULL AND customer_id IS NOT NULL AND account IS NULL \
             GROUP BY customer_id \
             UNION ALL \
             SELECT customer_id, 0, COUNT(*), MAX(event_created) FROM payments \
             WHERE user_id IS NULL AND customer_id IS NOT NULL AND account IS NULL \
             AND status = 'succeeded' GROUP BY customer_id \
             ) unlinked GROUP BY customer_id \
             ORDER BY last_event_created DESC, customer_id LIMIT $1",
            args![limit],
        )
        .await
}

/// A logged failure, as stored in the `payment_failures` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct PaymentFailure {
    /// The Stripe event id, or `run:<run id>` for a failed run.
    pub id: String,
    /// [`FailureKind`](super::FailureKind) as stored: `payment`, `invoice` or `processing`.
    pub kind: String,
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
    /// When the failure happened, in seconds since the Unix epoch.
    pub created: i64,
    /// The failed charge attempt it reports: the id of the attempt's earliest report. An
    /// invoice and its PaymentIntent reporting one attempt share it; reports count it once.
    pub attempt: Option<String>,
    /// The PaymentIntent of the attempt, `pi_…`, when the report names it.
    pub payment_intent_id: Option<String>,
    /// The charge that failed, `ch_…`, when the report names it.
    pub charge_id: Option<String>,
    /// For an invoice: attempts made so far.
    pub attempt_count: Option<i64>,
    /// For an invoice: when Stripe tries again; `None` after the final attempt.
    pub next_payment_attempt: Option<i64>,
}

/// The most recent failures, newest first.
pub async fn payment_failures(store: &Store, limit: i64) -> Result<Vec<PaymentFailure>> {
    store
        .fetch_all(
            "SELECT id, kind, user_id, customer_id, object_id, amount, currency, code, \
             decline_code, message, event_id, created, attempt, payment_intent_id, charge_id, \
             attempt_count, next_payment_attempt FROM payment_failures \
             ORDER BY created DESC, id LIMIT $1",
            args![limit],
        )
        .await
}
