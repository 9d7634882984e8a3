//! Money as Stripe counts it, end to end: refunds, disputes and failed charge attempts
//! delivered signed, in every order and twice, and the state they leave.

use axum::http::StatusCode;
use paysteps::args;
use paysteps::testing::stripe::fixtures::Overrides;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::common::{Backend, TestApp, fixture_event};

crate::on_both_backends!(
    a_full_refund_counts_once_in_every_order_and_before_the_payment,
    partial_refunds_add_up_in_every_order,
    a_refund_that_fails_gives_the_amount_back_in_every_order,
    a_lost_dispute_keeps_the_withdrawal_in_every_order,
    a_won_dispute_gives_the_money_back_and_stays_won,
    a_failed_renewal_is_one_failure_whichever_report_comes_first,
    an_ach_failure_is_one_failure_and_other_customers_stay_apart,
    shuffled_and_duplicated_deliveries_end_every_payment_on_its_newest_state,
    unreadable_refunds_and_disputes_fail_at_once_and_change_nothing,
    every_fixture_runs_to_completion,
);

const PI: &str = "pi_1PgafyB7WZ01zgkWSjxsAJo3";
const DISPUTED_PI: &str = "pi_3Pgc6tB7WZ01zgkW1j59pjom";
const DISPUTE: &str = "dp_1Pgc71B7WZ01zgkWMevJiAUx";
const REFUND: &str = "re_1Pgc72B7WZ01zgkWqPvrRrPE";

/// Every order of `n` items.
pub fn orders(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![vec![]];
    }
    let mut all = Vec::new();
    for rest in orders(n - 1) {
        for at in 0..=rest.len() {
            let mut order = rest.clone();
            order.insert(at, n - 1);
            all.push(order);
        }
    }
    all
}

/// Prefixes of the Stripe ids one story's events share.
const ID_PREFIXES: [&str; 9] = [
    "pi_", "ch_", "re_", "dp_", "txn_", "in_", "cs_", "cus_", "il_",
];

fn retag(value: &mut Value, tag: &str) {
    match value {
        Value::String(s) if ID_PREFIXES.iter().any(|p| s.starts_with(p)) => {
            *s = format!("{s}_{tag}");
        }
        Value::Array(items) => items.iter_mut().for_each(|v| retag(v, tag)),
        Value::Object(map) => map.values_mut().for_each(|v| retag(v, tag)),
        _ => {}
    }
}

/// Fixture `name` as an event of the story `tag`: the event and every object id it
/// names get the tag, so that stories told in one database stay apart.
pub fn story_event(name: &str, tag: &str) -> Value {
    in_story(&fixture(name), tag)
}

/// `event` as an event of the story `tag`.
fn in_story(event: &Value, tag: &str) -> Value {
    let mut event = event.clone();
    event["id"] = json!(tagged(event["id"].as_str().expect("id"), tag));
    retag(&mut event["data"], tag);
    event
}

pub fn tagged(id: &str, tag: &str) -> String {
    format!("{id}_{tag}")
}

/// Delivers each event, settling after each, and asserts each was accepted.
pub async fn deliver_all(app: &TestApp, events: &[Value]) {
    for event in events {
        let (status, body) = app.deliver(event).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        app.settle().await;
    }
}

/// `(status, amount, amount_refunded, refunds_unattributed, succeeded_at)` of a payment.
type PaymentState = (String, Option<i64>, i64, i64, Option<i64>);

pub async fn payment(app: &TestApp, id: &str) -> Option<PaymentState> {
    app.store()
        .fetch_optional(
            "SELECT status, amount, amount_refunded, refunds_unattributed, succeeded_at \
             FROM payments WHERE id = $1",
            args![id],
        )
        .await
        .expect("payment")
}

/// Each order of `events` told as its own story (tagged `{name}{n}`) in one database;
/// `check` sees each story's tag once all its events are in.
async fn in_every_order<F, Fut>(app: &TestApp, name: &str, events: &[Value], check: F)
where
    F: Fn(String, Vec<usize>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for (n, order) in orders(events.len()).into_iter().enumerate() {
        let tag = format!("{name}{n}");
        let story: Vec<Value> = order.iter().map(|&i| in_story(&events[i], &tag)).collect();
        deliver_all(app, &story).await;
        check(tag, order).await;
    }
}

