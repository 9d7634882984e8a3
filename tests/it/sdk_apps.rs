//! Functions written with the official Inngest SDK (`tests/inngest-app`, pinned to
//! `inngest@4.24.0`) run by a real `paysteps dev` or `serve` child process, as a team's
//! TypeScript app would be: the app is synced, events are sent through `/e/{key}`, and
//! what each function did is read back through `/api/v1`.
//!
//! Skipped when node or the app's `node_modules` are missing (`npm ci` in
//! `tests/inngest-app`, which `.ci/run` does).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;

use paysteps::testing::apps::Apps;
use paysteps::testing::stripe::fixtures::Overrides;
use paysteps::testing::stripe::signer;
use paysteps::{Clock, Engine, EventInput, Function, IngestOutcome, Interrupt, RunStatus, Trigger};
use sha2::{Digest, Sha256};

use crate::common::db::{Backend, TestDb};
use crate::common::serve::{free_port, http_client};
use crate::common::{fixture_event, test_config};

/// The signing key of the signed-mode tests, shared by paysteps and the app.
const SIGNING_KEY: &str =
    "signkey-test-8ee2262a15e8d3c42d6a840db7af3de2aab08ef632b32a37a687f24b34dba3ff";
/// The Stripe webhook secret `serve` is started with.
const STRIPE_SECRET: &str = "whsec_sdk_apps_test_0123456789";
/// The dashboard token `serve` is started with.
const TOKEN: &str = "sdk-apps-dashboard-token-0123456789";

fn app_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/inngest-app")
}

/// Whether node and the app's dependencies are here; says once (or fails under
/// `PAYSTEPS_TEST_REQUIRE_ALL`) when they are not.
pub(crate) fn node_ready() -> bool {
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let installed = app_dir().join("node_modules/inngest/package.json").exists();
    if node && installed {
        return true;
    }
    static ONCE: Once = Once::new();
    crate::common::db::skipped(
        &ONCE,
        "Node suite skipped: node or tests/inngest-app/node_modules is missing (run npm ci in tests/inngest-app)",
    );
    false
}

/// A child process killed on drop, its output in a log file printed when a test fails.
struct Process {
    name: &'static str,
    child: Option<Child>,
    log: PathBuf,
}

impl Process {
    fn spawn(name: &'static str, mut command: Command, dir: &Path) -> Process {
        let log = dir.join(format!("{name}.log"));
        let file = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open the log");
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log handle"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Process {
            name,
            child: Some(child),
            log,
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- {} log ---\n{}", self.name, self.tail());
        }
    }
}

/// How paysteps and the app are set up.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Mode {
    /// `paysteps dev` without a key; the SDK in dev mode.
    Dev,
    /// `paysteps serve` with a signing key; the SDK in cloud mode with the same key.
    Signed,
}

/// The app, paysteps, and a client for both.
pub(crate) struct Stack {
    mode: Mode,
    app_port: u16,
    port: u16,
    app: Process,
    paysteps: Process,
    http: reqwest::Client,
    db: TestDb,
    /// Last: the processes' logs are in it, printed when they are dropped.
    dir: TempDir,
}

impl Stack {
    pub(crate) async fn launch(mode: Mode) -> Stack {
        Stack::launch_with(mode, &[]).await
    }

    /// The app and `paysteps dev`, once the app is synced; `None` when the Node suite is
    /// skipped.
    async fn synced_dev() -> Option<Stack> {
        if !node_ready() {
            return None;
        }
        let stack = Stack::launch(Mode::Dev).await;
        stack.synced().await;
        Some(stack)
    }

    /// Starts the app (with `app_env` besides its usual environment) and paysteps.
    async fn launch_with(mode: Mode, app_env: &[(&str, &str)]) -> Stack {
        Stack::launch_on(Backend::Sqlite, mode, app_env).await
    }

    async fn launch_on(backend: Backend, mode: Mode, app_env: &[(&str, &str)]) -> Stack {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = TestDb::create(backend).await;
        let (app_port, port) = (free_port(), free_port());
        let app = start_app(mode, dir.path(), app_port, port, app_env);
        let paysteps = start_paysteps(mode, dir.path(), &db.url(), app_port, port);
        let mut stack = Stack {
            mode,
            dir,
            db,
            app_port,
            port,
            app,
            paysteps,
            http: http_client(),
        };
        stack.wait_healthy().await;
        stack
    }

