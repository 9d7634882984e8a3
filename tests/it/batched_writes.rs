//! PostgreSQL makes writes of one kind that arrive together (events, step checkpoints,
//! runs ending) in one statement and one commit. Each write is still answered for
//! itself: an event accepted with its runs or a duplicate, a checkpoint or an ending made
//! only while its run's lease is held; and a write the database refuses fails alone, not
//! the writes it was batched with.

use std::sync::Arc;

use axum::http::StatusCode;
use futures::future::join_all;
use paysteps::testing::state::{RunStatus, StepKind, StepStatus};
use paysteps::testing::store::{IngestOutcome, NewEvent, NewLease, NewRun, StepUpdate};
use paysteps::testing::stripe::fixtures::Overrides;

use crate::common::db::{postgres_url, report_postgres_skipped};
use crate::common::stored::{store_event, stripe_event};
use crate::common::{Backend, TestApp, TestDb, fixture_event};

const EVENTS: usize = 60;

fn postgres_available() -> bool {
    let available = postgres_url().is_some();
    if !available {
        report_postgres_skipped();
    }
    available
}

/// 60 payments, each delivered twice at once: every delivery is answered for itself,
/// and the runs they start were written by a handful of commits, not one each.
#[tokio::test]
async fn deliveries_arriving_together_share_a_commit_and_are_each_answered() {
    if !postgres_available() {
        return;
    }
    let app = TestApp::start(Backend::Postgres).await;
    let events: Vec<_> = (0..EVENTS)
        .map(|_| fixture_event("payment_intent.succeeded", Overrides::default()))
        .collect();
    let deliveries = events.iter().chain(&events).map(|event| app.deliver(event));
    let answers = join_all(deliveries).await;

    let mut accepted = 0;
    for (status, answer) in &answers {
        assert_eq!(*status, StatusCode::OK, "{answer}");
        if answer["duplicate"] == false {
            assert_eq!(answer["runs"].as_array().map(Vec::len), Some(1), "{answer}");
            accepted += 1;
        } else {
            assert_eq!(answer["runs"], serde_json::json!([]), "{answer}");
        }
    }
    assert_eq!(accepted, EVENTS, "each event accepted once");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM events").await,
        EVENTS as i64
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM runs").await, EVENTS as i64);
    assert_eq!(
        app.count("SELECT CAST(SUM(duplicates) AS BIGINT) FROM events")
            .await,
        EVENTS as i64
    );
    // Rows written by one transaction carry its id.
    let commits = app
        .count("SELECT COUNT(DISTINCT xmin::text) FROM runs")
        .await;
    assert!(commits <= 6, "{EVENTS} runs took {commits} commits");
    let metrics = app.metrics().await;
    let batched = metric(&metrics, "paysteps_db_commit_batch_size_sum");
    let batches = metric(&metrics, "paysteps_db_commit_batch_size_count");
    assert!(batched >= 2.0 * EVENTS as f64, "{metrics}");
    assert!(batches <= 12.0, "{batches} batches for {batched} events");

    app.settle().await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM runs WHERE status = 'completed'")
            .await,
        EVENTS as i64
    );
}

/// One event with a value PostgreSQL refuses (a NUL character) among 30 stored at once:
/// it alone fails, and the other 29 are stored with their runs.
#[tokio::test]
async fn an_event_the_database_refuses_fails_alone() {
    if !postgres_available() {
        return;
    }
    let db = TestDb::create(Backend::Postgres).await;
    let store = Arc::new(db.store().await);
    let stored = join_all((0..30).map(|n| {
        let store = store.clone();
        async move {
            let evt_id = match n {
                7 => "evt_\u{0}".to_owned(),
                n => format!("evt_batch_{n}"),
            };
            let (event, run) = stripe_event(
                &format!("ev_batch_{n}"),
                &evt_id,
                &format!("run_batch_{n}"),
                "batch",
            );
            (n, store_event(&store, event, run).await)
        }
    }))
    .await;
    for (n, outcome) in stored {
        match outcome {
            Ok(IngestOutcome::Accepted { runs, .. }) if n != 7 => assert_eq!(runs.len(), 1),
            Err(_) if n == 7 => {}
            other => panic!("event {n}: {other:?}"),
        }
    }
    assert_eq!(
        store
            .count("SELECT COUNT(*) FROM events", vec![])
            .await
            .expect("count"),
        29
    );
    assert_eq!(
        store
            .count("SELECT COUNT(*) FROM runs", vec![])
            .await
            .expect("count"),
        29
    );
    store.close().await;
}

