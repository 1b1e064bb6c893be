//! The `grpc` provider, flagpole syncing from flagpole over loopback: one upstream daemon
//! reading a flag file and serving `flagd.sync.v1` on its sync port, three downstream daemons
//! whose only source is `grpc://<upstream sync port>`. A change at the top reaches every
//! downstream (the propagation time is printed, not asserted); with the upstream stopped the
//! downstreams keep serving, and once it is back on the same port they reconnect and catch up.
//! `grpcs://`: the upstream serves its sync port over TLS with a test certificate, the
//! downstream trusts the test CA through `certPath`; a certificate from another CA is refused
//! with a clear error while the last good snapshot stays.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flagpole::config::Settings;
use flagpole::daemon::{self, DaemonError, Listeners};
use flagpole::service::proto::evaluation_v1 as v1;
use flagpole::store::{Selector, Store};
use flagpole::sync::{parse_sources_json, parse_uri, Supervisor};
use support::tls::TestPki;
use support::{eventually, file_source, replace_by_rename, TestDaemon};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const DOWNSTREAMS: usize = 3;

fn document(default: &str) -> String {
    format!(
        r#"{{"flags":{{"f":{{"state":"ENABLED","variants":{{"a":"A","b":"B","c":"C"}},"defaultVariant":"{default}"}}}}}}"#
    )
}

/// The upstream daemon: `file` as its source, its sync port bound to `sync` (port 0: any).
struct Upstream {
    sync: SocketAddr,
    shutdown: oneshot::Sender<()>,
    handle: JoinHandle<Result<(), DaemonError>>,
}

impl Upstream {
    async fn start(file: &Path, sync: SocketAddr) -> Upstream {
        Upstream::start_tls(file, sync, None).await
    }

    /// Like [`Upstream::start`], serving TLS with the server certificate of `pki` if given.
    async fn start_tls(file: &Path, sync: SocketAddr, pki: Option<&TestPki>) -> Upstream {
        let settings = Settings {
            sources: vec![file_source(file)],
            server_cert_path: pki.map(TestPki::cert),
            server_key_path: pki.map(TestPki::key),
            ..Settings::default()
        };
        let sync = TcpListener::bind(sync).await.expect("bind the sync port");
        let addr = sync.local_addr().unwrap();
        let evaluation = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let listeners = Listeners {
            evaluation: evaluation.into(),
            management: None,
            sync: Some(sync.into()),
            ofrep: None,
        };
        let (shutdown, signal) = oneshot::channel::<()>();
        let handle = tokio::spawn(daemon::run(settings, listeners, async {
            let _ = signal.await;
        }));
        Upstream {
            sync: addr,
            shutdown,
            handle,
        }
    }

    async fn stop(self) {
        let _ = self.shutdown.send(());
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .expect("upstream stops")
            .expect("upstream task")
            .expect("upstream ran");
    }
}

/// A downstream daemon whose one source is the upstream's sync port.
async fn downstream(upstream: SocketAddr, index: usize) -> TestDaemon {
    TestDaemon::with_files(&[])
        .management()
        .start(|settings: &mut Settings, _| {
            let sources = format!(
                r#"[{{"uri":"grpc://{upstream}","provider":"grpc","providerID":"edge-{index}"}}]"#
            );
            settings.sources = parse_sources_json(&sources).unwrap();
        })
        .await
}

/// The value of flag `f` as `daemon` resolves it over gRPC (`None` when it cannot).
async fn value(daemon: &TestDaemon) -> Option<String> {
    let mut client = v1::service_client::ServiceClient::new(daemon.channel().await);
    let request = v1::ResolveStringRequest {
        flag_key: "f".into(),
        context: None,
    };
    client
        .resolve_string(request)
        .await
        .ok()
        .map(|r| r.into_inner().value)
}

