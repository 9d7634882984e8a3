//! PaymentIntents: record the payment, and log a decline with Stripe's code, decline code
//! and message.

use serde::{Deserialize, Serialize};

use super::attempts::AttemptLinks;
use super::repo::{FailureKind, NewFailure, PaymentRecord};
use super::{
    BusinessWrite, EventMeta, Outcome, Party, direct_user, link_customer, log_success,
    notifications, read_event, stripe_function, write_step,
};
use crate::engine::{Ctx, Function, Interrupt, StepError};
use crate::stripe::objects::PaymentIntent;

const VALIDATE: &str = "validate-payment-intent";
const RECORD_PAYMENT: &str = "record-payment";
const RECORD_FAILURE: &str = "record-payment-failure";

/// Each PaymentIntent event and the payment status it records: `processing` while a
/// bank debit is on its way, `canceled` for an abandoned payment.
pub(super) fn functions() -> Vec<Function> {
    [
        (
            "payment-intent-succeeded",
            "payment_intent.succeeded",
            "succeeded",
        ),
        (
            "payment-intent-payment-failed",
            "payment_intent.payment_failed",
            "failed",
        ),
        (
            "payment-intent-processing",
            "payment_intent.processing",
            "processing",
        ),
        (
            "payment-intent-canceled",
            "payment_intent.canceled",
            "canceled",
        ),
    ]
    .into_iter()
    .map(|(id, event_type, status)| stripe_function(id, event_type, move |ctx| handle(ctx, status)))
    .collect()
}

/// `last_payment_error`, as far as the failure log keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Decline {
    code: Option<String>,
    decline_code: Option<String>,
    message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct IntentSummary {
    event: EventMeta,
    intent_id: String,
    party: Party,
    amount: i64,
    currency: String,
    decline: Option<Decline>,
    /// The charge of the attempt the event reports.
    #[serde(default)]
    charge_id: Option<String>,
    /// The invoice it pays (API versions before 2025-03-31.basil).
    #[serde(default)]
    invoice_id: Option<String>,
}

fn summarize(data: serde_json::Value) -> Result<IntentSummary, StepError> {
    let (event, pi, _) = read_event::<PaymentIntent>(data, "payment_intent.")?;
    Ok(IntentSummary {
        party: Party {
            customer_id: pi.customer,
            user_id: direct_user(None, Some(&pi.metadata)),
            email: pi.receipt_email,
        },
        charge_id: pi
            .last_payment_error
            .as_ref()
            .and_then(|e| e.charge.clone())
            .or(pi.latest_charge),
        invoice_id: pi.invoice,
        intent_id: pi.id,
        amount: pi.amount,
        currency: pi.currency,
        decline: pi.last_payment_error.map(|e| Decline {
            code: e.code,
            decline_code: e.decline_code,
            message: e.message,
        }),
        event,
    })
}

/// The failure row of a declined PaymentIntent.
fn failure(intent: &IntentSummary, user_id: Option<String>) -> NewFailure {
    let decline = intent.decline.clone().unwrap_or_default();
    NewFailure {
        id: intent.event.id.clone(),
        kind: FailureKind::Payment,
        user_id,
        customer_id: intent.party.customer_id.clone(),
        object_id: Some(intent.intent_id.clone()),
        amount: Some(intent.amount),
        currency: Some(intent.currency.clone()),
        code: decline.code.or_else(|| Some("payment_failed".to_owned())),
        decline_code: decline.decline_code,
        message: decline.message,
        event_id: Some(intent.event.id.clone()),
        created: intent.event.created,
        links: AttemptLinks {
            payment_intent_id: Some(intent.intent_id.clone()),
            charge_id: intent.charge_id.clone(),
            invoice_id: intent.invoice_id.clone(),
            ..AttemptLinks::default()
        },
        livemode: intent.event.livemode,
        account: intent.event.account.clone(),
    }
}

async fn handle(ctx: Ctx, status: &'static str) -> Result<Outcome, Interrupt> {
    let data = ctx.event.data.clone();
    let intent = ctx
        .step
        .compute(VALIDATE, || async { summarize(data) })
        .await?;
    let user_id = link_customer(&ctx, &intent.party, &intent.event).await?;
    let payment = PaymentRecord {
        id: intent.intent_id.clone(),
        user_id: user_id.clone(),
        customer_id: intent.party.customer_id.clone(),
        amount: Some(intent.amount),
        currency: Some(intent.currency.clone()),
        status: status.to_owned(),
        checkout_session_id: None,
        event_created: intent.event.created,
        charge_id: intent.charge_id.clone(),
        succeeded_at: (status == "succeeded").then_some(intent.event.created),
        charge_amount_refunded: None,
        livemode: intent.event.livemode,
        account: intent.event.account.clone(),
    };
    let mut notice = notifications::payment(&intent.event, &payment, None);
    write_step(
        &ctx,
        RECORD_PAYMENT,
        BusinessWrite::Payment(payment.clone()),
    )
    .await?;
    if status == "failed" {
        let failure = failure(&intent, user_id.clone());
        notice = notifications::payment(&intent.event, &payment, Some(&failure));
        write_step(&ctx, RECORD_FAILURE, BusinessWrite::Failure(failure)).await?;
    }
    if let Some(notice) = notice {
        crate::webhooks::notify(&ctx, notice).await?;
    }
    let outcome = Outcome {
        event_id: intent.event.id.clone(),
        object_id: intent.intent_id.clone(),
        user_id,
        customer_id: intent.party.customer_id.clone(),
        action: format!("payment {} {status}", intent.intent_id),
    };
    log_success(&ctx, outcome).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decline_keeps_code_decline_code_and_message() {
        let data: serde_json::Value = serde_json::from_str(include_str!(
            "../../fixtures/payment_intent.payment_failed.json"
        ))
        .unwrap();
        let intent = summarize(data).unwrap();
        let row = failure(&intent, Some("user_123".into()));
        assert_eq!(row.id, "evt_1PglVeB7WZ01zgkWItS5oB23");
        assert_eq!(
            row.object_id.as_deref(),
            Some("pi_1PgafyB7WZ01zgkWSjxsAJo3")
        );
        assert_eq!(row.code.as_deref(), Some("card_declined"));
        assert_eq!(row.decline_code.as_deref(), Some("insufficient_funds"));
        assert_eq!(
            row.message.as_deref(),
            Some("Your card has insufficient funds.")
        );
        assert_eq!(
            (row.amount, row.currency.as_deref()),
            (Some(1099), Some("usd"))
        );

        let bare = IntentSummary {
            decline: None,
            ..intent
        };
        assert_eq!(failure(&bare, None).code.as_deref(), Some("payment_failed"));
    }
}
