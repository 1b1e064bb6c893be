//! TLS on the evaluation (8013), sync (8015) and OFREP (8016) ports: the real daemon
//! in-process on ephemeral loopback ports with a certificate made at test time; real TLS
//! clients (tonic over rustls, hyper over rustls) and plaintext clients that must fail.

mod support;

use std::time::Duration;

use flagpole::config::Settings;
use flagpole::daemon::{self, DaemonError, Listeners};
use flagpole::service::proto::evaluation_v1 as v1;
use flagpole::service::proto::sync_v1::flag_sync_service_client::FlagSyncServiceClient;
use flagpole::service::proto::sync_v1::FetchAllFlagsRequest;
use support::tls::{self, TestPki};
use support::{eventually, TestDaemon};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::StreamExt as _;

const FLAGS: &str = r#"{"flags": {
  "bool-flag": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}
}}"#;

async fn tls_daemon(pki: &TestPki) -> TestDaemon {
    let (cert, key) = (pki.cert(), pki.key());
    TestDaemon::full(&[("flags.json", FLAGS)])
        .ofrep()
        .start(move |settings, _| {
            settings.server_cert_path = Some(cert);
            settings.server_key_path = Some(key);
        })
        .await
}

fn bool_request() -> v1::ResolveBooleanRequest {
    v1::ResolveBooleanRequest {
        flag_key: "bool-flag".into(),
        context: None,
    }
}

#[tokio::test]
async fn grpc_over_tls_with_the_ca_resolves() {
    let pki = TestPki::generate();
    let daemon = tls_daemon(&pki).await;
    let channel = tls::grpc_channel(daemon.evaluation, &pki.ca())
        .await
        .expect("TLS channel");
    let mut client = v1::service_client::ServiceClient::new(channel);
    let reply = client
        .resolve_boolean(bool_request())
        .await
        .expect("resolve");
    assert!(reply.into_inner().value);
    // Server streaming works over TLS too (the provider's EventStream).
    let mut events = client
        .event_stream(v1::EventStreamRequest {})
        .await
        .expect("event stream")
        .into_inner();
    let first = events.next().await.expect("an event").expect("ok");
    assert_eq!(first.r#type, "provider_ready");
}

#[tokio::test]
async fn connect_over_http1_tls_resolves() {
    let pki = TestPki::generate();
    let daemon = tls_daemon(&pki).await;
    let (status, body) = tls::post(
        daemon.evaluation,
        &pki.ca(),
        "/flagd.evaluation.v1.Service/ResolveBoolean",
        "application/json",
        r#"{"flagKey":"bool-flag"}"#,
    )
    .await
    .expect("Connect over TLS");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""value":true"#), "{body}");
}

#[tokio::test]
async fn ofrep_over_tls_resolves() {
    let pki = TestPki::generate();
    let daemon = tls_daemon(&pki).await;
    let (status, body) = tls::post(
        daemon.ofrep(),
        &pki.ca(),
        "/ofrep/v1/evaluate/flags/bool-flag",
        "application/json",
        "{}",
    )
    .await
    .expect("OFREP over TLS");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""value":true"#), "{body}");
}

#[tokio::test]
async fn sync_over_tls_fetches_flags() {
    let pki = TestPki::generate();
    let daemon = tls_daemon(&pki).await;
    let channel = tls::grpc_channel(daemon.sync(), &pki.ca())
        .await
        .expect("TLS channel");
    let reply = FlagSyncServiceClient::new(channel)
        .fetch_all_flags(FetchAllFlagsRequest::default())
        .await
        .expect("fetch");
    assert!(reply.into_inner().flag_configuration.contains("bool-flag"));
}

#[tokio::test]
async fn plaintext_clients_fail_against_tls_ports() {
    let pki = TestPki::generate();
    let daemon = tls_daemon(&pki).await;
    // gRPC without TLS (h2c prior knowledge) on 8013 and 8015.
    for addr in [daemon.evaluation, daemon.sync()] {
        let result = async {
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(5))
                .connect()
                .await
                .map_err(|e| e.to_string())?;
            v1::service_client::ServiceClient::new(channel)
                .resolve_boolean(bool_request())
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        assert!(
            result.is_err(),
            "plaintext gRPC on {addr} answered: {result:?}"
        );
    }
    // HTTP/1.1 without TLS on 8013 (Connect) and 8016 (OFREP): no HTTP answer.
    for (addr, path) in [
        (
            daemon.evaluation,
            "/flagd.evaluation.v1.Service/ResolveBoolean",
        ),
        (daemon.ofrep(), "/ofrep/v1/evaluate/flags/bool-flag"),
    ] {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let request = format!(
            "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{{}}"
        );
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut answer = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut answer)).await;
        assert!(
            !answer.starts_with(b"HTTP/"),
            "plaintext HTTP on {addr} answered: {:?}",
            String::from_utf8_lossy(&answer)
        );
    }
}

