//! PostgreSQL stores events that arrive together in one statement and one commit. Each
//! delivery is still answered for itself: accepted with its runs, or a duplicate; and an
//! event the database refuses fails alone, not the events it was batched with.

use std::sync::Arc;

use axum::http::StatusCode;
use futures::future::join_all;
use paysteps::store::{IngestOutcome, NewEvent, Store};
use paysteps::stripe::fixtures::Overrides;

use crate::common::db::{postgres_url, report_postgres_skipped};
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
        async move { (n, ingest(&store, n).await) }
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

/// Stores event `n` as the engine does: in the shared statement, else on its own.
async fn ingest(store: &Store, n: usize) -> paysteps::store::Result<IngestOutcome> {
    let external_id = if n == 7 {
        "evt_\u{0}".to_owned()
    } else {
        format!("evt_batch_{n}")
    };
    let event = NewEvent {
        id: format!("ev_batch_{n}"),
        dedupe_key: Some(format!("stripe:{external_id}")),
        dedupe_for_ms: None,
        external_id: Some(external_id),
        name: "stripe/test.batch".into(),
        source: "stripe".into(),
        data: "{}".into(),
        ts: 1,
        received_at: 1_000,
        object_id: None,
        customer: None,
    };
    let run = paysteps::store::NewRun {
        id: format!("run_batch_{n}"),
        function_id: "batch".into(),
        replay_of: None,
    };
    if let Some(outcome) = store
        .store_event_alone(&event, std::slice::from_ref(&run), None)
        .await?
    {
        return Ok(outcome);
    }
    store
        .write_unisolated(move |tx| Box::pin(async move { tx.insert_event(&event, &[run]).await }))
        .await
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}