fn fixture(name: &str) -> Value {
    let mut event = fixture_event(name, Overrides::default());
    event["id"] =
        paysteps::testing::stripe::fixtures::fixture(name).expect("fixture")["id"].clone();
    event
}

/// The charge of the PaymentIntent fixture, refunded: `amount_refunded` as of `created`.
fn charge_refunded(amount_refunded: i64, created: i64, id: &str) -> Value {
    let mut event = fixture("charge.refunded");
    event["id"] = json!(id);
    event["created"] = json!(created);
    event["data"]["object"]["amount_refunded"] = json!(amount_refunded);
    event["data"]["object"]["refunded"] = json!(amount_refunded == 1_099);
    event["data"]["object"]
        .as_object_mut()
        .expect("charge")
        .remove("refunds");
    event
}

fn refund(event_type: &str, id: &str, amount: i64, created: i64, event_created: i64) -> Value {
    let mut event = fixture("refund.created");
    event["id"] = json!(format!("evt_{event_type}_{id}_{event_created}"));
    event["type"] = json!(event_type);
    event["created"] = json!(event_created);
    let object = &mut event["data"]["object"];
    object["id"] = json!(id);
    object["amount"] = json!(amount);
    object["created"] = json!(created);
    if event_type == "refund.failed" {
        object["status"] = json!("failed");
        object["failure_reason"] = json!("expired_or_canceled_card");
    }
    event
}

async fn a_full_refund_counts_once_in_every_order_and_before_the_payment(backend: Backend) {
    let app = TestApp::start(backend).await;
    // The refund, the charge's figure twice (a duplicate delivery), and the payment's
    // own success, in all 24 orders.
    let charge = charge_refunded(1_099, 1_792_487_702, "evt_charge_refunded");
    let events = [
        fixture("refund.created"),
        charge.clone(),
        charge,
        fixture("payment_intent.succeeded"),
    ];
    in_every_order(&app, "full", &events, |tag, order| {
        let app = &app;
        async move {
            let state = payment(app, &tagged(PI, &tag)).await;
            assert_eq!(
                state,
                Some((
                    "succeeded".into(),
                    Some(1_099),
                    1_099,
                    0,
                    Some(1_791_814_950)
                )),
                "order {order:?}: refunded once; succeeded when the charge was made"
            );
            let refunds = app
                .count(&format!(
                    "SELECT COUNT(*) FROM refunds WHERE id = '{}' AND status = 'succeeded'",
                    tagged(REFUND, &tag)
                ))
                .await;
            assert_eq!(refunds, 1, "order {order:?}");
        }
    })
    .await;
    // The charge event alone, without the refund's: all of it unattributed.
    let mut only = story_event("charge.refunded", "alone");
    only["data"]["object"]
        .as_object_mut()
        .expect("charge")
        .remove("refunds");
    deliver_all(&app, &[only]).await;
    let state = payment(&app, &tagged(PI, "alone")).await.expect("payment");
    assert_eq!((state.2, state.3), (1_099, 1_099));
}

async fn partial_refunds_add_up_in_every_order(backend: Backend) {
    let app = TestApp::start(backend).await;
    let (t1, t2) = (1_792_487_701, 1_792_574_101);
    let events = [
        refund("refund.created", "re_a", 400, t1, t1),
        charge_refunded(400, t1 + 1, "evt_charge_a"),
        refund("refund.created", "re_b", 300, t2, t2),
        charge_refunded(700, t2 + 1, "evt_charge_b"),
    ];
    in_every_order(&app, "partial", &events, |tag, order| {
        let app = &app;
        async move {
            let state = payment(app, &tagged(PI, &tag)).await.expect("payment");
            assert_eq!((state.2, state.3), (700, 0), "order {order:?}");
        }
    })
    .await;
    // Half the story: the newest figure and the first refund. The second refund is in
    // the figure but no event described it yet.
    let half = [events[0].clone(), events[3].clone()];
    in_every_order(&app, "half", &half, |tag, order| {
        let app = &app;
        async move {
            let state = payment(app, &tagged(PI, &tag)).await.expect("payment");
            assert_eq!((state.2, state.3), (700, 300), "order {order:?}");
        }
    })
    .await;
}

