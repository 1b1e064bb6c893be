//! Runtime settings of the daemon, resolved from the CLI, environment and `--config` file.
//!
//! Every input (the config file, the command line with its `FLAGD_*` environment variables)
//! is first read into a [`ConfigInput`] of optional values; inputs are layered (command line
//! over file) and then turned into [`Settings`] with flagd's defaults.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::eval::{Context, FractionalVersion};
use crate::sync::Provider;

/// One configured sync source (a `--uri` entry or a `--sources` object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceConfig {
    /// The URI as stored and matched by `source=` selectors (e.g. `./flags.json`, `s3://b/k.json`).
    pub uri: String,
    /// The provider name (`file`, `fsnotify`, `fileinfo`, `s3`, ...).
    pub provider: String,
    /// Poll interval for polling providers.
    pub interval: Option<Duration>,
}

/// AWS-specific options: endpoint overrides, SQS change notifications, SNS fan-out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSettings {
    /// Region for every AWS client (else the standard chain: `AWS_REGION`, profile, IMDS).
    pub region: Option<String>,
    /// Endpoint for every AWS client (else `AWS_ENDPOINT_URL[_S3|_SQS|_SNS]`, else AWS).
    pub endpoint_url: Option<String>,
    /// `--config s3://...`: the configuration object whose `sources` are followed at run time.
    pub config_object: Option<String>,
    /// An SQS queue to long-poll for change events.
    pub sqs_queue_url: Option<String>,
    /// An SNS topic to fan out from: each replica creates, subscribes and deletes its own queue.
    pub sns_topic_arn: Option<String>,
    /// Name prefix of the per-replica fan-out queues.
    pub sqs_queue_prefix: String,
    /// Dead-letter queue of the fan-out queues: a message received
    /// [`crate::sync::FANOUT_MAX_RECEIVES`] times without being handled moves there.
    pub sqs_dead_letter_arn: Option<String>,
    /// Source names inline SQS documents may use (`*`: any); empty: inline documents are off.
    pub sqs_inline: Vec<String>,
    /// An inline source that receives no message for this long is removed (zero: never).
    pub sqs_inline_expiry: Duration,
    /// Messages per SQS receive (1..=10).
    pub sqs_batch_size: i32,
    /// How long a received message stays invisible while it is handled.
    pub sqs_visibility_timeout: Duration,
    /// SQS long-poll wait (0..=20 s).
    pub sqs_wait_time: Duration,
    /// S3 poll interval of sources without their own `interval` while no SQS is configured.
    pub s3_poll_interval: Duration,
    /// S3 poll interval of sources without their own `interval` while SQS delivers changes
    /// (a safety net for lost notifications).
    pub s3_safety_poll_interval: Duration,
    /// This replica's identity (queue name, poll jitter); else the ECS task id or hostname.
    pub replica_id: Option<String>,
}

impl Default for AwsSettings {
    fn default() -> Self {
        AwsSettings {
            region: None,
            endpoint_url: None,
            config_object: None,
            sqs_queue_url: None,
            sns_topic_arn: None,
            sqs_queue_prefix: "flagpole-".to_owned(),
            sqs_inline: Vec::new(),
            sqs_inline_expiry: Duration::ZERO,
            sqs_dead_letter_arn: None,
            sqs_batch_size: 10,
            sqs_visibility_timeout: Duration::from_secs(30),
            sqs_wait_time: Duration::from_secs(20),
            s3_poll_interval: Duration::from_secs(5),
            s3_safety_poll_interval: Duration::from_secs(300),
            replica_id: None,
        }
    }
}

impl AwsSettings {
    /// Whether change events arrive through SQS (a queue or an SNS fan-out).
    pub fn notifications(&self) -> bool {
        self.sqs_queue_url.is_some() || self.sns_topic_arn.is_some()
    }
}

