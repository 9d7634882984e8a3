//! Outgoing deliveries connect to the address the destination guard checked, never
//! through a proxy named by the environment (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`):
//! a proxy would resolve the host itself, past the guard. Proven on a `paysteps serve`
//! process started with every proxy variable pointing at a listener that only counts
//! connections.

use std::fs::File;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, Uri};
use paysteps::testing::stripe::fixtures::Overrides;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::common::serve::{free_port, http_client, post_event};
use crate::common::{SECRET, eventually, fixture_event};

const TOKEN: &str = "proxy-test-dashboard-token-of-32-chars";
const PROXY_VARIABLES: [&str; 6] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

/// A `paysteps serve` child process, killed when dropped.
struct Server {
    child: Child,
    log: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

#[tokio::test]
async fn deliveries_ignore_the_proxy_of_the_environment() {
    // The "proxy": counts connections and answers each with 502.
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let proxy_url = format!("http://{}", proxy.local_addr().expect("addr"));
    let proxied = Arc::new(AtomicUsize::new(0));
    let counted = proxied.clone();
    let proxy_task = tokio::spawn(async move {
        while let Ok((mut socket, _)) = proxy.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let _ = socket
                .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });

    // The receiver: keeps the path and `webhook-id` of every request.
    let received: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let got = received.clone();
    let receiver = Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
        let got = got.clone();
        async move {
            let id = headers
                .get("webhook-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            got.lock()
                .expect("received")
                .push((uri.path().to_owned(), id));
            StatusCode::OK
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hook = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let receiver_task = tokio::spawn(async move {
        let _ = axum::serve(listener, receiver).await;
    });

    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let log = dir.path().join("serve.log");
    let out = File::create(&log).expect("log");
    let mut command = Command::new(env!("CARGO_BIN_EXE_paysteps"));
    command
        .arg("serve")
        .current_dir(dir.path())
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.path().join("paysteps.db").display()),
        )
        .env("STRIPE_WEBHOOK_SECRET", SECRET)
        .env("PAYSTEPS_DASHBOARD_TOKEN", TOKEN)
        .env("PAYSTEPS_BIND", format!("127.0.0.1:{port}"))
        // The receiver is on loopback.
        .env("PAYSTEPS_WEBHOOK_ALLOW_PRIVATE", "1")
        .env("RUST_LOG", "warn")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log"))
        .stderr(out);
    for variable in PROXY_VARIABLES {
        command.env(variable, &proxy_url);
    }
    let server = Server {
        child: command.spawn().expect("start paysteps serve"),
        log,
    };
    let client = http_client();
    let health = format!("http://127.0.0.1:{port}/health");
    assert!(
        eventually(Duration::from_secs(30), || async {
            client
                .get(&health)
                .send()
                .await
                .is_ok_and(|r| r.status() == StatusCode::OK)
        })
        .await,
        "serve did not start:\n{}",
        server.log()
    );

    let created = client
        .post(format!("http://127.0.0.1:{port}/api/v1/webhooks"))
        .bearer_auth(TOKEN)
        .json(&json!({"url": hook, "events": ["payment.succeeded"]}))
        .send()
        .await
        .expect("create the endpoint");
    assert_eq!(created.status(), StatusCode::CREATED);
    let event = fixture_event("payment_intent.succeeded", Overrides::default());
    let answer = post_event(&client, port, &serde_json::to_vec(&event).expect("json"))
        .await
        .expect("deliver the Stripe event");
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);

    // Through the proxy, the delivery would get its 502 and never reach the receiver.
    let delivered = eventually(Duration::from_secs(60), || async {
        !received.lock().expect("received").is_empty()
    })
    .await;
    assert!(
        delivered,
        "the delivery never reached the receiver ({} connection(s) to the proxy):\n{}",
        proxied.load(Ordering::SeqCst),
        server.log()
    );
    let got = received.lock().expect("received").clone();
    assert_eq!(got[0].0, "/hook");
    assert!(!got[0].1.is_empty(), "a signed delivery: {got:?}");
    assert_eq!(
        proxied.load(Ordering::SeqCst),
        0,
        "a connection went to the proxy"
    );
    drop(server);
    proxy_task.abort();
    receiver_task.abort();
}
