//! Cron firing: each due tick of a cron function stores a `paysteps/cron.tick` event
//! and its run, once across every process sharing the database ([`super::decide`]
//! says which tick, the store's cron row makes it once).

use std::sync::Arc;
use std::time::Duration;

use super::super::Inner;
use super::super::event::CRON_TICK;
use super::Schedule;
use super::{TickDecision, decide};
use crate::ids::{EventId, FunctionId, RunId};
use crate::store::{self, IngestOutcome, NewEvent, NewRun, Write};

/// Fires cron ticks as they fall due.
/// An app's sync may add or change schedules at any time: the loop looks again when
/// one does.
pub(in crate::engine) async fn cron_loop(inner: Arc<Inner>) {
    loop {
        let changed = inner.registry.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let schedules: Vec<Schedule> = inner
            .registry
            .all()
            .iter()
            .flat_map(|f| f.crons().map(|(_, s)| s.clone()).collect::<Vec<_>>())
            .collect();
        if !schedules.is_empty()
            && let Err(err) = fire_cron(&inner).await
        {
            tracing::warn!(error = %err, "firing cron ticks failed");
        }
        let now = inner.config.clock.now_ms();
        let next = schedules.iter().filter_map(|s| s.next_after(now)).min();
        let wait_ms = next.map_or(60_000, |at| (at - now).clamp(10, 60_000));
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait_ms as u64)) => {}
            _ = changed => {}
            _ = inner.shutdown.cancelled() => return,
        }
    }
}

pub(in crate::engine) async fn fire_cron(inner: &Inner) -> store::Result<usize> {
    let mut started = 0;
    let crons: Vec<(FunctionId, FunctionId, Schedule)> = inner
        .registry
        .all()
        .iter()
        .flat_map(|f| {
            f.crons()
                .map(|(name, s)| (f.id.clone(), name, s.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    for (function_id, cron_name, schedule) in crons {
        let schedule = &schedule;
        let now = inner.config.clock.now_ms();
        let last = inner.store.cron_last_tick(&cron_name).await?;
        match decide(schedule, last, now) {
            TickDecision::Wait => {}
            TickDecision::Start => {
                inner
                    .store
                    .write(Write::isolated(), move |tx| {
                        Box::pin(async move { tx.start_cron(&cron_name, now).await })
                    })
                    .await?;
            }
            TickDecision::Fire(tick) => {
                let event = NewEvent {
                    id: EventId::new(),
                    dedupe_key: Some(format!("cron:{cron_name}:{tick}")),
                    dedupe_for_ms: None,
                    external_id: None,
                    name: CRON_TICK.to_owned(),
                    source: "cron".to_owned(),
                    data: serde_json::json!({
                        "function_id": function_id,
                        "tick": tick,
                        "cron": schedule.expr(),
                        "time_zone": schedule.time_zone(),
                    })
                    .to_string(),
                    ts: tick,
                    received_at: now,
                    object_id: None,
                    customer: None,
                };
                let run = NewRun {
                    id: RunId::new(),
                    function_id: function_id.clone(),
                    replay_of: None,
                };
                let outcome = inner
                    .store
                    .write(Write::isolated(), move |tx| {
                        Box::pin(async move {
                            let outcome =
                                tx.insert_event(&event, std::slice::from_ref(&run)).await?;
                            tx.advance_cron(&cron_name, tick).await?;
                            Ok(outcome)
                        })
                    })
                    .await?;
                if matches!(outcome, IngestOutcome::Accepted { .. }) {
                    started += 1;
                }
            }
        }
    }
    if started > 0 {
        inner.wake.notify_waiters();
    }
    Ok(started)
}
