//! PostgreSQL backend: a connection pool shared by many processes; each transaction
//! runs on its own connection, and runs are claimed with `FOR UPDATE SKIP LOCKED`.
//!
//! Transactions that queue runs do not `NOTIFY` themselves: PostgreSQL holds one lock
//! per database from a notifying transaction's pre-commit until its commit is flushed,
//! so every such commit would wait for the one before it to reach the disk. They raise
//! a flag instead, and after they commit one task sends a single `NOTIFY` for all the
//! commits flagged since its last.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::Notify;

use sqlx::postgres::{PgArguments, PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::query::{Query, QueryAs};
use sqlx::{ConnectOptions, Postgres};

mod batch;
mod events;

use batch::{BatchContext, Batches};
pub(super) use batch::{BatchedEvent, Made, RunEnd, StepCheckpoint};
pub(super) use events::{keyed_event, plain_event};

use super::{Arg, Error, Record, Result, StoreTx, TxConn, TxFn};

/// Notified (on commit) by every transaction that queues runs, in the `public` schema;
/// another schema's channel carries its name ([`runs_channel`]), so installations
/// sharing one database in different schemas do not wake each other.
const RUNS_CHANNEL: &str = "paysteps_runs";

fn runs_channel(schema: Option<&str>) -> String {
    match schema {
        None | Some("public") => RUNS_CHANNEL.to_owned(),
        Some(schema) => format!("{RUNS_CHANNEL}:{schema}"),
    }
}

#[derive(Clone)]
pub(super) struct PgStore {
    pool: PgPool,
    channel: Arc<str>,
    queued: Arc<Notify>,
    batches: Arc<PgBatches>,
}

/// The queues into each kind of batched write.
struct PgBatches {
    events: Batches<BatchedEvent>,
    steps: Batches<StepCheckpoint>,
    finishes: Batches<RunEnd>,
    sizes: Arc<std::sync::OnceLock<Histogram>>,
}

/// An open PostgreSQL transaction, and whether it queued runs other processes should
/// hear of once it commits.
pub(super) struct PgTx {
    pub(super) tx: sqlx::Transaction<'static, Postgres>,
    pub(super) signal: bool,
}

impl PgStore {
    pub(super) async fn open(url: &str) -> Result<PgStore> {
        let options =
            PgConnectOptions::from_str(url)?.log_statements(tracing::log::LevelFilter::Trace);
        let pool = PgPoolOptions::new()
            .max_connections(16)
            // A ping on every acquire is a round trip for each statement committed
            // alone; a broken connection shows itself on first use instead, and the
            // write fails as it would when the database is down.
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        let (schema,): (Option<String>,) = sqlx::query_as("SELECT current_schema()::text")
            .fetch_one(&pool)
            .await?;
        let channel: Arc<str> = runs_channel(schema.as_deref()).into();
        let queued = Arc::new(Notify::new());
        tokio::spawn(notify_loop(pool.clone(), channel.clone(), queued.clone()));
        let context = BatchContext {
            pool: pool.clone(),
            queued: queued.clone(),
            sizes: Arc::default(),
        };
        let batches = Arc::new(PgBatches {
            events: Batches::start(context.clone()),
            steps: Batches::start(context.clone()),
            finishes: Batches::start(context.clone()),
            sizes: context.sizes,
        });
        Ok(PgStore {
            pool,
            channel,
            queued,
            batches,
        })
    }

    pub(super) async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("migrations/postgres")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    pub(super) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Tells other processes that runs were queued by a statement that committed alone.
    pub(super) fn signal_new_runs(&self) {
        self.queued.notify_one();
    }

    /// Stores an event without a window and its runs in a batch with other events.
    pub(super) async fn store_event(&self, write: BatchedEvent) -> Result<Made> {
        self.batches.events.make(write).await
    }

    /// Saves a step checkpoint in a batch with other runs'.
    pub(super) async fn save_step(&self, write: StepCheckpoint) -> Result<Made> {
        self.batches.steps.make(write).await
    }

    /// Ends a run in a batch with other runs ending.
    pub(super) async fn finish_run(&self, write: RunEnd) -> Result<Made> {
        self.batches.finishes.make(write).await
    }

    /// Where to count the writes each committed batch carried.
    pub(super) fn report_batch_sizes(&self, histogram: Histogram) {
        let _ = self.batches.sizes.set(histogram);
    }

    pub(super) async fn transaction<T, E>(
        &self,
        work: TxFn<T, E>,
    ) -> Result<std::result::Result<T, E>>
    where
        T: Send + 'static,
        E: Send + 'static,
    {
        // Not getting a working connection means the database is out of reach,
        // whatever the driver calls the failure.
        let tx = self
            .pool
            .begin()
            .await
            .map_err(|err| match Error::from(err) {
                Error::Other(err) => Error::Unavailable(err),
                other => other,
            })?;
        let mut store_tx = StoreTx(TxConn::Postgres(PgTx { tx, signal: false }));
        let result = work(&mut store_tx).await;
        let TxConn::Postgres(PgTx { tx, signal }) = store_tx.0 else {
            unreachable!("a PostgreSQL store only makes PostgreSQL transactions");
        };
        match result {
            Ok(value) => {
                tx.commit().await.map_err(Error::from)?;
                if signal {
                    self.queued.notify_one();
                }
                Ok(Ok(value))
            }
            Err(err) => {
                // Dropping the transaction would roll back too; an explicit rollback
                // returns the connection to the pool at once.
                let _ = tx.rollback().await;
                Ok(Err(err))
            }
        }
    }

    /// A listener for this schema's runs channel, so idle workers of every process
    /// wake at once.
    pub(super) async fn listen(&self) -> Result<sqlx::postgres::PgListener> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        listener.listen(&self.channel).await?;
        Ok(listener)
    }

    pub(super) async fn close(&self) {
        self.pool.close().await;
        // Lets the notifier see the pool closed and end.
        self.queued.notify_one();
    }
}

/// Sends one `NOTIFY` per wake-up, however many commits asked for it meanwhile, until
/// the pool closes. A failed `NOTIFY` only delays other processes until their next poll.
async fn notify_loop(pool: PgPool, channel: Arc<str>, queued: Arc<Notify>) {
    loop {
        queued.notified().await;
        if pool.is_closed() {
            return;
        }
        let sent = sqlx::query("SELECT pg_notify($1, '')")
            .bind(&*channel)
            .execute(&pool)
            .await;
        match sent {
            Ok(_) => {}
            Err(sqlx::Error::PoolClosed) => return,
            Err(err) => tracing::debug!(error = %err, "notifying other processes failed"),
        }
    }
}

pub(super) fn bind(sql: &str, args: Vec<Arg>) -> Query<'_, Postgres, PgArguments> {
    bind_args!(sqlx::query(sql), args)
}

pub(super) fn bind_as<T: Record>(
    sql: &str,
    args: Vec<Arg>,
) -> QueryAs<'_, Postgres, T, PgArguments> {
    bind_args!(sqlx::query_as(sql), args)
}

#[cfg(test)]
mod tests {
    use super::runs_channel;

    #[test]
    fn each_schema_has_a_runs_channel_of_its_own() {
        assert_eq!(runs_channel(Some("public")), "paysteps_runs");
        assert_eq!(runs_channel(None), "paysteps_runs");
        assert_eq!(runs_channel(Some("t_42")), "paysteps_runs:t_42");
    }
}
