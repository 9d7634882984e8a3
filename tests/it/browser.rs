//! The dashboard in headless Chromium through chromedriver: sign in, find a failed
//! payment run, read its failing step's error, fix the step, replay it and see the
//! replay complete; then replay several failed runs at once with a confirmation; then
//! read the Billing page's daily report charts, open disputes and refunds.
//! Screenshots land in `target/screenshots/`. Skipped when chromedriver is missing.

use paysteps::testing::store::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use paysteps::RunStatus;
use paysteps::testing::http::Access;
use paysteps::testing::payments::reports::{self, Day};
use paysteps::testing::stripe::fixtures::Overrides;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Mutex;

use crate::common::{Backend, Setup, TestApp, first_run, until_idle};
use crate::payments_api::{dispute, intent_of, refund};
use crate::sdk_apps::{Mode, Stack};

crate::on_both_backends!(an_operator_replays_failed_payment_runs_from_the_dashboard);

/// The Apps page of `paysteps dev` running an Inngest SDK app: the app with its SDK,
/// function count and last sync, a Sync that answers, and the app named on its
/// functions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apps_page_shows_an_sdk_app_and_syncs_it() {
    let Some(binary) = chromedriver_or_skip() else {
        return;
    };
    if !crate::sdk_apps::node_ready() {
        return;
    }
    let _one_browser = BROWSER.lock().await;
    let stack = Stack::launch(Mode::Dev).await;
    let synced = stack.synced().await;
    let count = synced["function_count"]
        .as_i64()
        .expect("a count")
        .to_string();
    let driver = Driver::start(&binary);
    let profile = tempfile::tempdir().expect("profile dir");
    let client = browser(&driver, profile.path()).await;

    client.goto(&stack.url("/#/apps")).await.expect("open");
    let row = text_when(&client, "[data-testid=apps-table] tbody", |t| {
        t.contains("e2e-app") && t.contains("js:v4.24.0")
    })
    .await;
    assert!(row.contains(&stack.app_url()), "{row}");
    let functions = text_when(&client, "[data-testid=app-functions]", |t| !t.is_empty()).await;
    assert_eq!(functions, count);
    assert_eq!(
        text_when(&client, "[data-testid=app-error]", |t| !t.is_empty()).await,
        "—"
    );
    screenshot(&client, "apps").await;
    click(&client, "[data-testid=app-sync]").await;
    let said = text_when(&client, "[data-testid=action-message]", |t| {
        t.contains("Synced")
    })
    .await;
    assert!(said.contains(&stack.app_url()), "{said}");

    client.goto(&stack.url("/#/functions")).await.expect("open");
    let app = text_when(
        &client,
        "[data-function='e2e-app-flow'] [data-testid=function-app]",
        |t| !t.is_empty(),
    )
    .await;
    assert_eq!(app, format!("app: {}", stack.app_url()));
    client.close().await.expect("close the browser");
}

const TOKEN: &str = "browser-dashboard-token";
const FLAKY_STEP: &str = "record-payment-failure";
const FAILED_FN: &str = "payment-intent-payment-failed";
const WAIT: Duration = Duration::from_secs(20);

/// One browser at a time: the machine running the suite may have few cores.
static BROWSER: Mutex<()> = Mutex::const_new(());

fn chromedriver() -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("chromedriver"))
        .find(|path| path.is_file())
}

/// chromedriver, or `None` after saying once that the browser suite is skipped (or
/// failing under `PAYSTEPS_TEST_REQUIRE_ALL`).
fn chromedriver_or_skip() -> Option<PathBuf> {
    let found = chromedriver();
    if found.is_none() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        crate::common::db::skipped(
            &ONCE,
            "browser suite skipped: chromedriver is not installed (apt-get install chromium chromium-driver)",
        );
    }
    found
}

/// chromedriver on a free loopback port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start(binary: &Path) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn browser(driver: &Driver, profile: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    let mut options = json!({
        "args": [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1440,1400",
            format!("--user-data-dir={}", profile.display()),
        ],
    });
    if Path::new("/usr/bin/chromium").exists() {
        options["binary"] = json!("/usr/bin/chromium");
    }
    caps.insert("goog:chromeOptions".to_owned(), options);
    ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a browser session")
}

/// Clicks the first element matching `css`, retrying while the page re-renders.
async fn click(client: &Client, css: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let attempt = async { client.find(Locator::Css(css)).await?.click().await };
        match attempt.await {
            Ok(()) => return,
            Err(err) if Instant::now() < deadline => {
                let _ = err;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => panic!("clicking {css}: {err}"),
        }
    }
}

