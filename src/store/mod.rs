//! Durable storage: the engine's journal (events, runs, steps) and the business tables.
//!
//! Everything outside this module sees [`Store`], [`StoreTx`], [`Arg`] and [`Error`];
//! the backend behind them is chosen from the database URL. Every write goes through
//! [`Store::write`], whose options, [`Write`], document the write contract: isolation,
//! when a write is answered, and what a crash can lose.

/// Binds every [`Arg`] to a `query` or `query_as`, whatever the backend.
macro_rules! bind_args {
    ($query:expr, $args:expr) => {
        $args.into_iter().fold($query, |q, arg| match arg {
            $crate::store::Arg::Int(v) => q.bind(v),
            $crate::store::Arg::Float(v) => q.bind(v),
            $crate::store::Arg::Bool(v) => q.bind(v),
            $crate::store::Arg::Text(v) => q.bind(v),
        })
    };
}

mod backup;
mod error;
mod flow;
mod journal;
mod leases;
pub mod operations;
mod params;
mod postgres;
mod retention;
mod rows;
mod sessions;
mod sqlite;
pub mod stats;
mod url;
mod write;

use std::path::Path;

use futures::future::BoxFuture;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;

use crate::ids::{EventId, FunctionId, RunId};

pub use backup::backup;
pub use error::{Error, Result};
pub use flow::NewListener;
pub use journal::{
    ClaimedRun, IngestOutcome, NewEvent, NewLease, NewRun, RunFilter, StepUpdate, queues_runs,
};
pub use retention::{EventHold, JournalPruned};
pub(crate) use retention::{as_count, id_list, ids};
pub(crate) use rows::EventRow;
pub use rows::{RunRow, StepRow};
pub use sessions::NewSession;
pub use url::{redact_url, sqlite_path};
use write::Isolation;
pub use write::{Answer, Durability, Generation, Write};

/// A row type readable from every backend.
pub trait Record:
    for<'r> sqlx::FromRow<'r, SqliteRow> + for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin
{
}
impl<T> Record for T where
    T: for<'r> sqlx::FromRow<'r, SqliteRow> + for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin
{
}

/// A value bound to a `$n` placeholder. Statements are written once with `$1…$n`
/// and bound through this type, so the same text serves every backend. NULLs keep
/// their type, as PostgreSQL wants to know it.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// An integer (times in milliseconds, counts, amounts in minor units).
    Int(Option<i64>),
    /// A floating-point number.
    Float(Option<f64>),
    /// A boolean.
    Bool(Option<bool>),
    /// Text (ids, JSON).
    Text(Option<String>),
}

/// A Rust type that binds as one kind of [`Arg`], so `None` of it binds a typed NULL.
pub trait ArgType: Into<Arg> {
    /// The typed NULL of this type.
    fn null() -> Arg;
}

macro_rules! arg_type {
    ($variant:ident: $($ty:ty => $conv:expr),*) => {$(
        impl From<$ty> for Arg {
            fn from(v: $ty) -> Self {
                #[allow(clippy::redundant_closure_call)]
                Arg::$variant(Some(($conv)(v)))
            }
        }
        impl ArgType for $ty {
            fn null() -> Arg {
                Arg::$variant(None)
            }
        }
    )*};
}

arg_type!(Int: i64 => |v| v, i32 => i64::from, u32 => i64::from);
arg_type!(Float: f64 => |v| v);
arg_type!(Bool: bool => |v| v);
arg_type!(Text: String => |v| v, &str => str::to_owned, &String => String::clone);
arg_type!(Text: RunId => String::from, &RunId => |v: &RunId| v.as_str().to_owned());
arg_type!(Text: EventId => String::from, &EventId => |v: &EventId| v.as_str().to_owned());
arg_type!(Text: FunctionId => String::from, &FunctionId => |v: &FunctionId| v.as_str().to_owned());

impl<T: ArgType> From<Option<T>> for Arg {
    fn from(v: Option<T>) -> Self {
        v.map_or_else(T::null, Into::into)
    }
}

/// Builds a `Vec<Arg>` from values of mixed types: `args![id, 42, None::<String>]`.
#[macro_export]
macro_rules! args {
    ($($value:expr),* $(,)?) => { vec![$($crate::Arg::from($value)),*] };
}

/// The storage handle: cheap to clone, shared by the engine, HTTP and CLI.
#[derive(Clone)]
pub struct Store(Backend);

#[derive(Clone)]
enum Backend {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

/// Which database a store runs on, for the few statements that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Embedded SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// An open write transaction. Business writes made through it commit together with
/// the step checkpoint that the engine records in the same transaction.
pub struct StoreTx(TxConn);

enum TxConn {
    Sqlite(sqlite::WriterConn),
    Postgres(postgres::PgTx),
}

/// A unit of work run inside one write transaction.
type TxFn<T, E> =
    Box<dyn for<'c> FnOnce(&'c mut StoreTx) -> BoxFuture<'c, std::result::Result<T, E>> + Send>;

