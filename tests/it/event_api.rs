//! `POST /e/{event_key}` as an Inngest SDK drives it, and `paysteps send`.

use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use paysteps::testing::config::Secret;
use paysteps::testing::engine::{Function, Trigger};
use paysteps::testing::http::EventKeys;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::common::{Backend, Setup, TestApp};

crate::on_both_backends!(
    an_sdk_send_is_answered_as_the_sdk_reads_it,
    a_single_object_and_a_batch_are_stored_in_order,
    each_event_starts_a_run_of_the_function_it_triggers,
    a_repeated_id_is_one_event_for_24_hours,
    bad_requests_are_400_with_their_code_and_store_nothing,
    a_body_over_3_mib_is_413,
    a_database_that_is_down_answers_503_with_retry_after,
    a_configured_key_list_refuses_any_other_key,
    paysteps_send_prints_the_event_and_the_run_it_started,
);

/// What the inngest npm SDK 4.24.0 puts in `User-Agent` and `x-inngest-sdk`.
const SDK: &str = "inngest-js:v4.24.0";

/// Every event a test function was run for: (function, event name, event data).
type Seen = Arc<Mutex<Vec<(String, String, Value)>>>;

/// A function on `trigger` that records its event once per run (in a step).
fn recording(id: &str, trigger: &str, seen: &Seen) -> Function {
    let (function_id, seen) = (id.to_owned(), seen.clone());
    Function::new(id, Trigger::event(trigger), move |ctx| {
        let (function_id, seen) = (function_id.clone(), seen.clone());
        async move {
            let event = ctx.event.clone();
            ctx.step
                .run("record", || async move {
                    seen.lock()
                        .expect("seen")
                        .push((function_id, event.name, event.data));
                    Ok(())
                })
                .await
        }
    })
}

/// An app without the Stripe functions, with `welcome` on `app/user.signed_up` and
/// `fulfil` on `app/order.placed`.
async fn start(backend: Backend, event_keys: EventKeys) -> (TestApp, Seen) {
    let seen = Seen::default();
    let functions = [
        recording("welcome", "app/user.signed_up", &seen),
        recording("fulfil", "app/order.placed", &seen),
    ];
    let app = TestApp::start_with(Setup {
        backend,
        with_payments: false,
        event_keys,
        register: Box::new(move |b| functions.into_iter().fold(b, |b, f| b.register(f))),
        ..Setup::default()
    })
    .await;
    (app, seen)
}

/// The request the SDK makes for one `inngest.send(…)`, byte for byte in its headers.
fn sdk_request(key: &str, body: &[u8]) -> Request<Body> {
    Request::post(format!("/e/{key}"))
        .header("content-type", "application/json")
        .header("content-length", body.len().to_string())
        .header("user-agent", SDK)
        .header("x-inngest-sdk", SDK)
        .header("x-inngest-sdk-handled", "true")
        .header(
            "x-inngest-event-id-seed",
            "1795423382332,q6cN5Zr9iR+mKlA8Xg==",
        )
        .header("x-inngest-env", "production")
        .body(Body::from(body.to_vec()))
        .expect("request")
}

/// The SDK's view of an answer: `{ ids, status, error? }`.
#[derive(Debug, Deserialize)]
struct SendEventResponse {
    ids: Vec<String>,
    status: u16,
    error: Option<String>,
}

/// As the SDK decides: a send succeeded only when the body says status 200 with no
/// error; it never looks at the HTTP status.
fn sdk_reads(bytes: &[u8]) -> Result<Vec<String>, String> {
    let answer: SendEventResponse = serde_json::from_slice(bytes)
        .map_err(|e| format!("{e}: {}", String::from_utf8_lossy(bytes)))?;
    match answer {
        SendEventResponse {
            status: 200,
            error: None,
            ids,
        } => Ok(ids),
        other => Err(format!("{other:?}")),
    }
}