#[tokio::test]
async fn a_client_not_trusting_the_ca_is_refused() {
    let pki = TestPki::generate();
    let other = TestPki::generate();
    let daemon = tls_daemon(&pki).await;
    let result = tls::connect(daemon.evaluation, &other.ca(), &[b"h2"]).await;
    assert!(result.is_err(), "handshake with an unknown CA succeeded");
}

/// Runs the daemon with `configure` applied; it must refuse to start.
async fn start_error(configure: impl FnOnce(&mut Settings)) -> String {
    let mut settings = Settings::default();
    configure(&mut settings);
    let bind = || async { TcpListener::bind("127.0.0.1:0").await.unwrap() };
    let listeners = Listeners {
        evaluation: bind().await.into(),
        management: Some(bind().await),
        sync: Some(bind().await.into()),
        ofrep: Some(bind().await.into()),
    };
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        daemon::run(settings, listeners, std::future::pending()),
    )
    .await
    .expect("the daemon must stop at once, not serve");
    match result {
        Err(error @ DaemonError::Tls(_)) => error.to_string(),
        other => panic!("expected a TLS start-up error, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_certificates_stop_the_start() {
    let pki = TestPki::generate();
    let missing = pki.dir.path().join("missing.pem");
    let message = start_error(|s| {
        s.server_cert_path = Some(missing.clone());
        s.server_key_path = Some(pki.key());
    })
    .await;
    assert!(message.contains("missing.pem"), "{message}");
    let message = start_error(|s| {
        s.server_cert_path = Some(pki.cert());
        s.server_key_path = Some(pki.other_key());
    })
    .await;
    assert!(message.contains("does not match"), "{message}");
    let message = start_error(|s| s.server_cert_path = Some(pki.cert())).await;
    assert!(message.contains("--server-key-path"), "{message}");
    let message = start_error(|s| {
        s.server_cert_path = Some(pki.key());
        s.server_key_path = Some(pki.key());
    })
    .await;
    assert!(message.contains("no CERTIFICATE"), "{message}");
}

#[test]
fn the_binary_exits_non_zero_on_a_bad_certificate() {
    let pki = TestPki::generate();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_flagpole"))
        .args([
            "start",
            "--port",
            "0",
            "--management-port",
            "0",
            "--sync-port",
            "0",
        ])
        .args(["--ofrep-port", "0", "-c"])
        .arg(pki.cert())
        .arg("-k")
        .arg(pki.other_key())
        .output()
        .expect("run flagpole");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("does not match"), "{stderr}");
}

