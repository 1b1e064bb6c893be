//! Listening sockets and the accept loop every port shares.
//!
//! [`incoming`] accepts on a TCP or unix socket and yields [`Conn`]s: plain once the client
//! has sent its first byte, or TLS after the handshake; either runs in its own task under
//! [`HANDSHAKE_TIMEOUT`], so a client that opens a connection and says nothing is closed and
//! never blocks the loop. A connection that then sends no complete HTTP/2 request head within
//! `first_request_timeout` is closed ([`FirstRequest`]): HTTP/2's slowloris (a preface, then
//! nothing or a HEADERS frame a byte at a time), which hyper's HTTP/1.1 header timeout does
//! not see. When accepting fails for lack of
//! resources (EMFILE, ENFILE, ENOBUFS, ENOMEM) the loop backs off (10 ms doubling to 1 s)
//! instead of retrying at once and spinning a core; it ends, closing the socket, as soon as
//! the server stops taking connections.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
#[cfg(unix)]
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;

use super::limits::TimedBody;
use super::tls::TlsAcceptor;

/// Longest time a TLS handshake may take, or a plaintext client may stay silent after
/// connecting, before the connection is closed.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Idle time before the kernel probes a TCP peer.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// First and largest pause after a failed accept for lack of resources.
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// A bound listening socket.
#[derive(Debug)]
pub enum Listener {
    /// A TCP port.
    Tcp(TcpListener),
    /// A unix domain socket.
    #[cfg(unix)]
    Unix(UnixListener),
}

impl From<TcpListener> for Listener {
    fn from(listener: TcpListener) -> Listener {
        Listener::Tcp(listener)
    }
}

#[cfg(unix)]
impl From<UnixListener> for Listener {
    fn from(listener: UnixListener) -> Listener {
        Listener::Unix(listener)
    }
}

impl Listener {
    /// The address for log lines: `ip:port` or `unix:path`.
    pub fn describe(&self) -> String {
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "tcp".into()),
            #[cfg(unix)]
            Listener::Unix(l) => match l.local_addr() {
                Ok(addr) => match addr.as_pathname() {
                    Some(path) => format!("unix:{}", path.display()),
                    None => "unix".into(),
                },
                Err(_) => "unix".into(),
            },
        }
    }

    async fn accept(&self) -> io::Result<Socket> {
        match self {
            Listener::Tcp(l) => {
                let (stream, _) = l.accept().await?;
                // Latency matters more than packet count for small unary responses.
                let _ = stream.set_nodelay(true);
                // The kernel notices peers that vanished without a FIN (HTTP/2 pings do the
                // same above TCP where the server sends them).
                let keepalive = socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE);
                let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
                Ok(Socket::Tcp(stream))
            }
            #[cfg(unix)]
            Listener::Unix(l) => Ok(Socket::Unix(l.accept().await?.0)),
        }
    }
}

/// An accepted socket.
#[derive(Debug)]
pub(crate) enum Socket {
    /// TCP.
    Tcp(TcpStream),
    /// Unix domain socket.
    #[cfg(unix)]
    Unix(UnixStream),
}

/// An accepted socket before TLS, holding its place under the port's connection cap
/// until it is closed.
#[derive(Debug)]
pub(crate) struct Plain {
    socket: Socket,
    _slot: Option<OwnedSemaphorePermit>,
}

impl Plain {
    /// Completes once the peer has sent something (or closed). `readable()` alone may
    /// report a fresh socket ready before any byte arrives; `peek` waits for data.
    async fn readable(&self) -> io::Result<()> {
        match &self.socket {
            Socket::Tcp(s) => s.peek(&mut [0u8; 1]).await.map(|_| ()),
            #[cfg(unix)]
            Socket::Unix(s) => s.readable().await,
        }
    }
}

/// An accepted connection, plain or TLS, closed if it sends no request in time.
#[derive(Debug)]
pub(crate) struct Conn {
    transport: Transport,
    /// Until the first HTTP/2 request head (or the first byte of HTTP/1.1) arrives.
    first_request: Option<FirstRequest>,
}

/// What a [`Conn`] reads and writes.
#[derive(Debug)]
enum Transport {
    /// No TLS.
    Plain(Plain),
    /// TLS over a socket, handshake done.
    Tls(Box<TlsStream<Plain>>),
}

/// The client connection preface of HTTP/2 (RFC 9113, 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const H2_HEADERS: u8 = 0x1;
const H2_CONTINUATION: u8 = 0x9;
const H2_END_HEADERS: u8 = 0x4;

