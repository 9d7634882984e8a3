//! PostgreSQL: events without a window, stored in batches. Events that arrive while
//! earlier batches are being written wait in a queue; the next batch takes all of them
//! (up to [`MAX_BATCH`]) into one statement, so they share one commit instead of each
//! paying for its own.
//!
//! An event the statement does not store (a duplicate, or one that a listener waits for)
//! is answered `false`, and the caller stores it in a transaction of its own, as it would
//! any event the single statement cannot take.

use std::sync::{Arc, OnceLock};

use prometheus_client::metrics::histogram::Histogram;

use sqlx::postgres::PgArguments;
use sqlx::query::QueryAs;
use sqlx::{PgPool, Postgres};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};

use super::journal::{NewEvent, NewLease, NewRun};
use super::{Error, Result};

/// Most events in one statement.
const MAX_BATCH: usize = 256;

/// Batches written at once. While they are, new events queue up for the next.
const BATCHES_IN_FLIGHT: usize = 2;

/// Inserts the batch's events that no listener waits for and whose dedupe key is free,
/// then their runs: queued, or running under the event's lease on their first attempt.
/// Answers the ids of the events stored.
const STORE_BATCH: &str = "\
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
        $6::text[], $7::int8[], $8::int8[], $9::text[], $10::text[], $11::text[], $12::int8[])
    AS i(id, dedupe_key, external_id, name, source, data, ts, received_at, object_id,
        customer, lease_owner, lease_expires_at)
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
SELECT id FROM stored";

/// An event waiting for its batch, and where to answer whether it was stored.
struct Job {
    event: NewEvent,
    runs: Vec<NewRun>,
    lease: Option<NewLease>,
    stored: oneshot::Sender<Result<bool>>,
}

/// The queue into the batches; cheap to clone.
#[derive(Clone)]
pub(super) struct EventBatches {
    jobs: mpsc::UnboundedSender<Job>,
    sizes: Arc<OnceLock<Histogram>>,
}

impl EventBatches {
    /// Starts the task that forms batches on `pool`; `queued` is notified after a batch
    /// that queued runs commits.
    pub(super) fn start(pool: PgPool, queued: Arc<Notify>) -> EventBatches {
        let (jobs, receiver) = mpsc::unbounded_channel();
        let sizes = Arc::new(OnceLock::new());
        tokio::spawn(batch_loop(pool, receiver, queued, sizes.clone()));
        EventBatches { jobs, sizes }
    }

    /// Where to count the events each committed batch carried.
    pub(super) fn report_sizes(&self, histogram: Histogram) {
        let _ = self.sizes.set(histogram);
    }

    /// Stores the event and its runs with whatever other events are waiting, and says
    /// whether it was stored: `false` when it is a duplicate, or a listener waits for
    /// its name, and nothing of it was written.
    pub(super) async fn store(
        &self,
        event: &NewEvent,
        runs: &[NewRun],
        lease: Option<&NewLease>,
    ) -> Result<bool> {
        let (stored, answer) = oneshot::channel();
        let job = Job {
            event: event.clone(),
            runs: runs.to_vec(),
            lease: lease.cloned(),
            stored,
        };
        self.jobs.send(job).map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }
}

/// Takes the first waiting event, waits for a batch to be free, then takes every event
/// queued by then into that batch.
async fn batch_loop(
    pool: PgPool,
    mut receiver: mpsc::UnboundedReceiver<Job>,
    queued: Arc<Notify>,
    sizes: Arc<OnceLock<Histogram>>,
) {
    let in_flight = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT));
    while let Some(first) = receiver.recv().await {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let pool = pool.clone();
        let queued = queued.clone();
        let sizes = sizes.clone();
        tokio::spawn(async move {
            write_batch(&pool, jobs, &queued, &sizes).await;
            drop(permit);
        });
    }
}

/// Writes one batch and answers each of its events.
async fn write_batch(pool: &PgPool, jobs: Vec<Job>, queued: &Notify, sizes: &OnceLock<Histogram>) {
    let stored: std::result::Result<Vec<(String,)>, sqlx::Error> =
        bind_batch(&jobs).fetch_all(pool).await;
    match stored {
        Ok(rows) => {
            if let Some(histogram) = sizes.get() {
                histogram.observe(jobs.len() as f64);
            }
            let stored: std::collections::HashSet<String> =
                rows.into_iter().map(|(id,)| id).collect();
            let mut signal = false;
            for job in jobs {
                let was_stored = stored.contains(&job.event.id);
                signal |= was_stored && job.lease.is_none() && !job.runs.is_empty();
                let _ = job.stored.send(Ok(was_stored));
            }
            if signal {
                queued.notify_one();
            }
        }
        // A statement that one event made fail (a value the database refuses) must not
        // fail the others: each is stored again on its own, where only its own fails.
        Err(sqlx::Error::Database(_)) if jobs.len() > 1 => {
            for job in jobs {
                let _ = job.stored.send(Ok(false));
            }
        }
        Err(err) => {
            let err = Error::from(err);
            let message = err.to_string();
            let mut jobs = jobs.into_iter();
            if let Some(first) = jobs.next() {
                let _ = first.stored.send(Err(err));
            }
            for job in jobs {
                let _ = job.stored.send(Err(Error::Transaction(message.clone())));
            }
        }
    }
}

/// The batch statement, with one array per column.
fn bind_batch(jobs: &[Job]) -> QueryAs<'_, Postgres, (String,), PgArguments> {
    fn column<'a, T>(jobs: &'a [Job], value: impl Fn(&'a Job) -> T) -> Vec<T> {
        jobs.iter().map(value).collect()
    }
    let runs = || jobs.iter().flat_map(|j| j.runs.iter().map(move |r| (r, j)));
    sqlx::query_as(STORE_BATCH)
        .bind(column(jobs, |j| j.event.id.as_str()))
        .bind(column(jobs, |j| j.event.dedupe_key.as_deref()))
        .bind(column(jobs, |j| j.event.external_id.as_deref()))
        .bind(column(jobs, |j| j.event.name.as_str()))
        .bind(column(jobs, |j| j.event.source.as_str()))
        .bind(column(jobs, |j| j.event.data.as_str()))
        .bind(column(jobs, |j| j.event.ts))
        .bind(column(jobs, |j| j.event.received_at))
        .bind(column(jobs, |j| j.event.object_id.as_deref()))
        .bind(column(jobs, |j| j.event.customer.as_deref()))
        .bind(column(jobs, |j| j.lease.as_ref().map(|l| l.owner.as_str())))
        .bind(column(jobs, |j| j.lease.as_ref().map(|l| l.expires_at)))
        .bind(runs().map(|(r, _)| r.id.as_str()).collect::<Vec<_>>())
        .bind(
            runs()
                .map(|(r, _)| r.function_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(runs().map(|(_, j)| j.event.id.as_str()).collect::<Vec<_>>())
        .bind(
            runs()
                .map(|(r, _)| r.replay_of.as_deref())
                .collect::<Vec<_>>(),
        )
}
