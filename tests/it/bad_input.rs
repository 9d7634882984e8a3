//! Input no route may store or choke on: a NUL character (PostgreSQL's text refuses it)
//! in a path id, a query value or a JSON string; a Stripe event id too long to index; a
//! webhook URL of megabytes. Each is a 4xx with a code that changes nothing; a database
//! failure is a 500 whose body names no table, statement or driver.

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use paysteps::testing::engine::system_now_ms;
use paysteps::testing::stripe::fixtures::Overrides;
use paysteps::testing::stripe::signer;
use paysteps::testing::webhooks::Destinations;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::common::{Backend, SECRET, Setup, TestApp, fixture_event};

crate::on_both_backends!(
    a_nul_in_any_path_query_or_body_is_refused_and_changes_nothing,
    an_over_long_or_unprintable_stripe_event_id_is_an_invalid_event,
    a_webhook_url_over_2048_bytes_is_refused,
    a_database_failure_answers_a_request_id_and_no_database_text,
    an_event_api_failure_answers_a_request_id_and_no_database_text,
);

async fn app(backend: Backend) -> TestApp {
    TestApp::start_with(Setup {
        backend,
        webhooks: Some(Destinations::PublicOnly),
        ..Setup::default()
    })
    .await
}

/// Sends `body` (JSON when given) with `method` to `path`; the status and the raw body.
async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<&str>,
) -> (StatusCode, String) {
    let request = Request::builder().method(method).uri(path);
    let request = match body {
        Some(body) => request
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned())),
        None => request.body(Body::empty()),
    }
    .expect("request");
    let response = app.router.clone().oneshot(request).await.expect("response");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// What every refusal must leave as it was: the rows of the tables these routes write,
/// and the endpoint as the API shows it.
async fn snapshot(app: &TestApp, endpoint: &str) -> Vec<Value> {
    let mut state = Vec::new();
    for table in [
        "events",
        "runs",
        "steps",
        "run_history",
        "webhook_endpoints",
        "webhook_deliveries",
        "webhook_events",
    ] {
        state.push(json!(
            app.count(&format!("SELECT COUNT(*) FROM {table}")).await
        ));
    }
    let (status, shown) = app.get(&format!("/api/v1/webhooks/{endpoint}")).await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    state.push(shown);
    let (_, runs) = app.get("/api/v1/runs").await;
    state.push(runs);
    state
}

