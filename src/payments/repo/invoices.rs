//! The `invoices` table: each invoice as its newest event shows it, with where its
//! payment stands (`attempt_count`, `next_payment_attempt`).

use serde::{Deserialize, Serialize};

use crate::args;
use crate::store::{Result, StoreTx};

/// An invoice as an `invoice.*` event shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct InvoiceRecord {
    /// `in_…`.
    pub id: String,
    /// `sub_…`, when it bills a subscription.
    pub subscription_id: Option<String>,
    /// `cus_…`.
    pub customer_id: Option<String>,
    /// The application's user, if known.
    pub user_id: Option<String>,
    /// `draft`, `open`, `paid`, `uncollectible` or `void`.
    pub status: Option<String>,
    /// Why it was made: `subscription_create`, `subscription_cycle`…
    pub billing_reason: Option<String>,
    /// In the currency's minor unit.
    pub amount_due: i64,
    /// In the currency's minor unit.
    pub amount_paid: i64,
    /// Lowercase ISO code.
    pub currency: String,
    /// Payment attempts made so far.
    pub attempt_count: i64,
    /// When Stripe tries again; `None` after the final attempt.
    pub next_payment_attempt: Option<i64>,
    /// The latest end among its lines' periods.
    pub period_end: Option<i64>,
    /// `pi_…` (named on the invoice before API version 2025-03-31.basil).
    pub payment_intent_id: Option<String>,
    /// `ch_…` (named on the invoice before API version 2025-03-31.basil).
    pub charge_id: Option<String>,
    /// Where the customer can pay it.
    pub hosted_invoice_url: Option<String>,
    /// The API version of the payload.
    pub api_version: Option<String>,
    /// 1 for live mode, 0 for test mode.
    pub livemode: i64,
    /// The connected account; `None` for the platform.
    pub account: Option<String>,
    /// `created` of the event, in seconds: the row's watermark.
    pub event_created: i64,
}

/// A newer event, or one of the same second with at least as many attempts, wins.
const UPSERT: &str = "INSERT INTO invoices (id, subscription_id, customer_id, user_id, status, \
     billing_reason, amount_due, amount_paid, currency, attempt_count, next_payment_attempt, \
     period_end, payment_intent_id, charge_id, hosted_invoice_url, api_version, livemode, \
     account, event_created, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
     $12, $13, $14, $15, $16, $17, $18, $19, $20) ON CONFLICT (id) DO UPDATE SET \
     subscription_id = COALESCE(excluded.subscription_id, invoices.subscription_id), \
     customer_id = COALESCE(excluded.customer_id, invoices.customer_id), \
     user_id = COALESCE(excluded.user_id, invoices.user_id), status = excluded.status, \
     billing_reason = COALESCE(excluded.billing_reason, invoices.billing_reason), \
     amount_due = excluded.amount_due, amount_paid = excluded.amount_paid, \
     currency = excluded.currency, attempt_count = excluded.attempt_count, \
     next_payment_attempt = excluded.next_payment_attempt, period_end = excluded.period_end, \
     payment_intent_id = COALESCE(excluded.payment_intent_id, invoices.payment_intent_id), \
     charge_id = COALESCE(excluded.charge_id, invoices.charge_id), \
     hosted_invoice_url = COALESCE(excluded.hosted_invoice_url, invoices.hosted_invoice_url), \
     api_version = excluded.api_version, livemode = excluded.livemode, \
     account = excluded.account, event_created = excluded.event_created, \
     updated_at = excluded.updated_at \
     WHERE excluded.event_created > invoices.event_created \
     OR (excluded.event_created = invoices.event_created \
     AND excluded.attempt_count >= invoices.attempt_count)";

/// Records `invoice` unless a newer event's view of it is stored.
pub async fn upsert_invoice(tx: &mut StoreTx, i: &InvoiceRecord, now_ms: i64) -> Result<()> {
    tx.execute(
        UPSERT,
        args![
            &i.id,
            i.subscription_id.as_deref(),
            i.customer_id.as_deref(),
            i.user_id.as_deref(),
            i.status.as_deref(),
            i.billing_reason.as_deref(),
            i.amount_due,
            i.amount_paid,
            &i.currency,
            i.attempt_count,
            i.next_payment_attempt,
            i.period_end,
            i.payment_intent_id.as_deref(),
            i.charge_id.as_deref(),
            i.hosted_invoice_url.as_deref(),
            i.api_version.as_deref(),
            i.livemode,
            i.account.as_deref(),
            i.event_created,
            now_ms
        ],
    )
    .await?;
    Ok(())
}
