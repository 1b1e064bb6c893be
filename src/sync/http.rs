//! The `http` provider: `http://…` and `https://…` URLs, as flagd has them.
//!
//! Each poll is one GET carrying `If-None-Match` (the last ETag) and `If-Modified-Since` (the
//! last `Last-Modified`), so an unchanged document costs a 304 and nothing else. Polls are
//! spread like the S3 ones: a per-replica period in [0.9, 1.1) × `interval` from a hash of the
//! replica id and the URL (the first poll is immediate). Failures (unreachable, 5xx, timeout, a body cut
//! short or larger than `--max-document-size`) back off from 1 s to 30 s, never later than the
//! regular period, and keep the last good configuration. TLS is rustls with the system roots,
//! or only the CA of `certPath` when given (an addition: flagd reads `certPath` for grpc only).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, ETAG,
    IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED,
};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

use super::aws::{stable_hash, Aws, Backoff};
use super::limit::{self, DEFAULT_MAX_DOCUMENT_SIZE};
use super::provider::RemoteOptions;
use super::source::{Payload, RefreshResult, Source, SourceContext, SourceFuture};
use super::SourceError;
use crate::flags::Format;

/// flagd's poll interval for `http` sources without `interval`.
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// The limit of one request (headers and body) without `timeoutS`. flagd has none; a hung
/// server must not freeze the source for ever (docs/deviations.md).
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// flagd's `Accept` for the http sync.
const ACCEPT_DOCUMENTS: &str = "application/json, application/yaml";

type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// Polls one URL and publishes each new version of the document.
pub(crate) struct HttpSource {
    uri: Uri,
    client: HttpClient,
    headers: Vec<(HeaderName, HeaderValue)>,
    interval: Duration,
    timeout: Duration,
    max_size: usize,
    aws: Option<Arc<Aws>>,
}

impl std::fmt::Debug for HttpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSource")
            .field("uri", &self.uri)
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// What one conditional GET found.
enum Fetch {
    Modified {
        bytes: Bytes,
        content_type: Option<String>,
    },
    NotModified,
}

impl HttpSource {
    /// A source for `uri` with flagd's `http` options; fails on a bad URL or header value.
    pub(crate) fn new(
        uri: &str,
        options: &RemoteOptions,
        interval: Option<Duration>,
    ) -> Result<HttpSource, SourceError> {
        let bad = |what: String| SourceError::Remote(what);
        let parsed: Uri = uri.parse().map_err(|e| bad(format!("invalid URL: {e}")))?;
        if parsed.host().is_none() || !matches!(parsed.scheme_str(), Some("http" | "https")) {
            return Err(bad("expected an http:// or https:// URL with a host".into()));
        }
        let mut headers = Vec::new();
        for (name, value) in &options.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| bad(format!("invalid header name `{name}`")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| bad(format!("invalid value for header `{name}`")))?;
            headers.push((name, value));
        }
        if let Some(auth) = &options.auth_header {
            let mut value = HeaderValue::from_str(auth)
                .map_err(|_| bad("invalid `authHeader` value".into()))?;
            value.set_sensitive(true);
            headers.push((AUTHORIZATION, value));
        }
        Ok(HttpSource {
            uri: parsed,
            client: client(options.cert_path.as_deref())?,
            headers,
            interval: interval
                .filter(|d| !d.is_zero())
                .unwrap_or(DEFAULT_INTERVAL)
                .max(Duration::from_millis(10)),
            timeout: options.timeout.unwrap_or(DEFAULT_TIMEOUT),
            max_size: DEFAULT_MAX_DOCUMENT_SIZE,
            aws: None,
        })
    }

    /// Refuses documents larger than `bytes` (default [`DEFAULT_MAX_DOCUMENT_SIZE`]).
    pub(crate) fn max_size(mut self, bytes: usize) -> HttpSource {
        self.max_size = bytes;
        self
    }

    /// Where the replica id that spreads this source's polls comes from (as for S3).
    pub(crate) fn replica_from(mut self, aws: Arc<Aws>) -> HttpSource {
        self.aws = Some(aws);
        self
    }

    /// This replica's poll period, stretched as for S3. The first poll is immediate (the
    /// daemon is not ready before it), so no phase.
    fn period(&self, replica: &str) -> Duration {
        let uri = self.uri.to_string();
        let hash = stable_hash(&[replica, &uri]);
        let stretch = 0.9 + (hash % 1000) as f64 / 5000.0;
        self.interval.mul_f64(stretch)
    }

    async fn poll_loop(self, mut ctx: SourceContext) {
        let replica = match &self.aws {
            Some(aws) => aws.replica().await.to_owned(),
            None => String::new(),
        };
        let period = self.period(&replica);
        let mut validators = Validators::default();
        let mut backoff = Backoff::default();
        let mut next = Instant::now();
        loop {
            let refresh = tokio::select! {
                _ = ctx.shutdown.wait() => return,
                _ = tokio::time::sleep_until(next) => None,
                refresh = ctx.refresh.next() => Some(refresh),
            };
            let result = self.poll(&mut validators, &ctx).await;
            next = Instant::now()
                + match &result {
                    RefreshResult::Done => {
                        backoff.reset();
                        period
                    }
                    RefreshResult::Failed(_) => backoff.next_delay().min(period),
                };
            if let Some(refresh) = refresh {
                refresh.complete(result);
            }
        }
    }

    async fn poll(&self, validators: &mut Validators, ctx: &SourceContext) -> RefreshResult {
        let sink = &ctx.sink;
        let fetched = tokio::time::timeout(self.timeout, self.fetch(validators)).await;
        match fetched {
            Ok(Ok(Fetch::Modified {
                bytes,
                content_type,
            })) => {
                sink.fetched();
                let format = content_type
                    .as_deref()
                    .and_then(Format::from_content_type)
                    .or_else(|| Format::from_path(std::path::Path::new(self.uri.path())))
                    .unwrap_or_else(|| Format::sniff(&bytes));
                sink.publish(Payload { bytes, format });
                RefreshResult::Done
            }
            Ok(Ok(Fetch::NotModified)) => {
                sink.not_modified();
                RefreshResult::Done
            }
            Ok(Err(message)) => {
                sink.read_failed(&message);
                RefreshResult::Failed(message)
            }
            Err(_) => {
                let message = format!("no complete answer within {:?}", self.timeout);
                sink.read_failed(&message);
                RefreshResult::Failed(message)
            }
        }
    }

    /// One conditional GET; validators are updated only once the whole body has arrived.
    async fn fetch(&self, validators: &mut Validators) -> Result<Fetch, String> {
        let mut request = Request::builder()
            .method(Method::GET)
            .uri(self.uri.clone())
            .header(ACCEPT, ACCEPT_DOCUMENTS);
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        if let Some(etag) = &validators.etag {
            request = request.header(IF_NONE_MATCH, etag);
        }
        if let Some(modified) = &validators.last_modified {
            request = request.header(IF_MODIFIED_SINCE, modified);
        }
        let request = request
            .body(Empty::new())
            .map_err(|e| format!("building the request: {e}"))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| format!("GET failed: {}", super::error_chain(&e)))?;
        let status = response.status();
        if status == StatusCode::NOT_MODIFIED {
            return Ok(Fetch::NotModified);
        }
        if !status.is_success() {
            return Err(format!("HTTP {status}"));
        }
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        let etag = header(ETAG);
        let last_modified = header(LAST_MODIFIED);
        let content_type = header(CONTENT_TYPE);
        // Refuse by the announced length first, then count while reading.
        if let Some(announced) = header(CONTENT_LENGTH).and_then(|l| l.parse::<u64>().ok()) {
            limit::check(
                usize::try_from(announced).unwrap_or(usize::MAX),
                self.max_size,
            )
            .map_err(|e| e.to_string())?;
        }
        let body = Limited::new(response.into_body(), self.max_size)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    limit::ReadError::TooLarge {
                        limit: self.max_size,
                    }
                    .to_string()
                } else {
                    format!("reading the body: {}", super::error_chain(e.as_ref()))
                }
            })?
            .to_bytes();
        validators.etag = etag;
        validators.last_modified = last_modified;
        Ok(Fetch::Modified {
            bytes: body,
            content_type,
        })
    }
}

