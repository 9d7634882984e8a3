//! The delivery function: one durable run per (event, endpoint). Each attempt is a step
//! that makes the signed POST and returns what happened as data; between attempts the
//! run sleeps for the schedule's delay. No network I/O happens inside a transaction.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::Webhooks;
use super::destination::Destinations;
use super::emit::{DELIVER_FUNCTION, deliver_function, emit};
use super::endpoint::{EndpointStatus, parse_url};
use super::events::{BusinessEvent, EndpointDisabledData, EventType};
use super::repo::{self, AttemptRow, BusinessEventRow, EndpointRow};
use super::schedule::{DISABLE_AFTER_MS, SCHEDULE_MS, delay_before, parse_retry_after};
use super::secret::signature_header;
use crate::engine::{Ctx, Function, Interrupt, StepError, Trigger, new_id, system_now_ms};
use crate::ids::RunId;
use crate::store::{Store, StoreTx, Write};

/// How long one attempt may take, connection to last byte.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);

/// The longest response body excerpt kept in the delivery log, in bytes.
pub const EXCERPT_BYTES: usize = 1024;

/// The delivery function, started only by recorded business events and resends.
pub fn function(webhooks: Webhooks) -> Function {
    Function::new(DELIVER_FUNCTION, Trigger::Internal, move |ctx| {
        deliver(ctx, webhooks.clone())
    })
    .retries(5)
}

/// What a delivery run works on (no secrets: step outputs are shown by the API).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Target {
    delivery_id: String,
    endpoint_id: String,
    event_id: String,
}

/// What one attempt did, as its step's output.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttemptOutcome {
    /// The attempt's number within the delivery, from 1; 0 when the delivery was canceled
    /// before anything was sent.
    pub attempt: i64,
    /// The HTTP status the endpoint answered; `None` when no answer came.
    pub status_code: Option<u16>,
    /// Time from sending the request to the answer (or the failure), in milliseconds.
    pub latency_ms: i64,
    /// What went wrong, if the attempt failed.
    pub error: Option<String>,
    /// `succeeded`, `failed` or `canceled` once the delivery is over; `pending` before.
    pub delivery_status: String,
    /// The wait before the next attempt, while one is due.
    pub retry_in_ms: Option<u64>,
}

async fn deliver(ctx: Ctx, webhooks: Webhooks) -> Result<serde_json::Value, Interrupt> {
    let store = webhooks.store.clone();
    let run_id = ctx.run_id.clone();
    let target: Option<Target> = ctx
        .step
        .run("load delivery", || async move {
            Ok(repo::delivery_of_run(&store, run_id.as_str())
                .await?
                .map(|d| Target {
                    delivery_id: d.id,
                    endpoint_id: d.endpoint_id,
                    event_id: d.event_id,
                }))
        })
        .await?;
    let Some(target) = target else {
        return Ok(serde_json::json!({ "delivery": null }));
    };
    let mut last = None;
    for index in 0..SCHEDULE_MS.len() {
        if let Some(wait) = last.as_ref().and_then(|o: &AttemptOutcome| o.retry_in_ms) {
            ctx.step
                .sleep(
                    &format!("wait before attempt {}", index + 1),
                    Duration::from_millis(wait),
                )
                .await?;
        }
        let (hooks, t) = (webhooks.clone(), target.clone());
        let outcome = ctx
            .step
            .run(&format!("attempt {}", index + 1), || async move {
                attempt(&hooks, &t, index).await
            })
            .await?;
        let done = outcome.retry_in_ms.is_none();
        last = Some(outcome);
        if done {
            break;
        }
    }
    Ok(serde_json::json!({ "delivery": target.delivery_id, "last_attempt": last }))
}

