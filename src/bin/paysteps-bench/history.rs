//! Growth: a database that already holds a history of processed events before the load
//! starts, and the latency of the dashboard's API queries over it afterwards.

use std::time::{Duration, Instant};

use anyhow::Context;
use paysteps::testing::store::{Dialect, Store, Write};
use rand::Rng;

use crate::report::percentile;

/// Rows written per statement, so progress shows and no transaction grows unbounded.
const CHUNK: usize = 100_000;

/// Fills a migrated, empty database with `events` processed checkout events: each with a
/// Stripe-sized payload, one run (every tenth failed, the rest completed) and its four
/// steps, spread over the past days.
pub async fn prefill(store: &Store, events: usize) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let payload = payload();
    let now = paysteps::testing::engine::system_now_ms();
    let span_ms: i64 = 3 * 24 * 60 * 60 * 1000;
    let spacing = (span_ms / events.max(1) as i64).max(1);
    let first = now - spacing * events as i64;
    let mut done = 0;
    while done < events {
        let n = CHUNK.min(events - done);
        let (from, to) = (done as i64, (done + n) as i64);
        for sql in statements(store.dialect()) {
            let args = paysteps::args![from, to, first, spacing, payload.as_str()];
            store
                .write(Write::isolated(), move |tx| {
                    Box::pin(async move { tx.execute(sql, args).await })
                })
                .await
                .context("prefilling the history")?;
        }
        done += n;
        eprintln!("paysteps-bench: history {done} of {events} events");
    }
    Ok(started.elapsed())
}

/// The statements that write rows `$1..$2` of the history; `$3` is the first event's
/// time, `$4` the spacing in ms, `$5` the payload.
fn statements(dialect: Dialect) -> Vec<&'static str> {
    match dialect {
        Dialect::Sqlite => vec![
            "WITH RECURSIVE seq(n) AS (SELECT $1 UNION ALL SELECT n + 1 FROM seq WHERE n + 1 < $2) \
             INSERT INTO events (id, dedupe_key, external_id, name, source, data, ts, received_at, \
             object_id, customer) SELECT printf('ev_hist_%09d', n), printf('stripe:evt_hist_%09d', n), \
             printf('evt_hist_%09d', n), 'stripe/checkout.session.completed', 'stripe', $5, \
             $3 + n * $4, $3 + n * $4, printf('cs_hist_%09d', n), printf('cus_hist_%06d', n % 100000) \
             FROM seq",
            "WITH RECURSIVE seq(n) AS (SELECT $1 UNION ALL SELECT n + 1 FROM seq WHERE n + 1 < $2) \
             INSERT INTO runs (id, function_id, event_id, status, run_at, attempt, output, error, \
             created_at, started_at, ended_at, updated_at) SELECT printf('run_hist_%09d', n), \
             'checkout-session-completed', printf('ev_hist_%09d', n), \
             CASE WHEN n % 10 = 0 THEN 'failed' ELSE 'completed' END, $3 + n * $4, 1, \
             CASE WHEN n % 10 = 0 THEN NULL ELSE '{\"action\":\"subscription activated\"}' END, \
             CASE WHEN n % 10 = 0 THEN 'step ''link-customer'' failed: database timeout' END, \
             $3 + n * $4, $3 + n * $4 + 5, $3 + n * $4 + 40, $3 + n * $4 + 40 FROM seq",
            "WITH RECURSIVE seq(n) AS (SELECT $1 UNION ALL SELECT n + 1 FROM seq WHERE n + 1 < $2), \
             names(position, name) AS (VALUES (0, 'validate-session'), (1, 'link-customer'), \
             (2, 'activate-subscription'), (3, 'log-success')) \
             INSERT INTO steps (run_id, step_key, name, position, kind, status, attempts, output, \
             started_at, ended_at) SELECT printf('run_hist_%09d', n), name || ':0', name, position, \
             'run', 'completed', 1, '{\"ok\":true}', $3 + n * $4 + position * 10, \
             $3 + n * $4 + position * 10 + 8 FROM seq, names",
        ],
        Dialect::Postgres => vec![
            "INSERT INTO events (id, dedupe_key, external_id, name, source, data, ts, received_at, \
             object_id, customer) SELECT 'ev_hist_' || lpad(n::text, 9, '0'), \
             'stripe:evt_hist_' || lpad(n::text, 9, '0'), 'evt_hist_' || lpad(n::text, 9, '0'), \
             'stripe/checkout.session.completed', 'stripe', $5, $3 + n * $4, $3 + n * $4, \
             'cs_hist_' || lpad(n::text, 9, '0'), 'cus_hist_' || lpad((n % 100000)::text, 6, '0') \
             FROM generate_series($1, $2 - 1) AS n",
            "INSERT INTO runs (id, function_id, event_id, status, run_at, attempt, output, error, \
             created_at, started_at, ended_at, updated_at) SELECT 'run_hist_' || lpad(n::text, 9, '0'), \
             'checkout-session-completed', 'ev_hist_' || lpad(n::text, 9, '0'), \
             CASE WHEN n % 10 = 0 THEN 'failed' ELSE 'completed' END, $3 + n * $4, 1, \
             CASE WHEN n % 10 = 0 THEN NULL ELSE '{\"action\":\"subscription activated\"}' END, \
             CASE WHEN n % 10 = 0 THEN 'step ''link-customer'' failed: database timeout' END, \
             $3 + n * $4, $3 + n * $4 + 5, $3 + n * $4 + 40, $3 + n * $4 + 40 \
             FROM generate_series($1, $2 - 1) AS n",
            "INSERT INTO steps (run_id, step_key, name, position, kind, status, attempts, output, \
             started_at, ended_at) SELECT 'run_hist_' || lpad(n::text, 9, '0'), s.name || ':0', s.name, \
             s.position, 'run', 'completed', 1, '{\"ok\":true}', $3 + n * $4 + s.position * 10, \
             $3 + n * $4 + s.position * 10 + 8 FROM generate_series($1, $2 - 1) AS n, \
             (VALUES (0, 'validate-session'), (1, 'link-customer'), (2, 'activate-subscription'), \
             (3, 'log-success')) AS s(position, name)",
        ],
    }
}

