//! The built-in Stripe functions: what paysteps does with each payment event, written
//! against the engine's public API as an application's own functions would be.
//!
//! Each function parses the event once, in a first `validate-*` step whose small output
//! later steps reuse, links the customer to the application's user (`link-customer`), makes
//! its business writes in transactional steps, and ends with `log-success`. Every function
//! has a failure handler that logs the failed run in `payment_failures`.

pub mod attempts;
mod checkout;
mod dispute;
mod invoice;
pub mod money;
mod notifications;
pub mod ordering;
mod payment_intent;
mod processing;
mod refund;
pub mod repo;
pub mod reports;
pub mod rollup;
mod subscription;

use std::collections::HashMap;
use std::future::Future;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::engine::{Ctx, Function, Interrupt, NonRetriable, StepError, Trigger, system_now_ms};
use crate::store::StoreTx;
use crate::stripe::api::StripeApi;
use crate::stripe::objects::{ReadError, StripeEvent, StripeObject, Terms};
use ordering::{Source, Version};
use repo::{CustomerLink, InvoiceRecord, NewFailure, PaymentRecord, SubscriptionView, Written};

/// Every built-in Stripe function, one per event type, each with its failure handler,
/// and the daily revenue rollup.
///
/// With `api` (`STRIPE_API_KEY`), the subscription functions store the subscription as
/// the Stripe API answers it, which makes the order of deliveries moot; without it, the
/// rules of [`ordering`] decide between the events' own snapshots.
pub fn functions(api: Option<StripeApi>) -> Vec<Function> {
    let mut all = checkout::functions();
    all.extend(subscription::functions(api));
    all.extend(invoice::functions());
    all.extend(payment_intent::functions());
    all.extend(refund::functions());
    all.extend(dispute::functions());
    all.push(rollup::function());
    all
}

/// Why a Stripe event cannot be processed; none of these is fixed by retrying.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The payload cannot be read: names the field and the event's API version.
    #[error(transparent)]
    Unreadable(#[from] ReadError),
    /// The function received an event of another type.
    #[error("expected a {expected} event, got {got}")]
    UnexpectedEvent {
        /// The Stripe event type the function handles.
        expected: &'static str,
        /// The type it received.
        got: String,
    },
    /// The event's object lacks a field the function needs.
    #[error("{object} has no {field}")]
    MissingField {
        /// The object's id or kind.
        object: String,
        /// The missing field's name.
        field: &'static str,
    },
}

/// A function started by `stripe/<event_type>`, with the failure handler every built-in has.
fn stripe_function<H, Fut>(id: &str, event_type: &str, handler: H) -> Function
where
    H: Fn(Ctx) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Outcome, Interrupt>> + Send + 'static,
{
    Function::new(id, Trigger::event(format!("stripe/{event_type}")), handler)
        .on_failure(processing::record)
}

/// The envelope fields every write needs: the event id keys failure rows, `created`
/// orders writes to the same object, `livemode` and `account` keep modes and connected
/// accounts apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EventMeta {
    pub id: String,
    pub created: i64,
    /// e.g. `checkout.session.completed`.
    pub event_type: String,
    /// The API version the payload is shaped for.
    #[serde(default)]
    pub api_version: Option<String>,
    /// False for test-mode events.
    #[serde(default)]
    pub livemode: bool,
    /// The connected account (Connect) the event is about.
    #[serde(default)]
    pub account: Option<String>,
}

