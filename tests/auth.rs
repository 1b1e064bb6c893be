//! Bearer-token authentication over real sockets: every protocol of the evaluation port
//! (gRPC, Connect, gRPC-Web), sync, OFREP and `/metrics`, with no token, a wrong token, the
//! right token and a token rotated by rewriting the token file; what stays open (health,
//! readiness, CORS preflights); and the source labels of `/metrics`.

mod support;

use std::path::Path;

use flagpole::config::{AuthTokens, Settings};
use flagpole::service::proto::evaluation_v1 as v1;
use flagpole::service::proto::sync_v1::SyncFlagsRequest;
use http::{Method, StatusCode};
use prost::Message as _;
use support::http1::{self, Reply};
use support::{eventually, replace_by_rename, TestDaemon};
use tonic::{Code, Request};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const FLAGS: &str = r#"{"flags": {
  "color": {"state": "ENABLED", "variants": {"red": "RED", "blue": "BLUE"}, "defaultVariant": "red"}
}}"#;

const RESOLVE: &str = "/flagd.evaluation.v1.Service/ResolveString";
const OFREP: &str = "/ofrep/v1/evaluate/flags/color";

/// A daemon on every port whose token file holds `tokens`, plus `configure`.
async fn daemon(tokens: &str, configure: impl FnOnce(&mut Settings, &Path)) -> TestDaemon {
    let tokens = tokens.to_owned();
    TestDaemon::full(&[("flags.json", FLAGS)])
        .ofrep()
        .start(move |settings, dir| {
            let file = dir.join("tokens");
            std::fs::write(&file, tokens).unwrap();
            settings.auth_token_file = Some(file);
            configure(settings, dir);
        })
        .await
}

fn token_file(daemon: &TestDaemon) -> std::path::PathBuf {
    daemon.dir.path().join("tokens")
}

/// The `authorization` header for `token` (`None`: no header).
fn bearer(token: Option<&str>) -> Vec<(&'static str, String)> {
    token
        .map(|t| vec![("authorization", format!("Bearer {t}"))])
        .unwrap_or_default()
}

