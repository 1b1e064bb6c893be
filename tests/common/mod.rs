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

// ---------------------------------------------------------------------------------------
// OFREP (port 8016)

impl TestDaemon {
    /// Like [`TestDaemon::start`], also serving OFREP on an ephemeral port, whose address is
    /// returned alongside.
    pub async fn start_with_ofrep(
        files: &[(&str, &str)],
        configure: impl FnOnce(&mut Settings),
    ) -> (TestDaemon, SocketAddr) {
        let ofrep = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let ofrep_addr = ofrep.local_addr().expect("local addr");
        let daemon = TestDaemon::launch_with(files, configure, |listeners| {
            listeners.ofrep = Some(ofrep);
        })
        .await;
        daemon.wait_serving().await;
        (daemon, ofrep_addr)
    }

    /// Like [`TestDaemon::launch`], letting `listeners` add listeners for the other ports.
    pub async fn launch_with(
        files: &[(&str, &str)],
        configure: impl FnOnce(&mut Settings),
        listeners: impl FnOnce(&mut Listeners),
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
        let mut bound = Listeners {
            evaluation,
            management: None,
            sync: None,
            ofrep: None,
        };
        listeners(&mut bound);
        let (shutdown, signal) = oneshot::channel::<()>();
        let handle = tokio::spawn(daemon::run(settings, bound, async {
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
}

/// Plain HTTP/1.1 requests (Connect, gRPC-Web, OFREP).
pub mod http1 {
    use std::net::SocketAddr;

    use bytes::{Buf, Bytes, BytesMut};
    use http::{HeaderMap, Method, Request, StatusCode};
    use http_body_util::{BodyExt, Full};
    use hyper::body::Incoming;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    /// A complete response.
    #[derive(Debug)]
    pub struct Reply {
        /// The status.
        pub status: StatusCode,
        /// The headers.
        pub headers: HeaderMap,
        /// The whole body.
        pub body: Bytes,
        /// HTTP trailers, if any.
        pub trailers: Option<HeaderMap>,
    }

    impl Reply {
        /// The body as JSON.
        pub fn json(&self) -> serde_json::Value {
            serde_json::from_slice(&self.body).unwrap_or_else(|e| {
                panic!(
                    "body is not JSON ({e}): {:?}",
                    String::from_utf8_lossy(&self.body)
                )
            })
        }

        /// A header as text.
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .get(name)
                .map(|v| v.to_str().expect("ASCII header"))
        }
    }

    fn client() -> Client<HttpConnector, Full<Bytes>> {
        Client::builder(TokioExecutor::new()).build_http()
    }

    /// Sends `method path` to `addr` with `headers` and `body`; returns the response head
    /// and the unread body.
    pub async fn open(
        addr: SocketAddr,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> http::Response<Incoming> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(body.into())).expect("request");
        client().request(request).await.expect("HTTP request")
    }

    /// Sends a request and reads the whole response.
    pub async fn send(
        addr: SocketAddr,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        let response = open(addr, method, path, headers, body).await;
        let (parts, body) = response.into_parts();
        let collected = body.collect().await.expect("read body");
        let trailers = collected.trailers().cloned();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: collected.to_bytes(),
            trailers,
        }
    }

    /// `POST` with `headers` and `body`.
    pub async fn post(
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        send(addr, Method::POST, path, headers, body).await
    }

    /// Reads length-prefixed frames (1 flags byte, 4-byte big-endian length) off a body, as
    /// Connect streaming and gRPC-Web use them.
    pub struct Frames {
        body: Incoming,
        buffer: BytesMut,
    }

    impl Frames {
        /// Frames of `body`.
        pub fn new(body: Incoming) -> Frames {
            Frames {
                body,
                buffer: BytesMut::new(),
            }
        }

        /// The next frame's flags and payload; `None` at the end of the body.
        pub async fn next(&mut self) -> Option<(u8, Bytes)> {
            loop {
                if self.buffer.len() >= 5 {
                    let len = u32::from_be_bytes(self.buffer[1..5].try_into().unwrap()) as usize;
                    if self.buffer.len() >= 5 + len {
                        let flags = self.buffer[0];
                        self.buffer.advance(5);
                        return Some((flags, self.buffer.split_to(len).freeze()));
                    }
                }
                match self.body.frame().await? {
                    Ok(frame) => {
                        if let Ok(data) = frame.into_data() {
                            self.buffer.extend_from_slice(&data);
                        }
                    }
                    Err(e) => panic!("body error: {e}"),
                }
            }
        }
    }

    /// Frames a message the Connect / gRPC-Web way.
    pub fn frame(flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![flags];
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }
}