/// A payload the size of a real `checkout.session.completed` envelope (about 2.5 KB).
fn payload() -> String {
    let mut object = serde_json::Map::new();
    for i in 0..60 {
        object.insert(
            format!("field_{i:02}"),
            serde_json::json!(format!("value-{i:030}")),
        );
    }
    serde_json::json!({"object": "event", "type": "checkout.session.completed", "data": {"object": object}})
        .to_string()
}

/// Latency of the dashboard's queries against the running server, in microseconds.
pub struct Probes {
    pub by_status: Vec<u64>,
    pub run_detail: Vec<u64>,
}

/// Asks `base` (a server's URL) `n` times each for the newest failed runs and for one run
/// with its steps, picked at random among the `history` stored runs (or, without a
/// history, among the newest runs of the load).
pub async fn probe(base: &str, token: &str, history: usize, n: usize) -> anyhow::Result<Probes> {
    let client = reqwest::Client::new();
    // Without a history, the runs of the load itself are the ones read back.
    let recent: Vec<String> = if history == 0 {
        let listing: serde_json::Value = client
            .get(format!("{base}/api/v1/runs?limit=500"))
            .bearer_auth(token)
            .send()
            .await?
            .json()
            .await?;
        listing["runs"]
            .as_array()
            .map(|runs| {
                runs.iter()
                    .filter_map(|r| r["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    anyhow::ensure!(history > 0 || !recent.is_empty(), "no run to read back");
    let mut probes = Probes {
        by_status: Vec::with_capacity(n),
        run_detail: Vec::with_capacity(n),
    };
    for _ in 0..n {
        let started = Instant::now();
        let answer = client
            .get(format!("{base}/api/v1/runs?status=failed&limit=50"))
            .bearer_auth(token)
            .send()
            .await?;
        anyhow::ensure!(
            answer.status().is_success(),
            "runs by status: {}",
            answer.status()
        );
        answer.bytes().await?;
        probes.by_status.push(started.elapsed().as_micros() as u64);

        let run = if history > 0 {
            format!("run_hist_{:09}", rand::rng().random_range(0..history))
        } else {
            recent[rand::rng().random_range(0..recent.len())].clone()
        };
        let started = Instant::now();
        let answer = client
            .get(format!("{base}/api/v1/runs/{run}"))
            .bearer_auth(token)
            .send()
            .await?;
        anyhow::ensure!(answer.status().is_success(), "a run: {}", answer.status());
        answer.bytes().await?;
        probes.run_detail.push(started.elapsed().as_micros() as u64);
    }
    probes.by_status.sort_unstable();
    probes.run_detail.sort_unstable();
    Ok(probes)
}

impl Probes {
    pub fn print(&self) {
        let line = |name: &str, v: &[u64]| {
            println!(
                "  {name:<20} p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({} requests)",
                percentile(v, 0.50) as f64 / 1000.0,
                percentile(v, 0.99) as f64 / 1000.0,
                v.last().copied().unwrap_or_default() as f64 / 1000.0,
                v.len()
            )
        };
        line("API runs by status", &self.by_status);
        line("API run + steps", &self.run_detail);
    }
}
