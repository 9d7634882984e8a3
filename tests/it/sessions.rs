//! Dashboard sign-ins: a session of its own per sign-in (stored hashed, with its CSRF
//! token), ended by signing out or by its expiry, shared by `serve` processes on one
//! database; wrong tokens limited per client address; `serve` refusing a short token and
//! setting `Secure` cookies; the headers every page carries.

use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::connect_info::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use paysteps::testing::http::access::TrustedProxies;
use paysteps::testing::http::{Access, AppState, EventKeys};
use paysteps::testing::stripe::signature::Verifier;
use paysteps::testing::webhooks::Destinations;
use reqwest::redirect::Policy;
use tower::ServiceExt;

use crate::access::{Browser, HOST, TOKEN, csrf_of, page, send, sign_in, signed_in, write};
use crate::common::db::{postgres_url, report_postgres_skipped};
use crate::common::serve::{DASHBOARD_TOKEN, Serve, free_port};
use crate::common::{Backend, SECRET, Setup, TestApp, TestDb, eventually};

crate::on_both_backends!(
    each_sign_in_is_a_session_of_its_own_until_signed_out,
    a_session_ends_when_it_expires,
);

const HOOK: &str = r#"{"url":"http://127.0.0.1:9/hook","events":[]}"#;

async fn app(backend: Backend, access: Access) -> TestApp {
    TestApp::start_with(Setup {
        backend,
        access,
        with_payments: false,
        webhooks: Some(Destinations::AllowPrivate),
        ..Setup::default()
    })
    .await
}

fn sign_out(browser: &Browser) -> Request<Body> {
    Request::post("/signout")
        .header(header::HOST, HOST)
        .header(header::ORIGIN, format!("http://{HOST}"))
        .header(header::COOKIE, &browser.cookie)
        .body(Body::empty())
        .unwrap()
}

/// The session id a cookie (`name=value`) carries.
fn id_of(cookie: &str) -> &str {
    cookie.split_once('=').expect("name=value").1
}

async fn each_sign_in_is_a_session_of_its_own_until_signed_out(backend: Backend) {
    let app = app(backend, Access::token(TOKEN)).await;
    let a = signed_in(&app, TOKEN).await;
    let b = signed_in(&app, TOKEN).await;
    assert_ne!(a.cookie, b.cookie, "each sign-in has its own id");
    assert_ne!(a.csrf, b.csrf, "and its own CSRF token");
    assert_eq!(id_of(&a.cookie).len(), 64);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM dashboard_sessions").await,
        2
    );
    let plain = format!(
        "SELECT COUNT(*) FROM dashboard_sessions WHERE id_hash = '{0}' OR csrf = '{0}' OR token_tag = '{0}'",
        id_of(&a.cookie)
    );
    assert_eq!(
        app.count(&plain).await,
        0,
        "only a hash of the id is stored"
    );

    // One session's CSRF token does not pass with another's cookie.
    let crossed = Browser {
        cookie: a.cookie.clone(),
        csrf: b.csrf.clone(),
    };
    let answer = send(&app, write(&crossed, "/api/v1/webhooks", HOOK)).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    assert_eq!(answer.json()["error"]["code"], "csrf_token_invalid");
    assert_eq!(app.count("SELECT COUNT(*) FROM webhook_endpoints").await, 0);
    let answer = send(&app, write(&a, "/api/v1/webhooks", HOOK)).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    let answer = send(&app, write(&b, "/api/v1/webhooks", HOOK)).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);

    // Signing out ends that session only, everywhere it is used.
    let out = send(&app, sign_out(&a)).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.headers[header::LOCATION], "/signin");
    let cleared = out.headers[header::SET_COOKIE].to_str().expect("cookie");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM dashboard_sessions").await,
        1
    );
    let answer = send(&app, page("/", &a.cookie)).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert_eq!(answer.headers[header::LOCATION], "/signin");
    let answer = send(&app, page("/api/v1/webhooks", &a.cookie)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let answer = send(&app, write(&a, "/api/v1/webhooks", HOOK)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.count("SELECT COUNT(*) FROM webhook_endpoints").await, 2);
    let answer = send(&app, page("/", &b.cookie)).await;
    assert_eq!(answer.status, StatusCode::OK, "the other sign-in goes on");
    assert_eq!(csrf_of(&answer.body), b.csrf);

    // A new sign-in is a new session again.
    let c = signed_in(&app, TOKEN).await;
    assert!(c.cookie != a.cookie && c.cookie != b.cookie);

    // A process given a new dashboard token knows none of them.
    let rotated = paysteps::testing::http::router(AppState {
        engine: app.engine.clone(),
        verifier: Arc::new(Verifier::new([SECRET], Duration::from_secs(300))),
        max_body_bytes: 1 << 20,
        event_keys: EventKeys::Any,
        webhook_destinations: Destinations::AllowPrivate,
        access: Access::token("a-new-dashboard-token"),
        entitlement: Default::default(),
        stripe_mode: None,
        apps: None,
    });
    let answer = rotated.oneshot(page("/", &c.cookie)).await.expect("answer");
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
}

