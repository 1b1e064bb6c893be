//! The daemon: binds the listeners, starts the sync supervisor and serves every port until
//! the shutdown future completes.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::evaluator::{Evaluator, EvaluatorConfig};
use crate::service::auth::{AuthConfig, AuthError, Tokens};
use crate::service::limits::StreamLimit;
use crate::service::listener::{ConnectionConfig, Listener};
use crate::service::management::{ManagementConfig, ManagementServer, TrafficReadiness};
use crate::service::metrics::{Metrics, SourceLabels};
use crate::service::sync::{SyncServer, SyncServiceConfig};
use crate::service::tls::{ServerTls, TlsError, ALPN_EVALUATION, ALPN_OFREP, ALPN_SYNC};
use crate::service::{
    EvaluationConfig, EvaluationServer, OfrepConfig, OfrepServer, ServeError, StreamConfig,
};
use crate::store::Store;
use crate::sync::{Supervisor, SyncConfig};
use crate::telemetry::Telemetry;

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
    /// The bearer tokens cannot be used.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// Trace export cannot start (`--otel-collector-uri` and its TLS files).
    #[error(transparent)]
    Telemetry(#[from] crate::telemetry::TelemetryError),
    /// A server failed.
    #[error("server error: {0}")]
    Server(String),
}

/// Runs the daemon until `shutdown` completes, then drains and returns.
///
/// Shutdown order (the one place it is written down; every step is a [`CancellationToken`]):
/// 1. `stopping`: readiness fails at once (`/readyz`, management gRPC health); the daemon
///    keeps serving for `--drain-delay`.
/// 2. `drain` (cancels `stopping` too): the evaluation, OFREP and sync ports drain: health
///    NOT_SERVING, `provider_shutdown` to event streams, SyncFlags streams end with OK, no
///    new connections, in-flight requests finish; all of it bounded by `--shutdown-grace`
///    less the cleanup budget. A server failing early cancels `drain` too.
/// 3. The sources stop (`Supervisor::shutdown_within`, the rest of the grace: in-flight S3
///    calls are cancelled, the fan-out queue is deleted).
/// 4. `closed` (cancels everything): the management port and the EMF writer stop last, so
///    `/healthz` answers until the end.
pub async fn run(
    settings: Settings,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    run_with(settings, listeners, shutdown, |_| {}).await
}

