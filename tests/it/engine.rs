//! The engine through its public API: memoized steps, retries, sleeps, transactional steps.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use paysteps::testing::engine::operations::ReplayMode;
use paysteps::testing::engine::{
    Engine, EventInput, FUNCTION_FAILED, Function, NonRetriable, StepError, Trigger,
};
use paysteps::testing::store::{IngestOutcome, Store};
use paysteps::{RunId, args};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::common::{Backend, Setup, TestApp, eventually, start_run, test_config, until_idle};

crate::on_both_backends!(
    a_step_failing_twice_then_succeeding_completes_and_earlier_steps_run_once,
    retries_back_off_exponentially,
    a_non_retriable_error_fails_at_once_and_the_failure_handler_runs_once,
    functions_listening_for_failures_run_once_per_failed_run_and_never_loop,
    sleep_parks_the_run_and_resumes_it_when_due,
    steps_with_one_name_in_a_loop_are_memoized_by_occurrence,
    a_transactional_step_commits_its_writes_with_its_checkpoint_only,
    a_run_sent_to_a_started_engine_is_handed_over_at_intake,
    idle_workers_wake_for_a_run_queued_while_every_worker_was_busy,
    idle_workers_wake_for_a_replayed_run,
    a_dedupe_window_holds_an_id_for_its_length_only,
);

type Counter = Arc<AtomicU32>;

fn counter() -> Counter {
    Arc::new(AtomicU32::new(0))
}

fn app_with(backend: Backend, function: Function) -> Setup {
    Setup {
        backend,
        with_payments: false,
        register: Box::new(move |b| b.register(function)),
        ..Setup::default()
    }
}

async fn a_step_failing_twice_then_succeeding_completes_and_earlier_steps_run_once(
    backend: Backend,
) {
    let (first, flaky) = (counter(), counter());
    let (f1, f2) = (first.clone(), flaky.clone());
    let function = Function::new("flaky", Trigger::event("test/flaky"), move |ctx| {
        let (f1, f2) = (f1.clone(), f2.clone());
        async move {
            let a: u32 = ctx
                .step
                .run("first", || async move {
                    Ok(f1.fetch_add(1, Ordering::SeqCst) + 10)
                })
                .await?;
            let b: u32 = ctx
                .step
                .run("flaky", || async move {
                    let n = f2.fetch_add(1, Ordering::SeqCst) + 1;
                    if n < 3 {
                        Err(StepError::retriable(format!("attempt {n} failed")))
                    } else {
                        Ok(n)
                    }
                })
                .await?;
            Ok(json!({ "a": a, "b": b }))
        }
    });
    let app = TestApp::start_with(app_with(backend, function)).await;
    let run_id = start_run(&app.engine, "test/flaky").await;

    app.engine.run_until_idle().await.expect("run");
    let run = app.run(&run_id).await;
    assert_eq!(
        run["status"], "queued",
        "a failed attempt requeues the run: {run}"
    );
    assert_eq!(run["steps"][1]["status"], "errored");
    assert_eq!(run["steps"][1]["error"], "attempt 1 failed");

    app.settle().await;
    let run = app.run(&run_id).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["output"], json!({"a": 10, "b": 3}));
    assert_eq!(
        first.load(Ordering::SeqCst),
        1,
        "a completed step ran again"
    );
    assert_eq!(flaky.load(Ordering::SeqCst), 3);
    assert_eq!(run["steps"][0]["attempts"], 1);
    assert_eq!(run["steps"][1]["attempts"], 3);
    assert_eq!(run["attempt"], 3, "three executions of the run");
}

