//! Subscription state as Stripe tells it: stories of `customer.subscription.*`, invoice
//! and checkout events, delivered in the orders Stripe may deliver them, and the
//! entitlement answer (`GET /api/v1/users/{user_id}/subscription`) they must end in.

use std::collections::HashSet;

use axum::http::StatusCode;
use paysteps::testing::payments::repo::Entitlement;
use paysteps::testing::stripe::fixtures::{self, Overrides};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::common::{Backend, Setup, TestApp, first_run, fixture_event};

crate::on_both_backends!(
    a_checkout_of_one_second_ends_active_in_every_delivery_order,
    a_subscription_canceled_by_dunning_stays_canceled_when_its_old_invoice_is_paid_later,
    a_final_failed_attempt_after_the_cancellation_leaves_it_canceled,
    canceling_now_with_a_final_paid_invoice_ends_canceled,
    a_trial_through_checkout_is_trialing_and_entitled_with_its_trial_end,
    a_failed_first_payment_of_a_second_subscription_leaves_the_paying_one_entitling,
    an_upgrade_delivered_late_ends_on_the_new_price,
    a_downgrade_to_monthly_moves_the_period_end_earlier,
    a_newer_cancel_at_period_end_survives_an_older_update_delivered_later,
    a_per_seat_subscription_lists_every_item_in_order_with_its_quantity,
    a_cancellation_reads_the_same_in_every_older_api_version,
    a_checkout_without_a_user_is_stored_unlinked_until_its_subscription_names_one,
    a_subscription_without_a_user_is_linked_by_the_checkout_of_its_customer,
    a_connected_accounts_subscription_never_entitles_a_platform_user,
    a_live_mode_event_is_stored_as_live,
    an_unreadable_payload_fails_at_once_naming_the_field_and_the_api_version,
    past_due_entitles_only_when_configured_to,
    shuffled_and_duplicated_deliveries_end_every_story_on_its_last_event,
);

// ---------------------------------------------------------------------------------------
// Story events
// ---------------------------------------------------------------------------------------

/// 2027-01-15: later than every fixture, so a story's times are its own.
const T0: i64 = 1_800_000_000;
const DAY: i64 = 86_400;
const MONTH: i64 = 30 * DAY;
const YEAR: i64 = 365 * DAY;

/// The fixtures' price and product.
const PRICE: &str = "price_1PgafmB7WZ01zgkW6dKueIc5";
const PRODUCT: &str = "prod_QXg1hqf4jFNsqG";

/// One subscription, its customer and its user, as every event of its story names them.
#[derive(Debug, Clone)]
struct Sub {
    id: String,
    customer: String,
    user: String,
}

impl Sub {
    /// `sub_<name>` of `cus_<name>`, whose user is `user_<name>`.
    fn new(name: &str) -> Sub {
        Sub {
            id: format!("sub_{name}"),
            customer: format!("cus_{name}"),
            user: format!("user_{name}"),
        }
    }

    /// Another subscription of the same customer and user.
    fn another(&self, name: &str) -> Sub {
        Sub {
            id: format!("sub_{name}"),
            ..self.clone()
        }
    }

    /// A fresh event naming this subscription, customer and user, created at `created`.
    fn at(&self, created: i64) -> Overrides {
        Overrides {
            created: Some(created),
            ..self.names()
        }
    }

    /// A fresh event naming this subscription, customer and user.
    fn names(&self) -> Overrides {
        Overrides {
            user: Some(self.user.clone()),
            customer: Some(self.customer.clone()),
            subscription: Some(self.id.clone()),
            ..Overrides::default()
        }
    }
}

/// A `customer.subscription.<kind>` event (`created`, `updated`, `deleted`) of `sub`,
/// created at `created`, in `status`, without `previous_attributes`; a deleted one was
/// canceled and ended at `created`, the others carry no cancellation. Items and period
/// are the fixture's until [`with_items`] and [`with_period`] change them.
fn subscription_event(kind: &str, sub: &Sub, created: i64, status: &str) -> Value {
    let mut event = fixture_event(&format!("customer.subscription.{kind}"), sub.at(created));
    let object = &mut event["data"]["object"];
    object["status"] = json!(status);
    if kind == "deleted" {
        object["canceled_at"] = json!(created);
        object["ended_at"] = json!(created);
    } else {
        object["canceled_at"] = Value::Null;
        object["ended_at"] = Value::Null;
        object["cancellation_details"]["reason"] = Value::Null;
    }
    if let Some(data) = event["data"].as_object_mut() {
        data.remove("previous_attributes");
    }
    event
}

/// The event says the status changed from `previous` (`data.previous_attributes.status`).
fn after(mut event: Value, previous: &str) -> Value {
    event["data"]["previous_attributes"] = json!({ "status": previous });
    event
}

/// The subscription's items become `items` (price, product, quantity), in this order.
fn with_items(mut event: Value, items: &[(&str, &str, u64)]) -> Value {
    let object = &mut event["data"]["object"];
    let id = object["id"].as_str().unwrap_or_default().to_owned();
    let template = object["items"]["data"][0].clone();
    let data: Vec<Value> = items
        .iter()
        .enumerate()
        .map(|(n, (price, product, quantity))| {
            let mut item = template.clone();
            item["id"] = json!(format!("si_{id}_{n}"));
            for key in ["price", "plan"] {
                item[key]["id"] = json!(price);
                item[key]["product"] = json!(product);
            }
            item["quantity"] = json!(quantity);
            item
        })
        .collect();
    object["items"]["data"] = Value::Array(data);
    event
}

/// Every item's current period becomes `start`..`end` (where the current API version
/// keeps a subscription's period).
fn with_period(mut event: Value, start: i64, end: i64) -> Value {
    if let Some(items) = event["data"]["object"]["items"]["data"].as_array_mut() {
        for item in items {
            item["current_period_start"] = json!(start);
            item["current_period_end"] = json!(end);
        }
    }
    event
}

