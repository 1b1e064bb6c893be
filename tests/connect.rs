//! Acceptance tests for Connect, gRPC-Web and CORS on port 8013: the real daemon
//! in-process, plain HTTP/1.1 requests over real sockets.

mod support;

use std::net::SocketAddr;

use flagpole::service::proto::{evaluation_v1 as v1, evaluation_v2 as v2};
use http::{Method, StatusCode};
use prost::Message as _;
use serde_json::{json, Value};
use support::http1::{self, Frames, Reply};
use support::{replace_by_rename, TestDaemon};

/// Flags of every type and outcome.
const FLAGS: &str = r#"{
  "flags": {
    "bool-flag": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
    "string-flag": {"state": "ENABLED", "variants": {"hi": "hello"}, "defaultVariant": "hi",
                    "metadata": {"owner": "team-a", "weight": 3}},
    "int-flag": {"state": "ENABLED", "variants": {"ten": 10, "twenty": 20}, "defaultVariant": "ten"},
    "float-flag": {"state": "ENABLED", "variants": {"pi": 3.5, "whole": 2.0}, "defaultVariant": "pi"},
    "object-flag": {"state": "ENABLED", "variants": {"obj": {"a": 1, "nested": {"b": [true, null, "x"]}}}, "defaultVariant": "obj"},
    "disabled-flag": {"state": "DISABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
    "no-default-flag": {"state": "ENABLED", "variants": {"on": true, "off": false}},
    "targeting-flag": {"state": "ENABLED", "variants": {"yes": true, "no": false}, "defaultVariant": "no",
      "targeting": {"if": [{"==": [{"var": "email"}, "a@b.c"]}, "yes", null]}},
    "who-flag": {"state": "ENABLED", "variants": {"request": "request", "header": "header", "none": "none"},
      "defaultVariant": "none", "targeting": {"var": "who"}},
    "parse-error-flag": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on",
      "targeting": {"no_such_operator": [1, 2]}}
  }
}"#;

/// A flag set selected with `flagSetId=set-b`.
const FLAGS_B: &str = r#"{
  "metadata": {"flagSetId": "set-b"},
  "flags": {
    "b-only": {"state": "ENABLED", "variants": {"yes": true}, "defaultVariant": "yes"}
  }
}"#;

async fn start() -> TestDaemon {
    TestDaemon::with_files(&[("a.json", FLAGS), ("b.json", FLAGS_B)])
        .start(|_, _| {})
        .await
}

const JSON: (&str, &str) = ("content-type", "application/json");

async fn connect_json(addr: SocketAddr, path: &str, body: Value) -> Reply {
    http1::post(addr, path, &[JSON], body.to_string()).await
}

/// A successful Connect JSON call's body.
async fn ok_json(addr: SocketAddr, path: &str, body: Value) -> Value {
    let reply = connect_json(addr, path, body).await;
    assert_eq!(reply.status, StatusCode::OK, "body: {:?}", reply.body);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    reply.json()
}

fn assert_connect_error(reply: &Reply, status: StatusCode, code: &str, message: &str) {
    assert_eq!(reply.status, status, "body: {:?}", reply.body);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.json(), json!({"code": code, "message": message}));
}

const V1: &str = "/flagd.evaluation.v1.Service";
const V2: &str = "/flagd.evaluation.v2.Service";
const SCHEMA: &str = "/schema.v1.Service";

// ---------------------------------------------------------------------------------------
// Connect unary, JSON

