//! The dashboard's outgoing webhooks page: endpoints, their recent deliveries and
//! success rate, with add, pause, resume, rotate, delete and resend. It reads and writes
//! through `/api/v1/webhooks`.

use axum::Router;
use axum::response::Html;
use axum::routing::get;

use super::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/webhooks", get(page))
}

async fn page() -> Html<&'static str> {
    Html(include_str!("webhooks.html"))
}
