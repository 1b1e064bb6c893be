//! The management port (8014, spec 7.1): `/healthz`, `/readyz`, `/metrics` over HTTP/1.1 and
//! h2c, plus `grpc.health.v1` reflecting readiness.
//!
//! - `/healthz`: 200 while the process runs (the server is the last one to stop).
//! - `/readyz`: 200 once every sync source has applied a configuration and shutdown has not
//!   begun; otherwise 412 Precondition Failed, flagd's code, so probes and scripts written for
//!   flagd keep working unchanged (any non-2xx fails Kubernetes, ECS and ALB checks alike).
//! - `/metrics`: Prometheus text (see [`metrics`](super::metrics)).
//!
//! Like flagd, every HTTP method is accepted on these paths.
//!
//! `/readyz` also answers gRPC callers (`content-type: application/grpc`) with a gRPC status:
//! OK when ready, UNAVAILABLE otherwise. An AWS ALB gRPC target group's health check reads
//! only that status code, never the `grpc.health.v1` response body, so pointing it at
//! `/readyz` on this port keeps tasks out of rotation until their flags are loaded.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use super::auth::{self, RequireToken, Tokens};
use super::listener::{self, ConnectionConfig};
use super::metrics::{render_sources, render_supervision, Metrics, SourceLabels};
use super::server::ServeError;
use crate::store::Store;
use crate::sync::StatsReader;

/// Connections open at once on the management port: probes and a scraper need few, and
/// a cap separate from the public ports' keeps them getting in while those are flooded.
pub(crate) const MANAGEMENT_CONNECTIONS: usize = 1_000;

/// HTTP/2 streams per management connection.
const MANAGEMENT_STREAMS: u32 = 100;

/// How long in-flight management requests may take once the port closes.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// The content type of the Prometheus text format.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether the daemon should receive traffic: sources ready and not shutting down.
#[derive(Debug, Clone)]
pub(crate) struct TrafficReadiness {
    ready: watch::Receiver<bool>,
    stopping: CancellationToken,
    /// Whether [`Self::observe`] has seen `stopping` cancelled (it stays cancelled).
    stopping_seen: bool,
}

impl TrafficReadiness {
    /// Ready while `ready` (the supervisor's latch) is `true` and `stopping` is not cancelled.
    pub(crate) fn new(
        ready: watch::Receiver<bool>,
        stopping: CancellationToken,
    ) -> TrafficReadiness {
        TrafficReadiness {
            ready,
            stopping,
            stopping_seen: false,
        }
    }

    /// Whether the daemon is ready now.
    pub(crate) fn is_ready(&self) -> bool {
        *self.ready.borrow() && !self.stopping.is_cancelled()
    }

    /// Whether the daemon is ready now, marking both inputs as seen for [`Self::changed`].
    fn observe(&mut self) -> bool {
        let ready = *self.ready.borrow_and_update();
        self.stopping_seen = self.stopping.is_cancelled();
        ready && !self.stopping_seen
    }

    /// Completes after either input changes (never again once the supervisor is gone and
    /// shutdown has been seen).
    async fn changed(&mut self) {
        let ready_gone = self.ready.has_changed().is_err();
        if ready_gone && self.stopping_seen {
            std::future::pending::<()>().await;
        }
        tokio::select! {
            result = self.ready.changed(), if !ready_gone => { let _ = result; }
            () = self.stopping.cancelled(), if !self.stopping_seen => {}
        }
    }
}

/// How the management port behaves.
#[derive(Debug, Clone, Default)]
pub(crate) struct ManagementConfig {
    /// Bearer tokens `/metrics` requires (`--metrics-auth`; `None`: open).
    pub metrics_auth: Option<Tokens>,
    /// How sources are named in `/metrics` labels and the `/readyz` body.
    pub source_labels: SourceLabels,
}

/// The management server, ready to [`serve`](ManagementServer::serve).
#[derive(Debug, Clone)]
pub(crate) struct ManagementServer {
    metrics: Arc<Metrics>,
    store: Arc<Store>,
    sources: StatsReader,
    readiness: TrafficReadiness,
    connections: ConnectionConfig,
    config: ManagementConfig,
}

impl ManagementServer {
    /// A server reporting `readiness`, and metrics from `metrics`, `store` and `sources`.
    pub(crate) fn new(
        config: ManagementConfig,
        metrics: Arc<Metrics>,
        store: Arc<Store>,
        sources: StatsReader,
        readiness: TrafficReadiness,
    ) -> ManagementServer {
        ManagementServer {
            metrics,
            store,
            sources,
            readiness,
            connections: ConnectionConfig::default(),
            config,
        }
    }

    /// Header- and body-read timeouts as on the other ports (the connection cap of this
    /// port is its own, [`MANAGEMENT_CONNECTIONS`]).
    pub(crate) fn with_connections(mut self, connections: ConnectionConfig) -> ManagementServer {
        self.connections = connections;
        self
    }

    /// The whole `/metrics` body.
    pub(crate) fn render_metrics(&self) -> String {
        let mut out = String::with_capacity(4096);
        self.metrics.render(&mut out);
        let stats = self.sources.stats();
        render_sources(
            &mut out,
            &self.store.sources(),
            &stats,
            SystemTime::now(),
            self.config.source_labels,
        );
        render_supervision(
            &mut out,
            &stats,
            self.sources.inline_dropped_older(),
            self.config.source_labels,
        );
        out
    }

