//! `GET /api/v1/payments` and `GET /api/v1/disputes`: Stripe events delivered signed
//! (PaymentIntents, refunds, charges and disputes), then payments read with their refunds
//! and disputes, the derived status and its filter, disputes by due date, and bad input.

use axum::http::StatusCode;
use paysteps::testing::stripe::fixtures::Overrides;
use serde_json::{Value, json};

use crate::common::{Backend, TestApp, fixture_event};

crate::on_both_backends!(
    a_payment_shows_its_refunds_and_disputes_and_a_status_that_says_refunded,
    filters_select_by_user_customer_status_and_the_time_a_payment_was_made,
    the_status_filter_applies_before_the_limit,
    open_disputes_come_by_evidence_due_date_and_the_rest_newest_first,
    the_billing_summary_lists_the_newest_refunds,
    bad_query_parameters_are_refused_with_a_clear_message_and_change_nothing,
);

const DAY: i64 = 86_400;
const T0: i64 = 1_790_000_000;

/// Fixture `name` as an event created at `created`, for `user` and `customer`.
fn event(name: &str, created: i64, user: &str, customer: &str) -> Value {
    fixture_event(
        name,
        Overrides {
            created: Some(created),
            user: Some(user.to_owned()),
            customer: Some(customer.to_owned()),
            ..Overrides::default()
        },
    )
}

/// The charge of PaymentIntent `pi_x`: `ch_x`.
fn charge_of(payment: &str) -> String {
    format!("ch_{}", &payment[3..])
}

/// `payment_intent.succeeded` (or `payment_failed`) for `id` of user_123's customer.
fn intent(id: &str, succeeded: bool, amount: i64, currency: &str, at: i64) -> Value {
    intent_of(
        id,
        succeeded,
        amount,
        currency,
        at,
        "user_123",
        "cus_QXg1o8vcGmoR32",
    )
}

pub fn intent_of(
    id: &str,
    succeeded: bool,
    amount: i64,
    currency: &str,
    at: i64,
    user: &str,
    customer: &str,
) -> Value {
    let name = if succeeded {
        "payment_intent.succeeded"
    } else {
        "payment_intent.payment_failed"
    };
    let mut event = event(name, at, user, customer);
    let object = &mut event["data"]["object"];
    object["id"] = json!(id);
    object["amount"] = json!(amount);
    object["amount_received"] = json!(if succeeded { amount } else { 0 });
    object["currency"] = json!(currency);
    object["created"] = json!(at - 60);
    object["latest_charge"] = json!(charge_of(id));
    event
}

/// `refund.created` (or `refund.failed`) of `payment`, made at `created`.
pub fn refund(
    event_type: &str,
    id: &str,
    payment: &str,
    amount: i64,
    currency: &str,
    created: i64,
) -> Value {
    let mut event = event(event_type, created, "user_123", "cus_QXg1o8vcGmoR32");
    let object = &mut event["data"]["object"];
    object["id"] = json!(id);
    object["payment_intent"] = json!(payment);
    object["charge"] = json!(charge_of(payment));
    object["amount"] = json!(amount);
    object["currency"] = json!(currency);
    object["created"] = json!(created);
    event
}

/// `charge.refunded` for `payment`'s charge, made at `charged`: `refunded` of `amount` as of `at`.
fn charge_refunded(payment: &str, amount: i64, refunded: i64, charged: i64, at: i64) -> Value {
    let mut event = event("charge.refunded", at, "user_123", "cus_QXg1o8vcGmoR32");
    let object = &mut event["data"]["object"];
    object["id"] = json!(charge_of(payment));
    object["payment_intent"] = json!(payment);
    object["amount"] = json!(amount);
    object["amount_captured"] = json!(amount);
    object["amount_refunded"] = json!(refunded);
    object["refunded"] = json!(refunded == amount);
    object["created"] = json!(charged);
    event
}

/// A `charge.dispute.*` fixture as dispute `id` of `payment` with `status`, evidence due
/// `due`, opened at `created`; its balance transactions are kept only when `funds`.
pub fn dispute(
    fixture: &str,
    id: &str,
    payment: &str,
    status: &str,
    due: Option<i64>,
    created: i64,
    funds: bool,
) -> Value {
    let mut event = event(fixture, created, "user_123", "cus_QXg1o8vcGmoR32");
    let object = &mut event["data"]["object"];
    object["id"] = json!(id);
    object["payment_intent"] = json!(payment);
    object["charge"] = json!(charge_of(payment));
    object["status"] = json!(status);
    object["evidence_details"]["due_by"] = json!(due);
    object["created"] = json!(created);
    let transactions = object["balance_transactions"]
        .as_array_mut()
        .expect("balance transactions");
    if funds {
        for t in transactions.iter_mut() {
            t["id"] = json!(format!("{}_{id}", t["id"].as_str().expect("txn id")));
        }
    } else {
        transactions.clear();
    }
    event
}

