//! SQLite backend: WAL mode, a pool of readers and one writer task that commits
//! concurrent transactions together (group commit), so throughput is bounded by the
//! work per fsync rather than one fsync per write.
//!
//! The fsync is not the writer's: SQLite commits with `synchronous=NORMAL` (the WAL is
//! written, not synced) and a thread of its own syncs the WAL, then answers every
//! transaction the sync made durable. Nobody is told a transaction committed before its
//! WAL frames are on disk, so every answer is as durable as with `synchronous=FULL`,
//! while the writer runs the next batch during the sync instead of waiting for it.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, TryStreamExt};
use prometheus_client::metrics::histogram::Histogram;
use sqlx::query::{Query, QueryAs};
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Connection, Either, Executor, Sqlite, SqliteConnection};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{Arg, Error, Record, Result, StoreTx, TxConn, TxFn};

/// At most this many transactions share one commit.
const MAX_BATCH: usize = 512;
/// A batch takes in more transactions for at most this long before it commits.
const MAX_BATCH_TIME: Duration = Duration::from_millis(2);
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub(super) struct SqliteStore {
    options: std::sync::Arc<SqliteConnectOptions>,
    readers: SqlitePool,
    jobs: mpsc::Sender<Box<dyn Job>>,
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

    pub(super) async fn transaction<T, E>(
        &self,
        work: TxFn<T, E>,
        isolated: bool,
    ) -> Result<std::result::Result<T, E>>
    where
        T: Send + 'static,
        E: Send + 'static,
    {
        let (outcome, _) = self.submit(work, isolated, None).await?;
        Ok(outcome)
    }

    /// A transaction answered as soon as it ran, before its batch commits; what it wrote
    /// is durable once the returned [`Durability`] resolves. It runs only if the
    /// transaction of generation `after` (the caller's last early one) committed.
    pub(super) async fn transaction_early<T, E>(
        &self,
        work: TxFn<T, E>,
        isolated: bool,
        after: Option<u64>,
    ) -> Result<(std::result::Result<T, E>, Option<Durability>)>
    where
        T: Send + 'static,
        E: Send + 'static,
    {
        self.submit(work, isolated, Some(Early { after })).await
    }

    async fn submit<T, E>(
        &self,
        work: TxFn<T, E>,
        isolated: bool,
        early: Option<Early>,
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
                early,
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

/// A queued transaction: runs inside the shared batch, then learns whether the batch committed.
trait Job: Send {
    /// Whether the job needs a savepoint of its own (see [`commit_batch`]).
    fn isolated(&self) -> bool;
    /// The generation of an earlier early-answered transaction this one builds on.
    fn after(&self) -> Option<u64>;
    fn run<'c>(self: Box<Self>, tx: &'c mut StoreTx) -> BoxFuture<'c, Box<dyn Finish>>;
    fn abort(self: Box<Self>, err: Error);
}

trait Finish: Send {
    /// Whether the job's own work succeeded (its savepoint is kept).
    fn succeeded(&self) -> bool;
    /// The job's work is done and kept in the batch of `generation`: an early job is
    /// answered now.
    fn ran(&mut self, generation: u64);
    fn complete(self: Box<Self>, commit: std::result::Result<(), String>);
}

/// A job to answer once it ran rather than once its batch committed: it runs only if
/// the batch of generation `after` committed (or is the one running).
struct Early {
    after: Option<u64>,
}

/// Resolves once the commit of an early-answered transaction is durable, or failed.
/// Clones wait for the same commit.
#[derive(Clone)]
pub struct Durability {
    generation: u64,
    commit: Shared<oneshot::Receiver<std::result::Result<(), String>>>,
}

impl Durability {
    /// The batch the transaction ran in: what a later transaction builds on.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Waits until the transaction's commit is on disk.
    pub async fn wait(self) -> Result<()> {
        match self.commit.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(msg)) => Err(Error::Transaction(msg)),
            Err(_) => Err(Error::Closed),
        }
    }
}

type Answer<T, E> = Result<(std::result::Result<T, E>, Option<Durability>)>;

struct TxJob<T, E> {
    work: TxFn<T, E>,
    isolated: bool,
    early: Option<Early>,
    reply: oneshot::Sender<Answer<T, E>>,
}

struct TxDone<T, E> {
    outcome: Option<std::result::Result<std::result::Result<T, E>, Error>>,
    early: bool,
    /// Until the job is answered.
    reply: Option<oneshot::Sender<Answer<T, E>>>,
    /// For a job answered early: where its commit's outcome goes.
    commit: Option<oneshot::Sender<std::result::Result<(), String>>>,
}