/// An `invoice.<kind>` event (`paid` or `payment_failed`) of invoice `id` of `sub`. Paid:
/// 2000 paid on the first attempt; failed: nothing paid, attempt 1, retried later.
fn invoice_event(kind: &str, sub: &Sub, created: i64, id: &str, billing_reason: &str) -> Value {
    let mut event = fixture_event(&format!("invoice.{kind}"), sub.at(created));
    let object = &mut event["data"]["object"];
    object["id"] = json!(id);
    object["billing_reason"] = json!(billing_reason);
    event
}

/// A subscription-mode `checkout.session.completed` of `sub` with `payment_status`
/// (`paid`, `unpaid`, `no_payment_required`).
fn checkout_event(sub: &Sub, created: i64, payment_status: &str) -> Value {
    let mut event = fixture_event("checkout.session.completed", sub.at(created));
    let object = &mut event["data"]["object"];
    object["id"] = json!(format!("cs_test_{}", sub.id));
    object["payment_status"] = json!(payment_status);
    if payment_status == "no_payment_required" {
        object["amount_subtotal"] = json!(0);
        object["amount_total"] = json!(0);
    }
    event
}

/// A fixture of an older API version, as a fresh event of `sub`; the invoice ids of the
/// story are made `sub`'s own too, so that versions do not share invoices.
fn version_event(version: &str, name: &str, sub: &Sub) -> Value {
    let path = format!(
        "{}/fixtures/versions/{version}/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let envelope: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut event = fixtures::build_event(envelope, &sub.names());
    for invoice in ["in_1Pgc6tB7WZ01zgkWu9fdqL6I", "in_1PgZihB7WZ01zgkWevAqQyk2"] {
        rename(&mut event, invoice, &format!("{invoice}_{}", sub.id));
    }
    event
}

/// Replaces every string value `from` in `value` with `to`.
fn rename(value: &mut Value, from: &str, to: &str) {
    match value {
        Value::String(s) if s == from => *s = to.to_owned(),
        Value::Array(items) => items.iter_mut().for_each(|v| rename(v, from, to)),
        Value::Object(map) => map.values_mut().for_each(|v| rename(v, from, to)),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------
// Delivery and the entitlement answer
// ---------------------------------------------------------------------------------------

/// Delivers `event` for the first time and answers the one run it started.
async fn deliver(app: &TestApp, event: &Value) -> String {
    let (status, body) = app.deliver(event).await;
    assert_eq!(status, StatusCode::OK, "{}: {body}", event["type"]);
    assert_eq!(body["duplicate"], false, "{}: {body}", event["type"]);
    first_run(&body)
}

/// Delivers `events` one after another, each run to its end before the next is sent, and
/// asserts that each run completed.
async fn deliver_in_order(app: &TestApp, events: &[Value]) {
    for event in events {
        let run = deliver(app, event).await;
        app.settle().await;
        assert_completed(app, &run, event).await;
    }
}

async fn assert_completed(app: &TestApp, run_id: &str, event: &Value) {
    let run = app.run(run_id).await;
    assert_eq!(
        run["status"], "completed",
        "the run of {} {} did not complete: {run}",
        event["type"], event["id"]
    );
}

/// `GET /api/v1/users/{user}/subscription`.
async fn entitlement(app: &TestApp, user: &str) -> Value {
    let (status, body) = app.get(&format!("/api/v1/users/{user}/subscription")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// The subscription `id` among those the answer lists.
fn listed<'a>(answer: &'a Value, id: &str) -> &'a Value {
    answer["subscriptions"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["id"] == id))
        .unwrap_or_else(|| panic!("{id} is not listed: {answer}"))
}

/// Asserts the user's answer: `subscribed`, and `sub` listed in `status`.
async fn assert_state(app: &TestApp, sub: &Sub, status: &str, subscribed: bool) -> Value {
    let answer = entitlement(app, &sub.user).await;
    assert_eq!(
        listed(&answer, &sub.id)["status"],
        status,
        "{}: {answer}",
        sub.id
    );
    assert_eq!(answer["subscribed"], subscribed, "{}: {answer}", sub.id);
    answer
}

/// Every order of `n` things.
fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![Vec::new()];
    }
    let mut all = Vec::new();
    for shorter in permutations(n - 1) {
        for at in 0..=shorter.len() {
            let mut order = shorter.clone();
            order.insert(at, n - 1);
            all.push(order);
        }
    }
    all
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

/// A Checkout makes `customer.subscription.created` (incomplete) and `.updated` (active,
/// previously incomplete) in the same second; Stripe may deliver either first. Both
/// orders end active, and so does every order of those two with the session's
/// `checkout.session.completed` and the first `invoice.paid` of the same second mixed in.
async fn a_checkout_of_one_second_ends_active_in_every_delivery_order(backend: Backend) {
    let app = TestApp::start(backend).await;
    let story = |sub: &Sub| {
        vec![
            subscription_event("created", sub, T0, "incomplete"),
            after(
                subscription_event("updated", sub, T0, "active"),
                "incomplete",
            ),
            checkout_event(sub, T0, "paid"),
            invoice_event(
                "paid",
                sub,
                T0,
                &format!("in_{}", sub.id),
                "subscription_create",
            ),
        ]
    };

    let mut cases = Vec::new();
    for (n, order) in [vec![0, 1], vec![1, 0]].into_iter().enumerate() {
        cases.push((Sub::new(&format!("pair{n}")), order));
    }
    for (n, order) in permutations(4).into_iter().enumerate() {
        cases.push((Sub::new(&format!("four{n:02}")), order));
    }
    for (sub, order) in &cases {
        let events = story(sub);
        let sent: Vec<Value> = order.iter().map(|&i| events[i].clone()).collect();
        deliver_in_order(&app, &sent).await;
        let answer = assert_state(&app, sub, "active", true).await;
        let shown = listed(&answer, &sub.id);
        assert_eq!(shown["source"], "event", "order {order:?}: {answer}");
        assert_eq!(shown["entitled"], true, "order {order:?}: {answer}");
        assert_eq!(answer["subscription"]["id"], sub.id.as_str(), "{answer}");
    }
}

/// Dunning to the end: active, then past due after a failed renewal, then deleted by
/// Stripe (canceled). The renewal invoice is paid afterwards (an event created later):
/// a paid invoice never revives a canceled subscription. The invoice itself is recorded
/// as paid.
async fn a_subscription_canceled_by_dunning_stays_canceled_when_its_old_invoice_is_paid_later(
    backend: Backend,
) {
    let app = TestApp::start(backend).await;
    let sub = Sub::new("dunned");
    let renewal = format!("in_renewal_{}", sub.id);
    deliver_in_order(&app, &dunning_to_cancellation(&sub, &renewal)).await;
    assert_state(&app, &sub, "canceled", false).await;

    let paid = invoice_event(
        "paid",
        &sub,
        T0 + MONTH + 20 * DAY,
        &renewal,
        "subscription_cycle",
    );
    deliver_in_order(&app, &[paid]).await;
    let answer = assert_state(&app, &sub, "canceled", false).await;
    assert_eq!(listed(&answer, &sub.id)["source"], "event", "{answer}");
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM invoices WHERE id = '{renewal}' AND status = 'paid' \
             AND subscription_id = '{}'",
            sub.id
        ))
        .await,
        1,
        "the late payment is recorded on the invoice"
    );
}

