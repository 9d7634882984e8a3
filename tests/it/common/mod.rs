//! A paysteps instance for one test: a fresh database (an SQLite file, or a PostgreSQL
//! schema when `TEST_DATABASE_URL` is set), the real router, a manual clock.

pub mod db;
pub mod proxy;
pub mod serve;
pub mod stored;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use paysteps::RunId;
use paysteps::testing::engine::{
    Backoff, Clock, Engine, EngineBuilder, EngineConfig, FaultPlan, Function as EngineFunction,
    system_now_ms,
};
use paysteps::testing::http::{self, Access, AppState, EventKeys};
use paysteps::testing::payments;
use paysteps::testing::store::Store;
use paysteps::testing::stripe::fixtures::{self, Overrides};
use paysteps::testing::stripe::signature::Verifier;
use paysteps::testing::stripe::signer;
use paysteps::testing::webhooks::{self, Destinations};
use serde_json::Value;
use tower::ServiceExt;

pub use db::{Backend, TestDb};

pub const SECRET: &str = "whsec_test_primary_secret_0123456789";
pub const OLD_SECRET: &str = "whsec_test_rolled_secret_9876543210";

pub struct TestApp {
    /// Keeps the database alive (and drops the schema) for the test.
    _db: TestDb,
    pub engine: Engine,
    pub router: Router,
    pub faults: FaultPlan,
    pub clock: Clock,
}

/// Options for [`TestApp::start_with`].
pub struct Setup {
    pub backend: Backend,
    pub secrets: Vec<&'static str>,
    pub max_body_bytes: usize,
    pub with_payments: bool,
    pub register: Box<dyn FnOnce(EngineBuilder) -> EngineBuilder>,
    /// Keys the event API accepts (`Any`, as under `dev`, by default).
    pub event_keys: EventKeys,
    /// Runs executed at once once the engine is started.
    pub workers: usize,
    /// How long idle workers wait before looking for due runs again.
    pub poll_interval: Duration,
    /// Registers the outgoing webhook functions, delivering where this allows.
    pub webhooks: Option<Destinations>,
    /// Who may use the dashboard and `/api/v1` (open, as under `dev`, by default).
    pub access: Access,
    /// Which subscription statuses entitle (`active,trialing` by default).
    pub entitlement: paysteps::testing::payments::repo::Entitlement,
    /// `STRIPE_MODE` (both modes processed by default).
    pub stripe_mode: Option<paysteps::testing::stripe::Mode>,
    /// The Stripe API the subscription functions ask (none by default).
    pub stripe_api: Option<paysteps::testing::stripe::api::StripeApi>,
}

impl Setup {
    /// An app with `functions` only (no Stripe functions) and `workers` workers.
    pub fn functions(backend: Backend, workers: usize, functions: Vec<EngineFunction>) -> Setup {
        Setup {
            backend,
            with_payments: false,
            workers,
            register: Box::new(move |mut b| {
                for f in functions {
                    b = b.register(f);
                }
                b
            }),
            ..Setup::default()
        }
    }
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            backend: Backend::Sqlite,
            secrets: vec![SECRET],
            max_body_bytes: 1024 * 1024,
            with_payments: true,
            register: Box::new(|b| b),
            event_keys: EventKeys::Any,
            workers: 4,
            poll_interval: Duration::from_millis(50),
            webhooks: None,
            access: Access::open(),
            entitlement: Default::default(),
            stripe_mode: None,
            stripe_api: None,
        }
    }
}

pub fn test_config(clock: Clock) -> EngineConfig {
    EngineConfig {
        workers: 4,
        lease: Duration::from_secs(30),
        poll_interval: Duration::from_millis(50),
        backoff: Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(60),
        },
        clock,
    }
}

impl TestApp {
    pub async fn start(backend: Backend) -> TestApp {
        Self::start_with(Setup {
            backend,
            ..Setup::default()
        })
        .await
    }

    pub async fn start_with(setup: Setup) -> TestApp {
        let db = TestDb::create(setup.backend).await;
        let store = db.store().await;
        let clock = Clock::manual(system_now_ms());
        let faults = FaultPlan::default();
        let engine_store = store.clone();
        let config = EngineConfig {
            workers: setup.workers,
            poll_interval: setup.poll_interval,
            ..test_config(clock.clone())
        };
        let mut builder = Engine::builder(store)
            .config(config)
            .fault_plan(faults.clone());
        if setup.with_payments {
            for f in payments::functions(setup.stripe_api.clone()) {
                builder = builder.register(f);
            }
        }
        if let Some(destinations) = setup.webhooks {
            let hooks = webhooks::Webhooks {
                store: engine_store.clone(),
                clock: clock.clone(),
                destinations,
            };
            for f in webhooks::functions(hooks) {
                builder = builder.register(f);
            }
        }
        builder = (setup.register)(builder);
        let engine = builder.build().expect("engine");
        let state = AppState {
            engine: engine.clone(),
            verifier: Arc::new(Verifier::new(setup.secrets, Duration::from_secs(300))),
            max_body_bytes: setup.max_body_bytes,
            event_keys: setup.event_keys,
            webhook_destinations: setup.webhooks.unwrap_or_default(),
            access: setup.access,
            entitlement: setup.entitlement,
            stripe_mode: setup.stripe_mode,
            apps: None,
        };
        TestApp {
            router: http::router(state),
            _db: db,
            engine,
            faults,
            clock,
        }
    }

