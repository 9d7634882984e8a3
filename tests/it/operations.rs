//! Replay and cancel through the operations API, the status history, and what the
//! dashboard's endpoints list.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use paysteps::testing::engine::{Function, Trigger};
use paysteps::testing::stripe::fixtures::Overrides;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::common::{Backend, Setup, TestApp, first_run, start_run};

crate::on_both_backends!(
    replay_from_failure_keeps_completed_steps_and_resumes_at_the_failed_one,
    replay_from_start_runs_every_step_again,
    refused_replays_and_cancels_change_nothing,
    bulk_replay_previews_then_replays_what_it_previewed,
    cancelling_queued_runs_means_they_never_execute,
    a_running_run_cancelled_stops_at_its_next_step_boundary,
    runs_are_searched_by_event_object_and_customer_with_counts_per_status,
    events_functions_and_billing_list_what_happened,
);

const FAILED_FN: &str = "payment-intent-payment-failed";
const FLAKY_STEP: &str = "record-payment-failure";
const FIRST_STEP: &str = "validate-payment-intent";

/// A payment-failure run that failed for good on [`FLAKY_STEP`]; the fault stays on.
async fn failed_payment_run(app: &TestApp, customer: &str) -> String {
    app.faults.fail_always(FLAKY_STEP);
    let answer = app
        .deliver_fixture(
            "payment_intent.payment_failed",
            Overrides {
                customer: Some(customer.to_owned()),
                ..Overrides::default()
            },
        )
        .await;
    let run_id = answer["runs"]
        .as_array()
        .and_then(|runs| {
            runs.iter()
                .filter_map(Value::as_str)
                .find(|id| id.starts_with("run_"))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| first_run(&answer));
    app.settle().await;
    let run = app.run(&run_id).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["function_id"], FAILED_FN);
    run_id
}

async fn run_count(app: &TestApp) -> i64 {
    app.count("SELECT COUNT(*) FROM runs").await
}

