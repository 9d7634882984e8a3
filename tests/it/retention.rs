//! Retention: what ended longer ago than the retention is deleted, in batches; what has
//! not ended, the business tables and Stripe's event ids stay.

use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use paysteps::testing::engine::operations::ReplayMode;
use paysteps::testing::engine::{Engine, Function, Trigger};
use paysteps::testing::retention::{self, Retention};
use paysteps::testing::store::{Pruned, Write};
use paysteps::testing::stripe::fixtures::Overrides;
use paysteps::testing::webhooks::Destinations;
use serde_json::json;

use crate::common::{Backend, Setup, TestApp, fixture_event, send, start_run};

crate::on_both_backends!(
    what_ended_goes_and_what_runs_stays,
    a_pruned_stripe_event_is_still_a_duplicate,
    deliveries_that_ended_and_expired_sessions_go,
    a_business_event_that_stays_keeps_its_engine_event,
    pruning_goes_in_batches_of_the_given_size,
    under_a_steady_load_the_database_levels_off,
);

const DAY: Duration = Duration::from_secs(24 * 60 * 60);
const MONTH: Retention = Retention::Days(30);

/// `app/chore`: one step with an output, then done.
fn chore() -> Function {
    Function::new("chore", Trigger::event("app/chore"), |ctx| async move {
        ctx.step
            .run("work", || async { Ok("done".to_owned()) })
            .await
    })
}

/// `app/nap`: sleeps for a year.
fn napper() -> Function {
    Function::new("napper", Trigger::event("app/nap"), |ctx| async move {
        ctx.step.sleep("nap", 365 * DAY).await
    })
}

async fn with_functions(backend: Backend, functions: Vec<Function>) -> TestApp {
    TestApp::start_with(Setup {
        backend,
        register: Box::new(move |mut b| {
            for f in functions {
                b = b.register(f);
            }
            b
        }),
        ..Setup::default()
    })
    .await
}

const BUSINESS_TABLES: [&str; 6] = [
    "payments",
    "customers",
    "subscriptions",
    "invoices",
    "payment_failures",
    "daily_reports",
];

async fn business_rows(app: &TestApp) -> Vec<i64> {
    let mut rows = Vec::new();
    for table in BUSINESS_TABLES {
        rows.push(app.count(&format!("SELECT COUNT(*) FROM {table}")).await);
    }
    rows
}

async fn statuses(app: &TestApp) -> Vec<String> {
    let rows: Vec<(String,)> = app
        .store()
        .fetch_all("SELECT status FROM runs ORDER BY status", vec![])
        .await
        .expect("statuses");
    rows.into_iter().map(|(s,)| s).collect()
}

