//! OFREP, the OpenFeature Remote Evaluation Protocol, on port 8016 (spec section 3): plain
//! HTTP/1.1, `POST /ofrep/v1/evaluate/flags/{key}` and `POST /ofrep/v1/evaluate/flags`.
//!
//! Evaluation goes through the shared [`Evaluator`] as "any" value with v2's semantics (a
//! code default has no value); this module only maps outcomes to OFREP bodies and statuses.
//! Beyond flagd, bulk responses carry a strong `ETag` (a hash of the body, which already
//! reflects the flags, the context and the selector) and `If-None-Match` is answered with
//! `304 Not Modified`.

use std::sync::Arc;

use super::tls::TlsAcceptor;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::auth::{self, RequireToken, Tokens};
use super::cors::CorsOnOrigin;
use super::evaluation::selector;
use super::listener::{self, ConnectionConfig, Listener};
use super::metrics::{HttpMetricsLayer, Metrics, OVERFLOW_LABEL};
use super::protojson::normalize_numbers;
use crate::eval::{Context, ErrorCode};
use crate::evaluator::{AnyKind, Api, Evaluation, EvaluationError, Evaluator};
use crate::flags::Flag;
use crate::telemetry::Tracer;

/// How the OFREP port behaves.
#[derive(Debug, Clone, Default)]
pub(crate) struct OfrepConfig {
    /// The largest request body accepted, in bytes (zero: no limit).
    pub max_request_body: usize,
    /// Origins answered with CORS headers.
    pub cors_origins: Vec<String>,
    /// Connection cap, header- and body-read timeouts.
    pub connections: ConnectionConfig,
    /// Bearer tokens every request must carry (`None`: no authentication).
    pub auth: Option<Tokens>,
}

/// The OFREP server on port 8016, ready to [`serve`](OfrepServer::serve).
#[derive(Debug, Clone)]
pub(crate) struct OfrepServer {
    evaluator: Arc<Evaluator>,
    max_request_body: usize,
    cors: CorsOnOrigin,
    metrics: Option<Arc<Metrics>>,
    connections: ConnectionConfig,
    auth: Option<Tokens>,
    /// Makes a span per request when tracing is on.
    tracer: Option<Tracer>,
}

impl OfrepServer {
    /// A server evaluating with `evaluator` (shared with port 8013).
    pub(crate) fn new(config: OfrepConfig, evaluator: Arc<Evaluator>) -> OfrepServer {
        OfrepServer {
            evaluator,
            max_request_body: config.max_request_body,
            cors: CorsOnOrigin::new(&config.cors_origins),
            metrics: None,
            connections: config.connections,
            auth: config.auth,
            tracer: None,
        }
    }

    /// Traces every evaluation request with `tracer` (`None`: tracing off).
    pub(crate) fn with_tracer(mut self, tracer: Option<Tracer>) -> OfrepServer {
        self.tracer = tracer;
        self
    }

    /// Records request durations into `metrics` (`service_name="flagd-ofrep"`).
    pub(crate) fn with_metrics(mut self, metrics: Arc<Metrics>) -> OfrepServer {
        self.metrics = Some(metrics);
        self
    }

    /// The routes (also usable without a listener, e.g. in tests).
    pub(crate) fn router(self) -> Router {
        let cors = self.cors.clone();
        let metrics = self.metrics.clone();
        // Inside CORS: preflights are answered without a token, refusals carry CORS headers.
        let require_token =
            RequireToken::optional(self.auth.as_ref(), auth::http_refusal, auth::nothing_open);
        let router = Router::new()
            .route("/ofrep/v1/evaluate/flags/{key}", post(single))
            .route("/ofrep/v1/evaluate/flags", post(bulk))
            .route("/ofrep/v1/evaluate/flags/", post(bulk))
            .fallback(not_found)
            .layer(require_token)
            .layer(cors)
            .with_state(Arc::new(self));
        match metrics {
            Some(metrics) => {
                router.layer(HttpMetricsLayer::new(metrics, "flagd-ofrep", ofrep_route))
            }
            None => router,
        }
    }

