//! Outgoing webhooks: endpoints managed over HTTP, business events emitted by the Stripe
//! functions, signed deliveries verified by a receiver on loopback with the official
//! `standardwebhooks` verifier, retries, 410, rotation, destination safety, resend.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use paysteps::testing::store::{NewRun, Write};
use paysteps::testing::stripe::fixtures::Overrides;
use paysteps::testing::webhooks::Destinations;
use paysteps::{EventId, RunId};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::common::serve::Serve;
use crate::common::{Backend, Setup, TestApp, TestDb, first_run};

crate::on_both_backends!(
    a_delivery_answered_500_twice_then_200_succeeds_once_with_three_attempts,
    gone_disables_the_endpoint_and_alerts,
    a_retried_or_replayed_stripe_run_notifies_once,
    rotation_signs_with_both_secrets_for_a_day,
    private_destinations_are_refused_under_serve,
    an_endpoint_gets_only_the_events_it_subscribed_to,
    a_run_that_fails_for_good_emits_run_failed,
    a_longer_retry_after_is_honoured,
    redirects_are_not_followed,
    an_endpoint_failing_for_five_days_is_disabled,
    endpoints_are_managed_and_secrets_stay_out_of_listings,
    the_cli_manages_endpoints_of_a_serve_process_that_refuses_loopback,
    the_events_billing_teams_act_on_are_delivered_and_verify,
);

/// One request the receiver got.
#[derive(Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }

    fn verifies_with(&self, secret: &str) -> bool {
        standardwebhooks::Webhook::new(secret)
            .expect("secret")
            .verify(&self.body, &self.headers)
            .is_ok()
    }
}

