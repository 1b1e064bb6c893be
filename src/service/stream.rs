//! The one server-side stream loop behind EventStream ([`events`](super::events)) and
//! SyncFlags ([`sync`](super::sync)): a first message, then one per store change, optional
//! keep-alives after a silence, a last message when the server drains, DEADLINE_EXCEEDED at
//! the stream deadline, and an end as soon as the client leaves.

use std::future::{pending, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{sleep, sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::limits::StreamSlot;
use super::metrics::StreamGuard;
use crate::store::Snapshot;

/// What one kind of stream sends; [`StreamLoop`] decides when.
pub(super) trait StreamMessages: Send + 'static {
    /// The response message type.
    type Message: Send + 'static;
    /// The first message, given the snapshot current when the stream opened.
    fn open(&mut self, snapshot: &Arc<Snapshot>) -> Self::Message;
    /// The message for a new snapshot, or `None` when the client need not hear of it.
    fn changed(&mut self, snapshot: &Arc<Snapshot>) -> Option<Self::Message>;
    /// The message after a silence of the loop's keep-alive interval.
    fn keep_alive(&mut self) -> Option<Self::Message>;
    /// The last message when the server drains, if any.
    fn drained(&mut self) -> Option<Self::Message>;
}

/// One open stream: its channel to the client, the store, the drain token and its limits.
pub(super) struct StreamLoop<M> {
    /// Counts this stream in its open-streams gauge until it ends.
    pub(super) _open: StreamGuard,
    /// Holds this stream's place under `--max-open-streams` until it ends.
    pub(super) _slot: StreamSlot,
    /// Where messages go; closed when the client leaves.
    pub(super) tx: mpsc::Sender<Result<M, Status>>,
    /// The store's snapshots.
    pub(super) snapshots: watch::Receiver<Arc<Snapshot>>,
    /// Cancelled when the server drains.
    pub(super) draining: CancellationToken,
    /// Silence after which a keep-alive is sent (zero: never).
    pub(super) keep_alive: Duration,
    /// Server-side deadline, if any.
    pub(super) deadline: Option<Instant>,
}

impl<M: Send + 'static> StreamLoop<M> {
    /// Runs the stream until the client leaves, the deadline passes or the server drains.
    pub(super) async fn run(mut self, mut messages: impl StreamMessages<Message = M>) {
        let deadline = deadline_at(self.deadline);
        tokio::pin!(deadline);
        let first = self.snapshots.borrow_and_update().clone();
        if !self.send(messages.open(&first), deadline.as_mut()).await {
            return;
        }
        let keep_alive = self.keep_alive;
        let silence = sleep(keep_alive);
        tokio::pin!(silence);

        loop {
            tokio::select! {
                biased;
                () = self.draining.cancelled() => {
                    // A client that stopped reading has a full buffer: it misses the last
                    // message rather than holding the drain.
                    if let Some(last) = messages.drained() {
                        let _ = self.tx.try_send(Ok(last));
                    }
                    return;
                }
                () = deadline.as_mut() => {
                    let status = Status::deadline_exceeded("stream closed due to server-side timeout");
                    let _ = self.tx.try_send(Err(status));
                    return;
                }
                changed = self.snapshots.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let current = self.snapshots.borrow_and_update().clone();
                    if let Some(message) = messages.changed(&current) {
                        if !self.send(message, deadline.as_mut()).await {
                            return;
                        }
                        silence.as_mut().reset(Instant::now() + keep_alive);
                    }
                }
                () = &mut silence, if !keep_alive.is_zero() => {
                    if let Some(message) = messages.keep_alive() {
                        if !self.send(message, deadline.as_mut()).await {
                            return;
                        }
                    }
                    silence.as_mut().reset(Instant::now() + keep_alive);
                }
                () = self.tx.closed() => return,
            }
        }
    }

    /// Sends one message; `false` when the stream must end: the client has gone, or the
    /// send stayed blocked (a client that stopped reading) until the deadline or the drain.
    /// At the deadline the client gets DEADLINE_EXCEEDED if its buffer has room.
    async fn send(&self, message: M, deadline: Pin<&mut impl Future<Output = ()>>) -> bool {
        tokio::select! {
            biased;
            sent = self.tx.send(Ok(message)) => sent.is_ok(),
            () = self.draining.cancelled() => false,
            () = deadline => {
                let status = Status::deadline_exceeded("stream closed due to server-side timeout");
                let _ = self.tx.try_send(Err(status));
                false
            }
        }
    }
}

/// Completes at `deadline`, or never without one (streams without a deadline).
async fn deadline_at(deadline: Option<Instant>) {
    match deadline {
        Some(at) => sleep_until(at).await,
        None => pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::limits::StreamLimit;
    use crate::service::metrics::Metrics;
    use crate::store::Store;

    /// A message at open and on every keep-alive tick.
    struct Ticks;

    impl StreamMessages for Ticks {
        type Message = u32;
        fn open(&mut self, _: &Arc<Snapshot>) -> u32 {
            0
        }
        fn changed(&mut self, _: &Arc<Snapshot>) -> Option<u32> {
            None
        }
        fn keep_alive(&mut self) -> Option<u32> {
            Some(1)
        }
        fn drained(&mut self) -> Option<u32> {
            Some(2)
        }
    }

    /// What must outlive a stalled stream in these tests.
    type Alive = (mpsc::Receiver<Result<u32, Status>>, Store);

    /// A stream whose client never reads (buffer of one, already full after the first
    /// message); returns the loop, and the receiver and store that must stay alive (a
    /// dropped store ends the loop by itself).
    fn stalled(
        deadline: Option<Duration>,
        draining: CancellationToken,
    ) -> (StreamLoop<u32>, Alive) {
        let (tx, rx) = mpsc::channel(1);
        let store = Store::new();
        let metrics = Arc::new(Metrics::new(10));
        let stream = StreamLoop {
            _open: metrics.event_stream_opened(),
            _slot: StreamLimit::new(1).acquire().unwrap(),
            tx,
            snapshots: store.subscribe(),
            draining,
            keep_alive: Duration::from_millis(5),
            deadline: deadline.map(|d| Instant::now() + d),
        };
        (stream, (rx, store))
    }

    /// Bound for "ends at all": a stalled send that ignored the deadline or drain would
    /// block forever.
    const HANG: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn a_send_blocked_on_a_non_reading_client_ends_at_the_deadline() {
        let (stream, _alive) = stalled(Some(Duration::from_millis(200)), CancellationToken::new());
        tokio::time::timeout(HANG, stream.run(Ticks))
            .await
            .expect("the stalled stream ignored its deadline");
    }

    #[tokio::test]
    async fn a_send_blocked_on_a_non_reading_client_ends_at_the_drain() {
        let draining = CancellationToken::new();
        let (stream, alive) = stalled(None, draining.clone());
        let run = tokio::spawn(stream.run(Ticks));
        tokio::time::sleep(Duration::from_millis(100)).await;
        draining.cancel();
        tokio::time::timeout(HANG, run)
            .await
            .expect("the stalled stream ignored the drain")
            .unwrap();
        drop(alive);
    }
}
