//! OpenTelemetry traces, as flagd exports them with `--otel-collector-uri`: a server span per
//! evaluation request (parented by an incoming W3C `traceparent`) and a span per document a
//! sync source delivers, batched and sent over OTLP/gRPC.
//!
//! An edge module: the services and the sync sources hold an `Option<Tracer>` and build
//! spans only when it is `Some`, so with tracing off a request pays one branch. The domain
//! layers never see OpenTelemetry.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use http::HeaderMap;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{
    Span as _, SpanBuilder, SpanKind, Status, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{WithExportConfig as _, WithTonicConfig as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use serde::Deserialize;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::eval::ErrorCode;
use crate::evaluator::{Evaluation, EvaluationError};
use crate::options::duration::duration_arg;
use crate::options::{layered, lenient};

/// flagd's `feature_flag.provider.name` value.
const PROVIDER_NAME: &str = "flagd";
/// How long the last batch may take to leave at shutdown.
const FLUSH_BUDGET: Duration = Duration::from_secs(3);

layered! {
    /// flagd's telemetry options of one configuration layer (`None` = not given here).
    #[derive(Debug, Clone, Default, PartialEq, Args, Deserialize)]
    #[serde(default, rename_all = "kebab-case")]
    pub struct TelemetryOptions {
        /// OTLP/gRPC collector for traces, e.g. `localhost:4317` or `https://collector:4317`
        /// (no scheme: plaintext, as flagd). Unset: no spans are made.
        #[arg(short = 'o', long, env = "FLAGD_OTEL_COLLECTOR_URI")]
        #[serde(deserialize_with = "lenient::name")]
        pub otel_collector_uri: Option<String>,
        /// CA bundle (PEM) the collector's certificate must chain to (turns on TLS).
        #[arg(long, env = "FLAGD_OTEL_CA_PATH")]
        #[serde(deserialize_with = "lenient::path")]
        pub otel_ca_path: Option<PathBuf>,
        /// Client certificate (PEM) presented to the collector (with --otel-key-path).
        #[arg(long, env = "FLAGD_OTEL_CERT_PATH")]
        #[serde(deserialize_with = "lenient::path")]
        pub otel_cert_path: Option<PathBuf>,
        /// Private key (PEM) of --otel-cert-path.
        #[arg(long, env = "FLAGD_OTEL_KEY_PATH")]
        #[serde(deserialize_with = "lenient::path")]
        pub otel_key_path: Option<PathBuf>,
        /// Accepted for flagd compatibility; the collector TLS files are read once at start.
        #[arg(long, env = "FLAGD_OTEL_RELOAD_INTERVAL", value_parser = duration_arg)]
        #[serde(deserialize_with = "lenient::duration")]
        pub otel_reload_interval: Option<Duration>,
        /// flagd's metrics exporter: only `otel` is accepted, and metrics stay Prometheus
        /// text on the management port (traces go to --otel-collector-uri).
        #[arg(short = 't', long, env = "FLAGD_METRICS_EXPORTER")]
        #[serde(deserialize_with = "lenient::name")]
        pub metrics_exporter: Option<String>,
    }
}

impl TelemetryOptions {
    /// The resolved settings.
    pub fn into_settings(self) -> TelemetryConfig {
        TelemetryConfig {
            collector_uri: self.otel_collector_uri.filter(|uri| !uri.trim().is_empty()),
            ca_path: self.otel_ca_path,
            cert_path: self.otel_cert_path,
            key_path: self.otel_key_path,
            reload_interval: self.otel_reload_interval,
            metrics_exporter: self.metrics_exporter.filter(|name| !name.is_empty()),
        }
    }
}

/// The telemetry part's own configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TelemetryConfig {
    /// The OTLP/gRPC collector (`None`: tracing off).
    pub collector_uri: Option<String>,
    /// CA bundle for the collector's certificate.
    pub ca_path: Option<PathBuf>,
    /// Client certificate for the collector.
    pub cert_path: Option<PathBuf>,
    /// Client key for the collector.
    pub key_path: Option<PathBuf>,
    /// flagd's certificate reload interval (accepted, not used).
    pub reload_interval: Option<Duration>,
    /// flagd's `--metrics-exporter` (only `otel`).
    pub metrics_exporter: Option<String>,
}

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `--otel-collector-uri` is not an http(s) URI or `host:port`.
    #[error("invalid --otel-collector-uri {uri:?}: {reason}")]
    CollectorUri {
        /// The value given.
        uri: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A TLS file could not be read.
    #[error("cannot read {option} {path}: {error}")]
    File {
        /// The option naming the file.
        option: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// `--otel-cert-path` without `--otel-key-path` or the reverse.
    #[error("--otel-cert-path and --otel-key-path go together")]
    HalfIdentity,
    /// TLS options without a collector.
    #[error("--otel-ca-path, --otel-cert-path and --otel-key-path need --otel-collector-uri")]
    TlsWithoutCollector,
    /// flagd accepts only `otel` as `--metrics-exporter`.
    #[error("--metrics-exporter {0:?} is not supported; only \"otel\" is")]
    MetricsExporter(String),
    /// The OTLP exporter refused its configuration.
    #[error("OTLP exporter: {0}")]
    Exporter(String),
}

/// Running trace export: the batch span processor and its OTLP/gRPC exporter.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Starts exporting as `config` says; `None` when no collector is configured. Must be
    /// called inside a tokio runtime (the gRPC channel's tasks run there). The batch
    /// processor honours the SDK's `OTEL_BSP_*` variables.
    pub fn start(config: &TelemetryConfig) -> Result<Option<Telemetry>, TelemetryError> {
        match config.metrics_exporter.as_deref() {
            None => {}
            Some("otel") => tracing::warn!(
                "--metrics-exporter otel: metrics stay Prometheus text on the management port; \
                 only traces are sent to --otel-collector-uri"
            ),
            Some(other) => return Err(TelemetryError::MetricsExporter(other.to_owned())),
        }
        let tls_files =
            config.ca_path.is_some() || config.cert_path.is_some() || config.key_path.is_some();
        let Some(uri) = config.collector_uri.as_deref() else {
            if tls_files {
                return Err(TelemetryError::TlsWithoutCollector);
            }
            return Ok(None);
        };
        if config.reload_interval.is_some() {
            tracing::warn!("--otel-reload-interval is ignored: collector TLS files are read once");
        }
        let endpoint = collector_endpoint(uri)?;
        let mut builder = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone());
        if endpoint.starts_with("https://") || tls_files {
            builder = builder.with_tls_config(tls_config(config)?);
        }
        let exporter = builder
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        let resource = Resource::builder()
            .with_service_name("flagd")
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        tracing::info!(collector = %endpoint, "exporting traces over OTLP/gRPC");
        Ok(Some(Telemetry { provider }))
    }

    /// The tracer the services and sources make spans with.
    pub fn tracer(&self) -> Tracer {
        Tracer {
            tracer: self.provider.tracer("flagpole"),
            propagator: TraceContextPropagator::new(),
        }
    }

    /// Sends what is still batched and stops the exporter (bounded by a few seconds).
    pub async fn shutdown(self) {
        let provider = self.provider;
        let flushed =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(FLUSH_BUDGET)).await;
        if let Ok(Err(error)) = flushed {
            tracing::warn!(%error, "could not flush the last spans");
        }
    }
}

