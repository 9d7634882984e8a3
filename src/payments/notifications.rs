//! The business events the Stripe functions emit for outgoing webhooks, built from what
//! the functions have just written.

use super::EventMeta;
use super::ordering::{is_live, is_terminal};
use super::repo::{NewFailure, PaymentRecord, SubscriptionView};
use crate::webhooks::events::{InvoiceData, PaymentData, SubscriptionData};
use crate::webhooks::{BusinessEvent, EventType};

/// The business event a newly stored view of a subscription makes, from the status it
/// replaced (`None` for a new row): ending is a cancellation, becoming live an
/// activation, any other change of a snapshot an update. A provisional view that does
/// not change the status says nothing.
pub(crate) fn subscription(
    event: &EventMeta,
    view: &SubscriptionView,
    previous: Option<&str>,
) -> Option<BusinessEvent> {
    let status = view.version.status.as_str();
    let event_type = if is_terminal(status) {
        if previous.is_some_and(is_terminal) {
            return None;
        }
        EventType::SubscriptionCanceled
    } else if is_live(status) && !previous.is_some_and(is_live) {
        EventType::SubscriptionActivated
    } else if view.version.source == super::ordering::Source::Provisional
        && previous == Some(status)
    {
        return None;
    } else {
        EventType::SubscriptionUpdated
    };
    Some(BusinessEvent::from_stripe(
        event_type,
        &event.id,
        subscription_data(event, view),
    ))
}

/// `subscription.trial_will_end` for a subscription whose trial ends soon.
pub(crate) fn trial_will_end(event: &EventMeta, view: &SubscriptionView) -> BusinessEvent {
    BusinessEvent::from_stripe(
        EventType::SubscriptionTrialWillEnd,
        &event.id,
        subscription_data(event, view),
    )
}

fn subscription_data(event: &EventMeta, view: &SubscriptionView) -> SubscriptionData {
    SubscriptionData {
        subscription_id: view.id.clone(),
        customer_id: view.customer_id.clone(),
        user_id: view.user_id.clone(),
        status: view.version.status.clone(),
        price_id: view.terms.items.first().and_then(|i| i.price.clone()),
        current_period_end: view.terms.current_period_end,
        cancel_at_period_end: (view.version.source != super::ordering::Source::Provisional)
            .then_some(view.terms.cancel_at_period_end),
        canceled_at: view.terms.canceled_at,
        trial_end: view.terms.trial_end,
        stripe_event_id: event.id.clone(),
    }
}

/// `payment.succeeded`, `payment.failed`, `payment.processing` or `payment.canceled` for
/// a recorded payment (`None` in any other status, such as a pending checkout); a failure adds its codes and message.
pub(crate) fn payment(
    event: &EventMeta,
    p: &PaymentRecord,
    failure: Option<&NewFailure>,
) -> Option<BusinessEvent> {
    let event_type = match p.status.as_str() {
        "succeeded" => EventType::PaymentSucceeded,
        "failed" => EventType::PaymentFailed,
        "processing" => EventType::PaymentProcessing,
        "canceled" => EventType::PaymentCanceled,
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

/// `invoice.paid`, `invoice.payment_failed` or `invoice.payment_action_required`, as the
/// Stripe event is.
pub(crate) fn invoice(event: &EventMeta, data: InvoiceData) -> BusinessEvent {
    let event_type = match event.event_type.as_str() {
        "invoice.payment_failed" => EventType::InvoicePaymentFailed,
        "invoice.payment_action_required" => EventType::InvoicePaymentActionRequired,
        _ => EventType::InvoicePaid,
    };
    BusinessEvent::from_stripe(event_type, &event.id, data)
}