/// The text of the first element matching `css` once `accept` holds for it.
async fn text_when(client: &Client, css: &str, accept: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    let mut last = String::new();
    while Instant::now() < deadline {
        let attempt = async { client.find(Locator::Css(css)).await?.text().await };
        if let Ok(text) = attempt.await {
            if accept(&text) {
                return text;
            }
            last = text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{css} never showed what was expected; last text: {last:?}");
}

/// The attribute `name` of the first element matching `css`, retrying while the page
/// re-renders (an element found just before a re-render is stale a moment later).
async fn attribute(client: &Client, css: &str, name: &str) -> Option<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let attempt = async { client.find(Locator::Css(css)).await?.attr(name).await };
        match attempt.await {
            Ok(value) => return value,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => panic!("reading {name} of {css}: {err}"),
        }
    }
}

/// The `textContent` of the first element matching `css` (text a browser does not
/// render too, such as an SVG `<title>`), retrying while the page re-renders.
async fn text_content(client: &Client, css: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let attempt = async {
            client
                .find(Locator::Css(css))
                .await?
                .prop("textContent")
                .await
        };
        match attempt.await {
            Ok(text) => return text.unwrap_or_default(),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => panic!("reading the text of {css}: {err}"),
        }
    }
}

/// Waits for an element matching `css`.
async fn present(client: &Client, css: &str) {
    text_when(client, css, |_| true).await;
}

/// Replaces the text of the input matching `css`, retrying while the page re-renders.
async fn fill(client: &Client, css: &str, text: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let attempt = async {
            let input = client.find(Locator::Css(css)).await?;
            input.clear().await?;
            if !text.is_empty() {
                input.send_keys(text).await?;
            }
            input.prop("value").await
        };
        match attempt.await {
            Ok(Some(value)) if value == text => return,
            _ if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("filling {css}: {other:?}"),
        }
    }
}

async fn select(client: &Client, css: &str, value: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let attempt = async {
            client
                .find(Locator::Css(css))
                .await?
                .select_by_value(value)
                .await
        };
        match attempt.await {
            Ok(()) => return,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => panic!("selecting {value} in {css}: {err}"),
        }
    }
}

async fn screenshot(client: &Client, name: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    let png = client.screenshot().await.expect("screenshot");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
}

async fn failed_run(app: &TestApp, customer: &str) -> String {
    first_run(
        &app.deliver_fixture(
            "payment_intent.payment_failed",
            Overrides {
                customer: Some(customer.to_owned()),
                ..Overrides::default()
            },
        )
        .await,
    )
}