async fn retries_back_off_exponentially(backend: Backend) {
    let function = Function::new("always", Trigger::event("test/always"), |ctx| async move {
        ctx.step
            .run("boom", || async {
                Err::<(), _>(StepError::retriable("boom"))
            })
            .await?;
        Ok(())
    })
    .retries(2);
    let app = TestApp::start_with(app_with(backend, function)).await;
    let run_id = start_run(&app.engine, "test/always").await;
    let mut delays = Vec::new();
    for _ in 0..2 {
        app.engine.run_until_idle().await.expect("run");
        let run = app.run(&run_id).await;
        let due = run["run_at"].as_i64().expect("run_at");
        delays.push(due - app.clock.now_ms());
        app.clock.advance(Duration::from_millis(
            due as u64 - app.clock.now_ms() as u64,
        ));
    }
    // base 1 s: first retry in [0.5, 1) s, second in [1, 2) s.
    assert!((500..1000).contains(&delays[0]), "{delays:?}");
    assert!((1000..2000).contains(&delays[1]), "{delays:?}");
    app.engine.run_until_idle().await.expect("run");
    let run = app.run(&run_id).await;
    assert_eq!(run["status"], "failed");
    assert_eq!(run["steps"][0]["attempts"], 3, "2 retries = 3 attempts");
}

async fn a_non_retriable_error_fails_at_once_and_the_failure_handler_runs_once(backend: Backend) {
    let handled = counter();
    let h = handled.clone();
    let function = Function::new("strict", Trigger::event("test/strict"), |ctx| async move {
        ctx.step
            .run("parse", || async { "x".parse::<u32>().non_retriable() })
            .await?;
        Ok(())
    })
    .on_failure(move |ctx| {
        let h = h.clone();
        async move {
            let failure = ctx.failure().expect("failure payload");
            ctx.step
                .run("alert", || async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    Ok(failure.error)
                })
                .await
        }
    });
    let app = TestApp::start_with(app_with(backend, function)).await;
    let run_id = start_run(&app.engine, "test/strict").await;
    app.settle().await;
    let run = app.run(&run_id).await;
    assert_eq!(run["status"], "failed");
    assert_eq!(run["steps"][0]["attempts"], 1);
    assert!(
        run["error"].as_str().is_some_and(|e| e.contains("parse")),
        "{run}"
    );
    assert_eq!(handled.load(Ordering::SeqCst), 1);
    let (_, handlers) = app.get("/api/v1/runs?function=strict.on_failure").await;
    assert_eq!(handlers["runs"].as_array().map(Vec::len), Some(1));
    assert_eq!(handlers["runs"][0]["status"], "completed");
    assert!(
        handlers["runs"][0]["output"]
            .as_str()
            .is_some_and(|e| e.contains("invalid digit"))
    );
}