    /// Serves on `listener` (TLS only when `tls` is set) until `shutdown` is cancelled, then
    /// lets in-flight requests finish.
    pub(crate) async fn serve(
        self,
        listener: impl Into<Listener>,
        tls: Option<TlsAcceptor>,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        let listener = listener.into();
        tracing::info!(addr = %listener.describe(), tls = tls.is_some(), "serving OFREP");
        let connections = self.connections;
        let http = listener::HttpConfig {
            header_read_timeout: connections.header_read_timeout,
            body_read_timeout: connections.body_read_timeout,
            http2: None,
        };
        let incoming = listener::incoming(
            listener,
            tls,
            connections.max_connections,
            connections.header_read_timeout,
        );
        listener::serve_http(incoming, self.router(), http, shutdown).await;
        Ok(())
    }
}

type Shared = State<Arc<OfrepServer>>;

/// Go's `http.NotFound`, as flagd answers unknown paths.
async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "404 page not found\n",
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------
// Bodies

/// A successful evaluation (single response or bulk item).
#[derive(Debug, Serialize)]
struct Success {
    key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<Value>,
    reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<String>,
    metadata: Map<String, Value>,
}

/// A failed evaluation (single response or bulk item); `metadata` is `null` when the request
/// itself was bad.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Failure {
    key: String,
    error_code: &'static str,
    error_details: String,
    metadata: Option<Map<String, Value>>,
}

/// One bulk item.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Item {
    Success(Success),
    Failure(Failure),
}

/// A bulk request that failed as a whole.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct BulkFailure {
    error_code: &'static str,
    error_details: String,
    metadata: Option<Map<String, Value>>,
}

#[derive(Debug, Serialize)]
struct Bulk {
    flags: Vec<Item>,
    metadata: Map<String, Value>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TooLarge {
    error_details: &'static str,
}

fn json(status: StatusCode, body: &impl Serialize) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

const INVALID_CONTEXT: &str = "INVALID_CONTEXT";
const CONTEXT_NOT_VALID: &str = "Provider context is not valid";

fn success(key: String, outcome: Evaluation<Value>) -> Success {
    Success {
        key,
        value: outcome.value,
        reason: outcome.reason,
        variant: outcome.variant.filter(|variant| !variant.is_empty()),
        metadata: outcome.metadata,
    }
}

/// The one mapping of an evaluation failure onto OFREP: status, code, details and metadata.
fn failure(key: String, error: EvaluationError) -> (StatusCode, Failure) {
    let (http, code, details) = match error.code {
        ErrorCode::FlagNotFound => (
            StatusCode::NOT_FOUND,
            "FLAG_NOT_FOUND",
            format!("flag `{key}` does not exist"),
        ),
        ErrorCode::ParseError => (
            StatusCode::BAD_REQUEST,
            "PARSE_ERROR",
            format!("error parsing the flag `{key}`"),
        ),
        // flagd answers a type mismatch as GENERAL too.
        ErrorCode::TypeMismatch | ErrorCode::General => (
            StatusCode::BAD_REQUEST,
            "GENERAL",
            "error processing the flag for evaluation".to_owned(),
        ),
    };
    let body = Failure {
        key,
        error_code: code,
        error_details: details,
        metadata: Some(error.metadata),
    };
    (http, body)
}

// ---------------------------------------------------------------------------------------
// Requests

/// Why a request body was refused.
enum BadBody {
    TooLarge,
    InvalidContext,
}

impl BadBody {
    fn too_large() -> Response {
        json(
            StatusCode::PAYLOAD_TOO_LARGE,
            &TooLarge {
                error_details: "request body too large",
            },
        )
    }
}

/// The request context: `{"context": {...}}`, read the way flagd's Go decoder reads it (the
/// first JSON value only; an empty body or a non-object `context` means no context).
async fn context(body: Body, limit: usize) -> Result<Option<Context>, BadBody> {
    let limit = if limit == 0 { usize::MAX } else { limit };
    let bytes: Bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => return Err(BadBody::TooLarge),
        Err(_) => return Err(BadBody::InvalidContext),
    };
    parse_context(&bytes)
}

