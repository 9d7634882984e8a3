//! The dashboard token: refused without it (and nothing changes), bearer for the API, a
//! sign-in cookie for browsers, and cross-site writes refused.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use paysteps::http::Access;
use paysteps::stripe::fixtures::Overrides;
use tower::ServiceExt;

use crate::common::{Backend, Setup, TestApp, first_run};

crate::on_both_backends!(without_the_token_requests_are_refused_and_change_nothing);

const TOKEN: &str = "dash-token-0123456789";

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn send(app: &TestApp, request: Request<Body>) -> Answer {
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

fn replay(run_id: &str) -> axum::http::request::Builder {
    Request::post(format!("/api/v1/runs/{run_id}/replay"))
        .header("content-type", "application/json")
        .header(header::HOST, "dash.example")
}

async fn without_the_token_requests_are_refused_and_change_nothing(backend: Backend) {
    let access = Access::token(TOKEN);
    let csrf = access.csrf_token().to_owned();
    let app = TestApp::start_with(Setup {
        backend,
        access,
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
    let run = app.store().run(&run_id).await.expect("read").expect("run");
    assert_eq!(run.status, "failed");
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
    let page = send(&app, Request::get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.headers[header::LOCATION], "/signin");
    let signin = |token: &str| {
        Request::post("/signin")
            .header("content-type", "application/x-www-form-urlencoded")
            .header(header::HOST, "dash.example")
            .header(header::ORIGIN, "http://dash.example")
            .body(Body::from(format!("token={token}")))
            .unwrap()
    };
    let refused = send(&app, signin("guess")).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(!refused.headers.contains_key(header::SET_COOKIE));
    let signed_in = send(&app, signin(TOKEN)).await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    let cookie = signed_in.headers[header::SET_COOKIE]
        .to_str()
        .expect("cookie")
        .to_owned();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(
        !cookie.contains(TOKEN),
        "the cookie is not the token itself"
    );
    let session = cookie.split(';').next().expect("pair").to_owned();

    let page = send(
        &app,
        Request::get("/")
            .header(header::COOKIE, &session)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains(&csrf), "the page carries the CSRF token");

    // Cookie writes need the CSRF token; with it the replay is made.
    let no_csrf = replay(&run_id)
        .header(header::COOKIE, &session)
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(send(&app, no_csrf).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.count("SELECT COUNT(*) FROM runs").await, runs);
    let with_csrf = replay(&run_id)
        .header(header::COOKIE, &session)
        .header("x-csrf-token", &csrf)
        .header("sec-fetch-site", "same-origin")
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(send(&app, with_csrf).await.status, StatusCode::CREATED);
    assert_eq!(app.count("SELECT COUNT(*) FROM runs").await, runs + 1);

    let bearer = Request::get("/api/v1/runs")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, bearer).await.status, StatusCode::OK);
}
