//! The SQS provider: long-polls a queue (a configured one and/or this replica's SNS fan-out
//! queue) and turns each message into work.
//!
//! Understood message shapes:
//! - S3 event notifications (`Records[].s3.bucket.name` / `.object.key`, keys URL-encoded
//!   with `+` for space); `s3:TestEvent` is acknowledged and ignored;
//! - the same inside an SNS envelope (`{"Type": "Notification", "Message": "<json>"}`);
//! - EventBridge S3 events (`detail-type` "Object Created"/"Object Deleted",
//!   `detail.bucket.name`, `detail.object.key`);
//! - flagpole inline documents: `{"flagpole": {"source": "<name>", "document": {...}}}`
//!   (`document` may also be a JSON/YAML string with `"format": "yaml"`; `null` removes the
//!   inline source).
//!
//! An S3 event makes every source reading that object (and the configuration object)
//! re-fetch at once; the message is deleted only after each re-fetch has been handled, so a
//! crash loses nothing. A message nobody understands is logged and left in the queue for its
//! redrive policy.

use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use bytes::Bytes;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::aws::{Aws, Backoff};
use super::s3::percent_decode;
use super::sns::{queue_name, FanoutQueue};
use super::source::{Delivery, Payload, RefreshResult, Shutdown};
use super::SourceDirectory;
use crate::flags::Format;

/// The provider name inline sources are listed under.
pub const INLINE_PROVIDER: &str = super::names::INLINE;

/// What one queue message asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// S3 objects that changed.
    Events(Vec<ObjectEvent>),
    /// An inline flag document (or its removal).
    Inline(InlineDocument),
    /// Understood, nothing to do (S3 test event, SNS subscription notices).
    Ignore(&'static str),
}

/// One S3 object created or deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEvent {
    /// The bucket.
    pub bucket: String,
    /// The object key, decoded.
    pub key: String,
    /// Whether the object was deleted.
    pub removed: bool,
}

/// A flag document delivered in the message itself.
#[derive(Debug, Clone, PartialEq)]
pub struct InlineDocument {
    /// The source name it is stored and selected under.
    pub source: String,
    /// The document (`None` = remove the inline source).
    pub document: Option<(Bytes, Format)>,
    /// The publisher's sequence number: a message older than the applied one is dropped
    /// (a standard queue may deliver two updates out of order).
    pub sequence: Option<u64>,
}

/// Classifies a message body; `Err` says why nobody can use it.
pub fn parse_message(body: &str) -> Result<Message, String> {
    let value: Value =
        serde_json::from_str(body).map_err(|e| format!("not a JSON message: {e}"))?;
    classify(&value, true)
}

fn classify(value: &Value, allow_envelope: bool) -> Result<Message, String> {
    let text = |v: &Value, path: &[&str]| -> Option<String> {
        let mut v = v;
        for p in path {
            v = v.get(p)?;
        }
        v.as_str().map(str::to_owned)
    };
    // SNS envelope (raw delivery off).
    if let Some(kind) = value.get("Type").and_then(Value::as_str) {
        if allow_envelope && kind == "Notification" {
            let inner = text(value, &["Message"]).ok_or("SNS notification without a Message")?;
            let inner: Value = serde_json::from_str(&inner)
                .map_err(|e| format!("SNS message is not JSON: {e}"))?;
            return classify(&inner, false);
        }
        if kind == "SubscriptionConfirmation" || kind == "UnsubscribeConfirmation" {
            return Ok(Message::Ignore("SNS subscription notice"));
        }
    }
    if value.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Message::Ignore("S3 test event"));
    }
    if let Some(records) = value.get("Records").and_then(Value::as_array) {
        let mut events = Vec::with_capacity(records.len());
        for record in records {
            let name = text(record, &["eventName"]).unwrap_or_default();
            let bucket = text(record, &["s3", "bucket", "name"]);
            let key = text(record, &["s3", "object", "key"]);
            let (Some(bucket), Some(key)) = (bucket, key) else {
                return Err("S3 event record without s3.bucket.name and s3.object.key".into());
            };
            events.push(ObjectEvent {
                bucket,
                key: percent_decode(&key, true),
                removed: name.starts_with("ObjectRemoved"),
            });
        }
        if events.is_empty() {
            return Err("S3 event without records".into());
        }
        return Ok(Message::Events(events));
    }
    if let Some(kind) = value.get("detail-type").and_then(Value::as_str) {
        let removed = match kind {
            "Object Created" => false,
            "Object Deleted" => true,
            other => {
                return Err(format!(
                    "EventBridge event `{other}` is not an S3 object event"
                ))
            }
        };
        let bucket = text(value, &["detail", "bucket", "name"]);
        let key = text(value, &["detail", "object", "key"]);
        let (Some(bucket), Some(key)) = (bucket, key) else {
            return Err(
                "EventBridge event without detail.bucket.name and detail.object.key".into(),
            );
        };
        return Ok(Message::Events(vec![ObjectEvent {
            bucket,
            key,
            removed,
        }]));
    }
    if let Some(inline) = value.get("flagpole") {
        return inline_document(inline).map(Message::Inline);
    }
    Err("not an S3, SNS, EventBridge or flagpole message".into())
}