/// The AWS options of one configuration layer (`None` = not given here).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AwsInput {
    /// `aws-region`.
    pub region: Option<String>,
    /// `aws-endpoint-url`.
    pub endpoint_url: Option<String>,
    /// `sqs-queue-url`.
    pub sqs_queue_url: Option<String>,
    /// `sns-topic-arn`.
    pub sns_topic_arn: Option<String>,
    /// `sqs-queue-prefix`.
    pub sqs_queue_prefix: Option<String>,
    /// `sqs-dead-letter-arn`.
    pub sqs_dead_letter_arn: Option<String>,
    /// `sqs-inline`.
    pub sqs_inline: Option<Vec<String>>,
    /// `sqs-inline-expiry`.
    pub sqs_inline_expiry: Option<Duration>,
    /// `sqs-batch-size`.
    pub sqs_batch_size: Option<i32>,
    /// `sqs-visibility-timeout`.
    pub sqs_visibility_timeout: Option<Duration>,
    /// `sqs-wait-time`.
    pub sqs_wait_time: Option<Duration>,
    /// `s3-poll-interval`.
    pub s3_poll_interval: Option<Duration>,
    /// `s3-safety-poll-interval`.
    pub s3_safety_poll_interval: Option<Duration>,
    /// `replica-id`.
    pub replica_id: Option<String>,
}

