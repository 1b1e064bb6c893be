//! The list of running sources: started, refreshed, retired and listed here, shared by the
//! supervisor, the configuration object and the SQS consumer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::aws::Aws;
use super::build::{build_source_in, NamedSource};
use super::cache::Cache;
use super::limit;
use super::priority::{self, plan_priorities, Slot, INLINE_BASE};
use super::provider::{names, Provider, SourceConfig};
use super::s3::S3Location;
use super::settings::AwsSettings;
use super::source::{
    Delivery, DocumentHandler, Payload, PayloadSink, ReadyLatch, RefreshHandle, RefreshResult,
    Refreshes, RunningSource, Shutdown, Source, SourceContext, SourceStats,
};
use super::supervisor::supervised;
use super::{SourceError, SyncError};
use crate::store::Store;
use crate::telemetry::Tracer;

/// Where a running source came from (what may remove it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Origin {
    /// The command line or config file: runs until shutdown.
    Static,
    /// Listed by the configuration object: removed when the object stops listing it.
    Dynamic(SourceConfig),
    /// Created by an SQS inline message: removed by a message with a null document.
    Inline,
    /// The configuration object itself (never in the store).
    ConfigObject,
    /// An SQS queue being consumed (listed for its counters only).
    Queue,
}

/// One running source.
#[derive(Debug)]
struct Entry {
    state: Arc<RunningSource>,
    refresh: Option<RefreshHandle>,
    stop: Option<CancellationToken>,
    object: Option<(String, String)>,
    origin: Origin,
    sink: Option<PayloadSink>,
    /// The configuration-object change that will retire it once its replacements have
    /// fetched (make-before-break); `None` while it is wanted.
    retiring: Option<u64>,
}

/// Builds a source again after its task panicked or ended (`None`: it cannot be).
pub(super) type Rebuild = Arc<dyn Fn() -> Option<Box<dyn Source>> + Send + Sync>;

/// A [`Rebuild`] from the source's configuration.
pub(super) fn rebuild_from(config: SourceConfig, env: SourceEnv) -> Rebuild {
    Arc::new(move || match build_source_in(&config, &env) {
        Ok(named) => Some(named.source),
        Err(error) => {
            tracing::error!(source = %config.uri, %error, "cannot build the source again");
            None
        }
    })
}

/// What sources are given to reach AWS and how often they poll.
#[derive(Debug, Clone)]
pub(super) struct SourceEnv {
    /// Shared AWS configuration and clients.
    pub(super) aws: Arc<Aws>,
    /// Poll interval of S3 sources without their own `interval`.
    pub(super) s3_interval: Duration,
    /// The largest document a source may deliver (`--max-document-size`).
    pub(super) max_document_size: usize,
    /// Where applied documents are kept for a start during an outage (`--cache-dir`).
    pub(super) cache: Option<Arc<Cache>>,
    /// Makes a span per delivered document when tracing is on.
    pub(super) tracer: Option<Tracer>,
}

impl SourceEnv {
    /// The environment for the given AWS options (no AWS call is made until a source runs).
    pub(super) fn new(settings: &AwsSettings) -> SourceEnv {
        SourceEnv {
            aws: Arc::new(Aws::new(settings.clone())),
            s3_interval: if settings.notifications() {
                settings.s3_safety_poll_interval
            } else {
                settings.s3_poll_interval
            },
            max_document_size: limit::DEFAULT_MAX_DOCUMENT_SIZE,
            cache: None,
            tracer: None,
        }
    }
}

impl Default for SourceEnv {
    fn default() -> Self {
        SourceEnv::new(&AwsSettings::default())
    }
}

/// How long a starting source may take before its `--cache-dir` copy is served.
const CACHE_WAIT: Duration = Duration::from_millis(500);

/// How long a configuration-object change waits for its new sources' first document before
/// retiring the sources they replace anyway.
const SWITCH_WAIT: Duration = Duration::from_secs(10);

/// The list of running sources, shared by the supervisor, the configuration object and the
/// SQS consumer.
#[derive(Debug)]
pub struct SourceDirectory {
    pub(super) store: Arc<Store>,
    readiness: Arc<ReadyLatch>,
    pub(super) shutdown: Shutdown,
    pub(super) env: SourceEnv,
    inner: Mutex<Inner>,
    /// Inline SQS messages dropped because they were older than the applied one.
    pub(super) inline_dropped_older: AtomicU64,
}

#[derive(Debug, Default)]
pub(super) struct Inner {
    entries: Vec<Entry>,
    tasks: Vec<JoinHandle<()>>,
    next_inline: usize,
    /// Counts configuration-object changes (to match pending retirements to their change).
    generation: u64,
}

