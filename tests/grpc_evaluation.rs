//! Acceptance tests for port 8013: the real daemon in-process, real flag files, the
//! generated tonic clients over real sockets.

mod support;

use std::time::{Duration, Instant};

use flagpole::service::proto::{evaluation_v1 as v1, evaluation_v2 as v2, schema_v1 as schema};
use flagpole::service::wire::JsonStruct;
use serde_json::{json, Value};
use support::{replace_by_rename, with_selector, TestDaemon};
use tokio_stream::StreamExt as _;
use tonic::transport::Channel;
use tonic::{Code, Request, Status, Streaming};

type V1Client = v1::service_client::ServiceClient<Channel>;
type V2Client = v2::service_client::ServiceClient<Channel>;
type SchemaClient = schema::service_client::ServiceClient<Channel>;

/// Priority 0: flags of every type, no targeting, no flag set.
const FLAGS_A: &str = r#"{
  "flags": {
    "bool-flag": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
    "string-flag": {"state": "ENABLED", "variants": {"hi": "hello", "bye": "goodbye"}, "defaultVariant": "hi",
                    "metadata": {"owner": "team-a", "weight": 3}},
    "int-flag": {"state": "ENABLED", "variants": {"ten": 10, "twenty": 20}, "defaultVariant": "ten"},
    "float-flag": {"state": "ENABLED", "variants": {"pi": 3.5, "e": 2.75}, "defaultVariant": "pi"},
    "object-flag": {"state": "ENABLED", "variants": {"obj": {"a": 1, "nested": {"b": [true, null, "x"]}}}, "defaultVariant": "obj"},
    "disabled-flag": {"state": "DISABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
    "no-default-flag": {"state": "ENABLED", "variants": {"on": true, "off": false}},
    "shared": {"state": "ENABLED", "variants": {"a": "from-a"}, "defaultVariant": "a"}
  }
}"#;

/// Priority 1: flag set `set-b` with set-level metadata; overrides `shared`.
const FLAGS_B: &str = r#"{
  "metadata": {"flagSetId": "set-b", "team": "b"},
  "flags": {
    "shared": {"state": "ENABLED", "variants": {"b": "from-b"}, "defaultVariant": "b"},
    "b-only": {"state": "ENABLED", "variants": {"yes": true}, "defaultVariant": "yes"}
  }
}"#;

/// Flags with targeting (need the JSONLogic engine).
const FLAGS_TARGETING: &str = r#"{
  "flags": {
    "targeting-flag": {"state": "ENABLED", "variants": {"yes": true, "no": false}, "defaultVariant": "no",
      "targeting": {"if": [{"==": [{"var": "email"}, "a@b.c"]}, "yes", null]}},
    "who-flag": {"state": "ENABLED", "variants": {"request": "request", "static": "static", "header": "header", "none": "none"},
      "defaultVariant": "none", "targeting": {"var": "who"}},
    "parse-error-flag": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on",
      "targeting": {"no_such_operator": [1, 2]}},
    "general-error-flag": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on",
      "targeting": {"if": [true, "missing-variant", "on"]}},
    "mismatch-flag": {"state": "ENABLED", "variants": {"bool": true, "text": "x"}, "defaultVariant": "bool",
      "targeting": {"if": [{"var": "text"}, "text", null]}},
    "code-default-targeting": {"state": "ENABLED", "variants": {"on": true}, "targeting": {"if": [false, "on", null]}}
  }
}"#;

async fn start_ab() -> TestDaemon {
    TestDaemon::with_files(&[("a.json", FLAGS_A), ("b.json", FLAGS_B)])
        .start(|_, _| {})
        .await
}

/// Every single-flag request of every API version: a flag key and a context.
trait Keyed {
    fn keyed(flag_key: &str, context: Option<JsonStruct>) -> Self;
}

macro_rules! keyed {
    ($($module:ident),*) => {$(
        keyed!(@each $module, ResolveBooleanRequest, ResolveStringRequest, ResolveIntRequest,
            ResolveFloatRequest, ResolveObjectRequest);
    )*};
    (@each $module:ident, $($request:ident),*) => {$(
        impl Keyed for $module::$request {
            fn keyed(flag_key: &str, context: Option<JsonStruct>) -> Self {
                $module::$request {
                    flag_key: flag_key.to_owned(),
                    context,
                }
            }
        }
    )*};
}

