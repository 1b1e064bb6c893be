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

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{sleep, Instant};
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataMap;
use tonic::transport::Server;
use tonic::{Request, Response, Status};

use super::evaluation::{InvalidSelector, SELECTOR_HEADER};
use super::events::deadline_at;
use super::limits::StreamLimit;
use super::listener::{self, Listener};
use super::metrics::{grpc_route, HttpMetricsLayer, Metrics};
use super::proto::sync_v1::flag_sync_service_server::{FlagSyncService, FlagSyncServiceServer};
use super::proto::sync_v1::{
    FetchAllFlagsRequest, FetchAllFlagsResponse, GetMetadataRequest, GetMetadataResponse,
    SyncFlagsRequest, SyncFlagsResponse,
};
use super::proto::FILE_DESCRIPTOR_SET;
use super::server::{serve_until_drained, ServeError};
use super::wire::JsonStruct;
use crate::eval::Context;
use crate::store::{Selector, Snapshot, Store};

/// flagd starts serving the sync port once every source is ready, or after this long.
const STARTUP_GATE: Duration = Duration::from_secs(5);

/// Interval of server-initiated HTTP/2 PINGs on idle connections.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);

/// How long a server PING may go unanswered before the connection is closed.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Messages buffered per stream before the stream task waits for the client.
const STREAM_BUFFER: usize = 4;

/// How the sync port behaves.
#[derive(Debug, Clone, Default)]
pub struct SyncServiceConfig {
    /// The `-X` static context, sent as `sync_context` and by `GetMetadata`.
    pub static_context: Context,
    /// Answer `GetMetadata` with UNIMPLEMENTED.
    pub disable_sync_metadata: bool,
    /// Server-side SyncFlags deadline.
    pub stream_deadline: Option<Duration>,
    /// HTTP/2 streams one connection may open at once.
    pub max_concurrent_streams: u32,
}

/// The sync server on port 8015, ready to [`serve`](SyncServer::serve).
#[derive(Debug)]
pub struct SyncServer {
    service: SyncService,
    draining: watch::Sender<bool>,
}

/// The `FlagSyncService` implementation.
#[derive(Debug, Clone)]
pub struct SyncService(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    store: Arc<Store>,
    sync_context: JsonStruct,
    metadata_disabled: bool,
    deadline: Option<Duration>,
    draining: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
    stream_limit: StreamLimit,
    max_concurrent_streams: u32,
}

impl SyncServer {
    /// A sync server over `store`, counting into `metrics`, its SyncFlags streams under
    /// `limit` (shared with the evaluation port).
    pub fn new(
        config: SyncServiceConfig,
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        limit: StreamLimit,
    ) -> SyncServer {
        let (draining, draining_rx) = watch::channel(false);
        let sync_context = JsonStruct(config.static_context);
        SyncServer {
            service: SyncService(Arc::new(Shared {
                store,
                sync_context,
                metadata_disabled: config.disable_sync_metadata,
                deadline: config.stream_deadline,
                draining: draining_rx,
                metrics,
                stream_limit: limit,
                max_concurrent_streams: config.max_concurrent_streams,
            })),
            draining,
        }
    }

