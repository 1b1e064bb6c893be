//! A faulting TCP proxy for HTTP on loopback, put in front of moto to play a misbehaving AWS:
//! it passes traffic through, delays each new connection, answers every request with S3's
//! `503 SlowDown`, or stops listening altogether (connection refused) and comes back on the
//! same port.
//!
//! Changing the mode closes every open connection, so a client's pooled connection cannot
//! slip past the new mode.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does with a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward to the upstream.
    Pass,
    /// Wait this long, then forward.
    Delay(Duration),
    /// Answer each request `503 Slow Down` with S3's `SlowDown` error body.
    SlowDown,
    /// Not listening: connections are refused.
    Down,
}

/// A running proxy; stopped when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    mode: watch::Sender<(Mode, u64)>,
    accept: Mutex<Option<JoinHandle<()>>>,
    slowdowns: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
}

impl FaultProxy {
    /// A proxy on a free loopback port in front of `upstream` (`http://127.0.0.1:<port>`).
    pub async fn start(upstream: &str) -> FaultProxy {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .parse()
            .expect("upstream host:port");
        let (mode, _) = watch::channel((Mode::Pass, 0));
        let listener = listen_on("127.0.0.1:0".parse().unwrap());
        let proxy = FaultProxy {
            addr: listener.local_addr().unwrap(),
            upstream,
            mode,
            accept: Mutex::new(None),
            slowdowns: Arc::default(),
            connections: Arc::default(),
        };
        proxy.serve(listener);
        proxy
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests answered with `SlowDown` so far.
    pub fn slowdowns(&self) -> usize {
        self.slowdowns.load(Ordering::SeqCst)
    }

    /// Connections accepted so far (in any mode but `Down`).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Switches mode; open connections are closed. `Down` closes the listening socket
    /// (connections are refused) and leaving it listens on the same port again.
    pub async fn set(&self, mode: Mode) {
        let (old, generation) = *self.mode.borrow();
        self.mode.send_replace((mode, generation + 1));
        match (old == Mode::Down, mode == Mode::Down) {
            (false, true) => {
                let task = self.accept.lock().unwrap().take();
                if let Some(task) = task {
                    task.abort();
                    // Once the task is gone its listener is closed.
                    let _ = task.await;
                }
            }
            (true, false) => self.serve(listen_on(self.addr)),
            _ => {}
        }
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let mode = self.mode.subscribe();
        let upstream = self.upstream;
        let slowdowns = self.slowdowns.clone();
        let connections = self.connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                connections.fetch_add(1, Ordering::SeqCst);
                let mut mode = mode.clone();
                let (current, generation) = *mode.borrow_and_update();
                let slowdowns = slowdowns.clone();
                tokio::spawn(async move {
                    let work = handle(client, current, upstream, slowdowns);
                    // A mode change ends the connection, whatever it is doing.
                    tokio::select! {
                        _ = work => {}
                        _ = mode.wait_for(|(_, g)| *g != generation) => {}
                    }
                });
            }
        });
        *self.accept.lock().unwrap() = Some(task);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(task) = self.accept.lock().unwrap().take() {
            task.abort();
        }
        let generation = self.mode.borrow().1;
        self.mode.send_replace((Mode::Down, generation + 1));
    }
}

fn listen_on(addr: SocketAddr) -> tokio::net::TcpListener {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_reuseaddr(true).expect("SO_REUSEADDR");
    socket.bind(addr).expect("bind the proxy port");
    socket.listen(64).expect("listen")
}

async fn handle(
    mut client: TcpStream,
    mode: Mode,
    upstream: SocketAddr,
    slowdowns: Arc<AtomicUsize>,
) {
    match mode {
        Mode::Down => {}
        Mode::SlowDown => {
            while read_request(&mut client).await {
                slowdowns.fetch_add(1, Ordering::SeqCst);
                let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
                    <Message>Please reduce your request rate.</Message><RequestId>fault</RequestId></Error>";
                let response = format!(
                    "HTTP/1.1 503 Slow Down\r\ncontent-type: application/xml\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                if client.write_all(response.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
        Mode::Delay(delay) => {
            tokio::time::sleep(delay).await;
            forward(client, upstream).await;
        }
        Mode::Pass => forward(client, upstream).await,
    }
}

async fn forward(mut client: TcpStream, upstream: SocketAddr) {
    if let Ok(mut server) = TcpStream::connect(upstream).await {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
    }
}

/// Reads one HTTP/1.1 request (head and `content-length` body); `false` at end of stream.
async fn read_request(client: &mut TcpStream) -> bool {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match client.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return false,
        }
        if head.len() > 64 * 1024 {
            return false;
        }
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    client.read_exact(&mut body).await.is_ok()
}