impl AwsInput {
    fn from_map(map: &serde_json::Map<String, Value>) -> Result<AwsInput, ConfigError> {
        let get = |key: &str| map.get(key).filter(|v| !v.is_null());
        let text = |key: &'static str| -> Result<Option<String>, ConfigError> {
            Ok(get(key)
                .map(|v| scalar(v, key))
                .transpose()?
                .filter(|s| !s.is_empty()))
        };
        let duration =
            |key: &'static str| get(key).map(|v| parse_duration_value(v, key)).transpose();
        let input = AwsInput {
            region: text("aws-region")?,
            endpoint_url: text("aws-endpoint-url")?,
            sqs_queue_url: text("sqs-queue-url")?,
            sns_topic_arn: text("sns-topic-arn")?,
            sqs_queue_prefix: text("sqs-queue-prefix")?,
            sqs_dead_letter_arn: text("sqs-dead-letter-arn")?,
            sqs_inline: get("sqs-inline")
                .map(|v| string_list(v, "sqs-inline"))
                .transpose()?,
            sqs_inline_expiry: duration("sqs-inline-expiry")?,
            sqs_batch_size: get("sqs-batch-size")
                .map(|v| number(v, "sqs-batch-size"))
                .transpose()?,
            sqs_visibility_timeout: duration("sqs-visibility-timeout")?,
            sqs_wait_time: duration("sqs-wait-time")?,
            s3_poll_interval: duration("s3-poll-interval")?,
            s3_safety_poll_interval: duration("s3-safety-poll-interval")?,
            replica_id: text("replica-id")?,
        };
        input.check()?;
        Ok(input)
    }

    /// Rejects values AWS would refuse.
    pub fn check(&self) -> Result<(), ConfigError> {
        let fail = |key: &'static str, message: &str| {
            Err(ConfigError::Value {
                key,
                message: message.to_owned(),
            })
        };
        if let Some(arn) = self
            .sqs_dead_letter_arn
            .as_deref()
            .filter(|s| !s.is_empty())
        {
            let parts: Vec<&str> = arn.split(':').collect();
            if parts.len() != 6 || parts[0] != "arn" || parts[2] != "sqs" || parts[5].is_empty() {
                return fail(
                    "sqs-dead-letter-arn",
                    "expected an SQS queue ARN (arn:aws:sqs:<region>:<account>:<name>)",
                );
            }
        }
        if self.sqs_batch_size.is_some_and(|n| !(1..=10).contains(&n)) {
            return fail("sqs-batch-size", "must be between 1 and 10");
        }
        if self
            .sqs_wait_time
            .is_some_and(|d| d > Duration::from_secs(20))
        {
            return fail("sqs-wait-time", "must be at most 20s");
        }
        if self
            .sqs_visibility_timeout
            .is_some_and(|d| d > Duration::from_secs(43_200))
        {
            return fail("sqs-visibility-timeout", "must be at most 12h");
        }
        for (key, value) in [
            ("s3-poll-interval", self.s3_poll_interval),
            ("s3-safety-poll-interval", self.s3_safety_poll_interval),
        ] {
            if value.is_some_and(|d| d.is_zero()) {
                return fail(key, "must be more than 0");
            }
        }
        Ok(())
    }

    /// This layer with every value it lacks taken from `lower`.
    pub fn over(self, lower: AwsInput) -> AwsInput {
        AwsInput {
            region: self.region.or(lower.region),
            endpoint_url: self.endpoint_url.or(lower.endpoint_url),
            sqs_queue_url: self.sqs_queue_url.or(lower.sqs_queue_url),
            sns_topic_arn: self.sns_topic_arn.or(lower.sns_topic_arn),
            sqs_queue_prefix: self.sqs_queue_prefix.or(lower.sqs_queue_prefix),
            sqs_dead_letter_arn: self.sqs_dead_letter_arn.or(lower.sqs_dead_letter_arn),
            sqs_inline: self.sqs_inline.or(lower.sqs_inline),
            sqs_inline_expiry: self.sqs_inline_expiry.or(lower.sqs_inline_expiry),
            sqs_batch_size: self.sqs_batch_size.or(lower.sqs_batch_size),
            sqs_visibility_timeout: self.sqs_visibility_timeout.or(lower.sqs_visibility_timeout),
            sqs_wait_time: self.sqs_wait_time.or(lower.sqs_wait_time),
            s3_poll_interval: self.s3_poll_interval.or(lower.s3_poll_interval),
            s3_safety_poll_interval: self
                .s3_safety_poll_interval
                .or(lower.s3_safety_poll_interval),
            replica_id: self.replica_id.or(lower.replica_id),
        }
    }

    /// The settings, with defaults for whatever no layer gave.
    pub fn into_settings(self) -> AwsSettings {
        let d = AwsSettings::default();
        AwsSettings {
            region: self.region,
            endpoint_url: self.endpoint_url,
            config_object: None,
            sqs_queue_url: self.sqs_queue_url,
            sns_topic_arn: self.sns_topic_arn,
            sqs_queue_prefix: self.sqs_queue_prefix.unwrap_or(d.sqs_queue_prefix),
            sqs_dead_letter_arn: self.sqs_dead_letter_arn.filter(|s| !s.is_empty()),
            sqs_inline: self.sqs_inline.unwrap_or_default(),
            sqs_inline_expiry: self.sqs_inline_expiry.unwrap_or_default(),
            sqs_batch_size: self.sqs_batch_size.unwrap_or(d.sqs_batch_size),
            sqs_visibility_timeout: self
                .sqs_visibility_timeout
                .unwrap_or(d.sqs_visibility_timeout),
            sqs_wait_time: self.sqs_wait_time.unwrap_or(d.sqs_wait_time),
            s3_poll_interval: self.s3_poll_interval.unwrap_or(d.s3_poll_interval),
            s3_safety_poll_interval: self
                .s3_safety_poll_interval
                .unwrap_or(d.s3_safety_poll_interval),
            replica_id: self.replica_id,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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
    /// How long to keep serving after shutdown begins with readiness already failing, so
    /// load balancers stop routing here before connections drain.
    pub drain_delay: Duration,
    /// Longest time draining may take once it starts (open streams, in-flight requests);
    /// what is still open then is closed.
    pub shutdown_grace: Duration,
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
            metrics_key_limit: 2000,
            max_document_size: crate::sync::limit::DEFAULT_MAX_DOCUMENT_SIZE,
            cache_dir: None,
            metrics_emf_interval: None,
            metrics_emf_namespace: "flagpole".to_owned(),
            bind_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            max_concurrent_streams: 100,
            max_open_streams: 10_000,
            drain_delay: Duration::ZERO,
            shutdown_grace: Duration::from_secs(10),
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
    /// A `--uri` that matches no supported pattern (spec 6.1).
    #[error("invalid sync uri argument `{uri}`: {message}")]
    Uri {
        /// The argument.
        uri: String,
        /// What is wrong.
        message: String,
    },
    /// A `--sources` entry that is malformed or names an unsupported provider.
    #[error("invalid sources: {0}")]
    Sources(String),
    /// Any other option with an unusable value.
    #[error("invalid value for `{key}`: {message}")]
    Value {
        /// The option name.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// One layer of configuration: every value optional, `None` = not given here.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigInput {
    /// `port`.
    pub port: Option<u16>,
    /// `management-port`.
    pub management_port: Option<u16>,
    /// `sync-port`.
    pub sync_port: Option<u16>,
    /// `ofrep-port`.
    pub ofrep_port: Option<u16>,
    /// `uri` entries, already checked (spec 6.1).
    pub uris: Option<Vec<SourceConfig>>,
    /// `sources` entries, already checked (spec 6.2).
    pub sources: Option<Vec<SourceConfig>>,
    /// `context-value` pairs.
    pub context_values: Option<Vec<(String, String)>>,
    /// `context-from-header` pairs (header name as given).
    pub context_from_headers: Option<Vec<(String, String)>>,
    /// `stream-deadline` (zero = none).
    pub stream_deadline: Option<Duration>,
    /// `max-request-body`.
    pub max_request_body: Option<usize>,
    /// `cors-origin`.
    pub cors_origins: Option<Vec<String>>,
    /// `disable-sync-metadata`.
    pub disable_sync_metadata: Option<bool>,
    /// `server-cert-path`.
    pub server_cert_path: Option<PathBuf>,
    /// `server-key-path`.
    pub server_key_path: Option<PathBuf>,
    /// `client-ca-path`.
    pub client_ca_path: Option<PathBuf>,
    /// `socket-path`.
    pub socket_path: Option<PathBuf>,
    /// `sync-socket-path`.
    pub sync_socket_path: Option<PathBuf>,
    /// `keep-alive-interval`.
    pub keep_alive_interval: Option<Duration>,
    /// `fractional-version`.
    pub fractional: Option<FractionalVersion>,
    /// `log-format`.
    pub log_format: Option<LogFormat>,
    /// `debug`.
    pub debug: Option<bool>,
    /// The AWS options.
    pub aws: AwsInput,
    /// `metrics-key-limit`.
    pub metrics_key_limit: Option<usize>,
    /// `max-document-size`.
    pub max_document_size: Option<usize>,
    /// `cache-dir`.
    pub cache_dir: Option<PathBuf>,
    /// `metrics-emf-interval`.
    pub metrics_emf_interval: Option<Duration>,
    /// `metrics-emf-namespace`.
    pub metrics_emf_namespace: Option<String>,
    /// `bind-address`.
    pub bind_address: Option<IpAddr>,
    /// `max-concurrent-streams`.
    pub max_concurrent_streams: Option<u32>,
    /// `max-open-streams`.
    pub max_open_streams: Option<usize>,
    /// `drain-delay`.
    pub drain_delay: Option<Duration>,
    /// `shutdown-grace`.
    pub shutdown_grace: Option<Duration>,
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
        let Value::Object(map) = value else {
            return Err(ConfigError::Value {
                key: "config",
                message: "expected a map of option names to values".into(),
            });
        };
        let get = |key: &str| map.get(key).filter(|v| !v.is_null());
        let mut input = ConfigInput {
            port: get("port").map(|v| number(v, "port")).transpose()?,
            management_port: get("management-port")
                .map(|v| number(v, "management-port"))
                .transpose()?,
            sync_port: get("sync-port")
                .map(|v| number(v, "sync-port"))
                .transpose()?,
            ofrep_port: get("ofrep-port")
                .map(|v| number(v, "ofrep-port"))
                .transpose()?,
            max_request_body: get("max-request-body")
                .map(|v| number(v, "max-request-body"))
                .transpose()?,
            disable_sync_metadata: get("disable-sync-metadata")
                .map(|v| boolean(v, "disable-sync-metadata"))
                .transpose()?,
            debug: get("debug").map(|v| boolean(v, "debug")).transpose()?,
            metrics_key_limit: get("metrics-key-limit")
                .map(|v| number(v, "metrics-key-limit"))
                .transpose()?,
            max_document_size: get("max-document-size")
                .map(|v| number(v, "max-document-size"))
                .transpose()?,
            cache_dir: get("cache-dir")
                .map(|v| scalar(v, "cache-dir"))
                .transpose()?
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            bind_address: get("bind-address")
                .map(|v| parse_bind_address(&scalar(v, "bind-address")?))
                .transpose()?,
            max_concurrent_streams: get("max-concurrent-streams")
                .map(|v| number(v, "max-concurrent-streams"))
                .transpose()?,
            max_open_streams: get("max-open-streams")
                .map(|v| number(v, "max-open-streams"))
                .transpose()?,
            server_cert_path: get("server-cert-path")
                .map(|v| scalar(v, "server-cert-path"))
                .transpose()?
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            server_key_path: get("server-key-path")
                .map(|v| scalar(v, "server-key-path"))
                .transpose()?
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            metrics_emf_namespace: get("metrics-emf-namespace")
                .map(|v| scalar(v, "metrics-emf-namespace"))
                .transpose()?
                .filter(|s| !s.is_empty()),
            client_ca_path: get("client-ca-path")
                .map(|v| scalar(v, "client-ca-path"))
                .transpose()?
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            socket_path: get("socket-path")
                .map(|v| scalar(v, "socket-path"))
                .transpose()?
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            sync_socket_path: get("sync-socket-path")
                .map(|v| scalar(v, "sync-socket-path"))
                .transpose()?
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            aws: AwsInput::from_map(map)?,
            ..ConfigInput::default()
        };
        if let Some(v) = get("metrics-emf-interval") {
            input.metrics_emf_interval = Some(parse_duration_value(v, "metrics-emf-interval")?);
        }
        if let Some(v) = get("stream-deadline") {
            input.stream_deadline = Some(parse_duration_value(v, "stream-deadline")?);
        }
        if let Some(v) = get("shutdown-grace") {
            input.shutdown_grace = Some(parse_duration_value(v, "shutdown-grace")?);
        }
        if let Some(v) = get("drain-delay") {
            input.drain_delay = Some(parse_duration_value(v, "drain-delay")?);
        }
        if let Some(v) = get("keep-alive-interval") {
            input.keep_alive_interval = Some(parse_duration_value(v, "keep-alive-interval")?);
        }
        if let Some(v) = get("log-format") {
            let text = scalar(v, "log-format")?;
            input.log_format = Some(LogFormat::parse(&text).ok_or(ConfigError::Value {
                key: "log-format",
                message: format!("`{text}` is not `console` or `json`"),
            })?);
        }
        if let Some(v) = get("fractional-version") {
            input.fractional = Some(parse_fractional(&scalar(v, "fractional-version")?)?);
        }
        if let Some(v) = get("uri") {
            let uris = string_list(v, "uri")?;
            input.uris = Some(
                uris.iter()
                    .map(|u| parse_uri(u))
                    .collect::<Result<_, _>>()?,
            );
        }
        if let Some(v) = get("sources") {
            input.sources = Some(match v {
                Value::String(text) => parse_sources_json(text)?,
                other => parse_sources(other)?,
            });
        }
        if let Some(v) = get("cors-origin") {
            input.cors_origins = Some(string_list(v, "cors-origin")?);
        }
        if let Some(v) = get("context-value") {
            input.context_values = Some(pairs(v, "context-value")?);
        }
        if let Some(v) = get("context-from-header") {
            input.context_from_headers = Some(pairs(v, "context-from-header")?);
        }
        Ok(input)
    }

    /// This layer with every value it lacks taken from `lower`.
    pub fn over(self, lower: ConfigInput) -> ConfigInput {
        ConfigInput {
            port: self.port.or(lower.port),
            management_port: self.management_port.or(lower.management_port),
            sync_port: self.sync_port.or(lower.sync_port),
            ofrep_port: self.ofrep_port.or(lower.ofrep_port),
            uris: self.uris.or(lower.uris),
            sources: self.sources.or(lower.sources),
            context_values: self.context_values.or(lower.context_values),
            context_from_headers: self.context_from_headers.or(lower.context_from_headers),
            stream_deadline: self.stream_deadline.or(lower.stream_deadline),
            max_request_body: self.max_request_body.or(lower.max_request_body),
            cors_origins: self.cors_origins.or(lower.cors_origins),
            disable_sync_metadata: self.disable_sync_metadata.or(lower.disable_sync_metadata),
            server_cert_path: self.server_cert_path.or(lower.server_cert_path),
            server_key_path: self.server_key_path.or(lower.server_key_path),
            client_ca_path: self.client_ca_path.or(lower.client_ca_path),
            socket_path: self.socket_path.or(lower.socket_path),
            sync_socket_path: self.sync_socket_path.or(lower.sync_socket_path),
            keep_alive_interval: self.keep_alive_interval.or(lower.keep_alive_interval),
            fractional: self.fractional.or(lower.fractional),
            log_format: self.log_format.or(lower.log_format),
            debug: self.debug.or(lower.debug),
            aws: self.aws.over(lower.aws),
            metrics_key_limit: self.metrics_key_limit.or(lower.metrics_key_limit),
            max_document_size: self.max_document_size.or(lower.max_document_size),
            cache_dir: self.cache_dir.or(lower.cache_dir),
            metrics_emf_interval: self.metrics_emf_interval.or(lower.metrics_emf_interval),
            metrics_emf_namespace: self.metrics_emf_namespace.or(lower.metrics_emf_namespace),
            bind_address: self.bind_address.or(lower.bind_address),
            max_concurrent_streams: self.max_concurrent_streams.or(lower.max_concurrent_streams),
            max_open_streams: self.max_open_streams.or(lower.max_open_streams),
            drain_delay: self.drain_delay.or(lower.drain_delay),
            shutdown_grace: self.shutdown_grace.or(lower.shutdown_grace),
        }
    }

    /// The settings, with flagd's defaults for whatever no layer gave.
    pub fn into_settings(self) -> Settings {
        let defaults = Settings::default();
        let mut sources = self.uris.unwrap_or_default();
        sources.extend(self.sources.unwrap_or_default());
        Settings {
            port: self.port.unwrap_or(defaults.port),
            management_port: self.management_port.unwrap_or(defaults.management_port),
            sync_port: self.sync_port.unwrap_or(defaults.sync_port),
            ofrep_port: self.ofrep_port.unwrap_or(defaults.ofrep_port),
            sources,
            static_context: self
                .context_values
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect(),
            header_context: self
                .context_from_headers
                .unwrap_or_default()
                .into_iter()
                .map(|(header, key)| (header.to_ascii_lowercase(), key))
                .collect(),
            stream_deadline: self.stream_deadline.filter(|d| !d.is_zero()),
            max_request_body: self.max_request_body.unwrap_or(defaults.max_request_body),
            keep_alive_interval: self
                .keep_alive_interval
                .unwrap_or(defaults.keep_alive_interval),
            fractional: self.fractional.unwrap_or(defaults.fractional),
            cors_origins: self.cors_origins.unwrap_or_default(),
            disable_sync_metadata: self.disable_sync_metadata.unwrap_or(false),
            server_cert_path: self.server_cert_path,
            server_key_path: self.server_key_path,
            client_ca_path: self.client_ca_path,
            socket_path: self.socket_path,
            sync_socket_path: self.sync_socket_path,
            log_format: self.log_format.unwrap_or_default(),
            debug: self.debug.unwrap_or(false),
            aws: self.aws.into_settings(),
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
            drain_delay: self.drain_delay.unwrap_or(defaults.drain_delay),
            shutdown_grace: self.shutdown_grace.unwrap_or(defaults.shutdown_grace),
        }
    }
}

/// Turns one `--uri` argument into a source (spec 6.1).
pub fn parse_uri(uri: &str) -> Result<SourceConfig, ConfigError> {
    let fail = |message: &str| ConfigError::Uri {
        uri: uri.to_owned(),
        message: message.to_owned(),
    };
    if let Some(path) = uri.strip_prefix("file:") {
        if path.is_empty() {
            return Err(fail("empty file path"));
        }
        return Ok(SourceConfig {
            uri: path.to_owned(),
            provider: "file".into(),
            interval: None,
        });
    }
    if let Some(location) = uri.strip_prefix("s3://") {
        if location.split('/').nth(1).unwrap_or("").is_empty() {
            return Err(fail("expected s3://<bucket>/<key>"));
        }
        return Ok(SourceConfig {
            uri: uri.to_owned(),
            provider: "s3".into(),
            interval: None,
        });
    }
    const UNSUPPORTED: [(&str, &str); 10] = [
        ("http://", "http"),
        ("https://", "http"),
        ("grpc://", "grpc"),
        ("grpcs://", "grpc"),
        ("envoy://", "grpc"),
        ("dns://", "grpc"),
        ("uds://", "grpc"),
        ("xds://", "grpc"),
        ("gs://", "gcs"),
        ("azblob://", "azblob"),
    ];
    for (prefix, provider) in UNSUPPORTED {
        if uri.starts_with(prefix) {
            return Err(fail(&format!(
                "the `{provider}` provider is not supported by flagpole yet (supported: file:, s3://)"
            )));
        }
    }
    if uri.starts_with("core.openfeature.dev/") {
        return Err(fail(
            "the `kubernetes` provider is not supported by flagpole yet (supported: file:, s3://)",
        ));
    }
    Err(fail(
        "expected file:<path> or s3://<bucket>/<key> (a bare path needs the `file:` prefix)",
    ))
}

/// Parses the `--sources` JSON array string (spec 6.2).
pub fn parse_sources_json(text: &str) -> Result<Vec<SourceConfig>, ConfigError> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let value: Value =
        serde_json::from_str(text).map_err(|e| ConfigError::Sources(e.to_string()))?;
    parse_sources(&value)
}

