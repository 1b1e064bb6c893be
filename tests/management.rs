//! The management port (spec 7.1, 7.2): `/healthz`, `/readyz`, `grpc.health.v1` and
//! `/metrics`, over real sockets against a daemon fed from temporary flag files.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use flagpole::service::proto::evaluation_v1::service_client::ServiceClient as V1Client;
use flagpole::service::proto::evaluation_v1::{
    EventStreamRequest, ResolveBooleanRequest, ResolveStringRequest,
};
use flagpole::service::proto::evaluation_v2::service_client::ServiceClient as V2Client;
use flagpole::service::proto::evaluation_v2::ResolveBooleanRequest as V2BooleanRequest;
use flagpole::service::wire::JsonStruct;
use serde_json::json;
use support::{channel, eventually, file_source, http1, replace_by_rename, TestDaemon};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const FLAGS: &str = r#"{"flags": {
  "bool-flag": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
  "targeted-flag": {
    "state": "ENABLED",
    "variants": {"internal": "staff", "external": "guest"},
    "defaultVariant": "external",
    "targeting": {"if": [{"ends_with": [{"var": "email"}, "@example.com"]}, "internal", null]}
  }
}}"#;

/// One sample of the Prometheus text format.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the text exposition strictly: every line is a `# HELP`/`# TYPE` comment or
/// `name{label="value",...} value`, and every sample belongs to a family declared by a
/// preceding `# TYPE` line. Panics (failing the test) on anything else.
fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut families: HashSet<String> = HashSet::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            let kind = parts.next().unwrap();
            let name = parts.next().expect("comment names a metric");
            assert!(valid_name(name), "bad metric name in {line:?}");
            if kind == "TYPE" {
                let kind = parts.next().expect("type");
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                    "bad type in {line:?}"
                );
                families.insert(name.to_owned());
            } else {
                assert_eq!(kind, "HELP", "unknown comment {line:?}");
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            other => other
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => {
                let inner = rest.strip_suffix('}').expect("labels end with }");
                (name, parse_labels(inner, line))
            }
        };
        assert!(valid_name(name), "bad metric name in {line:?}");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|base| families.contains(*base))
            .unwrap_or(name);
        assert!(families.contains(family), "sample without # TYPE: {line:?}");
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    samples
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `a="x",b="y\"z"` → map; panics on malformed input.
fn parse_labels(mut inner: &str, line: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    while !inner.is_empty() {
        let (name, rest) = inner
            .split_once("=\"")
            .unwrap_or_else(|| panic!("bad label in {line:?}"));
        assert!(valid_name(name), "bad label name in {line:?}");
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    _ => panic!("bad escape in {line:?}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value in {line:?}"),
            }
        };
        labels.insert(name.to_owned(), value);
        inner = &rest[end + 1..];
        inner = inner.strip_prefix(',').unwrap_or(inner);
    }
    labels
}

/// The value of the sample `name` whose labels include all of `labels`, if exactly one.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert!(matching.len() <= 1, "ambiguous {name} {labels:?}");
    matching.first().map(|s| s.value)
}

async fn scrape(daemon: &TestDaemon) -> Vec<Sample> {
    let (status, body) = http1::call(daemon.management(), "GET", "/metrics")
        .await
        .unwrap();
    assert_eq!(status, 200);
    parse_exposition(&body)
}

async fn grpc_health(daemon: &TestDaemon) -> i32 {
    let mut health = HealthClient::new(channel(daemon.management()).await);
    health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("management grpc health")
        .into_inner()
        .status
}

/// `/readyz` called the way an ALB gRPC health check calls it; the gRPC status code.
async fn grpc_readyz(daemon: &TestDaemon) -> tonic::Code {
    let mut grpc = tonic::client::Grpc::new(channel(daemon.management()).await);
    grpc.ready().await.expect("management port reachable");
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let path = http::uri::PathAndQuery::from_static("/readyz");
    match grpc.unary(tonic::Request::new(()), path, codec).await {
        Ok(_) => tonic::Code::Ok,
        Err(status) => status.code(),
    }
}

fn context(value: serde_json::Value) -> Option<JsonStruct> {
    Some(JsonStruct(value.as_object().unwrap().clone()))
}

#[tokio::test]
async fn readyz_waits_for_the_first_configuration() {
    let daemon = TestDaemon::full(&[])
        .launch(|settings, dir| {
            settings.sources = vec![file_source(&dir.join("later.json"))];
        })
        .await;
    let (status, _) = http1::call(daemon.management(), "GET", "/healthz")
        .await
        .unwrap();
    assert_eq!(status, 200);
    let (status, body) = http1::call(daemon.management(), "GET", "/readyz")
        .await
        .unwrap();
    assert_eq!(status, 412, "not ready before any configuration");
    assert!(body.is_empty());
    assert_eq!(grpc_health(&daemon).await, ServingStatus::NotServing as i32);
    assert_eq!(grpc_readyz(&daemon).await, tonic::Code::Unavailable);

    replace_by_rename(&daemon.dir.path().join("later.json"), FLAGS);
    daemon.wait_ready().await;
    assert_eq!(grpc_readyz(&daemon).await, tonic::Code::Ok);
    eventually("management grpc health SERVING", || async {
        grpc_health(&daemon).await == ServingStatus::Serving as i32
    })
    .await;
}

