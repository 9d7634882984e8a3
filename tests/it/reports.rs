//! The daily revenue rollup and `GET /api/v1/reports/daily`: signed Stripe deliveries on
//! several days and currencies, cron ticks fired on a manual clock, sums read over HTTP.

use std::time::Duration;

use axum::http::StatusCode;
use paysteps::payments::reports::Day;
use paysteps::payments::rollup::FUNCTION_ID;
use paysteps::stripe::fixtures::Overrides;
use serde_json::{Value, json};

use crate::common::{Backend, TestApp, fixture_event};

crate::on_both_backends!(
    the_rollup_sums_each_day_and_currency_and_a_second_tick_changes_nothing,
    one_tick_after_days_of_downtime_fills_every_missed_day,
    bad_query_parameters_are_refused_and_change_nothing,
    a_payment_moved_past_midnight_by_a_newer_event_leaves_its_earlier_day,
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

async fn a_payment_moved_past_midnight_by_a_newer_event_leaves_its_earlier_day(backend: Backend) {
    let app = TestApp::start(backend).await;
    let (x, y) = (today(&app), after(today(&app), 1));
    // The fixtures' Checkout session pays this PaymentIntent: 1099 usd.
    let pi = "pi_1PgafyB7WZ01zgkWSjxsAJo3";
    intent(&app, true, pi, 1_099, "usd", y.start_secs() - 10).await;
    app.settle().await;
    fire(&app).await;
    move_to(&app, y, 6);
    assert_eq!(fire(&app).await, 1);
    let range = format!("?from={x}&to={y}");
    assert_eq!(rows(&app, &range).await, vec![row(x, "usd", 1_099, 1, 0)]);

    // The session's completion, 15 s later, is the payment's newest event: it now
    // belongs to the next day, and only there.
    let completed = fixture_event(
        "checkout.session.completed.payment",
        Overrides {
            created: Some(y.start_secs() + 5),
            ..Overrides::default()
        },
    );
    let (status, body) = app.deliver(&completed).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.settle().await;
    move_to(&app, after(y, 1), 6);
    assert_eq!(fire(&app).await, 1);
    assert_eq!(rows(&app, &range).await, vec![row(y, "usd", 1_099, 1, 0)]);
}