keyed!(v1, v2, schema);

fn context(value: Value) -> Option<JsonStruct> {
    match value {
        Value::Object(map) => Some(JsonStruct(map)),
        _ => panic!("context must be an object"),
    }
}

fn meta(metadata: Option<JsonStruct>) -> Value {
    Value::Object(metadata.expect("metadata is always set").0)
}

fn v1_bool(key: &str) -> v1::ResolveBooleanRequest {
    v1::ResolveBooleanRequest::keyed(key, None)
}

fn v1_string(key: &str) -> v1::ResolveStringRequest {
    v1::ResolveStringRequest::keyed(key, None)
}

fn assert_status(result: Result<impl std::fmt::Debug, Status>, code: Code, message: &str) {
    let status = result.expect_err("expected an error status");
    assert_eq!(status.code(), code, "status: {status:?}");
    assert_eq!(status.message(), message);
}

// ---------------------------------------------------------------------------------------
// Single-flag RPCs per version

#[tokio::test]
async fn v1_resolves_every_type() {
    let daemon = start_ab().await;
    let mut client = V1Client::new(daemon.channel().await);

    let r = client
        .resolve_boolean(v1_bool("bool-flag"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.value, r.reason.as_str(), r.variant.as_str()),
        (true, "STATIC", "on")
    );
    assert_eq!(meta(r.metadata), json!({}));

    let r = client
        .resolve_string(v1_string("string-flag"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.value.as_str(), r.reason.as_str(), r.variant.as_str()),
        ("hello", "STATIC", "hi")
    );
    assert_eq!(meta(r.metadata), json!({"owner": "team-a", "weight": 3}));

    let r = client
        .resolve_int(v1::ResolveIntRequest::keyed("int-flag", None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.value, r.variant.as_str()), (10, "ten"));

    let r = client
        .resolve_float(v1::ResolveFloatRequest::keyed("float-flag", None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.value, r.variant.as_str()), (3.5, "pi"));

    // Int variants resolve as floats too.
    let r = client
        .resolve_float(v1::ResolveFloatRequest::keyed("int-flag", None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.value, 10.0);

    let r = client
        .resolve_object(v1::ResolveObjectRequest::keyed("object-flag", None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        Value::Object(r.value.unwrap().0),
        json!({"a": 1, "nested": {"b": [true, null, "x"]}})
    );
    assert_eq!((r.reason.as_str(), r.variant.as_str()), ("STATIC", "obj"));
}

#[tokio::test]
async fn v2_resolves_every_type_with_presence() {
    let daemon = start_ab().await;
    let mut client = V2Client::new(daemon.channel().await);

    let r = client
        .resolve_boolean(v2::ResolveBooleanRequest::keyed("bool-flag", None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.value, r.reason.as_str(), r.variant.as_deref()),
        (Some(true), "STATIC", Some("on"))
    );
    assert_eq!(meta(r.metadata), json!({}));

    let r = client
        .resolve_string(v2::ResolveStringRequest::keyed("string-flag", None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.value.as_deref(), r.variant.as_deref()),
        (Some("hello"), Some("hi"))
    );
    assert_eq!(meta(r.metadata), json!({"owner": "team-a", "weight": 3}));

    let r = client
        .resolve_int(v2::ResolveIntRequest::keyed("int-flag", None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.value, r.variant.as_deref()), (Some(10), Some("ten")));

    let r = client
        .resolve_float(v2::ResolveFloatRequest::keyed("float-flag", None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.value, r.variant.as_deref()), (Some(3.5), Some("pi")));

    let r = client
        .resolve_object(v2::ResolveObjectRequest::keyed("object-flag", None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.value.map(|v| Value::Object(v.0)),
        Some(json!({"a": 1, "nested": {"b": [true, null, "x"]}}))
    );
}

#[tokio::test]
async fn schema_v1_resolves_every_type() {
    let daemon = start_ab().await;
    let mut client = SchemaClient::new(daemon.channel().await);

    let r = client
        .resolve_boolean(schema::ResolveBooleanRequest::keyed("bool-flag", None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.value, r.reason.as_str(), r.variant.as_str()),
        (true, "STATIC", "on")
    );

    let r = client
        .resolve_string(schema::ResolveStringRequest::keyed("string-flag", None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.value, "hello");
    assert_eq!(meta(r.metadata), json!({"owner": "team-a", "weight": 3}));

    let r = client
        .resolve_int(schema::ResolveIntRequest::keyed("int-flag", None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.value, 10);

    let r = client
        .resolve_float(schema::ResolveFloatRequest::keyed("float-flag", None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.value, 3.5);

    let r = client
        .resolve_object(schema::ResolveObjectRequest::keyed("object-flag", None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.value.unwrap().0["a"], json!(1));
}

// ---------------------------------------------------------------------------------------
// DISABLED and code default

#[tokio::test]
async fn disabled_flags_per_version() {
    let daemon = start_ab().await;
    let channel = daemon.channel().await;

    let r = V1Client::new(channel.clone())
        .resolve_boolean(v1_bool("disabled-flag"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.value, r.reason.as_str(), r.variant.as_str()),
        (false, "DISABLED", "")
    );
    assert_eq!(meta(r.metadata), json!({}));

    let r = V1Client::new(channel.clone())
        .resolve_object(v1::ResolveObjectRequest::keyed("disabled-flag", None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.value, r.reason.as_str()),
        (Some(JsonStruct::default()), "DISABLED")
    );

    let r = V2Client::new(channel.clone())
        .resolve_boolean(v2::ResolveBooleanRequest::keyed("disabled-flag", None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.value, r.reason.as_str(), r.variant),
        (None, "DISABLED", None)
    );
    assert!(r.metadata.is_some());

    let r = SchemaClient::new(channel)
        .resolve_boolean(schema::ResolveBooleanRequest::keyed("disabled-flag", None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.value, r.reason.as_str(), r.variant.as_str()),
        (false, "DISABLED", "")
    );
}

#[tokio::test]
async fn code_default_per_version() {
    let daemon = start_ab().await;
    let channel = daemon.channel().await;

    // v1 keeps the pre-code-default behaviour.
    assert_status(
        V1Client::new(channel.clone())
            .resolve_boolean(v1_bool("no-default-flag"))
            .await,
        Code::NotFound,
        "Flag not found",
    );

    let r = V2Client::new(channel.clone())
        .resolve_boolean(v2::ResolveBooleanRequest::keyed("no-default-flag", None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.value, r.reason.as_str(), r.variant),
        (None, "DEFAULT", None)
    );
    assert_eq!(meta(r.metadata), json!({}));

    // schema.v1 leaks flagd's FALLBACK sentinel with a zero value.
    let r = SchemaClient::new(channel)
        .resolve_boolean(schema::ResolveBooleanRequest::keyed(
            "no-default-flag",
            None,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.value, r.reason.as_str(), r.variant.as_str()),
        (false, "FALLBACK", "")
    );
}

// ---------------------------------------------------------------------------------------
// Errors

#[tokio::test]
async fn errors_map_to_flagd_status_codes() {
    let daemon = start_ab().await;
    let channel = daemon.channel().await;
    let mut c1 = V1Client::new(channel.clone());
    let mut c2 = V2Client::new(channel.clone());
    let mut cs = SchemaClient::new(channel);

    assert_status(
        c1.resolve_boolean(v1_bool("nope")).await,
        Code::NotFound,
        "Flag not found",
    );
    assert_status(
        c2.resolve_boolean(v2::ResolveBooleanRequest::keyed("nope", None))
            .await,
        Code::NotFound,
        "Flag not found",
    );
    assert_status(
        cs.resolve_boolean(schema::ResolveBooleanRequest::keyed("nope", None))
            .await,
        Code::NotFound,
        "Flag not found",
    );

    assert_status(
        c1.resolve_string(v1_string("bool-flag")).await,
        Code::InvalidArgument,
        "Type mismatch error",
    );
    assert_status(
        c2.resolve_int(v2::ResolveIntRequest::keyed("string-flag", None))
            .await,
        Code::InvalidArgument,
        "Type mismatch error",
    );
    assert_status(
        cs.resolve_object(schema::ResolveObjectRequest::keyed("bool-flag", None))
            .await,
        Code::InvalidArgument,
        "Type mismatch error",
    );

    let invalid = "invalid selector key \"bogus\", valid keys: \"flagSetId\", \"source\"";
    assert_status(
        c1.resolve_boolean(with_selector(v1_bool("bool-flag"), "bogus=1"))
            .await,
        Code::InvalidArgument,
        invalid,
    );
    assert_status(
        c2.resolve_boolean(with_selector(
            v2::ResolveBooleanRequest::keyed("bool-flag", None),
            "bogus=1",
        ))
        .await,
        Code::InvalidArgument,
        invalid,
    );
    assert_status(
        c1.resolve_all(with_selector(
            v1::ResolveAllRequest { context: None },
            "bogus=1",
        ))
        .await,
        Code::InvalidArgument,
        invalid,
    );
    assert_status(
        c1.event_stream(with_selector(v1::EventStreamRequest {}, "bogus=1"))
            .await,
        Code::InvalidArgument,
        invalid,
    );
}

#[tokio::test]
async fn targeting_outcomes_and_engine_errors() {
    let daemon = TestDaemon::with_files(&[("t.json", FLAGS_TARGETING)])
        .start(|_, _| {})
        .await;
    let channel = daemon.channel().await;
    let mut c1 = V1Client::new(channel.clone());
    let mut c2 = V2Client::new(channel);

    let r = c1
        .resolve_boolean(v1::ResolveBooleanRequest::keyed(
            "targeting-flag",
            context(json!({"email": "a@b.c"})),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.value, r.reason.as_str(), r.variant.as_str()),
        (true, "TARGETING_MATCH", "yes")
    );

    let r = c1
        .resolve_boolean(v1::ResolveBooleanRequest::keyed(
            "targeting-flag",
            context(json!({"email": "other"})),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.value, r.reason.as_str(), r.variant.as_str()),
        (false, "DEFAULT", "no")
    );

    assert_status(
        c1.resolve_boolean(v1_bool("parse-error-flag")).await,
        Code::DataLoss,
        "Error parsing input or configuration",
    );
    assert_status(
        c1.resolve_boolean(v1_bool("general-error-flag")).await,
        Code::Unknown,
        "General error",
    );
    assert_status(
        c2.resolve_boolean(v2::ResolveBooleanRequest::keyed("general-error-flag", None))
            .await,
        Code::Unknown,
        "General error",
    );

    // Targeting null without a default variant: v1 NOT_FOUND, v2 DEFAULT without value.
    assert_status(
        c1.resolve_boolean(v1_bool("code-default-targeting")).await,
        Code::NotFound,
        "Flag not found",
    );
    let r = c2
        .resolve_boolean(v2::ResolveBooleanRequest::keyed(
            "code-default-targeting",
            None,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.value, r.reason.as_str(), r.variant),
        (None, "DEFAULT", None)
    );

    // ResolveAll: per-flag errors become ERROR entries; a type mismatch keeps its variant.
    let all = c1
        .resolve_all(v1::ResolveAllRequest {
            context: context(json!({"text": true})),
        })
        .await
        .unwrap()
        .into_inner();
    let parse = &all.flags["parse-error-flag"];
    assert_eq!(
        (parse.reason.as_str(), parse.variant.as_str()),
        ("ERROR", "")
    );
    assert_eq!(parse.value, Some(v1::any_flag::Value::BoolValue(false)));
    let mismatch = &all.flags["mismatch-flag"];
    assert_eq!(
        (mismatch.reason.as_str(), mismatch.variant.as_str()),
        ("ERROR", "text")
    );
    assert_eq!(mismatch.value, Some(v1::any_flag::Value::BoolValue(false)));
    assert!(!all.flags.contains_key("code-default-targeting"));
}

// ---------------------------------------------------------------------------------------
// ResolveAll

#[tokio::test]
async fn v1_resolve_all() {
    let daemon = start_ab().await;
    let mut client = V1Client::new(daemon.channel().await);
    use v1::any_flag::Value as V;

    let all = client
        .resolve_all(v1::ResolveAllRequest { context: None })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(meta(all.metadata), json!({}));
    let entry = |key: &str| {
        let f = &all.flags[key];
        (f.reason.clone(), f.variant.clone(), f.value.clone())
    };
    assert_eq!(
        entry("bool-flag"),
        ("STATIC".into(), "on".into(), Some(V::BoolValue(true)))
    );
    assert_eq!(
        entry("string-flag"),
        (
            "STATIC".into(),
            "hi".into(),
            Some(V::StringValue("hello".into()))
        )
    );
    assert_eq!(
        entry("int-flag"),
        ("STATIC".into(), "ten".into(), Some(V::DoubleValue(10.0)))
    );
    assert_eq!(
        entry("float-flag"),
        ("STATIC".into(), "pi".into(), Some(V::DoubleValue(3.5)))
    );
    assert_eq!(
        entry("disabled-flag"),
        ("DISABLED".into(), "".into(), Some(V::BoolValue(false)))
    );
    // Duplicate keys collapse; the higher-priority source's copy is the one visible.
    assert_eq!(
        entry("shared"),
        (
            "STATIC".into(),
            "b".into(),
            Some(V::StringValue("from-b".into()))
        )
    );
    match &all.flags["object-flag"].value {
        Some(V::ObjectValue(o)) => assert_eq!(o.0["a"], json!(1)),
        other => panic!("object-flag: {other:?}"),
    }
    assert!(
        !all.flags.contains_key("no-default-flag"),
        "flags without a default variant are skipped"
    );
    assert_eq!(
        meta(all.flags["string-flag"].metadata.clone()),
        json!({"owner": "team-a", "weight": 3})
    );

    let set_b = client
        .resolve_all(with_selector(
            v1::ResolveAllRequest { context: None },
            "flagSetId=set-b",
        ))
        .await
        .unwrap()
        .into_inner();
    let mut keys: Vec<_> = set_b.flags.keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, ["b-only", "shared"]);
    assert_eq!(meta(set_b.metadata), json!({"flagSetId": "set-b"}));
    assert_eq!(
        meta(set_b.flags["b-only"].metadata.clone()),
        json!({"flagSetId": "set-b", "team": "b"})
    );

    let source_a = client
        .resolve_all(with_selector(
            v1::ResolveAllRequest { context: None },
            &format!("source={}", daemon.source(0)),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        source_a.flags["shared"].value,
        Some(V::StringValue("from-a".into()))
    );
    assert!(!source_a.flags.contains_key("b-only"));
    assert_eq!(meta(source_a.metadata), json!({"source": daemon.source(0)}));
}

#[tokio::test]
async fn schema_v1_resolve_all() {
    let daemon = start_ab().await;
    let mut client = SchemaClient::new(daemon.channel().await);
    let all = client
        .resolve_all(schema::ResolveAllRequest { context: None })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        all.flags["bool-flag"].value,
        Some(schema::any_flag::Value::BoolValue(true))
    );
    assert_eq!(all.flags["disabled-flag"].reason, "DISABLED");
    assert!(!all.flags.contains_key("no-default-flag"));
}

// ---------------------------------------------------------------------------------------
// Selectors and context

#[tokio::test]
async fn selectors_pick_flag_set_or_source_and_are_reflected() {
    let daemon = start_ab().await;
    let mut client = V1Client::new(daemon.channel().await);

    let r = client
        .resolve_string(v1_string("shared"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.value, "from-b",
        "no selector: highest-priority source wins"
    );
    assert_eq!(meta(r.metadata), json!({"flagSetId": "set-b", "team": "b"}));

    let r = client
        .resolve_string(with_selector(v1_string("shared"), "flagSetId=set-b"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.value, "from-b");
    assert_eq!(meta(r.metadata), json!({"flagSetId": "set-b", "team": "b"}));

    let source_a = daemon.source(0);
    let r = client
        .resolve_string(with_selector(
            v1_string("shared"),
            &format!("source={source_a}"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.value, "from-a");
    assert_eq!(meta(r.metadata), json!({"source": source_a}));

    // A bare selector string is a source.
    let r = client
        .resolve_string(with_selector(v1_string("shared"), &source_a))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.value, "from-a");

    // `flagSetId=` selects flags without a flag set.
    let r = client
        .resolve_string(with_selector(v1_string("shared"), "flagSetId="))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.value, "from-a");
    assert_eq!(meta(r.metadata), json!({"flagSetId": ""}));

    assert_status(
        client
            .resolve_string(with_selector(v1_string("string-flag"), "flagSetId=set-b"))
            .await,
        Code::NotFound,
        "Flag not found",
    );

    let r = V2Client::new(daemon.channel().await)
        .resolve_boolean(with_selector(
            v2::ResolveBooleanRequest::keyed("b-only", None),
            "flagSetId=set-b",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.value, Some(true));
}

#[tokio::test]
async fn context_priority_request_static_header() {
    let daemon = TestDaemon::with_files(&[("t.json", FLAGS_TARGETING)])
        .start(|settings, _| {
            settings.header_context.push(("x-who".into(), "who".into()));
        })
        .await;
    let static_daemon = TestDaemon::with_files(&[("t.json", FLAGS_TARGETING)])
        .start(|settings, _| {
            settings
                .static_context
                .insert("who".into(), json!("static"));
            settings.header_context.push(("x-who".into(), "who".into()));
        })
        .await;

    let who = |request_who: Option<&str>, header: Option<&str>| {
        let mut request = Request::new(v1::ResolveStringRequest::keyed(
            "who-flag",
            request_who.and_then(|w| context(json!({ "who": w }))),
        ));
        if let Some(h) = header {
            request.metadata_mut().insert("x-who", h.parse().unwrap());
        }
        request
    };

    let mut plain = V1Client::new(daemon.channel().await);
    let r = plain
        .resolve_string(who(Some("request"), None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.value, "request");
    let r = plain
        .resolve_string(who(Some("request"), Some("header")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.value, "header");

    let mut with_static = V1Client::new(static_daemon.channel().await);
    let r = with_static
        .resolve_string(who(Some("request"), None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.value, "static", "-X beats the request context");
    let r = with_static
        .resolve_string(who(Some("request"), Some("header")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.value, "header", "-H beats -X");

    // schema.v1 does not apply header mappings.
    let mut request = Request::new(schema::ResolveStringRequest::keyed(
        "who-flag",
        context(json!({"who": "request"})),
    ));
    request
        .metadata_mut()
        .insert("x-who", "header".parse().unwrap());
    let r = SchemaClient::new(static_daemon.channel().await)
        .resolve_string(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.value, "static");

    // v2 applies them.
    let mut request = Request::new(v2::ResolveStringRequest::keyed("who-flag", None));
    request
        .metadata_mut()
        .insert("x-who", "header".parse().unwrap());
    let r = V2Client::new(static_daemon.channel().await)
        .resolve_string(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.value.as_deref(), Some("header"));
}

#[tokio::test]
async fn request_size_limit_is_resource_exhausted() {
    let daemon = TestDaemon::with_files(&[("a.json", FLAGS_A)])
        .start(|settings, _| {
            settings.max_request_body = 1024;
        })
        .await;
    let mut client = V1Client::new(daemon.channel().await);

    let small = client
        .resolve_boolean(v1::ResolveBooleanRequest::keyed(
            "bool-flag",
            context(json!({"pad": "x".repeat(100)})),
        ))
        .await;
    assert!(small.is_ok());

    let big = client
        .resolve_boolean(v1::ResolveBooleanRequest::keyed(
            "bool-flag",
            context(json!({"pad": "x".repeat(4096)})),
        ))
        .await;
    assert_eq!(
        big.expect_err("over the limit").code(),
        Code::ResourceExhausted
    );
}

// ---------------------------------------------------------------------------------------
// EventStream

async fn next_event(stream: &mut Streaming<v1::EventStreamResponse>) -> v1::EventStreamResponse {
    tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .expect("an event within 20 s")
        .expect("stream still open")
        .expect("not an error")
}

fn changed_flags(event: &v1::EventStreamResponse) -> Value {
    assert_eq!(event.r#type, "configuration_change");
    Value::Object(event.data.clone().expect("data").0)["flags"].clone()
}

#[tokio::test]
async fn event_stream_reports_exactly_the_changed_keys() {
    let daemon = start_ab().await;
    let channel = daemon.channel().await;
    let mut all = V1Client::new(channel.clone())
        .event_stream(v1::EventStreamRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut set_b = V1Client::new(channel.clone())
        .event_stream(with_selector(v1::EventStreamRequest {}, "flagSetId=set-b"))
        .await
        .unwrap()
        .into_inner();

    let ready = next_event(&mut all).await;
    assert_eq!(ready.r#type, "provider_ready");
    assert_eq!(ready.data, Some(JsonStruct::default()));
    assert_eq!(next_event(&mut set_b).await.r#type, "provider_ready");

    // In-place rewrite: change one flag's default.
    let edited = FLAGS_A.replace(
        r#""variants": {"on": true, "off": false}, "defaultVariant": "on"},
    "string-flag""#,
        r#""variants": {"on": true, "off": false}, "defaultVariant": "off"},
    "string-flag""#,
    );
    assert_ne!(edited, FLAGS_A);
    let written = Instant::now();
    std::fs::write(daemon.file(0), &edited).unwrap();
    let event = next_event(&mut all).await;
    let in_place = written.elapsed();
    assert_eq!(
        changed_flags(&event),
        json!({"bool-flag": {"type": "update"}})
    );
    println!("write -> configuration_change (in place): {in_place:?}");

    let r = V1Client::new(channel.clone())
        .resolve_boolean(v1_bool("bool-flag"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.variant, "off");

    // Replace by rename: one flag removed, one added.
    let renamed = edited.replace(r#""float-flag""#, r#""new-flag""#);
    let written = Instant::now();
    replace_by_rename(daemon.file(0), &renamed);
    let event = next_event(&mut all).await;
    let by_rename = written.elapsed();
    assert_eq!(
        changed_flags(&event),
        json!({"float-flag": {"type": "delete"}, "new-flag": {"type": "write"}})
    );
    println!("write -> configuration_change (rename): {by_rename:?}");

    // The set-b stream saw none of that: its next event is about set-b.
    let edited_b = FLAGS_B.replace(r#""yes": true"#, r#""yes": false"#);
    std::fs::write(daemon.file(1), &edited_b).unwrap();
    let event = next_event(&mut set_b).await;
    assert_eq!(changed_flags(&event), json!({"b-only": {"type": "update"}}));
    let event = next_event(&mut all).await;
    assert_eq!(changed_flags(&event), json!({"b-only": {"type": "update"}}));
}

#[tokio::test]
async fn event_stream_v2_and_schema_v1_start_with_provider_ready() {
    let daemon = start_ab().await;
    let channel = daemon.channel().await;
    let mut s2 = V2Client::new(channel.clone())
        .event_stream(v2::EventStreamRequest {})
        .await
        .unwrap()
        .into_inner();
    let first = s2.next().await.unwrap().unwrap();
    assert_eq!(
        (first.r#type.as_str(), first.data),
        ("provider_ready", Some(JsonStruct::default()))
    );

    let mut ss = SchemaClient::new(channel)
        .event_stream(schema::EventStreamRequest {})
        .await
        .unwrap()
        .into_inner();
    let first = ss.next().await.unwrap().unwrap();
    assert_eq!(first.r#type, "provider_ready");

    std::fs::write(daemon.file(1), FLAGS_B.replace("b-only", "b-renamed")).unwrap();
    let event = tokio::time::timeout(Duration::from_secs(20), s2.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(event.r#type, "configuration_change");
    assert_eq!(
        Value::Object(event.data.unwrap().0)["flags"],
        json!({"b-only": {"type": "delete"}, "b-renamed": {"type": "write"}})
    );
    let event = tokio::time::timeout(Duration::from_secs(20), ss.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(event.r#type, "configuration_change");
}

#[tokio::test]
async fn event_stream_keep_alive_after_silence() {
    let daemon = TestDaemon::with_files(&[("a.json", FLAGS_A)])
        .start(|settings, _| {
            settings.keep_alive_interval = Duration::from_millis(100);
        })
        .await;
    let mut stream = V1Client::new(daemon.channel().await)
        .event_stream(v1::EventStreamRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next_event(&mut stream).await.r#type, "provider_ready");
    for _ in 0..2 {
        let event = next_event(&mut stream).await;
        assert_eq!(event.r#type, "keep_alive");
        assert_eq!(event.data, None);
    }
}

#[tokio::test]
async fn event_stream_deadline_ends_with_deadline_exceeded() {
    let daemon = TestDaemon::with_files(&[("a.json", FLAGS_A)])
        .start(|settings, _| {
            settings.stream_deadline = Some(Duration::from_millis(200));
        })
        .await;
    let mut stream = V2Client::new(daemon.channel().await)
        .event_stream(v2::EventStreamRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        stream.next().await.unwrap().unwrap().r#type,
        "provider_ready"
    );
    let end = tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .expect("stream ends")
        .expect("an error item");
    let status = end.expect_err("deadline exceeded");
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(status.message(), "stream closed due to server-side timeout");
}

#[tokio::test]
async fn shutdown_sends_provider_shutdown_and_returns_ok() {
    let mut daemon = start_ab().await;
    let channel = daemon.channel().await;
    let mut stream = V1Client::new(channel.clone())
        .event_stream(v1::EventStreamRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next_event(&mut stream).await.r#type, "provider_ready");

    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let mut watch = health
        .watch(tonic_health::pb::HealthCheckRequest {
            service: "flagd.evaluation.v1.Service".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    let not_serving = tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;
    assert_eq!(watch.next().await.unwrap().unwrap().status, serving);

    daemon.begin_shutdown();
    let event = next_event(&mut stream).await;
    assert_eq!(event.r#type, "provider_shutdown");
    assert_eq!(event.data, Some(JsonStruct::default()));
    assert!(
        tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .unwrap()
            .is_none(),
        "stream ends after provider_shutdown"
    );
    assert_eq!(watch.next().await.unwrap().unwrap().status, not_serving);
    drop(watch);

    daemon.stop().await.expect("daemon returns Ok");
}

// ---------------------------------------------------------------------------------------
// Reflection and health

#[tokio::test]
async fn reflection_lists_the_flagd_services() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let daemon = start_ab().await;
    let mut client = ServerReflectionClient::new(daemon.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection response");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "flagd.evaluation.v1.Service",
        "flagd.evaluation.v2.Service",
        "schema.v1.Service",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }

    // v1alpha answers too (older grpcurl).
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient as Alpha;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest as AlphaRequest;
    let mut alpha = Alpha::new(daemon.channel().await);
    let request = tonic_reflection::pb::v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(AlphaRequest::FileContainingSymbol(
            "flagd.evaluation.v2.Service".into(),
        )),
    };
    let mut responses = alpha
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.unwrap().unwrap();
    assert!(matches!(
        response.message_response,
        Some(tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(_))
    ));
}

#[tokio::test]
async fn health_reports_serving_for_every_service() {
    let daemon = start_ab().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(daemon.channel().await);
    for service in [
        "",
        "flagd.evaluation.v1.Service",
        "flagd.evaluation.v2.Service",
        "schema.v1.Service",
    ] {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service}"
        );
    }
    let unknown = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "nope".into(),
        })
        .await;
    assert_eq!(unknown.unwrap_err().code(), Code::NotFound);
}

#[tokio::test]
async fn health_is_not_serving_until_the_sources_are_ready() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    let daemon = TestDaemon::with_files(&[("a.json", "{ not json")])
        .launch(|_, _| {})
        .await;
    let channel = loop {
        // The listener is bound before `launch` returns; connecting can still race the accept loop.
        if let Ok(channel) =
            tonic::transport::Endpoint::from_shared(format!("http://{}", daemon.evaluation))
                .unwrap()
                .connect()
                .await
        {
            break channel;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let mut health = HealthClient::new(channel.clone());
    let mut watch = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.next().await.unwrap().unwrap().status,
        ServingStatus::NotServing as i32
    );
    assert_status(
        V1Client::new(channel)
            .resolve_boolean(v1_bool("bool-flag"))
            .await,
        Code::NotFound,
        "Flag not found",
    );

    std::fs::write(daemon.file(0), FLAGS_A).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), watch.next())
        .await
        .expect("health changes")
        .unwrap()
        .unwrap()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);
}