    /// Serves on `listener` until `shutdown` is cancelled (the daemon cancels it last, after
    /// every other port has drained).
    pub(crate) async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<(), ServeError> {
        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        let health_task = tokio::spawn(report_health(health, self.readiness.clone()));

        let readiness = self.readiness.clone();
        let sources = self.sources.clone();
        let labels = self.config.source_labels;
        let metrics_auth = RequireToken::optional(
            self.config.metrics_auth.as_ref(),
            auth::http_refusal,
            auth::nothing_open,
        );
        let metrics = self.clone();
        let http = axum::Router::new()
            .route("/healthz", any(|| async { StatusCode::OK }))
            .route(
                "/readyz",
                any(move |headers: axum::http::HeaderMap| {
                    let ready = readiness.is_ready();
                    let stats = sources.stats();
                    let cached: Vec<String> = stats
                        .iter()
                        .filter(|s| s.from_cache)
                        .map(|s| labels.label(&s.uri).into_owned())
                        .collect();
                    let mut detail = String::new();
                    if ready && !cached.is_empty() {
                        // Ready, but on a copy: say which sources have not answered yet.
                        detail = format!(
                            "ready; served from --cache-dir until they answer: {}\n",
                            cached.join(", ")
                        );
                    }
                    for s in &stats {
                        if let Some(reason) = &s.down {
                            // Still serving its last good flags, but not following changes.
                            detail.push_str(&format!(
                                "source down, restarting: {} ({reason})\n",
                                labels.label(&s.uri)
                            ));
                        }
                    }
                    async move {
                        let mut response = readyz_response(ready, &headers);
                        let grpc = response.headers().contains_key(header::CONTENT_TYPE);
                        if !detail.is_empty() && !grpc {
                            *response.body_mut() = axum::body::Body::from(detail);
                        }
                        response
                    }
                }),
            )
            .route(
                "/metrics",
                any(move || {
                    let body = metrics.render_metrics();
                    async move { ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], body) }
                })
                // Only `/metrics`: health and readiness stay open for probes.
                .layer(metrics_auth),
            );
        let routes = Routes::from(http).add_service(health_service);

        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "serving management (healthz, readyz, metrics, grpc health)");
        }
        let service = tower::ServiceBuilder::new()
            .map_request(|request: http::Request<listener::RequestBody>| {
                request.map(tonic::body::Body::new)
            })
            .service(routes);
        let http = listener::HttpConfig {
            header_read_timeout: self.connections.header_read_timeout,
            body_read_timeout: self.connections.body_read_timeout,
            http2: Some(listener::Http2Config {
                max_concurrent_streams: MANAGEMENT_STREAMS,
                keep_alive_interval: super::sync::KEEPALIVE_INTERVAL,
                keep_alive_timeout: super::sync::KEEPALIVE_TIMEOUT,
            }),
        };
        // The shared accept loop: no spin when descriptors run out, silent clients closed;
        // a cap of its own, so an attack on another port never keeps probes out.
        let incoming = listener::incoming(
            listener.into(),
            None,
            MANAGEMENT_CONNECTIONS,
            http.header_read_timeout,
        );
        let stop = CancellationToken::new();
        let server = listener::serve_http(incoming, service, http, stop.clone());
        tokio::pin!(server);
        tokio::select! {
            () = &mut server => {}
            () = shutdown.cancelled() => {
                stop.cancel();
                let _ = tokio::time::timeout(CLOSE_GRACE, server).await;
            }
        }
        health_task.abort();
        Ok(())
    }
}

/// Mirrors readiness into `grpc.health.v1` (the whole server, service name `""`).
async fn report_health(health: HealthReporter, mut readiness: TrafficReadiness) {
    loop {
        let status = if readiness.observe() {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        health.set_service_status("", status).await;
        readiness.changed().await;
    }
}

/// The `/readyz` answer: 200/412 for HTTP callers, a trailers-only gRPC status for gRPC ones.
fn readyz_response(ready: bool, headers: &HeaderMap) -> Response {
    let grpc = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    match (grpc, ready) {
        (false, true) => StatusCode::OK.into_response(),
        (false, false) => StatusCode::PRECONDITION_FAILED.into_response(),
        (true, true) => {
            // One empty message and an OK status in the trailers: a complete unary answer.
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from_static("0"));
            let frames = futures_util::stream::iter([
                Ok::<_, std::convert::Infallible>(http_body::Frame::data(
                    bytes::Bytes::from_static(&[0, 0, 0, 0, 0]),
                )),
                Ok(http_body::Frame::trailers(trailers)),
            ]);
            let mut response = Response::new(axum::body::Body::new(
                http_body_util::StreamBody::new(frames),
            ));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            response
        }
        (true, false) => {
            // Trailers-only: the status travels in the headers.
            let mut response = StatusCode::OK.into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            headers.insert("grpc-status", HeaderValue::from_static("14"));
            headers.insert("grpc-message", HeaderValue::from_static("not ready"));
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_sources_and_no_shutdown() {
        let (ready_tx, ready) = watch::channel(false);
        let stopping = CancellationToken::new();
        let readiness = TrafficReadiness::new(ready, stopping.clone());
        assert!(!readiness.is_ready());
        ready_tx.send_replace(true);
        assert!(readiness.is_ready());
        stopping.cancel();
        assert!(!readiness.is_ready());
    }
}
