//! `flagd.sync.v1.FlagSyncService` on port 8015 (spec 1.10): what flagd's in-process
//! providers and other flagd instances sync from.
//!
//! - `SyncFlags` streams the full sync document for the request's selector at once, then a
//!   full document whenever the store changes, skipping documents byte-identical to the last
//!   one sent on that stream (flagd may resend identical content; clients treat every message
//!   as a full snapshot, so skipping repeats is invisible to them). Every message carries the
//!   `-X` static context as `sync_context` (`{}` when there is none).
//! - `FetchAllFlags` answers the same document once; `GetMetadata` the static context, or
//!   UNIMPLEMENTED with `disable_sync_metadata`.
//! - The selector comes from the `flagd-selector` header, else the request's `selector` field.
//!
//! Keep-alive: grpc-go servers enforce a client ping policy and answered the Go provider's
//! 30 s pings with GOAWAY ENHANCE_YOUR_CALM, killing streams every ~90 s (flagd#1998). The
//! h2 server under tonic has no ping policy at all: it acknowledges every client PING, so
//! client keep-alives can never cut a stream. The server additionally pings idle
//! connections itself ([`KEEPALIVE_INTERVAL`]) to notice dead peers and keep NAT and load
//! balancer idle timers from dropping healthy long-lived streams.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use super::tls::TlsAcceptor;
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep, Instant};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataMap;
use tonic::transport::Server;
use tonic::{Request, Response, Status};
use tower::util::MapRequestLayer;

use super::auth::{self, RequireToken, Tokens};
use super::evaluation::{InvalidSelector, SELECTOR_HEADER};
use super::limits::{StreamLimit, TimedBody};
use super::listener::{self, ConnectionConfig, Listener};
use super::metrics::{grpc_route, HttpMetricsLayer, Metrics};
use super::proto::sync_v1::flag_sync_service_server::{FlagSyncService, FlagSyncServiceServer};
use super::proto::sync_v1::{
    FetchAllFlagsRequest, FetchAllFlagsResponse, GetMetadataRequest, GetMetadataResponse,
    SyncFlagsRequest, SyncFlagsResponse,
};
use super::proto::FILE_DESCRIPTOR_SET;
use super::server::{serve_until_drained, ServeError};
use super::stream::{StreamLoop, StreamMessages};
use super::wire::JsonStruct;
use crate::eval::Context;
use crate::store::{Selector, Snapshot, Store};

/// flagd starts serving the sync port once every source is ready, or after this long.
const STARTUP_GATE: Duration = Duration::from_secs(5);

/// Interval of server-initiated HTTP/2 PINGs on idle connections.
pub(crate) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);

/// How long a server PING may go unanswered before the connection is closed.
pub(crate) const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Messages buffered per stream before the stream task waits for the client.
const STREAM_BUFFER: usize = 4;

/// How the sync port behaves.
#[derive(Debug, Clone, Default)]
pub(crate) struct SyncServiceConfig {
    /// The `-X` static context, sent as `sync_context` and by `GetMetadata`.
    pub static_context: Context,
    /// Answer `GetMetadata` with UNIMPLEMENTED.
    pub disable_sync_metadata: bool,
    /// Server-side SyncFlags deadline.
    pub stream_deadline: Option<Duration>,
    /// HTTP/2 streams one connection may open at once.
    pub max_concurrent_streams: u32,
    /// Connection cap and body-read timeout (the port speaks HTTP/2 only: no headers to
    /// trickle before the preface's first byte, which the listener times).
    pub connections: ConnectionConfig,
    /// Bearer tokens every call must carry (`None`: no authentication).
    pub auth: Option<Tokens>,
}

/// The sync server on port 8015, ready to [`serve`](SyncServer::serve).
#[derive(Debug)]
pub(crate) struct SyncServer {
    config: SyncServiceConfig,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    stream_limit: StreamLimit,
}

/// The `FlagSyncService` implementation.
#[derive(Debug, Clone)]
pub(crate) struct SyncService(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    store: Arc<Store>,
    sync_context: JsonStruct,
    metadata_disabled: bool,
    deadline: Option<Duration>,
    /// Cancelled when the port starts draining: SyncFlags streams end.
    draining: CancellationToken,
    metrics: Arc<Metrics>,
    stream_limit: StreamLimit,
}

impl SyncServer {
    /// A sync server over `store`, counting into `metrics`, its SyncFlags streams under
    /// `limit` (shared with the evaluation port).
    pub(crate) fn new(
        config: SyncServiceConfig,
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        limit: StreamLimit,
    ) -> SyncServer {
        SyncServer {
            config,
            store,
            metrics,
            stream_limit: limit,
        }
    }