async fn a_nul_in_any_path_query_or_body_is_refused_and_changes_nothing(backend: Backend) {
    let app = app(backend).await;
    let (status, created) = app
        .post(
            "/api/v1/webhooks",
            &json!({"url": "https://hooks.example.com/paysteps", "description": "crm"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let endpoint = created["id"].as_str().expect("endpoint id").to_owned();
    let answer = app
        .deliver_fixture("payment_intent.succeeded", Overrides::default())
        .await;
    let run = answer["runs"][0].as_str().expect("a run").to_owned();
    app.settle().await;
    let before = snapshot(&app, &endpoint).await;

    let nul_body = |field: &str, rest: Value| {
        let mut body = rest;
        body[field] = json!("a\u{0}b");
        body.to_string()
    };
    let get = Method::GET;
    let post = Method::POST;
    let cases: Vec<(Method, String, Option<String>)> = vec![
        (get.clone(), "/api/v1/runs/run%00x".into(), None),
        (get.clone(), "/api/v1/runs?q=cus%00".into(), None),
        (get.clone(), "/api/v1/runs?function=f%00".into(), None),
        (get.clone(), "/api/v1/runs?event=evt%00".into(), None),
        (
            get.clone(),
            "/api/v1/runs?status=failed&since=1h%00".into(),
            None,
        ),
        (get.clone(), "/api/v1/events/evt_%00".into(), None),
        (get.clone(), "/api/v1/events?q=%00".into(), None),
        (get.clone(), "/api/v1/events?name=stripe%2F%00".into(), None),
        (
            get.clone(),
            "/api/v1/users/user_%00/subscription".into(),
            None,
        ),
        (
            get.clone(),
            "/api/v1/reports/daily?currency=us%00".into(),
            None,
        ),
        (get.clone(), "/api/v1/payments?user=user_%00".into(), None),
        (
            get.clone(),
            "/api/v1/payments?customer=cus_%00".into(),
            None,
        ),
        (
            get.clone(),
            "/api/v1/payments?status=succeeded%00".into(),
            None,
        ),
        (get.clone(), "/api/v1/disputes?status=%00".into(), None),
        (post.clone(), format!("/api/v1/runs/{run}%00/replay"), None),
        (post.clone(), format!("/api/v1/runs/{run}%00/cancel"), None),
        (
            post.clone(),
            "/api/v1/runs/replay".into(),
            Some(nul_body("function", json!({"confirm": true}))),
        ),
        (
            post.clone(),
            "/api/v1/runs/replay".into(),
            Some(nul_body("search", json!({"confirm": true}))),
        ),
        (
            post.clone(),
            "/api/v1/runs/cancel".into(),
            Some(nul_body("function", json!({"confirm": true}))),
        ),
        (
            post.clone(),
            "/api/v1/webhooks".into(),
            Some(nul_body(
                "description",
                json!({"url": "https://hooks.example.com/x"}),
            )),
        ),
        (
            post.clone(),
            "/api/v1/webhooks".into(),
            Some(nul_body("url", json!({}))),
        ),
        (
            post.clone(),
            "/api/v1/webhooks".into(),
            Some(
                json!({"url": "https://hooks.example.com/x", "events": ["*", "\u{0}"]}).to_string(),
            ),
        ),
        (
            Method::PATCH,
            format!("/api/v1/webhooks/{endpoint}"),
            Some(nul_body("description", json!({}))),
        ),
        (
            Method::PATCH,
            format!("/api/v1/webhooks/{endpoint}"),
            Some(nul_body("url", json!({}))),
        ),
        (
            Method::PATCH,
            format!("/api/v1/webhooks/{endpoint}%00"),
            Some(json!({"description": "x"}).to_string()),
        ),
        (get.clone(), format!("/api/v1/webhooks/{endpoint}%00"), None),
        (
            Method::DELETE,
            format!("/api/v1/webhooks/{endpoint}%00"),
            None,
        ),
        (
            post.clone(),
            format!("/api/v1/webhooks/{endpoint}%00/pause"),
            None,
        ),
        (
            post.clone(),
            format!("/api/v1/webhooks/{endpoint}%00/resume"),
            None,
        ),
        (
            post.clone(),
            format!("/api/v1/webhooks/{endpoint}%00/rotate"),
            None,
        ),
        (
            get.clone(),
            format!("/api/v1/webhooks/{endpoint}%00/deliveries"),
            None,
        ),
        (
            get.clone(),
            "/api/v1/webhook-deliveries/whd_%00".into(),
            None,
        ),
        (
            post.clone(),
            "/api/v1/webhook-deliveries/whd_%00/resend".into(),
            None,
        ),
    ];
    for (method, path, body) in &cases {
        let (status, text) = call(&app, method.clone(), path, body.as_deref()).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{method} {path} {body:?}: {text}"
        );
        let answer: Value = serde_json::from_str(&text).expect("a JSON error");
        assert_eq!(
            answer["error"]["code"], "invalid_character",
            "{method} {path} {body:?}: {text}"
        );
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("NUL")),
            "{text}"
        );
    }
    assert_eq!(
        snapshot(&app, &endpoint).await,
        before,
        "a refusal changed something"
    );

    // The same routes with plain values still answer.
    let (status, body) = app.get("/api/v1/runs?q=cus_&function=f").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app.get("/api/v1/users/user_x/subscription").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app.get("/api/v1/payments?user=user_x&customer=cus_x").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

fn signed(event: &Value) -> (Vec<u8>, String) {
    let body = serde_json::to_vec(event).expect("json");
    let signature = signer::sign(SECRET, &body, system_now_ms() / 1000);
    (body, signature)
}

async fn an_over_long_or_unprintable_stripe_event_id_is_an_invalid_event(backend: Backend) {
    let app = app(backend).await;
    let mut refused = Vec::new();
    for id in [
        format!("evt_{}", "x".repeat(10 * 1024)),
        format!("evt_{}", "x".repeat(252)),
        "evt_1\u{0}".to_owned(),
        "evt_1\n2".to_owned(),
    ] {
        let event = fixture_event(
            "payment_intent.succeeded",
            Overrides {
                event_id: Some(id.clone()),
                ..Overrides::default()
            },
        );
        let (body, signature) = signed(&event);
        let (status, answer) = app.post_webhook(body, Some(signature)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(answer["error"]["code"], "invalid_event", "{answer}");
        refused.push(id);
    }
    let mut event = fixture_event("payment_intent.succeeded", Overrides::default());
    event["data"]["object"]["id"] = json!(format!("pi_{}", "x".repeat(10 * 1024)));
    let (body, signature) = signed(&event);
    let (status, answer) = app.post_webhook(body, Some(signature)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_event", "{answer}");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM events").await,
        0,
        "nothing stored"
    );

    // 255 bytes is within bounds, on both databases.
    let id = format!("evt_{}", "x".repeat(251));
    let event = fixture_event(
        "payment_intent.succeeded",
        Overrides {
            event_id: Some(id.clone()),
            ..Overrides::default()
        },
    );
    let (status, answer) = app.deliver(&event).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["event_id"], id.as_str());
}

