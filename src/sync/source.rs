//! The contract between a sync provider and the supervisor.
//!
//! A provider only fetches bytes and notices changes; it pushes raw [`Payload`]s (or an
//! "unavailable" signal) into its [`PayloadSink`]. The sink parses, validates, applies to the
//! store, keeps the last good configuration on failure, counts and logs, and tracks
//! readiness, so every provider gets identical failure handling.
//!
//! Shapes the providers take:
//! - S3: poll every `interval`, conditional GET with the last ETag (`If-None-Match`); a 304
//!   publishes nothing; a 200 publishes the body with the format from the key's extension or
//!   the Content-Type. It also wakes on [`SourceContext::refresh`].
//! - SQS: not a [`Source`] of its own. A notification task maps each S3 event (bucket/key) to
//!   the configured source and sends it a [`Refresh`] request carrying an acknowledgement;
//!   the S3 source re-fetches immediately and completes the request once the result has been
//!   applied, so the message is deleted only after its effect is in the store.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::cache::Cache;
use crate::flags::{parse_document, Format};
use crate::store::Store;
use crate::telemetry::Tracer;

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
    /// Requests for an immediate re-fetch (e.g. from an SQS notification).
    pub refresh: Refreshes,
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
pub enum Delivery {
    /// Parsed and applied to the store.
    Applied,
    /// Rejected; the last good configuration stays.
    Rejected,
    /// Same as the last payload (or the same failure again): nothing done.
    Unchanged,
}

/// A shutdown signal sources can await (cloneable, level-triggered): a cancellation token.
///
/// It fires when the daemon shuts down or, for a source removed at run time, when that one
/// source is stopped (a child token).
#[derive(Debug, Clone)]
pub struct Shutdown(CancellationToken);

impl Shutdown {
    /// A signal and the token that fires it.
    pub fn channel() -> (CancellationToken, Shutdown) {
        let token = CancellationToken::new();
        (token.clone(), Shutdown(token))
    }

    /// This signal, also fired by the returned token (to stop one source alone).
    pub(super) fn with_local(&self) -> (CancellationToken, Shutdown) {
        let local = self.0.child_token();
        (local.clone(), Shutdown(local))
    }

    /// Completes once shutdown has been requested.
    pub async fn wait(&mut self) {
        self.0.cancelled().await;
    }

    /// Whether shutdown has been requested.
    pub fn is_requested(&self) -> bool {
        self.0.is_cancelled()
    }
}

/// What a re-fetch requested through [`Refreshes`] ended in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshResult {
    /// The source was read and the outcome (applied, unchanged, rejected, gone) is final.
    Done,
    /// The source could not be read (unreachable, throttled); asking again later may help.
    Failed(String),
}

/// One or more coalesced re-fetch requests; complete it after the fetch has been handled.
///
/// Dropping it without [`Refresh::complete`] (the source task panicked or was stopped
/// mid-fetch) reports a failure to every requester, so no one takes it as done.
#[derive(Debug, Default)]
pub struct Refresh {
    acks: Vec<oneshot::Sender<RefreshResult>>,
}

impl Refresh {
    /// Tells every requester how the re-fetch ended.
    pub fn complete(mut self, result: RefreshResult) {
        for ack in std::mem::take(&mut self.acks) {
            let _ = ack.send(result.clone());
        }
    }
}

impl Drop for Refresh {
    fn drop(&mut self) {
        for ack in std::mem::take(&mut self.acks) {
            let _ = ack.send(RefreshResult::Failed(
                "the source stopped before the re-fetch was handled".into(),
            ));
        }
    }
}

/// The queued requests, shared by every run of one source: a restarted source task finds
/// the requests its predecessor had not taken yet, and requesters never see the channel
/// closed while the source is only restarting.
type RefreshQueue = mpsc::UnboundedReceiver<Option<oneshot::Sender<RefreshResult>>>;

/// The receiving end of a source's re-fetch requests.
#[derive(Debug)]
pub struct Refreshes(Arc<tokio::sync::Mutex<RefreshQueue>>);

/// The sending end of a source's re-fetch requests (held by the supervisor).
#[derive(Debug, Clone)]
pub(super) struct RefreshHandle(mpsc::UnboundedSender<Option<oneshot::Sender<RefreshResult>>>);

