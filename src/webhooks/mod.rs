//! Outgoing webhooks: paysteps tells a team's own services about payment events.
//!
//! Endpoints subscribe to business events (`payment.failed`, `subscription.updated`…).
//! The Stripe functions record those events in a memoized step ([`notify`]); each
//! recording queues one durable delivery run per subscribed endpoint, which POSTs the
//! event signed per the Standard Webhooks specification and retries on its schedule.

pub mod deliver;
pub mod destination;
pub mod emit;
pub mod endpoint;
pub mod events;
pub mod repo;
pub mod schedule;
pub mod secret;

use crate::engine::{Clock, Ctx, FUNCTION_FAILED, Function, Interrupt, Trigger};

pub use destination::Destinations;
pub use emit::{Emitted, notify};
pub use events::{BusinessEvent, EventType};

/// Id of the function that turns failed runs into `run.failed` events.
pub const RUN_FAILED_FUNCTION: &str = "webhooks.run-failed";

/// What the webhook functions need: the store, the engine's clock, and where they may
/// deliver.
#[derive(Clone)]
pub struct Webhooks {
    /// The database holding endpoints, events and deliveries.
    pub store: crate::store::Store,
    /// The engine's clock, for timestamps and schedules.
    pub clock: Clock,
    /// Which hosts deliveries may go to.
    pub destinations: Destinations,
}

/// The webhook functions: the delivery function and the `run.failed` emitter.
pub fn functions(webhooks: Webhooks) -> Vec<Function> {
    vec![
        deliver::function(webhooks),
        Function::new(
            RUN_FAILED_FUNCTION,
            Trigger::event(FUNCTION_FAILED),
            run_failed,
        ),
    ]
}

/// Emits `run.failed` for a run that exhausted its retries. Delivery runs never come
/// here: the engine raises no failure event for internal functions.
async fn run_failed(ctx: Ctx) -> Result<Option<Emitted>, Interrupt> {
    let Some(failure) = ctx.failure() else {
        return Ok(None);
    };
    let event = BusinessEvent {
        event_type: EventType::RunFailed,
        source: format!("run:{}", failure.run_id),
        data: serde_json::to_value(events::RunFailedData {
            function_id: failure.function_id,
            run_id: failure.run_id,
            error: failure.error,
            event_id: failure.event.id,
            event_name: failure.event.name,
            external_id: failure.event.external_id,
        })
        .unwrap_or_default(),
    };
    notify(&ctx, event).await.map(Some)
}