#[tokio::test]
async fn readiness_fails_as_soon_as_shutdown_begins() {
    // A long drain delay keeps every listener open after shutdown begins.
    let mut daemon = TestDaemon::full(&[("flags.json", FLAGS)])
        .start(|settings, _| {
            settings.drain_delay = Duration::from_secs(120);
        })
        .await;
    daemon.begin_shutdown();
    eventually("readyz 412", || async {
        matches!(
            http1::call(daemon.management(), "GET", "/readyz").await,
            Ok((412, _))
        )
    })
    .await;
    assert_eq!(grpc_health(&daemon).await, ServingStatus::NotServing as i32);
    // Still alive and still serving evaluations: the listeners have not closed.
    let (status, _) = http1::call(daemon.management(), "GET", "/healthz")
        .await
        .unwrap();
    assert_eq!(status, 200);
    let response = V1Client::new(channel(daemon.evaluation).await)
        .resolve_boolean(ResolveBooleanRequest {
            flag_key: "bool-flag".into(),
            context: None,
        })
        .await
        .expect("evaluation still served during the drain delay");
    assert!(response.into_inner().value);
    assert!(!daemon.has_stopped());
}

#[tokio::test]
async fn management_paths_accept_any_method() {
    let daemon = TestDaemon::full(&[("flags.json", FLAGS)])
        .start(|_, _| {})
        .await;
    for method in ["GET", "POST", "HEAD", "PUT"] {
        let (status, _) = http1::call(daemon.management(), method, "/healthz")
            .await
            .unwrap();
        assert_eq!(status, 200, "{method} /healthz");
        let (status, _) = http1::call(daemon.management(), method, "/readyz")
            .await
            .unwrap();
        assert_eq!(status, 200, "{method} /readyz");
    }
    let (status, _) = http1::call(daemon.management(), "GET", "/nope")
        .await
        .unwrap();
    assert_eq!(status, 404);
}

