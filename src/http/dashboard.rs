use axum::Router;
use axum::response::Html;
use axum::routing::get;

use super::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/", get(index))
}

async fn index() -> Html<&'static str> {
    Html(include_str!("dashboard.html"))
}
