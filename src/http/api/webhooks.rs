//! `/api/v1/webhooks`: outgoing webhook endpoints, their deliveries and attempts.
//! Secrets are answered only by creation and rotation, never by a listing.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::params::{JsonBody, parse_limit};
use crate::engine::new_id;
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::webhooks::deliver;
use crate::webhooks::destination::DestinationError;
use crate::webhooks::endpoint::{EndpointError, EndpointStatus, Subscription, parse_url};
use crate::webhooks::store::{self, DeliveryRow, EndpointRow, NewEndpoint};
use crate::webhooks::{EventType, secret};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/webhooks", get(list).post(create))
        .route("/api/v1/webhooks/event-types", get(event_types))
        .route(
            "/api/v1/webhooks/{id}",
            get(show).patch(update).delete(remove),
        )
        .route("/api/v1/webhooks/{id}/pause", post(pause))
        .route("/api/v1/webhooks/{id}/resume", post(resume))
        .route("/api/v1/webhooks/{id}/rotate", post(rotate))
        .route("/api/v1/webhooks/{id}/deliveries", get(deliveries))
        .route("/api/v1/webhook-deliveries/{id}", get(delivery))
        .route("/api/v1/webhook-deliveries/{id}/resend", post(resend))
}

impl From<EndpointError> for ApiError {
    fn from(err: EndpointError) -> Self {
        ApiError::bad_request(err.code(), err.to_string())
    }
}

/// Body of `POST /api/v1/webhooks`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    url: String,
    /// Type names; omitted, empty or `["*"]` subscribes to all.
    #[serde(default)]
    events: Vec<String>,
    description: Option<String>,
}

/// Body of `PATCH /api/v1/webhooks/{id}`: every field optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    url: Option<String>,
    events: Option<Vec<String>>,
    description: Option<String>,
    /// `active` or `paused`.
    status: Option<String>,
}

const MAX_DESCRIPTION: usize = 500;

/// Checks a URL's form and, unless private destinations are allowed, where it points.
async fn checked_url(state: &AppState, text: &str) -> Result<String, ApiError> {
    let url = parse_url(text)?;
    match state.webhook_destinations.resolve(&url).await {
        Ok(_) | Err(DestinationError::Unresolved { .. }) => Ok(url.to_string()),
        Err(refused) => Err(EndpointError::from(refused).into()),
    }
}

fn checked_description(text: Option<String>) -> Result<Option<String>, ApiError> {
    match text {
        Some(d) if d.chars().count() > MAX_DESCRIPTION => {
            Err(EndpointError::DescriptionTooLong.into())
        }
        other => Ok(other),
    }
}

async fn create(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let url = checked_url(&state, &body.url).await?;
    let events = Subscription::parse(&body.events)?;
    let description = checked_description(body.description)?;
    let secret = secret::generate();
    let endpoint = NewEndpoint {
        id: new_id("whep"),
        url,
        description,
        events: events.to_stored(),
        secret: secret.clone(),
    };
    let now = state.engine.clock().now_ms();
    let id = endpoint.id.clone();
    state
        .engine
        .store()
        .write(crate::store::Write::isolated(), move |tx| {
            Box::pin(async move { store::insert_endpoint(tx, &endpoint, now).await })
        })
        .await?;
    let row = load(&state, &id).await?;
    let mut answer = endpoint_json(&row);
    answer["secret"] = json!(secret.expose());
    Ok((StatusCode::CREATED, Json(answer)))
}

/// Endpoints listed when the request names no `limit`, and the most it may name.
const DEFAULT_ENDPOINTS: i64 = 100;
const MAX_ENDPOINTS: i64 = 1000;

/// Endpoints, oldest first.
async fn list(
    State(state): State<AppState>,
    page: Result<Query<Page>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(page) = page?;
    let limit = parse_limit(page.limit.as_deref(), DEFAULT_ENDPOINTS, MAX_ENDPOINTS)?;
    let rows = store::endpoints(state.engine.store(), limit).await?;
    Ok(Json(json!({
        "data": rows.iter().map(endpoint_json).collect::<Vec<_>>(),
    })))
}

async fn event_types() -> Json<Value> {
    Json(json!({
        "data": EventType::ALL.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
    }))
}

/// One endpoint with its success rate and most recent deliveries.
async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let row = load(&state, &id).await?;
    let mut answer = endpoint_json(&row);
    answer["stats"] = stats(&state, &id).await?;
    answer["recent_deliveries"] = recent(&state, &id, 20).await?;
    Ok(Json(answer))
}

async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateBody>,
) -> Result<Json<Value>, ApiError> {
    load(&state, &id).await?;
    let url = match &body.url {
        Some(url) => Some(checked_url(&state, url).await?),
        None => None,
    };
    let events = match &body.events {
        Some(events) => Some(Subscription::parse(events)?.to_stored()),
        None => None,
    };
    let description = checked_description(body.description)?;
    let status = match body.status.as_deref() {
        None => None,
        Some("active") => Some(EndpointStatus::Active),
        Some("paused") => Some(EndpointStatus::Paused),
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_status",
                format!("status must be active or paused, not '{other}'"),
            ));
        }
    };
    let now = state.engine.clock().now_ms();
    let key = id.clone();
    state
        .engine
        .store()
        .write(crate::store::Write::isolated(), move |tx| {
            Box::pin(async move {
                store::update_endpoint(tx, &key, url, events, description, now).await?;
                if let Some(status) = status {
                    store::set_status(tx, &key, status, None, now).await?;
                }
                Ok(())
            })
        })
        .await?;
    Ok(Json(endpoint_json(&load(&state, &id).await?)))
}

