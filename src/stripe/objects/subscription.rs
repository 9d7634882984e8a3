//! The Subscription object.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Expandable, List, Metadata, StripeObject, id_of, null_as_default};

/// A subscription: the owner of its status, items, period, trial and cancellation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// `sub_…`.
    pub id: String,
    /// `cus_…`.
    pub customer: String,
    /// `incomplete`, `incomplete_expired`, `trialing`, `active`, `past_due`, `canceled`,
    /// `unpaid` or `paused`.
    pub status: String,
    /// The subscription's own metadata (where an API-created subscription names its user).
    pub metadata: Metadata,
    /// What it sells and until when.
    pub terms: Terms,
}

/// What a subscription sells and until when: its items, period, trial and cancellation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Terms {
    /// Every item: price, product, quantity.
    pub items: Vec<SubscriptionItem>,
    /// Start of the current period: the subscription's own before 2025-03-31.basil, else
    /// the earliest of its items'.
    pub current_period_start: Option<i64>,
    /// End of the current period: the subscription's own before 2025-03-31.basil, else
    /// the latest of its items'.
    pub current_period_end: Option<i64>,
    /// Whether it ends at the end of the current period.
    pub cancel_at_period_end: bool,
    /// When it is set to end.
    pub cancel_at: Option<i64>,
    /// When it was canceled (the request, not the end).
    pub canceled_at: Option<i64>,
    /// When it ended.
    pub ended_at: Option<i64>,
    /// When its trial started.
    pub trial_start: Option<i64>,
    /// When its trial ends.
    pub trial_end: Option<i64>,
    /// `pause_collection` as Stripe sends it (`behavior`, `resumes_at`), when paused.
    pub pause_collection: Option<Value>,
    /// `cancellation_details.reason` (`cancellation_requested`, `payment_failed`…).
    pub cancellation_reason: Option<String>,
}

/// One item of a subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionItem {
    /// `si_…`.
    pub id: Option<String>,
    /// `price_…` (the legacy `plan` when no price is named).
    pub price: Option<String>,
    /// `prod_…`.
    pub product: Option<String>,
    /// Seats or units; 1 when Stripe gives none (metered prices).
    pub quantity: u64,
    /// The item's period (2025-03-31.basil and later).
    pub current_period_start: Option<i64>,
    /// The item's period end (2025-03-31.basil and later).
    pub current_period_end: Option<i64>,
}

#[derive(Deserialize)]
pub struct RawSubscription {
    id: Option<String>,
    customer: Option<Expandable>,
    status: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    metadata: Metadata,
    #[serde(default, deserialize_with = "null_as_default")]
    items: List<RawItem>,
    current_period_start: Option<i64>,
    current_period_end: Option<i64>,
    #[serde(default, deserialize_with = "null_as_default")]
    cancel_at_period_end: bool,
    cancel_at: Option<i64>,
    canceled_at: Option<i64>,
    ended_at: Option<i64>,
    trial_start: Option<i64>,
    trial_end: Option<i64>,
    pause_collection: Option<Value>,
    cancellation_details: Option<RawCancellation>,
}

#[derive(Deserialize)]
struct RawCancellation {
    reason: Option<String>,
}

#[derive(Deserialize)]
struct RawItem {
    id: Option<String>,
    price: Option<RawPrice>,
    plan: Option<RawPrice>,
    quantity: Option<u64>,
    current_period_start: Option<i64>,
    current_period_end: Option<i64>,
}

#[derive(Deserialize)]
struct RawPrice {
    id: Option<String>,
    product: Option<Expandable>,
}

impl StripeObject for Subscription {
    type Raw = RawSubscription;

    fn from_raw(raw: RawSubscription) -> Result<Subscription, &'static str> {
        let items: Vec<SubscriptionItem> = raw
            .items
            .data
            .into_iter()
            .map(|item| {
                let price = item.price.or(item.plan);
                let (price, product) = match price {
                    Some(p) => (p.id.filter(|id| !id.is_empty()), id_of(p.product)),
                    None => (None, None),
                };
                SubscriptionItem {
                    id: item.id,
                    price,
                    product,
                    quantity: item.quantity.unwrap_or(1),
                    current_period_start: item.current_period_start,
                    current_period_end: item.current_period_end,
                }
            })
            .collect();
        let current_period_start = raw
            .current_period_start
            .or_else(|| items.iter().filter_map(|i| i.current_period_start).min());
        let current_period_end = raw
            .current_period_end
            .or_else(|| items.iter().filter_map(|i| i.current_period_end).max());
        Ok(Subscription {
            id: raw.id.filter(|id| !id.is_empty()).ok_or("id")?,
            customer: id_of(raw.customer).ok_or("customer")?,
            status: raw.status.filter(|s| !s.is_empty()).ok_or("status")?,
            metadata: raw.metadata,
            terms: Terms {
                items,
                current_period_start,
                current_period_end,
                cancel_at_period_end: raw.cancel_at_period_end,
                cancel_at: raw.cancel_at,
                canceled_at: raw.canceled_at,
                ended_at: raw.ended_at,
                trial_start: raw.trial_start,
                trial_end: raw.trial_end,
                pause_collection: raw.pause_collection.filter(|p| !p.is_null()),
                cancellation_reason: raw.cancellation_details.and_then(|c| c.reason),
            },
        })
    }
}
