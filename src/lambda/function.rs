//! Function mode: a Lambda function (custom runtime `provided.al2023`) answering OFREP
//! (single and bulk, with ETag/304) and Connect unary evaluation from Function URL, API
//! Gateway HTTP API (payload 2.0) and REST API (1.0) events, with the daemon's evaluator,
//! its CORS and the extension's refresh rule.
//!
//! The same routers the daemon serves on 8016 and 8013 answer here, called once per event:
//! paths under `/ofrep/` go to the OFREP router (which carries its own CORS), everything else
//! to Connect. A Lambda response is buffered, so the server-streaming EventStream is refused.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use tower::util::BoxCloneSyncService;
use tower::{Layer as _, ServiceExt as _};

use super::{wait_ready, without_polling, Freshness, LambdaError, RefreshConfig};
use crate::config::Settings;
use crate::daemon::{evaluator_config, ofrep_config};
use crate::evaluator::{Evaluator, Unobserved};
use crate::service::limits::StreamLimit;
use crate::service::metrics::Metrics;
use crate::service::{ConnectLayer, CorsOnOrigin, EvaluationService, OfrepServer, StreamConfig};
use crate::store::Store;
use crate::sync::Supervisor;

type Routes = BoxCloneSyncService<Request<Full<Bytes>>, Response<Bytes>, Infallible>;

/// The function: routes plus the refresh rule; one instance serves every event of a sandbox.
#[derive(Clone)]
pub struct FunctionApp {
    ofrep: Routes,
    connect: Routes,
    freshness: Arc<Freshness>,
}

impl std::fmt::Debug for FunctionApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionApp").finish_non_exhaustive()
    }
}

impl FunctionApp {
    /// Starts the sources of `settings`, waits for the first configuration and builds the
    /// routes. Returns the supervisor too, to keep the sources running.
    pub async fn start(
        mut settings: Settings,
        refresh: RefreshConfig,
    ) -> Result<(FunctionApp, Supervisor), LambdaError> {
        without_polling(&mut settings);
        let store = Arc::new(Store::new());
        let supervisor = Supervisor::from_config(settings.sync_config(), store.clone())?;
        let mut ready = supervisor.ready();
        // The first event waits for the configuration rather than seeing FLAG_NOT_FOUND.
        let (directory, stats) = (supervisor.directory(), supervisor.stats_reader());
        wait_ready(&directory, &stats, &mut ready).await;
        let freshness = Arc::new(Freshness::new(directory, stats, refresh));
        let evaluator = Arc::new(Evaluator::new(
            evaluator_config(&settings),
            store,
            Arc::new(Unobserved),
        ));
        let router = OfrepServer::new(ofrep_config(&settings), evaluator.clone()).router();
        let ofrep = BoxCloneSyncService::new(tower::service_fn(move |request| {
            let router = router.clone();
            async move {
                let response = router.oneshot(request).await?;
                Ok::<_, Infallible>(buffered(response).await)
            }
        }));
        // Connect unary only (EventStream is refused above), so the stream settings and the
        // drain token are never used.
        let edge = Arc::new(EvaluationService::new(
            evaluator,
            StreamConfig::default(),
            tokio_util::sync::CancellationToken::new(),
            Arc::new(Metrics::new(0)),
            StreamLimit::new(0),
        ));
        let connect_service = CorsOnOrigin::new(&settings.cors_origins).layer(
            ConnectLayer::new(edge, settings.max_request_body).layer(tower::service_fn(not_found)),
        );
        let connect =
            BoxCloneSyncService::new(tower::service_fn(move |request: Request<Full<Bytes>>| {
                let service = connect_service.clone();
                async move {
                    let request = request.map(tonic::body::Body::new);
                    let response = service.oneshot(request).await?;
                    Ok::<_, Infallible>(buffered(response).await)
                }
            }));
        let app = FunctionApp {
            ofrep,
            connect,
            freshness,
        };
        Ok((app, supervisor))
    }

