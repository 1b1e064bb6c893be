//! gzip and JSON over gRPC framing on port 8013 (and gzip on the sync port 8015), as
//! flagd's connect-go server accepts them: a real tonic client sending and accepting gzip,
//! Connect unary and streaming with gzip over HTTP/1.1, `application/grpc+json` over HTTP/2
//! and `application/grpc-web+json` over HTTP/1.1; and a small gzip body that inflates past
//! `--max-request-body` refused on each (RESOURCE_EXHAUSTED) while the daemon keeps serving.

mod support;

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;

use bytes::Bytes;
use flagpole::service::proto::sync_v1::flag_sync_service_client::FlagSyncServiceClient;
use flagpole::service::proto::sync_v1::FetchAllFlagsRequest;
use flagpole::service::proto::{evaluation_v1 as v1, evaluation_v2 as v2};
use flagpole::service::wire::JsonStruct;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use prost::Message as _;
use serde_json::{json, Value};
use support::http1::{self, Frames};
use support::TestDaemon;
use tonic::codec::CompressionEncoding::Gzip;
use tonic::Code;

const FLAGS: &str = r#"{"flags": {
  "string-flag": {"state": "ENABLED", "variants": {"hi": "hello", "bye": "goodbye"}, "defaultVariant": "hi",
    "targeting": {"if": [{"==": [{"var": "email"}, "a@b.c"]}, "bye", null]}}
}}"#;

/// `--max-request-body` for these tests.
const LIMIT: usize = 64 * 1024;
/// What the bombs inflate to: 64 times the limit.
const BOMB: usize = 64 * LIMIT;

