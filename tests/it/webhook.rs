//! `POST /api/stripe/webhook`: every rejection, tolerance, rotation, duplicates.

use axum::http::StatusCode;
use paysteps::testing::engine::system_now_ms;
use paysteps::testing::stripe::fixtures::Overrides;
use paysteps::testing::stripe::signer;

use crate::common::{Backend, OLD_SECRET, SECRET, Setup, TestApp, fixture_event};

crate::on_both_backends!(
    every_rejection_has_its_code_and_stores_nothing,
    body_over_the_limit_is_413,
    timestamps_inside_the_tolerance_pass_and_outside_fail,
    a_rolled_secret_is_accepted_when_any_v1_matches,
    duplicate_delivery_starts_no_run,
    an_unhandled_type_is_stored_and_acknowledged_without_a_run,
    health_answers_ok_with_a_database,
    a_database_that_is_down_answers_503_with_retry_after,
    metrics_count_events_rejections_runs_and_the_queue,
    with_a_stripe_mode_the_other_modes_events_are_stored_but_start_nothing,
);

fn body(name: &str) -> Vec<u8> {
    serde_json::to_vec(&fixture_event(name, Overrides::default())).expect("json")
}

fn now() -> i64 {
    system_now_ms() / 1000
}

async fn assert_rejected(
    app: &TestApp,
    body: Vec<u8>,
    signature: Option<String>,
    status: StatusCode,
    code: &str,
) {
    let (got, answer) = app.post_webhook(body, signature).await;
    assert_eq!(got, status, "{answer}");
    assert_eq!(answer["error"]["code"], code, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    assert!(
        !answer.to_string().contains(SECRET),
        "secret leaked: {answer}"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM events").await,
        0,
        "a rejected request stored an event"
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM runs").await, 0);
}

async fn every_rejection_has_its_code_and_stores_nothing(backend: Backend) {
    let app = TestApp::start(backend).await;
    let payload = body("invoice.paid");
    let good = |b: &[u8]| signer::sign(SECRET, b, now());

    assert_rejected(
        &app,
        payload.clone(),
        None,
        StatusCode::BAD_REQUEST,
        "missing_signature",
    )
    .await;
    for header in ["", "garbage", "t=abc,v1=00", "v1=deadbeef", "t=123"] {
        assert_rejected(
            &app,
            payload.clone(),
            Some(header.into()),
            StatusCode::BAD_REQUEST,
            "malformed_signature",
        )
        .await;
    }
    let wrong = signer::sign("whsec_not_ours", &payload, now());
    assert_rejected(
        &app,
        payload.clone(),
        Some(wrong),
        StatusCode::BAD_REQUEST,
        "signature_mismatch",
    )
    .await;

    let mut tampered = payload.clone();
    let signature = good(&payload);
    let at = tampered.iter().position(|&b| b == b'2').expect("a digit");
    tampered[at] = b'3';
    assert_rejected(
        &app,
        tampered,
        Some(signature),
        StatusCode::BAD_REQUEST,
        "signature_mismatch",
    )
    .await;

    let old = signer::sign(SECRET, &payload, now() - 3600);
    assert_rejected(
        &app,
        payload.clone(),
        Some(old),
        StatusCode::BAD_REQUEST,
        "timestamp_out_of_tolerance",
    )
    .await;

    for not_json in [b"{\"id\": \"evt_1\", ".to_vec(), b"[1, 2, 3]".to_vec()] {
        let signature = good(&not_json);
        assert_rejected(
            &app,
            not_json,
            Some(signature),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        )
        .await;
    }

    for bad in [
        serde_json::json!({"object": "event", "type": "invoice.paid", "created": 1, "data": {"object": {}}}),
        serde_json::json!({"id": "evt_1", "object": "event", "created": 1, "data": {"object": {}}}),
        serde_json::json!({"id": "evt_1", "object": "event", "type": "invoice.paid", "created": 1}),
        serde_json::json!({"id": "evt_1", "object": "event", "type": "invoice.paid", "created": "yesterday", "data": {"object": {}}}),
    ] {
        let bytes = serde_json::to_vec(&bad).expect("json");
        let signature = good(&bytes);
        assert_rejected(
            &app,
            bytes,
            Some(signature),
            StatusCode::BAD_REQUEST,
            "invalid_event",
        )
        .await;
    }

    // After all that, the server still accepts a good delivery.
    let (status, answer) = app
        .post_webhook(payload.clone(), Some(good(&payload)))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

async fn body_over_the_limit_is_413(backend: Backend) {
    let app = TestApp::start_with(Setup {
        backend,
        max_body_bytes: 2048,
        ..Setup::default()
    })
    .await;
    let payload = body("invoice.paid");
    assert!(payload.len() > 2048);
    let signature = signer::sign(SECRET, &payload, now());
    assert_rejected(
        &app,
        payload,
        Some(signature),
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;
}

async fn timestamps_inside_the_tolerance_pass_and_outside_fail(backend: Backend) {
    let app = TestApp::start(backend).await;
    for (offset, accepted) in [(-290, true), (290, true), (-310, false), (310, false)] {
        let payload = body("invoice.paid");
        let signature = signer::sign(SECRET, &payload, now() + offset);
        let (status, answer) = app.post_webhook(payload, Some(signature)).await;
        if accepted {
            assert_eq!(status, StatusCode::OK, "offset {offset}: {answer}");
        } else {
            assert_eq!(status, StatusCode::BAD_REQUEST, "offset {offset}: {answer}");
            assert_eq!(answer["error"]["code"], "timestamp_out_of_tolerance");
        }
    }
}

async fn a_rolled_secret_is_accepted_when_any_v1_matches(backend: Backend) {
    let app = TestApp::start_with(Setup {
        backend,
        secrets: vec![OLD_SECRET, SECRET],
        ..Setup::default()
    })
    .await;
    let payload = body("invoice.paid");
    let t = now();
    let bogus = "0".repeat(64);
    let real = signer::sign(SECRET, &payload, t);
    let v1 = real.split("v1=").nth(1).expect("v1");
    let header = format!("t={t},v1={bogus},v1={v1},v0={bogus}");
    let (status, answer) = app.post_webhook(payload.clone(), Some(header)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");

    // Signed with the older secret alone: also accepted while both are configured.
    let payload = body("invoice.paid");
    let signature = signer::sign(OLD_SECRET, &payload, t);
    let (status, _) = app.post_webhook(payload, Some(signature)).await;
    assert_eq!(status, StatusCode::OK);

    // Only a v0 that matches is not enough.
    let payload = body("invoice.paid");
    let v1 = signer::sign(SECRET, &payload, t);
    let v1 = v1.split("v1=").nth(1).expect("v1");
    let (status, answer) = app
        .post_webhook(payload, Some(format!("t={t},v1={bogus},v0={v1}")))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error"]["code"], "signature_mismatch");
}

async fn duplicate_delivery_starts_no_run(backend: Backend) {
    let app = TestApp::start(backend).await;
    let event = fixture_event("payment_intent.succeeded", Overrides::default());
    let (status, first) = app.deliver(&event).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first["received"], true);
    assert_eq!(first["duplicate"], false);
    assert_eq!(first["event_id"], event["id"]);
    assert_eq!(first["runs"].as_array().map(Vec::len), Some(1));

    let (status, second) = app.deliver(&event).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(second["duplicate"], true);
    assert_eq!(second["runs"], serde_json::json!([]));
    assert_eq!(app.count("SELECT COUNT(*) FROM events").await, 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM runs").await, 1);

    let (_, stored) = app
        .get(&format!(
            "/api/v1/events/{}",
            event["id"].as_str().unwrap_or("")
        ))
        .await;
    assert_eq!(stored["duplicates"], 1);
}

async fn an_unhandled_type_is_stored_and_acknowledged_without_a_run(backend: Backend) {
    let app = TestApp::start(backend).await;
    let answer = app
        .deliver_fixture("customer.tax_id.created", Overrides::default())
        .await;
    assert_eq!(answer["duplicate"], false);
    assert_eq!(answer["runs"], serde_json::json!([]));
    let (status, stored) = app
        .get(&format!(
            "/api/v1/events/{}",
            answer["event_id"].as_str().unwrap_or("")
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stored["name"], "stripe/customer.tax_id.created");
    assert_eq!(stored["data"]["type"], "customer.tax_id.created");
    assert_eq!(stored["runs"], serde_json::json!([]));
}

async fn health_answers_ok_with_a_database(backend: Backend) {
    let app = TestApp::start(backend).await;
    let (status, body) = app.get("/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["database"], "ok");
}

async fn a_database_that_is_down_answers_503_with_retry_after(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.store().close().await;
    let (status, body) = app.get("/health").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");

    let event = fixture_event("invoice.paid", Overrides::default());
    let payload = serde_json::to_vec(&event).expect("json");
    let signature = signer::sign(SECRET, &payload, now());
    let request = axum::http::Request::post("/api/stripe/webhook")
        .header("stripe-signature", signature)
        .body(axum::body::Body::from(payload))
        .expect("request");
    let response = tower::ServiceExt::oneshot(app.router.clone(), request)
        .await
        .expect("response");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
}

async fn metrics_count_events_rejections_runs_and_the_queue(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.deliver_fixture("payment_intent.succeeded", Overrides::default())
        .await;
    app.deliver_fixture("checkout.session.completed", Overrides::default())
        .await;
    let payload = body("invoice.paid");
    let (status, _) = app.post_webhook(payload, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let text = app.metrics().await;
    assert!(
        text.contains("paysteps_events_received_total{source=\"stripe\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("paysteps_events_rejected_total{reason=\"missing_signature\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("paysteps_runs_open{status=\"queued\"} 2"),
        "{text}"
    );

    app.settle().await;
    let text = app.metrics().await;
    assert!(
        text.contains(
            "paysteps_runs_total{function=\"checkout-session-completed\",status=\"completed\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("paysteps_runs_open{status=\"queued\"} 0"),
        "{text}"
    );
    assert!(
        text.contains(
            "paysteps_step_duration_seconds_count{function=\"checkout-session-completed\"}"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "paysteps_run_latency_seconds_count{function=\"payment-intent-succeeded\"} 1"
        ),
        "{text}"
    );
    if backend == Backend::Sqlite {
        assert!(
            text.contains("paysteps_db_commit_batch_size_count"),
            "{text}"
        );
    }
}

/// With `STRIPE_MODE=live`, a test-mode event is stored and acknowledged, but under a name
/// no function is triggered by, and the answer says why; a live-mode event runs as usual,
/// and a duplicate of the ignored one is still a duplicate.
async fn with_a_stripe_mode_the_other_modes_events_are_stored_but_start_nothing(backend: Backend) {
    let app = TestApp::start_with(Setup {
        backend,
        stripe_mode: Some(paysteps::testing::stripe::Mode::Live),
        ..Setup::default()
    })
    .await;
    let test_mode = fixture_event("checkout.session.completed", Overrides::default());
    assert_eq!(test_mode["livemode"], false);
    let (status, answer) = app.deliver(&test_mode).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["runs"], serde_json::json!([]), "{answer}");
    assert_eq!(
        answer["ignored"], "a test-mode event, and STRIPE_MODE is live",
        "{answer}"
    );
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM events WHERE name = 'ignored/stripe/checkout.session.completed'"
        )
        .await,
        1
    );
    let (_, again) = app.deliver(&test_mode).await;
    assert_eq!(again["duplicate"], true, "{again}");

    let mut live = fixture_event("checkout.session.completed", Overrides::default());
    live["livemode"] = true.into();
    let (status, answer) = app.deliver(&live).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["runs"].as_array().map(Vec::len), Some(1), "{answer}");
    assert!(answer.get("ignored").is_none(), "{answer}");
    app.settle().await;
    assert_eq!(app.count("SELECT COUNT(*) FROM runs").await, 1);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM subscriptions WHERE livemode = 1")
            .await,
        1,
        "the live event's subscription, marked live"
    );
}
