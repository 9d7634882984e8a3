//! The daily revenue rollup and `GET /api/v1/reports/daily`: signed Stripe deliveries on
//! several days and currencies, cron ticks fired on a manual clock, sums read over HTTP.

use std::time::Duration;

use axum::http::StatusCode;
use paysteps::testing::payments::reports::Day;
use paysteps::testing::payments::rollup::FUNCTION_ID;
use paysteps::testing::stripe::fixtures::Overrides;
use serde_json::{Value, json};

use crate::common::{Backend, TestApp, fixture_event};

crate::on_both_backends!(
    the_rollup_sums_each_day_and_currency_and_a_second_tick_changes_nothing,
    one_tick_after_days_of_downtime_fills_every_missed_day,
    bad_query_parameters_are_refused_and_change_nothing,
    a_sale_at_midnight_counts_on_its_day_whichever_event_comes_first,
    a_day_nets_its_sales_refunds_disputes_and_counts_each_failed_attempt_once,
);

const HOUR: i64 = 3_600;

/// Noon (UTC) of `day`, in seconds: an event time well inside the day.
fn at(day: Day, hour: i64) -> i64 {
    day.start_secs() + hour * HOUR
}

fn today(app: &TestApp) -> Day {
    Day::of_millis(app.clock.now_ms())
}

/// The day `n` days after `day`.
fn after(day: Day, n: i64) -> Day {
    Day::of_secs(day.start_secs() + n * 86_400)
}

