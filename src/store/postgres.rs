//! PostgreSQL backend: a connection pool shared by many processes; each transaction
//! runs on its own connection, and runs are claimed with `FOR UPDATE SKIP LOCKED`.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgArguments, PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::query::{Query, QueryAs};
use sqlx::{ConnectOptions, Postgres};

use super::{Arg, Error, Record, Result, StoreTx, TxConn, TxFn};

/// Notified (on commit) by every transaction that queues runs.
pub(super) const RUNS_CHANNEL: &str = "paysteps_runs";

#[derive(Clone)]
pub(super) struct PgStore {
    pool: PgPool,
}

impl PgStore {
    pub(super) async fn open(url: &str) -> Result<PgStore> {
        let options =
            PgConnectOptions::from_str(url)?.log_statements(tracing::log::LevelFilter::Trace);
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        Ok(PgStore { pool })
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
        let mut store_tx = StoreTx(TxConn::Postgres(tx));
        let result = work(&mut store_tx).await;
        let TxConn::Postgres(tx) = store_tx.0 else {
            unreachable!("a PostgreSQL store only makes PostgreSQL transactions");
        };
        match result {
            Ok(value) => {
                tx.commit().await.map_err(Error::from)?;
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

    /// A listener for [`RUNS_CHANNEL`], so idle workers of every process wake at once.
    pub(super) async fn listen(&self) -> Result<sqlx::postgres::PgListener> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        listener.listen(RUNS_CHANNEL).await?;
        Ok(listener)
    }

    pub(super) async fn close(&self) {
        self.pool.close().await;
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