async fn what_ended_goes_and_what_runs_stays(backend: Backend) {
    let app = with_functions(backend, vec![chore(), napper()]).await;
    let store = app.store().clone();
    app.deliver_fixture("payment_intent.succeeded", Overrides::default())
        .await;
    let chore_run = start_run(&app.engine, "app/chore").await;
    start_run(&app.engine, "app/nap").await;
    app.engine.run_until_idle().await.expect("run");
    // A replay of the chore, running (claimed and never finished), and a chore queued.
    app.engine
        .replay(&chore_run, ReplayMode::FromStart)
        .await
        .expect("replay");
    let claimed = store
        .claim_runs("wrk_elsewhere", app.clock.now_ms(), 30_000, 1)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    start_run(&app.engine, "app/chore").await;
    assert_eq!(
        statuses(&app).await,
        ["completed", "completed", "queued", "running", "sleeping"]
    );
    let business = business_rows(&app).await;
    assert!(business[0] > 0, "the payment was recorded");

    app.clock.advance(31 * DAY);
    let now = app.clock.now_ms();
    let counted = retention::prunable(&store, MONTH, now)
        .await
        .expect("count");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM runs").await,
        5,
        "counting deletes nothing"
    );
    let pruned = retention::prune(&store, MONTH, now).await.expect("prune");
    assert_eq!(pruned, counted, "the dry run counted what went");
    // Only the Stripe run: the chore's original stays while its replay runs.
    assert_eq!(pruned.runs, 1, "{pruned:?}");
    assert!(pruned.steps >= 3 && pruned.history >= 3, "{pruned:?}");
    assert_eq!((pruned.payloads, pruned.events), (1, 0), "{pruned:?}");
    assert!(
        pruned.statistics > 0,
        "old statistics buckets go: {pruned:?}"
    );
    assert_eq!(
        statuses(&app).await,
        ["completed", "queued", "running", "sleeping"]
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM events WHERE pruned_at IS NULL")
            .await,
        3,
        "the events of the runs that stay keep their payload"
    );
    assert_eq!(business_rows(&app).await, business, "business rows stay");
    assert!(
        retention::prune(&store, MONTH, now)
            .await
            .expect("prune")
            .is_empty(),
        "a second prune finds nothing"
    );

    // Once everything has ended and aged, all of it goes but the Stripe event's id.
    app.settle().await;
    app.clock.advance(31 * DAY);
    let pruned = retention::prune(&store, MONTH, app.clock.now_ms())
        .await
        .expect("prune");
    assert_eq!((pruned.runs, pruned.events), (4, 3), "{pruned:?}");
    for table in [
        "runs",
        "steps",
        "run_history",
        "function_stats",
        "function_durations",
    ] {
        assert_eq!(
            app.count(&format!("SELECT COUNT(*) FROM {table}")).await,
            0,
            "{table}"
        );
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM events").await, 1);
    assert_eq!(business_rows(&app).await, business, "business rows stay");
}

async fn a_pruned_stripe_event_is_still_a_duplicate(backend: Backend) {
    let app = TestApp::start(backend).await;
    let event = fixture_event("payment_intent.succeeded", Overrides::default());
    let (status, first) = app.deliver(&event).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["duplicate"], false);
    app.settle().await;

    app.clock.advance(31 * DAY);
    let pruned = retention::prune(app.store(), MONTH, app.clock.now_ms())
        .await
        .expect("prune");
    assert_eq!((pruned.runs, pruned.payloads), (1, 1), "{pruned:?}");
    let (status, stored) = app
        .get(&format!("/api/v1/events/{}", event["id"].as_str().unwrap()))
        .await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(
        stored["data"],
        serde_json::Value::Null,
        "the payload is gone"
    );

    let (status, again) = app.deliver(&event).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["duplicate"], true, "{again}");
    assert_eq!(again["runs"], json!([]));
    app.settle().await;
    assert_eq!(app.count("SELECT COUNT(*) FROM runs").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM events").await, 1);
}

/// A receiver that answers 200 to everything.
async fn receiver() -> (String, tokio::task::JoinHandle<()>) {
    let app = Router::new().fallback(|| async { "ok" });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hooks", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, task)
}

