//! The `disputes` table and the money each dispute moved (`dispute_funds`).

use serde::{Deserialize, Serialize};

use crate::args;
use crate::payments::money;
use crate::store::{Result, StoreTx};

/// A dispute as a `charge.dispute.*` event shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisputeRecord {
    /// `dp_…`.
    pub id: String,
    /// The disputed payment: its PaymentIntent, `pi_…` (the charge when it has none).
    pub payment_id: String,
    /// `ch_…`.
    pub charge_id: Option<String>,
    /// The disputed amount, in the currency's minor unit.
    pub amount: i64,
    /// Lowercase ISO code.
    pub currency: String,
    /// `fraudulent`, `product_not_received`…
    pub reason: Option<String>,
    /// Stripe's dispute status.
    pub status: String,
    /// The deadline for evidence, in seconds since the Unix epoch.
    pub evidence_due_by: Option<i64>,
    /// When the dispute was opened.
    pub created: i64,
    /// `created` of the event that reports this status.
    pub status_as_of: i64,
    /// 1 for live mode, 0 for test mode.
    pub livemode: i64,
    /// The connected account; `None` for the platform.
    pub account: Option<String>,
    /// The balance it moved so far: withdrawals negative, reinstatements positive.
    pub funds: Vec<FundsRecord>,
}

/// One movement of a dispute's money, in the dispute's currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FundsRecord {
    /// The balance transaction, `txn_…`.
    pub id: String,
    /// Negative for a withdrawal, positive for a reinstatement.
    pub amount: i64,
    /// When the money moved.
    pub created: i64,
}

/// A closed dispute is final; otherwise a newer report, or a later stage in the same
/// second, wins.
const UPSERT: &str = "INSERT INTO disputes (id, payment_id, charge_id, amount, currency, reason, \
     status, evidence_due_by, created, status_as_of, status_rank, livemode, account, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
     ON CONFLICT (id) DO UPDATE SET \
     charge_id = COALESCE(excluded.charge_id, disputes.charge_id), amount = excluded.amount, \
     reason = COALESCE(excluded.reason, disputes.reason), status = excluded.status, \
     evidence_due_by = COALESCE(excluded.evidence_due_by, disputes.evidence_due_by), \
     status_as_of = excluded.status_as_of, status_rank = excluded.status_rank, \
     updated_at = excluded.updated_at \
     WHERE (disputes.status_rank < 3 AND excluded.status_rank = 3) \
     OR ((disputes.status_rank < 3 OR excluded.status_rank = 3) \
     AND (excluded.status_as_of > disputes.status_as_of \
     OR (excluded.status_as_of = disputes.status_as_of \
     AND excluded.status_rank > disputes.status_rank)))";

const INSERT_FUNDS: &str = "INSERT INTO dispute_funds (id, dispute_id, amount, currency, created) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING";

/// Records `dispute` unless a newer report of it is stored, and every balance
/// transaction it lists. Returns the status stored before (`None` for a new dispute).
pub async fn upsert_dispute(
    tx: &mut StoreTx,
    d: &DisputeRecord,
    now_ms: i64,
) -> Result<Option<String>> {
    let previous: Option<(String,)> = tx
        .fetch_optional("SELECT status FROM disputes WHERE id = $1", args![&d.id])
        .await?;
    tx.execute(
        UPSERT,
        args![
            &d.id,
            &d.payment_id,
            d.charge_id.as_deref(),
            d.amount,
            &d.currency,
            d.reason.as_deref(),
            &d.status,
            d.evidence_due_by,
            d.created,
            d.status_as_of,
            money::dispute_rank(&d.status),
            d.livemode,
            d.account.as_deref(),
            now_ms
        ],
    )
    .await?;
    for funds in &d.funds {
        let inserted = tx
            .execute(
                INSERT_FUNDS,
                args![&funds.id, &d.id, funds.amount, &d.currency, funds.created],
            )
            .await?;
        if inserted > 0 {
            // The rollup finds the days of new funds through the dispute's write time.
            tx.execute(
                "UPDATE disputes SET updated_at = $2 WHERE id = $1",
                args![&d.id, now_ms],
            )
            .await?;
        }
    }
    Ok(previous.map(|(status,)| status))
}
