//! The daemon: binds the listeners, starts the sync supervisor and serves every port until
//! the shutdown future completes.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::Settings;
use crate::service::EvaluationServer;
use crate::store::Store;
use crate::sync::Supervisor;

/// The bound sockets the daemon serves on (tests bind ephemeral ports and pass them in).
#[derive(Debug)]
pub struct Listeners {
    /// Evaluation services (8013).
    pub evaluation: TcpListener,
    /// Management: health, readiness, metrics (8014).
    pub management: Option<TcpListener>,
    /// flagd.sync.v1 (8015).
    pub sync: Option<TcpListener>,
    /// OFREP (8016).
    pub ofrep: Option<TcpListener>,
}

impl Listeners {
    /// Binds every port named in `settings` on all interfaces.
    pub async fn bind(settings: &Settings) -> std::io::Result<Listeners> {
        Ok(Listeners {
            evaluation: bind(settings.port).await?,
            management: Some(bind(settings.management_port).await?),
            sync: Some(bind(settings.sync_port).await?),
            ofrep: Some(bind(settings.ofrep_port).await?),
        })
    }
}

async fn bind(port: u16) -> std::io::Result<TcpListener> {
    TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))).await
}

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The sync layer could not start.
    #[error(transparent)]
    Sync(#[from] crate::sync::SyncError),
    /// A server failed.
    #[error("server error: {0}")]
    Server(String),
}

/// Runs the daemon until `shutdown` completes, then drains and returns.
///
/// Draining: the evaluation health turns NOT_SERVING, event streams receive
/// `provider_shutdown`, in-flight requests finish, then the sources stop.
pub async fn run(
    settings: Settings,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    let store = Arc::new(Store::new());
    let supervisor = Supervisor::from_settings(&settings, store.clone())?;

    // The management, sync and OFREP ports are bound (so the ports are taken and
    // configuration errors surface at start) but not served yet.
    let Listeners {
        evaluation,
        management: _management,
        sync: _sync,
        ofrep: _ofrep,
    } = listeners;

    let server = EvaluationServer::new(&settings, store);
    let result = server
        .serve(evaluation, supervisor.ready(), shutdown)
        .await
        .map_err(|e| DaemonError::Server(e.to_string()));
    supervisor.shutdown().await;
    result
}
