//! The `refunds` table, and the refunded amount it and the charge's figure make on the
//! payment (see [`crate::payments::money`]).

use serde::{Deserialize, Serialize};

use crate::args;
use crate::payments::money::{self, ChargeFigure, RefundFact};
use crate::store::{Result, StoreTx};

/// A refund as a `refund.*` or `charge.refunded` event shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundRecord {
    /// `re_…`.
    pub id: String,
    /// The refunded payment: its PaymentIntent, `pi_…` (the charge when it has none).
    pub payment_id: String,
    /// `ch_…`.
    pub charge_id: Option<String>,
    /// In the currency's minor unit.
    pub amount: i64,
    /// Lowercase ISO code.
    pub currency: String,
    /// `pending`, `requires_action`, `succeeded`, `failed` or `canceled`.
    pub status: String,
    /// `requested_by_customer`, `duplicate`, `fraudulent`…
    pub reason: Option<String>,
    /// Why a failed refund failed.
    pub failure_reason: Option<String>,
    /// When the refund was made, in seconds since the Unix epoch.
    pub created: i64,
    /// `created` of the event that reports this status.
    pub status_as_of: i64,
    /// 1 for live mode, 0 for test mode.
    pub livemode: i64,
    /// The connected account; `None` for the platform.
    pub account: Option<String>,
}

/// A newer report of the refund's status, or a later stage in the same second, wins.
const UPSERT: &str = "INSERT INTO refunds (id, payment_id, charge_id, amount, currency, status, \
     reason, failure_reason, created, status_as_of, status_rank, livemode, account, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
     ON CONFLICT (id) DO UPDATE SET \
     charge_id = COALESCE(excluded.charge_id, refunds.charge_id), \
     status = excluded.status, reason = COALESCE(excluded.reason, refunds.reason), \
     failure_reason = COALESCE(excluded.failure_reason, refunds.failure_reason), \
     status_as_of = excluded.status_as_of, status_rank = excluded.status_rank, \
     updated_at = excluded.updated_at \
     WHERE excluded.status_as_of > refunds.status_as_of \
     OR (excluded.status_as_of = refunds.status_as_of \
     AND excluded.status_rank > refunds.status_rank)";

/// Records `refund` unless a newer report of it is stored, then settles its payment's
/// refunded amount. Returns whether the report was newer.
pub async fn upsert_refund(tx: &mut StoreTx, r: &RefundRecord, now_ms: i64) -> Result<bool> {
    let written = tx
        .execute(
            UPSERT,
            args![
                &r.id,
                &r.payment_id,
                r.charge_id.as_deref(),
                r.amount,
                &r.currency,
                &r.status,
                r.reason.as_deref(),
                r.failure_reason.as_deref(),
                r.created,
                r.status_as_of,
                money::refund_rank(&r.status),
                r.livemode,
                r.account.as_deref(),
                now_ms
            ],
        )
        .await?;
    settle_refunds(tx, &r.payment_id, now_ms).await?;
    Ok(written > 0)
}

/// Recomputes the payment's `amount_refunded` and `refunds_unattributed` from its
/// refunds and the charge's figure; a payment not stored yet is settled when it is.
pub async fn settle_refunds(tx: &mut StoreTx, payment_id: &str, now_ms: i64) -> Result<()> {
    let figure: Option<(Option<i64>, Option<i64>)> = tx
        .fetch_optional(
            "SELECT charge_amount_refunded, charge_refunds_as_of FROM payments WHERE id = $1",
            args![payment_id],
        )
        .await?;
    let Some((amount_refunded, as_of)) = figure else {
        return Ok(());
    };
    let charge = amount_refunded
        .zip(as_of)
        .map(|(amount_refunded, as_of)| ChargeFigure {
            amount_refunded,
            as_of,
        });
    let rows: Vec<(i64, i64, String, i64)> = tx
        .fetch_all(
            "SELECT amount, created, status, status_as_of FROM refunds WHERE payment_id = $1",
            args![payment_id],
        )
        .await?;
    let facts: Vec<RefundFact> = rows
        .into_iter()
        .map(|(amount, created, status, status_as_of)| RefundFact {
            amount,
            created,
            live: money::refund_is_live(&status),
            status_as_of,
        })
        .collect();
    let refunded = money::refunded(charge, &facts);
    tx.execute(
        "UPDATE payments SET amount_refunded = $2, refunds_unattributed = $3, updated_at = $4 \
         WHERE id = $1 AND (amount_refunded <> $2 OR refunds_unattributed <> $3)",
        args![payment_id, refunded.amount, refunded.unattributed, now_ms],
    )
    .await?;
    Ok(())
}
