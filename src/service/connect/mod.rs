//! The Connect protocol on port 8013 (spec 2.2), beside gRPC and gRPC-Web on the same paths.
//!
//! A tower layer in front of the tonic router: requests whose content type is gRPC or
//! gRPC-Web go on to tonic; everything else addressed to an evaluation procedure is answered
//! here. Connect is only a transport: each call is decoded (protojson or protobuf), handed
//! to the very tonic adapter ([`V1`], [`V2`], [`SchemaV1`]) a gRPC call would reach, and its
//! result encoded again, so every RPC keeps a single implementation.
//!
//! Supported: unary POST with `application/json` (optionally `; charset=utf-8`) or
//! `application/proto`, server streaming (EventStream) with `application/connect+json` or
//! `application/connect+proto`; gzip both ways (`Content-Encoding` / `Accept-Encoding` for
//! unary, `Connect-Content-Encoding` / `Connect-Accept-Encoding` for streams). Not
//! supported: GET requests (flagd's procedures are not idempotent either, so 405 as in
//! flagd), `Connect-Timeout-Ms`.
//!
//! `application/grpc+json` and `application/grpc-web+json` are answered here too ([`grpc`]):
//! the gRPC framing around the same protojson messages.

mod compression;
mod envelope;
mod error;
mod grpc;

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::{BoxFuture, Either};
use futures_util::stream::{self, BoxStream, Stream, StreamExt as _};
use http::request::Parts;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited, StreamBody};
use tonic::body::Body;
use tonic::metadata::MetadataMap;
use tonic::Status;
use tower::{Layer, Service};

use super::evaluation::EvaluationService;
use super::proto::evaluation_v1::service_server::Service as _;
use super::proto::evaluation_v2::service_server::Service as _;
use super::proto::schema_v1::service_server::Service as _;
use super::protojson::{FromJson, ToJson};
use super::schema_v1::SchemaV1;
use super::v1::V1;
use super::v2::V2;
use compression::Encoding;

/// Adds Connect to the evaluation services it wraps.
#[derive(Debug, Clone)]
pub(crate) struct ConnectLayer {
    evaluator: Arc<EvaluationService>,
    max_request_body: usize,
}

impl ConnectLayer {
    /// Connect over `evaluator`; request bodies above `max_request_body` bytes are refused.
    pub(crate) fn new(evaluator: Arc<EvaluationService>, max_request_body: usize) -> ConnectLayer {
        ConnectLayer {
            evaluator,
            max_request_body,
        }
    }
}

impl<S> Layer<S> for ConnectLayer {
    type Service = Connect<S>;

    fn layer(&self, inner: S) -> Connect<S> {
        Connect {
            inner,
            evaluator: self.evaluator.clone(),
            max_request_body: self.max_request_body,
        }
    }
}

/// The service made by [`ConnectLayer`].
#[derive(Debug, Clone)]
pub(crate) struct Connect<S> {
    inner: S,
    evaluator: Arc<EvaluationService>,
    max_request_body: usize,
}

impl<S> Service<Request<Body>> for Connect<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Either<S::Future, BoxFuture<'static, Result<Response<Body>, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The tonic router is always ready and reserves nothing, so a readiness that a
        // Connect call leaves unused is not lost.
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        if let Some(framing) = grpc::json_framing(request.headers()) {
            let evaluator = self.evaluator.clone();
            let limit = self.max_request_body;
            return Either::Right(Box::pin(async move {
                Ok(grpc::handle(evaluator, limit, framing, request).await)
            }));
        }
        if is_grpc(request.headers()) {
            return Either::Left(self.inner.call(request));
        }
        let evaluator = self.evaluator.clone();
        let limit = self.max_request_body;
        Either::Right(Box::pin(async move {
            Ok(handle(evaluator, limit, request).await)
        }))
    }
}

