//! Optional bearer-token authentication (a flagpole addition, off unless tokens are
//! configured) for the evaluation (8013), sync (8015) and OFREP (8016) ports, and for
//! `/metrics` when asked.
//!
//! Tokens come from `--auth-token-file` (one per line, blank and `#` lines ignored) and the
//! `FLAGPOLE_AUTH_TOKENS` variable (comma-separated). The file's directory is watched, as
//! for the TLS certificate: a rewritten, renamed or symlink-swapped file replaces the file's
//! tokens for every new request; an unreadable or empty replacement is logged and the
//! previous tokens stay. Only SHA-256 digests are kept, and a presented token is hashed and
//! compared against every digest in constant time, so neither the comparison nor the token
//! length leaks through timing.
//!
//! A request is checked once, when it arrives: an EventStream or SyncFlags stream opened with
//! a token that is later rotated away keeps running (docs/security.md).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use futures_util::future::{Either, Ready};
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use tower::{Layer, Service};

use super::reload::{self, WatchGuard};

/// The largest token file read (a few thousand tokens); larger files are refused.
const MAX_FILE_SIZE: u64 = 1024 * 1024;

/// The `WWW-Authenticate` challenge when no token was sent (RFC 6750 section 3).
const CHALLENGE: &str = "Bearer realm=\"flagpole\"";

/// The challenge when a token was sent but is not accepted.
const CHALLENGE_INVALID: &str = "Bearer realm=\"flagpole\", error=\"invalid_token\"";

/// Where the tokens come from and what they protect.
#[derive(Debug, Clone, Default)]
pub(crate) struct AuthConfig {
    /// `--auth-token-file`: one token per line, re-read when it changes.
    pub token_file: Option<PathBuf>,
    /// `FLAGPOLE_AUTH_TOKENS`: fixed for the life of the process.
    pub tokens: Vec<String>,
    /// `--metrics-auth`: `/metrics` requires a token too.
    pub metrics: bool,
}

impl AuthConfig {
    /// Whether authentication is on at all.
    pub(crate) fn enabled(&self) -> bool {
        self.token_file.is_some() || self.tokens.iter().any(|t| !t.trim().is_empty())
    }
}

/// Why the tokens cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The token file cannot be read.
    #[error("auth token file `{path}`: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Authentication is configured but no token is (every request would be refused).
    #[error("authentication is configured but no token is given (the token file is empty and FLAGPOLE_AUTH_TOKENS is not set)")]
    NoTokens,
    /// The file watcher for rotation could not start.
    #[error("auth token file watch: {0}")]
    Watch(String),
}

type Digests = Vec<[u8; 32]>;

/// The accepted tokens (as digests), shared by every port; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Tokens(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    file: Option<PathBuf>,
    from_file: ArcSwap<Digests>,
    from_env: Digests,
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

/// The tokens of a token file's text: one per line, trimmed; blank and `#` lines skipped.
fn parse_file(text: &str) -> Digests {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| digest(line.as_bytes()))
        .collect()
}