impl Refreshes {
    /// A request channel: the handle asks, the source receives.
    pub(super) fn channel() -> (RefreshHandle, Refreshes) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            RefreshHandle(tx),
            Refreshes(Arc::new(tokio::sync::Mutex::new(rx))),
        )
    }

    /// The same queue, for the next run of a restarted source.
    pub(super) fn share(&self) -> Refreshes {
        Refreshes(self.0.clone())
    }

    /// Waits for the next request and takes every other one already queued with it (they
    /// are all satisfied by one fetch). Pends forever once no one can ask any more.
    pub async fn next(&mut self) -> Refresh {
        let mut queue = self.0.lock().await;
        let Some(first) = queue.recv().await else {
            drop(queue);
            return std::future::pending().await;
        };
        let mut refresh = Refresh::default();
        refresh.acks.extend(first);
        while let Ok(more) = queue.try_recv() {
            refresh.acks.extend(more);
        }
        refresh
    }
}

impl RefreshHandle {
    /// Asks for a re-fetch without waiting for it; `false` if the source has stopped.
    pub(super) fn request(&self) -> bool {
        self.0.send(None).is_ok()
    }

    /// Asks for a re-fetch; the receiver learns how it ended (closed if the source stopped).
    pub(super) fn request_with_ack(&self) -> oneshot::Receiver<RefreshResult> {
        let (tx, rx) = oneshot::channel();
        let _ = self.0.send(Some(tx));
        rx
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
    /// Failed read attempts (every retry counts; logs only mark state changes).
    pub errors: u64,
    /// Reads that transferred a document (for S3: GETs answered 200).
    pub fetched: u64,
    /// Reads answered "not modified" (for S3: conditional GETs answered 304).
    pub not_modified: u64,
    /// When the source was last read successfully (200, 304 or a definite "gone").
    pub last_success: Option<SystemTime>,
    /// Whether the source is served from its `--cache-dir` copy (it has not answered yet).
    pub from_cache: bool,
    /// How often its task panicked or ended unexpectedly and was restarted.
    pub restarts: u64,
    /// Why its task is down, while it waits to be restarted (`None` while it runs).
    pub down: Option<String>,
}

/// The last thing a source delivered, to drop repeats.
#[derive(Debug, Clone, PartialEq)]
enum Last {
    Bytes(Bytes),
    Unavailable(String),
}

/// State shared by a source's sink and the supervisor.
#[derive(Debug)]
pub(super) struct RunningSource {
    pub(super) uri: String,
    pub(super) provider: &'static str,
    /// Changed only by a re-rank, under `alive` (so no apply uses a stale one).
    priority: AtomicUsize,
    applied: AtomicU64,
    rejected: AtomicU64,
    unavailable: AtomicU64,
    ready: AtomicBool,
    last: Mutex<Option<Last>>,
    last_error: Mutex<Option<String>>,
    errors: AtomicU64,
    fetched: AtomicU64,
    not_modified: AtomicU64,
    last_success: Mutex<Option<SystemTime>>,
    /// `false` once the source has been removed; guards every store write.
    alive: Mutex<bool>,
    /// Whether what is served came from `--cache-dir` rather than the source itself.
    from_cache: AtomicBool,
    restarts: AtomicU64,
    down: Mutex<Option<String>>,
    /// Fires once the source has applied a configuration (for make-before-break switches).
    ready_tx: watch::Sender<bool>,
}

impl RunningSource {
    pub(super) fn new(uri: String, provider: &'static str, priority: usize) -> RunningSource {
        RunningSource {
            uri,
            provider,
            priority: AtomicUsize::new(priority),
            applied: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            unavailable: AtomicU64::new(0),
            ready: AtomicBool::new(false),
            last: Mutex::new(None),
            last_error: Mutex::new(None),
            errors: AtomicU64::new(0),
            fetched: AtomicU64::new(0),
            not_modified: AtomicU64::new(0),
            last_success: Mutex::new(None),
            alive: Mutex::new(true),
            from_cache: AtomicBool::new(false),
            restarts: AtomicU64::new(0),
            down: Mutex::new(None),
            ready_tx: watch::channel(false).0,
        }
    }

    /// Records that the source's task died (`reason`) and waits to be restarted.
    pub(super) fn went_down(&self, reason: &str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.record_error(reason.to_owned());
        *self.down.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.to_owned());
    }