/// What the Billing page shows, delivered as Stripe would send it: payments in two
/// currencies today and yesterday, a refund, an open dispute whose evidence is due in
/// five and a half days, and a declined payment; then the daily rollup's figures for the
/// two days, from those tables.
async fn money_story(app: &TestApp) {
    let now = app.clock.now_ms() / 1000;
    let day = 86_400;
    let (user, customer) = ("user_123", "cus_QXg1o8vcGmoR32");
    let mut disputed = dispute(
        "charge.dispute.created",
        "dp_browser",
        "pi_browser_disputed",
        "needs_response",
        Some(now + 5 * day + day / 2),
        now,
        true,
    );
    disputed["data"]["object"]["balance_transactions"][0]["created"] = json!(now);
    let events = [
        intent_of(
            "pi_browser_yesterday",
            true,
            1099,
            "usd",
            now - day,
            user,
            customer,
        ),
        intent_of("pi_browser", true, 5000, "usd", now, user, customer),
        refund(
            "refund.created",
            "re_browser",
            "pi_browser",
            1099,
            "usd",
            now,
        ),
        intent_of(
            "pi_browser_disputed",
            true,
            2000,
            "usd",
            now,
            user,
            customer,
        ),
        disputed,
        intent_of(
            "pi_browser_yen",
            true,
            5000,
            "jpy",
            now,
            "user_456",
            "cus_yen",
        ),
        intent_of(
            "pi_browser_declined",
            false,
            700,
            "usd",
            now,
            user,
            customer,
        ),
    ];
    for event in &events {
        let (status, body) = app.deliver(event).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    until_idle(&app.engine).await;
    let today = Day::of_secs(now);
    let computed_at = app.clock.now_ms();
    app.store()
        .write(Write::isolated(), move |tx| {
            Box::pin(async move {
                reports::recompute_day(tx, today.previous(), computed_at).await?;
                reports::recompute_day(tx, today, computed_at).await
            })
        })
        .await
        .expect("the daily report's rows");
}

async fn an_operator_replays_failed_payment_runs_from_the_dashboard(backend: Backend) {
    let Some(binary) = chromedriver_or_skip() else {
        return;
    };
    let _one_browser = BROWSER.lock().await;
    let name = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let app = TestApp::start_with(Setup {
        backend,
        access: Access::token(TOKEN),
        ..Setup::default()
    })
    .await;
    // Four payment runs fail for good on the same step; one succeeds.
    app.faults.fail_always(FLAKY_STEP);
    let target = failed_run(&app, "cus_browser_target").await;
    let mut others = Vec::new();
    for i in 0..3 {
        others.push(failed_run(&app, &format!("cus_browser_{i}")).await);
    }
    app.deliver_fixture("checkout.session.completed", Overrides::default())
        .await;
    app.settle().await;
    for id in others.iter().chain([&target]) {
        let run = app
            .store()
            .run(&id.parse().unwrap())
            .await
            .expect("read")
            .expect("run");
        assert_eq!(run.status, RunStatus::Failed);
    }
    app.engine.start();

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let router = app.router.clone();
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let driver = Driver::start(&binary);
    let profile = tempfile::tempdir().expect("profile dir");
    let client = browser(&driver, profile.path()).await;

    // Signing in.
    client.goto(&format!("{base}/")).await.expect("open");
    present(&client, "[data-testid=signin-token]").await;
    client
        .find(Locator::Css("[data-testid=signin-token]"))
        .await
        .expect("token field")
        .send_keys(TOKEN)
        .await
        .expect("type");
    click(&client, "[data-testid=signin-submit]").await;

    // The runs page: counts per status and the failed run, found by its customer.
    text_when(&client, "[data-testid=count-failed]", |t| {
        t.starts_with("4")
    })
    .await;
    select(&client, "[data-testid=filter-status]", "failed").await;
    present(
        &client,
        &format!("[data-run-id='{target}'][data-status=failed]"),
    )
    .await;
    screenshot(&client, &format!("runs-{name}")).await;
    fill(&client, "[data-testid=runs-search]", "cus_browser_target").await;
    click(&client, "[data-testid=runs-search-submit]").await;
    text_when(&client, "[data-testid=runs-table] tbody", |t| {
        t.contains(&target) && !others.iter().any(|o| t.contains(o.as_str()))
    })
    .await;
    click(
        &client,
        &format!("[data-run-id='{target}'] [data-testid=run-link]"),
    )
    .await;

    // The run detail: the failing step is marked and its error readable.
    let error = text_when(
        &client,
        "[data-testid=failed-step] [data-testid=step-error]",
        |t| !t.is_empty(),
    )
    .await;
    assert!(
        error.contains("injected fault in step 'record-payment-failure'"),
        "{error}"
    );
    assert_eq!(
        attribute(&client, "[data-testid=failed-step]", "data-step")
            .await
            .as_deref(),
        Some(FLAKY_STEP)
    );
    let explained = text_when(&client, "[data-testid=explain-from-failure]", |t| {
        !t.is_empty()
    })
    .await;
    assert!(explained.contains("not run again"), "{explained}");
    text_when(&client, "[data-testid=history]", |t| t.contains("failed")).await;
    text_when(&client, "[data-testid=event-payload]", |t| {
        t.contains("cus_browser_target")
    })
    .await;
    screenshot(&client, &format!("run-detail-{name}")).await;

    // Fix the step, replay from the failed step, and watch the replay complete.
    app.faults.clear(FLAKY_STEP);
    click(&client, "[data-testid=replay-from-failure]").await;
    text_when(&client, "[data-testid=run-status]", |t| t == "completed").await;
    let replay_link = text_when(&client, "[data-testid=replay-of-link]", |t| t == target).await;
    assert_eq!(replay_link, target);
    screenshot(&client, &format!("replay-completed-{name}")).await;
    click(&client, "[data-testid=replay-of-link]").await;
    text_when(&client, "[data-testid=replay-link]", |t| {
        t.starts_with("run_")
    })
    .await;

    // Bulk: every failed run of the function not yet replayed, previewed then confirmed.
    click(&client, "[data-testid=nav-runs]").await;
    present(&client, "[data-testid=runs-page]").await;
    select(&client, "[data-testid=filter-function]", FAILED_FN).await;
    select(&client, "[data-testid=filter-status]", "failed").await;
    // Clear the search left from before.
    fill(&client, "[data-testid=runs-search]", "").await;
    click(&client, "[data-testid=runs-search-submit]").await;
    text_when(&client, "[data-testid=runs-table] tbody", |t| {
        others.iter().all(|o| t.contains(o.as_str()))
    })
    .await;
    click(&client, "[data-testid=bulk-replay]").await;
    let preview = text_when(&client, "[data-testid=bulk-preview]", |t| !t.is_empty()).await;
    assert!(preview.starts_with("3 runs match"), "{preview}");
    screenshot(&client, &format!("bulk-preview-{name}")).await;
    click(&client, "[data-testid=bulk-confirm]").await;
    let done = text_when(&client, "[data-testid=action-message]", |t| {
        t.starts_with("Replayed")
    })
    .await;
    assert!(done.starts_with("Replayed 3 runs"), "{done}");
    select(&client, "[data-testid=filter-status]", "completed").await;
    text_when(&client, "[data-testid=count-completed]", |t| {
        t.split_whitespace()
            .next()
            .and_then(|n| n.parse::<i64>().ok())
            .is_some_and(|n| n >= 4)
    })
    .await;
    for original in &others {
        let replays = app
            .store()
            .replays_of(&original.parse().unwrap())
            .await
            .expect("replays");
        assert_eq!(replays.len(), 1, "{original}");
        assert_eq!(replays[0].status, RunStatus::Completed);
    }

    // The other pages render what happened.
    click(&client, "[data-testid=nav-events]").await;
    text_when(&client, "[data-testid=events-table] tbody", |t| {
        t.contains("stripe/payment_intent.payment_failed") && t.contains("cus_browser_target")
    })
    .await;
    click(&client, "[data-testid=nav-functions]").await;
    text_when(
        &client,
        &format!("[data-function='{FAILED_FN}'] [data-testid=stats-day]"),
        |t| t.starts_with("8 runs"),
    )
    .await;
    screenshot(&client, &format!("functions-{name}")).await;
    money_story(&app).await;
    let today = Day::of_millis(app.clock.now_ms()).to_string();
    click(&client, "[data-testid=nav-billing]").await;
    text_when(&client, "[data-testid=subscriptions-by-status]", |t| {
        t.contains("active")
    })
    .await;
    text_when(&client, "[data-testid=failures-table]", |t| {
        t.contains("function_failed")
    })
    .await;

    // The daily report: one chart per currency, gross per day as a point that names its
    // amount, failed payments as bars on their own axis, the days as a table.
    let usd = "[data-testid=chart-usd]";
    let gross =
        format!("{usd} [data-testid=chart-money] [data-series=revenue][data-day='{today}']");
    assert_eq!(
        attribute(&client, &gross, "data-value").await.as_deref(),
        Some("7000")
    );
    let net =
        format!("{usd} [data-testid=chart-money] circle[data-series=net][data-day='{today}']");
    assert_eq!(
        attribute(&client, &net, "data-value").await.as_deref(),
        Some("3901"),
        "gross less the refund and the disputed amount"
    );
    let point = text_content(&client, &format!("{gross} title")).await;
    assert_eq!(point, format!("{today} gross: 70.00 USD"));
    assert_eq!(
        attribute(
            &client,
            &format!("{usd} [data-testid=chart-failed] rect[data-day='{today}']"),
            "data-value"
        )
        .await
        .as_deref(),
        Some("1")
    );
    let described = attribute(&client, &format!("{usd} svg[role=img]"), "aria-labelledby")
        .await
        .expect("the chart names its title and description");
    assert_eq!(described, "chart-usd-title chart-usd-desc");
    let desc = text_content(&client, "#chart-usd-desc").await;
    assert!(
        desc.contains(
            "gross 80.99 USD, refunds 10.99 USD, disputed 20.00 USD, net 50.00 USD; 1 failed payment."
        ),
        "{desc}"
    );
    click(&client, "[data-testid=chart-jpy] summary").await;
    text_when(&client, "[data-testid=report-table-jpy]", |t| {
        t.contains(&today) && t.contains("5,000 JPY")
    })
    .await;

    // The open dispute with the days left to answer it, and the refund.
    let due = text_when(
        &client,
        "[data-dispute-id=dp_browser] [data-testid=dispute-due]",
        |t| !t.is_empty(),
    )
    .await;
    assert!(due.ends_with("5 days left"), "{due}");
    text_when(&client, "[data-testid=disputes-table]", |t| {
        t.contains("pi_browser_disputed") && t.contains("20.00 USD") && t.contains("fraudulent")
    })
    .await;
    text_when(&client, "[data-refund-id=re_browser]", |t| {
        t.contains("10.99 USD") && t.contains("succeeded")
    })
    .await;
    screenshot(&client, &format!("billing-{name}")).await;
    client
        .execute(
            "document.querySelector('[data-testid=disputes-table]').scrollIntoView()",
            vec![],
        )
        .await
        .expect("scroll to the disputes");
    screenshot(&client, &format!("billing-disputes-{name}")).await;

    client.close().await.expect("close the browser");
    app.engine.shutdown().await;
    server.abort();
}

/// The outgoing webhooks page as under `serve` (a dashboard token, so a signed-in session
/// whose CSRF token every write must carry): an operator adds an endpoint, pauses it,
/// rotates its secret and deletes it, and each action reaches the database.
#[tokio::test]
async fn an_operator_manages_webhook_endpoints_on_their_page() {
    let Some(binary) = chromedriver_or_skip() else {
        return;
    };
    let _one_browser = BROWSER.lock().await;
    let token = "browser-serve-dashboard-token-0123456789";
    let access = paysteps::testing::http::access::AccessArgs {
        allowed_hosts: Vec::new(),
        session_hours: 12,
        insecure_cookies: true,
        trusted_proxies: Vec::new(),
        metrics_token: None,
    }
    .serve(token, "127.0.0.1:0")
    .expect("a long token");
    let app = TestApp::start_with(Setup {
        access,
        webhooks: Some(paysteps::testing::webhooks::Destinations::AllowPrivate),
        ..Setup::default()
    })
    .await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let service = app
        .router
        .clone()
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    let server = tokio::spawn(async move { axum::serve(listener, service).await });
    let driver = Driver::start(&binary);
    let profile = tempfile::tempdir().expect("profile dir");
    let client = browser(&driver, profile.path()).await;
    let endpoints =
        |status: &str| format!("SELECT COUNT(*) FROM webhook_endpoints WHERE status = '{status}'");

    client
        .goto(&format!("{base}/webhooks"))
        .await
        .expect("open");
    fill(&client, "[data-testid=signin-token]", token).await;
    click(&client, "[data-testid=signin-submit]").await;
    present(&client, "[data-testid=app]").await;
    click(&client, "[data-testid=nav-webhooks]").await;

    fill(
        &client,
        "[data-testid=webhook-url]",
        "http://127.0.0.1:9/hook",
    )
    .await;
    fill(&client, "[data-testid=webhook-events]", "payment.failed").await;
    click(&client, "[data-testid=webhook-add-submit]").await;
    let first = text_when(&client, "[data-testid=webhook-secret]", |t| {
        t.starts_with("whsec_")
    })
    .await;
    let row = "[data-testid=webhook-endpoints] tr";
    text_when(&client, row, |t| t.contains("127.0.0.1:9/hook")).await;
    let id = attribute(&client, row, "data-webhook-id")
        .await
        .expect("the row names its endpoint");
    let row = format!("tr[data-webhook-id='{id}']");
    assert_eq!(app.count(&endpoints("active")).await, 1);
    screenshot(&client, "webhooks-added").await;

    click(&client, &format!("{row} [data-testid=webhook-pause]")).await;
    present(&client, &format!("{row}[data-status=paused]")).await;
    assert_eq!(app.count(&endpoints("paused")).await, 1);

    click(&client, &format!("{row} [data-testid=webhook-rotate]")).await;
    let rotated = text_when(&client, "[data-testid=webhook-secret]", |t| {
        t.starts_with("whsec_") && t != first
    })
    .await;
    assert_ne!(rotated, first);

    click(&client, &format!("{row} [data-testid=webhook-delete]")).await;
    let deadline = Instant::now() + WAIT;
    while let Err(err) = client.accept_alert().await {
        assert!(Instant::now() < deadline, "no confirmation asked: {err}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + WAIT;
    while app.count("SELECT COUNT(*) FROM webhook_endpoints").await > 0 {
        assert!(Instant::now() < deadline, "the endpoint was not deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    text_when(&client, "[data-testid=webhook-endpoints]", |t| {
        !t.contains("127.0.0.1:9/hook")
    })
    .await;
    assert_eq!(
        attribute(&client, "[data-testid=webhook-problem]", "hidden")
            .await
            .as_deref(),
        Some("true"),
        "no action was refused"
    );

    client.close().await.expect("close the browser");
    server.abort();
}
