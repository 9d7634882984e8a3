//! The database goes away under a running `paysteps serve`: deliveries are answered 503
//! with `Retry-After` (so Stripe retries), nothing is acknowledged that is not stored, and
//! once the database is back the same process finishes every run without a restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use paysteps::testing::engine::system_now_ms;
use reqwest::StatusCode;
use reqwest::header::RETRY_AFTER;

use crate::common::db::{postgres_url, report_postgres_skipped};
use crate::common::proxy::Proxy;
use crate::common::serve::{
    Answer, Serve, TestEvent, assert_applied_once, check_pool, count, http_client, post_event,
    report, unfinished_runs, wait_until_idle,
};
use crate::common::{Backend, TestDb, eventually};

const BEFORE: usize = 10;
const RACING: usize = 30;
const DURING: usize = 10;
/// Racing deliveries acknowledged before the cut is made.
const CUT_AFTER_ACCEPTED: usize = 5;

/// One delivery made while the cut was being made or in place.
struct Delivery {
    event: usize,
    /// Whether the request started after `cut()` returned.
    after_cut: bool,
    answer: Result<Answer, String>,
}

fn event(n: usize) -> TestEvent {
    // A few multi-step checkouts among the payments.
    if n % 5 == 4 {
        TestEvent::checkout("dbf", n)
    } else {
        TestEvent::payment("dbf", n)
    }
}

