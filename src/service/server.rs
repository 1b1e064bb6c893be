//! The port-8013 server: the three evaluation services over gRPC, gRPC-Web and Connect
//! (HTTP/2 and HTTP/1.1), gRPC reflection (v1 and v1alpha) and `grpc.health.v1`, with CORS
//! and graceful draining.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::tls::TlsAcceptor;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tonic::service::Routes;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;
use tower::util::MapResponseLayer;
use tower::ServiceBuilder;

use super::auth::{self, Refusal, RequireToken, Tokens};
use super::connect::ConnectLayer;
use super::cors::CorsOnOrigin;
use super::evaluation::{EvaluationService, StreamConfig};
use super::limits::StreamLimit;
use super::listener::{self, ConnectionConfig, Http2Config, HttpConfig, Incoming, Listener};
use super::metrics::{grpc_route, HttpMetricsLayer, Metrics};
use super::proto::{self, evaluation_v1, evaluation_v2, schema_v1};
use super::schema_v1::SchemaV1;
use super::v1::V1;
use super::v2::V2;
use crate::evaluator::Evaluator;
use crate::telemetry::Tracer;

/// Names reported by the health service: the whole server plus each evaluation service.
const HEALTH_NAMES: [&str; 4] = [
    "",
    evaluation_v1::service_server::SERVICE_NAME,
    evaluation_v2::service_server::SERVICE_NAME,
    schema_v1::service_server::SERVICE_NAME,
];

/// Why the evaluation server could not run.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ServeError {
    /// The reflection descriptors could not be loaded.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The transport failed.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// How the evaluation port behaves.
#[derive(Debug, Clone, Default)]
pub(crate) struct EvaluationConfig {
    /// Event streams: keep-alive and deadline.
    pub streams: StreamConfig,
    /// The largest request message accepted, in bytes (zero: no limit).
    pub max_request_body: usize,
    /// Origins answered with CORS headers.
    pub cors_origins: Vec<String>,
    /// HTTP/2 streams one connection may open at once.
    pub max_concurrent_streams: u32,
    /// Connection cap, header- and body-read timeouts.
    pub connections: ConnectionConfig,
    /// Bearer tokens every call but `grpc.health.v1` must carry (`None`: no authentication).
    pub auth: Option<Tokens>,
}

/// The evaluation server on port 8013, ready to [`serve`](EvaluationServer::serve).
#[derive(Debug)]
pub(crate) struct EvaluationServer {
    evaluator: Arc<Evaluator>,
    streams: StreamConfig,
    stream_limit: StreamLimit,
    metrics: Arc<Metrics>,
    max_request_body: usize,
    cors_origins: Vec<String>,
    max_concurrent_streams: u32,
    connections: ConnectionConfig,
    auth: Option<Tokens>,
    tracer: Option<Tracer>,
}

impl EvaluationServer {
    /// A server answering with `evaluator`, counting requests into `metrics` and event
    /// streams under `limit` (shared with the sync port).
    pub(crate) fn new(
        config: EvaluationConfig,
        evaluator: Arc<Evaluator>,
        metrics: Arc<Metrics>,
        limit: StreamLimit,
    ) -> EvaluationServer {
        EvaluationServer {
            evaluator,
            streams: config.streams,
            stream_limit: limit,
            metrics,
            max_request_body: config.max_request_body,
            cors_origins: config.cors_origins,
            max_concurrent_streams: config.max_concurrent_streams,
            connections: config.connections,
            auth: config.auth,
            tracer: None,
        }
    }

    /// Traces every evaluation request with `tracer` (`None`: tracing off).
    pub(crate) fn with_tracer(mut self, tracer: Option<Tracer>) -> EvaluationServer {
        self.tracer = tracer;
        self
    }

