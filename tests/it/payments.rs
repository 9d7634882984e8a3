//! The built-in Stripe functions, end to end: signed delivery → runs → business tables.

use axum::http::StatusCode;
use paysteps::testing::store::Write;
use paysteps::testing::stripe::fixtures::Overrides;
use serde_json::Value;

use crate::common::{Backend, TestApp, TestDb, first_run};

crate::on_both_backends!(
    checkout_completed_makes_user_123_an_active_subscriber,
    one_time_checkout_records_the_payment_for_the_metadata_user,
    subscription_deleted_cancels_the_subscription,
    older_subscription_event_delivered_late_does_not_regress_state,
    a_flaky_step_is_retried_and_earlier_steps_run_exactly_once,
    exhausted_retries_fail_the_run_record_the_failure_and_run_the_handler_once,
    payment_failure_records_the_decline_once_even_when_replayed_by_stripe,
    invoice_events_move_the_subscription_and_log_failures,
    a_customer_link_gives_that_customers_earlier_rows_their_user,
    a_checkout_without_a_user_is_kept_and_listed_until_linked,
);

fn at(created: i64) -> Overrides {
    Overrides {
        created: Some(created),
        ..Overrides::default()
    }
}

async fn subscription(app: &TestApp, user: &str) -> Value {
    let (status, body) = app.get(&format!("/api/v1/users/{user}/subscription")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn checkout_completed_makes_user_123_an_active_subscriber(backend: Backend) {
    let app = TestApp::start(backend).await;
    assert_eq!(subscription(&app, "user_123").await["subscribed"], false);

    let answer = app
        .deliver_fixture("checkout.session.completed", Overrides::default())
        .await;
    let run_id = first_run(&answer);
    app.settle().await;

    let run = app.run(&run_id).await;
    assert_eq!(run["status"], "completed", "{run}");
    let names: Vec<_> = run["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["name"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(names.first().map(String::as_str), Some("validate-session"));
    assert_eq!(names.last().map(String::as_str), Some("log-success"));

    let body = subscription(&app, "user_123").await;
    assert_eq!(body["subscribed"], true, "{body}");
    assert_eq!(body["subscription"]["id"], "sub_1Pgc6rB7WZ01zgkWNy0Cn5nw");
    assert_eq!(body["subscription"]["status"], "active");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM customers WHERE id = 'cus_QXg1o8vcGmoR32' AND user_id = 'user_123'")
            .await,
        1
    );
}

async fn one_time_checkout_records_the_payment_for_the_metadata_user(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.deliver_fixture("checkout.session.completed.payment", Overrides::default())
        .await;
    app.settle().await;
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM payments WHERE id = 'pi_1PgafyB7WZ01zgkWSjxsAJo3' \
             AND user_id = 'user_123' AND status = 'succeeded' AND amount = 1099"
        )
        .await,
        1
    );
}

async fn subscription_deleted_cancels_the_subscription(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.deliver_fixture("customer.subscription.updated", at(1_790_848_808))
        .await;
    app.settle().await;
    assert_eq!(subscription(&app, "user_123").await["subscribed"], true);

    app.deliver_fixture("customer.subscription.deleted", at(1_794_740_408))
        .await;
    app.settle().await;
    let body = subscription(&app, "user_123").await;
    assert_eq!(body["subscribed"], false, "{body}");
    assert_eq!(body["subscription"]["status"], "canceled");
}

async fn older_subscription_event_delivered_late_does_not_regress_state(backend: Backend) {
    let app = TestApp::start(backend).await;
    // Newer: the subscription is canceled. Older (delivered after it): still active.
    app.deliver_fixture("customer.subscription.deleted", at(2_000))
        .await;
    app.settle().await;
    let answer = app
        .deliver_fixture("customer.subscription.updated", at(1_000))
        .await;
    app.settle().await;
    assert_eq!(app.run(&first_run(&answer)).await["status"], "completed");
    let body = subscription(&app, "user_123").await;
    assert_eq!(body["subscription"]["status"], "canceled", "{body}");

    // A checkout from before the cancellation must not reactivate it either.
    app.deliver_fixture("checkout.session.completed", at(1_500))
        .await;
    app.settle().await;
    assert_eq!(
        subscription(&app, "user_123").await["subscription"]["status"],
        "canceled"
    );
}

