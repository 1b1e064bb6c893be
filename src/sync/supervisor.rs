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
use super::directory::{Origin, SourceDirectory, SourceEnv};
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
                    .map_err(|e| SyncError::InvalidSource {
                        uri: uri.to_owned(),
                        error: e.into(),
                    })?
                    .max_size(env.max_document_size);
                Ok::<_, SyncError>(NamedSource {
                    uri: uri.to_owned(),
                    provider: Provider::S3.as_str(),
                    source: Box::new(source),
                })
            })
            .transpose()?;
        let statics = built.len();
        let pending = statics + usize::from(config_source.is_some());
        let mut supervisor = Supervisor::spawn_in(built, store, env.clone(), pending);
        if let Some(named) = config_source {
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
            for (position, named) in built.into_iter().enumerate() {
                let priority = priority::STATIC_BASE + position;
                directory.spawn(&mut inner, named, priority, Origin::Static, None);
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
}