async fn deliveries_that_ended_and_expired_sessions_go(backend: Backend) {
    let app = TestApp::start_with(Setup {
        backend,
        webhooks: Some(Destinations::AllowPrivate),
        ..Setup::default()
    })
    .await;
    let (url, receiving) = receiver().await;
    let (status, body) = app
        .post(
            "/api/v1/webhooks",
            &json!({ "url": url, "events": ["payment.succeeded"] }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    app.deliver_fixture("payment_intent.succeeded", Overrides::default())
        .await;
    app.settle().await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'succeeded'")
            .await,
        1
    );
    let now = app.clock.now_ms();
    let month_ms = 31 * DAY.as_millis() as i64;
    for (id, expires_at) in [("expired", now), ("signed-in", now + 2 * month_ms)] {
        app.store()
            .execute(
                "INSERT INTO dashboard_sessions (id_hash, token_tag, csrf, created_at, expires_at) \
                 VALUES ($1, 'tag', 'csrf', $2, $3)"
                    .into(),
                paysteps::args![id, now, expires_at],
            )
            .await
            .expect("session");
    }

    app.clock.advance(31 * DAY);
    let store = app.store();
    let counted = retention::prunable(store, MONTH, app.clock.now_ms())
        .await
        .expect("count");
    let pruned = retention::prune(store, MONTH, app.clock.now_ms())
        .await
        .expect("prune");
    assert_eq!(pruned, counted);
    assert_eq!(
        (pruned.deliveries, pruned.attempts, pruned.sessions),
        (1, 1, 1),
        "{pruned:?}"
    );
    assert!(pruned.messages >= 1, "{pruned:?}");
    // The Stripe run and the delivery run, and the delivery run's own event.
    assert_eq!((pruned.runs, pruned.events, pruned.payloads), (2, 1, 1));
    for table in [
        "webhook_deliveries",
        "webhook_attempts",
        "webhook_events",
        "runs",
    ] {
        assert_eq!(
            app.count(&format!("SELECT COUNT(*) FROM {table}")).await,
            0,
            "{table}"
        );
    }
    assert_eq!(
        app.count("SELECT COUNT(*) FROM webhook_endpoints").await,
        1,
        "the endpoint stays"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM dashboard_sessions").await,
        1,
        "the live sign-in stays"
    );
    receiving.abort();
}

async fn a_business_event_that_stays_keeps_its_engine_event(backend: Backend) {
    let app = TestApp::start_with(Setup {
        backend,
        webhooks: Some(Destinations::AllowPrivate),
        ..Setup::default()
    })
    .await;
    let (url, receiving) = receiver().await;
    let (status, body) = app
        .post(
            "/api/v1/webhooks",
            &json!({ "url": url, "events": ["payment.succeeded"] }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    app.deliver_fixture("payment_intent.succeeded", Overrides::default())
        .await;
    app.settle().await;
    // A delivery left pending after its run ended (its run cancelled by an operator, say):
    // the business event stays, and with it the engine event a resend would start on.
    app.store()
        .execute(
            "UPDATE webhook_deliveries SET status = 'pending', ended_at = NULL".into(),
            vec![],
        )
        .await
        .expect("pending");
    let held = "SELECT COUNT(*) FROM events e JOIN webhook_events w ON w.engine_event_id = e.id";
    assert_eq!(app.count(held).await, 1);

    app.clock.advance(31 * DAY);
    let store = app.store();
    let counted = retention::prunable(store, MONTH, app.clock.now_ms())
        .await
        .expect("count");
    let pruned = retention::prune(store, MONTH, app.clock.now_ms())
        .await
        .expect("prune");
    assert_eq!(pruned, counted);
    assert_eq!(
        (pruned.runs, pruned.payloads, pruned.events, pruned.messages),
        (2, 1, 0, 0),
        "both runs go, the Stripe event keeps its id, the held event stays: {pruned:?}"
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM runs").await, 0);
    assert_eq!(app.count(held).await, 1, "the held event stays");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM events WHERE pruned_at IS NULL")
            .await,
        1,
        "whole, with its payload"
    );
    receiving.abort();
}

async fn pruning_goes_in_batches_of_the_given_size(backend: Backend) {
    let app = TestApp::start_with(Setup::functions(backend, 1, vec![chore()])).await;
    for _ in 0..5 {
        start_run(&app.engine, "app/chore").await;
    }
    app.settle().await;
    app.clock.advance(2 * DAY);
    let (now, store) = (app.clock.now_ms(), app.store());
    let cutoff = Retention::Days(1).cutoff(now);
    let mut batches = Vec::new();
    loop {
        let batch = store
            .write(Write::isolated(), move |tx| {
                Box::pin(async move { tx.prune_batch(cutoff, now, 2).await })
            })
            .await
            .expect("batch");
        if batch.is_empty() {
            break;
        }
        batches.push((batch.runs, batch.events));
        assert!(batches.len() < 10, "pruning does not end: {batches:?}");
    }
    // Each event goes in the batch after its run, once it has none.
    assert_eq!(batches, [(2, 2), (2, 2), (1, 1)]);
    assert_eq!(app.count("SELECT COUNT(*) FROM events").await, 0);
}

/// Size of an SQLite database file once its WAL is checkpointed into it.
async fn sqlite_bytes(url: &str) -> u64 {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(url).await.expect("connect");
    let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
        .fetch_one(&mut conn)
        .await
        .expect("checkpoint");
    assert_eq!(busy, 0, "the checkpoint was blocked");
    let _ = conn.close().await;
    let path = url.strip_prefix("sqlite://").expect("an SQLite URL");
    std::fs::metadata(path).expect("database file").len()
}

/// `app/job`: two steps, each keeping a copy of the event's 2 KB payload.
fn job() -> Function {
    Function::new("job", Trigger::event("app/job"), |ctx| async move {
        let blob = ctx.event.data["blob"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let copy = blob.clone();
        let first: String = ctx.step.run("first", || async move { Ok(copy) }).await?;
        ctx.step
            .run("second", || async move { Ok(first.len() + blob.len()) })
            .await
    })
}

async fn one_day_of_load(app: &TestApp, day: usize, events: usize) {
    for n in 0..events {
        let blob: String = (0..2048)
            .map(|i| char::from(b'a' + ((i * 7 + n * 13 + day) % 26) as u8))
            .collect();
        send(&app.engine, "app/job", json!({ "blob": blob, "n": n })).await;
    }
    app.settle().await;
}

async fn under_a_steady_load_the_database_levels_off(backend: Backend) {
    const EVENTS_PER_DAY: usize = 40;
    const DAYS: usize = 12;
    let app = TestApp::start_with(Setup::functions(
        backend,
        1,
        vec![job(), retention::function(Retention::Days(2))],
    ))
    .await;
    let engine: &Engine = &app.engine;
    assert_eq!(
        engine.fire_cron().await.expect("cron"),
        0,
        "schedule starts"
    );
    let url = app.database_url();
    let mut sizes = Vec::new();
    for day in 0..DAYS {
        one_day_of_load(&app, day, EVENTS_PER_DAY).await;
        app.clock.advance(DAY);
        assert_eq!(
            engine.fire_cron().await.expect("cron"),
            1,
            "the daily prune fires"
        );
        app.settle().await;
        let runs = app.count("SELECT COUNT(*) FROM runs").await;
        // At most the days within the retention and today's, and the prunes' own runs.
        assert!(
            runs <= (4 * EVENTS_PER_DAY + DAYS) as i64,
            "day {day}: {runs} runs kept"
        );
        if backend == Backend::Sqlite {
            sizes.push(sqlite_bytes(&url).await);
        }
    }
    let events = app.count("SELECT COUNT(*) FROM events").await;
    assert!(
        events <= (4 * EVENTS_PER_DAY + DAYS) as i64,
        "{events} events kept"
    );
    let pruned: Vec<(String,)> = app
        .store()
        .fetch_all(
            "SELECT output FROM runs WHERE function_id = $1 AND status = 'completed'",
            paysteps::args![retention::FUNCTION_ID],
        )
        .await
        .expect("prune runs");
    let deleted: u64 = pruned
        .iter()
        .map(|(out,)| serde_json::from_str::<Pruned>(out).expect("counts").runs)
        .sum();
    assert!(deleted > 0, "the daily prunes deleted runs: {pruned:?}");
    if backend == Backend::Sqlite {
        // Once the retention window is full, freed pages are reused: the file stops growing.
        let (filled, last) = (sizes[4], sizes[DAYS - 1]);
        println!("SQLite bytes per day: {sizes:?}");
        assert!(
            last <= filled + filled / 5,
            "the file kept growing after the window filled: {sizes:?}"
        );
    }
}
