//! The `http` provider against a real HTTP/1.1 server on loopback, written here on a bare
//! socket so it can misbehave on purpose: ETags and 304s (counted), the `Authorization`
//! header, 5xx answers, answers slower than `timeoutS`, and bodies cut short of their
//! `Content-Length`, documents above `--max-document-size` (announced, or streamed without
//! end and no length). Every failure keeps the last good configuration.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flagpole::store::{Selector, Store};
use flagpole::sync::{
    parse_sources_json, parse_uri, SourceConfig, SourceStats, Supervisor, SyncConfig,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

mod support;

/// Upper bound for anything to happen; tests poll well below it.
const PATIENCE: Duration = Duration::from_secs(20);

fn document(default: &str) -> String {
    format!(
        r#"{{"flags":{{"f":{{"state":"ENABLED","variants":{{"a":"A","b":"B"}},"defaultVariant":"{default}"}}}}}}"#
    )
}

/// How the server answers the next requests.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// 200 with the document and its ETag, or 304 when `If-None-Match` matches.
    Normal,
    /// 500 for everything.
    Failing,
    /// Waits this long before answering normally.
    Slow(Duration),
    /// Announces more bytes than it sends, then closes.
    Truncated,
    /// Sends a 200 without a length and then bytes until the client goes away.
    Endless,
}

#[derive(Debug)]
struct State {
    body: String,
    etag: String,
    mode: Mode,
    /// `Authorization` value the server insists on (401 otherwise).
    required_auth: Option<String>,
    /// The headers of every request received, lower-cased names.
    requests: Vec<Vec<(String, String)>>,
    /// Body bytes written by `Endless` answers that the client cut off.
    endless_sent: Vec<usize>,
}

#[derive(Clone)]
struct Server {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl Server {
    async fn start(body: &str) -> Server {
        Server::start_with(body, None).await
    }

    /// The same server behind TLS when `tls` is given.
    async fn start_with(body: &str, tls: Option<TlsAcceptor>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Server {
            addr: listener.local_addr().unwrap(),
            state: Arc::new(Mutex::new(State {
                body: body.to_owned(),
                etag: "\"v1\"".into(),
                mode: Mode::Normal,
                required_auth: None,
                requests: Vec::new(),
                endless_sent: Vec::new(),
            })),
        };
        let state = server.state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let state = state.clone();
                match tls.clone() {
                    None => drop(tokio::spawn(answer(socket, state))),
                    Some(tls) => drop(tokio::spawn(async move {
                        if let Ok(socket) = tls.accept(socket).await {
                            answer(socket, state).await;
                        }
                    })),
                }
            }
        });
        server
    }

    fn url(&self) -> String {
        format!("http://{}/flags.json", self.addr)
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    fn set(&self, body: &str, etag: &str) {
        self.with(|s| {
            s.body = body.to_owned();
            s.etag = etag.to_owned();
        });
    }

    fn requests(&self) -> Vec<Vec<(String, String)>> {
        self.with(|s| s.requests.clone())
    }
}

