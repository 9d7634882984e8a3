//! `customer.subscription.*`: the Subscription object, the one owner of a subscription's
//! status, items, period, trial and cancellation.

use serde::{Deserialize, Serialize};

use super::ordering::Source;
use super::repo::SubscriptionView;
use super::{
    EventMeta, Outcome, Party, direct_user, link_customer, log_success, read_event,
    stripe_function, subscription_step,
};
use crate::engine::{Ctx, Function, Interrupt, StepError};
use crate::stripe::api::StripeApi;
use crate::stripe::objects::{Subscription, read_retrieved};

const VALIDATE: &str = "validate-subscription";
const RETRIEVE: &str = "retrieve-subscription";
const UPSERT: &str = "upsert-subscription";

pub(super) fn functions(api: Option<StripeApi>) -> Vec<Function> {
    [
        ("subscription-created", "customer.subscription.created"),
        ("subscription-updated", "customer.subscription.updated"),
        ("subscription-deleted", "customer.subscription.deleted"),
        (
            "subscription-trial-will-end",
            "customer.subscription.trial_will_end",
        ),
    ]
    .into_iter()
    .map(|(id, event_type)| {
        let api = api.clone();
        stripe_function(id, event_type, move |ctx| sync(ctx, api.clone()))
    })
    .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SubscriptionSummary {
    event: EventMeta,
    party: Party,
    view: SubscriptionView,
}

fn summarize(data: serde_json::Value) -> Result<SubscriptionSummary, StepError> {
    let (event, s, envelope) = read_event::<Subscription>(data, "customer.subscription.")?;
    let previous_status = envelope.previous_text("status");
    Ok(summary_of(event, Source::Event, s, previous_status))
}

fn summary_of(
    event: EventMeta,
    source: Source,
    s: Subscription,
    previous_status: Option<String>,
) -> SubscriptionSummary {
    let user_id = direct_user(None, Some(&s.metadata));
    let party = (user_id.clone(), Some(s.customer.clone()));
    let view = event.subscription_view(source, s.id, party, s.status, previous_status, s.terms);
    SubscriptionSummary {
        event,
        party: Party {
            customer_id: Some(s.customer),
            user_id,
            email: None,
        },
        view,
    }
}

/// Step `retrieve-subscription`: the subscription as the Stripe API answers it now,
/// replacing the event's own snapshot. 429, 5xx, a timeout or no connection are retried
/// with the step's backoff; a refusal (a wrong key, no such subscription) is not.
async fn retrieve(
    ctx: &Ctx,
    api: &StripeApi,
    summary: &SubscriptionSummary,
) -> Result<SubscriptionSummary, Interrupt> {
    let (api, summary) = (api.clone(), summary.clone());
    let retrieved = ctx
        .step
        .run(RETRIEVE, || async move {
            let id = &summary.view.id;
            let object = api
                .subscription(id, summary.event.account.as_deref())
                .await
                .map_err(|e| {
                    if e.is_retriable() {
                        StepError::retriable(e.to_string())
                    } else {
                        StepError::non_retriable(e.to_string())
                    }
                })?;
            let request = format!("GET /v1/subscriptions/{id}");
            let s: Subscription = read_retrieved(&object, &request)
                .map_err(|e| StepError::non_retriable(e.to_string()))?;
            let retrieved = summary_of(summary.event.clone(), Source::Api, s, None);
            Ok(retrieved)
        })
        .await?;
    Ok(retrieved)
}

async fn sync(ctx: Ctx, api: Option<StripeApi>) -> Result<Outcome, Interrupt> {
    let data = ctx.event.data.clone();
    let mut summary = ctx
        .step
        .compute(VALIDATE, || async { summarize(data) })
        .await?;
    if let Some(api) = &api {
        summary = retrieve(&ctx, api, &summary).await?;
    }
    let user_id = link_customer(&ctx, &summary.party, &summary.event).await?;
    let view = SubscriptionView {
        user_id: user_id.clone(),
        ..summary.view.clone()
    };
    let written = subscription_step(&ctx, UPSERT, &summary.event, view.clone()).await?;
    // Three days before a trial ends: the moment to ask for a payment method.
    if summary.event.event_type == "customer.subscription.trial_will_end" {
        let notice = super::notifications::trial_will_end(&summary.event, &view);
        crate::webhooks::notify(&ctx, notice).await?;
    }
    let action = match written {
        super::Written::Applied { .. } => {
            format!(
                "subscription {} {}",
                summary.view.id, summary.view.version.status
            )
        }
        super::Written::Superseded => format!(
            "subscription {}: a newer state is stored; {} not applied",
            summary.view.id, summary.view.version.status
        ),
    };
    let outcome = Outcome {
        event_id: summary.event.id.clone(),
        object_id: summary.view.id.clone(),
        user_id,
        customer_id: summary.party.customer_id.clone(),
        action,
    };
    log_success(&ctx, outcome).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(text: &str) -> SubscriptionSummary {
        summarize(serde_json::from_str(text).unwrap()).unwrap()
    }

    #[test]
    fn a_subscription_event_is_a_whole_snapshot_with_its_previous_status() {
        let s = fixture(include_str!(
            "../../fixtures/customer.subscription.updated.json"
        ));
        assert_eq!(s.view.id, "sub_1Pgc6rB7WZ01zgkWNy0Cn5nw");
        assert_eq!(s.view.user_id.as_deref(), Some("user_123"));
        assert_eq!(s.view.version.status, "active");
        assert_eq!(
            s.view.version.previous_status.as_deref(),
            Some("incomplete")
        );
        assert_eq!(s.view.version.rank, 2);
        assert_eq!(s.view.terms.current_period_end, Some(1_793_527_203));
        assert_eq!(s.view.api_version.as_deref(), Some("2026-07-29.dahlia"));
        assert!(!s.view.livemode);

        let s = fixture(include_str!(
            "../../fixtures/versions/2024-06-20/customer.subscription.deleted.json"
        ));
        assert_eq!(s.view.version.status, "canceled");
        assert_eq!(s.view.terms.canceled_at, Some(1_794_740_406));
        assert_eq!(
            s.view.terms.cancellation_reason.as_deref(),
            Some("payment_failed")
        );
        assert_eq!(s.view.version.rank, 3);
    }

    #[test]
    fn another_object_or_a_broken_envelope_is_not_retried() {
        crate::payments::tests::assert_refuses_foreign_input(summarize);
    }
}