const RUNS: usize = 40;

/// 40 runs, leased to one engine as their events are stored, each save a checkpoint and
/// end at once, and so do writes for the same runs from an engine that holds no lease.
/// Only the lease holder's are made, each answered so, and they share commits.
#[tokio::test]
async fn checkpoints_and_endings_of_many_runs_share_commits_and_need_the_lease() {
    if !postgres_available() {
        return;
    }
    let db = TestDb::create(Backend::Postgres).await;
    let store = Arc::new(db.store().await);
    let lease = NewLease {
        owner: "wrk_holder".into(),
        expires_at: i64::MAX,
    };
    let stored = join_all((0..RUNS).map(|n| {
        let (store, lease) = (store.clone(), lease.clone());
        async move {
            let (event, run) = new_event(n);
            store
                .store_event_alone(&event, std::slice::from_ref(&run), Some(&lease))
                .await
        }
    }))
    .await;
    for outcome in stored {
        assert!(
            matches!(outcome, Ok(Some(IngestOutcome::Accepted { .. }))),
            "{outcome:?}"
        );
    }

    let owners = ["wrk_holder", "wrk_other"];
    let saved = join_all((0..RUNS).flat_map(|n| owners.map(|owner| (n, owner))).map(
        |(n, owner)| {
            let store = store.clone();
            async move {
                let step = StepUpdate {
                    key: "charge:0".into(),
                    name: "charge".into(),
                    position: 0,
                    kind: StepKind::Run,
                    status: StepStatus::Completed,
                    attempts: 1,
                    output: Some(format!("{{\"by\":\"{owner}\"}}")),
                    error: None,
                    wake_at: None,
                    started_at: 1_000,
                    ended_at: Some(1_001),
                };
                let run_id = format!("run_batch_{n}").parse().expect("a run id");
                let saved = store.save_step_early(&run_id, owner, &step, None).await;
                (owner, saved.expect("save").0)
            }
        },
    ))
    .await;
    for (owner, saved) in saved {
        assert_eq!(saved, owner == "wrk_holder", "{owner}");
    }
    let ended = join_all((0..RUNS).flat_map(|n| owners.map(|owner| (n, owner))).map(
        |(n, owner)| {
            let store = store.clone();
            async move {
                let run_id = format!("run_batch_{n}").parse().expect("a run id");
                let output = Some(format!("\"{owner}\""));
                let ended = store
                    .finish_run(&run_id, owner, RunStatus::Completed, output, None, 2_000)
                    .await;
                (owner, ended.expect("finish"))
            }
        },
    ))
    .await;
    for (owner, ended) in ended {
        assert_eq!(ended, owner == "wrk_holder", "{owner}");
    }

    let count = |sql: &'static str| {
        let store = store.clone();
        async move { store.count(sql, vec![]).await.expect("count") }
    };
    assert_eq!(
        count("SELECT COUNT(*) FROM steps WHERE output = '{\"by\":\"wrk_holder\"}'").await,
        RUNS as i64
    );
    assert_eq!(count("SELECT COUNT(*) FROM steps").await, RUNS as i64);
    assert_eq!(
        count(
            "SELECT COUNT(*) FROM runs WHERE status = 'completed' AND output = '\"wrk_holder\"' \
               AND lease_owner IS NULL AND ended_at = 2000"
        )
        .await,
        RUNS as i64
    );
    // Rows written by one transaction carry its id.
    let step_commits = count("SELECT COUNT(DISTINCT xmin::text) FROM steps").await;
    let end_commits = count("SELECT COUNT(DISTINCT xmin::text) FROM runs").await;
    assert!(
        step_commits <= 4,
        "{RUNS} checkpoints took {step_commits} commits"
    );
    assert!(
        end_commits <= 4,
        "{RUNS} endings took {end_commits} commits"
    );
    store.close().await;
}

/// Stripe event `n`, with one run.
fn new_event(n: usize) -> (NewEvent, NewRun) {
    stripe_event(
        &format!("ev_batch_{n}"),
        &format!("evt_batch_{n}"),
        &format!("run_batch_{n}"),
        "batch",
    )
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}