/// `host:port` (flagd's form, plaintext) or an `http(s)://` URI, as the exporter's endpoint.
fn collector_endpoint(uri: &str) -> Result<String, TelemetryError> {
    let bad = |reason| TelemetryError::CollectorUri {
        uri: uri.to_owned(),
        reason,
    };
    let uri = uri.trim();
    let full = if uri.contains("://") {
        uri.to_owned()
    } else {
        format!("http://{uri}")
    };
    let parsed: http::Uri = full
        .parse()
        .map_err(|_| bad("expected host:port or http(s)://host:port"))?;
    match parsed.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(bad("the scheme must be http or https")),
    }
    if parsed.host().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    Ok(full)
}

fn read(option: &'static str, path: &Path) -> Result<Vec<u8>, TelemetryError> {
    std::fs::read(path).map_err(|error| TelemetryError::File {
        option,
        path: path.to_owned(),
        error,
    })
}

/// System roots, plus the configured CA and client identity.
fn tls_config(config: &TelemetryConfig) -> Result<ClientTlsConfig, TelemetryError> {
    let mut tls = ClientTlsConfig::new().with_native_roots();
    if let Some(ca) = &config.ca_path {
        tls = tls.ca_certificate(Certificate::from_pem(read("--otel-ca-path", ca)?));
    }
    match (&config.cert_path, &config.key_path) {
        (None, None) => {}
        (Some(cert), Some(key)) => {
            tls = tls.identity(Identity::from_pem(
                read("--otel-cert-path", cert)?,
                read("--otel-key-path", key)?,
            ));
        }
        _ => return Err(TelemetryError::HalfIdentity),
    }
    Ok(tls)
}

/// Makes spans; held as `Option<Tracer>` by whoever may trace (cheap to clone).
#[derive(Debug, Clone)]
pub struct Tracer {
    tracer: SdkTracer,
    propagator: TraceContextPropagator,
}

/// Reads W3C trace-context headers (gRPC metadata is an HTTP header map too).
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

impl Tracer {
    /// A server span named `name` (flagd's `flagEvaluationService(resolveBoolean)` form),
    /// child of the request's `traceparent` when it carries a valid one.
    pub(crate) fn evaluation(&self, name: &'static str, headers: &HeaderMap) -> EvaluationSpan {
        let parent = if headers.contains_key("traceparent") {
            self.propagator.extract(&Headers(headers))
        } else {
            Context::new()
        };
        let builder = SpanBuilder::from_name(name).with_kind(SpanKind::Server);
        let span = self.tracer.build_with_context(builder, &parent);
        EvaluationSpan(span)
    }

    /// An internal span for one document a sync source delivered (flagd's
    /// `jsonEvaluator(setState)`), labelled with the source's provider.
    pub(crate) fn sync(&self, provider: &'static str) -> SyncSpan {
        let builder = SpanBuilder::from_name("jsonEvaluator(setState)")
            .with_kind(SpanKind::Internal)
            .with_attributes([KeyValue::new("feature_flag.sync.provider", provider)]);
        SyncSpan(self.tracer.build_with_context(builder, &Context::new()))
    }