#[tokio::test]
async fn metrics_count_exactly_the_evaluations_made() {
    let daemon = TestDaemon::full(&[("flags.json", FLAGS)])
        .start(|_, _| {})
        .await;
    let mut v1 = V1Client::new(channel(daemon.evaluation).await);
    let mut v2 = V2Client::new(channel(daemon.evaluation).await);
    for _ in 0..3 {
        v2.resolve_boolean(V2BooleanRequest {
            flag_key: "bool-flag".into(),
            context: None,
        })
        .await
        .unwrap();
    }
    for _ in 0..2 {
        let response = v1
            .resolve_string(ResolveStringRequest {
                flag_key: "targeted-flag".into(),
                context: context(json!({"email": "ann@example.com"})),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.variant, "internal");
    }
    let missing = v1
        .resolve_boolean(ResolveBooleanRequest {
            flag_key: "missing-flag".into(),
            context: None,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let mismatch = v1
        .resolve_string(ResolveStringRequest {
            flag_key: "bool-flag".into(),
            context: None,
        })
        .await
        .unwrap_err();
    assert_eq!(mismatch.code(), Code::InvalidArgument);

    let samples = scrape(&daemon).await;
    let impressions = "feature_flag_flagd_impression_total";
    let reasons = "feature_flag_flagd_result_reason_total";
    let flagd = ("feature_flag_provider_name", "flagd");
    assert_eq!(
        value(
            &samples,
            impressions,
            &[
                ("feature_flag_key", "bool-flag"),
                ("feature_flag_result_variant", "on"),
                ("feature_flag_reason", "STATIC"),
                flagd
            ]
        ),
        Some(3.0)
    );
    assert_eq!(
        value(
            &samples,
            impressions,
            &[
                ("feature_flag_key", "targeted-flag"),
                ("feature_flag_result_variant", "internal"),
                ("feature_flag_reason", "TARGETING_MATCH"),
                flagd
            ]
        ),
        Some(2.0)
    );
    let total_impressions: f64 = samples
        .iter()
        .filter(|s| s.name == impressions)
        .map(|s| s.value)
        .sum();
    assert_eq!(total_impressions, 5.0, "only successes are impressions");
    assert_eq!(
        value(
            &samples,
            reasons,
            &[
                ("feature_flag_key", "bool-flag"),
                ("feature_flag_reason", "STATIC"),
                flagd
            ]
        ),
        Some(3.0)
    );
    assert_eq!(
        value(
            &samples,
            reasons,
            &[
                ("ExceptionTypeKeyName", "FLAG_NOT_FOUND"),
                ("feature_flag_reason", "ERROR"),
                flagd
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &samples,
            reasons,
            &[
                ("ExceptionTypeKeyName", "TYPE_MISMATCH"),
                ("feature_flag_reason", "ERROR")
            ]
        ),
        Some(1.0)
    );
    let total_reasons: f64 = samples
        .iter()
        .filter(|s| s.name == reasons)
        .map(|s| s.value)
        .sum();
    assert_eq!(total_reasons, 7.0);

    let route = |path| {
        value(
            &samples,
            "http_server_request_duration_seconds_count",
            &[
                ("http_route", path),
                ("http_request_method", "POST"),
                ("http_response_status_code", "200"),
                ("service_name", "flagd"),
            ],
        )
    };
    assert_eq!(
        route("/flagd.evaluation.v2.Service/ResolveBoolean"),
        Some(3.0)
    );
    assert_eq!(
        route("/flagd.evaluation.v1.Service/ResolveString"),
        Some(3.0)
    );
    assert_eq!(
        route("/flagd.evaluation.v1.Service/ResolveBoolean"),
        Some(1.0)
    );

    let source = daemon.source(0);
    let source_label = [("source", source.as_str())];
    let synced = value(
        &samples,
        "flagpole_source_last_sync_timestamp_seconds",
        &source_label,
    )
    .expect("last sync timestamp");
    assert!(synced > 1.7e9, "a Unix time, got {synced}");
    assert_eq!(
        value(
            &samples,
            "flagpole_source_rejected_payloads_total",
            &source_label
        ),
        Some(0.0)
    );
    assert_eq!(
        value(
            &samples,
            "flagpole_source_applied_payloads_total",
            &source_label
        ),
        Some(1.0)
    );
    let age = value(&samples, "flagpole_configuration_age_seconds", &[]).expect("age");
    assert!(age >= 0.0);
}

#[tokio::test]
async fn rejected_payloads_and_open_event_streams_are_counted() {
    let daemon = TestDaemon::full(&[("flags.json", FLAGS)])
        .start(|_, _| {})
        .await;
    let mut events = V1Client::new(channel(daemon.evaluation).await)
        .event_stream(EventStreamRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        events.message().await.unwrap().unwrap().r#type,
        "provider_ready"
    );
    let samples = scrape(&daemon).await;
    assert_eq!(
        value(&samples, "flagpole_event_streams_open", &[]),
        Some(1.0)
    );

    replace_by_rename(&daemon.files[0], "{ not json");
    let source = daemon.source(0);
    eventually("one rejected payload", || async {
        let samples = scrape(&daemon).await;
        value(
            &samples,
            "flagpole_source_rejected_payloads_total",
            &[("source", source.as_str())],
        ) == Some(1.0)
    })
    .await;
    drop(events);
    eventually("event stream gauge back to 0", || async {
        value(&scrape(&daemon).await, "flagpole_event_streams_open", &[]) == Some(0.0)
    })
    .await;
}

#[tokio::test]
async fn flag_keys_beyond_the_limit_share_one_series() {
    let daemon = TestDaemon::full(&[("flags.json", FLAGS)])
        .start(|settings, _| {
            settings.metrics_key_limit = 1;
        })
        .await;
    let mut v1 = V1Client::new(channel(daemon.evaluation).await);
    v1.resolve_boolean(ResolveBooleanRequest {
        flag_key: "bool-flag".into(),
        context: None,
    })
    .await
    .unwrap();
    v1.resolve_string(ResolveStringRequest {
        flag_key: "targeted-flag".into(),
        context: None,
    })
    .await
    .unwrap();
    let samples = scrape(&daemon).await;
    let impressions = "feature_flag_flagd_impression_total";
    assert_eq!(
        value(&samples, impressions, &[("feature_flag_key", "bool-flag")]),
        Some(1.0)
    );
    assert_eq!(
        value(
            &samples,
            impressions,
            &[("feature_flag_key", "targeted-flag")]
        ),
        None
    );
    assert_eq!(
        value(
            &samples,
            impressions,
            &[
                ("feature_flag_key", "__other__"),
                ("feature_flag_result_variant", "__other__")
            ]
        ),
        Some(1.0)
    );
}

#[test]
fn exposition_parser_rejects_malformed_lines() {
    let ok = "# HELP a x\n# TYPE a counter\na{b=\"c\\\"d\"} 1\n";
    assert_eq!(parse_exposition(ok)[0].labels["b"], "c\"d");
    for bad in [
        "a 1\n",                              // no # TYPE
        "# TYPE a counter\na{b=c} 1\n",       // unquoted label value
        "# TYPE a counter\na{b=\"c\"}\n",     // no value
        "# TYPE a counter\n1a 1\n",           // bad name
        "# TYPE a counter\na{b=\"c\"} one\n", // bad value
    ] {
        let result = std::panic::catch_unwind(|| parse_exposition(bad));
        assert!(result.is_err(), "accepted {bad:?}");
    }
}
