//! SQLite backend: WAL mode, a pool of readers and one writer task that commits
//! concurrent transactions together (group commit), so throughput is bounded by the
//! work per fsync rather than one fsync per write.
//!
//! The fsync is not the writer's: SQLite commits with `synchronous=NORMAL` (the WAL is
//! written, not synced) and a thread of its own syncs the WAL, then answers every
//! transaction the sync made durable. Nobody is told a transaction committed before its
//! WAL frames are on disk, so every answer is as durable as with `synchronous=FULL`,
//! while the writer runs the next batch during the sync instead of waiting for it.

mod events;
mod sync;
mod writer;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use futures::TryStreamExt;
use prometheus_client::metrics::histogram::Histogram;
use sqlx::query::{Query, QueryAs};
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Connection, Either, Executor, Sqlite, SqliteConnection};
use tokio::sync::{Mutex, mpsc, oneshot};

use super::{Arg, Durability, Error, Generation, Record, Result, StoreTx, TxConn, TxFn};
use writer::{Early, PendingWrite, TxJob, Writer};

pub(super) use events::{keyed_event, plain_event};

const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub(super) struct SqliteStore {
    options: std::sync::Arc<SqliteConnectOptions>,
    readers: SqlitePool,
    jobs: mpsc::Sender<Box<dyn PendingWrite>>,
    writer: std::sync::Arc<Mutex<Option<Writer>>>,
    batch_sizes: std::sync::Arc<std::sync::OnceLock<Histogram>>,
}

impl SqliteStore {
    pub(super) async fn open(path: &Path) -> Result<SqliteStore> {
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // The WAL is synced by `Syncer` before any commit is answered.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            // Deferred statements make variants of the engine's statements; keep them all.
            .statement_cache_capacity(1024);
        let (jobs, rx) = mpsc::channel(4096);
        let batch_sizes = std::sync::Arc::new(std::sync::OnceLock::new());
        // The writer creates the file; the read-only pool can open it only then.
        let handle = Writer::start(options.clone(), rx, batch_sizes.clone()).await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.clone().read_only(true))
            .await?;
        Ok(SqliteStore {
            options: std::sync::Arc::new(options),
            readers,
            jobs,
            writer: std::sync::Arc::new(Mutex::new(Some(handle))),
            batch_sizes,
        })
    }

    pub(super) async fn migrate(&self) -> Result<()> {
        // Rare and followed by nothing that would sync it: let SQLite sync it.
        let options = self
            .options
            .as_ref()
            .clone()
            .synchronous(SqliteSynchronous::Full);
        let mut conn = SqliteConnection::connect_with(&options).await?;
        sqlx::migrate!("migrations/sqlite").run(&mut conn).await?;
        conn.close().await?;
        Ok(())
    }

    pub(super) fn report_batch_sizes(&self, histogram: Histogram) {
        let _ = self.batch_sizes.set(histogram);
    }

    pub(super) fn queued_writes(&self) -> usize {
        self.jobs.max_capacity() - self.jobs.capacity()
    }

    pub(super) fn reader(&self) -> &SqlitePool {
        &self.readers
    }

    /// Queues `work` for the writer: in a savepoint of its own when `isolated`, and
    /// answered once it ran when `early` (see [`Write`](crate::store::Write)), ordered
    /// after the generation it holds.
    pub(super) async fn submit<T, E>(
        &self,
        work: TxFn<T, E>,
        isolated: bool,
        early: Option<Option<Generation>>,
    ) -> Result<(std::result::Result<T, E>, Option<Durability>)>
    where
        T: Send + 'static,
        E: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Box::new(TxJob {
                work,
                isolated,
                early: early.map(|after| Early { after }),
                reply,
            }))
            .await
            .map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }

    pub(super) async fn close(&self) {
        let writer = self.writer.lock().await.take();
        if let Some(writer) = writer {
            writer.stop().await;
        }
        self.readers.close().await;
    }
}

pub(super) fn bind(sql: &str, args: Vec<Arg>) -> Query<'_, Sqlite, SqliteArguments<'_>> {
    bind_args!(sqlx::query(sql), args)
}

pub(super) fn bind_as<T: Record>(
    sql: &str,
    args: Vec<Arg>,
) -> QueryAs<'_, Sqlite, T, SqliteArguments<'_>> {
    bind_args!(sqlx::query_as(sql), args)
}

/// The writer's connection. Statements whose results nobody reads (`BEGIN`,
/// `SAVEPOINT`, `RELEASE`) wait in `deferred` and go to SQLite together with the next
/// statement, as one multi-statement query: every statement is a round trip to
/// SQLite's connection thread, and these would otherwise be a third of them. (sqlx
/// 0.8's SQLite driver runs several statements with `$n` parameters in one query; its
/// authors mean to drop that, and this is where an upgrade would notice.)
pub(super) struct WriterConn {
    conn: SqliteConnection,
    deferred: String,
}

impl WriterConn {
    fn new(conn: SqliteConnection) -> WriterConn {
        WriterConn {
            conn,
            deferred: String::new(),
        }
    }

    /// Runs `sql` (no parameters) before the next statement.
    fn defer(&mut self, sql: &str) {
        self.deferred.push_str(sql);
        self.deferred.push_str("; ");
    }

    /// `sql` preceded by whatever was deferred, which is then gone.
    fn with_deferred<'s>(&mut self, sql: &'s str) -> std::borrow::Cow<'s, str> {
        if self.deferred.is_empty() {
            return sql.into();
        }
        let mut text = std::mem::take(&mut self.deferred);
        text.push_str(sql);
        text.into()
    }

    pub(super) async fn execute(&mut self, sql: &str, args: Vec<Arg>) -> Result<u64> {
        let sql = self.with_deferred(sql);
        // SQLite reports the changes of the last INSERT, UPDATE or DELETE even for a
        // statement that is neither, so only the last statement's count is this one's.
        let mut results = (&mut self.conn).fetch_many(bind(&sql, args));
        let mut changed = 0;
        while let Some(result) = results.try_next().await? {
            if let Either::Left(done) = result {
                changed = done.rows_affected();
            }
        }
        Ok(changed)
    }

    pub(super) async fn fetch_optional<T: Record>(
        &mut self,
        sql: &str,
        args: Vec<Arg>,
    ) -> Result<Option<T>> {
        let sql = self.with_deferred(sql);
        Ok(bind_as(&sql, args).fetch_optional(&mut self.conn).await?)
    }

    pub(super) async fn fetch_all<T: Record>(
        &mut self,
        sql: &str,
        args: Vec<Arg>,
    ) -> Result<Vec<T>> {
        let sql = self.with_deferred(sql);
        Ok(bind_as(&sql, args).fetch_all(&mut self.conn).await?)
    }
}

impl StoreTx {
    fn defer(&mut self, sql: &str) {
        if let TxConn::Sqlite(conn) = &mut self.0 {
            conn.defer(sql);
        }
    }
}
