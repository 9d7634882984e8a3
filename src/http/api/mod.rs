//! The JSON API under `/api/v1`.

mod apps;
mod billing;
mod disputes;
mod events;
mod functions;
mod openapi;
mod operations;
mod params;
mod payments;
mod reports;
mod runs;
mod subscriptions;
mod webhooks;

use axum::Router;

use super::state::AppState;

/// The `/api/v1` routes, without access control: [`crate::http::router`] adds it. A NUL
/// character in a path or query string is refused before any route sees it.
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(apps::router())
        .merge(runs::router())
        .merge(events::router())
        .merge(functions::router())
        .merge(subscriptions::router())
        .merge(reports::router())
        .merge(webhooks::router())
        .merge(operations::router())
        .merge(billing::router())
        .merge(payments::router())
        .merge(disputes::router())
        .merge(openapi::router())
        .layer(axum::middleware::from_fn(params::refuse_nul_in_uri))
}

/// Stored JSON text as a JSON value (text that does not parse is returned as a string).
pub(crate) fn json_field(text: Option<&str>) -> serde_json::Value {
    match text {
        None => serde_json::Value::Null,
        Some(text) => serde_json::from_str(text)
            .unwrap_or_else(|_| serde_json::Value::String(text.to_owned())),
    }
}
