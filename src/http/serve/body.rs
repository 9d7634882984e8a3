//! Request bodies under two limits: the whole body must be in within the body timeout
//! of its headers (a request that is not gets `408` and its connection closed), and the
//! bodies being received at once hold at most a budget of memory between them.
//!
//! A body takes its share of the budget (its `Content-Length`, or the largest body a
//! route accepts when it has none) when a handler first reads it, so a request refused
//! before its body is read (a wrong event key) costs nothing and waits for nothing. A
//! body waiting for its share reads nothing, and its sender waits, until other bodies
//! are done or its deadline passes.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use http_body::{Body as _, Frame, SizeHint};
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use crate::http::error::ApiError;

/// The memory bodies may hold while they are received, in bytes.
#[derive(Clone)]
pub(super) struct Budget {
    bytes: Arc<Semaphore>,
    total: u32,
    /// The largest body any route accepts: what a body of unknown length reserves.
    largest: u32,
}

impl Budget {
    pub fn new(total: usize, largest: usize) -> Budget {
        let total = u32::try_from(total.clamp(1, Semaphore::MAX_PERMITS)).unwrap_or(u32::MAX);
        Budget {
            bytes: Arc::new(Semaphore::new(total as usize)),
            total,
            largest: u32::try_from(largest).unwrap_or(u32::MAX),
        }
    }

    /// What a body of `length` bytes (`None`: unknown) reserves.
    fn share(&self, length: Option<u64>) -> u32 {
        let length = length.map_or(self.largest, |n| u32::try_from(n).unwrap_or(u32::MAX));
        length.min(self.largest).min(self.total)
    }
}

/// Tells the request's service that its body's deadline passed while it was read.
#[derive(Clone, Default)]
pub(super) struct Expired(Arc<AtomicBool>);

impl Expired {
    pub fn happened(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// The body read past its deadline.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub(super) struct BodyTimeout(Duration);

/// A request body under the body timeout and the memory budget.
pub(super) struct Limited {
    body: Body,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
    expired: Expired,
    budget: Budget,
    share: u32,
    reserving: Option<BoxFuture<'static, Result<OwnedSemaphorePermit, AcquireError>>>,
    reserved: Option<OwnedSemaphorePermit>,
}

impl Limited {
    pub fn new(body: Body, timeout: Duration, budget: &Budget, expired: Expired) -> Limited {
        let share = if body.is_end_stream() {
            0
        } else {
            budget.share(body.size_hint().exact())
        };
        Limited {
            body,
            timeout,
            deadline: Box::pin(tokio::time::sleep_until(Instant::now() + timeout)),
            expired,
            budget: budget.clone(),
            share,
            reserving: None,
            reserved: None,
        }
    }

    /// Takes the body's share of the budget, once.
    fn poll_reserve(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.reserved.is_some() || self.share == 0 {
            return Poll::Ready(());
        }
        let (bytes, share) = (self.budget.bytes.clone(), self.share);
        let reserving = self
            .reserving
            .get_or_insert_with(|| Box::pin(bytes.acquire_many_owned(share)));
        match reserving.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(permit) => {
                // The budget is never closed; were it, the body would go unaccounted.
                self.reserved = permit.ok();
                self.reserving = None;
                self.share = 0;
                Poll::Ready(())
            }
        }
    }
}

impl http_body::Body for Limited {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        let this = &mut *self;
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.expired.0.store(true, Ordering::Release);
            return Poll::Ready(Some(Err(BodyTimeout(this.timeout).into())));
        }
        if this.poll_reserve(cx).is_pending() {
            return Poll::Pending;
        }
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        if let Poll::Ready(None) = frame {
            this.reserved = None;
        }
        frame.map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// `408 request_timeout`, closing the connection: what a request whose body came too
/// slowly is answered, whatever its handler made of the cut body.
pub(super) fn timed_out(timeout: Duration) -> Response {
    let mut response = ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        format!(
            "the request body was not received within {} s",
            timeout.as_secs_f64()
        ),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// A body of known length whose chunks are handed over by the test.
    struct Chunks {
        length: u64,
        ready: VecDeque<Bytes>,
    }

    impl http_body::Body for Chunks {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            match self.ready.pop_front() {
                Some(chunk) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
                None => Poll::Pending,
            }
        }

        fn size_hint(&self) -> SizeHint {
            SizeHint::with_exact(self.length)
        }
    }

    fn body(length: u64, ready: &[&'static [u8]], budget: &Budget) -> Limited {
        let chunks = Chunks {
            length,
            ready: ready.iter().map(|c| Bytes::from_static(c)).collect(),
        };
        Limited::new(
            Body::new(chunks),
            Duration::from_secs(3600),
            budget,
            Expired::default(),
        )
    }

    fn poll(body: &mut Limited) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        let waker = futures::task::noop_waker();
        Pin::new(body).poll_frame(&mut Context::from_waker(&waker))
    }

    #[tokio::test]
    async fn a_body_reads_only_once_its_share_of_the_budget_is_free() {
        let budget = Budget::new(100, 80);
        let mut first = body(60, &[b"0123456789"], &budget);
        assert!(matches!(poll(&mut first), Poll::Ready(Some(Ok(_)))));
        // 40 bytes left: a body of 50 waits; one of unknown length would take 80.
        let mut second = body(50, &[b"abc"], &budget);
        assert!(poll(&mut second).is_pending());
        assert!(poll(&mut second).is_pending());
        drop(first);
        assert!(matches!(poll(&mut second), Poll::Ready(Some(Ok(_)))));
        // A body larger than any route accepts reserves that much, not its length.
        let mut large = body(10_000, &[b"x"], &budget);
        assert!(poll(&mut large).is_pending());
        drop(second);
        assert!(matches!(poll(&mut large), Poll::Ready(Some(Ok(_)))));
        assert_eq!(budget.bytes.available_permits(), 20);
        // A body with nothing to read takes nothing.
        let empty = Limited::new(
            Body::empty(),
            Duration::from_secs(1),
            &budget,
            Expired::default(),
        );
        assert!(empty.is_end_stream());
        assert_eq!(budget.bytes.available_permits(), 20);
    }

    #[tokio::test]
    async fn a_body_past_its_deadline_fails_and_says_so() {
        let budget = Budget::new(100, 100);
        let expired = Expired::default();
        let mut late = Limited::new(
            Body::new(Chunks {
                length: 10,
                ready: VecDeque::new(),
            }),
            Duration::ZERO,
            &budget,
            expired.clone(),
        );
        let read = futures::future::poll_fn(|cx| Pin::new(&mut late).poll_frame(cx)).await;
        assert!(matches!(read, Some(Err(_))));
        assert!(expired.happened());
    }
}
