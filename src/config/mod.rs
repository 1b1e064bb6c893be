//! Runtime settings of the daemon, resolved from the command line, the environment and the
//! `--config` file.
//!
//! Every option is declared once, as a field of [`ConfigInput`] (or of the sync layer's
//! [`AwsOptions`], flattened into it): its doc line is the `--help` text, `#[arg]` gives the
//! flag and its `FLAGD_*`/`FLAGPOLE_*` variable, the field name in kebab-case is the
//! config-file key. clap reads the command line and the environment into one layer, serde
//! reads the file into another, [`Layer::over`] lays the first over the second, and
//! [`ConfigInput::into_settings`] fills in flagd's defaults. This module only assembles: the
//! source grammar and the AWS options belong to [`crate::sync`].

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::builder::{BoolishValueParser, PossibleValuesParser, TypedValueParser};
use clap::{Args, ValueEnum};
use serde::Deserialize;
use serde_json::Value;

use crate::eval::{Context, FractionalVersion};
use crate::options::duration::duration_arg;
use crate::options::lenient::{self, parse_pair};
use crate::options::{from_map, layered};
use crate::sync::uri::{self, sources_arg, uri_arg};
use crate::sync::{AwsOptionError, SourceConfigError, SyncConfig};
pub use crate::telemetry::{TelemetryConfig, TelemetryOptions};

pub use crate::options::duration::{parse_duration, MAX_DURATION};
pub use crate::options::Layer;
pub use crate::sync::{parse_sources, parse_sources_json, parse_uri};
pub use crate::sync::{AwsOptions, AwsSettings, SourceConfig};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (flagd's `console`).
    #[default]
    Console,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// Parses `console` or `json`.
    pub fn parse(text: &str) -> Option<LogFormat> {
        match text.to_ascii_lowercase().as_str() {
            "console" => Some(LogFormat::Console),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }

    fn lenient<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<LogFormat>, D::Error> {
        lenient::parsed(d, |text| {
            LogFormat::parse(text).ok_or_else(|| format!("`{text}` is not `console` or `json`"))
        })
    }
}

/// Everything the daemon needs to run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Evaluation port (8013).
    pub port: u16,
    /// Management port (8014).
    pub management_port: u16,
    /// Sync port (8015).
    pub sync_port: u16,
    /// OFREP port (8016).
    pub ofrep_port: u16,
    /// Sources in priority order (later wins). Empty = the embedded example flags.
    pub sources: Vec<SourceConfig>,
    /// `-X key=value` static context (beats the request context).
    pub static_context: Context,
    /// `-H Header=contextKey` mappings (beat everything); header names lower-cased.
    pub header_context: Vec<(String, String)>,
    /// Server-side deadline for EventStream/SyncFlags; `None` = no deadline.
    pub stream_deadline: Option<Duration>,
    /// Largest accepted request body in bytes; 0 disables the limit.
    pub max_request_body: usize,
    /// Silence after which EventStream sends `keep_alive`.
    pub keep_alive_interval: Duration,
    /// Fractional bucketing algorithm.
    pub fractional: FractionalVersion,
    /// Allowed CORS origins; empty = every origin.
    pub cors_origins: Vec<String>,
    /// `GetMetadata` answers UNIMPLEMENTED when set.
    pub disable_sync_metadata: bool,
    /// TLS certificate chain (PEM) for the evaluation, sync and OFREP ports.
    pub server_cert_path: Option<PathBuf>,
    /// TLS private key (PEM) for the evaluation, sync and OFREP ports.
    pub server_key_path: Option<PathBuf>,
    /// CA bundle (PEM) client certificates must chain to (mutual TLS); needs the server pair.
    pub client_ca_path: Option<PathBuf>,
    /// Unix socket serving the evaluation services instead of the TCP `port`.
    pub socket_path: Option<PathBuf>,
    /// Unix socket serving the sync service instead of the TCP `sync_port`.
    pub sync_socket_path: Option<PathBuf>,
    /// Log line format.
    pub log_format: LogFormat,
    /// Debug-level logging.
    pub debug: bool,
    /// AWS options (S3 endpoints, SQS notifications, SNS fan-out, S3 configuration object).
    pub aws: AwsSettings,
    /// Trace export (`--otel-collector-uri` and its TLS files).
    pub telemetry: TelemetryConfig,
    /// How many distinct flag keys get their own metric series (the rest share `__other__`).
    pub metrics_key_limit: usize,
    /// The largest document a source may deliver, in bytes.
    pub max_document_size: usize,
    /// Where each source's last applied document is kept (`None`: nowhere).
    pub cache_dir: Option<PathBuf>,
    /// How often to write CloudWatch EMF metric lines to stdout; `None` (or zero): never.
    pub metrics_emf_interval: Option<Duration>,
    /// The CloudWatch namespace of the EMF metrics.
    pub metrics_emf_namespace: String,
    /// Address every TCP port binds (flagd: all interfaces).
    pub bind_address: IpAddr,
    /// HTTP/2 streams one connection may have open at once on 8013 and 8015.
    pub max_concurrent_streams: u32,
    /// EventStream and SyncFlags streams open at once across the daemon; 0 = no cap.
    pub max_open_streams: usize,
    /// Connections open at once on each of 8013, 8015 and 8016; 0 = no cap.
    pub max_connections: usize,
    /// Longest time an HTTP/1.1 client may take to send a request's headers (8013, 8014, 8016).
    pub header_read_timeout: Duration,
    /// Longest time a request body may take to arrive after its headers (every port).
    pub body_read_timeout: Duration,
    /// How long to keep serving after shutdown begins with readiness already failing, so
    /// load balancers stop routing here before connections drain.
    pub drain_delay: Duration,
    /// Longest time draining may take once it starts (open streams, in-flight requests);
    /// what is still open then is closed.
    pub shutdown_grace: Duration,
    /// File of accepted bearer tokens (one per line), re-read when it changes.
    pub auth_token_file: Option<PathBuf>,
    /// Bearer tokens from `FLAGPOLE_AUTH_TOKENS`.
    pub auth_tokens: AuthTokens,
    /// `/metrics` requires a bearer token too.
    pub metrics_auth: bool,
    /// `/metrics` labels show full source URIs (account ids included).
    pub metrics_source_uris: bool,
}

