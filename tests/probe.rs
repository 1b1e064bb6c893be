//! `flagpole healthcheck` and `flagpole ready`: against a stand-in management port (a raw TCP
//! server that answers each path with a fixed status) for the edge cases, and against the
//! real daemon's management port through its lifecycle (not ready, ready, draining).

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::process::{Command, Output};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use support::{eventually, file_source, replace_by_rename, TestDaemon};

/// A stand-in for the management port: answers `path -> status`, 404 for any other path,
/// and reports each request line it received.
struct StandIn {
    port: u16,
    requests: mpsc::Receiver<String>,
}

impl StandIn {
    fn start(routes: &[(&str, u16)]) -> StandIn {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let port = listener.local_addr().unwrap().port();
        let routes: HashMap<String, u16> =
            routes.iter().map(|(p, s)| (p.to_string(), *s)).collect();
        let (sender, requests) = mpsc::channel();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                // Drain the headers so the client never sees a reset.
                let mut header = String::new();
                while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                    header.clear();
                }
                let path = request_line.split(' ').nth(1).unwrap_or_default();
                let status = routes.get(path).copied().unwrap_or(404);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                );
                let _ = sender.send(request_line.trim_end().to_owned());
            }
        });
        StandIn { port, requests }
    }
}

fn flagpole(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flagpole"));
    command
        .args(args)
        .env_remove("FLAGD_MANAGEMENT_PORT")
        .env_remove("FLAGD_CONFIG");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run flagpole")
}

/// A port on which nothing listens: bound, then released.
fn closed_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn healthcheck_exits_0_when_healthz_answers_200() {
    let server = StandIn::start(&[("/healthz", 200), ("/readyz", 503)]);
    let port = server.port.to_string();
    let out = flagpole(&["healthcheck", "--port", &port], &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(server.requests.recv().unwrap(), "GET /healthz HTTP/1.1");
}

#[test]
fn ready_exits_1_when_readyz_answers_503() {
    let server = StandIn::start(&[("/healthz", 200), ("/readyz", 503)]);
    let port = server.port.to_string();
    let out = flagpole(&["ready", "-m", &port], &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(server.requests.recv().unwrap(), "GET /readyz HTTP/1.1");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/readyz: 503"), "{stderr}");
}

#[test]
fn ready_exits_0_once_readyz_answers_200() {
    let server = StandIn::start(&[("/readyz", 200)]);
    let out = flagpole(&["ready", "--port", &server.port.to_string()], &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[test]
fn healthcheck_exits_1_on_other_statuses() {
    let server = StandIn::start(&[("/healthz", 500)]);
    let out = flagpole(&["healthcheck", "--port", &server.port.to_string()], &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

#[test]
fn healthcheck_exits_1_when_nothing_listens() {
    let port = closed_port().to_string();
    for subcommand in ["healthcheck", "ready"] {
        let out = flagpole(&[subcommand, "--port", &port, "--timeout", "1s"], &[]);
        assert_eq!(out.status.code(), Some(1), "{subcommand}: {out:?}");
    }
}

#[test]
fn healthcheck_exits_1_when_the_port_never_answers() {
    // Accepts the connection (the kernel backlog does) but never writes a byte.
    let silent = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = silent.local_addr().unwrap().port().to_string();
    let out = flagpole(&["healthcheck", "--port", &port, "--timeout", "300ms"], &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no answer within"), "{stderr}");
    drop(silent);
}

#[test]
fn port_comes_from_the_environment() {
    let server = StandIn::start(&[("/healthz", 200)]);
    let port = server.port.to_string();
    let out = flagpole(&["healthcheck"], &[("FLAGD_MANAGEMENT_PORT", &port)]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[test]
fn port_comes_from_a_local_config_file() {
    let server = StandIn::start(&[("/readyz", 200)]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("flagpole.yaml");
    std::fs::write(&config, format!("management-port: {}\n", server.port)).unwrap();
    let out = flagpole(&["ready", "--config", config.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[test]
fn a_zero_timeout_is_rejected() {
    let out = flagpole(&["healthcheck", "--timeout", "0"], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("positive duration"));
}

const FLAGS: &str = r#"{"flags":{"on-flag":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"on"}}}"#;

/// Runs a probe subcommand against `port` off the async runtime; returns its exit code.
async fn probe_exit_code(subcommand: &'static str, port: u16) -> Option<i32> {
    tokio::task::spawn_blocking(move || {
        flagpole(&[subcommand, "--port", &port.to_string()], &[])
            .status
            .code()
    })
    .await
    .expect("probe process")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_daemon_is_alive_but_not_ready_until_flags_load() {
    let daemon = TestDaemon::full(&[])
        .launch(|settings, dir| {
            settings.sources = vec![file_source(&dir.join("later.json"))];
        })
        .await;
    let port = daemon.management().port();
    assert_eq!(probe_exit_code("healthcheck", port).await, Some(0));
    assert_eq!(probe_exit_code("ready", port).await, Some(1));

    replace_by_rename(&daemon.dir.path().join("later.json"), FLAGS);
    eventually("flagpole ready exits 0", || async {
        probe_exit_code("ready", port).await == Some(0)
    })
    .await;
    assert_eq!(probe_exit_code("healthcheck", port).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_daemon_is_not_ready_while_draining_but_still_alive() {
    let mut daemon = TestDaemon::full(&[("flags.json", FLAGS)])
        .start(|settings, _| {
            // Keeps every listener open after shutdown begins.
            settings.drain_delay = Duration::from_secs(120);
        })
        .await;
    let port = daemon.management().port();
    assert_eq!(probe_exit_code("ready", port).await, Some(0));
    daemon.begin_shutdown();
    eventually("flagpole ready exits 1", || async {
        probe_exit_code("ready", port).await == Some(1)
    })
    .await;
    assert_eq!(probe_exit_code("healthcheck", port).await, Some(0));
}