/// Delivers each event signed, as Stripe would, and lets its runs finish.
pub async fn deliver_all(app: &TestApp, events: &[Value]) {
    for event in events {
        let (status, body) = app.deliver(event).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        app.settle().await;
    }
}

async fn get_ok(app: &TestApp, path: &str) -> Value {
    let (status, body) = app.get(path).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body
}

/// The ids of the payments `query` lists, in order.
async fn payment_ids(app: &TestApp, query: &str) -> Vec<String> {
    ids(&get_ok(app, &format!("/api/v1/payments{query}")).await["payments"])
}

async fn dispute_ids(app: &TestApp, query: &str) -> Vec<String> {
    ids(&get_ok(app, &format!("/api/v1/disputes{query}")).await["disputes"])
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|p| p["id"].as_str().expect("id").to_owned())
        .collect()
}

/// Four payments: user_123's fully refunded one and disputed one, user_456's partly
/// refunded one in yen (a second refund failed), and user_123's failed one.
async fn story(app: &TestApp) {
    deliver_all(
        app,
        &[
            intent("pi_refunded", true, 1099, "usd", T0),
            refund(
                "refund.created",
                "re_full",
                "pi_refunded",
                1099,
                "usd",
                T0 + DAY,
            ),
            charge_refunded("pi_refunded", 1099, 1099, T0, T0 + DAY + 1),
            intent("pi_disputed", true, 2000, "usd", T0 + 2 * DAY),
            dispute(
                "charge.dispute.created",
                "dp_open",
                "pi_disputed",
                "needs_response",
                Some(T0 + 30 * DAY),
                T0 + 3 * DAY,
                true,
            ),
            intent_of(
                "pi_partial",
                true,
                5000,
                "jpy",
                T0 + 4 * DAY,
                "user_456",
                "cus_other",
            ),
            refund(
                "refund.created",
                "re_part",
                "pi_partial",
                1500,
                "jpy",
                T0 + 5 * DAY,
            ),
            refund(
                "refund.failed",
                "re_failed",
                "pi_partial",
                500,
                "jpy",
                T0 + 6 * DAY,
            ),
            intent("pi_failed", false, 3000, "usd", T0 + 7 * DAY),
        ],
    )
    .await;
}

async fn a_payment_shows_its_refunds_and_disputes_and_a_status_that_says_refunded(
    backend: Backend,
) {
    let app = TestApp::start(backend).await;
    assert_eq!(payment_ids(&app, "").await, Vec::<String>::new());
    story(&app).await;

    let body = get_ok(&app, "/api/v1/payments").await;
    assert_eq!(
        ids(&body["payments"]),
        ["pi_failed", "pi_partial", "pi_disputed", "pi_refunded"],
        "the most recently made first"
    );
    let by_id = |id: &str| {
        body["payments"]
            .as_array()
            .expect("payments")
            .iter()
            .find(|p| p["id"] == id)
            .cloned()
            .expect("listed")
    };

    let mut refunded = by_id("pi_refunded");
    let written = refunded.as_object_mut().expect("payment");
    let event_created = written.remove("event_created").expect("event_created");
    assert!(
        event_created.as_i64().is_some_and(|t| t > T0),
        "{event_created}"
    );
    let updated_at = written.remove("updated_at").expect("updated_at");
    assert!(
        updated_at.as_i64().is_some_and(|t| t > T0 * 1000),
        "{updated_at}"
    );
    assert_eq!(
        refunded,
        json!({
            "id": "pi_refunded",
            "user_id": "user_123",
            "customer_id": "cus_QXg1o8vcGmoR32",
            "amount": 1099,
            "currency": "usd",
            "status": "refunded",
            "stripe_status": "succeeded",
            "checkout_session_id": null,
            "charge_id": "ch_refunded",
            "succeeded_at": T0,
            "amount_refunded": 1099,
            "disputed": false,
            "refunds": [{
                "id": "re_full",
                "payment_id": "pi_refunded",
                "charge_id": "ch_refunded",
                "amount": 1099,
                "currency": "usd",
                "status": "succeeded",
                "reason": "requested_by_customer",
                "failure_reason": null,
                "created": T0 + DAY,
            }],
            "disputes": [],
            "livemode": false,
            "account": null,
        })
    );

    let disputed = by_id("pi_disputed");
    assert_eq!(disputed["status"], "succeeded", "{disputed}");
    assert_eq!(disputed["disputed"], true);
    assert_eq!(
        disputed["disputes"],
        json!([{
            "id": "dp_open",
            "payment_id": "pi_disputed",
            "charge_id": "ch_disputed",
            "amount": 2000,
            "currency": "usd",
            "reason": "fraudulent",
            "status": "needs_response",
            "evidence_due_by": T0 + 30 * DAY,
            "created": T0 + 3 * DAY,
            "withdrawn": 2000,
        }])
    );
    assert_eq!(disputed["refunds"], json!([]));

    let partial = by_id("pi_partial");
    assert_eq!(partial["status"], "partially_refunded", "{partial}");
    assert_eq!(partial["amount_refunded"], 1500);
    assert_eq!(ids(&partial["refunds"]), ["re_part", "re_failed"]);
    assert_eq!(
        partial["refunds"][1]["failure_reason"],
        "expired_or_canceled_card"
    );

    let failed = by_id("pi_failed");
    assert_eq!(
        (&failed["status"], &failed["succeeded_at"]),
        (&json!("failed"), &Value::Null)
    );
}

