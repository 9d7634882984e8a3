//! Step tools beyond run and sleep: waiting for events, sending events, invoking other
//! functions, cancellation by event, and steps run in parallel.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use paysteps::testing::engine::{Event, EventInput, Function, StepError, Trigger, WaitFor};
use serde_json::{Value, json};
use tokio::sync::{Barrier, Notify};

use crate::common::{Backend, Setup, TestApp, eventually, send};

crate::on_both_backends!(
    wait_for_event_resumes_on_the_matching_event_only,
    wait_for_event_returns_none_at_its_timeout,
    wait_for_event_matches_fields_of_events_of_different_shapes,
    send_event_fans_out_once_however_often_the_run_retries,
    invoke_returns_the_invoked_runs_output_or_its_error,
    cancel_on_cancels_a_sleeping_run_and_stops_a_running_one_at_its_next_step,
    parallel_steps_run_at_once_and_are_memoized_separately,
);

type Counter = Arc<AtomicU32>;

fn counter() -> Counter {
    Arc::new(AtomicU32::new(0))
}

fn waiting_for_payment() -> Function {
    Function::new(
        "await-payment",
        Trigger::event("app/order.placed"),
        |ctx| async move {
            let paid: Option<Event> = ctx
                .step
                .wait_for_event(
                    "wait-paid",
                    WaitFor::event("app/order.paid")
                        .matching("data.order_id")
                        .timeout(Duration::from_secs(3600)),
                )
                .await?;
            Ok(paid.map(|e| e.data))
        },
    )
}

async fn wait_for_event_resumes_on_the_matching_event_only(backend: Backend) {
    let app = TestApp::start_with(Setup::functions(backend, 4, vec![waiting_for_payment()])).await;
    let run_id = send(&app.engine, "app/order.placed", json!({"order_id": 7}))
        .await
        .remove(0);
    app.engine.run_until_idle().await.expect("run");
    assert_eq!(app.run(&run_id).await["status"], "waiting");

    send(
        &app.engine,
        "app/order.paid",
        json!({"order_id": 8, "note": "other"}),
    )
    .await;
    send(&app.engine, "app/order.shipped", json!({"order_id": 7})).await;
    app.engine.run_until_idle().await.expect("run");
    assert_eq!(
        app.run(&run_id).await["status"],
        "waiting",
        "another order's payment or another event does not match"
    );

    send(
        &app.engine,
        "app/order.paid",
        json!({"order_id": 7, "note": "this one"}),
    )
    .await;
    app.engine.run_until_idle().await.expect("run");
    let run = app.run(&run_id).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["output"], json!({"order_id": 7, "note": "this one"}));
    assert_eq!(run["steps"][0]["kind"], "wait");
    assert_eq!(app.count("SELECT COUNT(*) FROM listeners").await, 0);
}

async fn wait_for_event_returns_none_at_its_timeout(backend: Backend) {
    let app = TestApp::start_with(Setup::functions(backend, 4, vec![waiting_for_payment()])).await;
    let run_id = send(&app.engine, "app/order.placed", json!({"order_id": 9}))
        .await
        .remove(0);
    app.engine.run_until_idle().await.expect("run");
    app.clock.advance(Duration::from_secs(3599));
    app.engine.run_until_idle().await.expect("run");
    assert_eq!(app.run(&run_id).await["status"], "waiting", "not yet");
    app.clock.advance(Duration::from_secs(1));
    app.engine.run_until_idle().await.expect("run");
    let run = app.run(&run_id).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["output"], Value::Null);
    // The payment after the timeout changes nothing.
    send(&app.engine, "app/order.paid", json!({"order_id": 9})).await;
    app.engine.run_until_idle().await.expect("run");
    assert_eq!(app.run(&run_id).await["output"], Value::Null);
    assert_eq!(app.count("SELECT COUNT(*) FROM listeners").await, 0);
}

