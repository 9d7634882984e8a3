//! Crashes and shutdowns lose nothing: a run resumes after its last completed step.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use paysteps::testing::engine::{Clock, Engine, Function, Trigger, system_now_ms};
use paysteps::testing::state::StepStatus;
use paysteps::{RunStatus, args};
use serde_json::json;

use crate::common::{Backend, TestDb, eventually, start_run, test_config};

crate::on_both_backends!(
    a_run_cut_off_by_a_crash_resumes_on_a_new_engine_and_effects_happen_once,
    a_graceful_shutdown_finishes_the_step_in_flight_and_releases_the_run,
    a_run_stored_leased_to_a_free_worker_starts_at_once_and_waits_its_turn_otherwise,
);

/// Side effects counted across both engines of a test.
#[derive(Clone, Default)]
struct Effects {
    first: Arc<AtomicU32>,
    second_started: Arc<AtomicU32>,
    /// While set, the second step never finishes (the process "hangs" there).
    block: Arc<AtomicBool>,
}

fn function(effects: Effects) -> Function {
    Function::new("durable", Trigger::event("test/durable"), move |ctx| {
        let effects = effects.clone();
        async move {
            let first = effects.first.clone();
            ctx.step
                .run("first", || async move {
                    Ok(first.fetch_add(1, Ordering::SeqCst))
                })
                .await?;
            // A `run` step starts only once every earlier checkpoint is durable, so
            // "first" is on disk before the hanging transaction below begins; without it
            // that checkpoint may share the hanging transaction's commit, and a crash
            // there loses both (so "first" would rightly run again).
            ctx.step
                .run("first-is-durable", || async { Ok(()) })
                .await?;
            let (started, block) = (effects.second_started.clone(), effects.block.clone());
            let payment = format!("pi_{}", ctx.run_id);
            ctx.step
                .run_tx("second", move |tx| {
                    Box::pin(async move {
                        started.fetch_add(1, Ordering::SeqCst);
                        while block.load(Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        tx.execute(
                            "INSERT INTO payments (id, user_id, amount, currency, status, event_created, updated_at) \
                             VALUES ($1, 'user_1', 100, 'usd', 'succeeded', 0, 0)",
                            args![payment],
                        )
                        .await?;
                        Ok(())
                    })
                })
                .await?;
            Ok(json!("done"))
        }
    })
}

async fn engine_on(db: &TestDb, effects: Effects, clock: Clock) -> Engine {
    Engine::builder(db.store().await)
        .config(test_config(clock))
        .register(function(effects))
        .build()
        .expect("engine")
}

async fn a_run_cut_off_by_a_crash_resumes_on_a_new_engine_and_effects_happen_once(
    backend: Backend,
) {
    let db = TestDb::create(backend).await;
    let effects = Effects::default();
    effects.block.store(true, Ordering::SeqCst);

    let crashed = engine_on(&db, effects.clone(), Clock::System).await;
    crashed.start();
    let run_id = start_run(&crashed, "test/durable").await;
    let in_flight = eventually(Duration::from_secs(10), || async {
        effects.second_started.load(Ordering::SeqCst) == 1
    })
    .await;
    assert!(in_flight, "the second step never started");
    crashed.abort();
    crashed.store().close().await;
    effects.block.store(false, Ordering::SeqCst);

    // A new process on the same file, once the dead worker's lease has expired.
    let later = Clock::manual(system_now_ms() + 31_000);
    let recovered = engine_on(&db, effects.clone(), later).await;
    let run = recovered
        .store()
        .run(&run_id)
        .await
        .expect("read")
        .expect("run");
    assert_eq!(
        run.status,
        RunStatus::Running,
        "the crash left the run leased"
    );
    recovered.run_until_idle().await.expect("run");

    let run = recovered
        .store()
        .run(&run_id)
        .await
        .expect("read")
        .expect("run");
    assert_eq!(run.status, RunStatus::Completed, "{run:?}");
    assert_eq!(
        effects.first.load(Ordering::SeqCst),
        1,
        "a completed step ran again"
    );
    assert_eq!(effects.second_started.load(Ordering::SeqCst), 2);
    let payments = recovered
        .store()
        .count(
            "SELECT COUNT(*) FROM payments WHERE id = $1",
            args![format!("pi_{run_id}")],
        )
        .await
        .expect("count");
    assert_eq!(payments, 1, "the business effect must happen exactly once");
}

async fn a_graceful_shutdown_finishes_the_step_in_flight_and_releases_the_run(backend: Backend) {
    let db = TestDb::create(backend).await;
    let effects = Effects::default();
    effects.block.store(true, Ordering::SeqCst);

    let first = engine_on(&db, effects.clone(), Clock::System).await;
    first.start();
    let run_id = start_run(&first, "test/durable").await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            effects.second_started.load(Ordering::SeqCst) == 1
        })
        .await
    );
    // Its first poll signals the shutdown; it then waits for the step in flight.
    let mut shutdown = std::pin::pin!(first.shutdown());
    assert!(futures::poll!(shutdown.as_mut()).is_pending());
    effects.block.store(false, Ordering::SeqCst);
    shutdown.await;

    let run = first
        .store()
        .run(&run_id)
        .await
        .expect("read")
        .expect("run");
    // The step in flight finished and checkpointed; the run is either done or handed back.
    assert!(run.lease_owner.is_none(), "lease not released: {run:?}");
    let steps = first.store().steps(&run_id).await.expect("steps");
    assert!(
        steps
            .iter()
            .any(|s| s.name == "second" && s.status == StepStatus::Completed)
    );
    first.store().close().await;

    let second = engine_on(&db, effects.clone(), Clock::System).await;
    second.run_until_idle().await.expect("run");
    let run = second
        .store()
        .run(&run_id)
        .await
        .expect("read")
        .expect("run");
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(effects.second_started.load(Ordering::SeqCst), 1);
    assert_eq!(effects.first.load(Ordering::SeqCst), 1);
}

