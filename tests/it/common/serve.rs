//! `paysteps serve` as a child process, signed deliveries to it, and the checks that
//! every accepted event was applied exactly once. Used by the multi-process tests.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use paysteps::testing::engine::system_now_ms;
use paysteps::testing::stripe::fixtures::Overrides;
use paysteps::testing::stripe::signer;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::common::{SECRET, TestDb, fixture_event};

pub(crate) const PAYMENT_FUNCTION: &str = "payment-intent-succeeded";
pub(crate) const CHECKOUT_FUNCTION: &str = "checkout-session-completed";
pub(crate) const PAYMENT_STEPS: [&str; 5] = [
    "validate-payment-intent",
    "link-customer",
    "record-payment",
    "notify payment.succeeded",
    "log-success",
];
pub(crate) const CHECKOUT_STEPS: [&str; 5] = [
    "validate-session",
    "link-customer",
    "activate-subscription",
    "notify subscription.activated",
    "log-success",
];

/// The dashboard token every `serve` child process is started with.
pub(crate) const DASHBOARD_TOKEN: &str = "test-dashboard-token-0123456789abcdef";

/// One `paysteps serve` child process on a fixed loopback port. Dropping it kills it; a
/// test that panics also prints the end of its log.
pub(crate) struct Serve {
    pub name: String,
    pub port: u16,
    database_url: String,
    workers: usize,
    log: PathBuf,
    child: Option<Child>,
}

impl Serve {
    /// Starts `paysteps serve` on a free port with a 2 s lease.
    pub fn start(name: &str, database_url: &str, workers: usize, dir: &Path) -> Serve {
        let mut serve = Serve {
            name: name.to_owned(),
            port: free_port(),
            database_url: database_url.to_owned(),
            workers,
            log: dir.join(format!("{name}.log")),
            child: None,
        };
        serve.spawn();
        serve
    }

    /// Starts the process again, on the same port and database.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "{} is still running", self.name);
        self.spawn();
    }

    fn spawn(&mut self) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the process log");
        let child = Command::new(env!("CARGO_BIN_EXE_paysteps"))
            .arg("serve")
            .env("DATABASE_URL", &self.database_url)
            .env("STRIPE_WEBHOOK_SECRET", SECRET)
            .env("PAYSTEPS_DASHBOARD_TOKEN", DASHBOARD_TOKEN)
            .env("PAYSTEPS_BIND", format!("127.0.0.1:{}", self.port))
            .env("PAYSTEPS_LEASE_SECS", "2")
            .env("PAYSTEPS_WORKERS", self.workers.to_string())
            .env("RUST_LOG", "warn")
            .current_dir(self.log.parent().expect("log dir"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("start paysteps serve");
        self.child = Some(child);
    }

    /// SIGKILL: no shutdown, no lease released, transactions cut mid-way.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits (up to 30 s) until `/health` answers 200.
    pub async fn wait_healthy(&mut self, client: &reqwest::Client) {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "{} exited with {status} before it was healthy:\n{}",
                    self.name,
                    self.log_tail(40)
                );
            }
            let health = client
                .get(format!("http://127.0.0.1:{}/health", self.port))
                .send()
                .await;
            if health.is_ok_and(|r| r.status() == StatusCode::OK) {
                return;
            }
            assert!(
                Instant::now() < until,
                "{} not healthy after 30 s:\n{}",
                self.name,
                self.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let _ = writeln!(
                std::io::stderr(),
                "--- last lines of {} ({}) ---\n{}",
                self.name,
                self.log.display(),
                self.log_tail(30)
            );
        }
    }
}

/// A port nothing listens on right now (bound on 127.0.0.1:0, then released).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// An HTTP client for loopback: no system proxy, bounded requests.
pub(crate) fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("http client")
}

/// An answer from `POST /api/stripe/webhook`.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