async fn wait_for_event_matches_fields_of_events_of_different_shapes(backend: Backend) {
    let function = Function::new(
        "receipt",
        Trigger::event("stripe/invoice.paid"),
        |ctx| async move {
            let opened = ctx
                .step
                .wait_for_event(
                    "wait-for-open",
                    WaitFor::event("app/receipt.opened")
                        .matching_paths("data.object.id", "data.invoice")
                        .timeout(Duration::from_secs(3 * 86_400)),
                )
                .await?;
            Ok(opened.is_some())
        },
    );
    let app = TestApp::start_with(Setup::functions(backend, 4, vec![function])).await;
    let invoice = |id: &str| json!({"id": format!("evt_{id}"), "type": "invoice.paid", "data": {"object": {"id": id}}});
    let opened = send(&app.engine, "stripe/invoice.paid", invoice("in_1"))
        .await
        .remove(0);
    let ignored = send(&app.engine, "stripe/invoice.paid", invoice("in_2"))
        .await
        .remove(0);
    app.engine.run_until_idle().await.expect("run");
    send(
        &app.engine,
        "app/receipt.opened",
        json!({"invoice": "in_1"}),
    )
    .await;
    app.engine.run_until_idle().await.expect("run");
    assert_eq!(app.run(&opened).await["output"], true);
    assert_eq!(app.run(&ignored).await["status"], "waiting");
    app.settle().await;
    assert_eq!(
        app.run(&ignored).await["output"],
        false,
        "three days pass unopened"
    );
}

async fn send_event_fans_out_once_however_often_the_run_retries(backend: Backend) {
    let (flaky, received) = (counter(), counter());
    let f = flaky.clone();
    let sender = Function::new("fan-out", Trigger::event("app/batch"), move |ctx| {
        let f = f.clone();
        async move {
            let events = (0..3)
                .map(|i| EventInput::new("app/item", &json!({ "i": i })))
                .collect();
            let ids = ctx.step.send_event("send-items", events).await?;
            ctx.step
                .run("flaky", || async move {
                    if f.fetch_add(1, Ordering::SeqCst) < 2 {
                        Err(StepError::retriable("not yet"))
                    } else {
                        Ok(())
                    }
                })
                .await?;
            Ok(ids)
        }
    });
    let r = received.clone();
    let receiver = Function::new("item", Trigger::event("app/item"), move |ctx| {
        let r = r.clone();
        async move {
            ctx.step
                .run("count", || async move {
                    r.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                })
                .await
        }
    });
    let app = TestApp::start_with(Setup::functions(backend, 4, vec![sender, receiver])).await;
    let run_id = send(&app.engine, "app/batch", json!({})).await.remove(0);
    app.settle().await;
    let run = app.run(&run_id).await;
    assert_eq!(run["status"], "completed");
    assert_eq!(flaky.load(Ordering::SeqCst), 3, "the run was retried twice");
    assert_eq!(run["output"].as_array().map(Vec::len), Some(3));
    assert_eq!(received.load(Ordering::SeqCst), 3, "each item handled once");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM events WHERE name = 'app/item'")
            .await,
        3
    );
}

async fn invoke_returns_the_invoked_runs_output_or_its_error(backend: Backend) {
    let doubler = Function::new("double", Trigger::Internal, |ctx| async move {
        let n = ctx.event.data["n"].as_i64().unwrap_or_default();
        ctx.step
            .run("double", || async move {
                if n < 0 {
                    Err(StepError::non_retriable("negative"))
                } else {
                    Ok(n * 2)
                }
            })
            .await
    });
    let caller = Function::new("caller", Trigger::event("app/compute"), |ctx| async move {
        let n = ctx.event.data["n"].clone();
        let result = ctx
            .step
            .invoke(
                "double-it",
                "double",
                &json!({ "n": n }),
                Duration::from_secs(60),
            )
            .await?;
        Ok(match result {
            Ok(value) => json!({ "ok": value }),
            Err(error) => json!({ "error": error }),
        })
    });
    let app = TestApp::start_with(Setup::functions(backend, 4, vec![doubler, caller])).await;
    let ok = send(&app.engine, "app/compute", json!({"n": 21}))
        .await
        .remove(0);
    let failing = send(&app.engine, "app/compute", json!({"n": -1}))
        .await
        .remove(0);
    app.settle().await;
    let run = app.run(&ok).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["output"], json!({"ok": 42}));
    assert_eq!(run["steps"][0]["kind"], "invoke");
    let run = app.run(&failing).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert!(
        run["output"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("negative")),
        "{run}"
    );
    let (_, children) = app.get("/api/v1/runs?function=double").await;
    assert_eq!(children["runs"].as_array().map(Vec::len), Some(2));
}