    /// Records that the source's task was started again after going down.
    pub(super) fn restarted(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
        *self.down.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Completes once the source has applied a configuration (at once if it has).
    pub(super) async fn wait_ready(&self) {
        let mut ready = self.ready_tx.subscribe();
        let _ = ready.wait_for(|r| *r).await;
    }

    /// Moves the source to `priority` and re-ranks its flags in `store` without re-reading
    /// it; `Some` with the old and new priority if it changed.
    pub(super) fn set_priority(&self, priority: usize) -> Option<(usize, usize)> {
        let old = self.priority.swap(priority, Ordering::AcqRel);
        (old != priority).then_some((old, priority))
    }

    /// Holds off this source's store writes while the caller re-ranks it.
    pub(super) fn write_lock(&self) -> std::sync::MutexGuard<'_, bool> {
        self.alive.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a successful read of something that is not a document (an SQS receive).
    pub(super) fn count_success(&self) {
        *self.last_success.lock().unwrap_or_else(|e| e.into_inner()) = Some(SystemTime::now());
        self.ready.store(true, Ordering::Release);
    }

    /// Counts a failed read of something that is not a document; `true` when `reason` differs
    /// from the previous failure (callers log only then).
    pub(super) fn count_error(&self, reason: &str) -> bool {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut last = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        let changed = last.as_deref() != Some(reason);
        *last = Some(reason.to_owned());
        changed
    }

    /// Stops all further store writes of this source and, if `remove`, removes its flags
    /// from `store` (kept when a replacement with the same URI takes them over).
    pub(super) fn retire(&self, store: &Store, remove: bool) {
        let mut alive = self.alive.lock().unwrap_or_else(|e| e.into_inner());
        *alive = false;
        if remove {
            store.remove(&self.uri);
        }
    }

    pub(super) fn priority(&self) -> usize {
        self.priority.load(Ordering::Acquire)
    }

    pub(super) fn stats(&self) -> SourceStats {
        SourceStats {
            uri: self.uri.clone(),
            provider: self.provider.to_owned(),
            applied: self.applied.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            unavailable: self.unavailable.load(Ordering::Relaxed),
            ready: self.ready.load(Ordering::Acquire),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            errors: self.errors.load(Ordering::Relaxed),
            fetched: self.fetched.load(Ordering::Relaxed),
            not_modified: self.not_modified.load(Ordering::Relaxed),
            last_success: *self.last_success.lock().unwrap_or_else(|e| e.into_inner()),
            from_cache: self.from_cache.load(Ordering::Acquire),
            restarts: self.restarts.load(Ordering::Relaxed),
            down: self.down.lock().unwrap_or_else(|e| e.into_inner()).clone(),
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

    fn last_delivery(&self) -> Option<Last> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn record_error(&self, reason: String) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
    }
}

/// Tracks how many sources still have to apply their first valid configuration.
#[derive(Debug)]
pub(super) struct ReadyLatch {
    pending: std::sync::atomic::AtomicUsize,
    ready: watch::Sender<bool>,
}

impl ReadyLatch {
    pub(super) fn new(sources: usize) -> Arc<ReadyLatch> {
        let (ready, _) = watch::channel(sources == 0);
        Arc::new(ReadyLatch {
            pending: std::sync::atomic::AtomicUsize::new(sources),
            ready,
        })
    }

    pub(super) fn subscribe(&self) -> watch::Receiver<bool> {
        self.ready.subscribe()
    }

    /// Counts one more source to wait for, unless readiness has already latched (sources
    /// added later do not make a ready daemon unready); `true` if it was counted.
    pub(super) fn add_pending(&self) -> bool {
        let mut counted = false;
        self.ready.send_if_modified(|ready| {
            if !*ready {
                self.pending.fetch_add(1, Ordering::AcqRel);
                counted = true;
            }
            false
        });
        counted
    }

    pub(super) fn source_ready(&self) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.ready.send_replace(true);
            tracing::info!("all sync sources have applied a valid configuration: ready");
        }
    }
}

/// Where a source pushes what it fetched; parses, applies and keeps the last good config.
#[derive(Debug, Clone)]
pub struct PayloadSink {
    state: Arc<RunningSource>,
    store: Arc<Store>,
    readiness: Arc<ReadyLatch>,
    /// Whether this source still counts towards readiness (sources added after the daemon
    /// became ready do not).
    counted: bool,
    /// Where a valid payload goes instead of the flag store (the S3 configuration object).
    handler: Option<DocumentHandler>,
    /// Where applied payloads are kept for a restart during an outage (`--cache-dir`).
    cache: Option<Arc<Cache>>,
    /// Makes a span per published payload when tracing is on.
    tracer: Option<Tracer>,
}

