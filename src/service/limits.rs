//! Limits that keep a hostile or broken client from exhausting the daemon: the daemon-wide
//! cap on open EventStream + SyncFlags streams (`--max-open-streams`). The per-connection
//! HTTP/2 stream limit, the TLS handshake and HTTP/1.1 header timeouts and the accept
//! back-off live with the servers ([`super::listener`], [`super::server`], [`super::sync`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{sleep_until, Instant, Sleep};
use tonic::Status;

/// The daemon-wide cap on open streams, shared by the evaluation and sync ports.
#[derive(Debug, Clone)]
pub(crate) struct StreamLimit {
    slots: Option<Arc<Semaphore>>,
    max: usize,
}

/// One open stream's place under the cap; released when dropped.
#[derive(Debug)]
pub(crate) struct StreamSlot(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

impl StreamLimit {
    /// At most `max` streams at once; 0 = no cap.
    pub(crate) fn new(max: usize) -> StreamLimit {
        StreamLimit {
            slots: (max > 0).then(|| Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS)))),
            max,
        }
    }

    /// A slot for a new stream, or RESOURCE_EXHAUSTED when all are taken.
    pub(crate) fn acquire(&self) -> Result<StreamSlot, Status> {
        match &self.slots {
            None => Ok(StreamSlot(None)),
            Some(slots) => slots
                .clone()
                .try_acquire_owned()
                .map(|p| StreamSlot(Some(p)))
                .map_err(|_| {
                    Status::resource_exhausted(format!(
                        "too many open streams (limit {}); retry later",
                        self.max
                    ))
                }),
        }
    }
}

/// A request body that must arrive in full within a deadline counted from the end of the
/// request's headers (`--body-read-timeout`): a client that starts a body and never finishes
/// it gets an error (the handler answers it, the connection is closed) instead of holding
/// the request open forever.
#[derive(Debug)]
pub(crate) struct TimedBody<B> {
    inner: B,
    /// The end of the request's headers.
    start: Instant,
    /// Armed at the first `Pending`: most unary bodies are already complete when the handler
    /// first reads them, and a timer registered and cancelled for every request cost more than
    /// the clock read (issue 16's unary profile).
    deadline: Option<Pin<Box<Sleep>>>,
    timeout: Duration,
}

/// The body did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("request body not received within {0:?}")]
pub(crate) struct BodyTimeout(Duration);

impl<B> TimedBody<B> {
    /// `inner`, cut `timeout` from now.
    pub(crate) fn new(inner: B, timeout: Duration) -> TimedBody<B> {
        TimedBody {
            inner,
            start: Instant::now(),
            deadline: None,
            timeout,
        }
    }
}

impl<B> Body for TimedBody<B>
where
    B: Body + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = B::Data;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => {
                let at = self.start + self.timeout;
                let deadline = self
                    .deadline
                    .get_or_insert_with(|| Box::pin(sleep_until(at)));
                match deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(self.timeout))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_run_out_and_come_back() {
        let limit = StreamLimit::new(2);
        let a = limit.acquire().unwrap();
        let _b = limit.acquire().unwrap();
        let error = limit.acquire().unwrap_err();
        assert_eq!(error.code(), tonic::Code::ResourceExhausted);
        drop(a);
        assert!(limit.acquire().is_ok());
        let unlimited = StreamLimit::new(0);
        let held: Vec<_> = (0..100).map(|_| unlimited.acquire().unwrap()).collect();
        assert_eq!(held.len(), 100);
    }
}
