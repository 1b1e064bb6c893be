//! The evaluation edge shared by every protocol on ports 8013 and 8016: the selector header,
//! `-H` header lookup, the one mapping of [`EvaluationError`] to a gRPC status, and the
//! state event streams need. Evaluation itself is the transport-free
//! [`Evaluator`](crate::evaluator::Evaluator).

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::limits::StreamLimit;
use super::metrics::Metrics;
use crate::eval::ErrorCode;
use crate::evaluator::{EvaluationError, Evaluator, Headers};
use crate::store::Selector;
use crate::telemetry::Tracer;

/// The request header carrying the selector.
pub(crate) const SELECTOR_HEADER: &str = "flagd-selector";

/// [`SELECTOR_HEADER`] as a header name: looking a `&str` up in a `HeaderMap` parses it
/// on every request.
const SELECTOR: http::HeaderName = http::HeaderName::from_static(SELECTOR_HEADER);

/// How event streams behave.
#[derive(Debug, Clone, Default)]
pub(crate) struct StreamConfig {
    /// Silence after which `keep_alive` is sent (zero disables keep-alives).
    pub keep_alive: Duration,
    /// Server-side stream deadline (v1 and v2 only).
    pub deadline: Option<Duration>,
}

/// The shared state behind every evaluation protocol: the evaluator plus what event
/// streams need (their settings, the drain signal, the metrics and the stream cap).
#[derive(Debug)]
pub(crate) struct EvaluationService {
    /// The transport-free evaluator.
    pub(super) evaluator: Arc<Evaluator>,
    pub(super) streams: StreamConfig,
    /// Cancelled when the port starts draining.
    pub(super) draining: CancellationToken,
    /// Where open streams are counted.
    pub(super) metrics: Arc<Metrics>,
    /// The daemon-wide cap on open streams.
    pub(super) stream_limit: StreamLimit,
    /// Makes a span per request when tracing is on (`None`: no span, no header parsing).
    pub(super) tracer: Option<Tracer>,
}

impl EvaluationService {
    /// The evaluation edge over `evaluator`; cancelling `draining` ends event streams, which
    /// count into `metrics` and under `stream_limit`.
    pub(crate) fn new(
        evaluator: Arc<Evaluator>,
        streams: StreamConfig,
        draining: CancellationToken,
        metrics: Arc<Metrics>,
        stream_limit: StreamLimit,
    ) -> Self {
        EvaluationService {
            evaluator,
            streams,
            draining,
            metrics,
            stream_limit,
            tracer: None,
        }
    }

    /// This edge, tracing each request with `tracer` when given.
    pub(crate) fn with_tracer(mut self, tracer: Option<Tracer>) -> Self {
        self.tracer = tracer;
        self
    }

    /// The tracer, when tracing is on.
    pub(crate) fn tracer(&self) -> Option<&Tracer> {
        self.tracer.as_ref()
    }

    /// The evaluator behind every protocol.
    pub(crate) fn evaluator(&self) -> &Evaluator {
        &self.evaluator
    }
}

/// `-H` mappings read request headers directly (gRPC metadata is a header map too).
impl Headers for HeaderMap {
    fn header(&self, name: &str) -> Option<&[u8]> {
        // gRPC binary metadata (`-bin`) is never text context.
        if name.ends_with("-bin") {
            return None;
        }
        self.get(name).map(http::HeaderValue::as_bytes)
    }
}

/// A `flagd-selector` that names no known key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid selector key \"{key}\", valid keys: \"flagSetId\", \"source\"")]
pub struct InvalidSelector {
    key: String,
}

impl InvalidSelector {
    /// The error for selector text `text`, naming its key as flagd does.
    pub(super) fn new(text: &str) -> InvalidSelector {
        let key = text.split_once('=').map_or(text, |(key, _)| key);
        InvalidSelector {
            key: key.to_owned(),
        }
    }
}

/// INVALID_ARGUMENT naming the selector key, as flagd words it.
impl From<InvalidSelector> for Status {
    fn from(error: InvalidSelector) -> Status {
        Status::invalid_argument(error.to_string())
    }
}

/// The selector of a request (`flagd-selector` header; absent means every flag).
pub(super) fn selector(headers: &HeaderMap) -> Result<Selector, InvalidSelector> {
    let Some(raw) = headers.get(SELECTOR) else {
        return Ok(Selector::All);
    };
    let text = raw
        .to_str()
        .map_err(|_| InvalidSelector::new("<non-ASCII>"))?;
    Selector::parse(text).map_err(|_| InvalidSelector::new(text))
}

/// flagd's gRPC status for an evaluation error code (spec 1.8).
pub(super) fn status(code: ErrorCode) -> Status {
    match code {
        ErrorCode::FlagNotFound => Status::not_found("Flag not found"),
        ErrorCode::TypeMismatch => Status::invalid_argument("Type mismatch error"),
        ErrorCode::ParseError => Status::data_loss("Error parsing input or configuration"),
        ErrorCode::General => Status::unknown("General error"),
    }
}

/// The one mapping of an evaluation failure onto gRPC (and so Connect and gRPC-Web).
impl From<EvaluationError> for Status {
    fn from(error: EvaluationError) -> Status {
        status(error.code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn error_codes_map_to_flagd_statuses() {
        let cases = [
            (ErrorCode::FlagNotFound, Code::NotFound, "Flag not found"),
            (
                ErrorCode::TypeMismatch,
                Code::InvalidArgument,
                "Type mismatch error",
            ),
            (
                ErrorCode::ParseError,
                Code::DataLoss,
                "Error parsing input or configuration",
            ),
            (ErrorCode::General, Code::Unknown, "General error"),
        ];
        for (code, want, message) in cases {
            let s = Status::from(EvaluationError {
                code,
                message: "details".into(),
                metadata: Default::default(),
            });
            assert_eq!(s.code(), want);
            assert_eq!(s.message(), message);
        }
    }

    #[test]
    fn invalid_selector_message_names_the_key() {
        let s = Status::from(InvalidSelector::new("bogus=1"));
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(
            s.message(),
            "invalid selector key \"bogus\", valid keys: \"flagSetId\", \"source\""
        );
    }

    #[test]
    fn selector_header_is_parsed_once_here() {
        let mut headers = HeaderMap::new();
        assert_eq!(selector(&headers), Ok(Selector::All));
        headers.insert(SELECTOR_HEADER, "flagSetId=a".parse().unwrap());
        assert_eq!(selector(&headers), Ok(Selector::FlagSetId("a".into())));
        headers.insert(SELECTOR_HEADER, "nope=1".parse().unwrap());
        assert_eq!(selector(&headers), Err(InvalidSelector::new("nope")));
    }

    #[test]
    fn header_context_reads_text_headers_only() {
        let mut headers = HeaderMap::new();
        headers.insert("x-tenant", "acme".parse().unwrap());
        headers.insert("x-key-bin", "AAEC".parse().unwrap());
        assert_eq!(headers.header("x-tenant"), Some(&b"acme"[..]));
        assert_eq!(headers.header("x-key-bin"), None);
        assert_eq!(headers.header("x-other"), None);
    }
}