    /// Serves on `listener` (TLS only when `tls` is set) until `shutdown` is cancelled, then
    /// drains: health turns NOT_SERVING, event streams get `provider_shutdown` and end,
    /// in-flight requests finish (for at most five seconds). Health reports SERVING once
    /// `ready` is `true`.
    pub(crate) async fn serve(
        self,
        listener: impl Into<Listener>,
        tls: Option<TlsAcceptor>,
        ready: watch::Receiver<bool>,
        shutdown: CancellationToken,
    ) -> Result<(), ServeError> {
        let service = Arc::new(
            EvaluationService::new(
                self.evaluator,
                self.streams,
                shutdown.clone(),
                self.metrics.clone(),
                self.stream_limit,
            )
            .with_tracer(self.tracer),
        );
        let limit = match self.max_request_body {
            0 => usize::MAX,
            limit => limit,
        };
        let (health, health_service) = tonic_health::server::health_reporter();
        for name in HEALTH_NAMES {
            health
                .set_service_status(name, ServingStatus::NotServing)
                .await;
        }
        let mut health_task = tokio::spawn(report_health(health.clone(), ready, shutdown.clone()));

        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection().build_v1()?;
        let reflection_v1alpha = reflection().build_v1alpha()?;

        let evaluator = &service;
        // gzip both ways as grpc-go/grpc-java clients use it: requests may be compressed
        // (inflated within `limit`, tonic refuses past it with RESOURCE_EXHAUSTED), responses
        // are compressed only for a client that sent `grpc-accept-encoding: gzip`.
        let routes = Routes::new(
            evaluation_v1::service_server::ServiceServer::new(V1(evaluator.clone()))
                .max_decoding_message_size(limit)
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip),
        )
        .add_service(
            evaluation_v2::service_server::ServiceServer::new(V2(evaluator.clone()))
                .max_decoding_message_size(limit)
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip),
        )
        .add_service(
            schema_v1::service_server::ServiceServer::new(SchemaV1(evaluator.clone()))
                .max_decoding_message_size(limit)
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip),
        )
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
        // Outermost first: request metrics, CORS (answers preflights without a token), the
        // token check (gRPC health stays open for probes), then Connect (answers everything that is not gRPC or
        // gRPC-Web), then gRPC-Web (translated to gRPC), then the size-limit status fix.
        let router = ServiceBuilder::new()
            .map_request(|request: http::Request<listener::RequestBody>| {
                request.map(tonic::body::Body::new)
            })
            .layer(HttpMetricsLayer::new(
                self.metrics.clone(),
                "flagd",
                grpc_route,
            ))
            .layer(CorsOnOrigin::new(&self.cors_origins))
            .layer(RequireToken::optional(
                self.auth.as_ref(),
                refuse,
                auth::is_grpc_health,
            ))
            .layer(ConnectLayer::new(evaluator.clone(), self.max_request_body))
            .layer(tonic_web::GrpcWebLayer::new())
            .layer(MapResponseLayer::new(size_limit_is_resource_exhausted))
            .service(routes);
        let http = HttpConfig {
            header_read_timeout: self.connections.header_read_timeout,
            body_read_timeout: self.connections.body_read_timeout,
            http2: Some(Http2Config {
                // h2 would otherwise let one connection open streams until memory runs out.
                max_concurrent_streams: self.max_concurrent_streams,
                // Notice dead peers; keep NAT and load-balancer idle timers from cutting streams.
                keep_alive_interval: super::sync::KEEPALIVE_INTERVAL,
                keep_alive_timeout: super::sync::KEEPALIVE_TIMEOUT,
            }),
        };

        let listener = listener.into();
        tracing::info!(
            addr = %listener.describe(),
            tls = tls.is_some(),
            "serving flagd.evaluation.v1/v2 and schema.v1 (gRPC, gRPC-Web, Connect)"
        );
        let result = serve_until_drained(
            "evaluation server",
            listener::incoming(
                listener,
                tls,
                self.connections.max_connections,
                self.connections.header_read_timeout,
            ),
            &shutdown,
            |incoming, stop| async move {
                let stop_token = CancellationToken::new();
                let serving = listener::serve_http(incoming, router, http, stop_token.clone());
                tokio::pin!(serving);
                tokio::select! {
                    () = &mut serving => return Ok(()),
                    () = stop => {}
                }
                stop_token.cancel();
                serving.await;
                Ok(())
            },
            async {
                // Stop the reporter first so it cannot flip health back to SERVING.
                health_task.abort();
                let _ = (&mut health_task).await;
                for name in HEALTH_NAMES {
                    health
                        .set_service_status(name, ServingStatus::NotServing)
                        .await;
                }
            },
        )
        .await;
        health_task.abort();
        result.map_err(ServeError::from)
    }
}