impl<T: Send + 'static, E: Send + 'static> Job for TxJob<T, E> {
    fn isolated(&self) -> bool {
        self.isolated
    }

    fn after(&self) -> Option<u64> {
        self.early.as_ref().and_then(|early| early.after)
    }

    fn run<'c>(self: Box<Self>, tx: &'c mut StoreTx) -> BoxFuture<'c, Box<dyn Finish>> {
        Box::pin(async move {
            let TxJob {
                work, reply, early, ..
            } = *self;
            let outcome = match AssertUnwindSafe((work)(tx)).catch_unwind().await {
                Ok(result) => Ok(result),
                Err(_) => Err(Error::Transaction("transaction work panicked".into())),
            };
            Box::new(TxDone {
                outcome: Some(outcome),
                early: early.is_some(),
                reply: Some(reply),
                commit: None,
            }) as Box<dyn Finish>
        })
    }

    fn abort(self: Box<Self>, err: Error) {
        let _ = self.reply.send(Err(err));
    }
}

impl<T: Send, E: Send> Finish for TxDone<T, E> {
    fn succeeded(&self) -> bool {
        matches!(self.outcome, Some(Ok(Ok(_))))
    }

    fn ran(&mut self, generation: u64) {
        if !self.early {
            return;
        }
        let (Some(Ok(outcome)), Some(reply)) = (self.outcome.take(), self.reply.take()) else {
            return;
        };
        let (commit, durable) = oneshot::channel();
        self.commit = Some(commit);
        let durability = Durability {
            generation,
            commit: durable.shared(),
        };
        let _ = reply.send(Ok((outcome, Some(durability))));
    }

    fn complete(self: Box<Self>, commit: std::result::Result<(), String>) {
        if let Some(sender) = self.commit {
            let _ = sender.send(commit);
            return;
        }
        let (Some(outcome), Some(reply)) = (self.outcome, self.reply) else {
            return;
        };
        let answer = match (outcome, commit) {
            (Ok(Ok(value)), Ok(())) => Ok((Ok(value), None)),
            (Ok(Ok(_)), Err(msg)) => Err(Error::Transaction(msg)),
            // The work failed: its writes were rolled back whatever the commit did.
            (Ok(Err(err)), _) => Ok((Err(err), None)),
            (Err(err), _) => Err(err),
        };
        let _ = reply.send(answer);
    }
}

/// The writer task, on a thread of its own with its own single-threaded runtime: each
/// statement is a round trip to SQLite's connection thread, and a writer that shares the
/// server's runtime would wait behind request tasks for every one of them.
///
/// The writer thread is pinned to one core before it opens its connection, so SQLite's
/// connection thread (which inherits the pin) shares that core: each statement's
/// hand-off is then a context switch on one core rather than a wake-up across cores,
/// which costs several times as much on a virtual machine.
struct Writer {
    stop: CancellationToken,
    done: oneshot::Receiver<()>,
}

impl Writer {
    async fn start(
        options: SqliteConnectOptions,
        jobs: mpsc::Receiver<Box<dyn Job>>,
        batch_sizes: std::sync::Arc<std::sync::OnceLock<Histogram>>,
    ) -> Result<Writer> {
        let stop = CancellationToken::new();
        let (finished, done) = oneshot::channel();
        let (opened, ready) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Transaction(format!("starting the SQLite writer: {e}")))?;
        let until = stop.clone();
        let syncer = Syncer::start(wal_path(options.get_filename()))?;
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                pin_to_one_core();
                run_as_batch();
                runtime.block_on(async move {
                    let conn = match SqliteConnection::connect_with(&options).await {
                        Ok(conn) => {
                            let _ = opened.send(Ok(()));
                            conn
                        }
                        Err(err) => {
                            let _ = opened.send(Err(Error::from(err)));
                            return;
                        }
                    };
                    tokio::select! {
                        _ = run_writer(StoreTx(TxConn::Sqlite(WriterConn::new(conn))), jobs, batch_sizes, syncer) => {}
                        _ = until.cancelled() => {}
                    }
                });
                let _ = finished.send(());
            })
            .map_err(|e| Error::Transaction(format!("starting the SQLite writer: {e}")))?;
        ready
            .await
            .map_err(|_| Error::Transaction("the SQLite writer stopped while opening".into()))??;
        Ok(Writer { stop, done })
    }

    /// Stops the writer between batches (or abandons the batch in flight, uncommitted)
    /// and waits until its connection is closed.
    async fn stop(self) {
        self.stop.cancel();
        let _ = self.done.await;
    }
}