fn with_token<T>(message: T, token: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

fn resolve_color() -> v1::ResolveStringRequest {
    v1::ResolveStringRequest {
        flag_key: "color".into(),
        context: None,
    }
}

/// gRPC (tonic client): the value, or the status code.
async fn grpc(daemon: &TestDaemon, token: Option<&str>) -> Result<String, tonic::Status> {
    let mut client = v1::service_client::ServiceClient::new(daemon.channel().await);
    client
        .resolve_string(with_token(resolve_color(), token))
        .await
        .map(|r| r.into_inner().value)
}

async fn post(
    addr: std::net::SocketAddr,
    path: &str,
    content_type: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> Reply {
    let auth = bearer(token);
    let mut headers: Vec<(&str, &str)> = vec![("content-type", content_type)];
    headers.extend(auth.iter().map(|(k, v)| (*k, v.as_str())));
    http1::post(addr, path, &headers, body).await
}

async fn connect(daemon: &TestDaemon, token: Option<&str>) -> Reply {
    post(
        daemon.evaluation,
        RESOLVE,
        "application/json",
        token,
        br#"{"flagKey": "color"}"#.to_vec(),
    )
    .await
}

async fn grpc_web(daemon: &TestDaemon, token: Option<&str>) -> Reply {
    post(
        daemon.evaluation,
        RESOLVE,
        "application/grpc-web+proto",
        token,
        http1::frame(0, &resolve_color().encode_to_vec()),
    )
    .await
}

async fn ofrep(daemon: &TestDaemon, token: Option<&str>) -> Reply {
    post(
        daemon.ofrep(),
        OFREP,
        "application/json",
        token,
        b"{}".to_vec(),
    )
    .await
}

/// SyncFlags: the first document, or the status code.
async fn sync(daemon: &TestDaemon, token: Option<&str>) -> Result<String, tonic::Status> {
    let mut client = daemon.sync_client().await;
    let mut stream = client
        .sync_flags(with_token(SyncFlagsRequest::default(), token))
        .await?
        .into_inner();
    let first = stream.message().await?.expect("a first document");
    Ok(first.flag_configuration)
}

/// What each protocol answers for `token`, as one comparable line per protocol.
async fn outcomes(daemon: &TestDaemon, token: Option<&str>) -> Vec<String> {
    let grpc = match grpc(daemon, token).await {
        Ok(value) => format!("grpc ok {value}"),
        Err(status) => format!("grpc {:?}", status.code()),
    };
    let reply = connect(daemon, token).await;
    let connect = match reply.status {
        StatusCode::OK => format!("connect ok {}", reply.json()["value"]),
        status => format!("connect {} {}", status.as_u16(), reply.json()["code"]),
    };
    let reply = grpc_web(daemon, token).await;
    let grpc_web = format!(
        "grpc-web {} status {}",
        reply.status.as_u16(),
        reply
            .header("grpc-status")
            .map(str::to_owned)
            .or_else(|| trailer_status(&reply))
            .unwrap_or_default()
    );
    let reply = ofrep(daemon, token).await;
    let ofrep = match reply.status {
        StatusCode::OK => format!("ofrep ok {}", reply.json()["value"]),
        status => format!("ofrep {}", status.as_u16()),
    };
    let sync = match sync(daemon, token).await {
        Ok(document) => format!("sync ok {}", document.contains("\"color\"")),
        Err(status) => format!("sync {:?}", status.code()),
    };
    vec![grpc, connect, grpc_web, ofrep, sync]
}

/// The `grpc-status` of a gRPC-Web trailers frame (when the status is not in the headers).
fn trailer_status(reply: &Reply) -> Option<String> {
    let body = &reply.body;
    let mut at = 0;
    while at + 5 <= body.len() {
        let len = u32::from_be_bytes(body[at + 1..at + 5].try_into().ok()?) as usize;
        let payload = body.get(at + 5..at + 5 + len)?;
        if body[at] & 0x80 != 0 {
            let text = String::from_utf8_lossy(payload);
            return text
                .lines()
                .find_map(|l| l.strip_prefix("grpc-status:"))
                .map(|v| v.trim().to_owned());
        }
        at += 5 + len;
    }
    None
}

fn accepted() -> Vec<String> {
    [
        "grpc ok RED",
        "connect ok \"RED\"",
        "grpc-web 200 status 0",
        "ofrep ok \"RED\"",
        "sync ok true",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn refused() -> Vec<String> {
    [
        "grpc Unauthenticated",
        "connect 401 \"unauthenticated\"",
        "grpc-web 200 status 16",
        "ofrep 401",
        "sync Unauthenticated",
    ]
    .map(str::to_owned)
    .to_vec()
}

#[tokio::test]
async fn every_protocol_needs_an_accepted_token() {
    let daemon = daemon("# fleet tokens\n\nfirst-token\nsecond-token\n", |_, _| {}).await;
    assert_eq!(outcomes(&daemon, None).await, refused(), "no token");
    assert_eq!(outcomes(&daemon, Some("wrong")).await, refused(), "wrong");
    assert_eq!(
        outcomes(&daemon, Some("first-tokenx")).await,
        refused(),
        "a longer token"
    );
    assert_eq!(outcomes(&daemon, Some("first-token")).await, accepted());
    assert_eq!(outcomes(&daemon, Some("second-token")).await, accepted());
    daemon.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn refusals_carry_a_bearer_challenge() {
    let daemon = daemon("t0ken\n", |_, _| {}).await;
    // OFREP: 401 with the challenge, and invalid_token once a token was sent.
    let reply = ofrep(&daemon, None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        reply.header("www-authenticate"),
        Some("Bearer realm=\"flagpole\"")
    );
    let reply = ofrep(&daemon, Some("nope")).await;
    assert_eq!(
        reply.header("www-authenticate"),
        Some("Bearer realm=\"flagpole\", error=\"invalid_token\"")
    );
    // gRPC: UNAUTHENTICATED with the challenge as metadata.
    let status = grpc(&daemon, Some("nope")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status
        .metadata()
        .get("www-authenticate")
        .is_some_and(|v| v.to_str().unwrap().starts_with("Bearer")));
    // Connect and gRPC-Web: the same challenge header.
    for reply in [connect(&daemon, None).await, grpc_web(&daemon, None).await] {
        assert_eq!(
            reply.header("www-authenticate"),
            Some("Bearer realm=\"flagpole\"")
        );
    }
    // A Connect stream gets its error in the end-of-stream message.
    let reply = post(
        daemon.evaluation,
        "/flagd.evaluation.v1.Service/EventStream",
        "application/connect+json",
        None,
        http1::frame(0, b"{}"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body[0], 0x02, "end-of-stream flag");
    let end: serde_json::Value = serde_json::from_slice(&reply.body[5..]).unwrap();
    assert_eq!(end["error"]["code"], "unauthenticated");
    daemon.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_rotated_token_file_applies_without_restart() {
    let daemon = daemon("old-token\n", |_, _| {}).await;
    assert_eq!(outcomes(&daemon, Some("old-token")).await, accepted());
    // An open stream counts its token at open: it keeps running after rotation.
    let mut client = daemon.sync_client().await;
    let mut open_stream = client
        .sync_flags(with_token(SyncFlagsRequest::default(), Some("old-token")))
        .await
        .expect("stream opens")
        .into_inner();
    open_stream.message().await.expect("first").expect("doc");

    replace_by_rename(&token_file(&daemon), "new-token\n");
    eventually("the new token accepted", || async {
        grpc(&daemon, Some("new-token")).await.is_ok()
    })
    .await;
    assert_eq!(outcomes(&daemon, Some("new-token")).await, accepted());
    assert_eq!(outcomes(&daemon, Some("old-token")).await, refused());

    // An emptied file keeps the previous tokens (logged); the unit tests cover it exactly.
    replace_by_rename(&token_file(&daemon), "# emptied by mistake\n");
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(outcomes(&daemon, Some("new-token")).await, accepted());

    // The stream opened with the old token still delivers changes.
    replace_by_rename(
        daemon.file(0),
        &FLAGS.replace(
            "\"defaultVariant\": \"red\"",
            "\"defaultVariant\": \"blue\"",
        ),
    );
    let changed = open_stream.message().await.expect("next").expect("doc");
    assert!(changed.flag_configuration.contains("\"blue\""));
    daemon.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn tokens_from_the_environment_setting_work_with_the_file() {
    let daemon = daemon("file-token\n", |settings, _| {
        settings.auth_tokens = AuthTokens::parse("env-a, env-b");
    })
    .await;
    assert_eq!(outcomes(&daemon, Some("env-b")).await, accepted());
    assert_eq!(outcomes(&daemon, Some("file-token")).await, accepted());
    assert_eq!(outcomes(&daemon, Some("env-a,env-b")).await, refused());
    daemon.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn health_readiness_and_preflights_stay_open() {
    let daemon = daemon("t0ken\n", |_, _| {}).await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        let (status, _) = http1::call(daemon.management(), "GET", path).await.unwrap();
        assert_eq!(status, 200, "{path}");
    }
    let mut health = HealthClient::new(daemon.channel().await);
    health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("gRPC health needs no token");

    // A browser's preflight carries no credentials: answered, `authorization` allowed.
    for (addr, path) in [(daemon.evaluation, RESOLVE), (daemon.ofrep(), OFREP)] {
        let reply = http1::send(
            addr,
            Method::OPTIONS,
            path,
            &[
                ("origin", "https://app.example"),
                ("access-control-request-method", "POST"),
                (
                    "access-control-request-headers",
                    "authorization,content-type",
                ),
            ],
            "",
        )
        .await;
        assert!(reply.status.is_success(), "{path}: {}", reply.status);
        let allowed = reply.header("access-control-allow-headers").unwrap();
        assert!(allowed.contains("authorization"), "{path}: {allowed}");
        // The refusal itself carries CORS headers, so the page can read the 401.
        let headers = [
            ("origin", "https://app.example"),
            ("content-type", "application/json"),
        ];
        let reply = http1::post(addr, path, &headers, "{}").await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
    }
    daemon.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn metrics_can_require_the_token() {
    let daemon = daemon("t0ken\n", |settings, _| settings.metrics_auth = true).await;
    let metrics = |token: Option<&'static str>| {
        let addr = daemon.management();
        async move {
            let auth = bearer(token);
            let headers: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (*k, v.as_str())).collect();
            http1::send(addr, Method::GET, "/metrics", &headers, "").await
        }
    };
    let reply = metrics(None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        reply.header("www-authenticate"),
        Some("Bearer realm=\"flagpole\"")
    );
    assert_eq!(
        metrics(Some("wrong")).await.status,
        StatusCode::UNAUTHORIZED
    );
    let reply = metrics(Some("t0ken")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&reply.body).contains("flagpole_source_ready"));
    for path in ["/healthz", "/readyz"] {
        let (status, _) = http1::call(daemon.management(), "GET", path).await.unwrap();
        assert_eq!(status, 200, "{path}");
    }
    daemon.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn without_tokens_nothing_changes() {
    let daemon = TestDaemon::full(&[("flags.json", FLAGS)])
        .ofrep()
        .start(|_, _| {})
        .await;
    assert_eq!(outcomes(&daemon, None).await, accepted());
    assert_eq!(outcomes(&daemon, Some("anything")).await, accepted());
    daemon.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn an_unusable_token_file_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let listeners = || async {
        let bind = || tokio::net::TcpListener::bind("127.0.0.1:0");
        flagpole::daemon::Listeners {
            evaluation: bind().await.unwrap().into(),
            management: None,
            sync: None,
            ofrep: None,
        }
    };
    for (name, content) in [("missing", None), ("empty", Some("# none\n\n"))] {
        let path = dir.path().join(name);
        if let Some(content) = content {
            std::fs::write(&path, content).unwrap();
        }
        let settings = Settings {
            auth_token_file: Some(path),
            ..Settings::default()
        };
        let result = flagpole::daemon::run(settings, listeners().await, async {}).await;
        let error = result.expect_err(name).to_string();
        assert!(error.contains("token"), "{name}: {error}");
    }
}

#[tokio::test]
async fn metrics_labels_mask_account_ids_unless_asked() {
    // A source URI with an account id in it (a file named like a queue URL's path).
    let files = [("123456789012-flags.json", FLAGS)];
    let label_of = |daemon: &TestDaemon| {
        let addr = daemon.management();
        async move {
            let (_, body) = http1::call(addr, "GET", "/metrics").await.unwrap();
            body.lines()
                .find(|l| l.starts_with("flagpole_source_ready{"))
                .map(str::to_owned)
                .unwrap_or_default()
        }
    };
    let daemon = TestDaemon::full(&files).start(|_, _| {}).await;
    let line = label_of(&daemon).await;
    assert!(line.contains("/************-flags.json\"}"), "{line}");
    assert!(!line.contains("123456789012"), "{line}");
    daemon.stop().await.expect("clean shutdown");

    let daemon = TestDaemon::full(&files)
        .start(|settings, _| settings.metrics_source_uris = true)
        .await;
    let line = label_of(&daemon).await;
    assert!(line.contains("/123456789012-flags.json\"}"), "{line}");
    daemon.stop().await.expect("clean shutdown");
}
