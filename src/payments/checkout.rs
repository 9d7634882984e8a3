//! Checkout sessions: a completed session links the customer to the user and records the
//! one-time payment, or a provisional view of the subscription it made until the
//! Subscription object arrives; delayed payments settle later. A session that names no
//! user is stored unlinked.

use serde::{Deserialize, Serialize};

use super::attempts::AttemptLinks;
use super::repo::{FailureKind, NewFailure, PaymentRecord, SubscriptionView};
use super::{
    BusinessWrite, Error, EventMeta, Outcome, Party, direct_user, link_customer, log_success,
    notifications, read_event, stripe_function, subscription_step, write_step,
};
use crate::engine::{Ctx, Function, Interrupt, StepError};
use crate::stripe::objects::CheckoutSession;

const VALIDATE: &str = "validate-session";
const ACTIVATE: &str = "activate-subscription";
const RECORD_PAYMENT: &str = "record-payment";
const RECORD_FAILURE: &str = "record-payment-failure";

pub(super) fn functions() -> Vec<Function> {
    vec![
        stripe_function(
            "checkout-session-completed",
            "checkout.session.completed",
            completed,
        ),
        stripe_function(
            "checkout-async-payment-succeeded",
            "checkout.session.async_payment_succeeded",
            |ctx| async_payment(ctx, true),
        ),
        stripe_function(
            "checkout-async-payment-failed",
            "checkout.session.async_payment_failed",
            |ctx| async_payment(ctx, false),
        ),
    ]
}

/// What the steps after `validate-session` need of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SessionSummary {
    event: EventMeta,
    session_id: String,
    mode: String,
    payment_status: String,
    party: Party,
    subscription_id: Option<String>,
    payment_intent_id: Option<String>,
    amount_total: Option<i64>,
    currency: Option<String>,
}

impl SessionSummary {
    fn payment(&self, user_id: Option<String>, status: &str) -> PaymentRecord {
        PaymentRecord {
            // A session that needed no payment has no PaymentIntent; it is its own record.
            id: self
                .payment_intent_id
                .clone()
                .unwrap_or_else(|| self.session_id.clone()),
            user_id,
            customer_id: self.party.customer_id.clone(),
            amount: self.amount_total,
            currency: self.currency.clone(),
            status: status.to_owned(),
            checkout_session_id: Some(self.session_id.clone()),
            event_created: self.event.created,
            charge_id: None,
            succeeded_at: (status == "succeeded").then_some(self.event.created),
            charge_amount_refunded: None,
            livemode: self.event.livemode,
            account: self.event.account.clone(),
        }
    }

    /// The provisional view of the session's subscription: live when paid (trialing when
    /// no payment was required), incomplete while a delayed payment is pending.
    fn provisional(&self, id: &str, user_id: Option<String>, settled: bool) -> SubscriptionView {
        let status = match (settled, self.payment_status.as_str()) {
            (false, _) => "incomplete",
            (true, "no_payment_required") => "trialing",
            (true, _) => "active",
        };
        let party = (user_id, self.party.customer_id.clone());
        self.event
            .provisional_view(id.to_owned(), party, status, None)
    }
}

/// Whether a session's `payment_status` means the money is there.
fn payment_settled(payment_status: &str) -> bool {
    matches!(payment_status, "paid" | "no_payment_required")
}

/// The `payments.status` a completed session records.
fn payment_status(payment_status: &str) -> &'static str {
    if payment_settled(payment_status) {
        "succeeded"
    } else {
        "pending"
    }
}

fn summarize(data: serde_json::Value) -> Result<SessionSummary, StepError> {
    let (event, session, _) = read_event::<CheckoutSession>(data, "checkout.session.")?;
    Ok(SessionSummary {
        session_id: session.id,
        mode: session.mode,
        payment_status: session.payment_status,
        party: Party {
            customer_id: session.customer,
            user_id: direct_user(
                session.client_reference_id.as_deref(),
                Some(&session.metadata),
            ),
            email: session.email,
        },
        subscription_id: session.subscription,
        payment_intent_id: session.payment_intent,
        amount_total: session.amount_total,
        currency: session.currency,
        event,
    })
}

/// Step `validate-session`: a subscription-mode session must name its subscription.
async fn validate(ctx: &Ctx) -> Result<SessionSummary, Interrupt> {
    let data = ctx.event.data.clone();
    let summary = ctx
        .step
        .compute(VALIDATE, || async move {
            let summary = summarize(data)?;
            if summary.mode == "subscription" && summary.subscription_id.is_none() {
                return Err(StepError::non_retriable(Error::MissingField {
                    object: format!("subscription-mode checkout session {}", summary.session_id),
                    field: "subscription",
                }));
            }
            Ok(summary)
        })
        .await?;
    Ok(summary)
}

async fn completed(ctx: Ctx) -> Result<Outcome, Interrupt> {
    let session = validate(&ctx).await?;
    let user_id = link_customer(&ctx, &session.party, &session.event).await?;
    let settled = payment_settled(&session.payment_status);
    let action = match (session.mode.as_str(), &session.subscription_id) {
        ("subscription", Some(id)) => {
            let view = session.provisional(id, user_id.clone(), settled);
            let status = view.version.status.clone();
            subscription_step(&ctx, ACTIVATE, &session.event, view).await?;
            format!("subscription {id} {status}")
        }
        ("payment", _) => {
            let status = payment_status(&session.payment_status);
            let payment = session.payment(user_id.clone(), status);
            let id = payment.id.clone();
            let notice = notifications::payment(&session.event, &payment, None);
            write_step(&ctx, RECORD_PAYMENT, BusinessWrite::Payment(payment)).await?;
            if let Some(notice) = notice {
                crate::webhooks::notify(&ctx, notice).await?;
            }
            format!("payment {id} {status}")
        }
        (mode, _) => format!("nothing to record for mode {mode}"),
    };
    let outcome = outcome(&session, user_id, action);
    log_success(&ctx, outcome).await
}