/// Signs `body` at the current time and posts it to the process on `port`.
pub(crate) async fn post_event(
    client: &reqwest::Client,
    port: u16,
    body: &[u8],
) -> Result<Answer, reqwest::Error> {
    let signature = signer::sign(SECRET, body, system_now_ms() / 1000);
    let response = client
        .post(format!("http://127.0.0.1:{port}/api/stripe/webhook"))
        .header("content-type", "application/json")
        .header("stripe-signature", signature)
        .body(body.to_vec())
        .send()
        .await?;
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await?;
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// A Stripe event with its own ids, and what it must leave in the business tables.
#[derive(Debug, Clone)]
pub(crate) struct TestEvent {
    pub id: String,
    pub body: Vec<u8>,
    pub kind: Kind,
    pub customer: String,
    pub user: String,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    /// `payment_intent.succeeded` for this PaymentIntent.
    Payment { intent: String },
    /// `checkout.session.completed` in subscription mode.
    Checkout { subscription: String },
}

impl TestEvent {
    pub fn function(&self) -> &'static str {
        match self.kind {
            Kind::Payment { .. } => PAYMENT_FUNCTION,
            Kind::Checkout { .. } => CHECKOUT_FUNCTION,
        }
    }

    /// `payment_intent.succeeded` with unique event, PaymentIntent, customer and user ids.
    pub fn payment(tag: &str, n: usize) -> TestEvent {
        let (customer, user) = (format!("cus_{tag}{n:04}"), format!("user_{tag}{n:04}"));
        let intent = format!("pi_{tag}{n:04}");
        let id = format!("evt_{tag}{n:04}");
        let mut event = fixture_event("payment_intent.succeeded", overrides(&id, &customer, &user));
        event["data"]["object"]["id"] = json!(intent);
        TestEvent {
            id,
            body: serde_json::to_vec(&event).expect("json"),
            kind: Kind::Payment { intent },
            customer,
            user,
        }
    }

    /// `checkout.session.completed` (subscription mode, paid) with unique event, session,
    /// subscription, customer and user ids.
    pub fn checkout(tag: &str, n: usize) -> TestEvent {
        let (customer, user) = (format!("cus_{tag}{n:04}"), format!("user_{tag}{n:04}"));
        let subscription = format!("sub_{tag}{n:04}");
        let id = format!("evt_{tag}{n:04}");
        let mut event = fixture_event(
            "checkout.session.completed.subscription",
            overrides(&id, &customer, &user),
        );
        event["data"]["object"]["id"] = json!(format!("cs_test_{tag}{n:04}"));
        event["data"]["object"]["subscription"] = json!(subscription);
        TestEvent {
            id,
            body: serde_json::to_vec(&event).expect("json"),
            kind: Kind::Checkout { subscription },
            customer,
            user,
        }
    }
}

pub(crate) fn overrides(id: &str, customer: &str, user: &str) -> Overrides {
    Overrides {
        event_id: Some(id.to_owned()),
        customer: Some(customer.to_owned()),
        user: Some(user.to_owned()),
        ..Overrides::default()
    }
}

/// A small pool on the test's database, for checking rows (not through any proxy).
pub(crate) async fn check_pool(db: &TestDb) -> PgPool {
    PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(10))
        .connect(&db.url())
        .await
        .expect("connect to the test database")
}

pub(crate) async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Runs not yet finished: queued, running or sleeping.
pub(crate) async fn unfinished_runs(pool: &PgPool) -> i64 {
    count(
        pool,
        "SELECT COUNT(*) FROM runs WHERE status IN ('queued', 'running', 'sleeping')",
    )
    .await
}

/// Waits until no run is queued, running or sleeping; false if `limit` passed first.
pub(crate) async fn wait_until_idle(pool: &PgPool, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if unfinished_runs(pool).await == 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// A Stripe event with one of its runs (none: all `None` but the event).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct EventRun {
    pub(crate) external_id: Option<String>,
    pub(crate) run_id: Option<String>,
    pub(crate) function_id: Option<String>,
    pub(crate) status: Option<String>,
}

