//! The list of running sources: started, refreshed, retired and listed here, shared by the
//! supervisor, the configuration object and the SQS consumer.

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
    Refreshes, RunningSource, Shutdown, SourceContext, SourceStats,
};
use super::{SourceError, SyncError};
use crate::store::Store;

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

/// The list of running sources, shared by the supervisor, the configuration object and the
/// SQS consumer.
#[derive(Debug)]
pub struct SourceDirectory {
    store: Arc<Store>,
    readiness: Arc<ReadyLatch>,
    pub(super) shutdown: Shutdown,
    pub(super) env: SourceEnv,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
pub(super) struct Inner {
    entries: Vec<Entry>,
    tasks: Vec<JoinHandle<()>>,
    next_inline: usize,
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
        }
    }

    /// Takes the handles of every task started so far (to await them at shutdown).
    pub(super) fn take_tasks(&self) -> Vec<JoinHandle<()>> {
        std::mem::take(&mut self.lock().tasks)
    }
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts `named` at `priority`; counts it towards readiness unless that has latched.
    pub(super) fn spawn(
        &self,
        inner: &mut Inner,
        named: NamedSource,
        priority: usize,
        origin: Origin,
        handler: Option<DocumentHandler>,
    ) {
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
        let sink = sink.with_cache(self.env.cache.clone());
        if self.env.cache.is_some() {
            // A source that neither answers nor fails quickly (a hanging endpoint) is served
            // from its cached copy after a short wait rather than after its fetch timeout.
            let sink = sink.clone();
            tokio::spawn(async move {
                tokio::time::sleep(CACHE_WAIT).await;
                sink.serve_cached();
            });
        }
        let ctx = SourceContext {
            sink,
            refresh: refreshes,
            shutdown,
        };
        tracing::info!(source = %uri, provider = %state.provider, priority, "starting sync source");
        inner.tasks.push(tokio::spawn(source.run(ctx)));
        inner.entries.push(Entry {
            state,
            refresh: Some(refresh),
            stop,
            object,
            origin,
            sink: None,
        });
    }

    /// Stops the source at `index` and removes its flags from the store.
    pub(super) fn retire(&self, inner: &mut Inner, index: usize) {
        let entry = inner.entries.remove(index);
        tracing::info!(source = %entry.state.uri, "removing sync source");
        if let Some(stop) = entry.stop {
            stop.cancel();
        }
        entry.state.retire(&self.store);
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
                self.retire(&mut inner, index);
                true
            }
            None => false,
        }
    }

    /// Makes the sources listed by the configuration object exactly `wanted` (in priority
    /// order): entries still listed in the same relative order keep running untouched (not
    /// even re-read); others are removed or started.
    pub(super) fn reconcile(&self, wanted: &[SourceConfig]) -> Result<(), SyncError> {
        // Build everything first: one bad entry rejects the whole object.
        let mut built = Vec::with_capacity(wanted.len());
        for config in wanted {
            built.push(build_source_in(config, &self.env)?);
        }
        let mut inner = self.lock();
        let running: Vec<(SourceConfig, usize)> = inner
            .entries
            .iter()
            .filter_map(|e| match &e.origin {
                Origin::Dynamic(config) => Some((config.clone(), e.state.priority())),
                _ => None,
            })
            .collect();
        let plan = plan_priorities(&running, wanted);
        let mut index = 0;
        while index < inner.entries.len() {
            let keep = match &inner.entries[index].origin {
                Origin::Dynamic(config) => {
                    let priority = inner.entries[index].state.priority();
                    wanted
                        .iter()
                        .zip(&plan)
                        .any(|(w, slot)| w == config && *slot == Slot::Keep(priority))
                }
                _ => true,
            };
            if keep {
                index += 1;
            } else {
                self.retire(&mut inner, index);
            }
        }
        for ((config, named), slot) in wanted.iter().zip(built).zip(plan) {
            if let Slot::Start(priority) = slot {
                self.spawn(
                    &mut inner,
                    named,
                    priority,
                    Origin::Dynamic(config.clone()),
                    None,
                );
            }
        }
        Ok(())
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
