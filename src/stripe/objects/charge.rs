//! The Charge, Refund and Dispute objects: where a payment's money went after it
//! succeeded.

use serde::{Deserialize, Serialize};

use super::{Expandable, List, Metadata, StripeObject, id_of, null_as_default};

/// A Charge: one attempt to move a payment's money.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    /// `ch_…` (or `py_…` for some payment methods).
    pub id: String,
    /// The PaymentIntent it belongs to, `pi_…` (none for charges made without one).
    pub payment_intent: Option<String>,
    /// `cus_…`.
    pub customer: Option<String>,
    /// The charge's metadata.
    pub metadata: Metadata,
    /// In the currency's minor unit.
    pub amount: i64,
    /// How much of it is refunded, counting pending refunds; failed and canceled ones
    /// give it back.
    pub amount_refunded: i64,
    /// Lowercase ISO code.
    pub currency: String,
    /// `succeeded`, `pending` or `failed`.
    pub status: String,
    /// Whether the charge succeeded (or was authorized).
    pub paid: bool,
    /// When the charge was made, in seconds since the Unix epoch.
    pub created: i64,
    /// The refunds listed on the charge: only API versions before 2022-11-15 include them.
    pub refunds: Vec<Refund>,
    /// `billing_details.email`, else `receipt_email`.
    pub email: Option<String>,
}

/// A Refund of (part of) a charge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    /// `re_…` (or `pyr_…`).
    pub id: String,
    /// In the currency's minor unit.
    pub amount: i64,
    /// Lowercase ISO code.
    pub currency: String,
    /// `pending`, `requires_action`, `succeeded`, `failed` or `canceled`.
    pub status: String,
    /// `duplicate`, `fraudulent`, `requested_by_customer`…
    pub reason: Option<String>,
    /// Why a failed refund failed.
    pub failure_reason: Option<String>,
    /// The refunded charge, `ch_…`.
    pub charge: Option<String>,
    /// The refunded PaymentIntent, `pi_…`.
    pub payment_intent: Option<String>,
    /// When the refund was made, in seconds since the Unix epoch.
    pub created: i64,
}

/// A Dispute (chargeback or inquiry) of a charge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dispute {
    /// `dp_…` (or `du_…`).
    pub id: String,
    /// The disputed amount, in the currency's minor unit.
    pub amount: i64,
    /// Lowercase ISO code.
    pub currency: String,
    /// The disputed charge, `ch_…`.
    pub charge: Option<String>,
    /// The disputed PaymentIntent, `pi_…`.
    pub payment_intent: Option<String>,
    /// `fraudulent`, `product_not_received`…
    pub reason: Option<String>,
    /// `needs_response`, `under_review`, `won`, `lost`, the `warning_*` statuses of an
    /// inquiry, or `prevented`.
    pub status: String,
    /// `evidence_details.due_by`: the deadline for evidence, in seconds since the epoch.
    pub evidence_due_by: Option<i64>,
    /// When the dispute was opened.
    pub created: i64,
    /// The balance transactions it made: the withdrawal, then any reinstatement.
    pub balance_transactions: Vec<DisputeFunds>,
}

/// A balance transaction of a dispute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisputeFunds {
    /// `txn_…`.
    pub id: String,
    /// Negative for a withdrawal, positive for a reinstatement, in `currency`.
    pub amount: i64,
    /// The currency the balance moved in (the account's settlement currency).
    pub currency: String,
    /// When the money moved.
    pub created: i64,
}

#[derive(Deserialize)]
pub struct RawCharge {
    id: Option<String>,
    payment_intent: Option<Expandable>,
    customer: Option<Expandable>,
    #[serde(default, deserialize_with = "null_as_default")]
    metadata: Metadata,
    amount: Option<i64>,
    amount_refunded: Option<i64>,
    currency: Option<String>,
    status: Option<String>,
    paid: Option<bool>,
    created: Option<i64>,
    #[serde(default, deserialize_with = "null_as_default")]
    refunds: List<RawRefund>,
    billing_details: Option<RawBillingDetails>,
    receipt_email: Option<String>,
}

#[derive(Deserialize)]
struct RawBillingDetails {
    email: Option<String>,
}

