//! Plain HTTP/1.1 requests (management, Connect, gRPC-Web, OFREP).

use std::net::SocketAddr;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// A complete response.
#[derive(Debug)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
    /// HTTP trailers, if any.
    pub trailers: Option<HeaderMap>,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header"))
    }
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends `method path` to `addr` with `headers` and `body`; returns the response head
/// and the unread body.
pub async fn open(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> http::Response<Incoming> {
    try_open(addr, method, path, headers, body)
        .await
        .expect("HTTP request")
}

/// Like [`open`], failing instead of panicking when the request cannot be sent.
async fn try_open(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<http::Response<Incoming>, hyper_util::client::legacy::Error> {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(body.into())).expect("request");
    client().request(request).await
}

/// Sends a request and reads the whole response.
pub async fn send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    let response = open(addr, method, path, headers, body).await;
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.expect("read body");
    let trailers = collected.trailers().cloned();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: collected.to_bytes(),
        trailers,
    }
}

/// `POST` with `headers` and `body`.
pub async fn post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    send(addr, Method::POST, path, headers, body).await
}

/// Reads length-prefixed frames (1 flags byte, 4-byte big-endian length) off a body, as
/// Connect streaming and gRPC-Web use them.
pub struct Frames {
    body: Incoming,
    buffer: BytesMut,
}

impl Frames {
    /// Frames of `body`.
    pub fn new(body: Incoming) -> Frames {
        Frames {
            body,
            buffer: BytesMut::new(),
        }
    }

    /// The next frame's flags and payload; `None` at the end of the body.
    pub async fn next(&mut self) -> Option<(u8, Bytes)> {
        loop {
            if self.buffer.len() >= 5 {
                let len = u32::from_be_bytes(self.buffer[1..5].try_into().unwrap()) as usize;
                if self.buffer.len() >= 5 + len {
                    let flags = self.buffer[0];
                    self.buffer.advance(5);
                    return Some((flags, self.buffer.split_to(len).freeze()));
                }
            }
            match self.body.frame().await? {
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
                Err(e) => panic!("body error: {e}"),
            }
        }
    }
}

/// Frames a message the Connect / gRPC-Web way.
pub fn frame(flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![flags];
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// One request without headers or body; returns the status and the body as text, or the
/// error when the request cannot be sent or read (for polling a port that may be closed).
pub async fn call(addr: SocketAddr, method: &str, path: &str) -> Result<(u16, String), Error> {
    let method = Method::from_bytes(method.as_bytes())?;
    let response = try_open(addr, method, path, &[], Bytes::new()).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Why [`call`] failed.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