/// Active, renewal failed, past due (same second), canceled by Stripe after the retries.
fn dunning_to_cancellation(sub: &Sub, renewal: &str) -> Vec<Value> {
    let renewed = T0 + MONTH;
    let period = |e| with_period(e, renewed, renewed + MONTH);
    let mut deleted = period(subscription_event(
        "deleted",
        sub,
        renewed + 14 * DAY,
        "canceled",
    ));
    deleted["data"]["object"]["cancellation_details"]["reason"] = json!("payment_failed");
    vec![
        with_period(
            after(
                subscription_event("updated", sub, T0, "active"),
                "incomplete",
            ),
            T0,
            renewed,
        ),
        invoice_event(
            "payment_failed",
            sub,
            renewed,
            renewal,
            "subscription_cycle",
        ),
        period(after(
            subscription_event("updated", sub, renewed, "past_due"),
            "active",
        )),
        deleted,
    ]
}

/// The last retry of a renewal fails after Stripe already canceled the subscription
/// (`invoice.payment_failed` created later, attempt 4, no next attempt): the
/// subscription stays canceled and the invoice records the final attempt.
async fn a_final_failed_attempt_after_the_cancellation_leaves_it_canceled(backend: Backend) {
    let app = TestApp::start(backend).await;
    let sub = Sub::new("lastretry");
    let renewal = format!("in_renewal_{}", sub.id);
    deliver_in_order(&app, &dunning_to_cancellation(&sub, &renewal)).await;

    let mut last = invoice_event(
        "payment_failed",
        &sub,
        T0 + MONTH + 21 * DAY,
        &renewal,
        "subscription_cycle",
    );
    last["data"]["object"]["attempt_count"] = json!(4);
    last["data"]["object"]["next_payment_attempt"] = Value::Null;
    deliver_in_order(&app, &[last]).await;

    let answer = assert_state(&app, &sub, "canceled", false).await;
    assert_eq!(
        listed(&answer, &sub.id)["cancellation_reason"],
        "payment_failed",
        "{answer}"
    );
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM invoices WHERE id = '{renewal}' AND attempt_count = 4 \
             AND next_payment_attempt IS NULL"
        ))
        .await,
        1,
        "the invoice records the final attempt"
    );
}

/// "Cancel now" with a final invoice: the subscription is deleted and its final invoice
/// is paid in the same second or later. Whether the invoice arrives after the deletion
/// or before it (even before any Subscription object is stored, with the older
/// activation arriving last), the subscription ends canceled.
async fn canceling_now_with_a_final_paid_invoice_ends_canceled(backend: Backend) {
    let app = TestApp::start(backend).await;
    let canceled_at = T0 + 10 * DAY;
    let story = |sub: &Sub, invoice_at: i64| {
        let mut deleted = subscription_event("deleted", sub, canceled_at, "canceled");
        deleted["data"]["object"]["cancellation_details"]["reason"] =
            json!("cancellation_requested");
        let active = after(
            subscription_event("updated", sub, T0, "active"),
            "incomplete",
        );
        let final_invoice = invoice_event(
            "paid",
            sub,
            invoice_at,
            &format!("in_final_{}", sub.id),
            "subscription_update",
        );
        (active, deleted, final_invoice)
    };

    let after_deletion = Sub::new("cancelnow1");
    let (active, deleted, invoice) = story(&after_deletion, canceled_at + 1);
    deliver_in_order(&app, &[active, deleted, invoice]).await;
    let answer = assert_state(&app, &after_deletion, "canceled", false).await;
    assert_eq!(
        listed(&answer, &after_deletion.id)["cancellation_reason"],
        "cancellation_requested",
        "{answer}"
    );

    let invoice_first = Sub::new("cancelnow2");
    let (active, deleted, invoice) = story(&invoice_first, canceled_at);
    deliver_in_order(&app, &[invoice]).await;
    deliver_in_order(&app, &[deleted, active]).await;
    let answer = assert_state(&app, &invoice_first, "canceled", false).await;
    assert_eq!(
        listed(&answer, &invoice_first.id)["canceled_at"],
        canceled_at,
        "{answer}"
    );
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM invoices WHERE id IN ('in_final_sub_cancelnow1', \
             'in_final_sub_cancelnow2') AND status = 'paid'"
        )
        .await,
        2
    );
}