async fn a_session_ends_when_it_expires(backend: Backend) {
    let app = app(backend, Access::token(TOKEN)).await;
    let browser = signed_in(&app, TOKEN).await;
    app.clock.advance(Duration::from_secs(12 * 3600 - 1));
    let answer = send(&app, page("/api/v1/webhooks", &browser.cookie)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    app.clock.advance(Duration::from_secs(2));
    let answer = send(&app, page("/api/v1/webhooks", &browser.cookie)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let answer = send(&app, page("/", &browser.cookie)).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    let answer = send(&app, write(&browser, "/api/v1/webhooks", HOOK)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.count("SELECT COUNT(*) FROM webhook_endpoints").await, 0);

    // The next sign-in clears expired sessions; a shorter setting shortens the cookie.
    let app = self::app(
        backend,
        Access::token(TOKEN).session_ttl(Duration::from_secs(3600)),
    )
    .await;
    let answer = sign_in(&app, TOKEN).await;
    let cookie = answer.headers[header::SET_COOKIE].to_str().expect("cookie");
    assert!(cookie.contains("Max-Age=3600"), "{cookie}");
    let browser = signed_in(&app, TOKEN).await;
    app.clock.advance(Duration::from_secs(3600));
    let answer = send(&app, page("/", &browser.cookie)).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    signed_in(&app, TOKEN).await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM dashboard_sessions").await,
        1
    );
}

fn from(addr: &str, mut request: Request<Body>) -> Request<Body> {
    let addr: SocketAddr = addr.parse().expect("address");
    request.extensions_mut().insert(ConnectInfo(addr));
    request
}

fn bearer(token: &str) -> Request<Body> {
    Request::get("/api/v1/webhooks")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

fn signin_form(token: &str) -> Request<Body> {
    Request::post("/signin")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(format!("token={token}")))
        .unwrap()
}

fn retry_after(headers: &axum::http::HeaderMap) -> u64 {
    headers[header::RETRY_AFTER]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds")
}

#[tokio::test]
async fn wrong_tokens_are_limited_per_client_address() {
    let app = app(Backend::Sqlite, Access::token(TOKEN)).await;
    let attacker = "203.0.113.7:40000";
    for n in 1..=10 {
        let answer = send(&app, from(attacker, bearer(&format!("guess-{n}")))).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "attempt {n}");
    }
    let answer = send(&app, from(attacker, bearer("guess-11"))).await;
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(answer.json()["error"]["code"], "too_many_attempts");
    let wait = retry_after(&answer.headers);
    assert!((1..=60).contains(&wait), "{wait}");
    // Even the right token waits, and so does the sign-in form.
    let answer = send(&app, from(attacker, bearer(TOKEN))).await;
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS);
    let answer = send(&app, from("203.0.113.7:40001", signin_form(TOKEN))).await;
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(answer.headers.contains_key(header::RETRY_AFTER));
    assert!(!answer.headers.contains_key(header::SET_COOKIE));

    // Another address is not held back.
    let answer = send(&app, from("198.51.100.2:40000", bearer(TOKEN))).await;
    assert_eq!(answer.status, StatusCode::OK);

    // Wrong sign-ins count the same way.
    let typist = "198.51.100.9:40000";
    for n in 1..=10 {
        let answer = send(&app, from(typist, signin_form(&format!("typo-{n}")))).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "attempt {n}");
    }
    let answer = send(&app, from(typist, signin_form("typo-11"))).await;
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        answer.body.contains("Too many wrong tokens"),
        "{}",
        answer.body
    );

    // A minute later the address may try again.
    app.clock.advance(Duration::from_secs(60));
    let answer = send(&app, from(attacker, bearer(TOKEN))).await;
    assert_eq!(answer.status, StatusCode::OK);
    let answer = send(&app, from(typist, signin_form(TOKEN))).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn behind_a_trusted_proxy_wrong_tokens_are_counted_per_forwarded_client() {
    let proxy = "10.0.0.2:51000";
    let trusted = TrustedProxies::new(["10.0.0.0/8".parse().unwrap()]);
    let app = app(
        Backend::Sqlite,
        Access::token(TOKEN).trusted_proxies(trusted),
    )
    .await;
    let forwarded_by_proxy = |client: &str, token: &str| {
        let mut request = from(proxy, bearer(token));
        request
            .headers_mut()
            .insert("x-forwarded-for", client.parse().unwrap());
        request
    };
    for n in 1..=10 {
        let answer = send(
            &app,
            forwarded_by_proxy("203.0.113.7", &format!("guess-{n}")),
        )
        .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "attempt {n}");
    }
    let answer = send(&app, forwarded_by_proxy("203.0.113.7", "guess-11")).await;
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS);
    // The same proxy forwarding another user is not locked out with the guesser...
    let answer = send(&app, forwarded_by_proxy("198.51.100.2", TOKEN)).await;
    assert_eq!(answer.status, StatusCode::OK);
    // ...and the guesser cannot get out by claiming another address in front of it.
    let answer = send(&app, forwarded_by_proxy("198.51.100.3, 203.0.113.7", TOKEN)).await;
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS);

    // A client that is not a trusted proxy cannot choose its address at all.
    let direct = "192.0.2.50:40000";
    for n in 1..=10 {
        let mut request = from(direct, bearer(&format!("guess-{n}")));
        request.headers_mut().insert(
            "x-forwarded-for",
            format!("198.51.100.{n}").parse().unwrap(),
        );
        assert_eq!(send(&app, request).await.status, StatusCode::UNAUTHORIZED);
    }
    let answer = send(&app, from(direct, bearer(TOKEN))).await;
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS);
}