#[tokio::test]
async fn v1_json_resolves_every_type() {
    let daemon = start().await;
    let addr = daemon.evaluation;
    let call = |method: &str, key: &str| {
        let path = format!("{V1}/{method}");
        let body = json!({"flagKey": key});
        async move { ok_json(addr, &path, body).await }
    };

    assert_eq!(
        call("ResolveBoolean", "bool-flag").await,
        json!({"value": true, "reason": "STATIC", "variant": "on", "metadata": {}})
    );
    assert_eq!(
        call("ResolveString", "string-flag").await,
        json!({"value": "hello", "reason": "STATIC", "variant": "hi",
               "metadata": {"owner": "team-a", "weight": 3}})
    );
    assert_eq!(
        call("ResolveFloat", "float-flag").await,
        json!({"value": 3.5, "reason": "STATIC", "variant": "pi", "metadata": {}})
    );
    // int64 travels as a JSON string.
    assert_eq!(
        call("ResolveInt", "int-flag").await,
        json!({"value": "10", "reason": "STATIC", "variant": "ten", "metadata": {}})
    );
    assert_eq!(
        call("ResolveObject", "object-flag").await,
        json!({"value": {"a": 1, "nested": {"b": [true, null, "x"]}}, "reason": "STATIC",
               "variant": "obj", "metadata": {}})
    );
    // Zero values are emitted for a disabled flag.
    assert_eq!(
        call("ResolveBoolean", "disabled-flag").await,
        json!({"value": false, "reason": "DISABLED", "variant": "", "metadata": {}})
    );
    assert_eq!(
        call("ResolveObject", "disabled-flag").await["value"],
        json!({})
    );

    // Exact bytes as in flagd's curl examples: field order and integer string.
    let reply = connect_json(
        addr,
        &format!("{V1}/ResolveInt"),
        json!({"flagKey": "int-flag"}),
    )
    .await;
    assert_eq!(
        &reply.body[..],
        br#"{"value":"10","reason":"STATIC","variant":"ten","metadata":{}}"#
    );

    // Context in camelCase or snake_case keys, unknown fields ignored.
    let body = json!({"flag_key": "targeting-flag", "context": {"email": "a@b.c"}, "other": 1});
    assert_eq!(
        ok_json(addr, &format!("{V1}/ResolveBoolean"), body).await,
        json!({"value": true, "reason": "TARGETING_MATCH", "variant": "yes", "metadata": {}})
    );
    let body = json!({"flagKey": "targeting-flag", "context": {"email": "x"}});
    assert_eq!(
        ok_json(addr, &format!("{V1}/ResolveBoolean"), body).await["reason"],
        "DEFAULT"
    );
}

#[tokio::test]
async fn v1_json_resolve_all() {
    let daemon = start().await;
    let all = ok_json(daemon.evaluation, &format!("{V1}/ResolveAll"), json!({})).await;
    let flags = &all["flags"];
    assert_eq!(
        flags["bool-flag"],
        json!({"reason": "STATIC", "variant": "on", "boolValue": true, "metadata": {}})
    );
    assert_eq!(flags["int-flag"]["doubleValue"], json!(10));
    assert_eq!(flags["string-flag"]["stringValue"], json!("hello"));
    assert_eq!(flags["object-flag"]["objectValue"]["a"], json!(1));
    assert_eq!(flags["disabled-flag"]["reason"], "DISABLED");
    assert_eq!(flags["parse-error-flag"]["reason"], "ERROR");
    // v1 skips flags without a default variant.
    assert!(flags.get("no-default-flag").is_none());
    assert_eq!(all["metadata"], json!({}));

    let reply = http1::post(
        daemon.evaluation,
        &format!("{V1}/ResolveAll"),
        &[JSON, ("flagd-selector", "flagSetId=set-b")],
        "{}",
    )
    .await;
    assert_eq!(
        reply.json(),
        json!({
            "flags": {"b-only": {"reason": "STATIC", "variant": "yes", "boolValue": true,
                                  "metadata": {"flagSetId": "set-b"}}},
            "metadata": {"flagSetId": "set-b"}
        })
    );
}