/// The deadline of a connection's first request head. hyper bounds an HTTP/1.1 head
/// (`header_read_timeout`) but HTTP/2 has no such timer: a client may send the preface and
/// SETTINGS, answer every PING, and then send nothing or trickle a HEADERS frame forever.
/// This follows the bytes read until the first HEADERS (or CONTINUATION) frame carrying
/// END_HEADERS is complete; if the deadline passes first, reads and writes fail and the
/// server drops the connection. Bytes that are not the HTTP/2 preface disarm it at once
/// (HTTP/1.1: hyper's own timer applies). Later requests are not timed: an established
/// connection is bounded by the stream limits, keep-alive PINGs and the connection cap.
#[derive(Debug)]
struct FirstRequest {
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
    scan: H2Scan,
}

/// Where the scan of the client's first bytes stands.
#[derive(Debug, Clone, Copy)]
enum H2Scan {
    /// This many bytes of the preface seen.
    Preface(usize),
    /// Inside a 9-byte frame header.
    FrameHeader { header: [u8; 9], have: usize },
    /// Inside a frame's payload; `ends_head` when the frame completes a request head.
    Payload { remaining: usize, ends_head: bool },
}

impl FirstRequest {
    fn new(timeout: Duration) -> FirstRequest {
        FirstRequest {
            deadline: Box::pin(tokio::time::sleep(timeout)),
            timeout,
            scan: H2Scan::Preface(0),
        }
    }

    /// The error once the deadline has passed (registering the task's wake-up otherwise).
    fn expired(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        self.deadline.as_mut().poll(cx).is_ready().then(|| {
            tracing::debug!(timeout = ?self.timeout, "no request head in time; connection closed");
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no complete request head within {:?}", self.timeout),
            )
        })
    }

    /// Follows `bytes`, the next ones read; `true` once no deadline applies any more.
    fn seen(&mut self, mut bytes: &[u8]) -> bool {
        while !bytes.is_empty() {
            match &mut self.scan {
                H2Scan::Preface(matched) => {
                    let n = (H2_PREFACE.len() - *matched).min(bytes.len());
                    if bytes[..n] != H2_PREFACE[*matched..*matched + n] {
                        return true;
                    }
                    *matched += n;
                    bytes = &bytes[n..];
                    if *matched == H2_PREFACE.len() {
                        self.scan = H2Scan::FrameHeader {
                            header: [0; 9],
                            have: 0,
                        };
                    }
                }
                H2Scan::FrameHeader { header, have } => {
                    let n = (9 - *have).min(bytes.len());
                    header[*have..*have + n].copy_from_slice(&bytes[..n]);
                    *have += n;
                    bytes = &bytes[n..];
                    if *have == 9 {
                        let length = u32::from_be_bytes([0, header[0], header[1], header[2]]);
                        let ends_head = matches!(header[3], H2_HEADERS | H2_CONTINUATION)
                            && header[4] & H2_END_HEADERS != 0;
                        if length == 0 && ends_head {
                            return true;
                        }
                        self.scan = if length == 0 {
                            H2Scan::FrameHeader {
                                header: [0; 9],
                                have: 0,
                            }
                        } else {
                            H2Scan::Payload {
                                remaining: length as usize,
                                ends_head,
                            }
                        };
                    }
                }
                H2Scan::Payload {
                    remaining,
                    ends_head,
                } => {
                    let n = (*remaining).min(bytes.len());
                    *remaining -= n;
                    bytes = &bytes[n..];
                    if *remaining == 0 {
                        if *ends_head {
                            return true;
                        }
                        self.scan = H2Scan::FrameHeader {
                            header: [0; 9],
                            have: 0,
                        };
                    }
                }
            }
        }
        false
    }
}

/// Accepted connections of a listener.
pub(crate) type Incoming = Pin<Box<dyn Stream<Item = io::Result<Conn>> + Send>>;

/// Accepts on `listener` (with a TLS handshake when `tls` is set) in a task of its own,
/// until the returned stream is dropped. At most `max_connections` are open at once
/// (0 = no cap): beyond that a new connection is accepted and closed at once. A connection
/// that sends no complete HTTP/2 request head within `first_request_timeout` of its first
/// byte (TLS: of the handshake's end) is closed.
pub(crate) fn incoming(
    listener: Listener,
    tls: Option<TlsAcceptor>,
    max_connections: usize,
    first_request_timeout: Duration,
) -> Incoming {
    let (tx, rx) = mpsc::channel::<io::Result<Conn>>(16);
    let cap = ConnectionCap::new(max_connections, listener.describe());
    tokio::spawn(accept_loop(listener, tls, cap, first_request_timeout, tx));
    Box::pin(ReceiverStream::new(rx))
}

