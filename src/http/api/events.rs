use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::json_field;
use super::runs::RunView;
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::store::RunFilter;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/events/{id}", get(show))
}

/// An event by paysteps' id or the sender's (`evt_…`), with the runs it started.
async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = state.engine.store();
    let event = store
        .event(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("event", &id))?;
    let runs: Vec<RunView> = store
        .runs(&RunFilter {
            event_id: Some(event.id.clone()),
            limit: 1000,
            ..RunFilter::default()
        })
        .await?
        .into_iter()
        .map(RunView::from)
        .collect();
    Ok(Json(json!({
        "id": event.id,
        "external_id": event.external_id,
        "name": event.name,
        "source": event.source,
        "ts": event.ts,
        "received_at": event.received_at,
        "object_id": event.object_id,
        "customer": event.customer,
        "duplicates": event.duplicates,
        "data": json_field(Some(&event.data)),
        "runs": runs,
    })))
}
