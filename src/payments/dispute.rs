//! Disputes: `charge.dispute.created|updated|closed|funds_withdrawn|funds_reinstated`.
//! Each is recorded with its deadline and the money it moved; opening and closing one
//! are business events (`dispute.created`, `dispute.closed`), so a team can answer
//! before evidence is due.

use serde::{Deserialize, Serialize};

use super::money::dispute_is_closed;
use super::repo::{self, DisputeRecord, FundsRecord};
use super::{EventMeta, Outcome, log_success, read_event, stripe_function};
use crate::engine::{Ctx, Function, Interrupt, StepError, system_now_ms};
use crate::stripe::objects::Dispute;
use crate::webhooks::events::DisputeData;
use crate::webhooks::{BusinessEvent, EventType};

const VALIDATE: &str = "validate-dispute";
const RECORD_DISPUTE: &str = "record-dispute";

pub(super) fn functions() -> Vec<Function> {
    [
        ("dispute-created", "charge.dispute.created"),
        ("dispute-updated", "charge.dispute.updated"),
        ("dispute-closed", "charge.dispute.closed"),
        ("dispute-funds-withdrawn", "charge.dispute.funds_withdrawn"),
        (
            "dispute-funds-reinstated",
            "charge.dispute.funds_reinstated",
        ),
    ]
    .into_iter()
    .map(|(id, event_type)| stripe_function(id, event_type, handle))
    .collect()
}

/// The dispute as the event shows it. A balance transaction in the dispute's currency
/// counts as it is; one in another settlement currency counts the disputed amount.
fn record(event: &EventMeta, d: &Dispute) -> Result<DisputeRecord, StepError> {
    let payment_id = super::payment_of(&d.id, &d.payment_intent, &d.charge)?;
    let funds = d
        .balance_transactions
        .iter()
        .map(|t| FundsRecord {
            id: t.id.clone(),
            amount: if t.currency == d.currency {
                t.amount
            } else {
                d.amount * t.amount.signum()
            },
            created: t.created,
        })
        .collect();
    Ok(DisputeRecord {
        id: d.id.clone(),
        payment_id,
        charge_id: d.charge.clone(),
        amount: d.amount,
        currency: d.currency.clone(),
        reason: d.reason.clone(),
        status: d.status.clone(),
        evidence_due_by: d.evidence_due_by,
        created: d.created,
        status_as_of: event.created,
        livemode: i64::from(event.livemode),
        account: event.account.clone(),
        funds,
    })
}

/// What recording the dispute found: the status stored before, and the payment's user
/// and customer when the payment is recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Recorded {
    previous: Option<String>,
    user_id: Option<String>,
    customer_id: Option<String>,
}

/// `dispute.created` for a dispute opened (unless it is already closed), `dispute.closed`
/// when it ends.
fn notice(event: &EventMeta, d: &DisputeRecord, recorded: &Recorded) -> Option<BusinessEvent> {
    let already_closed = recorded.previous.as_deref().is_some_and(dispute_is_closed);
    let event_type = match event.event_type.as_str() {
        "charge.dispute.created" if !already_closed => EventType::DisputeCreated,
        _ if dispute_is_closed(&d.status) && !already_closed => EventType::DisputeClosed,
        _ => return None,
    };
    let data = DisputeData {
        dispute_id: d.id.clone(),
        payment_id: d.payment_id.clone(),
        charge_id: d.charge_id.clone(),
        customer_id: recorded.customer_id.clone(),
        user_id: recorded.user_id.clone(),
        amount: d.amount,
        currency: d.currency.clone(),
        reason: d.reason.clone(),
        status: d.status.clone(),
        evidence_due_by: d.evidence_due_by,
        outcome: dispute_is_closed(&d.status).then(|| d.status.clone()),
        stripe_event_id: event.id.clone(),
    };
    Some(BusinessEvent::from_stripe(event_type, &event.id, data))
}

async fn handle(ctx: Ctx) -> Result<Outcome, Interrupt> {
    let data = ctx.event.data.clone();
    let (event, dispute) = ctx
        .step
        .compute(VALIDATE, || async {
            let (event, dispute, _) = read_event::<Dispute>(data, "charge.dispute.")?;
            let record = record(&event, &dispute)?;
            Ok::<_, StepError>((event, record))
        })
        .await?;
    let step_dispute = dispute.clone();
    let recorded = ctx
        .step
        .run_tx(RECORD_DISPUTE, move |tx| {
            Box::pin(async move {
                let previous = repo::upsert_dispute(tx, &step_dispute, system_now_ms()).await?;
                let (user_id, customer_id) =
                    repo::payment_party(tx, &step_dispute.payment_id).await?;
                Ok::<_, StepError>(Recorded {
                    previous,
                    user_id,
                    customer_id,
                })
            })
        })
        .await?;
    if let Some(notice) = notice(&event, &dispute, &recorded) {
        crate::webhooks::notify(&ctx, notice).await?;
    }
    let outcome = Outcome {
        event_id: event.id.clone(),
        object_id: dispute.id.clone(),
        user_id: recorded.user_id,
        customer_id: recorded.customer_id,
        action: format!(
            "dispute {} of {} {} on {}: {}",
            dispute.id, dispute.amount, dispute.currency, dispute.payment_id, dispute.status
        ),
    };
    log_success(&ctx, outcome).await
}