    /// The trace id of the span `name` would be parented by (for tests of the propagator).
    #[cfg(test)]
    fn parent_trace_id(&self, headers: &HeaderMap) -> opentelemetry::trace::TraceId {
        use opentelemetry::trace::TraceContextExt as _;
        self.propagator
            .extract(&Headers(headers))
            .span()
            .span_context()
            .trace_id()
    }
}

/// The span of one evaluation request; ends when told its outcome (or when dropped).
#[derive(Debug)]
pub(crate) struct EvaluationSpan(opentelemetry_sdk::trace::Span);

impl EvaluationSpan {
    /// Records the outcome of one flag's evaluation and ends the span.
    pub(crate) fn finish<T>(self, key: &str, result: &Result<Evaluation<T>, EvaluationError>) {
        match result {
            Ok(outcome) => self.resolved(key, outcome.variant.as_deref(), outcome.reason),
            Err(error) => self.failed(key, error.code),
        }
    }

    /// Records flagd's feature-flag attributes of a successful evaluation and ends the span.
    pub(crate) fn resolved(mut self, key: &str, variant: Option<&str>, reason: &'static str) {
        self.flag(key);
        if let Some(variant) = variant {
            self.0.set_attribute(KeyValue::new(
                "feature_flag.result.variant",
                variant.to_owned(),
            ));
        }
        self.0
            .set_attribute(KeyValue::new("feature_flag.result.reason", reason));
        self.0.end();
    }

    /// Records a failed evaluation (reason `ERROR`, `error.type` = flagd's error code).
    pub(crate) fn failed(mut self, key: &str, code: ErrorCode) {
        self.flag(key);
        self.0
            .set_attribute(KeyValue::new("feature_flag.result.reason", "ERROR"));
        self.0
            .set_attribute(KeyValue::new("error.type", code.as_str()));
        self.0.set_status(Status::error(code.as_str()));
        self.0.end();
    }

    /// Ends a span of a request that evaluated several flags (ResolveAll, OFREP bulk).
    pub(crate) fn bulk(mut self, flags: usize) {
        self.0
            .set_attribute(KeyValue::new("feature_flag.provider.name", PROVIDER_NAME));
        self.0
            .set_attribute(KeyValue::new("feature_flag.count", flags as i64));
        self.0.end();
    }

    fn flag(&mut self, key: &str) {
        self.0
            .set_attribute(KeyValue::new("feature_flag.key", key.to_owned()));
        // flagd (semantic conventions 1.34) writes `provider.name`; earlier flagd and the
        // OpenFeature appendix used `provider_name`: both, so either query finds the span.
        self.0
            .set_attribute(KeyValue::new("feature_flag.provider.name", PROVIDER_NAME));
        self.0
            .set_attribute(KeyValue::new("feature_flag.provider_name", PROVIDER_NAME));
    }
}

/// The span of one delivered sync document; ends when told what became of it.
#[derive(Debug)]
pub(crate) struct SyncSpan(opentelemetry_sdk::trace::Span);

impl SyncSpan {
    /// Ends the span with the delivery's outcome (`applied`, `rejected`, `unchanged`).
    pub(crate) fn done(mut self, outcome: &'static str, error: Option<&str>) {
        self.0
            .set_attribute(KeyValue::new("feature_flag.sync.result", outcome));
        if let Some(error) = error {
            self.0.set_status(Status::error(error.to_owned()));
        }
        self.0.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collector_uri_takes_flagds_host_port_and_urls() {
        assert_eq!(
            collector_endpoint("localhost:4317").unwrap(),
            "http://localhost:4317"
        );
        assert_eq!(
            collector_endpoint("https://collector:4317").unwrap(),
            "https://collector:4317"
        );
        for bad in ["ftp://x:1", "http://", "a b:1"] {
            assert!(collector_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn traceparent_becomes_the_parent() {
        let provider = SdkTracerProvider::builder().build();
        let tracer = Tracer {
            tracer: provider.tracer("test"),
            propagator: TraceContextPropagator::new(),
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
                .parse()
                .unwrap(),
        );
        assert_eq!(
            tracer.parent_trace_id(&headers).to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        let span = tracer.evaluation("flagEvaluationService(resolveBoolean)", &headers);
        assert_eq!(
            span.0.span_context().trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
    }

    #[test]
    fn tls_files_need_a_collector_and_a_whole_identity() {
        let config = TelemetryConfig {
            ca_path: Some("ca.pem".into()),
            ..TelemetryConfig::default()
        };
        assert!(matches!(
            Telemetry::start(&config),
            Err(TelemetryError::TlsWithoutCollector)
        ));
        let config = TelemetryConfig {
            metrics_exporter: Some("prometheus".into()),
            ..TelemetryConfig::default()
        };
        assert!(matches!(
            Telemetry::start(&config),
            Err(TelemetryError::MetricsExporter(_))
        ));
    }
}
