//! The server's limits over real sockets: header, body and idle timeouts, the connection
//! cap, the event API's key checked before its body and its batch cap, a batch stored
//! with one commit, and a shutdown that ends within its grace.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use clap::Parser;
use paysteps::RunStatus;
use paysteps::testing::cli::{Cli, Command as CliCommand, serve_until};
use paysteps::testing::config::Secret;
use paysteps::testing::engine::{Clock, Engine, EngineConfig, Function, Trigger};
use paysteps::testing::http::{Access, EventKeys, Limits, Served};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::common::serve::{free_port, http_client};
use crate::common::{Backend, SECRET, Setup, TestApp, TestDb, test_config};

crate::on_both_backends!(
    a_batch_over_5000_events_is_413_and_stores_nothing,
    a_batch_of_5000_events_is_stored_with_one_commit,
    steps_cut_short_by_the_grace_are_released_for_the_next_start,
    sigterm_with_a_half_sent_request_exits_within_the_grace,
);

/// Bounds every wait on the server, so a server that never answers fails the test
/// instead of hanging it; far longer than any limit the tests configure.
const GUARD: Duration = Duration::from_secs(60);

/// What the tests configure: timeouts long enough never to fire unless a test wants one.
fn limits() -> Limits {
    Limits {
        header_timeout: Duration::from_secs(600),
        body_timeout: Duration::from_secs(600),
        keep_alive: Some(Duration::from_secs(600)),
        max_connections: 64,
        body_buffer_bytes: 64 * 1024 * 1024,
        shutdown_grace: Duration::from_secs(1),
    }
}

struct Server {
    addr: SocketAddr,
    stop: CancellationToken,
    served: JoinHandle<Served>,
}

impl Server {
    async fn start(router: Router, limits: Limits) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let stop = CancellationToken::new();
        let served = tokio::spawn(paysteps::testing::http::serve::serve(
            listener,
            router,
            limits,
            3 * 1024 * 1024,
            stop.clone(),
        ));
        Server { addr, stop, served }
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.expect("connect")
    }

    async fn stop(self) -> Served {
        self.stop.cancel();
        tokio::time::timeout(GUARD, self.served)
            .await
            .expect("the server stops")
            .expect("serving")
    }
}

/// An HTTP answer as read off the socket.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: Value,
}

/// Reads one answer (headers, then a `Content-Length` body).
async fn read_answer(stream: &mut TcpStream) -> Answer {
    tokio::time::timeout(GUARD, async {
        let mut bytes = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let n = stream.read(&mut chunk).await.expect("read an answer");
            assert!(
                n > 0,
                "connection closed without an answer: {:?}",
                String::from_utf8_lossy(&bytes)
            );
            bytes.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&bytes[..head_end]).to_lowercase();
        let status = head[9..12].parse().expect("status code");
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .map_or(0, |n| n.trim().parse().expect("content-length"));
        while bytes.len() < head_end + length {
            let n = stream.read(&mut chunk).await.expect("read the body");
            assert!(n > 0, "connection closed mid-body");
            bytes.extend_from_slice(&chunk[..n]);
        }
        let body =
            serde_json::from_slice(&bytes[head_end..head_end + length]).unwrap_or(Value::Null);
        Answer { status, head, body }
    })
    .await
    .expect("an answer in time")
}