#[tokio::test]
async fn v2_json_resolves_with_presence() {
    let daemon = start().await;
    let addr = daemon.evaluation;
    let call = |method: &str, key: &str| {
        let path = format!("{V2}/{method}");
        let body = json!({"flagKey": key});
        async move { ok_json(addr, &path, body).await }
    };

    assert_eq!(
        call("ResolveBoolean", "bool-flag").await,
        json!({"value": true, "reason": "STATIC", "variant": "on", "metadata": {}})
    );
    assert_eq!(
        call("ResolveString", "string-flag").await["value"],
        json!("hello")
    );
    assert_eq!(
        call("ResolveFloat", "float-flag").await["value"],
        json!(3.5)
    );
    assert_eq!(
        call("ResolveInt", "int-flag").await,
        json!({"value": "10", "reason": "STATIC", "variant": "ten", "metadata": {}})
    );
    assert_eq!(
        call("ResolveObject", "object-flag").await["value"]["nested"],
        json!({"b": [true, null, "x"]})
    );
    // Code default and DISABLED leave value and variant out.
    assert_eq!(
        call("ResolveBoolean", "no-default-flag").await,
        json!({"reason": "DEFAULT", "metadata": {}})
    );
    assert_eq!(
        call("ResolveObject", "disabled-flag").await,
        json!({"reason": "DISABLED", "metadata": {}})
    );
    let reply = connect_json(
        addr,
        &format!("{V2}/ResolveString"),
        json!({"flagKey": "no-default-flag"}),
    )
    .await;
    assert_eq!(&reply.body[..], br#"{"reason":"DEFAULT","metadata":{}}"#);
}

#[tokio::test]
async fn schema_v1_json() {
    let daemon = start().await;
    assert_eq!(
        ok_json(
            daemon.evaluation,
            &format!("{SCHEMA}/ResolveString"),
            json!({"flagKey": "string-flag"})
        )
        .await["value"],
        "hello"
    );
    let all = ok_json(
        daemon.evaluation,
        &format!("{SCHEMA}/ResolveAll"),
        json!({}),
    )
    .await;
    // schema.v1 has no metadata in ResolveAll.
    assert_eq!(
        all["flags"]["bool-flag"],
        json!({"reason": "STATIC", "variant": "on", "boolValue": true})
    );
    assert!(all.get("metadata").is_none());
}

#[tokio::test]
async fn headers_select_and_map_into_the_context() {
    let daemon = TestDaemon::with_files(&[("a.json", FLAGS), ("b.json", FLAGS_B)])
        .start(|settings, _| {
            settings
                .header_context
                .push(("X-Who".to_owned(), "who".to_owned()));
        })
        .await;
    let path = format!("{V1}/ResolveString");
    let body = json!({"flagKey": "who-flag", "context": {"who": "request"}}).to_string();
    let reply = http1::post(daemon.evaluation, &path, &[JSON], body.clone()).await;
    assert_eq!(reply.json()["value"], "request");
    let reply = http1::post(daemon.evaluation, &path, &[JSON, ("x-who", "header")], body).await;
    assert_eq!(reply.json()["value"], "header");

    let path = format!("{V2}/ResolveBoolean");
    let body = json!({"flagKey": "b-only"}).to_string();
    let reply = http1::post(
        daemon.evaluation,
        &path,
        &[JSON, ("Flagd-Selector", "flagSetId=set-b")],
        body.clone(),
    )
    .await;
    assert_eq!(
        reply.json(),
        json!({"value": true, "reason": "STATIC", "variant": "yes", "metadata": {"flagSetId": "set-b"}})
    );
    let reply = http1::post(
        daemon.evaluation,
        &path,
        &[JSON, ("flagd-selector", "flagSetId=other")],
        body.clone(),
    )
    .await;
    assert_connect_error(&reply, StatusCode::NOT_FOUND, "not_found", "Flag not found");
    let reply = http1::post(
        daemon.evaluation,
        &path,
        &[JSON, ("flagd-selector", "bogus=1")],
        body,
    )
    .await;
    assert_connect_error(
        &reply,
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        "invalid selector key \"bogus\", valid keys: \"flagSetId\", \"source\"",
    );
}

// ---------------------------------------------------------------------------------------
// Connect unary, protobuf

#[tokio::test]
async fn proto_unary() {
    let daemon = start().await;
    let request = v2::ResolveIntRequest {
        flag_key: "int-flag".to_owned(),
        context: None,
    };
    let reply = http1::post(
        daemon.evaluation,
        &format!("{V2}/ResolveInt"),
        &[("content-type", "application/proto")],
        request.encode_to_vec(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-type"), Some("application/proto"));
    let response = v2::ResolveIntResponse::decode(reply.body).unwrap();
    assert_eq!(response.value, Some(10));
    assert_eq!(response.variant.as_deref(), Some("ten"));
    assert_eq!(response.reason, "STATIC");

    // Errors are JSON whatever the codec.
    let request = v1::ResolveIntRequest {
        flag_key: "missing".to_owned(),
        context: None,
    };
    let reply = http1::post(
        daemon.evaluation,
        &format!("{V1}/ResolveInt"),
        &[("content-type", "application/proto")],
        request.encode_to_vec(),
    )
    .await;
    assert_connect_error(&reply, StatusCode::NOT_FOUND, "not_found", "Flag not found");
}

// ---------------------------------------------------------------------------------------
// Connect errors and protocol rules

#[tokio::test]
async fn evaluation_errors_as_connect_errors() {
    let daemon = start().await;
    let addr = daemon.evaluation;
    let reply = connect_json(
        addr,
        &format!("{V1}/ResolveBoolean"),
        json!({"flagKey": "nope"}),
    )
    .await;
    assert_connect_error(&reply, StatusCode::NOT_FOUND, "not_found", "Flag not found");
    let reply = connect_json(
        addr,
        &format!("{V1}/ResolveString"),
        json!({"flagKey": "bool-flag"}),
    )
    .await;
    assert_connect_error(
        &reply,
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        "Type mismatch error",
    );
    let reply = connect_json(
        addr,
        &format!("{V2}/ResolveBoolean"),
        json!({"flagKey": "parse-error-flag"}),
    )
    .await;
    assert_connect_error(
        &reply,
        StatusCode::INTERNAL_SERVER_ERROR,
        "data_loss",
        "Error parsing input or configuration",
    );
    // v1 keeps FLAG_NOT_FOUND for a code default.
    let reply = connect_json(
        addr,
        &format!("{V1}/ResolveBoolean"),
        json!({"flagKey": "no-default-flag"}),
    )
    .await;
    assert_connect_error(&reply, StatusCode::NOT_FOUND, "not_found", "Flag not found");
}

#[tokio::test]
async fn protocol_errors() {
    let daemon = start().await;
    let addr = daemon.evaluation;
    let path = format!("{V1}/ResolveBoolean");

    let reply = http1::send(addr, Method::GET, &path, &[JSON], "").await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.header("allow"), Some("POST"));

    let reply = http1::post(addr, &path, &[("content-type", "text/plain")], "{}").await;
    assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(reply
        .header("accept-post")
        .unwrap()
        .contains("application/json"));
    let reply = http1::post(addr, &path, &[], "{}").await;
    assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // The streaming content type is not for unary procedures, and vice versa.
    let reply = http1::post(
        addr,
        &path,
        &[("content-type", "application/connect+json")],
        "{}",
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let reply = http1::post(addr, &format!("{V1}/EventStream"), &[JSON], "{}").await;
    assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let reply = http1::post(addr, "/flagd.evaluation.v1.Service/Nope", &[JSON], "{}").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = http1::post(addr, &format!("{V2}/ResolveAll"), &[JSON], "{}").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);

    let reply = http1::post(addr, &path, &[JSON], "").await;
    assert_connect_error(
        &reply,
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        "zero-length payload is not a valid JSON object",
    );
    let reply = http1::post(addr, &path, &[JSON], "{\"flagKey\": 7}").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["code"], "invalid_argument");

    let reply = http1::post(
        addr,
        &path,
        &[
            ("content-type", "application/json; charset=utf-8"),
            ("connect-protocol-version", "1"),
        ],
        r#"{"flagKey":"bool-flag"}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);

    let reply = http1::post(
        addr,
        &path,
        &[JSON, ("content-encoding", "br")],
        r#"{"flagKey":"bool-flag"}"#,
    )
    .await;
    // gzip is accepted (tests/compression.rs); other encodings are not, as in connect-go.
    assert_eq!(reply.status, StatusCode::NOT_IMPLEMENTED);
    assert_eq!(reply.json()["code"], "unimplemented");
}

#[tokio::test]
async fn request_size_limit_is_resource_exhausted() {
    let daemon = TestDaemon::with_files(&[("a.json", FLAGS)])
        .start(|settings, _| {
            settings.max_request_body = 200;
        })
        .await;
    let path = format!("{V1}/ResolveBoolean");
    let big = json!({"flagKey": "bool-flag", "context": {"pad": "x".repeat(300)}});
    let reply = connect_json(daemon.evaluation, &path, big).await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reply.json()["code"], "resource_exhausted");
    let small = json!({"flagKey": "bool-flag"});
    assert_eq!(
        connect_json(daemon.evaluation, &path, small).await.status,
        StatusCode::OK
    );

    // gRPC-Web goes through tonic's limit: RESOURCE_EXHAUSTED as over gRPC.
    let request = v1::ResolveBooleanRequest {
        flag_key: "x".repeat(300),
        context: None,
    };
    let reply = http1::post(
        daemon.evaluation,
        &path,
        &[("content-type", "application/grpc-web+proto")],
        http1::frame(0, &request.encode_to_vec()),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(grpc_web_status(&reply).as_deref(), Some("8"));
}

// ---------------------------------------------------------------------------------------
// Connect streaming

async fn open_stream(addr: SocketAddr, service: &str, headers: &[(&str, &str)]) -> Frames {
    let mut all = vec![("content-type", "application/connect+json")];
    all.extend_from_slice(headers);
    let response = http1::open(
        addr,
        Method::POST,
        &format!("{service}/EventStream"),
        &all,
        http1::frame(0, b"{}"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "application/connect+json"
    );
    Frames::new(response.into_body())
}

async fn next_json(frames: &mut Frames) -> (u8, Value) {
    let (flags, payload) = frames.next().await.expect("a frame");
    (flags, serde_json::from_slice(&payload).expect("JSON frame"))
}

#[tokio::test]
async fn event_stream_over_connect() {
    let mut daemon = start().await;
    let mut frames = open_stream(daemon.evaluation, V1, &[]).await;
    assert_eq!(
        next_json(&mut frames).await,
        (0, json!({"type": "provider_ready", "data": {}}))
    );

    let changed = FLAGS.replace("\"hello\"", "\"changed\"");
    replace_by_rename(daemon.file(0), &changed);
    let (flags, event) = next_json(&mut frames).await;
    assert_eq!(flags, 0);
    assert_eq!(event["type"], "configuration_change");
    assert_eq!(
        event["data"]["flags"],
        json!({"string-flag": {"type": "update"}})
    );

    // v2 and schema.v1 streams start the same way.
    for service in [V2, SCHEMA] {
        let mut other = open_stream(daemon.evaluation, service, &[]).await;
        assert_eq!(next_json(&mut other).await.1["type"], "provider_ready");
    }

    // Shutdown: provider_shutdown, then a clean end of stream.
    daemon.begin_shutdown();
    assert_eq!(
        next_json(&mut frames).await,
        (0, json!({"type": "provider_shutdown", "data": {}}))
    );
    assert_eq!(next_json(&mut frames).await, (2, json!({})));
    assert!(frames.next().await.is_none());
}

#[tokio::test]
async fn event_stream_errors_end_the_stream() {
    let daemon = start().await;
    let mut frames = open_stream(daemon.evaluation, V2, &[("flagd-selector", "bogus=1")]).await;
    let (flags, end) = next_json(&mut frames).await;
    assert_eq!(flags, 2);
    assert_eq!(end["error"]["code"], "invalid_argument");
    assert!(frames.next().await.is_none());

    // The deadline ends a v1 stream with deadline_exceeded.
    let daemon = TestDaemon::with_files(&[("a.json", FLAGS)])
        .start(|settings, _| {
            settings.stream_deadline = Some(std::time::Duration::from_millis(300));
        })
        .await;
    let mut frames = open_stream(daemon.evaluation, V1, &[]).await;
    assert_eq!(next_json(&mut frames).await.1["type"], "provider_ready");
    assert_eq!(
        next_json(&mut frames).await,
        (
            2,
            json!({"error": {"code": "deadline_exceeded", "message": "stream closed due to server-side timeout"}})
        )
    );
}

#[tokio::test]
async fn event_stream_over_connect_proto() {
    let daemon = start().await;
    let response = http1::open(
        daemon.evaluation,
        Method::POST,
        &format!("{V1}/EventStream"),
        &[("content-type", "application/connect+proto")],
        http1::frame(0, b""),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut frames = Frames::new(response.into_body());
    let (flags, payload) = frames.next().await.unwrap();
    assert_eq!(flags, 0);
    let event = v1::EventStreamResponse::decode(payload).unwrap();
    assert_eq!(event.r#type, "provider_ready");
}

// ---------------------------------------------------------------------------------------
// gRPC-Web

/// gRPC-Web trailers frame (flag 0x80): `name:value\r\n` lines.
fn trailer_lines(payload: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(payload)
        .split("\r\n")
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (name, value) = line.split_once(':').expect("name:value");
            (name.trim().to_ascii_lowercase(), value.trim().to_owned())
        })
        .collect()
}

#[tokio::test]
async fn grpc_web_unary() {
    let daemon = start().await;
    let request = v1::ResolveStringRequest {
        flag_key: "string-flag".to_owned(),
        context: None,
    };
    let response = http1::open(
        daemon.evaluation,
        Method::POST,
        &format!("{V1}/ResolveString"),
        &[
            ("content-type", "application/grpc-web+proto"),
            ("x-grpc-web", "1"),
        ],
        http1::frame(0, &request.encode_to_vec()),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/grpc-web"));
    let mut frames = Frames::new(response.into_body());
    let (flags, payload) = frames.next().await.unwrap();
    assert_eq!(flags, 0);
    let message = v1::ResolveStringResponse::decode(payload).unwrap();
    assert_eq!(
        (message.value.as_str(), message.reason.as_str()),
        ("hello", "STATIC")
    );
    let (flags, payload) = frames.next().await.unwrap();
    assert_eq!(flags, 0x80);
    assert!(trailer_lines(&payload).contains(&("grpc-status".to_owned(), "0".to_owned())));

    // An error: the status arrives in the headers (trailers-only) or the trailers frame.
    let request = v1::ResolveStringRequest {
        flag_key: "nope".to_owned(),
        context: None,
    };
    let reply = http1::post(
        daemon.evaluation,
        &format!("{V1}/ResolveString"),
        &[("content-type", "application/grpc-web")],
        http1::frame(0, &request.encode_to_vec()),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(grpc_web_status(&reply).as_deref(), Some("5"));
}

/// The `grpc-status` of a gRPC-Web reply: from the headers (trailers-only) or from the
/// trailers frame that ends the body.
fn grpc_web_status(reply: &Reply) -> Option<String> {
    if let Some(status) = reply.header("grpc-status") {
        return Some(status.to_owned());
    }
    let mut rest = &reply.body[..];
    while rest.len() >= 5 {
        let len = u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
        let (flags, payload) = (rest[0], &rest[5..5 + len]);
        if flags & 0x80 != 0 {
            return trailer_lines(payload)
                .into_iter()
                .find(|(name, _)| name == "grpc-status")
                .map(|(_, value)| value);
        }
        rest = &rest[5 + len..];
    }
    None
}

// ---------------------------------------------------------------------------------------
// CORS

#[tokio::test]
async fn cors_preflight_and_exposed_headers() {
    let daemon = start().await;
    let path = format!("{V1}/ResolveBoolean");
    let reply = http1::send(
        daemon.evaluation,
        Method::OPTIONS,
        &path,
        &[
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "content-type,flagd-selector",
            ),
        ],
        "",
    )
    .await;
    assert!(reply.status.is_success(), "{:?}", reply.status);
    assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
    let methods = reply.header("access-control-allow-methods").unwrap();
    for method in ["HEAD", "GET", "POST", "PUT", "PATCH", "DELETE"] {
        assert!(methods.contains(method), "{methods}");
    }
    assert_eq!(
        reply.header("access-control-allow-headers"),
        Some("content-type,flagd-selector")
    );

    let reply = http1::post(
        daemon.evaluation,
        &path,
        &[JSON, ("origin", "https://app.example.com")],
        r#"{"flagKey":"bool-flag"}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
    let exposed = reply.header("access-control-expose-headers").unwrap();
    for header in [
        "grpc-status",
        "grpc-message",
        "connect-content-encoding",
        "accept-post",
    ] {
        assert!(exposed.contains(header), "{exposed}");
    }

    // gRPC-Web from a browser.
    let request = v1::ResolveBooleanRequest {
        flag_key: "bool-flag".to_owned(),
        context: None,
    };
    let reply = http1::post(
        daemon.evaluation,
        &path,
        &[
            ("content-type", "application/grpc-web+proto"),
            ("origin", "https://app.example.com"),
        ],
        http1::frame(0, &request.encode_to_vec()),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(grpc_web_status(&reply).as_deref(), Some("0"));
    assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
    assert!(reply
        .header("access-control-expose-headers")
        .unwrap()
        .contains("grpc-status"));

    // No Origin: no CORS headers at all.
    let reply = http1::post(
        daemon.evaluation,
        &path,
        &[JSON],
        r#"{"flagKey":"bool-flag"}"#,
    )
    .await;
    assert!(reply.header("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn cors_origins_are_restricted_when_configured() {
    let daemon = TestDaemon::with_files(&[("a.json", FLAGS)])
        .start(|settings, _| {
            settings.cors_origins = vec![
                "https://app.example.com".to_owned(),
                "https://*.example.org".to_owned(),
            ];
        })
        .await;
    let path = format!("{V1}/ResolveBoolean");
    for (origin, allowed) in [
        ("https://app.example.com", true),
        ("https://x.example.org", true),
        ("https://evil.example.net", false),
    ] {
        let reply = http1::post(
            daemon.evaluation,
            &path,
            &[JSON, ("origin", origin)],
            r#"{"flagKey":"bool-flag"}"#,
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK);
        let expected = allowed.then_some(origin);
        assert_eq!(reply.header("access-control-allow-origin"), expected);
    }
}
