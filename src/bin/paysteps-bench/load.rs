//! The load: unique, signed Stripe events built before timing, sent over keep-alive
//! connections either as fast as the server answers (closed loop) or on a schedule
//! (open loop, latency measured from the scheduled time so a slow server cannot hide
//! its queueing: no coordinated omission).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use clap::ValueEnum;
use paysteps::engine::system_now_ms;
use paysteps::stripe::fixtures::{self, Overrides};
use paysteps::stripe::signer;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Barrier;

/// Which Stripe event every request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mix {
    /// `checkout.session.completed` in subscription mode.
    #[value(name = "checkout")]
    Checkout,
    /// `payment_intent.succeeded`.
    #[value(name = "payment_intent")]
    PaymentIntent,
}

impl Mix {
    pub fn event_type(self) -> &'static str {
        match self {
            Mix::Checkout => "checkout.session.completed",
            Mix::PaymentIntent => "payment_intent.succeeded",
        }
    }

    /// The function each event starts.
    pub fn function(self) -> &'static str {
        match self {
            Mix::Checkout => "checkout-session-completed",
            Mix::PaymentIntent => "payment-intent-succeeded",
        }
    }
}

/// The ids that make one event unique, kept to check the database against.
#[derive(Debug, Clone)]
pub struct Expected {
    pub event_id: String,
    /// The subscription (checkout) or PaymentIntent the business row is keyed by.
    pub object_id: String,
    pub customer: String,
    pub user: String,
}

struct Prepared {
    index: usize,
    body: Vec<u8>,
    signed_at: i64,
    signature: String,
}

/// A signature older than this is made again at send time (Stripe's tolerance is 300 s).
const RESIGN_AFTER_SECS: i64 = 240;

/// Events ready to send, in order, and what each should leave in the database.
pub struct Batch {
    queue: Vec<Prepared>,
    pub expected: Vec<Expected>,
}

pub fn build(mix: Mix, count: usize, tag: &str, secret: &str) -> anyhow::Result<Batch> {
    let template = fixtures::fixture(mix.event_type())
        .ok_or_else(|| anyhow!("no fixture for {}", mix.event_type()))?;
    let now = system_now_ms() / 1000;
    let mut queue = Vec::with_capacity(count);
    let mut expected = Vec::with_capacity(count);
    for index in 0..count {
        let ids = Expected {
            event_id: format!("evt_bench{tag}{index:08}"),
            object_id: match mix {
                Mix::Checkout => format!("sub_bench{tag}{index:08}"),
                Mix::PaymentIntent => format!("pi_bench{tag}{index:08}"),
            },
            customer: format!("cus_bench{tag}{index:08}"),
            user: format!("user_bench{tag}{index:08}"),
        };
        let mut event = fixtures::build_event(
            template.clone(),
            &Overrides {
                event_id: Some(ids.event_id.clone()),
                created: Some(now),
                user: Some(ids.user.clone()),
                customer: Some(ids.customer.clone()),
            },
        );
        let object = &mut event["data"]["object"];
        object["customer"] = Value::from(ids.customer.as_str());
        match mix {
            Mix::Checkout => {
                object["id"] = Value::from(format!("cs_bench{tag}{index:08}"));
                object["subscription"] = Value::from(ids.object_id.as_str());
                object["client_reference_id"] = Value::from(ids.user.as_str());
            }
            Mix::PaymentIntent => {
                object["id"] = Value::from(ids.object_id.as_str());
                object["metadata"]["user_id"] = Value::from(ids.user.as_str());
            }
        }
        let body = serde_json::to_vec(&event).context("serializing an event")?;
        let signature = signer::sign(secret, &body, now);
        queue.push(Prepared {
            index,
            body,
            signed_at: now,
            signature,
        });
        expected.push(ids);
    }
    Ok(Batch { queue, expected })
}

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

struct Shared {
    queue: Mutex<std::vec::IntoIter<Prepared>>,
    secret: String,
    pace: Pace,
    deadline: Instant,
    start: OnceLock<Instant>,
    warmed: Barrier,
    go: Barrier,
}

/// Sends every event of `batch` over `connections` connections spread evenly over `urls`.
pub async fn run(
    batch: Batch,
    urls: &[String],
    connections: usize,
    pace: Pace,
    secret: &str,
    deadline: Instant,
) -> anyhow::Result<Outcome> {
    let total = batch.queue.len();
    let shared = Arc::new(Shared {
        queue: Mutex::new(batch.queue.into_iter()),
        secret: secret.to_owned(),
        pace,
        deadline,
        start: OnceLock::new(),
        warmed: Barrier::new(connections + 1),
        go: Barrier::new(connections + 1),
    });
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
    for task in tasks {
        samples.extend(task.await.context("a load connection panicked")??);
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
