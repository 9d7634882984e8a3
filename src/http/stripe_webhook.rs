//! `POST /api/stripe/webhook`: verify, store, answer. No business logic runs here.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;

use super::error::ApiError;
use super::state::AppState;
use crate::engine::{EventInput, system_now_ms};
use crate::ids::RunId;
use crate::store::IngestOutcome;
use crate::stripe::envelope;

pub fn router(state: &AppState) -> Router<AppState> {
    Router::new().route(
        "/api/stripe/webhook",
        post(receive).layer(DefaultBodyLimit::max(state.max_body_bytes)),
    )
}

#[derive(Debug, Serialize)]
struct Answer {
    received: bool,
    event_id: String,
    duplicate: bool,
    runs: Vec<RunId>,
    /// Why the event starts nothing, when it belongs to the mode not processed.
    #[serde(skip_serializing_if = "Option::is_none")]
    ignored: Option<String>,
}

async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Answer>, ApiError> {
    let answer = accept(&state, &headers, body).await;
    if let Err(err) = &answer
        && err.status.is_client_error()
    {
        state.engine.metrics().rejected(err.code);
    }
    answer
}

async fn accept(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Answer>, ApiError> {
    let body = body?;
    let signature = headers
        .get("stripe-signature")
        .map(|value| value.to_str().unwrap_or(""));
    state
        .verifier
        .verify(signature, &body, system_now_ms() / 1000)?;
    let event = envelope::parse(&body)?;
    let data = String::from_utf8(Vec::from(body))
        .map_err(|_| ApiError::bad_request("invalid_json", "the body is not UTF-8"))?;
    let ignored = state
        .stripe_mode
        .filter(|mode| !mode.admits(event.livemode))
        .map(|mode| {
            let other = if event.livemode { "live" } else { "test" };
            format!("a {other}-mode event, and STRIPE_MODE is {}", mode.as_str())
        });
    let name = match ignored {
        Some(_) => crate::stripe::mode::ignored_name(&event.event_type),
        None => format!("stripe/{}", event.event_type),
    };
    let input = EventInput {
        name,
        data,
        external_id: Some(event.id.clone()),
        dedupe_key: Some(format!("stripe:{}", event.id)),
        dedupe_window: None,
        ts: Some(event.created.saturating_mul(1000)),
        source: "stripe",
        object_id: event.object_id.clone(),
        customer: event.customer.clone(),
    };
    let outcome = state.engine.ingest(input).await?;
    let answer = match outcome {
        IngestOutcome::Accepted { runs, .. } => {
            tracing::info!(event_id = %event.id, event_type = %event.event_type, runs = runs.len(), "stripe event accepted");
            Answer {
                received: true,
                event_id: event.id,
                duplicate: false,
                runs,
                ignored,
            }
        }
        IngestOutcome::Duplicate { .. } => {
            tracing::info!(event_id = %event.id, "duplicate stripe delivery");
            Answer {
                received: true,
                event_id: event.id,
                duplicate: true,
                runs: Vec::new(),
                ignored,
            }
        }
    };
    Ok(Json(answer))
}