impl EventMeta {
    /// A view of subscription `id` (of `party`: its user and customer) that this event
    /// gives, from `source`, in the event's mode and account. An API snapshot is as of now, and in the account's default API
    /// version, which the answer does not name.
    fn subscription_view(
        &self,
        source: Source,
        id: String,
        party: (Option<String>, Option<String>),
        status: String,
        previous_status: Option<String>,
        terms: Terms,
    ) -> SubscriptionView {
        let (created, rank) = match source {
            Source::Event => (self.created, ordering::rank(&self.event_type)),
            Source::Api => (system_now_ms() / 1000, ordering::API_RANK),
            Source::Provisional => (self.created, 0),
        };
        let (user_id, customer_id) = party;
        SubscriptionView {
            id,
            user_id,
            customer_id,
            version: Version {
                source,
                created,
                rank,
                event_id: self.id.clone(),
                status,
                previous_status,
            },
            terms,
            api_version: self.api_version.clone().filter(|_| source != Source::Api),
            livemode: self.livemode,
            account: self.account.clone(),
        }
    }

    /// A view of subscription `id` inferred from this checkout or invoice event, replaced
    /// by the first Subscription object stored for it.
    fn provisional_view(
        &self,
        id: String,
        party: (Option<String>, Option<String>),
        status: &str,
        current_period_end: Option<i64>,
    ) -> SubscriptionView {
        let terms = Terms {
            current_period_end,
            ..Terms::default()
        };
        let status = status.to_owned();
        self.subscription_view(Source::Provisional, id, party, status, None, terms)
    }
}

/// Reads the Stripe event in `data` and its object as a `T`, for a function handling the
/// event types that start with `prefix`. A payload that cannot be read fails without
/// retries, naming the field and the API version.
pub(crate) fn read_event<T: StripeObject>(
    data: Value,
    prefix: &'static str,
) -> Result<(EventMeta, T, StripeEvent), StepError> {
    let event = StripeEvent::read(data)
        .map_err(Error::from)
        .non_retriable()?;
    let meta = EventMeta {
        id: event.id.clone(),
        created: event.created,
        event_type: event.event_type.clone(),
        api_version: event.api_version.clone(),
        livemode: event.livemode,
        account: event.account.clone(),
    };
    if !meta.event_type.starts_with(prefix) {
        return Err(unexpected(prefix, &meta));
    }
    let object = event.object::<T>().map_err(Error::from).non_retriable()?;
    Ok((meta, object, event))
}

/// The payment a refund or dispute of `object` belongs to: its PaymentIntent, else its
/// charge (for a charge made without one). Naming neither fails the run.
pub(crate) fn payment_of(
    object: &str,
    payment_intent: &Option<String>,
    charge: &Option<String>,
) -> Result<String, StepError> {
    payment_intent
        .clone()
        .or_else(|| charge.clone())
        .ok_or_else(|| {
            StepError::non_retriable(Error::MissingField {
                object: object.to_owned(),
                field: "payment_intent or charge",
            })
        })
}

/// The error for an event of another type than the function handles.
pub(crate) fn unexpected(expected: &'static str, event: &EventMeta) -> StepError {
    StepError::non_retriable(Error::UnexpectedEvent {
        expected,
        got: event.event_type.clone(),
    })
}

/// The user an object names itself: the checkout session's `client_reference_id`, then
/// `metadata.user_id`. Blank values name no one.
pub(crate) fn direct_user(
    client_reference_id: Option<&str>,
    metadata: Option<&HashMap<String, String>>,
) -> Option<String> {
    let from_metadata = metadata.and_then(|m| m.get("user_id")).map(String::as_str);
    [client_reference_id, from_metadata]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|user| !user.is_empty())
        .map(str::to_owned)
}

/// The user named by the object itself wins over the customer's existing link.
pub(crate) fn resolve_user(direct: Option<String>, linked: Option<String>) -> Option<String> {
    direct.or(linked.filter(|user| !user.trim().is_empty()))
}

/// Who an event is about, as far as the object itself says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Party {
    pub customer_id: Option<String>,
    pub user_id: Option<String>,
    pub email: Option<String>,
}

const LINK_CUSTOMER: &str = "link-customer";

