//! A daemon in-process with the evaluation, management and sync ports all bound to
//! ephemeral loopback ports, plus a minimal HTTP/1.1 client for the management port.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use flagpole::config::{Settings, SourceConfig};
use flagpole::daemon::{self, DaemonError, Listeners};
use flagpole::service::proto::sync_v1::flag_sync_service_client::FlagSyncServiceClient;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};

/// Upper bound for anything to happen; tests poll well below it.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A daemon with every port but OFREP served.
pub struct FullDaemon {
    /// Evaluation port (8013).
    pub evaluation: SocketAddr,
    /// Management port (8014).
    pub management: SocketAddr,
    /// Sync port (8015).
    pub sync: SocketAddr,
    /// Holds the flag files.
    pub dir: TempDir,
    /// The flag files written at launch, in priority order.
    pub files: Vec<PathBuf>,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), DaemonError>>>,
}

impl FullDaemon {
    /// Writes `files` into a temp dir, configures one `file` source per file (in order), lets
    /// `configure` adjust the settings (it gets the temp dir too) and starts the daemon.
    pub async fn launch(
        files: &[(&str, &str)],
        configure: impl FnOnce(&mut Settings, &Path),
    ) -> FullDaemon {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut paths = Vec::new();
        for (name, content) in files {
            let path = dir.path().join(name);
            std::fs::write(&path, content).expect("write flag file");
            paths.push(path);
        }
        let mut settings = Settings {
            sources: paths.iter().map(|p| file_source(p)).collect(),
            ..Settings::default()
        };
        configure(&mut settings, dir.path());

        let bind = || async { TcpListener::bind("127.0.0.1:0").await.expect("bind") };
        let (evaluation, management, sync) = (bind().await, bind().await, bind().await);
        let addrs = (
            evaluation.local_addr().unwrap(),
            management.local_addr().unwrap(),
            sync.local_addr().unwrap(),
        );
        let listeners = Listeners {
            evaluation,
            management: Some(management),
            sync: Some(sync),
            ofrep: None,
        };
        let (shutdown, signal) = oneshot::channel::<()>();
        let handle = tokio::spawn(daemon::run(settings, listeners, async {
            let _ = signal.await;
        }));
        FullDaemon {
            evaluation: addrs.0,
            management: addrs.1,
            sync: addrs.2,
            dir,
            files: paths,
            shutdown: Some(shutdown),
            handle: Some(handle),
        }
    }

    /// Like [`FullDaemon::launch`], then waits until `/readyz` answers 200.
    pub async fn start(
        files: &[(&str, &str)],
        configure: impl FnOnce(&mut Settings, &Path),
    ) -> FullDaemon {
        let daemon = FullDaemon::launch(files, configure).await;
        daemon.wait_ready().await;
        daemon
    }

    /// Polls `/readyz` until it answers 200.
    pub async fn wait_ready(&self) {
        eventually("readyz 200", || async {
            matches!(http(self.management, "GET", "/readyz").await, Ok((200, _)))
        })
        .await;
    }

    /// The stored source URI of flag file `index`.
    pub fn source(&self, index: usize) -> String {
        self.files[index].display().to_string()
    }

    /// A client of the sync port.
    pub async fn sync_client(&self) -> FlagSyncServiceClient<Channel> {
        FlagSyncServiceClient::new(channel(self.sync).await)
    }

    /// Triggers shutdown without waiting for the daemon to return.
    pub fn begin_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    /// Whether `daemon::run` has returned.
    pub fn has_stopped(&self) -> bool {
        self.handle.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Shuts the daemon down and returns what `daemon::run` returned.
    pub async fn stop(mut self) -> Result<(), DaemonError> {
        self.begin_shutdown();
        let handle = self.handle.take().expect("running");
        tokio::time::timeout(Duration::from_secs(30), handle)
            .await
            .expect("daemon stops")
            .expect("daemon task")
    }
}

impl Drop for FullDaemon {
    fn drop(&mut self) {
        self.begin_shutdown();
    }
}

/// A `file` source for `path`.
pub fn file_source(path: &Path) -> SourceConfig {
    SourceConfig {
        uri: path.display().to_string(),
        provider: "file".to_owned(),
        interval: Some(Duration::from_millis(200)),
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

/// One HTTP/1.1 request with `Connection: close`; returns the status and body.
pub async fn http(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr).await?;
    let request =
        format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no header end in {text:?}")))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

/// Decodes a chunked HTTP/1.1 body.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// Polls `condition` every 20 ms until it holds, failing the test after [`PATIENCE`].
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
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
