//! `http_server_request_duration_seconds`: a tower layer timing every request from arrival to
//! response head, labelled by service, route (from a closed set), method and status.
//!
//! Streaming responses (EventStream, SyncFlags) are timed to their response head, not to the
//! end of the stream.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use pin_project_lite::pin_project;
use prost::Message as _;
use tower::{Layer, Service};

use super::shard::FnvMap;
use super::{Metrics, OVERFLOW_LABEL};
use crate::service::proto::FILE_DESCRIPTOR_SET;

/// Maps a request path to its bounded `http_route` label.
pub(super) type RouteFn = fn(&str) -> &'static str;

/// Times requests into [`Metrics::request`].
#[derive(Debug, Clone)]
pub struct HttpMetricsLayer {
    metrics: Arc<Metrics>,
    service: &'static str,
    route: RouteFn,
}

impl HttpMetricsLayer {
    /// A layer recording under `service_name=service`, with `route` naming each path (it
    /// must return values from a small fixed set, e.g. [`OVERFLOW_LABEL`] for unknown paths).
    pub fn new(metrics: Arc<Metrics>, service: &'static str, route: RouteFn) -> HttpMetricsLayer {
        HttpMetricsLayer {
            metrics,
            service,
            route,
        }
    }
}

impl<S> Layer<S> for HttpMetricsLayer {
    type Service = HttpMetricsService<S>;

    fn layer(&self, inner: S) -> HttpMetricsService<S> {
        HttpMetricsService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`HttpMetricsLayer`] wraps around another.
#[derive(Debug, Clone)]
pub struct HttpMetricsService<S> {
    inner: S,
    layer: HttpMetricsLayer,
}

impl<S, B, RB> Service<http::Request<B>> for HttpMetricsService<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let route = (self.layer.route)(request.uri().path());
        let method = method_label(request.method());
        ResponseFuture {
            inner: self.inner.call(request),
            start: Instant::now(),
            metrics: self.layer.metrics.clone(),
            service: self.layer.service,
            route,
            method,
        }
    }
}

pin_project! {
    /// Records the duration once the inner service has produced the response head.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        start: Instant,
        metrics: Arc<Metrics>,
        service: &'static str,
        route: &'static str,
        method: &'static str,
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<RB>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        let status = match &result {
            Ok(response) => response.status().as_u16(),
            Err(_) => 500,
        };
        this.metrics.request(
            this.service,
            this.route,
            this.method,
            status,
            this.start.elapsed(),
        );
        Poll::Ready(result)
    }
}

/// The semantic-conventions method label (`_OTHER` for non-standard methods).
fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::PATCH => "PATCH",
        http::Method::CONNECT => "CONNECT",
        http::Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

/// The route of a gRPC/Connect request on the evaluation port: `/package.Service/Method` for
/// every method flagpole serves (flagd protos, health, reflection), [`OVERFLOW_LABEL`] for
/// anything else, so unknown paths cannot create series.
pub fn grpc_route(path: &str) -> &'static str {
    // FNV, not SipHash: the key is a fixed path the client chose from a known set, and this
    // runs on every request.
    static ROUTES: OnceLock<FnvMap<&'static str, ()>> = OnceLock::new();
    let routes = ROUTES.get_or_init(known_grpc_routes);
    routes
        .get_key_value(path)
        .map_or(OVERFLOW_LABEL, |(route, ())| route)
}

/// Every method path in the flagd descriptor set plus health and reflection; the strings are
/// leaked once per process (a few dozen).
fn known_grpc_routes() -> FnvMap<&'static str, ()> {
    let mut routes: FnvMap<&'static str, ()> = [
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    ]
    .into_iter()
    .map(|route| (route, ()))
    .collect();
    if let Ok(set) = prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET) {
        for file in set.file {
            let package = file.package.unwrap_or_default();
            for service in file.service {
                let service_name = service.name.unwrap_or_default();
                for method in service.method {
                    let path = format!(
                        "/{package}.{service_name}/{}",
                        method.name.unwrap_or_default()
                    );
                    routes.insert(Box::leak(path.into_boxed_str()), ());
                }
            }
        }
    }
    routes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_grpc_paths_are_routes_and_others_collapse() {
        assert_eq!(
            grpc_route("/flagd.evaluation.v1.Service/ResolveBoolean"),
            "/flagd.evaluation.v1.Service/ResolveBoolean"
        );
        assert_eq!(
            grpc_route("/flagd.sync.v1.FlagSyncService/SyncFlags"),
            "/flagd.sync.v1.FlagSyncService/SyncFlags"
        );
        assert_eq!(
            grpc_route("/schema.v1.Service/ResolveAll"),
            "/schema.v1.Service/ResolveAll"
        );
        assert_eq!(grpc_route("/random/path"), OVERFLOW_LABEL);
    }

    #[tokio::test]
    async fn layer_records_status_and_route() {
        let metrics = Arc::new(Metrics::new(10));
        let layer = HttpMetricsLayer::new(metrics.clone(), "test", grpc_route);
        let mut service = layer.layer(tower::service_fn(|_req: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(
                http::Response::builder().status(404).body(()).unwrap(),
            )
        }));
        let request = http::Request::post("/flagd.evaluation.v2.Service/ResolveInt")
            .body(())
            .unwrap();
        service.call(request).await.unwrap();
        let mut out = String::new();
        metrics.render(&mut out);
        assert!(out.contains("http_server_request_duration_seconds_count{http_request_method=\"POST\",http_response_status_code=\"404\",http_route=\"/flagd.evaluation.v2.Service/ResolveInt\",service_name=\"test\",url_scheme=\"http\"} 1\n"), "{out}");
    }
}