/// The cap on connections open at once on one port.
struct ConnectionCap {
    slots: Option<Arc<Semaphore>>,
    max: usize,
    port: String,
    /// Connections closed over the cap since the last warning, and when that was.
    refused: u64,
    warned: Option<Instant>,
}

/// At most one "connection cap reached" warning per port in this interval.
const WARN_INTERVAL: Duration = Duration::from_secs(10);

impl ConnectionCap {
    fn new(max: usize, port: String) -> ConnectionCap {
        ConnectionCap {
            slots: (max > 0).then(|| Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS)))),
            max,
            port,
            refused: 0,
            warned: None,
        }
    }

    /// The new connection's slot: `Some(None)` without a cap, `None` when the cap is reached
    /// (counted and logged at most every [`WARN_INTERVAL`]).
    fn admit(&mut self) -> Option<Option<OwnedSemaphorePermit>> {
        let Some(slots) = &self.slots else {
            return Some(None);
        };
        if let Ok(permit) = slots.clone().try_acquire_owned() {
            return Some(Some(permit));
        }
        self.refused += 1;
        if self.warned.is_none_or(|at| at.elapsed() >= WARN_INTERVAL) {
            tracing::warn!(
                port = %self.port,
                limit = self.max,
                refused = self.refused,
                "connection cap reached; closing new connections (--max-connections)"
            );
            self.refused = 0;
            self.warned = Some(Instant::now());
        }
        None
    }
}

