//! `flagd.sync.v1.FlagSyncService` on the sync port (spec 1.10), over real sockets against a
//! daemon fed from temporary flag files.

// GetMetadata and the body `selector` are deprecated in the proto but still served.
#![allow(deprecated)]

mod support;

use std::time::Duration;

use flagpole::service::proto::sync_v1::{
    FetchAllFlagsRequest, GetMetadataRequest, SyncFlagsRequest, SyncFlagsResponse,
};
use serde_json::{json, Value};
use support::{http1, replace_by_rename, with_selector, TestDaemon};
use tonic::{Code, Request, Streaming};

/// Flag set `set-a` with an evaluator reference, set-level metadata and a per-flag override.
const FILE_A: &str = r#"{
  "$evaluators": {"emailRule": {"in": ["@example.com", {"var": "email"}]}},
  "metadata": {"flagSetId": "set-a", "team": "core"},
  "flags": {
    "bool-flag": {
      "state": "ENABLED",
      "variants": {"on": true, "off": false},
      "defaultVariant": "on",
      "targeting": {"if": [{"$ref": "emailRule"}, "off", "on"]},
      "metadata": {"owner": "ann", "team": "web"}
    },
    "string-flag": {"state": "DISABLED", "variants": {"a": "A"}, "defaultVariant": "a"}
  }
}"#;

/// Flags without a flag set; one has no default variant.
const FILE_B: &str = r#"{"flags": {
  "int-flag": {"state": "ENABLED", "variants": {"one": 1, "two": 2}, "defaultVariant": null}
}}"#;

const FILE_B_CHANGED: &str = r#"{"flags": {
  "int-flag": {"state": "ENABLED", "variants": {"one": 1, "two": 2}, "defaultVariant": "two"},
  "new-flag": {"state": "ENABLED", "variants": {"y": "yes"}, "defaultVariant": "y"}
}}"#;

async fn start(configure: impl FnOnce(&mut flagpole::config::Settings)) -> TestDaemon {
    TestDaemon::full(&[("a.json", FILE_A), ("b.json", FILE_B)])
        .start(|settings, _| configure(settings))
        .await
}

fn document(response: &SyncFlagsResponse) -> Value {
    serde_json::from_str(&response.flag_configuration).expect("document is JSON")
}

fn keys(document: &Value) -> Vec<String> {
    document["flags"]
        .as_object()
        .expect("flags map")
        .keys()
        .cloned()
        .collect()
}

async fn next(stream: &mut Streaming<SyncFlagsResponse>) -> SyncFlagsResponse {
    tokio::time::timeout(support::PATIENCE, stream.message())
        .await
        .expect("a sync message in time")
        .expect("stream ok")
        .expect("stream open")
}

async fn sync_stream(
    daemon: &TestDaemon,
    request: Request<SyncFlagsRequest>,
) -> Streaming<SyncFlagsResponse> {
    daemon
        .sync_client()
        .await
        .sync_flags(request)
        .await
        .expect("SyncFlags accepted")
        .into_inner()
}

#[tokio::test]
async fn sync_flags_sends_the_document_then_every_change() {
    let daemon = start(|s| {
        s.static_context.insert("env".into(), json!("prod"));
    })
    .await;
    let mut stream = sync_stream(&daemon, Request::new(SyncFlagsRequest::default())).await;

    let first = next(&mut stream).await;
    let doc = document(&first);
    assert_eq!(keys(&doc), ["bool-flag", "int-flag", "string-flag"]);
    assert_eq!(
        doc["flags"]["bool-flag"],
        json!({
            "state": "ENABLED",
            "defaultVariant": "on",
            "variants": {"on": true, "off": false},
            "targeting": {"if": [{"in": ["@example.com", {"var": "email"}]}, "off", "on"]},
            "source": daemon.source(0),
            "metadata": {"flagSetId": "set-a", "team": "web", "owner": "ann"}
        })
    );
    assert_eq!(doc["flags"]["string-flag"]["state"], json!("DISABLED"));
    assert_eq!(
        doc["flags"]["string-flag"]["metadata"],
        json!({"flagSetId": "set-a", "team": "core"})
    );
    let int_flag = &doc["flags"]["int-flag"];
    assert_eq!(int_flag["defaultVariant"], json!(""));
    assert_eq!(int_flag["source"], json!(daemon.source(1)));
    assert!(int_flag.get("metadata").is_none(), "empty metadata omitted");
    assert!(
        int_flag.get("targeting").is_none(),
        "absent targeting omitted"
    );
    assert!(doc.get("metadata").is_none() && doc.get("$evaluators").is_none());
    assert_eq!(
        first
            .sync_context
            .as_ref()
            .map(|c| Value::Object(c.0.clone())),
        Some(json!({"env": "prod"}))
    );

    replace_by_rename(&daemon.files[1], FILE_B_CHANGED);
    let second = next(&mut stream).await;
    let doc = document(&second);
    assert_eq!(
        keys(&doc),
        ["bool-flag", "int-flag", "new-flag", "string-flag"]
    );
    assert_eq!(doc["flags"]["int-flag"]["defaultVariant"], json!("two"));
    assert_eq!(
        second.sync_context.map(|c| Value::Object(c.0)),
        Some(json!({"env": "prod"}))
    );
}