#[derive(Deserialize)]
pub struct RawRefund {
    id: Option<String>,
    amount: Option<i64>,
    currency: Option<String>,
    status: Option<String>,
    reason: Option<String>,
    failure_reason: Option<String>,
    charge: Option<Expandable>,
    payment_intent: Option<Expandable>,
    created: Option<i64>,
}

#[derive(Deserialize)]
pub struct RawDispute {
    id: Option<String>,
    amount: Option<i64>,
    currency: Option<String>,
    charge: Option<Expandable>,
    payment_intent: Option<Expandable>,
    reason: Option<String>,
    status: Option<String>,
    evidence_details: Option<RawEvidenceDetails>,
    created: Option<i64>,
    #[serde(default, deserialize_with = "null_as_default")]
    balance_transactions: Vec<RawBalanceTransaction>,
}

#[derive(Deserialize)]
struct RawEvidenceDetails {
    due_by: Option<i64>,
}

#[derive(Deserialize)]
struct RawBalanceTransaction {
    id: Option<String>,
    amount: Option<i64>,
    currency: Option<String>,
    created: Option<i64>,
}

fn required_id(id: Option<String>) -> Result<String, &'static str> {
    id.filter(|id| !id.is_empty()).ok_or("id")
}

impl StripeObject for Charge {
    type Raw = RawCharge;

    fn from_raw(raw: RawCharge) -> Result<Charge, &'static str> {
        let refunds = raw
            .refunds
            .data
            .into_iter()
            .map(Refund::from_raw)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| "refunds.data")?;
        Ok(Charge {
            id: required_id(raw.id)?,
            payment_intent: id_of(raw.payment_intent),
            customer: id_of(raw.customer),
            metadata: raw.metadata,
            amount: raw.amount.ok_or("amount")?,
            amount_refunded: raw.amount_refunded.unwrap_or(0),
            currency: raw.currency.ok_or("currency")?.to_ascii_lowercase(),
            status: raw.status.ok_or("status")?,
            paid: raw.paid.unwrap_or(false),
            created: raw.created.ok_or("created")?,
            refunds,
            email: raw
                .billing_details
                .and_then(|b| b.email)
                .or(raw.receipt_email)
                .filter(|e| !e.is_empty()),
        })
    }
}

impl StripeObject for Refund {
    type Raw = RawRefund;

    fn from_raw(raw: RawRefund) -> Result<Refund, &'static str> {
        Ok(Refund {
            id: required_id(raw.id)?,
            amount: raw.amount.ok_or("amount")?,
            currency: raw.currency.ok_or("currency")?.to_ascii_lowercase(),
            status: raw.status.ok_or("status")?,
            reason: raw.reason,
            failure_reason: raw.failure_reason,
            charge: id_of(raw.charge),
            payment_intent: id_of(raw.payment_intent),
            created: raw.created.ok_or("created")?,
        })
    }
}

impl StripeObject for Dispute {
    type Raw = RawDispute;

    fn from_raw(raw: RawDispute) -> Result<Dispute, &'static str> {
        let balance_transactions = raw
            .balance_transactions
            .into_iter()
            .map(|t| {
                Ok(DisputeFunds {
                    id: required_id(t.id).map_err(|_| "balance_transactions.id")?,
                    amount: t.amount.ok_or("balance_transactions.amount")?,
                    currency: t
                        .currency
                        .ok_or("balance_transactions.currency")?
                        .to_ascii_lowercase(),
                    created: t.created.ok_or("balance_transactions.created")?,
                })
            })
            .collect::<Result<Vec<_>, &'static str>>()?;
        Ok(Dispute {
            id: required_id(raw.id)?,
            amount: raw.amount.ok_or("amount")?,
            currency: raw.currency.ok_or("currency")?.to_ascii_lowercase(),
            charge: id_of(raw.charge),
            payment_intent: id_of(raw.payment_intent),
            reason: raw.reason,
            status: raw.status.ok_or("status")?,
            evidence_due_by: raw.evidence_details.and_then(|e| e.due_by),
            created: raw.created.ok_or("created")?,
            balance_transactions,
        })
    }
}
