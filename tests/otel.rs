//! OpenTelemetry traces as flagd exports them: the real binary started with
//! `--otel-collector-uri`, an OTLP/gRPC receiver on loopback built from the published OTLP
//! protobuf definitions (`opentelemetry-proto`), and real gRPC and OFREP requests. Asserts
//! the spans that arrive: names, flagd's feature-flag attributes, the W3C parent.

mod support;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use flagpole::service::proto::evaluation_v1 as v1;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use support::{eventually, http1};
use tonic::transport::Server;
use tonic::{Request, Response, Status};

const FLAGS: &str = r#"{"flags": {
  "bool-flag": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
  "who": {"state": "ENABLED", "variants": {"admin": "admin", "guest": "guest"}, "defaultVariant": "guest",
          "targeting": {"if": [{"==": [{"var": "role"}, "admin"]}, "admin", "guest"]}}
}}"#;

/// The trace and parent span a client sends in `traceparent`.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

/// Every span received, with the `service.name` of its resource.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(String, Span)>>>);

impl Received {
    fn named(&self, name: &str) -> Vec<(String, Span)> {
        let spans = self.0.lock().unwrap();
        spans
            .iter()
            .filter(|(_, s)| s.name == name)
            .cloned()
            .collect()
    }
}

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut spans = self.0.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| text(kv.value.as_ref()?.value.as_ref()?))
                .unwrap_or_default();
            for scope in resource.scope_spans {
                spans.extend(scope.spans.into_iter().map(|s| (service.clone(), s)));
            }
        }
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn text(value: &AnyValue) -> Option<String> {
    match value {
        AnyValue::StringValue(s) => Some(s.clone()),
        AnyValue::IntValue(i) => Some(i.to_string()),
        _ => None,
    }
}

/// The span's attribute `key` as text.
fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| text(kv.value.as_ref()?.value.as_ref()?))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An OTLP/gRPC receiver on an ephemeral loopback port.
async fn receiver() -> (SocketAddr, Received) {
    let received = Received::default();
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let service = TraceServiceServer::new(received.clone());
    tokio::spawn(async move {
        Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    (addr, received)
}

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.local_addr().unwrap().port()
}

/// The daemon as a child process; killed when dropped.
struct Daemon {
    child: Child,
    port: u16,
    management: u16,
    ofrep: u16,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(flags: &std::path::Path, collector: &str) -> Daemon {
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let child = Command::new(env!("CARGO_BIN_EXE_flagpole"))
        .arg("start")
        .arg("--uri")
        .arg(format!("file:{}", flags.display()))
        .args(["-p", &ports[0].to_string()])
        .args(["-m", &ports[1].to_string()])
        .args(["-g", &ports[2].to_string()])
        .args(["-r", &ports[3].to_string()])
        .args(["--otel-collector-uri", collector])
        // The SDK's batch delay: spans leave within 100 ms instead of 5 s.
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env_remove("FLAGD_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start flagpole");
    Daemon {
        child,
        port: ports[0],
        management: ports[1],
        ofrep: ports[3],
    }
}

async fn wait_ready(daemon: &Daemon) {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, daemon.management));
    eventually("the daemon is ready", || async move {
        matches!(http1::call(addr, "GET", "/readyz").await, Ok((200, _)))
    })
    .await;
}