fn statuses(run: &Value) -> Vec<String> {
    run["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| h["status"].as_str().unwrap_or("").to_owned())
        .collect()
}

async fn replay_from_failure_keeps_completed_steps_and_resumes_at_the_failed_one(backend: Backend) {
    let app = TestApp::start(backend).await;
    let original = failed_payment_run(&app, "cus_resume").await;
    let detail = app.run(&original).await;
    assert_eq!(detail["failed_step"], format!("{FLAKY_STEP}:0"), "{detail}");
    let failing = detail["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["name"] == FLAKY_STEP)
        .expect("the failing step is in the timeline")
        .clone();
    assert_eq!(failing["status"], "failed");
    assert_eq!(failing["attempts"], 4);
    assert!(
        failing["error"]
            .as_str()
            .is_some_and(|e| e.contains("injected fault")),
        "{failing}"
    );
    assert_eq!(
        detail["event"]["name"],
        "stripe/payment_intent.payment_failed"
    );
    assert_eq!(detail["event"]["customer"], "cus_resume");
    assert!(detail["event"]["data"]["data"]["object"]["id"].is_string());
    let history = statuses(&detail);
    assert_eq!(history.first().map(String::as_str), Some("queued"));
    assert_eq!(history.last().map(String::as_str), Some("failed"));
    assert_eq!(
        history.iter().filter(|s| *s == "running").count(),
        4,
        "{history:?}"
    );

    let validated = app.faults.attempts(FIRST_STEP);
    app.faults.clear(FLAKY_STEP);
    let (status, body) = app
        .post(
            &format!("/api/v1/runs/{original}/replay"),
            &json!({"mode": "from_failure"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["mode"], "from_failure");
    let replay = body["run"]["id"].as_str().expect("replay id").to_owned();
    assert_eq!(body["run"]["replay_of"], original.as_str());
    assert_eq!(body["run"]["status"], "queued");
    app.settle().await;

    let replayed = app.run(&replay).await;
    assert_eq!(replayed["status"], "completed", "{replayed}");
    assert_eq!(replayed["replay_of"], original.as_str());
    assert_eq!(
        app.faults.attempts(FIRST_STEP),
        validated,
        "completed steps are memoized, not run again"
    );
    assert_eq!(app.faults.attempts(FLAKY_STEP), 5);
    let original_detail = app.run(&original).await;
    assert_eq!(original_detail["status"], "failed");
    assert_eq!(original_detail["replays"][0]["id"], replay.as_str());
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM payment_failures WHERE object_id = 'pi_1PgafyB7WZ01zgkWSjxsAJo3' AND kind = 'payment'"
        )
        .await,
        1
    );
}

async fn replay_from_start_runs_every_step_again(backend: Backend) {
    let app = TestApp::start(backend).await;
    let original = failed_payment_run(&app, "cus_start").await;
    let validated = app.faults.attempts(FIRST_STEP);
    app.faults.clear(FLAKY_STEP);
    let (status, body) = app
        .post(
            &format!("/api/v1/runs/{original}/replay"),
            &json!({"mode": "from_start"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let replay = body["run"]["id"].as_str().expect("id").to_owned();
    let before = app.run(&replay).await;
    assert_eq!(before["steps"], json!([]), "no step is carried over");
    app.settle().await;
    assert_eq!(app.run(&replay).await["status"], "completed");
    assert_eq!(app.faults.attempts(FIRST_STEP), validated + 1);
}

async fn refused_replays_and_cancels_change_nothing(backend: Backend) {
    let app = TestApp::start(backend).await;
    let failed = failed_payment_run(&app, "cus_refused").await;
    let before = run_count(&app).await;

    let (status, body) = app
        .post("/api/v1/runs/run_missing/replay", &json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
    // Text that is no run id at all is answered as an unknown run id is.
    for id in ["nope", "ev_1", "run_"] {
        for action in ["replay", "cancel"] {
            let (status, body) = app
                .post(&format!("/api/v1/runs/{id}/{action}"), &json!({}))
                .await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
            assert_eq!(body["error"]["code"], "not_found");
            assert_eq!(body["error"]["message"], format!("no run with id '{id}'"));
        }
        let (status, body) = app.get(&format!("/api/v1/runs/{id}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body["error"]["message"], format!("no run with id '{id}'"));
    }
    let (status, body) = app
        .post(
            &format!("/api/v1/runs/{failed}/replay"),
            &json!({"mode": "sideways"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"]["code"].is_string());
    let (status, body) = app
        .post(&format!("/api/v1/runs/{failed}/cancel"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "conflict");
    let (status, _) = app
        .post(
            "/api/v1/runs/replay",
            &json!({"status": "queued", "confirm": true}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = app
        .post(
            "/api/v1/runs/replay",
            &json!({"functon": FAILED_FN, "confirm": true}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown fields refused"
    );
    let (status, _) = app
        .post(
            "/api/v1/runs/replay",
            &json!({"since": "yesterday", "confirm": true}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = app
        .post(
            "/api/v1/runs/cancel",
            &json!({"status": "completed", "confirm": true}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = app.get("/api/v1/runs?status=done").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // A run still queued cannot be replayed.
    let queued = first_run(
        &app.deliver_fixture("payment_intent.succeeded", Overrides::default())
            .await,
    );
    let before_queued = run_count(&app).await;
    let (status, body) = app
        .post(&format!("/api/v1/runs/{queued}/replay"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(run_count(&app).await, before_queued);
    assert_eq!(before_queued, before + 1);
    assert_eq!(app.run(&failed).await["status"], "failed");
}

async fn bulk_replay_previews_then_replays_what_it_previewed(backend: Backend) {
    let app = TestApp::start(backend).await;
    let mut originals = Vec::new();
    for i in 0..3 {
        originals.push(failed_payment_run(&app, &format!("cus_bulk_{i}")).await);
    }
    let before = run_count(&app).await;
    let selection = json!({"function": FAILED_FN, "status": "failed", "since": "1d"});

    let (status, preview) = app.post("/api/v1/runs/replay", &selection).await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["preview"], true);
    assert_eq!(preview["matched"], 3);
    assert_eq!(run_count(&app).await, before, "a preview changes nothing");

    let mut stale = selection.clone();
    stale["confirm"] = json!(true);
    stale["expected"] = json!(2);
    let (status, body) = app.post("/api/v1/runs/replay", &stale).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(run_count(&app).await, before);

    app.faults.clear(FLAKY_STEP);
    let mut confirm = selection.clone();
    confirm["confirm"] = json!(true);
    confirm["expected"] = json!(3);
    confirm["mode"] = json!("from_failure");
    let (status, body) = app.post("/api/v1/runs/replay", &confirm).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["matched"], 3);
    let replays: Vec<String> = body["run_ids"]
        .as_array()
        .expect("run ids")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    assert_eq!(replays.len(), 3);
    app.settle().await;
    for (replay, original) in replays.iter().zip(&originals) {
        let run = app.run(replay).await;
        assert_eq!(run["status"], "completed", "{run}");
        assert_eq!(run["replay_of"], original.as_str());
    }
    let (_, again) = app.post("/api/v1/runs/replay", &selection).await;
    assert_eq!(again["matched"], 0, "replayed runs are not picked up twice");
}

async fn cancelling_queued_runs_means_they_never_execute(backend: Backend) {
    let app = TestApp::start(backend).await;
    let one = first_run(
        &app.deliver_fixture("payment_intent.succeeded", Overrides::default())
            .await,
    );
    let (status, body) = app
        .post(&format!("/api/v1/runs/{one}/cancel"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["run"]["status"], "cancelled");

    let mut others = Vec::new();
    for _ in 0..2 {
        others.push(first_run(
            &app.deliver_fixture("payment_intent.succeeded", Overrides::default())
                .await,
        ));
    }
    let selection = json!({"function": "payment-intent-succeeded"});
    let (_, preview) = app.post("/api/v1/runs/cancel", &selection).await;
    assert_eq!(preview["matched"], 2, "{preview}");
    let (status, body) = app
        .post(
            "/api/v1/runs/cancel",
            &json!({"function": "payment-intent-succeeded", "confirm": true, "expected": 2}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["run_ids"].as_array().map(Vec::len), Some(2));

    app.settle().await;
    assert_eq!(app.count("SELECT COUNT(*) FROM steps").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM payments").await, 0);
    for id in others.iter().chain([&one]) {
        let run = app.run(id).await;
        assert_eq!(run["status"], "cancelled");
        assert_eq!(statuses(&run), ["queued", "cancelled"]);
    }
    let (_, list) = app.get("/api/v1/runs?status=cancelled").await;
    assert_eq!(list["counts"]["cancelled"], 3, "{list}");
}

async fn a_running_run_cancelled_stops_at_its_next_step_boundary(backend: Backend) {
    let started = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let (s, r) = (started.clone(), release.clone());
    let function = Function::new("slow", Trigger::event("test/slow"), move |ctx| {
        let (s, r) = (s.clone(), r.clone());
        async move {
            ctx.step
                .run("first", || async move {
                    s.notify_one();
                    r.notified().await;
                    Ok(1)
                })
                .await?;
            ctx.step.run("second", || async { Ok(2) }).await?;
            Ok(json!("done"))
        }
    });
    let app = TestApp::start_with(Setup {
        backend,
        with_payments: false,
        register: Box::new(move |b| b.register(function)),
        ..Setup::default()
    })
    .await;
    app.engine.start();
    let run_id = start_run(&app.engine, "test/slow").await;
    tokio::time::timeout(Duration::from_secs(10), started.notified())
        .await
        .expect("the first step started");
    assert_eq!(app.run(&run_id).await["status"], "running");

    let (status, body) = app
        .post(&format!("/api/v1/runs/{run_id}/cancel"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["run"]["status"], "cancelled");
    release.notify_one();
    // The step in flight finishes, but its checkpoint is refused and nothing follows:
    // the execution ends with the engine still running.
    crate::common::until_idle(&app.engine).await;
    let run = app.run(&run_id).await;
    assert_eq!(run["status"], "cancelled", "{run}");
    assert_eq!(run["steps"], json!([]), "{run}");
    assert_eq!(statuses(&run), ["queued", "running", "cancelled"]);
    app.engine.shutdown().await;
}

async fn runs_are_searched_by_event_object_and_customer_with_counts_per_status(backend: Backend) {
    let app = TestApp::start(backend).await;
    let failed = failed_payment_run(&app, "cus_search_a").await;
    app.faults.clear(FLAKY_STEP);
    let answer = app
        .deliver_fixture(
            "payment_intent.succeeded",
            Overrides {
                customer: Some("cus_search_b".into()),
                ..Overrides::default()
            },
        )
        .await;
    let succeeded = first_run(&answer);
    app.settle().await;

    let ids = |body: &Value| -> Vec<String> {
        body["runs"]
            .as_array()
            .expect("runs")
            .iter()
            .map(|r| r["id"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    let (status, body) = app.get("/api/v1/runs?q=cus_search_a").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(ids(&body).contains(&failed), "{body}");
    assert!(!ids(&body).contains(&succeeded));

    let detail = app.run(&failed).await;
    let external = detail["event"]["external_id"].as_str().expect("evt id");
    let (_, body) = app.get(&format!("/api/v1/runs?q={external}")).await;
    assert_eq!(ids(&body), std::slice::from_ref(&failed), "{body}");
    let (_, body) = app
        .get("/api/v1/runs?q=pi_1PgafyB7WZ01zgkWSjxsAJo3&status=completed")
        .await;
    assert!(ids(&body).contains(&succeeded), "{body}");
    assert!(!ids(&body).contains(&failed));

    let (_, body) = app.get(&format!("/api/v1/runs?function={FAILED_FN}")).await;
    assert_eq!(body["counts"]["failed"], 1, "{body}");
    assert!(body["counts"]["completed"].as_i64().unwrap_or(0) >= 0);
    let (_, body) = app
        .get("/api/v1/runs?status=failed,completed&since=1d")
        .await;
    assert_eq!(
        body["total"].as_i64(),
        Some(body["runs"].as_array().map_or(0, |r| r.len() as i64)),
        "{body}"
    );
    let (_, body) = app.get("/api/v1/runs?until=1000").await;
    assert_eq!(body["runs"], json!([]));
}

async fn events_functions_and_billing_list_what_happened(backend: Backend) {
    let app = TestApp::start(backend).await;
    let failed = failed_payment_run(&app, "cus_lists").await;
    let event = crate::common::fixture_event("checkout.session.completed", Overrides::default());
    app.deliver(&event).await;
    app.deliver(&event).await;
    app.settle().await;

    let (status, body) = app
        .get("/api/v1/events?name=stripe/checkout.session.completed")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let listed = &body["events"][0];
    assert_eq!(listed["duplicates"], 1, "{body}");
    assert_eq!(listed["runs"], 1);
    assert!(
        body["names"]
            .as_array()
            .expect("names")
            .iter()
            .any(|n| n["name"] == "stripe/payment_intent.payment_failed")
    );
    let (status, detail) = app
        .get(&format!(
            "/api/v1/events/{}",
            listed["id"].as_str().unwrap_or("")
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        detail["runs"][0]["function_id"],
        "checkout-session-completed"
    );

    let (status, body) = app.get("/api/v1/functions").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let function = body["functions"]
        .as_array()
        .expect("functions")
        .iter()
        .find(|f| f["id"] == FAILED_FN)
        .expect("listed")
        .clone();
    assert_eq!(function["trigger"], "stripe/payment_intent.payment_failed");
    assert_eq!(function["retries"], 3);
    assert_eq!(function["stats"]["day"]["failed"], 1, "{function}");
    assert_eq!(function["stats"]["hour"]["success_rate"], 0.0);
    assert!(function["stats"]["day"]["p95_ms"].is_i64(), "{function}");
    assert_eq!(function["latest_errors"][0]["run_id"], failed.as_str());

    let (status, body) = app.get("/api/v1/billing").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["subscriptions_by_status"][0]["status"], "active",
        "{body}"
    );
    assert_eq!(body["subscriptions_by_status"][0]["count"], 1);
    assert!(
        body["payment_failures"]
            .as_array()
            .expect("failures")
            .iter()
            .any(|f| f["kind"] == "processing" && f["code"] == "function_failed"),
        "{body}"
    );

    let (status, doc) = app.get("/api/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["paths"]["/api/v1/runs/{id}/replay"]["post"].is_object());
}
