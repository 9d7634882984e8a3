//! Flow control: keyed concurrency, throttle, idempotency keys and step timeouts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use paysteps::testing::engine::{Event, Function, StepError, Trigger, WaitFor};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::common::{Backend, Setup, TestApp, eventually, send};

crate::on_both_backends!(
    keyed_concurrency_never_exceeds_its_limit_under_a_burst,
    a_concurrency_of_one_per_key_runs_each_keys_events_in_order,
    a_throttle_spreads_starts_and_drops_none,
    an_idempotency_key_starts_one_run_per_day,
    a_step_past_its_timeout_fails_and_is_retried,
    the_open_runs_gauge_counts_pending_and_waiting_runs,
);

async fn runs_of(app: &TestApp, function: &str) -> Vec<Value> {
    let (_, body) = app
        .get(&format!("/api/v1/runs?function={function}&limit=500"))
        .await;
    body["runs"].as_array().cloned().unwrap_or_default()
}

async fn all_completed(app: &TestApp, function: &str, n: usize) -> bool {
    let runs = runs_of(app, function).await;
    runs.len() == n && runs.iter().all(|r| r["status"] == "completed")
}

#[derive(Default)]
struct InFlight {
    now: HashMap<String, u32>,
    peak: HashMap<String, u32>,
    total: u32,
    peak_total: u32,
}

async fn keyed_concurrency_never_exceeds_its_limit_under_a_burst(backend: Backend) {
    let seen = Arc::new(Mutex::new(InFlight::default()));
    // The most runs seen in flight at once, across customers.
    let (peak, _) = watch::channel(0u32);
    let peak = Arc::new(peak);
    // Until then, a run stays in flight until runs of more than one customer were in
    // flight together, so that a limit per function instead of per key shows.
    let together_until = tokio::time::Instant::now() + Duration::from_secs(10);
    let (s, p) = (seen.clone(), peak.clone());
    let function = Function::new("per-customer", Trigger::event("test/charge"), move |ctx| {
        let (s, p) = (s.clone(), p.clone());
        async move {
            let customer = ctx.event.data["customer"].as_str().unwrap_or("").to_owned();
            ctx.step
                .run("charge", || async move {
                    {
                        let mut f = s.lock().unwrap();
                        let n = f.now.entry(customer.clone()).or_default();
                        *n += 1;
                        let n = *n;
                        let peak = f.peak.entry(customer.clone()).or_default();
                        *peak = (*peak).max(n);
                        f.total += 1;
                        f.peak_total = f.peak_total.max(f.total);
                        p.send_replace(f.peak_total);
                    }
                    let mut peak = p.subscribe();
                    let _ =
                        tokio::time::timeout_at(together_until, peak.wait_for(|n| *n > 2)).await;
                    // Work that takes a while, leaving time for a start over the limit.
                    tokio::time::sleep(Duration::from_millis(15)).await;
                    let mut f = s.lock().unwrap();
                    *f.now.entry(customer).or_default() -= 1;
                    f.total -= 1;
                    Ok(())
                })
                .await
        }
    })
    .concurrency_per("data.customer", 2);
    let app = TestApp::start_with(Setup::functions(backend, 16, vec![function])).await;
    for i in 0..30 {
        let customer = ["cus_a", "cus_b", "cus_c"][i % 3];
        send(&app.engine, "test/charge", json!({ "customer": customer })).await;
    }
    app.engine.start();
    assert!(
        eventually(Duration::from_secs(30), || all_completed(
            &app,
            "per-customer",
            30
        ))
        .await,
        "every run completes: {:?}",
        runs_of(&app, "per-customer").await
    );
    app.engine.shutdown().await;
    {
        let seen = seen.lock().unwrap();
        for customer in ["cus_a", "cus_b", "cus_c"] {
            assert!(
                seen.peak[customer] <= 2,
                "{customer} had {} runs at once",
                seen.peak[customer]
            );
        }
        assert!(
            seen.peak_total > 2,
            "the limit is per customer, not per function: peak {}",
            seen.peak_total
        );
    }
    let pending = app
        .count("SELECT COUNT(*) FROM runs WHERE status = 'pending'")
        .await;
    assert_eq!(pending, 0);
    let active = app
        .count("SELECT CAST(COALESCE(SUM(active), 0) AS BIGINT) FROM concurrency_slots")
        .await;
    assert_eq!(active, 0, "every slot is given back");
}

async fn a_concurrency_of_one_per_key_runs_each_keys_events_in_order(backend: Backend) {
    let order = Arc::new(Mutex::new(Vec::<(String, i64)>::new()));
    let o = order.clone();
    let function = Function::new("serial", Trigger::event("test/serial"), move |ctx| {
        let o = o.clone();
        async move {
            let customer = ctx.event.data["customer"].as_str().unwrap_or("").to_owned();
            let seq = ctx.event.data["seq"].as_i64().unwrap_or(-1);
            // Later events take less time, so only serialization keeps them in order.
            let pause = Duration::from_millis(4 * (12 - seq.clamp(0, 12)) as u64);
            ctx.step
                .run("first", || async move {
                    tokio::time::sleep(pause).await;
                    Ok(())
                })
                .await?;
            ctx.step
                .run("record", || async move {
                    o.lock().unwrap().push((customer, seq));
                    Ok(())
                })
                .await
        }
    })
    .concurrency_per("data.customer", 1);
    let app = TestApp::start_with(Setup::functions(backend, 8, vec![function])).await;
    app.engine.start();
    for seq in 0..12 {
        let customer = if seq % 2 == 0 { "cus_x" } else { "cus_y" };
        send(
            &app.engine,
            "test/serial",
            json!({ "customer": customer, "seq": seq }),
        )
        .await;
    }
    assert!(
        eventually(Duration::from_secs(30), || all_completed(
            &app, "serial", 12
        ))
        .await
    );
    app.engine.shutdown().await;
    let order = order.lock().unwrap();
    for customer in ["cus_x", "cus_y"] {
        let seqs: Vec<i64> = order
            .iter()
            .filter(|(c, _)| c == customer)
            .map(|(_, s)| *s)
            .collect();
        let mut sorted = seqs.clone();
        sorted.sort_unstable();
        assert_eq!(seqs, sorted, "{customer}'s events ran in arrival order");
        assert_eq!(seqs.len(), 6);
    }
}