/// A Connect call refused before it reaches a procedure (authentication): the unary form
/// (HTTP status and JSON body) or, for a streaming content type, an end-of-stream message.
pub(super) fn refused(headers: &HeaderMap, status: &Status) -> Response<Body> {
    match Codec::of(headers, true) {
        Some(codec) => {
            let end = envelope::frame(envelope::END_STREAM, &error::end_stream_json(Some(status)));
            let mut response = Response::new(Body::new(Full::new(end)));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(codec.content_type(true)),
            );
            response
        }
        None => error::unary_response(status),
    }
}

/// gRPC and gRPC-Web (all their content types) belong to tonic.
fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"))
}

/// Which evaluation service a procedure belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
    SchemaV1,
}

/// The evaluation RPCs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rpc {
    ResolveBoolean,
    ResolveString,
    ResolveFloat,
    ResolveInt,
    ResolveObject,
    ResolveAll,
    EventStream,
}

/// The procedure a path names, if it is one of ours.
fn procedure(path: &str) -> Option<(Version, Rpc)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    let version = match service {
        "flagd.evaluation.v1.Service" => Version::V1,
        "flagd.evaluation.v2.Service" => Version::V2,
        "schema.v1.Service" => Version::SchemaV1,
        _ => return None,
    };
    let rpc = match method {
        "ResolveBoolean" => Rpc::ResolveBoolean,
        "ResolveString" => Rpc::ResolveString,
        "ResolveFloat" => Rpc::ResolveFloat,
        "ResolveInt" => Rpc::ResolveInt,
        "ResolveObject" => Rpc::ResolveObject,
        "ResolveAll" if version != Version::V2 => Rpc::ResolveAll,
        "EventStream" => Rpc::EventStream,
        _ => return None,
    };
    Some((version, rpc))
}

/// How messages are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Json,
    Proto,
}

impl Codec {
    /// The codec of a Connect request, `None` if the content type does not fit the call.
    fn of(headers: &HeaderMap, streaming: bool) -> Option<Codec> {
        let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
        let (media, params) = value.split_once(';').unwrap_or((value, ""));
        let params = params.trim();
        if !params.is_empty()
            && !params
                .replace(' ', "")
                .eq_ignore_ascii_case("charset=utf-8")
        {
            return None;
        }
        let media = media.trim().to_ascii_lowercase();
        match (media.as_str(), streaming) {
            ("application/json", false) | ("application/connect+json", true) => Some(Codec::Json),
            ("application/proto", false) | ("application/connect+proto", true) => {
                Some(Codec::Proto)
            }
            _ => None,
        }
    }

    fn content_type(self, streaming: bool) -> &'static str {
        match (self, streaming) {
            (Codec::Json, false) => "application/json",
            (Codec::Proto, false) => "application/proto",
            (Codec::Json, true) => "application/connect+json",
            (Codec::Proto, true) => "application/connect+proto",
        }
    }

    fn decode<M: prost::Message + Default + FromJson>(self, bytes: &[u8]) -> Result<M, Status> {
        match self {
            Codec::Json => M::from_json(bytes).map_err(|e| Status::invalid_argument(e.0)),
            Codec::Proto => M::decode(bytes)
                .map_err(|e| Status::invalid_argument(format!("invalid request: {e}"))),
        }
    }

    fn encode<M: prost::Message + ToJson>(self, message: &M) -> Vec<u8> {
        match self {
            Codec::Json => message.to_json(),
            Codec::Proto => message.encode_to_vec(),
        }
    }
}

