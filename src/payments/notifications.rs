//! The business events the Stripe functions emit for outgoing webhooks, built from what
//! the functions have just written.

use super::EventMeta;
use super::repo::{NewFailure, PaymentRecord, SubscriptionChange, SubscriptionState};
use crate::webhooks::events::{InvoiceData, PaymentData, SubscriptionData};
use crate::webhooks::{BusinessEvent, EventType};

/// Whether a Stripe subscription status means the customer has access.
fn live(status: &str) -> bool {
    matches!(status, "active" | "trialing")
}

/// A subscription's full state, from `customer.subscription.*`: created and live is an
/// activation, deleted or canceled a cancellation, anything else an update.
pub(crate) fn subscription_state(event: &EventMeta, s: &SubscriptionState) -> BusinessEvent {
    let event_type = match event.event_type.as_str() {
        "customer.subscription.deleted" => EventType::SubscriptionCanceled,
        _ if s.status == "canceled" => EventType::SubscriptionCanceled,
        "customer.subscription.created" if live(&s.status) => EventType::SubscriptionActivated,
        _ => EventType::SubscriptionUpdated,
    };
    BusinessEvent::from_stripe(
        event_type,
        &event.id,
        SubscriptionData {
            subscription_id: s.id.clone(),
            customer_id: s.customer_id.clone(),
            user_id: s.user_id.clone(),
            status: s.status.clone(),
            price_id: s.price_id.clone(),
            current_period_end: s.current_period_end,
            cancel_at_period_end: Some(s.cancel_at_period_end),
            canceled_at: s.canceled_at,
            stripe_event_id: event.id.clone(),
        },
    )
}

/// A subscription status set by a checkout: live is an activation, else an update.
pub(crate) fn subscription_change(event: &EventMeta, c: &SubscriptionChange) -> BusinessEvent {
    let event_type = if live(&c.status) {
        EventType::SubscriptionActivated
    } else {
        EventType::SubscriptionUpdated
    };
    BusinessEvent::from_stripe(
        event_type,
        &event.id,
        SubscriptionData {
            subscription_id: c.id.clone(),
            customer_id: c.customer_id.clone(),
            user_id: c.user_id.clone(),
            status: c.status.clone(),
            price_id: None,
            current_period_end: c.current_period_end,
            cancel_at_period_end: None,
            canceled_at: None,
            stripe_event_id: event.id.clone(),
        },
    )
}

/// `payment.succeeded` or `payment.failed` for a recorded payment (`None` while it is
/// still pending); a failure adds its codes and message.
pub(crate) fn payment(
    event: &EventMeta,
    p: &PaymentRecord,
    failure: Option<&NewFailure>,
) -> Option<BusinessEvent> {
    let event_type = match p.status.as_str() {
        "succeeded" => EventType::PaymentSucceeded,
        "failed" => EventType::PaymentFailed,
        _ => return None,
    };
    Some(BusinessEvent::from_stripe(
        event_type,
        &event.id,
        PaymentData {
            payment_id: p.id.clone(),
            customer_id: p.customer_id.clone(),
            user_id: p.user_id.clone(),
            amount: p.amount,
            currency: p.currency.clone(),
            status: p.status.clone(),
            checkout_session_id: p.checkout_session_id.clone(),
            failure_code: failure.and_then(|f| f.code.clone()),
            decline_code: failure.and_then(|f| f.decline_code.clone()),
            failure_message: failure.and_then(|f| f.message.clone()),
            stripe_event_id: event.id.clone(),
        },
    ))
}

/// `invoice.paid` or `invoice.payment_failed`.
pub(crate) fn invoice(event: &EventMeta, data: InvoiceData) -> BusinessEvent {
    let event_type = if event.event_type == "invoice.payment_failed" {
        EventType::InvoicePaymentFailed
    } else {
        EventType::InvoicePaid
    };
    BusinessEvent::from_stripe(event_type, &event.id, data)
}
