//! Acceptance tests for OFREP on port 8016: the real daemon in-process, plain HTTP/1.1
//! requests over real sockets.

mod support;

use std::net::SocketAddr;

use http::{Method, StatusCode};
use serde_json::{json, Value};
use support::http1::{self, Reply};
use support::{replace_by_rename, TestDaemon};

/// Flags without a flag set: every type and outcome.
const FLAGS: &str = r#"{
  "flags": {
    "bool-flag": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
    "string-flag": {"state": "ENABLED", "variants": {"hi": "hello"}, "defaultVariant": "hi",
                    "metadata": {"owner": "team-a", "weight": 3}},
    "int-flag": {"state": "ENABLED", "variants": {"ten": 10}, "defaultVariant": "ten"},
    "float-flag": {"state": "ENABLED", "variants": {"pi": 3.5}, "defaultVariant": "pi"},
    "object-flag": {"state": "ENABLED", "variants": {"obj": {"a": [1, null], "b": {"c": "d"}}}, "defaultVariant": "obj"},
    "no-default-flag": {"state": "ENABLED", "variants": {"on": true, "off": false}},
    "disabled-flag": {"state": "DISABLED", "variants": {"on": true}, "defaultVariant": "on"},
    "parse-error-flag": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on",
      "targeting": {"no_such_operator": [1, 2]}, "metadata": {"why": "broken"}},
    "general-error-flag": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on",
      "targeting": {"if": [true, "missing-variant", "on"]}},
    "who-flag": {"state": "ENABLED", "variants": {"request": "request", "static": "static", "header": "header", "none": "none"},
      "defaultVariant": "none", "targeting": {"var": "who"}}
  }
}"#;

/// Flag set `set-b`.
const FLAGS_B: &str = r#"{
  "metadata": {"flagSetId": "set-b", "team": "b"},
  "flags": {
    "b-only": {"state": "ENABLED", "variants": {"yes": true}, "defaultVariant": "yes"},
    "a-first": {"state": "ENABLED", "variants": {"x": "x"}, "defaultVariant": "x"}
  }
}"#;

async fn start() -> (TestDaemon, SocketAddr) {
    let daemon = TestDaemon::with_files(&[("a.json", FLAGS), ("b.json", FLAGS_B)])
        .ofrep()
        .start(|_, _| {})
        .await;
    let ofrep = daemon.ofrep();
    (daemon, ofrep)
}

const SINGLE: &str = "/ofrep/v1/evaluate/flags";

async fn single(addr: SocketAddr, key: &str, body: &str) -> Reply {
    http1::post(addr, &format!("{SINGLE}/{key}"), &[], body.to_owned()).await
}

async fn bulk(addr: SocketAddr, headers: &[(&str, &str)], body: &str) -> Reply {
    http1::post(addr, SINGLE, headers, body.to_owned()).await
}

fn assert_json(reply: &Reply, status: StatusCode, body: Value) {
    assert_eq!(reply.status, status, "body: {:?}", reply.body);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.json(), body);
}

// ---------------------------------------------------------------------------------------
// Single flag

#[tokio::test]
async fn single_flag_successes() {
    let (_daemon, ofrep) = start().await;
    assert_json(
        &single(ofrep, "bool-flag", "{}").await,
        StatusCode::OK,
        json!({"key": "bool-flag", "value": true, "reason": "STATIC", "variant": "on", "metadata": {}}),
    );
    assert_json(
        &single(ofrep, "string-flag", "").await,
        StatusCode::OK,
        json!({"key": "string-flag", "value": "hello", "reason": "STATIC", "variant": "hi",
               "metadata": {"owner": "team-a", "weight": 3}}),
    );
    // Integers are JSON numbers, not strings.
    let reply = single(ofrep, "int-flag", "{}").await;
    assert_json(
        &reply,
        StatusCode::OK,
        json!({"key": "int-flag", "value": 10, "reason": "STATIC", "variant": "ten", "metadata": {}}),
    );
    assert!(String::from_utf8_lossy(&reply.body).contains("\"value\":10,"));
    assert_eq!(
        single(ofrep, "float-flag", "{}").await.json()["value"],
        json!(3.5)
    );
    assert_json(
        &single(ofrep, "object-flag", "{}").await,
        StatusCode::OK,
        json!({"key": "object-flag", "value": {"a": [1, null], "b": {"c": "d"}}, "reason": "STATIC",
               "variant": "obj", "metadata": {}}),
    );
    // A flag in a flag set carries the set's metadata.
    assert_json(
        &single(ofrep, "b-only", "{}").await,
        StatusCode::OK,
        json!({"key": "b-only", "value": true, "reason": "STATIC", "variant": "yes",
               "metadata": {"flagSetId": "set-b", "team": "b"}}),
    );
}