/// Answers one Connect request (or the HTTP error for one that is not).
async fn handle(
    evaluator: Arc<EvaluationService>,
    limit: usize,
    request: Request<Body>,
) -> Response<Body> {
    let Some((version, rpc)) = procedure(request.uri().path()) else {
        return plain(StatusCode::NOT_FOUND, "404 page not found\n");
    };
    if request.method() != Method::POST {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let streaming = rpc == Rpc::EventStream;
    let Some(codec) = Codec::of(request.headers(), streaming) else {
        let mut response = plain(StatusCode::UNSUPPORTED_MEDIA_TYPE, "");
        let accepted = if streaming {
            "application/grpc, application/grpc+proto, application/grpc-web, application/grpc-web+proto, application/connect+json, application/connect+proto"
        } else {
            "application/grpc, application/grpc+proto, application/grpc-web, application/grpc-web+proto, application/json, application/proto"
        };
        response
            .headers_mut()
            .insert("accept-post", HeaderValue::from_static(accepted));
        return response;
    };

    let (parts, body) = request.into_parts();
    let (encoding, accept) = if streaming {
        ("connect-content-encoding", "connect-accept-encoding")
    } else {
        ("content-encoding", "accept-encoding")
    };
    let gzip_out = compression::accepts_gzip(&parts.headers, accept);
    let body = match Encoding::of(&parts.headers, encoding) {
        Ok(encoding) => read_body(body, &parts.headers, limit)
            .await
            .map(|body| (encoding, body)),
        Err(status) => Err(status),
    };
    if streaming {
        let payload = body.and_then(|(encoding, body)| {
            match envelope::single_message(&body, encoding == Encoding::Gzip)? {
                Some((compressed, message)) => {
                    let message = body.slice_ref(message);
                    let message = if compressed {
                        encoding.decode(message, limit)?
                    } else {
                        message
                    };
                    Ok(Some(message))
                }
                None => Ok(None),
            }
        });
        let messages = event_stream(evaluator, version, codec, parts, payload).await;
        connect_stream(codec, messages, gzip_out)
    } else {
        let body = body.and_then(|(encoding, body)| encoding.decode(body, limit));
        let result = match body {
            Ok(body) => unary(evaluator, version, rpc, codec, parts, &body).await,
            Err(status) => Err(status),
        };
        match result {
            Ok(message) => connect_unary(codec, message, gzip_out),
            Err(status) => error::unary_response(&status),
        }
    }
}

/// A successful unary Connect response, gzip-compressed when the client accepts it.
fn connect_unary(codec: Codec, message: Vec<u8>, gzip_out: bool) -> Response<Body> {
    let message = if gzip_out {
        compression::gzip(&message)
    } else {
        message
    };
    let mut response = Response::new(Body::new(Full::new(Bytes::from(message))));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(codec.content_type(false)),
    );
    if gzip_out {
        headers.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(compression::GZIP),
        );
    }
    response
}

/// A Connect streaming response: the messages in envelopes (compressed when the client
/// accepts gzip) and the end-of-stream message; errors travel in that message (HTTP 200).
fn connect_stream(
    codec: Codec,
    messages: Result<Messages, Status>,
    gzip_out: bool,
) -> Response<Body> {
    let body = match messages {
        Ok(messages) => Body::new(StreamBody::new(enveloped(messages, gzip_out))),
        Err(status) => {
            let end = envelope::frame(envelope::END_STREAM, &error::end_stream_json(Some(&status)));
            Body::new(Full::new(end))
        }
    };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(codec.content_type(true)),
    );
    if gzip_out {
        headers.insert(
            "connect-content-encoding",
            HeaderValue::from_static(compression::GZIP),
        );
    }
    response
}

/// The whole request body, refused with RESOURCE_EXHAUSTED beyond `limit` (0 = no limit).
async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, Status> {
    let limit = if limit == 0 { usize::MAX } else { limit };
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => {
            let size = headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .map_or_else(String::new, |len| format!(" {len}"));
            Err(Status::resource_exhausted(format!(
                "message size{size} is larger than configured max {limit}"
            )))
        }
        Err(e) => Err(Status::cancelled(format!("reading request body: {e}"))),
    }
}

/// A response with a plain-text (possibly empty) body.
fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(if text.is_empty() {
        Body::empty()
    } else {
        Body::new(Full::new(Bytes::from_static(text.as_bytes())))
    });
    *response.status_mut() = status;
    if !text.is_empty() {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    response
}

/// Encoded response messages of a stream, or the status that ends it.
type Messages = BoxStream<'static, Result<Vec<u8>, Status>>;