/// Pins the calling thread to the last core, leaving the first to whatever the scheduler
/// puts there first. Where pinning is not possible the thread simply floats.
fn pin_to_one_core() {
    let last = core_affinity::get_core_ids().and_then(|cores| cores.last().copied());
    if let Some(core) = last
        && !core_affinity::set_for_current(core)
    {
        tracing::debug!("could not pin the SQLite writer to a core");
    }
}

/// Puts the calling thread, and the threads it starts (SQLite's connection thread), under
/// `SCHED_BATCH` at the usual niceness. A batch thread that is woken does not preempt the
/// one running: SQLite's thread sends each statement's result as it goes, and a writer
/// that took the core at every result would cost two context switches per result
/// instead of two per query. Where the policy cannot be set, the threads stay as they are.
fn run_as_batch() {
    use thread_priority::{
        NormalThreadSchedulePolicy, ThreadPriority, ThreadPriorityValue, ThreadSchedulePolicy,
    };
    let policy = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch);
    let usual = (0..=ThreadPriorityValue::MAX.into())
        .filter_map(|p: u8| ThreadPriorityValue::try_from(p).ok())
        .map(ThreadPriority::Crossplatform)
        .find(|p| matches!(p.to_posix(policy), Ok(0)));
    let set = usual.map(|priority| {
        thread_priority::set_thread_priority_and_policy(
            thread_priority::thread_native_id(),
            priority,
            policy,
        )
    });
    if !matches!(set, Some(Ok(()))) {
        tracing::debug!("could not run the SQLite writer as a batch thread");
    }
}

/// The writer's memory of its batches: which one runs now, and which failed to commit
/// (so that transactions building on an early answer from them do not run).
#[derive(Default)]
struct Generations {
    current: u64,
    failed: std::collections::HashSet<u64>,
}

impl Generations {
    /// Whether a transaction building on `after` may run: that batch committed, or it is
    /// the one running now.
    fn holds(&self, after: Option<u64>) -> bool {
        after.is_none_or(|g| !self.failed.contains(&g))
    }
}

async fn run_writer(
    mut tx: StoreTx,
    mut jobs: mpsc::Receiver<Box<dyn Job>>,
    batch_sizes: std::sync::Arc<std::sync::OnceLock<Histogram>>,
    syncer: Syncer,
) {
    let mut generations = Generations::default();
    while let Some(first) = jobs.recv().await {
        generations.current += 1;
        let size = commit_batch(&mut tx, first, &mut jobs, &mut generations, &syncer).await;
        if let Some(histogram) = batch_sizes.get() {
            histogram.observe(size as f64);
        }
    }
}

/// Runs jobs in one transaction and commits it once: `first`, every job already queued
/// behind it (they have waited for a commit already), then whatever else is queued, for
/// as long as jobs keep coming (up to [`MAX_BATCH`] jobs and [`MAX_BATCH_TIME`]), since
/// early-answered jobs can send their next transaction while the batch is open.
/// Answers how many jobs ran.
///
/// An isolated job runs in a savepoint of its own, so its failure undoes its writes
/// only; an unisolated one (statements that fail only when the database does) skips the
/// savepoint's two statements, and its failure rolls back the whole batch. A job alone
/// in its batch needs no savepoint: the transaction is its own.
async fn commit_batch(
    tx: &mut StoreTx,
    first: Box<dyn Job>,
    jobs: &mut mpsc::Receiver<Box<dyn Job>>,
    generations: &mut Generations,
    syncer: &Syncer,
) -> usize {
    let began = std::time::Instant::now();
    let waiting = jobs.len();
    tx.defer("BEGIN IMMEDIATE");
    let mut finished: Vec<Box<dyn Finish>> = Vec::new();
    let mut next = Some(first);
    let mut ran = 0;
    while let Some(job) = next.take() {
        ran += 1;
        // Only the batch's first job can be alone in it: nothing is queued behind it.
        let alone = ran == 1 && jobs.is_empty();
        if !generations.holds(job.after()) {
            job.abort(Error::Transaction(
                "an earlier write of this run was not committed".into(),
            ));
        } else {
            match run_job(tx, job, alone, generations.current).await {
                Ran::Kept(done) => finished.push(done),
                // The transaction ended with the job: there is nothing to commit.
                Ran::RolledBackAlone => return ran,
                Ran::BatchFailed(msg) => {
                    generations.failed.insert(generations.current);
                    for other in finished.drain(..) {
                        other.complete(Err(msg.clone()));
                    }
                    return ran;
                }
            }
        }
        if ran < MAX_BATCH && (ran <= waiting || began.elapsed() < MAX_BATCH_TIME) {
            next = jobs.try_recv().ok();
        }
    }
    match tx.execute("COMMIT", vec![]).await {
        Ok(_) => syncer.answer_when_synced(finished),
        Err(err) => {
            let _ = tx.execute("ROLLBACK", vec![]).await;
            generations.failed.insert(generations.current);
            for done in finished {
                done.complete(Err(err.to_string()));
            }
        }
    }
    ran
}

