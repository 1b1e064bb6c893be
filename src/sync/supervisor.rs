//! The supervisor: starts every configured source (and the configuration object, and the
//! SQS consumer), reports readiness and counters, and stops them within a budget.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::DropGuard;

use super::build::{build_source_in, NamedSource};
use super::cache::Cache;
use super::config_object;
use super::directory::{rebuild_from, Origin, Rebuild, SourceDirectory, SourceEnv};
use super::embedded::{EmbeddedSource, EMBEDDED_URI};
use super::priority;
use super::provider::{names, Provider, SourceConfig};
use super::s3::S3Source;
use super::settings::SyncConfig;
use super::source::{ReadyLatch, Shutdown, SourceStats};
use super::sqs;
use super::{SourceError, SyncError};
use crate::options::duration::MAX_DURATION;
use crate::store::Store;

/// Runs every configured source and applies their payloads to the store.
#[derive(Debug)]
pub struct Supervisor {
    ready: watch::Receiver<bool>,
    /// Stops every source when cancelled, or when the supervisor is dropped.
    shutdown: DropGuard,
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
                Cache::new(dir, settings.max_document_size).map_err(|e| {
                    SyncError::InvalidSource {
                        uri: dir.display().to_string(),
                        error: SourceError::CacheDir(e),
                    }
                })?,
            )),
        };
        let env = SourceEnv {
            max_document_size: settings.max_document_size,
            cache,
            tracer: settings.tracer.clone(),
            ..SourceEnv::new(&settings.aws)
        };
        let mut built: Vec<(NamedSource, Option<Rebuild>)> =
            Vec::with_capacity(settings.sources.len().max(1));
        let config_object = settings.aws.config_object.as_deref();
        if settings.sources.is_empty() && config_object.is_none() {
            tracing::info!(
                source = EMBEDDED_URI,
                "no sync sources configured; serving the embedded example flags"
            );
            let rebuild: Rebuild = Arc::new(|| Some(Box::new(EmbeddedSource)));
            built.push((
                NamedSource {
                    uri: EMBEDDED_URI.to_owned(),
                    provider: names::EMBEDDED,
                    source: Box::new(EmbeddedSource),
                },
                Some(rebuild),
            ));
        }
        for config in &settings.sources {
            let rebuild = rebuild_from(config.clone(), env.clone());
            built.push((build_source_in(config, &env)?, Some(rebuild)));
        }
        let config_source = config_object
            .map(|uri| {
                let (owned, aws, interval, max) = (
                    uri.to_owned(),
                    env.aws.clone(),
                    env.s3_interval,
                    env.max_document_size,
                );
                let build =
                    move || S3Source::new(&owned, aws.clone(), interval).map(|s| s.max_size(max));
                let source = build().map_err(|e| SyncError::InvalidSource {
                    uri: uri.to_owned(),
                    error: e.into(),
                })?;
                let rebuild: Rebuild =
                    Arc::new(move || build().ok().map(|s| Box::new(s) as Box<_>));
                Ok::<_, SyncError>((
                    NamedSource {
                        uri: uri.to_owned(),
                        provider: Provider::S3.as_str(),
                        source: Box::new(source),
                    },
                    rebuild,
                ))
            })
            .transpose()?;
        let statics = built.len();
        let pending = statics + usize::from(config_source.is_some());
        let mut supervisor = Supervisor::spawn_in(built, store, env.clone(), pending);
        if let Some((named, rebuild)) = config_source {
            let directory = Arc::downgrade(&supervisor.directory);
            let handler = config_object::handler(directory);
            let mut inner = supervisor.directory.lock();
            // Right above the static sources: its own position in the static band.
            let priority = priority::STATIC_BASE + statics;
            supervisor.directory.spawn(
                &mut inner,
                named,
                priority,
                Origin::ConfigObject,
                Some(handler),
                Some(rebuild),
            );
        }
        if settings.aws.notifications() {
            let (aws, directory) = (env.aws.clone(), supervisor.directory.clone());
            // Kept across restarts: a restarted consumer still drops older inline messages.
            let inline = sqs::InlineMemories::default();
            let shutdown = directory.shutdown.clone();
            let make = {
                let (directory, shutdown) = (directory.clone(), shutdown.clone());
                move || {
                    let consumer =
                        sqs::Consumer::new(aws.clone(), directory.clone(), inline.clone());
                    Some(consumer.run(shutdown.clone()))
                }
            };
            let (down, up) = (directory.clone(), directory);
            supervisor.consumer = Some(tokio::spawn(async move {
                supervised(
                    "SQS consumer",
                    shutdown,
                    make,
                    |reason| down.queues().iter().for_each(|q| q.went_down(reason)),
                    || up.queues().iter().for_each(|q| q.restarted()),
                )
                .await;
            }));
        }
        Ok(supervisor)
    }

    /// Starts already-built sources, priority = position (later wins). Must be called
    /// inside a tokio runtime. These cannot be built again: one whose task dies stays down.
    pub fn spawn(built: Vec<NamedSource>, store: Arc<Store>) -> Supervisor {
        let pending = built.len();
        let built = built.into_iter().map(|named| (named, None)).collect();
        Supervisor::spawn_in(built, store, SourceEnv::default(), pending)
    }

    fn spawn_in(
        built: Vec<(NamedSource, Option<Rebuild>)>,
        store: Arc<Store>,
        env: SourceEnv,
        pending: usize,
    ) -> Supervisor {
        let readiness = ReadyLatch::new(pending);
        let (shutdown_tx, shutdown) = Shutdown::channel();
        let directory = Arc::new(SourceDirectory::new(
            store,
            readiness.clone(),
            shutdown,
            env,
        ));
        {
            let mut inner = directory.lock();
            for (position, (named, rebuild)) in built.into_iter().enumerate() {
                let priority = priority::STATIC_BASE + position;
                directory.spawn(&mut inner, named, priority, Origin::Static, None, rebuild);
            }
        }
        Supervisor {
            ready: readiness.subscribe(),
            shutdown: shutdown_tx.drop_guard(),
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
        drop(self.shutdown);
        let tasks = self.directory.take_tasks();
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

    /// Inline SQS messages dropped because they were older than the applied one.
    pub fn inline_dropped_older(&self) -> u64 {
        self.0.inline_dropped_older()
    }
}

/// The first delay before a dead task is started again (doubling up to [`RESTART_MAX`]).
const RESTART_MIN: Duration = Duration::from_millis(100);
/// The longest delay between restarts of a task that keeps dying.
const RESTART_MAX: Duration = Duration::from_secs(30);
/// A run at least this long counts as healthy: the next restart starts at [`RESTART_MIN`].
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// Runs the futures `make` returns one after another until `shutdown`: a run that panics or
/// ends while the daemon is not stopping is logged as an error, reported to `down` with the
/// reason, and replaced after a backoff (reported to `up`). Ends at shutdown, or when `make`
/// cannot build another run (the task then stays down).
pub(super) async fn supervised<F, Fut>(
    what: &str,
    mut shutdown: Shutdown,
    mut make: F,
    down: impl Fn(&str),
    up: impl Fn(),
) where
    F: FnMut() -> Option<Fut>,
    Fut: std::future::Future<Output = ()>,
{
    use futures_util::FutureExt;
    let mut backoff = super::aws::Backoff::new(RESTART_MIN, RESTART_MAX);
    let mut restarting = false;
    loop {
        let Some(run) = make() else {
            if restarting {
                tracing::error!(task = what, "the task cannot be built again; it stays down");
            }
            return;
        };
        if restarting {
            tracing::warn!(task = what, "restarting the task");
            up();
        }
        let started = tokio::time::Instant::now();
        let outcome = std::panic::AssertUnwindSafe(run).catch_unwind().await;
        if shutdown.is_requested() {
            return;
        }
        let reason = match outcome {
            Ok(()) => "the task ended unexpectedly".to_owned(),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a non-text payload".into());
                format!("the task panicked: {message}")
            }
        };
        if started.elapsed() >= HEALTHY_RUN {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        tracing::error!(task = what, reason = %reason, retry_in = ?delay, "sync task died; restarting it after a delay");
        down(&reason);
        restarting = true;
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;

    use super::*;
    use crate::flags::Format;
    use crate::store::Selector;
    use crate::sync::sqs::{Consumer, Disposition, InlineMemories};
    use crate::sync::{ObjectEvent, Payload, RefreshResult, Source, SourceContext, SourceFuture};

    const URI: &str = "s3://bucket/flags.json";
    const DOCUMENT: &str =
        r#"{"flags":{"k":{"state":"ENABLED","variants":{"on":true},"defaultVariant":"on"}}}"#;

    /// A fake source whose first run dies (panics, or returns) when asked to re-fetch;
    /// later runs answer re-fetches.
    struct Flaky {
        runs: Arc<AtomicUsize>,
        panics: bool,
    }

    impl Source for Flaky {
        fn run(self: Box<Self>, mut ctx: SourceContext) -> SourceFuture {
            Box::pin(async move {
                let run = self.runs.fetch_add(1, Ordering::SeqCst);
                ctx.sink.publish(Payload {
                    bytes: Bytes::from_static(DOCUMENT.as_bytes()),
                    format: Format::Json,
                });
                loop {
                    tokio::select! {
                        _ = ctx.shutdown.wait() => return,
                        refresh = ctx.refresh.next() => {
                            if run == 0 && self.panics {
                                panic!("injected fault");
                            }
                            if run == 0 {
                                return;
                            }
                            refresh.complete(RefreshResult::Done);
                        }
                    }
                }
            })
        }
    }

    fn flaky(runs: &Arc<AtomicUsize>, panics: bool, restartable: bool) -> Supervisor {
        let rebuild: Option<Rebuild> = restartable.then(|| {
            let runs = runs.clone();
            Arc::new(move || {
                Some(Box::new(Flaky {
                    runs: runs.clone(),
                    panics,
                }) as Box<dyn Source>)
            }) as Rebuild
        });
        let named = NamedSource {
            uri: URI.to_owned(),
            provider: Provider::S3.as_str(),
            source: Box::new(Flaky {
                runs: runs.clone(),
                panics,
            }),
        };
        Supervisor::spawn_in(
            vec![(named, rebuild)],
            Arc::new(Store::new()),
            SourceEnv::default(),
            1,
        )
    }

    fn event() -> ObjectEvent {
        ObjectEvent {
            bucket: "bucket".into(),
            key: "flags.json".into(),
            removed: false,
        }
    }

    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        for _ in 0..500 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for: {what}");
    }

    fn served(supervisor: &Supervisor) -> bool {
        supervisor
            .directory
            .store
            .snapshot()
            .get("k", &Selector::default())
            .is_some()
    }

    #[tokio::test]
    async fn a_dead_source_is_restarted_and_its_message_kept_until_applied() {
        for panics in [true, false] {
            let runs = Arc::new(AtomicUsize::new(0));
            let supervisor = flaky(&runs, panics, true);
            let directory = supervisor.directory();
            until("first document", || *supervisor.ready().borrow()).await;
            let consumer = Consumer::new(
                directory.env.aws.clone(),
                directory.clone(),
                InlineMemories::default(),
            );
            // The first run dies while handling the event's re-fetch: the change is not
            // applied, so the message must stay in the queue.
            assert_eq!(
                consumer.refresh("m1", &[event()]).await,
                Disposition::Keep,
                "panics: {panics}"
            );
            assert!(
                served(&supervisor),
                "the last good flags stay while it is down"
            );
            until("restarted", || supervisor.stats()[0].restarts == 1).await;
            let stats = &supervisor.stats()[0];
            assert_eq!(stats.down, None);
            let reason = stats.last_error.as_deref().unwrap_or_default();
            let expected = if panics {
                "panicked: injected fault"
            } else {
                "ended"
            };
            assert!(reason.contains(expected), "{reason}");
            // The restarted run answers; now the message can go.
            assert_eq!(
                consumer.refresh("m2", &[event()]).await,
                Disposition::Delete
            );
            assert_eq!(runs.load(Ordering::SeqCst), 2);
            assert!(served(&supervisor));
            supervisor.shutdown().await;
        }
    }

    #[tokio::test]
    async fn a_source_that_cannot_be_rebuilt_stays_down_and_says_so() {
        let runs = Arc::new(AtomicUsize::new(0));
        let supervisor = flaky(&runs, true, false);
        until("first document", || *supervisor.ready().borrow()).await;
        let acks = supervisor.directory.refresh_object("bucket", "flags.json");
        for ack in acks {
            assert!(matches!(ack.await, Ok(RefreshResult::Failed(_))));
        }
        until("down", || supervisor.stats()[0].down.is_some()).await;
        assert!(served(&supervisor), "its flags are still served");
        assert_eq!(supervisor.stats()[0].restarts, 0);
        supervisor.shutdown().await;
    }
}
