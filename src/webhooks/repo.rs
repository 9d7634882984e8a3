//! The statements over endpoints, business events, deliveries and attempts, written once
//! with `$n` placeholders for every backend.

use serde::Serialize;

use super::endpoint::EndpointStatus;
use super::secret::ROTATION_OVERLAP_MS;
use crate::args;
use crate::config::Secret;
use crate::ids::EventId;
use crate::store::{EventHold, Result, Store, StoreTx, as_count, id_list, ids};

/// An endpoint as stored, without its secrets.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct EndpointRow {
    /// The endpoint's id, `whep_…`.
    pub id: String,
    /// Where deliveries are POSTed.
    pub url: String,
    /// Free text its owner gave it, at most 500 characters.
    pub description: Option<String>,
    /// JSON array of type names, `["*"]` for all.
    pub events: String,
    /// [`EndpointStatus`] as stored: `active`, `paused` or `disabled`.
    pub status: String,
    /// Why paysteps disabled it, when it did.
    pub disabled_reason: Option<String>,
    /// When the previous secret stops signing, during a rotation.
    pub previous_secret_expires_at: Option<i64>,
    /// When a delivery last succeeded, in milliseconds since the Unix epoch.
    pub last_success_at: Option<i64>,
    /// When the current run of failures began (no success since), in milliseconds since the
    /// Unix epoch.
    pub failing_since: Option<i64>,
    /// When it was created, in milliseconds since the Unix epoch.
    pub created_at: i64,
    /// When it last changed, in milliseconds since the Unix epoch.
    pub updated_at: i64,
}

const ENDPOINT_COLUMNS: &str = "id, url, description, events, status, disabled_reason, \
     previous_secret_expires_at, last_success_at, failing_since, created_at, updated_at";

/// A business event as stored.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct BusinessEventRow {
    /// The event's `webhook-id`, `msg_…`.
    pub id: String,
    /// The [`EventType`](super::EventType) name, e.g. `payment.failed`.
    pub event_type: String,
    /// What caused it: `stripe:evt_…` or `run:run_…`.
    pub source: String,
    /// The JSON body every delivery sends.
    pub payload: String,
    /// The engine event the delivery runs belong to; `None` until the first delivery.
    pub engine_event_id: Option<EventId>,
    /// When it was recorded, in milliseconds since the Unix epoch.
    pub created_at: i64,
}

/// One delivery of an event to an endpoint.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct DeliveryRow {
    /// The delivery's id, `whd_…`.
    pub id: String,
    /// The delivered event's id, `msg_…`.
    pub event_id: String,
    /// The receiving endpoint's id, `whep_…`.
    pub endpoint_id: String,
    /// paysteps' id of the run driving the delivery, `run_…`.
    pub run_id: String,
    /// The delivery this one resends, if it is a resend.
    pub resend_of: Option<String>,
    /// `pending`, `succeeded`, `failed` or `canceled`.
    pub status: String,
    /// HTTP attempts made so far.
    pub attempts: i64,
    /// The HTTP status of the last answer.
    pub last_status_code: Option<i64>,
    /// What went wrong in the last attempt.
    pub last_error: Option<String>,
    /// When the next attempt is due, in milliseconds since the Unix epoch.
    pub next_attempt_at: Option<i64>,
    /// When the delivery was queued, in milliseconds since the Unix epoch.
    pub created_at: i64,
    /// When it last changed, in milliseconds since the Unix epoch.
    pub updated_at: i64,
    /// When it succeeded or was given up, in milliseconds since the Unix epoch.
    pub ended_at: Option<i64>,
}

const DELIVERY_COLUMNS: &str = "id, event_id, endpoint_id, run_id, resend_of, status, attempts, \
     last_status_code, last_error, next_attempt_at, created_at, updated_at, ended_at";

/// One HTTP attempt of a delivery.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AttemptRow {
    /// The attempt's id, `wha_…`.
    pub id: String,
    /// The delivery it belongs to, `whd_…`.
    pub delivery_id: String,
    /// The attempt's number within the delivery, from 1.
    pub attempt: i64,
    /// When it was sent, in milliseconds since the Unix epoch.
    pub at: i64,
    /// The HTTP status answered; `None` when no answer came.
    pub status_code: Option<i64>,
    /// Time to the answer (or the failure), in milliseconds.
    pub latency_ms: i64,
    /// The start of the answer's body, for diagnosis.
    pub response_excerpt: Option<String>,
    /// What went wrong, if the attempt failed.
    pub error: Option<String>,
}