fn inline_document(inline: &Value) -> Result<InlineDocument, String> {
    let source = inline
        .get("source")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or("flagpole message without a `source` name")?
        .to_owned();
    let format = match inline.get("format").and_then(Value::as_str) {
        None | Some("json") => Format::Json,
        Some("yaml") | Some("yml") => Format::Yaml,
        Some(other) => return Err(format!("unknown inline format `{other}`")),
    };
    let document = match inline.get("document") {
        None => return Err("flagpole message without a `document` (use null to remove)".into()),
        Some(Value::Null) => None,
        Some(Value::String(text)) => Some((Bytes::copy_from_slice(text.as_bytes()), format)),
        Some(document @ Value::Object(_)) => {
            Some((Bytes::from(document.to_string()), Format::Json))
        }
        Some(_) => return Err("`document` must be an object, a string or null".into()),
    };
    let sequence = match inline.get("sequence") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or("`sequence` must be a non-negative integer")?,
        ),
    };
    Ok(InlineDocument {
        source,
        document,
        sequence,
    })
}

/// Why a receive loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LoopEnd {
    /// The daemon is shutting down.
    Shutdown,
    /// The queue no longer exists.
    QueueMissing,
}

/// What to do with a handled message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Disposition {
    /// Its effect is applied (or there was nothing to do): delete it.
    Delete,
    /// Not applied: leave it to reappear after the visibility timeout (or be redriven).
    Keep,
}

/// Long-polls the queue(s) and applies each message.
#[derive(Debug)]
pub(super) struct Consumer {
    aws: Arc<Aws>,
    directory: Arc<SourceDirectory>,
    /// What is remembered per inline source; held while an inline message is applied, so
    /// expiry never removes a source a message has just refreshed.
    inline: InlineMemories,
}

/// What the consumer remembers of every inline source, shared by its restarts.
pub(super) type InlineMemories = Arc<std::sync::Mutex<HashMap<String, InlineMemory>>>;

/// What the consumer remembers of one inline source.
#[derive(Debug, Clone, Copy)]
pub(super) struct InlineMemory {
    /// The last applied sequence number.
    sequence: Option<u64>,
    /// When a message for it was last applied.
    last_message: Instant,
}

/// The inline sources without an applied message for `expiry` at `now`.
fn expired(memory: &HashMap<String, InlineMemory>, now: Instant, expiry: Duration) -> Vec<String> {
    memory
        .iter()
        .filter(|(_, m)| now.saturating_duration_since(m.last_message) >= expiry)
        .map(|(source, _)| source.clone())
        .collect()
}

impl Consumer {
    pub(super) fn new(
        aws: Arc<Aws>,
        directory: Arc<SourceDirectory>,
        inline: InlineMemories,
    ) -> Consumer {
        Consumer {
            aws,
            directory,
            inline,
        }
    }