fn parse_context(bytes: &[u8]) -> Result<Option<Context>, BadBody> {
    let request = match serde_json::Deserializer::from_slice(bytes)
        .into_iter::<Value>()
        .next()
    {
        None => return Ok(None),
        Some(Err(_)) => return Err(BadBody::InvalidContext),
        Some(Ok(value)) => value,
    };
    let mut request = match request {
        Value::Object(map) => map,
        Value::Null => return Ok(None),
        _ => return Err(BadBody::InvalidContext),
    };
    // Go matches struct fields case-insensitively.
    let field = request.remove("context").or_else(|| {
        let key = request
            .keys()
            .find(|k| k.eq_ignore_ascii_case("context"))?
            .clone();
        request.remove(&key)
    });
    match field {
        Some(Value::Object(mut map)) => {
            normalize_numbers(&mut map);
            Ok(Some(map))
        }
        Some(Value::Null) | None => Ok(None),
        Some(_) => {
            tracing::warn!("OFREP request context is not an object; ignoring it");
            Ok(None)
        }
    }
}

// ---------------------------------------------------------------------------------------
// Handlers

async fn single(
    State(server): Shared,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let context = match context(body, server.max_request_body).await {
        Ok(context) => context,
        Err(BadBody::TooLarge) => return BadBody::too_large(),
        Err(BadBody::InvalidContext) => {
            let body = Failure {
                key,
                error_code: INVALID_CONTEXT,
                error_details: CONTEXT_NOT_VALID.to_owned(),
                metadata: None,
            };
            return json(StatusCode::BAD_REQUEST, &body);
        }
    };
    let selector = match selector(&headers) {
        Ok(selector) => selector,
        Err(error) => {
            let body = Failure {
                key,
                error_code: "GENERAL",
                error_details: format!("invalid selector: {error}"),
                metadata: None,
            };
            return json(StatusCode::BAD_REQUEST, &body);
        }
    };
    let span = server
        .tracer
        .as_ref()
        .map(|tracer| tracer.evaluation("ofrepService(evaluateFlag)", &headers));
    let evaluated =
        server
            .evaluator
            .evaluate::<AnyKind>(Api::V2, &selector, &key, context, &headers);
    if let Some(span) = span {
        span.finish(&key, &evaluated);
    }
    match evaluated {
        Ok(outcome) => json(StatusCode::OK, &success(key, outcome)),
        Err(error) => {
            let (http, body) = failure(key, error);
            json(http, &body)
        }
    }
}

async fn bulk(State(server): Shared, headers: HeaderMap, body: Body) -> Response {
    let context = match context(body, server.max_request_body).await {
        Ok(context) => context,
        Err(BadBody::TooLarge) => return BadBody::too_large(),
        Err(BadBody::InvalidContext) => {
            let body = BulkFailure {
                error_code: INVALID_CONTEXT,
                error_details: CONTEXT_NOT_VALID.to_owned(),
                metadata: None,
            };
            return json(StatusCode::BAD_REQUEST, &body);
        }
    };
    let if_none_match = headers.get(header::IF_NONE_MATCH).cloned();
    let selector = match selector(&headers) {
        Ok(selector) => selector,
        Err(error) => {
            let body = BulkFailure {
                error_code: "GENERAL",
                error_details: format!("invalid selector: {error}"),
                metadata: None,
            };
            return json(StatusCode::BAD_REQUEST, &body);
        }
    };
    let span = server
        .tracer
        .as_ref()
        .map(|tracer| tracer.evaluation("ofrepService(evaluateFlags)", &headers));
    let mut flags = Vec::new();
    let each = |flag: &Flag, result: Result<Evaluation<Value>, EvaluationError>| {
        flags.push(match result {
            Ok(outcome) => Item::Success(success(flag.key.clone(), outcome)),
            Err(error) => Item::Failure(failure(flag.key.clone(), error).1),
        });
    };
    let metadata =
        server
            .evaluator
            .evaluate_each::<AnyKind>(Api::V2, &selector, context, &headers, each);
    if let Some(span) = span {
        span.bulk(flags.len());
    }
    let body = serde_json::to_vec(&Bulk { flags, metadata }).unwrap_or_default();
    let etag = etag(&body);
    if if_none_match.is_some_and(|tags| matches_etag(&tags, &etag)) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::ETAG, etag),
        ],
        body,
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------
// ETag