/// The variable holding bearer tokens (comma-separated). Only the environment: a flag would
/// show the tokens in `ps`, a config file has `--auth-token-file`.
pub const AUTH_TOKENS_ENV: &str = "FLAGPOLE_AUTH_TOKENS";

/// Bearer tokens; `Debug` shows how many, never the tokens.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AuthTokens(pub Vec<String>);

impl AuthTokens {
    /// The tokens of a comma-separated list (blank entries dropped).
    pub fn parse(text: &str) -> AuthTokens {
        AuthTokens(
            text.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    }

    /// The tokens in `FLAGPOLE_AUTH_TOKENS`, if it is set.
    pub fn from_env() -> Option<AuthTokens> {
        std::env::var(AUTH_TOKENS_ENV)
            .ok()
            .map(|text| AuthTokens::parse(&text))
    }
}

impl std::fmt::Debug for AuthTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuthTokens({} redacted)", self.0.len())
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            port: 8013,
            management_port: 8014,
            sync_port: 8015,
            ofrep_port: 8016,
            sources: Vec::new(),
            static_context: Context::new(),
            header_context: Vec::new(),
            stream_deadline: None,
            max_request_body: 1_000_000,
            keep_alive_interval: Duration::from_secs(20),
            fractional: FractionalVersion::V2,
            cors_origins: Vec::new(),
            disable_sync_metadata: false,
            server_cert_path: None,
            server_key_path: None,
            client_ca_path: None,
            socket_path: None,
            sync_socket_path: None,
            log_format: LogFormat::Console,
            debug: false,
            aws: AwsSettings::default(),
            telemetry: TelemetryConfig::default(),
            metrics_key_limit: 2000,
            max_document_size: crate::sync::limit::DEFAULT_MAX_DOCUMENT_SIZE,
            cache_dir: None,
            metrics_emf_interval: None,
            metrics_emf_namespace: "flagpole".to_owned(),
            bind_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            max_concurrent_streams: 100,
            max_open_streams: 10_000,
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(3),
            body_read_timeout: Duration::from_secs(10),
            drain_delay: Duration::ZERO,
            shutdown_grace: Duration::from_secs(10),
            auth_token_file: None,
            auth_tokens: AuthTokens::default(),
            metrics_auth: false,
            metrics_source_uris: false,
        }
    }
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The `--config` file cannot be read or parsed.
    #[error("config file `{path}`: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A source argument or entry that flagpole cannot use.
    #[error(transparent)]
    Source(#[from] SourceConfigError),
    /// Any other option with an unusable value.
    #[error("invalid value for `{key}`: {message}")]
    Value {
        /// The option name.
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl From<AwsOptionError> for ConfigError {
    fn from(error: AwsOptionError) -> Self {
        ConfigError::Value {
            key: error.key.to_owned(),
            message: error.message.to_owned(),
        }
    }
}

/// A `key=value` pair of `-X` / `-H`.
pub type Pair = (String, String);

/// The parsed sources of one `--sources` value.
pub type SourceList = Vec<SourceConfig>;

fn pair_arg(text: &str) -> Result<Pair, String> {
    parse_pair(text)
}

/// `--bind-address`: an IPv4 or IPv6 address (no port, no host name).
pub fn parse_bind_address(text: &str) -> Result<IpAddr, ConfigError> {
    text.trim().parse().map_err(|_| ConfigError::Value {
        key: "bind-address".into(),
        message: format!("`{text}` is not an IP address such as 0.0.0.0, 127.0.0.1 or ::"),
    })
}

fn bind_arg(text: &str) -> Result<IpAddr, String> {
    parse_bind_address(text).map_err(|e| e.to_string())
}

/// Parses `v2` or `v3` (also `2`, `3`).
pub fn parse_fractional(text: &str) -> Result<FractionalVersion, ConfigError> {
    match text.trim().to_ascii_lowercase().as_str() {
        "v2" | "2" => Ok(FractionalVersion::V2),
        "v3" | "3" => Ok(FractionalVersion::V3),
        other => Err(ConfigError::Value {
            key: "fractional-version".into(),
            message: format!("`{other}` is not `v2` or `v3`"),
        }),
    }
}

fn fractional_arg() -> impl TypedValueParser<Value = FractionalVersion> {
    PossibleValuesParser::new(["v2", "v3"]).map(|v| match v.as_str() {
        "v3" => FractionalVersion::V3,
        _ => FractionalVersion::V2,
    })
}

mod read {
    //! Config-file readers of the options whose grammar lives in this module.
    use super::*;

    pub(super) fn fractional<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<FractionalVersion>, D::Error> {
        lenient::parsed(d, |t| parse_fractional(t).map_err(message_of))
    }

    pub(super) fn bind_address<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<IpAddr>, D::Error> {
        lenient::parsed(d, |t| parse_bind_address(t).map_err(message_of))
    }

    fn message_of(error: ConfigError) -> String {
        match error {
            ConfigError::Value { message, .. } => message,
            other => other.to_string(),
        }
    }
}

layered! {
    /// One layer of configuration (the command line with its environment variables, or the
    /// `--config` file): every value optional, `None` = not given here.
    #[derive(Debug, Clone, Default, PartialEq, Args, Deserialize)]
    #[serde(default, rename_all = "kebab-case")]
    pub struct ConfigInput {
        /// Port of the evaluation services.
        #[arg(short = 'p', long, env = "FLAGD_PORT")]
        #[serde(deserialize_with = "lenient::number")]
        pub port: Option<u16>,
        /// Port of the management service (health, readiness, metrics).
        #[arg(short = 'm', long, env = "FLAGD_MANAGEMENT_PORT")]
        #[serde(deserialize_with = "lenient::number")]
        pub management_port: Option<u16>,
        /// Port of the flag sync service.
        #[arg(short = 'g', long, env = "FLAGD_SYNC_PORT")]
        #[serde(deserialize_with = "lenient::number")]
        pub sync_port: Option<u16>,
        /// Port of the OFREP service.
        #[arg(short = 'r', long, env = "FLAGD_OFREP_PORT")]
        #[serde(deserialize_with = "lenient::number")]
        pub ofrep_port: Option<u16>,
        /// Sync source URI: file:<path> or s3://<bucket>/<key> (repeatable, comma-separated).
        #[arg(short = 'f', long, env = "FLAGD_URI", value_delimiter = ',', value_parser = uri_arg)]
        #[serde(deserialize_with = "uri::uris")]
        pub uri: Option<Vec<SourceConfig>>,
        /// Sync sources as a JSON array of {"uri","provider",...} objects.
        #[arg(short = 's', long, env = "FLAGD_SOURCES", value_parser = sources_arg)]
        #[serde(deserialize_with = "uri::sources")]
        pub sources: Option<SourceList>,
        /// Static evaluation context `key=value` (repeatable).
        #[arg(short = 'X', long, env = "FLAGD_CONTEXT_VALUE", value_delimiter = ',', value_parser = pair_arg)]
        #[serde(deserialize_with = "lenient::pairs")]
        pub context_value: Option<Vec<Pair>>,
        /// Context from a request header `Header-Name=contextKey` (repeatable).
        #[arg(short = 'H', long, env = "FLAGD_CONTEXT_FROM_HEADER", value_delimiter = ',', value_parser = pair_arg)]
        #[serde(deserialize_with = "lenient::pairs")]
        pub context_from_header: Option<Vec<Pair>>,
        /// Log format.
        #[arg(short = 'z', long, env = "FLAGD_LOG_FORMAT", value_enum)]
        #[serde(deserialize_with = "LogFormat::lenient")]
        pub log_format: Option<LogFormat>,
        /// Server-side deadline of event and sync streams (e.g. `30s`; `0` = none).
        #[arg(long, env = "FLAGD_STREAM_DEADLINE", value_parser = duration_arg)]
        #[serde(deserialize_with = "lenient::duration")]
        pub stream_deadline: Option<Duration>,
        /// Largest accepted request body in bytes (0 = no limit).
        #[arg(short = 'B', long, env = "FLAGD_MAX_REQUEST_BODY")]
        #[serde(deserialize_with = "lenient::number")]
        pub max_request_body: Option<usize>,
        /// Allowed CORS origin (repeatable; none = all origins).
        #[arg(short = 'C', long, env = "FLAGD_CORS_ORIGIN", value_delimiter = ',')]
        #[serde(deserialize_with = "lenient::list")]
        pub cors_origin: Option<Vec<String>>,
        /// Answer sync GetMetadata with UNIMPLEMENTED.
        #[arg(long, env = "FLAGD_DISABLE_SYNC_METADATA", value_parser = BoolishValueParser::new(), num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        #[serde(deserialize_with = "lenient::boolean")]
        pub disable_sync_metadata: Option<bool>,
        /// TLS certificate chain (PEM): the evaluation, sync and OFREP ports then serve TLS only;
        /// reloaded when the file changes.
        #[arg(short = 'c', long, env = "FLAGD_SERVER_CERT_PATH")]
        #[serde(deserialize_with = "lenient::path")]
        pub server_cert_path: Option<PathBuf>,
        /// TLS private key (PEM) matching --server-cert-path.
        #[arg(short = 'k', long, env = "FLAGD_SERVER_KEY_PATH")]
        #[serde(deserialize_with = "lenient::path")]
        pub server_key_path: Option<PathBuf>,
        /// CA bundle (PEM) for mutual TLS: the TLS ports then require a client certificate
        /// signed by it (flagpole addition; needs -c/-k).
        #[arg(long, env = "FLAGD_CLIENT_CA_PATH")]
        #[serde(deserialize_with = "lenient::path")]
        pub client_ca_path: Option<PathBuf>,
        /// Unix socket for the evaluation services, replacing the TCP port.
        #[arg(short = 'd', long, env = "FLAGD_SOCKET_PATH")]
        #[serde(deserialize_with = "lenient::path")]
        pub socket_path: Option<PathBuf>,
        /// Unix socket for the flag sync service, replacing the TCP sync port.
        #[arg(short = 'e', long, env = "FLAGD_SYNC_SOCKET_PATH")]
        #[serde(deserialize_with = "lenient::path")]
        pub sync_socket_path: Option<PathBuf>,
        /// Silence after which event streams send keep_alive (default 20s).
        #[arg(long, env = "FLAGD_KEEP_ALIVE_INTERVAL", value_parser = duration_arg)]
        #[serde(deserialize_with = "lenient::duration")]
        pub keep_alive_interval: Option<Duration>,
        /// Fractional bucketing algorithm.
        #[arg(long, env = "FLAGD_FRACTIONAL_VERSION", value_parser = fractional_arg())]
        #[serde(deserialize_with = "read::fractional")]
        pub fractional_version: Option<FractionalVersion>,
        /// Debug-level logging (a global flag, `-x`, declared on the command itself).
        #[arg(skip)]
        #[serde(deserialize_with = "lenient::boolean")]
        pub debug: Option<bool>,
        /// The AWS options.
        #[command(flatten)]
        #[serde(flatten)]
        pub aws: AwsOptions,
        /// The telemetry options.
        #[command(flatten)]
        #[serde(flatten)]
        pub telemetry: TelemetryOptions,
        /// Distinct flag keys that get their own metric series (default 2000; more share `__other__`).
        #[arg(long, env = "FLAGD_METRICS_KEY_LIMIT")]
        #[serde(deserialize_with = "lenient::number")]
        pub metrics_key_limit: Option<usize>,
        /// Largest flag document or configuration object a source may deliver, in bytes
        /// (default 16 MiB); larger ones are refused and the last good one stays.
        #[arg(long, env = "FLAGPOLE_MAX_DOCUMENT_SIZE")]
        #[serde(deserialize_with = "lenient::number")]
        pub max_document_size: Option<usize>,
        /// Directory keeping each source's last applied document; at start, a source that cannot
        /// be reached is served from it (an S3 outage does not leave a restarted task empty).
        #[arg(long, env = "FLAGPOLE_CACHE_DIR")]
        #[serde(deserialize_with = "lenient::path")]
        pub cache_dir: Option<PathBuf>,
        /// Write CloudWatch Embedded Metric Format lines to stdout this often (e.g. `60s`; off by
        /// default): configuration age, last sync, rejected documents, evaluations, open streams.
        #[arg(long, env = "FLAGPOLE_METRICS_EMF_INTERVAL", value_parser = duration_arg)]
        #[serde(deserialize_with = "lenient::duration")]
        pub metrics_emf_interval: Option<Duration>,
        /// CloudWatch namespace of the EMF metrics (default `flagpole`).
        #[arg(long, env = "FLAGPOLE_METRICS_EMF_NAMESPACE")]
        #[serde(deserialize_with = "lenient::name")]
        pub metrics_emf_namespace: Option<String>,
        /// Address every TCP port binds (default 0.0.0.0, all interfaces, as flagd).
        #[arg(long, env = "FLAGD_BIND_ADDRESS", value_parser = bind_arg)]
        #[serde(deserialize_with = "read::bind_address")]
        pub bind_address: Option<IpAddr>,
        /// HTTP/2 streams one connection may open at once on the evaluation and sync ports
        /// (default 100).
        #[arg(long, env = "FLAGD_MAX_CONCURRENT_STREAMS")]
        #[serde(deserialize_with = "lenient::number")]
        pub max_concurrent_streams: Option<u32>,
        /// EventStream + SyncFlags streams open at once across the daemon; more are answered
        /// RESOURCE_EXHAUSTED (default 10000; 0 = no cap).
        #[arg(long, env = "FLAGD_MAX_OPEN_STREAMS")]
        #[serde(deserialize_with = "lenient::number")]
        pub max_open_streams: Option<usize>,
        /// Connections open at once on each of the evaluation, sync and OFREP ports; more are
        /// accepted and closed at once (default 10000; 0 = no cap).
        #[arg(long, env = "FLAGD_MAX_CONNECTIONS")]
        #[serde(deserialize_with = "lenient::number")]
        pub max_connections: Option<usize>,
        /// Time an HTTP/1.1 client has to send a request's headers, and an idle keep-alive
        /// connection stays open (default 3s; 0 = the default).
        #[arg(long, env = "FLAGD_HEADER_READ_TIMEOUT", value_parser = duration_arg)]
        #[serde(deserialize_with = "lenient::duration")]
        pub header_read_timeout: Option<Duration>,
        /// Time a request body has to arrive in full after its headers (default 10s; 0 = the default).
        #[arg(long, env = "FLAGD_BODY_READ_TIMEOUT", value_parser = duration_arg)]
        #[serde(deserialize_with = "lenient::duration")]
        pub body_read_timeout: Option<Duration>,
        /// Time to keep serving, not ready, after SIGTERM before draining (e.g. `10s`; default 0).
        #[arg(long, env = "FLAGD_DRAIN_DELAY", value_parser = duration_arg)]
        #[serde(deserialize_with = "lenient::duration")]
        pub drain_delay: Option<Duration>,
        /// Longest time draining may take before open connections are closed (default 10s).
        #[arg(long, env = "FLAGD_SHUTDOWN_GRACE", value_parser = duration_arg)]
        #[serde(deserialize_with = "lenient::duration")]
        pub shutdown_grace: Option<Duration>,
        /// flagd's sync-port ping policy; accepted and ignored: flagpole's HTTP/2 server
        /// acknowledges every client ping and never enforces a minimum interval.
        #[arg(long, env = "FLAGD_KEEP_ALIVE_MIN_TIME", value_parser = duration_arg)]
        #[serde(skip)]
        pub keep_alive_min_time: Option<Duration>,
        /// flagd's sync-port ping policy; accepted and ignored (pings are always permitted).
        #[arg(long, env = "FLAGD_KEEP_ALIVE_PERMIT_WITHOUT_STREAM", value_parser = BoolishValueParser::new(), num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        #[serde(skip)]
        pub keep_alive_permit_without_stream: Option<bool>,
        /// Bearer tokens clients must send on the evaluation, sync and OFREP ports, one per
        /// line (blank and `#` lines ignored); re-read when the file changes (flagpole addition).
        #[arg(long, env = "FLAGPOLE_AUTH_TOKEN_FILE")]
        #[serde(deserialize_with = "lenient::path")]
        pub auth_token_file: Option<PathBuf>,
        /// Bearer tokens from `FLAGPOLE_AUTH_TOKENS` (comma-separated; the environment only).
        #[arg(skip)]
        #[serde(skip)]
        pub auth_tokens: Option<AuthTokens>,
        /// `/metrics` requires the same bearer token as the other ports.
        #[arg(long, env = "FLAGPOLE_METRICS_AUTH", value_parser = BoolishValueParser::new(), num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        #[serde(deserialize_with = "lenient::boolean")]
        pub metrics_auth: Option<bool>,
        /// `/metrics` `source` labels show full source URIs; by default account ids,
        /// credentials and query strings are masked.
        #[arg(long, env = "FLAGPOLE_METRICS_SOURCE_URIS", value_parser = BoolishValueParser::new(), num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        #[serde(deserialize_with = "lenient::boolean")]
        pub metrics_source_uris: Option<bool>,
    }
}

impl ConfigInput {
    /// Reads a `--config` file: JSON for `.json`, YAML otherwise; keys are flagd's flag names;
    /// unknown keys are ignored, as viper does.
    pub fn from_file(path: &Path) -> Result<ConfigInput, ConfigError> {
        let fail = |message: String| ConfigError::File {
            path: path.to_owned(),
            message,
        };
        // Read before any option is known, so the default bound applies.
        let bytes = crate::sync::limit::read_file_blocking(
            path,
            crate::sync::limit::DEFAULT_MAX_DOCUMENT_SIZE,
        )
        .map_err(|e| fail(e.to_string()))?;
        let text = String::from_utf8(bytes).map_err(|_| fail("the file is not UTF-8".into()))?;
        let is_json = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        ConfigInput::from_text(&text, is_json).map_err(|e| match e {
            ConfigError::File { message, .. } => fail(message),
            other => fail(other.to_string()),
        })
    }

    /// Reads a config document's text: JSON when `is_json`, YAML otherwise (an empty YAML
    /// document is an empty map).
    pub fn from_text(text: &str, is_json: bool) -> Result<ConfigInput, ConfigError> {
        let fail = |message: String| ConfigError::File {
            path: PathBuf::new(),
            message,
        };
        let value: Value = if is_json {
            serde_json::from_str(text).map_err(|e| fail(e.to_string()))?
        } else if text.trim().is_empty() {
            Value::Object(Default::default())
        } else {
            // The alias budget of flag documents: a config file may come from a store too.
            crate::flags::parse_yaml(text.as_bytes()).map_err(fail)?
        };
        ConfigInput::from_value(&value)
    }

    /// Reads the keys of a parsed config document.
    pub fn from_value(value: &Value) -> Result<ConfigInput, ConfigError> {
        if !value.is_object() {
            return Err(ConfigError::Value {
                key: "config".into(),
                message: "expected a map of option names to values".into(),
            });
        }
        let input: ConfigInput =
            from_map(value).map_err(|(key, message)| ConfigError::Value { key, message })?;
        input.aws.check()?;
        Ok(input)
    }

    /// The settings, with flagd's defaults for whatever no layer gave.
    pub fn into_settings(self) -> Settings {
        let defaults = Settings::default();
        let mut sources = self.uri.unwrap_or_default();
        sources.extend(self.sources.unwrap_or_default());
        let non_empty = |path: Option<PathBuf>| path.filter(|p| !p.as_os_str().is_empty());
        Settings {
            port: self.port.unwrap_or(defaults.port),
            management_port: self.management_port.unwrap_or(defaults.management_port),
            sync_port: self.sync_port.unwrap_or(defaults.sync_port),
            ofrep_port: self.ofrep_port.unwrap_or(defaults.ofrep_port),
            sources,
            static_context: self
                .context_value
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect(),
            header_context: self
                .context_from_header
                .unwrap_or_default()
                .into_iter()
                .map(|(header, key)| (header.to_ascii_lowercase(), key))
                .collect(),
            stream_deadline: self.stream_deadline.filter(|d| !d.is_zero()),
            max_request_body: self.max_request_body.unwrap_or(defaults.max_request_body),
            keep_alive_interval: self
                .keep_alive_interval
                .unwrap_or(defaults.keep_alive_interval),
            fractional: self.fractional_version.unwrap_or(defaults.fractional),
            cors_origins: self.cors_origin.unwrap_or_default(),
            disable_sync_metadata: self.disable_sync_metadata.unwrap_or(false),
            server_cert_path: self.server_cert_path,
            server_key_path: self.server_key_path,
            client_ca_path: non_empty(self.client_ca_path),
            socket_path: non_empty(self.socket_path),
            sync_socket_path: non_empty(self.sync_socket_path),
            log_format: self.log_format.unwrap_or_default(),
            debug: self.debug.unwrap_or(false),
            aws: self.aws.into_settings(),
            telemetry: self.telemetry.into_settings(),
            metrics_key_limit: self.metrics_key_limit.unwrap_or(defaults.metrics_key_limit),
            max_document_size: self.max_document_size.unwrap_or(defaults.max_document_size),
            cache_dir: self.cache_dir,
            metrics_emf_interval: self.metrics_emf_interval.filter(|d| !d.is_zero()),
            metrics_emf_namespace: self
                .metrics_emf_namespace
                .unwrap_or(defaults.metrics_emf_namespace),
            bind_address: self.bind_address.unwrap_or(defaults.bind_address),
            // 0 would refuse every stream; treat it as "the default".
            max_concurrent_streams: self
                .max_concurrent_streams
                .filter(|n| *n > 0)
                .unwrap_or(defaults.max_concurrent_streams),
            max_open_streams: self.max_open_streams.unwrap_or(defaults.max_open_streams),
            max_connections: self.max_connections.unwrap_or(defaults.max_connections),
            // Zero would close every connection at once; treat it as "the default".
            header_read_timeout: self
                .header_read_timeout
                .filter(|d| !d.is_zero())
                .unwrap_or(defaults.header_read_timeout),
            body_read_timeout: self
                .body_read_timeout
                .filter(|d| !d.is_zero())
                .unwrap_or(defaults.body_read_timeout),
            drain_delay: self.drain_delay.unwrap_or(defaults.drain_delay),
            shutdown_grace: self.shutdown_grace.unwrap_or(defaults.shutdown_grace),
            auth_token_file: non_empty(self.auth_token_file),
            auth_tokens: self.auth_tokens.unwrap_or_default(),
            metrics_auth: self.metrics_auth.unwrap_or(false),
            metrics_source_uris: self.metrics_source_uris.unwrap_or(false),
        }
    }
}

impl Settings {
    /// What the sync layer starts from.
    pub fn sync_config(&self) -> SyncConfig {
        SyncConfig {
            sources: self.sources.clone(),
            aws: self.aws.clone(),
            max_document_size: self.max_document_size,
            cache_dir: self.cache_dir.clone(),
            tracer: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations_in_go_syntax() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("15"), Some(Duration::from_secs(15)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("ten seconds"), None);
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn absurd_durations_are_errors_not_panics() {
        for text in [
            "1e20",
            "1e300",
            "inf",
            "NaN",
            "99999999999999999999h",
            "87660h1s",
        ] {
            assert_eq!(parse_duration(text), None, "{text}");
        }
        assert_eq!(parse_duration("87600h"), Some(MAX_DURATION));
        let error = ConfigInput::from_value(&json!({"drain-delay": 1e20})).unwrap_err();
        assert!(error.to_string().contains("drain-delay"), "{error}");
    }

    #[test]
    fn uri_forms() {
        let file = parse_uri("file:./flags.json").unwrap();
        assert_eq!(
            (file.uri.as_str(), file.provider.as_str()),
            ("./flags.json", "file")
        );
        let s3 = parse_uri("s3://bucket/path/flags.json?region=eu-west-1").unwrap();
        assert_eq!(s3.uri, "s3://bucket/path/flags.json?region=eu-west-1");
        assert_eq!(s3.provider, "s3");
        assert!(parse_uri("./flags.json")
            .unwrap_err()
            .to_string()
            .contains("file:"));
        assert!(parse_uri("gs://bucket/flags.json")
            .unwrap_err()
            .to_string()
            .contains("not supported"));
        assert!(parse_uri("xds://localhost:8015").is_err());
        assert!(parse_uri("s3://bucket-only").is_err());
        assert!(parse_uri("file:").is_err());
    }

    #[test]
    fn sources_entries() {
        let sources = parse_sources_json(
            r#"[{"uri":"file:a.json","provider":"file"},
                {"uri":"b.yaml","provider":"fsnotify","authHeader":"ignored"},
                {"uri":"s3://b/k.json","provider":"s3","interval":30}]"#,
        )
        .unwrap();
        assert_eq!(sources[0].uri, "a.json");
        assert_eq!(sources[1].provider, "fsnotify");
        assert_eq!(sources[2].interval, Some(Duration::from_secs(30)));
        assert!(parse_sources_json(r#"[{"uri":"a.json"}]"#).is_err());
        assert!(parse_sources_json(r#"[{"uri":"a","provider":"nope"}]"#).is_err());
        assert!(parse_sources_json(r#"[{"uri":"x","provider":"gcs"}]"#)
            .unwrap_err()
            .to_string()
            .contains("not supported"));
        assert!(parse_sources_json(r#"{"uri":"a"}"#).is_err());
        assert_eq!(parse_sources_json("").unwrap(), vec![]);
    }

    #[test]
    fn testbed_config_document() {
        let input = ConfigInput::from_value(&json!({
            "server-cert-path": "/ssl/server-cert.pem",
            "server-key-path": "/ssl/server-key.pem",
            "socket-path": "/tmp/flagd.sock",
            "sync-socket-path": "",
            "sources": [
                {"uri": "flags/allFlags.json", "provider": "file"},
                {"uri": "rawflags/selector-flags.json", "provider": "file"}
            ],
            "context-value": {"injectedmetadata": "set"},
            "disable-sync-metadata": true,
            "unknown-key": 1
        }))
        .unwrap();
        let settings = input.into_settings();
        assert_eq!(settings.sources.len(), 2);
        assert_eq!(settings.sources[1].uri, "rawflags/selector-flags.json");
        assert_eq!(settings.static_context["injectedmetadata"], json!("set"));
        assert!(settings.disable_sync_metadata);
        assert_eq!(
            settings.server_cert_path.as_deref(),
            Some(Path::new("/ssl/server-cert.pem"))
        );
        assert_eq!(settings.port, 8013);
        assert_eq!(
            settings.socket_path.as_deref(),
            Some(Path::new("/tmp/flagd.sock"))
        );
        // An empty path is no socket (flagd's default is "").
        assert_eq!(settings.sync_socket_path, None);
    }

    #[test]
    fn auth_options_from_the_file() {
        let defaults = Settings::default();
        assert_eq!(defaults.auth_token_file, None);
        assert!(!defaults.metrics_auth && !defaults.metrics_source_uris);
        let settings = ConfigInput::from_value(&json!({
            "auth-token-file": "/run/secrets/tokens",
            "metrics-auth": "true",
            "metrics-source-uris": true,
            // Not a config key: tokens come from the environment or the token file.
            "auth-tokens": "ignored"
        }))
        .unwrap()
        .into_settings();
        assert_eq!(
            settings.auth_token_file.as_deref(),
            Some(Path::new("/run/secrets/tokens"))
        );
        assert!(settings.metrics_auth && settings.metrics_source_uris);
        assert!(settings.auth_tokens.0.is_empty());
        assert!(ConfigInput::from_value(&json!({"metrics-auth": "maybe"})).is_err());
    }

    #[test]
    fn auth_tokens_parse_and_never_print() {
        let tokens = AuthTokens::parse(" a, ,b ,");
        assert_eq!(tokens.0, ["a", "b"]);
        let settings = Settings {
            auth_tokens: AuthTokens::parse("s3cr3t-value"),
            ..Settings::default()
        };
        let debug = format!("{settings:?}");
        assert!(!debug.contains("s3cr3t-value"), "{debug}");
        assert!(debug.contains("AuthTokens(1 redacted)"), "{debug}");
    }

    #[test]
    fn exhaustion_limits_and_bind_address() {
        let defaults = Settings::default();
        assert_eq!(defaults.bind_address.to_string(), "0.0.0.0");
        assert_eq!(defaults.max_concurrent_streams, 100);
        assert_eq!(defaults.max_open_streams, 10_000);
        let settings = ConfigInput::from_value(&json!({
            "bind-address": "127.0.0.1",
            "max-concurrent-streams": "20",
            "max-open-streams": 0
        }))
        .unwrap()
        .into_settings();
        assert_eq!(settings.bind_address.to_string(), "127.0.0.1");
        assert_eq!(settings.max_concurrent_streams, 20);
        assert_eq!(settings.max_open_streams, 0);
        assert!(ConfigInput::from_value(&json!({"bind-address": "localhost:80"})).is_err());
    }

    #[test]
    fn connection_limits() {
        let defaults = Settings::default();
        assert_eq!(defaults.max_connections, 10_000);
        assert_eq!(defaults.header_read_timeout, Duration::from_secs(3));
        assert_eq!(defaults.body_read_timeout, Duration::from_secs(10));
        let settings = ConfigInput::from_value(&json!({
            "max-connections": "50",
            "header-read-timeout": "500ms",
            "body-read-timeout": "0s"
        }))
        .unwrap()
        .into_settings();
        assert_eq!(settings.max_connections, 50);
        assert_eq!(settings.header_read_timeout, Duration::from_millis(500));
        assert_eq!(settings.body_read_timeout, Duration::from_secs(10));
    }

    #[test]
    fn lenient_scalars_and_lists() {
        let input = ConfigInput::from_value(&json!({
            "port": "9013",
            "max-request-body": 0,
            "uri": "file:a.json,s3://b/k.json",
            "context-from-header": ["X-User-Id=userId"],
            "stream-deadline": "1m",
            "fractional-version": "v3",
            "log-format": "json",
            "debug": "true"
        }))
        .unwrap();
        let settings = input.into_settings();
        assert_eq!(settings.port, 9013);
        assert_eq!(settings.max_request_body, 0);
        assert_eq!(settings.sources.len(), 2);
        assert_eq!(
            settings.header_context,
            vec![("x-user-id".to_owned(), "userId".to_owned())]
        );
        assert_eq!(settings.stream_deadline, Some(Duration::from_secs(60)));
        assert_eq!(settings.fractional, FractionalVersion::V3);
        assert_eq!(settings.log_format, LogFormat::Json);
        assert!(settings.debug);
        assert!(ConfigInput::from_value(&json!({"port": "high"})).is_err());
        assert!(ConfigInput::from_value(&json!({"log-format": "xml"})).is_err());
    }

    #[test]
    fn upper_layer_wins_and_uris_come_before_sources() {
        let file = ConfigInput {
            port: Some(1),
            sync_port: Some(2),
            sources: Some(vec![parse_uri("file:from-file.json").unwrap()]),
            ..ConfigInput::default()
        };
        let cli = ConfigInput {
            port: Some(3),
            uri: Some(vec![parse_uri("file:from-cli.json").unwrap()]),
            ..ConfigInput::default()
        };
        let settings = Layer::over(cli, file).into_settings();
        assert_eq!((settings.port, settings.sync_port), (3, 2));
        let uris: Vec<_> = settings.sources.iter().map(|s| s.uri.as_str()).collect();
        assert_eq!(uris, ["from-cli.json", "from-file.json"]);
    }

    #[test]
    fn aws_options_from_a_config_document() {
        let input = ConfigInput::from_value(&json!({
            "sqs-queue-url": "https://sqs.eu-west-1.amazonaws.com/1/flags",
            "sns-topic-arn": "arn:aws:sns:eu-west-1:1:flags",
            "sqs-batch-size": 5,
            "sqs-visibility-timeout": "1m",
            "sqs-wait-time": "10s",
            "s3-safety-poll-interval": "10m",
            "aws-region": "eu-west-1"
        }))
        .unwrap();
        let aws = input.into_settings().aws;
        assert_eq!(aws.sqs_batch_size, 5);
        assert_eq!(aws.sqs_visibility_timeout, Duration::from_secs(60));
        assert_eq!(aws.sqs_wait_time, Duration::from_secs(10));
        assert_eq!(aws.s3_safety_poll_interval, Duration::from_secs(600));
        assert_eq!(aws.s3_poll_interval, Duration::from_secs(5));
        assert_eq!(aws.sqs_queue_prefix, "flagpole-");
        assert_eq!(aws.sqs_dead_letter_arn, None);
        assert_eq!(aws.region.as_deref(), Some("eu-west-1"));
        assert!(aws.notifications());
        assert!(!AwsSettings::default().notifications());
        for bad in [
            json!({"sqs-batch-size": 11}),
            json!({"sqs-wait-time": "21s"}),
            json!({"s3-poll-interval": "0"}),
            json!({"sqs-visibility-timeout": "soon"}),
        ] {
            assert!(ConfigInput::from_value(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn inline_expiry_is_off_unless_given() {
        assert_eq!(
            ConfigInput::default().into_settings().aws.sqs_inline_expiry,
            Duration::ZERO
        );
        let input = ConfigInput::from_value(&json!({"sqs-inline-expiry": "1h"})).unwrap();
        let aws = input.into_settings().aws;
        assert_eq!(aws.sqs_inline_expiry, Duration::from_secs(3600));
        assert!(ConfigInput::from_value(&json!({"sqs-inline-expiry": "soon"})).is_err());
    }

    #[test]
    fn metrics_key_limit_and_drain_delay() {
        let defaults = ConfigInput::default().into_settings();
        assert_eq!(defaults.metrics_key_limit, 2000);
        assert_eq!(defaults.drain_delay, Duration::ZERO);
        let settings = ConfigInput::from_value(&json!({
            "metrics-key-limit": "50",
            "drain-delay": "15s",
            "shutdown-grace": "20s"
        }))
        .unwrap()
        .into_settings();
        assert_eq!(settings.metrics_key_limit, 50);
        assert_eq!(settings.drain_delay, Duration::from_secs(15));
        assert_eq!(settings.shutdown_grace, Duration::from_secs(20));
        assert!(ConfigInput::from_value(&json!({"drain-delay": "soon"})).is_err());
    }

    #[test]
    fn dead_letter_arn_is_an_sqs_arn() {
        let input = ConfigInput::from_value(&json!({
            "sqs-dead-letter-arn": "arn:aws:sqs:eu-west-1:123456789012:flagpole-dlq"
        }))
        .unwrap();
        assert_eq!(
            input.into_settings().aws.sqs_dead_letter_arn.as_deref(),
            Some("arn:aws:sqs:eu-west-1:123456789012:flagpole-dlq")
        );
        for bad in ["flagpole-dlq", "arn:aws:sns:eu-west-1:123456789012:topic"] {
            let input = AwsOptions {
                sqs_dead_letter_arn: Some(bad.to_owned()),
                ..AwsOptions::default()
            };
            assert!(input.check().is_err(), "{bad}");
        }
    }

    #[test]
    fn metrics_emf_is_off_by_default_and_set_by_file() {
        let defaults = ConfigInput::default().into_settings();
        assert_eq!(defaults.metrics_emf_interval, None);
        assert_eq!(defaults.metrics_emf_namespace, "flagpole");
        let settings = ConfigInput::from_value(&json!({
            "metrics-emf-interval": "60s",
            "metrics-emf-namespace": "flagpole/prod"
        }))
        .unwrap()
        .into_settings();
        assert_eq!(settings.metrics_emf_interval, Some(Duration::from_secs(60)));
        assert_eq!(settings.metrics_emf_namespace, "flagpole/prod");
        let off = ConfigInput::from_value(&json!({"metrics-emf-interval": "0s"}))
            .unwrap()
            .into_settings();
        assert_eq!(off.metrics_emf_interval, None);
        assert!(ConfigInput::from_value(&json!({"metrics-emf-interval": "often"})).is_err());
    }

    #[test]
    fn flattened_aws_options_layer_too_and_file_errors_name_their_key() {
        let file =
            ConfigInput::from_value(&json!({"aws-region": "eu-west-1", "sqs-wait-time": "5s"}))
                .unwrap();
        let cli = ConfigInput {
            aws: AwsOptions {
                aws_region: Some("us-east-1".into()),
                ..AwsOptions::default()
            },
            ..ConfigInput::default()
        };
        let aws = Layer::over(cli, file).into_settings().aws;
        assert_eq!(aws.region.as_deref(), Some("us-east-1"));
        assert_eq!(aws.sqs_wait_time, Duration::from_secs(5));
        let error = ConfigInput::from_value(&json!({"port": 1, "sqs-wait-time": "later"}))
            .unwrap_err()
            .to_string();
        assert!(error.contains("`sqs-wait-time`"), "{error}");
        assert!(error.contains("later"), "{error}");
    }

    #[test]
    fn zero_stream_deadline_means_none() {
        let input = ConfigInput {
            stream_deadline: Some(Duration::ZERO),
            ..ConfigInput::default()
        };
        assert_eq!(input.into_settings().stream_deadline, None);
    }
}
