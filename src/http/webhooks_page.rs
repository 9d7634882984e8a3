//! The dashboard's outgoing webhooks page: endpoints, their recent deliveries and
//! success rate, with add, pause, resume, rotate, delete and resend. It reads and writes
//! through `/api/v1/webhooks`, sending the session's CSRF token on writes.

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};

use super::access::{Session, page_headers};
use super::state::AppState;

const PAGE: &str = include_str!("webhooks.html");
const SCRIPT: &str = include_str!("webhooks.js");
const STYLE: &str = include_str!("webhooks.css");

pub fn router() -> Router<AppState> {
    page_headers::wrap(
        Router::new()
            .route("/webhooks", get(page))
            .route("/assets/webhooks.js", get(script))
            .route("/assets/webhooks.css", get(style)),
    )
}

async fn page(session: Option<Extension<Session>>) -> Html<String> {
    let csrf = session.as_ref().map_or("", |Extension(s)| s.csrf.as_str());
    Html(PAGE.replace("{{csrf}}", csrf))
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
        .into_response()
}

async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}
