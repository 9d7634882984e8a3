//! The binary never prints a secret: not the database password when it cannot reach the
//! database, nor when it migrates or starts, nor in `--help`, where clap would show the
//! values of the environment variables it reads.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::common::db::{postgres_url, report_postgres_skipped};
use crate::common::serve::free_port;
use crate::common::{Backend, TestDb};

const PASSWORD: &str = "pw-Never-Shown-5f3e";
const WEBHOOK_SECRET: &str = "whsec_never_shown_0a1b2c3d4e5f";
const DASHBOARD_TOKEN: &str = "dashboard-token-that-is-never-shown-77";
const EVENT_KEY: &str = "event-key-never-shown-88";
const API_KEY: &str = "rk_test_never_shown_99";

/// Every secret the environment holds in these tests.
const SECRETS: [&str; 5] = [
    PASSWORD,
    WEBHOOK_SECRET,
    DASHBOARD_TOKEN,
    EVENT_KEY,
    API_KEY,
];

/// `paysteps` with `args`, every secret-bearing variable set (the database URL to
/// `database_url`), from an empty directory (no `.env`), logging at `info`.
fn paysteps(args: &[&str], database_url: &str, dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_paysteps"));
    command
        .args(args)
        .current_dir(dir)
        .env("DATABASE_URL", database_url)
        .env("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .env("PAYSTEPS_DASHBOARD_TOKEN", DASHBOARD_TOKEN)
        .env("PAYSTEPS_EVENT_KEY", EVENT_KEY)
        .env("STRIPE_API_KEY", API_KEY)
        .env("PAYSTEPS_BIND", "127.0.0.1:0")
        .env("PAYSTEPS_URL", format!("http://127.0.0.1:{}", free_port()))
        .env("RUST_LOG", "info")
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null());
    command
}

fn all_output(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{what} printed {secret}:\n{text}");
    }
}

/// A PostgreSQL URL with a password on a port nothing listens on.
fn refusing_url() -> (String, String) {
    let port = free_port();
    (
        format!("postgres://paysteps:{PASSWORD}@127.0.0.1:{port}/paysteps"),
        format!("postgres://paysteps:***@127.0.0.1:{port}/paysteps"),
    )
}

#[test]
fn a_failed_start_and_a_failed_migration_print_no_password() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (url, shown) = refusing_url();
    for args in [&["serve"][..], &["dev"], &["migrate"]] {
        let output = paysteps(args, &url, dir.path())
            .output()
            .expect("run paysteps");
        let text = all_output(&output);
        assert!(!output.status.success(), "{args:?} started:\n{text}");
        assert!(text.contains("opening the database"), "{args:?}:\n{text}");
        assert_no_secret(&format!("{args:?}"), &text);
        if args != ["migrate"] {
            assert!(
                text.contains(&shown),
                "{args:?} names the database:\n{text}"
            );
        }
    }
    let mut trigger = paysteps(&["trigger", "invoice.paid"], &url, dir.path());
    trigger.env_remove("STRIPE_WEBHOOK_SECRET");
    let output = trigger.output().expect("run paysteps trigger");
    let text = all_output(&output);
    assert!(!output.status.success(), "{text}");
    assert!(text.contains(&shown), "{text}");
    assert_no_secret("trigger", &text);
}

#[test]
fn help_shows_which_variables_are_read_and_none_of_their_values() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (url, _) = refusing_url();
    let commands: [&[&str]; 12] = [
        &["--help"],
        &["dev", "--help"],
        &["serve", "--help"],
        &["migrate", "--help"],
        &["trigger", "--help"],
        &["send", "--help"],
        &["webhooks", "--help"],
        &["webhooks", "add", "--help"],
        &["runs", "--help"],
        &["replay", "--help"],
        &["cancel", "--help"],
        &["serve", "-h"],
    ];
    for args in commands {
        let output = paysteps(args, &url, dir.path())
            .output()
            .expect("run paysteps");
        let text = all_output(&output);
        assert!(output.status.success(), "{args:?}:\n{text}");
        assert_no_secret(&format!("{args:?}"), &text);
        if ["dev", "serve", "migrate", "trigger"].contains(&args[0]) {
            assert!(text.contains("[env: DATABASE_URL]"), "{args:?}:\n{text}");
        }
        if ["dev", "serve"].contains(&args[0]) {
            for variable in [
                "STRIPE_WEBHOOK_SECRET",
                "PAYSTEPS_DASHBOARD_TOKEN",
                "STRIPE_API_KEY",
            ] {
                assert!(
                    text.contains(&format!("[env: {variable}]")),
                    "{args:?}:\n{text}"
                );
            }
        }
    }
}

/// `url` with a password: its own, or [`PASSWORD`] put in (the test server trusts
/// loopback, so any password connects). Returns the URL and the password in it.
fn with_password(url: &str) -> (String, String) {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (user_info, host) = rest.split_once('@').expect("a user in TEST_DATABASE_URL");
    match user_info.split_once(':') {
        Some((_, password)) if !password.is_empty() => (url.to_owned(), password.to_owned()),
        _ => {
            let user = user_info.split(':').next().unwrap_or_default();
            (
                format!("{scheme}://{user}:{PASSWORD}@{host}"),
                PASSWORD.to_owned(),
            )
        }
    }
}

#[tokio::test]
async fn migrate_and_dev_on_postgresql_name_the_database_without_its_password() {
    if postgres_url().is_none() {
        report_postgres_skipped();
        return;
    }
    let db = TestDb::create(Backend::Postgres).await;
    let (url, password) = with_password(&db.url());
    let dir = tempfile::tempdir().expect("temp dir");

    let output = paysteps(&["migrate"], &url, dir.path())
        .output()
        .expect("run paysteps migrate");
    let text = all_output(&output);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("migrations applied to postgres://"), "{text}");
    assert!(text.contains(":***@"), "{text}");
    assert!(
        !text.contains(&password),
        "migrate printed the password:\n{text}"
    );
    assert_no_secret("migrate", &text);

    // `dev` prints its settings, then serves: read them up to the last line, then stop it.
    let mut dev = paysteps(&["dev"], &url, dir.path())
        .env_remove("STRIPE_WEBHOOK_SECRET")
        .env_remove("STRIPE_API_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start paysteps dev");
    let stdout = dev.stdout.take().expect("stdout");
    let (lines, printed) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    let mut text = String::new();
    while let Ok(line) = printed.recv_timeout(Duration::from_secs(60)) {
        text.push_str(&line);
        text.push('\n');
        if line.contains("paysteps send app/hello") {
            break;
        }
    }
    let _ = dev.kill();
    let _ = dev.wait();
    let mut stderr = String::new();
    if let Some(mut err) = dev.stderr.take() {
        let _ = err.read_to_string(&mut stderr);
    }
    text.push_str(&stderr);
    assert!(
        text.contains("paysteps send app/hello"),
        "dev did not start:\n{text}"
    );
    assert!(text.contains("database        postgres://"), "{text}");
    assert!(text.contains(":***@"), "{text}");
    assert!(
        !text.contains(&password),
        "dev printed the password:\n{text}"
    );
    assert_no_secret("dev", &text);
}
