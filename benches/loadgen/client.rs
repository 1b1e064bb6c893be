//! The client side: the scenarios, HTTP/2 and HTTP/1.1 connections, closed-loop workers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use flagpole::service::proto::evaluation_v1 as pb;
use flagpole::service::wire::JsonStruct;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Map, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;

/// How a scenario talks to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// gRPC over HTTP/2, several requests in flight per connection.
    Grpc,
    /// gRPC-Web (binary) over HTTP/1.1, one request at a time per connection.
    GrpcWeb,
    /// JSON over HTTP/1.1 (Connect unary, OFREP).
    Json,
}

/// One measured request shape.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Short name (the JSON key).
    pub name: &'static str,
    /// What it is, for the table.
    pub what: &'static str,
    /// The least flagpole/peer throughput ratio the issue asks for, if any.
    pub goal: Option<f64>,
    transport: Transport,
    path: String,
    content_type: &'static str,
    body: Bytes,
    /// Served on flagpole's OFREP port (else its gRPC port); the peer serves every JSON
    /// scenario on its HTTP port and every gRPC one on its gRPC port.
    ofrep: bool,
}

impl Scenario {
    /// The address to load: flagpole's or the peer's port for this scenario.
    pub fn address(&self, flagpole: bool, grpc: SocketAddr, http: SocketAddr) -> SocketAddr {
        match (flagpole, self.transport) {
            (true, _) if self.ofrep => http,
            (true, _) => grpc,
            (false, Transport::Json) => http,
            (false, _) => grpc,
        }
    }
}

/// The request context every scenario sends (as the evaluation bench's).
pub fn context() -> Map<String, Value> {
    match json!({"targetingKey": "user-8d2f1c", "email": "jane.doe@example.com",
        "version": "1.5.3", "plan": "enterprise", "country": "DE"})
    {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn frame(message: &impl prost::Message) -> Bytes {
    let payload = message.encode_to_vec();
    let mut out = Vec::with_capacity(5 + payload.len());
    out.push(0);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&payload);
    out.into()
}

const V1: &str = "/flagd.evaluation.v1.Service/";

fn boolean(key: &str) -> Bytes {
    frame(&pb::ResolveBooleanRequest {
        flag_key: key.into(),
        context: Some(JsonStruct(context())),
    })
}

/// Every scenario of issue 16, point 2.
pub fn scenarios() -> Vec<Scenario> {
    let grpc = |name, what, method: &str, body, goal| Scenario {
        name,
        what,
        goal,
        transport: Transport::Grpc,
        path: format!("{V1}{method}"),
        content_type: "application/grpc",
        body,
        ofrep: false,
    };
    let json_body = |v: Value| Bytes::from(v.to_string());
    vec![
        grpc(
            "grpc_boolean_static",
            "gRPC ResolveBoolean, static flag",
            "ResolveBoolean",
            boolean("static-bool"),
            Some(0.95),
        ),
        grpc(
            "grpc_boolean_if_in",
            "gRPC ResolveBoolean, `if`/`in` rule",
            "ResolveBoolean",
            boolean("email-rule"),
            Some(0.95),
        ),
        grpc(
            "grpc_string_fractional",
            "gRPC ResolveString, 4-way fractional",
            "ResolveString",
            frame(&pb::ResolveStringRequest {
                flag_key: "fractional".into(),
                context: Some(JsonStruct(context())),
            }),
            Some(0.95),
        ),
        grpc(
            "grpc_resolve_all",
            "gRPC ResolveAll, 100 flags",
            "ResolveAll",
            frame(&pb::ResolveAllRequest {
                context: Some(JsonStruct(context())),
            }),
            Some(0.80),
        ),
        Scenario {
            name: "connect_json",
            what: "Connect JSON unary ResolveBoolean over HTTP/1.1",
            goal: Some(0.80),
            transport: Transport::Json,
            path: format!("{V1}ResolveBoolean"),
            content_type: "application/json",
            body: json_body(json!({"flagKey": "static-bool", "context": context()})),
            ofrep: false,
        },
        Scenario {
            name: "ofrep_single",
            what: "OFREP single flag over HTTP/1.1",
            goal: Some(0.80),
            transport: Transport::Json,
            path: "/ofrep/v1/evaluate/flags/static-bool".into(),
            content_type: "application/json",
            body: json_body(json!({"context": context()})),
            ofrep: true,
        },
        Scenario {
            name: "ofrep_bulk",
            what: "OFREP bulk, 100 flags, over HTTP/1.1",
            goal: Some(0.80),
            transport: Transport::Json,
            path: "/ofrep/v1/evaluate/flags".into(),
            content_type: "application/json",
            body: json_body(json!({"context": context()})),
            ofrep: true,
        },
        Scenario {
            name: "grpc_web",
            what: "gRPC-Web ResolveBoolean (binary) over HTTP/1.1",
            goal: None,
            transport: Transport::GrpcWeb,
            path: format!("{V1}ResolveBoolean"),
            content_type: "application/grpc-web+proto",
            body: boolean("static-bool"),
            ofrep: false,
        },
    ]
}

/// Latencies and errors of one run.
#[derive(Debug, Default)]
pub struct Stats {
    latencies_ns: Vec<u64>,
    /// Failed requests (transport error, non-200, non-zero grpc-status).
    pub errors: u64,
    measured: Duration,
}

impl Stats {
    /// Completed requests per second over the measured window.
    pub fn rps(&self) -> f64 {
        let secs = self.measured.as_secs_f64();
        if secs > 0.0 {
            self.latencies_ns.len() as f64 / secs
        } else {
            0.0
        }
    }

    /// Nearest-rank percentile in microseconds (`q` in 0..=1); sorts on first use.
    pub fn percentile_us(&self, q: f64) -> f64 {
        let mut v = self.latencies_ns.clone();
        v.sort_unstable();
        percentile(&v, q)
    }

    /// Runs concatenated (windows added up).
    pub fn merge(runs: Vec<Stats>) -> Stats {
        let mut out = Stats::default();
        for r in runs {
            out.latencies_ns.extend(r.latencies_ns);
            out.errors += r.errors;
            out.measured += r.measured;
        }
        out
    }

    /// The JSON summary.
    pub fn summary(&self) -> Value {
        let mut v = self.latencies_ns.clone();
        v.sort_unstable();
        json!({
            "requests": v.len(), "errors": self.errors, "seconds": self.measured.as_secs_f64(),
            "rps": self.rps(),
            "p50_us": percentile(&v, 0.50), "p99_us": percentile(&v, 0.99),
            "p999_us": percentile(&v, 0.999),
        })
    }
}

fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64 / 1e3
}

