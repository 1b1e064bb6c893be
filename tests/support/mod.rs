//! Shared helpers for the acceptance tests: a real daemon in-process on ephemeral ports
//! ([`daemon`]), fed from temporary flag files and driven over real sockets ([`http1`] for
//! HTTP/1.1, [`channel`] for gRPC), and a real AWS emulator ([`moto`]).

#![allow(dead_code)]

pub mod daemon;
pub mod http1;
pub mod moto;
pub mod proxy;
pub mod tls;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use flagpole::sync::{Provider, SourceConfig};
use tonic::transport::{Channel, Endpoint};
use tonic::Request;

// Not every test binary launches a daemon.
#[allow(unused_imports)]
pub use daemon::TestDaemon;

/// Upper bound for anything to happen; tests poll well below it.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A `file` source for `path`.
pub fn file_source(path: &Path) -> SourceConfig {
    SourceConfig {
        uri: path.display().to_string(),
        provider: Provider::File,
        interval: Some(Duration::from_millis(200)),
        remote: Default::default(),
    }
}

/// A connected gRPC channel to `addr`.
pub async fn channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect")
}

/// Polls `condition` every 20 ms until it holds, failing the test after [`PATIENCE`].
pub async fn eventually<F, Fut>(what: &str, condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_within(PATIENCE, what, condition).await;
}

/// Polls `condition` every 20 ms until it holds, failing the test after `patience`.
pub async fn eventually_within<F, Fut>(patience: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + patience;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Replaces `path` atomically: writes a sibling temp file, then renames it over `path`.
pub fn replace_by_rename(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).expect("write temp");
    std::fs::rename(&tmp, path).expect("rename");
}

/// `message` as a request carrying the `flagd-selector` header.
pub fn with_selector<T>(message: T, selector: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("flagd-selector", selector.parse().unwrap());
    request
}