async fn functions_listening_for_failures_run_once_per_failed_run_and_never_loop(backend: Backend) {
    let alerts = counter();
    let a = alerts.clone();
    let failing = Function::new(
        "brittle",
        Trigger::event("test/brittle"),
        |ctx| async move {
            ctx.step
                .run("boom", || async {
                    Err::<(), _>(StepError::non_retriable("boom"))
                })
                .await
        },
    );
    let listener = Function::new("alert", Trigger::event(FUNCTION_FAILED), move |ctx| {
        let a = a.clone();
        async move {
            let failure = ctx.failure().expect("failure payload");
            a.fetch_add(1, Ordering::SeqCst);
            ctx.step
                .run("page", move || async move {
                    Err::<(), _>(StepError::non_retriable(format!(
                        "pager down while reporting {}",
                        failure.run_id
                    )))
                })
                .await
        }
    });
    let app = TestApp::start_with(Setup {
        backend,
        with_payments: false,
        register: Box::new(move |b| b.register(failing).register(listener)),
        ..Setup::default()
    })
    .await;
    let first = start_run(&app.engine, "test/brittle").await;
    let second = start_run(&app.engine, "test/brittle").await;
    app.settle().await;
    for run_id in [&first, &second] {
        assert_eq!(app.run(run_id).await["status"], "failed");
    }
    let (_, alerts_runs) = app.get("/api/v1/runs?function=alert").await;
    let runs = alerts_runs["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2, "one alert per failed run: {alerts_runs}");
    assert!(runs.iter().all(|r| r["status"] == "failed"));
    assert_eq!(
        alerts.load(Ordering::SeqCst),
        2,
        "a failed alert raises no alert"
    );
}

async fn sleep_parks_the_run_and_resumes_it_when_due(backend: Backend) {
    let (before, after) = (counter(), counter());
    let (b, a) = (before.clone(), after.clone());
    let function = Function::new("sleepy", Trigger::event("test/sleepy"), move |ctx| {
        let (b, a) = (b.clone(), a.clone());
        async move {
            ctx.step
                .run(
                    "before",
                    || async move { Ok(b.fetch_add(1, Ordering::SeqCst)) },
                )
                .await?;
            ctx.step
                .sleep("wait-a-day", Duration::from_secs(86_400))
                .await?;
            ctx.step
                .run(
                    "after",
                    || async move { Ok(a.fetch_add(1, Ordering::SeqCst)) },
                )
                .await?;
            Ok(())
        }
    });
    let app = TestApp::start_with(app_with(backend, function)).await;
    let run_id = start_run(&app.engine, "test/sleepy").await;
    app.engine.run_until_idle().await.expect("run");
    let run = app.run(&run_id).await;
    assert_eq!(run["status"], "sleeping");
    assert_eq!(run["steps"][1]["kind"], "sleep");
    assert_eq!(after.load(Ordering::SeqCst), 0);

    app.clock.advance(Duration::from_secs(86_399));
    assert_eq!(
        app.engine.run_until_idle().await.expect("run"),
        0,
        "woke early"
    );

    app.clock.advance(Duration::from_secs(1));
    app.engine.run_until_idle().await.expect("run");
    let run = app.run(&run_id).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(before.load(Ordering::SeqCst), 1);
    assert_eq!(after.load(Ordering::SeqCst), 1);
    assert_eq!(run["steps"][1]["status"], "completed");
}

async fn steps_with_one_name_in_a_loop_are_memoized_by_occurrence(backend: Backend) {
    let calls = counter();
    let c = calls.clone();
    let function = Function::new("looping", Trigger::event("test/loop"), move |ctx| {
        let c = c.clone();
        async move {
            let mut total = 0;
            for i in 0..3u32 {
                let c = c.clone();
                total += ctx
                    .step
                    .run("item", || async move {
                        c.fetch_add(1, Ordering::SeqCst);
                        Ok(i * 10)
                    })
                    .await?;
            }
            ctx.step.sleep("pause", Duration::from_secs(1)).await?;
            Ok(total)
        }
    });
    let app = TestApp::start_with(app_with(backend, function)).await;
    let run_id = start_run(&app.engine, "test/loop").await;
    app.settle().await;
    let run = app.run(&run_id).await;
    assert_eq!(run["status"], "completed");
    assert_eq!(run["output"], 30);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "re-entry after the sleep re-ran an item"
    );
    let keys: Vec<_> = run["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["key"].clone())
        .collect();
    assert_eq!(
        keys,
        vec![
            json!("item:0"),
            json!("item:1"),
            json!("item:2"),
            json!("pause:0")
        ]
    );
}

async fn a_transactional_step_commits_its_writes_with_its_checkpoint_only(backend: Backend) {
    let attempts = counter();
    let a = attempts.clone();
    let function = Function::new("tx", Trigger::event("test/tx"), move |ctx| {
        let a = a.clone();
        async move {
            ctx.step
                .run_tx("write", move |tx| {
                    Box::pin(async move {
                        tx.execute(
                            "INSERT INTO customers (id, user_id, event_created, updated_at) VALUES ($1, $2, 0, 0)",
                            args!["cus_tx", "user_tx"],
                        )
                        .await?;
                        if a.fetch_add(1, Ordering::SeqCst) == 0 {
                            return Err(StepError::retriable("failed after writing"));
                        }
                        Ok(())
                    })
                })
                .await?;
            Ok(())
        }
    });
    let app = TestApp::start_with(app_with(backend, function)).await;
    let run_id = start_run(&app.engine, "test/tx").await;
    app.engine.run_until_idle().await.expect("run");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM customers").await,
        0,
        "the failed attempt's write survived"
    );
    app.settle().await;
    assert_eq!(app.run(&run_id).await["status"], "completed");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM customers WHERE id = 'cus_tx'")
            .await,
        1
    );
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
}

/// Idle workers look for due runs this rarely on their own; the tests below finish
/// long before only if something wakes them, or hands them the run.
const LONG_POLL: Duration = Duration::from_secs(60);
/// How long a woken worker may take: well within [`LONG_POLL`].
const SOON: Duration = Duration::from_secs(10);