    fn inline_memory(&self) -> std::sync::MutexGuard<'_, HashMap<String, InlineMemory>> {
        self.inline.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Removes inline sources that received no message for `--sqs-inline-expiry` (their
    /// sequence is forgotten too, so a restarted publisher may count from 1 again).
    async fn expire_inline(&self, mut shutdown: Shutdown) {
        let expiry = self.aws.settings().sqs_inline_expiry;
        if expiry.is_zero() {
            return;
        }
        let period = (expiry / 4).clamp(Duration::from_millis(10), Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tokio::time::sleep(period) => {}
            }
            let mut memory = self.inline_memory();
            for source in expired(&memory, Instant::now(), expiry) {
                memory.remove(&source);
                let removed = self.directory.remove_inline(&source);
                tracing::info!(source = %source, removed, after = ?expiry, "inline source expired: no message for it");
            }
        }
    }

    /// Runs until shutdown; then unsubscribes and deletes the fan-out queue, if any.
    pub(super) async fn run(self, shutdown: Shutdown) {
        let settings = self.aws.settings().clone();
        let sqs = self.aws.sqs().await;
        let configured = settings.sqs_queue_url.clone();
        tokio::join!(
            async {
                if let Some(url) = &configured {
                    // A configured queue is not ours to re-create: a missing one is retried.
                    self.receive_loop(&sqs, url, shutdown.clone(), false).await;
                }
            },
            async {
                if let Some(topic) = &settings.sns_topic_arn {
                    self.fanout(&sqs, topic, shutdown.clone()).await;
                }
            },
            self.expire_inline(shutdown.clone())
        );
    }

    /// Creates this replica's queue, consumes it, and deletes it at shutdown; a queue deleted
    /// from outside is created and subscribed again.
    async fn fanout(&self, sqs: &aws_sdk_sqs::Client, topic: &str, mut shutdown: Shutdown) {
        let settings = self.aws.settings();
        let sns = self.aws.sns().await;
        let replica = self.aws.replica().await.to_owned();
        let name = queue_name(&settings.sqs_queue_prefix, &replica);
        let mut backoff = Backoff::default();
        let mut failing: Option<String> = None;
        loop {
            let created = FanoutQueue::create(
                sqs,
                &sns,
                topic,
                &name,
                &replica,
                settings.sqs_visibility_timeout,
                settings.sqs_dead_letter_arn.as_deref(),
            )
            .await;
            match created {
                Ok(queue) => {
                    backoff.reset();
                    failing = None;
                    let end = self
                        .receive_loop(sqs, &queue.url, shutdown.clone(), true)
                        .await;
                    queue.delete(sqs, &sns).await;
                    match end {
                        LoopEnd::Shutdown => return,
                        LoopEnd::QueueMissing => {
                            tracing::warn!(topic, queue = %name, "the fan-out queue is gone; creating it again");
                            continue;
                        }
                    }
                }
                Err(error) => {
                    if failing.as_deref() != Some(error.as_str()) {
                        tracing::error!(topic, error = %error, "cannot set up the SNS fan-out queue; retrying");
                        failing = Some(error);
                    }
                }
            }
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
    }

    async fn receive_loop(
        &self,
        sqs: &aws_sdk_sqs::Client,
        url: &str,
        mut shutdown: Shutdown,
        end_if_missing: bool,
    ) -> LoopEnd {
        let settings = self.aws.settings();
        let mut backoff = Backoff::default();
        let mut failing = false;
        let stats = self.directory.register_queue(url);
        tracing::info!(queue = url, "consuming SQS change events");
        loop {
            let receive = sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(settings.sqs_batch_size)
                .wait_time_seconds(settings.sqs_wait_time.as_secs() as i32)
                .visibility_timeout(settings.sqs_visibility_timeout.as_secs() as i32)
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .send();
            let received = tokio::select! {
                _ = shutdown.wait() => return LoopEnd::Shutdown,
                received = receive => received,
            };
            let output = match received {
                Ok(output) => {
                    stats.count_success();
                    if failing {
                        tracing::info!(queue = url, "SQS queue is reachable again");
                        failing = false;
                    }
                    backoff.reset();
                    output
                }
                Err(error) => {
                    let missing = error.as_service_error().is_some_and(|e| {
                        e.is_queue_does_not_exist()
                            || e.code() == Some("AWS.SimpleQueueService.NonExistentQueue")
                    });
                    let reason = DisplayErrorContext(&error).to_string();
                    if missing && end_if_missing {
                        stats.count_error(&reason);
                        return LoopEnd::QueueMissing;
                    }
                    if stats.count_error(&reason) || !failing {
                        tracing::error!(
                            queue = url,
                            error = %reason,
                            "cannot receive from SQS; retrying with backoff"
                        );
                        failing = true;
                    }
                    tokio::select! {
                        _ = shutdown.wait() => return LoopEnd::Shutdown,
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                    continue;
                }
            };
            let messages = output.messages.unwrap_or_default();
            if messages.is_empty() {
                continue;
            }
            let handled = futures_util::future::join_all(
                messages
                    .iter()
                    .map(|m| self.handle(m.body().unwrap_or(""), m)),
            )
            .await;
            let entries: Vec<DeleteMessageBatchRequestEntry> = messages
                .iter()
                .zip(handled)
                .enumerate()
                .filter(|(_, (_, d))| *d == Disposition::Delete)
                .filter_map(|(i, (m, _))| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .set_receipt_handle(m.receipt_handle.clone())
                        .build()
                        .ok()
                })
                .collect();
            if entries.is_empty() {
                continue;
            }
            match sqs
                .delete_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(out) if !out.failed.is_empty() => tracing::warn!(
                    queue = url,
                    failed = out.failed.len(),
                    "some handled messages could not be deleted; they will be handled again"
                ),
                Ok(_) => {}
                Err(error) => tracing::warn!(
                    queue = url,
                    error = %DisplayErrorContext(&error),
                    "cannot delete handled messages; they will be handled again"
                ),
            }
        }
    }

