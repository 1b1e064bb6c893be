//! EventStream (spec 1.7): `provider_ready` at once, `configuration_change` naming exactly the
//! keys that changed under the stream's selector, `keep_alive` after a silence,
//! `provider_shutdown` when the daemon drains, DEADLINE_EXCEEDED at the stream deadline.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;

use http::HeaderMap;
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::evaluation::{selector, EvaluationService};
use super::stream::{StreamLoop, StreamMessages};
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
pub(crate) type EventStream<R> = ReceiverStream<Result<R, Status>>;

impl EvaluationService {
    /// Opens an event stream for a request on `api` (the selector comes from `headers`).
    pub(crate) fn event_stream<R>(
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
        let task = StreamLoop {
            _open: self.metrics.event_stream_opened(),
            _slot: slot,
            tx,
            snapshots: self.evaluator.store().subscribe(),
            draining: self.draining.clone(),
            keep_alive: self.streams.keep_alive,
            deadline: deadline.and_then(|d| Instant::now().checked_add(d)),
        };
        tokio::spawn(task.run(Events::<R> {
            selector,
            last: None,
            response: PhantomData,
        }));
        Ok(ReceiverStream::new(rx))
    }
}

/// The messages of one event stream: changes are diffs against the last snapshot seen.
struct Events<R> {
    selector: Selector,
    last: Option<Arc<Snapshot>>,
    response: PhantomData<fn() -> R>,
}

impl<R: From<StreamEvent> + Send + 'static> StreamMessages for Events<R> {
    type Message = R;

    fn open(&mut self, snapshot: &Arc<Snapshot>) -> R {
        self.last = Some(snapshot.clone());
        R::from(StreamEvent::ready())
    }

    fn changed(&mut self, snapshot: &Arc<Snapshot>) -> Option<R> {
        let changes = match self.last.replace(snapshot.clone()) {
            Some(last) => snapshot.changes_since(&last, &self.selector),
            None => return None,
        };
        (!changes.is_empty()).then(|| R::from(StreamEvent::configuration_change(&changes)))
    }

    fn keep_alive(&mut self) -> Option<R> {
        Some(R::from(StreamEvent::keep_alive()))
    }

    fn drained(&mut self) -> Option<R> {
        Some(R::from(StreamEvent::shutdown()))
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