async fn a_refund_that_fails_gives_the_amount_back_in_every_order(backend: Backend) {
    let app = TestApp::start(backend).await;
    let t1 = 1_792_487_701;
    let events = [
        fixture("payment_intent.succeeded"),
        fixture("refund.created"),
        charge_refunded(1_099, t1 + 1, "evt_charge_refunded"),
        fixture("refund.failed"),
    ];
    in_every_order(&app, "failed", &events, |tag, order| {
        let app = &app;
        async move {
            let state = payment(app, &tagged(PI, &tag)).await.expect("payment");
            assert_eq!(
                (state.0.as_str(), state.2, state.3),
                ("succeeded", 0, 0),
                "order {order:?}"
            );
            let failed = app
                .count(&format!(
                    "SELECT COUNT(*) FROM refunds WHERE id = '{}' AND status = 'failed' \
                     AND failure_reason = 'expired_or_canceled_card'",
                    tagged(REFUND, &tag)
                ))
                .await;
            assert_eq!(failed, 1, "order {order:?}");
        }
    })
    .await;
}

/// `(status, evidence_due_by, withdrawn)` of a dispute, `withdrawn` being the money its
/// balance transactions took, less what they gave back.
async fn dispute(app: &TestApp, id: &str) -> (String, Option<i64>, i64) {
    let (status, due): (String, Option<i64>) = app
        .store()
        .fetch_one(
            "SELECT status, evidence_due_by FROM disputes WHERE id = $1",
            args![id],
        )
        .await
        .expect("dispute");
    let withdrawn = -app
        .count(&format!(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM dispute_funds WHERE dispute_id = '{id}'"
        ))
        .await;
    (status, due, withdrawn)
}

async fn a_lost_dispute_keeps_the_withdrawal_in_every_order(backend: Backend) {
    let app = TestApp::start(backend).await;
    let events = [
        fixture("charge.dispute.created"),
        fixture("charge.dispute.funds_withdrawn"),
        fixture("charge.dispute.updated"),
        fixture("charge.dispute.closed"),
    ];
    in_every_order(&app, "lost", &events, |tag, order| {
        let app = &app;
        async move {
            assert_eq!(
                dispute(app, &tagged(DISPUTE, &tag)).await,
                ("lost".into(), Some(1_793_750_399), 2_000),
                "order {order:?}: closed is final; the withdrawal counted once"
            );
        }
    })
    .await;
}

async fn a_won_dispute_gives_the_money_back_and_stays_won(backend: Backend) {
    let app = TestApp::start(backend).await;
    let mut closed_won = fixture("charge.dispute.closed");
    let reinstated = fixture("charge.dispute.funds_reinstated");
    closed_won["created"] = json!(reinstated["created"].as_i64().expect("created") + 5);
    closed_won["data"]["object"] = reinstated["data"]["object"].clone();
    let events = [
        fixture("charge.dispute.created"),
        fixture("charge.dispute.funds_withdrawn"),
        reinstated,
        closed_won,
    ];
    in_every_order(&app, "won", &events, |tag, order| {
        let app = &app;
        async move {
            assert_eq!(
                dispute(app, &tagged(DISPUTE, &tag)).await,
                ("won".into(), Some(1_793_750_399), 0),
                "order {order:?}"
            );
        }
    })
    .await;
    // A dispute's payment is the one its PaymentIntent names.
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM disputes WHERE payment_id = '{}'",
            tagged(DISPUTED_PI, "won0")
        ))
        .await,
        1
    );
}

