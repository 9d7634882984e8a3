//! paysteps' own business events: their types, their payloads, and the envelope every
//! delivery of them carries.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::ids::{EventId, FunctionId, RunId};

/// A business event type an endpoint can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    /// A subscription became active (`subscription.activated`).
    #[serde(rename = "subscription.activated")]
    SubscriptionActivated,
    /// A subscription changed: status, price, period, cancellation (`subscription.updated`).
    #[serde(rename = "subscription.updated")]
    SubscriptionUpdated,
    /// A subscription ended (`subscription.canceled`).
    #[serde(rename = "subscription.canceled")]
    SubscriptionCanceled,
    /// A trial ends in three days (`subscription.trial_will_end`): time to ask for a card.
    #[serde(rename = "subscription.trial_will_end")]
    SubscriptionTrialWillEnd,
    /// A payment went through (`payment.succeeded`).
    #[serde(rename = "payment.succeeded")]
    PaymentSucceeded,
    /// A payment was declined or failed (`payment.failed`).
    #[serde(rename = "payment.failed")]
    PaymentFailed,
    /// A payment is on its way, as a bank debit is for days (`payment.processing`).
    #[serde(rename = "payment.processing")]
    PaymentProcessing,
    /// A payment was abandoned or canceled (`payment.canceled`).
    #[serde(rename = "payment.canceled")]
    PaymentCanceled,
    /// An invoice was paid (`invoice.paid`).
    #[serde(rename = "invoice.paid")]
    InvoicePaid,
    /// Collecting an invoice's payment failed (`invoice.payment_failed`).
    #[serde(rename = "invoice.payment_failed")]
    InvoicePaymentFailed,
    /// An invoice's payment needs the customer, e.g. for 3-D Secure
    /// (`invoice.payment_action_required`); without them the renewal fails.
    #[serde(rename = "invoice.payment_action_required")]
    InvoicePaymentActionRequired,
    /// An invoice will be charged in a few days (`invoice.upcoming`), as Stripe's
    /// upcoming-renewal notice says (Billing settings decide how many).
    #[serde(rename = "invoice.upcoming")]
    InvoiceUpcoming,
    /// A customer disputed a payment (`dispute.created`): evidence is due by
    /// `evidence_due_by`.
    #[serde(rename = "dispute.created")]
    DisputeCreated,
    /// A dispute ended (`dispute.closed`), won or lost.
    #[serde(rename = "dispute.closed")]
    DisputeClosed,
    /// A function exhausted its retries.
    #[serde(rename = "run.failed")]
    RunFailed,
    /// An endpoint was disabled (410 Gone, or no success for 5 days).
    #[serde(rename = "endpoint.disabled")]
    EndpointDisabled,
}

impl EventType {
    /// Every type, in documentation order.
    pub const ALL: [EventType; 16] = [
        EventType::SubscriptionActivated,
        EventType::SubscriptionUpdated,
        EventType::SubscriptionCanceled,
        EventType::SubscriptionTrialWillEnd,
        EventType::PaymentSucceeded,
        EventType::PaymentFailed,
        EventType::PaymentProcessing,
        EventType::PaymentCanceled,
        EventType::InvoicePaid,
        EventType::InvoicePaymentFailed,
        EventType::InvoicePaymentActionRequired,
        EventType::InvoiceUpcoming,
        EventType::DisputeCreated,
        EventType::DisputeClosed,
        EventType::RunFailed,
        EventType::EndpointDisabled,
    ];

    /// The name on the wire, e.g. `payment.failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::SubscriptionActivated => "subscription.activated",
            EventType::SubscriptionUpdated => "subscription.updated",
            EventType::SubscriptionCanceled => "subscription.canceled",
            EventType::SubscriptionTrialWillEnd => "subscription.trial_will_end",
            EventType::PaymentSucceeded => "payment.succeeded",
            EventType::PaymentFailed => "payment.failed",
            EventType::PaymentProcessing => "payment.processing",
            EventType::PaymentCanceled => "payment.canceled",
            EventType::InvoicePaid => "invoice.paid",
            EventType::InvoicePaymentFailed => "invoice.payment_failed",
            EventType::InvoicePaymentActionRequired => "invoice.payment_action_required",
            EventType::InvoiceUpcoming => "invoice.upcoming",
            EventType::DisputeCreated => "dispute.created",
            EventType::DisputeClosed => "dispute.closed",
            EventType::RunFailed => "run.failed",
            EventType::EndpointDisabled => "endpoint.disabled",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is no business event type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event type '{0}'")]
pub struct UnknownEventType(pub String);

impl FromStr for EventType {
    type Err = UnknownEventType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownEventType(s.to_owned()))
    }
}

