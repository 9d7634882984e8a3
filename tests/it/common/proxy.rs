//! A TCP proxy on loopback that a test can cut: every open connection is closed and new
//! ones are closed at once, as when the network to the database goes down; `restore`
//! forwards again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct Proxy {
    addr: SocketAddr,
    /// `true` while cut. Dropping it (with the proxy) ends every connection.
    cut: watch::Sender<bool>,
    /// Connections accepted and not yet closed.
    open: Arc<AtomicUsize>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Listens on `127.0.0.1:0` and forwards each connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (cut, cut_rx) = watch::channel(false);
        let open = Arc::new(AtomicUsize::new(0));
        let accept = tokio::spawn(accept_loop(listener, upstream, cut_rx, open.clone()));
        Proxy {
            addr,
            cut,
            open,
            accept,
        }
    }

    /// A proxy in front of the PostgreSQL server of `url`, and `url` rewritten to go
    /// through it (same user, database and options).
    pub async fn for_postgres(url: &str) -> (Proxy, String) {
        let (host, port) = host_port(url);
        let upstream = tokio::net::lookup_host((host.as_str(), port))
            .await
            .expect("resolve the PostgreSQL host")
            .next()
            .expect("an address for the PostgreSQL host");
        let proxy = Proxy::start(upstream).await;
        let through = with_host_port(url, &proxy.addr.to_string());
        (proxy, through)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every open connection and makes new ones close at once. Returns when no
    /// connection forwards any more, so nothing sent afterwards reaches the server.
    pub async fn cut(&self) {
        self.cut.send_replace(true);
        let until = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.open.load(Ordering::SeqCst) > 0 {
            assert!(
                tokio::time::Instant::now() < until,
                "proxy connections did not close"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Forwards new connections again.
    pub fn restore(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        // Connection tasks end when they see the sender gone.
    }
}

/// Decrements the open-connection count when a connection's task ends, however it ends.
struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    cut: watch::Receiver<bool>,
    open: Arc<AtomicUsize>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        if *cut.borrow() {
            drop(client);
            continue;
        }
        open.fetch_add(1, Ordering::SeqCst);
        let guard = Open(open.clone());
        tokio::spawn(forward(client, upstream, cut.clone(), guard));
    }
}

async fn forward(
    mut client: TcpStream,
    upstream: SocketAddr,
    mut cut: watch::Receiver<bool>,
    _open: Open,
) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    tokio::select! {
        biased;
        // Also true when the proxy is dropped (the sender is gone).
        _ = cut.wait_for(|cut| *cut) => {}
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
    }
    // Both sockets close here, before `_open` says so.
    drop(client);
    drop(server);
}

/// The host and port of a `postgres://user@host:port/db?…` URL (port 5432 when absent).
fn host_port(url: &str) -> (String, u16) {
    let (start, end) = authority(url);
    let hostport = &url[start..end];
    assert!(
        !hostport.is_empty() && !hostport.starts_with('['),
        "the proxy needs a host name or IPv4 address in {url}"
    );
    match hostport.rsplit_once(':') {
        Some((host, port)) => (host.to_owned(), port.parse().expect("port in the URL")),
        None => (hostport.to_owned(), 5432),
    }
}

/// `url` with its `host[:port]` replaced by `hostport`.
fn with_host_port(url: &str, hostport: &str) -> String {
    let (start, end) = authority(url);
    format!("{}{hostport}{}", &url[..start], &url[end..])
}

/// Byte range of `host[:port]` in `url`: after `scheme://` and any `user[:password]@`,
/// up to the path, query or end.
fn authority(url: &str) -> (usize, usize) {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[after_scheme..];
    let end = after_scheme + rest.find(['/', '?']).unwrap_or(rest.len());
    let start = url[after_scheme..end]
        .rfind('@')
        .map_or(after_scheme, |i| after_scheme + i + 1);
    (start, end)
}

#[test]
fn postgres_urls_are_rewritten_to_the_proxy() {
    let url = "postgres://postgres@127.0.0.1:5432/test?options[search_path]=t_1";
    assert_eq!(host_port(url), ("127.0.0.1".to_owned(), 5432));
    assert_eq!(
        with_host_port(url, "127.0.0.1:4000"),
        "postgres://postgres@127.0.0.1:4000/test?options[search_path]=t_1"
    );
    let bare = "postgres://u:p@db/test";
    assert_eq!(host_port(bare), ("db".to_owned(), 5432));
    assert_eq!(
        with_host_port(bare, "127.0.0.1:1"),
        "postgres://u:p@127.0.0.1:1/test"
    );
}
