//! The dashboard: one HTML page, its scripts and its stylesheet, embedded in the binary.
//! The page reads and acts through `/api/v1`, polling for live updates.

use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};

use super::access::{Session, page_headers};
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
    page_headers::apply(response.headers_mut());
    response
}

async fn index(State(state): State<AppState>, session: Option<Extension<Session>>) -> Response {
    let signed_in = state.access.requires_token();
    let csrf = session.as_ref().map_or("", |Extension(s)| s.csrf.as_str());
    let page = PAGE
        .replace("{{csrf}}", csrf)
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