impl Store {
    /// Opens the database named by `url`: `postgres://…` (or `postgresql://…`), or
    /// SQLite as `sqlite://path`, `sqlite:path` or a plain file path.
    pub async fn connect(url: &str) -> Result<Store> {
        match sqlite_path(url) {
            Some(path) => Self::open_sqlite(path).await,
            None => Ok(Store(Backend::Postgres(
                postgres::PgStore::open(url).await?,
            ))),
        }
    }

    /// Opens (creating if needed) an SQLite file in WAL mode.
    pub async fn open_sqlite(path: &Path) -> Result<Store> {
        Ok(Store(Backend::Sqlite(
            sqlite::SqliteStore::open(path).await?,
        )))
    }

    /// Which database this store runs on.
    pub fn dialect(&self) -> Dialect {
        match &self.0 {
            Backend::Sqlite(_) => Dialect::Sqlite,
            Backend::Postgres(_) => Dialect::Postgres,
        }
    }

    /// How many write transactions wait for SQLite's writer: queued behind the commit
    /// it is making now. Always 0 on PostgreSQL, where writers do not queue here.
    #[doc(hidden)]
    pub fn queued_writes(&self) -> usize {
        match &self.0 {
            Backend::Sqlite(s) => s.queued_writes(),
            Backend::Postgres(_) => 0,
        }
    }

    /// Applies the migrations of this backend that are not applied yet.
    pub async fn migrate(&self) -> Result<()> {
        match &self.0 {
            Backend::Sqlite(s) => s.migrate().await,
            Backend::Postgres(p) => p.migrate().await,
        }
    }

    /// Checks that the database answers.
    pub(crate) async fn ping(&self) -> Result<()> {
        self.fetch_optional::<(i64,)>("SELECT CAST(1 AS BIGINT)", vec![])
            .await
            .map(|_| ())
    }

    /// Runs `work` in one write transaction, as `write` says: isolated or shared,
    /// answered on durable commit or early (see [`Write`] for the contract).
    /// `Err` means nothing of `work` is kept, whether `work` or the commit failed.
    #[doc(hidden)]
    pub async fn write<A, T, E, F>(
        &self,
        write: Write<A, E>,
        work: F,
    ) -> std::result::Result<A::Answered<T>, E>
    where
        A: Answer,
        T: Send + 'static,
        E: From<Error> + Send + 'static,
        F: for<'c> FnOnce(&'c mut StoreTx) -> BoxFuture<'c, std::result::Result<T, E>>
            + Send
            + 'static,
    {
        let work: TxFn<T, E> = Box::new(work);
        let (outcome, durability) = match &self.0 {
            Backend::Sqlite(s) => {
                let isolated = write.isolation() == Isolation::Savepoint;
                s.submit(work, isolated, write.answer().early()).await?
            }
            Backend::Postgres(p) => (p.transaction(work).await?, None),
        };
        Ok(A::answered(outcome?, durability))
    }

    /// One writing statement committed alone; answers how many rows it changed. Same
    /// effect as `write(Write::shared(), …)` running `sql`; on PostgreSQL it is a single
    /// round trip, with no `BEGIN` or `COMMIT`.
    pub async fn execute(&self, sql: String, args: Vec<Arg>) -> Result<u64> {
        match &self.0 {
            Backend::Sqlite(_) => {
                self.write(Write::shared(), move |tx| {
                    Box::pin(async move { tx.execute(&sql, args).await })
                })
                .await
            }
            Backend::Postgres(p) => Ok(postgres::bind(&sql, args)
                .execute(p.pool())
                .await?
                .rows_affected()),
        }
    }

    /// [`Store::execute`] for a statement that returns rows, which it reads.
    pub(crate) async fn execute_returning<T: Record + 'static>(
        &self,
        sql: String,
        args: Vec<Arg>,
    ) -> Result<Vec<T>> {
        match &self.0 {
            Backend::Sqlite(_) => {
                self.write(Write::shared(), move |tx| {
                    Box::pin(async move { tx.fetch_all(&sql, args).await })
                })
                .await
            }
            Backend::Postgres(p) => postgres::bind_as(&sql, args)
                .fetch_all(p.pool())
                .await
                .map_err(Error::from),
        }
    }

    /// Tells every process that runs were queued by a statement that committed alone.
    pub(crate) fn signal_new_runs(&self) {
        if let Backend::Postgres(p) = &self.0 {
            p.signal_new_runs();
        }
    }

    /// Runs a query and reads its row if it returns one.
    pub async fn fetch_optional<T: Record>(&self, sql: &str, args: Vec<Arg>) -> Result<Option<T>> {
        match &self.0 {
            Backend::Sqlite(s) => sqlite::bind_as(sql, args)
                .fetch_optional(s.reader())
                .await
                .map_err(Error::from),
            Backend::Postgres(p) => postgres::bind_as(sql, args)
                .fetch_optional(p.pool())
                .await
                .map_err(Error::from),
        }
    }

    /// Runs a query that must return a row; [`Error::NotFound`] when it returns none.
    pub async fn fetch_one<T: Record>(&self, sql: &str, args: Vec<Arg>) -> Result<T> {
        self.fetch_optional(sql, args).await?.ok_or(Error::NotFound)
    }

    /// Runs a query and reads every row it returns.
    pub async fn fetch_all<T: Record>(&self, sql: &str, args: Vec<Arg>) -> Result<Vec<T>> {
        match &self.0 {
            Backend::Sqlite(s) => sqlite::bind_as(sql, args)
                .fetch_all(s.reader())
                .await
                .map_err(Error::from),
            Backend::Postgres(p) => postgres::bind_as(sql, args)
                .fetch_all(p.pool())
                .await
                .map_err(Error::from),
        }
    }

    /// Signals that another process queued runs; `None` where the backend has a single
    /// process (SQLite), whose own engine wakes its workers directly.
    pub(crate) async fn run_signals(&self) -> Result<Option<RunSignals>> {
        match &self.0 {
            Backend::Sqlite(_) => Ok(None),
            Backend::Postgres(p) => Ok(Some(RunSignals(p.listen().await?))),
        }
    }

    /// Where the backend reports how many transactions each commit carried: SQLite's
    /// group commits, and PostgreSQL's batched writes (events, checkpoints and run
    /// endings; its other transactions each commit on their own).
    pub(crate) fn report_batch_sizes(
        &self,
        histogram: prometheus_client::metrics::histogram::Histogram,
    ) {
        match &self.0 {
            Backend::Sqlite(s) => s.report_batch_sizes(histogram),
            Backend::Postgres(p) => p.report_batch_sizes(histogram),
        }
    }

    /// Stops the writer once queued work is done.
    pub async fn close(&self) {
        match &self.0 {
            Backend::Sqlite(s) => s.close().await,
            Backend::Postgres(p) => p.close().await,
        }
    }
}

