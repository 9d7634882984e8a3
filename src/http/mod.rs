//! HTTP: the Stripe webhook, the JSON API, health, and the dashboard page.

pub mod api;
mod dashboard;
pub mod error;
mod health;
mod metrics;
pub mod state;
mod stripe_webhook;

use std::future::Future;

use axum::Router;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

pub use state::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(stripe_webhook::router(&state))
        .merge(health::router())
        .merge(metrics::router())
        .merge(api::router())
        .merge(dashboard::router())
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Serves until `shutdown` completes, then stops accepting and drains open requests.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
