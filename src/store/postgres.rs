//! PostgreSQL backend: a connection pool shared by many processes; each transaction
//! runs on its own connection, and runs are claimed with `FOR UPDATE SKIP LOCKED`.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgArguments, PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::query::{Query, QueryAs};
use sqlx::{ConnectOptions, Postgres};

use super::{Arg, Error, Record, Result, StoreTx, TxConn, TxFn};

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
        let tx = self.pool.begin().await?;
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