/// Reads a list of `{uri, provider, interval, ...}` objects; other fields are ignored.
pub fn parse_sources(value: &Value) -> Result<Vec<SourceConfig>, ConfigError> {
    let Value::Array(entries) = value else {
        return Err(ConfigError::Sources(
            "expected a list of {\"uri\", \"provider\"} objects".into(),
        ));
    };
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let fail = |m: String| ConfigError::Sources(format!("entry {i}: {m}"));
            let field = |name: &str| entry.get(name).and_then(Value::as_str);
            let uri = field("uri")
                .filter(|u| !u.is_empty())
                .ok_or_else(|| fail("`uri` is required".into()))?;
            let provider = field("provider")
                .filter(|p| !p.is_empty())
                .ok_or_else(|| fail(format!("`provider` is required for `{uri}`")))?;
            let kind = Provider::parse(provider).map_err(&fail)?;
            let interval = match entry.get("interval") {
                None | Some(Value::Null) => None,
                Some(v) => {
                    let seconds: u32 = number(v, "interval").map_err(|e| fail(e.to_string()))?;
                    if seconds > 86_400 {
                        return Err(fail("`interval` must be at most 86400 seconds".into()));
                    }
                    Some(Duration::from_secs(seconds.into()))
                }
            };
            let uri = match kind {
                Provider::File => uri.strip_prefix("file:").unwrap_or(uri),
                Provider::S3 => uri,
            };
            Ok(SourceConfig {
                uri: uri.to_owned(),
                provider: provider.to_owned(),
                interval,
            })
        })
        .collect()
}

