//! Many transactions at once, as the engine makes them: on SQLite they share commits (one
//! writer, savepoints per transaction), on PostgreSQL each has its own. A transaction that
//! fails after writing leaves nothing; the ones committed beside it keep everything.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::sync::Notify;

use paysteps::args;
use paysteps::testing::engine::{EventInput, Function, Trigger};
use paysteps::testing::store::{Durability, Generation, Store, Write};

use crate::common::{Backend, Setup, TestApp, TestDb, eventually};

crate::on_both_backends!(
    failed_transactions_leave_nothing_and_the_ones_beside_them_keep_everything,
    a_keyed_event_is_stored_once_however_many_deliveries_race,
    an_event_keyed_for_ever_is_stored_once_however_many_deliveries_race,
);

const TRANSACTIONS: usize = 300;

/// Every third transaction fails after two writes; of the others, every fifth is
/// shared engine bookkeeping; the rest write and succeed.
async fn failed_transactions_leave_nothing_and_the_ones_beside_them_keep_everything(
    backend: Backend,
) {
    let db = TestDb::create(backend).await;
    let store = Arc::new(db.store().await);
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..TRANSACTIONS {
        let store = store.clone();
        tasks.spawn(async move { (n, write(&store, n).await) });
    }
    while let Some(joined) = tasks.join_next().await {
        let (n, outcome) = joined.expect("task");
        match outcome {
            Ok(Ok(())) => assert!(n % 3 != 0, "transaction {n} should have failed"),
            Ok(Err(message)) => assert_eq!(n % 3, 0, "transaction {n} failed: {message}"),
            Err(err) => panic!("transaction {n} was not committed: {err}"),
        }
    }
    let kept: Vec<(String, String)> = store
        .fetch_all(
            "SELECT key, value FROM settings WHERE key LIKE 'gc-%' ORDER BY key",
            vec![],
        )
        .await
        .expect("read");
    let expected: Vec<(String, String)> = (0..TRANSACTIONS)
        .filter(|n| n % 3 != 0)
        .flat_map(|n| {
            [
                (format!("gc-{n:04}-a"), format!("{n}")),
                (format!("gc-{n:04}-b"), format!("{n}")),
            ]
        })
        .collect();
    let mut expected = expected;
    expected.sort();
    assert_eq!(kept.len(), expected.len(), "rows kept");
    assert_eq!(kept, expected);
    store.close().await;
}

async fn write(store: &Store, n: usize) -> paysteps::testing::store::Result<Result<(), String>> {
    let rows = [format!("gc-{n:04}-a"), format!("gc-{n:04}-b")];
    if !n.is_multiple_of(3) && n % 5 == 1 {
        return store
            .write(Write::shared(), move |tx| {
                Box::pin(async move {
                    for key in &rows {
                        tx.set_setting(key, &n.to_string()).await?;
                    }
                    Ok(Ok(()))
                })
            })
            .await;
    }
    let written = store
        .write(Write::isolated().failing_with::<Failed>(), move |tx| {
            Box::pin(async move {
                for key in &rows {
                    tx.set_setting(key, &n.to_string())
                        .await
                        .map_err(|e| Failed::GaveUp(e.to_string()))?;
                }
                if n.is_multiple_of(3) {
                    return Err(Failed::GaveUp(format!(
                        "transaction {n} gives up after writing"
                    )));
                }
                Ok(())
            })
        })
        .await;
    Failed::split(written)
}

/// Why an isolated write failed: its work gave up (its writes alone are undone), or the
/// store failed (nothing of it is kept).
#[derive(Debug)]
enum Failed {
    GaveUp(String),
    Store(paysteps::testing::store::Error),
}

impl From<paysteps::testing::store::Error> for Failed {
    fn from(err: paysteps::testing::store::Error) -> Self {
        Failed::Store(err)
    }
}

