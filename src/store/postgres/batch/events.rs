//! Events without a window, and their runs, stored in batches. An event the statement
//! does not store (a duplicate, or one a listener waits for) is left for the caller to
//! store in a transaction of its own, as it would any event a single statement cannot
//! take.

use super::{BatchQuery, Batched, column};
use crate::ids::RunId;
use crate::store::journal::{NewEvent, NewLease, NewRun, queues_runs};

/// Inserts the batch's events that no listener waits for and whose dedupe key is free,
/// then their runs: queued, or running under the event's lease on their first attempt.
/// Answers the positions of the events stored.
const STORE_BATCH: &str = "\
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
        $6::text[], $7::int8[], $8::int8[], $9::text[], $10::text[], $11::text[], $12::int8[])
    WITH ORDINALITY AS i(id, dedupe_key, external_id, name, source, data, ts, received_at,
        object_id, customer, lease_owner, lease_expires_at, n)
),
stored AS (
    INSERT INTO events (id, dedupe_key, external_id, name, source, data, ts, received_at,
        object_id, customer)
    SELECT id, dedupe_key, external_id, name, source, data, ts, received_at, object_id, customer
    FROM input
    WHERE NOT EXISTS (SELECT 1 FROM listeners WHERE listeners.event_name = input.name)
    ON CONFLICT (dedupe_key) DO NOTHING
    RETURNING id
),
started AS (
    INSERT INTO runs (id, function_id, event_id, status, run_at, due_at, replay_of,
        created_at, updated_at, attempt, lease_owner, lease_expires_at, started_at)
    SELECT r.id, r.function_id, r.event_id,
        CASE WHEN i.lease_owner IS NULL THEN 'queued' ELSE 'running' END,
        i.received_at, COALESCE(i.lease_expires_at, i.received_at), r.replay_of,
        i.received_at, i.received_at,
        CASE WHEN i.lease_owner IS NULL THEN 0 ELSE 1 END,
        i.lease_owner, i.lease_expires_at,
        CASE WHEN i.lease_owner IS NULL THEN NULL ELSE i.received_at END
    FROM unnest($13::text[], $14::text[], $15::text[], $16::text[])
        AS r(id, function_id, event_id, replay_of)
    JOIN stored ON stored.id = r.event_id
    JOIN input i ON i.id = r.event_id
)
SELECT input.n FROM input JOIN stored ON stored.id = input.id";

/// An event to store, with its runs and the lease they are stored under, if any.
pub(in crate::store) struct BatchedEvent {
    pub event: NewEvent,
    pub runs: Vec<NewRun>,
    pub lease: Option<NewLease>,
}

impl Batched for BatchedEvent {
    fn statement(writes: &[BatchedEvent]) -> BatchQuery<'_> {
        let runs = || {
            writes
                .iter()
                .flat_map(|w| w.runs.iter().map(move |r| (r, w)))
        };
        sqlx::query_as(STORE_BATCH)
            .bind(column(writes, |w| w.event.id.as_str()))
            .bind(column(writes, |w| w.event.dedupe_key.as_deref()))
            .bind(column(writes, |w| w.event.external_id.as_deref()))
            .bind(column(writes, |w| w.event.name.as_str()))
            .bind(column(writes, |w| w.event.source.as_str()))
            .bind(column(writes, |w| w.event.data.as_str()))
            .bind(column(writes, |w| w.event.ts))
            .bind(column(writes, |w| w.event.received_at))
            .bind(column(writes, |w| w.event.object_id.as_deref()))
            .bind(column(writes, |w| w.event.customer.as_deref()))
            .bind(column(writes, |w| {
                w.lease.as_ref().map(|l| l.owner.as_str())
            }))
            .bind(column(writes, |w| w.lease.as_ref().map(|l| l.expires_at)))
            .bind(runs().map(|(r, _)| r.id.as_str()).collect::<Vec<_>>())
            .bind(
                runs()
                    .map(|(r, _)| r.function_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(runs().map(|(_, w)| w.event.id.as_str()).collect::<Vec<_>>())
            .bind(
                runs()
                    .map(|(r, _)| r.replay_of.as_ref().map(RunId::as_str))
                    .collect::<Vec<_>>(),
            )
    }

    fn queues_runs(&self) -> bool {
        queues_runs(&self.runs, self.lease.as_ref())
    }
}