#[tokio::test]
async fn sync_context_is_empty_without_static_context() {
    let daemon = start(|_| {}).await;
    let mut stream = sync_stream(&daemon, Request::new(SyncFlagsRequest::default())).await;
    let first = next(&mut stream).await;
    assert_eq!(
        first.sync_context.map(|c| Value::Object(c.0)),
        Some(json!({}))
    );
}

#[tokio::test]
async fn fetch_all_flags_equals_the_sync_document() {
    let daemon = start(|_| {}).await;
    let mut stream = sync_stream(&daemon, Request::new(SyncFlagsRequest::default())).await;
    let synced = next(&mut stream).await.flag_configuration;
    let fetched = daemon
        .sync_client()
        .await
        .fetch_all_flags(FetchAllFlagsRequest::default())
        .await
        .expect("FetchAllFlags")
        .into_inner()
        .flag_configuration;
    assert_eq!(fetched, synced);

    let selected = daemon
        .sync_client()
        .await
        .fetch_all_flags(with_selector(
            FetchAllFlagsRequest::default(),
            "flagSetId=set-a",
        ))
        .await
        .expect("FetchAllFlags with selector")
        .into_inner();
    let doc: Value = serde_json::from_str(&selected.flag_configuration).unwrap();
    assert_eq!(keys(&doc), ["bool-flag", "string-flag"]);
}

#[tokio::test]
async fn get_metadata_returns_the_static_context() {
    let daemon = start(|s| {
        s.static_context.insert("env".into(), json!("prod"));
        s.static_context.insert("region".into(), json!("eu-west-1"));
    })
    .await;
    let response = daemon
        .sync_client()
        .await
        .get_metadata(GetMetadataRequest::default())
        .await
        .expect("GetMetadata")
        .into_inner();
    assert_eq!(
        response.metadata.map(|m| Value::Object(m.0)),
        Some(json!({"env": "prod", "region": "eu-west-1"}))
    );
}

#[tokio::test]
async fn disabled_metadata_is_unimplemented() {
    let daemon = start(|s| s.disable_sync_metadata = true).await;
    let status = daemon
        .sync_client()
        .await
        .get_metadata(GetMetadataRequest::default())
        .await
        .expect_err("metadata disabled");
    assert_eq!(status.code(), Code::Unimplemented);
    assert_eq!(status.message(), "metadata endpoint disabled");
}

#[tokio::test]
async fn bad_selectors_are_invalid_argument() {
    let daemon = start(|_| {}).await;
    let mut client = daemon.sync_client().await;

    let status = client
        .sync_flags(with_selector(SyncFlagsRequest::default(), "bogus=1"))
        .await
        .expect_err("bad header selector");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("\"bogus\""),
        "{}",
        status.message()
    );

    let body = SyncFlagsRequest {
        provider_id: String::new(),
        selector: "flagset=x".into(),
    };
    let status = client
        .sync_flags(body)
        .await
        .expect_err("bad body selector");
    assert_eq!(status.code(), Code::InvalidArgument);

    let status = client
        .fetch_all_flags(with_selector(FetchAllFlagsRequest::default(), "nope=1"))
        .await
        .expect_err("bad fetch selector");
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn selectors_filter_and_the_header_wins_over_the_body() {
    let daemon = start(|_| {}).await;

    let mut by_set = sync_stream(
        &daemon,
        with_selector(SyncFlagsRequest::default(), "flagSetId=set-a"),
    )
    .await;
    assert_eq!(
        keys(&document(&next(&mut by_set).await)),
        ["bool-flag", "string-flag"]
    );

    let body = SyncFlagsRequest {
        provider_id: "p".into(),
        selector: format!("source={}", daemon.source(1)),
    };
    let mut by_source = sync_stream(&daemon, Request::new(body.clone())).await;
    assert_eq!(keys(&document(&next(&mut by_source).await)), ["int-flag"]);

    let mut header_wins = sync_stream(&daemon, with_selector(body, "flagSetId=set-a")).await;
    assert_eq!(
        keys(&document(&next(&mut header_wins).await)),
        ["bool-flag", "string-flag"]
    );

    let mut null_set = sync_stream(
        &daemon,
        with_selector(SyncFlagsRequest::default(), "flagSetId="),
    )
    .await;
    assert_eq!(keys(&document(&next(&mut null_set).await)), ["int-flag"]);
}