    /// Serves on `listener` (TLS only when `tls` is set) until `shutdown` completes, then
    /// ends every SyncFlags stream cleanly (status OK) and lets in-flight calls finish for at
    /// most five seconds.
    ///
    /// As in flagd, calls are answered only once `ready` is `true` or five seconds have
    /// passed, so clients never receive an empty document because the sources were still
    /// loading; until then connections wait in the listen backlog.
    pub async fn serve(
        self,
        listener: impl Into<Listener>,
        tls: Option<TlsAcceptor>,
        mut ready: watch::Receiver<bool>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServeError> {
        tokio::pin!(shutdown);
        tokio::select! {
            _ = ready.wait_for(|ready| *ready) => {}
            () = sleep(STARTUP_GATE) => {
                tracing::warn!("sync sources not ready after 5 s; serving the sync port anyway");
            }
            () = &mut shutdown => return Ok(()),
        }

        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection().build_v1()?;
        let reflection_v1alpha = reflection().build_v1alpha()?;
        let metrics = self.service.0.metrics.clone();
        let router = Server::builder()
            .max_concurrent_streams(Some(self.service.0.max_concurrent_streams))
            .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
            .layer(HttpMetricsLayer::new(metrics, "flagd-sync", grpc_route))
            .add_service(FlagSyncServiceServer::new(self.service.clone()))
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);

        let listener = listener.into();
        tracing::info!(addr = %listener.describe(), tls = tls.is_some(), "serving flagd.sync.v1 (gRPC)");
        serve_until_drained(
            "sync server",
            listener::incoming(listener, tls),
            shutdown,
            &self.draining,
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

    fn response(&self, snapshot: &Snapshot, selector: &Selector) -> SyncFlagsResponse {
        SyncFlagsResponse {
            flag_configuration: snapshot.sync_document(selector).to_string(),
            sync_context: Some(self.0.sync_context.clone()),
        }
    }
}

#[tonic::async_trait]
impl FlagSyncService for SyncService {
    type SyncFlagsStream = ReceiverStream<Result<SyncFlagsResponse, Status>>;

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
        let task = SyncStream {
            _open: self
                .0
                .metrics
                .sync_stream_opened(&selector_text, &body.provider_id),
            _slot: slot,
            service: self.clone(),
            tx,
            selector,
            snapshots: self.0.store.subscribe(),
            draining: self.0.draining.clone(),
            deadline: self.0.deadline.and_then(|d| Instant::now().checked_add(d)),
        };
        tokio::spawn(task.run());
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn fetch_all_flags(
        &self,
        request: Request<FetchAllFlagsRequest>,
    ) -> Result<Response<FetchAllFlagsResponse>, Status> {
        let (headers, _, body) = request.into_parts();
        let (selector, _) = Self::selector(&headers, &body.selector)?;
        let snapshot = self.0.store.snapshot();
        Ok(Response::new(FetchAllFlagsResponse {
            flag_configuration: snapshot.sync_document(&selector).to_string(),
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

/// One SyncFlags call: the current document, then every new one, until the client leaves,
/// the deadline passes or the server drains.
struct SyncStream {
    /// Keeps the active-streams gauge up while the stream runs.
    _open: super::metrics::StreamGuard,
    /// Holds this stream's place under `--max-open-streams` until it ends.
    _slot: super::limits::StreamSlot,
    service: SyncService,
    tx: mpsc::Sender<Result<SyncFlagsResponse, Status>>,
    selector: Selector,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    draining: watch::Receiver<bool>,
    deadline: Option<Instant>,
}

impl SyncStream {
    async fn run(mut self) {
        let snapshot = self.snapshots.borrow_and_update().clone();
        let first = self.service.response(&snapshot, &self.selector);
        let mut last = first.flag_configuration.clone();
        if self.tx.send(Ok(first)).await.is_err() {
            return;
        }
        let deadline = deadline_at(self.deadline);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                biased;
                // Also reached when the server is gone (sender dropped): end with OK.
                _ = async { self.draining.wait_for(|draining| *draining).await.is_ok() } => return,
                () = &mut deadline => {
                    let status =
                        Status::deadline_exceeded("stream closed due to server-side timeout");
                    let _ = self.tx.send(Err(status)).await;
                    return;
                }
                changed = self.snapshots.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let snapshot = self.snapshots.borrow_and_update().clone();
                    let response = self.service.response(&snapshot, &self.selector);
                    if response.flag_configuration == last {
                        continue;
                    }
                    last.clone_from(&response.flag_configuration);
                    if self.tx.send(Ok(response)).await.is_err() {
                        return;
                    }
                }
                () = self.tx.closed() => return,
            }
        }
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