/// A strong entity tag for a bulk body: its 64-bit FNV-1a hash, quoted.
fn etag(body: &[u8]) -> HeaderValue {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = body
        .iter()
        .fold(OFFSET, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(PRIME));
    // Hex digits and quotes are always a valid header value.
    HeaderValue::from_str(&format!("\"{hash:016x}\"")).unwrap_or(HeaderValue::from_static("\"\""))
}

/// `If-None-Match` (a list, `*`, weak or unquoted tags) against our tag (weak comparison,
/// as RFC 9110 prescribes for `If-None-Match`).
fn matches_etag(header: &HeaderValue, etag: &HeaderValue) -> bool {
    let Ok(header) = header.to_str() else {
        return false;
    };
    let ours = etag.to_str().unwrap_or_default().trim_matches('"');
    header.split(',').any(|tag| {
        let tag = tag.trim();
        tag == "*" || tag.trim_start_matches("W/").trim_matches('"') == ours
    })
}

/// The route template of an OFREP path, for metric labels (bounded: three values).
fn ofrep_route(path: &str) -> &'static str {
    match path.strip_prefix("/ofrep/v1/evaluate/flags") {
        Some("" | "/") => "/ofrep/v1/evaluate/flags",
        Some(key) if key.starts_with('/') => "/ofrep/v1/evaluate/flags/{key}",
        _ => OVERFLOW_LABEL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn context_of(body: &str) -> Option<Value> {
        match parse_context(body.as_bytes()) {
            Ok(context) => Some(context.map_or(Value::Null, Value::Object)),
            Err(_) => None,
        }
    }

    #[test]
    fn context_is_read_like_flagds_decoder() {
        assert_eq!(context_of(""), Some(Value::Null));
        assert_eq!(context_of("  \n"), Some(Value::Null));
        assert_eq!(context_of("null"), Some(Value::Null));
        assert_eq!(context_of("{}"), Some(Value::Null));
        assert_eq!(
            context_of(r#"{"context": {"a": 1.0}}"#),
            Some(json!({"a": 1}))
        );
        assert_eq!(
            context_of(r#"{"Context": {"b": 2}}"#),
            Some(json!({"b": 2}))
        );
        assert_eq!(context_of(r#"{"context": [1]}"#), Some(Value::Null));
        assert_eq!(context_of(r#"{"context": {}} trailing"#), Some(json!({})));
        assert_eq!(context_of(r#"{"context": "#), None);
        assert_eq!(context_of("[1]"), None);
        assert_eq!(context_of("nope"), None);
    }

    #[test]
    fn errors_map_to_ofrep_codes() {
        let cases = [
            (
                ErrorCode::FlagNotFound,
                404,
                "FLAG_NOT_FOUND",
                "flag `k` does not exist",
            ),
            (
                ErrorCode::ParseError,
                400,
                "PARSE_ERROR",
                "error parsing the flag `k`",
            ),
            (
                ErrorCode::General,
                400,
                "GENERAL",
                "error processing the flag for evaluation",
            ),
            (
                ErrorCode::TypeMismatch,
                400,
                "GENERAL",
                "error processing the flag for evaluation",
            ),
        ];
        for (code, http, want, details) in cases {
            let mut metadata = Map::new();
            metadata.insert("team".into(), json!("a"));
            let error = EvaluationError {
                code,
                message: "x".into(),
                metadata: metadata.clone(),
            };
            let (got, body) = failure("k".into(), error);
            assert_eq!(got.as_u16(), http);
            assert_eq!(body.error_code, want);
            assert_eq!(body.error_details, details);
            assert_eq!(body.metadata, Some(metadata));
        }
    }

    #[test]
    fn etags_compare_weakly_and_in_lists() {
        let tag = etag(b"{}");
        let ours = tag.to_str().unwrap().to_owned();
        assert_eq!(ours.len(), 18);
        assert_ne!(etag(b"{ }"), tag);
        let header = |s: &str| HeaderValue::from_str(s).unwrap();
        assert!(matches_etag(&header(&ours), &tag));
        assert!(matches_etag(&header(&format!("W/{ours}")), &tag));
        assert!(matches_etag(&header(&format!("\"x\", {ours}")), &tag));
        assert!(matches_etag(&header(ours.trim_matches('"')), &tag));
        assert!(matches_etag(&header("*"), &tag));
        assert!(!matches_etag(&header("\"0000000000000000\""), &tag));
    }
}
