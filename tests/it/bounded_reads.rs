//! What the dashboard's endpoints and `/metrics` read stays bounded however much is
//! stored: event names and function statistics come from aggregates kept as events and
//! runs are written, every list has a maximum `limit`, and `/metrics` can require a token.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use paysteps::testing::engine::{Function, NonRetriable, Trigger};
use paysteps::testing::http::Access;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::common::{Backend, Setup, TestApp, send, start_run};

crate::on_both_backends!(
    twenty_thousand_event_names_answer_a_small_page_of_names,
    function_stats_count_runs_as_they_end_from_the_aggregates,
    a_limit_over_the_maximum_is_refused_and_changes_nothing,
    metrics_require_the_token_when_one_is_set,
);

const NAMES: i64 = 20_000;

/// Stores `NAMES` events of distinct names in one statement (the triggers count them as
/// any insert), as years of varied traffic would leave them.
async fn store_distinct_names(app: &TestApp) {
    app.store()
        .execute(
            format!(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {NAMES}) \
                 INSERT INTO events (id, name, source, data, ts, received_at) \
                 SELECT 'ev_bulk_' || i, 'app/name.' || i, 'api', '{{}}', 0, 0 FROM n"
            ),
            vec![],
        )
        .await
        .expect("bulk insert");
}