/// A business event about to be recorded and delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BusinessEvent {
    /// The event's type; the body's `type` member.
    pub event_type: EventType,
    /// What caused it, unique per cause: `stripe:evt_…`, `run:run_…`. The same source and
    /// type always make the same `webhook-id`, so a cause never notifies twice.
    pub source: String,
    /// The `data` member of the body.
    pub data: Value,
}

impl BusinessEvent {
    /// An event caused by a Stripe event.
    pub fn from_stripe(event_type: EventType, stripe_event_id: &str, data: impl Serialize) -> Self {
        BusinessEvent {
            event_type,
            source: format!("stripe:{stripe_event_id}"),
            data: serde_json::to_value(data).unwrap_or(Value::Null),
        }
    }

    /// The `webhook-id`: `msg_` and 32 hex digits of a hash of source and type.
    pub fn message_id(&self) -> String {
        let digest = Sha256::digest(format!("{}|{}", self.source, self.event_type).as_bytes());
        format!("msg_{}", &hex::encode(digest)[..32])
    }

    /// The JSON body every delivery sends: `{"type", "timestamp", "data"}`.
    pub fn body(&self, at_ms: i64) -> String {
        let timestamp = chrono::DateTime::from_timestamp_millis(at_ms)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        // Written by hand to keep the members in this order for people reading it.
        format!(
            "{{\"type\":{},\"timestamp\":{},\"data\":{}}}",
            Value::from(self.event_type.as_str()),
            Value::from(timestamp),
            self.data
        )
    }
}

/// `data` of `subscription.activated`, `subscription.updated`, `subscription.canceled` and
/// `subscription.trial_will_end`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionData {
    /// Stripe's subscription id, `sub_…`.
    pub subscription_id: String,
    /// Stripe's customer id, `cus_…`.
    pub customer_id: Option<String>,
    /// The application's user id the customer is linked to, if known.
    pub user_id: Option<String>,
    /// Stripe's status: `active`, `trialing`, `past_due`, `canceled`, `incomplete`…
    pub status: String,
    /// Stripe's price id of the first item, `price_…`.
    pub price_id: Option<String>,
    /// Seconds since the Unix epoch, as Stripe gives it.
    pub current_period_end: Option<i64>,
    /// Whether the subscription ends at the end of the current period.
    pub cancel_at_period_end: Option<bool>,
    /// When it was canceled, in seconds since the Unix epoch, as Stripe gives it.
    pub canceled_at: Option<i64>,
    /// When its trial ends, in seconds since the Unix epoch, as Stripe gives it.
    pub trial_end: Option<i64>,
    /// The Stripe event that caused this one, `evt_…`.
    pub stripe_event_id: String,
}

/// `data` of `payment.succeeded`, `payment.failed`, `payment.processing` and
/// `payment.canceled`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentData {
    /// The PaymentIntent id, or the Checkout session's when it has none.
    pub payment_id: String,
    /// Stripe's customer id, `cus_…`.
    pub customer_id: Option<String>,
    /// The application's user id the customer is linked to, if known.
    pub user_id: Option<String>,
    /// In the currency's minor unit.
    pub amount: Option<i64>,
    /// Three-letter ISO currency code in lowercase, as Stripe gives it (`eur`).
    pub currency: Option<String>,
    /// Stripe's status of the payment (`succeeded`, `requires_payment_method`…).
    pub status: String,
    /// The Checkout session the payment came through, `cs_…`.
    pub checkout_session_id: Option<String>,
    /// Stripe's failure code (`card_declined`…), for failed payments.
    pub failure_code: Option<String>,
    /// The card issuer's decline code (`insufficient_funds`…), for declined cards.
    pub decline_code: Option<String>,
    /// Stripe's human-readable failure message.
    pub failure_message: Option<String>,
    /// The Stripe event that caused this one, `evt_…`.
    pub stripe_event_id: String,
}

/// `data` of `invoice.paid`, `invoice.payment_failed` and `invoice.payment_action_required`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceData {
    /// Stripe's invoice id, `in_…`.
    pub invoice_id: String,
    /// Stripe's subscription id, `sub_…`, for subscription invoices.
    pub subscription_id: Option<String>,
    /// Stripe's customer id, `cus_…`.
    pub customer_id: Option<String>,
    /// The application's user id the customer is linked to, if known.
    pub user_id: Option<String>,
    /// In the currency's minor unit.
    pub amount_due: i64,
    /// Three-letter ISO currency code in lowercase, as Stripe gives it (`eur`).
    pub currency: String,
    /// Payment attempts Stripe has made on the invoice.
    pub attempt_count: u64,
    /// The latest line period end, in seconds since the Unix epoch.
    pub period_end: Option<i64>,
    /// When Stripe tries again, in seconds since the Unix epoch; `null` after the final
    /// attempt.
    pub next_payment_attempt: Option<i64>,
    /// Where the customer can pay (or confirm the payment of) the invoice.
    pub hosted_invoice_url: Option<String>,
    /// The Stripe event that caused this one, `evt_…`.
    pub stripe_event_id: String,
}