/// Waits until the server closes the connection; answers what it sent meanwhile.
async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
    tokio::time::timeout(GUARD, async {
        let mut sent = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return sent,
                Ok(n) => sent.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .expect("the server closes the connection")
}

async fn get_health(stream: &mut TcpStream) -> Answer {
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("send");
    read_answer(stream).await
}

async fn app(backend: Backend, event_keys: EventKeys) -> TestApp {
    TestApp::start_with(Setup {
        backend,
        with_payments: false,
        event_keys,
        ..Setup::default()
    })
    .await
}

#[tokio::test]
async fn a_half_sent_header_is_closed_after_the_header_timeout() {
    let app = app(Backend::Sqlite, EventKeys::Any).await;
    let server = Server::start(
        app.router.clone(),
        Limits {
            header_timeout: Duration::from_secs(1),
            ..limits()
        },
    )
    .await;
    let mut slow = server.connect().await;
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .await
        .expect("send");
    assert_eq!(
        until_closed(&mut slow).await,
        b"",
        "closed without an answer"
    );

    // A connection that sends nothing at all has the same deadline.
    let mut silent = server.connect().await;
    assert_eq!(until_closed(&mut silent).await, b"");
    server.stop().await;
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_after_the_keep_alive_timeout() {
    let app = app(Backend::Sqlite, EventKeys::Any).await;
    let server = Server::start(
        app.router.clone(),
        Limits {
            keep_alive: Some(Duration::from_secs(1)),
            ..limits()
        },
    )
    .await;
    let mut kept = server.connect().await;
    let answer = get_health(&mut kept).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(
        !answer.head.contains("connection: close"),
        "kept alive: {answer:?}"
    );
    // The header timeout is ten minutes: only the keep-alive timeout closes it.
    assert_eq!(
        until_closed(&mut kept).await,
        b"",
        "closed quietly when idle"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_body_not_received_in_time_is_408_and_the_connection_closed() {
    let app = app(Backend::Sqlite, EventKeys::Any).await;
    let server = Server::start(
        app.router.clone(),
        Limits {
            body_timeout: Duration::from_secs(1),
            ..limits()
        },
    )
    .await;
    for path in ["/e/any-key", "/api/stripe/webhook"] {
        let mut slow = server.connect().await;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Stripe-Signature: t=1,v1=00\r\nContent-Length: 100\r\n\r\n[{{\"name\":"
        );
        slow.write_all(head.as_bytes()).await.expect("send");
        let answer = read_answer(&mut slow).await;
        assert_eq!(answer.status, 408, "{path}: {answer:?}");
        assert_eq!(answer.body["error"]["code"], "request_timeout", "{path}");
        assert!(answer.head.contains("connection: close"), "{answer:?}");
        assert_eq!(until_closed(&mut slow).await, b"", "{path}: closed");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM events").await, 0);
    server.stop().await;
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_while_open_ones_keep_working() {
    let app = app(Backend::Sqlite, EventKeys::Any).await;
    let server = Server::start(
        app.router.clone(),
        Limits {
            max_connections: 3,
            ..limits()
        },
    )
    .await;
    let mut kept = server.connect().await;
    assert_eq!(get_health(&mut kept).await.status, 200);
    // Two clients hold the other slots with headers they never finish.
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut holder = server.connect().await;
        holder
            .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n")
            .await
            .expect("send");
        holders.push(holder);
    }

    let mut over = server.connect().await;
    let refused = get_health(&mut over).await;
    assert_eq!(refused.status, 503, "{refused:?}");
    assert_eq!(refused.body["error"]["code"], "too_many_connections");
    assert!(refused.head.contains("retry-after:"), "{refused:?}");
    assert_eq!(until_closed(&mut over).await, b"");

    // A connection already open keeps being served, the webhook included.
    assert_eq!(get_health(&mut kept).await.status, 200);
    kept.write_all(
        b"POST /api/stripe/webhook HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n{}",
    )
    .await
    .expect("send");
    let webhook = read_answer(&mut kept).await;
    assert_eq!(webhook.status, 400, "{webhook:?}");
    assert_eq!(webhook.body["error"]["code"], "missing_signature");

    // Once a holder leaves, a new connection is served again.
    holders.pop();
    let deadline = Instant::now() + GUARD;
    loop {
        let mut fresh = server.connect().await;
        let answer = get_health(&mut fresh).await;
        if answer.status == 200 {
            break;
        }
        assert_eq!(answer.status, 503, "{answer:?}");
        assert!(Instant::now() < deadline, "no slot freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn a_wrong_event_key_is_refused_before_the_body_is_read() {
    let app = app(
        Backend::Sqlite,
        EventKeys::Only(vec![Secret::new("key_live_one")]),
    )
    .await;
    let server = Server::start(app.router.clone(), limits()).await;
    let mut sender = server.connect().await;
    let length = 3 * 1024 * 1024 - 1;
    let head = format!(
        "POST /e/key_live_wrong HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {length}\r\n\r\n"
    );
    sender.write_all(head.as_bytes()).await.expect("send");
    // A small part of the body: the answer comes while the rest is still unsent.
    sender
        .write_all(&vec![b' '; 16 * 1024])
        .await
        .expect("send");
    let answer = read_answer(&mut sender).await;
    assert_eq!(answer.status, 401, "{answer:?}");
    assert_eq!(answer.body["code"], "event_key_not_found");
    assert_eq!(answer.body["status"], 401);
    assert_eq!(app.count("SELECT COUNT(*) FROM events").await, 0);
    server.stop().await;
}

async fn a_batch_over_5000_events_is_413_and_stores_nothing(backend: Backend) {
    let app = app(backend, EventKeys::Any).await;
    let event = json!({"name": "app/order.placed", "data": {"order": 1}});
    let body = Value::Array(vec![event; 5_001]).to_string();
    let (status, answer) = post_events(&app, body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert_eq!(answer["status"], 413);
    assert_eq!(answer["code"], "too_many_events");
    assert_eq!(answer["ids"], json!([]));
    assert!(answer["error"].as_str().is_some_and(|m| m.contains("5000")));
    assert_eq!(app.count("SELECT COUNT(*) FROM events").await, 0);
}

async fn a_batch_of_5000_events_is_stored_with_one_commit(backend: Backend) {
    let fulfil = Function::new("fulfil", Trigger::event("app/order.placed"), |_| async {
        Ok(())
    });
    let app = TestApp::start_with(Setup::functions(backend, 4, vec![fulfil])).await;
    let commits_before = commits(&app).await;
    let events: Vec<Value> = (0..5_000)
        .map(|n| json!({"name": "app/order.placed", "data": {"order": n}}))
        .collect();
    let (status, answer) = post_events(&app, Value::Array(events).to_string()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let ids: std::collections::HashSet<&str> = answer["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(ids.len(), 5_000);
    assert_eq!(app.count("SELECT COUNT(*) FROM events").await, 5_000);
    assert_eq!(app.count("SELECT COUNT(*) FROM runs").await, 5_000);
    match backend {
        // The writer commits one batch of transactions at a time and counts each.
        Backend::Sqlite => assert_eq!(commits(&app).await - commits_before, 1),
        // Every row a transaction writes carries its id.
        Backend::Postgres => assert_eq!(
            app.count(
                "SELECT COUNT(DISTINCT CAST(xmin AS TEXT)) FROM \
                 (SELECT xmin FROM events UNION ALL SELECT xmin FROM runs) AS written"
            )
            .await,
            1
        ),
    }
}

/// Commits the store has counted, from `/metrics`.
async fn commits(app: &TestApp) -> i64 {
    let metrics = app.metrics().await;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("paysteps_db_commit_batch_size_count "))
        .map_or(0, |n| n.trim().parse().expect("a count"))
}

async fn post_events(app: &TestApp, body: String) -> (StatusCode, Value) {
    let request = Request::post("/e/any-key")
        .header("content-type", "application/json")
        .body(Body::from(body))
        .expect("request");
    let response = app.router.clone().oneshot(request).await.expect("response");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// A function whose step announces it started, then waits until `release` is notified
/// (never, in the first process).
fn stuck(started: Arc<Notify>, release: Arc<Notify>, attempts: Arc<AtomicUsize>) -> Function {
    Function::new("stuck", Trigger::event("app/stuck"), move |ctx| {
        let (started, release, attempts) = (started.clone(), release.clone(), attempts.clone());
        async move {
            ctx.step
                .run("wait", || async move {
                    attempts.fetch_add(1, Ordering::SeqCst);
                    started.notify_one();
                    release.notified().await;
                    Ok(())
                })
                .await
        }
    })
}

async fn steps_cut_short_by_the_grace_are_released_for_the_next_start(backend: Backend) {
    let db = TestDb::create(backend).await;
    let (started, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let attempts = Arc::new(AtomicUsize::new(0));
    let config = EngineConfig {
        workers: 2,
        ..test_config(Clock::System)
    };
    let engine = Engine::builder(db.store().await)
        .config(config.clone())
        .register(stuck(started.clone(), release.clone(), attempts.clone()))
        .build()
        .expect("engine");
    let run_id = crate::common::start_run(&engine, "app/stuck").await;

    let cli = Cli::try_parse_from(["paysteps", "dev", "--shutdown-grace-secs", "1"]).expect("args");
    let CliCommand::Dev(args) = cli.command else {
        unreachable!("parsed as dev")
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        serve_until(
            listener,
            engine,
            &[Secret::new(SECRET)],
            EventKeys::Any,
            Access::open(),
            &args.engine,
            async move {
                let _ = stopped.await;
            },
        )
        .await
    });
    tokio::time::timeout(GUARD, started.notified())
        .await
        .expect("the step starts");
    let _ = stop.send(());
    tokio::time::timeout(GUARD, server)
        .await
        .expect("shutdown ends after its grace, with the step still running")
        .expect("task")
        .expect("served");

    // The run is queued again, leased to no one, due now.
    let store = db.store().await;
    let run = store.run(&run_id).await.expect("read").expect("the run");
    assert_eq!(run.status, RunStatus::Queued, "{run:?}");
    assert_eq!(run.lease_owner, None, "{run:?}");

    // The next start claims it at once (its lease of 30 s has not lapsed) and the step,
    // cut short without a checkpoint, runs again.
    let next = Engine::builder(store)
        .config(config)
        .register(stuck(started, release.clone(), attempts.clone()))
        .build()
        .expect("engine");
    release.notify_one();
    assert_eq!(next.run_until_idle().await.expect("run"), 1);
    let run = next
        .store()
        .run(&run_id)
        .await
        .expect("read")
        .expect("the run");
    assert_eq!(run.status, RunStatus::Completed, "{run:?}");
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
}

async fn sigterm_with_a_half_sent_request_exits_within_the_grace(backend: Backend) {
    let db = TestDb::create(backend).await;
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let command = match backend {
        Backend::Sqlite => "dev",
        Backend::Postgres => "serve",
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_paysteps"))
        .arg(command)
        .env("DATABASE_URL", db.url())
        .env("STRIPE_WEBHOOK_SECRET", SECRET)
        .env(
            "PAYSTEPS_DASHBOARD_TOKEN",
            "test-dashboard-token-of-at-least-32-chars",
        )
        .env("PAYSTEPS_EVENT_KEY", "key_live_one")
        .env("PAYSTEPS_BIND", format!("127.0.0.1:{port}"))
        .env("PAYSTEPS_SHUTDOWN_GRACE_SECS", "1")
        .env("PAYSTEPS_HEADER_TIMEOUT_SECS", "600")
        .env("PAYSTEPS_BODY_TIMEOUT_SECS", "600")
        .env("RUST_LOG", "warn")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start paysteps");
    let client = http_client();
    let deadline = Instant::now() + GUARD;
    loop {
        let health = client
            .get(format!("http://127.0.0.1:{port}/health"))
            .send()
            .await;
        if health.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(
            child.try_wait().expect("child").is_none(),
            "paysteps exited"
        );
        assert!(Instant::now() < deadline, "paysteps not healthy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut half = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    half.write_all(
        b"POST /e/key_live_one HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
          Content-Length: 1000\r\n\r\n[{\"name\":\"app/",
    )
    .await
    .expect("send");
    let mut other = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    other
        .write_all(b"GET /health HTTP/1.1\r\nHost: pay")
        .await
        .expect("send");

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + GUARD;
    let status = loop {
        if let Some(status) = child.try_wait().expect("child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("paysteps still running {GUARD:?} after SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");
    assert_eq!(
        until_closed(&mut half).await,
        b"",
        "half-sent request dropped"
    );
    assert_eq!(until_closed(&mut other).await, b"");
}

/// The attack of the issue this server's limits answer: 1,100 connections that each send
/// half a header, against the real binary under a 1,024 open-file limit. A kept-alive
/// connection and the Stripe webhook are served throughout; every half-open connection is
/// closed once the header timeout has passed, and new connections are served again.
#[tokio::test]
async fn half_open_connections_beyond_the_file_limit_leave_health_and_the_webhook_served() {
    const HALF_OPEN: usize = 1_100;
    // This test process holds both ends' worth of its own descriptors.
    rlimit::increase_nofile_limit(4 * HALF_OPEN as u64).expect("raise this process's limit");
    let db = TestDb::create(Backend::Sqlite).await;
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    // `ulimit -n` sets the soft and the hard limit: the server cannot raise it.
    let mut child = Command::new("sh")
        .args(["-c", "ulimit -n 1024 && exec \"$0\" dev"])
        .arg(env!("CARGO_BIN_EXE_paysteps"))
        .env("DATABASE_URL", db.url())
        .env("STRIPE_WEBHOOK_SECRET", SECRET)
        .env("PAYSTEPS_BIND", format!("127.0.0.1:{port}"))
        .env("PAYSTEPS_HEADER_TIMEOUT_SECS", "3")
        .env("RUST_LOG", "warn")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start paysteps");
    let connect = || TcpStream::connect(("127.0.0.1", port));
    let deadline = Instant::now() + GUARD;
    let mut kept = loop {
        if let Ok(mut stream) = connect().await
            && get_health(&mut stream).await.status == 200
        {
            break stream;
        }
        assert!(
            child.try_wait().expect("child").is_none(),
            "paysteps exited"
        );
        assert!(Instant::now() < deadline, "paysteps not healthy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let mut half_open = Vec::with_capacity(HALF_OPEN);
    for _ in 0..HALF_OPEN {
        let mut stream = connect().await.expect("connect");
        // A refused connection may already be closed: its write may fail.
        let _ = stream.write_all(b"GET /health HTTP/1.1\r\nHost: loc").await;
        half_open.push(stream);
    }

    assert_eq!(get_health(&mut kept).await.status, 200, "kept connection");
    kept.write_all(
        b"POST /api/stripe/webhook HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n{}",
    )
    .await
    .expect("send");
    let webhook = read_answer(&mut kept).await;
    assert_eq!(webhook.status, 400, "{webhook:?}");
    assert_eq!(webhook.body["error"]["code"], "missing_signature");

    // Every one of them is closed: the accepted ones at the header timeout, the others
    // at once with a 503 or nothing.
    for (n, stream) in half_open.iter_mut().enumerate() {
        let sent = until_closed(stream).await;
        let sent = String::from_utf8_lossy(&sent);
        assert!(
            sent.is_empty() || sent.starts_with("HTTP/1.1 503") || sent.starts_with("HTTP/1.1 408"),
            "connection {n} got {sent:?}"
        );
    }
    drop(half_open);
    let mut fresh = connect().await.expect("connect");
    assert_eq!(get_health(&mut fresh).await.status, 200, "a new connection");
    assert!(
        child.try_wait().expect("child").is_none(),
        "paysteps exited"
    );
    let _ = child.kill();
    let _ = child.wait();
}