/// A new endpoint.
#[derive(Debug, Clone)]
pub struct NewEndpoint {
    /// The endpoint's id, `whep_…`.
    pub id: String,
    /// Where deliveries are POSTed.
    pub url: String,
    /// Free text its owner gave it, at most 500 characters.
    pub description: Option<String>,
    /// The subscribed types as a JSON array, `["*"]` for all (see [`super::endpoint::Subscription::to_stored`]).
    pub events: String,
    /// The signing secret, `whsec_…`.
    pub secret: Secret,
}

/// Stores a new, active endpoint created at `now` (milliseconds since the Unix epoch).
pub async fn insert_endpoint(tx: &mut StoreTx, e: &NewEndpoint, now: i64) -> Result<()> {
    tx.execute(
        "INSERT INTO webhook_endpoints (id, url, description, events, status, secret, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, 'active', $5, $6, $6)",
        args![
            &e.id,
            &e.url,
            e.description.clone(),
            &e.events,
            e.secret.expose(),
            now
        ],
    )
    .await?;
    Ok(())
}

/// The first `limit` endpoints, oldest first.
pub async fn endpoints(store: &Store, limit: i64) -> Result<Vec<EndpointRow>> {
    store
        .fetch_all(
            &format!(
                "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints ORDER BY created_at, id LIMIT $1"
            ),
            crate::args![limit],
        )
        .await
}

/// The endpoint with this id, if any.
pub async fn endpoint(store: &Store, id: &str) -> Result<Option<EndpointRow>> {
    store
        .fetch_optional(
            &format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1"),
            args![id],
        )
        .await
}

/// The endpoint with this id, if any, read in the transaction.
pub async fn endpoint_tx(tx: &mut StoreTx, id: &str) -> Result<Option<EndpointRow>> {
    tx.fetch_optional(
        &format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1"),
        args![id],
    )
    .await
}

/// Changes an endpoint's definition; `None` keeps a field. False when there is none.
pub async fn update_endpoint(
    tx: &mut StoreTx,
    id: &str,
    url: Option<String>,
    events: Option<String>,
    description: Option<String>,
    now: i64,
) -> Result<bool> {
    let changed = tx
        .execute(
            "UPDATE webhook_endpoints SET url = COALESCE($2, url), \
             events = COALESCE($3, events), description = COALESCE($4, description), \
             updated_at = $5 WHERE id = $1",
            args![id, url, events, description, now],
        )
        .await?;
    Ok(changed == 1)
}

/// Sets an endpoint's status. Activating it forgets why it was disabled and starts its
/// failure clock afresh. False when there is no such endpoint.
pub async fn set_status(
    tx: &mut StoreTx,
    id: &str,
    status: EndpointStatus,
    reason: Option<String>,
    now: i64,
) -> Result<bool> {
    let changed = tx
        .execute(
            "UPDATE webhook_endpoints SET status = $2, disabled_reason = $3, \
             failing_since = CASE WHEN $2 = 'active' THEN NULL ELSE failing_since END, \
             updated_at = $4 WHERE id = $1",
            args![id, status.as_str(), reason, now],
        )
        .await?;
    Ok(changed == 1)
}

/// Deletes an endpoint with its deliveries and their attempts.
pub async fn delete_endpoint(tx: &mut StoreTx, id: &str) -> Result<bool> {
    tx.execute(
        "DELETE FROM webhook_attempts WHERE delivery_id IN \
         (SELECT id FROM webhook_deliveries WHERE endpoint_id = $1)",
        args![id],
    )
    .await?;
    tx.execute(
        "DELETE FROM webhook_deliveries WHERE endpoint_id = $1",
        args![id],
    )
    .await?;
    let deleted = tx
        .execute("DELETE FROM webhook_endpoints WHERE id = $1", args![id])
        .await?;
    Ok(deleted == 1)
}