/// Step `link-customer`: resolves the event's user (the object's own, else the customer's
/// link) and, when the object names both, keeps the customer↔user link. No user is not a
/// failure: the rows are stored unlinked and get their user once a later event names it.
pub(crate) async fn link_customer(
    ctx: &Ctx,
    party: &Party,
    event: &EventMeta,
) -> Result<Option<String>, Interrupt> {
    let (party, created) = (party.clone(), event.created);
    let user = ctx
        .step
        .run_tx(LINK_CUSTOMER, move |tx| {
            Box::pin(async move {
                let linked = match (&party.user_id, &party.customer_id) {
                    (None, Some(customer)) => repo::linked_user(tx, customer).await?,
                    _ => None,
                };
                if let (Some(user_id), Some(customer_id)) = (&party.user_id, &party.customer_id) {
                    let link = CustomerLink {
                        customer_id: customer_id.clone(),
                        user_id: user_id.clone(),
                        email: party.email.clone(),
                        event_created: created,
                    };
                    repo::link_customer(tx, &link, system_now_ms()).await?;
                }
                Ok::<_, StepError>(resolve_user(party.user_id, linked))
            })
        })
        .await?;
    Ok(user)
}

/// One business write, made by a transactional step; it is also the step's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "write", rename_all = "snake_case")]
pub(crate) enum BusinessWrite {
    Payment(PaymentRecord),
    Invoice(InvoiceRecord),
    Failure(NewFailure),
}

impl BusinessWrite {
    async fn apply(&self, tx: &mut StoreTx) -> crate::store::Result<()> {
        let now = system_now_ms();
        match self {
            BusinessWrite::Payment(p) => repo::upsert_payment(tx, p, now).await,
            BusinessWrite::Invoice(i) => repo::upsert_invoice(tx, i, now).await,
            BusinessWrite::Failure(f) => repo::record_failure(tx, f).await.map(|_| ()),
        }
    }
}

/// A transactional step named `name` that makes `write`: exactly once per run.
pub(crate) async fn write_step(
    ctx: &Ctx,
    name: &'static str,
    write: BusinessWrite,
) -> Result<(), Interrupt> {
    ctx.step
        .run_tx(name, move |tx| {
            Box::pin(async move {
                write.apply(tx).await?;
                Ok(write)
            })
        })
        .await?;
    Ok(())
}

/// A transactional step named `name` that writes a view of a subscription, when it is
/// newer than the stored one, and then emits the business event its change makes.
pub(crate) async fn subscription_step(
    ctx: &Ctx,
    name: &'static str,
    event: &EventMeta,
    view: SubscriptionView,
) -> Result<Written, Interrupt> {
    let step_view = view.clone();
    let written = ctx
        .step
        .run_tx(name, move |tx| {
            Box::pin(async move {
                Ok::<_, StepError>(repo::write_subscription(tx, &step_view, system_now_ms()).await?)
            })
        })
        .await?;
    if let Written::Applied { previous } = &written
        && let Some(notice) = notifications::subscription(event, &view, previous.as_deref())
    {
        crate::webhooks::notify(ctx, notice).await?;
    }
    Ok(written)
}

/// What a function did, returned by `log-success` and as the run's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The Stripe event handled, `evt_…`.
    pub event_id: String,
    /// The Stripe object it concerned (`cs_…`, `pi_…`, `in_…`, `sub_…`).
    pub object_id: String,
    /// The application's user id, when one was found.
    pub user_id: Option<String>,
    /// Stripe's customer id, `cus_…`.
    pub customer_id: Option<String>,
    /// What the function did, in words (e.g. `payment pi_… succeeded`).
    pub action: String,
}

const LOG_SUCCESS: &str = "log-success";

