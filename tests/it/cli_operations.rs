//! `paysteps runs`, `replay` and `cancel` against a server on loopback that requires the
//! dashboard token.

use std::process::Output;

use paysteps::testing::http::Access;
use paysteps::testing::stripe::fixtures::Overrides;
use tokio::net::TcpListener;

use crate::common::{Backend, Setup, TestApp, first_run};

crate::on_both_backends!(the_cli_lists_replays_and_cancels_runs_through_the_api);

const TOKEN: &str = "cli-dashboard-token";
const FAILED_FN: &str = "payment-intent-payment-failed";

/// Runs the binary with `args` (no paysteps variables inherited), stdin empty.
async fn paysteps(args: &[&str]) -> (bool, String) {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let output: Output = tokio::task::spawn_blocking(move || {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_paysteps"));
        command
            .args(&args)
            .current_dir(std::env::temp_dir())
            .stdin(std::process::Stdio::null());
        for var in ["PAYSTEPS_DASHBOARD_TOKEN", "PAYSTEPS_URL", "DATABASE_URL"] {
            command.env_remove(var);
        }
        command.output().expect("run paysteps")
    })
    .await
    .expect("join");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

async fn status(app: &TestApp, run_id: &str) -> String {
    app.store()
        .run(&run_id.parse().expect("a run id"))
        .await
        .expect("read")
        .expect("run")
        .status
        .to_string()
}

async fn the_cli_lists_replays_and_cancels_runs_through_the_api(backend: Backend) {
    let app = TestApp::start_with(Setup {
        backend,
        access: Access::token(TOKEN),
        ..Setup::default()
    })
    .await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let router = app.router.clone();
    let server = tokio::spawn(async move { axum::serve(listener, router).await });

    app.faults.fail_always("record-payment-failure");
    let mut failed = Vec::new();
    for customer in ["cus_cli_a", "cus_cli_b"] {
        failed.push(first_run(
            &app.deliver_fixture(
                "payment_intent.payment_failed",
                Overrides {
                    customer: Some(customer.into()),
                    ..Overrides::default()
                },
            )
            .await,
        ));
    }
    app.settle().await;
    app.faults.clear("record-payment-failure");
    let runs = app.count("SELECT COUNT(*) FROM runs").await;

    let (ok, said) = paysteps(&["runs", "--status", "failed", "--url", &url]).await;
    assert!(!ok, "{said}");
    assert!(
        said.contains("401") && said.contains("PAYSTEPS_DASHBOARD_TOKEN"),
        "{said}"
    );
    let (ok, said) = paysteps(&["replay", &failed[0], "--url", &url]).await;
    assert!(!ok, "{said}");
    assert_eq!(app.count("SELECT COUNT(*) FROM runs").await, runs);

    let auth = ["--url", url.as_str(), "--token", TOKEN];
    let with = |args: &[&str]| -> Vec<String> {
        args.iter()
            .chain(auth.iter())
            .map(|a| (*a).to_owned())
            .collect()
    };
    let call = |args: Vec<String>| async move {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        paysteps(&refs).await
    };

    let (ok, said) = call(with(&[
        "runs",
        "--status",
        "failed",
        "--function",
        FAILED_FN,
    ]))
    .await;
    assert!(ok, "{said}");
    for id in &failed {
        assert!(said.contains(id.as_str()), "{said}");
    }
    assert!(said.contains("failed 2"), "{said}");

    let (ok, said) = call(with(&["replay", &failed[0]])).await;
    assert!(ok, "{said}");
    assert!(said.contains("replay started: run_"), "{said}");
    assert!(said.contains("from_failure"), "{said}");

    // A selection without --yes asks, and an empty answer replays nothing.
    let (ok, said) = call(with(&[
        "replay",
        "--status",
        "failed",
        "--function",
        FAILED_FN,
        "--since",
        "1h",
    ]))
    .await;
    assert!(ok, "{said}");
    assert!(
        said.contains("1 runs match") && said.contains("nothing replayed"),
        "{said}"
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM runs").await, runs + 1);

    let (ok, said) = call(with(&[
        "replay",
        "--status",
        "failed",
        "--function",
        FAILED_FN,
        "--since",
        "1h",
        "--yes",
        "--from-start",
    ]))
    .await;
    assert!(ok, "{said}");
    assert!(said.contains("replayed 1 runs (from_start)"), "{said}");
    app.settle().await;
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM runs WHERE replay_of IN ('{}', '{}') AND status = 'completed'",
            failed[0], failed[1]
        ))
        .await,
        2
    );

    let queued = first_run(
        &app.deliver_fixture("payment_intent.succeeded", Overrides::default())
            .await,
    );
    let (ok, said) = call(with(&["cancel", &queued])).await;
    assert!(ok, "{said}");
    assert_eq!(status(&app, &queued).await, "cancelled");
    let (ok, said) = call(with(&["cancel", &failed[0]])).await;
    assert!(!ok, "an ended run cannot be cancelled: {said}");
    assert!(said.contains("409"), "{said}");

    let more = first_run(
        &app.deliver_fixture("payment_intent.succeeded", Overrides::default())
            .await,
    );
    let (ok, said) = call(with(&[
        "cancel",
        "--function",
        "payment-intent-succeeded",
        "--yes",
    ]))
    .await;
    assert!(ok, "{said}");
    assert!(said.contains("cancelled 1 runs"), "{said}");
    assert_eq!(status(&app, &more).await, "cancelled");
    server.abort();
}

#[tokio::test]
async fn dev_off_loopback_refuses_to_start_without_the_dashboard_token() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("dev.db");
    let db = db.display().to_string();
    let (ok, said) = paysteps(&["dev", "--bind", "0.0.0.0:0", "--db", &db]).await;
    assert!(!ok, "{said}");
    assert!(said.contains("PAYSTEPS_DASHBOARD_TOKEN"), "{said}");
    assert!(
        !std::path::Path::new(&db).exists(),
        "dev touched the database before refusing"
    );
}
