//! `customer.subscription.*`: the subscription's whole state, as Stripe sends it.

use serde::{Deserialize, Serialize};
use stripe_shared::Subscription;
use stripe_webhook::EventObject;

use super::repo::SubscriptionState;
use super::{
    EventMeta, Faults, Outcome, Party, Write, direct_user, link_customer, log_success,
    notifications, parse_event, stripe_function, unexpected, write_step,
};
use crate::engine::{Ctx, Function, Interrupt, StepError};

const VALIDATE: &str = "validate-subscription";
const UPSERT: &str = "upsert-subscription";

pub(super) fn functions(faults: &Faults) -> Vec<Function> {
    [
        ("subscription-created", "customer.subscription.created"),
        ("subscription-updated", "customer.subscription.updated"),
        ("subscription-deleted", "customer.subscription.deleted"),
    ]
    .into_iter()
    .map(|(id, event_type)| stripe_function(faults, id, event_type, sync))
    .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SubscriptionSummary {
    event: EventMeta,
    party: Party,
    state: SubscriptionState,
}

fn summarize(event: EventMeta, object: EventObject) -> Result<SubscriptionSummary, StepError> {
    let subscription = match object {
        EventObject::CustomerSubscriptionCreated(s)
        | EventObject::CustomerSubscriptionUpdated(s)
        | EventObject::CustomerSubscriptionDeleted(s) => s,
        _ => return Err(unexpected("customer.subscription.*", &event)),
    };
    Ok(summary_of(event, &subscription))
}

fn summary_of(event: EventMeta, s: &Subscription) -> SubscriptionSummary {
    let customer_id = s.customer.id().as_str().to_owned();
    let user_id = direct_user(None, Some(&s.metadata));
    // In this API version the billing period lives on the items.
    let item = s.items.data.first();
    let state = SubscriptionState {
        id: s.id.as_str().to_owned(),
        user_id: user_id.clone(),
        customer_id: Some(customer_id.clone()),
        status: s.status.as_str().to_owned(),
        price_id: item.map(|i| i.price.id.as_str().to_owned()),
        current_period_end: item.map(|i| i.current_period_end),
        cancel_at_period_end: s.cancel_at_period_end,
        canceled_at: s.canceled_at,
        event_created: event.created,
    };
    SubscriptionSummary {
        event,
        party: Party {
            customer_id: Some(customer_id),
            user_id,
            email: None,
        },
        state,
    }
}

async fn sync(ctx: Ctx, faults: Faults) -> Result<Outcome, Interrupt> {
    let data = ctx.event.data.clone();
    let summary = ctx
        .step
        .compute(VALIDATE, || async {
            faults.check(VALIDATE)?;
            parse_event(data, summarize).await
        })
        .await?;
    let user_id = link_customer(&ctx, &faults, &summary.party, &summary.event, None).await?;
    let state = SubscriptionState {
        user_id: user_id.clone(),
        ..summary.state.clone()
    };
    let action = format!("subscription {} {}", state.id, state.status);
    let notice = notifications::subscription_state(&summary.event, &state);
    write_step(&ctx, &faults, UPSERT, Write::Subscription(state)).await?;
    crate::webhooks::notify(&ctx, notice).await?;
    let outcome = Outcome {
        event_id: summary.event.id.clone(),
        object_id: summary.state.id.clone(),
        user_id,
        customer_id: summary.party.customer_id.clone(),
        action,
    };
    log_success(&ctx, &faults, outcome).await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn fixture(text: &str) -> SubscriptionSummary {
        let data: serde_json::Value = serde_json::from_str(text).unwrap();
        parse_event(data, summarize).await.unwrap()
    }

    #[tokio::test]
    async fn subscription_state_comes_from_the_first_item() {
        let s = fixture(include_str!(
            "../../fixtures/customer.subscription.updated.json"
        ))
        .await;
        assert_eq!(
            s.state,
            SubscriptionState {
                id: "sub_1Pgc6rB7WZ01zgkWNy0Cn5nw".into(),
                user_id: Some("user_123".into()),
                customer_id: Some("cus_QXg1o8vcGmoR32".into()),
                status: "active".into(),
                price_id: Some("price_1PgafmB7WZ01zgkW6dKueIc5".into()),
                current_period_end: Some(1_793_527_203),
                cancel_at_period_end: false,
                canceled_at: None,
                event_created: 1_790_848_808,
            }
        );

        let s = fixture(include_str!(
            "../../fixtures/customer.subscription.deleted.json"
        ))
        .await;
        assert_eq!(s.state.status, "canceled");
        assert_eq!(s.state.canceled_at, Some(1_794_740_406));
    }
}