async fn a_throttle_spreads_starts_and_drops_none(backend: Backend) {
    let function = Function::new(
        "throttled",
        Trigger::event("test/throttled"),
        |ctx| async move { ctx.step.run("work", || async { Ok(()) }).await },
    )
    .throttle_per("data.account", 2, Duration::from_secs(1));
    let app = TestApp::start_with(Setup::functions(backend, 4, vec![function])).await;
    let t0 = app.clock.now_ms();
    for _ in 0..5 {
        send(&app.engine, "test/throttled", json!({ "account": "a" })).await;
    }
    send(&app.engine, "test/throttled", json!({ "account": "b" })).await;
    app.engine.run_until_idle().await.expect("run");
    let started_now = runs_of(&app, "throttled")
        .await
        .iter()
        .filter(|r| r["status"] == "completed")
        .count();
    assert_eq!(started_now, 2, "one run of each account starts at once");
    app.settle().await;
    let runs = runs_of(&app, "throttled").await;
    assert_eq!(runs.len(), 6, "none dropped");
    let mut starts: Vec<i64> = runs
        .iter()
        .map(|r| r["started_at"].as_i64().expect("started") - t0)
        .collect();
    starts.sort_unstable();
    assert_eq!(starts, vec![0, 0, 500, 1_000, 1_500, 2_000]);
}

async fn an_idempotency_key_starts_one_run_per_day(backend: Backend) {
    let function = Function::new(
        "once-per-order",
        Trigger::event("test/order"),
        |ctx| async move { ctx.step.run("work", || async { Ok(()) }).await },
    )
    .idempotency("data.order_id");
    let app = TestApp::start_with(Setup::functions(backend, 4, vec![function])).await;
    assert_eq!(
        send(&app.engine, "test/order", json!({"order_id": 1}))
            .await
            .len(),
        1
    );
    assert!(
        send(&app.engine, "test/order", json!({"order_id": 1}))
            .await
            .is_empty(),
        "the same key within 24 h starts nothing"
    );
    assert_eq!(
        send(&app.engine, "test/order", json!({"order_id": 2}))
            .await
            .len(),
        1
    );
    app.clock.advance(Duration::from_secs(24 * 60 * 60 + 1));
    assert_eq!(
        send(&app.engine, "test/order", json!({"order_id": 1}))
            .await
            .len(),
        1,
        "the key holds for a day only"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM events WHERE name = 'test/order'")
            .await,
        4
    );
}

async fn a_step_past_its_timeout_fails_and_is_retried(backend: Backend) {
    let attempts = Arc::new(AtomicU32::new(0));
    let a = attempts.clone();
    let function = Function::new("slow", Trigger::event("test/slow"), move |ctx| {
        let a = a.clone();
        async move {
            ctx.step
                .run("call", || async move {
                    if a.fetch_add(1, Ordering::SeqCst) == 0 {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
                    Ok::<_, StepError>("answered".to_owned())
                })
                .await
        }
    })
    .step_timeout(Duration::from_millis(100));
    let app = TestApp::start_with(Setup::functions(backend, 4, vec![function])).await;
    let run_id = send(&app.engine, "test/slow", json!({})).await.remove(0);
    app.engine.run_until_idle().await.expect("run");
    let run = app.run(&run_id).await;
    assert_eq!(run["status"], "queued", "a retry is scheduled: {run}");
    assert!(
        run["steps"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("timed out after 100 ms")),
        "{run}"
    );
    app.settle().await;
    let run = app.run(&run_id).await;
    assert_eq!(run["status"], "completed");
    assert_eq!(run["output"], "answered");
    assert_eq!(run["steps"][0]["attempts"], 2);
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
}

async fn the_open_runs_gauge_counts_pending_and_waiting_runs(backend: Backend) {
    // One run at a time: the first waits for an event and keeps its slot, so the
    // second stays pending behind it.
    let function = Function::new(
        "one-at-a-time",
        Trigger::event("test/order"),
        |ctx| async move {
            let paid: Option<Event> = ctx
                .step
                .wait_for_event(
                    "wait-paid",
                    WaitFor::event("test/paid").timeout(Duration::from_secs(3600)),
                )
                .await?;
            Ok(paid.is_some())
        },
    )
    .concurrency(1);
    let app = TestApp::start_with(Setup::functions(backend, 4, vec![function])).await;
    let first = send(&app.engine, "test/order", json!({})).await.remove(0);
    app.engine.run_until_idle().await.expect("run");
    let second = send(&app.engine, "test/order", json!({})).await.remove(0);
    app.engine.run_until_idle().await.expect("run");
    assert_eq!(app.run(&first).await["status"], "waiting");
    assert_eq!(app.run(&second).await["status"], "pending");

    let text = app.metrics().await;
    for (status, n) in [
        ("pending", 1),
        ("waiting", 1),
        ("queued", 0),
        ("running", 0),
    ] {
        assert!(
            text.contains(&format!("paysteps_runs_open{{status=\"{status}\"}} {n}")),
            "{status} {n}: {text}"
        );
    }
}
