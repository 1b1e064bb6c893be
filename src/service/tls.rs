//! TLS for the evaluation (8013), sync (8015) and OFREP (8016) ports: rustls with the `ring`
//! provider, TLS 1.2 and 1.3, a certificate chain and key from PEM files
//! (`--server-cert-path` / `--server-key-path`).
//!
//! The certificate is loaded and checked (readable, parseable, key matching the certificate)
//! before any port serves: a bad pair is a start-up error, never a plaintext fallback. The
//! files are then watched: when they change (cert-manager, ACM exports, a renewed secret
//! mounted through a symlink swap) the pair is read again and, if valid, serves every new
//! handshake; open connections keep the session they negotiated. An invalid replacement is
//! logged and the previous pair stays in use. The client CA bundle of mutual TLS
//! (`--client-ca-path`) is watched and reloaded the same way.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::reload::{self, WatchGuard};

/// ALPN of the evaluation port: gRPC needs `h2`; gRPC-Web and Connect also run over HTTP/1.1.
pub(crate) const ALPN_EVALUATION: &[&[u8]] = &[b"h2", b"http/1.1"];
/// ALPN of the sync port (gRPC only).
pub(crate) const ALPN_SYNC: &[&[u8]] = &[b"h2"];
/// ALPN of the OFREP port (HTTP/1.1 only).
pub(crate) const ALPN_OFREP: &[&[u8]] = &[b"http/1.1"];

/// Why TLS cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Only one of the two paths was given.
    #[error("TLS needs both --server-cert-path and --server-key-path; only {given} is set")]
    Incomplete {
        /// The option that was given.
        given: &'static str,
    },
    /// The certificate file cannot be read or holds no certificate.
    #[error("TLS certificate `{path}`: {message}")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The key file cannot be read or holds no usable private key.
    #[error("TLS private key `{path}`: {message}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The key does not belong to the certificate.
    #[error("TLS private key `{key}` does not match certificate `{certificate}`: {message}")]
    Mismatch {
        /// The certificate file.
        certificate: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls reported.
        message: String,
    },
    /// `--client-ca-path` without a server certificate.
    #[error("--client-ca-path needs --server-cert-path and --server-key-path")]
    ClientCaWithoutTls,
    /// The client CA file cannot be read or holds no usable certificate.
    #[error("client CA `{path}`: {message}")]
    ClientCa {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The file watcher for reloading could not start.
    #[error("TLS certificate watch: {0}")]
    Watch(String),
}

/// The server certificate of the TLS ports, swapped atomically on reload.
#[derive(Debug)]
pub(crate) struct ServerTls {
    certificate: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertifiedKey>,
    /// Set for mutual TLS: client certificates must chain to this bundle.
    client_ca: Option<ClientCa>,
}

/// The `--client-ca-path` bundle and the verifier built from it, swapped on reload.
#[derive(Debug)]
struct ClientCa {
    path: PathBuf,
    current: ArcSwap<ClientVerifier>,
}

/// One version of the client CA bundle.
#[derive(Debug)]
struct ClientVerifier {
    /// The file as read, so that a change elsewhere in its directory reloads nothing.
    pem: Vec<u8>,
    verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
}