async fn a_webhook_url_over_2048_bytes_is_refused(backend: Backend) {
    let app = app(backend).await;
    let base = "https://hooks.example.com/";
    let longest = format!("{base}{}", "a".repeat(2048 - base.len()));
    let (status, created) = app.post("/api/v1/webhooks", &json!({"url": longest})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(created["url"], longest.as_str());

    for url in [
        format!("{longest}a"),
        format!("{base}{}", "a".repeat(1_900_000)),
    ] {
        let (status, text) = call(
            &app,
            Method::POST,
            "/api/v1/webhooks",
            Some(&json!({"url": url}).to_string()),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{}",
            &text[..text.len().min(300)]
        );
        let answer: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(answer["error"]["code"], "url_too_long", "{answer}");
        assert!(text.len() < 1000, "the answer does not echo the URL");
        let (status, text) = call(
            &app,
            Method::PATCH,
            &format!("/api/v1/webhooks/{id}"),
            Some(&json!({"url": url}).to_string()),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(text.contains("\"url_too_long\""), "{text}");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM webhook_endpoints").await, 1);
    let (_, shown) = app.get(&format!("/api/v1/webhooks/{id}")).await;
    assert_eq!(shown["url"], longest.as_str(), "the endpoint kept its URL");
}

/// Log lines written while a test runs on this thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn a_database_failure_answers_a_request_id_and_no_database_text(backend: Backend) {
    let app = app(backend).await;
    let (status, _) = app.get("/api/v1/reports/daily").await;
    assert_eq!(status, StatusCode::OK);
    app.store()
        .execute(
            "ALTER TABLE daily_reports RENAME TO daily_reports_gone".into(),
            vec![],
        )
        .await
        .expect("rename");

    let (status, text, logged) =
        logging(call(&app, Method::GET, "/api/v1/reports/daily", None)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{text}");
    let answer: Value = serde_json::from_str(&text).expect("JSON");
    let request_id = answered_request_id(&answer["error"]);
    assert_eq!(
        answer,
        json!({"error": {"code": "internal", "message": "internal error", "request_id": request_id}})
    );
    assert_cause_logged_not_answered(&text, &logged, &request_id, "daily_reports");
}

async fn an_event_api_failure_answers_a_request_id_and_no_database_text(backend: Backend) {
    let app = app(backend).await;
    let event = r#"{"name":"shop/order.placed","data":{"order":1}}"#;
    let (status, _) = call(&app, Method::POST, "/e/key", Some(event)).await;
    assert_eq!(status, StatusCode::OK);
    app.store()
        .execute("ALTER TABLE events RENAME TO events_gone".into(), vec![])
        .await
        .expect("rename");

    let (status, text, logged) = logging(call(&app, Method::POST, "/e/key", Some(event))).await;
    assert!(status.is_server_error(), "{status}: {text}");
    let answer: Value = serde_json::from_str(&text).expect("JSON");
    // The SDK reads the status and the error from the body.
    assert_eq!(answer["status"], status.as_u16(), "{answer}");
    assert!(answer["error"].is_string(), "{answer}");
    let request_id = answered_request_id(&answer);
    assert_cause_logged_not_answered(&text, &logged, &request_id, "events");
}

/// What `request` answers, and what was logged while it ran.
async fn logging(
    request: impl std::future::Future<Output = (StatusCode, String)>,
) -> (StatusCode, String, String) {
    let log = Captured::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    // The test runtime has one thread: the handler logs on this one.
    let (status, text) = {
        let _guard = tracing::subscriber::set_default(subscriber);
        request.await
    };
    let logged = String::from_utf8(log.0.lock().expect("log").clone()).expect("utf-8");
    (status, text, logged)
}

fn answered_request_id(holder: &Value) -> String {
    holder["request_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no request id in {holder}"))
        .to_owned()
}

/// The answer names no table, statement or driver; the log line under `request_id`
/// names `table`.
fn assert_cause_logged_not_answered(text: &str, logged: &str, request_id: &str, table: &str) {
    for database_text in [table, "relation", "table", "database", "sql"] {
        assert!(!text.to_lowercase().contains(database_text), "{text}");
    }
    let line = logged
        .lines()
        .find(|line| line.contains(request_id))
        .unwrap_or_else(|| panic!("no log line with {request_id} in:\n{logged}"));
    assert!(line.contains(table), "the cause is logged: {line}");
}