/// A trial started through Checkout (`payment_status: no_payment_required`): the
/// session alone makes a provisional view that says trialing, not active; the
/// Subscription object (trialing, `trial_end` set, the items' period ending with the
/// trial) then owns the state, and the $0 first invoice changes nothing. A $0
/// `subscription_create` invoice alone is also a trial.
async fn a_trial_through_checkout_is_trialing_and_entitled_with_its_trial_end(backend: Backend) {
    let app = TestApp::start(backend).await;
    let sub = Sub::new("trial");
    let trial_end = T0 + 14 * DAY;

    deliver_in_order(&app, &[checkout_event(&sub, T0, "no_payment_required")]).await;
    let answer = assert_state(&app, &sub, "trialing", true).await;
    let shown = listed(&answer, &sub.id);
    assert_eq!(shown["source"], "provisional", "{answer}");
    assert_eq!(shown["entitled"], true, "{answer}");

    let mut created = with_period(
        subscription_event("created", &sub, T0, "trialing"),
        T0,
        trial_end,
    );
    created["data"]["object"]["trial_start"] = json!(T0);
    created["data"]["object"]["trial_end"] = json!(trial_end);
    deliver_in_order(&app, &[created, free_first_invoice(&sub)]).await;

    let answer = assert_state(&app, &sub, "trialing", true).await;
    let shown = listed(&answer, &sub.id);
    assert_eq!(shown["source"], "event", "{answer}");
    assert_eq!(shown["entitled"], true, "{answer}");
    assert_eq!(shown["trial_end"], trial_end, "{answer}");
    assert_eq!(shown["current_period_end"], trial_end, "{answer}");
    assert_eq!(answer["subscription"]["id"], sub.id.as_str(), "{answer}");

    let invoiced = Sub::new("trialinvoice");
    deliver_in_order(&app, &[free_first_invoice(&invoiced)]).await;
    let answer = assert_state(&app, &invoiced, "trialing", true).await;
    assert_eq!(listed(&answer, &invoiced.id)["source"], "provisional");
}

/// The $0 first invoice of a subscription that starts with a trial.
fn free_first_invoice(sub: &Sub) -> Value {
    let mut invoice = invoice_event(
        "paid",
        sub,
        T0,
        &format!("in_{}", sub.id),
        "subscription_create",
    );
    invoice["data"]["object"]["amount_due"] = json!(0);
    invoice["data"]["object"]["amount_paid"] = json!(0);
    invoice
}

/// A paying user starts a second subscription whose first payment fails
/// (`invoice.payment_failed`, `billing_reason: subscription_create`, then the
/// subscription created incomplete): the user stays subscribed through the first one,
/// which the answer names, and the second is listed as incomplete, never past due.
async fn a_failed_first_payment_of_a_second_subscription_leaves_the_paying_one_entitling(
    backend: Backend,
) {
    let app = TestApp::start(backend).await;
    let paying = Sub::new("twosubs");
    let second = paying.another("twosubs_b");
    deliver_in_order(
        &app,
        &[after(
            subscription_event("updated", &paying, T0, "active"),
            "incomplete",
        )],
    )
    .await;

    let later = T0 + 5 * DAY;
    let failed = invoice_event(
        "payment_failed",
        &second,
        later,
        &format!("in_{}", second.id),
        "subscription_create",
    );
    deliver_in_order(&app, &[failed]).await;
    let answer = assert_state(&app, &second, "incomplete", true).await;
    assert_eq!(answer["subscription"]["id"], paying.id.as_str(), "{answer}");

    deliver_in_order(
        &app,
        &[subscription_event("created", &second, later, "incomplete")],
    )
    .await;
    let answer = assert_state(&app, &second, "incomplete", true).await;
    assert_eq!(answer["subscription"]["id"], paying.id.as_str(), "{answer}");
    assert_eq!(answer["subscription"]["status"], "active", "{answer}");
    assert_eq!(listed(&answer, &second.id)["entitled"], false, "{answer}");
    assert_eq!(listed(&answer, &second.id)["source"], "event", "{answer}");
    assert_eq!(
        answer["subscriptions"].as_array().map(Vec::len),
        Some(2),
        "{answer}"
    );
}

/// An upgrade (`updated` at t2 with a new price) is delivered after the invoice paid at
/// t3 and after the older update of t1: the subscription ends on the new price, in
/// either order of the other two.
async fn an_upgrade_delivered_late_ends_on_the_new_price(backend: Backend) {
    let app = TestApp::start(backend).await;
    let (t1, t2, t3) = (T0, T0 + 3 * DAY, T0 + 3 * DAY + 5);
    let story = |sub: &Sub| {
        let basic = with_items(
            after(
                subscription_event("updated", sub, t1, "active"),
                "incomplete",
            ),
            &[("price_basic", "prod_basic", 1)],
        );
        let pro = with_items(
            subscription_event("updated", sub, t2, "active"),
            &[("price_pro", "prod_pro", 1)],
        );
        let invoice = invoice_event(
            "paid",
            sub,
            t3,
            &format!("in_upgrade_{}", sub.id),
            "subscription_update",
        );
        (basic, pro, invoice)
    };

    let first = Sub::new("upgrade1");
    let (basic, pro, invoice) = story(&first);
    deliver_in_order(&app, &[basic, invoice, pro]).await;
    let second = Sub::new("upgrade2");
    let (basic, pro, invoice) = story(&second);
    deliver_in_order(&app, &[invoice, basic, pro]).await;

    for sub in [&first, &second] {
        let answer = assert_state(&app, sub, "active", true).await;
        let shown = listed(&answer, &sub.id);
        assert_eq!(
            shown["items"],
            json!([{"price": "price_pro", "product": "prod_pro", "quantity": 1}]),
            "{answer}"
        );
        assert_eq!(shown["event_created"], t2, "{answer}");
    }
}