/// Delivers a signed PaymentIntent event for `intent` with the amount, currency and time
/// given, and returns once it was accepted.
async fn intent(
    app: &TestApp,
    succeeded: bool,
    intent: &str,
    amount: i64,
    currency: &str,
    created: i64,
) {
    let name = if succeeded {
        "payment_intent.succeeded"
    } else {
        "payment_intent.payment_failed"
    };
    let mut event = fixture_event(
        name,
        Overrides {
            created: Some(created),
            ..Overrides::default()
        },
    );
    event["data"]["object"]["id"] = json!(intent);
    event["data"]["object"]["amount"] = json!(amount);
    event["data"]["object"]["currency"] = json!(currency);
    let (status, body) = app.deliver(&event).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Delivers a signed `invoice.payment_failed` for `invoice`.
async fn failed_invoice(app: &TestApp, invoice: &str, amount: i64, currency: &str, created: i64) {
    let mut event = fixture_event(
        "invoice.payment_failed",
        Overrides {
            created: Some(created),
            ..Overrides::default()
        },
    );
    event["data"]["object"]["id"] = json!(invoice);
    event["data"]["object"]["amount_due"] = json!(amount);
    event["data"]["object"]["currency"] = json!(currency);
    let (status, body) = app.deliver(&event).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Moves the manual clock to `minutes` past midnight UTC of `day`.
fn move_to(app: &TestApp, day: Day, minutes: i64) {
    let target = (day.start_secs() + minutes * 60) * 1000;
    let now = app.clock.now_ms();
    assert!(target >= now, "the clock only moves forward");
    app.clock
        .advance(Duration::from_millis((target - now) as u64));
}

async fn fire(app: &TestApp) -> usize {
    let fired = app.engine.fire_cron().await.expect("fire cron");
    app.settle().await;
    fired
}

/// The report rows for `query`, without their `computed_at`, as
/// `(day, currency, revenue, payments, failed_payments)`.
async fn rows(app: &TestApp, query: &str) -> Vec<(String, String, i64, i64, i64)> {
    let (status, body) = app.get(&format!("/api/v1/reports/daily{query}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["days"]
        .as_array()
        .unwrap_or_else(|| panic!("no days in {body}"))
        .iter()
        .map(|r| {
            assert!(r["computed_at"].as_i64().is_some(), "{r}");
            (
                r["day"].as_str().expect("day").to_owned(),
                r["currency"].as_str().expect("currency").to_owned(),
                r["revenue"].as_i64().expect("revenue"),
                r["payments"].as_i64().expect("payments"),
                r["failed_payments"].as_i64().expect("failed_payments"),
            )
        })
        .collect()
}

fn row(
    day: Day,
    currency: &str,
    revenue: i64,
    payments: i64,
    failed: i64,
) -> (String, String, i64, i64, i64) {
    (
        day.to_string(),
        currency.to_owned(),
        revenue,
        payments,
        failed,
    )
}

async fn rollup_runs(app: &TestApp) -> Vec<Value> {
    let (status, body) = app
        .get(&format!("/api/v1/runs?function={FUNCTION_ID}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let runs = body["runs"].as_array().cloned().unwrap_or_default();
    assert!(runs.iter().all(|r| r["status"] == "completed"), "{body}");
    runs
}

async fn the_rollup_sums_each_day_and_currency_and_a_second_tick_changes_nothing(backend: Backend) {
    let app = TestApp::start(backend).await;
    let today = today(&app);
    let (a, b) = (today.previous(), today);

    // Day a: a decline then a success of the same intent, another success, one in EUR.
    intent(&app, false, "pi_a_retry", 2_500, "usd", at(a, 8)).await;
    intent(&app, true, "pi_a_retry", 2_500, "usd", at(a, 9)).await;
    intent(&app, true, "pi_a_usd", 1_000, "usd", at(a, 23)).await;
    intent(&app, true, "pi_a_eur", 400, "eur", at(a, 0)).await;
    // Day b: one USD success; EUR only fails (a decline and a failed invoice).
    intent(&app, true, "pi_b_usd", 999, "usd", at(b, 1)).await;
    intent(&app, false, "pi_b_eur", 3_000, "eur", at(b, 2)).await;
    failed_invoice(&app, "in_b_eur", 1_500, "eur", at(b, 3)).await;
    // A payment on the next day, seen before the tick, belongs to that day.
    intent(&app, true, "pi_c_usd", 50, "usd", at(after(b, 1), 0)).await;
    app.settle().await;

    assert_eq!(
        fire(&app).await,
        0,
        "the first look only starts the schedule"
    );
    assert!(
        rows(&app, "").await.is_empty(),
        "nothing before the first tick"
    );

    move_to(&app, after(b, 1), 6);
    assert_eq!(fire(&app).await, 1, "00:05 is due");
    let expected = vec![
        row(a, "eur", 400, 1, 0),
        row(a, "usd", 3_500, 2, 1),
        row(b, "eur", 0, 0, 2),
        row(b, "usd", 999, 1, 0),
        row(after(b, 1), "usd", 50, 1, 0),
    ];
    let range = format!("?from={a}&to={}", after(b, 1));
    assert_eq!(rows(&app, &range).await, expected);
    assert_eq!(
        rows(&app, &format!("{range}&currency=EUR")).await,
        vec![row(a, "eur", 400, 1, 0), row(b, "eur", 0, 0, 2)]
    );
    assert_eq!(
        rows(&app, &format!("?from={b}&to={b}")).await,
        expected[2..4].to_vec()
    );
    // The default range is the last 30 days, today included.
    assert_eq!(rows(&app, "").await, expected);

    // The same tick does not fire twice; the next one recomputes the same numbers.
    assert_eq!(fire(&app).await, 0);
    move_to(&app, after(b, 2), 6);
    assert_eq!(fire(&app).await, 1);
    assert_eq!(rows(&app, &range).await, expected);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM daily_reports").await,
        5,
        "no row is written twice"
    );
    let runs = rollup_runs(&app).await;
    assert_eq!(runs.len(), 2, "one run per tick");
}

async fn one_tick_after_days_of_downtime_fills_every_missed_day(backend: Backend) {
    let app = TestApp::start(backend).await;
    let start = today(&app);
    let day = |n: i64| after(start, n);
    intent(&app, true, "pi_0", 700, "usd", at(start, 1)).await;
    app.settle().await;
    assert_eq!(fire(&app).await, 0);
    move_to(&app, day(1), 6);
    assert_eq!(fire(&app).await, 1);
    assert_eq!(
        rows(&app, &format!("?from={start}&to={}", day(1))).await,
        vec![row(start, "usd", 700, 1, 0)]
    );

    // Down for three days: webhooks still arrive, no tick fires.
    intent(&app, true, "pi_1", 100, "usd", at(day(1), 12)).await;
    intent(&app, true, "pi_2", 200, "eur", at(day(2), 12)).await;
    failed_invoice(&app, "in_2", 900, "gbp", at(day(2), 13)).await;
    intent(&app, true, "pi_3", 300, "usd", at(day(3), 12)).await;
    intent(&app, false, "pi_3_declined", 50, "usd", at(day(3), 13)).await;
    // A late failure for a day already rolled up.
    failed_invoice(&app, "in_0", 800, "usd", at(start, 2)).await;
    app.settle().await;

    move_to(&app, day(4), 30);
    assert_eq!(fire(&app).await, 1, "the missed ticks collapse into one");
    assert_eq!(
        rows(&app, &format!("?from={start}&to={}", day(4))).await,
        vec![
            row(start, "usd", 700, 1, 1),
            row(day(1), "usd", 100, 1, 0),
            row(day(2), "eur", 200, 1, 0),
            row(day(2), "gbp", 0, 0, 1),
            row(day(3), "usd", 300, 1, 1),
        ]
    );
    let runs = rollup_runs(&app).await;
    assert_eq!(runs.len(), 2);
    let days = runs[0]["output"]["days"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for n in 0..=4 {
        assert!(
            days.contains(&json!(day(n).to_string())),
            "{} in {days:?}",
            day(n)
        );
    }
}

async fn bad_query_parameters_are_refused_and_change_nothing(backend: Backend) {
    let app = TestApp::start(backend).await;
    let today = today(&app);
    intent(&app, true, "pi_1", 100, "usd", at(today, 0)).await;
    app.settle().await;
    fire(&app).await;
    move_to(&app, after(today, 1), 6);
    assert_eq!(fire(&app).await, 1);
    let before = rows(&app, &format!("?from={today}&to={today}")).await;
    assert_eq!(before, vec![row(today, "usd", 100, 1, 0)]);

    for (query, code, names) in [
        ("?from=2026-13-01", "invalid_date", "'from'"),
        ("?from=2026-02-30", "invalid_date", "'from'"),
        ("?to=22-11-2026", "invalid_date", "'to'"),
        ("?from=2026-11-22&to=yesterday", "invalid_date", "'to'"),
        ("?from=2026-11-23&to=2026-11-22", "invalid_range", "'from'"),
        ("?from=2025-01-01&to=2026-01-02", "invalid_range", "366"),
        (
            "?from=2026-11-01&to=2026-11-22&currency=dollars",
            "invalid_currency",
            "'currency'",
        ),
        (
            "?from=2026-11-01&to=2026-11-22&currency=u$d",
            "invalid_currency",
            "'currency'",
        ),
    ] {
        let (status, body) = app.get(&format!("/api/v1/reports/daily{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["error"]["code"], code, "{query}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(names), "{query}: {message}");
    }
    // 366 days, both ends included, is the longest range.
    let (status, body) = app
        .get("/api/v1/reports/daily?from=2028-01-01&to=2028-12-31")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    assert_eq!(
        rows(&app, &format!("?from={today}&to={today}")).await,
        before
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM daily_reports").await, 1);
    assert_eq!(rollup_runs(&app).await.len(), 1);
}

async fn a_sale_at_midnight_counts_on_its_day_whichever_event_comes_first(backend: Backend) {
    let app = TestApp::start(backend).await;
    let (x, y) = (today(&app), after(today(&app), 1));
    fire(&app).await;
    // The PaymentIntent succeeds at 23:59:58; its Checkout session's completion is
    // created at 00:00:02. Told twice: the completion first, then the success first.
    for (tag, completion_first) in [("late", true), ("early", false)] {
        let pi = format!("pi_1PgafyB7WZ01zgkWSjxsAJo3_{tag}");
        let mut completed = fixture_event(
            "checkout.session.completed.payment",
            Overrides {
                created: Some(y.start_secs() + 2),
                ..Overrides::default()
            },
        );
        completed["data"]["object"]["payment_intent"] = json!(pi);
        completed["data"]["object"]["id"] = json!(format!("cs_{tag}"));
        if completion_first {
            let (status, body) = app.deliver(&completed).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            app.settle().await;
        }
        intent(&app, true, &pi, 1_099, "usd", y.start_secs() - 2).await;
        app.settle().await;
        if !completion_first {
            let (status, body) = app.deliver(&completed).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            app.settle().await;
        }
    }
    move_to(&app, after(y, 1), 6);
    assert_eq!(fire(&app).await, 1);
    let range = format!("?from={x}&to={y}");
    assert_eq!(rows(&app, &range).await, vec![row(x, "usd", 2_198, 2, 0)]);
}

/// `(day, revenue, payments, refunds, disputed, net, failed_payments)` of each USD row.
type Money = (String, i64, i64, i64, i64, i64, i64);

async fn money_rows(app: &TestApp, query: &str) -> Vec<Money> {
    let (status, body) = app.get(&format!("/api/v1/reports/daily{query}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let field = |r: &Value, name: &str| r[name].as_i64().unwrap_or_else(|| panic!("{name}: {r}"));
    body["days"]
        .as_array()
        .unwrap_or_else(|| panic!("no days in {body}"))
        .iter()
        .filter(|r| r["currency"] == "usd")
        .map(|r| {
            (
                r["day"].as_str().expect("day").to_owned(),
                field(r, "revenue"),
                field(r, "payments"),
                field(r, "refunds"),
                field(r, "disputed"),
                field(r, "net"),
                field(r, "failed_payments"),
            )
        })
        .collect()
}

/// A fixture at `created`, with the changes `edit` makes.
async fn deliver_edited(app: &TestApp, name: &str, created: i64, edit: impl FnOnce(&mut Value)) {
    let mut event = fixture_event(
        name,
        Overrides {
            created: Some(created),
            ..Overrides::default()
        },
    );
    edit(&mut event["data"]["object"]);
    let (status, body) = app.deliver(&event).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.settle().await;
}

async fn a_day_nets_its_sales_refunds_disputes_and_counts_each_failed_attempt_once(
    backend: Backend,
) {
    let app = TestApp::start(backend).await;
    let d = today(&app);
    let (before, next) = (d.previous(), after(d, 1));
    fire(&app).await;

    // Sold the day before: 3000 (refunded on d, but the refund fails) and the 2000 that
    // is disputed on d.
    intent(&app, true, "pi_refund_fails", 3_000, "usd", at(before, 10)).await;
    intent(
        &app,
        true,
        "pi_3Pgc6tB7WZ01zgkW1j59pjom",
        2_000,
        "usd",
        at(before, 11),
    )
    .await;
    // Sold on d: 1099 at 23:59:58 (its checkout completes after midnight) and 5000.
    intent(
        &app,
        true,
        "pi_1PgafyB7WZ01zgkWSjxsAJo3",
        1_099,
        "usd",
        d.end_secs() - 2,
    )
    .await;
    deliver_edited(
        &app,
        "checkout.session.completed.payment",
        d.end_secs() + 2,
        |_| {},
    )
    .await;
    intent(&app, true, "pi_partly_refunded", 5_000, "usd", at(d, 1)).await;
    app.settle().await;

    // 2000 of the 5000 refunded at noon: the refund, then the charge's figure.
    let refund = |id: &'static str, pi: &'static str, amount: i64, created: i64| {
        move |o: &mut Value| {
            o["id"] = json!(id);
            o["payment_intent"] = json!(pi);
            o["charge"] = json!(format!("ch_{pi}"));
            o["amount"] = json!(amount);
            o["created"] = json!(created);
        }
    };
    let noon = at(d, 12);
    deliver_edited(
        &app,
        "refund.created",
        noon,
        refund("re_part", "pi_partly_refunded", 2_000, noon),
    )
    .await;
    deliver_edited(&app, "charge.refunded", noon + 1, |o| {
        o["id"] = json!("ch_pi_partly_refunded");
        o["payment_intent"] = json!("pi_partly_refunded");
        o["amount"] = json!(5_000);
        o["amount_refunded"] = json!(2_000);
        o["created"] = json!(at(d, 1));
        o.as_object_mut().expect("charge").remove("refunds");
    })
    .await;
    // The whole 3000 refunded at 13:00, and the refund fails at 14:00.
    let one_pm = at(d, 13);
    deliver_edited(
        &app,
        "refund.created",
        one_pm,
        refund("re_fails", "pi_refund_fails", 3_000, one_pm),
    )
    .await;
    deliver_edited(
        &app,
        "refund.failed",
        at(d, 14),
        refund("re_fails", "pi_refund_fails", 3_000, one_pm),
    )
    .await;
    // The 2000 disputed: withdrawn at 15:00 on d, reinstated on the next day.
    let withdrawal = at(d, 15);
    deliver_edited(&app, "charge.dispute.funds_withdrawn", withdrawal, |o| {
        o["balance_transactions"][0]["created"] = json!(withdrawal);
    })
    .await;
    deliver_edited(&app, "charge.dispute.funds_reinstated", at(next, 10), |o| {
        o["balance_transactions"][0]["created"] = json!(withdrawal);
        o["balance_transactions"][1]["created"] = json!(at(next, 10));
    })
    .await;
    // A renewal fails at 16:00: the invoice and its PaymentIntent each report it.
    deliver_edited(&app, "payment_intent.payment_failed", at(d, 16), |o| {
        o["id"] = json!("pi_renewal");
        o["amount"] = json!(2_000);
        o["metadata"] = json!({});
    })
    .await;
    deliver_edited(&app, "invoice.payment_failed", at(d, 16) + 1, |_| {}).await;

    move_to(&app, after(next, 1), 6);
    assert_eq!(fire(&app).await, 1);
    let range = format!("?from={before}&to={next}");
    let day = |d: Day, revenue, payments, refunds, disputed, failed| {
        let net = revenue - refunds - disputed;
        (
            d.to_string(),
            revenue,
            payments,
            refunds,
            disputed,
            net,
            failed,
        )
    };
    assert_eq!(
        money_rows(&app, &range).await,
        vec![
            day(before, 5_000, 2, 0, 0, 0),
            day(d, 6_099, 2, 2_000, 2_000, 1),
            day(next, 0, 0, 0, -2_000, 0),
        ]
    );
}