/// Makes `secret` the signing secret; the current one keeps signing for 24 h.
/// Returns when the previous one stops, or `None` when there is no such endpoint.
pub async fn rotate_secret(
    tx: &mut StoreTx,
    id: &str,
    secret: &Secret,
    now: i64,
) -> Result<Option<i64>> {
    let until = now + ROTATION_OVERLAP_MS;
    let changed = tx
        .execute(
            "UPDATE webhook_endpoints SET previous_secret = secret, \
             previous_secret_expires_at = $3, secret = $2, updated_at = $4 WHERE id = $1",
            args![id, secret.expose(), until, now],
        )
        .await?;
    Ok((changed == 1).then_some(until))
}

/// The secrets that sign for an endpoint now: the current one, then the previous one
/// while its overlap lasts.
pub async fn signing_secrets(store: &Store, id: &str, now: i64) -> Result<Vec<Secret>> {
    let row: Option<(String, Option<String>, Option<i64>)> = store
        .fetch_optional(
            "SELECT secret, previous_secret, previous_secret_expires_at \
             FROM webhook_endpoints WHERE id = $1",
            args![id],
        )
        .await?;
    Ok(match row {
        None => Vec::new(),
        Some((current, previous, until)) => {
            let mut secrets = vec![Secret::new(current)];
            if let (Some(previous), Some(until)) = (previous, until)
                && until > now
            {
                secrets.push(Secret::new(previous));
            }
            secrets
        }
    })
}

/// Active endpoints with their subscriptions (JSON arrays).
pub async fn active_subscriptions(tx: &mut StoreTx) -> Result<Vec<(String, String)>> {
    tx.fetch_all(
        "SELECT id, events FROM webhook_endpoints WHERE status = 'active' ORDER BY id",
        vec![],
    )
    .await
}

/// Records a business event unless one with this id exists; true when it is new.
pub async fn insert_event(tx: &mut StoreTx, e: &BusinessEventRow) -> Result<bool> {
    let inserted: Option<(String,)> = tx
        .fetch_optional(
            "INSERT INTO webhook_events (id, event_type, source, payload, engine_event_id, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING \
             RETURNING id",
            args![
                &e.id,
                &e.event_type,
                &e.source,
                &e.payload,
                e.engine_event_id.clone(),
                e.created_at
            ],
        )
        .await?;
    Ok(inserted.is_some())
}

/// Notes the engine event an event's delivery runs belong to.
pub async fn set_engine_event(tx: &mut StoreTx, id: &str, engine_event_id: &str) -> Result<()> {
    tx.execute(
        "UPDATE webhook_events SET engine_event_id = $2 WHERE id = $1",
        args![id, engine_event_id],
    )
    .await?;
    Ok(())
}

/// The business event with this id (`msg_…`), if any.
pub async fn event(store: &Store, id: &str) -> Result<Option<BusinessEventRow>> {
    store
        .fetch_optional(
            "SELECT id, event_type, source, payload, engine_event_id, created_at \
             FROM webhook_events WHERE id = $1",
            args![id],
        )
        .await
}

/// The business event with this id (`msg_…`), if any, read in the transaction.
pub async fn event_tx(tx: &mut StoreTx, id: &str) -> Result<Option<BusinessEventRow>> {
    tx.fetch_optional(
        "SELECT id, event_type, source, payload, engine_event_id, created_at \
         FROM webhook_events WHERE id = $1",
        args![id],
    )
    .await
}

/// A new pending delivery, driven by run `run_id`.
pub async fn insert_delivery(
    tx: &mut StoreTx,
    id: &str,
    event_id: &str,
    endpoint_id: &str,
    run_id: &str,
    resend_of: Option<String>,
    now: i64,
) -> Result<()> {
    tx.execute(
        "INSERT INTO webhook_deliveries (id, event_id, endpoint_id, run_id, resend_of, status, \
         attempts, next_attempt_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6, $6)",
        args![id, event_id, endpoint_id, run_id, resend_of, now],
    )
    .await?;
    Ok(())
}

/// The delivery with this id (`whd_…`), if any.
pub async fn delivery(store: &Store, id: &str) -> Result<Option<DeliveryRow>> {
    store
        .fetch_optional(
            &format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1"),
            args![id],
        )
        .await
}