impl Failed {
    /// The store's failure outside, the work's own inside.
    fn split<T>(written: Result<T, Failed>) -> paysteps::testing::store::Result<Result<T, String>> {
        match written {
            Ok(value) => Ok(Ok(value)),
            Err(Failed::GaveUp(message)) => Ok(Err(message)),
            Err(Failed::Store(err)) => Err(err),
        }
    }
}

/// An event API's key, which holds for a window (in `event_keys`).
async fn a_keyed_event_is_stored_once_however_many_deliveries_race(backend: Backend) {
    deliveries_race(backend, Some(24 * 3600 * 1000)).await;
}

/// A Stripe event's key, which holds for ever (a column of `events`).
async fn an_event_keyed_for_ever_is_stored_once_however_many_deliveries_race(backend: Backend) {
    deliveries_race(backend, None).await;
}

/// Stripe retries a delivery while the first is still being stored: 20 copies of each of
/// 30 events at once store each event once, with one run, and count the rest duplicates.
async fn deliveries_race(backend: Backend, window: Option<i64>) {
    use crate::common::stored::{store_event, stripe_event};
    use paysteps::testing::store::IngestOutcome;

    let db = TestDb::create(backend).await;
    let store = Arc::new(db.store().await);
    let mut tasks = tokio::task::JoinSet::new();
    for event in 0..30 {
        for copy in 0..20 {
            let store = store.clone();
            tasks.spawn(async move {
                let (mut new, run) = stripe_event(
                    &format!("ev_race_{event}_{copy}"),
                    &format!("evt_race_{event}"),
                    &format!("run_race_{event}_{copy}"),
                    "race",
                );
                new.dedupe_for_ms = window;
                store_event(&store, new, run).await.expect("store")
            });
        }
    }
    let mut accepted = 0;
    let mut duplicates = 0;
    while let Some(outcome) = tasks.join_next().await {
        match outcome.expect("task") {
            IngestOutcome::Accepted { runs, .. } => {
                assert_eq!(runs.len(), 1);
                accepted += 1;
            }
            IngestOutcome::Duplicate { .. } => duplicates += 1,
        }
    }
    assert_eq!((accepted, duplicates), (30, 570));
    let count = |sql: &'static str| {
        let store = store.clone();
        async move { store.count(sql, vec![]).await.expect("count") }
    };
    assert_eq!(
        count("SELECT COUNT(*) FROM events WHERE name = 'stripe/test.stored'").await,
        30
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM runs WHERE function_id = 'race'").await,
        30
    );
    assert_eq!(
        count(
            "SELECT CAST(SUM(duplicates) AS BIGINT) FROM events WHERE name = 'stripe/test.stored'"
        )
        .await,
        570
    );
    let orphans = store
        .count(
            "SELECT COUNT(*) FROM runs r WHERE r.function_id = $1 \
             AND NOT EXISTS (SELECT 1 FROM events e WHERE e.id = r.event_id)",
            args!["race"],
        )
        .await
        .expect("count");
    assert_eq!(orphans, 0);
    store.close().await;
}

type Early = (Result<(), String>, Option<Durability>);

