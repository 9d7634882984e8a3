//! Who gets in: the dashboard token (refused without it, and nothing changes; bearer for
//! the API, a sign-in session for browsers), the `Host` names served (a DNS-rebinding page
//! is refused), and browser writes from another site refused on every route.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use paysteps::RunStatus;
use paysteps::testing::http::Access;
use paysteps::testing::http::access::AccessArgs;
use paysteps::testing::stripe::fixtures::Overrides;
use paysteps::testing::webhooks::Destinations;
use serde_json::Value;
use tower::ServiceExt;

use crate::common::serve::{free_port, http_client};
use crate::common::{Backend, Setup, TestApp, eventually, first_run};

crate::on_both_backends!(
    without_the_token_requests_are_refused_and_change_nothing,
    cross_site_writes_are_refused_on_every_route_and_store_nothing,
);

pub const TOKEN: &str = "dash-token-0123456789";
/// The name requests are sent to, as a browser on the machine running `dev` would.
pub const HOST: &str = "127.0.0.1:8288";

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

pub async fn send(app: &TestApp, request: Request<Body>) -> Answer {
    let response = app.router.clone().oneshot(request).await.expect("response");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// A browser signed in: its cookie (`name=value`) and the CSRF token its pages carry.
pub struct Browser {
    pub cookie: String,
    pub csrf: String,
}

/// Signs in through the form, as a browser on the same origin does.
pub async fn sign_in(app: &TestApp, token: &str) -> Answer {
    send(
        app,
        Request::post("/signin")
            .header("content-type", "application/x-www-form-urlencoded")
            .header(header::HOST, HOST)
            .header(header::ORIGIN, format!("http://{HOST}"))
            .header("sec-fetch-site", "same-origin")
            .body(Body::from(format!("token={token}")))
            .unwrap(),
    )
    .await
}

/// Signs in with `token` and reads the dashboard once for its CSRF token.
pub async fn signed_in(app: &TestApp, token: &str) -> Browser {
    let answer = sign_in(app, token).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let cookie = answer.headers[header::SET_COOKIE]
        .to_str()
        .expect("cookie")
        .split(';')
        .next()
        .expect("name=value")
        .to_owned();
    let page = send(app, page("/", &cookie)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    Browser {
        csrf: csrf_of(&page.body),
        cookie,
    }
}

/// The `<meta name="csrf-token">` of a page.
pub fn csrf_of(html: &str) -> String {
    let (_, rest) = html
        .split_once(r#"<meta name="csrf-token" content=""#)
        .expect("the page carries a CSRF token");
    rest.split('"').next().expect("closing quote").to_owned()
}

/// A GET of a page with `cookie`.
pub fn page(path: &str, cookie: &str) -> Request<Body> {
    Request::get(path)
        .header(header::HOST, HOST)
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap()
}

/// A same-origin write from the dashboard page of `browser`.
pub fn write(browser: &Browser, path: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .header(header::HOST, HOST)
        .header(header::ORIGIN, format!("http://{HOST}"))
        .header("sec-fetch-site", "same-origin")
        .header(header::COOKIE, &browser.cookie)
        .header("x-csrf-token", &browser.csrf)
        .body(Body::from(body.to_owned()))
        .unwrap()
}

fn replay(run_id: &str) -> axum::http::request::Builder {
    Request::post(format!("/api/v1/runs/{run_id}/replay"))
        .header("content-type", "application/json")
        .header(header::HOST, HOST)
}

async fn without_the_token_requests_are_refused_and_change_nothing(backend: Backend) {
    let app = TestApp::start_with(Setup {
        backend,
        access: Access::token(TOKEN),
        ..Setup::default()
    })
    .await;
    // The webhook is not behind the dashboard token.
    app.faults.fail_always("record-payment-failure");
    let run_id = first_run(
        &app.deliver_fixture("payment_intent.payment_failed", Overrides::default())
            .await,
    );
    app.settle().await;
    let run = app
        .store()
        .run(&run_id.parse().expect("a run id"))
        .await
        .expect("read")
        .expect("run");
    assert_eq!(run.status, RunStatus::Failed);
    let runs = app.count("SELECT COUNT(*) FROM runs").await;

    let answer = send(&app, replay(&run_id).body(Body::from("{}")).unwrap()).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.body);
    assert!(answer.body.contains("unauthorized"));
    assert!(answer.headers.contains_key(header::WWW_AUTHENTICATE));
    let wrong = replay(&run_id)
        .header(header::AUTHORIZATION, "Bearer nope")
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(send(&app, wrong).await.status, StatusCode::UNAUTHORIZED);
    for path in ["/api/v1/runs", "/api/v1/openapi.json", "/api/v1/billing"] {
        let answer = send(&app, Request::get(path).body(Body::empty()).unwrap()).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{path}");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM runs").await, runs);

    // Health, metrics and the webhook answer without it.
    for path in ["/health", "/metrics"] {
        let answer = send(&app, Request::get(path).body(Body::empty()).unwrap()).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}");
    }
    app.deliver_fixture("payment_intent.succeeded", Overrides::default())
        .await;
    let runs = app.count("SELECT COUNT(*) FROM runs").await;

    // A cross-site write is refused even with the token.
    let cross = replay(&run_id)
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header(header::ORIGIN, "https://evil.example")
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(send(&app, cross).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.count("SELECT COUNT(*) FROM runs").await, runs);

    // The browser: the page sends to sign-in, which sets an HttpOnly, SameSite cookie.
    let answer = send(&app, Request::get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert_eq!(answer.headers[header::LOCATION], "/signin");
    // Sign-in from another site is refused; our own form, which a browser may post as
    // `Origin: null` under `Referrer-Policy: no-referrer`, is not.
    let form = |name: &str, value: &str| {
        Request::post("/signin")
            .header("content-type", "application/x-www-form-urlencoded")
            .header(header::HOST, HOST)
            .header(name, value)
            .body(Body::from(format!("token={TOKEN}")))
            .unwrap()
    };
    for (name, value) in [
        ("origin", "https://evil.example"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let answer = send(&app, form(name, value)).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{name}: {value}");
        assert!(!answer.headers.contains_key(header::SET_COOKIE));
    }
    let answer = send(&app, form("origin", "null")).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    assert!(answer.headers.contains_key(header::SET_COOKIE));
    let refused = sign_in(&app, "guess").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(!refused.headers.contains_key(header::SET_COOKIE));
    let answer = sign_in(&app, TOKEN).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    let cookie = answer.headers[header::SET_COOKIE]
        .to_str()
        .expect("cookie")
        .to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(
        !cookie.contains(TOKEN),
        "the cookie is not the token itself"
    );
    let session = cookie.split(';').next().expect("pair").to_owned();
    let answer = send(&app, page("/", &session)).await;
    assert_eq!(answer.status, StatusCode::OK);
    let browser = Browser {
        csrf: csrf_of(&answer.body),
        cookie: session,
    };
    assert_eq!(browser.csrf.len(), 64, "the page carries the CSRF token");

    // Cookie writes need the CSRF token; with it the replay is made.
    let no_csrf = replay(&run_id)
        .header(header::COOKIE, &browser.cookie)
        .body(Body::from("{}"))
        .unwrap();
    let answer = send(&app, no_csrf).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(answer.json()["error"]["code"], "csrf_token_invalid");
    assert_eq!(app.count("SELECT COUNT(*) FROM runs").await, runs);
    let answer = send(
        &app,
        write(&browser, &format!("/api/v1/runs/{run_id}/replay"), "{}"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    assert_eq!(app.count("SELECT COUNT(*) FROM runs").await, runs + 1);

    let bearer = Request::get("/api/v1/runs")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, bearer).await.status, StatusCode::OK);
}

fn get(path: &str, host: &str) -> Request<Body> {
    Request::get(path)
        .header(header::HOST, host)
        .body(Body::empty())
        .unwrap()
}

/// `AccessArgs` as `PAYSTEPS_ALLOWED_HOSTS=<allowed>` makes them.
fn access_args(allowed: &[&str]) -> AccessArgs {
    AccessArgs {
        allowed_hosts: allowed.iter().map(|h| (*h).to_owned()).collect(),
        session_hours: 12,
        insecure_cookies: false,
        trusted_proxies: Vec::new(),
        metrics_token: None,
    }
}

#[tokio::test]
async fn a_foreign_host_is_refused_under_dev_and_a_known_one_served() {
    let bound: SocketAddr = "127.0.0.1:8288".parse().unwrap();
    let app = TestApp::start_with(Setup {
        access: access_args(&["dash.example"]).dev(Access::open(), bound),
        webhooks: Some(Destinations::AllowPrivate),
        ..Setup::default()
    })
    .await;

    // What the rebinding page did: read events, create a webhook, send an event, each
    // with its own name as Host (and Origin).
    let answer = send(&app, get("/api/v1/events", "rebind.evil.example")).await;
    assert_eq!(
        answer.status,
        StatusCode::MISDIRECTED_REQUEST,
        "{}",
        answer.body
    );
    assert_eq!(answer.json()["error"]["code"], "unknown_host");
    assert!(
        answer.body.contains("PAYSTEPS_ALLOWED_HOSTS"),
        "{}",
        answer.body
    );
    let hook = Request::post("/api/v1/webhooks")
        .header("content-type", "application/json")
        .header(header::HOST, "rebind.evil.example:8288")
        .header(header::ORIGIN, "http://rebind.evil.example:8288")
        .body(Body::from(
            r#"{"url":"https://collect.evil.example/x","events":[]}"#,
        ))
        .unwrap();
    assert_eq!(
        send(&app, hook).await.status,
        StatusCode::MISDIRECTED_REQUEST
    );
    let event = Request::post("/e/anykey")
        .header("content-type", "text/plain")
        .header(header::HOST, "rebind.evil.example:8288")
        .body(Body::from(r#"{"name":"app/planted","data":{}}"#))
        .unwrap();
    assert_eq!(
        send(&app, event).await.status,
        StatusCode::MISDIRECTED_REQUEST
    );
    for path in ["/", "/webhooks", "/health"] {
        let answer = send(&app, get(path, "rebind.evil.example")).await;
        assert_eq!(answer.status, StatusCode::MISDIRECTED_REQUEST, "{path}");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM webhook_endpoints").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM events").await, 0);

    for host in [
        "localhost",
        "localhost:8288",
        "127.0.0.1:8288",
        "[::1]:8288",
        "dash.example",
        "dash.example:8288",
    ] {
        let answer = send(&app, get("/api/v1/events", host)).await;
        assert_eq!(answer.status, StatusCode::OK, "{host}: {}", answer.body);
    }
    let answer = send(&app, get("/api/v1/events", "dash.example.evil.example")).await;
    assert_eq!(answer.status, StatusCode::MISDIRECTED_REQUEST);

    // `serve` behind a proxy: any name, unless PAYSTEPS_ALLOWED_HOSTS lists them.
    let token = "serve-dashboard-token-0123456789abcdef";
    let bearer = |host: &str| {
        Request::get("/api/v1/events")
            .header(header::HOST, host)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    for (allowed, expected) in [
        (&[][..], StatusCode::OK),
        (&["dash.example"][..], StatusCode::MISDIRECTED_REQUEST),
    ] {
        let access = access_args(allowed)
            .serve(token, "0.0.0.0:8288")
            .expect("a long token");
        let app = TestApp::start_with(Setup {
            access,
            ..Setup::default()
        })
        .await;
        let answer = send(&app, bearer("proxied.example")).await;
        assert_eq!(answer.status, expected, "{allowed:?}: {}", answer.body);
        let answer = send(&app, bearer("dash.example")).await;
        assert_eq!(answer.status, StatusCode::OK, "{allowed:?}");
    }
}

async fn cross_site_writes_are_refused_on_every_route_and_store_nothing(backend: Backend) {
    let app = TestApp::start_with(Setup {
        backend,
        with_payments: false,
        webhooks: Some(Destinations::AllowPrivate),
        ..Setup::default()
    })
    .await;
    let hook = r#"{"url":"http://127.0.0.1:9/hook","events":[]}"#;
    let event = r#"{"name":"app/planted","data":{}}"#;
    let post = |path: &str, content_type: &str| {
        Request::post(path)
            .header("content-type", content_type)
            .header(header::HOST, HOST)
    };
    let foreign = [
        ("origin", "http://evil.example"),
        ("origin", "null"),
        ("sec-fetch-site", "cross-site"),
    ];
    for (name, value) in foreign {
        let answer = send(
            &app,
            post("/api/v1/webhooks", "text/plain")
                .header(name, value)
                .body(Body::from(hook))
                .unwrap(),
        )
        .await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{name}: {value}");
        assert_eq!(answer.json()["error"]["code"], "cross_site_request");
        let answer = send(
            &app,
            post("/e/anykey", "text/plain")
                .header(name, value)
                .body(Body::from(event))
                .unwrap(),
        )
        .await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{name}: {value}");
        assert_eq!(answer.json()["error"]["code"], "cross_site_request");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM webhook_endpoints").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM events").await, 0);

    // An SDK or curl sends no Origin; the dashboard's own page sends its own.
    let answer = send(
        &app,
        post("/api/v1/webhooks", "application/json")
            .body(Body::from(hook))
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    let answer = send(
        &app,
        post("/api/v1/webhooks", "application/json")
            .header(header::ORIGIN, format!("http://{HOST}"))
            .header("sec-fetch-site", "same-origin")
            .body(Body::from(hook))
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    let answer = send(
        &app,
        post("/e/anykey", "application/json")
            .body(Body::from(event))
            .unwrap(),
    )
    .await;
    assert!(answer.status.is_success(), "{}", answer.body);
    assert_eq!(app.count("SELECT COUNT(*) FROM webhook_endpoints").await, 2);
    assert_eq!(app.count("SELECT COUNT(*) FROM events").await, 1);
}

/// `paysteps dev` on a loopback port, killed on drop.
struct Dev {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Dev {
    async fn start(allowed_hosts: &str) -> Dev {
        let dir = tempfile::tempdir().expect("dir");
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_paysteps"))
            .arg("dev")
            .current_dir(dir.path())
            .env("DATABASE_URL", dir.path().join("dev.db"))
            .env("PAYSTEPS_BIND", format!("127.0.0.1:{port}"))
            .env("PAYSTEPS_ALLOWED_HOSTS", allowed_hosts)
            .env("RUST_LOG", "warn")
            .env_remove("PAYSTEPS_DASHBOARD_TOKEN")
            .env_remove("STRIPE_WEBHOOK_SECRET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start paysteps dev");
        let dev = Dev {
            child,
            port,
            _dir: dir,
        };
        let client = http_client();
        let health = format!("http://127.0.0.1:{port}/health");
        let up = eventually(Duration::from_secs(30), || {
            let request = client.get(&health).send();
            async move { request.await.is_ok_and(|r| r.status().is_success()) }
        })
        .await;
        assert!(up, "paysteps dev did not become healthy");
        dev
    }
}

#[tokio::test]
async fn paysteps_dev_serves_only_its_own_names() {
    let dev = Dev::start("dash.example, tunnel.example").await;
    let client = http_client();
    let url = |path: &str| format!("http://127.0.0.1:{}{path}", dev.port);
    let events = |host: String| {
        client
            .get(url("/api/v1/events"))
            .header(reqwest::header::HOST, host)
            .send()
    };
    let refused = events("rebind.evil.example".into()).await.expect("answer");
    assert_eq!(refused.status(), StatusCode::MISDIRECTED_REQUEST);
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["error"]["code"], "unknown_host");
    for host in [
        format!("localhost:{}", dev.port),
        format!("127.0.0.1:{}", dev.port),
        "dash.example".to_owned(),
        "tunnel.example".to_owned(),
    ] {
        let answer = events(host.clone()).await.expect("answer");
        assert_eq!(answer.status(), StatusCode::OK, "{host}");
    }

    // A page on another site posting text/plain to the event API.
    let planted = client
        .post(url("/e/anykey"))
        .header(reqwest::header::CONTENT_TYPE, "text/plain")
        .header(reqwest::header::ORIGIN, "https://evil.example")
        .body(r#"{"name":"app/planted","data":{}}"#)
        .send()
        .await
        .expect("answer");
    assert_eq!(planted.status(), StatusCode::FORBIDDEN);
    let sdk = client
        .post(url("/e/anykey"))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(r#"{"name":"app/sent","data":{}}"#)
        .send()
        .await
        .expect("answer");
    assert!(sdk.status().is_success(), "{}", sdk.status());
    let listed: Value = client
        .get(url("/api/v1/events"))
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("json");
    let names: Vec<&str> = listed["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(names, ["app/sent"], "{listed}");
}
