//! CORS on ports 8013 and 8016 (spec 2.5), configured like flagd's rs/cors.
//!
//! Allowed origins come from `--cors-origin` (an empty list or `*` allows every origin; an
//! entry may hold one `*` wildcard, e.g. `https://*.example.com`, as in rs/cors). Methods
//! HEAD, GET, POST, PUT, PATCH, DELETE; any request header (mirrored); the Connect/gRPC
//! headers exposed. Requests without an `Origin` (every native gRPC call) skip the CORS
//! machinery entirely.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::Either;
use http::{header, HeaderName, HeaderValue, Method, Request, Response};
use tower::{Layer, Service};
use tower_http::cors::{self, AllowHeaders, AllowOrigin, CorsLayer};

/// Response headers a browser may read: flagd's list plus `etag`, without which a page on
/// another origin cannot read the OFREP bulk `ETag` and so never polls with `If-None-Match`
/// (docs/deviations.md).
const EXPOSED_HEADERS: [&str; 12] = [
    "accept",
    "accept-encoding",
    "accept-post",
    "connect-accept-encoding",
    "connect-content-encoding",
    "content-encoding",
    "etag",
    "grpc-accept-encoding",
    "grpc-encoding",
    "grpc-message",
    "grpc-status",
    "grpc-status-details-bin",
];

/// CORS for the configured origins, applied only to requests that carry an `Origin` or are
/// preflights.
#[derive(Debug, Clone)]
pub(crate) struct CorsOnOrigin {
    // Shared: hyper clones the whole service stack for every request, and a `CorsLayer`
    // (its header lists) cost about 700 instructions a request to clone and drop.
    cors: Arc<CorsLayer>,
}

impl CorsOnOrigin {
    /// CORS allowing `origins` (empty = all).
    pub(crate) fn new(origins: &[String]) -> CorsOnOrigin {
        CorsOnOrigin {
            cors: Arc::new(cors_layer(origins)),
        }
    }
}

/// Whether `origins` (the `--cors-origin` list) lets every origin in: none given, or `*`.
pub(crate) fn allows_every_origin(origins: &[String]) -> bool {
    origins.is_empty() || origins.iter().any(|o| o.trim() == "*")
}

fn cors_layer(origins: &[String]) -> CorsLayer {
    let origin = if allows_every_origin(origins) {
        AllowOrigin::any()
    } else {
        let patterns: Vec<Pattern> = origins.iter().map(|o| Pattern::new(o)).collect();
        AllowOrigin::predicate(move |origin: &HeaderValue, _| {
            let origin = origin.to_str().unwrap_or_default().to_ascii_lowercase();
            patterns.iter().any(|pattern| pattern.matches(&origin))
        })
    };
    CorsLayer::new()
        .allow_origin(origin)
        .allow_methods([
            Method::HEAD,
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers(EXPOSED_HEADERS.map(HeaderName::from_static))
}

/// An allowed origin, lower-cased, with at most one `*` wildcard.
#[derive(Debug, Clone)]
struct Pattern {
    prefix: String,
    suffix: Option<String>,
}

impl Pattern {
    fn new(origin: &str) -> Pattern {
        let origin = origin.trim().to_ascii_lowercase();
        match origin.split_once('*') {
            Some((prefix, suffix)) => Pattern {
                prefix: prefix.to_owned(),
                suffix: Some(suffix.to_owned()),
            },
            None => Pattern {
                prefix: origin,
                suffix: None,
            },
        }
    }

    fn matches(&self, origin: &str) -> bool {
        match &self.suffix {
            None => origin == self.prefix,
            Some(suffix) => {
                origin.len() >= self.prefix.len() + suffix.len()
                    && origin.starts_with(&self.prefix)
                    && origin.ends_with(suffix.as_str())
            }
        }
    }
}

impl<S: Clone> Layer<S> for CorsOnOrigin {
    type Service = CorsService<S>;

    fn layer(&self, inner: S) -> CorsService<S> {
        CorsService {
            cors: self.cors.clone(),
            inner,
        }
    }
}

/// The service made by [`CorsOnOrigin`]: the CORS machinery is built around the inner
/// service only for a request that needs it (a browser's), so the per-request clone of the
/// stack stays one `Arc` here.
#[derive(Debug, Clone)]
pub(crate) struct CorsService<S> {
    cors: Arc<CorsLayer>,
    inner: S,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for CorsService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Either<cors::ResponseFuture<S::Future>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let headers = request.headers();
        let preflight = request.method() == Method::OPTIONS
            && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        if preflight || headers.contains_key(header::ORIGIN) {
            // The ready service goes into the CORS wrapper; a clone stays for the next call
            // (tower's rule: only a service that was polled ready may be called).
            let fresh = self.inner.clone();
            let ready = std::mem::replace(&mut self.inner, fresh);
            // `Cors::poll_ready` only asks the inner service, which is ready already.
            Either::Left(self.cors.layer(ready).call(request))
        } else {
            Either::Right(self.inner.call(request))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_origin_without_a_list_or_with_a_star() {
        assert!(allows_every_origin(&[]));
        assert!(allows_every_origin(&[
            "https://a.example".into(),
            " * ".into()
        ]));
        assert!(!allows_every_origin(&["https://*.example.com".into()]));
    }

    #[test]
    fn origin_patterns_match_like_rs_cors() {
        let exact = Pattern::new("https://App.example.com");
        assert!(exact.matches("https://app.example.com"));
        assert!(!exact.matches("https://app.example.com.evil"));
        let wild = Pattern::new("https://*.example.com");
        assert!(wild.matches("https://a.example.com"));
        assert!(wild.matches("https://a.b.example.com"));
        assert!(!wild.matches("https://example.com"));
        assert!(!wild.matches("http://a.example.com"));
    }
}