/// Makes attempt `index` (0-based) and logs it.
async fn attempt(
    webhooks: &Webhooks,
    target: &Target,
    index: usize,
) -> Result<AttemptOutcome, StepError> {
    let store = &webhooks.store;
    let now = webhooks.clock.now_ms();
    let endpoint = repo::endpoint(store, &target.endpoint_id).await?;
    let stop = match &endpoint {
        None => Some("the endpoint was deleted".to_owned()),
        Some(e) if EndpointStatus::from_stored(&e.status) != EndpointStatus::Active => {
            Some(format!("the endpoint is {}", e.status))
        }
        Some(_) => None,
    };
    let (Some(endpoint), None) = (endpoint, stop.clone()) else {
        let error = stop.unwrap_or_default();
        let (id, message) = (target.delivery_id.clone(), error.clone());
        store
            .write(Write::isolated(), move |tx| {
                Box::pin(
                    async move { repo::end_delivery(tx, &id, "canceled", &message, now).await },
                )
            })
            .await?;
        return Ok(AttemptOutcome {
            attempt: 0,
            status_code: None,
            latency_ms: 0,
            error: Some(error),
            delivery_status: "canceled".to_owned(),
            retry_in_ms: None,
        });
    };
    let event = repo::event(store, &target.event_id)
        .await?
        .ok_or_else(|| StepError::non_retriable(format!("no event {}", target.event_id)))?;
    let secrets = repo::signing_secrets(store, &endpoint.id, now).await?;
    let sent = send(webhooks.destinations, &endpoint, &event, &secrets).await;

    let verdict = Verdict::of(sent.status_code);
    let retry_in = match verdict {
        Verdict::Retry => delay_before(index + 1, sent.retry_after, rand::random::<f64>()),
        Verdict::Delivered | Verdict::Gone => None,
    };
    let delivery_status = match (verdict, retry_in) {
        (Verdict::Delivered, _) => "succeeded",
        (_, Some(_)) => "pending",
        (_, None) => "failed",
    };
    let retry_in_ms = retry_in.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let row = AttemptRow {
        id: new_id("wha"),
        delivery_id: target.delivery_id.clone(),
        attempt: 0,
        at: now,
        status_code: sent.status_code.map(i64::from),
        latency_ms: sent.latency_ms,
        response_excerpt: sent.excerpt.clone(),
        error: sent.error.clone(),
    };
    let next_attempt_at = retry_in_ms.map(|ms| now.saturating_add(ms as i64));
    let endpoint_row = endpoint.clone();
    let number = store
        .write(Write::isolated(), move |tx| {
            Box::pin(async move {
                let number = repo::record_attempt(
                    tx,
                    &row.delivery_id,
                    &row,
                    delivery_status,
                    next_attempt_at,
                )
                .await?;
                after_attempt(tx, &endpoint_row, verdict, now).await?;
                Ok(number)
            })
        })
        .await?;
    tracing::info!(
        delivery_id = %target.delivery_id,
        endpoint_id = %endpoint.id,
        webhook_id = %event.id,
        attempt = number,
        status_code = sent.status_code,
        error = sent.error.as_deref().unwrap_or("-"),
        delivery_status,
        "webhook delivery attempt"
    );
    Ok(AttemptOutcome {
        attempt: number,
        status_code: sent.status_code,
        latency_ms: sent.latency_ms,
        error: sent.error,
        delivery_status: delivery_status.to_owned(),
        retry_in_ms,
    })
}

/// How an answer moves a delivery on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// 2xx.
    Delivered,
    /// 410: the receiver says the endpoint is gone for good.
    Gone,
    /// Anything else, or no answer.
    Retry,
}

impl Verdict {
    fn of(status: Option<u16>) -> Verdict {
        match status {
            Some(code) if (200..300).contains(&code) => Verdict::Delivered,
            Some(410) => Verdict::Gone,
            _ => Verdict::Retry,
        }
    }
}

/// Keeps the endpoint's health: a success clears its failure clock; 410, or failing for
/// 5 days without a success, disables it and emits `endpoint.disabled`.
async fn after_attempt(
    tx: &mut StoreTx,
    endpoint: &EndpointRow,
    verdict: Verdict,
    now: i64,
) -> crate::store::Result<()> {
    if verdict == Verdict::Delivered {
        return repo::endpoint_succeeded(tx, &endpoint.id, now).await;
    }
    let since = repo::endpoint_failed(tx, &endpoint.id, now).await?;
    let reason = match (verdict, since) {
        (Verdict::Gone, _) => "the endpoint answered 410 Gone".to_owned(),
        (_, Some(since)) if now - since >= DISABLE_AFTER_MS => {
            "no successful delivery for 5 days".to_owned()
        }
        _ => return Ok(()),
    };
    let still_active = repo::endpoint_tx(tx, &endpoint.id)
        .await?
        .is_some_and(|e| EndpointStatus::from_stored(&e.status) == EndpointStatus::Active);
    if !still_active {
        return Ok(());
    }
    repo::set_status(
        tx,
        &endpoint.id,
        EndpointStatus::Disabled,
        Some(reason.clone()),
        now,
    )
    .await?;
    tracing::warn!(endpoint_id = %endpoint.id, reason = %reason, "webhook endpoint disabled");
    let alert = BusinessEvent {
        event_type: EventType::EndpointDisabled,
        source: format!("endpoint:{}:{}", endpoint.id, since.unwrap_or(now)),
        data: serde_json::to_value(EndpointDisabledData {
            endpoint_id: endpoint.id.clone(),
            url: endpoint.url.clone(),
            reason,
            failing_since: since,
        })
        .unwrap_or_default(),
    };
    emit(tx, &alert, now).await?;
    Ok(())
}

/// What the receiver answered, or why it could not be reached.
struct Sent {
    status_code: Option<u16>,
    latency_ms: i64,
    excerpt: Option<String>,
    error: Option<String>,
    retry_after: Option<Duration>,
}

impl Sent {
    fn error(error: impl ToString) -> Sent {
        Sent {
            status_code: None,
            latency_ms: 0,
            excerpt: None,
            error: Some(error.to_string()),
            retry_after: None,
        }
    }
}