    /// Answers one HTTP request (already decoded from its Lambda event).
    pub async fn handle(&self, request: Request<Bytes>) -> Response<Bytes> {
        self.freshness.ensure_fresh().await;
        let path = request.uri().path();
        if path.ends_with("/EventStream") {
            return plain(
                StatusCode::NOT_IMPLEMENTED,
                "EventStream needs a long-lived connection: use the extension or the daemon",
            );
        }
        let routes = if path.starts_with("/ofrep/") {
            self.ofrep.clone()
        } else {
            self.connect.clone()
        };
        let request = request.map(Full::new);
        match routes.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }
}

/// A response with its body collected (a Lambda response is one payload).
async fn buffered<B>(response: Response<B>) -> Response<Bytes>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    let (parts, body) = response.into_parts();
    match body.collect().await {
        Ok(collected) => Response::from_parts(parts, collected.to_bytes()),
        Err(error) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("response body: {error}"),
        ),
    }
}

fn plain(status: StatusCode, message: &str) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from(format!("{message}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// What Connect hands on for paths that are not evaluation procedures (gRPC proper cannot
/// reach a Lambda function).
async fn not_found(
    _request: Request<tonic::body::Body>,
) -> Result<Response<tonic::body::Body>, Infallible> {
    let mut response = Response::new(tonic::body::Body::new(Full::new(Bytes::from_static(
        b"404 page not found\n",
    ))));
    *response.status_mut() = StatusCode::NOT_FOUND;
    Ok(response)
}

/// Runs the function against the Runtime API until the sandbox ends.
pub async fn run_function(settings: Settings, refresh: RefreshConfig) -> Result<(), LambdaError> {
    let began = std::time::Instant::now();
    let (app, _supervisor) = FunctionApp::start(settings, refresh).await?;
    tracing::info!(took = ?began.elapsed(), "configuration loaded; function ready");
    let handler = lambda_http::service_fn(move |request: lambda_http::Request| {
        let app = app.clone();
        async move {
            let stage = stage(&request);
            let (mut parts, body) = request.into_parts();
            if let Some(uri) = stage.and_then(|stage| without_stage(&parts.uri, &stage)) {
                parts.uri = uri;
            }
            let request = Request::from_parts(parts, Bytes::copy_from_slice(body.as_ref()));
            let response = app.handle(request).await;
            Ok::<_, Infallible>(to_lambda(response))
        }
    });
    lambda_http::run(handler)
        .await
        .map_err(|e| LambdaError::Api(e.to_string()))
}

/// The REST API stage of the event, which lambda_http puts in front of the path.
fn stage(request: &lambda_http::Request) -> Option<String> {
    use lambda_http::request::RequestContext;
    use lambda_http::RequestExt as _;
    match request.request_context_ref()? {
        RequestContext::ApiGatewayV1(context) => context.stage.clone(),
        _ => None,
    }
}

/// `uri` without the leading `/<stage>`, so routes match whatever the stage is called.
fn without_stage(uri: &http::Uri, stage: &str) -> Option<http::Uri> {
    let rest = uri.path().strip_prefix('/')?.strip_prefix(stage)?;
    if !rest.starts_with('/') {
        return None;
    }
    let path_and_query = match uri.query() {
        Some(query) => format!("{rest}?{query}"),
        None => rest.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(path_and_query.parse().ok()?);
    http::Uri::from_parts(parts).ok()
}

/// JSON and text go back as text, anything else (protobuf) base64-encoded.
fn to_lambda(response: Response<Bytes>) -> Response<lambda_http::Body> {
    let textual = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|t| t.starts_with("application/json") || t.starts_with("text/"));
    response.map(|bytes| {
        if bytes.is_empty() {
            lambda_http::Body::Empty
        } else if textual {
            match String::from_utf8(bytes.to_vec()) {
                Ok(text) => lambda_http::Body::Text(text),
                Err(error) => lambda_http::Body::Binary(error.into_bytes()),
            }
        } else {
            lambda_http::Body::Binary(bytes.to_vec())
        }
    })
}
