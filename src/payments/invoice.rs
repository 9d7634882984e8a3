//! Invoices: a paid one extends its subscription's period, a failed one marks it past_due
//! and logs the failure.

use serde::{Deserialize, Serialize};
use stripe_shared::Invoice;
use stripe_webhook::EventObject;

use super::repo::{FailureKind, NewFailure, SubscriptionChange};
use super::{
    Error, EventMeta, Faults, Outcome, Party, Write, direct_user, link_customer, log_success,
    notifications, parse_event, stripe_function, unexpected, write_step,
};
use crate::engine::{Ctx, Function, Interrupt, StepError};

const VALIDATE: &str = "validate-invoice";
const EXTEND: &str = "extend-subscription";
const PAST_DUE: &str = "mark-past-due";
const RECORD_FAILURE: &str = "record-payment-failure";

pub(super) fn functions(faults: &Faults) -> Vec<Function> {
    vec![
        stripe_function(faults, "invoice-paid", "invoice.paid", paid),
        stripe_function(
            faults,
            "invoice-payment-failed",
            "invoice.payment_failed",
            payment_failed,
        ),
    ]
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct InvoiceSummary {
    event: EventMeta,
    invoice_id: String,
    party: Party,
    subscription_id: Option<String>,
    /// The latest end among the invoice's line periods.
    period_end: Option<i64>,
    amount_due: i64,
    currency: String,
    attempt_count: u64,
}

impl InvoiceSummary {
    fn change(
        &self,
        user_id: Option<String>,
        status: &str,
        period_end: Option<i64>,
    ) -> Option<SubscriptionChange> {
        Some(SubscriptionChange {
            id: self.subscription_id.clone()?,
            user_id,
            customer_id: self.party.customer_id.clone(),
            status: status.to_owned(),
            current_period_end: period_end,
            event_created: self.event.created,
        })
    }

    /// The `invoice.paid` or `invoice.payment_failed` business event.
    fn notice(&self, user_id: Option<String>) -> crate::webhooks::BusinessEvent {
        let data = crate::webhooks::events::InvoiceData {
            invoice_id: self.invoice_id.clone(),
            subscription_id: self.subscription_id.clone(),
            customer_id: self.party.customer_id.clone(),
            user_id,
            amount_due: self.amount_due,
            currency: self.currency.clone(),
            attempt_count: self.attempt_count,
            period_end: self.period_end,
            stripe_event_id: self.event.id.clone(),
        };
        notifications::invoice(&self.event, data)
    }

    fn outcome(&self, user_id: Option<String>, action: String) -> Outcome {
        Outcome {
            event_id: self.event.id.clone(),
            object_id: self.invoice_id.clone(),
            user_id,
            customer_id: self.party.customer_id.clone(),
            action,
        }
    }
}

fn summarize(event: EventMeta, object: EventObject) -> Result<InvoiceSummary, StepError> {
    let invoice = match object {
        EventObject::InvoicePaid(i) | EventObject::InvoicePaymentFailed(i) => i,
        _ => return Err(unexpected("invoice.*", &event)),
    };
    summary_of(event, &invoice)
}

fn summary_of(event: EventMeta, invoice: &Invoice) -> Result<InvoiceSummary, StepError> {
    let invoice_id = invoice
        .id
        .as_ref()
        .map(|id| id.as_str().to_owned())
        .ok_or_else(|| {
            StepError::non_retriable(Error::MissingField {
                object: format!("the invoice of event {}", event.id),
                field: "id",
            })
        })?;
    let parent = invoice
        .parent
        .as_ref()
        .and_then(|p| p.subscription_details.as_ref());
    let subscription_id = parent
        .map(|d| d.subscription.id().as_str().to_owned())
        .or_else(|| {
            invoice
                .subscription
                .as_ref()
                .map(|s| s.id().as_str().to_owned())
        });
    // The invoice's own metadata first, then the subscription's as copied onto the invoice.
    let user_id = direct_user(None, invoice.metadata.as_ref())
        .or_else(|| direct_user(None, parent.and_then(|d| d.metadata.as_ref())));
    Ok(InvoiceSummary {
        invoice_id,
        party: Party {
            customer_id: invoice
                .customer
                .as_ref()
                .map(|c| c.id().as_str().to_owned()),
            user_id,
            email: invoice.customer_email.clone(),
        },
        subscription_id,
        period_end: latest_period_end(invoice.lines.data.iter().map(|line| line.period.end)),
        amount_due: invoice.amount_due,
        currency: invoice.currency.to_string(),
        attempt_count: invoice.attempt_count,
        event,
    })
}

fn latest_period_end(ends: impl Iterator<Item = i64>) -> Option<i64> {
    ends.max()
}

/// The failure message of an invoice: how much was due and which attempt failed.
fn failure_message(
    invoice_id: &str,
    amount_due: i64,
    currency: &str,
    attempt_count: u64,
) -> String {
    format!(
        "payment of invoice {invoice_id} failed: amount_due {amount_due} {currency}, \
         attempt {attempt_count}"
    )
}

async fn validate(ctx: &Ctx, faults: &Faults) -> Result<InvoiceSummary, Interrupt> {
    let data = ctx.event.data.clone();
    let summary = ctx
        .step
        .compute(VALIDATE, || async {
            faults.check(VALIDATE)?;
            parse_event(data, summarize).await
        })
        .await?;
    Ok(summary)
}

async fn paid(ctx: Ctx, faults: Faults) -> Result<Outcome, Interrupt> {
    let invoice = validate(&ctx, &faults).await?;
    let user_id = link_customer(&ctx, &faults, &invoice.party, &invoice.event, None).await?;
    let action = match invoice.change(user_id.clone(), "active", invoice.period_end) {
        Some(change) => {
            let action = format!("subscription {} active", change.id);
            write_step(&ctx, &faults, EXTEND, Write::SubscriptionChange(change)).await?;
            action
        }
        None => "invoice paid; no subscription".to_owned(),
    };
    crate::webhooks::notify(&ctx, invoice.notice(user_id.clone())).await?;
    log_success(&ctx, &faults, invoice.outcome(user_id, action)).await
}

async fn payment_failed(ctx: Ctx, faults: Faults) -> Result<Outcome, Interrupt> {
    let invoice = validate(&ctx, &faults).await?;
    let user_id = link_customer(&ctx, &faults, &invoice.party, &invoice.event, None).await?;
    let mut action = "invoice payment failed".to_owned();
    if let Some(change) = invoice.change(user_id.clone(), "past_due", None) {
        action = format!("subscription {} past_due", change.id);
        write_step(&ctx, &faults, PAST_DUE, Write::SubscriptionChange(change)).await?;
    }
    let failure = NewFailure {
        id: invoice.event.id.clone(),
        kind: FailureKind::Invoice,
        user_id: user_id.clone(),
        customer_id: invoice.party.customer_id.clone(),
        object_id: Some(invoice.invoice_id.clone()),
        amount: Some(invoice.amount_due),
        currency: Some(invoice.currency.clone()),
        code: Some("invoice_payment_failed".to_owned()),
        decline_code: None,
        message: Some(failure_message(
            &invoice.invoice_id,
            invoice.amount_due,
            &invoice.currency,
            invoice.attempt_count,
        )),
        event_id: Some(invoice.event.id.clone()),
        created: invoice.event.created,
    };
    write_step(&ctx, &faults, RECORD_FAILURE, Write::Failure(failure)).await?;
    crate::webhooks::notify(&ctx, invoice.notice(user_id.clone())).await?;
    log_success(&ctx, &faults, invoice.outcome(user_id, action)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_period_is_the_latest_line_end_and_failures_say_what_was_due() {
        assert_eq!(latest_period_end([5, 9, 7].into_iter()), Some(9));
        assert_eq!(latest_period_end(std::iter::empty()), None);
        assert_eq!(
            failure_message("in_1", 2000, "usd", 3),
            "payment of invoice in_1 failed: amount_due 2000 usd, attempt 3"
        );
    }

    #[tokio::test]
    async fn invoices_name_their_subscription_through_the_parent() {
        let data: serde_json::Value =
            serde_json::from_str(include_str!("../../fixtures/invoice.payment_failed.json"))
                .unwrap();
        let s = parse_event(data, summarize).await.unwrap();
        assert_eq!(s.invoice_id, "in_1PgZihB7WZ01zgkWevAqQyk2");
        assert_eq!(
            s.subscription_id.as_deref(),
            Some("sub_1Pgc6rB7WZ01zgkWNy0Cn5nw")
        );
        assert_eq!(s.period_end, Some(1_796_119_203));
        assert_eq!(s.party.user_id.as_deref(), Some("user_123"));
        assert_eq!(
            (s.amount_due, s.currency.as_str(), s.attempt_count),
            (2000, "usd", 1)
        );
    }
}