/// A started app whose idle workers poll every [`LONG_POLL`], once they are idle.
async fn idle_app(backend: Backend, workers: usize, functions: Vec<Function>) -> TestApp {
    let app = TestApp::start_with(Setup {
        poll_interval: LONG_POLL,
        ..Setup::functions(backend, workers, functions)
    })
    .await;
    app.engine.start();
    // The dispatch loop has looked once and waits: runs may be handed over at intake,
    // and it looks again only when woken or after a whole poll interval.
    until_idle(&app.engine).await;
    app
}

fn quick(id: &str, event: &str) -> Function {
    Function::new(id, Trigger::event(event), |ctx| async move {
        ctx.step.run("only", || async { Ok(1) }).await
    })
}

async fn completes_soon(app: &TestApp, run_id: &RunId) -> bool {
    eventually(SOON, || async {
        app.run(run_id).await["status"] == "completed"
    })
    .await
}

async fn a_run_sent_to_a_started_engine_is_handed_over_at_intake(backend: Backend) {
    let app = idle_app(backend, 4, vec![quick("quick", "test/quick")]).await;
    let run_id = start_run(&app.engine, "test/quick").await;
    let done = completes_soon(&app, &run_id).await;
    let run = app.run(&run_id).await;
    app.engine.shutdown().await;
    assert!(done, "the handed-over run did not complete: {run}");
    // Stored already running under this engine's lease: no worker claimed it.
    assert_eq!(statuses(&run), ["running", "completed"], "{run}");
}