/// Resolves and checks the destination, signs the body and POSTs it once.
async fn send(
    destinations: Destinations,
    endpoint: &EndpointRow,
    event: &BusinessEventRow,
    secrets: &[crate::config::Secret],
) -> Sent {
    let url = match parse_url(&endpoint.url) {
        Ok(url) => url,
        Err(e) => return Sent::error(e),
    };
    let addr = match destinations.resolve(&url).await {
        Ok(addr) => addr,
        Err(e) => return Sent::error(e),
    };
    let timestamp = system_now_ms() / 1000;
    let signers: Vec<&crate::config::Secret> = secrets.iter().collect();
    let signature = match signature_header(&signers, &event.id, timestamp, &event.payload) {
        Ok(signature) => signature,
        Err(e) => return Sent::error(e),
    };
    let client = match client(&url, addr) {
        Ok(client) => client,
        Err(e) => return Sent::error(describe(e)),
    };
    let began = Instant::now();
    let answer = client
        .post(url)
        .header("content-type", "application/json")
        .header(standardwebhooks::HEADER_WEBHOOK_ID, &event.id)
        .header(
            standardwebhooks::HEADER_WEBHOOK_TIMESTAMP,
            timestamp.to_string(),
        )
        .header(standardwebhooks::HEADER_WEBHOOK_SIGNATURE, signature)
        .body(event.payload.clone())
        .send()
        .await;
    let mut response = match answer {
        Ok(response) => response,
        Err(e) => {
            let mut sent = Sent::error(describe(e));
            sent.latency_ms = elapsed_ms(began);
            return sent;
        }
    };
    let status = response.status().as_u16();
    let retry_after = matches!(status, 429 | 503)
        .then(|| response.headers().get(reqwest::header::RETRY_AFTER))
        .flatten()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, system_now_ms()));
    let mut body = Vec::new();
    let mut error = None;
    while body.len() < EXCERPT_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) => {
                error = Some(format!("reading the response: {}", describe(e)));
                break;
            }
        }
    }
    body.truncate(EXCERPT_BYTES);
    let excerpt = String::from_utf8_lossy(&body).into_owned();
    if error.is_none() && !(200..300).contains(&status) {
        error = Some(format!("the endpoint answered {status}"));
    }
    Sent {
        status_code: Some(status),
        latency_ms: elapsed_ms(began),
        excerpt: (!excerpt.is_empty()).then_some(excerpt),
        error,
        retry_after,
    }
}

/// The client of one attempt: it connects to `addr`, the address that was checked, and
/// to nothing else. No proxy (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY` are ignored): a
/// proxy would look the name up again and connect where the check never looked.
fn client(url: &reqwest::Url, addr: SocketAddr) -> reqwest::Result<reqwest::Client> {
    let mut client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(ATTEMPT_TIMEOUT)
        .user_agent(concat!("paysteps-webhooks/", env!("CARGO_PKG_VERSION")));
    if let Some(host) = url.host_str() {
        client = client.resolve(host, addr);
    }
    client.build()
}

/// The error without its URL: an endpoint URL may carry a credential in its path.
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    if e.is_timeout() {
        format!("timed out after {} s", ATTEMPT_TIMEOUT.as_secs())
    } else if e.is_connect() {
        format!("could not connect: {e}")
    } else {
        e.to_string()
    }
}

fn elapsed_ms(began: Instant) -> i64 {
    i64::try_from(began.elapsed().as_millis()).unwrap_or(i64::MAX)
}

/// Queues a new delivery of `delivery_id`'s event to the same endpoint, with the same
/// `webhook-id` and body, in a transaction of its own. Returns the new delivery's id, or
/// `None` when there is no such delivery.
pub async fn resend(
    store: &Store,
    delivery_id: &str,
    now: i64,
) -> crate::store::Result<Option<String>> {
    let delivery_id = delivery_id.to_owned();
    store
        .write(Write::isolated(), move |tx| {
            Box::pin(async move { resend_in(tx, &delivery_id, now).await })
        })
        .await
}

async fn resend_in(
    tx: &mut StoreTx,
    delivery_id: &str,
    now: i64,
) -> crate::store::Result<Option<String>> {
    let Some(original) = repo::delivery_tx(tx, delivery_id).await? else {
        return Ok(None);
    };
    let Some(mut event) = repo::event_tx(tx, &original.event_id).await? else {
        return Ok(None);
    };
    let run = crate::store::NewRun {
        id: RunId::new(),
        function_id: deliver_function(),
        replay_of: None,
    };
    super::emit::queue_runs(tx, &mut event, std::slice::from_ref(&run), now).await?;
    let id = new_id("whd");
    repo::insert_delivery(
        tx,
        &id,
        &event.id,
        &original.endpoint_id,
        run.id.as_str(),
        Some(original.id.clone()),
        now,
    )
    .await?;
    Ok(Some(id))
}
