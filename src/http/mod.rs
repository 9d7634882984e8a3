//! HTTP: the Stripe webhook, the event API, the JSON API, health, and the dashboard page.

pub mod access;
pub mod api;
mod dashboard;
pub mod error;
mod event_api;
mod health;
mod metrics;
mod sdk_api;
pub mod serve;
pub mod state;
mod stripe_webhook;
mod webhooks_page;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;

pub use access::Access;
pub use event_api::EventKeys;
pub use serve::{Limits, Served};
pub use state::AppState;

/// Every route of the server (Stripe webhook, event API, health, metrics, `/api/v1`,
/// dashboard), the protected ones behind the dashboard credential.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(stripe_webhook::router(&state))
        .merge(event_api::router())
        .merge(sdk_api::router())
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

/// Serves the router until `stop` is cancelled, under `limits`; then stops accepting,
/// lets requests in flight finish within the shutdown grace and closes what is left.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    limits: Limits,
    stop: CancellationToken,
) -> Served {
    let largest_body = state.max_body_bytes.max(event_api::MAX_BODY_BYTES);
    serve::serve(listener, router(state), limits, largest_body, stop).await
}