async fn accept_loop(
    listener: Listener,
    tls: Option<TlsAcceptor>,
    mut cap: ConnectionCap,
    first_request_timeout: Duration,
    tx: mpsc::Sender<io::Result<Conn>>,
) {
    let _unlink = Unlink::of(&listener);
    let mut backoff = BACKOFF_MIN;
    loop {
        let accepted = tokio::select! {
            () = tx.closed() => return,
            accepted = listener.accept() => accepted,
        };
        let socket = match accepted {
            Ok(socket) => {
                backoff = BACKOFF_MIN;
                socket
            }
            Err(error) if out_of_resources(&error) => {
                tracing::warn!(%error, pause = ?backoff, "cannot accept connections; pausing");
                tokio::select! {
                    () = tx.closed() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
            // The peer gave up before accept (ECONNABORTED, ECONNRESET...): nothing to do.
            Err(error) => {
                tracing::debug!(%error, "accept failed");
                continue;
            }
        };
        // Over the cap: closed at once (dropped), so the client fails fast instead of
        // waiting in the backlog, and the descriptor is free again.
        let Some(slot) = cap.admit() else {
            continue;
        };
        let plain = Plain {
            socket,
            _slot: slot,
        };
        let tls = tls.clone();
        let tx = tx.clone();
        // The handshake (TLS, or the first byte of a plaintext request) runs in its own task
        // under a deadline: silent clients are closed and never hold up the loop.
        tokio::spawn(async move {
            let transport = match tls {
                None => match tokio::time::timeout(HANDSHAKE_TIMEOUT, plain.readable()).await {
                    Ok(Ok(())) => Transport::Plain(plain),
                    Ok(Err(error)) => return tracing::debug!(%error, "connection failed"),
                    Err(_) => return tracing::debug!("connection silent; closed"),
                },
                Some(acceptor) => {
                    let handshake = acceptor.current().accept(plain);
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                        Ok(Ok(stream)) => Transport::Tls(Box::new(stream)),
                        Ok(Err(error)) => return tracing::debug!(%error, "TLS handshake failed"),
                        Err(_) => return tracing::debug!("TLS handshake timed out"),
                    }
                }
            };
            let conn = Conn {
                transport,
                first_request: Some(FirstRequest::new(first_request_timeout)),
            };
            let _ = tx.send(Ok(conn)).await;
        });
    }
}

/// Removes a unix socket's file once its listener is closed (as Go's listener does), so
/// that a stopped daemon leaves no socket clients could mistake for a live one.
struct Unlink(Option<std::path::PathBuf>);

impl Unlink {
    fn of(listener: &Listener) -> Unlink {
        match listener {
            Listener::Tcp(_) => Unlink(None),
            #[cfg(unix)]
            Listener::Unix(l) => Unlink(
                l.local_addr()
                    .ok()
                    .and_then(|a| a.as_pathname().map(ToOwned::to_owned)),
            ),
        }
    }
}

impl Drop for Unlink {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Accept errors that mean "no descriptors or memory now", worth a pause.
fn out_of_resources(error: &io::Error) -> bool {
    #[cfg(unix)]
    {
        const EMFILE: i32 = 24;
        const ENFILE: i32 = 23;
        const ENOMEM: i32 = 12;
        #[cfg(target_os = "linux")]
        const ENOBUFS: i32 = 105;
        #[cfg(not(target_os = "linux"))]
        const ENOBUFS: i32 = 55;
        matches!(
            error.raw_os_error(),
            Some(EMFILE | ENFILE | ENOMEM | ENOBUFS)
        )
    }
    #[cfg(not(unix))]
    {
        error.kind() == io::ErrorKind::OutOfMemory
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

macro_rules! delegate {
    ($self:ident, $inner:ident => $call:expr) => {
        match $self.get_mut() {
            Transport::Plain($inner) => $call,
            Transport::Tls($inner) => $call,
        }
    };
}

/// Fails a write-side call once the first request's deadline has passed, so that a client
/// that stops reading cannot hold the connection past it either.
macro_rules! guard_write {
    ($self:ident, $cx:ident, $transport:ident => $call:expr) => {{
        let conn = $self.get_mut();
        if let Some(error) = conn.first_request.as_mut().and_then(|f| f.expired($cx)) {
            return Poll::Ready(Err(error));
        }
        let $transport = Pin::new(&mut conn.transport);
        $call
    }};
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let conn = self.get_mut();
        let Some(first) = conn.first_request.as_mut() else {
            return Pin::new(&mut conn.transport).poll_read(cx, buf);
        };
        if let Some(error) = first.expired(cx) {
            return Poll::Ready(Err(error));
        }
        let before = buf.filled().len();
        let result = std::task::ready!(Pin::new(&mut conn.transport).poll_read(cx, buf));
        if result.is_ok() && first.seen(&buf.filled()[before..]) {
            conn.first_request = None;
        }
        Poll::Ready(result)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        guard_write!(self, cx, t => t.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        guard_write!(self, cx, t => t.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.transport.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        guard_write!(self, cx, t => t.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().transport).poll_shutdown(cx)
    }
}

macro_rules! delegate_plain {
    ($self:ident, $inner:ident => $call:expr) => {
        match &mut $self.get_mut().socket {
            Socket::Tcp($inner) => $call,
            #[cfg(unix)]
            Socket::Unix($inner) => $call,
        }
    };
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Transport::Plain(s) => s.is_write_vectored(),
            Transport::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

impl AsyncRead for Plain {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate_plain!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Plain {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate_plain!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate_plain!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.socket {
            Socket::Tcp(s) => s.is_write_vectored(),
            #[cfg(unix)]
            Socket::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate_plain!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate_plain!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

/// How a port speaks HTTP: header-read timeout for HTTP/1.1, and HTTP/2 if offered.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HttpConfig {
    /// Longest time an HTTP/1.1 client may take to send a request's headers (flagd: 3 s on
    /// OFREP); a client trickling header bytes is disconnected then. The same bound
    /// closes keep-alive connections idle that long after their last response.
    pub header_read_timeout: Duration,
    /// Longest time a request body may take to arrive after its headers ([`TimedBody`]).
    pub body_read_timeout: Duration,
    /// HTTP/2 next to HTTP/1.1 (`None`: HTTP/1.1 only).
    pub http2: Option<Http2Config>,
}

/// HTTP/2 settings of a port.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Http2Config {
    /// Streams one connection may open at once.
    pub max_concurrent_streams: u32,
    /// Idle time before the server PINGs the peer.
    pub keep_alive_interval: Duration,
    /// How long that PING may go unanswered before the connection is closed.
    pub keep_alive_timeout: Duration,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The request body every [`serve_http`] service receives.
pub(crate) type RequestBody = TimedBody<hyper::body::Incoming>;

/// Serves `service` on every connection of `incoming` until `shutdown` is cancelled; then
/// stops accepting, lets each connection finish its in-flight requests (HTTP/2: GOAWAY)
/// and closes it. The caller bounds that wait. Every request body is a [`TimedBody`].
pub(crate) async fn serve_http<S, B>(
    mut incoming: Incoming,
    service: S,
    config: HttpConfig,
    shutdown: tokio_util::sync::CancellationToken,
) where
    S: tower::Service<http::Request<RequestBody>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    use hyper_util::rt::{TokioExecutor, TokioTimer};
    use tokio_stream::StreamExt as _;
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout);
    match config.http2 {
        None => builder = builder.http1_only(),
        Some(h2) => {
            builder
                .http2()
                .timer(TokioTimer::new())
                .max_concurrent_streams(h2.max_concurrent_streams)
                .keep_alive_interval(h2.keep_alive_interval)
                .keep_alive_timeout(h2.keep_alive_timeout);
        }
    }
    let builder = Arc::new(builder);
    // Cancelled with `shutdown`, or when the listener ends.
    let closing = shutdown.child_token();
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            conn = incoming.next() => match conn {
                Some(Ok(conn)) => {
                    let (builder, service, closing) = (builder.clone(), service.clone(), closing.clone());
                    connections.spawn(async move {
                        let timeout = config.body_read_timeout;
                        let service = hyper_util::service::TowerToHyperService::new(
                            tower::ServiceExt::map_request(service, move |request: http::Request<hyper::body::Incoming>| {
                                request.map(|body| TimedBody::new(body, timeout))
                            }),
                        );
                        let connection = builder
                            .serve_connection(hyper_util::rt::TokioIo::new(conn), service);
                        tokio::pin!(connection);
                        tokio::select! {
                            result = connection.as_mut() => {
                                if let Err(error) = result {
                                    tracing::debug!(%error, "HTTP connection ended");
                                }
                                return;
                            }
                            () = closing.cancelled() => {}
                        }
                        connection.as_mut().graceful_shutdown();
                        let _ = connection.await;
                    });
                }
                Some(Err(_)) => continue,
                None => break,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(incoming);
    closing.cancel();
    while connections.join_next().await.is_some() {}
}

/// The per-port connection limits, the same for 8013, 8015 and 8016.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionConfig {
    /// Connections open at once on one port (0 = no cap).
    pub max_connections: usize,
    /// See [`HttpConfig::header_read_timeout`].
    pub header_read_timeout: Duration,
    /// Longest time a request body may take to arrive, from the end of its headers.
    pub body_read_timeout: Duration,
}

impl Default for ConnectionConfig {
    fn default() -> ConnectionConfig {
        ConnectionConfig {
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(3),
            body_read_timeout: Duration::from_secs(10),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = (payload.len() as u32).to_be_bytes();
        let mut frame = vec![len[1], len[2], len[3], kind, flags, 0, 0, 0, 1];
        frame.extend_from_slice(payload);
        frame
    }

    /// Feeds `bytes` one at a time (as a trickling client would) and in one piece; both
    /// must agree. `Some(i)`: done after byte `i`.
    fn done_at(bytes: &[u8]) -> Option<usize> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let mut whole = FirstRequest::new(Duration::from_secs(1));
        let at_once = whole.seen(bytes);
        let mut trickled = FirstRequest::new(Duration::from_secs(1));
        let at = (0..bytes.len()).find(|&i| trickled.seen(&bytes[i..=i]));
        assert_eq!(at.is_some(), at_once, "{bytes:?}");
        at
    }

    #[test]
    fn the_first_request_head_ends_the_deadline() {
        let settings = frame(0x4, 0, &[0, 3, 0, 0, 0, 100]);
        let mut h2 = H2_PREFACE.to_vec();
        h2.extend(&settings);
        // Preface and SETTINGS only: still waiting.
        assert_eq!(done_at(&h2), None);
        // HEADERS without END_HEADERS, then CONTINUATION with it.
        let mut split = h2.clone();
        split.extend(frame(H2_HEADERS, 0, b"abc"));
        assert_eq!(done_at(&split), None);
        split.extend(frame(H2_CONTINUATION, H2_END_HEADERS, b"de"));
        assert_eq!(done_at(&split), Some(split.len() - 1));
        // A complete HEADERS frame: done at its last byte, not before.
        let mut whole = h2.clone();
        whole.extend(frame(H2_HEADERS, H2_END_HEADERS | 0x1, b"headers"));
        assert_eq!(done_at(&whole), Some(whole.len() - 1));
        // A DATA frame with the END_HEADERS bit pattern (0x4 is PADDED's neighbour) is no head.
        let mut data = h2.clone();
        data.extend(frame(0x0, H2_END_HEADERS, b"xx"));
        assert_eq!(done_at(&data), None);
        // HTTP/1.1 is left to hyper: done at the first byte that differs from the preface.
        assert_eq!(done_at(b"POST /ofrep HTTP/1.1\r\n"), Some(1));
        assert_eq!(done_at(b"GET / HTTP/1.1\r\n"), Some(0));
    }
}
