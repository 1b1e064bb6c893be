//! The contract between a sync provider and the supervisor.
//!
//! A provider only fetches bytes and notices changes; it pushes raw [`Payload`]s (or an
//! "unavailable" signal) into its [`PayloadSink`]. The sink parses, validates, applies to the
//! store, keeps the last good configuration on failure, counts and logs, and tracks
//! readiness, so every provider gets identical failure handling.
//!
//! Shapes the planned providers take:
//! - S3: poll every `interval`, conditional GET with the last ETag (`If-None-Match`); a 304
//!   publishes nothing; a 200 publishes the body with the format from the key's extension or
//!   the Content-Type. It also wakes on [`SourceContext::refresh`].
//! - SQS: not a [`Source`] of its own. A notification task maps each S3 event (bucket/key) to
//!   the configured source URI and calls
//!   [`Supervisor::refresh`](super::Supervisor::refresh), which signals that source's
//!   `refresh` handle; the S3 source then re-fetches immediately instead of waiting for its
//!   next poll.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{watch, Notify};

use crate::flags::{parse_document, Format};
use crate::store::Store;

/// The future a running source is.
pub type SourceFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A sync provider: fetches one source's document and pushes it into the sink.
pub trait Source: Send + 'static {
    /// Runs until `ctx.shutdown` fires, publishing every new version of the document.
    ///
    /// A source never gives up on transient errors: it reports them with
    /// [`PayloadSink::unavailable`] and keeps trying.
    fn run(self: Box<Self>, ctx: SourceContext) -> SourceFuture;
}

/// What a running source is given.
#[derive(Debug)]
pub struct SourceContext {
    /// Where payloads go.
    pub sink: PayloadSink,
    /// Signalled when someone (e.g. an SQS notification) asks for an immediate re-fetch.
    pub refresh: Arc<Notify>,
    /// Completes when the daemon shuts down.
    pub shutdown: Shutdown,
}

/// One fetched version of a source's document.
#[derive(Debug, Clone)]
pub struct Payload {
    /// The raw document.
    pub bytes: Bytes,
    /// How to parse it.
    pub format: Format,
}

/// What the sink did with a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Parsed and applied to the store.
    Applied,
    /// Rejected; the last good configuration stays.
    Rejected,
    /// Same as the last payload (or the same failure again): nothing done.
    Unchanged,
}

/// A shutdown signal sources can await (cloneable, level-triggered).
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// A signal and the sender that fires it.
    pub fn channel() -> (watch::Sender<bool>, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (tx, Shutdown(rx))
    }

    /// Completes once shutdown has been requested (or the supervisor is gone).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    /// Whether shutdown has been requested.
    pub fn is_requested(&self) -> bool {
        *self.0.borrow()
    }
}

/// Counters for one source, readable by management and metrics code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceStats {
    /// The stored source URI.
    pub uri: String,
    /// The provider name as configured.
    pub provider: String,
    /// Payloads applied to the store.
    pub applied: u64,
    /// Payloads not applied: invalid documents plus unavailable-source reports.
    pub rejected: u64,
    /// Of `rejected`, how many were the source being unreadable or gone.
    pub unavailable: u64,
    /// Whether this source has applied a valid configuration at least once.
    pub ready: bool,
    /// The most recent rejection reason, if any.
    pub last_error: Option<String>,
}

/// The last thing a source delivered, to drop repeats.
#[derive(Debug, Clone, PartialEq)]
enum Last {
    Bytes(Bytes),
    Unavailable(String),
}

/// State shared by a source's sink and the supervisor.
#[derive(Debug)]
pub(super) struct SourceState {
    pub(super) uri: String,
    pub(super) provider: String,
    priority: usize,
    applied: AtomicU64,
    rejected: AtomicU64,
    unavailable: AtomicU64,
    ready: AtomicBool,
    last: Mutex<Option<Last>>,
    last_error: Mutex<Option<String>>,
}

impl SourceState {
    pub(super) fn new(uri: String, provider: String, priority: usize) -> SourceState {
        SourceState {
            uri,
            provider,
            priority,
            applied: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            unavailable: AtomicU64::new(0),
            ready: AtomicBool::new(false),
            last: Mutex::new(None),
            last_error: Mutex::new(None),
        }
    }