/// TLS clients for a server started with `-c/-k`: one per ALPN protocol, so an HTTP/1.1
/// connection is never offered h2 (the server would choose it).
#[derive(Clone)]
pub struct Tls {
    h2: TlsConnector,
    h1: TlsConnector,
}

impl Tls {
    /// Clients trusting the CA certificate(s) in `ca_pem`.
    pub fn new(ca_pem: &std::path::Path) -> Result<Tls, String> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca_pem)
            .map_err(|e| format!("{}: {e}", ca_pem.display()))?
        {
            let cert = cert.map_err(|e| format!("{}: {e}", ca_pem.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("{}: {e}", ca_pem.display()))?;
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let connector = |alpn: &[u8]| -> Result<TlsConnector, String> {
            let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            config.alpn_protocols = vec![alpn.to_vec()];
            Ok(TlsConnector::from(std::sync::Arc::new(config)))
        };
        Ok(Tls {
            h2: connector(b"h2")?,
            h1: connector(b"http/1.1")?,
        })
    }
}

/// At most this many latencies are kept per run (memory bound).
const MAX_SAMPLES: usize = 20_000_000;

/// Loads `addr` with `scenario`: `concurrency` closed-loop workers over `connections`
/// HTTP/2 connections (HTTP/1.1: one connection per worker), `warmup` unrecorded, then
/// `duration` recorded.
pub async fn run(
    scenario: &Scenario,
    addr: SocketAddr,
    connections: usize,
    concurrency: usize,
    duration: Duration,
    warmup: Duration,
    tls: Option<&Tls>,
) -> Result<Stats, String> {
    let start = Instant::now();
    let record_from = start + warmup;
    let end = record_from + duration;
    let cap = MAX_SAMPLES / concurrency.max(1);
    let mut workers = JoinSet::new();
    match scenario.transport {
        Transport::Grpc => {
            let mut senders = Vec::new();
            for _ in 0..connections.max(1) {
                senders.push(h2(addr, tls).await?);
            }
            let uri: http::Uri = format!("http://{addr}{}", scenario.path)
                .parse()
                .map_err(|e| format!("uri: {e}"))?;
            for i in 0..concurrency {
                let mut sender = senders[i % senders.len()].clone();
                let s = scenario.clone();
                let uri = uri.clone();
                workers.spawn(async move {
                    let mut stats = Stats::default();
                    while Instant::now() < end {
                        let t0 = Instant::now();
                        let request = request(&s, uri.clone(), None);
                        let ok = match sender.send_request(request).await {
                            Ok(response) => answered(s.transport, response).await,
                            Err(_) => false,
                        };
                        record(&mut stats, t0, ok, record_from, cap);
                        if !ok && sender.is_closed() {
                            break;
                        }
                    }
                    stats
                });
            }
        }
        Transport::GrpcWeb | Transport::Json => {
            let uri: http::Uri = scenario.path.parse().map_err(|e| format!("uri: {e}"))?;
            let host = HeaderValue::from_str(&addr.to_string()).map_err(|e| e.to_string())?;
            for _ in 0..concurrency {
                let mut sender = h1(addr, tls).await?;
                let s = scenario.clone();
                let uri = uri.clone();
                let host = host.clone();
                workers.spawn(async move {
                    let mut stats = Stats::default();
                    while Instant::now() < end {
                        let t0 = Instant::now();
                        let ok = match sender.ready().await {
                            Ok(()) => {
                                let request = request(&s, uri.clone(), Some(host.clone()));
                                match sender.send_request(request).await {
                                    Ok(response) => answered(s.transport, response).await,
                                    Err(_) => false,
                                }
                            }
                            Err(_) => false,
                        };
                        record(&mut stats, t0, ok, record_from, cap);
                        if !ok && sender.is_closed() {
                            break;
                        }
                    }
                    stats
                });
            }
        }
    }
    let mut all = Vec::new();
    while let Some(done) = workers.join_next().await {
        all.push(done.map_err(|e| format!("worker: {e}"))?);
    }
    let mut stats = Stats::merge(all);
    stats.measured = duration;
    Ok(stats)
}

