//! What the binary writes as logs: one JSON object per line when `PAYSTEPS_LOG_FORMAT`
//! is `json`, text without colour codes when its output is not a terminal, and a clear
//! refusal to start for a format it does not know.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::eventually;
use crate::common::serve::{free_port, http_client};

/// What every test waits for in the logs: the event API's line for an accepted event.
const ACCEPTED: &str = "api events accepted";

/// `paysteps dev` on a SQLite file in `dir`, on `port`, logging at `info`, with no
/// setting from the environment the tests run in.
fn dev(dir: &Path, port: u16) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_paysteps"));
    command
        .arg("dev")
        .current_dir(dir)
        .env("DATABASE_URL", dir.join("paysteps.db"))
        .env("PAYSTEPS_BIND", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    for var in [
        "PAYSTEPS_LOG_FORMAT",
        "NO_COLOR",
        "STRIPE_WEBHOOK_SECRET",
        "PAYSTEPS_DASHBOARD_TOKEN",
        "PAYSTEPS_ALLOWED_HOSTS",
        "STRIPE_API_KEY",
    ] {
        command.env_remove(var);
    }
    command
}

/// The lines a pipe delivers, gathered as they come.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    fn read_from(&self, pipe: impl Read + Send + 'static) -> JoinHandle<()> {
        let lines = self.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                lines.0.lock().expect("lines").push(line);
            }
        })
    }

    fn all(&self) -> Vec<String> {
        self.0.lock().expect("lines").clone()
    }
}

/// What a `dev` process wrote to stdout and stderr.
struct Output {
    stdout: Vec<String>,
    stderr: Vec<String>,
}

/// Starts `dev` with `format` (none: the variable unset) and both outputs piped, sends it
/// one event through the event API, waits until that is logged and stops the process.
async fn logs_of_one_event(format: Option<&str>) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let mut command = dev(dir.path(), port);
    if let Some(format) = format {
        command.env("PAYSTEPS_LOG_FORMAT", format);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start paysteps dev");
    let (stdout, stderr) = (Lines::default(), Lines::default());
    let readers = [
        stdout.read_from(child.stdout.take().expect("stdout")),
        stderr.read_from(child.stderr.take().expect("stderr")),
    ];

    let client = http_client();
    let base = format!("http://127.0.0.1:{port}");
    let healthy = eventually(Duration::from_secs(60), || async {
        client
            .get(format!("{base}/health"))
            .send()
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK)
    })
    .await;
    let sent = if healthy {
        let answer = client
            .post(format!("{base}/e/any-key"))
            .json(&json!({ "name": "app/logged", "data": { "n": 1 } }))
            .send()
            .await
            .expect("send an event");
        Some(answer.status())
    } else {
        None
    };
    let logged = sent == Some(StatusCode::OK)
        && eventually(Duration::from_secs(30), || async {
            stderr.all().iter().any(|line| line.contains(ACCEPTED))
        })
        .await;

    stop(&mut child);
    for reader in readers {
        reader.join().expect("reader");
    }
    let output = Output {
        stdout: stdout.all(),
        stderr: stderr.all(),
    };
    assert!(
        healthy && logged,
        "dev healthy: {healthy}, event answered {sent:?}, logged: {logged}\n\
         stdout:\n{}\nstderr:\n{}",
        output.stdout.join("\n"),
        output.stderr.join("\n")
    );
    output
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_level_and_message() {
    let output = logs_of_one_event(Some("json")).await;

    let mut accepted = Vec::new();
    for line in &output.stderr {
        let entry: Value = serde_json::from_str(line)
            .unwrap_or_else(|err| panic!("a log line that is not JSON ({err}): {line}"));
        let level = entry["level"].as_str();
        assert!(
            matches!(level, Some("TRACE" | "DEBUG" | "INFO" | "WARN" | "ERROR")),
            "{line}"
        );
        assert!(entry["message"].is_string(), "{line}");
        assert!(entry["timestamp"].is_string(), "{line}");
        if entry["message"] == ACCEPTED {
            accepted.push(entry);
        }
    }
    let [entry] = accepted.as_slice() else {
        panic!("one `{ACCEPTED}` line expected: {:#?}", output.stderr);
    };
    // The event's own fields sit beside the message, as shippers index them.
    assert_eq!(entry["level"], "INFO");
    assert_eq!(entry["events"], 1);
    assert_eq!(entry["runs"], 0);
    assert!(
        entry["target"]
            .as_str()
            .is_some_and(|t| t.starts_with("paysteps")),
        "{entry}"
    );
    // The start-up banner stays on stdout, apart from the logs.
    assert!(
        output.stdout.iter().any(|line| line == "paysteps dev"),
        "{:#?}",
        output.stdout
    );
}

#[tokio::test]
async fn text_logs_into_a_pipe_have_no_colour_codes() {
    for format in [None, Some("text")] {
        let output = logs_of_one_event(format).await;
        let accepted: Vec<&String> = output
            .stderr
            .iter()
            .filter(|line| line.contains(ACCEPTED))
            .collect();
        assert_eq!(accepted.len(), 1, "{format:?}: {:#?}", output.stderr);
        assert!(
            accepted[0].contains("INFO") && accepted[0].contains("events=1"),
            "{format:?}: {}",
            accepted[0]
        );
        for line in output.stdout.iter().chain(&output.stderr) {
            assert!(
                !line.contains("\x1b["),
                "{format:?}: a colour code in {line:?}"
            );
        }
    }
}

#[test]
fn an_unknown_log_format_stops_the_start_and_names_the_setting() {
    for format in ["yaml", "jsonl"] {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut child = dev(dir.path(), free_port())
            .env("PAYSTEPS_LOG_FORMAT", format)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start paysteps dev");
        let until = Instant::now() + Duration::from_secs(60);
        while child.try_wait().expect("wait").is_none() {
            if Instant::now() > until {
                stop(&mut child);
                panic!("dev started with PAYSTEPS_LOG_FORMAT={format}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let output = child.wait_with_output().expect("output");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!output.status.success(), "{format}: {said}");
        assert!(
            said.contains(&format!(
                "PAYSTEPS_LOG_FORMAT is \"{format}\"; expected `text` or `json`"
            )),
            "{format}: {said}"
        );
        assert!(
            !dir.path().join("paysteps.db").exists(),
            "{format}: the database was opened before the refusal"
        );
    }
}