async fn idle_workers_wake_for_a_run_queued_while_every_worker_was_busy(backend: Backend) {
    let (entered, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let calls = counter();
    let (e, r, c) = (entered.clone(), release.clone(), calls.clone());
    let function = Function::new("busy", Trigger::event("test/busy"), move |ctx| {
        let (e, r, c) = (e.clone(), r.clone(), c.clone());
        async move {
            ctx.step
                .run("work", || async move {
                    if c.fetch_add(1, Ordering::SeqCst) == 0 {
                        e.notify_one();
                        r.notified().await;
                    }
                    Ok(())
                })
                .await
        }
    });
    let app = idle_app(backend, 1, vec![function]).await;
    let first = start_run(&app.engine, "test/busy").await;
    tokio::time::timeout(SOON, entered.notified())
        .await
        .expect("the first run holds the only worker");
    let second = start_run(&app.engine, "test/busy").await;
    let queued = app.run(&second).await;
    assert_eq!(queued["status"], "queued", "no worker was free: {queued}");

    release.notify_one();
    let done = completes_soon(&app, &first).await && completes_soon(&app, &second).await;
    let run = app.run(&second).await;
    app.engine.shutdown().await;
    assert!(done, "the queued run waited for a poll: {run}");
    assert_eq!(statuses(&run), ["queued", "running", "completed"], "{run}");
}

async fn idle_workers_wake_for_a_replayed_run(backend: Backend) {
    let app = idle_app(backend, 4, vec![quick("quick", "test/quick")]).await;
    let original = start_run(&app.engine, "test/quick").await;
    assert!(completes_soon(&app, &original).await);
    until_idle(&app.engine).await;

    let replay = app
        .engine
        .replay(&original, ReplayMode::FromStart)
        .await
        .expect("replay");
    let done = completes_soon(&app, &replay.id).await;
    let run = app.run(&replay.id).await;
    app.engine.shutdown().await;
    assert!(done, "the replay waited for a poll: {run}");
    assert_eq!(run["replay_of"], original.as_str(), "{run}");
}

/// A timer set while the workers are idle wakes them when it is due: a run that parks (a
/// sleep, a retry's backoff) earlier than the idle dispatch loop's next look shortens
/// its wait, instead of waiting for the next poll.
#[tokio::test]
async fn a_sleep_ends_on_time_while_the_workers_are_idle() {
    let backend = Backend::Sqlite;
    let function = Function::new("nap", Trigger::event("test/nap"), |ctx| async move {
        ctx.step.sleep("nap", Duration::from_secs(1)).await?;
        ctx.step.run("after", || async { Ok(1) }).await
    });
    let app = idle_app(backend, 4, vec![function]).await;
    let run_id = start_run(&app.engine, "test/nap").await;
    assert!(
        eventually(SOON, || async {
            app.run(&run_id).await["status"] == "sleeping"
        })
        .await
    );
    until_idle(&app.engine).await;
    app.clock.advance(Duration::from_secs(1));
    let done = completes_soon(&app, &run_id).await;
    let run = app.run(&run_id).await;
    app.engine.shutdown().await;
    assert!(done, "the run slept until a poll: {run}");
}

/// On PostgreSQL, runs another process queues wake this one's idle workers at once
/// (LISTEN/NOTIFY), however the event was stored: batched with others, in a statement
/// committed alone (an event with a dedupe window), or in a transaction (a function
/// with flow control).
#[tokio::test]
async fn runs_queued_by_another_process_wake_idle_workers() {
    if crate::common::db::postgres_url().is_none() {
        crate::common::db::report_postgres_skipped();
        return;
    }
    let functions = || {
        vec![
            quick("quick", "test/quick"),
            quick("keyed", "test/keyed").concurrency_per("data.customer", 2),
        ]
    };
    let app = idle_app(Backend::Postgres, 4, functions()).await;
    let store = Store::connect(&app.database_url())
        .await
        .expect("another process's store");
    let mut other = Engine::builder(store).config(test_config(app.clock.clone()));
    for function in functions() {
        other = other.register(function);
    }
    // Never started: it stores runs queued, and only `app`'s workers can execute them.
    let other = other.build().expect("engine");

    let batched = EventInput::new("test/quick", &json!({}));
    let mut alone = EventInput::new("test/quick", &json!({}));
    alone.dedupe_key = Some("wake-alone".into());
    alone.dedupe_window = Some(Duration::from_secs(3600));
    let in_transaction = EventInput::new("test/keyed", &json!({"customer": "cus_1"}));
    let mut not_woken = Vec::new();
    for (how, input) in [
        ("batched", batched),
        ("alone", alone),
        ("in a transaction", in_transaction),
    ] {
        let outcome = other.ingest(input).await.expect("ingest");
        let IngestOutcome::Accepted { runs, .. } = outcome else {
            panic!("{how}: {outcome:?}")
        };
        assert_eq!(runs.len(), 1, "{how}");
        if !completes_soon(&app, &runs[0]).await {
            not_woken.push(format!("{how}: {}", app.run(&runs[0]).await));
        }
        until_idle(&app.engine).await;
    }
    assert!(
        not_woken.is_empty(),
        "the idle workers were not woken by the other process: {not_woken:#?}"
    );
    app.engine.shutdown().await;
    other.store().close().await;
}

async fn a_dedupe_window_holds_an_id_for_its_length_only(backend: Backend) {
    let app = TestApp::start(backend).await;
    let keyed = || {
        let mut input =
            paysteps::testing::engine::EventInput::new("app/order.placed", &json!({"order": 1}));
        input.dedupe_key = Some("api:order-1".into());
        input.dedupe_window = Some(Duration::from_secs(24 * 3600));
        input
    };
    let first = app.engine.ingest(keyed()).await.expect("ingest");
    let paysteps::testing::store::IngestOutcome::Accepted { event_id, .. } = first else {
        panic!("{first:?}")
    };
    app.clock.advance(Duration::from_secs(24 * 3600 - 1));
    let again = app.engine.ingest(keyed()).await.expect("ingest");
    assert_eq!(
        again,
        paysteps::testing::store::IngestOutcome::Duplicate {
            event_id: event_id.clone()
        }
    );

    app.clock.advance(Duration::from_secs(1));
    let later = app.engine.ingest(keyed()).await.expect("ingest");
    assert!(
        matches!(&later, paysteps::testing::store::IngestOutcome::Accepted { event_id: id, .. } if *id != event_id),
        "{later:?}"
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM events").await, 2);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM events WHERE duplicates = 1")
            .await,
        1
    );
}

fn statuses(run: &Value) -> Vec<String> {
    run["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| h["status"].as_str().unwrap_or("").to_owned())
        .collect()
}
