//! HTTP: the Stripe webhook, the event API, the JSON API, health, and the dashboard page.

pub mod access;
pub mod api;
mod dashboard;
pub mod error;
mod event_api;
mod health;
mod metrics;
pub mod state;
mod stripe_webhook;
mod webhooks_page;

use std::future::Future;

use axum::Router;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

pub use access::Access;
pub use event_api::EventKeys;
pub use state::AppState;

/// Every route of the server (Stripe webhook, event API, health, metrics, `/api/v1`,
/// dashboard), the protected ones behind the dashboard credential.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(stripe_webhook::router(&state))
        .merge(event_api::router())
        .merge(health::router())
        .merge(metrics::router())
        .merge(access::protect(api::router(), &state))
        .merge(access::protect(dashboard::router(), &state))
        .merge(access::router())
        .merge(access::protect(webhooks_page::router(), &state))
        .layer(axum::middleware::from_fn_with_state(
            state.access.clone(),
            access::screen,
        ))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<_>| {
                tracing::debug_span!(
                    "request",
                    method = %request.method(),
                    uri = %event_api::loggable_uri(request.uri()),
                    version = ?request.version(),
                )
            }),
        )
        .with_state(state)
}

/// Serves until `shutdown` completes, then stops accepting and drains open requests.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
