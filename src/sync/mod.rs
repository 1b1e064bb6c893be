//! Sync sources: everything that feeds flag documents into the [`Store`](crate::store::Store).
//!
//! Each provider implements [`Source`]; a supervisor runs every configured source, parses
//! each payload with [`parse_document`](crate::flags::parse_document), applies good ones to
//! the store, keeps the last good configuration when a payload is bad, and tracks readiness.

use std::sync::Arc;

use tokio::sync::watch;

use crate::config::SourceConfig;
use crate::store::Store;

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
}

impl Supervisor {
    /// Starts one task per source (the embedded example flags when `sources` is empty).
    pub fn start(_sources: &[SourceConfig], _store: Arc<Store>) -> Result<Supervisor, SyncError> {
        todo!("Supervisor::start")
    }

    /// `true` once every source has applied a valid configuration at least once (a latch).
    pub fn ready(&self) -> watch::Receiver<bool> {
        self.ready.clone()
    }

    /// Stops every source task.
    pub async fn shutdown(self) {}
}