/// `flagpole_source_errors_total` of the downstream's one source, from `/metrics`.
async fn source_errors(daemon: &TestDaemon) -> u64 {
    let (_, body) = support::http1::call(daemon.management(), "GET", "/metrics")
        .await
        .unwrap_or_default();
    body.lines()
        .filter(|l| l.starts_with("flagpole_source_errors_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Waits until every daemon serves `expected`; returns when each one first did, after `since`.
async fn reached(daemons: &[TestDaemon], expected: &str, since: Instant) -> Vec<Duration> {
    let deadline = Instant::now() + support::PATIENCE;
    let mut times = vec![None; daemons.len()];
    while times.iter().any(Option::is_none) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for `{expected}` everywhere: {times:?}"
        );
        for (i, daemon) in daemons.iter().enumerate() {
            if times[i].is_none() && value(daemon).await.as_deref() == Some(expected) {
                times[i] = Some(since.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    times.into_iter().map(Option::unwrap).collect()
}

fn flag_file(dir: &Path) -> PathBuf {
    let path = dir.join("flags.json");
    std::fs::write(&path, document("a")).unwrap();
    path
}

#[test]
fn grpc_uris_and_sources_parse_as_flagd_has_them() {
    let plain = parse_uri("grpc://localhost:8015").unwrap();
    assert_eq!(
        (plain.uri.as_str(), plain.remote.tls),
        ("localhost:8015", false)
    );
    let tls = parse_uri("grpcs://flags.internal:8015").unwrap();
    assert_eq!(
        (tls.uri.as_str(), tls.remote.tls),
        ("flags.internal:8015", true)
    );
    let sources = parse_sources_json(
        r#"[{"uri":"my-flag-source:8080","provider":"grpc","certPath":"/certs/ca.cert","tls":true,
             "providerID":"flagd-weatherapp-sidecar","selector":"source=database,app=weatherapp"}]"#,
    )
    .unwrap();
    let remote = &sources[0].remote;
    assert!(remote.tls);
    assert_eq!(
        remote.provider_id.as_deref(),
        Some("flagd-weatherapp-sidecar")
    );
    assert_eq!(
        remote.selector.as_deref(),
        Some("source=database,app=weatherapp")
    );
    assert_eq!(
        remote.cert_path.as_deref(),
        Some(Path::new("/certs/ca.cert"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_at_the_top_reaches_every_downstream_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let file = flag_file(dir.path());
    let upstream = Upstream::start(&file, "127.0.0.1:0".parse().unwrap()).await;
    let mut downstreams = Vec::new();
    for i in 0..DOWNSTREAMS {
        downstreams.push(downstream(upstream.sync, i).await);
    }
    reached(&downstreams, "A", Instant::now()).await;

    let since = Instant::now();
    replace_by_rename(&file, &document("b"));
    let times = reached(&downstreams, "B", since).await;
    let slowest = times.iter().max().unwrap();
    println!(
        "propagation file -> upstream -> {DOWNSTREAMS} downstream daemons: {:?} (slowest {:?})",
        times, slowest
    );

    for daemon in downstreams {
        daemon.stop().await.unwrap();
    }
    upstream.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn downstreams_keep_serving_while_the_upstream_is_down_and_catch_up_after() {
    let dir = tempfile::tempdir().unwrap();
    let file = flag_file(dir.path());
    let upstream = Upstream::start(&file, "127.0.0.1:0".parse().unwrap()).await;
    let sync = upstream.sync;
    let mut downstreams = Vec::new();
    for i in 0..2 {
        downstreams.push(downstream(sync, i).await);
    }
    reached(&downstreams, "A", Instant::now()).await;

    upstream.stop().await;
    // Every downstream notices (its stream ended) and still answers from the last snapshot.
    for daemon in &downstreams {
        eventually("the downstream counted the lost stream", || async {
            source_errors(daemon).await > 0
        })
        .await;
        // Readiness latched at the first snapshot and stays.
        let (status, _) = support::http1::call(daemon.management(), "GET", "/readyz")
            .await
            .unwrap();
        assert_eq!(status, 200);
        assert_eq!(value(daemon).await.as_deref(), Some("A"));
    }
    replace_by_rename(&file, &document("c"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    for daemon in &downstreams {
        assert_eq!(
            value(daemon).await.as_deref(),
            Some("A"),
            "no upstream, no change"
        );
    }

    let upstream = Upstream::start(&file, sync).await;
    let since = Instant::now();
    let times = reached(&downstreams, "C", since).await;
    println!("reconnect after the upstream restarted: {times:?}");

    for daemon in downstreams {
        daemon.stop().await.unwrap();
    }
    upstream.stop().await;
}

/// The upstream's sync port over TLS trusting `ca`, as flagd documents it (`tls`, `certPath`).
fn grpcs_sources(upstream: SocketAddr, ca: &Path) -> String {
    format!(
        r#"[{{"uri":"127.0.0.1:{}","provider":"grpc","tls":true,"certPath":"{}"}}]"#,
        upstream.port(),
        ca.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grpcs_with_the_ca_from_cert_path_serves_the_upstreams_flags() {
    let pki = TestPki::generate();
    let dir = tempfile::tempdir().unwrap();
    let file = flag_file(dir.path());
    let upstream = Upstream::start_tls(&file, "127.0.0.1:0".parse().unwrap(), Some(&pki)).await;
    let sources = grpcs_sources(upstream.sync, &pki.ca());
    let downstream = TestDaemon::with_files(&[])
        .start(|settings: &mut Settings, _| {
            settings.sources = parse_sources_json(&sources).unwrap();
        })
        .await;
    assert_eq!(value(&downstream).await.as_deref(), Some("A"));
    replace_by_rename(&file, &document("b"));
    reached(std::slice::from_ref(&downstream), "B", Instant::now()).await;
    downstream.stop().await.unwrap();
    upstream.stop().await;
}

fn default_variant(store: &Store) -> Option<String> {
    store
        .snapshot()
        .get("f", &Selector::All)
        .and_then(|f| f.flag.default_variant.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grpcs_refuses_a_certificate_from_another_ca_and_keeps_the_last_good_snapshot() {
    let pki = TestPki::generate();
    let dir = tempfile::tempdir().unwrap();
    let file = flag_file(dir.path());
    let upstream = Upstream::start_tls(&file, "127.0.0.1:0".parse().unwrap(), Some(&pki)).await;
    let sync = upstream.sync;
    let config = parse_sources_json(&grpcs_sources(sync, &pki.ca()))
        .unwrap()
        .remove(0);
    let store = Arc::new(Store::new());
    let supervisor = Supervisor::start(&[config], store.clone()).unwrap();
    let (store_ref, supervisor_ref) = (&store, &supervisor);
    eventually("the first snapshot over TLS", || async move {
        default_variant(store_ref).as_deref() == Some("a")
    })
    .await;

    // The upstream comes back on the same port with a certificate of an unrelated CA.
    upstream.stop().await;
    let other = TestPki::generate();
    replace_by_rename(&file, &document("b"));
    let upstream = Upstream::start_tls(&file, sync, Some(&other)).await;
    eventually("a refused handshake", || async move {
        let stats = supervisor_ref.stats().remove(0);
        stats
            .last_error
            .is_some_and(|e| e.to_lowercase().contains("certificate"))
    })
    .await;
    let stats = supervisor.stats().remove(0);
    println!("refused: {:?}", stats.last_error);
    assert_eq!(
        default_variant(&store).as_deref(),
        Some("a"),
        "last good kept"
    );
    assert_eq!(stats.applied, 1, "{stats:?}");
    supervisor.shutdown().await;
    upstream.stop().await;
}