async fn cancel_on_cancels_a_sleeping_run_and_stops_a_running_one_at_its_next_step(
    backend: Backend,
) {
    let (reminded, second) = (counter(), counter());
    let gate = Arc::new(Notify::new());
    let entered = Arc::new(Notify::new());
    let rm = reminded.clone();
    let reminder = Function::new("reminder", Trigger::event("app/signup"), move |ctx| {
        let rm = rm.clone();
        async move {
            ctx.step.sleep("a-day", Duration::from_secs(86_400)).await?;
            ctx.step
                .run("remind", || async move {
                    rm.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                })
                .await
        }
    })
    .cancel_on("app/unsubscribed", "data.user");
    let (g, e, s) = (gate.clone(), entered.clone(), second.clone());
    let long = Function::new("long", Trigger::event("app/import"), move |ctx| {
        let (g, e, s) = (g.clone(), e.clone(), s.clone());
        async move {
            ctx.step
                .run("first", || async move {
                    e.notify_one();
                    g.notified().await;
                    Ok(())
                })
                .await?;
            ctx.step
                .run("second", || async move {
                    s.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                })
                .await
        }
    })
    .cancel_on("app/import.cancelled", "data.import");
    let app = TestApp::start_with(Setup::functions(backend, 4, vec![reminder, long])).await;

    let ada = send(&app.engine, "app/signup", json!({"user": "ada"}))
        .await
        .remove(0);
    let bob = send(&app.engine, "app/signup", json!({"user": "bob"}))
        .await
        .remove(0);
    app.engine.run_until_idle().await.expect("run");
    send(&app.engine, "app/unsubscribed", json!({"user": "ada"})).await;
    app.settle().await;
    assert_eq!(app.run(&ada).await["status"], "cancelled");
    assert_eq!(app.run(&bob).await["status"], "completed");
    assert_eq!(reminded.load(Ordering::SeqCst), 1, "only bob was reminded");

    app.engine.start();
    let import = send(&app.engine, "app/import", json!({"import": "imp_1"}))
        .await
        .remove(0);
    tokio::time::timeout(Duration::from_secs(10), entered.notified())
        .await
        .expect("the first step starts");
    send(
        &app.engine,
        "app/import.cancelled",
        json!({"import": "imp_1"}),
    )
    .await;
    gate.notify_one();
    assert!(
        eventually(Duration::from_secs(10), || async {
            app.count(&format!(
                "SELECT COUNT(*) FROM runs WHERE id = '{import}' AND status = 'cancelled'"
            ))
            .await
                == 1
        })
        .await
    );
    // The execution reaches its next step boundary and ends, the engine still running.
    crate::common::until_idle(&app.engine).await;
    app.engine.shutdown().await;
    assert_eq!(
        second.load(Ordering::SeqCst),
        0,
        "no step after the cancel runs"
    );
    assert_eq!(app.run(&import).await["status"], "cancelled");
}

async fn parallel_steps_run_at_once_and_are_memoized_separately(backend: Backend) {
    let (left, right) = (counter(), counter());
    let barrier = Arc::new(Barrier::new(2));
    let (l, r, b) = (left.clone(), right.clone(), barrier.clone());
    let function = Function::new("parallel", Trigger::event("app/parallel"), move |ctx| {
        let (l, r, b) = (l.clone(), r.clone(), b.clone());
        async move {
            let (b1, b2) = (b.clone(), b.clone());
            let (a, c) = futures::join!(
                ctx.step.run("left", || async move {
                    if l.fetch_add(1, Ordering::SeqCst) == 0 {
                        b1.wait().await;
                    }
                    Ok(1)
                }),
                ctx.step.run("right", || async move {
                    let n = r.fetch_add(1, Ordering::SeqCst);
                    if n == 0 {
                        b2.wait().await;
                        return Err(StepError::retriable("first try fails"));
                    }
                    Ok(2)
                }),
            );
            Ok(a? + c?)
        }
    });
    let app = TestApp::start_with(Setup::functions(backend, 4, vec![function])).await;
    let run_id = send(&app.engine, "app/parallel", json!({})).await.remove(0);
    tokio::time::timeout(Duration::from_secs(20), app.settle())
        .await
        .expect("both steps reach the barrier together, so they run at once");
    let run = app.run(&run_id).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["output"], 3);
    assert_eq!(
        left.load(Ordering::SeqCst),
        1,
        "the completed step is not run again"
    );
    assert_eq!(right.load(Ordering::SeqCst), 2);
}
