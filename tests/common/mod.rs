//! Shared helpers for the acceptance tests: a real daemon in-process on ephemeral ports,
//! fed from temporary flag files, driven over real sockets.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use flagpole::config::{Settings, SourceConfig};
use flagpole::daemon::{self, DaemonError, Listeners};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// How long a test waits for the daemon to report SERVING before giving up.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A daemon running in this process.
pub struct TestDaemon {
    /// The evaluation port's address.
    pub addr: SocketAddr,
    /// The temporary directory holding the flag files.
    pub dir: TempDir,
    /// The flag files, in priority order (as configured).
    pub files: Vec<PathBuf>,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), DaemonError>>>,
}

impl TestDaemon {
    /// Starts a daemon with one `file` source per `(file name, content)`, in priority
    /// order, after letting `configure` adjust the settings; returns once health is SERVING.
    pub async fn start(
        files: &[(&str, &str)],
        configure: impl FnOnce(&mut Settings),
    ) -> TestDaemon {
        let daemon = TestDaemon::launch(files, configure).await;
        daemon.wait_serving().await;
        daemon
    }

    /// Like [`TestDaemon::start`] but returns as soon as the daemon runs, ready or not.
    pub async fn launch(
        files: &[(&str, &str)],
        configure: impl FnOnce(&mut Settings),
    ) -> TestDaemon {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut paths = Vec::new();
        for (name, content) in files {
            let path = dir.path().join(name);
            std::fs::write(&path, content).expect("write flag file");
            paths.push(path);
        }
        let mut settings = Settings {
            sources: paths
                .iter()
                .map(|path| SourceConfig {
                    uri: path.display().to_string(),
                    provider: "file".to_owned(),
                    interval: None,
                })
                .collect(),
            ..Settings::default()
        };
        configure(&mut settings);

        let evaluation = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = evaluation.local_addr().expect("local addr");
        let listeners = Listeners {
            evaluation,
            management: None,
            sync: None,
            ofrep: None,
        };
        let (shutdown, signal) = oneshot::channel::<()>();
        let handle = tokio::spawn(daemon::run(settings, listeners, async {
            let _ = signal.await;
        }));
        TestDaemon {
            addr,
            dir,
            files: paths,
            shutdown: Some(shutdown),
            handle: Some(handle),
        }
    }

    /// A fresh client channel to the evaluation port.
    pub async fn channel(&self) -> Channel {
        Endpoint::from_shared(format!("http://{}", self.addr))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect")
    }

    /// Polls `grpc.health.v1` until the whole server reports SERVING.
    async fn wait_serving(&self) {
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(channel) = Endpoint::from_shared(format!("http://{}", self.addr))
                .expect("endpoint")
                .connect()
                .await
            {
                let mut health = HealthClient::new(channel);
                let request = HealthCheckRequest {
                    service: String::new(),
                };
                if let Ok(response) = health.check(request).await {
                    if response.into_inner().status == ServingStatus::Serving as i32 {
                        return;
                    }
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "daemon did not become SERVING"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The stored source URI of flag file `index` (what `source=` selectors match).
    pub fn source(&self, index: usize) -> String {
        self.files[index].display().to_string()
    }

    /// The path of flag file `index`.
    pub fn file(&self, index: usize) -> &Path {
        &self.files[index]
    }

    /// Triggers shutdown without waiting for the daemon to return.
    pub fn begin_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
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

impl Drop for TestDaemon {
    fn drop(&mut self) {
        self.begin_shutdown();
    }
}

/// Replaces `path` atomically: writes a sibling temp file, then renames it over `path`.
pub fn replace_by_rename(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).expect("write temp");
    std::fs::rename(&tmp, path).expect("rename");
}