/// An early answer (`Write::answer_early`) comes before the commit; when that
/// commit then fails, the answered transaction is not kept, its durability says so, and
/// a transaction building on it does not run. The writer is held by a transaction until
/// the early one and a failing one have queued up behind it, so they share the next commit.
#[tokio::test]
async fn a_write_building_on_an_early_answer_whose_commit_failed_does_not_run() {
    let db = TestDb::create(Backend::Sqlite).await;
    let store = Arc::new(db.store().await);
    let (slow, release) = hold_writer(&store).await;
    let early = tokio::spawn(set_early(store.clone(), "early", None));
    queued_behind(&store, 1).await;
    let failing = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .write::<_, (), _, _>(Write::shared(), |tx| {
                    Box::pin(async move {
                        tx.set_setting("failing", "1").await?;
                        Err(paysteps::testing::store::Error::Transaction(
                            "bookkeeping failed".into(),
                        ))
                    })
                })
                .await
        }
    });
    queued_behind(&store, 2).await;
    release.notify_one();
    let failed = failing.await.expect("task");
    assert!(failed.is_err(), "the failing write must fail");
    slow.await.expect("task").expect("the slow write commits");

    let (ran, durability) = early.await.expect("task").expect("the early write ran");
    assert_eq!(ran, Ok(()), "the early write's own work succeeded");
    let durability = durability.expect("SQLite answers early");
    let generation = durability.generation();
    assert!(
        durability.wait().await.is_err(),
        "its commit failed with the batch"
    );
    let after = set_early(store.clone(), "after", Some(generation)).await;
    assert!(after.is_err(), "a write building on it must not run");
    let fresh = set_early(store.clone(), "fresh", None).await;
    let (_, durability) = fresh.expect("an unrelated write runs");
    durability
        .expect("early")
        .wait()
        .await
        .expect("and commits");

    let kept: Vec<(String,)> = store
        .fetch_all(
            "SELECT key FROM settings WHERE key IN ('slow', 'early', 'failing', 'after', 'fresh') ORDER BY key",
            vec![],
        )
        .await
        .expect("read");
    assert_eq!(kept, vec![("fresh".to_owned(),), ("slow".to_owned(),)]);
    store.close().await;
}

/// Runs handed over at intake start as soon as their event's statement ran, before that
/// commit is durable. When the commit then fails, the caller is told so, and the runs
/// leave nothing: a `compute` step ran, but its checkpoint is refused, and a `run` step,
/// whose work is seen outside, never starts, even as a run's first step. Sent again,
/// the event runs once.
#[tokio::test]
async fn runs_started_before_their_event_was_durable_leave_nothing_when_that_commit_fails() {
    let (computed, effects) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let c = computed.clone();
    let parse = Function::new("parse", Trigger::event("test/probe"), move |ctx| {
        let c = c.clone();
        async move {
            let n: u32 = ctx
                .step
                .compute(
                    "parse",
                    || async move { Ok(c.fetch_add(1, Ordering::SeqCst)) },
                )
                .await?;
            Ok(json!({ "parsed": n }))
        }
    });
    let e = effects.clone();
    let effect = Function::new("effect", Trigger::event("test/probe"), move |ctx| {
        let e = e.clone();
        async move {
            ctx.step
                .run("effect", || async move {
                    e.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                })
                .await?;
            Ok(json!({}))
        }
    });
    let app = idle_app(vec![parse, effect]).await;
    // Queued behind the doom, so the event shares the commit that fails.
    let doomed = DoomedCommit::prepare(Arc::new(app.store().clone())).await;
    let engine = app.engine.clone();
    let ingest = tokio::spawn(async move {
        engine
            .ingest(EventInput::new("test/probe", &json!({})))
            .await
    });
    queued_behind(app.store(), 2).await;
    doomed.release().await;
    let ingested = ingest.await.expect("task");
    assert!(ingested.is_err(), "the event's commit failed: {ingested:?}");

    assert!(
        eventually(Duration::from_secs(5), || async {
            computed.load(Ordering::SeqCst) == 1
        })
        .await,
        "the runs were handed over before the commit was known to fail"
    );
    crate::common::until_idle(&app.engine).await;
    assert_eq!(effects.load(Ordering::SeqCst), 0, "no effect outside");
    for table in ["events", "runs", "steps", "run_history"] {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        assert_eq!(app.count(&sql).await, 0, "{table} keeps nothing");
    }

    let runs = crate::common::send(&app.engine, "test/probe", json!({})).await;
    assert_eq!(runs.len(), 2);
    assert!(
        eventually(Duration::from_secs(5), || async {
            let mut done = true;
            for run in &runs {
                done &= app.run(run).await["status"] == "completed";
            }
            done
        })
        .await,
        "sent again, both runs complete"
    );
    assert_eq!(
        (
            computed.load(Ordering::SeqCst),
            effects.load(Ordering::SeqCst)
        ),
        (2, 1)
    );
    app.engine.shutdown().await;
}