#[tokio::test]
async fn changes_invisible_under_the_selector_send_nothing() {
    let daemon = start(|_| {}).await;
    let mut stream = sync_stream(
        &daemon,
        with_selector(SyncFlagsRequest::default(), "flagSetId=set-a"),
    )
    .await;
    next(&mut stream).await;

    // A change in another flag set first, then one in set-a: the stream's next message
    // must be the set-a change (the first produced an identical document and was skipped).
    replace_by_rename(&daemon.files[1], FILE_B_CHANGED);
    support::eventually("b.json applied", || async {
        let fetched = daemon
            .sync_client()
            .await
            .fetch_all_flags(FetchAllFlagsRequest::default())
            .await
            .unwrap()
            .into_inner();
        fetched.flag_configuration.contains("new-flag")
    })
    .await;
    replace_by_rename(
        &daemon.files[0],
        &FILE_A.replace("\"owner\": \"ann\"", "\"owner\": \"bob\""),
    );
    let doc = document(&next(&mut stream).await);
    assert_eq!(doc["flags"]["bool-flag"]["metadata"]["owner"], json!("bob"));
}

#[tokio::test]
async fn stream_deadline_ends_sync_flags_with_deadline_exceeded() {
    let daemon = start(|s| s.stream_deadline = Some(Duration::from_millis(300))).await;
    let mut stream = sync_stream(&daemon, Request::new(SyncFlagsRequest::default())).await;
    next(&mut stream).await;
    let status = tokio::time::timeout(support::PATIENCE, stream.message())
        .await
        .expect("stream ends in time")
        .expect_err("deadline status");
    assert_eq!(status.code(), Code::DeadlineExceeded);
}

#[tokio::test]
async fn frequent_client_keepalive_pings_do_not_cut_the_stream() {
    let daemon = start(|_| {}).await;
    // A ping every 50 ms: grpc-go's default enforcement (one per 5 minutes, 2 strikes)
    // would answer GOAWAY ENHANCE_YOUR_CALM within the first few pings.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", daemon.sync()))
        .unwrap()
        .http2_keep_alive_interval(Duration::from_millis(50))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true)
        .connect()
        .await
        .unwrap();
    let mut client =
        flagpole::service::proto::sync_v1::flag_sync_service_client::FlagSyncServiceClient::new(
            channel,
        );
    let mut stream = client
        .sync_flags(SyncFlagsRequest::default())
        .await
        .unwrap()
        .into_inner();
    next(&mut stream).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    replace_by_rename(&daemon.files[1], FILE_B_CHANGED);
    let doc = document(&next(&mut stream).await);
    assert!(doc["flags"].get("new-flag").is_some());
}

#[tokio::test]
async fn shutdown_ends_sync_streams_cleanly() {
    let mut daemon = start(|_| {}).await;
    let mut stream = sync_stream(&daemon, Request::new(SyncFlagsRequest::default())).await;
    next(&mut stream).await;
    daemon.begin_shutdown();
    let end = tokio::time::timeout(support::PATIENCE, stream.message())
        .await
        .expect("stream ends in time");
    assert!(matches!(end, Ok(None)), "clean end of stream, got {end:?}");
    daemon.stop().await.expect("clean daemon stop");
}

#[tokio::test]
async fn active_sync_streams_are_a_metric() {
    let daemon = start(|_| {}).await;
    let request = SyncFlagsRequest {
        provider_id: "test-provider".into(),
        selector: "flagSetId=set-a".into(),
    };
    let mut stream = sync_stream(&daemon, Request::new(request)).await;
    next(&mut stream).await;
    let line = "feature_flag_flagd_sync_active_streams{provider_id=\"test-provider\",selector=\"flagSetId=set-a\"} 1\n";
    let (status, body) = http1::call(daemon.management(), "GET", "/metrics")
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(body.contains(line), "{body}");
    drop(stream);
    support::eventually("gauge series removed", || async {
        let (_, body) = http1::call(daemon.management(), "GET", "/metrics")
            .await
            .unwrap();
        !body.contains("test-provider")
    })
    .await;
}