/// Consumes payloads that are not flag documents (e.g. the configuration object); an `Err`
/// rejects the payload like an invalid flag document.
#[derive(Clone)]
pub(super) struct DocumentHandler(pub(super) Arc<HandlerFn>);

/// The function behind a [`DocumentHandler`].
pub(super) type HandlerFn = dyn Fn(&Payload) -> Result<(), String> + Send + Sync;

impl std::fmt::Debug for DocumentHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DocumentHandler")
    }
}

impl PayloadSink {
    pub(super) fn new(
        state: Arc<RunningSource>,
        store: Arc<Store>,
        readiness: Arc<ReadyLatch>,
        counted: bool,
    ) -> PayloadSink {
        PayloadSink {
            state,
            store,
            readiness,
            counted,
            handler: None,
            cache: None,
            tracer: None,
        }
    }

    /// This sink, tracing each published payload with `tracer` when given.
    pub(super) fn with_tracer(mut self, tracer: Option<Tracer>) -> PayloadSink {
        self.tracer = tracer;
        self
    }

    /// This sink, keeping every applied payload in `cache` (and reading it back on demand).
    pub(super) fn with_cache(mut self, cache: Option<Arc<Cache>>) -> PayloadSink {
        self.cache = cache;
        self
    }

    /// Serves the cached copy while the source has delivered nothing yet (it is unreachable
    /// or slow at start); `true` if a cached copy was applied. The real document replaces it
    /// as soon as the source answers.
    pub(super) fn serve_cached(&self) -> bool {
        let Some(cache) = &self.cache else {
            return false;
        };
        if self.is_ready() || matches!(self.state.last_delivery(), Some(Last::Bytes(_))) {
            return false;
        }
        let uri = self.state.uri.as_str();
        let Some(payload) = cache.load(uri) else {
            return false;
        };
        match self.apply(&payload, true) {
            Ok(true) => {}
            Ok(false) => return false,
            Err(reason) => {
                tracing::warn!(source = uri, reason = %reason, "ignoring an invalid cached copy");
                return false;
            }
        }
        tracing::warn!(
            source = uri,
            "source not answering: serving its cached copy from --cache-dir until it does"
        );
        true
    }

    /// This sink, handing valid payloads to `handler` instead of the store.
    pub(super) fn with_handler(mut self, handler: DocumentHandler) -> PayloadSink {
        self.handler = Some(handler);
        self
    }

    /// The stored URI of the source this sink belongs to.
    pub fn uri(&self) -> &str {
        &self.state.uri
    }

    /// Parses `payload` and, if valid, replaces the source's flags in the store.
    ///
    /// A payload identical to the previous one is ignored, so sources may publish freely.
    pub fn publish(&self, payload: Payload) -> Delivery {
        let Some(tracer) = &self.tracer else {
            return self.deliver(payload);
        };
        let span = tracer.sync(self.state.provider);
        let delivery = self.deliver(payload);
        match delivery {
            Delivery::Applied => span.done("applied", None),
            Delivery::Rejected => span.done("rejected", Some("invalid document")),
            Delivery::Unchanged => span.done("unchanged", None),
        }
        delivery
    }

    fn deliver(&self, payload: Payload) -> Delivery {
        if !self.state.replace_last(Last::Bytes(payload.bytes.clone())) {
            return Delivery::Unchanged;
        }
        let uri = self.state.uri.as_str();
        if payload.bytes.iter().all(u8::is_ascii_whitespace) {
            return self.reject("empty document".into());
        }
        match self.apply(&payload, false) {
            Ok(false) => Delivery::Unchanged,
            Ok(true) => {
                if let Some(cache) = &self.cache {
                    if let Err(error) = cache.store(uri, &payload) {
                        tracing::warn!(source = uri, %error, "could not update the cached copy");
                    }
                }
                Delivery::Applied
            }
            Err(reason) => self.reject(reason),
        }
    }