    pub(crate) fn app_url(&self) -> String {
        format!("http://127.0.0.1:{}/api/inngest", self.app_port)
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn wait_healthy(&mut self) {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let health = self.http.get(self.url("/health")).send().await;
            if health.is_ok_and(|r| r.status() == StatusCode::OK) {
                return;
            }
            assert!(Instant::now() < until, "paysteps not healthy after 30 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the app and starts it again on the same port, with `env` besides its usual
    /// environment (a new version of it, deployed).
    fn restart_app(&mut self, env: &[(&str, &str)]) {
        self.app.kill();
        self.app = start_app(self.mode, self.dir.path(), self.app_port, self.port, env);
    }

    /// The ids of the functions paysteps has registered.
    async fn function_ids(&self) -> Vec<String> {
        let (_, functions) = self.get("/api/v1/functions").await;
        functions["functions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f["id"].as_str().map(str::to_owned))
            .collect()
    }

    /// Kills paysteps (no shutdown) and starts it again on the same port and database.
    async fn restart_paysteps(&mut self) {
        self.paysteps.kill();
        self.paysteps = start_paysteps(
            self.mode,
            self.dir.path(),
            &self.db.url(),
            self.app_port,
            self.port,
        );
        self.wait_healthy().await;
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .get(self.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("GET");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let response = self
            .http
            .post(self.url(path))
            .bearer_auth(TOKEN)
            .json(body)
            .send()
            .await
            .expect("POST");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Sends an event as the SDK's `inngest.send` does, and answers its id.
    async fn send(&self, name: &str, data: Value) -> String {
        let (status, body) = self
            .post("/e/test-key", &json!([{ "name": name, "data": data }]))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["ids"][0].as_str().expect("an event id").to_owned()
    }

    /// Waits until the app's functions are registered.
    /// Waits until the app is synced and this process has registered its functions (on
    /// a shared database, another process may have synced it first).
    pub(crate) async fn synced(&self) -> Value {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, body) = self.get("/api/v1/apps").await;
            let app = body["apps"][0].clone();
            if app["function_count"].as_i64().unwrap_or(0) > 0
                && self
                    .function_ids()
                    .await
                    .iter()
                    .any(|id| id == "e2e-app-flow")
            {
                return app;
            }
            assert!(
                Instant::now() < until,
                "the app did not sync within 30 s: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The runs an event started, once there are `n`.
    async fn runs_of(&self, event_id: &str, n: usize) -> Vec<Value> {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, body) = self.get(&format!("/api/v1/events/{event_id}")).await;
            let runs = body["runs"].as_array().cloned().unwrap_or_default();
            if runs.len() >= n {
                return runs;
            }
            assert!(Instant::now() < until, "no run for {event_id}: {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The run once it completed or failed (within 30 s).
    async fn ended(&self, run_id: &str) -> Value {
        self.run_until(run_id, &["completed", "failed"], Duration::from_secs(30))
            .await
    }

    /// The run once its status is one of `statuses`.
    async fn run_until(&self, run_id: &str, statuses: &[&str], within: Duration) -> Value {
        let until = Instant::now() + within;
        loop {
            let (_, run) = self.get(&format!("/api/v1/runs/{run_id}")).await;
            if statuses.contains(&run["status"].as_str().unwrap_or_default()) {
                return run;
            }
            assert!(
                Instant::now() < until,
                "run {run_id} is not {statuses:?} after {within:?}: {run:#}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What an app sends as its bearer: the hashed signing key, or in dev mode, none.
    fn bearer(&self) -> String {
        match self.mode {
            Mode::Dev => String::new(),
            Mode::Signed => {
                let hex_key = SIGNING_KEY.trim_start_matches("signkey-test-");
                let digest = Sha256::digest(hex::decode(hex_key).expect("hex key"));
                format!("signkey-test-{}", hex::encode(digest))
            }
        }
    }

    /// The first run of `function`, once there is one (within 30 s).
    async fn run_of_function(&self, function: &str) -> String {
        self.run_of_function_within(function, Duration::from_secs(30))
            .await
    }

    async fn run_of_function_within(&self, function: &str, within: Duration) -> String {
        let until = Instant::now() + within;
        loop {
            let (_, body) = self
                .get(&format!("/api/v1/runs?function={function}&limit=5"))
                .await;
            let found = body["runs"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["function_id"] == function);
            if let Some(run) = found {
                return run["id"].as_str().expect("run id").to_owned();
            }
            assert!(
                Instant::now() < until,
                "no run of {function} within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Delivers a signed `checkout.session.completed` to the Stripe webhook and answers
    /// the session's id.
    async fn deliver_stripe_checkout(&self) -> String {
        self.deliver_stripe("checkout.session.completed", Overrides::default())
            .await
    }

    /// Delivers a signed Stripe event made from a fixture and answers its object's id.
    async fn deliver_stripe(&self, fixture: &str, overrides: Overrides) -> String {
        let event = fixture_event(fixture, overrides);
        let body = serde_json::to_vec(&event).expect("JSON");
        let signature = signer::sign(STRIPE_SECRET, &body, chrono_now());
        let response = self
            .http
            .post(self.url("/api/stripe/webhook"))
            .header("content-type", "application/json")
            .header("stripe-signature", signature)
            .body(body)
            .send()
            .await
            .expect("deliver the webhook");
        assert_eq!(response.status(), StatusCode::OK);
        event["data"]["object"]["id"]
            .as_str()
            .expect("session id")
            .to_owned()
    }

    /// The run of `function` (its composite id) started by the event named `name`.
    async fn start(&self, name: &str, data: Value) -> String {
        let event = self.send(name, data).await;
        let runs = self.runs_of(&event, 1).await;
        runs[0]["id"].as_str().expect("run id").to_owned()
    }
}

fn start_app(mode: Mode, dir: &Path, app_port: u16, port: u16, env: &[(&str, &str)]) -> Process {
    let mut command = Command::new("node");
    command
        .envs(env.iter().copied())
        .arg("app.mjs")
        .current_dir(app_dir())
        .env("PORT", app_port.to_string())
        .env("INNGEST_BASE_URL", format!("http://127.0.0.1:{port}"))
        .env("INNGEST_EVENT_KEY", "test-key");
    match mode {
        Mode::Dev => {
            command.env("INNGEST_DEV", "1");
        }
        Mode::Signed => {
            command
                .env("INNGEST_DEV", "0")
                .env("INNGEST_SIGNING_KEY", SIGNING_KEY);
        }
    }
    Process::spawn("app", command, dir)
}

fn start_paysteps(mode: Mode, dir: &Path, db_url: &str, app_port: u16, port: u16) -> Process {
    Process::spawn(
        "paysteps",
        paysteps_command(mode, dir, db_url, app_port, port),
        dir,
    )
}

fn paysteps_command(mode: Mode, dir: &Path, db_url: &str, app_port: u16, port: u16) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_paysteps"));
    command
        .arg(match mode {
            Mode::Dev => "dev",
            Mode::Signed => "serve",
        })
        .current_dir(dir)
        .env("DATABASE_URL", db_url)
        .env("PAYSTEPS_BIND", format!("127.0.0.1:{port}"))
        .env(
            "PAYSTEPS_APP_URLS",
            format!("http://127.0.0.1:{app_port}/api/inngest"),
        )
        .env("PAYSTEPS_LEASE_SECS", "2")
        .env("RUST_LOG", "info,paysteps=debug");
    if mode == Mode::Signed {
        command
            .env("PAYSTEPS_SIGNING_KEY", SIGNING_KEY)
            .env("STRIPE_WEBHOOK_SECRET", STRIPE_SECRET)
            .env("PAYSTEPS_DASHBOARD_TOKEN", TOKEN)
            .env("PAYSTEPS_EVENT_KEY", "test-key");
    }
    command
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

fn step_names(run: &Value) -> Vec<String> {
    run["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| s["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The flow function end to end: a step, a sleep, a step that fails once and is retried,
/// two steps in parallel, a wait that only the right event after it began ends, and an
/// invocation of another function of the app.
async fn every_step_tool(stack: &Stack) {
    let run_id = stack
        .start("test/flow.started", json!({ "user": "u1" }))
        .await;
    // Sent while the run is still in its first step or its sleep: before the wait.
    stack
        .send(
            "test/flow.approved",
            json!({ "user": "u1", "by": "too early" }),
        )
        .await;
    let run = stack
        .run_until(
            &run_id,
            &["waiting", "completed", "failed"],
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(run["status"], "waiting", "{run:#}");
    let other = stack
        .send(
            "test/flow.approved",
            json!({ "user": "u2", "by": "someone else" }),
        )
        .await;
    // The other user's approval is stored and matched against the wait, which goes on.
    stack.runs_of(&other, 0).await;
    let (_, run) = stack.get(&format!("/api/v1/runs/{run_id}")).await;
    assert_eq!(run["status"], "waiting", "{run:#}");
    stack
        .send("test/flow.approved", json!({ "user": "u1", "by": "ops" }))
        .await;
    let run = stack.ended(&run_id).await;
    assert_eq!(
        run["output"],
        json!({
            "user": { "id": "u1", "plan": "pro" },
            "flaky": 2,
            "parallel": "ab",
            "approved": "ops",
            "invoked": { "doubled": 42 },
        }),
        "{run:#}"
    );
    let names = step_names(&run);
    for step in [
        "load-user",
        "nap",
        "flaky",
        "par-a",
        "par-b",
        "approval",
        "double-it",
    ] {
        assert!(
            names.iter().any(|n| n == step),
            "no step {step} in {names:?}"
        );
    }
    let flaky = &run["steps"][names.iter().position(|n| n == "flaky").unwrap()];
    assert_eq!(flaky["attempts"], 2, "{flaky}");
}

/// A step that throws NonRetriableError fails the run, and the function's onFailure
/// handler runs with the error; a caught final step failure lets a function go on, and
/// the event it sends starts another function.
async fn failures(stack: &Stack) {
    let fatal_event = stack.send("test/fatal.started", json!({})).await;
    let caught = stack.start("test/caught.started", json!({})).await;
    let fatal = stack.runs_of(&fatal_event, 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let run = stack.ended(&fatal).await;
    assert_eq!(run["status"], "failed", "{run:#}");
    assert!(
        run["error"]
            .as_str()
            .unwrap_or_default()
            .contains("card declined for good"),
        "{run:#}"
    );
    let handler = stack.run_of_function("e2e-app-fatal-failure").await;
    let handler = stack.ended(&handler).await;
    assert_eq!(
        handler["output"],
        json!({ "failed": "e2e-app-fatal", "message": "card declined for good" }),
        "{handler:#}"
    );

    let run = stack.ended(&caught).await;
    assert_eq!(
        run["output"],
        json!({ "recovered": "never works", "after": "went on" }),
        "{run:#}"
    );
    let announced = stack.run_of_function("e2e-app-announced").await;
    let announced = stack.ended(&announced).await;
    assert_eq!(announced["output"], json!({ "heard": "never works" }));

    // An op paysteps does not carry out fails the run, naming it.
    let fetcher = stack.start("test/fetcher.started", json!({})).await;
    let run = stack.ended(&fetcher).await;
    assert_eq!(run["status"], "failed", "{run:#}");
    assert!(
        run["error"]
            .as_str()
            .unwrap_or_default()
            .contains("the app asked for Gateway"),
        "{run:#}"
    );

    // A step's output over 4 MiB fails the run.
    let bulky = stack.start("test/bulky.started", json!({})).await;
    let run = stack.ended(&bulky).await;
    assert_eq!(run["status"], "failed");
    assert!(
        run["error"]
            .as_str()
            .unwrap_or_default()
            .contains("a step's output holds at most 4 MiB"),
        "{}",
        run["error"]
    );

    // An error thrown outside any step is retried, after the Retry-After it asks for.
    let outside = stack.start("test/outside.started", json!({})).await;
    let run = stack.ended(&outside).await;
    assert_eq!(run["output"], json!({ "attempts": 2 }), "{run:#}");

    // What an app polls for an event it sent: its runs, with Inngest's statuses.
    let response = stack
        .http
        .get(stack.url(&format!("/v1/events/{fatal_event}/runs")))
        .bearer_auth(stack.bearer())
        .send()
        .await
        .expect("GET /v1/events/{id}/runs");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["data"][0]["run_id"], fatal.as_str(), "{body}");
    assert_eq!(body["data"][0]["status"], "Failed", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sdk_app_runs_its_functions_in_dev_mode() {
    if !node_ready() {
        return;
    }
    let stack = Stack::launch(Mode::Dev).await;
    let app = stack.synced().await;
    assert_eq!(app["sdk"], "js:v4.24.0");
    assert_eq!(app["url"], stack.app_url());
    assert_eq!(app["error"], Value::Null);
    let (_, functions) = stack.get("/api/v1/functions").await;
    let flow = functions["functions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "e2e-app-flow")
        .cloned()
        .unwrap_or_else(|| panic!("no e2e-app-flow in {functions:#}"));
    assert_eq!(flow["trigger"], "test/flow.started");
    assert_eq!(flow["retries"], 2);
    let settings = |id: &str| {
        functions["functions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == id)
            .map(|f| (f["trigger"].clone(), f["flow"].clone()))
            .unwrap_or_else(|| panic!("no {id} in {functions:#}"))
    };
    assert_eq!(
        settings("e2e-app-laned").1,
        json!(["concurrency 1 per event.data.lane"])
    );
    assert_eq!(
        settings("e2e-app-sleeper").1,
        json!([
            "idempotency by event.data.job",
            "cancelled by test/sleeper.cancelled matching data.job"
        ])
    );
    assert_eq!(
        settings("e2e-app-stripe-checkout").0,
        "stripe/checkout.session.completed if event.data.livemode == false"
    );
    tokio::join!(every_step_tool(&stack), failures(&stack));
}

/// On PostgreSQL, two `serve` processes share the app's runs: each syncs the app, and
/// whichever claims a run drives it, steps, parks and all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sdk_app_runs_on_postgres_across_two_processes() {
    if !node_ready() {
        return;
    }
    if crate::common::db::postgres_url().is_none() {
        crate::common::db::report_postgres_skipped();
        return;
    }
    let stack = Stack::launch_on(Backend::Postgres, Mode::Signed, &[]).await;
    let second_port = free_port();
    let _second = Process::spawn(
        "paysteps-2",
        paysteps_command(
            Mode::Signed,
            stack.dir.path(),
            &stack.db.url(),
            stack.app_port,
            second_port,
        ),
        stack.dir.path(),
    );
    stack.synced().await;
    // The second process registered the app's functions too.
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let functions = stack
            .http
            .get(format!("http://127.0.0.1:{second_port}/api/v1/functions"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .ok();
        let text = match functions {
            Some(response) => response.text().await.unwrap_or_default(),
            None => String::new(),
        };
        if text.contains("e2e-app-flow") {
            break;
        }
        assert!(
            Instant::now() < until,
            "the second process has no app functions"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::join!(every_step_tool(&stack), failures(&stack));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_app_runs_its_functions_under_serve() {
    if !node_ready() {
        return;
    }
    let stack = Stack::launch(Mode::Signed).await;
    stack.synced().await;
    tokio::join!(every_step_tool(&stack), failures(&stack));

    // The app refuses a call whose signature is not made with its key.
    let call = stack
        .http
        .post(format!(
            "{}?fnId=e2e-app-caught&stepId=step",
            stack.app_url()
        ))
        .header("x-run-id", "run_forged")
        .header(
            "x-inngest-signature",
            format!("t={}&s={}", chrono_now(), "00".repeat(32)),
        )
        .json(&json!({ "event": {}, "events": [], "steps": {}, "ctx": {}, "version": -1 }))
        .send()
        .await
        .expect("forged call");
    assert_eq!(call.status(), StatusCode::UNAUTHORIZED);

    // paysteps refuses a registration without the app's bearer, and takes one with it.
    let registration = json!({
        "url": stack.app_url(), "appName": "e2e-app", "sdk": "js:v4.24.0", "functions": []
    });
    for bearer in [None, Some("signkey-test-00")] {
        let mut request = stack
            .http
            .post(stack.url("/fn/register"))
            .json(&registration);
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        let response = request.send().await.expect("register");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(body["status"], 401, "{body}");
    }
    // With the key, a registration for an app paysteps was not given is refused.
    let foreign = json!({
        "url": "http://169.254.169.254/api/inngest", "appName": "elsewhere",
        "sdk": "js:v4.24.0", "functions": []
    });
    let response = stack
        .http
        .post(stack.url("/fn/register"))
        .bearer_auth(stack.bearer())
        .json(&foreign)
        .send()
        .await
        .expect("register");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["status"], 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("not one paysteps was given"),
        "{body}"
    );
    // The app's own out-of-band sync, which carries the hashed key, is accepted.
    let put = stack
        .http
        .put(stack.app_url())
        .json(&json!({ "url": stack.app_url() }))
        .send()
        .await
        .expect("PUT the app");
    let body: Value = put.json().await.expect("JSON");
    assert_eq!(body["message"], "Successfully registered", "{body}");

    // A verified Stripe webhook starts the app's function on that Stripe event.
    let session = stack.deliver_stripe_checkout().await;
    let run = stack.run_of_function("e2e-app-stripe-checkout").await;
    let run = stack.ended(&run).await;
    assert_eq!(
        run["output"],
        json!({ "type": "checkout.session.completed", "session": session }),
        "{run:#}"
    );

    // A wait for another Stripe event of the same customer: another customer's invoice
    // does not end it, the customer's own does.
    let waiting = stack.run_of_function("e2e-app-await-invoice").await;
    stack
        .run_until(&waiting, &["waiting"], Duration::from_secs(30))
        .await;
    let other = Overrides {
        customer: Some("cus_someone_else".into()),
        ..Overrides::default()
    };
    let not_theirs = stack.deliver_stripe("invoice.paid", other).await;
    let (_, run) = stack.get(&format!("/api/v1/runs/{waiting}")).await;
    assert_eq!(run["status"], "waiting", "{not_theirs}: {run:#}");
    let invoice = stack
        .deliver_stripe("invoice.paid", Overrides::default())
        .await;
    let run = stack.ended(&waiting).await;
    assert_eq!(run["output"], json!({ "invoice": invoice }), "{run:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sdk_run_resumes_after_a_restart_mid_sleep_and_is_replayed_from_its_failed_step() {
    let Some(mut stack) = Stack::synced_dev().await else {
        return;
    };

    // The idempotency key starts one run per job; the cancel event stops another job's.
    let sleeper = stack
        .start("test/sleeper.started", json!({ "job": "a", "sleep": "3s" }))
        .await;
    let again = stack
        .send("test/sleeper.started", json!({ "job": "a", "sleep": "3s" }))
        .await;
    assert!(stack.runs_of(&again, 0).await.is_empty());
    let doomed = stack
        .start("test/sleeper.started", json!({ "job": "b", "sleep": "1m" }))
        .await;
    stack
        .run_until(&sleeper, &["sleeping"], Duration::from_secs(30))
        .await;
    stack
        .run_until(&doomed, &["sleeping"], Duration::from_secs(30))
        .await;
    stack
        .send("test/sleeper.cancelled", json!({ "job": "b" }))
        .await;
    stack.restart_paysteps().await;
    let run = stack.ended(&sleeper).await;
    assert_eq!(run["output"], "slept and woke", "{run:#}");
    let run = stack
        .run_until(
            &doomed,
            &["cancelled", "completed"],
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(run["status"], "cancelled", "{run:#}");

    // A run failed at its second step is replayed, once fixed, from that step.
    let fragile = stack.start("test/fragile.started", json!({})).await;
    let run = stack.ended(&fragile).await;
    assert_eq!(run["status"], "failed", "{run:#}");
    let fixed = stack
        .http
        .get(format!("http://127.0.0.1:{}/test/fix", stack.app_port))
        .send()
        .await
        .expect("fix the app");
    assert!(fixed.status().is_success());
    let (status, replay) = stack
        .post(&format!("/api/v1/runs/{fragile}/replay"), &json!({}))
        .await;
    assert!(status.is_success(), "{status} {replay}");
    let replay_id = replay["id"]
        .as_str()
        .or(replay["run"]["id"].as_str())
        .unwrap_or_else(|| panic!("no replay id in {replay}"))
        .to_owned();
    let run = stack.ended(&replay_id).await;
    assert_eq!(
        run["output"],
        json!({ "first": "done once", "second": "fixed", "firstRuns": 1 }),
        "{run:#}"
    );
}

/// Waits and cancellations whose `if` is more than a field equality: only an event for
/// which the whole condition holds resumes or cancels the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditions_decide_which_event_resumes_or_cancels_a_run() {
    let Some(stack) = Stack::synced_dev().await else {
        return;
    };
    let waiting = stack
        .start("test/gate.waiting", json!({ "user": "u1" }))
        .await;
    let doomed = stack
        .start("test/gate.waiting", json!({ "user": "u2" }))
        .await;
    for run in [&waiting, &doomed] {
        stack
            .run_until(run, &["waiting"], Duration::from_secs(30))
            .await;
    }
    // Each of these fails one part of a condition.
    for (name, data) in [
        ("test/gate.opened", json!({ "user": "u1", "level": 1 })),
        ("test/gate.opened", json!({ "user": "u3", "level": 5 })),
        (
            "test/gate.closed",
            json!({ "user": "u2", "reason": "none" }),
        ),
        (
            "test/gate.closed",
            json!({ "user": "u3", "reason": "done" }),
        ),
    ] {
        stack.send(name, data).await;
    }
    for run in [&waiting, &doomed] {
        let (_, run) = stack.get(&format!("/api/v1/runs/{run}")).await;
        assert_eq!(run["status"], "waiting", "{run:#}");
    }
    stack
        .send("test/gate.opened", json!({ "user": "u1", "level": 3 }))
        .await;
    stack
        .send(
            "test/gate.closed",
            json!({ "user": "u2", "reason": "done" }),
        )
        .await;
    let run = stack.ended(&waiting).await;
    assert_eq!(run["output"], json!({ "level": 3 }), "{run:#}");
    let run = stack
        .run_until(
            &doomed,
            &["cancelled", "completed", "failed"],
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(run["status"], "cancelled", "{run:#}");
}

/// A new version of the app drops a function: the next sync archives it (no new run),
/// while a run in flight of another function goes on across the sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_sync_archives_a_dropped_function_and_runs_in_flight_go_on() {
    if !node_ready() {
        return;
    }
    let mut stack = Stack::launch_with(Mode::Dev, &[("PAYSTEPS_TEST_EXTRA", "1")]).await;
    stack.synced().await;
    assert!(
        stack
            .function_ids()
            .await
            .contains(&"e2e-app-extra".to_owned())
    );
    let sleeper = stack
        .start(
            "test/sleeper.started",
            json!({ "job": "resync", "sleep": "6s" }),
        )
        .await;
    stack
        .run_until(&sleeper, &["sleeping"], Duration::from_secs(30))
        .await;
    stack.restart_app(&[]);
    let until = Instant::now() + Duration::from_secs(30);
    while stack
        .function_ids()
        .await
        .contains(&"e2e-app-extra".to_owned())
    {
        assert!(
            Instant::now() < until,
            "e2e-app-extra is still registered after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, apps) = stack.get("/api/v1/apps").await;
    assert_eq!(apps["apps"][0]["error"], Value::Null, "{apps}");
    let dropped = stack.send("test/extra", json!({})).await;
    assert!(stack.runs_of(&dropped, 0).await.is_empty());
    let run = stack.ended(&sleeper).await;
    assert_eq!(run["output"], "slept and woke", "{run:#}");
}

/// A concurrency limit keyed by an expression: one run per lane at a time, lanes apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expression_keyed_concurrency_limit_runs_one_run_per_lane() {
    let Some(stack) = Stack::synced_dev().await else {
        return;
    };
    let first = stack.start("test/laned", json!({ "lane": "x" })).await;
    stack
        .run_until(&first, &["sleeping"], Duration::from_secs(30))
        .await;
    let second = stack.start("test/laned", json!({ "lane": "x" })).await;
    let other = stack.start("test/laned", json!({ "lane": "y" })).await;
    // The other lane runs while the first holds lane x; the second waits its turn.
    stack
        .run_until(&other, &["sleeping", "completed"], Duration::from_secs(30))
        .await;
    let (_, run) = stack.get(&format!("/api/v1/runs/{second}")).await;
    assert_eq!(run["status"], "pending", "{run:#}");
    for run in [&first, &second, &other] {
        let run = stack.ended(run).await;
        assert_eq!(run["status"], "completed", "{run:#}");
    }
    let (_, first) = stack.get(&format!("/api/v1/runs/{first}")).await;
    let (_, second) = stack.get(&format!("/api/v1/runs/{second}")).await;
    assert!(
        second["started_at"].as_i64() >= first["ended_at"].as_i64(),
        "lane x ran two at once: {first:#} {second:#}"
    );
}

/// An app that is away (a deploy, a crash) costs its runs no attempt: a function with
/// no retries at all waits for it and completes once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_waits_out_an_app_that_cannot_be_reached() {
    let Some(mut stack) = Stack::synced_dev().await else {
        return;
    };
    stack.app.kill();
    let run_id = stack.start("test/caught.started", json!({})).await;
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, run) = stack.get(&format!("/api/v1/runs/{run_id}")).await;
        assert_ne!(run["status"], "failed", "{run:#}");
        let away = run["steps"].as_array().into_iter().flatten().any(|s| {
            s["status"] == "errored"
                && s["error"]
                    .to_string()
                    .contains("the app could not be reached")
        });
        if away && run["history"].as_array().is_some_and(|h| h.len() >= 4) {
            break;
        }
        assert!(
            Instant::now() < until,
            "no unreachable attempt recorded: {run:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stack.restart_app(&[]);
    let run = stack
        .run_until(&run_id, &["completed", "failed"], Duration::from_secs(60))
        .await;
    assert_eq!(
        run["output"],
        json!({ "recovered": "never works", "after": "went on" }),
        "{run:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_function_of_an_app_fires() {
    let Some(stack) = Stack::synced_dev().await else {
        return;
    };
    // `* * * * *`: the next minute starts within 60 s.
    let run = stack
        .run_of_function_within("e2e-app-ticker", Duration::from_secs(75))
        .await;
    let run = stack.ended(&run).await;
    assert_eq!(run["output"], "ticked", "{run:#}");
    assert_eq!(run["event"]["name"], "paysteps/cron.tick", "{run:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_with_a_setting_paysteps_does_not_carry_out_is_refused_and_says_why() {
    if !node_ready() {
        return;
    }
    let stack = Stack::launch_with(Mode::Dev, &[("PAYSTEPS_TEST_UNSUPPORTED", "1")]).await;
    let until = Instant::now() + Duration::from_secs(30);
    let app = loop {
        let (_, body) = stack.get("/api/v1/apps").await;
        let app = body["apps"][0].clone();
        if app["error"]
            .as_str()
            .is_some_and(|e| e.contains("debounce"))
        {
            break app;
        }
        assert!(Instant::now() < until, "no refusal within 30 s: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        app["error"].as_str().unwrap().contains(
            "function 'e2e-app-debounced': debounce (debounce) is not supported by paysteps"
        ),
        "{app}"
    );
    assert_eq!(app["function_count"], 0, "{app}");
    let (_, functions) = stack.get("/api/v1/functions").await;
    assert!(
        !functions.to_string().contains("e2e-app-"),
        "a refused app registered functions: {functions}"
    );
    // Syncing by hand says the same.
    let (status, body) = stack
        .post("/api/v1/apps/sync", &json!({ "url": stack.app_url() }))
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body.to_string().contains("debounce"), "{body}");
}

/// Rust functions and an app's functions invoke each other in one engine: the Rust
/// function addresses the app's by its composite id, the app addresses the Rust one as
/// a function of app "paysteps".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_and_sdk_functions_invoke_each_other() {
    if !node_ready() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let app_port = free_port();
    let _app = start_app(Mode::Dev, dir.path(), app_port, free_port(), &[]);
    let db = TestDb::create(Backend::Sqlite).await;
    let triple = Function::new("rust-triple", Trigger::Internal, |ctx| async move {
        let n = ctx.event.data["n"].as_i64().unwrap_or_default();
        ctx.step
            .run("triple", move || async move { Ok(n * 3) })
            .await
    });
    let ask_app = Function::new(
        "ask-app",
        Trigger::event("test/cross.rust"),
        |ctx| async move {
            let data = json!({ "n": 5 });
            match ctx
                .step
                .invoke(
                    "double it",
                    "e2e-app-double",
                    &data,
                    Duration::from_secs(30),
                )
                .await?
            {
                Ok(output) => Ok(output),
                Err(error) => Err(Interrupt::fail(error)),
            }
        },
    );
    let engine = Engine::builder(db.store().await)
        .config(test_config(Clock::System))
        .register(triple)
        .register(ask_app)
        .build()
        .expect("engine");
    engine.start();
    let url = reqwest::Url::parse(&format!("http://127.0.0.1:{app_port}/api/inngest")).unwrap();
    let apps = Apps::new(engine.clone(), vec![url.clone()], None);
    apps.load().await.expect("load the apps");
    let until = Instant::now() + Duration::from_secs(30);
    while apps.sync(&url).await.is_err() {
        assert!(Instant::now() < until, "the app did not sync");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let outputs = futures::future::join(
        run_output(&engine, "test/cross.rust", json!({})),
        run_output(&engine, "test/cross.sdk", json!({ "n": 7 })),
    )
    .await;
    assert_eq!(outputs.0, json!({ "doubled": 10 }));
    assert_eq!(outputs.1, json!({ "tripled": 21 }));
    engine.shutdown().await;
}

/// Ingests an event and answers the output of the run it started, once it completed.
async fn run_output(engine: &Engine, name: &str, data: Value) -> Value {
    let outcome = engine
        .ingest(EventInput::new(name, &data))
        .await
        .expect("ingest");
    let IngestOutcome::Accepted { runs, .. } = outcome else {
        panic!("{name} was a duplicate")
    };
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let run = engine
            .store()
            .run(&runs[0])
            .await
            .expect("read the run")
            .expect("the run");
        match run.status {
            RunStatus::Completed => {
                return serde_json::from_str(run.output.as_deref().unwrap_or("null"))
                    .expect("JSON");
            }
            RunStatus::Failed => panic!("{name}: the run failed: {:?}", run.error),
            _ => {}
        }
        assert!(
            Instant::now() < until,
            "{name}: the run is {} after 30 s",
            run.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