/// Splits `key=value` at the first `=` (for `-X` and `-H`).
pub fn parse_pair(text: &str, option: &'static str) -> Result<(String, String), ConfigError> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(ConfigError::Value {
            key: option,
            message: format!("`{text}` is not of the form key=value"),
        }),
    }
}

/// Parses `v2` or `v3` (also `2`, `3`).
pub fn parse_fractional(text: &str) -> Result<FractionalVersion, ConfigError> {
    match text.trim().to_ascii_lowercase().as_str() {
        "v2" | "2" => Ok(FractionalVersion::V2),
        "v3" | "3" => Ok(FractionalVersion::V3),
        other => Err(ConfigError::Value {
            key: "fractional-version",
            message: format!("`{other}` is not `v2` or `v3`"),
        }),
    }
}

/// The longest duration any option accepts (ten years): longer ones are configuration
/// mistakes, and bounding them keeps every `Instant + duration` far from overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Parses a Go-style duration (`30s`, `1m30s`, `500ms`, `1h`, `0`); a bare number is seconds.
/// Negative, non-finite and longer than [`MAX_DURATION`] values are `None`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(seconds) = text.parse::<f64>() {
        return bounded_seconds(seconds);
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_len == 0 {
            return None;
        }
        let value: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    bounded_seconds(total)
}