/// See `Store::run_signals`.
pub struct RunSignals(sqlx::postgres::PgListener);

impl RunSignals {
    /// Waits for the next signal (reconnecting if the connection drops).
    pub async fn next(&mut self) -> Result<()> {
        self.0.recv().await?;
        Ok(())
    }
}

impl StoreTx {
    /// Tells every process that runs were queued, once this transaction commits.
    pub(crate) async fn signal_new_runs(&mut self) -> Result<()> {
        if let TxConn::Postgres(tx) = &mut self.0 {
            tx.signal = true;
        }
        Ok(())
    }

    /// Which database this transaction runs on.
    pub fn dialect(&self) -> Dialect {
        match &self.0 {
            TxConn::Sqlite(_) => Dialect::Sqlite,
            TxConn::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Runs a statement and returns the number of rows it changed.
    pub async fn execute(&mut self, sql: &str, args: Vec<Arg>) -> Result<u64> {
        match &mut self.0 {
            TxConn::Sqlite(conn) => conn.execute(sql, args).await,
            TxConn::Postgres(tx) => Ok(postgres::bind(sql, args)
                .execute(&mut *tx.tx)
                .await?
                .rows_affected()),
        }
    }

    /// Runs a query in this transaction and reads its row if it returns one.
    pub async fn fetch_optional<T: Record>(
        &mut self,
        sql: &str,
        args: Vec<Arg>,
    ) -> Result<Option<T>> {
        match &mut self.0 {
            TxConn::Sqlite(conn) => conn.fetch_optional(sql, args).await,
            TxConn::Postgres(tx) => Ok(postgres::bind_as(sql, args)
                .fetch_optional(&mut *tx.tx)
                .await?),
        }
    }

    /// Runs a query in this transaction that must return a row; [`Error::NotFound`] when
    /// it returns none.
    pub async fn fetch_one<T: Record>(&mut self, sql: &str, args: Vec<Arg>) -> Result<T> {
        self.fetch_optional(sql, args).await?.ok_or(Error::NotFound)
    }

    /// Runs a query in this transaction and reads every row it returns.
    pub async fn fetch_all<T: Record>(&mut self, sql: &str, args: Vec<Arg>) -> Result<Vec<T>> {
        match &mut self.0 {
            TxConn::Sqlite(conn) => conn.fetch_all(sql, args).await,
            TxConn::Postgres(tx) => Ok(postgres::bind_as(sql, args).fetch_all(&mut *tx.tx).await?),
        }
    }
}