async fn filters_select_by_user_customer_status_and_the_time_a_payment_was_made(backend: Backend) {
    let app = TestApp::start(backend).await;
    story(&app).await;

    assert_eq!(
        payment_ids(&app, "?user=user_123").await,
        ["pi_failed", "pi_disputed", "pi_refunded"]
    );
    assert_eq!(
        payment_ids(&app, "?customer=cus_other").await,
        ["pi_partial"]
    );
    assert_eq!(
        payment_ids(&app, "?user=nobody").await,
        Vec::<String>::new()
    );
    assert_eq!(payment_ids(&app, "?status=refunded").await, ["pi_refunded"]);
    assert_eq!(
        payment_ids(&app, "?status=partially_refunded").await,
        ["pi_partial"]
    );
    assert_eq!(
        payment_ids(&app, "?status=succeeded").await,
        ["pi_disputed"]
    );
    assert_eq!(payment_ids(&app, "?status=failed").await, ["pi_failed"]);
    assert_eq!(
        payment_ids(&app, "?status=canceled").await,
        Vec::<String>::new()
    );
    assert_eq!(
        payment_ids(&app, "?status=succeeded&user=user_456").await,
        Vec::<String>::new()
    );

    // `since` is inclusive and `until` exclusive, on succeeded_at (pi_disputed: T0 + 2
    // days, although its newest event is a minute later) …
    let window = |since: i64, until: i64| format!("?since={since}&until={until}");
    assert_eq!(
        payment_ids(&app, &window(T0 + 2 * DAY, T0 + 4 * DAY)).await,
        ["pi_disputed"]
    );
    assert_eq!(
        payment_ids(&app, &window(T0 + 2 * DAY + 1, T0 + 4 * DAY + 1)).await,
        ["pi_partial"]
    );
    // … and on the newest event's time for a payment that never succeeded.
    assert_eq!(
        payment_ids(&app, &format!("?since={}", T0 + 7 * DAY)).await,
        ["pi_failed"]
    );
    assert_eq!(
        payment_ids(&app, &format!("?until={}", T0 + 1)).await,
        ["pi_refunded"]
    );
    assert_eq!(
        payment_ids(&app, &window(T0 + 5, T0 + 5)).await,
        Vec::<String>::new()
    );

    assert_eq!(
        payment_ids(&app, "?limit=2").await,
        ["pi_failed", "pi_partial"]
    );
}

async fn the_status_filter_applies_before_the_limit(backend: Backend) {
    let app = TestApp::start(backend).await;
    let mut events = vec![
        intent("pi_old_refund", true, 100, "usd", T0),
        refund(
            "refund.created",
            "re_old",
            "pi_old_refund",
            100,
            "usd",
            T0 + 1,
        ),
    ];
    for n in 0..5 {
        events.push(intent(&format!("pi_n{n}"), true, 100, "usd", T0 + DAY + n));
    }
    deliver_all(&app, &events).await;
    assert_eq!(
        payment_ids(&app, "?status=refunded&limit=1").await,
        ["pi_old_refund"]
    );
    assert_eq!(
        payment_ids(&app, "?status=succeeded&limit=2").await,
        ["pi_n4", "pi_n3"]
    );
    assert_eq!(payment_ids(&app, "?limit=500").await.len(), 6);
}