async fn twenty_thousand_event_names_answer_a_small_page_of_names(backend: Backend) {
    let app = TestApp::start_with(Setup::functions(backend, 1, Vec::new())).await;
    store_distinct_names(&app).await;
    for _ in 0..3 {
        send(&app.engine, "app/popular", json!({})).await;
    }

    let (status, body) = app.get("/api/v1/events?limit=1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["events"].as_array().map(Vec::len), Some(1));
    let names = body["names"].as_array().expect("names");
    assert_eq!(names.len(), 100);
    assert_eq!(names[0], json!({ "name": "app/popular", "count": 3 }));
    let size = serde_json::to_vec(&body).expect("json").len();
    assert!(size < 16 * 1024, "{size} bytes for one event");

    let (status, body) = app
        .get("/api/v1/events?limit=1&names_prefix=app/name.1999")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut found: Vec<&str> = body["names"]
        .as_array()
        .expect("names")
        .iter()
        .map(|n| n["name"].as_str().expect("name"))
        .collect();
    found.sort_unstable();
    let mut expected = vec!["app/name.1999".to_owned()];
    expected.extend((0..10).map(|i| format!("app/name.1999{i}")));
    assert_eq!(found, expected);

    // Deleted events leave the counts (and names with none left go).
    app.store()
        .execute(
            "DELETE FROM events WHERE name IN ('app/name.7', 'app/name.8')".into(),
            vec![],
        )
        .await
        .expect("delete");
    let (_, body) = app.get("/api/v1/events?names_prefix=app/name.7").await;
    assert!(
        body["names"]
            .as_array()
            .expect("names")
            .iter()
            .all(|n| n["name"] != "app/name.7"),
        "{body}"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM event_names").await,
        NAMES - 2 + 1
    );
}

fn stats_functions() -> Vec<Function> {
    vec![
        Function::new("ok", Trigger::event("test/ok"), |ctx| async move {
            ctx.step.run("work", || async { Ok(1) }).await?;
            Ok(())
        }),
        Function::new("bad", Trigger::event("test/bad"), |ctx| async move {
            ctx.step
                .run("parse", || async { "x".parse::<u32>().non_retriable() })
                .await?;
            Ok(())
        }),
    ]
}

async fn function(app: &TestApp, id: &str) -> Value {
    let (status, body) = app.get("/api/v1/functions").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["functions"]
        .as_array()
        .expect("functions")
        .iter()
        .find(|f| f["id"] == id)
        .unwrap_or_else(|| panic!("{id} not listed in {body}"))
        .clone()
}

async fn function_stats_count_runs_as_they_end_from_the_aggregates(backend: Backend) {
    let app = TestApp::start_with(Setup::functions(backend, 1, stats_functions())).await;
    for _ in 0..3 {
        start_run(&app.engine, "test/ok").await;
    }
    let cancelled = start_run(&app.engine, "test/ok").await;
    start_run(&app.engine, "test/bad").await;

    let ok = function(&app, "ok").await;
    assert_eq!(ok["stats"]["hour"]["runs"], 4, "{ok}");
    assert_eq!(ok["stats"]["hour"]["completed"], 0);
    assert_eq!(ok["stats"]["hour"]["success_rate"], Value::Null);

    let (status, body) = app
        .post(&format!("/api/v1/runs/{cancelled}/cancel"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.settle().await;

    let ok = function(&app, "ok").await;
    for window in ["hour", "day"] {
        let stats = &ok["stats"][window];
        assert_eq!(stats["runs"], 4, "{ok}");
        assert_eq!(stats["completed"], 3);
        assert_eq!(stats["failed"], 0);
        assert_eq!(stats["cancelled"], 1);
        assert_eq!(stats["success_rate"], 1.0);
        assert!(stats["p50_ms"].is_i64() && stats["p95_ms"].is_i64(), "{ok}");
    }
    let bad = function(&app, "bad").await;
    assert_eq!(bad["stats"]["day"]["failed"], 1, "{bad}");
    assert_eq!(bad["stats"]["day"]["success_rate"], 0.0);
    assert_eq!(bad["latest_errors"].as_array().map(Vec::len), Some(1));

    // The statistics are the aggregates: runs themselves are not read for them.
    for table in ["function_stats", "function_durations"] {
        app.store()
            .execute(format!("DELETE FROM {table}"), vec![])
            .await
            .expect("delete");
    }
    let ok = function(&app, "ok").await;
    assert_eq!(ok["stats"]["day"]["runs"], 0, "{ok}");
    assert_eq!(ok["stats"]["day"]["p50_ms"], Value::Null);
    assert_eq!(app.count("SELECT COUNT(*) FROM runs").await, 5);
}

async fn a_limit_over_the_maximum_is_refused_and_changes_nothing(backend: Backend) {
    let app = TestApp::start_with(Setup::functions(backend, 1, stats_functions())).await;
    for _ in 0..3 {
        start_run(&app.engine, "test/ok").await;
    }
    app.settle().await;
    let counts = "SELECT (SELECT COUNT(*) FROM events) + (SELECT COUNT(*) FROM runs) \
                  + (SELECT COUNT(*) FROM steps)";
    let before = app.count(counts).await;

    let refused = [
        "/api/v1/events?limit=1001",
        "/api/v1/events?limit=0",
        "/api/v1/runs?limit=1001",
        "/api/v1/runs?limit=-1",
        "/api/v1/runs?limit=ten",
        "/api/v1/payments?limit=501",
        "/api/v1/disputes?limit=501",
        "/api/v1/billing?limit=501",
        "/api/v1/billing?limit=1.5",
        "/api/v1/webhooks?limit=1001",
        "/api/v1/webhooks/whep_none/deliveries?limit=501",
    ];
    for path in refused {
        let (status, body) = app.get(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body["error"]["code"], "invalid_limit", "{path}: {body}");
    }
    assert_eq!(app.count(counts).await, before);

    for (path, list, expected) in [
        ("/api/v1/events?limit=1000", "events", 3),
        ("/api/v1/runs?limit=1000", "runs", 3),
        ("/api/v1/runs?limit=2", "runs", 2),
        ("/api/v1/billing?limit=500", "payments", 0),
        ("/api/v1/webhooks?limit=1000", "data", 0),
    ] {
        let (status, body) = app.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert_eq!(
            body[list].as_array().map(Vec::len),
            Some(expected),
            "{path}: {body}"
        );
    }
}

const METRICS_TOKEN: &str = "metrics-token-for-tests";
const DASHBOARD_TOKEN: &str = "dashboard-token-for-tests-0123456789";

async fn scrape(app: &TestApp, token: Option<&str>) -> (StatusCode, String) {
    let mut request = Request::get("/metrics").header(header::HOST, "localhost");
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = app
        .router
        .clone()
        .oneshot(request.body(Body::empty()).expect("request"))
        .await
        .expect("response");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

async fn metrics_require_the_token_when_one_is_set(backend: Backend) {
    let open = TestApp::start_with(Setup::functions(backend, 1, stats_functions())).await;
    start_run(&open.engine, "test/ok").await;
    let (status, text) = scrape(&open, None).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(
        text.contains("paysteps_runs_open{status=\"queued\"} 1"),
        "{text}"
    );
    drop(open);

    let guarded = TestApp::start_with(Setup {
        access: Access::token(DASHBOARD_TOKEN).metrics_token(Some(METRICS_TOKEN)),
        ..Setup::functions(backend, 1, stats_functions())
    })
    .await;
    let (status, text) = scrape(&guarded, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{text}");
    assert!(text.contains("\"unauthorized\""), "{text}");
    assert!(!text.contains("paysteps_"), "{text}");
    let (status, _) = scrape(&guarded, Some("not-the-metrics-token")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, text) = scrape(&guarded, Some(METRICS_TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.contains("paysteps_runs_open"), "{text}");
    // The metrics token opens /metrics only.
    let request = Request::get("/api/v1/runs")
        .header(header::HOST, "localhost")
        .header(header::AUTHORIZATION, format!("Bearer {METRICS_TOKEN}"))
        .body(Body::empty())
        .expect("request");
    let response = guarded
        .router
        .clone()
        .oneshot(request)
        .await
        .expect("response");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}