    pub fn store(&self) -> &Store {
        self.engine.store()
    }

    /// A URL of this test's database, for another process or connection.
    pub fn database_url(&self) -> String {
        self._db.url()
    }

    /// Posts a raw body with an optional `Stripe-Signature` header.
    pub async fn post_webhook(
        &self,
        body: Vec<u8>,
        signature: Option<String>,
    ) -> (StatusCode, Value) {
        let mut request =
            Request::post("/api/stripe/webhook").header("content-type", "application/json");
        if let Some(signature) = signature {
            request = request.header("stripe-signature", signature);
        }
        self.call(request.body(Body::from(body)).expect("request"))
            .await
    }

    /// Signs `event` with the primary secret at the current time and delivers it.
    pub async fn deliver(&self, event: &Value) -> (StatusCode, Value) {
        let body = serde_json::to_vec(event).expect("json");
        let signature = signer::sign(SECRET, &body, system_now_ms() / 1000);
        self.post_webhook(body, Some(signature)).await
    }

    /// Delivers a fixture as a fresh event, asserts it was accepted, and returns the answer.
    pub async fn deliver_fixture(&self, name: &str, overrides: Overrides) -> Value {
        let event = fixture_event(name, overrides);
        let (status, body) = self.deliver(&event).await;
        assert_eq!(status, StatusCode::OK, "{name}: {body}");
        body
    }

    /// Posts a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.call(
            Request::post(path)
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .expect("request"),
        )
        .await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Request::get(path).body(Body::empty()).expect("request"))
            .await
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        let request = Request::get("/metrics")
            .body(Body::empty())
            .expect("request");
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("response");
        assert_eq!(response.status(), StatusCode::OK);
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        String::from_utf8(bytes.to_vec()).expect("utf-8")
    }

    async fn call(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("response");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, body)
    }

    /// Executes everything due, moving the clock to each retry until no run is due.
    pub async fn settle(&self) {
        for _ in 0..100 {
            self.engine.run_until_idle().await.expect("run");
            match self.store().next_due().await.expect("next due") {
                Some(due) if due > self.clock.now_ms() => {
                    let ahead = (due - self.clock.now_ms()) as u64;
                    self.clock.advance(Duration::from_millis(ahead));
                }
                Some(_) => {}
                None => return,
            }
        }
        panic!("runs did not settle");
    }

    pub async fn run(&self, run_id: impl std::fmt::Display) -> Value {
        let (status, body) = self.get(&format!("/api/v1/runs/{run_id}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.store().count(sql, vec![]).await.expect("count")
    }
}

/// Ingests an application event with `data` and returns the runs it started.
pub async fn send(engine: &Engine, name: &str, data: Value) -> Vec<RunId> {
    let outcome = engine
        .ingest(paysteps::testing::engine::EventInput::new(name, &data))
        .await
        .expect("ingest");
    match outcome {
        paysteps::testing::store::IngestOutcome::Accepted { runs, .. } => runs,
        other => panic!("expected the event accepted, got {other:?}"),
    }
}

/// Ingests an application event and returns the one run it started.
pub async fn start_run(engine: &Engine, name: &str) -> RunId {
    let outcome = engine
        .ingest(paysteps::testing::engine::EventInput::new(
            name,
            &serde_json::json!({}),
        ))
        .await
        .expect("ingest");
    match outcome {
        paysteps::testing::store::IngestOutcome::Accepted { runs, .. } if runs.len() == 1 => {
            runs[0].clone()
        }
        other => panic!("expected one run, got {other:?}"),
    }
}

pub fn fixture_event(name: &str, overrides: Overrides) -> Value {
    let template = fixtures::fixture(name).unwrap_or_else(|| panic!("no fixture {name}"));
    fixtures::build_event(template, &overrides)
}

pub fn first_run(answer: &Value) -> String {
    answer["runs"][0]
        .as_str()
        .unwrap_or_else(|| panic!("no run in {answer}"))
        .to_owned()
}

/// Waits (up to 30 s) until the started `engine` has nothing left to do: the witness to
/// wait for before asserting that something did not happen.
pub async fn until_idle(engine: &Engine) {
    tokio::time::timeout(Duration::from_secs(30), engine.idle())
        .await
        .expect("the engine goes idle");
}

/// Polls `check` until it holds or `deadline` passes.
pub async fn eventually<F, Fut>(deadline: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + deadline;
    while tokio::time::Instant::now() < until {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}