/// Dispatches a unary call to the adapter of its version; the encoded response.
async fn unary(
    evaluator: Arc<EvaluationService>,
    version: Version,
    rpc: Rpc,
    codec: Codec,
    parts: Parts,
    body: &[u8],
) -> Result<Vec<u8>, Status> {
    macro_rules! call {
        ($adapter:ident, $method:ident) => {
            call_unary(codec, parts, body, |request| async move {
                $adapter(evaluator).$method(request).await
            })
            .await
        };
    }
    match (version, rpc) {
        (Version::V1, Rpc::ResolveBoolean) => call!(V1, resolve_boolean),
        (Version::V1, Rpc::ResolveString) => call!(V1, resolve_string),
        (Version::V1, Rpc::ResolveFloat) => call!(V1, resolve_float),
        (Version::V1, Rpc::ResolveInt) => call!(V1, resolve_int),
        (Version::V1, Rpc::ResolveObject) => call!(V1, resolve_object),
        (Version::V1, Rpc::ResolveAll) => call!(V1, resolve_all),
        (Version::V2, Rpc::ResolveBoolean) => call!(V2, resolve_boolean),
        (Version::V2, Rpc::ResolveString) => call!(V2, resolve_string),
        (Version::V2, Rpc::ResolveFloat) => call!(V2, resolve_float),
        (Version::V2, Rpc::ResolveInt) => call!(V2, resolve_int),
        (Version::V2, Rpc::ResolveObject) => call!(V2, resolve_object),
        (Version::SchemaV1, Rpc::ResolveBoolean) => call!(SchemaV1, resolve_boolean),
        (Version::SchemaV1, Rpc::ResolveString) => call!(SchemaV1, resolve_string),
        (Version::SchemaV1, Rpc::ResolveFloat) => call!(SchemaV1, resolve_float),
        (Version::SchemaV1, Rpc::ResolveInt) => call!(SchemaV1, resolve_int),
        (Version::SchemaV1, Rpc::ResolveObject) => call!(SchemaV1, resolve_object),
        (Version::SchemaV1, Rpc::ResolveAll) => call!(SchemaV1, resolve_all),
        // `procedure` never pairs v2 with ResolveAll; EventStream is streamed.
        (Version::V2, Rpc::ResolveAll) | (_, Rpc::EventStream) => {
            Err(Status::unimplemented("not a unary procedure"))
        }
    }
}