const PAGE_HEADERS: [(&str, &str); 4] = [
    ("x-frame-options", "DENY"),
    ("cache-control", "no-store"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
];

fn assert_page_headers(path: &str, headers: &axum::http::HeaderMap) {
    for (name, value) in PAGE_HEADERS {
        assert_eq!(
            headers.get(name).and_then(|v| v.to_str().ok()),
            Some(value),
            "{path}: {name}"
        );
    }
    let csp = headers
        .get(header::CONTENT_SECURITY_POLICY)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("{path}: no Content-Security-Policy"));
    for directive in [
        "frame-ancestors 'none'",
        "script-src 'self'",
        "style-src 'self'",
    ] {
        assert!(csp.contains(directive), "{path}: {csp}");
    }
    assert!(!csp.contains("unsafe"), "{path}: {csp}");
}

/// The page runs under its policy: no inline script, style or event handler.
fn assert_nothing_inline(path: &str, html: &str) {
    for (n, script) in html.split("<script").skip(1).enumerate() {
        let tag = script.split('>').next().unwrap_or_default();
        assert!(tag.contains(" src="), "{path}: inline script #{n}");
    }
    assert!(!html.contains("<style"), "{path}: inline style");
    assert!(!html.contains(" style="), "{path}: style attribute");
    assert!(!html.contains(" onclick="), "{path}: inline handler");
}