/// Seconds as a duration, without the panic of `Duration::from_secs_f64` on huge values.
fn bounded_seconds(seconds: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|d| *d <= MAX_DURATION)
}

fn parse_duration_value(value: &Value, key: &'static str) -> Result<Duration, ConfigError> {
    let text = scalar(value, key)?;
    parse_duration(&text).ok_or(ConfigError::Value {
        key,
        message: format!("`{text}` is not a duration such as 30s, 1m or 0 (at most ten years)"),
    })
}

/// A scalar as text (numbers and booleans stringified, as viper does).
fn scalar(value: &Value, key: &'static str) -> Result<String, ConfigError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(ConfigError::Value {
            key,
            message: "expected a single value".into(),
        }),
    }
}

fn number<T: std::str::FromStr>(value: &Value, key: &'static str) -> Result<T, ConfigError> {
    let text = scalar(value, key)?;
    text.trim().parse().map_err(|_| ConfigError::Value {
        key,
        message: format!("`{text}` is not a valid number here"),
    })
}

/// `--bind-address`: an IPv4 or IPv6 address (no port, no host name).
pub fn parse_bind_address(text: &str) -> Result<IpAddr, ConfigError> {
    text.trim().parse().map_err(|_| ConfigError::Value {
        key: "bind-address",
        message: format!("`{text}` is not an IP address such as 0.0.0.0, 127.0.0.1 or ::"),
    })
}