/// Counted failures (one per attempt) and logged reports of the story `tag`.
async fn failures(app: &TestApp, tag: &str) -> (i64, i64) {
    let of_story = format!("customer_id = 'cus_QXg1o8vcGmoR32_{tag}'");
    let counted = app
        .count(&format!(
            "SELECT COUNT(*) FROM payment_failures WHERE {of_story} AND id = attempt"
        ))
        .await;
    let logged = app
        .count(&format!(
            "SELECT COUNT(*) FROM payment_failures WHERE {of_story}"
        ))
        .await;
    (counted, logged)
}

/// The PaymentIntent of the renewal invoice `invoice.payment_failed.json` fails: its
/// charge `charge`, `created` seconds after the invoice's event.
fn renewal_intent_failed(charge: &str, after: i64) -> Value {
    let invoice = fixture("invoice.payment_failed");
    let mut event = fixture("payment_intent.payment_failed");
    event["id"] = json!(format!("evt_renewal_intent_{charge}"));
    event["created"] = json!(invoice["created"].as_i64().expect("created") + after);
    let object = &mut event["data"]["object"];
    object["id"] = json!("pi_3PgZihB7WZ01zgkW0u94c0D1");
    object["amount"] = json!(2_000);
    object["description"] = json!("Subscription update");
    object["latest_charge"] = json!(charge);
    object["last_payment_error"]["charge"] = json!(charge);
    object["metadata"] = json!({});
    event
}

fn version_fixture(version: &str, name: &str) -> Value {
    let path = format!(
        "{}/fixtures/versions/{version}/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
}

async fn a_failed_renewal_is_one_failure_whichever_report_comes_first(backend: Backend) {
    let app = TestApp::start(backend).await;
    // From 2025-03-31.basil neither report names the other: matched by customer, amount
    // and time.
    let current = [
        fixture("invoice.payment_failed"),
        renewal_intent_failed("ch_3PgZihB7WZ01zgkW0lNQgtYk", -1),
    ];
    in_every_order(&app, "basil", &current, |tag, order| {
        let app = &app;
        async move {
            assert_eq!(failures(app, &tag).await, (1, 2), "order {order:?}");
        }
    })
    .await;

    // Before it, the invoice names its charge; a retry two days later is another attempt.
    let old = version_fixture("2022-11-15", "invoice.payment_failed");
    let mut retry = old.clone();
    retry["id"] = json!("evt_invoice_retry");
    retry["created"] = json!(old["created"].as_i64().expect("created") + 2 * 86_400);
    retry["data"]["object"]["charge"] = json!("ch_retry");
    retry["data"]["object"]["attempt_count"] = json!(2);
    let mut retry_intent = renewal_intent_failed("ch_retry", 2 * 86_400 + 1);
    retry_intent["id"] = json!("evt_intent_retry");
    let versioned = [
        old,
        renewal_intent_failed("ch_3PgZihB7WZ01zgkW0lNQgtYk", 1),
        retry,
        retry_intent,
    ];
    in_every_order(&app, "old", &versioned, |tag, order| {
        let app = &app;
        async move {
            assert_eq!(failures(app, &tag).await, (2, 4), "order {order:?}");
        }
    })
    .await;
    // The invoice keeps where dunning stands.
    let (count, next): (i64, Option<i64>) = app
        .store()
        .fetch_one(
            "SELECT attempt_count, next_payment_attempt FROM invoices WHERE id = $1",
            args![tagged("in_1PgZihB7WZ01zgkWevAqQyk2", "old0")],
        )
        .await
        .expect("invoice");
    assert_eq!((count, next), (2, Some(1_793_790_005)));
}

async fn an_ach_failure_is_one_failure_and_other_customers_stay_apart(backend: Backend) {
    let app = TestApp::start(backend).await;
    let session = fixture("checkout.session.async_payment_failed");
    let mut intent = fixture("payment_intent.payment_failed");
    intent["id"] = json!("evt_ach_intent_failed");
    intent["created"] = json!(session["created"].as_i64().expect("created") - 1);
    intent["data"]["object"]["id"] = session["data"]["object"]["payment_intent"].clone();
    intent["data"]["object"]["last_payment_error"]["charge"] = json!("py_ach");
    intent["data"]["object"]["latest_charge"] = json!("py_ach");
    in_every_order(
        &app,
        "ach",
        &[session.clone(), intent.clone()],
        |tag, order| {
            let app = &app;
            async move {
                assert_eq!(failures(app, &tag).await, (1, 2), "order {order:?}");
            }
        },
    )
    .await;

    // The same amount at the same time for another customer is another attempt.
    let renewal = fixture("invoice.payment_failed");
    let mut stranger = renewal_intent_failed("ch_stranger", 0);
    stranger["data"]["object"]["customer"] = json!("cus_stranger");
    let story = [in_story(&renewal, "apart"), in_story(&stranger, "apart")];
    deliver_all(&app, &story).await;
    assert_eq!(failures(&app, "apart").await, (1, 1));
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM payment_failures WHERE customer_id = 'cus_stranger_apart' \
             AND id = attempt"
        )
        .await,
        1
    );
}

