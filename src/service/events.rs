//! EventStream (spec 1.7): `provider_ready` at once, `configuration_change` naming exactly the
//! keys that changed under the stream's selector, `keep_alive` after a silence,
//! `provider_shutdown` when the daemon drains, DEADLINE_EXCEEDED at the stream deadline.

use std::collections::BTreeMap;
use std::future::pending;
use std::sync::Arc;

use http::HeaderMap;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep, sleep_until, Instant};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::evaluation::{selector, EvaluationService};
use super::wire::JsonStruct;
use crate::evaluator::Api;
use crate::store::{ChangeKind, Selector, Snapshot};

/// Events buffered per stream before the stream task waits for the client.
const STREAM_BUFFER: usize = 16;

/// One EventStream message, independent of the API version.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEvent {
    /// `provider_ready`, `configuration_change`, `keep_alive` or `provider_shutdown`.
    pub kind: &'static str,
    /// The payload; unset for `keep_alive`.
    pub data: Option<JsonStruct>,
}

impl StreamEvent {
    fn ready() -> StreamEvent {
        StreamEvent {
            kind: "provider_ready",
            data: Some(JsonStruct::default()),
        }
    }

    fn keep_alive() -> StreamEvent {
        StreamEvent {
            kind: "keep_alive",
            data: None,
        }
    }

    fn shutdown() -> StreamEvent {
        StreamEvent {
            kind: "provider_shutdown",
            data: Some(JsonStruct::default()),
        }
    }

    fn configuration_change(changes: &BTreeMap<String, ChangeKind>) -> StreamEvent {
        let flags: Map<String, Value> = changes
            .iter()
            .map(|(key, kind)| {
                let mut entry = Map::new();
                entry.insert("type".to_owned(), Value::String(kind.as_str().to_owned()));
                (key.clone(), Value::Object(entry))
            })
            .collect();
        let mut data = Map::new();
        data.insert("flags".to_owned(), Value::Object(flags));
        StreamEvent {
            kind: "configuration_change",
            data: Some(JsonStruct(data)),
        }
    }
}

/// The message stream of one EventStream call, in the version's response type `R`.
pub type EventStream<R> = ReceiverStream<Result<R, Status>>;

impl EvaluationService {
    /// Opens an event stream for a request on `api` (the selector comes from `headers`).
    pub fn event_stream<R>(
        self: &Arc<Self>,
        api: Api,
        headers: &HeaderMap,
    ) -> Result<EventStream<R>, Status>
    where
        R: From<StreamEvent> + Send + 'static,
    {
        let selector = selector(headers)?;
        let slot = self.stream_limit.acquire()?;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let deadline = if api.uses_stream_deadline() {
            self.streams.deadline
        } else {
            None
        };
        let task = StreamTask {
            _open: self.metrics.event_stream_opened(),
            _slot: slot,
            tx,
            selector,
            snapshots: self.evaluator.store().subscribe(),
            draining: self.draining.clone(),
            keep_alive: self.streams.keep_alive,
            deadline: deadline.and_then(|d| Instant::now().checked_add(d)),
        };
        tokio::spawn(task.run());
        Ok(ReceiverStream::new(rx))
    }
}

struct StreamTask<R> {
    /// Counts this stream in `flagpole_event_streams_open` until it ends.
    _open: super::metrics::StreamGuard,
    /// Holds this stream's place under `--max-open-streams` until it ends.
    _slot: super::limits::StreamSlot,
    tx: mpsc::Sender<Result<R, Status>>,
    selector: Selector,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    draining: watch::Receiver<bool>,
    keep_alive: std::time::Duration,
    deadline: Option<Instant>,
}

impl<R: From<StreamEvent> + Send + 'static> StreamTask<R> {
    async fn run(mut self) {
        let mut last: Arc<Snapshot> = self.snapshots.borrow_and_update().clone();
        if !send(&self.tx, StreamEvent::ready()).await {
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
                _ = async { self.draining.wait_for(|draining| *draining).await.is_ok() } => {
                    // Also reached when the daemon is gone (sender dropped).
                    send(&self.tx, StreamEvent::shutdown()).await;
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
                    let changes = current.diff(&last, &self.selector);
                    last = current;
                    if !changes.is_empty() {
                        if !send(&self.tx, StreamEvent::configuration_change(&changes)).await {
                            return;
                        }
                        silence.as_mut().reset(Instant::now() + keep_alive);
                    }
                }
                () = &mut silence, if !keep_alive.is_zero() => {
                    if !send(&self.tx, StreamEvent::keep_alive()).await {
                        return;
                    }
                    silence.as_mut().reset(Instant::now() + keep_alive);
                }
                () = self.tx.closed() => return,
            }
        }
    }
}

/// Sends one event; `false` when the client has gone.
async fn send<R: From<StreamEvent>>(
    tx: &mpsc::Sender<Result<R, Status>>,
    event: StreamEvent,
) -> bool {
    tx.send(Ok(R::from(event))).await.is_ok()
}

/// Completes at `deadline`, or never without one (streams without a deadline).
pub(super) async fn deadline_at(deadline: Option<Instant>) {
    match deadline {
        Some(at) => sleep_until(at).await,
        None => pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn configuration_change_carries_only_types_per_key() {
        let mut changes = BTreeMap::new();
        changes.insert("a".to_owned(), ChangeKind::Write);
        changes.insert("b".to_owned(), ChangeKind::Update);
        changes.insert("c".to_owned(), ChangeKind::Delete);
        let event = StreamEvent::configuration_change(&changes);
        assert_eq!(event.kind, "configuration_change");
        assert_eq!(
            Value::Object(event.data.unwrap().0),
            json!({"flags": {"a": {"type": "write"}, "b": {"type": "update"}, "c": {"type": "delete"}}})
        );
    }

    #[test]
    fn ready_and_shutdown_carry_empty_data_keep_alive_none() {
        assert_eq!(StreamEvent::ready().data, Some(JsonStruct::default()));
        assert_eq!(StreamEvent::shutdown().data, Some(JsonStruct::default()));
        assert_eq!(StreamEvent::keep_alive().data, None);
    }
}
