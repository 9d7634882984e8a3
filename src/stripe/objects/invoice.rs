//! The Invoice object.

use serde::{Deserialize, Serialize};

use super::{Expandable, List, Metadata, StripeObject, id_of, null_as_default};

/// An invoice, with what tells where its payment stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoice {
    /// `in_…`.
    pub id: String,
    /// `cus_…`.
    pub customer: Option<String>,
    /// The customer's email as the invoice shows it.
    pub customer_email: Option<String>,
    /// The subscription it bills: `invoice.subscription` before 2025-03-31.basil,
    /// `invoice.parent.subscription_details.subscription` after, else a line's.
    pub subscription: Option<String>,
    /// The invoice's own metadata.
    pub metadata: Metadata,
    /// The subscription's metadata as copied onto the invoice
    /// (`subscription_details.metadata`, or under `parent` from 2025-03-31.basil).
    pub subscription_metadata: Metadata,
    /// `draft`, `open`, `paid`, `uncollectible` or `void`.
    pub status: Option<String>,
    /// `subscription_create`, `subscription_cycle`, `subscription_update`, `manual`…
    pub billing_reason: Option<String>,
    /// In the currency's minor unit.
    pub amount_due: i64,
    /// In the currency's minor unit.
    pub amount_paid: i64,
    /// Lowercase ISO code.
    pub currency: String,
    /// How many payment attempts were made.
    pub attempt_count: u64,
    /// When the next automatic attempt is; `None` after the final one.
    pub next_payment_attempt: Option<i64>,
    /// The latest end among its lines' periods.
    pub period_end: Option<i64>,
    /// The PaymentIntent that pays it (named on the invoice before 2025-03-31.basil).
    pub payment_intent: Option<String>,
    /// The charge that paid it (named on the invoice before 2025-03-31.basil).
    pub charge: Option<String>,
    /// Where the customer can pay it.
    pub hosted_invoice_url: Option<String>,
    /// When it was created.
    pub created: Option<i64>,
}

#[derive(Deserialize)]
pub struct RawInvoice {
    id: Option<String>,
    customer: Option<Expandable>,
    customer_email: Option<String>,
    subscription: Option<Expandable>,
    #[serde(default, deserialize_with = "null_as_default")]
    metadata: Metadata,
    subscription_details: Option<RawSubscriptionDetails>,
    parent: Option<RawParent>,
    status: Option<String>,
    billing_reason: Option<String>,
    amount_due: Option<i64>,
    amount_paid: Option<i64>,
    currency: Option<String>,
    attempt_count: Option<u64>,
    next_payment_attempt: Option<i64>,
    #[serde(default, deserialize_with = "null_as_default")]
    lines: List<RawLine>,
    payment_intent: Option<Expandable>,
    charge: Option<Expandable>,
    hosted_invoice_url: Option<String>,
    created: Option<i64>,
}

#[derive(Deserialize)]
struct RawParent {
    subscription_details: Option<RawSubscriptionDetails>,
}

#[derive(Deserialize)]
struct RawSubscriptionDetails {
    subscription: Option<Expandable>,
    #[serde(default, deserialize_with = "null_as_default")]
    metadata: Metadata,
}

#[derive(Deserialize)]
struct RawLine {
    period: Option<RawPeriod>,
    subscription: Option<Expandable>,
}

#[derive(Deserialize)]
struct RawPeriod {
    end: Option<i64>,
}

impl StripeObject for Invoice {
    type Raw = RawInvoice;

    fn from_raw(raw: RawInvoice) -> Result<Invoice, &'static str> {
        let parent = raw.parent.and_then(|p| p.subscription_details);
        let details = parent.or(raw.subscription_details);
        let (from_parent, subscription_metadata) = match details {
            Some(d) => (id_of(d.subscription), d.metadata),
            None => (None, Metadata::new()),
        };
        let from_lines = raw
            .lines
            .data
            .iter()
            .find_map(|line| id_of(line.subscription.clone()));
        Ok(Invoice {
            id: raw.id.filter(|id| !id.is_empty()).ok_or("id")?,
            customer: id_of(raw.customer),
            customer_email: raw.customer_email,
            subscription: id_of(raw.subscription).or(from_parent).or(from_lines),
            metadata: raw.metadata,
            subscription_metadata,
            status: raw.status,
            billing_reason: raw.billing_reason,
            amount_due: raw.amount_due.ok_or("amount_due")?,
            amount_paid: raw.amount_paid.unwrap_or(0),
            currency: raw.currency.ok_or("currency")?.to_ascii_lowercase(),
            attempt_count: raw.attempt_count.unwrap_or(0),
            next_payment_attempt: raw.next_payment_attempt,
            period_end: raw
                .lines
                .data
                .iter()
                .filter_map(|line| line.period.as_ref()?.end)
                .max(),
            payment_intent: id_of(raw.payment_intent),
            charge: id_of(raw.charge),
            hosted_invoice_url: raw.hosted_invoice_url,
            created: raw.created,
        })
    }
}

/// The invoice of `invoice.upcoming`: one Stripe will make, which has no id yet (its
/// `id` reads as `upcoming`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpcomingInvoice(pub Invoice);

impl StripeObject for UpcomingInvoice {
    type Raw = RawInvoice;

    fn from_raw(mut raw: RawInvoice) -> Result<UpcomingInvoice, &'static str> {
        raw.id = Some("upcoming".to_owned());
        Invoice::from_raw(raw).map(UpcomingInvoice)
    }
}