fn record(stats: &mut Stats, t0: Instant, ok: bool, record_from: Instant, cap: usize) {
    if t0 < record_from {
        return;
    }
    if !ok {
        stats.errors += 1;
    } else if stats.latencies_ns.len() < cap {
        stats.latencies_ns.push(t0.elapsed().as_nanos() as u64);
    }
}

fn request(s: &Scenario, uri: http::Uri, host: Option<HeaderValue>) -> Request<Full<Bytes>> {
    let mut builder = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(header::CONTENT_TYPE, s.content_type);
    if s.transport == Transport::Grpc {
        builder = builder.header(header::TE, "trailers");
    }
    if let Some(host) = host {
        builder = builder.header(header::HOST, host);
    }
    builder
        .body(Full::new(s.body.clone()))
        .unwrap_or_else(|_| Request::new(Full::new(Bytes::new())))
}

/// Whether the whole response arrived and says success.
async fn answered(transport: Transport, response: Response<Incoming>) -> bool {
    if response.status() != StatusCode::OK {
        return false;
    }
    let header_status = response
        .headers()
        .get("grpc-status")
        .map(|v| v.as_bytes() == b"0");
    let Ok(collected) = response.into_body().collect().await else {
        return false;
    };
    match transport {
        Transport::Json => true,
        Transport::Grpc => match collected.trailers() {
            Some(t) => t.get("grpc-status").is_some_and(|v| v.as_bytes() == b"0"),
            None => header_status == Some(true),
        },
        Transport::GrpcWeb => {
            header_status == Some(true)
                || collected
                    .to_bytes()
                    .windows(13)
                    .any(|w| w.eq_ignore_ascii_case(b"grpc-status:0"))
        }
    }
}

/// A TCP connection to `addr`, wrapped in TLS with `connector` when given.
async fn open<T>(
    addr: SocketAddr,
    connector: Option<&TlsConnector>,
    then: T,
) -> Result<T::Output, String>
where
    T: Handshake,
{
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    match connector {
        None => then.over(stream).await,
        Some(c) => {
            let name = ServerName::from(addr.ip());
            let stream = c
                .connect(name, stream)
                .await
                .map_err(|e| format!("{addr}: TLS: {e}"))?;
            then.over(stream).await
        }
    }
}

/// An HTTP handshake over any byte stream (plain TCP or TLS).
trait Handshake {
    type Output;
    async fn over<S>(self, io: S) -> Result<Self::Output, String>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static;
}

struct H2;
struct H1;

impl Handshake for H2 {
    type Output = http2::SendRequest<Full<Bytes>>;
    async fn over<S>(self, io: S) -> Result<Self::Output, String>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(1 << 20)
            .initial_connection_window_size(1 << 22)
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| format!("h2: {e}"))?;
        tokio::spawn(connection);
        Ok(sender)
    }
}

impl Handshake for H1 {
    type Output = http1::SendRequest<Full<Bytes>>;
    async fn over<S>(self, io: S) -> Result<Self::Output, String>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, connection) = http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| format!("http/1.1: {e}"))?;
        tokio::spawn(connection);
        Ok(sender)
    }
}

/// An HTTP/2 connection (prior knowledge, as gRPC clients use; ALPN h2 over TLS).
pub async fn h2(
    addr: SocketAddr,
    tls: Option<&Tls>,
) -> Result<http2::SendRequest<Full<Bytes>>, String> {
    open(addr, tls.map(|t| &t.h2), H2).await
}

async fn h1(
    addr: SocketAddr,
    tls: Option<&Tls>,
) -> Result<http1::SendRequest<Full<Bytes>>, String> {
    open(addr, tls.map(|t| &t.h1), H1).await
}

/// Whether a gRPC server on `addr` answers ResolveBoolean for `static-bool` with OK.
pub async fn probe(addr: SocketAddr, tls: Option<&Tls>) -> bool {
    let attempt = async {
        let mut sender = h2(addr, tls).await.ok()?;
        let uri: http::Uri = format!("http://{addr}{V1}ResolveBoolean").parse().ok()?;
        let s = &scenarios()[0];
        let response = sender.send_request(request(s, uri, None)).await.ok()?;
        Some(answered(Transport::Grpc, response).await)
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), attempt).await,
        Ok(Some(true))
    )
}