/// Asserts that each of `accepted` was stored once with exactly one run, of the function
/// its type triggers, completed with every step done once; that nothing else ran; and
/// that the business tables hold exactly one row per accepted object and nothing more.
pub(crate) async fn assert_applied_once(pool: &PgPool, accepted: &[&TestEvent]) {
    let rows: Vec<EventRun> = sqlx::query_as(
        "SELECT e.external_id, r.id AS run_id, r.function_id, r.status \
         FROM events e LEFT JOIN runs r ON r.event_id = e.id WHERE e.source = 'stripe'",
    )
    .fetch_all(pool)
    .await
    .expect("events and runs");
    let mut runs: HashMap<String, Vec<EventRun>> = HashMap::new();
    for row in rows {
        let event = row
            .external_id
            .clone()
            .expect("a Stripe event keeps its id");
        runs.entry(event).or_default().push(row);
    }
    let steps: Vec<(String, String, String)> =
        sqlx::query_as("SELECT run_id, name, status FROM steps")
            .fetch_all(pool)
            .await
            .expect("steps");
    let mut steps_of: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for (run, name, status) in steps {
        steps_of.entry(run).or_default().push((name, status));
    }
    for event in accepted {
        let found = runs
            .get(&event.id)
            .unwrap_or_else(|| panic!("accepted event {} is not stored", event.id));
        let [
            EventRun {
                run_id: Some(run),
                function_id: Some(function),
                status: Some(status),
                ..
            },
        ] = found.as_slice()
        else {
            panic!(
                "accepted event {} must have exactly one run, has {found:?}",
                event.id
            );
        };
        assert_eq!(function, event.function(), "event {}", event.id);
        assert_eq!(status, "completed", "event {} run {run}", event.id);
        let mut done: Vec<&str> = steps_of
            .get(run)
            .map(|s| s.iter().map(|(name, _)| name.as_str()).collect())
            .unwrap_or_default();
        done.sort_unstable();
        let mut expected: Vec<&str> = match event.kind {
            Kind::Payment { .. } => PAYMENT_STEPS.to_vec(),
            Kind::Checkout { .. } => CHECKOUT_STEPS.to_vec(),
        };
        expected.sort_unstable();
        assert_eq!(done, expected, "steps of run {run} (event {})", event.id);
        assert!(
            steps_of[run]
                .iter()
                .all(|(_, status)| status == "completed"),
            "run {run}: {:?}",
            steps_of[run]
        );
    }
    assert_eq!(
        runs.len(),
        accepted.len(),
        "events stored that were never acknowledged"
    );
    assert_eq!(
        count(
            pool,
            "SELECT COUNT(*) FROM runs WHERE status <> 'completed'"
        )
        .await,
        0,
        "runs left unfinished or failed"
    );
    assert_eq!(
        count(pool, "SELECT COUNT(*) FROM runs").await,
        accepted.len() as i64,
        "runs beyond one per accepted event (failure handlers, duplicates)"
    );
    assert_eq!(
        count(pool, "SELECT COUNT(*) FROM payment_failures").await,
        0,
        "failures were logged"
    );

    let payments: Vec<(String, Option<String>, String)> =
        sqlx::query_as("SELECT id, user_id, status FROM payments")
            .fetch_all(pool)
            .await
            .expect("payments");
    let subscriptions: Vec<(String, Option<String>, String)> =
        sqlx::query_as("SELECT id, user_id, status FROM subscriptions")
            .fetch_all(pool)
            .await
            .expect("subscriptions");
    let customers: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT id, user_id FROM customers")
            .fetch_all(pool)
            .await
            .expect("customers");
    let mut want_payments = HashMap::new();
    let mut want_subscriptions = HashMap::new();
    let mut want_customers = HashMap::new();
    for event in accepted {
        match &event.kind {
            Kind::Payment { intent } => {
                want_payments.insert(intent.clone(), (Some(event.user.clone()), "succeeded"));
            }
            Kind::Checkout { subscription } => {
                want_subscriptions
                    .insert(subscription.clone(), (Some(event.user.clone()), "active"));
            }
        }
        want_customers.insert(event.customer.clone(), Some(event.user.clone()));
    }
    assert_rows(
        "payments",
        &payments,
        |(id, user, status)| (id.clone(), (user.clone(), status.as_str())),
        &want_payments,
    );
    assert_rows(
        "subscriptions",
        &subscriptions,
        |(id, user, status)| (id.clone(), (user.clone(), status.as_str())),
        &want_subscriptions,
    );
    assert_rows(
        "customers",
        &customers,
        |(id, user)| (id.clone(), user.clone()),
        &want_customers,
    );
}