fn read_file(path: &Path) -> Result<Digests, AuthError> {
    let fail = |message: String| AuthError::File {
        path: path.to_owned(),
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    if meta.len() > MAX_FILE_SIZE {
        return Err(fail(format!("larger than {MAX_FILE_SIZE} bytes")));
    }
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let text = String::from_utf8(bytes).map_err(|_| fail("not UTF-8".into()))?;
    Ok(parse_file(&text))
}

impl Tokens {
    /// The tokens of `config`, or `None` when authentication is off. An unreadable file, or no
    /// token at all, is an error: the daemon must not start open when it was told to lock.
    pub(crate) fn load(config: &AuthConfig) -> Result<Option<Tokens>, AuthError> {
        if !config.enabled() {
            return Ok(None);
        }
        let from_env: Digests = config
            .tokens
            .iter()
            .map(|t| t.trim())
            .filter(|t| !t.is_empty())
            .map(|t| digest(t.as_bytes()))
            .collect();
        let from_file = match &config.token_file {
            Some(path) => read_file(path)?,
            None => Vec::new(),
        };
        if from_env.is_empty() && from_file.is_empty() {
            return Err(AuthError::NoTokens);
        }
        Ok(Some(Tokens(Arc::new(Shared {
            file: config.token_file.clone(),
            from_file: ArcSwap::from_pointee(from_file),
            from_env,
        }))))
    }

    /// Whether `token` is one of the accepted tokens. Every digest is compared, whatever
    /// matches, in constant time.
    fn accepts(&self, token: &[u8]) -> bool {
        let presented = digest(token);
        let from_file = self.0.from_file.load();
        let mut accepted = subtle::Choice::from(0);
        for known in from_file.iter().chain(self.0.from_env.iter()) {
            accepted |= known.ct_eq(&presented);
        }
        accepted.into()
    }

    /// The outcome for a request with these headers.
    fn check(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(Refusal::Missing);
        };
        let value = value.as_bytes();
        // "Bearer" is case-insensitive (RFC 7235 section 2.1); one or more spaces follow.
        let token = match value.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => value[7..].trim_ascii(),
            _ => return Err(Refusal::Invalid),
        };
        if !token.is_empty() && self.accepts(token) {
            Ok(())
        } else {
            Err(Refusal::Invalid)
        }
    }

    /// Watches the token file's directory and replaces the file's tokens on every change,
    /// until the returned guard is dropped; `None` without a token file.
    pub(crate) fn watch(&self) -> Result<Option<WatchGuard>, AuthError> {
        let Some(path) = self.0.file.clone() else {
            return Ok(None);
        };
        let tokens = self.clone();
        let file = path.clone();
        reload::watch_files(&[&path], move || tokens.reload(&file))
            .map(Some)
            .map_err(AuthError::Watch)
    }

    /// Reads the token file again; keeps the previous tokens if it is unreadable or empty.
    fn reload(&self, path: &Path) {
        match read_file(path) {
            Ok(digests) if digests.is_empty() => tracing::warn!(
                file = %path.display(),
                "auth token file has no token; keeping the previous tokens"
            ),
            Ok(digests) => {
                if **self.0.from_file.load() != digests {
                    let count = digests.len();
                    self.0.from_file.store(Arc::new(digests));
                    tracing::info!(file = %path.display(), tokens = count, "auth tokens reloaded");
                }
            }
            Err(error) => {
                tracing::warn!(%error, "auth tokens not reloaded; keeping the previous tokens")
            }
        }
    }

    /// A layer requiring a token on every request, answering refusals with `refuse`, except
    /// requests whose path `open` accepts.
    pub(crate) fn layer<B>(&self, refuse: Refuse<B>, open: fn(&str) -> bool) -> RequireToken<B> {
        RequireToken {
            tokens: Some(self.clone()),
            refuse,
            open,
        }
    }
}

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No `Authorization` header.
    Missing,
    /// A header that is not `Bearer <accepted token>`.
    Invalid,
}

impl Refusal {
    /// The `WWW-Authenticate` challenge to send.
    pub(crate) fn challenge(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Refusal::Missing => CHALLENGE,
            Refusal::Invalid => CHALLENGE_INVALID,
        })
    }

    /// The message for the caller (never the token).
    pub(crate) fn message(self) -> &'static str {
        match self {
            Refusal::Missing => "missing bearer token (authorization: Bearer <token>)",
            Refusal::Invalid => "invalid bearer token",
        }
    }
}

/// Renders a refusal for the protocol of the request whose headers are given.
pub(crate) type Refuse<B> = fn(&HeaderMap, Refusal) -> Response<B>;

/// An HTTP 401 with the challenge and a small JSON body (OFREP, `/metrics`).
pub(crate) fn http_refusal<B: From<String>>(_: &HeaderMap, refusal: Refusal) -> Response<B> {
    let body = serde_json::json!({
        "errorCode": "UNAUTHENTICATED",
        "errorDetails": refusal.message(),
    });
    let mut response = Response::new(B::from(body.to_string()));
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    let headers = response.headers_mut();
    headers.insert(header::WWW_AUTHENTICATE, refusal.challenge());
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A trailers-only gRPC (or gRPC-Web, in the request's content type) UNAUTHENTICATED
/// answer, with the challenge as `www-authenticate` metadata.
pub(crate) fn grpc_refusal<B: Default>(headers: &HeaderMap, refusal: Refusal) -> Response<B> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .filter(|v| v.as_bytes().starts_with(b"application/grpc-web"))
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("application/grpc"));
    let mut response = Response::new(B::default());
    let out = response.headers_mut();
    out.insert(header::CONTENT_TYPE, content_type);
    out.insert("grpc-status", HeaderValue::from_static("16"));
    out.insert(
        "grpc-message",
        HeaderValue::from_static(match refusal {
            Refusal::Missing => "missing%20bearer%20token",
            Refusal::Invalid => "invalid%20bearer%20token",
        }),
    );
    out.insert(header::WWW_AUTHENTICATE, refusal.challenge());
    response
}

/// Whether a path is `grpc.health.v1` (open, so orchestrators can probe without a token).
pub(crate) fn is_grpc_health(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/")
}

/// Every path requires a token.
pub(crate) fn nothing_open(_: &str) -> bool {
    false
}

/// The layer made by [`Tokens::layer`]; passes everything through when it has no tokens.
#[derive(Debug)]
pub(crate) struct RequireToken<B> {
    tokens: Option<Tokens>,
    refuse: Refuse<B>,
    open: fn(&str) -> bool,
}

impl<B> Clone for RequireToken<B> {
    fn clone(&self) -> Self {
        RequireToken {
            tokens: self.tokens.clone(),
            refuse: self.refuse,
            open: self.open,
        }
    }
}

