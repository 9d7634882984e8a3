//! `STRIPE_API_KEY`: the subscription functions store each subscription as the Stripe
//! API answers it, so the order of deliveries does not matter. The API is a stand-in
//! served on loopback by the test, which scripts its answers and records its requests.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use paysteps::testing::stripe::api::StripeApi;
use paysteps::testing::stripe::fixtures::Overrides;
use serde_json::{Value, json};

use crate::common::{Backend, Setup, TestApp, first_run, fixture_event};

crate::on_both_backends!(
    the_apis_state_is_stored_whatever_the_delivery_order,
    a_429_and_a_timeout_are_retried_until_the_api_answers,
    a_refused_request_fails_the_run_without_retries,
    a_connected_accounts_subscription_is_asked_for_that_account,
);

const KEY: &str = "rk_test_read_only";
const SUBSCRIPTION: &str = "sub_1Pgc6rB7WZ01zgkWNy0Cn5nw";

/// One scripted answer of the stand-in.
enum Reply {
    Status(u16),
    Hang(Duration),
}

/// A request the stand-in received.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    authorization: Option<String>,
    account: Option<String>,
}

#[derive(Default)]
struct Fake {
    script: VecDeque<Reply>,
    current: Value,
    seen: Vec<Seen>,
}

#[derive(Clone, Default)]
struct FakeStripe(Arc<Mutex<Fake>>);

impl FakeStripe {
    /// Serves the stand-in on a loopback port; answers `current` unless scripted.
    async fn start(current: Value) -> (FakeStripe, String) {
        let fake = FakeStripe::default();
        fake.0.lock().unwrap().current = current;
        let router = Router::new()
            .route("/v1/subscriptions/{id}", get(subscription))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, router).await });
        (fake, base)
    }

    fn script(&self, replies: Vec<Reply>) {
        self.0.lock().unwrap().script.extend(replies);
    }

    fn seen(&self) -> Vec<Seen> {
        self.0.lock().unwrap().seen.clone()
    }
}