/// Exactly one row per wanted key, with the wanted values, and no other row.
pub(crate) fn assert_rows<'a, R, V: PartialEq + std::fmt::Debug>(
    table: &str,
    rows: &'a [R],
    key: impl Fn(&'a R) -> (String, V),
    want: &HashMap<String, V>,
) {
    let mut seen = HashSet::new();
    for row in rows {
        let (id, value) = key(row);
        assert!(seen.insert(id.clone()), "{table}: two rows for {id}");
        match want.get(&id) {
            Some(wanted) => assert_eq!(&value, wanted, "{table} row {id}"),
            None => panic!("{table}: unexpected row {id} {value:?}"),
        }
    }
    assert_eq!(
        seen.len(),
        want.len(),
        "{table}: {} rows for {} accepted objects",
        seen.len(),
        want.len()
    );
}

/// Writes past the test harness's capture, so `cargo test` shows the figure.
pub(crate) fn report(line: &str) {
    println!("{line}");
    let _ = writeln!(std::io::stderr(), "{line}");
}

#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) accepted: Mutex<HashSet<String>>,
    pub(crate) accepted_count: AtomicUsize,
    /// Deliveries that needed more than one try.
    pub(crate) retried: AtomicUsize,
    /// Retries answered `duplicate`: an earlier try was committed but its answer lost.
    pub(crate) duplicates: AtomicUsize,
    /// Tries answered other than 200, or cut by a transport error (no status).
    pub(crate) failures: Mutex<Vec<FailedTry>>,
    /// Deliveries that never got a 200 within their tries.
    pub(crate) undelivered: Mutex<Vec<String>>,
}

/// The innermost cause of a failed request, e.g. "Connection refused".
pub(crate) fn transport_error(err: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = err;
    while let Some(next) = source.source() {
        source = next;
    }
    source.to_string()
}

pub(crate) struct FailedTry {
    pub(crate) event: String,
    pub(crate) process: usize,
    pub(crate) status: Option<StatusCode>,
    pub(crate) detail: String,
}

/// Tries per delivery, each against the next process, as Stripe retries a failed one.
const TRIES: usize = 8;

/// Delivers `event` starting at process `first`, moving to the next process after a
/// connection error or a 5xx. A 4xx is final.
pub(crate) async fn deliver(
    client: &reqwest::Client,
    ports: &[u16],
    first: usize,
    event: &TestEvent,
    tally: &Tally,
) {
    for attempt in 0..TRIES {
        let target = (first + attempt) % ports.len();
        let failure = match post_event(client, ports[target], &event.body).await {
            Ok(answer) if answer.status == StatusCode::OK => {
                if attempt > 0 {
                    tally.retried.fetch_add(1, Ordering::SeqCst);
                }
                if answer.body["duplicate"] == true {
                    tally.duplicates.fetch_add(1, Ordering::SeqCst);
                }
                tally
                    .accepted
                    .lock()
                    .expect("tally")
                    .insert(event.id.clone());
                tally.accepted_count.fetch_add(1, Ordering::SeqCst);
                return;
            }
            Ok(answer) if answer.status.is_client_error() => {
                let msg = format!(
                    "{} → #{}: {} {}",
                    event.id,
                    target + 1,
                    answer.status,
                    answer.body
                );
                tally.undelivered.lock().expect("tally").push(msg);
                return;
            }
            Ok(answer) => (Some(answer.status), answer.body.to_string()),
            Err(err) => (None, transport_error(&err)),
        };
        let (status, detail) = failure;
        let failure = FailedTry {
            event: event.id.clone(),
            process: target + 1,
            status,
            detail,
        };
        tally.failures.lock().expect("tally").push(failure);
        tokio::time::sleep(Duration::from_millis(20 * (attempt as u64 + 1))).await;
    }
    tally
        .undelivered
        .lock()
        .expect("tally")
        .push(format!("{}: no 200 after {TRIES} tries", event.id));
}