/// A run's ending is written as soon as its handler returns, building on its last
/// checkpoint's commit. When that commit fails, the run is not recorded completed: it is
/// queued to be retried, and then completes once.
#[tokio::test]
async fn a_run_whose_last_checkpoint_was_lost_is_retried_not_completed() {
    let (reached, go) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let executions = Arc::new(AtomicU32::new(0));
    let (r, g, n) = (reached.clone(), go.clone(), executions.clone());
    let function = Function::new("last", Trigger::event("test/last"), move |ctx| {
        let (r, g, n) = (r.clone(), g.clone(), n.clone());
        async move {
            let attempt: u32 = ctx
                .step
                .compute("last", || async move {
                    let attempt = n.fetch_add(1, Ordering::SeqCst);
                    if attempt == 0 {
                        r.notify_one();
                        g.notified().await;
                    }
                    Ok(attempt)
                })
                .await?;
            Ok(json!({ "attempt": attempt }))
        }
    });
    let app = idle_app(vec![function]).await;
    let runs = crate::common::send(&app.engine, "test/last", json!({})).await;
    reached.notified().await;
    let doomed = DoomedCommit::prepare(Arc::new(app.store().clone())).await;
    go.notify_one();
    // The step's checkpoint, queued behind the doom.
    queued_behind(app.store(), 2).await;
    doomed.release().await;

    assert!(
        eventually(Duration::from_secs(5), || async {
            app.run(&runs[0]).await["status"] == "queued"
        })
        .await,
        "the run is queued for a retry: {}",
        app.run(&runs[0]).await
    );
    let steps = app
        .count("SELECT COUNT(*) FROM steps WHERE step_key = 'last:0'")
        .await;
    assert_eq!(steps, 0, "the lost checkpoint is not kept");

    app.clock.advance(Duration::from_secs(2));
    app.engine.run_until_idle().await.expect("retry");
    let run = app.run(&runs[0]).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["output"]["attempt"], 1, "{run}");
    assert_eq!(executions.load(Ordering::SeqCst), 2);
    app.engine.shutdown().await;
}

/// A SQLite app with `functions`, started, whose idle workers wait rather than poll: a
/// claim of theirs would otherwise wait behind a held writer with every free slot, and
/// no run could be handed over at intake.
async fn idle_app(functions: Vec<Function>) -> TestApp {
    let app = TestApp::start_with(Setup {
        poll_interval: Duration::from_secs(30),
        ..Setup::functions(Backend::Sqlite, 4, functions)
    })
    .await;
    app.engine.start();
    crate::common::until_idle(&app.engine).await;
    app
}

/// Waits until `n` writes are queued behind the commit SQLite's writer is making.
async fn queued_behind(store: &Store, n: usize) {
    assert!(
        eventually(Duration::from_secs(30), || async {
            store.queued_writes() >= n
        })
        .await,
        "{n} writes queued behind the held commit; {} are",
        store.queued_writes()
    );
}

/// The writer held by a transaction, with a write queued behind it that succeeds but
/// makes its commit fail: a step of a run that does not exist, with the foreign key
/// checked only at the commit. Whatever queues next shares that commit and is lost.
struct DoomedCommit {
    slow: tokio::task::JoinHandle<paysteps::testing::store::Result<()>>,
    dooming: tokio::task::JoinHandle<paysteps::testing::store::Result<u64>>,
    release: Arc<Notify>,
}