impl SourceDirectory {
    /// An empty directory whose sources will apply to `store`.
    pub(super) fn new(
        store: Arc<Store>,
        readiness: Arc<ReadyLatch>,
        shutdown: Shutdown,
        env: SourceEnv,
    ) -> SourceDirectory {
        SourceDirectory {
            store,
            readiness,
            shutdown,
            env,
            inner: Mutex::new(Inner::default()),
            inline_dropped_older: AtomicU64::new(0),
        }
    }

    /// How many inline SQS messages were dropped as older than the applied one.
    pub(super) fn inline_dropped_older(&self) -> u64 {
        self.inline_dropped_older.load(Ordering::Relaxed)
    }

    /// The SQS queues being consumed (their entries carry the consumer's restarts).
    pub(super) fn queues(&self) -> Vec<Arc<RunningSource>> {
        self.lock()
            .entries
            .iter()
            .filter(|e| e.origin == Origin::Queue)
            .map(|e| e.state.clone())
            .collect()
    }

    /// Takes the handles of every task started so far (to await them at shutdown).
    pub(super) fn take_tasks(&self) -> Vec<JoinHandle<()>> {
        std::mem::take(&mut self.lock().tasks)
    }
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts `named` at `priority`; counts it towards readiness unless that has latched.
    /// Its task is supervised: if it panics or ends before shutdown it is built again with
    /// `rebuild` and restarted with backoff, keeping its flags in the store meanwhile.
    pub(super) fn spawn(
        &self,
        inner: &mut Inner,
        named: NamedSource,
        priority: usize,
        origin: Origin,
        handler: Option<DocumentHandler>,
        rebuild: Option<Rebuild>,
    ) -> Arc<RunningSource> {
        let NamedSource {
            uri,
            provider,
            source,
        } = named;
        let object = S3Location::parse(&uri)
            .ok()
            .map(|l| (l.bucket, l.key))
            .filter(|_| provider == Provider::S3.as_str());
        let state = Arc::new(RunningSource::new(uri.clone(), provider, priority));
        let counted = match origin {
            // Counted when the supervisor started.
            Origin::Static | Origin::ConfigObject => true,
            _ => self.readiness.add_pending(),
        };
        let (refresh, refreshes) = Refreshes::channel();
        let (stop, shutdown) = match origin {
            Origin::Static => (None, self.shutdown.clone()),
            _ => {
                let (tx, rx) = self.shutdown.with_local();
                (Some(tx), rx)
            }
        };
        let mut sink = PayloadSink::new(
            state.clone(),
            self.store.clone(),
            self.readiness.clone(),
            counted,
        );
        if let Some(handler) = handler {
            sink = sink.with_handler(handler);
        }
        let sink = sink
            .with_cache(self.env.cache.clone())
            .with_tracer(self.env.tracer.clone());
        if self.env.cache.is_some() {
            // A source that neither answers nor fails quickly (a hanging endpoint) is served
            // from its cached copy after a short wait rather than after its fetch timeout.
            let sink = sink.clone();
            tokio::spawn(async move {
                tokio::time::sleep(CACHE_WAIT).await;
                sink.serve_cached();
            });
        }
        tracing::info!(source = %uri, provider = %state.provider, priority, "starting sync source");
        let mut first = Some(source);
        let run_shutdown = shutdown.clone();
        let make = move || {
            let source = match first.take() {
                Some(source) => source,
                None => rebuild.as_ref()?()?,
            };
            Some(source.run(SourceContext {
                sink: sink.clone(),
                refresh: refreshes.share(),
                shutdown: run_shutdown.clone(),
            }))
        };
        let (down, up) = (state.clone(), state.clone());
        inner.tasks.push(tokio::spawn(async move {
            supervised(
                &uri,
                shutdown,
                make,
                |reason| down.went_down(reason),
                || up.restarted(),
            )
            .await;
        }));
        inner.entries.push(Entry {
            state: state.clone(),
            refresh: Some(refresh),
            stop,
            object,
            origin,
            sink: None,
            retiring: None,
        });
        state
    }

    /// Stops the source at `index` and, if `remove`, removes its flags from the store.
    pub(super) fn retire(&self, inner: &mut Inner, index: usize, remove: bool) {
        let entry = inner.entries.remove(index);
        tracing::info!(source = %entry.state.uri, "removing sync source");
        if let Some(stop) = entry.stop {
            stop.cancel();
        }
        entry.state.retire(&self.store, remove);
    }