async fn async_payment(ctx: Ctx, succeeded: bool) -> Result<Outcome, Interrupt> {
    let session = validate(&ctx).await?;
    let user_id = link_customer(&ctx, &session.party, &session.event).await?;
    let verb = if succeeded { "succeeded" } else { "failed" };
    let mut action = format!("delayed payment {verb}");
    match (session.mode.as_str(), &session.subscription_id) {
        ("subscription", Some(id)) if succeeded => {
            let view = session.provisional(id, user_id.clone(), true);
            subscription_step(&ctx, ACTIVATE, &session.event, view).await?;
            action = format!("subscription {id} paid");
        }
        ("payment", _) if succeeded => {
            let payment = session.payment(user_id.clone(), verb);
            action = format!("payment {} {verb}", payment.id);
            let notice = notifications::payment(&session.event, &payment, None);
            write_step(&ctx, RECORD_PAYMENT, BusinessWrite::Payment(payment)).await?;
            if let Some(notice) = notice {
                crate::webhooks::notify(&ctx, notice).await?;
            }
        }
        ("payment", _) => {
            let payment = session.payment(user_id.clone(), verb);
            action = format!("payment {} {verb}", payment.id);
            write_step(&ctx, RECORD_PAYMENT, BusinessWrite::Payment(payment)).await?;
        }
        _ => {}
    }
    if !succeeded {
        let failure = NewFailure {
            id: session.event.id.clone(),
            kind: FailureKind::Payment,
            user_id: user_id.clone(),
            customer_id: session.party.customer_id.clone(),
            object_id: Some(session.session_id.clone()),
            amount: session.amount_total,
            currency: session.currency.clone(),
            code: Some("async_payment_failed".to_owned()),
            decline_code: None,
            message: Some(format!(
                "the delayed payment of checkout session {} failed",
                session.session_id
            )),
            event_id: Some(session.event.id.clone()),
            created: session.event.created,
            links: AttemptLinks {
                payment_intent_id: session.payment_intent_id.clone(),
                ..AttemptLinks::default()
            },
            livemode: session.event.livemode,
            account: session.event.account.clone(),
        };
        let payment = session.payment(user_id.clone(), "failed");
        let notice = notifications::payment(&session.event, &payment, Some(&failure));
        write_step(&ctx, RECORD_FAILURE, BusinessWrite::Failure(failure)).await?;
        if let Some(notice) = notice {
            crate::webhooks::notify(&ctx, notice).await?;
        }
    }
    let outcome = outcome(&session, user_id, action);
    log_success(&ctx, outcome).await
}

fn outcome(session: &SessionSummary, user_id: Option<String>, action: String) -> Outcome {
    Outcome {
        event_id: session.event.id.clone(),
        object_id: session.session_id.clone(),
        user_id,
        customer_id: session.party.customer_id.clone(),
        action,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paid_or_free_sessions_count_as_paid() {
        assert_eq!(payment_status("paid"), "succeeded");
        assert_eq!(payment_status("no_payment_required"), "succeeded");
        assert_eq!(payment_status("unpaid"), "pending");
        assert_eq!(payment_status("something_new"), "pending");
    }

    #[test]
    fn fixture_sessions_summarize_to_what_later_steps_need() {
        let data: serde_json::Value = serde_json::from_str(include_str!(
            "../../fixtures/checkout.session.completed.payment.json"
        ))
        .unwrap();
        let s = summarize(data).unwrap();
        assert_eq!(s.event.id, "evt_1PgObOB7WZ01zgkW634H1jpR");
        assert_eq!(s.event.created, 1_791_814_953);
        assert_eq!(
            (s.mode.as_str(), s.payment_status.as_str()),
            ("payment", "paid")
        );
        assert_eq!(s.party.user_id.as_deref(), Some("user_123"));
        assert_eq!(s.party.customer_id.as_deref(), Some("cus_QXg1o8vcGmoR32"));
        assert_eq!(s.party.email.as_deref(), Some("example@example.com"));
        assert_eq!(
            s.payment_intent_id.as_deref(),
            Some("pi_1PgafyB7WZ01zgkWSjxsAJo3")
        );
        assert_eq!(
            (s.amount_total, s.currency.as_deref()),
            (Some(1099), Some("usd"))
        );
        let payment = s.payment(Some("user_123".into()), "succeeded");
        assert_eq!(payment.id, "pi_1PgafyB7WZ01zgkWSjxsAJo3");
        assert_eq!(
            payment.checkout_session_id.as_deref(),
            Some(s.session_id.as_str())
        );

        let data: serde_json::Value = serde_json::from_str(include_str!(
            "../../fixtures/checkout.session.completed.subscription.json"
        ))
        .unwrap();
        let s = summarize(data).unwrap();
        assert_eq!(s.mode, "subscription");
        assert_eq!(
            s.subscription_id.as_deref(),
            Some("sub_1Pgc6rB7WZ01zgkWNy0Cn5nw")
        );
        assert_eq!(s.party.user_id.as_deref(), Some("user_123"));
    }

    #[test]
    fn another_object_or_a_broken_envelope_is_not_retried() {
        crate::payments::tests::assert_refuses_foreign_input(summarize);
    }
}
