//! Sync sources: everything that feeds flag documents into the [`Store`](crate::store::Store).
//!
//! Each provider implements [`Source`]; a supervisor runs every configured source, parses
//! each payload with [`parse_document`](crate::flags::parse_document), applies good ones to
//! the store, keeps the last good configuration when a payload is bad, and tracks readiness.

mod embedded;
mod file;
mod provider;
mod source;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::config::SourceConfig;
use crate::store::Store;

pub use embedded::{EmbeddedSource, DEFAULT_FLAGS, EMBEDDED_URI};
pub use file::{FileSource, DEFAULT_POLL_INTERVAL};
pub use provider::Provider;
pub use source::{
    Outcome, Payload, PayloadSink, Shutdown, Source, SourceContext, SourceFuture, SourceStats,
};

use source::{Readiness, SourceState};

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

/// Runs every configured source and applies their payloads to the store.
#[derive(Debug)]
pub struct Supervisor {
    ready: watch::Receiver<bool>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    sources: Vec<Arc<SourceState>>,
    refresh: HashMap<String, Arc<Notify>>,
}

impl Supervisor {
    /// Starts one task per source (the embedded example flags when `sources` is empty).
    ///
    /// Every source is validated before any task starts. Must be called inside a tokio runtime.
    pub fn start(sources: &[SourceConfig], store: Arc<Store>) -> Result<Supervisor, SyncError> {
        let mut built = Vec::with_capacity(sources.len().max(1));
        if sources.is_empty() {
            tracing::info!(
                source = EMBEDDED_URI,
                "no sync sources configured; serving the embedded example flags"
            );
            built.push(NamedSource {
                uri: EMBEDDED_URI.to_owned(),
                provider: "embedded".to_owned(),
                source: Box::new(EmbeddedSource),
            });
        }
        for config in sources {
            built.push(build_source(config)?);
        }
        Ok(Supervisor::spawn(built, store))
    }

    /// Starts already-built sources, priority = position (later wins). Must be called
    /// inside a tokio runtime.
    pub fn spawn(built: Vec<NamedSource>, store: Arc<Store>) -> Supervisor {
        let readiness = Readiness::new(built.len());
        let (shutdown_tx, shutdown) = Shutdown::channel();
        let mut supervisor = Supervisor {
            ready: readiness.subscribe(),
            shutdown: shutdown_tx,
            tasks: Vec::with_capacity(built.len()),
            sources: Vec::with_capacity(built.len()),
            refresh: HashMap::new(),
        };
        for (priority, named) in built.into_iter().enumerate() {
            let NamedSource {
                uri,
                provider,
                source,
            } = named;
            let state = Arc::new(SourceState::new(uri.clone(), provider, priority));
            let refresh = supervisor
                .refresh
                .entry(uri.clone())
                .or_insert_with(|| Arc::new(Notify::new()))
                .clone();
            let ctx = SourceContext {
                sink: PayloadSink::new(state.clone(), store.clone(), readiness.clone()),
                refresh,
                shutdown: shutdown.clone(),
            };
            tracing::info!(source = %uri, provider = %state.provider, priority, "starting sync source");
            supervisor.tasks.push(tokio::spawn(source.run(ctx)));
            supervisor.sources.push(state);
        }
        supervisor
    }

    /// `true` once every source has applied a valid configuration at least once (a latch).
    pub fn ready(&self) -> watch::Receiver<bool> {
        self.ready.clone()
    }

    /// Per-source counters (applied, rejected, readiness), in priority order.
    pub fn stats(&self) -> Vec<SourceStats> {
        self.sources.iter().map(|s| s.stats()).collect()
    }

    /// A handle that reads the same counters as [`Supervisor::stats`] without borrowing
    /// the supervisor (for the metrics endpoint, which outlives no shutdown).
    pub fn stats_reader(&self) -> StatsReader {
        StatsReader(self.sources.clone())
    }

    /// Asks the source stored as `uri` to re-fetch now (what an SQS notification triggers);
    /// `false` if no such source runs.
    pub fn refresh(&self, uri: &str) -> bool {
        match self.refresh.get(uri) {
            Some(notify) => {
                notify.notify_one();
                true
            }
            None => false,
        }
    }

    /// Stops every source task and waits for them to finish.
    pub async fn shutdown(self) {
        self.shutdown.send_replace(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Reads every source's counters; cheap to clone.
#[derive(Debug, Clone)]
pub struct StatsReader(Vec<Arc<SourceState>>);

impl StatsReader {
    /// Per-source counters, in priority order (as [`Supervisor::stats`]).
    pub fn stats(&self) -> Vec<SourceStats> {
        self.0.iter().map(|s| s.stats()).collect()
    }
}

/// A provider together with the name it is stored and selected under.
pub struct NamedSource {
    /// The stored source URI (what `source=` selectors match).
    pub uri: String,
    /// The provider name, for stats and logs.
    pub provider: String,
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

/// Builds the provider for one configured source.
pub fn build_source(config: &SourceConfig) -> Result<NamedSource, SyncError> {
    let invalid = |message: String| SyncError::InvalidSource {
        uri: config.uri.clone(),
        message,
    };
    match Provider::parse(&config.provider).map_err(invalid)? {
        Provider::File => {
            let path = config.uri.strip_prefix("file:").unwrap_or(&config.uri);
            let source = FileSource::new(path, config.interval).ok_or_else(|| {
                invalid("unsupported file format: use a .json, .yaml or .yml file".into())
            })?;
            Ok(NamedSource {
                uri: path.to_owned(),
                provider: config.provider.clone(),
                source: Box::new(source),
            })
        }
        Provider::S3 => Err(invalid(
            "the s3 provider is not implemented yet in this build".into(),
        )),
    }
}