    /// Asks every source reading S3 object `bucket`/`key` to re-fetch now; one receiver per
    /// source learns when its fetch has been handled. Empty if no source reads that object.
    pub fn refresh_object(&self, bucket: &str, key: &str) -> Vec<oneshot::Receiver<RefreshResult>> {
        self.lock()
            .entries
            .iter()
            .filter(|e| {
                e.object
                    .as_ref()
                    .is_some_and(|(b, k)| b == bucket && k == key)
            })
            .filter_map(|e| e.refresh.as_ref().map(RefreshHandle::request_with_ack))
            .collect()
    }

    /// Asks the source(s) stored as `uri` to re-fetch now; `false` if none runs.
    pub fn refresh(&self, uri: &str) -> bool {
        let inner = self.lock();
        let mut found = false;
        for entry in inner.entries.iter().filter(|e| e.state.uri == uri) {
            if let Some(refresh) = &entry.refresh {
                found |= refresh.request();
            }
        }
        found
    }

    /// Applies an inline document as source `uri` (created on first use, above every other
    /// source). Fails if `uri` names a source that is not inline.
    pub fn publish_inline(&self, uri: &str, payload: Payload) -> Result<Delivery, SourceError> {
        let sink = {
            let mut inner = self.lock();
            match inner.entries.iter().find(|e| e.state.uri == uri) {
                Some(entry) if entry.origin != Origin::Inline => {
                    return Err(SourceError::NotInline {
                        uri: uri.to_owned(),
                        provider: entry.state.provider,
                    })
                }
                Some(entry) => entry.sink.clone().expect("inline entries keep their sink"),
                None => {
                    let priority = INLINE_BASE + inner.next_inline;
                    inner.next_inline += 1;
                    let state =
                        Arc::new(RunningSource::new(uri.to_owned(), names::INLINE, priority));
                    let sink = PayloadSink::new(
                        state.clone(),
                        self.store.clone(),
                        self.readiness.clone(),
                        false,
                    );
                    tracing::info!(source = uri, priority, "creating inline source");
                    inner.entries.push(Entry {
                        state,
                        refresh: None,
                        stop: None,
                        object: None,
                        origin: Origin::Inline,
                        sink: Some(sink.clone()),
                        retiring: None,
                    });
                    sink
                }
            }
        };
        Ok(sink.publish(payload))
    }

    /// Lists an SQS queue among the sources so its receive errors and last success show in
    /// [`Supervisor::stats`] (provider `sqs`; `ready` = received at least once).
    pub(super) fn register_queue(&self, url: &str) -> Arc<RunningSource> {
        let mut inner = self.lock();
        if let Some(entry) = inner
            .entries
            .iter()
            .find(|e| e.origin == Origin::Queue && e.state.uri == url)
        {
            return entry.state.clone();
        }
        let state = Arc::new(RunningSource::new(
            url.to_owned(),
            names::QUEUE,
            priority::QUEUE,
        ));
        inner.entries.push(Entry {
            state: state.clone(),
            refresh: None,
            stop: None,
            object: None,
            origin: Origin::Queue,
            sink: None,
            retiring: None,
        });
        state
    }

    /// Removes inline source `uri`; `false` if there is no such inline source.
    pub fn remove_inline(&self, uri: &str) -> bool {
        let mut inner = self.lock();
        match inner
            .entries
            .iter()
            .position(|e| e.state.uri == uri && e.origin == Origin::Inline)
        {
            Some(index) => {
                self.retire(&mut inner, index, true);
                true
            }
            None => false,
        }
    }

