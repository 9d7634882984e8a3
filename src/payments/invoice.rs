//! Invoices: each is recorded with where its payment stands; a failed one logs the
//! failure. An invoice never sets its subscription's state: while no Subscription object
//! is stored, it only makes a provisional view (see [`super::ordering`]).

use serde::{Deserialize, Serialize};

use super::attempts::AttemptLinks;
use super::repo::{FailureKind, InvoiceRecord, NewFailure, SubscriptionView};
use super::{
    BusinessWrite, EventMeta, Outcome, Party, direct_user, link_customer, log_success,
    notifications, read_event, stripe_function, subscription_step, write_step,
};
use crate::engine::{Ctx, Function, Interrupt, StepError};
use crate::stripe::objects::{Invoice, UpcomingInvoice};
use crate::webhooks::events::UpcomingInvoiceData;
use crate::webhooks::{BusinessEvent, EventType};

const VALIDATE: &str = "validate-invoice";
const RECORD_INVOICE: &str = "record-invoice";
const NOTE_SUBSCRIPTION: &str = "note-subscription";
const RECORD_FAILURE: &str = "record-payment-failure";

pub(super) fn functions() -> Vec<Function> {
    vec![
        stripe_function("invoice-paid", "invoice.paid", paid),
        stripe_function(
            "invoice-payment-failed",
            "invoice.payment_failed",
            payment_failed,
        ),
        stripe_function(
            "invoice-payment-action-required",
            "invoice.payment_action_required",
            action_required,
        ),
        stripe_function("invoice-upcoming", "invoice.upcoming", upcoming),
    ]
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct InvoiceSummary {
    event: EventMeta,
    party: Party,
    invoice: Invoice,
}

impl InvoiceSummary {
    fn record(&self, user_id: Option<String>) -> InvoiceRecord {
        let i = &self.invoice;
        InvoiceRecord {
            id: i.id.clone(),
            subscription_id: i.subscription.clone(),
            customer_id: i.customer.clone(),
            user_id,
            status: i.status.clone(),
            billing_reason: i.billing_reason.clone(),
            amount_due: i.amount_due,
            amount_paid: i.amount_paid,
            currency: i.currency.clone(),
            attempt_count: i64::try_from(i.attempt_count).unwrap_or(i64::MAX),
            next_payment_attempt: i.next_payment_attempt,
            period_end: i.period_end,
            payment_intent_id: i.payment_intent.clone(),
            charge_id: i.charge.clone(),
            hosted_invoice_url: i.hosted_invoice_url.clone(),
            api_version: self.event.api_version.clone(),
            livemode: i64::from(self.event.livemode),
            account: self.event.account.clone(),
            event_created: self.event.created,
        }
    }

    /// The provisional view of the invoice's subscription, used only while no
    /// Subscription object is stored: a paid invoice implies a live subscription
    /// (trialing when nothing was charged for its first period), a failed first invoice
    /// leaves it incomplete, a failed renewal makes it past due.
    fn provisional(&self, user_id: Option<String>, paid: bool) -> Option<SubscriptionView> {
        let i = &self.invoice;
        let first = i.billing_reason.as_deref() == Some("subscription_create");
        let status = match (paid, first) {
            (true, true) if i.amount_paid == 0 => "trialing",
            (true, _) => "active",
            (false, true) => "incomplete",
            (false, false) => "past_due",
        };
        let party = (user_id, self.party.customer_id.clone());
        let subscription = i.subscription.clone()?;
        Some(
            self.event
                .provisional_view(subscription, party, status, i.period_end),
        )
    }

    /// The `invoice.paid` or `invoice.payment_failed` business event.
    fn notice(&self, user_id: Option<String>) -> crate::webhooks::BusinessEvent {
        let i = &self.invoice;
        let data = crate::webhooks::events::InvoiceData {
            invoice_id: i.id.clone(),
            subscription_id: i.subscription.clone(),
            customer_id: self.party.customer_id.clone(),
            user_id,
            amount_due: i.amount_due,
            currency: i.currency.clone(),
            attempt_count: i.attempt_count,
            period_end: i.period_end,
            next_payment_attempt: i.next_payment_attempt,
            hosted_invoice_url: i.hosted_invoice_url.clone(),
            stripe_event_id: self.event.id.clone(),
        };
        notifications::invoice(&self.event, data)
    }

    fn outcome(&self, user_id: Option<String>, action: String) -> Outcome {
        Outcome {
            event_id: self.event.id.clone(),
            object_id: self.invoice.id.clone(),
            user_id,
            customer_id: self.party.customer_id.clone(),
            action,
        }
    }
}

fn summarize(data: serde_json::Value) -> Result<InvoiceSummary, StepError> {
    let (event, invoice, _) = read_event::<Invoice>(data, "invoice.")?;
    Ok(summary(event, invoice))
}

fn summary(event: EventMeta, invoice: Invoice) -> InvoiceSummary {
    // The invoice's own metadata first, then the subscription's as copied onto the invoice.
    let user_id = direct_user(None, Some(&invoice.metadata))
        .or_else(|| direct_user(None, Some(&invoice.subscription_metadata)));
    InvoiceSummary {
        party: Party {
            customer_id: invoice.customer.clone(),
            user_id,
            email: invoice.customer_email.clone(),
        },
        invoice,
        event,
    }
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

async fn validate(ctx: &Ctx) -> Result<InvoiceSummary, Interrupt> {
    let data = ctx.event.data.clone();
    let summary = ctx
        .step
        .compute(VALIDATE, || async { summarize(data) })
        .await?;
    Ok(summary)
}

/// Records the invoice and, while its subscription has no snapshot, a provisional view.
async fn record(
    ctx: &Ctx,
    invoice: &InvoiceSummary,
    user_id: &Option<String>,
    paid: bool,
) -> Result<String, Interrupt> {
    let record = invoice.record(user_id.clone());
    write_step(ctx, RECORD_INVOICE, BusinessWrite::Invoice(record)).await?;
    let Some(view) = invoice.provisional(user_id.clone(), paid) else {
        return Ok(format!(
            "invoice {} recorded; no subscription",
            invoice.invoice.id
        ));
    };
    let id = view.id.clone();
    let written = subscription_step(ctx, NOTE_SUBSCRIPTION, &invoice.event, view).await?;
    Ok(match written {
        super::Written::Applied { .. } => {
            format!(
                "invoice {} recorded; subscription {id} provisional",
                invoice.invoice.id
            )
        }
        super::Written::Superseded => format!("invoice {} recorded", invoice.invoice.id),
    })
}

async fn paid(ctx: Ctx) -> Result<Outcome, Interrupt> {
    let invoice = validate(&ctx).await?;
    let user_id = link_customer(&ctx, &invoice.party, &invoice.event).await?;
    let action = record(&ctx, &invoice, &user_id, true).await?;
    crate::webhooks::notify(&ctx, invoice.notice(user_id.clone())).await?;
    log_success(&ctx, invoice.outcome(user_id, action)).await
}

/// The invoice's payment needs the customer (3-D Secure on a renewal): recorded, and the
/// business event carries where they can act (`hosted_invoice_url`). The subscription is
/// left to its own events.
async fn action_required(ctx: Ctx) -> Result<Outcome, Interrupt> {
    let invoice = validate(&ctx).await?;
    let user_id = link_customer(&ctx, &invoice.party, &invoice.event).await?;
    let record = invoice.record(user_id.clone());
    write_step(&ctx, RECORD_INVOICE, BusinessWrite::Invoice(record)).await?;
    crate::webhooks::notify(&ctx, invoice.notice(user_id.clone())).await?;
    let action = format!("invoice {} needs the customer's action", invoice.invoice.id);
    log_success(&ctx, invoice.outcome(user_id, action)).await
}

/// Stripe will charge the customer in a few days: said as `invoice.upcoming`. The
/// invoice does not exist yet, so nothing is recorded.
async fn upcoming(ctx: Ctx) -> Result<Outcome, Interrupt> {
    let data = ctx.event.data.clone();
    let invoice = ctx
        .step
        .compute(VALIDATE, || async {
            let (event, UpcomingInvoice(invoice), _) =
                read_event::<UpcomingInvoice>(data, "invoice.")?;
            Ok::<_, StepError>(summary(event, invoice))
        })
        .await?;
    let user_id = link_customer(&ctx, &invoice.party, &invoice.event).await?;
    let i = &invoice.invoice;
    let data = UpcomingInvoiceData {
        subscription_id: i.subscription.clone(),
        customer_id: invoice.party.customer_id.clone(),
        user_id: user_id.clone(),
        amount_due: i.amount_due,
        currency: i.currency.clone(),
        next_payment_attempt: i.next_payment_attempt,
        period_end: i.period_end,
        stripe_event_id: invoice.event.id.clone(),
    };
    let notice = BusinessEvent::from_stripe(EventType::InvoiceUpcoming, &invoice.event.id, data);
    crate::webhooks::notify(&ctx, notice).await?;
    let action = format!(
        "upcoming invoice of {} {} for {}",
        i.amount_due,
        i.currency,
        i.subscription.as_deref().unwrap_or("the customer")
    );
    let outcome = Outcome {
        object_id: i.subscription.clone().unwrap_or_else(|| i.id.clone()),
        ..invoice.outcome(user_id, action)
    };
    log_success(&ctx, outcome).await
}

async fn payment_failed(ctx: Ctx) -> Result<Outcome, Interrupt> {
    let invoice = validate(&ctx).await?;
    let user_id = link_customer(&ctx, &invoice.party, &invoice.event).await?;
    let action = record(&ctx, &invoice, &user_id, false).await?;
    let i = &invoice.invoice;
    let failure = NewFailure {
        id: invoice.event.id.clone(),
        kind: FailureKind::Invoice,
        user_id: user_id.clone(),
        customer_id: invoice.party.customer_id.clone(),
        object_id: Some(i.id.clone()),
        amount: Some(i.amount_due),
        currency: Some(i.currency.clone()),
        code: Some("invoice_payment_failed".to_owned()),
        decline_code: None,
        message: Some(failure_message(
            &i.id,
            i.amount_due,
            &i.currency,
            i.attempt_count,
        )),
        event_id: Some(invoice.event.id.clone()),
        created: invoice.event.created,
        links: AttemptLinks {
            payment_intent_id: i.payment_intent.clone(),
            charge_id: i.charge.clone(),
            invoice_id: Some(i.id.clone()),
            attempt_count: i64::try_from(i.attempt_count).ok(),
            next_payment_attempt: i.next_payment_attempt,
        },
        livemode: invoice.event.livemode,
        account: invoice.event.account.clone(),
    };
    write_step(&ctx, RECORD_FAILURE, BusinessWrite::Failure(failure)).await?;
    crate::webhooks::notify(&ctx, invoice.notice(user_id.clone())).await?;
    log_success(&ctx, invoice.outcome(user_id, action)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_say_what_was_due() {
        assert_eq!(
            failure_message("in_1", 2000, "usd", 3),
            "payment of invoice in_1 failed: amount_due 2000 usd, attempt 3"
        );
    }

    #[test]
    fn invoices_of_every_version_name_their_subscription_and_user() {
        for text in [
            include_str!("../../fixtures/invoice.payment_failed.json"),
            include_str!("../../fixtures/versions/2022-11-15/invoice.payment_failed.json"),
        ] {
            let s = summarize(serde_json::from_str(text).unwrap()).unwrap();
            assert_eq!(s.invoice.id, "in_1PgZihB7WZ01zgkWevAqQyk2");
            assert_eq!(
                s.invoice.subscription.as_deref(),
                Some("sub_1Pgc6rB7WZ01zgkWNy0Cn5nw")
            );
            assert_eq!(s.invoice.period_end, Some(1_796_119_203));
            assert_eq!(s.party.user_id.as_deref(), Some("user_123"));
            let view = s.provisional(None, false).unwrap();
            assert_eq!(view.version.status, "past_due", "a renewal failed");
        }
        let s = summarize(
            serde_json::from_str(include_str!("../../fixtures/invoice.paid.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(s.provisional(None, true).unwrap().version.status, "active");
        assert_eq!(
            s.provisional(None, false).unwrap().version.status,
            "incomplete",
            "a failed first invoice leaves the subscription incomplete"
        );
    }
}
