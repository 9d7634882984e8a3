//! The load: prepared events sent over keep-alive connections, either as fast as the
//! server answers (closed loop) or on a schedule (open loop, latency measured from the
//! scheduled time so a slow server cannot hide its queueing: no coordinated omission),
//! optionally with a cap on events whose runs have not finished.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use paysteps::testing::engine::system_now_ms;
use paysteps::testing::store::Store;
use paysteps::testing::stripe::signer;
use serde::Deserialize;
use tokio::sync::{Barrier, Semaphore};

use crate::events::{Batch, Prepared, RESIGN_AFTER_SECS};
use crate::verify::PENDING;

/// How events are paced.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// Each connection sends its next event as soon as the previous one is answered.
    Closed,
    /// Event `i` is due at `start + i / rate`.
    Open { rate: f64 },
}

/// What happened to one request.
#[derive(Debug, Clone)]
pub struct Sample {
    pub index: usize,
    /// `None` when the event was accepted (200, not a duplicate, one run queued);
    /// otherwise why not, e.g. `HTTP 503 unavailable`.
    pub failure: Option<String>,
    /// From the scheduled send time (open loop) or the actual send time (closed loop)
    /// to the acknowledgement, in microseconds.
    pub latency_us: u64,
    /// From the actual send time to the acknowledgement, in microseconds.
    pub service_us: u64,
    /// Acknowledgement time, microseconds after the load started.
    pub done_us: u64,
}

pub struct Outcome {
    pub samples: Vec<Sample>,
    /// Requests not sent because the deadline passed.
    pub unsent: usize,
}

impl Outcome {
    pub fn accepted(&self) -> usize {
        self.samples.iter().filter(|s| s.failure.is_none()).count()
    }

    /// Failed requests, counted by reason.
    pub fn failures(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for reason in self.samples.iter().filter_map(|s| s.failure.as_ref()) {
            *counts.entry(reason.clone()).or_insert(0) += 1;
        }
        counts
    }

    /// From the start of the load to the last acknowledgement.
    pub fn elapsed(&self) -> Duration {
        Duration::from_micros(self.samples.iter().map(|s| s.done_us).max().unwrap_or(0))
    }
}

/// How to send a batch.
pub struct Settings<'a> {
    /// Base URLs of the servers; connections are spread evenly over them.
    pub urls: &'a [String],
    pub connections: usize,
    pub pace: Pace,
    pub secret: &'a str,
    pub deadline: Instant,
    /// At most this many events accepted whose runs have not finished, read from this
    /// store: an end-to-end closed loop.
    pub in_flight: Option<(usize, Store)>,
}

struct Shared {
    queue: Mutex<std::vec::IntoIter<Prepared>>,
    secret: String,
    pace: Pace,
    deadline: Instant,
    start: OnceLock<Instant>,
    warmed: Barrier,
    go: Barrier,
    /// Events accepted so far.
    accepted: AtomicUsize,
    /// With an in-flight limit: one permit per event that may be sent.
    permits: Option<Semaphore>,
    sending: AtomicBool,
}

/// Sends every event of `batch`.
pub async fn run(batch: Batch, settings: Settings<'_>) -> anyhow::Result<Outcome> {
    let Settings {
        urls,
        connections,
        pace,
        secret,
        deadline,
        in_flight,
    } = settings;
    let total = batch.queue.len();
    let shared = Arc::new(Shared {
        queue: Mutex::new(batch.queue.into_iter()),
        secret: secret.to_owned(),
        pace,
        deadline,
        start: OnceLock::new(),
        warmed: Barrier::new(connections + 1),
        go: Barrier::new(connections + 1),
        accepted: AtomicUsize::new(0),
        permits: in_flight.as_ref().map(|(limit, _)| Semaphore::new(*limit)),
        sending: AtomicBool::new(true),
    });
    let poller = in_flight.map(|(_, store)| tokio::spawn(release_completed(store, shared.clone())));
    let mut tasks = Vec::with_capacity(connections);
    for connection in 0..connections {
        // One client per connection: exactly `connections` keep-alive connections,
        // and no pool shared between them.
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(30))
            .build()
            .context("building an HTTP client")?;
        let base = &urls[connection % urls.len()];
        tasks.push(tokio::spawn(connection_loop(
            client,
            base.clone(),
            shared.clone(),
        )));
    }
    shared.warmed.wait().await;
    let _ = shared.start.set(Instant::now());
    shared.go.wait().await;
    let mut samples = Vec::with_capacity(total);
    let mut failed = None;
    for task in tasks {
        match task.await.context("a load connection panicked") {
            Ok(Ok(done)) => samples.extend(done),
            Ok(Err(err)) | Err(err) => failed = Some(err),
        }
        // A connection that gave up must not leave the others waiting for permits.
        if let (Some(permits), true) = (&shared.permits, failed.is_some()) {
            permits.close();
        }
    }
    shared.sending.store(false, Ordering::Relaxed);
    if let Some(poller) = poller {
        poller.await.context("the in-flight poller panicked")??;
    }
    if let Some(err) = failed {
        return Err(err);
    }
    samples.sort_by_key(|s| s.index);
    Ok(Outcome {
        unsent: total - samples.len(),
        samples,
    })
}

