//! The process lifecycle as a container orchestrator sees it: the real binary as a child
//! process, stopped with SIGTERM while clients hold an EventStream and send requests.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flagpole::service::proto::evaluation_v2 as v2;
use tokio_stream::StreamExt as _;
use tonic::transport::Channel;

const FLAGS: &str = r#"{"flags": {"on": {"state": "ENABLED", "variants": {"yes": true, "no": false}, "defaultVariant": "yes"}}}"#;

/// The daemon as a child process with its four ports.
struct Daemon {
    child: Child,
    port: u16,
    management_port: u16,
}

impl Daemon {
    fn start(flag_file: &Path, extra: &[&str]) -> Daemon {
        let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
        let child = Command::new(env!("CARGO_BIN_EXE_flagpole"))
            .arg("start")
            .arg("--uri")
            .arg(format!("file:{}", flag_file.display()))
            .args(["-p", &ports[0].to_string()])
            .args(["-m", &ports[1].to_string()])
            .args(["-g", &ports[2].to_string()])
            .args(["-r", &ports[3].to_string()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start flagpole");
        Daemon {
            child,
            port: ports[0],
            management_port: ports[1],
        }
    }

    fn readyz(&self) -> Option<u16> {
        http_status(self.management_port, "/readyz")
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.readyz() != Some(200) {
            assert!(Instant::now() < deadline, "daemon never became ready");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for flagpole") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "flagpole did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    async fn client(&self) -> v2::service_client::ServiceClient<Channel> {
        v2::service_client::ServiceClient::connect(format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("connect")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The HTTP status of `GET path`, or `None` when nothing answers.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split(' ').nth(1)?.parse().ok()
}

fn resolve_request() -> v2::ResolveBooleanRequest {
    v2::ResolveBooleanRequest {
        flag_key: "on".into(),
        context: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_unready_keeps_serving_then_drains_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let flags = dir.path().join("flags.json");
    std::fs::write(&flags, FLAGS).unwrap();
    let drain_delay = Duration::from_millis(1500);
    let mut daemon = Daemon::start(
        &flags,
        &["--drain-delay", "1500ms", "--shutdown-grace", "5s"],
    );
    daemon.wait_ready();

    let mut events = daemon
        .client()
        .await
        .event_stream(v2::EventStreamRequest {})
        .await
        .expect("open EventStream")
        .into_inner();
    let first = events.next().await.unwrap().unwrap();
    assert_eq!(first.r#type, "provider_ready");

    // A client sending requests throughout, on its own connection.
    let stop = Arc::new(AtomicBool::new(false));
    let mut requester = daemon.client().await;
    let requests = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut results = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let ok = requester.resolve_boolean(resolve_request()).await.is_ok();
                results.push((started, ok));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            results
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;

    let sigterm = Instant::now();
    daemon.signal("TERM");

    // Readiness flips at once, while the evaluation port still answers.
    let unready = tokio::task::spawn_blocking({
        let port = daemon.management_port;
        move || {
            let deadline = Instant::now() + Duration::from_secs(1);
            loop {
                let status = http_status(port, "/readyz");
                if status != Some(200) {
                    return (status, Instant::now());
                }
                assert!(
                    Instant::now() < deadline,
                    "/readyz stayed 200 after SIGTERM"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(unready.0, Some(412), "/readyz answers 412 while draining");
    let fresh = daemon
        .client()
        .await
        .resolve_boolean(resolve_request())
        .await;
    assert!(
        fresh.is_ok(),
        "a new connection is still served while not ready: {fresh:?}"
    );

    // The stream hears provider_shutdown when draining starts, then ends cleanly.
    let shutdown = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("provider_shutdown within the drain delay plus grace")
        .expect("stream still open")
        .expect("no error before provider_shutdown");
    let shutdown_at = Instant::now();
    assert_eq!(shutdown.r#type, "provider_shutdown");
    assert!(
        shutdown_at - sigterm >= drain_delay - Duration::from_millis(100),
        "streams are told to go only after the drain delay"
    );
    let end = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("stream ends after provider_shutdown");
    assert!(
        matches!(end, None | Some(Ok(_))),
        "stream ends without an error: {end:?}"
    );

    stop.store(true, Ordering::Relaxed);
    let results = requests.await.unwrap();
    // Every request started before draining began was answered.
    let before_drain: Vec<_> = results
        .iter()
        .filter(|(started, _)| *started < sigterm + drain_delay - Duration::from_millis(200))
        .collect();
    let during_delay = before_drain
        .iter()
        .filter(|(started, _)| *started > sigterm)
        .count();
    assert!(
        during_delay >= 10,
        "requests kept flowing during the drain delay (saw {during_delay})"
    );
    assert!(
        before_drain.iter().all(|(_, ok)| *ok),
        "no request failed before draining began"
    );

    let status = tokio::task::spawn_blocking(move || {
        let status = daemon.wait_exit(Duration::from_secs(10));
        (status, daemon)
    })
    .await
    .unwrap()
    .0;
    assert_eq!(status.code(), Some(0), "clean exit after draining");
    assert!(
        sigterm.elapsed() < drain_delay + Duration::from_secs(5) + Duration::from_secs(2),
        "exited within the drain delay plus the grace period"
    );
}

#[test]
fn a_second_signal_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let flags = dir.path().join("flags.json");
    std::fs::write(&flags, FLAGS).unwrap();
    let mut daemon = Daemon::start(&flags, &["--drain-delay", "60s"]);
    daemon.wait_ready();

    daemon.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(2);
    while daemon.readyz() == Some(200) {
        assert!(Instant::now() < deadline, "never started draining");
        std::thread::sleep(Duration::from_millis(10));
    }
    daemon.signal("INT");
    let status = daemon.wait_exit(Duration::from_secs(5));
    assert_eq!(
        status.code(),
        Some(130),
        "the second signal ends the process"
    );
}
