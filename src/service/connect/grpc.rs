//! `application/grpc+json` and `application/grpc-web+json`, as connect-go accepts them: the
//! gRPC (or gRPC-Web) framing around protojson messages.
//!
//! Answered here rather than by converting JSON to protobuf in front of tonic: the Connect
//! transport already decodes protojson, calls the very adapter a gRPC call reaches and
//! encodes the result, so only the framing (length-prefixed messages, `grpc-status` in the
//! trailers or, for gRPC-Web, in a trailer frame) is new; a converting layer would encode and
//! decode every message twice and re-frame tonic's response stream.

use std::sync::Arc;

use bytes::{BufMut as _, Bytes, BytesMut};
use futures_util::stream::{self, StreamExt as _};
use http::{header, HeaderMap, HeaderValue, Method, Request, Response};
use http_body::Frame;
use http_body_util::StreamBody;
use tonic::body::Body;
use tonic::Status;

use super::compression::{self, Encoding};
use super::{envelope, event_stream, procedure, read_body, unary, Codec, Messages, Rpc};
use crate::service::evaluation::EvaluationService;

/// Flag of the gRPC-Web trailer frame.
const TRAILERS: u8 = 0x80;

/// How the response carries the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// gRPC: HTTP trailers.
    Grpc,
    /// gRPC-Web: a trailer frame at the end of the body.
    GrpcWeb,
}

impl Framing {
    fn content_type(self) -> &'static str {
        match self {
            Framing::Grpc => "application/grpc+json",
            Framing::GrpcWeb => "application/grpc-web+json",
        }
    }
}

/// The framing of a gRPC or gRPC-Web request with JSON messages (`+json`, optionally
/// `; charset=utf-8`), `None` for everything else.
pub(super) fn json_framing(headers: &HeaderMap) -> Option<Framing> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    // Every gRPC request asks this; plain `application/grpc` is shorter than either answer.
    if value.len() < "application/grpc+json".len() {
        return None;
    }
    let (media, params) = value.split_once(';').unwrap_or((value, ""));
    let params = params.replace(' ', "");
    if !params.is_empty() && !params.eq_ignore_ascii_case("charset=utf-8") {
        return None;
    }
    let media = media.trim();
    if media.eq_ignore_ascii_case("application/grpc+json") {
        Some(Framing::Grpc)
    } else if media.eq_ignore_ascii_case("application/grpc-web+json") {
        Some(Framing::GrpcWeb)
    } else {
        None
    }
}

/// Answers one gRPC(-Web)+JSON call; every failure is a gRPC status.
pub(super) async fn handle(
    evaluator: Arc<EvaluationService>,
    limit: usize,
    framing: Framing,
    request: Request<Body>,
) -> Response<Body> {
    let Some((version, rpc)) = procedure(request.uri().path()) else {
        let status = Status::unimplemented(format!("unknown method {}", request.uri().path()));
        return trailers_only(framing, &status);
    };
    if request.method() != Method::POST {
        return trailers_only(framing, &Status::unimplemented("gRPC requires POST"));
    }
    let (parts, body) = request.into_parts();
    let gzip_out = compression::accepts_gzip(&parts.headers, "grpc-accept-encoding");
    let payload = match read_message(body, &parts.headers, limit).await {
        Ok(payload) => payload,
        Err(status) => return trailers_only(framing, &status),
    };
    let codec = Codec::Json;
    let messages = if rpc == Rpc::EventStream {
        event_stream(evaluator, version, codec, parts, Ok(payload)).await
    } else {
        let Some(payload) = payload else {
            return trailers_only(framing, &Status::internal("Missing request message."));
        };
        unary(evaluator, version, rpc, codec, parts, &payload)
            .await
            .map(|message| stream::once(async { Ok(message) }).boxed())
    };
    match messages {
        Ok(messages) => streamed(framing, messages, gzip_out),
        Err(status) => trailers_only(framing, &status),
    }
}

