//! The Checkout Session object.

use serde::{Deserialize, Serialize};

use super::{Expandable, Metadata, StripeObject, id_of, null_as_default};

/// A Checkout Session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutSession {
    /// `cs_…`.
    pub id: String,
    /// `payment`, `subscription` or `setup`.
    pub mode: String,
    /// `paid`, `unpaid` or `no_payment_required`.
    pub payment_status: String,
    /// `cus_…`, when the session has a customer.
    pub customer: Option<String>,
    /// The customer's email, from `customer_details` or `customer_email`.
    pub email: Option<String>,
    /// The application's reference passed when the session was made (often its user id).
    pub client_reference_id: Option<String>,
    /// The session's metadata.
    pub metadata: Metadata,
    /// `sub_…`, in subscription mode.
    pub subscription: Option<String>,
    /// `pi_…`, in payment mode.
    pub payment_intent: Option<String>,
    /// The first invoice, `in_…` (named since 2022-11-15).
    pub invoice: Option<String>,
    /// In the currency's minor unit.
    pub amount_total: Option<i64>,
    /// Lowercase ISO code.
    pub currency: Option<String>,
}

#[derive(Deserialize)]
pub struct RawSession {
    id: Option<String>,
    mode: Option<String>,
    payment_status: Option<String>,
    customer: Option<Expandable>,
    customer_details: Option<RawCustomerDetails>,
    customer_email: Option<String>,
    client_reference_id: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    metadata: Metadata,
    subscription: Option<Expandable>,
    payment_intent: Option<Expandable>,
    invoice: Option<Expandable>,
    amount_total: Option<i64>,
    currency: Option<String>,
}

#[derive(Deserialize)]
struct RawCustomerDetails {
    email: Option<String>,
}

impl StripeObject for CheckoutSession {
    type Raw = RawSession;

    fn from_raw(raw: RawSession) -> Result<CheckoutSession, &'static str> {
        Ok(CheckoutSession {
            id: raw.id.filter(|id| !id.is_empty()).ok_or("id")?,
            mode: raw.mode.ok_or("mode")?,
            payment_status: raw.payment_status.ok_or("payment_status")?,
            customer: id_of(raw.customer),
            email: raw
                .customer_details
                .and_then(|d| d.email)
                .or(raw.customer_email),
            client_reference_id: raw.client_reference_id,
            metadata: raw.metadata,
            subscription: id_of(raw.subscription),
            payment_intent: id_of(raw.payment_intent),
            invoice: id_of(raw.invoice),
            amount_total: raw.amount_total,
            currency: raw.currency.map(|c| c.to_ascii_lowercase()),
        })
    }
}