/// The WAL file SQLite keeps beside the database at `db`.
fn wal_path(db: &Path) -> std::path::PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    name.into()
}

/// Syncs the WAL on a thread of its own and answers the transactions each sync made
/// durable. Committed batches queue up while a sync runs, and the next sync answers them
/// all: a sync covers every frame written before it started, and SQLite reads a WAL back
/// only up to its first frame that is missing or torn, so what a crash keeps is always
/// the transactions of a prefix of the commits.
struct Syncer {
    committed: std::sync::mpsc::Sender<Vec<Box<dyn Finish>>>,
}

impl Syncer {
    fn start(wal: std::path::PathBuf) -> Result<Syncer> {
        let (committed, waiting) = std::sync::mpsc::channel::<Vec<Box<dyn Finish>>>();
        std::thread::Builder::new()
            .name("sqlite-sync".into())
            .spawn(move || {
                let mut file: Option<std::fs::File> = None;
                // Ends when the writer is gone and every commit it sent is answered.
                while let Ok(first) = waiting.recv() {
                    let mut batches = vec![first];
                    batches.extend(waiting.try_iter());
                    let synced = sync(&wal, &mut file)
                        .map_err(|e| format!("committed, but syncing the SQLite WAL failed: {e}"));
                    for done in batches.into_iter().flatten() {
                        done.complete(synced.clone());
                    }
                }
            })
            .map_err(|e| Error::Transaction(format!("starting the SQLite WAL sync: {e}")))?;
        Ok(Syncer { committed })
    }

    fn answer_when_synced(&self, committed: Vec<Box<dyn Finish>>) {
        // The thread ends only once this sender is dropped.
        let _ = self.committed.send(committed);
    }
}

/// `fdatasync` of the WAL, opening it the first time (SQLite keeps the same file while
/// any connection is open, truncating it at most).
fn sync(wal: &Path, file: &mut Option<std::fs::File>) -> std::io::Result<()> {
    let file = match file {
        Some(file) => file,
        None => file.insert(std::fs::OpenOptions::new().write(true).open(wal)?),
    };
    file.sync_data()
}

enum Ran {
    /// The job's writes (or, when it failed, their rollback) are part of the batch.
    Kept(Box<dyn Finish>),
    /// The job was alone, failed, and the transaction was rolled back with it.
    RolledBackAlone,
    /// The batch is in an unknown state and was rolled back: nothing of it is kept.
    BatchFailed(String),
}

async fn run_job(tx: &mut StoreTx, job: Box<dyn Job>, alone: bool, generation: u64) -> Ran {
    let isolated = job.isolated();
    let savepoint = isolated && !alone;
    if savepoint {
        tx.defer("SAVEPOINT job");
    }
    let mut done = job.run(tx).await;
    let kept = match (done.succeeded(), savepoint) {
        (true, false) => Ok(()),
        (true, true) => {
            tx.defer("RELEASE job");
            Ok(())
        }
        (false, true) => tx
            .execute("ROLLBACK TO job; RELEASE job", vec![])
            .await
            .map(drop),
        (false, false) if isolated => {
            // Alone in the batch: rolling the transaction back undoes just this job.
            let _ = tx.execute("ROLLBACK", vec![]).await;
            done.complete(Ok(()));
            return Ran::RolledBackAlone;
        }
        (false, false) => Err(Error::Transaction(
            "a write sharing this commit failed; nothing of it was kept".into(),
        )),
    };
    match kept {
        Ok(()) => {
            done.ran(generation);
            Ran::Kept(done)
        }
        Err(err) => {
            let msg = err.to_string();
            let _ = tx.execute("ROLLBACK", vec![]).await;
            done.complete(Err(msg.clone()));
            Ran::BatchFailed(msg)
        }
    }
}