async fn a_flaky_step_is_retried_and_earlier_steps_run_exactly_once(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.faults.fail("activate-subscription", 2);
    let answer = app
        .deliver_fixture("checkout.session.completed", Overrides::default())
        .await;
    app.settle().await;
    let run = app.run(&first_run(&answer)).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(app.faults.attempts("validate-session"), 1);
    assert_eq!(app.faults.attempts("link-customer"), 1);
    assert_eq!(app.faults.attempts("activate-subscription"), 3);
    let step = run["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["name"] == "activate-subscription")
        .expect("step")
        .clone();
    assert_eq!(step["attempts"], 3);
    assert_eq!(step["status"], "completed");
    assert_eq!(app.count("SELECT COUNT(*) FROM customers").await, 1);
    assert_eq!(subscription(&app, "user_123").await["subscribed"], true);
}

async fn exhausted_retries_fail_the_run_record_the_failure_and_run_the_handler_once(
    backend: Backend,
) {
    let app = TestApp::start(backend).await;
    let answer = app
        .deliver_fixture("payment_intent.payment_failed", Overrides::default())
        .await;
    let run_id = first_run(&answer);
    app.faults.fail_always("record-payment-failure");
    app.settle().await;

    let run = app.run(&run_id).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert!(
        run["error"]
            .as_str()
            .is_some_and(|e| e.contains("record-payment-failure")),
        "{run}"
    );
    assert_eq!(
        app.faults.attempts("record-payment-failure"),
        4,
        "3 retries = 4 attempts"
    );

    let (_, handlers) = app
        .get("/api/v1/runs?function=payment-intent-payment-failed.on_failure")
        .await;
    let handlers = handlers["runs"].as_array().cloned().unwrap_or_default();
    assert_eq!(handlers.len(), 1, "the failure handler must run once");
    assert_eq!(handlers[0]["status"], "completed");
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM payment_failures WHERE kind = 'processing' AND message LIKE '%record-payment-failure%'"
        )
        .await,
        1
    );
}

async fn payment_failure_records_the_decline_once_even_when_replayed_by_stripe(backend: Backend) {
    let app = TestApp::start(backend).await;
    let event = crate::common::fixture_event("payment_intent.payment_failed", Overrides::default());
    app.deliver(&event).await;
    app.deliver(&event).await;
    app.settle().await;
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM payment_failures WHERE kind = 'payment' \
             AND code = 'card_declined' AND decline_code = 'insufficient_funds'"
        )
        .await,
        1
    );
}

async fn invoice_events_move_the_subscription_and_log_failures(backend: Backend) {
    let app = TestApp::start(backend).await;
    app.deliver_fixture("checkout.session.completed", at(1_790_848_810))
        .await;
    app.deliver_fixture("invoice.payment_failed", at(1_793_530_809))
        .await;
    app.settle().await;
    let body = subscription(&app, "user_123").await;
    assert_eq!(body["subscription"]["status"], "past_due", "{body}");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM payment_failures WHERE kind = 'invoice'")
            .await,
        1
    );
    app.deliver_fixture("invoice.paid", at(1_793_600_000)).await;
    app.settle().await;
    let body = subscription(&app, "user_123").await;
    assert_eq!(body["subscription"]["status"], "active", "{body}");
}

