//! The event envelopes of `fixtures/`, built into the binary so `paysteps trigger`
//! works from any directory, and turned into fresh events on demand.

use serde_json::Value;

/// One customer and one user run through every fixture; overrides replace them.
pub const FIXTURE_USER: &str = "user_123";
/// The Stripe customer id every fixture uses.
pub const FIXTURE_CUSTOMER: &str = "cus_QXg1o8vcGmoR32";
/// The subscription the subscription fixtures tell the story of.
pub const FIXTURE_SUBSCRIPTION: &str = "sub_1Pgc6rB7WZ01zgkWNy0Cn5nw";

const FIXTURES: &[(&str, &str)] = &[
    (
        "checkout.session.completed",
        include_str!("../../fixtures/checkout.session.completed.subscription.json"),
    ),
    (
        "checkout.session.completed.subscription",
        include_str!("../../fixtures/checkout.session.completed.subscription.json"),
    ),
    (
        "checkout.session.completed.payment",
        include_str!("../../fixtures/checkout.session.completed.payment.json"),
    ),
    (
        "checkout.session.async_payment_failed",
        include_str!("../../fixtures/checkout.session.async_payment_failed.json"),
    ),
    (
        "customer.subscription.created",
        include_str!("../../fixtures/customer.subscription.created.json"),
    ),
    (
        "customer.subscription.updated",
        include_str!("../../fixtures/customer.subscription.updated.json"),
    ),
    (
        "customer.subscription.deleted",
        include_str!("../../fixtures/customer.subscription.deleted.json"),
    ),
    (
        "invoice.paid",
        include_str!("../../fixtures/invoice.paid.json"),
    ),
    (
        "invoice.payment_failed",
        include_str!("../../fixtures/invoice.payment_failed.json"),
    ),
    (
        "payment_intent.succeeded",
        include_str!("../../fixtures/payment_intent.succeeded.json"),
    ),
    (
        "payment_intent.payment_failed",
        include_str!("../../fixtures/payment_intent.payment_failed.json"),
    ),
    (
        "charge.refunded",
        include_str!("../../fixtures/charge.refunded.json"),
    ),
    (
        "customer.tax_id.created",
        include_str!("../../fixtures/customer.tax_id.created.json"),
    ),
    (
        "charge.dispute.created",
        include_str!("../../fixtures/charge.dispute.created.json"),
    ),
    (
        "charge.dispute.closed",
        include_str!("../../fixtures/charge.dispute.closed.json"),
    ),
    (
        "customer.subscription.trial_will_end",
        include_str!("../../fixtures/customer.subscription.trial_will_end.json"),
    ),
    (
        "invoice.payment_action_required",
        include_str!("../../fixtures/invoice.payment_action_required.json"),
    ),
    (
        "refund.created",
        include_str!("../../fixtures/refund.created.json"),
    ),
    (
        "refund.updated",
        include_str!("../../fixtures/refund.updated.json"),
    ),
    (
        "refund.failed",
        include_str!("../../fixtures/refund.failed.json"),
    ),
    (
        "charge.dispute.funds_withdrawn",
        include_str!("../../fixtures/charge.dispute.funds_withdrawn.json"),
    ),
    (
        "charge.dispute.updated",
        include_str!("../../fixtures/charge.dispute.updated.json"),
    ),
    (
        "charge.dispute.funds_reinstated",
        include_str!("../../fixtures/charge.dispute.funds_reinstated.json"),
    ),
    (
        "invoice.upcoming",
        include_str!("../../fixtures/invoice.upcoming.json"),
    ),
    (
        "payment_intent.processing",
        include_str!("../../fixtures/payment_intent.processing.json"),
    ),
    (
        "payment_intent.canceled",
        include_str!("../../fixtures/payment_intent.canceled.json"),
    ),
];

/// The names `fixture` knows: event types, plus `checkout.session.completed.payment`
/// and `.subscription` for the two checkout modes.
pub fn names() -> impl Iterator<Item = &'static str> {
    FIXTURES.iter().map(|(name, _)| *name)
}

/// The fixture envelope for an event type (or a `checkout.session.completed.<mode>` name).
pub fn fixture(name: &str) -> Option<Value> {
    FIXTURES
        .iter()
        .find(|(n, _)| *n == name)
        .and_then(|(_, text)| serde_json::from_str(text).ok())
}

/// What to change in a fixture to make it a new delivery.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// The event id to give; a fresh `evt_…` when `None`.
    pub event_id: Option<String>,
    /// The event's `created`, in seconds.
    pub created: Option<i64>,
    /// The user id to put in place of [`FIXTURE_USER`].
    pub user: Option<String>,
    /// The customer id to put in place of [`FIXTURE_CUSTOMER`].
    pub customer: Option<String>,
    /// The subscription id to put in place of [`FIXTURE_SUBSCRIPTION`].
    pub subscription: Option<String>,
}

/// A fixture with a fresh event id and time, and the user and customer replaced wherever
/// they appear as a value.
pub fn build_event(mut envelope: Value, overrides: &Overrides) -> Value {
    if let Some(user) = &overrides.user {
        replace_strings(&mut envelope, FIXTURE_USER, user);
    }
    if let Some(customer) = &overrides.customer {
        replace_strings(&mut envelope, FIXTURE_CUSTOMER, customer);
    }
    if let Some(subscription) = &overrides.subscription {
        replace_strings(&mut envelope, FIXTURE_SUBSCRIPTION, subscription);
    }
    envelope["id"] = Value::String(overrides.event_id.clone().unwrap_or_else(new_event_id));
    if let Some(created) = overrides.created {
        envelope["created"] = Value::from(created);
    }
    envelope
}

/// `evt_` followed by 24 random alphanumerics, like Stripe's own.
pub fn new_event_id() -> String {
    use rand::Rng;
    let suffix: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(24)
        .map(char::from)
        .collect();
    format!("evt_{suffix}")
}

fn replace_strings(value: &mut Value, from: &str, to: &str) {
    match value {
        Value::String(s) if s == from => *s = to.to_owned(),
        Value::Array(items) => items.iter_mut().for_each(|v| replace_strings(v, from, to)),
        Value::Object(map) => map.values_mut().for_each(|v| replace_strings(v, from, to)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fixture_loads_and_overrides_apply() {
        for name in names() {
            assert!(fixture(name).is_some(), "{name}");
        }
        let base = fixture("checkout.session.completed").expect("fixture");
        let event = build_event(
            base,
            &Overrides {
                created: Some(42),
                user: Some("user_9".into()),
                customer: Some("cus_9".into()),
                subscription: Some("sub_9".into()),
                ..Overrides::default()
            },
        );
        assert!(
            event["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("evt_"))
        );
        assert_eq!(event["created"], 42);
        assert_eq!(event["data"]["object"]["client_reference_id"], "user_9");
        assert_eq!(event["data"]["object"]["customer"], "cus_9");
        assert_eq!(event["data"]["object"]["subscription"], "sub_9");
    }
}
