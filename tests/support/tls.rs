//! TLS test material and clients: a throw-away PKI made at test time by
//! `tests/support/gen-test-certs` (openssl), and TLS clients for gRPC (tonic over a rustls
//! connector) and HTTP/1.1 (hyper over a rustls stream).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint};

/// A CA, a server certificate and key it signed (localhost, 127.0.0.1) and an unrelated key.
pub struct TestPki {
    /// Holds the files.
    pub dir: TempDir,
}

impl TestPki {
    /// Generates a fresh PKI in a temporary directory.
    pub fn generate() -> TestPki {
        let dir = tempfile::tempdir().expect("temp dir");
        TestPki::generate_into(dir.path());
        TestPki { dir }
    }

    /// Generates (or replaces) the PKI files in `dir`.
    pub fn generate_into(dir: &Path) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/gen-test-certs");
        let status = std::process::Command::new("sh")
            .arg(&script)
            .arg(dir)
            .status()
            .expect("run tests/support/gen-test-certs (needs the openssl command)");
        assert!(
            status.success(),
            "gen-test-certs failed (is openssl installed?)"
        );
    }

    /// The CA certificate (PEM).
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The server certificate (PEM).
    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    /// The server key (PEM).
    pub fn key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }

    /// A client certificate signed by the CA, and its key.
    pub fn client(&self) -> (PathBuf, PathBuf) {
        (
            self.dir.path().join("client.pem"),
            self.dir.path().join("client.key"),
        )
    }

    /// A key that belongs to no certificate here.
    pub fn other_key(&self) -> PathBuf {
        self.dir.path().join("other.key")
    }
}

/// A rustls client trusting only `ca`, offering `alpn`.
pub fn connector(ca: &Path, alpn: &[&[u8]]) -> TlsConnector {
    connector_with_identity(ca, alpn, None)
}

/// Like [`connector`], presenting the client certificate and key `identity` when given.
pub fn connector_with_identity(
    ca: &Path,
    alpn: &[&[u8]],
    identity: Option<(PathBuf, PathBuf)>,
) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("read CA") {
        roots.add(cert.expect("CA PEM")).expect("add CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let mut config = match identity {
        None => config.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .expect("client cert")
                .collect::<Result<Vec<_>, _>>()
                .expect("client cert PEM");
            let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key).expect("client key");
            config
                .with_client_auth_cert(chain, key)
                .expect("client identity")
        }
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

/// A TLS connection to `addr` for the name `localhost`, trusting `ca`.
pub async fn connect(
    addr: SocketAddr,
    ca: &Path,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").expect("name");
    connector(ca, alpn).connect(name, tcp).await
}

/// A gRPC channel over TLS (ALPN `h2`) to `addr`, trusting `ca`.
pub async fn grpc_channel(addr: SocketAddr, ca: &Path) -> Result<Channel, tonic::transport::Error> {
    grpc_channel_with_identity(addr, ca, None).await
}

/// Like [`grpc_channel`], presenting the client certificate and key `identity` when given.
pub async fn grpc_channel_with_identity(
    addr: SocketAddr,
    ca: &Path,
    identity: Option<(PathBuf, PathBuf)>,
) -> Result<Channel, tonic::transport::Error> {
    let connector = connector_with_identity(ca, &[b"h2"], identity);
    // `http://`: the connector below does the TLS. With tonic's own TLS features on (the grpcs
    // sync source uses them), an `https://` endpoint without tonic's TLS config is refused.
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_| {
            let connector = connector.clone();
            async move {
                let tcp = TcpStream::connect(addr).await?;
                let name = ServerName::try_from("localhost").expect("name");
                connector.connect(name, tcp).await.map(TokioIo::new)
            }
        }))
        .await
}

/// One HTTP/1.1 POST over TLS (ALPN `http/1.1`); the status and the whole body.
pub async fn post(
    addr: SocketAddr,
    ca: &Path,
    path: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let tls = connect(addr, ca, &[b"http/1.1"]).await?;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(connection);
    let request = http::Request::post(path)
        .header("host", "localhost")
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("request");
    let response = sender
        .send_request(request)
        .await
        .map_err(std::io::Error::other)?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
