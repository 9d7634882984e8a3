//! The dashboard: one HTML page, its scripts and its stylesheet, embedded in the binary.
//! The page reads and acts through `/api/v1`, polling for live updates.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use super::state::AppState;

const PAGE: &str = include_str!("dashboard.html");
const SCRIPT: &str = include_str!("dashboard.js");
const MONEY_SCRIPT: &str = include_str!("money.js");
const STYLE: &str = include_str!("dashboard.css");

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/assets/dashboard.js", get(script))
        .route("/assets/money.js", get(money_script))
        .route("/assets/dashboard.css", get(style))
}

/// Headers that keep the page from being framed or loading anything from elsewhere.
fn hardened(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        HeaderName::from_static("referrer-policy"),
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn index(State(state): State<AppState>) -> Response {
    let signed_in = matches!(state.access, super::access::Access::Token(_));
    let page = PAGE
        .replace("{{csrf}}", state.access.csrf_token())
        .replace("{{signout}}", if signed_in { "" } else { "hidden" });
    hardened(Html(page).into_response())
}

fn javascript(source: &'static str) -> Response {
    hardened(
        (
            [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
            source,
        )
            .into_response(),
    )
}

async fn script() -> Response {
    javascript(SCRIPT)
}

async fn money_script() -> Response {
    javascript(MONEY_SCRIPT)
}

async fn style() -> Response {
    hardened(([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response())
}
