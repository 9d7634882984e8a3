//! Three `paysteps serve` processes on one PostgreSQL database: one is killed with SIGKILL
//! while runs are in flight, and every accepted event is still applied exactly once.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::common::db::{postgres_url, report_postgres_skipped};
use crate::common::serve::{
    Serve, Tally, TestEvent, assert_applied_once, check_pool, count, deliver, http_client, report,
    unfinished_runs, wait_until_idle,
};
use crate::common::{Backend, TestDb};

const EVENTS: usize = 1_000;
/// Every fifth event is a subscription checkout, the rest are payments.
const CHECKOUT_EVERY: usize = 5;
const SENDERS: usize = 16;
const KILL_AFTER_ACCEPTED: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_serve_processes_survive_a_sigkill_and_apply_every_event_once() {
    if postgres_url().is_none() {
        report_postgres_skipped();
        return;
    }
    let started = Instant::now();
    let db = TestDb::create(Backend::Postgres).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let client = http_client();
    let mut servers: Vec<Serve> = (1..=3)
        .map(|n| Serve::start(&format!("serve-{n}"), &db.url(), 8, dir.path()))
        .collect();
    for server in &mut servers {
        server.wait_healthy(&client).await;
    }
    let pool = check_pool(&db).await;
    let ports: Arc<Vec<u16>> = Arc::new(servers.iter().map(|s| s.port).collect());

    let events: Arc<Vec<TestEvent>> = Arc::new(
        (0..EVENTS)
            .map(|n| {
                if n % CHECKOUT_EVERY == CHECKOUT_EVERY - 1 {
                    TestEvent::checkout("clu", n)
                } else {
                    TestEvent::payment("clu", n)
                }
            })
            .collect(),
    );
    let tally = Arc::new(Tally::default());
    let next = Arc::new(AtomicUsize::new(0));
    let send_started = Instant::now();
    let senders: Vec<_> = (0..SENDERS)
        .map(|_| {
            let (client, ports, events, tally, next) = (
                client.clone(),
                ports.clone(),
                events.clone(),
                tally.clone(),
                next.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    let Some(event) = events.get(n) else { return };
                    deliver(&client, &ports, n % ports.len(), event, &tally).await;
                }
            })
        })
        .collect();

    // Kill #2 once enough is accepted, while runs are executing.
    let until = Instant::now() + Duration::from_secs(30);
    while tally.accepted_count.load(Ordering::SeqCst) < KILL_AFTER_ACCEPTED {
        assert!(
            Instant::now() < until,
            "only {} events accepted after 30 s",
            tally.accepted_count.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let running_at_kill = count(&pool, "SELECT COUNT(*) FROM runs WHERE status = 'running'").await;
    servers[1].kill();
    let killed_at = Instant::now();
    let accepted_at_kill = tally.accepted_count.load(Ordering::SeqCst);

    for sender in senders {
        sender.await.expect("sender task");
    }
    let sent_in = send_started.elapsed();
    servers[1].restart();
    servers[1].wait_healthy(&client).await;
    let restarted_at = Instant::now();
    let unfinished_at_restart = unfinished_runs(&pool).await;

    let idle = wait_until_idle(&pool, Duration::from_secs(45)).await;
    let idle_at = Instant::now();
    let resumed = count(&pool, "SELECT COUNT(*) FROM runs WHERE attempt > 1").await;
    let failures = std::mem::take(&mut *tally.failures.lock().expect("tally"));
    let mut by_cause: HashMap<String, usize> = HashMap::new();
    for f in &failures {
        let cause = match f.status {
            Some(status) => status.to_string(),
            None => f.detail.clone(),
        };
        *by_cause
            .entry(format!("#{} {cause}", f.process))
            .or_default() += 1;
    }
    let mut by_cause: Vec<_> = by_cause.into_iter().collect();
    by_cause.sort();
    report(&format!(
        "cluster: {EVENTS} events ({} checkouts) sent in {:.1} s by {SENDERS} senders; {} \
         accepted, {} of them after a retry, {} of those answered duplicate (committed by #2 \
         before it died); failed tries: {by_cause:?}",
        EVENTS / CHECKOUT_EVERY,
        sent_in.as_secs_f64(),
        tally.accepted_count.load(Ordering::SeqCst),
        tally.retried.load(Ordering::SeqCst),
        tally.duplicates.load(Ordering::SeqCst),
    ));
    report(&format!(
        "cluster: #2 SIGKILLed at {accepted_at_kill} accepted with {running_at_kill} runs \
         running; {unfinished_at_restart} runs unfinished when #2 was back; all runs finished \
         {:.2} s after the restart ({:.2} s after the kill); {resumed} runs claimed again after \
         a lost lease; test took {:.1} s",
        idle_at.duration_since(restarted_at).as_secs_f64(),
        idle_at.duration_since(killed_at).as_secs_f64(),
        started.elapsed().as_secs_f64(),
    ));
    assert!(
        idle,
        "{} runs still unfinished after 45 s",
        unfinished_runs(&pool).await
    );
    let undelivered = tally.undelivered.lock().expect("tally").clone();
    assert!(
        undelivered.is_empty(),
        "deliveries never accepted: {undelivered:?}"
    );
    let server_errors: Vec<String> = failures
        .iter()
        .filter(|f| {
            f.status
                .is_some_and(|s| s != StatusCode::SERVICE_UNAVAILABLE)
        })
        .map(|f| format!("{} → #{}: {:?} {}", f.event, f.process, f.status, f.detail))
        .collect();
    assert!(
        server_errors.is_empty(),
        "a process answered neither 200 nor 503: {server_errors:?}"
    );

    let accepted_ids = tally.accepted.lock().expect("tally").clone();
    let accepted: Vec<&TestEvent> = events
        .iter()
        .filter(|e| accepted_ids.contains(&e.id))
        .collect();
    assert_eq!(accepted.len(), EVENTS, "every delivery was acknowledged");
    assert!(running_at_kill > 0, "no run was in flight at the kill");
    assert_applied_once(&pool, &accepted).await;
    assert!(
        resumed > 0,
        "no run was taken over after the kill; the test did not exercise recovery"
    );
    pool.close().await;
}