#[tokio::test]
async fn code_default_and_disabled_have_no_value() {
    let (_daemon, ofrep) = start().await;
    let reply = single(ofrep, "no-default-flag", "{}").await;
    assert_json(
        &reply,
        StatusCode::OK,
        json!({"key": "no-default-flag", "reason": "DEFAULT", "metadata": {}}),
    );
    assert_json(
        &single(ofrep, "disabled-flag", "{}").await,
        StatusCode::OK,
        json!({"key": "disabled-flag", "reason": "DISABLED", "metadata": {}}),
    );
}

#[tokio::test]
async fn single_flag_errors() {
    let (_daemon, ofrep) = start().await;
    assert_json(
        &single(ofrep, "nope", "{}").await,
        StatusCode::NOT_FOUND,
        json!({"key": "nope", "errorCode": "FLAG_NOT_FOUND",
               "errorDetails": "flag `nope` does not exist", "metadata": {}}),
    );
    assert_json(
        &single(ofrep, "parse-error-flag", "{}").await,
        StatusCode::BAD_REQUEST,
        json!({"key": "parse-error-flag", "errorCode": "PARSE_ERROR",
               "errorDetails": "error parsing the flag `parse-error-flag`", "metadata": {"why": "broken"}}),
    );
    // Targeting names a variant that does not exist.
    assert_json(
        &single(ofrep, "general-error-flag", "{}").await,
        StatusCode::BAD_REQUEST,
        json!({"key": "general-error-flag", "errorCode": "GENERAL",
               "errorDetails": "error processing the flag for evaluation", "metadata": {}}),
    );
    // Malformed JSON.
    assert_json(
        &single(ofrep, "bool-flag", "{\"context\": ").await,
        StatusCode::BAD_REQUEST,
        json!({"key": "bool-flag", "errorCode": "INVALID_CONTEXT",
               "errorDetails": "Provider context is not valid", "metadata": null}),
    );
    // A context that is not an object is ignored.
    assert_eq!(
        single(ofrep, "bool-flag", r#"{"context": [1, 2]}"#)
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn selector_applies_and_is_reflected() {
    let (_daemon, ofrep) = start().await;
    let path = format!("{SINGLE}/b-only");
    let reply = http1::post(ofrep, &path, &[("flagd-selector", "flagSetId=set-b")], "{}").await;
    assert_json(
        &reply,
        StatusCode::OK,
        json!({"key": "b-only", "value": true, "reason": "STATIC", "variant": "yes",
               "metadata": {"flagSetId": "set-b", "team": "b"}}),
    );
    let path = format!("{SINGLE}/bool-flag");
    let reply = http1::post(ofrep, &path, &[("flagd-selector", "flagSetId=set-b")], "{}").await;
    assert_json(
        &reply,
        StatusCode::NOT_FOUND,
        json!({"key": "bool-flag", "errorCode": "FLAG_NOT_FOUND",
               "errorDetails": "flag `bool-flag` does not exist", "metadata": {"flagSetId": "set-b"}}),
    );
    let reply = http1::post(ofrep, &path, &[("flagd-selector", "bogus=1")], "{}").await;
    assert_json(
        &reply,
        StatusCode::BAD_REQUEST,
        json!({"key": "bool-flag", "errorCode": "GENERAL",
               "errorDetails": "invalid selector: invalid selector key \"bogus\", valid keys: \"flagSetId\", \"source\"",
               "metadata": null}),
    );
}

#[tokio::test]
async fn context_merges_body_static_and_headers() {
    let daemon = TestDaemon::with_files(&[("a.json", FLAGS)])
        .ofrep()
        .start(|settings, _| {
            settings.header_context.push(("X-Who".into(), "who".into()));
        })
        .await;
    let ofrep = daemon.ofrep();
    let body = r#"{"context": {"who": "request"}}"#;
    assert_eq!(
        single(ofrep, "who-flag", body).await.json()["value"],
        "request"
    );
    let path = format!("{SINGLE}/who-flag");
    let reply = http1::post(ofrep, &path, &[("x-who", "header")], body.to_owned()).await;
    assert_eq!(reply.json()["value"], "header");

    let daemon = TestDaemon::with_files(&[("a.json", FLAGS)])
        .ofrep()
        .start(|settings, _| {
            settings
                .static_context
                .insert("who".into(), json!("static"));
        })
        .await;
    let ofrep = daemon.ofrep();
    assert_eq!(
        single(ofrep, "who-flag", body).await.json()["value"],
        "static"
    );
}

#[tokio::test]
async fn body_size_limit_is_413() {
    let daemon = TestDaemon::with_files(&[("a.json", FLAGS)])
        .ofrep()
        .start(|settings, _| {
            settings.max_request_body = 100;
        })
        .await;
    let ofrep = daemon.ofrep();
    let big = json!({"context": {"pad": "x".repeat(200)}}).to_string();
    for reply in [
        single(ofrep, "bool-flag", &big).await,
        bulk(ofrep, &[], &big).await,
    ] {
        assert_json(
            &reply,
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({"errorDetails": "request body too large"}),
        );
    }
    assert_eq!(
        single(ofrep, "bool-flag", "{}").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn routes_methods_and_paths() {
    let (_daemon, ofrep) = start().await;
    let reply = http1::send(ofrep, Method::GET, &format!("{SINGLE}/bool-flag"), &[], "").await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    let reply = http1::send(ofrep, Method::PUT, SINGLE, &[], "").await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    let reply = http1::post(ofrep, "/ofrep/v1/evaluate", &[], "{}").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(&reply.body[..], b"404 page not found\n");
    let reply = http1::post(ofrep, &format!("{SINGLE}/a/b"), &[], "{}").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    // Bulk with a trailing slash.
    let reply = http1::post(ofrep, &format!("{SINGLE}/"), &[], "{}").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.json()["flags"].is_array());
}

#[tokio::test]
async fn cors_on_ofrep() {
    let (_daemon, ofrep) = start().await;
    let reply = http1::send(
        ofrep,
        Method::OPTIONS,
        SINGLE,
        &[
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "POST"),
        ],
        "",
    )
    .await;
    assert!(reply.status.is_success());
    assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
    let reply = http1::post(ofrep, SINGLE, &[("origin", "https://a.example")], "{}").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
}

// ---------------------------------------------------------------------------------------
// Bulk

#[tokio::test]
async fn bulk_evaluates_every_flag_in_order() {
    let (_daemon, ofrep) = start().await;
    let reply = bulk(ofrep, &[], "{}").await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    let flags = body["flags"].as_array().unwrap();
    let keys: Vec<&str> = flags.iter().map(|f| f["key"].as_str().unwrap()).collect();
    // Ordered by (flagSetId, key): the flags without a set first.
    assert_eq!(
        keys,
        [
            "bool-flag",
            "disabled-flag",
            "float-flag",
            "general-error-flag",
            "int-flag",
            "no-default-flag",
            "object-flag",
            "parse-error-flag",
            "string-flag",
            "who-flag",
            "a-first",
            "b-only",
        ]
    );
    let item = |key: &str| flags.iter().find(|f| f["key"] == key).unwrap().clone();
    assert_eq!(
        item("int-flag"),
        json!({"key": "int-flag", "value": 10, "reason": "STATIC", "variant": "ten", "metadata": {}})
    );
    assert_eq!(
        item("disabled-flag"),
        json!({"key": "disabled-flag", "reason": "DISABLED", "metadata": {}})
    );
    assert_eq!(
        item("no-default-flag"),
        json!({"key": "no-default-flag", "reason": "DEFAULT", "metadata": {}})
    );
    assert_eq!(
        item("parse-error-flag"),
        json!({"key": "parse-error-flag", "errorCode": "PARSE_ERROR",
               "errorDetails": "error parsing the flag `parse-error-flag`", "metadata": {"why": "broken"}})
    );
    assert_eq!(item("general-error-flag")["errorCode"], "GENERAL");
    assert_eq!(item("who-flag")["value"], "none");
    assert_eq!(
        item("b-only")["metadata"],
        json!({"flagSetId": "set-b", "team": "b"})
    );
    assert_eq!(body["metadata"], json!({}));

    // Context reaches every flag.
    let reply = bulk(ofrep, &[], r#"{"context": {"who": "request"}}"#).await;
    let flags = reply.json()["flags"].as_array().unwrap().clone();
    let who = flags.iter().find(|f| f["key"] == "who-flag").unwrap();
    assert_eq!(who["value"], "request");
    assert_eq!(who["reason"], "TARGETING_MATCH");
}

#[tokio::test]
async fn bulk_selector_and_request_errors() {
    let (_daemon, ofrep) = start().await;
    let reply = bulk(ofrep, &[("flagd-selector", "flagSetId=set-b")], "{}").await;
    let body = reply.json();
    let keys: Vec<&str> = body["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["a-first", "b-only"]);
    assert_eq!(body["metadata"], json!({"flagSetId": "set-b"}));

    assert_json(
        &bulk(ofrep, &[], "not json").await,
        StatusCode::BAD_REQUEST,
        json!({"errorCode": "INVALID_CONTEXT", "errorDetails": "Provider context is not valid", "metadata": null}),
    );
    let reply = bulk(ofrep, &[("flagd-selector", "nope=x")], "{}").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["errorCode"], "GENERAL");
    assert!(reply.json()["errorDetails"]
        .as_str()
        .unwrap()
        .starts_with("invalid selector: "));
}

// ---------------------------------------------------------------------------------------
// ETag / If-None-Match

#[tokio::test]
async fn bulk_etag_is_readable_across_origins() {
    // A web app on another origin sees the ETag only when CORS exposes it, and
    // @openfeature/ofrep-web-provider needs it for If-None-Match (tests/browser).
    let (_daemon, ofrep) = start().await;
    let reply = bulk(ofrep, &[("origin", "https://app.example.com")], "{}").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.header("etag").is_some());
    let exposed = reply
        .header("access-control-expose-headers")
        .expect("exposed headers");
    assert!(exposed.split(',').any(|h| h.trim() == "etag"), "{exposed}");
}

#[tokio::test]
async fn bulk_etag_and_not_modified() {
    let (daemon, ofrep) = start().await;
    let first = bulk(ofrep, &[], "{}").await;
    let etag = first.header("etag").expect("ETag").to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    // Same request, same tag.
    assert_eq!(
        bulk(ofrep, &[], "{}").await.header("etag"),
        Some(etag.as_str())
    );

    let reply = bulk(ofrep, &[("if-none-match", &etag)], "{}").await;
    assert_eq!(reply.status, StatusCode::NOT_MODIFIED);
    assert!(reply.body.is_empty());
    assert_eq!(reply.header("etag"), Some(etag.as_str()));
    let reply = bulk(ofrep, &[("if-none-match", "\"stale\"")], "{}").await;
    assert_eq!(reply.status, StatusCode::OK);

    // Another context that changes a result, another tag; the old tag no longer matches.
    let with_context = r#"{"context": {"who": "request"}}"#;
    let other = bulk(ofrep, &[("if-none-match", &etag)], with_context).await;
    assert_eq!(other.status, StatusCode::OK);
    let other_tag = other.header("etag").unwrap().to_owned();
    assert_ne!(other_tag, etag);
    // Another selector, another tag.
    let selected = bulk(ofrep, &[("flagd-selector", "flagSetId=set-b")], "{}").await;
    assert_ne!(selected.header("etag").unwrap(), etag);

    // A flag change, another tag.
    let changed = FLAGS.replace("\"hello\"", "\"changed\"");
    replace_by_rename(daemon.file(0), &changed);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let reply = bulk(ofrep, &[("if-none-match", &etag)], "{}").await;
        if reply.status == StatusCode::OK {
            assert_ne!(reply.header("etag").unwrap(), etag);
            let flags = reply.json()["flags"].as_array().unwrap().clone();
            let string = flags.iter().find(|f| f["key"] == "string-flag").unwrap();
            assert_eq!(string["value"], "changed");
            break;
        }
        assert_eq!(reply.status, StatusCode::NOT_MODIFIED);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the flag change never showed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn shutdown_stops_ofrep() {
    let (daemon, ofrep) = start().await;
    assert_eq!(bulk(ofrep, &[], "{}").await.status, StatusCode::OK);
    daemon.stop().await.expect("clean stop");
    assert!(tokio::net::TcpStream::connect(ofrep).await.is_err());
}