/// The delivery with this id (`whd_…`), if any, read in the transaction.
pub async fn delivery_tx(tx: &mut StoreTx, id: &str) -> Result<Option<DeliveryRow>> {
    tx.fetch_optional(
        &format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1"),
        args![id],
    )
    .await
}

/// The delivery driven by this run (`run_…`), if any.
pub async fn delivery_of_run(store: &Store, run_id: &str) -> Result<Option<DeliveryRow>> {
    store
        .fetch_optional(
            &format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE run_id = $1"),
            args![run_id],
        )
        .await
}

/// An endpoint's most recent deliveries, newest first.
pub async fn recent_deliveries(
    store: &Store,
    endpoint_id: &str,
    limit: i64,
) -> Result<Vec<DeliveryRow>> {
    store
        .fetch_all(
            &format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE endpoint_id = $1 \
                 ORDER BY created_at DESC, id DESC LIMIT $2"
            ),
            args![endpoint_id, limit],
        )
        .await
}

/// Every attempt of a delivery, in order.
pub async fn attempts(store: &Store, delivery_id: &str) -> Result<Vec<AttemptRow>> {
    store
        .fetch_all(
            "SELECT id, delivery_id, attempt, at, status_code, latency_ms, response_excerpt, \
             error FROM webhook_attempts WHERE delivery_id = $1 ORDER BY attempt, at",
            args![delivery_id],
        )
        .await
}

/// An endpoint's finished deliveries: how many, and how many succeeded.
pub async fn delivery_counts(store: &Store, endpoint_id: &str) -> Result<(i64, i64)> {
    store
        .fetch_one(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN status = 'succeeded' THEN 1 ELSE 0 END), 0) \
             FROM webhook_deliveries WHERE endpoint_id = $1 \
             AND status IN ('succeeded', 'failed')",
            args![endpoint_id],
        )
        .await
}

/// Logs one attempt and moves its delivery on; returns the attempt's number.
pub async fn record_attempt(
    tx: &mut StoreTx,
    delivery_id: &str,
    attempt: &AttemptRow,
    status: &str,
    next_attempt_at: Option<i64>,
) -> Result<i64> {
    let (number,): (i64,) = tx
        .fetch_one(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, status = $2, \
             last_status_code = $3, last_error = $4, next_attempt_at = $5, updated_at = $6, \
             ended_at = CASE WHEN $2 = 'pending' THEN NULL ELSE $6 END \
             WHERE id = $1 RETURNING attempts",
            args![
                delivery_id,
                status,
                attempt.status_code,
                attempt.error.clone(),
                next_attempt_at,
                attempt.at
            ],
        )
        .await?;
    tx.execute(
        "INSERT INTO webhook_attempts (id, delivery_id, attempt, at, status_code, latency_ms, \
         response_excerpt, error) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        args![
            &attempt.id,
            delivery_id,
            number,
            attempt.at,
            attempt.status_code,
            attempt.latency_ms,
            attempt.response_excerpt.clone(),
            attempt.error.clone()
        ],
    )
    .await?;
    Ok(number)
}

/// Ends a delivery without an attempt (its endpoint is gone, paused or disabled).
pub async fn end_delivery(
    tx: &mut StoreTx,
    id: &str,
    status: &str,
    error: &str,
    now: i64,
) -> Result<()> {
    tx.execute(
        "UPDATE webhook_deliveries SET status = $2, last_error = $3, next_attempt_at = NULL, \
         updated_at = $4, ended_at = $4 WHERE id = $1",
        args![id, status, error, now],
    )
    .await?;
    Ok(())
}

/// Notes a success: the endpoint is healthy again.
pub async fn endpoint_succeeded(tx: &mut StoreTx, id: &str, now: i64) -> Result<()> {
    tx.execute(
        "UPDATE webhook_endpoints SET last_success_at = $2, failing_since = NULL WHERE id = $1",
        args![id, now],
    )
    .await?;
    Ok(())
}

