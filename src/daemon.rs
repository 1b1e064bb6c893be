//! The daemon: binds the listeners, starts the sync supervisor and serves every port until
//! the shutdown future completes.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Settings;
use crate::service::limits::StreamLimit;
use crate::service::listener::Listener;
use crate::service::management::{ManagementServer, Readiness};
use crate::service::metrics::Metrics;
use crate::service::sync::SyncServer;
use crate::service::tls::{ServerTls, TlsError, ALPN_EVALUATION, ALPN_OFREP, ALPN_SYNC};
use crate::service::{EvaluationServer, OfrepServer, ServeError};
use crate::store::Store;
use crate::sync::Supervisor;

/// The bound sockets the daemon serves on (tests bind ephemeral ports and pass them in).
#[derive(Debug)]
pub struct Listeners {
    /// Evaluation services (8013).
    pub evaluation: Listener,
    /// Management: health, readiness, metrics (8014).
    pub management: Option<TcpListener>,
    /// flagd.sync.v1 (8015).
    pub sync: Option<Listener>,
    /// OFREP (8016).
    pub ofrep: Option<Listener>,
}

impl Listeners {
    /// Binds every port named in `settings` on `bind_address` (all interfaces by default); `socket_path` and
    /// `sync_socket_path` replace the evaluation and sync TCP ports with unix sockets.
    pub async fn bind(settings: &Settings) -> std::io::Result<Listeners> {
        let evaluation = match &settings.socket_path {
            Some(path) => bind_unix(path)?,
            None => bind(settings, settings.port).await?.into(),
        };
        let sync = match &settings.sync_socket_path {
            Some(path) => bind_unix(path)?,
            None => bind(settings, settings.sync_port).await?.into(),
        };
        Ok(Listeners {
            evaluation,
            management: Some(bind(settings, settings.management_port).await?),
            sync: Some(sync),
            ofrep: Some(bind(settings, settings.ofrep_port).await?.into()),
        })
    }
}

async fn bind(settings: &Settings, port: u16) -> std::io::Result<TcpListener> {
    let addr = SocketAddr::from((settings.bind_address, port));
    TcpListener::bind(addr)
        .await
        .map_err(|error| std::io::Error::new(error.kind(), format!("{addr}: {error}")))
}

/// Binds a unix socket at `path`, replacing a socket left by an earlier run (never any other
/// kind of file). The file is removed again when the server stops.
fn bind_unix(path: &Path) -> std::io::Result<Listener> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if meta.file_type().is_socket() {
                std::fs::remove_file(path)?;
            }
        }
        let listener = tokio::net::UnixListener::bind(path).map_err(|error| {
            std::io::Error::new(error.kind(), format!("{}: {error}", path.display()))
        })?;
        Ok(listener.into())
    }
    #[cfg(not(unix))]
    {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            format!("{}: unix sockets need a unix system", path.display()),
        ))
    }
}

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The sync layer could not start.
    #[error(transparent)]
    Sync(#[from] crate::sync::SyncError),
    /// The TLS certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A server failed.
    #[error("server error: {0}")]
    Server(String),
}

/// Completes once `signal` has flipped to `true` (or its sender is gone).
async fn until(mut signal: watch::Receiver<bool>) {
    let _ = signal.wait_for(|set| *set).await;
}