/// A yearly plan switched to monthly: the newer update's period ends earlier than the
/// older one's. Delivered after the older update, it moves the period end earlier;
/// delivered before it, the older update does not move it back.
async fn a_downgrade_to_monthly_moves_the_period_end_earlier(backend: Backend) {
    let app = TestApp::start(backend).await;
    let switched = T0 + 40 * DAY;
    let story = |sub: &Sub| {
        let yearly = with_period(
            with_items(
                subscription_event("updated", sub, T0, "active"),
                &[("price_yearly", PRODUCT, 1)],
            ),
            T0,
            T0 + YEAR,
        );
        let monthly = with_period(
            with_items(
                subscription_event("updated", sub, switched, "active"),
                &[("price_monthly", PRODUCT, 1)],
            ),
            switched,
            switched + MONTH,
        );
        (yearly, monthly)
    };

    let in_order = Sub::new("downgrade1");
    let (yearly, monthly) = story(&in_order);
    deliver_in_order(&app, &[yearly]).await;
    let answer = assert_state(&app, &in_order, "active", true).await;
    assert_eq!(
        listed(&answer, &in_order.id)["current_period_end"],
        T0 + YEAR
    );
    deliver_in_order(&app, &[monthly]).await;

    let reversed = Sub::new("downgrade2");
    let (yearly, monthly) = story(&reversed);
    deliver_in_order(&app, &[monthly, yearly]).await;

    for sub in [&in_order, &reversed] {
        let answer = assert_state(&app, sub, "active", true).await;
        let shown = listed(&answer, &sub.id);
        assert_eq!(
            shown["current_period_end"],
            switched + MONTH,
            "the period end moves earlier: {answer}"
        );
        assert_eq!(shown["items"][0]["price"], "price_monthly", "{answer}");
    }
}

/// The customer asks to cancel at the period end (a newer update with
/// `cancel_at_period_end: true` and `cancel_at`); an older update, delivered later, does
/// not undo it.
async fn a_newer_cancel_at_period_end_survives_an_older_update_delivered_later(backend: Backend) {
    let app = TestApp::start(backend).await;
    let sub = Sub::new("cancellater");
    let period_end = T0 + MONTH;
    let older = with_period(
        after(
            subscription_event("updated", &sub, T0, "active"),
            "incomplete",
        ),
        T0,
        period_end,
    );
    let mut newer = with_period(
        subscription_event("updated", &sub, T0 + 9 * DAY, "active"),
        T0,
        period_end,
    );
    newer["data"]["object"]["cancel_at_period_end"] = json!(true);
    newer["data"]["object"]["cancel_at"] = json!(period_end);
    newer["data"]["object"]["canceled_at"] = json!(T0 + 9 * DAY);
    newer["data"]["object"]["cancellation_details"]["reason"] = json!("cancellation_requested");
    newer["data"]["previous_attributes"] = json!({ "cancel_at_period_end": false });
    deliver_in_order(&app, &[newer, older]).await;

    let answer = assert_state(&app, &sub, "active", true).await;
    let shown = listed(&answer, &sub.id);
    assert_eq!(shown["cancel_at_period_end"], true, "{answer}");
    assert_eq!(shown["cancel_at"], period_end, "{answer}");
    assert_eq!(shown["canceled_at"], T0 + 9 * DAY, "{answer}");
    assert_eq!(
        shown["cancellation_reason"], "cancellation_requested",
        "{answer}"
    );
}

/// A per-seat subscription with an add-on: both items are listed in Stripe's order with
/// their quantities; a later update with fewer seats and no add-on replaces the items
/// whole.
async fn a_per_seat_subscription_lists_every_item_in_order_with_its_quantity(backend: Backend) {
    let app = TestApp::start(backend).await;
    let sub = Sub::new("seats");
    let items = [
        ("price_seat", "prod_seat", 5),
        ("price_addon", "prod_addon", 1),
    ];
    let created = with_items(subscription_event("created", &sub, T0, "active"), &items);
    deliver_in_order(&app, &[created]).await;
    let answer = assert_state(&app, &sub, "active", true).await;
    assert_eq!(
        listed(&answer, &sub.id)["items"],
        json!([
            {"price": "price_seat", "product": "prod_seat", "quantity": 5},
            {"price": "price_addon", "product": "prod_addon", "quantity": 1},
        ]),
        "{answer}"
    );

    let fewer = with_items(
        subscription_event("updated", &sub, T0 + DAY, "active"),
        &[("price_seat", "prod_seat", 3)],
    );
    deliver_in_order(&app, &[fewer]).await;
    let answer = assert_state(&app, &sub, "active", true).await;
    assert_eq!(
        listed(&answer, &sub.id)["items"],
        json!([{"price": "price_seat", "product": "prod_seat", "quantity": 3}]),
        "{answer}"
    );
}

/// The fixture story (created incomplete, first invoice paid, updated active, deleted)
/// in every older API version of `fixtures/versions`: every run completes, the paid
/// invoice names its subscription, the active subscription's period ends at 1793527203
/// in every version (subscription-level before basil, per item from basil), and the
/// deleted one is canceled with the deleted object's period (ending 1796119203).
async fn a_cancellation_reads_the_same_in_every_older_api_version(backend: Backend) {
    let app = TestApp::start(backend).await;
    let dir = format!("{}/fixtures/versions", env!("CARGO_MANIFEST_DIR"));
    let mut versions: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    versions.sort();
    assert!(versions.len() >= 6, "{versions:?}");

    for version in &versions {
        let sub = Sub::new(&format!("v{}", version.replace(['-', '.'], "_")));
        let event = |name: &str| version_event(version, name, &sub);
        deliver_in_order(
            &app,
            &[
                event("customer.subscription.created"),
                event("invoice.paid"),
                event("customer.subscription.updated"),
            ],
        )
        .await;
        let answer = assert_state(&app, &sub, "active", true).await;
        let shown = listed(&answer, &sub.id);
        assert_eq!(
            shown["current_period_end"], 1_793_527_203,
            "{version}: {answer}"
        );
        assert_eq!(
            shown["items"],
            json!([{"price": PRICE, "product": PRODUCT, "quantity": 1}]),
            "{version}: {answer}"
        );
        assert_eq!(
            app.count(&format!(
                "SELECT COUNT(*) FROM invoices WHERE id = 'in_1Pgc6tB7WZ01zgkWu9fdqL6I_{0}' \
                 AND subscription_id = '{0}' AND status = 'paid'",
                sub.id
            ))
            .await,
            1,
            "{version}: the paid invoice names its subscription"
        );

        deliver_in_order(&app, &[event("customer.subscription.deleted")]).await;
        let answer = assert_state(&app, &sub, "canceled", false).await;
        let shown = listed(&answer, &sub.id);
        assert_eq!(
            shown["current_period_end"], 1_796_119_203,
            "{version}: {answer}"
        );
        assert_eq!(shown["canceled_at"], 1_794_740_406, "{version}: {answer}");
        assert_eq!(shown["ended_at"], 1_794_740_406, "{version}: {answer}");
        // `cancellation_details` exists from 2022-11-15 on.
        let reason = if version.as_str() < "2022-11-15" {
            Value::Null
        } else {
            json!("payment_failed")
        };
        assert_eq!(shown["cancellation_reason"], reason, "{version}: {answer}");
    }
    assert_eq!(
        app.count("SELECT COUNT(*) FROM runs WHERE status <> 'completed'")
            .await,
        0
    );
}