/// [`run`], handing `started` the sync supervisor once its sources are starting (the Lambda
/// extension asks it for a refresh on each INVOKE).
pub async fn run_with(
    settings: Settings,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
    started: impl FnOnce(&Supervisor),
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
    // Likewise: told to require tokens, the daemon never starts open.
    let auth = auth_config(&settings);
    let tokens = Tokens::load(&auth)?;
    let _token_reload = tokens.as_ref().map(Tokens::watch).transpose()?;
    if tokens.is_some() {
        tracing::info!(
            metrics = auth.metrics,
            "bearer tokens required on the evaluation, sync and OFREP ports"
        );
    }
    // Spans leave in batches on their own thread; flushed after the sources stop.
    let telemetry = Telemetry::start(&settings.telemetry)?;
    let tracer = telemetry.as_ref().map(Telemetry::tracer);
    let store = Arc::new(Store::new());
    let sources = SyncConfig {
        tracer: tracer.clone(),
        ..settings.sync_config()
    };
    let supervisor = Supervisor::from_config(sources, store.clone())?;
    started(&supervisor);
    let metrics = Arc::new(Metrics::new(settings.metrics_key_limit));
    // One cap for EventStream (8013) and SyncFlags (8015) together.
    let stream_limit = StreamLimit::new(settings.max_open_streams);
    // Each step of the shutdown order above; a later step cancels the earlier ones.
    let closed = CancellationToken::new();
    let drain = closed.child_token();
    let stopping = drain.child_token();

    let Listeners {
        evaluation,
        management,
        sync,
        ofrep,
    } = listeners;
    warn_if_every_origin_is_public(&settings.cors_origins, [Some(&evaluation), ofrep.as_ref()]);

    // CloudWatch EMF lines on stdout (awslogs ships them); stops with the management port.
    if let Some(interval) = settings.metrics_emf_interval {
        let (store, stats) = (store.clone(), supervisor.stats_reader());
        tokio::spawn(crate::service::metrics::run_emf(
            interval,
            settings.metrics_emf_namespace.clone(),
            metrics.clone(),
            move || (store.sources(), stats.stats()),
            closed.clone().cancelled_owned(),
        ));
    }
    let management = management.map(|listener| {
        let readiness = TrafficReadiness::new(supervisor.ready(), stopping.clone());
        let config = ManagementConfig {
            metrics_auth: tokens.clone().filter(|_| auth.metrics),
            source_labels: match settings.metrics_source_uris {
                true => SourceLabels::Uri,
                false => SourceLabels::Masked,
            },
        };
        let server = ManagementServer::new(
            config,
            metrics.clone(),
            store.clone(),
            supervisor.stats_reader(),
            readiness,
        )
        .with_connections(connection_config(&settings));
        tokio::spawn(server.serve(listener, closed.clone()))
    });
    let mut sync = sync.map(|listener| {
        let server = SyncServer::new(
            SyncServiceConfig {
                auth: tokens.clone(),
                ..sync_config(&settings)
            },
            store.clone(),
            metrics.clone(),
            stream_limit.clone(),
        );
        tokio::spawn(server.serve(
            listener,
            acceptor(ALPN_SYNC),
            supervisor.ready(),
            drain.clone(),
        ))
    });

    let drain_delay = settings.drain_delay;
    let begin_shutdown = async {
        shutdown.await;
        stopping.cancel();
        if !drain_delay.is_zero() {
            tracing::info!(
                ?drain_delay,
                "shutting down: not ready; draining after the delay"
            );
            tokio::time::sleep(drain_delay).await;
        }
        drain.cancel();
    };
    // One evaluator for every protocol (8013 and OFREP), reporting into the metrics.
    let evaluator = Arc::new(Evaluator::new(
        evaluator_config(&settings),
        store,
        metrics.clone(),
    ));
    let server = EvaluationServer::new(
        EvaluationConfig {
            auth: tokens.clone(),
            ..evaluation_config(&settings)
        },
        evaluator.clone(),
        metrics.clone(),
        stream_limit.clone(),
    )
    .with_tracer(tracer.clone());
    // OFREP drains with 8013.
    let mut ofrep = ofrep.map(|listener| {
        let config = OfrepConfig {
            auth: tokens.clone(),
            ..ofrep_config(&settings)
        };
        let server = OfrepServer::new(config, evaluator)
            .with_metrics(metrics)
            .with_tracer(tracer.clone());
        tokio::spawn(server.serve(listener, acceptor(ALPN_OFREP), drain.clone()))
    });
    let evaluation = server.serve(
        evaluation,
        acceptor(ALPN_EVALUATION),
        supervisor.ready(),
        drain.clone(),
    );
    tokio::pin!(evaluation);
    let early = tokio::select! {
        // Before shutdown the evaluation server only returns on error.
        result = &mut evaluation => Some(result),
        () = begin_shutdown => None,
    };
    // After an early error the other ports stop too.
    drain.cancel();

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
    if let Some(telemetry) = telemetry {
        telemetry.shutdown().await;
    }
    closed.cancel();
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

/// Where the bearer tokens come from and whether `/metrics` needs one.
fn auth_config(settings: &Settings) -> AuthConfig {
    AuthConfig {
        token_file: settings.auth_token_file.clone(),
        tokens: settings.auth_tokens.0.clone(),
        metrics: settings.metrics_auth,
    }
}

/// Logs once when CORS lets every origin in and a CORS port (8013, 8016) listens on a
/// non-loopback address: any web page its users open may then call it from their browsers.
fn warn_if_every_origin_is_public<'a>(
    origins: &[String],
    listeners: impl IntoIterator<Item = Option<&'a Listener>>,
) {
    let addresses = listeners
        .into_iter()
        .flatten()
        .filter_map(|listener| match listener {
            Listener::Tcp(tcp) => tcp.local_addr().ok(),
            #[cfg(unix)]
            Listener::Unix(_) => None,
        });
    let public = public_with_every_origin(origins, addresses);
    if !public.is_empty() {
        let addresses: Vec<String> = public.iter().map(SocketAddr::to_string).collect();
        tracing::warn!(
            addresses = %addresses.join(", "),
            "CORS allows every origin on a non-loopback address: any web page can call these \
             ports from its visitors' browsers; set --cors-origin to the origins that need it"
        );
    }
}