#[tokio::test]
async fn a_replaced_certificate_serves_new_handshakes_and_open_streams_stay() {
    let pki = TestPki::generate();
    let daemon = tls_daemon(&pki).await;
    let channel = tls::grpc_channel(daemon.evaluation, &pki.ca())
        .await
        .expect("TLS channel");
    let mut client = v1::service_client::ServiceClient::new(channel);
    let mut events = client
        .event_stream(v1::EventStreamRequest {})
        .await
        .expect("event stream")
        .into_inner();
    events.next().await.expect("ready").expect("ok");

    // A new CA and certificate written over the same paths.
    TestPki::generate_into(pki.dir.path());
    eventually("new handshakes trust only the new CA", || async {
        tls::connect(daemon.evaluation, &pki.ca(), &[b"h2"])
            .await
            .is_ok()
    })
    .await;
    // The stream opened before the reload still delivers: change the flags.
    support::replace_by_rename(&daemon.files[0], &FLAGS.replace("\"on\"}", "\"off\"}"));
    let changed = tokio::time::timeout(support::PATIENCE, events.next())
        .await
        .expect("an event on the old stream")
        .expect("stream open")
        .expect("ok");
    assert_eq!(changed.r#type, "configuration_change");
    // And the old connection still answers unary calls.
    let reply = client
        .resolve_boolean(bool_request())
        .await
        .expect("resolve");
    assert!(!reply.into_inner().value);
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate_from_the_ca() {
    let pki = TestPki::generate();
    let stranger = TestPki::generate();
    let (cert, key, ca) = (pki.cert(), pki.key(), pki.ca());
    let daemon = TestDaemon::full(&[("flags.json", FLAGS)])
        .start(move |settings, _| {
            settings.server_cert_path = Some(cert);
            settings.server_key_path = Some(key);
            settings.client_ca_path = Some(ca);
        })
        .await;
    let addr = daemon.evaluation;
    let resolve = |identity| resolve_with(addr, pki.ca(), identity);
    assert_eq!(resolve(Some(pki.client())).await, Ok(true));
    assert!(
        resolve(None).await.is_err(),
        "no client certificate must fail"
    );
    assert!(
        resolve(Some(stranger.client())).await.is_err(),
        "a client certificate from another CA must fail"
    );
    // The sync port requires it too.
    let channel = tls::grpc_channel_with_identity(daemon.sync(), &pki.ca(), None).await;
    let fetched = match channel {
        Ok(channel) => FlagSyncServiceClient::new(channel)
            .fetch_all_flags(FetchAllFlagsRequest::default())
            .await
            .is_ok(),
        Err(_) => false,
    };
    assert!(!fetched, "sync without a client certificate must fail");

    let message = start_error(|s| s.client_ca_path = Some(pki.ca())).await;
    assert!(message.contains("--client-ca-path needs"), "{message}");
}

#[tokio::test]
async fn a_replaced_client_ca_bundle_applies_to_new_connections() {
    let server = TestPki::generate();
    let (a, b) = (TestPki::generate(), TestPki::generate());
    // The bundle in a directory of its own, as a mounted secret would be.
    let bundle_dir = tempfile::tempdir().unwrap();
    let bundle = bundle_dir.path().join("clients.pem");
    std::fs::copy(a.ca(), &bundle).unwrap();
    let (cert, key, ca) = (server.cert(), server.key(), bundle.clone());
    let daemon = TestDaemon::full(&[("flags.json", FLAGS)])
        .start(move |settings, _| {
            settings.server_cert_path = Some(cert);
            settings.server_key_path = Some(key);
            settings.client_ca_path = Some(ca);
        })
        .await;
    let addr = daemon.evaluation;
    let resolve = |identity| resolve_with(addr, server.ca(), Some(identity));
    assert_eq!(resolve(a.client()).await, Ok(true));
    assert!(resolve(b.client()).await.is_err(), "B is not trusted yet");

    // An open connection authenticated by A survives the change.
    let channel = tls::grpc_channel_with_identity(addr, &server.ca(), Some(a.client()))
        .await
        .expect("A's channel");
    let mut open = v1::service_client::ServiceClient::new(channel);
    open.resolve_boolean(bool_request()).await.expect("resolve");

    support::replace_by_rename(&bundle, &std::fs::read_to_string(b.ca()).unwrap());
    eventually("B's client accepted after the bundle changed", || async {
        resolve(b.client()).await == Ok(true)
    })
    .await;
    assert!(
        resolve(a.client()).await.is_err(),
        "A's client must be refused on a new connection"
    );
    let reply = open.resolve_boolean(bool_request()).await;
    assert!(reply.is_ok(), "the open connection was dropped: {reply:?}");

    // An invalid bundle is ignored. To know that a reload has read it, the server certificate
    // is replaced after it: once new handshakes present the new certificate, a reload has
    // run since the bundle was written (one watcher reloads both).
    support::replace_by_rename(&bundle, "not a certificate bundle");
    TestPki::generate_into(server.dir.path());
    eventually("the new server certificate served", || async {
        tls::connect(addr, &server.ca(), &[b"h2"]).await.is_ok()
    })
    .await;
    assert_eq!(
        resolve(b.client()).await,
        Ok(true),
        "B must stay trusted after an invalid bundle"
    );
    assert!(resolve(a.client()).await.is_err(), "A must stay refused");
}

async fn resolve_with(
    addr: std::net::SocketAddr,
    ca: std::path::PathBuf,
    identity: Option<(std::path::PathBuf, std::path::PathBuf)>,
) -> Result<bool, String> {
    let channel = tls::grpc_channel_with_identity(addr, &ca, identity)
        .await
        .map_err(|e| e.to_string())?;
    v1::service_client::ServiceClient::new(channel)
        .resolve_boolean(bool_request())
        .await
        .map(|r| r.into_inner().value)
        .map_err(|e| e.to_string())
}
