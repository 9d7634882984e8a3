//! A connection's phases and the deadlines they put on its socket. A request's headers
//! must be in within the header timeout of the connection opening or of the request's
//! first byte; between requests, a kept-alive connection may stay silent for the
//! keep-alive timeout. A request being answered has no socket deadline: its body has
//! one of its own (see [`super::body`]).
//!
//! hyper's own `header_read_timeout` starts when a kept-alive connection goes idle, so
//! it would also be the longest a connection may stay idle; a load balancer that keeps
//! connections open for a minute needs the two apart.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::body::{Body, Bytes};
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a request's headers, which must be in by then.
    Head(Instant),
    /// A request is being answered.
    Busy,
    /// Between requests: closed quietly when nothing has come by then.
    Idle(Instant),
}

/// Where a connection is, shared by its socket and the requests it carries.
#[derive(Clone)]
pub(super) struct Phase {
    state: Arc<Mutex<Shared>>,
    header_timeout: Duration,
    keep_alive: Duration,
}

struct Shared {
    state: State,
    /// The connection's task, last seen reading while a request was answered: told when
    /// the answer is done, so that it starts the idle deadline.
    reader: Option<Waker>,
}

impl Phase {
    /// A connection just opened: its first request's headers are due.
    pub fn new(header_timeout: Duration, keep_alive: Duration) -> Phase {
        Phase {
            state: Arc::new(Mutex::new(Shared {
                state: State::Head(Instant::now() + header_timeout),
                reader: None,
            })),
            header_timeout,
            keep_alive,
        }
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A request's headers are in: it is being answered.
    pub fn busy(&self) {
        self.shared().state = State::Busy;
    }

    /// The answer is written: the connection waits for the next request.
    fn idle(&self) {
        let mut shared = self.shared();
        if shared.state == State::Busy {
            shared.state = State::Idle(Instant::now() + self.keep_alive);
            if let Some(reader) = shared.reader.take() {
                reader.wake();
            }
        }
    }

    /// Bytes came in: on an idle connection, the next request's headers are due.
    fn arrived(&self) {
        let mut shared = self.shared();
        if let State::Idle(_) = shared.state {
            shared.state = State::Head(Instant::now() + self.header_timeout);
        }
    }

    /// The deadline the reader must keep now, if any; without one, the reader is told
    /// when there is one.
    fn deadline(&self, reader: &Waker) -> State {
        let mut shared = self.shared();
        if shared.state == State::Busy {
            shared.reader = Some(reader.clone());
        }
        shared.state
    }
}

/// A socket whose reads end at the deadline of its connection's phase: with an error
/// while headers are awaited, with the end of the stream when the connection is idle.
pub(super) struct Deadlines<S> {
    socket: S,
    phase: Phase,
    timer: Pin<Box<Sleep>>,
    armed: Option<Instant>,
}

impl<S> Deadlines<S> {
    pub fn new(socket: S, phase: Phase) -> Deadlines<S> {
        Deadlines {
            socket,
            phase,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed: None,
        }
    }

    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let (deadline, idle) = match self.phase.deadline(cx.waker()) {
            State::Head(deadline) => (deadline, false),
            State::Idle(deadline) => (deadline, true),
            State::Busy => return Poll::Pending,
        };
        if self.armed != Some(deadline) {
            self.timer.as_mut().reset(deadline);
            self.armed = Some(deadline);
        }
        if self.timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        if idle {
            // The end of the stream: hyper closes an idle connection quietly.
            Poll::Ready(Ok(()))
        } else {
            Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the request's headers did not arrive in time",
            )))
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Deadlines<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.socket).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.phase.arrived();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => this.poll_deadline(cx),
            failed => failed,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Deadlines<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.socket).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.socket).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.socket.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_shutdown(cx)
    }
}

/// An answer's body that marks its connection idle once hyper is done with it.
pub(super) struct Answered {
    body: Body,
    phase: Phase,
}

impl Answered {
    pub fn new(body: Body, phase: Phase) -> Answered {
        Answered { body, phase }
    }
}

impl Drop for Answered {
    fn drop(&mut self) {
        self.phase.idle();
    }
}

impl http_body::Body for Answered {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