/// The non-loopback `addresses` when `origins` lets every origin in; empty otherwise.
fn public_with_every_origin(
    origins: &[String],
    addresses: impl IntoIterator<Item = SocketAddr>,
) -> Vec<SocketAddr> {
    if !crate::service::cors::allows_every_origin(origins) {
        return Vec::new();
    }
    addresses
        .into_iter()
        .filter(|addr| !addr.ip().is_loopback())
        .collect()
}

/// What the evaluator needs from the settings.
pub(crate) fn evaluator_config(settings: &Settings) -> EvaluatorConfig {
    EvaluatorConfig {
        static_context: settings
            .static_context
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        header_context: settings.header_context.clone(),
        fractional: settings.fractional,
    }
}

/// What the evaluation port needs from the settings.
fn evaluation_config(settings: &Settings) -> EvaluationConfig {
    EvaluationConfig {
        streams: StreamConfig {
            keep_alive: settings.keep_alive_interval,
            deadline: settings.stream_deadline,
        },
        max_request_body: settings.max_request_body,
        cors_origins: settings.cors_origins.clone(),
        max_concurrent_streams: settings.max_concurrent_streams,
        connections: connection_config(settings),
        auth: None,
    }
}

/// The connection limits every port shares.
fn connection_config(settings: &Settings) -> ConnectionConfig {
    ConnectionConfig {
        max_connections: settings.max_connections,
        header_read_timeout: settings.header_read_timeout,
        body_read_timeout: settings.body_read_timeout,
    }
}

/// What the OFREP port needs from the settings.
pub(crate) fn ofrep_config(settings: &Settings) -> OfrepConfig {
    OfrepConfig {
        max_request_body: settings.max_request_body,
        cors_origins: settings.cors_origins.clone(),
        connections: connection_config(settings),
        // Lambda's function mode uses this too; API Gateway authenticates there.
        auth: None,
    }
}

/// What the sync port needs from the settings.
fn sync_config(settings: &Settings) -> SyncServiceConfig {
    SyncServiceConfig {
        static_context: settings.static_context.clone(),
        disable_sync_metadata: settings.disable_sync_metadata,
        stream_deadline: settings.stream_deadline,
        max_concurrent_streams: settings.max_concurrent_streams,
        connections: connection_config(settings),
        auth: None,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cors_for_every_origin_on_a_public_address_is_reported() {
        let addrs = |list: &[&str]| -> Vec<SocketAddr> {
            list.iter().map(|a| a.parse().unwrap()).collect()
        };
        let mixed = addrs(&["127.0.0.1:8013", "0.0.0.0:8016", "[::1]:1", "10.0.0.5:8013"]);
        let every = Vec::new();
        assert_eq!(
            public_with_every_origin(&every, mixed.clone()),
            addrs(&["0.0.0.0:8016", "10.0.0.5:8013"])
        );
        assert_eq!(
            public_with_every_origin(&["*".to_owned()], addrs(&["[::]:8013"])),
            addrs(&["[::]:8013"])
        );
        assert!(public_with_every_origin(&every, addrs(&["127.0.0.1:1", "[::1]:2"])).is_empty());
        let listed = ["https://app.example".to_owned()];
        assert!(public_with_every_origin(&listed, mixed).is_empty());
    }
}