/// Answers still to give: a status and an optional `name: value` header.
type Script = Arc<Mutex<VecDeque<(u16, Option<&'static str>)>>>;

/// A receiver on a loopback port: answers from a script (then 200) and keeps every request.
struct Receiver {
    base: String,
    received: Arc<Mutex<Vec<Received>>>,
    script: Script,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start() -> Receiver {
        let received = Arc::new(Mutex::new(Vec::new()));
        let script: Script = Arc::new(Mutex::new(VecDeque::new()));
        let (got, plan) = (received.clone(), script.clone());
        let app = Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let (got, plan) = (got.clone(), plan.clone());
            async move {
                got.lock().unwrap().push(Received {
                    path: uri.path().to_owned(),
                    headers,
                    body,
                });
                let (status, header) = plan.lock().unwrap().pop_front().unwrap_or((200, None));
                let mut response: Response =
                    (StatusCode::from_u16(status).unwrap(), "receiver says hi").into_response();
                if let Some((name, value)) = header.and_then(|h| h.split_once(": ")) {
                    response.headers_mut().insert(name, value.parse().unwrap());
                }
                response
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            base,
            received,
            script,
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn answer(&self, answers: &[(u16, Option<&'static str>)]) {
        self.script.lock().unwrap().extend(answers.iter().copied());
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn app(backend: Backend, destinations: Destinations) -> TestApp {
    TestApp::start_with(Setup {
        backend,
        webhooks: Some(destinations),
        ..Setup::default()
    })
    .await
}

async fn api(
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
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

/// Creates an endpoint and returns (id, secret).
async fn add_endpoint(app: &TestApp, url: &str, events: &[&str]) -> (String, String) {
    let (status, body) = api(
        app,
        Method::POST,
        "/api/v1/webhooks",
        Some(json!({ "url": url, "events": events })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let secret = body["secret"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    (body["id"].as_str().expect("id").to_owned(), secret)
}

async fn endpoint(app: &TestApp, id: &str) -> Value {
    let (status, body) = api(app, Method::GET, &format!("/api/v1/webhooks/{id}"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn a_delivery_answered_500_twice_then_200_succeeds_once_with_three_attempts(
    backend: Backend,
) {
    let app = app(backend, Destinations::AllowPrivate).await;
    let receiver = Receiver::start().await;
    receiver.answer(&[(500, None), (500, None)]);
    let (id, secret) = add_endpoint(&app, &receiver.url("/hooks"), &["payment.succeeded"]).await;

    app.deliver_fixture("payment_intent.succeeded", Overrides::default())
        .await;
    app.settle().await;

    let got = receiver.received();
    assert_eq!(got.len(), 3, "three attempts reach the receiver");
    for request in &got {
        assert!(request.verifies_with(&secret), "every attempt verifies");
        assert_eq!(request.header("content-type"), "application/json");
    }
    let webhook_id = got[0].header("webhook-id");
    assert!(webhook_id.starts_with("msg_"), "{webhook_id}");
    assert!(
        got.iter().all(|r| r.header("webhook-id") == webhook_id),
        "stable id"
    );
    assert!(
        got.iter().all(|r| r.body == got[0].body),
        "same body each time"
    );
    let body = got[0].json();
    assert_eq!(body["type"], "payment.succeeded");
    assert!(
        body["data"]["payment_id"]
            .as_str()
            .unwrap()
            .starts_with("pi_"),
        "{body}"
    );
    assert_eq!(body["data"]["status"], "succeeded");
    assert!(body["timestamp"].is_string());

    let shown = endpoint(&app, &id).await;
    assert_eq!(shown["stats"]["success_rate"], 1.0, "{shown}");
    let deliveries = shown["recent_deliveries"].as_array().expect("deliveries");
    assert_eq!(deliveries.len(), 1, "exactly one delivery: {shown}");
    let delivery = &deliveries[0];
    assert_eq!(delivery["status"], "succeeded");
    assert_eq!(delivery["webhook_id"], webhook_id.as_str());
    let codes: Vec<i64> = delivery["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| a["status_code"].as_i64().unwrap_or(0))
        .collect();
    assert_eq!(codes, vec![500, 500, 200], "{delivery}");
    let first = &delivery["attempts"][0];
    assert_eq!(first["response_excerpt"], "receiver says hi");
    assert!(
        first["error"].as_str().unwrap_or("").contains("500"),
        "{first}"
    );
    assert!(first["latency_ms"].as_i64().is_some());
    let at: Vec<i64> = delivery["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["at"].as_i64().unwrap())
        .collect();
    assert!(at[1] - at[0] >= 5_000, "second attempt after 5 s: {at:?}");
    assert!(
        at[2] - at[1] >= 300_000,
        "third attempt after 5 min: {at:?}"
    );

    // Resend: a new delivery, the same webhook-id and body, verified again.
    let delivery_id = delivery["id"].as_str().unwrap();
    let (status, resent) = api(
        &app,
        Method::POST,
        &format!("/api/v1/webhook-deliveries/{delivery_id}/resend"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{resent}");
    assert_eq!(resent["resend_of"], delivery_id);
    app.settle().await;
    let got = receiver.received();
    assert_eq!(got.len(), 4);
    assert_eq!(got[3].header("webhook-id"), webhook_id);
    assert_eq!(got[3].body, got[0].body);
    assert!(got[3].verifies_with(&secret));
    let (status, again) = api(
        &app,
        Method::GET,
        &format!(
            "/api/v1/webhook-deliveries/{}",
            resent["id"].as_str().unwrap()
        ),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["status"], "succeeded", "{again}");
    let (status, _) = api(
        &app,
        Method::POST,
        "/api/v1/webhook-deliveries/whd_nope/resend",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn gone_disables_the_endpoint_and_alerts(backend: Backend) {
    let app = app(backend, Destinations::AllowPrivate).await;
    let gone = Receiver::start().await;
    gone.answer(&[(410, None)]);
    let watcher = Receiver::start().await;
    let (id, _) = add_endpoint(&app, &gone.url("/gone"), &[]).await;
    let (_, watcher_secret) =
        add_endpoint(&app, &watcher.url("/alerts"), &["endpoint.disabled"]).await;

    app.deliver_fixture("payment_intent.succeeded", Overrides::default())
        .await;
    app.settle().await;

    assert_eq!(gone.received().len(), 1, "410 is not retried");
    let shown = endpoint(&app, &id).await;
    assert_eq!(shown["status"], "disabled", "{shown}");
    assert!(
        shown["disabled_reason"].as_str().unwrap().contains("410"),
        "{shown}"
    );
    assert_eq!(shown["recent_deliveries"][0]["status"], "failed");

    let alerts = watcher.received();
    assert_eq!(alerts.len(), 1, "one endpoint.disabled alert");
    assert!(alerts[0].verifies_with(&watcher_secret));
    let alert = alerts[0].json();
    assert_eq!(alert["type"], "endpoint.disabled");
    assert_eq!(alert["data"]["endpoint_id"], id.as_str());

    // A disabled endpoint gets nothing more until resumed.
    app.deliver_fixture("payment_intent.succeeded", Overrides::default())
        .await;
    app.settle().await;
    assert_eq!(gone.received().len(), 1);
    let (status, resumed) = api(
        &app,
        Method::POST,
        &format!("/api/v1/webhooks/{id}/resume"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(resumed["status"], "active");
    assert_eq!(resumed["disabled_reason"], Value::Null);
    app.deliver_fixture("payment_intent.succeeded", Overrides::default())
        .await;
    app.settle().await;
    assert_eq!(gone.received().len(), 2);
}

async fn a_retried_or_replayed_stripe_run_notifies_once(backend: Backend) {
    let app = app(backend, Destinations::AllowPrivate).await;
    let receiver = Receiver::start().await;
    let (_, secret) = add_endpoint(&app, &receiver.url("/hooks"), &["*"]).await;

    // The step after the notification fails twice: the run is retried from the top.
    app.faults.fail("log-success", 2);
    let answer = app
        .deliver_fixture("payment_intent.succeeded", Overrides::default())
        .await;
    let run_id = first_run(&answer);
    app.settle().await;
    let run = app.run(&run_id).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(app.faults.attempts("log-success"), 3);
    let got = receiver.received();
    assert_eq!(got.len(), 1, "a retried run notifies once");
    assert!(got[0].verifies_with(&secret));

    // A second run of the same function for the same event, as a replay makes it.
    let event_id: EventId = run["event_id"].as_str().expect("event id").parse().unwrap();
    let replay = RunId::new();
    let replay_run = NewRun {
        id: replay.clone(),
        function_id: run["function_id"].as_str().unwrap().parse().unwrap(),
        replay_of: Some(run_id.parse().unwrap()),
    };
    let now = app.clock.now_ms();
    app.store()
        .write(Write::isolated(), move |tx| {
            Box::pin(async move { tx.insert_run(&event_id, &replay_run, now).await })
        })
        .await
        .expect("replay run");
    app.settle().await;
    let replayed = app.run(&replay).await;
    assert_eq!(replayed["status"], "completed", "{replayed}");
    let notify = replayed["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "notify payment.succeeded")
        .cloned()
        .unwrap_or_else(|| panic!("no notify step in {replayed}"));
    assert_eq!(notify["output"]["duplicate"], true, "{notify}");
    assert_eq!(
        receiver.received().len(),
        1,
        "a replayed run does not notify again"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM webhook_deliveries").await,
        1
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM webhook_events").await, 1);
}

async fn rotation_signs_with_both_secrets_for_a_day(backend: Backend) {
    let app = app(backend, Destinations::AllowPrivate).await;
    let receiver = Receiver::start().await;
    let (id, old) = add_endpoint(&app, &receiver.url("/hooks"), &["payment.succeeded"]).await;
    let (status, rotated) = api(
        &app,
        Method::POST,
        &format!("/api/v1/webhooks/{id}/rotate"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);

    app.deliver_fixture("payment_intent.succeeded", Overrides::default())
        .await;
    app.settle().await;
    let got = receiver.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header("webhook-signature").split(' ').count(), 2);
    assert!(got[0].verifies_with(&old), "the old secret still verifies");
    assert!(got[0].verifies_with(&new), "the new secret verifies");

    // A day later only the new secret signs.
    app.clock.advance(Duration::from_secs(24 * 3600 + 60));
    app.deliver_fixture("payment_intent.succeeded", Overrides::default())
        .await;
    app.settle().await;
    let got = receiver.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].header("webhook-signature").split(' ').count(), 1);
    assert!(got[1].verifies_with(&new));
    assert!(!got[1].verifies_with(&old), "the old secret has expired");
}

async fn private_destinations_are_refused_under_serve(backend: Backend) {
    let app = app(backend, Destinations::PublicOnly).await;
    for url in [
        "http://127.0.0.1:9/hooks",
        "http://localhost:3000/",
        "http://10.0.0.7/",
        "http://192.168.1.10/",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/",
        "http://[::1]/",
        "http://[fd00::1]/",
    ] {
        let (status, body) = api(
            &app,
            Method::POST,
            "/api/v1/webhooks",
            Some(json!({ "url": url })),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {body}");
        assert_eq!(
            body["error"]["code"], "destination_refused",
            "{url}: {body}"
        );
    }
    let (_, list) = api(&app, Method::GET, "/api/v1/webhooks", None).await;
    assert_eq!(list["data"], json!([]), "nothing was stored");

    // An endpoint already pointing inside (a name that now resolves to loopback) is
    // refused again at delivery time.
    let receiver = Receiver::start().await;
    let url = receiver.url("/hooks");
    let now = app.clock.now_ms();
    app.store()
        .write(Write::isolated(), move |tx| {
            Box::pin(async move {
                paysteps::testing::webhooks::repo::insert_endpoint(
                    tx,
                    &paysteps::testing::webhooks::repo::NewEndpoint {
                        id: "whep_inside".into(),
                        url,
                        description: None,
                        events: "[\"*\"]".into(),
                        secret: paysteps::testing::webhooks::secret::generate(),
                    },
                    now,
                )
                .await
            })
        })
        .await
        .expect("endpoint");
    app.deliver_fixture("payment_intent.succeeded", Overrides::default())
        .await;
    app.settle().await;
    assert!(receiver.received().is_empty(), "nothing reaches loopback");
    let shown = endpoint(&app, "whep_inside").await;
    let delivery = &shown["recent_deliveries"][0];
    assert_eq!(delivery["status"], "failed", "{shown}");
    assert_eq!(
        delivery["attempt_count"], 10,
        "the whole schedule: {delivery}"
    );
    let error = delivery["attempts"][0]["error"].as_str().unwrap_or("");
    assert!(error.contains("loopback"), "{error}");
}

async fn an_endpoint_gets_only_the_events_it_subscribed_to(backend: Backend) {
    let app = app(backend, Destinations::AllowPrivate).await;
    let failures = Receiver::start().await;
    let invoices = Receiver::start().await;
    let (_, failures_secret) =
        add_endpoint(&app, &failures.url("/failures"), &["payment.failed"]).await;
    add_endpoint(&app, &invoices.url("/invoices"), &["invoice.paid"]).await;

    app.deliver_fixture("invoice.paid", Overrides::default())
        .await;
    app.settle().await;
    assert!(
        failures.received().is_empty(),
        "payment.failed gets no invoice.paid"
    );
    let got = invoices.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].json()["type"], "invoice.paid");
    assert!(
        got[0].json()["data"]["invoice_id"]
            .as_str()
            .unwrap()
            .starts_with("in_")
    );

    app.deliver_fixture("payment_intent.payment_failed", Overrides::default())
        .await;
    app.settle().await;
    let got = failures.received();
    assert_eq!(got.len(), 1);
    assert!(got[0].verifies_with(&failures_secret));
    let body = got[0].json();
    assert_eq!(body["type"], "payment.failed");
    assert_eq!(body["data"]["status"], "failed");
    assert!(body["data"]["failure_code"].is_string(), "{body}");
    assert_eq!(invoices.received().len(), 1);

    // An event nobody subscribes to is recorded, and queues nothing.
    app.deliver_fixture("customer.subscription.updated", Overrides::default())
        .await;
    app.settle().await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM webhook_events WHERE event_type = 'subscription.updated'")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM events WHERE name LIKE 'paysteps/webhook.%'")
            .await,
        2,
        "only events with deliveries reach the engine's journal"
    );
    assert_eq!(failures.received().len() + invoices.received().len(), 2);
}

async fn a_run_that_fails_for_good_emits_run_failed(backend: Backend) {
    let app = app(backend, Destinations::AllowPrivate).await;
    let receiver = Receiver::start().await;
    let (_, secret) = add_endpoint(&app, &receiver.url("/alerts"), &["run.failed"]).await;
    app.faults.fail_always("record-payment");
    let answer = app
        .deliver_fixture("payment_intent.succeeded", Overrides::default())
        .await;
    let run_id = first_run(&answer);
    app.settle().await;
    assert_eq!(app.run(&run_id).await["status"], "failed");
    let got = receiver.received();
    assert_eq!(got.len(), 1, "one run.failed alert");
    assert!(got[0].verifies_with(&secret));
    let body = got[0].json();
    assert_eq!(body["type"], "run.failed");
    assert_eq!(body["data"]["run_id"], run_id.as_str());
    assert_eq!(body["data"]["function_id"], "payment-intent-succeeded");
    assert!(
        body["data"]["error"]
            .as_str()
            .unwrap()
            .contains("record-payment")
    );
}

async fn a_longer_retry_after_is_honoured(backend: Backend) {
    let app = app(backend, Destinations::AllowPrivate).await;
    let receiver = Receiver::start().await;
    receiver.answer(&[(429, Some("retry-after: 3600"))]);
    let (id, _) = add_endpoint(&app, &receiver.url("/hooks"), &[]).await;
    app.deliver_fixture("payment_intent.succeeded", Overrides::default())
        .await;
    app.settle().await;
    assert_eq!(receiver.received().len(), 2);
    let shown = endpoint(&app, &id).await;
    let attempts = &shown["recent_deliveries"][0]["attempts"];
    let gap = attempts[1]["at"].as_i64().unwrap() - attempts[0]["at"].as_i64().unwrap();
    assert!(gap >= 3_600_000, "waited {gap} ms, not the hour asked for");
    assert_eq!(shown["recent_deliveries"][0]["status"], "succeeded");
}

async fn an_endpoint_failing_for_five_days_is_disabled(backend: Backend) {
    let app = app(backend, Destinations::AllowPrivate).await;
    let down = Receiver::start().await;
    down.answer(&[(500, None); 40]);
    let watcher = Receiver::start().await;
    let (id, _) = add_endpoint(&app, &down.url("/down"), &["payment.succeeded"]).await;
    add_endpoint(&app, &watcher.url("/alerts"), &["endpoint.disabled"]).await;

    // The first event exhausts its schedule (about three days) without disabling.
    app.deliver_fixture("payment_intent.succeeded", Overrides::default())
        .await;
    app.settle().await;
    assert_eq!(down.received().len(), 10);
    assert_eq!(endpoint(&app, &id).await["status"], "active");

    // The next one keeps failing until five days have passed since the first failure.
    app.deliver_fixture("payment_intent.succeeded", Overrides::default())
        .await;
    app.settle().await;
    let shown = endpoint(&app, &id).await;
    assert_eq!(shown["status"], "disabled", "{shown}");
    assert!(
        shown["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("5 days")
    );
    let alerts = watcher.received();
    assert_eq!(alerts.len(), 1, "one alert");
    assert_eq!(alerts[0].json()["data"]["endpoint_id"], id.as_str());
    assert!(
        down.received().len() < 20,
        "the second schedule was cut short"
    );
}

async fn endpoints_are_managed_and_secrets_stay_out_of_listings(backend: Backend) {
    let app = app(backend, Destinations::AllowPrivate).await;
    let (id, secret) = add_endpoint(
        &app,
        "http://127.0.0.1:9/crm",
        &["payment.failed", "subscription.updated"],
    )
    .await;
    let (status, list) = api(&app, Method::GET, "/api/v1/webhooks", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["data"][0]["id"], id.as_str());
    assert_eq!(
        list["data"][0]["events"],
        json!(["payment.failed", "subscription.updated"])
    );
    assert!(!list.to_string().contains(&secret), "no secret in listings");
    assert!(!endpoint(&app, &id).await.to_string().contains(&secret));

    let (status, body) = api(
        &app,
        Method::POST,
        "/api/v1/webhooks",
        Some(json!({ "url": "http://127.0.0.1:9/", "events": ["payment.refunded"] })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "unknown_event_type");
    let (status, body) = api(
        &app,
        Method::POST,
        "/api/v1/webhooks",
        Some(json!({ "url": "ftp://example.com/" })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "invalid_url");

    let (status, updated) = api(
        &app,
        Method::PATCH,
        &format!("/api/v1/webhooks/{id}"),
        Some(json!({ "events": ["*"], "status": "paused" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["events"], json!(["*"]));
    assert_eq!(updated["status"], "paused");
    let (status, _) = api(
        &app,
        Method::PATCH,
        &format!("/api/v1/webhooks/{id}"),
        Some(json!({ "status": "deleted" })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = api(
        &app,
        Method::DELETE,
        &format!("/api/v1/webhooks/{id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api(&app, Method::GET, &format!("/api/v1/webhooks/{id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api(
        &app,
        Method::DELETE,
        &format!("/api/v1/webhooks/{id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let page = app
        .router
        .clone()
        .oneshot(
            Request::get("/assets/webhooks.js")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = axum::body::to_bytes(page.into_body(), usize::MAX)
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&html).contains("/webhook-deliveries/"));
}

/// Runs `paysteps webhooks <args…>` against `port`; returns (success, stdout, stderr).
fn cli(port: u16, args: &[&str]) -> (bool, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_paysteps"))
        .arg("webhooks")
        .args(args)
        .args(["--url", &format!("http://127.0.0.1:{port}")])
        .args(["--token", crate::common::serve::DASHBOARD_TOKEN])
        .env_remove("PAYSTEPS_URL")
        .env_remove("PAYSTEPS_DASHBOARD_TOKEN")
        .output()
        .expect("run paysteps webhooks");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn the_cli_manages_endpoints_of_a_serve_process_that_refuses_loopback(backend: Backend) {
    let db = TestDb::create(backend).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = Serve::start("serve", &db.url(), 2, dir.path());
    server.wait_healthy(&reqwest::Client::new()).await;
    let port = server.port;

    let (ok, _, err) = cli(port, &["add", "http://127.0.0.1:9/hook"]);
    assert!(!ok, "serve must refuse a loopback endpoint");
    assert!(err.contains("loopback"), "{err}");

    let (ok, out, err) = cli(
        port,
        &[
            "add",
            "https://93.184.215.14/paysteps",
            "--events",
            "payment.failed,subscription.updated",
        ],
    );
    assert!(ok, "{err}");
    let id = out
        .split_whitespace()
        .find(|w| w.starts_with("whep_"))
        .unwrap_or_else(|| panic!("no id in {out}"))
        .to_owned();
    let secret = out
        .split_whitespace()
        .find(|w| w.starts_with("whsec_"))
        .unwrap_or_else(|| panic!("no secret in {out}"))
        .to_owned();

    let (ok, out, _) = cli(port, &["list"]);
    assert!(ok);
    assert!(
        out.contains(&id) && out.contains("payment.failed,subscription.updated"),
        "{out}"
    );
    assert!(!out.contains(&secret), "list never shows the secret");

    let (ok, out, _) = cli(port, &["rotate", &id]);
    assert!(ok);
    assert!(out.contains("whsec_") && !out.contains(&secret), "{out}");
    let (ok, out, _) = cli(port, &["pause", &id]);
    assert!(ok && out.contains("paused"), "{out}");
    let (ok, _, _) = cli(port, &["rm", &id]);
    assert!(ok);
    let (ok, out, _) = cli(port, &["list"]);
    assert!(ok && out.contains("no webhook endpoints"), "{out}");
    let (ok, _, err) = cli(port, &["resend", "whd_missing"]);
    assert!(!ok && err.contains("404"), "{err}");
    server.kill();
}

async fn redirects_are_not_followed(backend: Backend) {
    let app = app(backend, Destinations::AllowPrivate).await;
    let receiver = Receiver::start().await;
    receiver.answer(&[(307, Some("location: /elsewhere"))]);
    let (id, secret) = add_endpoint(&app, &receiver.url("/hooks"), &[]).await;
    app.deliver_fixture("payment_intent.succeeded", Overrides::default())
        .await;
    app.settle().await;
    let got = receiver.received();
    assert_eq!(got.len(), 2, "the redirect is retried, never followed");
    assert!(got.iter().all(|r| r.verifies_with(&secret)));
    assert!(
        got.iter().all(|r| r.path == "/hooks"),
        "nothing went to /elsewhere"
    );
    let shown = endpoint(&app, &id).await;
    let attempts = &shown["recent_deliveries"][0]["attempts"];
    assert_eq!(attempts[0]["status_code"], 307, "{shown}");
    assert_eq!(attempts[1]["status_code"], 200);
}

/// A trial about to end, a renewal that needs 3-D Secure, a bank debit on its way and an
/// abandoned payment each reach an endpoint as their business event, signed so that the
/// `standardwebhooks` crate verifies it; the payment's status follows the PaymentIntent.
async fn the_events_billing_teams_act_on_are_delivered_and_verify(backend: Backend) {
    let app = app(backend, Destinations::AllowPrivate).await;
    let receiver = Receiver::start().await;
    let (_, secret) = add_endpoint(
        &app,
        &receiver.url("/billing"),
        &[
            "subscription.trial_will_end",
            "invoice.payment_action_required",
            "payment.processing",
            "payment.canceled",
            "invoice.upcoming",
            "dispute.created",
            "dispute.closed",
        ],
    )
    .await;

    app.deliver_fixture("customer.subscription.trial_will_end", Overrides::default())
        .await;
    app.deliver_fixture("invoice.payment_action_required", Overrides::default())
        .await;
    app.settle().await;
    let mut processing =
        crate::common::fixture_event("payment_intent.succeeded", Overrides::default());
    processing["type"] = "payment_intent.processing".into();
    processing["data"]["object"]["status"] = "processing".into();
    let (status, answer) = app.deliver(&processing).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    app.settle().await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM payments WHERE status = 'processing'")
            .await,
        1
    );
    let mut canceled =
        crate::common::fixture_event("payment_intent.succeeded", Overrides::default());
    canceled["type"] = "payment_intent.canceled".into();
    canceled["created"] = (processing["created"].as_i64().expect("created") + 60).into();
    canceled["data"]["object"]["status"] = "canceled".into();
    let (status, answer) = app.deliver(&canceled).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    app.settle().await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM payments WHERE status = 'canceled'")
            .await,
        1,
        "the newer event's status"
    );

    for name in [
        "invoice.upcoming",
        "charge.dispute.created",
        "charge.dispute.funds_withdrawn",
        "charge.dispute.updated",
        "charge.dispute.closed",
    ] {
        app.deliver_fixture(name, Overrides::default()).await;
        app.settle().await;
    }

    let got = receiver.received();
    let types: Vec<String> = got
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        types,
        [
            "subscription.trial_will_end",
            "invoice.payment_action_required",
            "payment.processing",
            "payment.canceled",
            "invoice.upcoming",
            "dispute.created",
            "dispute.closed",
        ],
        "{types:?}"
    );
    assert!(got.iter().all(|r| r.verifies_with(&secret)));
    let trial = got[0].json();
    assert!(trial["data"]["trial_end"].is_i64(), "{trial}");
    assert_eq!(trial["data"]["user_id"], "user_123", "{trial}");
    let action = got[1].json();
    assert!(
        action["data"]["hosted_invoice_url"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://invoice.stripe.com/")),
        "{action}"
    );
    assert_eq!(got[2].json()["data"]["status"], "processing");
    assert_eq!(got[3].json()["data"]["status"], "canceled");
    let upcoming = got[4].json();
    assert_eq!(upcoming["data"]["amount_due"], 2_000, "{upcoming}");
    assert_eq!(
        upcoming["data"]["subscription_id"], "sub_1Pgc6rB7WZ01zgkWNy0Cn5nw",
        "{upcoming}"
    );
    assert!(
        upcoming["data"]["next_payment_attempt"].is_i64(),
        "{upcoming}"
    );
    let opened = got[5].json();
    assert_eq!(opened["data"]["dispute_id"], "dp_1Pgc71B7WZ01zgkWMevJiAUx");
    assert_eq!(opened["data"]["evidence_due_by"], 1_793_750_399, "{opened}");
    assert_eq!(opened["data"]["reason"], "fraudulent");
    assert_eq!(opened["data"]["outcome"], Value::Null);
    let closed = got[6].json();
    assert_eq!(closed["data"]["outcome"], "lost", "{closed}");
    assert_eq!(closed["data"]["payment_id"], "pi_3Pgc6tB7WZ01zgkW1j59pjom");
}
