//! The PaymentIntent object.

use serde::{Deserialize, Serialize};

use super::{Expandable, List, Metadata, StripeObject, id_of, null_as_default};

/// A PaymentIntent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentIntent {
    /// `pi_…`.
    pub id: String,
    /// `cus_…`.
    pub customer: Option<String>,
    /// The PaymentIntent's metadata.
    pub metadata: Metadata,
    /// In the currency's minor unit.
    pub amount: i64,
    /// Lowercase ISO code.
    pub currency: String,
    /// `succeeded`, `processing`, `requires_payment_method`, `canceled`…
    pub status: String,
    /// Its newest charge: `latest_charge` since 2022-11-15, the first of `charges`
    /// (newest first) before.
    pub latest_charge: Option<String>,
    /// The invoice it pays (named on the PaymentIntent before 2025-03-31.basil).
    pub invoice: Option<String>,
    /// Why the last attempt failed.
    pub last_payment_error: Option<PaymentError>,
    /// Where the receipt goes.
    pub receipt_email: Option<String>,
    /// When it was created.
    pub created: Option<i64>,
}

/// `last_payment_error`, as far as paysteps keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentError {
    /// `card_declined`…
    pub code: Option<String>,
    /// The issuer's reason: `insufficient_funds`…
    pub decline_code: Option<String>,
    /// For the customer.
    pub message: Option<String>,
    /// The charge that failed, `ch_…`.
    pub charge: Option<String>,
}

#[derive(Deserialize)]
pub struct RawIntent {
    id: Option<String>,
    customer: Option<Expandable>,
    #[serde(default, deserialize_with = "null_as_default")]
    metadata: Metadata,
    amount: Option<i64>,
    currency: Option<String>,
    status: Option<String>,
    latest_charge: Option<Expandable>,
    #[serde(default, deserialize_with = "null_as_default")]
    charges: List<RawCharge>,
    invoice: Option<Expandable>,
    last_payment_error: Option<RawError>,
    receipt_email: Option<String>,
    created: Option<i64>,
}

#[derive(Deserialize)]
struct RawCharge {
    id: Option<String>,
}

#[derive(Deserialize)]
struct RawError {
    code: Option<String>,
    decline_code: Option<String>,
    message: Option<String>,
    charge: Option<Expandable>,
}

impl StripeObject for PaymentIntent {
    type Raw = RawIntent;

    fn from_raw(raw: RawIntent) -> Result<PaymentIntent, &'static str> {
        let listed = raw.charges.data.into_iter().find_map(|c| c.id);
        Ok(PaymentIntent {
            id: raw.id.filter(|id| !id.is_empty()).ok_or("id")?,
            customer: id_of(raw.customer),
            metadata: raw.metadata,
            amount: raw.amount.ok_or("amount")?,
            currency: raw.currency.ok_or("currency")?.to_ascii_lowercase(),
            status: raw.status.ok_or("status")?,
            latest_charge: id_of(raw.latest_charge).or(listed),
            invoice: id_of(raw.invoice),
            last_payment_error: raw.last_payment_error.map(|e| PaymentError {
                code: e.code,
                decline_code: e.decline_code,
                message: e.message,
                charge: id_of(e.charge),
            }),
            receipt_email: raw.receipt_email,
            created: raw.created,
        })
    }
}