/// What is wrong with an answer given while the database was unreachable, if anything.
fn check_unavailable_answer(answer: &Answer) -> Option<String> {
    let mut wrong = Vec::new();
    if answer.status != StatusCode::SERVICE_UNAVAILABLE {
        wrong.push(format!("status {} instead of 503", answer.status));
    }
    let retry_after = answer
        .headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if retry_after
        .as_deref()
        .is_none_or(|v| v.parse::<u64>().is_err())
    {
        wrong.push(format!("Retry-After {retry_after:?}"));
    }
    if answer.body["error"]["code"] != "database_unavailable" {
        wrong.push("error.code is not database_unavailable".to_owned());
    }
    (!wrong.is_empty()).then(|| format!("{}: {}", wrong.join(", "), answer.body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_answers_503_while_the_database_is_cut_and_processing_resumes_after() {
    let Some(server_url) = postgres_url() else {
        report_postgres_skipped();
        return;
    };
    let started = Instant::now();
    let db = TestDb::create(Backend::Postgres).await;
    let (proxy, through_proxy) = Proxy::for_postgres(&db.url()).await;
    assert!(
        through_proxy.contains(&proxy.addr().to_string()) && through_proxy != db.url(),
        "{through_proxy} does not go through the proxy (server {server_url})"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let client = http_client();
    let mut server = Serve::start("serve", &through_proxy, 4, dir.path());
    server.wait_healthy(&client).await;
    let pool = check_pool(&db).await;
    let events: Arc<Vec<TestEvent>> = Arc::new((0..BEFORE + RACING + DURING).map(event).collect());

    // 1. The database is there: events are acknowledged and processed.
    for event in &events[..BEFORE] {
        let answer = post_event(&client, server.port, &event.body)
            .await
            .expect("deliver");
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    }
    assert!(
        wait_until_idle(&pool, Duration::from_secs(20)).await,
        "runs before the cut did not finish"
    );
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM runs WHERE status = 'completed'"
        )
        .await,
        BEFORE as i64
    );

    // 2. Deliveries in flight while the database is cut.
    let cut_done = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicUsize::new(0));
    let next = Arc::new(AtomicUsize::new(BEFORE));
    let senders: Vec<_> = (0..4)
        .map(|_| {
            let (client, events, cut_done, accepted, next) = (
                client.clone(),
                events.clone(),
                cut_done.clone(),
                accepted.clone(),
                next.clone(),
            );
            let port = server.port;
            tokio::spawn(async move {
                let mut deliveries = Vec::new();
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= BEFORE + RACING {
                        return deliveries;
                    }
                    let after_cut = cut_done.load(Ordering::SeqCst);
                    let answer = post_event(&client, port, &events[n].body)
                        .await
                        .map_err(|e| format!("{e:?}"));
                    if answer.as_ref().is_ok_and(|a| a.status == StatusCode::OK) {
                        accepted.fetch_add(1, Ordering::SeqCst);
                    }
                    deliveries.push(Delivery {
                        event: n,
                        after_cut,
                        answer,
                    });
                }
            })
        })
        .collect();
    let until = Instant::now() + Duration::from_secs(15);
    while accepted.load(Ordering::SeqCst) < CUT_AFTER_ACCEPTED && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let in_flight = unfinished_runs(&pool).await;
    proxy.cut().await;
    cut_done.store(true, Ordering::SeqCst);
    let mut deliveries = Vec::new();
    for sender in senders {
        deliveries.extend(sender.await.expect("sender task"));
    }

    // 3. Deliveries while it is cut for certain, at the same time.
    let during: Vec<_> = (BEFORE + RACING..events.len())
        .map(|n| {
            let (client, events, port) = (client.clone(), events.clone(), server.port);
            tokio::spawn(async move {
                let answer = post_event(&client, port, &events[n].body)
                    .await
                    .map_err(|e| format!("{e:?}"));
                Delivery {
                    event: n,
                    after_cut: true,
                    answer,
                }
            })
        })
        .collect();
    for delivery in during {
        deliveries.push(delivery.await.expect("delivery task"));
    }
    let health = client
        .get(format!("http://127.0.0.1:{}/health", server.port))
        .send()
        .await
        .expect("health while cut");
    let health_status = health.status();
    let health_retry = health.headers().contains_key(RETRY_AFTER);

    // The outage lasts until the lease of every run that was executing has lapsed (the
    // process cannot renew one while cut off), so those runs must be taken over again.
    let lapsed = eventually(Duration::from_secs(20), || async {
        let held = format!(
            "SELECT COUNT(*) FROM runs WHERE status = 'running' AND lease_expires_at >= {}",
            system_now_ms()
        );
        count(&pool, &held).await == 0
    })
    .await;
    assert!(lapsed, "leases still held 20 s into the outage");

    let mut wrong = Vec::new();
    let mut acknowledged_during_cut = Vec::new();
    let mut redeliver = Vec::new();
    let mut acknowledged: Vec<usize> = (0..BEFORE).collect();
    let (mut ok, mut unavailable) = (0, 0);
    deliveries.sort_by_key(|d| d.event);
    for delivery in &deliveries {
        let id = &events[delivery.event].id;
        match &delivery.answer {
            Ok(answer) if answer.status == StatusCode::OK => {
                ok += 1;
                if delivery.after_cut {
                    acknowledged_during_cut.push(format!("{id}: {}", answer.body));
                }
                acknowledged.push(delivery.event);
            }
            Ok(answer) => {
                if answer.status == StatusCode::SERVICE_UNAVAILABLE {
                    unavailable += 1;
                }
                if let Some(problem) = check_unavailable_answer(answer) {
                    wrong.push(format!("{id}: {problem}"));
                }
                redeliver.push(delivery.event);
            }
            Err(err) => {
                wrong.push(format!("{id}: no answer: {err}"));
                redeliver.push(delivery.event);
            }
        }
    }

    // 4. The database is back: Stripe's retries are acknowledged, without a restart.
    proxy.restore();
    let restored_at = Instant::now();
    let mut extra_tries = 0;
    for &n in &redeliver {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            match post_event(&client, server.port, &events[n].body).await {
                Ok(answer) if answer.status == StatusCode::OK => break,
                other => {
                    assert!(
                        Instant::now() < until,
                        "{} still not acknowledged 10 s after the restore: {other:?}",
                        events[n].id
                    );
                    extra_tries += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        acknowledged.push(n);
    }
    let redelivered_in = restored_at.elapsed();
    let idle = wait_until_idle(&pool, Duration::from_secs(30)).await;
    let recovered_in = restored_at.elapsed();
    let resumed = count(&pool, "SELECT COUNT(*) FROM runs WHERE attempt > 1").await;
    report(&format!(
        "db_faults: {in_flight} runs unfinished at the cut; while cut {ok} deliveries got 200 \
         (before the cut took effect), {unavailable} got 503, /health {health_status}; \
         {} redelivered after the restore in {:.2} s ({extra_tries} extra tries); all runs \
         finished {:.2} s after the restore; {resumed} runs claimed again; total {:.1} s",
        redeliver.len(),
        redelivered_in.as_secs_f64(),
        recovered_in.as_secs_f64(),
        started.elapsed().as_secs_f64(),
    ));
    for problem in &wrong {
        report(&format!("  wrong answer while cut: {problem}"));
    }

    assert!(
        wrong.is_empty(),
        "while the database was cut, deliveries must get 503 + Retry-After + \
         database_unavailable: {wrong:#?}"
    );
    assert!(
        acknowledged_during_cut.is_empty(),
        "acknowledged with 200 while the database was cut: {acknowledged_during_cut:?}"
    );
    assert!(
        unavailable >= DURING,
        "only {unavailable} deliveries were refused"
    );
    assert_eq!(
        health_status,
        StatusCode::SERVICE_UNAVAILABLE,
        "/health while cut"
    );
    assert!(health_retry, "/health while cut has no Retry-After");
    assert!(
        idle,
        "{} runs still unfinished 30 s after the restore",
        unfinished_runs(&pool).await
    );
    server.wait_healthy(&client).await;
    acknowledged.sort_unstable();
    acknowledged.dedup();
    assert_eq!(
        acknowledged.len(),
        events.len(),
        "every event acknowledged in the end"
    );
    let acknowledged: Vec<&TestEvent> = acknowledged.iter().map(|&n| &events[n]).collect();
    assert_applied_once(&pool, &acknowledged).await;
    pool.close().await;
}