async fn open_disputes_come_by_evidence_due_date_and_the_rest_newest_first(backend: Backend) {
    let app = TestApp::start(backend).await;
    assert_eq!(
        dispute_ids(&app, "?status=open").await,
        Vec::<String>::new()
    );
    let opened = |id, status, due, created| {
        dispute(
            "charge.dispute.created",
            id,
            "pi_any",
            status,
            due,
            created,
            false,
        )
    };
    deliver_all(
        &app,
        &[
            opened("dp_due_late", "needs_response", Some(T0 + 20 * DAY), T0),
            opened("dp_no_date", "warning_under_review", None, T0 + 1),
            opened("dp_due_soon", "under_review", Some(T0 + 5 * DAY), T0 + 2),
            opened(
                "dp_inquiry",
                "warning_needs_response",
                Some(T0 + 9 * DAY),
                T0 + 3,
            ),
            // Withdrawn, then reinstated: nothing taken any more.
            dispute(
                "charge.dispute.funds_reinstated",
                "dp_won",
                "pi_any",
                "won",
                Some(T0 + 1),
                T0 + 4,
                true,
            ),
            dispute(
                "charge.dispute.closed",
                "dp_lost",
                "pi_any",
                "lost",
                Some(T0 + 2),
                T0 + 5,
                true,
            ),
            dispute(
                "charge.dispute.closed",
                "dp_closed",
                "pi_any",
                "warning_closed",
                None,
                T0 + 6,
                false,
            ),
        ],
    )
    .await;

    assert_eq!(
        dispute_ids(&app, "?status=open").await,
        ["dp_due_soon", "dp_inquiry", "dp_due_late", "dp_no_date"]
    );
    assert_eq!(
        dispute_ids(&app, "?status=open&limit=2").await,
        ["dp_due_soon", "dp_inquiry"]
    );
    assert_eq!(
        dispute_ids(&app, "").await,
        [
            "dp_closed",
            "dp_lost",
            "dp_won",
            "dp_inquiry",
            "dp_due_soon",
            "dp_no_date",
            "dp_due_late"
        ]
    );
    assert_eq!(
        dispute_ids(&app, "?status=warning_closed").await,
        ["dp_closed"]
    );
    assert_eq!(
        dispute_ids(&app, "?status=needs_response").await,
        ["dp_due_late"]
    );

    let body = get_ok(&app, "/api/v1/disputes?status=lost").await;
    assert_eq!(body["disputes"][0]["withdrawn"], 2000, "{body}");
    let body = get_ok(&app, "/api/v1/disputes?status=won").await;
    assert_eq!(body["disputes"][0]["withdrawn"], 0, "{body}");
    let body = get_ok(&app, "/api/v1/disputes?status=open").await;
    assert_eq!(body["disputes"][0]["withdrawn"], 0, "{body}");
    assert_eq!(body["disputes"][3]["evidence_due_by"], Value::Null);
}

async fn the_billing_summary_lists_the_newest_refunds(backend: Backend) {
    let app = TestApp::start(backend).await;
    assert_eq!(get_ok(&app, "/api/v1/billing").await["refunds"], json!([]));
    story(&app).await;
    let body = get_ok(&app, "/api/v1/billing").await;
    assert_eq!(ids(&body["refunds"]), ["re_failed", "re_part", "re_full"]);
    let newest = &body["refunds"][0];
    assert_eq!(
        (
            &newest["customer_id"],
            &newest["user_id"],
            &newest["status"]
        ),
        (&json!("cus_other"), &json!("user_456"), &json!("failed")),
        "{newest}"
    );
}

async fn bad_query_parameters_are_refused_with_a_clear_message_and_change_nothing(
    backend: Backend,
) {
    let app = TestApp::start(backend).await;
    story(&app).await;
    let before = (
        get_ok(&app, "/api/v1/payments").await,
        get_ok(&app, "/api/v1/disputes").await,
    );

    let refused = [
        (
            "/api/v1/payments?status=paid",
            "invalid_status",
            "unknown payment status 'paid'",
        ),
        (
            "/api/v1/payments?since=200&until=100",
            "invalid_range",
            "since (200) is after until (100)",
        ),
        (
            "/api/v1/payments?since=yesterday",
            "invalid_time",
            "since must be a time in seconds since the Unix epoch",
        ),
        (
            "/api/v1/payments?until=-1",
            "invalid_time",
            "until must be a time in seconds",
        ),
        (
            "/api/v1/payments?limit=0",
            "invalid_limit",
            "limit must be a whole number from 1 to 500 (got '0')",
        ),
        ("/api/v1/payments?limit=501", "invalid_limit", "(got '501')"),
        (
            "/api/v1/disputes?status=closed",
            "invalid_status",
            "unknown dispute status 'closed' (expected open, or one of",
        ),
        (
            "/api/v1/disputes?limit=many",
            "invalid_limit",
            "(got 'many')",
        ),
    ];
    for (path, code, message) in refused {
        let (status, body) = app.get(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body["error"]["code"], code, "{path}: {body}");
        let text = body["error"]["message"].as_str().expect("message");
        assert!(text.contains(message), "{path}: {text}");
    }

    let after = (
        get_ok(&app, "/api/v1/payments").await,
        get_ok(&app, "/api/v1/disputes").await,
    );
    assert_eq!(before, after);
}