async fn subscription(
    State(fake): State<FakeStripe>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (reply, current) = {
        let mut fake = fake.0.lock().unwrap();
        fake.seen.push(Seen {
            path: format!("/v1/subscriptions/{id}"),
            authorization: header("authorization"),
            account: header("stripe-account"),
        });
        (fake.script.pop_front(), fake.current.clone())
    };
    match reply {
        Some(Reply::Status(code)) => {
            let status = StatusCode::from_u16(code).expect("status");
            let body =
                json!({"error": {"message": format!("scripted {code}"), "type": "api_error"}});
            (status, axum::Json(body)).into_response()
        }
        Some(Reply::Hang(pause)) => {
            tokio::time::sleep(pause).await;
            axum::Json(current).into_response()
        }
        None if current["id"] == id.as_str() => axum::Json(current).into_response(),
        None => {
            let body = json!({"error": {"message": format!("No such subscription: '{id}'")}});
            (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
        }
    }
}

/// The subscription as Stripe holds it now: active, on a new price, two seats, canceling
/// at the period's end.
fn current_subscription() -> Value {
    let event = fixture_event("customer.subscription.updated", Overrides::default());
    let mut s = event["data"]["object"].clone();
    s["status"] = json!("active");
    s["cancel_at_period_end"] = json!(true);
    s["items"]["data"][0]["price"]["id"] = json!("price_now");
    s["items"]["data"][0]["quantity"] = json!(2);
    s
}

async fn app_asking(backend: Backend, base: &str) -> TestApp {
    TestApp::start_with(Setup {
        backend,
        stripe_api: Some(StripeApi::with_timeout(
            base,
            KEY,
            Duration::from_millis(300),
        )),
        ..Setup::default()
    })
    .await
}

async fn entitlement(app: &TestApp, user: &str) -> Value {
    let (status, body) = app.get(&format!("/api/v1/users/{user}/subscription")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// A stale `created` (incomplete) delivered after the `updated`, and an `updated` older
/// than what Stripe holds: each run stores what the API answers, so the user ends on
/// Stripe's current state, and every request carried the key.
async fn the_apis_state_is_stored_whatever_the_delivery_order(backend: Backend) {
    let (fake, base) = FakeStripe::start(current_subscription()).await;
    let app = app_asking(backend, &base).await;
    let created = fixture_event("customer.subscription.created", Overrides::default());
    let updated = fixture_event("customer.subscription.updated", Overrides::default());
    for event in [&updated, &created] {
        let (status, answer) = app.deliver(event).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        app.settle().await;
        let run = app.run(&first_run(&answer)).await;
        assert_eq!(run["status"], "completed", "{run}");
    }
    let body = entitlement(&app, "user_123").await;
    let s = &body["subscription"];
    assert_eq!(body["subscribed"], true, "{body}");
    assert_eq!(s["status"], "active", "{body}");
    assert_eq!(s["source"], "api", "{body}");
    assert_eq!(s["cancel_at_period_end"], true, "{body}");
    assert_eq!(s["items"][0]["price"], "price_now", "{body}");
    assert_eq!(s["items"][0]["quantity"], 2, "{body}");
    let seen = fake.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for request in &seen {
        assert_eq!(request.path, format!("/v1/subscriptions/{SUBSCRIPTION}"));
        assert_eq!(
            request.authorization.as_deref(),
            Some(format!("Bearer {KEY}").as_str())
        );
        assert_eq!(request.account, None);
    }
}

/// Stripe answers 429, then takes longer than the client waits: both are step retries
/// with backoff, and the third attempt stores the answer.
async fn a_429_and_a_timeout_are_retried_until_the_api_answers(backend: Backend) {
    let (fake, base) = FakeStripe::start(current_subscription()).await;
    fake.script(vec![
        Reply::Status(429),
        Reply::Hang(Duration::from_secs(3)),
    ]);
    let app = app_asking(backend, &base).await;
    let answer = app
        .deliver_fixture("customer.subscription.created", Overrides::default())
        .await;
    app.settle().await;
    let run = app.run(&first_run(&answer)).await;
    assert_eq!(run["status"], "completed", "{run}");
    let step = run["steps"]
        .as_array()
        .and_then(|steps| {
            steps
                .iter()
                .find(|s| s["name"] == "retrieve-subscription")
                .cloned()
        })
        .unwrap_or_else(|| panic!("no retrieve step: {run}"));
    assert_eq!(step["attempts"], 3, "{step}");
    assert_eq!(fake.seen().len(), 3);
    let body = entitlement(&app, "user_123").await;
    assert_eq!(body["subscription"]["status"], "active", "{body}");
}

/// A key Stripe refuses (401) will not work later either: the run fails at once, with
/// Stripe's answer in its error, and nothing is stored.
async fn a_refused_request_fails_the_run_without_retries(backend: Backend) {
    let (fake, base) = FakeStripe::start(current_subscription()).await;
    fake.script(vec![Reply::Status(401)]);
    let app = app_asking(backend, &base).await;
    let answer = app
        .deliver_fixture("customer.subscription.updated", Overrides::default())
        .await;
    app.settle().await;
    let run = app.run(&first_run(&answer)).await;
    assert_eq!(run["status"], "failed", "{run}");
    let error = run["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("refused the request (401): scripted 401"),
        "{run}"
    );
    assert_eq!(fake.seen().len(), 1, "not retried");
    assert_eq!(app.count("SELECT COUNT(*) FROM subscriptions").await, 0);
}

/// An event of a connected account is asked for with that account's `Stripe-Account`
/// header, and its subscription is kept under the account: it never answers for a
/// platform user of the same id.
async fn a_connected_accounts_subscription_is_asked_for_that_account(backend: Backend) {
    let (fake, base) = FakeStripe::start(current_subscription()).await;
    let app = app_asking(backend, &base).await;
    let mut event = fixture_event("customer.subscription.updated", Overrides::default());
    event["account"] = json!("acct_1Connected");
    let (status, answer) = app.deliver(&event).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    app.settle().await;
    let run = app.run(&first_run(&answer)).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(fake.seen()[0].account.as_deref(), Some("acct_1Connected"));
    let body = entitlement(&app, "user_123").await;
    assert_eq!(body["subscribed"], false, "{body}");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM subscriptions WHERE account = 'acct_1Connected'")
            .await,
        1
    );
}
