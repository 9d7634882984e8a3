//! `paysteps prune` and `paysteps backup`, run as the binary against real databases.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use paysteps::testing::engine::{Clock, Engine, Function, Trigger, system_now_ms};
use paysteps::testing::stripe::fixtures::Overrides;
use paysteps::testing::stripe::signer;
use sqlx::Connection;

use crate::common::{Backend, SECRET, TestDb, eventually, fixture_event, start_run, test_config};

crate::on_both_backends!(prune_dry_run_prints_the_counts_and_prune_deletes_them);

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// The binary, run in `dir` (no `.env`) with no paysteps variables set.
fn paysteps(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_paysteps"));
    command.args(args).current_dir(dir);
    for var in [
        "DATABASE_URL",
        "STRIPE_WEBHOOK_SECRET",
        "PAYSTEPS_DASHBOARD_TOKEN",
        "PAYSTEPS_BIND",
        "PAYSTEPS_RETENTION_DAYS",
    ] {
        command.env_remove(var);
    }
    command
}

async fn output(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().expect("run paysteps"))
        .await
        .expect("join")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The count printed for `kind` (`  runs                3`).
fn printed(said: &str, kind: &str) -> u64 {
    said.lines()
        .find_map(|line| {
            let rest = line.trim_start().strip_prefix(kind)?;
            rest.trim().parse().ok()
        })
        .unwrap_or_else(|| panic!("no count of {kind} in:\n{said}"))
}

fn chore() -> Function {
    Function::new("chore", Trigger::event("app/chore"), |ctx| async move {
        ctx.step
            .run("work", || async { Ok("done".to_owned()) })
            .await
    })
}

fn napper() -> Function {
    Function::new("napper", Trigger::event("app/nap"), |ctx| async move {
        ctx.step
            .sleep("nap", Duration::from_secs(365 * 24 * 60 * 60))
            .await
    })
}

async fn prune_dry_run_prints_the_counts_and_prune_deletes_them(backend: Backend) {
    let db = TestDb::create(backend).await;
    // Everything below happened 40 days ago.
    let clock = Clock::manual(system_now_ms() - 40 * DAY_MS);
    let engine = Engine::builder(db.store().await)
        .config(test_config(clock))
        .register(chore())
        .register(napper())
        .build()
        .expect("engine");
    for _ in 0..3 {
        start_run(&engine, "app/chore").await;
    }
    start_run(&engine, "app/nap").await;
    engine.run_until_idle().await.expect("run");
    let store = engine.store().clone();
    let runs = || store.count("SELECT COUNT(*) FROM runs", vec![]);
    assert_eq!(runs().await.expect("count"), 4);

    let dir = tempfile::tempdir().expect("dir");
    let url = db.url();
    let dry = output(paysteps(dir.path(), &["prune", "--dry-run", "--db", &url])).await;
    let said = text(&dry);
    assert!(dry.status.success(), "{said}");
    assert!(said.contains("would delete"), "{said}");
    assert_eq!(printed(&said, "runs"), 3, "{said}");
    assert_eq!(printed(&said, "steps"), 3, "{said}");
    assert_eq!(printed(&said, "events"), 3, "{said}");
    assert_eq!(runs().await.expect("count"), 4, "a dry run deletes nothing");

    let pruned = output(paysteps(dir.path(), &["prune", "--db", &url])).await;
    let said = text(&pruned);
    assert!(pruned.status.success(), "{said}");
    assert!(said.contains("deleted"), "{said}");
    assert_eq!(printed(&said, "runs"), 3, "{said}");
    assert_eq!(printed(&said, "events"), 3, "{said}");
    let (status,): (String,) = store
        .fetch_one("SELECT status FROM runs", vec![])
        .await
        .expect("the run left");
    assert_eq!(status, "sleeping", "a sleeping run stays however old");

    // With retention off, nothing of the journal goes.
    let mut forever = paysteps(dir.path(), &["prune", "--db", &url]);
    forever.env("PAYSTEPS_RETENTION_DAYS", "0");
    let kept = output(forever).await;
    assert!(kept.status.success(), "{}", text(&kept));
    assert!(text(&kept).contains("kept for ever"), "{}", text(&kept));
    assert_eq!(runs().await.expect("count"), 1);
    engine.store().close().await;
}

#[tokio::test]
async fn negative_retention_days_are_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let refused = output(paysteps(
        dir.path(),
        &["prune", "--retention-days", "-3", "--db", "x.db"],
    ))
    .await;
    let said = text(&refused);
    assert!(!refused.status.success(), "{said}");
    assert!(said.contains("0 to keep everything"), "{said}");
    assert!(said.contains("-3"), "{said}");

    let mut dev = paysteps(
        dir.path(),
        &["dev", "--db", "y.db", "--bind", "127.0.0.1:0"],
    );
    dev.env("PAYSTEPS_RETENTION_DAYS", "-1");
    let refused = output(dev).await;
    let said = text(&refused);
    assert!(!refused.status.success(), "{said}");
    assert!(said.contains("PAYSTEPS_RETENTION_DAYS"), "{said}");
    assert!(said.contains("0 to keep everything"), "{said}");
    for file in ["x.db", "y.db"] {
        assert!(!dir.path().join(file).exists(), "{file} was created");
    }
}