    async fn handle(&self, body: &str, message: &aws_sdk_sqs::types::Message) -> Disposition {
        let id = message.message_id().unwrap_or("?");
        match parse_message(body) {
            Err(reason) => {
                let receives = message
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .map(String::as_str)
                    .unwrap_or("?");
                tracing::warn!(
                    message_id = id,
                    receives,
                    reason = %reason,
                    "unintelligible SQS message; leaving it for the queue's redrive policy"
                );
                Disposition::Keep
            }
            Ok(Message::Ignore(what)) => {
                tracing::debug!(message_id = id, what, "ignoring SQS message");
                Disposition::Delete
            }
            Ok(Message::Events(events)) => self.refresh(id, &events).await,
            Ok(Message::Inline(inline)) => self.inline(id, inline),
        }
    }

    /// Re-fetches every source reading one of the changed objects; `Delete` once all have
    /// handled their fetch.
    pub(super) async fn refresh(&self, id: &str, events: &[ObjectEvent]) -> Disposition {
        let mut acks = Vec::new();
        for event in events {
            let matched = self.directory.refresh_object(&event.bucket, &event.key);
            tracing::debug!(
                message_id = id,
                bucket = %event.bucket,
                key = %event.key,
                removed = event.removed,
                sources = matched.len(),
                "S3 change event"
            );
            acks.extend(matched);
        }
        let patience = self.aws.settings().sqs_visibility_timeout;
        let results = tokio::time::timeout(patience, futures_util::future::join_all(acks)).await;
        let Ok(results) = results else {
            tracing::warn!(
                message_id = id,
                "re-fetch did not finish in time; message kept"
            );
            return Disposition::Keep;
        };
        for result in results {
            match result {
                Ok(RefreshResult::Done) => {}
                Ok(RefreshResult::Failed(reason)) => {
                    tracing::debug!(message_id = id, reason = %reason, "re-fetch failed; message kept");
                    return Disposition::Keep;
                }
                // Closed without an answer: the source task died or is being stopped. Not
                // "removed": the change may not be applied, so the message comes back after
                // the visibility timeout (and is deleted then if no source reads the object).
                Err(_) => {
                    tracing::debug!(
                        message_id = id,
                        "re-fetch ended without an answer; message kept"
                    );
                    return Disposition::Keep;
                }
            }
        }
        Disposition::Delete
    }