#[tokio::test]
async fn every_page_carries_the_security_headers() {
    let app = app(Backend::Sqlite, Access::token(TOKEN)).await;
    let signin = send(&app, Request::get("/signin").body(Body::empty()).unwrap()).await;
    assert_eq!(signin.status, StatusCode::OK);
    assert_page_headers("/signin", &signin.headers);
    assert_nothing_inline("/signin", &signin.body);
    let refused = sign_in(&app, "wrong").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_page_headers("/signin (refused)", &refused.headers);

    let browser = signed_in(&app, TOKEN).await;
    for path in ["/", "/webhooks"] {
        let answer = send(&app, page(path, &browser.cookie)).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}");
        assert!(
            answer.headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{path}"
        );
        assert_page_headers(path, &answer.headers);
        assert_nothing_inline(path, &answer.body);
        assert_eq!(csrf_of(&answer.body), browser.csrf, "{path}");
    }
    for asset in [
        "/assets/dashboard.js",
        "/assets/webhooks.js",
        "/assets/webhooks.css",
    ] {
        let answer = send(&app, page(asset, &browser.cookie)).await;
        assert_eq!(answer.status, StatusCode::OK, "{asset}");
        assert_page_headers(asset, &answer.headers);
    }
    let style = send(
        &app,
        Request::get("/assets/signin.css")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        style.status,
        StatusCode::OK,
        "the sign-in page's style is public"
    );
    assert!(style.body.contains(".error"));
}