/// The request's one message, inflated (within `limit`) when it is compressed.
async fn read_message(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Option<Bytes>, Status> {
    let encoding = Encoding::of(headers, "grpc-encoding")?;
    // The limit is on the message; its five-byte prefix comes on top.
    let body_limit = if limit == 0 {
        0
    } else {
        limit.saturating_add(5)
    };
    let body = read_body(body, headers, body_limit).await?;
    match envelope::single_message(&body, encoding == Encoding::Gzip)? {
        Some((compressed, message)) => {
            let message = body.slice_ref(message);
            if compressed {
                encoding.decode(message, limit).map(Some)
            } else if limit != 0 && message.len() > limit {
                Err(Status::resource_exhausted(format!(
                    "message size {} is larger than configured max {limit}",
                    message.len()
                )))
            } else {
                Ok(Some(message))
            }
        }
        None => Ok(None),
    }
}

/// A response carrying `messages`, then the status (OK, or the error that ended them).
fn streamed(framing: Framing, messages: Messages, gzip_out: bool) -> Response<Body> {
    let frames = stream::unfold(Some(messages), move |state| async move {
        let mut messages = state?;
        match messages.next().await {
            Some(Ok(message)) => Some((
                Ok::<_, std::convert::Infallible>(Frame::data(envelope::message(
                    &message, gzip_out,
                ))),
                Some(messages),
            )),
            Some(Err(status)) => Some((Ok(end(framing, &status)), None)),
            None => Some((Ok(end(framing, &Status::ok(""))), None)),
        }
    });
    let mut response = Response::new(Body::new(StreamBody::new(frames)));
    let headers = response.headers_mut();
    framing_headers(headers, framing);
    if gzip_out {
        headers.insert("grpc-encoding", HeaderValue::from_static(compression::GZIP));
    }
    response
}

/// The last frame: HTTP trailers (gRPC) or the trailer frame (gRPC-Web).
fn end(framing: Framing, status: &Status) -> Frame<Bytes> {
    let trailers = status_headers(status);
    match framing {
        Framing::Grpc => Frame::trailers(trailers),
        Framing::GrpcWeb => {
            let mut block = BytesMut::new();
            for (name, value) in &trailers {
                block.put_slice(name.as_str().as_bytes());
                block.put_u8(b':');
                block.put_slice(value.as_bytes());
                block.put_slice(b"\r\n");
            }
            Frame::data(envelope::frame(TRAILERS, &block))
        }
    }
}

/// `grpc-status` and `grpc-message` of `status`.
fn status_headers(status: &Status) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if status.add_header(&mut headers).is_err() {
        // Only details that are not a valid header fail; keep the code and message.
        Status::new(status.code(), status.message())
            .add_header(&mut headers)
            .ok();
    }
    headers
}

/// The headers every gRPC+JSON response carries: its content type and the encodings accepted.
fn framing_headers(headers: &mut HeaderMap, framing: Framing) {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(framing.content_type()),
    );
    headers.insert(
        "grpc-accept-encoding",
        HeaderValue::from_static(compression::GZIP),
    );
}

/// A response without a body, the status in its headers (gRPC's trailers-only form, which
/// gRPC-Web clients read the same way).
fn trailers_only(framing: Framing, status: &Status) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    let headers = response.headers_mut();
    *headers = status_headers(status);
    framing_headers(headers, framing);
    response
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
    fn json_framings_follow_the_content_type() {
        assert_eq!(
            json_framing(&headers("application/grpc+json")),
            Some(Framing::Grpc)
        );
        assert_eq!(
            json_framing(&headers("application/grpc+json; charset=utf-8")),
            Some(Framing::Grpc)
        );
        assert_eq!(
            json_framing(&headers("application/grpc-web+json")),
            Some(Framing::GrpcWeb)
        );
        assert_eq!(json_framing(&headers("application/grpc")), None);
        assert_eq!(json_framing(&headers("application/grpc+proto")), None);
        assert_eq!(json_framing(&headers("application/json")), None);
        assert_eq!(json_framing(&HeaderMap::new()), None);
    }

    #[test]
    fn grpc_web_trailers_are_a_frame() {
        let frame = end(Framing::GrpcWeb, &Status::not_found("flag x"))
            .into_data()
            .unwrap();
        assert_eq!(frame[0], TRAILERS);
        let text = std::str::from_utf8(&frame[5..]).unwrap();
        assert!(text.contains("grpc-status:5\r\n"), "{text}");
        assert!(text.contains("grpc-message:flag%20x\r\n"), "{text}");
    }
}
