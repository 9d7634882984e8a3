//! The writer: one thread with one connection that runs queued writes one after another
//! in a shared transaction and commits them together (group commit).

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use prometheus_client::metrics::histogram::Histogram;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, SqliteConnection};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::WriterConn;
use super::sync::{Syncer, wal_path};
use crate::store::{Durability, Error, Generation, Result, StoreTx, TxConn, TxFn};

/// At most this many transactions share one commit.
const MAX_BATCH: usize = 512;
/// A batch takes in more transactions for at most this long before it commits.
const MAX_BATCH_TIME: Duration = Duration::from_millis(2);

/// A queued transaction: runs inside the shared batch, then learns whether the batch committed.
pub(super) trait PendingWrite: Send {
    /// Whether the job needs a savepoint of its own (see [`commit_batch`]).
    fn isolated(&self) -> bool;
    /// The generation of an earlier early-answered transaction this one builds on.
    fn after(&self) -> Option<Generation>;
    fn run<'c>(self: Box<Self>, tx: &'c mut StoreTx) -> BoxFuture<'c, Box<dyn RanWrite>>;
    fn abort(self: Box<Self>, err: Error);
}

pub(super) trait RanWrite: Send {
    /// Whether the job's own work succeeded (its savepoint is kept).
    fn succeeded(&self) -> bool;
    /// The job's work is done and kept in the batch of `generation`: an early job is
    /// answered now.
    fn ran(&mut self, generation: Generation);
    fn complete(self: Box<Self>, commit: std::result::Result<(), String>);
}

/// A job to answer once it ran rather than once its batch committed: it runs only if
/// the batch of generation `after` committed (or is the one running).
pub(super) struct Early {
    pub(super) after: Option<Generation>,
}

pub(super) type Answer<T, E> = Result<(std::result::Result<T, E>, Option<Durability>)>;

pub(super) struct TxJob<T, E> {
    pub(super) work: TxFn<T, E>,
    pub(super) isolated: bool,
    pub(super) early: Option<Early>,
    pub(super) reply: oneshot::Sender<Answer<T, E>>,
}

struct TxDone<T, E> {
    outcome: Option<std::result::Result<std::result::Result<T, E>, Error>>,
    early: bool,
    /// Until the job is answered.
    reply: Option<oneshot::Sender<Answer<T, E>>>,
    /// For a job answered early: where its commit's outcome goes.
    commit: Option<oneshot::Sender<std::result::Result<(), String>>>,
}

impl<T: Send + 'static, E: Send + 'static> PendingWrite for TxJob<T, E> {
    fn isolated(&self) -> bool {
        self.isolated
    }

    fn after(&self) -> Option<Generation> {
        self.early.as_ref().and_then(|early| early.after)
    }

    fn run<'c>(self: Box<Self>, tx: &'c mut StoreTx) -> BoxFuture<'c, Box<dyn RanWrite>> {
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
            }) as Box<dyn RanWrite>
        })
    }

    fn abort(self: Box<Self>, err: Error) {
        let _ = self.reply.send(Err(err));
    }
}

impl<T: Send, E: Send> RanWrite for TxDone<T, E> {
    fn succeeded(&self) -> bool {
        matches!(self.outcome, Some(Ok(Ok(_))))
    }

    fn ran(&mut self, generation: Generation) {
        if !self.early {
            return;
        }
        let (Some(Ok(outcome)), Some(reply)) = (self.outcome.take(), self.reply.take()) else {
            return;
        };
        let (commit, durable) = oneshot::channel();
        self.commit = Some(commit);
        let durability = Durability::new(generation, durable.shared());
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
pub(super) struct Writer {
    stop: CancellationToken,
    done: oneshot::Receiver<()>,
}

impl Writer {
    pub(super) async fn start(
        options: SqliteConnectOptions,
        jobs: mpsc::Receiver<Box<dyn PendingWrite>>,
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
    pub(super) async fn stop(self) {
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
    fn holds(&self, after: Option<Generation>) -> bool {
        after.is_none_or(|g| !self.failed.contains(&g.0))
    }
}

async fn run_writer(
    mut tx: StoreTx,
    mut jobs: mpsc::Receiver<Box<dyn PendingWrite>>,
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
/// only; a shared one (statements that fail only when the database does) skips the
/// savepoint's two statements, and its failure rolls back the whole batch. A job alone
/// in its batch needs no savepoint: the transaction is its own.
async fn commit_batch(
    tx: &mut StoreTx,
    first: Box<dyn PendingWrite>,
    jobs: &mut mpsc::Receiver<Box<dyn PendingWrite>>,
    generations: &mut Generations,
    syncer: &Syncer,
) -> usize {
    let began = std::time::Instant::now();
    let waiting = jobs.len();
    tx.defer("BEGIN IMMEDIATE");
    let mut finished: Vec<Box<dyn RanWrite>> = Vec::new();
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
            match run_job(tx, job, alone, Generation(generations.current)).await {
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

enum Ran {
    /// The job's writes (or, when it failed, their rollback) are part of the batch.
    Kept(Box<dyn RanWrite>),
    /// The job was alone, failed, and the transaction was rolled back with it.
    RolledBackAlone,
    /// The batch is in an unknown state and was rolled back: nothing of it is kept.
    BatchFailed(String),
}

async fn run_job(
    tx: &mut StoreTx,
    job: Box<dyn PendingWrite>,
    alone: bool,
    generation: Generation,
) -> Ran {
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
