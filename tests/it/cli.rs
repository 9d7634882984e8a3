//! The `paysteps` binary itself: `serve` refusing a bad configuration, `migrate`, and
//! `trigger` sending signed fixtures to a running server.

use std::process::{Command, Output};

use paysteps::RunStatus;
use paysteps::testing::store::RunFilter;
use tokio::net::TcpListener;

use crate::common::{Backend, SECRET, TestApp};

/// The binary, run in an empty directory (no `.env`) with no paysteps variables set.
fn paysteps(dir: &std::path::Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_paysteps"));
    command.args(args).current_dir(dir);
    for var in [
        "DATABASE_URL",
        "STRIPE_WEBHOOK_SECRET",
        "PAYSTEPS_DASHBOARD_TOKEN",
        "PAYSTEPS_BIND",
        "PAYSTEPS_URL",
    ] {
        command.env_remove(var);
    }
    command
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn serve_refuses_to_start_and_names_what_is_missing() {
    let dir = tempfile::tempdir().expect("dir");
    let output = paysteps(dir.path(), &["serve"]).output().expect("run");
    assert!(!output.status.success());
    let said = text(&output);
    for missing in [
        "DATABASE_URL",
        "STRIPE_WEBHOOK_SECRET",
        "PAYSTEPS_DASHBOARD_TOKEN",
    ] {
        assert!(said.contains(missing), "{said}");
    }
    let output = paysteps(dir.path(), &["serve"])
        .env("DATABASE_URL", "sqlite://x.db")
        .env("STRIPE_WEBHOOK_SECRET", "whsec_x")
        .output()
        .expect("run");
    assert!(!output.status.success());
    let said = text(&output);
    assert!(said.contains("PAYSTEPS_DASHBOARD_TOKEN"), "{said}");
    assert!(!said.contains("STRIPE_WEBHOOK_SECRET (or"), "{said}");
    assert!(!said.contains("whsec_x"), "a secret was printed: {said}");
    assert!(
        !dir.path().join("x.db").exists(),
        "serve touched the database before refusing"
    );
}

#[test]
fn migrate_creates_the_schema() {
    let dir = tempfile::tempdir().expect("dir");
    let output = paysteps(dir.path(), &["migrate", "--db", "fresh.db"])
        .output()
        .expect("run");
    assert!(output.status.success(), "{}", text(&output));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let store = paysteps::testing::store::Store::connect(
            &dir.path().join("fresh.db").display().to_string(),
        )
        .await
        .expect("open");
        let subscriptions = store
            .count("SELECT COUNT(*) FROM subscriptions", vec![])
            .await
            .expect("the migrated schema has subscriptions");
        assert_eq!(subscriptions, 0);
        store.close().await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_sends_signed_fixtures_that_start_runs() {
    let app = TestApp::start(Backend::Sqlite).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let router = app.router.clone();
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let dir = tempfile::tempdir().expect("dir");

    let mut seen = Vec::new();
    for (event_type, extra) in [
        (
            "checkout.session.completed",
            vec!["--user", "user_42", "--customer", "cus_42"],
        ),
        ("checkout.session.completed", vec!["--mode", "payment"]),
        ("customer.subscription.created", vec![]),
        ("customer.subscription.updated", vec![]),
        ("customer.subscription.deleted", vec![]),
        ("invoice.paid", vec![]),
        ("invoice.payment_failed", vec![]),
        ("payment_intent.succeeded", vec![]),
        ("payment_intent.payment_failed", vec![]),
        // A new subscription: the fixture's was deleted above, and stays canceled.
        (
            "checkout.session.completed",
            vec![
                "--user",
                "user_42",
                "--customer",
                "cus_42",
                "--subscription",
                "sub_42",
            ],
        ),
    ] {
        let mut args = vec!["trigger", event_type, "--url", &url, "--secret", SECRET];
        args.extend(extra);
        let dir = dir.path().to_owned();
        let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
        let output = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            paysteps(&dir, &args).output().expect("run")
        })
        .await
        .expect("join");
        let said = text(&output);
        assert!(output.status.success(), "{event_type}: {said}");
        assert!(said.contains("run started: run_"), "{event_type}: {said}");
        let id = said
            .split_whitespace()
            .find(|w| w.starts_with("evt_"))
            .expect("event id printed")
            .to_owned();
        assert!(!seen.contains(&id), "trigger reused an event id");
        seen.push(id);
    }
    app.settle().await;
    let runs = app.store().runs(&RunFilter::default()).await.expect("runs");
    assert_eq!(runs.len(), 10, "{runs:#?}");
    assert!(
        runs.iter().all(|r| r.status == RunStatus::Completed),
        "{runs:?}"
    );
    let (_, body) = app.get("/api/v1/users/user_42/subscription").await;
    assert_eq!(body["subscribed"], true, "{body}");

    // A wrong secret is refused by the server, and trigger says so.
    let dir = dir.path().to_owned();
    let url2 = url.clone();
    let output = tokio::task::spawn_blocking(move || {
        paysteps(
            &dir,
            &[
                "trigger",
                "invoice.paid",
                "--url",
                &url2,
                "--secret",
                "whsec_wrong",
            ],
        )
        .output()
        .expect("run")
    })
    .await
    .expect("join");
    assert!(!output.status.success());
    assert!(
        text(&output).contains("signature_mismatch"),
        "{}",
        text(&output)
    );
    server.abort();
}