/// Step `log-success`: the last step of every built-in function.
pub(crate) async fn log_success(ctx: &Ctx, outcome: Outcome) -> Result<Outcome, Interrupt> {
    let function_id = ctx.function_id.clone();
    ctx.step
        .run(LOG_SUCCESS, || async move {
            tracing::info!(
                function = %function_id,
                event_id = %outcome.event_id,
                object_id = %outcome.object_id,
                user_id = outcome.user_id.as_deref().unwrap_or("-"),
                action = %outcome.action,
                "stripe event processed"
            );
            Ok(outcome)
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Asserts that `summarize` refuses, for good, an event about another object (an
    /// invoice) and JSON that is no Stripe event, each error naming what was wrong.
    pub(super) fn assert_refuses_foreign_input<T: std::fmt::Debug>(
        summarize: impl Fn(serde_json::Value) -> Result<T, StepError>,
    ) {
        let data = serde_json::from_str(include_str!("../../fixtures/invoice.paid.json")).unwrap();
        let err = summarize(data).unwrap_err();
        assert!(!err.is_retriable());
        assert!(err.to_string().contains("invoice.paid"), "{err}");

        let err = summarize(serde_json::json!({"id": "evt_1"})).unwrap_err();
        assert!(!err.is_retriable());
        assert!(err.to_string().starts_with("not a Stripe event"), "{err}");
    }

    fn metadata(user: &str) -> HashMap<String, String> {
        HashMap::from([("user_id".to_owned(), user.to_owned())])
    }

    #[test]
    fn users_resolve_from_reference_then_metadata_then_link() {
        let meta = metadata("user_meta");
        let linked = || Some("user_link".to_owned());
        let cases = [
            (Some("user_ref"), Some(&meta), "user_ref"),
            (None, Some(&meta), "user_meta"),
            (Some(""), Some(&meta), "user_meta"),
            (Some("  "), None, "user_link"),
            (None, None, "user_link"),
        ];
        for (reference, metadata, expected) in cases {
            let direct = direct_user(reference, metadata);
            assert_eq!(
                resolve_user(direct, linked()).as_deref(),
                Some(expected),
                "{reference:?} {metadata:?}"
            );
        }
        assert_eq!(direct_user(None, Some(&metadata(" "))), None);
        assert_eq!(resolve_user(None, Some(String::new())), None);
        assert_eq!(resolve_user(None, None), None);
    }

    #[test]
    fn every_stripe_event_gets_one_function_with_a_failure_handler() {
        let (functions, scheduled): (Vec<_>, Vec<_>) = functions(None)
            .into_iter()
            .partition(|f| matches!(f.trigger(), Trigger::Event(_)));
        let scheduled: Vec<&str> = scheduled.iter().map(Function::id).collect();
        assert_eq!(
            scheduled,
            [rollup::FUNCTION_ID],
            "the rollup is the one cron function"
        );
        let mut triggers: Vec<String> = functions
            .iter()
            .map(|f| match f.trigger() {
                Trigger::Event(name) => name.clone(),
                Trigger::Cron(_) | Trigger::Internal => String::new(),
            })
            .collect();
        assert!(functions.iter().all(|f| f.failure_handler_id().is_some()));
        triggers.sort();
        triggers.dedup();
        assert_eq!(triggers.len(), functions.len(), "one function per event");
        for event in [
            "checkout.session.completed",
            "checkout.session.async_payment_succeeded",
            "checkout.session.async_payment_failed",
            "customer.subscription.created",
            "customer.subscription.updated",
            "customer.subscription.deleted",
            "invoice.paid",
            "invoice.payment_failed",
            "customer.subscription.trial_will_end",
            "invoice.payment_action_required",
            "payment_intent.succeeded",
            "payment_intent.payment_failed",
            "payment_intent.processing",
            "payment_intent.canceled",
            "charge.refunded",
            "refund.created",
            "refund.updated",
            "refund.failed",
            "charge.dispute.created",
            "charge.dispute.updated",
            "charge.dispute.closed",
            "charge.dispute.funds_withdrawn",
            "charge.dispute.funds_reinstated",
            "invoice.upcoming",
        ] {
            assert!(triggers.contains(&format!("stripe/{event}")), "{event}");
        }
    }
}
