use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::json_field;
use super::params::{parse_limit, parse_opt_time};
use super::runs::RunView;
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::store::operations::EventQuery;
use crate::store::{EventRow, RunFilter};

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
    limit: Option<String>,
    /// Only names starting with this in `names`.
    names_prefix: Option<String>,
}

/// Events listed when the request names no `limit`, and the most it may name.
pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 1000;
/// Most names answered in `names`.
pub const MAX_NAMES: i64 = 100;

/// Events newest first, each with the number of runs it started and its duplicate
/// deliveries, and up to [`MAX_NAMES`] event names with their counts (for filters): the
/// most frequent, or those starting with `names_prefix`.
async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query?;
    let limit = parse_limit(query.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    let now = state.engine.clock().now_ms();
    let store = state.engine.store();
    let events = store
        .list_events(&EventQuery {
            name: query.name.filter(|n| !n.is_empty()),
            since: parse_opt_time("since", query.since.as_deref(), now)?,
            until: parse_opt_time("until", query.until.as_deref(), now)?,
            search: query.q,
            limit,
        })
        .await?;
    let names = store
        .event_names(query.names_prefix.as_deref(), MAX_NAMES)
        .await?;
    Ok(Json(json!({ "events": events, "names": names })))
}

/// An event by paysteps' id or the sender's (`evt_…`), with the runs it started.
async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = state.engine.store();
    // Text, not an `EventId`: the sender's id (`evt_…`) finds the event too.
    let event = store
        .event(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("event", &id))?;
    let runs: Vec<RunView> = store
        .runs(&RunFilter {
            event_id: Some(event.id.to_string()),
            limit: 1000,
            ..RunFilter::default()
        })
        .await?
        .into_iter()
        .map(RunView::from)
        .collect();
    let mut body = event_view(&event);
    body["runs"] = json!(runs);
    Ok(Json(body))
}

/// An event as the API shows it, its data parsed.
pub(super) fn event_view(event: &EventRow) -> Value {
    json!({
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
    })
}