    /// Serves on `listener` (TLS only when `tls` is set) until `shutdown` is cancelled, then
    /// ends every SyncFlags stream cleanly (status OK) and lets in-flight calls finish for at
    /// most five seconds.
    ///
    /// As in flagd, calls are answered only once `ready` is `true` or five seconds have
    /// passed, so clients never receive an empty document because the sources were still
    /// loading; until then connections wait in the listen backlog.
    pub(crate) async fn serve(
        self,
        listener: impl Into<Listener>,
        tls: Option<TlsAcceptor>,
        mut ready: watch::Receiver<bool>,
        shutdown: CancellationToken,
    ) -> Result<(), ServeError> {
        tokio::select! {
            _ = ready.wait_for(|ready| *ready) => {}
            () = sleep(STARTUP_GATE) => {
                tracing::warn!("sync sources not ready after 5 s; serving the sync port anyway");
            }
            () = shutdown.cancelled() => return Ok(()),
        }
        let max_concurrent_streams = self.config.max_concurrent_streams;
        let connections = self.config.connections;
        let body_read_timeout = connections.body_read_timeout;
        let service = SyncService(Arc::new(Shared {
            store: self.store,
            sync_context: JsonStruct(self.config.static_context),
            metadata_disabled: self.config.disable_sync_metadata,
            deadline: self.config.stream_deadline,
            draining: shutdown.clone(),
            metrics: self.metrics,
            stream_limit: self.stream_limit,
        }));

        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection().build_v1()?;
        let reflection_v1alpha = reflection().build_v1alpha()?;
        let metrics = service.0.metrics.clone();
        let router = Server::builder()
            .max_concurrent_streams(Some(max_concurrent_streams))
            .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
            .layer(HttpMetricsLayer::new(metrics, "flagd-sync", grpc_route))
            .layer(MapRequestLayer::new(
                move |request: http::Request<tonic::body::Body>| {
                    request
                        .map(|body| tonic::body::Body::new(TimedBody::new(body, body_read_timeout)))
                },
            ))
            .layer(RequireToken::optional(
                self.config.auth.as_ref(),
                auth::grpc_refusal,
                auth::nothing_open,
            ))
            .add_service(
                // gzip as grpc-go/grpc-java clients use it; responses only when accepted.
                FlagSyncServiceServer::new(service)
                    .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
                    .send_compressed(tonic::codec::CompressionEncoding::Gzip),
            )
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);

        let listener = listener.into();
        tracing::info!(addr = %listener.describe(), tls = tls.is_some(), "serving flagd.sync.v1 (gRPC)");
        serve_until_drained(
            "sync server",
            listener::incoming(
                listener,
                tls,
                connections.max_connections,
                connections.header_read_timeout,
            ),
            &shutdown,
            |incoming, stop| router.serve_with_incoming_shutdown(incoming, stop),
            async {},
        )
        .await
        .map_err(ServeError::from)
    }
}

impl SyncService {
    /// The selector of a sync request: the header if present and non-empty, else the body.
    fn selector(headers: &MetadataMap, body: &str) -> Result<(Selector, String), Status> {
        let header = match headers.get(SELECTOR_HEADER) {
            Some(value) => Some(
                value
                    .to_str()
                    .map_err(|_| InvalidSelector::new("<non-ASCII>"))?,
            ),
            None => None,
        };
        let text = header.filter(|h| !h.trim().is_empty()).unwrap_or(body);
        let selector = Selector::parse(text).map_err(|_| InvalidSelector::new(text))?;
        Ok((selector, text.to_owned()))
    }

    /// The sync document of `snapshot` for `selector`, rendered once per snapshot and
    /// selector however many streams and calls ask for it ([`Snapshot::sync_document`]).
    fn document(&self, snapshot: &Arc<Snapshot>, selector: &Selector) -> Arc<str> {
        snapshot.sync_document(selector)
    }

    fn response(&self, document: &str) -> SyncFlagsResponse {
        SyncFlagsResponse {
            flag_configuration: document.to_owned(),
            sync_context: Some(self.0.sync_context.clone()),
        }
    }
}

#[tonic::async_trait]
impl FlagSyncService for SyncService {
    type SyncFlagsStream = SyncStream;