/// UNAUTHENTICATED in the protocol of the request: gRPC and gRPC-Web trailers-only, Connect
/// 401 (unary) or an end-of-stream error; always with the `www-authenticate` challenge.
fn refuse(headers: &http::HeaderMap, refusal: Refusal) -> http::Response<tonic::body::Body> {
    let is_grpc = headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if is_grpc {
        return auth::grpc_refusal(headers, refusal);
    }
    let status = tonic::Status::unauthenticated(refusal.message());
    let mut response = super::connect::refused(headers, &status);
    response
        .headers_mut()
        .insert(http::header::WWW_AUTHENTICATE, refusal.challenge());
    response
}

/// tonic answers a request over `max_decoding_message_size` with OUT_OF_RANGE; flagd
/// (connect-go) answers RESOURCE_EXHAUSTED, which is what clients expect. Nothing else here
/// produces OUT_OF_RANGE, and the rejection is always a trailers-only response, so rewriting
/// the status header is enough.
fn size_limit_is_resource_exhausted<B>(mut response: http::Response<B>) -> http::Response<B> {
    // A `HeaderName`, not a `&str`: this runs on every response.
    const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");
    let headers = response.headers_mut();
    if headers
        .get(&GRPC_STATUS)
        .is_some_and(|status| status.as_bytes() == b"11")
    {
        headers.insert(GRPC_STATUS, http::HeaderValue::from_static("8"));
    }
    response
}

/// SERVING once the sources are ready (a latch), NOT_SERVING for good once draining.
async fn report_health(
    health: HealthReporter,
    mut ready: watch::Receiver<bool>,
    draining: CancellationToken,
) {
    let became_ready = tokio::select! {
        became_ready = ready.wait_for(|ready| *ready) => became_ready.is_ok(),
        () = draining.cancelled() => false,
    };
    if became_ready && !draining.is_cancelled() {
        for name in HEALTH_NAMES {
            health
                .set_service_status(name, ServingStatus::Serving)
                .await;
        }
    }
}

/// Resolves when a server should stop accepting connections.
pub(super) type StopAccepting = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs the server `serve` builds on `incoming` until it fails or `shutdown` is cancelled
/// (which also tells the server's streams to end); then runs `on_drain`, stops accepting
/// and lets in-flight calls finish (the caller bounds the wait by the shutdown grace).
/// `name` labels the log lines.
pub(super) async fn serve_until_drained<S>(
    name: &str,
    incoming: Incoming,
    shutdown: &CancellationToken,
    serve: impl FnOnce(Incoming, StopAccepting) -> S,
    on_drain: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error>
where
    S: Future<Output = Result<(), tonic::transport::Error>>,
{
    let stop_accepting = CancellationToken::new();
    let server = serve(incoming, Box::pin(stop_accepting.clone().cancelled_owned()));
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result,
        () = shutdown.cancelled() => {
            tracing::info!("{name} draining");
            on_drain.await;
            stop_accepting.cancel();
            // No deadline of its own: the daemon bounds the whole drain by --shutdown-grace
            // and drops (or aborts) this future when it expires.
            server.await
        }
    }
}