async fn start() -> TestDaemon {
    TestDaemon::full(&[("flags.json", FLAGS)])
        .start(|settings, _| settings.max_request_body = LIMIT)
        .await
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

/// A context carrying one string of `len` bytes (compresses to almost nothing).
fn context(len: usize) -> JsonStruct {
    let mut map = serde_json::Map::new();
    map.insert("email".into(), json!("a@b.c"));
    map.insert("padding".into(), json!("a".repeat(len)));
    JsonStruct(map)
}

const V1: &str = "/flagd.evaluation.v1.Service";

/// Length-prefixed message (gRPC, gRPC-Web, Connect streaming).
fn frame(flags: u8, payload: &[u8]) -> Vec<u8> {
    http1::frame(flags, payload)
}

// ---------------------------------------------------------------------------------------
// gRPC (tonic) with gzip

#[tokio::test]
async fn grpc_gzip_requests_and_responses_with_a_tonic_client() {
    let daemon = start().await;
    let request = || v1::ResolveStringRequest {
        flag_key: "string-flag".into(),
        context: Some(context(10_000)),
    };
    let mut client = v1::service_client::ServiceClient::new(daemon.channel().await)
        .send_compressed(Gzip)
        .accept_compressed(Gzip);
    let response = client.resolve_string(request()).await.expect("gzip call");
    assert_eq!(
        response
            .metadata()
            .get("grpc-encoding")
            .map(|v| v.to_str().unwrap()),
        Some("gzip")
    );
    assert_eq!(response.into_inner().value, "goodbye");

    // A client that does not offer gzip gets identity, even for a gzip request.
    let mut plain =
        v1::service_client::ServiceClient::new(daemon.channel().await).send_compressed(Gzip);
    let response = plain.resolve_string(request()).await.expect("gzip request");
    assert!(response.metadata().get("grpc-encoding").is_none());

    // v2 and the sync service too.
    let mut v2_client = v2::service_client::ServiceClient::new(daemon.channel().await)
        .send_compressed(Gzip)
        .accept_compressed(Gzip);
    let response = v2_client
        .resolve_string(v2::ResolveStringRequest {
            flag_key: "string-flag".into(),
            context: Some(context(100)),
        })
        .await
        .expect("v2 gzip call");
    assert_eq!(
        response.metadata().get("grpc-encoding").unwrap(),
        "gzip",
        "v2 answers compressed"
    );
    let mut sync = FlagSyncServiceClient::new(support::channel(daemon.sync()).await)
        .send_compressed(Gzip)
        .accept_compressed(Gzip);
    let response = sync
        .fetch_all_flags(FetchAllFlagsRequest::default())
        .await
        .expect("sync gzip call");
    assert_eq!(response.metadata().get("grpc-encoding").unwrap(), "gzip");
    assert!(response
        .into_inner()
        .flag_configuration
        .contains("string-flag"));
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn grpc_gzip_bomb_is_refused_with_resource_exhausted() {
    let daemon = start().await;
    let bomb = v1::ResolveStringRequest {
        flag_key: "string-flag".into(),
        context: Some(context(BOMB)),
    };
    let compressed = gzip(&bomb.encode_to_vec()).len();
    assert!(
        compressed < LIMIT / 8,
        "the bomb is small: {compressed} bytes"
    );
    let mut client = v1::service_client::ServiceClient::new(daemon.channel().await)
        .send_compressed(Gzip)
        .accept_compressed(Gzip);
    let status = client.resolve_string(bomb).await.expect_err("refused");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("decompressing"), "{status:?}");

    // Under the limit it is fine, and the daemon still serves.
    let ok = v1::ResolveStringRequest {
        flag_key: "string-flag".into(),
        context: Some(context(LIMIT / 2)),
    };
    assert_eq!(
        client.resolve_string(ok).await.unwrap().into_inner().value,
        "goodbye"
    );
    daemon.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// Connect with gzip

#[tokio::test]
async fn connect_unary_gzip_both_ways() {
    let daemon = start().await;
    let path = format!("{V1}/ResolveString");
    let body = json!({"flagKey": "string-flag", "context": {"email": "a@b.c"}}).to_string();
    let reply = http1::post(
        daemon.evaluation,
        &path,
        &[
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
            ("accept-encoding", "gzip"),
        ],
        gzip(body.as_bytes()),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.header("content-encoding"), Some("gzip"));
    let value: Value = serde_json::from_slice(&gunzip(&reply.body)).unwrap();
    assert_eq!(value["value"], "goodbye");

    // Without Accept-Encoding the answer is plain.
    let reply = http1::post(
        daemon.evaluation,
        &path,
        &[
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
        ],
        gzip(body.as_bytes()),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-encoding"), None);
    assert_eq!(reply.json()["value"], "goodbye");

    // Other encodings are refused as connect-go refuses them.
    let reply = http1::post(
        daemon.evaluation,
        &path,
        &[
            ("content-type", "application/json"),
            ("content-encoding", "br"),
        ],
        body.clone(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_IMPLEMENTED);
    assert_eq!(reply.json()["code"], "unimplemented");
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn connect_gzip_bomb_is_refused_with_resource_exhausted() {
    let daemon = start().await;
    let body = json!({"flagKey": "string-flag", "context": {"padding": "a".repeat(BOMB)}});
    let bomb = gzip(body.to_string().as_bytes());
    assert!(
        bomb.len() < LIMIT / 8,
        "the bomb is small: {} bytes",
        bomb.len()
    );
    let reply = http1::post(
        daemon.evaluation,
        &format!("{V1}/ResolveString"),
        &[
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
        ],
        bomb,
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{:?}",
        reply.body
    );
    assert_eq!(reply.json()["code"], "resource_exhausted");

    // The streaming form: a compressed envelope that inflates past the limit.
    let inner = json!({"padding": "a".repeat(BOMB)}).to_string();
    let response = http1::open(
        daemon.evaluation,
        Method::POST,
        &format!("{V1}/EventStream"),
        &[
            ("content-type", "application/connect+json"),
            ("connect-content-encoding", "gzip"),
        ],
        frame(1, &gzip(inner.as_bytes())),
    )
    .await;
    let mut frames = Frames::new(response.into_body());
    let (flags, end) = frames.next().await.expect("end-of-stream message");
    assert_eq!(flags, 2);
    let end: Value = serde_json::from_slice(&end).unwrap();
    assert_eq!(end["error"]["code"], "resource_exhausted", "{end}");
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn connect_event_stream_gzip_both_ways() {
    let daemon = start().await;
    let response = http1::open(
        daemon.evaluation,
        Method::POST,
        &format!("{V1}/EventStream"),
        &[
            ("content-type", "application/connect+json"),
            ("connect-content-encoding", "gzip"),
            ("connect-accept-encoding", "gzip"),
        ],
        frame(1, &gzip(b"{}")),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers().get("connect-content-encoding").unwrap(),
        "gzip"
    );
    let mut frames = Frames::new(response.into_body());
    let (flags, message) = frames.next().await.expect("first event");
    assert_eq!(flags, 1, "compressed");
    let event: Value = serde_json::from_slice(&gunzip(&message)).unwrap();
    assert_eq!(event["type"], "provider_ready");
    daemon.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// gRPC and gRPC-Web with JSON messages

/// An HTTP/2 (prior knowledge) request, as gRPC clients send it.
async fn h2_post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> http::Response<hyper::body::Incoming> {
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{addr}{path}"))
        .header("te", "trailers");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    client
        .request(request.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .expect("HTTP/2 request")
}

/// The messages and the trailers of a gRPC response.
async fn grpc_reply(
    response: http::Response<hyper::body::Incoming>,
) -> (Vec<(u8, Bytes)>, http::HeaderMap) {
    let collected = response.into_body().collect().await.expect("body");
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let mut body = collected.to_bytes();
    let mut messages = Vec::new();
    while body.len() >= 5 {
        let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
        let flags = body[0];
        let payload = body.slice(5..5 + len);
        messages.push((flags, payload));
        body = body.slice(5 + len..);
    }
    (messages, trailers)
}

#[tokio::test]
async fn grpc_json_unary_plain_and_gzip() {
    let daemon = start().await;
    let path = format!("{V1}/ResolveString");
    let request = json!({"flagKey": "string-flag", "context": {"email": "a@b.c"}}).to_string();

    let response = h2_post(
        daemon.evaluation,
        &path,
        &[("content-type", "application/grpc+json")],
        frame(0, request.as_bytes()),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        "application/grpc+json"
    );
    let (messages, trailers) = grpc_reply(response).await;
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");
    assert_eq!(messages.len(), 1);
    let value: Value = serde_json::from_slice(&messages[0].1).unwrap();
    assert_eq!(value["value"], "goodbye");
    assert_eq!(value["variant"], "bye");

    // gzip both ways.
    let response = h2_post(
        daemon.evaluation,
        &path,
        &[
            ("content-type", "application/grpc+json"),
            ("grpc-encoding", "gzip"),
            ("grpc-accept-encoding", "gzip"),
        ],
        frame(1, &gzip(request.as_bytes())),
    )
    .await;
    assert_eq!(response.headers().get("grpc-encoding").unwrap(), "gzip");
    let (messages, trailers) = grpc_reply(response).await;
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");
    assert_eq!(messages[0].0, 1, "compressed");
    let value: Value = serde_json::from_slice(&gunzip(&messages[0].1)).unwrap();
    assert_eq!(value["value"], "goodbye");

    // Errors are gRPC statuses.
    let missing = json!({"flagKey": "no-such-flag"}).to_string();
    let response = h2_post(
        daemon.evaluation,
        &path,
        &[("content-type", "application/grpc+json")],
        frame(0, missing.as_bytes()),
    )
    .await;
    // Trailers-only: the status is in the headers.
    assert_eq!(
        response.headers().get("grpc-status").unwrap(),
        "5",
        "{:?}",
        response.headers()
    );

    // The event stream too.
    let response = h2_post(
        daemon.evaluation,
        &format!("{V1}/EventStream"),
        &[("content-type", "application/grpc+json")],
        frame(0, b"{}"),
    )
    .await;
    let mut frames = Frames::new(response.into_body());
    let (flags, event) = frames.next().await.expect("first event");
    assert_eq!(flags, 0);
    let event: Value = serde_json::from_slice(&event).unwrap();
    assert_eq!(event["type"], "provider_ready");
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn grpc_json_gzip_bomb_is_refused_with_resource_exhausted() {
    let daemon = start().await;
    let body = json!({"flagKey": "string-flag", "context": {"padding": "a".repeat(BOMB)}});
    let bomb = gzip(body.to_string().as_bytes());
    assert!(
        bomb.len() < LIMIT / 8,
        "the bomb is small: {} bytes",
        bomb.len()
    );
    let response = h2_post(
        daemon.evaluation,
        &format!("{V1}/ResolveString"),
        &[
            ("content-type", "application/grpc+json"),
            ("grpc-encoding", "gzip"),
        ],
        frame(1, &bomb),
    )
    .await;
    // Trailers-only: the status is in the headers.
    assert_eq!(
        response.headers().get("grpc-status").unwrap(),
        "8",
        "{:?}",
        response.headers()
    );
    daemon.stop().await.unwrap();
}

#[tokio::test]
async fn grpc_web_json_unary_over_http1() {
    let daemon = start().await;
    let request = json!({"flagKey": "string-flag"}).to_string();
    let reply = http1::post(
        daemon.evaluation,
        &format!("{V1}/ResolveString"),
        &[("content-type", "application/grpc-web+json")],
        frame(0, request.as_bytes()),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.header("content-type"),
        Some("application/grpc-web+json")
    );
    let body = &reply.body;
    let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
    let value: Value = serde_json::from_slice(&body[5..5 + len]).unwrap();
    assert_eq!(value["value"], "hello");
    let trailer = &body[5 + len..];
    assert_eq!(trailer[0], 0x80, "trailer frame");
    let text = String::from_utf8_lossy(&trailer[5..]);
    assert!(text.contains("grpc-status:0"), "{text}");
    daemon.stop().await.unwrap();
}