    pub(super) fn stats(&self) -> SourceStats {
        SourceStats {
            uri: self.uri.clone(),
            provider: self.provider.clone(),
            applied: self.applied.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            unavailable: self.unavailable.load(Ordering::Relaxed),
            ready: self.ready.load(Ordering::Acquire),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }

    /// Records `next` as the last delivery; `false` if it equals the previous one.
    fn replace_last(&self, next: Last) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.as_ref() == Some(&next) {
            return false;
        }
        *last = Some(next);
        true
    }

    fn record_error(&self, reason: String) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
    }
}

/// Tracks how many sources still have to apply their first valid configuration.
#[derive(Debug)]
pub(super) struct Readiness {
    pending: std::sync::atomic::AtomicUsize,
    ready: watch::Sender<bool>,
}

impl Readiness {
    pub(super) fn new(sources: usize) -> Arc<Readiness> {
        let (ready, _) = watch::channel(sources == 0);
        Arc::new(Readiness {
            pending: std::sync::atomic::AtomicUsize::new(sources),
            ready,
        })
    }

    pub(super) fn subscribe(&self) -> watch::Receiver<bool> {
        self.ready.subscribe()
    }

    fn source_ready(&self) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.ready.send_replace(true);
            tracing::info!("all sync sources have applied a valid configuration: ready");
        }
    }
}

/// Where a source pushes what it fetched; parses, applies and keeps the last good config.
#[derive(Debug, Clone)]
pub struct PayloadSink {
    state: Arc<SourceState>,
    store: Arc<Store>,
    readiness: Arc<Readiness>,
}

impl PayloadSink {
    pub(super) fn new(
        state: Arc<SourceState>,
        store: Arc<Store>,
        readiness: Arc<Readiness>,
    ) -> PayloadSink {
        PayloadSink {
            state,
            store,
            readiness,
        }
    }

    /// The stored URI of the source this sink belongs to.
    pub fn uri(&self) -> &str {
        &self.state.uri
    }

    /// Parses `payload` and, if valid, replaces the source's flags in the store.
    ///
    /// A payload identical to the previous one is ignored, so sources may publish freely.
    pub fn publish(&self, payload: Payload) -> Outcome {
        if !self.state.replace_last(Last::Bytes(payload.bytes.clone())) {
            return Outcome::Unchanged;
        }
        let uri = self.state.uri.as_str();
        if payload.bytes.iter().all(u8::is_ascii_whitespace) {
            return self.reject("empty document".into());
        }
        // A parser bug must not end this source's task: treat a panic as a rejection.
        let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            parse_document(&payload.bytes, payload.format)
        }));
        let document = match parsed {
            Ok(Ok(document)) => document,
            Ok(Err(error)) => return self.reject(error.to_string()),
            Err(_) => return self.reject("internal error while parsing the document".into()),
        };
        for warning in &document.warnings {
            match &warning.flag {
                Some(flag) => tracing::warn!(source = uri, flag = %flag, "{}", warning.message),
                None => tracing::warn!(source = uri, "{}", warning.message),
            }
        }
        let flags = document.flags.len();
        let snapshot = self.store.apply(self.state.priority, uri, document);
        self.state.applied.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            source = uri,
            flags,
            version = snapshot.version,
            "applied flag configuration"
        );
        if !self.state.ready.swap(true, Ordering::AcqRel) {
            self.readiness.source_ready();
        }
        Outcome::Applied
    }

    /// Reports that the source cannot be read (deleted, unreachable, ...); the last good
    /// configuration stays. Repeating the same reason is not counted again.
    pub fn unavailable(&self, reason: impl std::fmt::Display) -> Outcome {
        let reason = reason.to_string();
        if !self.state.replace_last(Last::Unavailable(reason.clone())) {
            return Outcome::Unchanged;
        }
        self.state.unavailable.fetch_add(1, Ordering::Relaxed);
        self.reject(reason)
    }

    fn reject(&self, reason: String) -> Outcome {
        let uri = self.state.uri.as_str();
        self.state.rejected.fetch_add(1, Ordering::Relaxed);
        if self.state.ready.load(Ordering::Acquire) {
            tracing::warn!(
                source = uri,
                reason = %reason,
                "rejected flag configuration; keeping the last good one"
            );
        } else {
            tracing::error!(
                source = uri,
                reason = %reason,
                "no valid flag configuration yet; not ready, retrying"
            );
        }
        self.state.record_error(reason);
        Outcome::Rejected
    }
}
