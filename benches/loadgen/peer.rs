//! The constant-answer servers: the same stacks as flagpole's edges, without evaluating.
//!
//! gRPC and gRPC-Web: a tonic server (HTTP/1.1 accepted, the `tonic_web` layer, at most 100
//! streams per connection, as flagpole's port 8013) whose `flagd.evaluation.v1.Service`
//! decodes each request as usual and answers a prepared response. Connect JSON and OFREP:
//! an axum server over HTTP/1.1 that parses each JSON body and answers prepared bytes. What
//! is left between flagpole and its peer is the evaluation path: store lookup, resolve,
//! building the answer.

use std::pin::Pin;

use axum::body::Bytes;
use axum::routing::post;
use axum::Router;
use flagpole::service::proto::evaluation_v1 as pb;
use futures_util::Stream;
use http::header;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

use crate::daemon;

#[derive(Debug)]
struct Constant {
    all: pb::ResolveAllResponse,
}

#[tonic::async_trait]
impl pb::service_server::Service for Constant {
    async fn resolve_all(
        &self,
        _request: Request<pb::ResolveAllRequest>,
    ) -> Result<Response<pb::ResolveAllResponse>, Status> {
        Ok(Response::new(self.all.clone()))
    }

    async fn resolve_boolean(
        &self,
        _request: Request<pb::ResolveBooleanRequest>,
    ) -> Result<Response<pb::ResolveBooleanResponse>, Status> {
        Ok(Response::new(pb::ResolveBooleanResponse {
            value: true,
            reason: "STATIC".into(),
            variant: "on".into(),
            metadata: None,
        }))
    }

    async fn resolve_string(
        &self,
        _request: Request<pb::ResolveStringRequest>,
    ) -> Result<Response<pb::ResolveStringResponse>, Status> {
        Ok(Response::new(pb::ResolveStringResponse {
            value: "clubs".into(),
            reason: "TARGETING_MATCH".into(),
            variant: "clubs".into(),
            metadata: None,
        }))
    }

    async fn resolve_float(
        &self,
        _request: Request<pb::ResolveFloatRequest>,
    ) -> Result<Response<pb::ResolveFloatResponse>, Status> {
        Err(Status::unimplemented("not a load scenario"))
    }

    async fn resolve_int(
        &self,
        _request: Request<pb::ResolveIntRequest>,
    ) -> Result<Response<pb::ResolveIntResponse>, Status> {
        Err(Status::unimplemented("not a load scenario"))
    }

    async fn resolve_object(
        &self,
        _request: Request<pb::ResolveObjectRequest>,
    ) -> Result<Response<pb::ResolveObjectResponse>, Status> {
        Err(Status::unimplemented("not a load scenario"))
    }

    type EventStreamStream =
        Pin<Box<dyn Stream<Item = Result<pb::EventStreamResponse, Status>> + Send>>;

    async fn event_stream(
        &self,
        _request: Request<pb::EventStreamRequest>,
    ) -> Result<Response<Self::EventStreamStream>, Status> {
        Err(Status::unimplemented("not a load scenario"))
    }
}

/// The load document's flags as (key, variant, value), each at its default variant.
fn defaults() -> Vec<(String, String, Value)> {
    let doc: Value = serde_json::from_str(&daemon::load_document()).unwrap_or_default();
    let mut out = Vec::new();
    if let Some(flags) = doc["flags"].as_object() {
        for (key, flag) in flags {
            let variant = flag["defaultVariant"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let value = flag["variants"][&variant].clone();
            out.push((key.clone(), variant, value));
        }
    }
    out
}

fn resolve_all() -> pb::ResolveAllResponse {
    let flags = defaults()
        .into_iter()
        .map(|(key, variant, value)| {
            let value = match value {
                Value::Bool(b) => pb::any_flag::Value::BoolValue(b),
                Value::String(s) => pb::any_flag::Value::StringValue(s),
                other => pb::any_flag::Value::StringValue(other.to_string()),
            };
            let flag = pb::AnyFlag {
                reason: "STATIC".into(),
                variant,
                metadata: None,
                value: Some(value),
            };
            (key, flag)
        })
        .collect();
    pb::ResolveAllResponse {
        flags,
        metadata: None,
    }
}

fn ofrep_bulk() -> Bytes {
    let flags: Vec<Value> = defaults()
        .into_iter()
        .map(|(key, variant, value)| {
            json!({"key": key, "reason": "STATIC", "variant": variant, "value": value,
                "metadata": {}})
        })
        .collect();
    Bytes::from(json!({"flags": flags}).to_string())
}

/// A JSON answer: the content type and the prepared body.
type JsonAnswer = ([(header::HeaderName, &'static str); 1], Bytes);

/// Parses the body as JSON (what every JSON edge must do) and answers `answer`.
fn json_answer(answer: Bytes) -> impl Fn(Bytes) -> std::future::Ready<JsonAnswer> + Clone + Send {
    move |body: Bytes| {
        let parsed: Result<Value, _> = serde_json::from_slice(&body);
        std::hint::black_box(&parsed);
        std::future::ready(([(header::CONTENT_TYPE, "application/json")], answer.clone()))
    }
}

/// Binds both servers on loopback, prints `{"grpc": PORT, "http": PORT}`, serves until killed.
pub async fn serve() -> Result<(), String> {
    let grpc = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("bind: {e}"))?;
    let http = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("bind: {e}"))?;
    let port = |l: &TcpListener| l.local_addr().map(|a| a.port()).unwrap_or(0);
    println!("{}", json!({"grpc": port(&grpc), "http": port(&http)}));

    let single = Bytes::from(
        json!({"key": "static-bool", "reason": "STATIC", "variant": "on", "value": true,
            "metadata": {}})
        .to_string(),
    );
    let connect =
        Bytes::from(json!({"value": true, "reason": "STATIC", "variant": "on"}).to_string());
    let router = Router::new()
        .route(
            "/flagd.evaluation.v1.Service/ResolveBoolean",
            post(json_answer(connect)),
        )
        .route("/ofrep/v1/evaluate/flags/{key}", post(json_answer(single)))
        .route("/ofrep/v1/evaluate/flags", post(json_answer(ofrep_bulk())));
    // TCP_NODELAY on every accepted socket, as flagpole's listeners (and Go's net, flagd's)
    // set it: neither `axum::serve` nor tonic's `serve_with_incoming` does, and with Nagle on
    // the peer sent about a third of the packets per response (0.36 against 1.04), which made
    // its kernel side cheaper and flagpole's ratio lower than the stacks deserve.
    let http = axum::serve::ListenerExt::tap_io(http, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let http_server = async move {
        axum::serve(http, router)
            .await
            .map_err(|e| format!("http peer: {e}"))
    };

    let grpc_server = async move {
        tonic::transport::Server::builder()
            .accept_http1(true)
            .max_concurrent_streams(Some(100))
            .layer(tonic_web::GrpcWebLayer::new())
            .add_service(pb::service_server::ServiceServer::new(Constant {
                all: resolve_all(),
            }))
            .serve_with_incoming(tokio_stream::StreamExt::map(
                TcpListenerStream::new(grpc),
                |tcp| {
                    tcp.inspect(|tcp| {
                        let _ = tcp.set_nodelay(true);
                    })
                },
            ))
            .await
            .map_err(|e| format!("grpc peer: {e}"))
    };
    tokio::try_join!(http_server, grpc_server).map(|_| ())
}