#[tokio::test]
async fn evaluation_and_sync_spans_reach_the_collector() {
    let (collector, received) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let flags = dir.path().join("flags.json");
    std::fs::write(&flags, FLAGS).unwrap();
    let daemon = start(&flags, &format!("http://{collector}"));
    wait_ready(&daemon).await;

    // gRPC ResolveBoolean inside the caller's trace.
    let channel = support::channel(SocketAddr::from((Ipv4Addr::LOCALHOST, daemon.port))).await;
    let mut client = v1::service_client::ServiceClient::new(channel);
    let mut request = Request::new(v1::ResolveBooleanRequest {
        flag_key: "bool-flag".into(),
        context: None,
    });
    let traceparent = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    request
        .metadata_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    let answer = client.resolve_boolean(request).await.unwrap().into_inner();
    assert!(answer.value);
    // A missing flag: the span says ERROR and which error.
    let missing = client
        .resolve_boolean(v1::ResolveBooleanRequest {
            flag_key: "no-such-flag".into(),
            context: None,
        })
        .await;
    assert_eq!(missing.unwrap_err().code(), tonic::Code::NotFound);

    // OFREP, with targeting.
    let ofrep = SocketAddr::from((Ipv4Addr::LOCALHOST, daemon.ofrep));
    let reply = http1::post(
        ofrep,
        "/ofrep/v1/evaluate/flags/who",
        &[],
        r#"{"context": {"role": "admin"}}"#,
    )
    .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);

    let (r, s) = (received.clone(), received.clone());
    eventually("the evaluation spans arrive", move || {
        let r = r.clone();
        async move {
            r.named("flagEvaluationService(resolveBoolean)").len() == 2
                && r.named("ofrepService(evaluateFlag)").len() == 1
        }
    })
    .await;
    eventually("the sync span arrives", move || {
        let s = s.clone();
        async move { !s.named("jsonEvaluator(setState)").is_empty() }
    })
    .await;

    let resolves = received.named("flagEvaluationService(resolveBoolean)");
    let (service, grpc) = resolves
        .iter()
        .find(|(_, s)| attr(s, "feature_flag.key").as_deref() == Some("bool-flag"))
        .expect("a span for bool-flag");
    assert_eq!(service, "flagd");
    assert_eq!(grpc.kind, SpanKind::Server as i32);
    assert_eq!(hex(&grpc.trace_id), TRACE_ID, "the caller's trace");
    assert_eq!(
        hex(&grpc.parent_span_id),
        PARENT_ID,
        "the caller's span is the parent"
    );
    assert_eq!(
        attr(grpc, "feature_flag.provider.name").as_deref(),
        Some("flagd")
    );
    assert_eq!(
        attr(grpc, "feature_flag.provider_name").as_deref(),
        Some("flagd")
    );
    assert_eq!(
        attr(grpc, "feature_flag.result.variant").as_deref(),
        Some("on")
    );
    assert_eq!(
        attr(grpc, "feature_flag.result.reason").as_deref(),
        Some("STATIC")
    );

    let (_, failed) = resolves
        .iter()
        .find(|(_, s)| attr(s, "feature_flag.key").as_deref() == Some("no-such-flag"))
        .expect("a span for the missing flag");
    assert_eq!(
        attr(failed, "feature_flag.result.reason").as_deref(),
        Some("ERROR")
    );
    assert_eq!(
        attr(failed, "error.type").as_deref(),
        Some("FLAG_NOT_FOUND")
    );
    assert!(
        failed.parent_span_id.is_empty(),
        "no traceparent: a root span"
    );
    assert_ne!(hex(&failed.trace_id), TRACE_ID);

    let (_, ofrep_span) = &received.named("ofrepService(evaluateFlag)")[0];
    assert_eq!(ofrep_span.kind, SpanKind::Server as i32);
    assert_eq!(attr(ofrep_span, "feature_flag.key").as_deref(), Some("who"));
    assert_eq!(
        attr(ofrep_span, "feature_flag.result.variant").as_deref(),
        Some("admin")
    );
    assert_eq!(
        attr(ofrep_span, "feature_flag.result.reason").as_deref(),
        Some("TARGETING_MATCH")
    );
    assert_eq!(
        attr(ofrep_span, "feature_flag.provider.name").as_deref(),
        Some("flagd")
    );

    let (_, sync) = &received.named("jsonEvaluator(setState)")[0];
    assert_eq!(
        attr(sync, "feature_flag.sync.provider").as_deref(),
        Some("file")
    );
    assert_eq!(
        attr(sync, "feature_flag.sync.result").as_deref(),
        Some("applied")
    );
}

#[test]
fn a_bad_collector_uri_stops_the_daemon_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let flags = dir.path().join("flags.json");
    std::fs::write(&flags, FLAGS).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_flagpole"))
        .arg("start")
        .arg("--uri")
        .arg(format!("file:{}", flags.display()))
        .args(["-p", &free_port().to_string()])
        .args(["-m", &free_port().to_string()])
        .args(["-g", &free_port().to_string()])
        .args(["-r", &free_port().to_string()])
        .env("FLAGD_OTEL_COLLECTOR_URI", "ftp://collector:4317")
        .env_remove("FLAGD_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run flagpole");
    // Hang guard: a daemon that accepted the URI would serve forever.
    let deadline = std::time::Instant::now() + support::PATIENCE;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the daemon started with an ftp:// collector URI");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("invalid --otel-collector-uri \"ftp://collector:4317\""),
        "{stderr}"
    );
}