    /// Makes the sources listed by the configuration object exactly `wanted` (in priority
    /// order), make-before-break: entries still listed keep running untouched (not even
    /// re-read), moved to their new rank in one store change if the order changed; new
    /// entries start; entries no longer listed keep serving until every new one has applied
    /// its first document (at most [`SWITCH_WAIT`]), and only then are removed.
    pub(super) fn reconcile(self: &Arc<Self>, wanted: &[SourceConfig]) -> Result<(), SyncError> {
        // Build everything first: one bad entry rejects the whole object.
        let mut built = Vec::with_capacity(wanted.len());
        for config in wanted {
            built.push(Some(build_source_in(config, &self.env)?));
        }
        let mut inner = self.lock();
        inner.generation += 1;
        let generation = inner.generation;
        let running: Vec<(SourceConfig, usize)> = inner
            .entries
            .iter()
            .filter_map(|e| match &e.origin {
                Origin::Dynamic(config) => Some((config.clone(), e.state.priority())),
                _ => None,
            })
            .collect();
        let plan = plan_priorities(&running, wanted);
        let dynamic = |e: &Entry, config: &SourceConfig| matches!(&e.origin, Origin::Dynamic(c) if c == config);
        // Which running entry each wanted source is: unchanged first, then re-ranked.
        let mut claimed = vec![false; inner.entries.len()];
        for (config, slot) in wanted.iter().zip(&plan) {
            if let Slot::Keep(priority) = *slot {
                if let Some(j) = (0..inner.entries.len()).find(|&j| {
                    !claimed[j]
                        && dynamic(&inner.entries[j], config)
                        && inner.entries[j].state.priority() == priority
                }) {
                    claimed[j] = true;
                }
            }
        }
        let mut reranked = Vec::new();
        let mut starts = Vec::new();
        for (i, (config, slot)) in wanted.iter().zip(&plan).enumerate() {
            let Slot::Start(priority) = *slot else {
                continue;
            };
            match (0..inner.entries.len())
                .find(|&j| !claimed[j] && dynamic(&inner.entries[j], config))
            {
                Some(j) => {
                    claimed[j] = true;
                    reranked.push((inner.entries[j].state.clone(), priority));
                }
                None => starts.push((i, priority)),
            }
        }
        for (j, entry) in inner.entries.iter_mut().enumerate() {
            if matches!(entry.origin, Origin::Dynamic(_)) {
                entry.retiring = (!claimed[j]).then_some(generation);
            }
        }
        self.rerank(&reranked);
        let mut started = Vec::with_capacity(starts.len());
        for (i, priority) in starts {
            let named = built[i].take().expect("each wanted source is built once");
            // A replacement under the same URI takes the old one's flags over: stop the old
            // one now (two writers under one URI would fight over its rank), flags kept.
            while let Some(j) = inner
                .entries
                .iter()
                .position(|e| e.retiring.is_some() && e.state.uri == named.uri)
            {
                self.retire(&mut inner, j, false);
            }
            let rebuild = rebuild_from(wanted[i].clone(), self.env.clone());
            started.push(self.spawn(
                &mut inner,
                named,
                priority,
                Origin::Dynamic(wanted[i].clone()),
                None,
                Some(rebuild),
            ));
        }
        if !inner.entries.iter().any(|e| e.retiring == Some(generation)) {
            return Ok(());
        }
        if started.is_empty() {
            self.retire_generation(&mut inner, generation);
            return Ok(());
        }
        drop(inner);
        let directory = Arc::downgrade(self);
        tokio::spawn(async move {
            let first_fetches =
                futures_util::future::join_all(started.iter().map(|s| s.wait_ready()));
            if tokio::time::timeout(SWITCH_WAIT, first_fetches)
                .await
                .is_err()
            {
                tracing::warn!(
                    after = ?SWITCH_WAIT,
                    "new sources of the configuration object have not all applied a document; \
                     retiring the ones they replace anyway"
                );
            }
            if let Some(directory) = directory.upgrade() {
                let mut inner = directory.lock();
                directory.retire_generation(&mut inner, generation);
            }
        });
        Ok(())
    }

    /// Retires the entries configuration-object change `generation` left unlisted (unless a
    /// later change listed them again).
    fn retire_generation(&self, inner: &mut Inner, generation: u64) {
        while let Some(j) = inner
            .entries
            .iter()
            .position(|e| e.retiring == Some(generation))
        {
            let uri = inner.entries[j].state.uri.clone();
            // Another running entry under the same URI owns the flags now.
            let shared = inner
                .entries
                .iter()
                .enumerate()
                .any(|(k, e)| k != j && e.state.uri == uri && e.origin != Origin::Queue);
            self.retire(inner, j, !shared);
        }
    }

    /// Moves running sources to new priorities in one store change, without re-reading them.
    fn rerank(&self, moves: &[(Arc<RunningSource>, usize)]) {
        if moves.is_empty() {
            return;
        }
        // Every source's writes wait until the whole reordering is in the store.
        let _writes: Vec<_> = moves.iter().map(|(state, _)| state.write_lock()).collect();
        let mut changes = Vec::with_capacity(moves.len());
        for (state, priority) in moves {
            if let Some((old, new)) = state.set_priority(*priority) {
                tracing::info!(source = %state.uri, old, new, "re-ranking sync source");
            }
            changes.push((state.uri.as_str(), *priority));
        }
        self.store.reprioritize(&changes);
    }

    pub(super) fn stats(&self) -> Vec<SourceStats> {
        let inner = self.lock();
        let mut stats: Vec<(usize, SourceStats)> = inner
            .entries
            .iter()
            .map(|e| (e.state.priority(), e.state.stats()))
            .collect();
        stats.sort_by_key(|(priority, _)| *priority);
        stats.into_iter().map(|(_, s)| s).collect()
    }
}