impl DoomedCommit {
    async fn prepare(store: Arc<Store>) -> DoomedCommit {
        let (slow, release) = hold_writer(&store).await;
        let queue = store.clone();
        let dooming = tokio::spawn(async move {
            store
                .write(Write::shared(), |tx| {
                    Box::pin(async move {
                        tx.execute("PRAGMA defer_foreign_keys = ON", vec![]).await?;
                        tx.execute(
                            "INSERT INTO steps (run_id, step_key, name, position, kind, \
                             status, started_at) \
                             VALUES ('run_missing', 'x:0', 'x', 0, 'run', 'completed', 0)",
                            vec![],
                        )
                        .await
                    })
                })
                .await
        });
        queued_behind(&queue, 1).await;
        DoomedCommit {
            slow,
            dooming,
            release,
        }
    }

    /// Lets the writer go on: the doomed commit fails.
    async fn release(self) {
        self.release.notify_one();
        self.slow
            .await
            .expect("task")
            .expect("the slow write commits");
        assert!(self.dooming.await.expect("task").is_err());
    }
}

/// A chain of early-answered writes, each building on the one before, is kept whole once
/// its durabilities resolve, and no write lands in a commit before the one it builds on.
#[tokio::test]
async fn early_answered_writes_are_all_kept_once_durable() {
    let db = TestDb::create(Backend::Sqlite).await;
    let store = Arc::new(db.store().await);
    let mut after = None;
    let mut pending = Vec::new();
    for n in 0..50 {
        let (ran, durability) = set_early(store.clone(), &format!("chain-{n:02}"), after)
            .await
            .expect("ran");
        ran.expect("work");
        let durability = durability.expect("SQLite answers early");
        after = Some(durability.generation());
        pending.push(durability);
    }
    let generations: Vec<Generation> = pending.iter().map(|d| d.generation()).collect();
    assert!(
        generations.windows(2).all(|pair| pair[0] <= pair[1]),
        "commits follow the chain: {generations:?}"
    );
    for durability in pending {
        durability.wait().await.expect("durable");
    }
    store.close().await;
    let store = db.store().await;
    let kept: Vec<(String,)> = store
        .fetch_all(
            "SELECT key FROM settings WHERE key LIKE 'chain-%' ORDER BY key",
            vec![],
        )
        .await
        .expect("read");
    assert_eq!(kept.len(), 50, "every write kept");
    store.close().await;
}

/// Sets `slow` in a transaction that holds the writer until the returned `Notify` is
/// told; answers once the writer is held.
async fn hold_writer(
    store: &Arc<Store>,
) -> (
    tokio::task::JoinHandle<paysteps::testing::store::Result<()>>,
    Arc<Notify>,
) {
    let (started, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let slow = tokio::spawn(set_held(
        store.clone(),
        "slow",
        started.clone(),
        release.clone(),
    ));
    started.notified().await;
    (slow, release)
}

/// Sets `key` in a transaction that holds the writer from `started` until `release`.
async fn set_held(
    store: Arc<Store>,
    key: &'static str,
    started: Arc<Notify>,
    release: Arc<Notify>,
) -> paysteps::testing::store::Result<()> {
    store
        .write(Write::isolated(), move |tx| {
            Box::pin(async move {
                started.notify_one();
                release.notified().await;
                tx.set_setting(key, "1").await
            })
        })
        .await
}

async fn set_early(
    store: Arc<Store>,
    key: &str,
    after: Option<Generation>,
) -> paysteps::testing::store::Result<Early> {
    let key = key.to_owned();
    let written = store
        .write(
            Write::isolated()
                .failing_with::<Failed>()
                .answer_early()
                .after(after),
            move |tx| {
                Box::pin(async move {
                    tx.set_setting(&key, "1")
                        .await
                        .map_err(|e| Failed::GaveUp(e.to_string()))
                })
            },
        )
        .await;
    match written {
        Ok((value, durability)) => Ok((Ok(value), durability)),
        Err(failed) => Failed::split::<()>(Err(failed)).map(|ran| (ran, None)),
    }
}