    fn inline(&self, id: &str, inline: InlineDocument) -> Disposition {
        let allowed = &self.aws.settings().sqs_inline;
        if !allowed.iter().any(|a| a == "*" || *a == inline.source) {
            // Kept, not deleted: the queue's redrive policy decides, and nothing is lost if
            // the operator meant to allow it.
            tracing::warn!(
                message_id = id,
                source = %inline.source,
                "inline flag document refused: its source is not allowed by --sqs-inline; message kept"
            );
            return Disposition::Keep;
        }
        let mut memory = self.inline_memory();
        if let Some(sequence) = inline.sequence {
            if let Some(applied) = memory.get(&inline.source).and_then(|m| m.sequence) {
                if sequence <= applied {
                    self.directory
                        .inline_dropped_older
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(
                        message_id = id,
                        source = %inline.source,
                        sequence,
                        applied,
                        "inline document older than the applied one; dropped"
                    );
                    return Disposition::Delete;
                }
            }
        }
        let source = inline.source.clone();
        let disposition = self.apply_inline(id, inline.document, &source);
        if disposition == Disposition::Delete {
            let entry = memory.entry(source).or_insert(InlineMemory {
                sequence: None,
                last_message: Instant::now(),
            });
            entry.last_message = Instant::now();
            entry.sequence = inline.sequence.or(entry.sequence);
        }
        disposition
    }

