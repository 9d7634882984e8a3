//! PostgreSQL: writes of one kind that arrive together, made by one statement and one
//! commit. Writes that arrive while earlier batches are being made wait in a queue; the
//! next batch takes all of them (up to [`MAX_BATCH`]), so they share one commit, and the
//! statement's own cost, instead of each paying for its own.
//!
//! Each write is answered for itself: whether the statement made it. When the database
//! refuses a batch's statement, every write of it is answered [`Made::Alone`] and makes
//! itself on its own, where only a write the database refuses fails.

mod checkpoints;
mod events;

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use prometheus_client::metrics::histogram::Histogram;
use sqlx::postgres::PgArguments;
use sqlx::query::QueryAs;
use sqlx::{PgPool, Postgres};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};

use crate::store::{Error, Result};

pub(in crate::store) use checkpoints::{RunEnd, StepCheckpoint};
pub(in crate::store) use events::BatchedEvent;

/// Most writes in one statement.
const MAX_BATCH: usize = 256;

/// Batches of one kind made at once. While they are, new writes queue up for the next.
const BATCHES_IN_FLIGHT: usize = 2;

/// A batch statement's query. It reads one row per write it made: the write's position
/// in the batch, from 1 (`WITH ORDINALITY` on the arrays).
type BatchQuery<'q> = QueryAs<'q, Postgres, (i64,), PgArguments>;

/// A kind of write that can be made in batches.
pub(super) trait Batched: Sized + Send + 'static {
    /// The statement making `writes` together, answering the position of each write
    /// it made.
    fn statement(writes: &[Self]) -> BatchQuery<'_>;

    /// Whether making this write queued runs other processes should hear of.
    fn queues_runs(&self) -> bool {
        false
    }
}

/// What became of a write sent to a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::store) enum Made {
    /// The batch made it.
    Yes,
    /// The batch's statement left it out, as its conditions say.
    No,
    /// The database refused the batch: the write is to be made on its own.
    Alone,
}

struct Pending<W> {
    write: W,
    made: oneshot::Sender<Result<Made>>,
}

/// The queue into the batches of one kind of write.
pub(super) struct Batches<W> {
    jobs: mpsc::UnboundedSender<Pending<W>>,
}

/// What every kind of batch shares: the pool, where to say runs were queued, and where
/// to count batch sizes.
#[derive(Clone)]
pub(super) struct BatchContext {
    pub pool: PgPool,
    pub queued: Arc<Notify>,
    pub sizes: Arc<OnceLock<Histogram>>,
}

impl<W: Batched> Batches<W> {
    /// Starts the task that forms batches of this kind.
    pub(super) fn start(context: BatchContext) -> Batches<W> {
        let (jobs, receiver) = mpsc::unbounded_channel();
        tokio::spawn(batch_loop(context, receiver));
        Batches { jobs }
    }

    /// Makes `write` with whatever other writes of its kind are waiting.
    pub(super) async fn make(&self, write: W) -> Result<Made> {
        let (made, answer) = oneshot::channel();
        self.jobs
            .send(Pending { write, made })
            .map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }
}

/// One value of each write, for a column of the batch statement's arrays.
fn column<'a, W, T>(writes: &'a [W], value: impl Fn(&'a W) -> T) -> Vec<T> {
    writes.iter().map(value).collect()
}

/// Takes the first waiting write, waits for a batch to be free, then takes every write
/// queued by then into that batch.
async fn batch_loop<W: Batched>(
    context: BatchContext,
    mut receiver: mpsc::UnboundedReceiver<Pending<W>>,
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
        let context = context.clone();
        tokio::spawn(async move {
            make_batch(&context, jobs).await;
            drop(permit);
        });
    }
}

/// Makes one batch and answers each of its writes.
async fn make_batch<W: Batched>(context: &BatchContext, jobs: Vec<Pending<W>>) {
    let (writes, answers): (Vec<W>, Vec<_>) = jobs.into_iter().map(|j| (j.write, j.made)).unzip();
    let made = W::statement(&writes).fetch_all(&context.pool).await;
    match made {
        Ok(rows) => {
            if let Some(histogram) = context.sizes.get() {
                histogram.observe(writes.len() as f64);
            }
            let made: HashSet<i64> = rows.into_iter().map(|(n,)| n).collect();
            let mut queued = false;
            for (n, (write, answer)) in (1..).zip(writes.iter().zip(answers)) {
                let was_made = made.contains(&n);
                queued |= was_made && write.queues_runs();
                let _ = answer.send(Ok(if was_made { Made::Yes } else { Made::No }));
            }
            if queued {
                context.queued.notify_one();
            }
        }
        // A statement that one write made fail (a value the database refuses) must not
        // fail the others: each is made again on its own, where only its own fails.
        Err(sqlx::Error::Database(_)) if writes.len() > 1 => {
            for answer in answers {
                let _ = answer.send(Ok(Made::Alone));
            }
        }
        Err(err) => {
            let err = Error::from(err);
            let message = err.to_string();
            let mut answers = answers.into_iter();
            if let Some(first) = answers.next() {
                let _ = first.send(Err(err));
            }
            for answer in answers {
                let _ = answer.send(Err(Error::Transaction(message.clone())));
            }
        }
    }
}
