//! `--socket-path` / `--sync-socket-path`: the evaluation and sync services on unix sockets
//! instead of TCP, driven by real clients over the sockets (the real binary, SIGTERM).
#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flagpole::service::proto::evaluation_v1 as v1;
use flagpole::service::proto::sync_v1::flag_sync_service_client::FlagSyncServiceClient;
use flagpole::service::proto::sync_v1::FetchAllFlagsRequest;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};

const FLAGS: &str = r#"{"flags": {
  "bool-flag": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}
}}"#;

/// A gRPC channel over the unix socket at `path`.
async fn channel(path: &Path) -> Result<Channel, tonic::transport::Error> {
    let path = path.to_owned();
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move { UnixStream::connect(path).await.map(TokioIo::new) }
        }))
        .await
}

struct Daemon {
    child: Child,
    socket: PathBuf,
    sync_socket: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary with both sockets in `dir`, every TCP port ephemeral, and `extra` arguments.
fn start(dir: &Path, extra: &[&str]) -> Daemon {
    let flags = dir.join("flags.json");
    std::fs::write(&flags, FLAGS).unwrap();
    let socket = dir.join("flagd.sock");
    let sync_socket = dir.join("sync.sock");
    let child = Command::new(env!("CARGO_BIN_EXE_flagpole"))
        .arg("start")
        .arg("--uri")
        .arg(format!("file:{}", flags.display()))
        .args(["-m", "0", "-r", "0", "-p", "0", "-g", "0"])
        .arg("--socket-path")
        .arg(&socket)
        .arg("-e")
        .arg(&sync_socket)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start flagpole");
    Daemon {
        child,
        socket,
        sync_socket,
    }
}

async fn eventually_connect(path: &Path) -> Channel {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(channel) = channel(path).await {
            return channel;
        }
        assert!(Instant::now() < deadline, "{} never served", path.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn evaluation_connect_and_sync_over_unix_sockets() {
    let dir = tempfile::tempdir().unwrap();
    // A stale socket from an earlier run is replaced.
    drop(std::os::unix::net::UnixListener::bind(dir.path().join("flagd.sock")).unwrap());
    let mut daemon = start(dir.path(), &[]);

    let mut client =
        v1::service_client::ServiceClient::new(eventually_connect(&daemon.socket).await);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let request = v1::ResolveBooleanRequest {
            flag_key: "bool-flag".into(),
            context: None,
        };
        match client.resolve_boolean(request).await {
            Ok(reply) => {
                assert!(reply.into_inner().value);
                break;
            }
            Err(status) => assert!(Instant::now() < deadline, "never resolved: {status:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Connect (HTTP/1.1) over the same socket.
    let stream = UnixStream::connect(&daemon.socket).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = http::Request::post("/flagd.evaluation.v1.Service/ResolveBoolean")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(br#"{"flagKey":"bool-flag"}"#)))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains(r#""value":true"#));

    let sync = eventually_connect(&daemon.sync_socket).await;
    let reply = FlagSyncServiceClient::new(sync)
        .fetch_all_flags(FetchAllFlagsRequest::default())
        .await
        .expect("fetch over the sync socket");
    assert!(reply.into_inner().flag_configuration.contains("bool-flag"));

    // SIGTERM: the daemon stops and removes its sockets.
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(daemon.child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while daemon.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "flagpole did not stop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!daemon.socket.exists(), "evaluation socket left behind");
    assert!(!daemon.sync_socket.exists(), "sync socket left behind");
}

#[test]
fn a_socket_path_that_is_a_regular_file_is_a_start_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, "keep me").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_flagpole"))
        .args(["start", "-m", "0", "-r", "0", "-g", "0", "-d"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not-a-socket"), "{stderr}");
}

/// Local peers are not trusted more than remote ones: on both sockets a connection that sends
/// nothing, or only the HTTP/2 preface, is closed at `--header-read-timeout`.
#[tokio::test]
async fn silent_and_preface_only_connections_on_the_sockets_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(dir.path(), &["--header-read-timeout", "1s"]);
    eventually_connect(&daemon.socket).await;
    eventually_connect(&daemon.sync_socket).await;
    for path in [&daemon.socket, &daemon.sync_socket] {
        let silent = UnixStream::connect(path).await.unwrap();
        let mut preface = UnixStream::connect(path).await.unwrap();
        preface
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        for (what, mut conn) in [("silent", silent), ("preface-only", preface)] {
            // A hang guard, not a timing assertion: the deadline is 1 s.
            let closed = tokio::time::timeout(Duration::from_secs(20), async {
                let mut buf = [0u8; 256];
                while let Ok(n) = conn.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                }
            })
            .await
            .is_ok();
            assert!(
                closed,
                "a {what} connection on {} stayed open",
                path.display()
            );
        }
    }
}
