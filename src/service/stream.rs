//! The one server-side stream loop behind EventStream ([`events`](super::events)) and
//! SyncFlags ([`sync`](super::sync)): a first message, then one per store change, optional
//! keep-alives after a silence, a last message when the server drains, DEADLINE_EXCEEDED at
//! the stream deadline, and an end as soon as the client leaves.

use std::future::pending;
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
        let first = self.snapshots.borrow_and_update().clone();
        if !self.send(messages.open(&first)).await {
            return;
        }
        let deadline = deadline_at(self.deadline);
        tokio::pin!(deadline);
        let keep_alive = self.keep_alive;
        let silence = sleep(keep_alive);
        tokio::pin!(silence);

        loop {
            tokio::select! {
                biased;
                () = self.draining.cancelled() => {
                    if let Some(last) = messages.drained() {
                        self.send(last).await;
                    }
                    return;
                }
                () = &mut deadline => {
                    let status = Status::deadline_exceeded("stream closed due to server-side timeout");
                    let _ = self.tx.send(Err(status)).await;
                    return;
                }
                changed = self.snapshots.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let current = self.snapshots.borrow_and_update().clone();
                    if let Some(message) = messages.changed(&current) {
                        if !self.send(message).await {
                            return;
                        }
                        silence.as_mut().reset(Instant::now() + keep_alive);
                    }
                }
                () = &mut silence, if !keep_alive.is_zero() => {
                    if let Some(message) = messages.keep_alive() {
                        if !self.send(message).await {
                            return;
                        }
                    }
                    silence.as_mut().reset(Instant::now() + keep_alive);
                }
                () = self.tx.closed() => return,
            }
        }
    }

    /// Sends one message; `false` when the client has gone.
    async fn send(&self, message: M) -> bool {
        self.tx.send(Ok(message)).await.is_ok()
    }
}

/// Completes at `deadline`, or never without one (streams without a deadline).
async fn deadline_at(deadline: Option<Instant>) {
    match deadline {
        Some(at) => sleep_until(at).await,
        None => pending().await,
    }
}