/// Runs the binary in an empty directory with no paysteps variables but `env`.
fn paysteps(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_paysteps"));
    command.args(args).current_dir(dir);
    for var in [
        "DATABASE_URL",
        "STRIPE_WEBHOOK_SECRET",
        "PAYSTEPS_DASHBOARD_TOKEN",
        "PAYSTEPS_BIND",
        "PAYSTEPS_ALLOWED_HOSTS",
        "PAYSTEPS_SESSION_HOURS",
        "PAYSTEPS_INSECURE_COOKIES",
    ] {
        command.env_remove(var);
    }
    command.env("RUST_LOG", "warn").envs(env.iter().copied());
    command
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn serve_refuses_a_short_dashboard_token() {
    let dir = tempfile::tempdir().expect("dir");
    let token = "short-token-s3cr3t";
    let output = paysteps(
        dir.path(),
        &["serve"],
        &[
            ("DATABASE_URL", "sqlite://x.db"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_x"),
            ("PAYSTEPS_DASHBOARD_TOKEN", token),
            ("PAYSTEPS_BIND", "127.0.0.1:0"),
        ],
    )
    .output()
    .expect("run");
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let said = text(&output);
    assert!(said.contains("PAYSTEPS_DASHBOARD_TOKEN"), "{said}");
    assert!(said.contains("18 characters"), "{said}");
    assert!(said.contains("at least 32"), "{said}");
    assert!(!said.contains(token), "the token was printed: {said}");
    assert!(
        !dir.path().join("x.db").exists(),
        "serve touched the database before refusing"
    );
}

/// `serve` on an SQLite file with `env`, killed on drop.
struct Child {
    child: std::process::Child,
    port: u16,
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn serve(dir: &std::path::Path, env: &[(&str, &str)]) -> Child {
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let db = dir.join("serve.db").display().to_string();
    let mut all = vec![
        ("DATABASE_URL", db.as_str()),
        ("STRIPE_WEBHOOK_SECRET", SECRET),
        ("PAYSTEPS_DASHBOARD_TOKEN", DASHBOARD_TOKEN),
        ("PAYSTEPS_BIND", bind.as_str()),
    ];
    all.extend_from_slice(env);
    let child = paysteps(dir, &["serve"], &all)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start paysteps serve");
    let child = Child { child, port };
    let client = client();
    let health = format!("http://127.0.0.1:{port}/health");
    let up = eventually(Duration::from_secs(30), || {
        let request = client.get(&health).send();
        async move { request.await.is_ok_and(|r| r.status().is_success()) }
    })
    .await;
    assert!(up, "paysteps serve did not become healthy");
    child
}

/// A loopback client that shows redirects instead of following them.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(Policy::none())
        .timeout(Duration::from_secs(15))
        .build()
        .expect("http client")
}

/// Signs in to the process on `port` as a browser at `host` would; the answer.
async fn sign_in_over_http(port: u16, host: &str, token: &str) -> reqwest::Response {
    client()
        .post(format!("http://127.0.0.1:{port}/signin"))
        .header(reqwest::header::HOST, host)
        .header(reqwest::header::ORIGIN, format!("https://{host}"))
        .form(&[("token", token)])
        .send()
        .await
        .expect("answer")
}

fn set_cookie(answer: &reqwest::Response) -> String {
    answer.headers()[reqwest::header::SET_COOKIE]
        .to_str()
        .expect("cookie")
        .to_owned()
}

#[tokio::test]
async fn serve_takes_its_access_settings_from_the_environment() {
    let dir = tempfile::tempdir().expect("dir");
    {
        let server = serve(dir.path(), &[]).await;
        let answer = sign_in_over_http(server.port, "dash.example", DASHBOARD_TOKEN).await;
        assert_eq!(answer.status(), StatusCode::SEE_OTHER);
        let cookie = set_cookie(&answer);
        for attribute in [
            "HttpOnly",
            "SameSite=Strict",
            "Path=/",
            "Max-Age=43200",
            "Secure",
        ] {
            assert!(cookie.contains(attribute), "{cookie}");
        }
        // Behind a proxy any name is served when none is listed.
        let answer = client()
            .get(format!("http://127.0.0.1:{}/signin", server.port))
            .header(reqwest::header::HOST, "proxied.example")
            .send()
            .await
            .expect("answer");
        assert_eq!(answer.status(), StatusCode::OK);
    }
    let server = serve(
        dir.path(),
        &[
            ("PAYSTEPS_ALLOWED_HOSTS", "dash.example"),
            ("PAYSTEPS_INSECURE_COOKIES", "1"),
            ("PAYSTEPS_SESSION_HOURS", "2"),
        ],
    )
    .await;
    let answer = sign_in_over_http(server.port, "dash.example", DASHBOARD_TOKEN).await;
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    let cookie = set_cookie(&answer);
    assert!(cookie.contains("Max-Age=7200"), "{cookie}");
    assert!(!cookie.contains("Secure"), "{cookie}");
    let answer = sign_in_over_http(server.port, "rebind.evil.example", DASHBOARD_TOKEN).await;
    assert_eq!(answer.status(), StatusCode::MISDIRECTED_REQUEST);
    assert!(!answer.headers().contains_key(reqwest::header::SET_COOKIE));

    // Over a real connection the client's address is counted.
    let url = format!("http://127.0.0.1:{}/api/v1/webhooks", server.port);
    for n in 1..=10 {
        let answer = client()
            .get(&url)
            .bearer_auth(format!("guess-{n}"))
            .send()
            .await
            .expect("answer");
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED, "attempt {n}");
    }
    let answer = client()
        .get(&url)
        .bearer_auth(DASHBOARD_TOKEN)
        .send()
        .await
        .expect("answer");
    assert_eq!(answer.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(answer.headers().contains_key(reqwest::header::RETRY_AFTER));
}

#[tokio::test]
async fn serve_processes_on_one_database_share_sign_ins() {
    if postgres_url().is_none() {
        report_postgres_skipped();
        return;
    }
    let db = TestDb::create(Backend::Postgres).await;
    // Migrated here, so the processes' start is not a race against a busy database.
    db.store().await.close().await;
    let dir = tempfile::tempdir().expect("dir");
    let probe = client();
    let mut one = Serve::start("serve-1", &db.url(), 1, dir.path());
    one.wait_healthy(&probe).await;
    let mut two = Serve::start("serve-2", &db.url(), 1, dir.path());
    two.wait_healthy(&probe).await;

    let answer = sign_in_over_http(
        one.port,
        &format!("127.0.0.1:{}", one.port),
        DASHBOARD_TOKEN,
    )
    .await;
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    let cookie = set_cookie(&answer);
    assert!(cookie.contains("Secure"), "{cookie}");
    let cookie = cookie.split(';').next().expect("name=value").to_owned();
    let dashboard = |port: u16| {
        probe
            .get(format!("http://127.0.0.1:{port}/"))
            .header(reqwest::header::COOKIE, &cookie)
            .send()
    };
    let first = dashboard(one.port).await.expect("answer");
    assert_eq!(first.status(), StatusCode::OK);
    let csrf = csrf_of(&first.text().await.expect("page"));
    let second = dashboard(two.port).await.expect("answer");
    assert_eq!(
        second.status(),
        StatusCode::OK,
        "the other process knows it"
    );
    assert_eq!(csrf_of(&second.text().await.expect("page")), csrf);

    let out = probe
        .post(format!("http://127.0.0.1:{}/signout", two.port))
        .header(reqwest::header::COOKIE, &cookie)
        .send()
        .await
        .expect("answer");
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let after = dashboard(one.port).await.expect("answer");
    assert_eq!(
        after.status(),
        StatusCode::SEE_OTHER,
        "signed out everywhere"
    );
}
