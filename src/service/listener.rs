//! Listening sockets and the accept loop every port shares.
//!
//! [`incoming`] accepts on a TCP or unix socket and yields [`Conn`]s: plain once the client
//! has sent its first byte, or TLS after the handshake; either runs in its own task under
//! [`HANDSHAKE_TIMEOUT`], so a client that opens a connection and says nothing is closed and
//! never blocks the loop. When accepting fails for lack of
//! resources (EMFILE, ENFILE, ENOBUFS, ENOMEM) the loop backs off (10 ms doubling to 1 s)
//! instead of retrying at once and spinning a core; it ends, closing the socket, as soon as
//! the server stops taking connections.

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
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;

use super::limits::TimedBody;

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

/// An accepted connection, plain or TLS.
#[derive(Debug)]
pub(crate) enum Conn {
    /// No TLS.
    Plain(Plain),
    /// TLS over a socket, handshake done.
    Tls(Box<TlsStream<Plain>>),
}

/// Accepted connections of a listener.
pub(crate) type Incoming = Pin<Box<dyn Stream<Item = io::Result<Conn>> + Send>>;

/// Accepts on `listener` (with a TLS handshake when `tls` is set) in a task of its own,
/// until the returned stream is dropped. At most `max_connections` are open at once
/// (0 = no cap): beyond that a new connection is accepted and closed at once.
pub(crate) fn incoming(
    listener: Listener,
    tls: Option<TlsAcceptor>,
    max_connections: usize,
) -> Incoming {
    let (tx, rx) = mpsc::channel::<io::Result<Conn>>(16);
    let cap = ConnectionCap::new(max_connections, listener.describe());
    tokio::spawn(accept_loop(listener, tls, cap, tx));
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
            let conn = match tls {
                None => match tokio::time::timeout(HANDSHAKE_TIMEOUT, plain.readable()).await {
                    Ok(Ok(())) => Conn::Plain(plain),
                    Ok(Err(error)) => return tracing::debug!(%error, "connection failed"),
                    Err(_) => return tracing::debug!("connection silent; closed"),
                },
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(plain)).await {
                        Ok(Ok(stream)) => Conn::Tls(Box::new(stream)),
                        Ok(Err(error)) => return tracing::debug!(%error, "TLS handshake failed"),
                        Err(_) => return tracing::debug!("TLS handshake timed out"),
                    }
                }
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
            Conn::Plain($inner) => $call,
            Conn::Tls($inner) => $call,
        }
    };
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

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Conn {
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
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
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