impl ServerTls {
    /// TLS from the two paths, `None` when neither is given; an error when only one is, or
    /// when the pair cannot be loaded.
    pub(crate) fn from_paths(
        certificate: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<Option<Arc<ServerTls>>, TlsError> {
        let (certificate, key) = match (certificate, key) {
            (None, None) => return Ok(None),
            (Some(_), None) => {
                return Err(TlsError::Incomplete {
                    given: "--server-cert-path",
                })
            }
            (None, Some(_)) => {
                return Err(TlsError::Incomplete {
                    given: "--server-key-path",
                })
            }
            (Some(c), Some(k)) => (c.to_owned(), k.to_owned()),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let loaded = load(&certificate, &key, &provider)?;
        Ok(Some(Arc::new(ServerTls {
            certificate,
            key,
            provider,
            current: ArcSwap::from_pointee(loaded),
            client_ca: None,
        })))
    }

    /// This TLS requiring a client certificate that chains to the CA bundle at `ca`
    /// (mutual TLS). Call before any [`acceptor`](ServerTls::acceptor).
    pub(crate) fn require_client_certificates(
        self: Arc<Self>,
        ca: &Path,
    ) -> Result<Arc<Self>, TlsError> {
        let verifier = load_client_ca(ca, &self.provider)?;
        let mut tls = Arc::try_unwrap(self).unwrap_or_else(|shared| ServerTls {
            certificate: shared.certificate.clone(),
            key: shared.key.clone(),
            provider: shared.provider.clone(),
            current: ArcSwap::new(shared.current.load_full()),
            client_ca: None,
        });
        tls.client_ca = Some(ClientCa {
            path: ca.to_owned(),
            current: ArcSwap::from_pointee(verifier),
        });
        Ok(Arc::new(tls))
    }

    /// An acceptor for one port, offering `alpn` (TLS 1.2 and 1.3; client certificates
    /// when [`require_client_certificates`](ServerTls::require_client_certificates) was called).
    pub(crate) fn acceptor(self: &Arc<Self>, alpn: &[&[u8]]) -> TlsAcceptor {
        let alpn: Vec<Vec<u8>> = alpn.iter().map(|p| p.to_vec()).collect();
        let verifier = self.client_verifier();
        let built = Built {
            config: self.rustls_config(&alpn, verifier.as_deref()),
            verifier,
        };
        TlsAcceptor(Arc::new(AcceptorState {
            tls: self.clone(),
            alpn,
            built: ArcSwap::from_pointee(built),
        }))
    }

    fn client_verifier(&self) -> Option<Arc<ClientVerifier>> {
        self.client_ca.as_ref().map(|ca| ca.current.load_full())
    }

    fn rustls_config(
        self: &Arc<Self>,
        alpn: &[Vec<u8>],
        client: Option<&ClientVerifier>,
    ) -> Arc<rustls::ServerConfig> {
        let builder = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("the ring provider supports TLS 1.2 and 1.3");
        let builder = match client {
            Some(client) => builder.with_client_cert_verifier(client.verifier.clone()),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(Arc::new(Resolver(self.clone())));
        config.alpn_protocols = alpn.to_vec();
        Arc::new(config)
    }

    /// Reads the client CA bundle again; keeps the previous one if the new one is unusable.
    fn reload_client_ca(&self) {
        let Some(ca) = &self.client_ca else { return };
        // A change elsewhere in the directory (the certificate, a token file) reloads nothing;
        // a read error is reported by load_client_ca, with the path.
        if std::fs::read(&ca.path).is_ok_and(|pem| pem == ca.current.load().pem) {
            return;
        }
        match load_client_ca(&ca.path, &self.provider) {
            Ok(verifier) => {
                ca.current.store(Arc::new(verifier));
                tracing::info!(
                    client_ca = %ca.path.display(),
                    "client CA bundle reloaded; new connections are verified against it"
                );
            }
            Err(error) => {
                tracing::warn!(%error, "client CA bundle not reloaded; keeping the previous one")
            }
        }
    }

    /// Watches the directories of both files (and of the client CA bundle) and reloads on
    /// every change, until the returned guard is dropped. Invalid replacements are logged
    /// and ignored.
    pub(crate) fn watch(self: &Arc<Self>) -> Result<WatchGuard, TlsError> {
        let tls = self.clone();
        let mut files = vec![self.certificate.as_path(), self.key.as_path()];
        if let Some(ca) = &self.client_ca {
            files.push(ca.path.as_path());
        }
        reload::watch_files(&files, move || {
            tls.reload_client_ca();
            let before = tls.current.load_full();
            match load(&tls.certificate, &tls.key, &tls.provider) {
                Ok(loaded) if loaded.cert == before.cert => {}
                Ok(loaded) => {
                    tls.current.store(Arc::new(loaded));
                    tracing::info!(
                        certificate = %tls.certificate.display(),
                        "TLS certificate reloaded; new connections use it"
                    );
                }
                Err(error) => {
                    tracing::warn!(%error, "TLS certificate not reloaded; keeping the previous one")
                }
            }
        })
        .map_err(TlsError::Watch)
    }
}

/// The TLS acceptor of one port. It follows client CA reloads: a changed bundle gets a new
/// rustls configuration, whose fresh session cache also keeps clients verified against the
/// old bundle from resuming their sessions.
#[derive(Debug, Clone)]
pub(crate) struct TlsAcceptor(Arc<AcceptorState>);

#[derive(Debug)]
struct AcceptorState {
    tls: Arc<ServerTls>,
    alpn: Vec<Vec<u8>>,
    built: ArcSwap<Built>,
}

/// A rustls acceptor and the client CA version it verifies against.
#[derive(Debug)]
struct Built {
    verifier: Option<Arc<ClientVerifier>>,
    config: Arc<rustls::ServerConfig>,
}

impl TlsAcceptor {
    /// The acceptor for the next handshake.
    pub(crate) fn current(&self) -> tokio_rustls::TlsAcceptor {
        let state = &self.0;
        let verifier = state.tls.client_verifier();
        let built = state.built.load();
        let same = match (&built.verifier, &verifier) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        if same {
            return tokio_rustls::TlsAcceptor::from(built.config.clone());
        }
        // Rebuilt once per reload (two handshakes racing here build twice; harmless).
        let config = state.tls.rustls_config(&state.alpn, verifier.as_deref());
        state.built.store(Arc::new(Built {
            verifier,
            config: config.clone(),
        }));
        tokio_rustls::TlsAcceptor::from(config)
    }
}

#[derive(Debug)]
struct Resolver(Arc<ServerTls>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current.load_full())
    }
}

/// Reads a client CA bundle and builds the verifier of mutual TLS from it.
fn load_client_ca(ca: &Path, provider: &Arc<CryptoProvider>) -> Result<ClientVerifier, TlsError> {
    let fail = |message: String| TlsError::ClientCa {
        path: ca.to_owned(),
        message,
    };
    let pem = std::fs::read(ca).map_err(|e| fail(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| fail(format!("not PEM: {e}")))?;
        roots.add(cert).map_err(|e| fail(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(fail("no CERTIFICATE block found".into()));
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| fail(e.to_string()))?;
    Ok(ClientVerifier { pem, verifier })
}

/// Reads and checks a certificate chain and its key.
fn load(
    certificate: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let cert_error = |message: String| TlsError::Certificate {
        path: certificate.to_owned(),
        message,
    };
    let key_error = |message: String| TlsError::Key {
        path: key.to_owned(),
        message,
    };
    // Read first so that a missing or unreadable file says so plainly.
    let cert_pem = std::fs::read(certificate).map_err(|e| cert_error(e.to_string()))?;
    let key_pem = std::fs::read(key).map_err(|e| key_error(e.to_string()))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_error(format!("not PEM: {e}")))?;
    if chain.is_empty() {
        return Err(cert_error("no CERTIFICATE block found".into()));
    }
    let private_key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| key_error(format!("no usable PEM private key: {e}")))?;
    let signing_key = provider
        .key_provider
        .load_private_key(private_key)
        .map_err(|e| key_error(e.to_string()))?;
    let loaded = CertifiedKey::new(chain, signing_key);
    match loaded.keys_match() {
        Ok(()) => Ok(loaded),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(loaded),
        Err(error) => Err(TlsError::Mismatch {
            certificate: certificate.to_owned(),
            key: key.to_owned(),
            message: error.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_path_alone_is_an_error() {
        let error = ServerTls::from_paths(Some(Path::new("cert.pem")), None).unwrap_err();
        assert!(
            error.to_string().contains("only --server-cert-path"),
            "{error}"
        );
        let error = ServerTls::from_paths(None, Some(Path::new("key.pem"))).unwrap_err();
        assert!(
            error.to_string().contains("only --server-key-path"),
            "{error}"
        );
        assert!(ServerTls::from_paths(None, None).unwrap().is_none());
    }

    #[test]
    fn missing_and_garbage_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        let error = ServerTls::from_paths(Some(&cert), Some(&key)).unwrap_err();
        assert!(matches!(error, TlsError::Certificate { .. }), "{error}");
        std::fs::write(&cert, "not a certificate").unwrap();
        std::fs::write(&key, "not a key").unwrap();
        let error = ServerTls::from_paths(Some(&cert), Some(&key)).unwrap_err();
        assert!(error.to_string().contains("no CERTIFICATE"), "{error}");
    }
}