#[tokio::test]
async fn prune_of_a_missing_sqlite_file_is_refused_and_creates_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    for args in [
        &["prune", "--db", "typo.db"][..],
        &["prune", "--dry-run", "--db", "sqlite://typo.db"][..],
    ] {
        let refused = output(paysteps(dir.path(), args)).await;
        let said = text(&refused);
        assert!(!refused.status.success(), "{said}");
        assert!(said.contains("no SQLite database at typo.db"), "{said}");
        assert!(!dir.path().join("typo.db").exists(), "typo.db was created");
    }
}

/// `paysteps dev` on `db`, and the address it listens on.
fn start_dev(dir: &Path, db: &str) -> (Child, String) {
    let mut child = paysteps(dir, &["dev", "--db", db, "--bind", "127.0.0.1:0"])
        .env("STRIPE_WEBHOOK_SECRET", SECRET)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start paysteps dev");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let base = loop {
        let line = lines
            .next()
            .expect("dev printed its webhook URL")
            .expect("read");
        if let Some(url) = line.trim().strip_prefix("webhook URL") {
            let url = url.trim();
            break url
                .strip_suffix("/api/stripe/webhook")
                .expect("webhook URL")
                .to_owned();
        }
    };
    // Keep reading so that dev never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (child, base)
}

async fn count<'c, E: sqlx::SqliteExecutor<'c>>(conn: E, table: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(conn)
        .await
        .expect("count");
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_copies_a_live_database_and_never_overwrites() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("live.db");
    let db = db.to_str().expect("path");
    let (mut dev, base) = start_dev(dir.path(), db);
    let client = reqwest::Client::new();
    for _ in 0..5 {
        let event = fixture_event("payment_intent.succeeded", Overrides::default());
        let body = serde_json::to_vec(&event).expect("json");
        let signature = signer::sign(SECRET, &body, system_now_ms() / 1000);
        let answer = client
            .post(format!("{base}/api/stripe/webhook"))
            .header("content-type", "application/json")
            .header("stripe-signature", signature)
            .body(body)
            .send()
            .await
            .expect("deliver");
        assert_eq!(answer.status(), reqwest::StatusCode::OK);
    }
    let live = sqlx::SqlitePool::connect(&format!("sqlite://{db}"))
        .await
        .expect("open the live database");
    let settled = eventually(Duration::from_secs(30), || {
        let live = live.clone();
        async move {
            let (n,): (i64,) =
                sqlx::query_as("SELECT COUNT(*) FROM runs WHERE status = 'completed'")
                    .fetch_one(&live)
                    .await
                    .expect("count");
            n == 5
        }
    })
    .await;
    assert!(settled, "5 runs completed");

    let copy = dir.path().join("copy.db");
    let copy_path = copy.to_str().expect("path");
    let backed = output(paysteps(
        dir.path(),
        &["backup", copy_path, "--db", &format!("sqlite://{db}")],
    ))
    .await;
    let said = text(&backed);
    assert!(backed.status.success(), "{said}");
    assert!(said.contains("5 events, 5 runs"), "{said}");
    let mut restored = sqlx::SqliteConnection::connect(&format!("sqlite://{copy_path}"))
        .await
        .expect("open the copy");
    for table in ["events", "runs", "payments"] {
        assert_eq!(
            count(&mut restored, table).await,
            count(&live, table).await,
            "{table}"
        );
    }
    assert!(
        count(&mut restored, "payments").await > 0,
        "business rows are copied"
    );
    let (check,): (String,) = sqlx::query_as("PRAGMA integrity_check")
        .fetch_one(&mut restored)
        .await
        .expect("check");
    assert_eq!(check, "ok");
    let _ = restored.close().await;

    let size = std::fs::metadata(&copy).expect("copy").len();
    let again = output(paysteps(dir.path(), &["backup", copy_path, "--db", db])).await;
    let said = text(&again);
    assert!(!again.status.success(), "{said}");
    assert!(said.contains("already exists"), "{said}");
    assert_eq!(std::fs::metadata(&copy).expect("copy").len(), size);

    live.close().await;
    let _ = dev.kill();
    let _ = dev.wait();
}

#[tokio::test]
async fn backup_names_pg_dump_for_postgres_and_refuses_a_missing_database() {
    let dir = tempfile::tempdir().expect("dir");
    let refused = output(paysteps(
        dir.path(),
        &[
            "backup",
            "out.db",
            "--db",
            "postgres://postgres@127.0.0.1:1/paysteps",
        ],
    ))
    .await;
    let said = text(&refused);
    assert!(!refused.status.success(), "{said}");
    assert!(said.contains("pg_dump"), "{said}");

    let refused = output(paysteps(
        dir.path(),
        &["backup", "out.db", "--db", "missing.db"],
    ))
    .await;
    let said = text(&refused);
    assert!(!refused.status.success(), "{said}");
    assert!(said.contains("no SQLite database"), "{said}");
    for file in ["out.db", "missing.db"] {
        assert!(!dir.path().join(file).exists(), "{file} was created");
    }
}