async fn send(app: &TestApp, key: &str, body: impl Into<Vec<u8>>) -> (StatusCode, Value) {
    let request = Request::post(format!("/e/{key}"))
        .header("content-type", "application/json")
        .body(Body::from(body.into()))
        .expect("request");
    let response = app.router.clone().oneshot(request).await.expect("response");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Sends `events` and returns the answered ids, asserting a 200 in the SDK's shape.
async fn send_ok(app: &TestApp, events: Value) -> Vec<String> {
    let (status, body) = send(app, "NO_EVENT_KEY_SET", events.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    sdk_reads(body.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"))
}

async fn event(app: &TestApp, id: &str) -> Value {
    let (status, body) = app.get(&format!("/api/v1/events/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn counts(app: &TestApp) -> (i64, i64) {
    (
        app.count("SELECT COUNT(*) FROM events").await,
        app.count("SELECT COUNT(*) FROM runs").await,
    )
}

async fn an_sdk_send_is_answered_as_the_sdk_reads_it(backend: Backend) {
    let (app, seen) = start(backend, EventKeys::Any).await;
    let body =
        br#"[{"name":"app/user.signed_up","data":{"user_id":"user_123"},"ts":1795423382332}]"#;
    let response = app
        .router
        .clone()
        .oneshot(sdk_request("NO_EVENT_KEY_SET", body))
        .await
        .expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "{:?}",
        response.headers()
    );
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    let answer: Value = serde_json::from_slice(&bytes).expect("JSON");
    assert_eq!(answer.as_object().map(|o| o.len()), Some(2), "{answer}");
    let ids = sdk_reads(&bytes).expect("the SDK takes this answer");
    assert_eq!(ids.len(), 1);

    let stored = event(&app, &ids[0]).await;
    assert_eq!(stored["name"], "app/user.signed_up");
    assert_eq!(stored["source"], "api");
    assert_eq!(stored["ts"], 1795423382332_i64);
    assert_eq!(stored["data"], json!({"user_id": "user_123"}));
    assert_eq!(stored["runs"].as_array().map(Vec::len), Some(1), "{stored}");
    assert_eq!(stored["runs"][0]["function_id"], "welcome");

    app.settle().await;
    let seen = seen.lock().expect("seen").clone();
    assert_eq!(
        seen,
        [(
            "welcome".to_owned(),
            "app/user.signed_up".to_owned(),
            json!({"user_id": "user_123"})
        )],
        "the function reads the event's data as sent"
    );
}

async fn a_single_object_and_a_batch_are_stored_in_order(backend: Backend) {
    let (app, _) = start(backend, EventKeys::Any).await;
    let one = send_ok(&app, json!({"name": "app/one", "data": {"n": 0}})).await;
    assert_eq!(one.len(), 1);
    assert_eq!(event(&app, &one[0]).await["name"], "app/one");

    let names: Vec<String> = (1..=12).map(|n| format!("app/step.{n:02}")).collect();
    let batch: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(n, name)| json!({"name": name, "data": {"n": n + 1}, "ts": 1_700_000_000_000_i64 + n as i64}))
        .collect();
    let ids = send_ok(&app, Value::Array(batch)).await;
    assert_eq!(ids.len(), names.len());
    for (n, (id, name)) in ids.iter().zip(&names).enumerate() {
        let stored = event(&app, id).await;
        assert_eq!(&stored["name"], name, "id {n} answers event {n}");
        assert_eq!(stored["data"], json!({"n": n + 1}));
        assert_eq!(stored["ts"], 1_700_000_000_000_i64 + n as i64);
    }
    // Stored one after the other, in request order (ids are time-ordered).
    let rows: Vec<(String, String)> = app
        .store()
        .fetch_all("SELECT id, name FROM events ORDER BY id", vec![])
        .await
        .expect("events");
    let in_order: Vec<String> = rows.into_iter().skip(1).map(|(_, name)| name).collect();
    assert_eq!(in_order, names);
}

async fn each_event_starts_a_run_of_the_function_it_triggers(backend: Backend) {
    let (app, seen) = start(backend, EventKeys::Any).await;
    let ids = send_ok(
        &app,
        json!([
            {"name": "app/order.placed", "data": {"order": 1}},
            {"name": "app/user.signed_up", "data": {"user_id": "u1"}},
            {"name": "app/nobody.listens"},
            {"name": "app/order.placed", "data": {"order": 2}},
        ]),
    )
    .await;
    let mut functions = Vec::new();
    for id in &ids {
        let stored = event(&app, id).await;
        let runs = stored["runs"].as_array().expect("runs").clone();
        functions.push(
            runs.iter()
                .map(|r| r["function_id"].clone())
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(
        functions,
        [
            vec![json!("fulfil")],
            vec![json!("welcome")],
            vec![],
            vec![json!("fulfil")]
        ]
    );
    let nobody = event(&app, &ids[2]).await;
    assert_eq!(nobody["data"], json!({}), "data defaults to {{}}");

    app.settle().await;
    let mut seen = seen.lock().expect("seen").clone();
    seen.sort_by_key(|(f, _, data)| (f.clone(), data.to_string()));
    assert_eq!(
        seen,
        [
            (
                "fulfil".into(),
                "app/order.placed".into(),
                json!({"order": 1})
            ),
            (
                "fulfil".into(),
                "app/order.placed".into(),
                json!({"order": 2})
            ),
            (
                "welcome".into(),
                "app/user.signed_up".into(),
                json!({"user_id": "u1"})
            ),
        ]
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM runs WHERE status = 'completed'")
            .await,
        3
    );
}

async fn a_repeated_id_is_one_event_for_24_hours(backend: Backend) {
    let (app, seen) = start(backend, EventKeys::Any).await;
    let order = |ts: i64| json!([{"name": "app/order.placed", "id": "order-1", "data": {"order": 1}, "ts": ts}]);
    let first = send_ok(&app, order(1_795_423_382_332)).await;
    // The SDK's retry (and any resend) carries a new ts: still the same event.
    let again = send_ok(&app, order(1_795_423_399_999)).await;
    assert_eq!(again, first, "a duplicate is answered with the original id");
    // Twice in one batch, too.
    let pair = send_ok(
        &app,
        json!([
            {"name": "app/order.placed", "id": "order-1"},
            {"name": "app/order.placed", "id": "order-2", "data": {"order": 2}},
            {"name": "app/order.placed", "id": "order-2", "data": {"order": 2}},
        ]),
    )
    .await;
    assert_eq!(pair[0], first[0]);
    assert_ne!(pair[1], first[0]);
    assert_eq!(pair[2], pair[1]);
    assert_eq!(counts(&app).await, (2, 2), "one event and one run per id");
    assert_eq!(event(&app, &first[0]).await["duplicates"], 2);

    app.clock.advance(Duration::from_secs(24 * 3600 - 1));
    assert_eq!(send_ok(&app, order(1)).await, first, "still inside 24 h");
    app.clock.advance(Duration::from_secs(2));
    let later = send_ok(&app, order(1)).await;
    assert_ne!(later, first, "after 24 h the id is a new event");
    assert_eq!(counts(&app).await, (3, 3));

    // Without an id nothing is deduplicated: an identical resend is another event.
    let plain = json!([{"name": "app/order.placed", "data": {"order": 3}}]);
    let (a, b) = (
        send_ok(&app, plain.clone()).await,
        send_ok(&app, plain).await,
    );
    assert_ne!(a, b);
    assert_eq!(counts(&app).await, (5, 5));

    app.settle().await;
    let orders: Vec<Value> = seen
        .lock()
        .expect("seen")
        .iter()
        .map(|(_, _, data)| data["order"].clone())
        .collect();
    assert_eq!(orders.len(), 5, "{orders:?}");
    assert_eq!(orders.iter().filter(|o| **o == json!(1)).count(), 2);
}

async fn bad_requests_are_400_with_their_code_and_store_nothing(backend: Backend) {
    let (app, _) = start(backend, EventKeys::Any).await;
    let good = json!({"name": "app/order.placed", "data": {"order": 1}});
    let cases: Vec<(&str, String)> = vec![
        ("invalid_json", r#"[{"name": "app/order.placed""#.into()),
        ("invalid_json", "".into()),
        ("invalid_json", r#""app/order.placed""#.into()),
        ("missing_name", json!([good, {"data": {}}]).to_string()),
        ("missing_name", json!({"name": "", "data": {}}).to_string()),
        ("missing_name", json!([{"name": null}]).to_string()),
        ("invalid_name", json!([{"name": 42}]).to_string()),
        (
            "invalid_data",
            json!([good, {"name": "app/a", "data": [1, 2]}]).to_string(),
        ),
        (
            "invalid_data",
            json!([{"name": "app/a", "data": "x"}]).to_string(),
        ),
        (
            "invalid_data",
            json!([{"name": "app/a", "data": 7}]).to_string(),
        ),
        (
            "reserved_name",
            json!([good, {"name": "stripe/invoice.paid", "data": {}}]).to_string(),
        ),
        (
            "reserved_name",
            json!({"name": "stripe/checkout.session.completed"}).to_string(),
        ),
        (
            "reserved_name",
            json!([{"name": "paysteps/function.failed"}]).to_string(),
        ),
        (
            "invalid_ts",
            json!([{"name": "app/a", "ts": "yesterday"}]).to_string(),
        ),
        (
            "invalid_id",
            json!([{"name": "app/a", "id": 12}]).to_string(),
        ),
    ];
    for (code, body) in cases {
        let (status, answer) = send(&app, "NO_EVENT_KEY_SET", body.clone()).await;
        let shown: String = body.chars().take(120).collect();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{shown}: {answer}");
        assert_eq!(answer["code"], code, "{shown}: {answer}");
        assert_eq!(answer["status"], 400, "{answer}");
        assert_eq!(answer["ids"], json!([]), "{answer}");
        let message = answer["error"].as_str().unwrap_or_default();
        assert!(
            !message.is_empty(),
            "the SDK reads `error` as a string: {answer}"
        );
        assert!(sdk_reads(answer.to_string().as_bytes()).is_err());
        assert_eq!(
            counts(&app).await,
            (0, 0),
            "{code}: {shown} stored something"
        );
    }
    let (_, answer) = send(
        &app,
        "k",
        json!([good, {"name": "app/a", "data": []}]).to_string(),
    )
    .await;
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|m| m.starts_with("event 1: ")),
        "the message names the bad event: {answer}"
    );
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("paysteps_events_rejected_total{reason=\"reserved_name\"} 3"),
        "{metrics}"
    );
}

async fn a_body_over_3_mib_is_413(backend: Backend) {
    let (app, _) = start(backend, EventKeys::Any).await;
    let filler = "x".repeat(400 * 1024);
    let events: Vec<Value> = (0..8)
        .map(|n| json!({"name": "app/order.placed", "data": {"n": n, "filler": filler}}))
        .collect();
    let body = Value::Array(events).to_string();
    assert!(body.len() > 3 * 1024 * 1024);
    let (status, answer) = send(&app, "k", body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert_eq!(answer["status"], 413);
    assert_eq!(answer["code"], "payload_too_large");
    assert_eq!(counts(&app).await, (0, 0));

    // Just under the body limit, but one event is over its own 512 KiB.
    let big = json!([{"name": "app/order.placed", "data": {"filler": "x".repeat(600 * 1024)}}]);
    let (status, answer) = send(&app, "k", big.to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["code"], "event_too_large");
    assert_eq!(counts(&app).await, (0, 0));
}

async fn a_database_that_is_down_answers_503_with_retry_after(backend: Backend) {
    let (app, _) = start(backend, EventKeys::Any).await;
    app.store().close().await;
    let response = app
        .router
        .clone()
        .oneshot(sdk_request(
            "k",
            br#"[{"name":"app/order.placed","data":{}}]"#,
        ))
        .await
        .expect("response");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    let answer: Value = serde_json::from_slice(&bytes).expect("JSON");
    assert_eq!(answer["status"], 503, "{answer}");
    assert_eq!(answer["code"], "database_unavailable");
    assert!(sdk_reads(&bytes).is_err(), "the SDK retries it");
}

async fn a_configured_key_list_refuses_any_other_key(backend: Backend) {
    let keys = EventKeys::Only(vec![
        Secret::new("key_live_one"),
        Secret::new("key_live_two"),
    ]);
    let (app, _) = start(backend, keys).await;
    let body = json!([{"name": "app/order.placed", "data": {"order": 1}}]).to_string();
    for wrong in [
        "key_live_three",
        "NO_EVENT_KEY_SET",
        "key_live_one_",
        "key_live",
    ] {
        let (status, answer) = send(&app, wrong, body.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{wrong}: {answer}");
        assert_eq!(answer["status"], 401);
        assert_eq!(answer["error"], "Event key not found");
        assert_eq!(answer["code"], "event_key_not_found");
        assert_eq!(counts(&app).await, (0, 0));
    }
    // The key is checked before the body: a bad body under a wrong key is still 401.
    let (status, _) = send(&app, "nope", "not json").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    for (n, right) in ["key_live_one", "key_live_two"].into_iter().enumerate() {
        let response = app
            .router
            .clone()
            .oneshot(sdk_request(right, body.as_bytes()))
            .await
            .expect("response");
        assert_eq!(response.status(), StatusCode::OK, "{right}");
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        assert_eq!(sdk_reads(&bytes).expect("accepted").len(), 1);
        assert_eq!(counts(&app).await, (n as i64 + 1, n as i64 + 1));
    }

    // `serve` with no PAYSTEPS_EVENT_KEY: every key is refused.
    let (closed, _) = start(backend, EventKeys::Only(Vec::new())).await;
    for key in ["NO_EVENT_KEY_SET", "key_live_one", "%20"] {
        let (status, answer) = send(&closed, key, body.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{key:?}: {answer}");
    }
    assert_eq!(counts(&closed).await, (0, 0));
}

/// The binary, in an empty directory (no `.env`) and with no paysteps variables set.
fn paysteps(dir: &std::path::Path, args: &[String]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_paysteps"));
    command.args(args).current_dir(dir);
    for var in ["PAYSTEPS_URL", "PAYSTEPS_EVENT_KEY", "DATABASE_URL"] {
        command.env_remove(var);
    }
    command.output().expect("run paysteps")
}

async fn run_send(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let (dir, args) = (
        dir.to_owned(),
        args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>(),
    );
    let output = tokio::task::spawn_blocking(move || paysteps(&dir, &args))
        .await
        .expect("join");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), said)
}

async fn paysteps_send_prints_the_event_and_the_run_it_started(backend: Backend) {
    let (app, _) = start(backend, EventKeys::only("key_cli")).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let router = app.router.clone();
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let dir = tempfile::tempdir().expect("dir");
    let data = r#"{"user_id":"user_9"}"#;
    let args = [
        "send",
        "app/user.signed_up",
        "--data",
        data,
        "--url",
        &url,
        "--key",
        "key_cli",
        "--id",
        "signup-9",
    ];
    let (ok, said) = run_send(dir.path(), &args).await;
    assert!(ok, "{said}");
    let rows: Vec<(String, String, String)> = app
        .store()
        .fetch_all(
            "SELECT e.id, r.id, r.function_id FROM events e JOIN runs r ON r.event_id = e.id",
            vec![],
        )
        .await
        .expect("rows");
    let [(event_id, run_id, function)] = rows.as_slice() else {
        panic!("one event with one run expected: {rows:?}\n{said}");
    };
    assert_eq!(function, "welcome");
    assert!(
        said.contains(&format!("sent app/user.signed_up event {event_id}")),
        "{said}"
    );
    assert!(
        said.contains(&format!("run started: {run_id} (welcome")),
        "{said}"
    );
    let stored = event(&app, event_id).await;
    assert_eq!(stored["data"], json!({"user_id": "user_9"}));

    // The same --id again: the first event, and nothing new started.
    let (ok, again) = run_send(dir.path(), &args).await;
    assert!(ok, "{again}");
    assert!(again.contains(event_id.as_str()), "{again}");
    assert!(again.contains("already received"), "{again}");
    assert!(!again.contains("run started"), "{again}");
    assert_eq!(counts(&app).await, (1, 1));

    // A wrong key: refused, said, and not echoed.
    let wrong = [
        "send",
        "app/user.signed_up",
        "--data",
        data,
        "--url",
        &url,
        "--key",
        "key_wrong_secret",
    ];
    let (ok, said) = run_send(dir.path(), &wrong).await;
    assert!(!ok, "{said}");
    assert!(said.contains("Event key not found"), "{said}");
    assert!(
        !said.contains("key_wrong_secret"),
        "the key was printed: {said}"
    );

    // Nothing listening: said, and the key is not echoed either.
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let nowhere = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let (ok, said) = run_send(
        dir.path(),
        &[
            "send",
            "app/x",
            "--url",
            &nowhere,
            "--key",
            "key_wrong_secret",
        ],
    )
    .await;
    assert!(!ok && said.contains("is `paysteps dev` running?"), "{said}");
    assert!(
        !said.contains("key_wrong_secret"),
        "the key was printed: {said}"
    );

    // Data that is not an object is refused before sending.
    let (ok, said) = run_send(
        dir.path(),
        &[
            "send",
            "app/user.signed_up",
            "--data",
            "[1]",
            "--key",
            "key_cli",
            "--url",
            &url,
        ],
    )
    .await;
    assert!(!ok && said.contains("JSON object"), "{said}");
    assert_eq!(counts(&app).await, (1, 1));
    server.abort();
}
