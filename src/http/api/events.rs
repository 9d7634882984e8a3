use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::json_field;
use super::params::parse_opt_time;
use super::runs::RunView;
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::store::RunFilter;
use crate::store::operations::EventQuery;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/events", get(list))
        .route("/api/v1/events/{id}", get(show))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    name: Option<String>,
    since: Option<String>,
    until: Option<String>,
    /// Event id (paysteps' or the sender's), Stripe object id or customer id.
    q: Option<String>,
    limit: Option<i64>,
}

/// Events newest first, each with the number of runs it started and its duplicate
/// deliveries, and the event names seen (for filters).
async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query?;
    let now = state.engine.clock().now_ms();
    let store = state.engine.store();
    let events = store
        .list_events(&EventQuery {
            name: query.name.filter(|n| !n.is_empty()),
            since: parse_opt_time("since", query.since.as_deref(), now)?,
            until: parse_opt_time("until", query.until.as_deref(), now)?,
            search: query.q,
            limit: query.limit.unwrap_or(100).clamp(1, 1000),
        })
        .await?;
    let names: Vec<Value> = store
        .event_names()
        .await?
        .into_iter()
        .map(|(name, count)| json!({ "name": name, "count": count }))
        .collect();
    Ok(Json(json!({ "events": events, "names": names })))
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