/// A Checkout that names no user (no `client_reference_id`, empty metadata, a new
/// customer): the run completes and the subscription is stored without a user; the
/// Subscription object's `metadata.user_id`, arriving later, links it, and its user is
/// then subscribed.
async fn a_checkout_without_a_user_is_stored_unlinked_until_its_subscription_names_one(
    backend: Backend,
) {
    let app = TestApp::start(backend).await;
    let sub = Sub::new("late");
    let mut checkout = checkout_event(&sub, T0, "paid");
    checkout["data"]["object"]["client_reference_id"] = Value::Null;
    checkout["data"]["object"]["metadata"] = json!({});
    deliver_in_order(&app, &[checkout]).await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM subscriptions WHERE id = 'sub_late' AND user_id IS NULL")
            .await,
        1,
        "the subscription is stored without a user"
    );
    assert_eq!(entitlement(&app, "user_late").await["subscribed"], false);

    let updated = after(
        subscription_event("updated", &sub, T0 + 1, "active"),
        "incomplete",
    );
    assert_eq!(
        updated["data"]["object"]["metadata"]["user_id"],
        "user_late"
    );
    deliver_in_order(&app, &[updated]).await;
    let answer = assert_state(&app, &sub, "active", true).await;
    assert_eq!(listed(&answer, &sub.id)["customer_id"], "cus_late");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM customers WHERE id = 'cus_late' AND user_id = 'user_late'")
            .await,
        1,
        "the customer is linked to the user"
    );
}

/// The other way round: a Subscription object that names no user (empty metadata) is
/// stored unlinked; the Checkout that bought it, naming the user in
/// `client_reference_id`, links its customer, and the subscription with it, without
/// its provisional view replacing the stored snapshot.
async fn a_subscription_without_a_user_is_linked_by_the_checkout_of_its_customer(backend: Backend) {
    let app = TestApp::start(backend).await;
    let sub = Sub::new("linkedbycheckout");
    let mut created = with_items(
        subscription_event("created", &sub, T0, "active"),
        &[("price_team", "prod_team", 2)],
    );
    created["data"]["object"]["metadata"] = json!({});
    deliver_in_order(&app, &[created]).await;
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM subscriptions WHERE id = 'sub_linkedbycheckout' \
             AND user_id IS NULL"
        )
        .await,
        1,
        "the subscription is stored without a user"
    );

    deliver_in_order(&app, &[checkout_event(&sub, T0 + 2, "paid")]).await;
    let answer = assert_state(&app, &sub, "active", true).await;
    let shown = listed(&answer, &sub.id);
    assert_eq!(shown["source"], "event", "{answer}");
    assert_eq!(
        shown["items"],
        json!([{"price": "price_team", "product": "prod_team", "quantity": 2}]),
        "{answer}"
    );
}

/// A connected account's subscription (the event's `account` names it) is stored with
/// its account but never answers for a platform user, even one its metadata names.
async fn a_connected_accounts_subscription_never_entitles_a_platform_user(backend: Backend) {
    let app = TestApp::start(backend).await;
    let sub = Sub::new("connect");
    let mut event = after(
        subscription_event("updated", &sub, T0, "active"),
        "incomplete",
    );
    event["account"] = json!("acct_1Connected");
    deliver_in_order(&app, &[event]).await;

    let answer = entitlement(&app, "user_connect").await;
    assert_eq!(answer["subscribed"], false, "{answer}");
    assert_eq!(answer["subscription"], Value::Null, "{answer}");
    assert_eq!(answer["subscriptions"], json!([]), "{answer}");
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM subscriptions WHERE id = 'sub_connect' \
             AND account = 'acct_1Connected'"
        )
        .await,
        1,
        "stored with its connected account"
    );
}

/// `livemode: true` on an event is stored with the subscription and shown; a test-mode
/// one is stored as test mode.
async fn a_live_mode_event_is_stored_as_live(backend: Backend) {
    let app = TestApp::start(backend).await;
    let live = Sub::new("live");
    let mut event = after(
        subscription_event("updated", &live, T0, "active"),
        "incomplete",
    );
    event["livemode"] = json!(true);
    event["data"]["object"]["livemode"] = json!(true);
    let test = Sub::new("testmode");
    let test_event = after(
        subscription_event("updated", &test, T0, "active"),
        "incomplete",
    );
    deliver_in_order(&app, &[event, test_event]).await;

    assert_eq!(
        app.count("SELECT COUNT(*) FROM subscriptions WHERE id = 'sub_live' AND livemode = 1")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM subscriptions WHERE id = 'sub_testmode' AND livemode = 0")
            .await,
        1
    );
    let answer = assert_state(&app, &live, "active", true).await;
    assert_eq!(listed(&answer, &live.id)["livemode"], true, "{answer}");
    let answer = assert_state(&app, &test, "active", true).await;
    assert_eq!(listed(&answer, &test.id)["livemode"], false, "{answer}");
}