/// A running engine with a free worker stores a new event's run already leased to
/// itself and executes it without claiming it; with every worker busy the run is queued
/// and claimed once one is free.
async fn a_run_stored_leased_to_a_free_worker_starts_at_once_and_waits_its_turn_otherwise(
    backend: Backend,
) {
    let db = TestDb::create(backend).await;
    let (held, hold) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicBool::new(true)));
    let holding = Function::new("holding", Trigger::event("test/hold"), {
        let (held, hold) = (held.clone(), hold.clone());
        move |ctx| {
            let (held, hold) = (held.clone(), hold.clone());
            async move {
                ctx.step
                    .run("hold", || async move {
                        held.fetch_add(1, Ordering::SeqCst);
                        while hold.load(Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        Ok(())
                    })
                    .await?;
                Ok(json!("done"))
            }
        }
    });
    let engine = Engine::builder(db.store().await)
        .config(paysteps::testing::engine::EngineConfig {
            workers: 1,
            ..test_config(Clock::System)
        })
        .register(holding)
        .build()
        .expect("engine");
    engine.start();
    // The dispatch loop's first look, so that the engine takes runs over.
    crate::common::until_idle(&engine).await;

    let first = start_run(&engine, "test/hold").await;
    let stored = engine
        .store()
        .run(&first)
        .await
        .expect("read")
        .expect("run");
    assert_eq!(stored.status, RunStatus::Running, "{stored:?}");
    assert_eq!(stored.attempt, 1);
    assert!(stored.lease_owner.is_some() && stored.started_at.is_some());

    let holding = eventually(Duration::from_secs(10), || async {
        held.load(Ordering::SeqCst) == 1
    })
    .await;
    assert!(holding, "the first run never started its step");
    let second = start_run(&engine, "test/hold").await;
    let queued = engine
        .store()
        .run(&second)
        .await
        .expect("read")
        .expect("run");
    assert_eq!(
        queued.status,
        RunStatus::Queued,
        "no worker was free: {queued:?}"
    );
    assert!(queued.lease_owner.is_none() && queued.attempt == 0);

    hold.store(false, Ordering::SeqCst);
    let store = engine.store().clone();
    let both_done = eventually(Duration::from_secs(10), || async {
        let mut done = 0;
        for id in [&first, &second] {
            let run = store.run(id).await.expect("read").expect("run");
            done += usize::from(run.status == RunStatus::Completed && run.attempt == 1);
        }
        done == 2
    })
    .await;
    assert!(both_done, "both runs complete on their first attempt");
    assert_eq!(held.load(Ordering::SeqCst), 2);
    engine.shutdown().await;
}