    async fn sync_flags(
        &self,
        request: Request<SyncFlagsRequest>,
    ) -> Result<Response<Self::SyncFlagsStream>, Status> {
        let (headers, _, body) = request.into_parts();
        // The body field is deprecated in the proto but still what flagd falls back to.
        #[allow(deprecated)]
        let body_selector = body.selector.as_str();
        let (selector, selector_text) = Self::selector(&headers, body_selector)?;
        let slot = self.0.stream_limit.acquire()?;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let task = StreamLoop {
            _open: self
                .0
                .metrics
                .sync_stream_opened(&selector_text, &body.provider_id),
            _slot: slot,
            tx,
            snapshots: self.0.store.subscribe(),
            draining: self.0.draining.clone(),
            keep_alive: Duration::ZERO,
            deadline: self.0.deadline.and_then(|d| Instant::now().checked_add(d)),
        };
        tokio::spawn(task.run(Documents {
            service: self.clone(),
            selector,
            last: None,
        }));
        Ok(Response::new(SyncStream {
            documents: ReceiverStream::new(rx),
            service: self.clone(),
        }))
    }

    async fn fetch_all_flags(
        &self,
        request: Request<FetchAllFlagsRequest>,
    ) -> Result<Response<FetchAllFlagsResponse>, Status> {
        let (headers, _, body) = request.into_parts();
        let (selector, _) = Self::selector(&headers, &body.selector)?;
        let snapshot = self.0.store.snapshot();
        Ok(Response::new(FetchAllFlagsResponse {
            flag_configuration: self.document(&snapshot, &selector).to_string(),
        }))
    }

    async fn get_metadata(
        &self,
        _request: Request<GetMetadataRequest>,
    ) -> Result<Response<GetMetadataResponse>, Status> {
        if self.0.metadata_disabled {
            return Err(Status::unimplemented("metadata endpoint disabled"));
        }
        Ok(Response::new(GetMetadataResponse {
            metadata: Some(self.0.sync_context.clone()),
        }))
    }
}

/// The response stream of one SyncFlags call. Documents wait in the stream's buffer as the
/// snapshot's shared text and become a protobuf message (one copy of the text) only when the
/// connection asks for the next message: a client that stops reading holds references to
/// shared documents, not copies of them (1,000 stalled streams on a 1 MB document would
/// otherwise hold up to 4 GB).
pub(crate) struct SyncStream {
    documents: ReceiverStream<Result<Arc<str>, Status>>,
    service: SyncService,
}

impl Stream for SyncStream {
    type Item = Result<SyncFlagsResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        Pin::new(&mut this.documents)
            .poll_next(cx)
            .map(|item| item.map(|result| result.map(|document| this.service.response(&document))))
    }
}

/// The messages of one SyncFlags call: the current document, then every new one (never the
/// same document twice in a row); the stream ends with OK when the server drains.
struct Documents {
    service: SyncService,
    selector: Selector,
    /// The last document sent, shared with every stream that sent it.
    last: Option<Arc<str>>,
}

impl StreamMessages for Documents {
    type Message = Arc<str>;

    fn open(&mut self, snapshot: &Arc<Snapshot>) -> Arc<str> {
        let document = self.service.document(snapshot, &self.selector);
        self.last = Some(document.clone());
        document
    }

    fn changed(&mut self, snapshot: &Arc<Snapshot>) -> Option<Arc<str>> {
        let document = self.service.document(snapshot, &self.selector);
        if let Some(last) = &self.last {
            if Arc::ptr_eq(last, &document) || **last == *document {
                return None;
            }
        }
        self.last = Some(document.clone());
        Some(document)
    }

    fn keep_alive(&mut self) -> Option<Arc<str>> {
        None
    }

    fn drained(&mut self) -> Option<Arc<str>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(selector: Option<&str>) -> MetadataMap {
        let mut map = MetadataMap::new();
        if let Some(s) = selector {
            map.insert(SELECTOR_HEADER, s.parse().unwrap());
        }
        map
    }

    #[test]
    fn header_selector_wins_over_body() {
        let (selector, text) =
            SyncService::selector(&headers(Some("flagSetId=a")), "flagSetId=b").unwrap();
        assert_eq!(selector, Selector::FlagSetId("a".into()));
        assert_eq!(text, "flagSetId=a");
        let (selector, _) = SyncService::selector(&headers(None), "flagSetId=b").unwrap();
        assert_eq!(selector, Selector::FlagSetId("b".into()));
        let (selector, _) = SyncService::selector(&headers(Some("")), "source=x").unwrap();
        assert_eq!(selector, Selector::Source("x".into()));
        let (selector, _) = SyncService::selector(&headers(None), "").unwrap();
        assert_eq!(selector, Selector::All);
    }

    #[test]
    fn bad_selector_is_invalid_argument() {
        let error = SyncService::selector(&headers(None), "bogus=1").unwrap_err();
        assert_eq!(error.code(), tonic::Code::InvalidArgument);
        let error = SyncService::selector(&headers(Some("nope=1")), "").unwrap_err();
        assert_eq!(error.code(), tonic::Code::InvalidArgument);
    }
}
