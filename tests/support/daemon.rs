//! The daemon in-process on ephemeral loopback ports, fed from temporary flag files.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use flagpole::config::Settings;
use flagpole::daemon::{self, DaemonError, Listeners};
use flagpole::service::proto::sync_v1::flag_sync_service_client::FlagSyncServiceClient;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use super::{channel, eventually, file_source, http1};

/// A daemon running in this process.
pub struct TestDaemon {
    /// Evaluation port (8013).
    pub evaluation: SocketAddr,
    management: Option<SocketAddr>,
    sync: Option<SocketAddr>,
    ofrep: Option<SocketAddr>,
    /// The temporary directory holding the flag files.
    pub dir: TempDir,
    /// The flag files written at launch, in priority order (as configured).
    pub files: Vec<PathBuf>,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), DaemonError>>>,
}

/// What to launch: the flag files and which ports besides evaluation to serve.
#[must_use]
pub struct Launch<'a> {
    files: &'a [(&'a str, &'a str)],
    management: bool,
    sync: bool,
    ofrep: bool,
}

impl TestDaemon {
    /// A daemon serving only the evaluation port, with one `file` source per
    /// `(file name, content)`, in priority order.
    pub fn with_files<'a>(files: &'a [(&'a str, &'a str)]) -> Launch<'a> {
        Launch {
            files,
            management: false,
            sync: false,
            ofrep: false,
        }
    }

    /// Like [`TestDaemon::with_files`], also serving the management and sync ports.
    pub fn full<'a>(files: &'a [(&'a str, &'a str)]) -> Launch<'a> {
        TestDaemon::with_files(files).management().sync()
    }
}

impl Launch<'_> {
    /// Also serves the management port (8014); readiness is then `/readyz` answering 200.
    pub fn management(mut self) -> Self {
        self.management = true;
        self
    }

    /// Also serves the sync port (8015).
    pub fn sync(mut self) -> Self {
        self.sync = true;
        self
    }

    /// Also serves OFREP (8016).
    pub fn ofrep(mut self) -> Self {
        self.ofrep = true;
        self
    }

    /// Writes the files into a temp dir, lets `configure` adjust the settings (it gets the
    /// temp dir too) and starts the daemon; returns as soon as it runs, ready or not.
    pub async fn launch(self, configure: impl FnOnce(&mut Settings, &Path)) -> TestDaemon {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut paths = Vec::new();
        for (name, content) in self.files {
            let path = dir.path().join(name);
            std::fs::write(&path, content).expect("write flag file");
            paths.push(path);
        }
        let mut settings = Settings {
            sources: paths.iter().map(|p| file_source(p)).collect(),
            ..Settings::default()
        };
        configure(&mut settings, dir.path());

        let evaluation = bind().await;
        let management = optional(self.management).await;
        let sync = optional(self.sync).await;
        let ofrep = optional(self.ofrep).await;
        let addr = |listener: &Option<TcpListener>| {
            listener
                .as_ref()
                .map(|l| l.local_addr().expect("local addr"))
        };
        let mut daemon = TestDaemon {
            evaluation: evaluation.local_addr().expect("local addr"),
            management: addr(&management),
            sync: addr(&sync),
            ofrep: addr(&ofrep),
            dir,
            files: paths,
            shutdown: None,
            handle: None,
        };
        let listeners = Listeners {
            evaluation: evaluation.into(),
            management,
            sync: sync.map(Into::into),
            ofrep: ofrep.map(Into::into),
        };
        let (shutdown, signal) = oneshot::channel::<()>();
        daemon.shutdown = Some(shutdown);
        daemon.handle = Some(tokio::spawn(daemon::run(settings, listeners, async {
            let _ = signal.await;
        })));
        daemon
    }

    /// Like [`Launch::launch`], then waits until the daemon is ready.
    pub async fn start(self, configure: impl FnOnce(&mut Settings, &Path)) -> TestDaemon {
        let daemon = self.launch(configure).await;
        daemon.wait_ready().await;
        daemon
    }
}

async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bind")
}

async fn optional(wanted: bool) -> Option<TcpListener> {
    match wanted {
        true => Some(bind().await),
        false => None,
    }
}

impl TestDaemon {
    /// The management port; panics unless it was asked for.
    pub fn management(&self) -> SocketAddr {
        self.management.expect("management port served")
    }

    /// The sync port; panics unless it was asked for.
    pub fn sync(&self) -> SocketAddr {
        self.sync.expect("sync port served")
    }

    /// The OFREP port; panics unless it was asked for.
    pub fn ofrep(&self) -> SocketAddr {
        self.ofrep.expect("OFREP port served")
    }

    /// Waits for readiness: `/readyz` answering 200 where the management port is served,
    /// else `grpc.health.v1` reporting the whole server SERVING.
    pub async fn wait_ready(&self) {
        match self.management {
            Some(management) => {
                eventually("readyz 200", || async {
                    matches!(
                        http1::call(management, "GET", "/readyz").await,
                        Ok((200, _))
                    )
                })
                .await
            }
            None => eventually("health SERVING", || self.serving()).await,
        }
    }

    async fn serving(&self) -> bool {
        let Ok(channel) =
            tonic::transport::Endpoint::from_shared(format!("http://{}", self.evaluation))
                .expect("endpoint")
                .connect()
                .await
        else {
            return false;
        };
        let request = HealthCheckRequest {
            service: String::new(),
        };
        match HealthClient::new(channel).check(request).await {
            Ok(response) => response.into_inner().status == ServingStatus::Serving as i32,
            Err(_) => false,
        }
    }

    /// A fresh client channel to the evaluation port.
    pub async fn channel(&self) -> Channel {
        channel(self.evaluation).await
    }

    /// A client of the sync port.
    pub async fn sync_client(&self) -> FlagSyncServiceClient<Channel> {
        FlagSyncServiceClient::new(channel(self.sync()).await)
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

impl Drop for TestDaemon {
    fn drop(&mut self) {
        self.begin_shutdown();
    }
}