/// `data` of `invoice.upcoming`: the invoice Stripe will make, which has no id yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpcomingInvoiceData {
    /// Stripe's subscription id, `sub_…`, for a subscription's renewal.
    pub subscription_id: Option<String>,
    /// Stripe's customer id, `cus_…`.
    pub customer_id: Option<String>,
    /// The application's user id the customer is linked to, if known.
    pub user_id: Option<String>,
    /// What will be charged, in the currency's minor unit.
    pub amount_due: i64,
    /// Three-letter ISO currency code in lowercase, as Stripe gives it (`eur`).
    pub currency: String,
    /// When Stripe will try to charge it, in seconds since the Unix epoch.
    pub next_payment_attempt: Option<i64>,
    /// The latest line period end, in seconds since the Unix epoch.
    pub period_end: Option<i64>,
    /// The Stripe event that caused this one, `evt_…`.
    pub stripe_event_id: String,
}

/// `data` of `dispute.created` and `dispute.closed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisputeData {
    /// Stripe's dispute id, `dp_…`.
    pub dispute_id: String,
    /// The disputed payment: its PaymentIntent id (the charge's when it has none).
    pub payment_id: String,
    /// The disputed charge, `ch_…`.
    pub charge_id: Option<String>,
    /// Stripe's customer id, `cus_…`, when the payment is recorded.
    pub customer_id: Option<String>,
    /// The application's user id, when the payment is linked to one.
    pub user_id: Option<String>,
    /// The disputed amount, in the currency's minor unit.
    pub amount: i64,
    /// Three-letter ISO currency code in lowercase, as Stripe gives it (`eur`).
    pub currency: String,
    /// Stripe's reason: `fraudulent`, `product_not_received`…
    pub reason: Option<String>,
    /// Stripe's dispute status: `needs_response`, `under_review`, `won`, `lost`…
    pub status: String,
    /// The deadline for evidence, in seconds since the Unix epoch.
    pub evidence_due_by: Option<i64>,
    /// For `dispute.closed`: `won` or `lost` (or `warning_closed` for an inquiry).
    pub outcome: Option<String>,
    /// The Stripe event that caused this one, `evt_…`.
    pub stripe_event_id: String,
}

/// `data` of `run.failed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunFailedData {
    /// The id of the function whose run failed.
    pub function_id: FunctionId,
    /// paysteps' id of the failed run, `run_…`.
    pub run_id: RunId,
    /// The error the run failed with.
    pub error: String,
    /// The event the run was started by: paysteps' id, its name and the sender's id.
    pub event_id: EventId,
    /// The name of that event (`stripe/invoice.paid`…).
    pub event_name: String,
    /// The sender's id for that event (`evt_…` for Stripe).
    pub external_id: Option<String>,
}

/// `data` of `endpoint.disabled`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointDisabledData {
    /// The disabled endpoint's id, `whep_…`.
    pub endpoint_id: String,
    /// The endpoint's URL.
    pub url: String,
    /// Why paysteps disabled it (410 Gone, or no success for 5 days).
    pub reason: String,
    /// Milliseconds since the Unix epoch of the first failure without a success since.
    pub failing_since: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_round_trip_and_ids_depend_on_source_and_type_only() {
        for t in EventType::ALL {
            assert_eq!(t.as_str().parse::<EventType>(), Ok(t));
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
        assert!("payment.refunded".parse::<EventType>().is_err());
        let a = BusinessEvent::from_stripe(EventType::PaymentFailed, "evt_1", 1);
        let b = BusinessEvent::from_stripe(EventType::PaymentFailed, "evt_1", 2);
        let c = BusinessEvent::from_stripe(EventType::InvoicePaymentFailed, "evt_1", 1);
        assert_eq!(a.message_id(), b.message_id());
        assert_ne!(a.message_id(), c.message_id());
        assert_eq!(a.message_id().len(), 36);
        let body: Value = serde_json::from_str(&a.body(1_795_428_060_000)).unwrap();
        assert_eq!(body["type"], "payment.failed");
        assert_eq!(body["timestamp"], "2026-11-23T10:01:00.000Z");
        assert_eq!(body["data"], 1);
        assert!(
            a.body(0)
                .starts_with("{\"type\":\"payment.failed\",\"timestamp\":")
        );
    }
}
