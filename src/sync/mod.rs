//! Sync sources: everything that feeds flag documents into the [`Store`](crate::store::Store).
//!
//! Each provider implements [`Source`]; a supervisor runs every configured source, parses
//! each payload with [`parse_document`](crate::flags::parse_document), applies good ones to
//! the store, keeps the last good configuration when a payload is bad, and tracks readiness.
//!
//! Sources can also come and go at run time: the S3 configuration object (`--config
//! s3://...`) adds and removes the sources it lists, and SQS inline messages create sources
//! of their own. The [`SourceDirectory`] is the shared, lockable list of running sources the
//! SQS consumer talks to.

mod aws;
mod cache;
mod config_object;
mod embedded;
mod file;
pub mod limit;
mod options;
mod provider;
mod s3;
mod sns;
mod source;
mod sqs;
pub mod uri;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::options::duration::MAX_DURATION;
use crate::store::Store;

pub use aws::{Aws, Backoff, S3Endpoint};
pub use embedded::{EmbeddedSource, DEFAULT_FLAGS, EMBEDDED_URI};
pub use file::{FileSource, DEFAULT_POLL_INTERVAL};
pub use options::{AwsOptionError, AwsOptions, AwsSettings, SyncConfig};
pub use provider::{names, Provider, ProviderError, SourceConfig};
pub use s3::{S3Location, S3Source};
pub use sns::FANOUT_MAX_RECEIVES;
pub use source::{
    Outcome, Payload, PayloadSink, Refresh, RefreshResult, Refreshes, Shutdown, Source,
    SourceContext, SourceFuture, SourceStats,
};
pub use sqs::{parse_message, InlineDocument, Message, ObjectEvent, INLINE_PROVIDER};
pub use uri::{parse_sources, parse_sources_json, parse_uri, SourceConfigError};

use source::{DocumentHandler, Readiness, RefreshHandle, SourceState};

/// Priority of the first source listed by the configuration object (above every static one).
const DYNAMIC_PRIORITY: usize = 1 << 20;
/// Priority of the first inline (SQS-delivered) source (above everything else).
const INLINE_PRIORITY: usize = 1 << 30;

/// Why the sync layer could not start.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// A source URI or provider that flagpole does not understand.
    #[error("invalid source `{uri}`: {message}")]
    InvalidSource {
        /// The source URI.
        uri: String,
        /// What is wrong.
        message: String,
    },
}

/// Where a running source came from (what may remove it).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
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
    state: Arc<SourceState>,
    refresh: Option<RefreshHandle>,
    stop: Option<watch::Sender<bool>>,
    object: Option<(String, String)>,
    origin: Origin,
    sink: Option<PayloadSink>,
}

/// What sources are given to reach AWS and how often they poll.
#[derive(Debug, Clone)]
pub struct SourceEnv {
    /// Shared AWS configuration and clients.
    pub aws: Arc<Aws>,
    /// Poll interval of S3 sources without their own `interval`.
    pub s3_interval: Duration,
    /// The largest document a source may deliver (`--max-document-size`).
    pub max_document_size: usize,
    /// Where applied documents are kept for a start during an outage (`--cache-dir`).
    pub cache: Option<Arc<cache::Cache>>,
}