async fn connection_loop(
    client: reqwest::Client,
    base: String,
    shared: Arc<Shared>,
) -> anyhow::Result<Vec<Sample>> {
    // Open the connection before the clock starts; every task reaches both barriers,
    // or the others would wait for ever.
    let warm = match client.get(format!("{base}/health")).send().await {
        Ok(response) => response.bytes().await.map(drop),
        Err(err) => Err(err),
    };
    shared.warmed.wait().await;
    shared.go.wait().await;
    warm.with_context(|| format!("connecting to {base}"))?;
    let start = *shared.start.get().context("load start not set")?;
    let url = format!("{base}/api/stripe/webhook");
    let mut samples = Vec::new();
    loop {
        if Instant::now() > shared.deadline {
            break;
        }
        if let Some(permits) = &shared.permits {
            match tokio::time::timeout_at(shared.deadline.into(), permits.acquire()).await {
                Ok(Ok(permit)) => permit.forget(),
                // Closed, or runs did not finish before the deadline.
                Ok(Err(_)) | Err(_) => break,
            }
        }
        let next = shared
            .queue
            .lock()
            .map_err(|_| anyhow!("the event queue lock is poisoned"))?
            .next();
        let Some(mut event) = next else { break };
        let due = match shared.pace {
            Pace::Closed => None,
            Pace::Open { rate } => {
                let due = start + Duration::from_secs_f64(event.index as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
                Some(due)
            }
        };
        let now_secs = system_now_ms() / 1000;
        if now_secs - event.signed_at > RESIGN_AFTER_SECS {
            event.signature = signer::sign(&shared.secret, &event.body, now_secs);
        }
        let sent = Instant::now();
        let failure = send(&client, &url, event.body, &event.signature).await;
        let done = Instant::now();
        match (&failure, &shared.permits) {
            (None, _) => {
                shared.accepted.fetch_add(1, Ordering::SeqCst);
            }
            // No run to wait for: the permit comes back at once.
            (Some(_), Some(permits)) => permits.add_permits(1),
            (Some(_), None) => {}
        }
        samples.push(Sample {
            index: event.index,
            failure,
            latency_us: micros(done - due.unwrap_or(sent)),
            service_us: micros(done - sent),
            done_us: micros(done - start),
        });
    }
    Ok(samples)
}

/// Gives back one permit per finished run: events accepted minus runs not yet
/// finished. Reading `accepted` before the count keeps the estimate on the safe side.
async fn release_completed(store: Store, shared: Arc<Shared>) -> anyhow::Result<()> {
    let Some(permits) = &shared.permits else {
        return Ok(());
    };
    let mut released = 0;
    while shared.sending.load(Ordering::Relaxed) {
        let accepted = shared.accepted.load(Ordering::SeqCst);
        let pending = match store.fetch_one::<(i64,)>(PENDING, vec![]).await {
            Ok((pending,)) => pending,
            Err(err) => {
                // Nobody else gives permits back: stop the senders rather than hang.
                permits.close();
                return Err(err).context("counting unfinished runs");
            }
        };
        let finished = accepted.saturating_sub(usize::try_from(pending).unwrap_or(0));
        if finished > released {
            permits.add_permits(finished - released);
            released = finished;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[derive(Deserialize)]
struct Answer {
    duplicate: bool,
    runs: Vec<String>,
}

#[derive(Deserialize)]
struct Rejection {
    error: RejectionError,
}

#[derive(Deserialize)]
struct RejectionError {
    code: String,
}

/// Sends one event; `None` when it was accepted with exactly one run queued.
async fn send(
    client: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    signature: &str,
) -> Option<String> {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .header("stripe-signature", signature)
        .body(body)
        .send()
        .await;
    let response = match response {
        Ok(response) => response,
        Err(err) if err.is_timeout() => return Some("timeout".to_owned()),
        Err(err) if err.is_connect() => return Some("connect error".to_owned()),
        Err(_) => return Some("transport error".to_owned()),
    };
    let status = response.status();
    let Ok(bytes) = response.bytes().await else {
        return Some(format!("HTTP {} (body lost)", status.as_u16()));
    };
    if !status.is_success() {
        let code = serde_json::from_slice::<Rejection>(&bytes)
            .map(|r| r.error.code)
            .unwrap_or_default();
        return Some(
            format!("HTTP {} {code}", status.as_u16())
                .trim_end()
                .to_owned(),
        );
    }
    match serde_json::from_slice::<Answer>(&bytes) {
        Ok(answer) if answer.duplicate => Some("HTTP 200 duplicate".to_owned()),
        Ok(answer) if answer.runs.len() != 1 => {
            Some(format!("HTTP 200 with {} runs", answer.runs.len()))
        }
        Ok(_) => None,
        Err(_) => Some("HTTP 200 unreadable answer".to_owned()),
    }
}
