//! The daemon: binds the listeners, starts the sync supervisor and serves every port until
//! the shutdown future completes.

use std::future::Future;

use tokio::net::TcpListener;

use crate::config::Settings;

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
    pub async fn bind(_settings: &Settings) -> std::io::Result<Listeners> {
        todo!("Listeners::bind")
    }
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
pub async fn run(
    _settings: Settings,
    _listeners: Listeners,
    _shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    todo!("daemon::run")
}