/// A payload that cannot be read fails its run on the first attempt, without retries,
/// and the run's error names the field and the event's API version: a 2024-06-20
/// `customer.subscription.deleted` without `data.object.status`, and one whose item
/// quantity is not a number. Nothing is stored.
async fn an_unreadable_payload_fails_at_once_naming_the_field_and_the_api_version(
    backend: Backend,
) {
    let app = TestApp::start(backend).await;
    let mut no_status = version_event(
        "2024-06-20",
        "customer.subscription.deleted",
        &Sub::new("nostatus"),
    );
    no_status["data"]["object"]
        .as_object_mut()
        .expect("object")
        .remove("status");
    let mut bad_quantity = version_event(
        "2024-06-20",
        "customer.subscription.deleted",
        &Sub::new("badquantity"),
    );
    bad_quantity["data"]["object"]["items"]["data"][0]["quantity"] = json!("five");

    for (event, field) in [
        (no_status, "data.object.status"),
        (bad_quantity, "data.object.items.data[0].quantity"),
    ] {
        let before = app.faults.attempts("validate-subscription");
        let run_id = deliver(&app, &event).await;
        app.settle().await;
        let run = app.run(&run_id).await;
        assert_eq!(run["status"], "failed", "{run}");
        let error = run["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(field) && error.contains("2024-06-20"),
            "the error names {field} and the API version: {run}"
        );
        assert_eq!(
            app.faults.attempts("validate-subscription") - before,
            1,
            "not retried: {run}"
        );
        let step = run["steps"]
            .as_array()
            .and_then(|steps| steps.iter().find(|s| s["name"] == "validate-subscription"))
            .unwrap_or_else(|| panic!("no validate-subscription step: {run}"));
        assert_eq!(step["attempts"], 1, "{run}");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM subscriptions").await, 0);
}

/// Which statuses entitle is a setting: with `past_due` configured, a past-due
/// subscription entitles its user; with the default (`active,trialing`) it does not.
async fn past_due_entitles_only_when_configured_to(backend: Backend) {
    let sub = Sub::new("pastdue");
    let story = [
        after(
            subscription_event("updated", &sub, T0, "active"),
            "incomplete",
        ),
        after(
            subscription_event("updated", &sub, T0 + MONTH, "past_due"),
            "active",
        ),
    ];

    let default = TestApp::start(backend).await;
    deliver_in_order(&default, &story).await;
    let answer = assert_state(&default, &sub, "past_due", false).await;
    assert_eq!(listed(&answer, &sub.id)["entitled"], false, "{answer}");
    assert_eq!(
        answer["entitled_statuses"],
        json!(["active", "trialing"]),
        "{answer}"
    );
    drop(default);

    let lenient = TestApp::start_with(Setup {
        backend,
        entitlement: Entitlement::parse("active,trialing,past_due").expect("statuses"),
        ..Setup::default()
    })
    .await;
    let fresh: Vec<Value> = story
        .iter()
        .map(|event| {
            let mut event = event.clone();
            event["id"] = json!(fixtures::new_event_id());
            event
        })
        .collect();
    deliver_in_order(&lenient, &fresh).await;
    let answer = assert_state(&lenient, &sub, "past_due", true).await;
    assert_eq!(listed(&answer, &sub.id)["entitled"], true, "{answer}");
    assert_eq!(answer["subscription"]["id"], sub.id.as_str(), "{answer}");
    assert_eq!(
        answer["entitled_statuses"],
        json!(["active", "trialing", "past_due"]),
        "{answer}"
    );
}

/// What a story's last event says.
struct Ending {
    status: &'static str,
    price: &'static str,
    period_end: i64,
}

/// Subscription `n`'s story: created incomplete and updated active in the same second,
/// the first invoice paid; a month later the renewal fails (past due, same second as the
/// failed invoice); three days later it is paid and the subscription active again (every
/// other one on a new price); every third one is then canceled.
fn chaos_story(n: usize) -> (Sub, Vec<Value>, Ending) {
    let sub = Sub::new(&format!("chaos{n:02}"));
    let t = T0 + i64::try_from(n).expect("n") * 1_000;
    let renewed = t + MONTH;
    let recovered = renewed + 3 * DAY;
    let price = if n.is_multiple_of(2) {
        "price_basic"
    } else {
        "price_pro"
    };
    let first = |e| {
        with_period(
            with_items(e, &[("price_basic", "prod_chaos", 1)]),
            t,
            renewed,
        )
    };
    let second = |e, price| {
        with_period(
            with_items(e, &[(price, "prod_chaos", 1)]),
            renewed,
            renewed + MONTH,
        )
    };
    let renewal = format!("in_{}_2", sub.id);
    let mut events = vec![
        first(subscription_event("created", &sub, t, "incomplete")),
        first(after(
            subscription_event("updated", &sub, t, "active"),
            "incomplete",
        )),
        invoice_event(
            "paid",
            &sub,
            t + 1,
            &format!("in_{}_1", sub.id),
            "subscription_create",
        ),
        second(
            after(
                subscription_event("updated", &sub, renewed, "past_due"),
                "active",
            ),
            "price_basic",
        ),
        invoice_event(
            "payment_failed",
            &sub,
            renewed,
            &renewal,
            "subscription_cycle",
        ),
        second(
            after(
                subscription_event("updated", &sub, recovered, "active"),
                "past_due",
            ),
            price,
        ),
        invoice_event("paid", &sub, recovered, &renewal, "subscription_cycle"),
    ];
    let mut status = "active";
    if n.is_multiple_of(3) {
        events.push(second(
            subscription_event("deleted", &sub, recovered + 7 * DAY, "canceled"),
            price,
        ));
        status = "canceled";
    }
    let ending = Ending {
        status,
        price,
        period_end: renewed + MONTH,
    };
    (sub, events, ending)
}

/// Twenty subscription stories, all their events delivered shuffled (a seeded order),
/// about 30% of them twice, with runs executed at a few points in between and
/// concurrently: every subscription ends as the last event of its story says (status,
/// price, period end), every run completes, and every second delivery is answered
/// `duplicate: true` without starting a run.
async fn shuffled_and_duplicated_deliveries_end_every_story_on_its_last_event(backend: Backend) {
    let app = TestApp::start(backend).await;
    let stories: Vec<(Sub, Vec<Value>, Ending)> = (0..20).map(chaos_story).collect();
    let mut rng = StdRng::seed_from_u64(20_260_729);
    let mut deliveries: Vec<&Value> = stories.iter().flat_map(|(_, events, _)| events).collect();
    let distinct = deliveries.len();
    for n in 0..distinct {
        if rng.random_bool(0.3) {
            deliveries.push(deliveries[n]);
        }
    }
    deliveries.shuffle(&mut rng);

    let mut seen = HashSet::new();
    for (n, event) in deliveries.iter().enumerate() {
        let (status, body) = app.deliver(event).await;
        assert_eq!(status, StatusCode::OK, "{}: {body}", event["type"]);
        let first = seen.insert(event["id"].as_str().expect("id").to_owned());
        assert_eq!(body["duplicate"], !first, "delivery {n}: {body}");
        if !first {
            assert!(
                body["runs"].as_array().is_none_or(Vec::is_empty),
                "a duplicate starts no run: {body}"
            );
        }
        if n % 45 == 44 {
            app.settle().await;
        }
    }
    app.settle().await;

    let runs = app.count("SELECT COUNT(*) FROM runs").await;
    assert_eq!(runs, i64::try_from(distinct).expect("count"));
    let unfinished = app
        .count("SELECT COUNT(*) FROM runs WHERE status <> 'completed'")
        .await;
    if unfinished > 0 {
        let (_, failed) = app.get("/api/v1/runs?status=failed").await;
        panic!("{unfinished} runs did not complete: {failed}");
    }
    for (sub, _, ending) in &stories {
        let answer = assert_state(&app, sub, ending.status, ending.status == "active").await;
        let shown = listed(&answer, &sub.id);
        assert_eq!(shown["source"], "event", "{}: {answer}", sub.id);
        assert_eq!(
            shown["items"],
            json!([{"price": ending.price, "product": "prod_chaos", "quantity": 1}]),
            "{}: {answer}",
            sub.id
        );
        assert_eq!(
            shown["current_period_end"], ending.period_end,
            "{}: {answer}",
            sub.id
        );
    }
}

/// The twenty stories again, shuffled and partly delivered twice, to a `paysteps serve`
/// process on PostgreSQL that is killed (SIGKILL) halfway through, while runs are in
/// flight, and started again: every event Stripe would retry is acknowledged, every run
/// completes, and every subscription ends as the last event of its story says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shuffled_stories_end_right_across_a_process_killed_mid_run() {
    use crate::common::TestDb;
    use crate::common::serve::{
        Serve, check_pool, count, http_client, post_event, wait_until_idle,
    };

    if crate::common::db::postgres_url().is_none() {
        crate::common::db::report_postgres_skipped();
        return;
    }
    let db = TestDb::create(Backend::Postgres).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let client = http_client();
    let mut server = Serve::start("stories", &db.url(), 8, dir.path());
    server.wait_healthy(&client).await;
    let pool = check_pool(&db).await;

    let stories: Vec<(Sub, Vec<Value>, Ending)> = (0..20).map(chaos_story).collect();
    let mut rng = StdRng::seed_from_u64(20_261_203);
    let mut deliveries: Vec<Vec<u8>> = stories
        .iter()
        .flat_map(|(_, events, _)| events)
        .map(|event| serde_json::to_vec(event).expect("json"))
        .collect();
    let distinct = deliveries.len();
    for n in 0..distinct {
        if rng.random_bool(0.3) {
            deliveries.push(deliveries[n].clone());
        }
    }
    deliveries.shuffle(&mut rng);

    let kill_at = deliveries.len() / 2;
    for (n, body) in deliveries.iter().enumerate() {
        if n == kill_at {
            let running = count(&pool, "SELECT COUNT(*) FROM runs WHERE status = 'running'").await;
            server.kill();
            server.restart();
            server.wait_healthy(&client).await;
            eprintln!("stories: killed with {running} runs running after {n} deliveries");
        }
        // As Stripe does, a delivery that got no 200 is sent again.
        let mut tries = 0;
        loop {
            match post_event(&client, server.port, body).await {
                Ok(answer) if answer.status == StatusCode::OK => break,
                other => {
                    tries += 1;
                    assert!(tries < 50, "delivery {n} never acknowledged: {other:?}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }
    assert!(
        wait_until_idle(&pool, std::time::Duration::from_secs(60)).await,
        "runs still unfinished:\n{}",
        server.log_tail(40)
    );
    let runs = count(&pool, "SELECT COUNT(*) FROM runs WHERE function_id LIKE 'subscription-%' OR function_id LIKE 'invoice-%'").await;
    assert_eq!(
        runs,
        i64::try_from(distinct).expect("count"),
        "one run per event"
    );
    let unfinished = count(
        &pool,
        "SELECT COUNT(*) FROM runs WHERE status <> 'completed'",
    )
    .await;
    assert_eq!(unfinished, 0, "{}", server.log_tail(40));
    let rows: Vec<(String, String, Option<String>, Option<i64>)> =
        sqlx::query_as("SELECT id, status, price_id, current_period_end FROM subscriptions")
            .fetch_all(&pool)
            .await
            .expect("subscriptions");
    assert_eq!(rows.len(), stories.len());
    for (sub, _, ending) in &stories {
        let row = rows.iter().find(|r| r.0 == sub.id).expect("row");
        assert_eq!(
            (row.1.as_str(), row.2.as_deref(), row.3),
            (ending.status, Some(ending.price), Some(ending.period_end)),
            "{}",
            sub.id
        );
    }
}