/// Notes a failure; returns since when the endpoint has failed without a success.
pub async fn endpoint_failed(tx: &mut StoreTx, id: &str, now: i64) -> Result<Option<i64>> {
    let since: Option<(Option<i64>,)> = tx
        .fetch_optional(
            "UPDATE webhook_endpoints SET failing_since = COALESCE(failing_since, $2) \
             WHERE id = $1 RETURNING failing_since",
            args![id, now],
        )
        .await?;
    Ok(since.and_then(|(s,)| s))
}

/// How many rows of the outgoing webhook tables a prune deleted, or would delete.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebhooksPruned {
    /// Deliveries that ended before the cutoff.
    pub deliveries: u64,
    /// Their attempts.
    pub attempts: u64,
    /// Business events made before the cutoff and left without deliveries.
    pub messages: u64,
}

impl WebhooksPruned {
    /// Whether nothing at all was (or would be) deleted.
    pub fn is_empty(&self) -> bool {
        *self == WebhooksPruned::default()
    }
}

/// A business event keeps the engine event its delivery runs hang off for as long as it
/// stays: a resend starts its run on that event.
pub const ENGINE_EVENT_HOLD: EventHold = EventHold {
    table: "webhook_events",
    column: "engine_event_id",
    stays: message_stays,
};

/// A delivery of `d` that a prune at the cutoff `$1` keeps: pending, or ended since.
fn delivery_kept(d: &str) -> String {
    format!("({d}.status = 'pending' OR {d}.ended_at IS NULL OR {d}.ended_at >= $1)")
}

/// A business event of `w` that goes once the deliveries that go are gone.
fn message_goes(w: &str) -> String {
    format!(
        "{w}.created_at < $1 AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d \
         WHERE d.event_id = {w}.id AND {})",
        delivery_kept("d")
    )
}

fn message_stays(w: &str) -> String {
    format!("NOT ({})", message_goes(w))
}

/// Deletes one batch of at most `limit` deliveries that ended before `cutoff` with their
/// attempts, and of business events made before it and left without deliveries. Repeat
/// until it answers [`WebhooksPruned::is_empty`]. Endpoints are never deleted.
pub async fn prune_batch(tx: &mut StoreTx, cutoff: i64, limit: i64) -> Result<WebhooksPruned> {
    let mut pruned = WebhooksPruned::default();
    let deliveries: Vec<(String,)> = tx
        .fetch_all(
            "SELECT id FROM webhook_deliveries WHERE status <> 'pending' AND ended_at < $1 \
             ORDER BY ended_at LIMIT $2",
            args![cutoff, limit],
        )
        .await?;
    if !deliveries.is_empty() {
        let list = id_list(deliveries);
        let within = ids(tx.dialect(), 1);
        pruned.attempts = tx
            .execute(
                &format!("DELETE FROM webhook_attempts WHERE delivery_id IN ({within})"),
                args![&list],
            )
            .await?;
        pruned.deliveries = tx
            .execute(
                &format!("DELETE FROM webhook_deliveries WHERE id IN ({within})"),
                args![&list],
            )
            .await?;
    }
    pruned.messages = tx
        .execute(
            "DELETE FROM webhook_events WHERE id IN (SELECT w.id FROM webhook_events w \
             WHERE w.created_at < $1 AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d \
             WHERE d.event_id = w.id) ORDER BY w.created_at LIMIT $2)",
            args![cutoff, limit],
        )
        .await?;
    Ok(pruned)
}

/// What [`prune_batch`], repeated until nothing is left, would delete for `cutoff`;
/// deletes nothing.
pub async fn prunable(store: &Store, cutoff: i64) -> Result<WebhooksPruned> {
    let count = |sql: String| async move { store.count(&sql, args![cutoff]).await.map(as_count) };
    Ok(WebhooksPruned {
        deliveries: count(format!(
            "SELECT COUNT(*) FROM webhook_deliveries d WHERE NOT {}",
            delivery_kept("d")
        ))
        .await?,
        attempts: count(format!(
            "SELECT COUNT(*) FROM webhook_attempts a JOIN webhook_deliveries d \
             ON d.id = a.delivery_id WHERE NOT {}",
            delivery_kept("d")
        ))
        .await?,
        messages: count(format!(
            "SELECT COUNT(*) FROM webhook_events w WHERE {}",
            message_goes("w")
        ))
        .await?,
    })
}