/// Decodes the request, runs `call`, encodes its response.
async fn call_unary<Req, Resp, F, Fut>(
    codec: Codec,
    parts: Parts,
    body: &[u8],
    call: F,
) -> Result<Vec<u8>, Status>
where
    Req: prost::Message + Default + FromJson,
    Resp: prost::Message + ToJson,
    F: FnOnce(tonic::Request<Req>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
{
    let message = codec.decode::<Req>(body)?;
    let request = tonic::Request::from_parts(
        MetadataMap::from_headers(parts.headers),
        parts.extensions,
        message,
    );
    let response = call(request).await?;
    Ok(codec.encode(response.get_ref()))
}

/// Opens an EventStream through the adapter of its version.
async fn event_stream(
    evaluator: Arc<EvaluationService>,
    version: Version,
    codec: Codec,
    parts: Parts,
    payload: Result<Option<Bytes>, Status>,
) -> Result<Messages, Status> {
    macro_rules! call {
        ($adapter:ident) => {
            call_stream(codec, parts, payload, |request| async move {
                $adapter(evaluator).event_stream(request).await
            })
            .await
        };
    }
    match version {
        Version::V1 => call!(V1),
        Version::V2 => call!(V2),
        Version::SchemaV1 => call!(SchemaV1),
    }
}

/// Decodes the request message, runs `call`; its messages, encoded.
async fn call_stream<Req, Resp, St, F, Fut>(
    codec: Codec,
    parts: Parts,
    payload: Result<Option<Bytes>, Status>,
    call: F,
) -> Result<Messages, Status>
where
    Req: prost::Message + Default + FromJson,
    Resp: prost::Message + ToJson + Send + 'static,
    St: Stream<Item = Result<Resp, Status>> + Unpin + Send + 'static,
    F: FnOnce(tonic::Request<Req>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<St>, Status>>,
{
    let message = match payload? {
        Some(payload) => codec.decode::<Req>(&payload)?,
        None => Req::default(),
    };
    let request = tonic::Request::from_parts(
        MetadataMap::from_headers(parts.headers),
        parts.extensions,
        message,
    );
    let messages = call(request).await?.into_inner();
    Ok(messages
        .map(move |message| message.map(|message| codec.encode(&message)))
        .boxed())
}

/// The messages in envelopes (gzip-compressed when `gzip_out`), then the end-of-stream
/// message.
fn enveloped(
    messages: Messages,
    gzip_out: bool,
) -> impl Stream<Item = Result<Frame<Bytes>, std::convert::Infallible>> + Send + 'static {
    stream::unfold(Some(messages), move |state| async move {
        let mut messages = state?;
        let (frame, next) = match messages.next().await {
            Some(Ok(message)) => (envelope::message(&message, gzip_out), Some(messages)),
            Some(Err(status)) => (
                envelope::frame(envelope::END_STREAM, &error::end_stream_json(Some(&status))),
                None,
            ),
            None => (
                envelope::frame(envelope::END_STREAM, &error::end_stream_json(None)),
                None,
            ),
        };
        Some((Ok(Frame::data(frame)), next))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(content_type: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(header::CONTENT_TYPE, content_type.parse().unwrap());
        map
    }

    #[test]
    fn procedures_are_the_evaluation_rpcs() {
        assert_eq!(
            procedure("/flagd.evaluation.v1.Service/ResolveAll"),
            Some((Version::V1, Rpc::ResolveAll))
        );
        assert_eq!(
            procedure("/flagd.evaluation.v2.Service/ResolveInt"),
            Some((Version::V2, Rpc::ResolveInt))
        );
        assert_eq!(
            procedure("/schema.v1.Service/EventStream"),
            Some((Version::SchemaV1, Rpc::EventStream))
        );
        assert_eq!(procedure("/flagd.evaluation.v2.Service/ResolveAll"), None);
        assert_eq!(procedure("/flagd.sync.v1.FlagSyncService/SyncFlags"), None);
        assert_eq!(procedure("/"), None);
    }

    #[test]
    fn codecs_follow_the_content_type() {
        let unary = |ct: &str| Codec::of(&headers(ct), false);
        let streaming = |ct: &str| Codec::of(&headers(ct), true);
        assert_eq!(unary("application/json"), Some(Codec::Json));
        assert_eq!(unary("application/json; charset=utf-8"), Some(Codec::Json));
        assert_eq!(unary("Application/JSON;charset=UTF-8"), Some(Codec::Json));
        assert_eq!(unary("application/proto"), Some(Codec::Proto));
        assert_eq!(unary("application/json; charset=latin1"), None);
        assert_eq!(unary("text/plain"), None);
        assert_eq!(unary("application/connect+json"), None);
        assert_eq!(streaming("application/connect+json"), Some(Codec::Json));
        assert_eq!(streaming("application/connect+proto"), Some(Codec::Proto));
        assert_eq!(streaming("application/json"), None);
        assert_eq!(Codec::of(&HeaderMap::new(), false), None);
    }

    #[test]
    fn grpc_and_grpc_web_go_to_tonic() {
        assert!(is_grpc(&headers("application/grpc")));
        assert!(is_grpc(&headers("application/grpc+proto")));
        assert!(is_grpc(&headers("application/grpc-web")));
        assert!(is_grpc(&headers("application/grpc-web+proto")));
        assert!(!is_grpc(&headers("application/json")));
        assert!(!is_grpc(&HeaderMap::new()));
    }
}
