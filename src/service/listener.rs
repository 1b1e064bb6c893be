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
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
#[cfg(unix)]
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;

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

    async fn accept(&self) -> io::Result<Plain> {
        match self {
            Listener::Tcp(l) => {
                let (stream, _) = l.accept().await?;
                // Latency matters more than packet count for small unary responses.
                let _ = stream.set_nodelay(true);
                // The kernel notices peers that vanished without a FIN (HTTP/2 pings do the
                // same above TCP where the server sends them).
                let keepalive = socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE);
                let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
                Ok(Plain::Tcp(stream))
            }
            #[cfg(unix)]
            Listener::Unix(l) => Ok(Plain::Unix(l.accept().await?.0)),
        }
    }
}

/// An accepted socket before TLS.
#[derive(Debug)]
pub(crate) enum Plain {
    /// TCP.
    Tcp(TcpStream),
    /// Unix domain socket.
    #[cfg(unix)]
    Unix(UnixStream),
}

impl Plain {
    /// Completes once the peer has sent something (or closed). `readable()` alone may
    /// report a fresh socket ready before any byte arrives; `peek` waits for data.
    async fn readable(&self) -> io::Result<()> {
        match self {
            Plain::Tcp(s) => s.peek(&mut [0u8; 1]).await.map(|_| ()),
            #[cfg(unix)]
            Plain::Unix(s) => s.readable().await,
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
/// until the returned stream is dropped.
pub(crate) fn incoming(listener: Listener, tls: Option<TlsAcceptor>) -> Incoming {
    let (tx, rx) = mpsc::channel::<io::Result<Conn>>(16);
    tokio::spawn(accept_loop(listener, tls, tx));
    Box::pin(ReceiverStream::new(rx))
}

async fn accept_loop(
    listener: Listener,
    tls: Option<TlsAcceptor>,
    tx: mpsc::Sender<io::Result<Conn>>,
) {
    let _unlink = Unlink::of(&listener);
    let mut backoff = BACKOFF_MIN;
    loop {
        let accepted = tokio::select! {
            () = tx.closed() => return,
            accepted = listener.accept() => accepted,
        };
        let plain = match accepted {
            Ok(plain) => {
                backoff = BACKOFF_MIN;
                plain
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
            Conn::Plain(Plain::Tcp($inner)) => $call,
            #[cfg(unix)]
            Conn::Plain(Plain::Unix($inner)) => $call,
            Conn::Tls($inner) => $call,
        }
    };
}

macro_rules! delegate_plain {
    ($self:ident, $inner:ident => $call:expr) => {
        match $self.get_mut() {
            Plain::Tcp($inner) => $call,
            #[cfg(unix)]
            Plain::Unix($inner) => $call,
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
            Conn::Plain(Plain::Tcp(s)) => s.is_write_vectored(),
            #[cfg(unix)]
            Conn::Plain(Plain::Unix(s)) => s.is_write_vectored(),
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
        match self {
            Plain::Tcp(s) => s.is_write_vectored(),
            #[cfg(unix)]
            Plain::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate_plain!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate_plain!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

/// Longest time an HTTP/1.1 client may take to send a request's headers (flagd: 3 s on
/// OFREP); a client trickling header bytes is disconnected then.
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(3);

/// Serves HTTP/1.1 with `router` on every connection of `incoming` until `shutdown` is
/// cancelled; then stops accepting, lets each connection finish its current request and
/// closes it. Headers must arrive within [`HEADER_READ_TIMEOUT`].
pub(crate) async fn serve_http1(
    mut incoming: Incoming,
    router: axum::Router,
    shutdown: tokio_util::sync::CancellationToken,
) {
    use tokio_stream::StreamExt as _;
    // Cancelled with `shutdown`, or when the listener ends.
    let closing = shutdown.child_token();
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            conn = incoming.next() => match conn {
                Some(Ok(conn)) => {
                    connections.spawn(serve_http1_connection(conn, router.clone(), closing.clone()));
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

async fn serve_http1_connection(
    conn: Conn,
    router: axum::Router,
    closing: tokio_util::sync::CancellationToken,
) {
    let service = hyper_util::service::TowerToHyperService::new(router);
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(hyper_util::rt::TokioIo::new(conn), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "HTTP/1.1 connection ended");
            }
            return;
        }
        () = closing.cancelled() => {}
    }
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}
