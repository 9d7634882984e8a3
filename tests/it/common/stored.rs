//! Events stored through the store itself, as the engine stores them, for tests of the
//! storage layer.

use paysteps::testing::store::{IngestOutcome, NewEvent, NewRun, Store, Write};

/// The name of every event made by [`stripe_event`].
pub const NAME: &str = "stripe/test.stored";

/// Stripe's `evt_id`, stored as paysteps' `ev_id`, with one run `run_id` of `function`;
/// its key holds for ever.
pub fn stripe_event(id: &str, evt_id: &str, run_id: &str, function: &str) -> (NewEvent, NewRun) {
    let event = NewEvent {
        id: id.parse().expect("an event id"),
        dedupe_key: Some(format!("stripe:{evt_id}")),
        dedupe_for_ms: None,
        external_id: Some(evt_id.into()),
        name: NAME.into(),
        source: "stripe".into(),
        data: "{}".into(),
        ts: 1,
        received_at: 1_000,
        object_id: None,
        customer: None,
    };
    let run = NewRun {
        id: run_id.parse().expect("a run id"),
        function_id: function.parse().expect("a function id"),
        replay_of: None,
    };
    (event, run)
}

/// Stores the event and its run as the engine does: in the statement shared with other
/// events where it can, else in a transaction of its own.
pub async fn store_event(
    store: &Store,
    event: NewEvent,
    run: NewRun,
) -> paysteps::testing::store::Result<IngestOutcome> {
    if let Some(outcome) = store
        .store_event_alone(&event, std::slice::from_ref(&run), None)
        .await?
    {
        return Ok(outcome);
    }
    store
        .write(Write::shared(), move |tx| {
            Box::pin(async move { tx.insert_event(&event, &[run]).await })
        })
        .await
}