    /// Parses and applies one payload (to the handler or the store) under the panic guard.
    /// `cached` applies only while the source has delivered nothing itself. `Ok(false)`: not
    /// applied because the source was removed or answered meanwhile.
    fn apply(&self, payload: &Payload, cached: bool) -> Result<bool, String> {
        let uri = self.state.uri.as_str();
        if let Some(handler) = &self.handler {
            // Same guard as document parsing: a handler bug is a rejection, not a dead task
            // (a dead task would never latch readiness and would drop SQS acknowledgements).
            let handled =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (handler.0)(payload)));
            match handled {
                Ok(Ok(())) => {}
                Ok(Err(reason)) => return Err(reason),
                Err(_) => return Err("internal error while applying the document".into()),
            }
            self.applied(cached);
            return Ok(true);
        }
        // A parser bug must not end this source's task: treat a panic as a rejection.
        let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            parse_document(&payload.bytes, payload.format)
        }));
        let document = match parsed {
            Ok(Ok(document)) => document,
            Ok(Err(error)) => return Err(error.to_string()),
            Err(_) => return Err("internal error while parsing the document".into()),
        };
        for warning in &document.warnings {
            match &warning.flag {
                Some(flag) => tracing::warn!(source = uri, flag = %flag, "{}", warning.message),
                None => tracing::warn!(source = uri, "{}", warning.message),
            }
        }
        let flags = document.flags.len();
        let snapshot = {
            // Held across the apply so a source removed at run time cannot write afterwards.
            let alive = self.state.alive.lock().unwrap_or_else(|e| e.into_inner());
            // A cached copy never overwrites what the source itself delivered meanwhile.
            let superseded = cached && matches!(self.state.last_delivery(), Some(Last::Bytes(_)));
            if !*alive || superseded {
                return Ok(false);
            }
            self.store.apply(self.state.priority(), uri, document)
        };
        tracing::info!(
            source = uri,
            flags,
            version = snapshot.version,
            cached,
            "applied flag configuration"
        );
        self.applied(cached);
        Ok(true)
    }

    fn applied(&self, cached: bool) {
        if !cached {
            self.state.applied.fetch_add(1, Ordering::Relaxed);
        }
        self.state.from_cache.store(cached, Ordering::Release);
        self.mark_ready();
    }

    fn mark_ready(&self) {
        if !self.state.ready.swap(true, Ordering::AcqRel) {
            self.state.ready_tx.send_replace(true);
            if self.counted {
                self.readiness.source_ready();
            }
        }
    }

    /// Records a successful read that transferred a document (call before [`Self::publish`]).
    pub fn fetched(&self) {
        self.state.fetched.fetch_add(1, Ordering::Relaxed);
        self.succeeded();
    }

    /// Records a successful read that found the document unchanged (HTTP 304).
    pub fn not_modified(&self) {
        self.state.not_modified.fetch_add(1, Ordering::Relaxed);
        self.succeeded();
    }

    /// Notes a successful read; after an outage, logs the recovery once.
    fn succeeded(&self) {
        *self
            .state
            .last_success
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(SystemTime::now());
        let mut last = self.state.last.lock().unwrap_or_else(|e| e.into_inner());
        if matches!(*last, Some(Last::Unavailable(_))) {
            // Forget the outage so the same failure is logged again if it comes back.
            *last = None;
            tracing::info!(source = %self.state.uri, "source is readable again");
        }
    }

    /// Reports a failed read attempt: counted every time, logged only when the reason
    /// changes (see [`Self::unavailable`]).
    pub fn read_failed(&self, reason: impl std::fmt::Display) -> Delivery {
        self.state.errors.fetch_add(1, Ordering::Relaxed);
        self.unavailable(reason)
    }

    /// Whether this source has applied a valid configuration at least once.
    pub fn is_ready(&self) -> bool {
        self.state.ready.load(Ordering::Acquire)
    }

    /// Reports that the source cannot be read (deleted, unreachable, ...); the last good
    /// configuration stays. Repeating the same reason is not counted again.
    pub fn unavailable(&self, reason: impl std::fmt::Display) -> Delivery {
        let reason = reason.to_string();
        if !self.state.replace_last(Last::Unavailable(reason.clone())) {
            return Delivery::Unchanged;
        }
        self.state.unavailable.fetch_add(1, Ordering::Relaxed);
        let outcome = self.reject(reason);
        // Unreachable before it ever answered: the cached copy is better than nothing.
        self.serve_cached();
        outcome
    }

    fn reject(&self, reason: String) -> Delivery {
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
        Delivery::Rejected
    }
}