/// The validators of the version last read.
#[derive(Debug, Default)]
struct Validators {
    etag: Option<String>,
    last_modified: Option<String>,
}

/// One client per source: rustls (ring) trusting the system roots, or only the PEM CA file
/// `ca` when given; HTTP/1.1, plain http allowed.
fn client(ca: Option<&std::path::Path>) -> Result<HttpClient, SourceError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let unreadable = |e: String| {
                SourceError::Remote(format!("cannot use certPath `{}`: {e}", path.display()))
            };
            let pem = std::fs::read(path).map_err(|e| unreadable(e.to_string()))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| unreadable(e.to_string()))?;
                roots.add(cert).map_err(|e| unreadable(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(unreadable("no certificate in the file".into()));
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                // A malformed system certificate is skipped, as the OS tools do.
                let _ = roots.add(cert);
            }
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| SourceError::Remote(format!("TLS set-up: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

impl Source for HttpSource {
    fn run(self: Box<Self>, ctx: SourceContext) -> SourceFuture {
        Box::pin(self.poll_loop(ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_headers_are_checked_at_build() {
        let options = RemoteOptions::default();
        assert!(HttpSource::new("https://flags.example/f.json", &options, None).is_ok());
        assert!(HttpSource::new("ftp://flags.example/f.json", &options, None).is_err());
        assert!(HttpSource::new("http:///f.json", &options, None).is_err());
        let bad_header = RemoteOptions {
            auth_header: Some("Bearer a\nb".into()),
            ..RemoteOptions::default()
        };
        assert!(HttpSource::new("http://h/f", &bad_header, None).is_err());
        let source = HttpSource::new("http://h/f", &options, None).unwrap();
        assert_eq!(source.interval, DEFAULT_INTERVAL);
        assert_eq!(source.timeout, DEFAULT_TIMEOUT);
    }

    #[test]
    fn schedules_spread_replicas() {
        let options = RemoteOptions::default();
        let periods: std::collections::HashSet<_> = (0..20)
            .map(|i| {
                HttpSource::new("http://h/f.json", &options, Some(Duration::from_secs(100)))
                    .unwrap()
                    .period(&format!("replica-{i}"))
            })
            .collect();
        assert!(periods.len() > 10, "periods should differ between replicas");
        assert!(periods
            .iter()
            .all(|p| *p >= Duration::from_secs(90) && *p < Duration::from_secs(110)));
    }
}