async fn remove(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let key = id.clone();
    let deleted = state
        .engine
        .store()
        .write(crate::store::Write::isolated(), move |tx| {
            Box::pin(async move { store::delete_endpoint(tx, &key).await })
        })
        .await?;
    if !deleted {
        return Err(ApiError::not_found("webhook endpoint", &id));
    }
    Ok(Json(json!({ "id": id, "deleted": true })))
}

async fn pause(state: State<AppState>, id: Path<String>) -> Result<Json<Value>, ApiError> {
    set_status(state, id, EndpointStatus::Paused).await
}

/// Re-activates a paused or disabled endpoint.
async fn resume(state: State<AppState>, id: Path<String>) -> Result<Json<Value>, ApiError> {
    set_status(state, id, EndpointStatus::Active).await
}

async fn set_status(
    State(state): State<AppState>,
    Path(id): Path<String>,
    status: EndpointStatus,
) -> Result<Json<Value>, ApiError> {
    let now = state.engine.clock().now_ms();
    let key = id.clone();
    let changed = state
        .engine
        .store()
        .write(crate::store::Write::isolated(), move |tx| {
            Box::pin(async move { store::set_status(tx, &key, status, None, now).await })
        })
        .await?;
    if !changed {
        return Err(ApiError::not_found("webhook endpoint", &id));
    }
    Ok(Json(endpoint_json(&load(&state, &id).await?)))
}

/// A new secret; the previous one keeps signing for 24 hours.
async fn rotate(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let secret = secret::generate();
    let now = state.engine.clock().now_ms();
    let (key, fresh) = (id.clone(), secret.clone());
    let until = state
        .engine
        .store()
        .write(crate::store::Write::isolated(), move |tx| {
            Box::pin(async move { store::rotate_secret(tx, &key, &fresh, now).await })
        })
        .await?
        .ok_or_else(|| ApiError::not_found("webhook endpoint", &id))?;
    tracing::info!(endpoint_id = %id, "webhook endpoint secret rotated");
    Ok(Json(json!({
        "id": id,
        "secret": secret.expose(),
        "previous_secret_expires_at": until,
    })))
}

#[derive(Debug, Deserialize)]
struct Page {
    limit: Option<String>,
}

/// Deliveries listed when the request names no `limit`, and the most it may name.
const DEFAULT_DELIVERIES: i64 = 50;
const MAX_DELIVERIES: i64 = 500;

async fn deliveries(
    State(state): State<AppState>,
    Path(id): Path<String>,
    page: Result<Query<Page>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(page) = page?;
    let limit = parse_limit(page.limit.as_deref(), DEFAULT_DELIVERIES, MAX_DELIVERIES)?;
    load(&state, &id).await?;
    Ok(Json(json!({
        "endpoint_id": id,
        "stats": stats(&state, &id).await?,
        "data": recent(&state, &id, limit).await?,
    })))
}

async fn delivery(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let row = store::delivery(state.engine.store(), &id)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook delivery", &id))?;
    Ok(Json(delivery_json(&state, &row).await?))
}

/// Delivers a delivery's event again to its endpoint: same `webhook-id`, same body.
async fn resend(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let now = state.engine.clock().now_ms();
    let key = id.clone();
    let new = state
        .engine
        .store()
        .write(crate::store::Write::isolated(), move |tx| {
            Box::pin(async move { deliver::resend(tx, &key, now).await })
        })
        .await?
        .ok_or_else(|| ApiError::not_found("webhook delivery", &id))?;
    let row = store::delivery(state.engine.store(), &new)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook delivery", &new))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(delivery_json(&state, &row).await?),
    ))
}

async fn load(state: &AppState, id: &str) -> Result<EndpointRow, ApiError> {
    store::endpoint(state.engine.store(), id)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook endpoint", id))
}

fn endpoint_json(row: &EndpointRow) -> Value {
    json!({
        "id": row.id,
        "url": row.url,
        "description": row.description,
        "events": Subscription::from_stored(&row.events).names(),
        "status": row.status,
        "disabled_reason": row.disabled_reason,
        "previous_secret_expires_at": row.previous_secret_expires_at,
        "last_success_at": row.last_success_at,
        "failing_since": row.failing_since,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    })
}

async fn stats(state: &AppState, id: &str) -> Result<Value, ApiError> {
    let (finished, succeeded) = store::delivery_counts(state.engine.store(), id).await?;
    let rate = (finished > 0).then(|| succeeded as f64 / finished as f64);
    Ok(json!({
        "finished_deliveries": finished,
        "succeeded": succeeded,
        "success_rate": rate,
    }))
}

async fn recent(state: &AppState, id: &str, limit: i64) -> Result<Value, ApiError> {
    let rows = store::recent_deliveries(state.engine.store(), id, limit).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        out.push(delivery_json(state, row).await?);
    }
    Ok(Value::Array(out))
}

async fn delivery_json(state: &AppState, row: &DeliveryRow) -> Result<Value, ApiError> {
    let event = store::event(state.engine.store(), &row.event_id).await?;
    let attempts = store::attempts(state.engine.store(), &row.id).await?;
    Ok(json!({
        "id": row.id,
        "webhook_id": row.event_id,
        "event_type": event.as_ref().map(|e| e.event_type.clone()),
        "payload": event.as_ref().map(|e| super::json_field(Some(&e.payload))),
        "endpoint_id": row.endpoint_id,
        "run_id": row.run_id,
        "resend_of": row.resend_of,
        "status": row.status,
        "attempt_count": row.attempts,
        "last_status_code": row.last_status_code,
        "last_error": row.last_error,
        "next_attempt_at": row.next_attempt_at,
        "created_at": row.created_at,
        "ended_at": row.ended_at,
        "attempts": attempts,
    }))
}