fn header<'a>(request: &'a [(String, String)], name: &str) -> Option<&'a str> {
    request
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Reads one request head and answers it as the state says, then closes the connection.
async fn answer(mut socket: impl AsyncRead + AsyncWrite + Unpin, state: Arc<Mutex<State>>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 16 * 1024 {
            return;
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let headers: Vec<(String, String)> = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let (mode, body, etag, required) = {
        let mut s = state.lock().unwrap();
        s.requests.push(headers.clone());
        (
            s.mode,
            s.body.clone(),
            s.etag.clone(),
            s.required_auth.clone(),
        )
    };
    if let Mode::Slow(delay) = mode {
        tokio::time::sleep(delay).await;
    }
    if mode == Mode::Endless {
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n";
        if socket.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let chunk = vec![b' '; 64 * 1024];
        let mut sent = 0usize;
        // Stops when the client closes; the cap only guards against a client that never does.
        while sent < (1 << 30) && socket.write_all(&chunk).await.is_ok() {
            sent += chunk.len();
        }
        state.lock().unwrap().endless_sent.push(sent);
        return;
    }
    let response = if required.is_some() && header(&headers, "authorization") != required.as_deref()
    {
        "HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned()
    } else if mode == Mode::Failing {
        "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\nconnection: close\r\n\r\nboom"
            .to_owned()
    } else if mode == Mode::Truncated {
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\netag: {etag}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len() + 100
        )
    } else if header(&headers, "if-none-match") == Some(etag.as_str()) {
        format!("HTTP/1.1 304 Not Modified\r\netag: {etag}\r\nconnection: close\r\n\r\n")
    } else {
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\netag: {etag}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let _ = socket.write_all(response.as_bytes()).await;
    let _ = socket.shutdown().await;
}

/// Polls `condition` until it holds, failing the test after [`PATIENCE`].
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn default_variant(store: &Store) -> Option<String> {
    store
        .snapshot()
        .get("f", &Selector::All)
        .and_then(|f| f.flag.default_variant.clone())
}

fn stats(supervisor: &Supervisor) -> SourceStats {
    supervisor.stats().into_iter().next().unwrap()
}

/// `--uri <url>` polled every 50 ms.
fn fast(url: &str) -> SourceConfig {
    let mut config = parse_uri(url).unwrap();
    config.interval = Some(Duration::from_millis(50));
    config
}

async fn started(config: SourceConfig) -> (Arc<Store>, Supervisor) {
    let store = Arc::new(Store::new());
    let supervisor = Supervisor::start(&[config], store.clone()).unwrap();
    let mut ready = supervisor.ready();
    tokio::time::timeout(PATIENCE, ready.wait_for(|r| *r))
        .await
        .expect("source never became ready")
        .unwrap();
    (store, supervisor)
}

#[tokio::test]
async fn an_unchanged_document_costs_a_304_and_applies_nothing() {
    let server = Server::start(&document("a")).await;
    let (store, supervisor) = started(fast(&server.url())).await;
    assert_eq!(default_variant(&store).as_deref(), Some("a"));
    let source = Selector::Source(server.url());
    assert!(
        store.snapshot().get("f", &source).is_some(),
        "stored under the URL"
    );
    eventually("three more polls", || server.requests().len() >= 4).await;

    let requests = server.requests();
    assert_eq!(header(&requests[0], "if-none-match"), None);
    assert!(header(&requests[0], "accept").is_some_and(|a| a.contains("application/json")));
    for later in &requests[1..] {
        assert_eq!(header(later, "if-none-match"), Some("\"v1\""));
    }
    let s = stats(&supervisor);
    assert_eq!((s.fetched, s.applied), (1, 1), "{s:?}");
    assert!(s.not_modified >= 3, "{s:?}");

    server.set(&document("b"), "\"v2\"");
    eventually("the new version", || {
        default_variant(&store).as_deref() == Some("b")
    })
    .await;
    let s = stats(&supervisor);
    assert_eq!((s.fetched, s.applied, s.rejected), (2, 2, 0), "{s:?}");
    supervisor.shutdown().await;
}

#[tokio::test]
async fn the_auth_header_is_sent_as_configured() {
    let server = Server::start(&document("a")).await;
    server.with(|s| s.required_auth = Some("Bearer s3cr3t".into()));
    let sources = format!(
        r#"[{{"uri":"{}","provider":"http","bearerToken":"s3cr3t","interval":1}}]"#,
        server.url()
    );
    let config = parse_sources_json(&sources).unwrap().remove(0);
    let (store, supervisor) = started(config).await;
    assert_eq!(default_variant(&store).as_deref(), Some("a"));
    assert_eq!(
        header(&server.requests()[0], "authorization"),
        Some("Bearer s3cr3t")
    );
    supervisor.shutdown().await;

    // authHeader is sent verbatim; without the right one the server refuses and nothing loads.
    let sources = format!(
        r#"[{{"uri":"{}","provider":"http","authHeader":"Basic dXNlcjpwYXNz"}}]"#,
        server.url()
    );
    let config = parse_sources_json(&sources).unwrap().remove(0);
    let store = Arc::new(Store::new());
    let supervisor = Supervisor::start(&[config], store.clone()).unwrap();
    eventually("a refused request", || {
        stats(&supervisor)
            .last_error
            .is_some_and(|e| e.contains("401"))
    })
    .await;
    assert_eq!(default_variant(&store), None);
    assert!(server
        .requests()
        .iter()
        .any(|r| header(r, "authorization") == Some("Basic dXNlcjpwYXNz")));
    supervisor.shutdown().await;
}

#[tokio::test]
async fn server_errors_keep_the_last_good_configuration() {
    let server = Server::start(&document("a")).await;
    let (store, supervisor) = started(fast(&server.url())).await;
    server.with(|s| {
        s.mode = Mode::Failing;
        s.body = document("b");
        s.etag = "\"v2\"".into();
    });
    eventually("two failed polls", || stats(&supervisor).errors >= 2).await;
    assert_eq!(default_variant(&store).as_deref(), Some("a"));
    let s = stats(&supervisor);
    assert!(
        s.last_error.as_deref().is_some_and(|e| e.contains("500")),
        "{s:?}"
    );
    assert_eq!(s.applied, 1);

    server.with(|s| s.mode = Mode::Normal);
    eventually("recovery", || {
        default_variant(&store).as_deref() == Some("b")
    })
    .await;
    supervisor.shutdown().await;
}

#[tokio::test]
async fn a_slow_answer_times_out_and_keeps_the_last_good_configuration() {
    let server = Server::start(&document("a")).await;
    let mut config = fast(&server.url());
    config.remote.timeout = Some(Duration::from_millis(300));
    let (store, supervisor) = started(config).await;
    server.with(|s| {
        s.mode = Mode::Slow(Duration::from_secs(3));
        s.body = document("b");
        s.etag = "\"v2\"".into();
    });
    eventually("a timed-out poll", || {
        stats(&supervisor)
            .last_error
            .is_some_and(|e| e.contains("within"))
    })
    .await;
    assert_eq!(default_variant(&store).as_deref(), Some("a"));
    assert_eq!(stats(&supervisor).applied, 1);
    supervisor.shutdown().await;
}

#[tokio::test]
async fn a_body_cut_short_is_rejected() {
    let server = Server::start(&document("a")).await;
    let (store, supervisor) = started(fast(&server.url())).await;
    server.with(|s| {
        s.mode = Mode::Truncated;
        s.body = document("b");
        s.etag = "\"v2\"".into();
    });
    eventually("two failed polls", || stats(&supervisor).errors >= 2).await;
    assert_eq!(default_variant(&store).as_deref(), Some("a"));
    let s = stats(&supervisor);
    assert!(
        s.last_error.as_deref().is_some_and(|e| e.contains("body")),
        "{s:?}"
    );
    assert_eq!((s.applied, s.fetched), (1, 1), "{s:?}");
    // The ETag of the cut-short version was not kept: once whole, it is fetched and applied.
    server.with(|s| s.mode = Mode::Normal);
    eventually("the whole version", || {
        default_variant(&store).as_deref() == Some("b")
    })
    .await;
    supervisor.shutdown().await;
}

/// A TLS acceptor for the test PKI's server certificate (localhost, 127.0.0.1).
fn acceptor(pki: &support::tls::TestPki) -> TlsAcceptor {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(pki.cert())
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(pki.key()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    TlsAcceptor::from(Arc::new(config))
}

#[tokio::test]
async fn https_with_a_private_ca_from_cert_path() {
    let pki = support::tls::TestPki::generate();
    let server = Server::start_with(&document("a"), Some(acceptor(&pki))).await;
    let url = format!("https://localhost:{}/flags.json", server.addr.port());
    let sources = format!(
        r#"[{{"uri":"{url}","provider":"http","certPath":"{}"}}]"#,
        pki.ca().display()
    );
    let config = parse_sources_json(&sources).unwrap().remove(0);
    let (store, supervisor) = started(config).await;
    assert_eq!(default_variant(&store).as_deref(), Some("a"));
    supervisor.shutdown().await;

    // Without the CA the system roots do not know the server: refused, nothing applied.
    let store = Arc::new(Store::new());
    let supervisor = Supervisor::start(&[parse_uri(&url).unwrap()], store.clone()).unwrap();
    eventually("a refused handshake", || {
        stats(&supervisor)
            .last_error
            .is_some_and(|e| e.to_lowercase().contains("certificate"))
    })
    .await;
    assert_eq!(default_variant(&store), None);
    supervisor.shutdown().await;
}

#[tokio::test]
async fn documents_above_max_document_size_are_refused_without_reading_them_whole() {
    const LIMIT: usize = 4096;
    let server = Server::start(&document("a")).await;
    let config = SyncConfig {
        max_document_size: LIMIT,
        ..SyncConfig::sources(&[fast(&server.url())])
    };
    let store = Arc::new(Store::new());
    let supervisor = Supervisor::from_config(config, store.clone()).unwrap();
    eventually("the small document", || {
        default_variant(&store).as_deref() == Some("a")
    })
    .await;

    // A valid document, just too large (announced with its Content-Length).
    let padding = "x".repeat(2 * LIMIT);
    let big = format!(
        r#"{{"metadata":{{"padding":"{padding}"}},"flags":{{"f":{{"state":"ENABLED","variants":{{"a":"A","b":"B"}},"defaultVariant":"b"}}}}}}"#
    );
    server.set(&big, "\"big\"");
    eventually("a refused document", || {
        stats(&supervisor)
            .last_error
            .is_some_and(|e| e.contains("--max-document-size"))
    })
    .await;
    let s = stats(&supervisor);
    println!("refused: {:?}", s.last_error);
    assert!(
        s.last_error
            .as_deref()
            .unwrap()
            .contains(&LIMIT.to_string()),
        "{s:?}"
    );
    assert_eq!(
        default_variant(&store).as_deref(),
        Some("a"),
        "last good kept"
    );
    assert_eq!(s.applied, 1, "{s:?}");

    // No length at all and no end: the source stops reading at the limit and hangs up.
    server.with(|s| {
        s.mode = Mode::Endless;
        s.etag = "\"endless\"".into();
    });
    eventually("two cut-off answers", || {
        server.with(|s| s.endless_sent.len() >= 2)
    })
    .await;
    let sent = server.with(|s| s.endless_sent.clone());
    println!("bytes written before the source hung up: {sent:?}");
    // The client read at most LIMIT bytes; the rest is what the socket buffers held.
    assert!(sent.iter().all(|&n| n < 16 << 20), "{sent:?}");
    let s = stats(&supervisor);
    assert!(
        s.last_error
            .as_deref()
            .is_some_and(|e| e.contains("--max-document-size")),
        "{s:?}"
    );
    assert_eq!(
        default_variant(&store).as_deref(),
        Some("a"),
        "last good kept"
    );
    assert_eq!(s.applied, 1, "{s:?}");
    supervisor.shutdown().await;
}