fn boolean(value: &Value, key: &'static str) -> Result<bool, ConfigError> {
    match scalar(value, key)?.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" | "" => Ok(false),
        other => Err(ConfigError::Value {
            key,
            message: format!("`{other}` is not true or false"),
        }),
    }
}

/// A list of strings, or one comma-separated string.
fn string_list(value: &Value, key: &'static str) -> Result<Vec<String>, ConfigError> {
    match value {
        Value::Array(items) => items.iter().map(|v| scalar(v, key)).collect(),
        other => Ok(scalar(other, key)?
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()),
    }
}

/// A map of scalars, a list of `k=v` strings, or one `k=v,k2=v2` string.
fn pairs(value: &Value, key: &'static str) -> Result<Vec<(String, String)>, ConfigError> {
    match value {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| Ok((k.clone(), scalar(v, key)?)))
            .collect(),
        other => string_list(other, key)?
            .iter()
            .map(|item| parse_pair(item, key))
            .collect(),
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
        assert!(parse_uri("https://example.com/flags.json")
            .unwrap_err()
            .to_string()
            .contains("not supported"));
        assert!(parse_uri("grpc://localhost:8015").is_err());
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
        assert!(parse_sources_json(r#"[{"uri":"x","provider":"http"}]"#)
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
            uris: Some(vec![parse_uri("file:from-cli.json").unwrap()]),
            ..ConfigInput::default()
        };
        let settings = cli.over(file).into_settings();
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
            let input = AwsInput {
                sqs_dead_letter_arn: Some(bad.to_owned()),
                ..AwsInput::default()
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
    fn zero_stream_deadline_means_none() {
        let input = ConfigInput {
            stream_deadline: Some(Duration::ZERO),
            ..ConfigInput::default()
        };
        assert_eq!(input.into_settings().stream_deadline, None);
    }
}