impl<B> RequireToken<B> {
    /// `tokens.layer(refuse, open)`, or a pass-through layer when authentication is off.
    pub(crate) fn optional(
        tokens: Option<&Tokens>,
        refuse: Refuse<B>,
        open: fn(&str) -> bool,
    ) -> RequireToken<B> {
        match tokens {
            Some(tokens) => tokens.layer(refuse, open),
            None => RequireToken {
                tokens: None,
                refuse,
                open,
            },
        }
    }
}

impl<S, B> Layer<S> for RequireToken<B> {
    type Service = RequireTokenService<S, B>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireTokenService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`RequireToken`].
#[derive(Debug)]
pub(crate) struct RequireTokenService<S, B> {
    inner: S,
    layer: RequireToken<B>,
}

impl<S: Clone, B> Clone for RequireTokenService<S, B> {
    fn clone(&self) -> Self {
        RequireTokenService {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S, ReqBody, B> Service<Request<ReqBody>> for RequireTokenService<S, B>
where
    S: Service<Request<ReqBody>, Response = Response<B>>,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = Either<Ready<Result<Response<B>, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        if let Some(tokens) = &self.layer.tokens {
            if !(self.layer.open)(request.uri().path()) {
                if let Err(refusal) = tokens.check(request.headers()) {
                    tracing::debug!(path = request.uri().path(), ?refusal, "request refused");
                    let response = (self.layer.refuse)(request.headers(), refusal);
                    return Either::Left(futures_util::future::ready(Ok(response)));
                }
            }
        }
        Either::Right(self.inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(env: &[&str], file: Option<&Path>) -> Result<Option<Tokens>, AuthError> {
        Tokens::load(&AuthConfig {
            token_file: file.map(Path::to_owned),
            tokens: env.iter().map(|t| (*t).to_owned()).collect(),
            metrics: false,
        })
    }

    fn headers(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, authorization.parse().unwrap());
        headers
    }

    #[test]
    fn off_without_tokens() {
        assert!(tokens(&[], None).unwrap().is_none());
        assert!(tokens(&[" "], None).unwrap().is_none());
    }

    #[test]
    fn bearer_tokens_are_checked() {
        let tokens = tokens(&["alpha", " beta "], None).unwrap().unwrap();
        assert_eq!(tokens.check(&HeaderMap::new()), Err(Refusal::Missing));
        assert_eq!(tokens.check(&headers("Bearer alpha")), Ok(()));
        assert_eq!(tokens.check(&headers("bearer  beta")), Ok(()));
        assert_eq!(tokens.check(&headers("Bearer alph")), Err(Refusal::Invalid));
        assert_eq!(
            tokens.check(&headers("Bearer alphaa")),
            Err(Refusal::Invalid)
        );
        assert_eq!(tokens.check(&headers("Basic alpha")), Err(Refusal::Invalid));
        assert_eq!(tokens.check(&headers("alpha")), Err(Refusal::Invalid));
        assert_eq!(tokens.check(&headers("Bearer ")), Err(Refusal::Invalid));
    }

    #[test]
    fn the_file_skips_blank_and_comment_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "# rotated 2026-01\n\n  one  \ntwo\n#three\n").unwrap();
        let tokens = tokens(&[], Some(&path)).unwrap().unwrap();
        assert_eq!(tokens.check(&headers("Bearer one")), Ok(()));
        assert_eq!(tokens.check(&headers("Bearer two")), Ok(()));
        assert_eq!(
            tokens.check(&headers("Bearer #three")),
            Err(Refusal::Invalid)
        );
        assert_eq!(
            tokens.check(&headers("Bearer three")),
            Err(Refusal::Invalid)
        );

        // An empty or missing replacement keeps the previous tokens.
        std::fs::write(&path, "# nothing\n").unwrap();
        tokens.reload(&path);
        assert_eq!(tokens.check(&headers("Bearer one")), Ok(()));
        std::fs::remove_file(&path).unwrap();
        tokens.reload(&path);
        assert_eq!(tokens.check(&headers("Bearer one")), Ok(()));
        std::fs::write(&path, "three\n").unwrap();
        tokens.reload(&path);
        assert_eq!(tokens.check(&headers("Bearer one")), Err(Refusal::Invalid));
        assert_eq!(tokens.check(&headers("Bearer three")), Ok(()));
    }

    #[test]
    fn an_unusable_configuration_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        assert!(matches!(
            tokens(&["x"], Some(&missing)),
            Err(AuthError::File { .. })
        ));
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n# none\n").unwrap();
        assert!(matches!(
            tokens(&[], Some(&empty)),
            Err(AuthError::NoTokens)
        ));
        assert!(tokens(&["x"], Some(&empty)).unwrap().is_some());
    }
}