impl SourceEnv {
    /// The environment for the given AWS options (no AWS call is made until a source runs).
    pub fn new(settings: &AwsSettings) -> SourceEnv {
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
    readiness: Arc<Readiness>,
    shutdown: Shutdown,
    env: SourceEnv,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: Vec<Entry>,
    tasks: Vec<JoinHandle<()>>,
    next_inline: usize,
}

impl SourceDirectory {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts `named` at `priority`; counts it towards readiness unless that has latched.
    fn spawn(
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
        let state = Arc::new(SourceState::new(uri.clone(), provider, priority));
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
    fn retire(&self, inner: &mut Inner, index: usize) {
        let entry = inner.entries.remove(index);
        tracing::info!(source = %entry.state.uri, "removing sync source");
        if let Some(stop) = entry.stop {
            stop.send_replace(true);
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
    pub fn publish_inline(&self, uri: &str, payload: Payload) -> Result<Outcome, String> {
        let sink = {
            let mut inner = self.lock();
            match inner.entries.iter().find(|e| e.state.uri == uri) {
                Some(entry) if entry.origin != Origin::Inline => {
                    return Err(format!(
                        "`{uri}` is a configured {} source, not an inline one",
                        entry.state.provider
                    ))
                }
                Some(entry) => entry.sink.clone().expect("inline entries keep their sink"),
                None => {
                    let priority = INLINE_PRIORITY + inner.next_inline;
                    inner.next_inline += 1;
                    let state =
                        Arc::new(SourceState::new(uri.to_owned(), INLINE_PROVIDER, priority));
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
    fn register_queue(&self, url: &str) -> Arc<SourceState> {
        let mut inner = self.lock();
        if let Some(entry) = inner
            .entries
            .iter()
            .find(|e| e.origin == Origin::Queue && e.state.uri == url)
        {
            return entry.state.clone();
        }
        let state = Arc::new(SourceState::new(url.to_owned(), names::QUEUE, usize::MAX));
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
    fn reconcile(&self, wanted: &[SourceConfig]) -> Result<(), SyncError> {
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

    fn stats(&self) -> Vec<SourceStats> {
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

/// What happens to one source the configuration object lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// The running source with this priority stays.
    Keep(usize),
    /// A new source starts with this priority.
    Start(usize),
}

/// Spacing between the priorities of configuration-object sources, leaving room to insert.
const PRIORITY_STEP: usize = 1 << 16;

/// Priorities for the `wanted` sources (in order, strictly increasing) that keep as many
/// `running` (config, priority) sources as possible where they are; new ones go into the
/// gaps. If a gap is exhausted, everything is renumbered (and restarted).
fn plan_priorities(running: &[(SourceConfig, usize)], wanted: &[SourceConfig]) -> Vec<Slot> {
    let mut used = vec![false; running.len()];
    let mut kept: Vec<Option<usize>> = vec![None; wanted.len()];
    let mut last = DYNAMIC_PRIORITY;
    for (i, config) in wanted.iter().enumerate() {
        let found = running
            .iter()
            .enumerate()
            .position(|(j, (c, p))| !used[j] && c == config && *p > last);
        if let Some(j) = found {
            used[j] = true;
            kept[i] = Some(running[j].1);
            last = running[j].1;
        }
    }
    let mut plan = Vec::with_capacity(wanted.len());
    let mut lower = DYNAMIC_PRIORITY;
    let mut i = 0;
    while i < wanted.len() {
        if let Some(priority) = kept[i] {
            plan.push(Slot::Keep(priority));
            lower = priority;
            i += 1;
            continue;
        }
        let run = kept[i..].iter().take_while(|k| k.is_none()).count();
        let upper = kept[i + run..]
            .iter()
            .flatten()
            .next()
            .copied()
            .unwrap_or(INLINE_PRIORITY);
        let step = if upper == INLINE_PRIORITY {
            PRIORITY_STEP
        } else {
            (upper - lower) / (run + 1)
        };
        if step == 0 || lower + step * run >= upper {
            // No room left between neighbours: renumber everything.
            return (1..=wanted.len())
                .map(|n| Slot::Start(DYNAMIC_PRIORITY + n * PRIORITY_STEP))
                .collect();
        }
        for n in 1..=run {
            plan.push(Slot::Start(lower + n * step));
        }
        lower += run * step;
        i += run;
    }
    plan
}

/// Runs every configured source and applies their payloads to the store.
#[derive(Debug)]
pub struct Supervisor {
    ready: watch::Receiver<bool>,
    shutdown: watch::Sender<bool>,
    directory: Arc<SourceDirectory>,
    consumer: Option<JoinHandle<()>>,
}

impl Supervisor {
    /// Starts one task per source (the embedded example flags when `sources` is empty).
    ///
    /// Every source is validated before any task starts. Must be called inside a tokio runtime.
    pub fn start(sources: &[SourceConfig], store: Arc<Store>) -> Result<Supervisor, SyncError> {
        Supervisor::from_config(SyncConfig::sources(sources), store)
    }

    /// Starts everything `config` asks for: the sources, the S3 configuration object and
    /// the SQS consumer (with its SNS fan-out queue). Must be called inside a tokio runtime.
    pub fn from_config(config: SyncConfig, store: Arc<Store>) -> Result<Supervisor, SyncError> {
        let settings = &config;
        let cache = match &settings.cache_dir {
            None => None,
            Some(dir) => Some(Arc::new(
                cache::Cache::new(dir, settings.max_document_size).map_err(|e| {
                    SyncError::InvalidSource {
                        uri: dir.display().to_string(),
                        message: format!("cannot use the cache directory: {e}"),
                    }
                })?,
            )),
        };
        let env = SourceEnv {
            max_document_size: settings.max_document_size,
            cache,
            ..SourceEnv::new(&settings.aws)
        };
        let mut built = Vec::with_capacity(settings.sources.len().max(1));
        let config_object = settings.aws.config_object.as_deref();
        if settings.sources.is_empty() && config_object.is_none() {
            tracing::info!(
                source = EMBEDDED_URI,
                "no sync sources configured; serving the embedded example flags"
            );
            built.push(NamedSource {
                uri: EMBEDDED_URI.to_owned(),
                provider: names::EMBEDDED,
                source: Box::new(EmbeddedSource),
            });
        }
        for config in &settings.sources {
            built.push(build_source_in(config, &env)?);
        }
        let config_source = config_object
            .map(|uri| {
                let source = S3Source::new(uri, env.aws.clone(), env.s3_interval)
                    .map_err(|message| SyncError::InvalidSource {
                        uri: uri.to_owned(),
                        message,
                    })?
                    .max_size(env.max_document_size);
                Ok::<_, SyncError>(NamedSource {
                    uri: uri.to_owned(),
                    provider: Provider::S3.as_str(),
                    source: Box::new(source),
                })
            })
            .transpose()?;
        let pending = built.len() + usize::from(config_source.is_some());
        let mut supervisor = Supervisor::spawn_in(built, store, env.clone(), pending);
        if let Some(named) = config_source {
            let directory = Arc::downgrade(&supervisor.directory);
            let handler = config_object::handler(directory);
            let mut inner = supervisor.directory.lock();
            let priority = inner.entries.len();
            supervisor.directory.spawn(
                &mut inner,
                named,
                priority,
                Origin::ConfigObject,
                Some(handler),
            );
        }
        if settings.aws.notifications() {
            let consumer = sqs::Consumer::new(env.aws.clone(), supervisor.directory.clone());
            supervisor.consumer = Some(tokio::spawn(
                consumer.run(supervisor.directory.shutdown.clone()),
            ));
        }
        Ok(supervisor)
    }

    /// Starts already-built sources, priority = position (later wins). Must be called
    /// inside a tokio runtime.
    pub fn spawn(built: Vec<NamedSource>, store: Arc<Store>) -> Supervisor {
        let pending = built.len();
        Supervisor::spawn_in(built, store, SourceEnv::default(), pending)
    }

    fn spawn_in(
        built: Vec<NamedSource>,
        store: Arc<Store>,
        env: SourceEnv,
        pending: usize,
    ) -> Supervisor {
        let readiness = Readiness::new(pending);
        let (shutdown_tx, shutdown) = Shutdown::channel();
        let directory = Arc::new(SourceDirectory {
            store,
            readiness: readiness.clone(),
            shutdown,
            env,
            inner: Mutex::new(Inner::default()),
        });
        {
            let mut inner = directory.lock();
            for (priority, named) in built.into_iter().enumerate() {
                directory.spawn(&mut inner, named, priority, Origin::Static, None);
            }
        }
        Supervisor {
            ready: readiness.subscribe(),
            shutdown: shutdown_tx,
            directory,
            consumer: None,
        }
    }

    /// `true` once every source has applied a valid configuration at least once (a latch).
    pub fn ready(&self) -> watch::Receiver<bool> {
        self.ready.clone()
    }

    /// Per-source counters (applied, rejected, readiness, fetches), in priority order.
    pub fn stats(&self) -> Vec<SourceStats> {
        self.directory.stats()
    }

    /// A handle that reads the same counters as [`Supervisor::stats`] without borrowing
    /// the supervisor (for the metrics endpoint, which outlives no shutdown).
    pub fn stats_reader(&self) -> StatsReader {
        StatsReader(self.directory.clone())
    }

    /// Asks the source stored as `uri` to re-fetch now (what an SQS notification triggers);
    /// `false` if no such source runs.
    pub fn refresh(&self, uri: &str) -> bool {
        self.directory.refresh(uri)
    }

    /// The shared list of running sources (for notification consumers).
    pub fn directory(&self) -> Arc<SourceDirectory> {
        self.directory.clone()
    }

    /// Stops every source task (and the SQS consumer, deleting its fan-out queue) and waits
    /// for them to finish.
    pub async fn shutdown(self) {
        self.shutdown_within(Duration::from_secs(30)).await;
    }

    /// Stops every source and the SQS consumer, waiting at most `budget`: tasks still running
    /// then (an S3 GET in flight, a slow queue deletion) are cancelled, so a stop never
    /// outlives the container's grace period.
    pub async fn shutdown_within(self, budget: Duration) {
        let deadline = tokio::time::Instant::now() + budget.min(MAX_DURATION);
        self.shutdown.send_replace(true);
        let tasks = std::mem::take(&mut self.directory.lock().tasks);
        for task in self.consumer.into_iter().chain(tasks) {
            finish_by(task, deadline).await;
        }
    }
}

/// Waits for `task` until `deadline`, then cancels it.
async fn finish_by(mut task: JoinHandle<()>, deadline: tokio::time::Instant) {
    if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
        task.abort();
        tracing::warn!("a sync task did not stop within the shutdown grace period; cancelled it");
    }
}

/// Reads every source's counters; cheap to clone.
#[derive(Debug, Clone)]
pub struct StatsReader(Arc<SourceDirectory>);

impl StatsReader {
    /// Per-source counters, in priority order (as [`Supervisor::stats`]); sources added or
    /// removed at run time come and go.
    pub fn stats(&self) -> Vec<SourceStats> {
        self.0.stats()
    }
}

/// A provider together with the name it is stored and selected under.
pub struct NamedSource {
    /// The stored source URI (what `source=` selectors match).
    pub uri: String,
    /// The provider name, for stats and logs.
    pub provider: &'static str,
    /// The provider itself.
    pub source: Box<dyn Source>,
}

impl std::fmt::Debug for NamedSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamedSource")
            .field("uri", &self.uri)
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

/// Builds the provider for one configured source (S3 with the default AWS options).
pub fn build_source(config: &SourceConfig) -> Result<NamedSource, SyncError> {
    build_source_in(config, &SourceEnv::default())
}

/// Builds the provider for one configured source in `env`.
pub fn build_source_in(config: &SourceConfig, env: &SourceEnv) -> Result<NamedSource, SyncError> {
    let invalid = |message: String| SyncError::InvalidSource {
        uri: config.uri.clone(),
        message,
    };
    match config.provider {
        Provider::File | Provider::Fsnotify | Provider::Fileinfo => {
            let path = config.uri.strip_prefix("file:").unwrap_or(&config.uri);
            let source = FileSource::new(path, config.interval)
                .ok_or_else(|| {
                    invalid("unsupported file format: use a .json, .yaml or .yml file".into())
                })?
                .max_size(env.max_document_size);
            Ok(NamedSource {
                uri: path.to_owned(),
                provider: config.provider.as_str(),
                source: Box::new(source),
            })
        }
        Provider::S3 => {
            let interval = config
                .interval
                .filter(|d| !d.is_zero())
                .unwrap_or(env.s3_interval);
            let source = S3Source::new(&config.uri, env.aws.clone(), interval)
                .map_err(invalid)?
                .max_size(env.max_document_size);
            Ok(NamedSource {
                uri: config.uri.clone(),
                provider: config.provider.as_str(),
                source: Box::new(source),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(name: &str) -> SourceConfig {
        SourceConfig {
            uri: format!("s3://b/{name}.json"),
            provider: Provider::S3,
            interval: None,
        }
    }

    fn priorities(plan: &[Slot]) -> Vec<usize> {
        plan.iter()
            .map(|s| match s {
                Slot::Keep(p) | Slot::Start(p) => *p,
            })
            .collect()
    }

    #[test]
    fn removing_or_appending_keeps_the_others_running() {
        let (a, b, c) = (source("a"), source("b"), source("c"));
        let first = plan_priorities(&[], &[a.clone(), b.clone()]);
        let p = priorities(&first);
        assert!(matches!(first[..], [Slot::Start(_), Slot::Start(_)]));
        assert!(DYNAMIC_PRIORITY < p[0] && p[0] < p[1]);
        let running = vec![(a.clone(), p[0]), (b.clone(), p[1])];
        assert_eq!(
            plan_priorities(&running, std::slice::from_ref(&b)),
            [Slot::Keep(p[1])]
        );
        let appended = plan_priorities(&running, &[a.clone(), b.clone(), c.clone()]);
        assert_eq!(appended[..2], [Slot::Keep(p[0]), Slot::Keep(p[1])]);
        assert!(matches!(appended[2], Slot::Start(q) if q > p[1]));
        let inserted = plan_priorities(&running, &[a.clone(), c.clone(), b.clone()]);
        assert!(matches!(inserted[1], Slot::Start(q) if p[0] < q && q < p[1]));
        let prepended = plan_priorities(&running, &[c, a.clone(), b.clone()]);
        assert!(matches!(prepended[0], Slot::Start(q) if DYNAMIC_PRIORITY < q && q < p[0]));
        // Swapping two sources restarts one of them.
        let swapped = plan_priorities(&running, &[b, a]);
        let q = priorities(&swapped);
        assert!(q[0] < q[1]);
        assert_eq!(
            swapped
                .iter()
                .filter(|s| matches!(s, Slot::Keep(_)))
                .count(),
            1
        );
    }

    #[test]
    fn exhausted_gaps_renumber_everything() {
        let (a, b, c) = (source("a"), source("b"), source("c"));
        let running = vec![
            (a.clone(), DYNAMIC_PRIORITY + 1),
            (b.clone(), DYNAMIC_PRIORITY + 2),
        ];
        let plan = plan_priorities(&running, &[a, c, b]);
        assert!(plan.iter().all(|s| matches!(s, Slot::Start(_))));
        let p = priorities(&plan);
        assert!(p[0] < p[1] && p[1] < p[2]);
    }
}