/// What a payment story ends with: the payment's refunded amount, and its dispute's
/// status and withdrawn money when it has one.
struct Ending {
    payment: String,
    refunded: i64,
    dispute: Option<(String, &'static str, i64)>,
}

/// Story `n`: one of five payment lifecycles, its events in the order Stripe made them.
fn chaos_story(n: usize) -> (Vec<Value>, Ending) {
    let tag = format!("chaos{n:02}");
    let t1 = 1_792_487_701;
    let paid = fixture("payment_intent.succeeded");
    let mut disputed_paid = fixture("payment_intent.succeeded");
    disputed_paid["id"] = json!("evt_disputed_paid");
    disputed_paid["data"]["object"]["id"] = json!(DISPUTED_PI);
    disputed_paid["data"]["object"]["amount"] = json!(2_000);
    let mut won = fixture("charge.dispute.closed");
    let reinstated = fixture("charge.dispute.funds_reinstated");
    won["created"] = json!(reinstated["created"].as_i64().expect("created") + 5);
    won["data"]["object"] = reinstated["data"]["object"].clone();
    let (events, refunded, dispute) = match n % 5 {
        0 => (
            vec![
                paid,
                fixture("refund.created"),
                charge_refunded(1_099, t1 + 1, "evt_full"),
            ],
            1_099,
            None,
        ),
        1 => (
            vec![
                paid,
                refund("refund.created", "re_a", 400, t1, t1),
                charge_refunded(400, t1 + 1, "evt_charge_a"),
                refund("refund.created", "re_b", 300, t1 + 50, t1 + 50),
                charge_refunded(700, t1 + 51, "evt_charge_b"),
            ],
            700,
            None,
        ),
        2 => (
            vec![
                paid,
                fixture("refund.created"),
                charge_refunded(1_099, t1 + 1, "evt_full"),
                fixture("refund.failed"),
            ],
            0,
            None,
        ),
        3 => (
            vec![
                disputed_paid,
                fixture("charge.dispute.created"),
                fixture("charge.dispute.funds_withdrawn"),
                fixture("charge.dispute.updated"),
                fixture("charge.dispute.closed"),
            ],
            0,
            Some(("lost", 2_000)),
        ),
        _ => (
            vec![
                disputed_paid,
                fixture("charge.dispute.created"),
                fixture("charge.dispute.funds_withdrawn"),
                reinstated,
                won,
            ],
            0,
            Some(("won", 0)),
        ),
    };
    let payment = if dispute.is_some() { DISPUTED_PI } else { PI };
    let ending = Ending {
        payment: tagged(payment, &tag),
        refunded,
        dispute: dispute.map(|(status, withdrawn)| (tagged(DISPUTE, &tag), status, withdrawn)),
    };
    let events = events.iter().map(|e| in_story(e, &tag)).collect();
    (events, ending)
}

/// Twenty payment stories, all their events shuffled (a seeded order), about 30% of
/// them delivered twice, runs executed at a few points in between: every payment ends
/// with the refunded amount and every dispute with the status and withdrawn money the
/// last event of its story says.
async fn shuffled_and_duplicated_deliveries_end_every_payment_on_its_newest_state(
    backend: Backend,
) {
    let app = TestApp::start(backend).await;
    let stories: Vec<(Vec<Value>, Ending)> = (0..20).map(chaos_story).collect();
    let mut rng = StdRng::seed_from_u64(20_221_115);
    let mut deliveries: Vec<&Value> = stories.iter().flat_map(|(events, _)| events).collect();
    let distinct = deliveries.len();
    for n in 0..distinct {
        if rng.random_bool(0.3) {
            deliveries.push(deliveries[n]);
        }
    }
    deliveries.shuffle(&mut rng);
    for (n, event) in deliveries.iter().enumerate() {
        let (status, body) = app.deliver(event).await;
        assert_eq!(status, StatusCode::OK, "{}: {body}", event["type"]);
        if n % 45 == 44 {
            app.settle().await;
        }
    }
    app.settle().await;

    let unfinished = app
        .count("SELECT COUNT(*) FROM runs WHERE status <> 'completed'")
        .await;
    assert_eq!(unfinished, 0, "every run completes");
    for (_, ending) in &stories {
        let state = payment(&app, &ending.payment).await.expect("payment");
        assert_eq!(state.2, ending.refunded, "{}", ending.payment);
        if let Some((id, status, withdrawn)) = &ending.dispute {
            let (stored, _, moved) = dispute(&app, id).await;
            assert_eq!((stored.as_str(), moved), (*status, *withdrawn), "{id}");
        }
    }
}

/// A refund naming no payment, a dispute without an amount and a charge whose
/// `amount_refunded` is text each fail their run at once, with the field named, and
/// change nothing.
async fn unreadable_refunds_and_disputes_fail_at_once_and_change_nothing(backend: Backend) {
    let app = TestApp::start(backend).await;
    let mut no_payment = fixture("refund.created");
    let refund = no_payment["data"]["object"]
        .as_object_mut()
        .expect("refund");
    refund.remove("payment_intent");
    refund.remove("charge");
    let mut no_amount = fixture("charge.dispute.created");
    no_amount["data"]["object"]
        .as_object_mut()
        .expect("dispute")
        .remove("amount");
    let mut text_amount = fixture("charge.refunded");
    text_amount["data"]["object"]["amount_refunded"] = json!("all of it");
    for (event, says) in [
        (no_payment, "payment_intent or charge"),
        (no_amount, "data.object.amount is missing"),
        (text_amount, "data.object.amount_refunded"),
    ] {
        let (status, answer) = app.deliver(&event).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        app.settle().await;
        let run = app.run(&crate::common::first_run(&answer)).await;
        assert_eq!(run["status"], "failed", "{run}");
        let error = run["error"].as_str().unwrap_or_default();
        assert!(error.contains(says), "the error says {says}: {run}");
        let validate = &run["steps"][0];
        assert_eq!(validate["attempts"], 1, "not retried: {run}");
    }
    for table in ["payments", "refunds", "disputes", "dispute_funds"] {
        let rows = app.count(&format!("SELECT COUNT(*) FROM {table}")).await;
        assert_eq!(rows, 0, "{table}");
    }
    assert_eq!(
        app.count("SELECT COUNT(*) FROM payment_failures WHERE kind = 'processing'")
            .await,
        3,
        "each failed run is logged for the team"
    );
}

/// Every fixture `paysteps trigger` can send starts a run that completes, except the
/// one event type no function handles.
async fn every_fixture_runs_to_completion(backend: Backend) {
    let app = TestApp::start(backend).await;
    for name in paysteps::testing::stripe::fixtures::names() {
        let answer = app.deliver_fixture(name, Overrides::default()).await;
        app.settle().await;
        let runs = answer["runs"].as_array().cloned().unwrap_or_default();
        if name == "customer.tax_id.created" {
            assert!(runs.is_empty(), "{name}: {answer}");
            continue;
        }
        assert_eq!(runs.len(), 1, "{name}: {answer}");
        let run = app.run(runs[0].as_str().expect("run id")).await;
        assert_eq!(run["status"], "completed", "{name}: {run}");
    }
}