    fn apply_inline(
        &self,
        id: &str,
        document: Option<(Bytes, Format)>,
        source: &str,
    ) -> Disposition {
        let inline = InlineDocument {
            source: source.to_owned(),
            document,
            sequence: None,
        };
        let Some((bytes, format)) = inline.document else {
            let removed = self.directory.remove_inline(&inline.source);
            tracing::info!(message_id = id, source = %inline.source, removed, "inline source removal");
            return Disposition::Delete;
        };
        let limit = self.directory.env.max_document_size;
        if bytes.len() > limit {
            tracing::warn!(
                message_id = id,
                source = %inline.source,
                size = bytes.len(),
                "inline document larger than {limit} bytes (raise --max-document-size to accept it); message kept"
            );
            return Disposition::Keep;
        }
        match self
            .directory
            .publish_inline(&inline.source, Payload { bytes, format })
        {
            Ok(Delivery::Applied | Delivery::Unchanged) => Disposition::Delete,
            Ok(Delivery::Rejected) => {
                tracing::warn!(
                    message_id = id,
                    source = %inline.source,
                    "invalid inline flag document; leaving the message for the redrive policy"
                );
                Disposition::Keep
            }
            Err(reason) => {
                tracing::warn!(message_id = id, reason = %reason, "inline document refused; message kept");
                Disposition::Keep
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn events(message: Message) -> Vec<ObjectEvent> {
        match message {
            Message::Events(events) => events,
            other => panic!("expected events, got {other:?}"),
        }
    }

    fn s3_event(name: &str, key: &str) -> Value {
        json!({"Records": [{
            "eventSource": "aws:s3", "eventName": name,
            "s3": {"bucket": {"name": "flags"}, "object": {"key": key, "eTag": "x"}}
        }]})
    }

    #[test]
    fn s3_notifications_with_encoded_keys() {
        let e = events(
            parse_message(&s3_event("ObjectCreated:Put", "dir/my+flags%3D1.json").to_string())
                .unwrap(),
        );
        assert_eq!(
            e,
            [ObjectEvent {
                bucket: "flags".into(),
                key: "dir/my flags=1.json".into(),
                removed: false
            }]
        );
        let e =
            events(parse_message(&s3_event("ObjectRemoved:Delete", "a.json").to_string()).unwrap());
        assert!(e[0].removed);
    }

    #[test]
    fn test_events_and_envelopes() {
        let test = json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "flags"});
        assert!(matches!(
            parse_message(&test.to_string()),
            Ok(Message::Ignore(_))
        ));
        let wrapped = json!({
            "Type": "Notification", "TopicArn": "arn:aws:sns:us-east-1:1:t",
            "Message": s3_event("ObjectCreated:Put", "a.json").to_string()
        });
        assert_eq!(
            events(parse_message(&wrapped.to_string()).unwrap())[0].key,
            "a.json"
        );
        let wrapped_test = json!({"Type": "Notification", "Message": test.to_string()});
        assert!(matches!(
            parse_message(&wrapped_test.to_string()),
            Ok(Message::Ignore(_))
        ));
        // One envelope only.
        let twice = json!({"Type": "Notification", "Message": wrapped.to_string()});
        assert!(parse_message(&twice.to_string()).is_err());
    }

    #[test]
    fn eventbridge_events() {
        let created = json!({
            "version": "0", "detail-type": "Object Created", "source": "aws.s3",
            "detail": {"bucket": {"name": "flags"}, "object": {"key": "my flags.json"}}
        });
        let e = events(parse_message(&created.to_string()).unwrap());
        assert_eq!((e[0].key.as_str(), e[0].removed), ("my flags.json", false));
        let mut deleted = created.clone();
        deleted["detail-type"] = json!("Object Deleted");
        assert!(events(parse_message(&deleted.to_string()).unwrap())[0].removed);
        let mut other = created;
        other["detail-type"] = json!("Object Restore Completed");
        assert!(parse_message(&other.to_string()).is_err());
    }

    #[test]
    fn inline_documents() {
        let msg = json!({"flagpole": {"source": "inline:promo", "document": {"flags": {}}}});
        let Message::Inline(doc) = parse_message(&msg.to_string()).unwrap() else {
            panic!("inline expected")
        };
        assert_eq!(doc.source, "inline:promo");
        let (bytes, format) = doc.document.unwrap();
        assert_eq!((&bytes[..], format), (&b"{\"flags\":{}}"[..], Format::Json));
        let yaml = json!({"flagpole": {"source": "s", "format": "yaml", "document": "flags: {}"}});
        let Message::Inline(doc) = parse_message(&yaml.to_string()).unwrap() else {
            panic!("inline expected")
        };
        assert_eq!(doc.document.unwrap().1, Format::Yaml);
        let removal = json!({"flagpole": {"source": "s", "document": null}});
        let Message::Inline(doc) = parse_message(&removal.to_string()).unwrap() else {
            panic!("inline expected")
        };
        assert!(doc.document.is_none());
        assert!(parse_message(&json!({"flagpole": {"document": {}}}).to_string()).is_err());
        assert!(parse_message(&json!({"flagpole": {"source": "s"}}).to_string()).is_err());
    }

    #[test]
    fn inline_sources_expire_only_after_a_quiet_period() {
        let expiry = Duration::from_secs(60);
        let start = Instant::now();
        let seen = |at: Duration| InlineMemory {
            sequence: None,
            last_message: start + at,
        };
        let memory = HashMap::from([
            ("quiet".to_owned(), seen(Duration::ZERO)),
            ("refreshed".to_owned(), seen(Duration::from_secs(50))),
        ]);
        assert!(expired(&memory, start + Duration::from_secs(59), expiry).is_empty());
        assert_eq!(
            expired(&memory, start + Duration::from_secs(61), expiry),
            ["quiet"]
        );
        // A clock that seems to go backwards expires nothing.
        assert!(expired(&memory, start, expiry).is_empty());
    }

    #[test]
    fn poison_messages_are_errors() {
        assert!(parse_message("hello").is_err());
        assert!(parse_message("{}").is_err());
        assert!(parse_message(r#"{"Records": []}"#).is_err());
        assert!(parse_message(r#"{"Records": [{"s3": {}}]}"#).is_err());
        assert!(parse_message(r#"{"Type": "Notification", "Message": "not json"}"#).is_err());
    }
}
