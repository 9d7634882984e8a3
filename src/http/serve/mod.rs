//! Serving the router on a TCP listener with the limits a public endpoint needs: time
//! limits on headers, bodies and idle connections, a cap on open connections, a memory
//! budget for the bodies being received, and a shutdown that waits a bounded time.

mod body;
mod connection;

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::ConnectInfo;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::error::ApiError;
use body::{Budget, Expired, Limited};
use connection::{Answered, Deadlines, Phase};

/// Connections over the cap answered `503` at once; any more are closed unanswered.
const REFUSALS_AT_ONCE: usize = 64;
/// The longest a connection over the cap is waited for to send its headers.
const REFUSAL_HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// The server's limits; [`Limits::default`] holds the documented defaults.
#[derive(Debug, Clone)]
pub struct Limits {
    /// How long a client has to send a request's headers, from connecting or from the
    /// request's first byte.
    pub header_timeout: Duration,
    /// How long a client has to send a request's whole body once its headers are in.
    pub body_timeout: Duration,
    /// How long a connection may wait for its next request; `None` answers one request
    /// per connection.
    pub keep_alive: Option<Duration>,
    /// Connections open at once; the next ones are answered `503` and closed.
    pub max_connections: usize,
    /// Memory the request bodies being received may hold between them, in bytes.
    pub body_buffer_bytes: usize,
    /// After a shutdown is asked for, how long requests in flight may take to finish
    /// before their connections are closed.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            keep_alive: Some(Duration::from_secs(75)),
            max_connections: 4096,
            body_buffer_bytes: 64 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// How serving ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    /// Connections still open when the shutdown grace ran out, closed then.
    pub cut_short: usize,
}

/// What every connection's requests share.
#[derive(Clone)]
struct Shared {
    router: Router,
    limits: Arc<Limits>,
    budget: Budget,
}

/// Serves `router` on `listener` until `stop` is cancelled; then stops accepting, lets
/// the requests in flight finish for at most [`Limits::shutdown_grace`], and closes the
/// connections left (a half-sent request is dropped). `largest_body` is the largest
/// body any route accepts.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    largest_body: usize,
    stop: CancellationToken,
) -> Served {
    let shared = Shared {
        router,
        budget: Budget::new(limits.body_buffer_bytes, largest_body),
        limits: Arc::new(limits),
    };
    let slots = Arc::new(Semaphore::new(shared.limits.max_connections.max(1)));
    let refusals = Arc::new(Semaphore::new(REFUSALS_AT_ONCE));
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => break,
        };
        while connections.try_join_next().is_some() {}
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(err) => {
                if !is_connection_error(&err) {
                    // Out of file descriptors, most likely: give connections time to close.
                    tracing::warn!(error = %err, "accepting a connection failed");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(100)) => {}
                        () = stop.cancelled() => break,
                    }
                }
                continue;
            }
        };
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                let connection = graceful.watch(connection(stream, &shared));
                connections.spawn(async move {
                    let _ = connection.await;
                    drop(slot);
                });
            }
            Err(_) => {
                if let Ok(refusal) = refusals.clone().try_acquire_owned() {
                    let refused = refuse(
                        stream,
                        shared.limits.header_timeout.min(REFUSAL_HEADER_TIMEOUT),
                    );
                    tokio::spawn(async move {
                        let _ = refused.await;
                        drop(refusal);
                    });
                }
            }
        }
    }
    drop(listener);
    let open = graceful.count();
    if open > 0 {
        tracing::info!(connections = open, "waiting for requests in flight");
    }
    let grace = shared.limits.shutdown_grace;
    let _ = tokio::time::timeout(grace, graceful.shutdown()).await;
    while connections.try_join_next().is_some() {}
    let cut_short = connections.len();
    if cut_short > 0 {
        tracing::warn!(
            connections = cut_short,
            "closing connections still open after the shutdown grace"
        );
    }
    connections.shutdown().await;
    Served { cut_short }
}

/// One connection, its requests served by [`Requests`].
fn connection(
    stream: TcpStream,
    shared: &Shared,
) -> http1::Connection<TokioIo<Deadlines<TcpStream>>, Requests> {
    let limits = &shared.limits;
    let phase = Phase::new(limits.header_timeout, limits.keep_alive.unwrap_or_default());
    let peer = stream.peer_addr().ok();
    let io = TokioIo::new(Deadlines::new(stream, phase.clone()));
    let requests = Requests {
        shared: shared.clone(),
        phase,
        peer,
    };
    http1::Builder::new()
        .keep_alive(limits.keep_alive.is_some())
        // Headers have a deadline of their own (see `connection`).
        .header_read_timeout(None)
        .serve_connection(io, requests)
}

/// The requests of one connection: each is served by the router, its body under the
/// body timeout and the memory budget.
struct Requests {
    shared: Shared,
    phase: Phase,
    /// The client's address, given to handlers as axum's `ConnectInfo`.
    peer: Option<SocketAddr>,
}

impl hyper::service::Service<Request<Incoming>> for Requests {
    type Response = Response<Answered>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Answered>, Infallible>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        self.phase.busy();
        let (shared, phase) = (self.shared.clone(), self.phase.clone());
        let mut request = request;
        if let Some(peer) = self.peer {
            request.extensions_mut().insert(ConnectInfo(peer));
        }
        Box::pin(async move {
            let expired = Expired::default();
            let timeout = shared.limits.body_timeout;
            let request = request.map(|incoming| {
                Body::new(Limited::new(
                    Body::new(incoming),
                    timeout,
                    &shared.budget,
                    expired.clone(),
                ))
            });
            let response = match shared.router.oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            let response = if expired.happened() {
                body::timed_out(timeout)
            } else {
                response
            };
            Ok(response.map(|body| Answered::new(body, phase)))
        })
    }
}

/// A connection over the cap: its request is answered `503 too_many_connections` and
/// the connection closed. Its headers are awaited no longer than any request's.
async fn refuse(stream: TcpStream, header_timeout: Duration) -> hyper::Result<()> {
    let phase = Phase::new(header_timeout, Duration::ZERO);
    let io = TokioIo::new(Deadlines::new(stream, phase));
    let service = service_fn(|_: Request<Incoming>| async {
        let mut response = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_connections",
            "the server has as many connections open as it accepts; retry later",
        )
        .into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        Ok::<_, Infallible>(response)
    });
    http1::Builder::new()
        .keep_alive(false)
        .header_read_timeout(None)
        .serve_connection(io, service)
        .await
}

/// Errors of one connection that is gone, not of the listener.
fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Raises the soft limit on open files to the hard one, so connections are capped by
/// [`Limits::max_connections`] rather than by running out of descriptors; answers the
/// limit now in force (`None` where it cannot be read).
pub fn raise_open_file_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        Err(err) => {
            tracing::warn!(error = %err, "could not raise the open file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .ok()
                .map(|(soft, _)| soft)
        }
    }
}
