//! After the load, read the database directly: wait for the runs to finish, take their
//! timings, and check that every accepted event was processed exactly once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use paysteps::args;
use paysteps::testing::store::Store;

use crate::events::{Expected, Mix};
use crate::load::Outcome;

/// A run's function and status, NULL for an event that started none.
type RunOf = (Option<String>, Option<String>);

/// Runs not finished yet.
pub const PENDING: &str = "SELECT COUNT(*) FROM runs WHERE status IN ('pending', 'queued', 'running', 'sleeping', 'waiting')";

/// Waits until no run is queued, running or sleeping; returns how many still are when
/// `deadline` passes first. Polls ten times a second: the count is a query on the
/// server's database, and the figures take their times from the rows, not from here.
pub async fn wait_idle(store: &Store, deadline: Instant) -> anyhow::Result<i64> {
    loop {
        let (pending,): (i64,) = store.fetch_one(PENDING, vec![]).await?;
        if pending == 0 || Instant::now() > deadline {
            return Ok(pending);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Completed runs of one function, from the runs table.
pub struct RunTimings {
    pub completed: usize,
    /// From the first run's creation (its event's acceptance) to the last run's end.
    pub span_ms: i64,
    /// `ended_at - created_at` of each run, sorted.
    pub latencies_ms: Vec<u64>,
}

pub async fn run_timings(store: &Store, function: &str) -> anyhow::Result<RunTimings> {
    let rows: Vec<(i64, Option<i64>)> = store
        .fetch_all(
            "SELECT created_at, ended_at FROM runs WHERE function_id = $1 AND status = 'completed' \
             AND id NOT LIKE 'run_hist_%'",
            args![function],
        )
        .await?;
    let first = rows.iter().map(|(created, _)| *created).min().unwrap_or(0);
    let last = rows
        .iter()
        .filter_map(|(_, ended)| *ended)
        .max()
        .unwrap_or(0);
    let mut latencies_ms: Vec<u64> = rows
        .iter()
        .filter_map(|(created, ended)| Some(u64::try_from(ended.as_ref()? - created).unwrap_or(0)))
        .collect();
    latencies_ms.sort_unstable();
    Ok(RunTimings {
        completed: rows.len(),
        span_ms: (last - first).max(0),
        latencies_ms,
    })
}

/// Everything found wrong, one line each; empty when every sent event was accepted, has
/// exactly one completed run, and wrote its business rows (and their step checkpoint)
/// exactly once, with nothing else in the database.
pub async fn verify(
    store: &Store,
    mix: Mix,
    expected: &[Expected],
    outcome: &Outcome,
) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    let accepted: Vec<&Expected> = outcome
        .samples
        .iter()
        .filter(|s| s.failure.is_none())
        .map(|s| &expected[s.index])
        .collect();
    if accepted.len() != expected.len() {
        problems.push(format!(
            "{} of {} events were not accepted",
            expected.len() - accepted.len(),
            expected.len()
        ));
    }

    let rows: Vec<(Option<String>, Option<String>, Option<String>)> = store
        .fetch_all(
            "SELECT e.external_id, r.function_id, r.status \
             FROM events e LEFT JOIN runs r ON r.event_id = e.id WHERE e.source = 'stripe' \
             AND e.id NOT LIKE 'ev_hist_%'",
            vec![],
        )
        .await?;
    let mut runs: HashMap<String, Vec<RunOf>> = HashMap::new();
    for (event, function, status) in rows {
        runs.entry(event.unwrap_or_default())
            .or_default()
            .push((function, status));
    }
    let mut tally = Tally::default();
    for event in &accepted {
        match runs.remove(&event.event_id).as_deref() {
            None => tally.bad(
                "accepted events missing from the events table",
                &event.event_id,
            ),
            Some([(Some(function), Some(status))]) if function == mix.function() => {
                if status != "completed" {
                    tally.bad(&format!("runs {status}, not completed"), &event.event_id);
                }
            }
            Some(other) => tally.bad(
                &format!(
                    "events with {} runs instead of one {} run",
                    other.len(),
                    mix.function()
                ),
                &event.event_id,
            ),
        }
    }
    if !runs.is_empty() {
        let example = runs.keys().next().cloned().unwrap_or_default();
        tally.add(
            "stored events the bench never saw accepted",
            runs.len(),
            &example,
        );
    }

    let (table, status) = match mix {
        Mix::Checkout => ("subscriptions", "active"),
        Mix::PaymentIntent => ("payments", "succeeded"),
    };
    let rows: Vec<(String, Option<String>, Option<String>, String)> = store
        .fetch_all(
            &format!("SELECT id, user_id, customer_id, status FROM {table}"),
            vec![],
        )
        .await?;
    let mut business: HashMap<String, (Option<String>, Option<String>, String)> = rows
        .into_iter()
        .map(|(id, user, customer, status)| (id, (user, customer, status)))
        .collect();
    for event in &accepted {
        match business.remove(&event.object_id) {
            None => tally.bad(&format!("{table} rows missing"), &event.object_id),
            Some((user, customer, row_status)) => {
                if user.as_deref() != Some(&event.user)
                    || customer.as_deref() != Some(&event.customer)
                    || row_status != status
                {
                    tally.bad(
                        &format!(
                            "{table} rows with another user, customer or status than {status}"
                        ),
                        &event.object_id,
                    );
                }
            }
        }
    }
    if !business.is_empty() {
        let example = business.keys().next().cloned().unwrap_or_default();
        tally.add(
            &format!("{table} rows no accepted event wrote"),
            business.len(),
            &example,
        );
    }

    let rows: Vec<(String, Option<String>)> = store
        .fetch_all("SELECT id, user_id FROM customers", vec![])
        .await?;
    let mut customers: HashMap<String, Option<String>> = rows.into_iter().collect();
    for event in &accepted {
        if customers.remove(&event.customer).flatten().as_deref() != Some(&event.user) {
            tally.bad("customers not linked to their user", &event.customer);
        }
    }
    if !customers.is_empty() {
        let example = customers.keys().next().cloned().unwrap_or_default();
        tally.add(
            "customers rows no accepted event wrote",
            customers.len(),
            &example,
        );
    }

    // One checkpoint per run for the transactional write: the write committed once.
    let write_step = match mix {
        Mix::Checkout => "activate-subscription",
        Mix::PaymentIntent => "record-payment",
    };
    let (checkpoints,): (i64,) = store
        .fetch_one(
            "SELECT COUNT(*) FROM steps WHERE name = $1 AND status = 'completed' \
             AND run_id NOT LIKE 'run_hist_%'",
            args![write_step],
        )
        .await?;
    if usize::try_from(checkpoints).ok() != Some(accepted.len()) {
        problems.push(format!(
            "{checkpoints} completed '{write_step}' steps for {} accepted events",
            accepted.len()
        ));
    }
    let (failures,): (i64,) = store
        .fetch_one("SELECT COUNT(*) FROM payment_failures", vec![])
        .await?;
    if failures != 0 {
        problems.push(format!("{failures} payment_failures rows (failed runs)"));
    }
    problems.extend(tally.lines());
    Ok(problems)
}

/// Problems counted by kind, each with one example id.
#[derive(Default)]
struct Tally(Vec<(String, usize, String)>);

impl Tally {
    fn bad(&mut self, what: &str, example: &str) {
        self.add(what, 1, example);
    }

    fn add(&mut self, what: &str, count: usize, example: &str) {
        match self.0.iter_mut().find(|(w, _, _)| w == what) {
            Some(entry) => entry.1 += count,
            None => self.0.push((what.to_owned(), count, example.to_owned())),
        }
    }

    fn lines(self) -> impl Iterator<Item = String> {
        self.0
            .into_iter()
            .map(|(what, count, example)| format!("{count} {what} (e.g. {example})"))
    }
}