/// Rows written before the customer was linked to a user (an invoice or a payment that
/// arrived first) get the user when the link is made; other customers' rows and rows
/// that already name a user are left alone.
async fn a_customer_link_gives_that_customers_earlier_rows_their_user(backend: Backend) {
    use paysteps::testing::payments::ordering::{Source, Version};
    use paysteps::testing::payments::repo::{
        CustomerLink, PaymentRecord, SubscriptionView, link_customer, upsert_payment,
        write_subscription,
    };
    use paysteps::testing::stripe::objects::Terms;

    let db = TestDb::create(backend).await;
    let store = db.store().await;
    let payment = |id: &str, user: Option<&str>, customer: &str| PaymentRecord {
        id: id.into(),
        user_id: user.map(Into::into),
        customer_id: Some(customer.into()),
        amount: Some(1_000),
        currency: Some("eur".into()),
        status: "succeeded".into(),
        checkout_session_id: None,
        event_created: 10,
        charge_id: None,
        succeeded_at: Some(10),
        charge_amount_refunded: None,
        livemode: false,
        account: None,
    };
    let payments = [
        payment("pi_unlinked", None, "cus_1"),
        payment("pi_other_customer", None, "cus_2"),
        payment("pi_own_user", Some("user_9"), "cus_1"),
    ];
    let subscription = SubscriptionView {
        id: "sub_1".into(),
        user_id: None,
        customer_id: Some("cus_1".into()),
        version: Version {
            source: Source::Event,
            created: 10,
            rank: 2,
            event_id: "evt_1".into(),
            status: "active".into(),
            previous_status: None,
        },
        terms: Terms::default(),
        api_version: None,
        livemode: false,
        account: None,
    };
    let link = CustomerLink {
        customer_id: "cus_1".into(),
        user_id: "user_1".into(),
        email: Some("a@example.com".into()),
        event_created: 20,
    };
    store
        .write(Write::isolated(), move |tx| {
            Box::pin(async move {
                write_subscription(tx, &subscription, 1).await?;
                for p in &payments {
                    upsert_payment(tx, p, 1).await?;
                }
                link_customer(tx, &link, 2).await
            })
        })
        .await
        .expect("write");
    let user_of = |sql: &'static str| {
        let store = store.clone();
        async move {
            let (user,): (Option<String>,) = store.fetch_one(sql, vec![]).await.expect("read");
            user
        }
    };
    assert_eq!(
        user_of("SELECT user_id FROM subscriptions WHERE id = 'sub_1'")
            .await
            .as_deref(),
        Some("user_1")
    );
    assert_eq!(
        user_of("SELECT user_id FROM payments WHERE id = 'pi_unlinked'")
            .await
            .as_deref(),
        Some("user_1")
    );
    assert_eq!(
        user_of("SELECT user_id FROM payments WHERE id = 'pi_own_user'")
            .await
            .as_deref(),
        Some("user_9")
    );
    assert_eq!(
        user_of("SELECT user_id FROM payments WHERE id = 'pi_other_customer'").await,
        None
    );
    assert_eq!(
        user_of("SELECT user_id FROM customers WHERE id = 'cus_1'")
            .await
            .as_deref(),
        Some("user_1")
    );
    store.close().await;
}

/// A Payment Link session names no user: the run completes, the payment is stored
/// unlinked and the billing summary lists its customer; once an event names the
/// customer's user, the payment is theirs and the list is empty.
async fn a_checkout_without_a_user_is_kept_and_listed_until_linked(backend: Backend) {
    let app = TestApp::start(backend).await;
    let mut event = crate::common::fixture_event(
        "checkout.session.completed.payment",
        Overrides {
            customer: Some("cus_link_later".into()),
            ..Overrides::default()
        },
    );
    let session = &mut event["data"]["object"];
    session["client_reference_id"] = Value::Null;
    session["metadata"] = serde_json::json!({});
    let (status, answer) = app.deliver(&event).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let run_id = first_run(&answer);
    app.settle().await;
    assert_eq!(app.run(&run_id).await["status"], "completed");

    let (_, billing) = app.get("/api/v1/billing").await;
    let unlinked = &billing["unlinked_customers"];
    assert_eq!(unlinked[0]["customer_id"], "cus_link_later", "{billing}");
    assert_eq!(unlinked[0]["payments"], 1, "{billing}");

    let mut named = crate::common::fixture_event(
        "checkout.session.completed.payment",
        Overrides {
            customer: Some("cus_link_later".into()),
            user: Some("user_later".into()),
            ..Overrides::default()
        },
    );
    named["data"]["object"]["id"] = "cs_test_named_later".into();
    app.deliver(&named).await;
    app.settle().await;
    let (_, billing) = app.get("/api/v1/billing").await;
    assert_eq!(
        billing["unlinked_customers"],
        serde_json::json!([]),
        "{billing}"
    );
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM payments WHERE customer_id = 'cus_link_later' \
             AND user_id = 'user_later'"
        )
        .await,
        1
    );
}
