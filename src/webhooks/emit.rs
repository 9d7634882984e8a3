//! Recording a business event: one row for the event, and for every active endpoint
//! subscribed to it a delivery and a queued run of the delivery function, all in the
//! caller's transaction.

use serde::{Deserialize, Serialize};

use super::endpoint::Subscription;
use super::events::BusinessEvent;
use super::repo::{self, BusinessEventRow};
use crate::engine::{Ctx, Interrupt, new_id};
use crate::ids::{EventId, FunctionId, RunId};
use crate::store::{NewEvent, NewRun, StoreTx};

/// The function that delivers one event to one endpoint.
pub const DELIVER_FUNCTION: &str = "webhooks.deliver";

/// [`DELIVER_FUNCTION`] as a function id, for the runs it is given.
pub(crate) fn deliver_function() -> FunctionId {
    FunctionId::try_from(DELIVER_FUNCTION).expect("the delivery function's id is not empty")
}

/// Prefix of the engine events the delivery runs belong to.
pub const ENGINE_EVENT_PREFIX: &str = "paysteps/webhook.";

/// What recording an event did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Emitted {
    /// The event's `webhook-id`.
    pub webhook_id: String,
    /// Deliveries queued; none when the event was already recorded.
    pub deliveries: Vec<String>,
    /// The same cause had already recorded this event: nothing was queued.
    pub duplicate: bool,
}

/// Records `event` at `now` and queues its deliveries, unless it was recorded before.
pub async fn emit(
    tx: &mut StoreTx,
    event: &BusinessEvent,
    now: i64,
) -> crate::store::Result<Emitted> {
    let webhook_id = event.message_id();
    let mut row = BusinessEventRow {
        id: webhook_id.clone(),
        event_type: event.event_type.as_str().to_owned(),
        source: event.source.clone(),
        payload: event.body(now),
        engine_event_id: None,
        created_at: now,
    };
    if !repo::insert_event(tx, &row).await? {
        return Ok(Emitted {
            webhook_id,
            deliveries: Vec::new(),
            duplicate: true,
        });
    }
    let endpoints: Vec<String> = repo::active_subscriptions(tx)
        .await?
        .into_iter()
        .filter(|(_, events)| Subscription::from_stored(events).includes(event.event_type))
        .map(|(id, _)| id)
        .collect();
    let runs: Vec<NewRun> = endpoints
        .iter()
        .map(|_| NewRun {
            id: RunId::new(),
            function_id: deliver_function(),
            replay_of: None,
        })
        .collect();
    queue_runs(tx, &mut row, &runs, now).await?;
    let mut deliveries = Vec::with_capacity(runs.len());
    for (endpoint_id, run) in endpoints.iter().zip(&runs) {
        let id = new_id("whd");
        repo::insert_delivery(
            tx,
            &id,
            &webhook_id,
            endpoint_id,
            run.id.as_str(),
            None,
            now,
        )
        .await?;
        deliveries.push(id);
    }
    if !deliveries.is_empty() {
        tracing::info!(
            webhook_id = %webhook_id,
            event_type = %event.event_type,
            deliveries = deliveries.len(),
            "business event queued for delivery"
        );
    }
    Ok(Emitted {
        webhook_id,
        deliveries,
        duplicate: false,
    })
}

/// Queues delivery runs of `event`: on its engine event, made with the first runs (an
/// event nobody subscribes to adds nothing to the engine's journal).
pub(crate) async fn queue_runs(
    tx: &mut StoreTx,
    event: &mut BusinessEventRow,
    runs: &[NewRun],
    now: i64,
) -> crate::store::Result<()> {
    if runs.is_empty() {
        return Ok(());
    }
    if let Some(engine_event_id) = &event.engine_event_id {
        for run in runs {
            tx.insert_run(engine_event_id, run, now).await?;
        }
        return tx.signal_new_runs().await;
    }
    let engine_event = NewEvent {
        id: EventId::new(),
        dedupe_key: None,
        dedupe_for_ms: None,
        external_id: Some(event.id.clone()),
        name: format!("{ENGINE_EVENT_PREFIX}{}", event.event_type),
        source: "webhooks".to_owned(),
        data: event.payload.clone(),
        ts: now,
        received_at: now,
        object_id: None,
        customer: None,
    };
    tx.insert_event(&engine_event, runs).await?;
    repo::set_engine_event(tx, &event.id, engine_event.id.as_str()).await?;
    event.engine_event_id = Some(engine_event.id);
    Ok(())
}

/// Step `notify <type>`: records `event` and queues its deliveries in the step's own
/// checkpoint transaction, so a retried run does it once, and a replayed or re-run one
/// (same cause, same `webhook-id`) queues nothing more.
pub async fn notify(ctx: &Ctx, event: BusinessEvent) -> Result<Emitted, Interrupt> {
    let name = format!("notify {}", event.event_type);
    let now = ctx.step.now_ms();
    ctx.step
        .run_tx(&name, move |tx| {
            Box::pin(async move { Ok(emit(tx, &event, now).await?) })
        })
        .await
}