/// Runs the daemon until `shutdown` completes, then drains and returns.
///
/// Shutdown order: readiness fails at once (`/readyz`, management gRPC health), the daemon
/// keeps serving for `drain_delay`, then the evaluation and sync ports drain (health
/// NOT_SERVING, `provider_shutdown` to event streams, sync streams end, in-flight requests
/// finish, bounded by `shutdown_grace`), the sources stop, and the management port closes
/// last.
pub async fn run(
    settings: Settings,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    // Before anything serves: a bad certificate must stop the daemon, not downgrade it.
    let tls = ServerTls::from_paths(
        settings.server_cert_path.as_deref(),
        settings.server_key_path.as_deref(),
    )?;
    let tls = match (tls, settings.client_ca_path.as_deref()) {
        (tls, None) => tls,
        (Some(tls), Some(ca)) => Some(tls.require_client_certificates(ca)?),
        (None, Some(_)) => return Err(TlsError::ClientCaWithoutTls.into()),
    };
    let _reload = tls.as_ref().map(|tls| tls.watch()).transpose()?;
    let acceptor = |alpn| tls.as_ref().map(|tls| tls.acceptor(alpn));
    let store = Arc::new(Store::new());
    let supervisor = Supervisor::from_config(settings.sync_config(), store.clone())?;
    let metrics = Arc::new(Metrics::new(settings.metrics_key_limit));
    // One cap for EventStream (8013) and SyncFlags (8015) together.
    let stream_limit = StreamLimit::new(settings.max_open_streams);
    // `stopping`: shutdown has begun (readiness off); `drain`: the serving ports drain now;
    // `closed`: everything else has stopped, the management port may close.
    let (stopping_tx, stopping) = watch::channel(false);
    let (drain_tx, drain) = watch::channel(false);
    let (closed_tx, closed) = watch::channel(false);

    let Listeners {
        evaluation,
        management,
        sync,
        ofrep,
    } = listeners;

    // CloudWatch EMF lines on stdout (awslogs ships them); stops with the management port.
    if let Some(interval) = settings.metrics_emf_interval {
        let (store, stats) = (store.clone(), supervisor.stats_reader());
        tokio::spawn(crate::service::metrics::run_emf(
            interval,
            settings.metrics_emf_namespace.clone(),
            metrics.clone(),
            move || (store.sources(), stats.stats()),
            until(closed.clone()),
        ));
    }
    let management = management.map(|listener| {
        let readiness = Readiness::new(supervisor.ready(), stopping.clone());
        let server = ManagementServer::new(
            metrics.clone(),
            store.clone(),
            supervisor.stats_reader(),
            readiness,
        );
        tokio::spawn(server.serve(listener, until(closed)))
    });
    let mut sync = sync.map(|listener| {
        let server = SyncServer::new(
            &settings,
            store.clone(),
            metrics.clone(),
            stream_limit.clone(),
        );
        tokio::spawn(server.serve(
            listener,
            acceptor(ALPN_SYNC),
            supervisor.ready(),
            until(drain.clone()),
        ))
    });

    let drain_delay = settings.drain_delay;
    let begin_shutdown = async {
        shutdown.await;
        stopping_tx.send_replace(true);
        if !drain_delay.is_zero() {
            tracing::info!(
                ?drain_delay,
                "shutting down: not ready; draining after the delay"
            );
            tokio::time::sleep(drain_delay).await;
        }
        drain_tx.send_replace(true);
    };
    let server =
        EvaluationServer::with_metrics(&settings, store, metrics.clone(), stream_limit.clone());
    // OFREP shares the evaluator (one implementation of every evaluation) and drains with 8013.
    let mut ofrep = ofrep.map(|listener| {
        let server = OfrepServer::new(&settings, server.evaluator()).with_metrics(metrics);
        tokio::spawn(server.serve(listener, acceptor(ALPN_OFREP), until(drain.clone())))
    });
    let evaluation = server.serve(
        evaluation,
        acceptor(ALPN_EVALUATION),
        supervisor.ready(),
        until(drain),
    );
    tokio::pin!(evaluation);
    let early = tokio::select! {
        // Before shutdown the evaluation server only returns on error.
        result = &mut evaluation => Some(result),
        () = begin_shutdown => None,
    };
    // After an early error the other ports stop too.
    stopping_tx.send_replace(true);
    drain_tx.send_replace(true);

    let drained = async {
        let mut errors = Vec::new();
        let evaluation_result = match early {
            Some(result) => result,
            None => evaluation.await,
        };
        if let Err(error) = evaluation_result {
            errors.push(format!("evaluation: {error}"));
        }
        if let Some(task) = sync.as_mut() {
            if let Some(error) = joined(task).await {
                errors.push(format!("sync: {error}"));
            }
        }
        if let Some(task) = ofrep.as_mut() {
            // Idle HTTP/1 keep-alive clients must not hold the process open.
            match tokio::time::timeout(OFREP_GRACE, &mut *task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(error))) => errors.push(format!("ofrep: {error}")),
                Ok(Err(error)) => errors.push(format!("ofrep: {error}")),
                Err(_) => task.abort(),
            }
        }
        errors
    };
    // The whole shutdown fits in the grace period: the ports drain first, then the sources
    // stop (in-flight S3 calls are cancelled) and the fan-out queue is deleted in the rest.
    let grace = settings.shutdown_grace;
    let cleanup = (grace / 2).min(CLEANUP_BUDGET);
    let mut errors = match tokio::time::timeout(grace - cleanup, drained).await {
        Ok(errors) => errors,
        Err(_) => {
            tracing::warn!(
                ?grace,
                "shutdown grace period expired; closing the remaining connections"
            );
            sync.iter().for_each(JoinHandle::abort);
            ofrep.iter().for_each(JoinHandle::abort);
            Vec::new()
        }
    };
    supervisor.shutdown_within(cleanup).await;
    closed_tx.send_replace(true);
    if let Some(mut task) = management {
        if let Some(error) = joined(&mut task).await {
            errors.push(format!("management: {error}"));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(DaemonError::Server(errors.join("; ")))
    }
}

/// The part of the shutdown grace kept for stopping sources and deleting the fan-out queue.
const CLEANUP_BUDGET: std::time::Duration = std::time::Duration::from_secs(3);

/// How long OFREP connections may take to finish once draining starts.
const OFREP_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// The error a server task ended with, if any (a panic counts as one).
async fn joined(task: &mut JoinHandle<Result<(), ServeError>>) -> Option<String> {
    match task.await {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(error.to_string()),
        Err(error) => Some(error.to_string()),
    }
}
