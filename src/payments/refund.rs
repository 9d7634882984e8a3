//! Refunds: `charge.refunded` (the charge's cumulative `amount_refunded`) and
//! `refund.created|updated|failed` (each refund with its status). Both settle the
//! payment's refunded amount, whichever arrives first (see [`super::money`]).

use serde::{Deserialize, Serialize};

use super::repo::{self, PaymentRecord, RefundRecord};
use super::{
    BusinessWrite, EventMeta, Outcome, Party, direct_user, link_customer, log_success, read_event,
    stripe_function, write_step,
};
use crate::engine::{Ctx, Function, Interrupt, StepError, system_now_ms};
use crate::stripe::objects::{Charge, Refund};

const VALIDATE_CHARGE: &str = "validate-charge";
const VALIDATE_REFUND: &str = "validate-refund";
const RECORD_PAYMENT: &str = "record-payment";
const RECORD_REFUNDS: &str = "record-refunds";

pub(super) fn functions() -> Vec<Function> {
    let mut all = vec![stripe_function(
        "charge-refunded",
        "charge.refunded",
        charge_refunded,
    )];
    for (id, event_type) in [
        ("refund-created", "refund.created"),
        ("refund-updated", "refund.updated"),
        ("refund-failed", "refund.failed"),
    ] {
        all.push(stripe_function(id, event_type, refund_changed));
    }
    all
}

/// A refund as the event reports it, for the payment it belongs to.
fn refund_record(event: &EventMeta, refund: &Refund, payment_id: &str) -> RefundRecord {
    RefundRecord {
        id: refund.id.clone(),
        payment_id: payment_id.to_owned(),
        charge_id: refund.charge.clone(),
        amount: refund.amount,
        currency: refund.currency.clone(),
        status: refund.status.clone(),
        reason: refund.reason.clone(),
        failure_reason: refund.failure_reason.clone(),
        created: refund.created,
        status_as_of: event.created,
        livemode: i64::from(event.livemode),
        account: event.account.clone(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ChargeSummary {
    event: EventMeta,
    party: Party,
    charge: Charge,
}

impl ChargeSummary {
    /// The payment the charge belongs to: its PaymentIntent, else the charge itself.
    fn payment_id(&self) -> String {
        self.charge
            .payment_intent
            .clone()
            .unwrap_or_else(|| self.charge.id.clone())
    }

    /// The payment as the charge shows it: a paid charge says when it succeeded, and
    /// every charge event gives the refunded figure as of the event.
    fn payment(&self, user_id: Option<String>) -> PaymentRecord {
        let c = &self.charge;
        let succeeded = c.paid && c.status == "succeeded";
        PaymentRecord {
            id: self.payment_id(),
            user_id,
            customer_id: c.customer.clone(),
            amount: Some(c.amount),
            currency: Some(c.currency.clone()),
            status: if succeeded { "succeeded" } else { &c.status }.to_owned(),
            checkout_session_id: None,
            event_created: self.event.created,
            charge_id: Some(c.id.clone()),
            succeeded_at: succeeded.then_some(c.created),
            charge_amount_refunded: Some(c.amount_refunded),
            livemode: self.event.livemode,
            account: self.event.account.clone(),
        }
    }
}

async fn charge_refunded(ctx: Ctx) -> Result<Outcome, Interrupt> {
    let data = ctx.event.data.clone();
    let summary = ctx
        .step
        .compute(VALIDATE_CHARGE, || async {
            let (event, charge, _) = read_event::<Charge>(data, "charge.")?;
            Ok::<_, StepError>(ChargeSummary {
                party: Party {
                    customer_id: charge.customer.clone(),
                    user_id: direct_user(None, Some(&charge.metadata)),
                    email: charge.email.clone(),
                },
                charge,
                event,
            })
        })
        .await?;
    let user_id = link_customer(&ctx, &summary.party, &summary.event).await?;
    let payment = summary.payment(user_id.clone());
    write_step(&ctx, RECORD_PAYMENT, BusinessWrite::Payment(payment)).await?;
    // Before API version 2022-11-15 the charge lists its refunds.
    let payment_id = summary.payment_id();
    let listed: Vec<RefundRecord> = summary
        .charge
        .refunds
        .iter()
        .map(|r| refund_record(&summary.event, r, &payment_id))
        .collect();
    if !listed.is_empty() {
        record_refunds(&ctx, listed).await?;
    }
    let c = &summary.charge;
    let outcome = Outcome {
        event_id: summary.event.id.clone(),
        object_id: c.id.clone(),
        user_id,
        customer_id: c.customer.clone(),
        action: format!(
            "charge {} refunded {} of {} {}",
            c.id, c.amount_refunded, c.amount, c.currency
        ),
    };
    log_success(&ctx, outcome).await
}

/// Step `record-refunds`: each refund, unless a newer report of it is stored, and the
/// payment's refunded amount settled.
async fn record_refunds(ctx: &Ctx, refunds: Vec<RefundRecord>) -> Result<(), Interrupt> {
    ctx.step
        .run_tx(RECORD_REFUNDS, move |tx| {
            Box::pin(async move {
                for refund in &refunds {
                    repo::upsert_refund(tx, refund, system_now_ms()).await?;
                }
                Ok::<_, StepError>(refunds.len())
            })
        })
        .await?;
    Ok(())
}

async fn refund_changed(ctx: Ctx) -> Result<Outcome, Interrupt> {
    let data = ctx.event.data.clone();
    let (event, record) = ctx
        .step
        .compute(VALIDATE_REFUND, || async {
            let (event, refund, _) = read_event::<Refund>(data, "refund.")?;
            let payment_id = super::payment_of(&refund.id, &refund.payment_intent, &refund.charge)?;
            let record = refund_record(&event, &refund, &payment_id);
            Ok::<_, StepError>((event, record))
        })
        .await?;
    record_refunds(&ctx, vec![record.clone()]).await?;
    let outcome = Outcome {
        event_id: event.id.clone(),
        object_id: record.id.clone(),
        user_id: None,
        customer_id: None,
        action: format!(
            "refund {} of {} {} on {}: {}",
            record.id, record.amount, record.currency, record.payment_id, record.status
        ),
    };
    log_success(&ctx, outcome).await
}
