//! The command line: `flagpole start` with flagd's flags and `FLAGD_*` environment variables,
//! `flagpole validate FILE...`, `flagpole version` and the container probes
//! `flagpole healthcheck` / `flagpole ready`.
//!
//! Precedence, as in flagd: command-line flag, then environment variable, then `--config` file,
//! then the default.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{
    parse_duration, parse_pair, parse_sources_json, parse_uri, AwsInput, ConfigError, ConfigInput,
    LogFormat, Settings,
};
use crate::eval::FractionalVersion;
use crate::flags::{parse_document, Format};
use crate::probe::Probe;

/// flagpole: a flagd-compatible feature-flag daemon.
#[derive(Debug, Parser)]
#[command(name = "flagpole", version, about, long_about = None)]
pub struct Cli {
    /// Config file (JSON or YAML) whose keys are the `start` flag names, or an S3 object
    /// (`s3://bucket/key`) whose `sources` are followed at run time.
    #[arg(long, global = true, env = "FLAGD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Debug-level logging.
    #[arg(short = 'x', long, global = true, env = "FLAGD_DEBUG", value_parser = clap::builder::BoolishValueParser::new(), num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub debug: Option<bool>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the daemon.
    Start(Box<StartArgs>),
    /// Check flag definition files and print every problem.
    Validate {
        /// Flag files (.json, .yaml, .yml).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the version.
    Version,
    /// Probe the running daemon's liveness (`/healthz` on the management port): exit 0 on 200.
    Healthcheck(ProbeArgs),
    /// Probe the running daemon's readiness (`/readyz` on the management port): exit 0 on 200.
    Ready(ProbeArgs),
    /// Run as an AWS Lambda extension serving the flagd ports on localhost (docs/lambda.md).
    #[cfg(feature = "lambda")]
    LambdaExtension(Box<crate::lambda::LambdaArgs>),
    /// Run as an AWS Lambda function answering OFREP and Connect (docs/lambda.md).
    #[cfg(feature = "lambda")]
    Lambda(Box<crate::lambda::LambdaArgs>),
}

/// Flags of `flagpole healthcheck` and `flagpole ready`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Management port of the daemon on 127.0.0.1 (default: the `--config` file's, else 8014).
    #[arg(short = 'm', long = "port", env = "FLAGD_MANAGEMENT_PORT")]
    pub port: Option<u16>,
    /// Budget for the whole request (e.g. `2s`, `500ms`).
    #[arg(long, default_value = "2s", value_parser = parse_timeout)]
    pub timeout: Duration,
}

impl ProbeArgs {
    /// The probe of `path`: port from the flag or environment, else from a local `--config`
    /// file (so a probe finds the port the daemon was configured with), else 8014.
    pub fn probe(&self, path: &str, config: Option<&Path>) -> Result<Probe, ConfigError> {
        let from_file = match config {
            // A remote or missing config (e.g. `s3://...`) is the daemon's business, not ours.
            Some(file) if file.is_file() => ConfigInput::from_file(file)?.management_port,
            _ => None,
        };
        let port = self
            .port
            .or(from_file)
            .unwrap_or(Settings::default().management_port);
        Ok(Probe::local(port, path, self.timeout))
    }
}

fn parse_bind_arg(text: &str) -> Result<std::net::IpAddr, String> {
    crate::config::parse_bind_address(text).map_err(|e| e.to_string())
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    parse_duration(text)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("`{text}` is not a positive duration such as 2s or 500ms"))
}

/// `--log-format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    /// Human-readable lines.
    Console,
    /// One JSON object per line.
    Json,
}

/// `--fractional-version` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FractionalArg {
    /// flagd's MurmurHash3 bucketing (default).
    V2,
    /// The newer CBOR-based bucketing.
    V3,
}

/// Flags of `flagpole start` (flagd's names, short forms and environment variables).
#[derive(Debug, Default, Args)]
pub struct StartArgs {
    /// Port of the evaluation services.
    #[arg(short = 'p', long, env = "FLAGD_PORT")]
    pub port: Option<u16>,
    /// Port of the management service (health, readiness, metrics).
    #[arg(short = 'm', long, env = "FLAGD_MANAGEMENT_PORT")]
    pub management_port: Option<u16>,
    /// Port of the flag sync service.
    #[arg(short = 'g', long, env = "FLAGD_SYNC_PORT")]
    pub sync_port: Option<u16>,
    /// Port of the OFREP service.
    #[arg(short = 'r', long, env = "FLAGD_OFREP_PORT")]
    pub ofrep_port: Option<u16>,
    /// Sync source URI: file:<path> or s3://<bucket>/<key> (repeatable, comma-separated).
    #[arg(short = 'f', long, env = "FLAGD_URI", value_delimiter = ',')]
    pub uri: Vec<String>,
    /// Sync sources as a JSON array of {"uri","provider",...} objects.
    #[arg(short = 's', long, env = "FLAGD_SOURCES")]
    pub sources: Option<String>,
    /// Static evaluation context `key=value` (repeatable).
    #[arg(short = 'X', long, env = "FLAGD_CONTEXT_VALUE", value_delimiter = ',')]
    pub context_value: Vec<String>,
    /// Context from a request header `Header-Name=contextKey` (repeatable).
    #[arg(
        short = 'H',
        long,
        env = "FLAGD_CONTEXT_FROM_HEADER",
        value_delimiter = ','
    )]
    pub context_from_header: Vec<String>,
    /// Log format.
    #[arg(short = 'z', long, env = "FLAGD_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormatArg>,
    /// Server-side deadline of event and sync streams (e.g. `30s`; `0` = none).
    #[arg(long, env = "FLAGD_STREAM_DEADLINE")]
    pub stream_deadline: Option<String>,
    /// Largest accepted request body in bytes (0 = no limit).
    #[arg(short = 'B', long, env = "FLAGD_MAX_REQUEST_BODY")]
    pub max_request_body: Option<usize>,
    /// Allowed CORS origin (repeatable; none = all origins).
    #[arg(short = 'C', long, env = "FLAGD_CORS_ORIGIN", value_delimiter = ',')]
    pub cors_origin: Vec<String>,
    /// Answer sync GetMetadata with UNIMPLEMENTED.
    #[arg(long, env = "FLAGD_DISABLE_SYNC_METADATA", value_parser = clap::builder::BoolishValueParser::new(), num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub disable_sync_metadata: Option<bool>,
    /// TLS certificate chain (PEM): the evaluation, sync and OFREP ports then serve TLS only;
    /// reloaded when the file changes.
    #[arg(short = 'c', long, env = "FLAGD_SERVER_CERT_PATH")]
    pub server_cert_path: Option<PathBuf>,
    /// TLS private key (PEM) matching --server-cert-path.
    #[arg(short = 'k', long, env = "FLAGD_SERVER_KEY_PATH")]
    pub server_key_path: Option<PathBuf>,
    /// CA bundle (PEM) for mutual TLS: the TLS ports then require a client certificate
    /// signed by it (flagpole addition; needs -c/-k).
    #[arg(long, env = "FLAGD_CLIENT_CA_PATH")]
    pub client_ca_path: Option<PathBuf>,
    /// Unix socket for the evaluation services, replacing the TCP port.
    #[arg(short = 'd', long, env = "FLAGD_SOCKET_PATH")]
    pub socket_path: Option<PathBuf>,
    /// Unix socket for the flag sync service, replacing the TCP sync port.
    #[arg(short = 'e', long, env = "FLAGD_SYNC_SOCKET_PATH")]
    pub sync_socket_path: Option<PathBuf>,
    /// Silence after which event streams send keep_alive (default 20s).
    #[arg(long, env = "FLAGD_KEEP_ALIVE_INTERVAL")]
    pub keep_alive_interval: Option<String>,
    /// Fractional bucketing algorithm.
    #[arg(long, env = "FLAGD_FRACTIONAL_VERSION", value_enum)]
    pub fractional_version: Option<FractionalArg>,
    /// AWS region for S3, SQS and SNS (default: the standard AWS chain).
    #[arg(long, env = "FLAGPOLE_AWS_REGION")]
    pub aws_region: Option<String>,
    /// Endpoint URL for S3, SQS and SNS (default: `AWS_ENDPOINT_URL[_S3|_SQS|_SNS]`, else AWS).
    #[arg(long, env = "FLAGPOLE_AWS_ENDPOINT_URL")]
    pub aws_endpoint_url: Option<String>,
    /// SQS queue to long-poll for S3 change events and inline flag documents.
    #[arg(long, env = "FLAGPOLE_SQS_QUEUE_URL")]
    pub sqs_queue_url: Option<String>,
    /// SNS topic to fan out from: each replica subscribes a queue of its own.
    #[arg(long, env = "FLAGPOLE_SNS_TOPIC_ARN")]
    pub sns_topic_arn: Option<String>,
    /// Name prefix of the per-replica fan-out queues (default `flagpole-`).
    #[arg(long, env = "FLAGPOLE_SQS_QUEUE_PREFIX")]
    pub sqs_queue_prefix: Option<String>,
    /// Dead-letter queue (ARN) for the fan-out queues: a message received 5 times without
    /// being handled moves there instead of returning until it expires.
    #[arg(long, env = "FLAGPOLE_SQS_DEAD_LETTER_ARN")]
    pub sqs_dead_letter_arn: Option<String>,
    /// Inline flag documents over SQS are accepted only for these source names
    /// (comma-separated; `*` for any). Off by default: whoever can publish to the queue
    /// would otherwise control every flag.
    #[arg(long, env = "FLAGPOLE_SQS_INLINE", value_delimiter = ',')]
    pub sqs_inline: Vec<String>,
    /// Remove an inline source after this long without a message for it (default 0: never).
    #[arg(long, env = "FLAGPOLE_SQS_INLINE_EXPIRY")]
    pub sqs_inline_expiry: Option<String>,
    /// Messages per SQS receive, 1 to 10 (default 10).
    #[arg(long, env = "FLAGPOLE_SQS_BATCH_SIZE")]
    pub sqs_batch_size: Option<i32>,
    /// Visibility timeout of received SQS messages (default 30s).
    #[arg(long, env = "FLAGPOLE_SQS_VISIBILITY_TIMEOUT")]
    pub sqs_visibility_timeout: Option<String>,
    /// SQS long-poll wait, at most 20s (default 20s).
    #[arg(long, env = "FLAGPOLE_SQS_WAIT_TIME")]
    pub sqs_wait_time: Option<String>,
    /// S3 poll interval without SQS, for sources without `interval` (default 5s).
    #[arg(long, env = "FLAGPOLE_S3_POLL_INTERVAL")]
    pub s3_poll_interval: Option<String>,
    /// S3 safety-net poll interval while SQS delivers changes (default 300s).
    #[arg(long, env = "FLAGPOLE_S3_SAFETY_POLL_INTERVAL")]
    pub s3_safety_poll_interval: Option<String>,
    /// This replica's name for its fan-out queue and poll jitter (default: ECS task id or
    /// hostname).
    #[arg(long, env = "FLAGPOLE_REPLICA_ID")]
    pub replica_id: Option<String>,
    /// Distinct flag keys that get their own metric series (default 2000; more share `__other__`).
    #[arg(long, env = "FLAGD_METRICS_KEY_LIMIT")]
    pub metrics_key_limit: Option<usize>,
    /// Largest flag document or configuration object a source may deliver, in bytes
    /// (default 16 MiB); larger ones are refused and the last good one stays.
    #[arg(long, env = "FLAGPOLE_MAX_DOCUMENT_SIZE")]
    pub max_document_size: Option<usize>,
    /// Directory keeping each source's last applied document; at start, a source that cannot
    /// be reached is served from it (an S3 outage does not leave a restarted task empty).
    #[arg(long, env = "FLAGPOLE_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Write CloudWatch Embedded Metric Format lines to stdout this often (e.g. `60s`; off by
    /// default): configuration age, last sync, rejected documents, evaluations, open streams.
    #[arg(long, env = "FLAGPOLE_METRICS_EMF_INTERVAL")]
    pub metrics_emf_interval: Option<String>,
    /// CloudWatch namespace of the EMF metrics (default `flagpole`).
    #[arg(long, env = "FLAGPOLE_METRICS_EMF_NAMESPACE")]
    pub metrics_emf_namespace: Option<String>,
    /// Address every TCP port binds (default 0.0.0.0, all interfaces, as flagd).
    #[arg(long, env = "FLAGD_BIND_ADDRESS", value_parser = parse_bind_arg)]
    pub bind_address: Option<std::net::IpAddr>,
    /// HTTP/2 streams one connection may open at once on the evaluation and sync ports
    /// (default 100).
    #[arg(long, env = "FLAGD_MAX_CONCURRENT_STREAMS")]
    pub max_concurrent_streams: Option<u32>,
    /// EventStream + SyncFlags streams open at once across the daemon; more are answered
    /// RESOURCE_EXHAUSTED (default 10000; 0 = no cap).
    #[arg(long, env = "FLAGD_MAX_OPEN_STREAMS")]
    pub max_open_streams: Option<usize>,
    /// Time to keep serving, not ready, after SIGTERM before draining (e.g. `10s`; default 0).
    #[arg(long, env = "FLAGD_DRAIN_DELAY")]
    pub drain_delay: Option<String>,
    /// Longest time draining may take before open connections are closed (default 10s).
    #[arg(long, env = "FLAGD_SHUTDOWN_GRACE")]
    pub shutdown_grace: Option<String>,
    /// flagd's sync-port ping policy; accepted and ignored: flagpole's HTTP/2 server
    /// acknowledges every client ping and never enforces a minimum interval.
    #[arg(long, env = "FLAGD_KEEP_ALIVE_MIN_TIME")]
    pub keep_alive_min_time: Option<String>,
    /// flagd's sync-port ping policy; accepted and ignored (pings are always permitted).
    #[arg(long, env = "FLAGD_KEEP_ALIVE_PERMIT_WITHOUT_STREAM", value_parser = clap::builder::BoolishValueParser::new(), num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub keep_alive_permit_without_stream: Option<bool>,
}

impl StartArgs {
    /// This layer of configuration (command line and environment).
    pub fn input(&self) -> Result<ConfigInput, ConfigError> {
        let non_empty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
        let duration = |text: &Option<String>, key: &'static str| {
            text.as_deref()
                .map(|t| {
                    parse_duration(t).ok_or(ConfigError::Value {
                        key,
                        message: format!("`{t}` is not a duration such as 30s, 1m or 0"),
                    })
                })
                .transpose()
        };
        let pairs = |items: &Vec<String>, key: &'static str| {
            non_empty(items)
                .map(|items| {
                    items
                        .iter()
                        .map(|item| parse_pair(item, key))
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()
        };
        Ok(ConfigInput {
            port: self.port,
            management_port: self.management_port,
            sync_port: self.sync_port,
            ofrep_port: self.ofrep_port,
            uris: non_empty(&self.uri)
                .map(|uris| uris.iter().map(|u| parse_uri(u)).collect())
                .transpose()?,
            sources: self
                .sources
                .as_deref()
                .map(parse_sources_json)
                .transpose()?,
            context_values: pairs(&self.context_value, "context-value")?,
            context_from_headers: pairs(&self.context_from_header, "context-from-header")?,
            stream_deadline: duration(&self.stream_deadline, "stream-deadline")?,
            max_request_body: self.max_request_body,
            cors_origins: non_empty(&self.cors_origin),
            disable_sync_metadata: self.disable_sync_metadata,
            server_cert_path: self.server_cert_path.clone(),
            server_key_path: self.server_key_path.clone(),
            client_ca_path: self
                .client_ca_path
                .clone()
                .filter(|p| !p.as_os_str().is_empty()),
            socket_path: self
                .socket_path
                .clone()
                .filter(|p| !p.as_os_str().is_empty()),
            sync_socket_path: self
                .sync_socket_path
                .clone()
                .filter(|p| !p.as_os_str().is_empty()),
            keep_alive_interval: duration(&self.keep_alive_interval, "keep-alive-interval")?,
            fractional: self.fractional_version.map(|f| match f {
                FractionalArg::V2 => FractionalVersion::V2,
                FractionalArg::V3 => FractionalVersion::V3,
            }),
            log_format: self.log_format.map(|f| match f {
                LogFormatArg::Console => LogFormat::Console,
                LogFormatArg::Json => LogFormat::Json,
            }),
            debug: None,
            aws: {
                let aws = AwsInput {
                    region: self.aws_region.clone(),
                    endpoint_url: self.aws_endpoint_url.clone(),
                    sqs_queue_url: self.sqs_queue_url.clone(),
                    sns_topic_arn: self.sns_topic_arn.clone(),
                    sqs_queue_prefix: self.sqs_queue_prefix.clone(),
                    sqs_dead_letter_arn: self.sqs_dead_letter_arn.clone(),
                    sqs_inline: Some(self.sqs_inline.clone()).filter(|v| !v.is_empty()),
                    sqs_inline_expiry: duration(&self.sqs_inline_expiry, "sqs-inline-expiry")?,
                    sqs_batch_size: self.sqs_batch_size,
                    sqs_visibility_timeout: duration(
                        &self.sqs_visibility_timeout,
                        "sqs-visibility-timeout",
                    )?,
                    sqs_wait_time: duration(&self.sqs_wait_time, "sqs-wait-time")?,
                    s3_poll_interval: duration(&self.s3_poll_interval, "s3-poll-interval")?,
                    s3_safety_poll_interval: duration(
                        &self.s3_safety_poll_interval,
                        "s3-safety-poll-interval",
                    )?,
                    replica_id: self.replica_id.clone(),
                };
                aws.check()?;
                aws
            },
            metrics_key_limit: self.metrics_key_limit,
            max_document_size: self.max_document_size,
            cache_dir: self.cache_dir.clone(),
            metrics_emf_interval: duration(&self.metrics_emf_interval, "metrics-emf-interval")?,
            metrics_emf_namespace: self.metrics_emf_namespace.clone(),
            bind_address: self.bind_address,
            max_concurrent_streams: self.max_concurrent_streams,
            max_open_streams: self.max_open_streams,
            drain_delay: duration(&self.drain_delay, "drain-delay")?,
            shutdown_grace: duration(&self.shutdown_grace, "shutdown-grace")?,
        })
        .and_then(|input| {
            // Validated like flagd so typos still fail, then ignored.
            duration(&self.keep_alive_min_time, "keep-alive-min-time")?;
            Ok(input)
        })
    }

    /// The daemon settings: these flags over the `--config` file over the defaults.
    ///
    /// A `--config s3://...` object is not read here: the sync layer fetches it (retrying
    /// until it is readable) and follows its `sources` at run time.
    pub fn settings(
        &self,
        config: Option<&Path>,
        debug: Option<bool>,
    ) -> Result<Settings, ConfigError> {
        let object = config
            .and_then(Path::to_str)
            .filter(|c| c.starts_with("s3://"))
            .map(str::to_owned);
        let file = match config {
            Some(_) if object.is_some() => ConfigInput::default(),
            Some(path) => ConfigInput::from_file(path)?,
            None => ConfigInput::default(),
        };
        let mut cli = self.input()?;
        cli.debug = debug;
        let mut settings = cli.over(file).into_settings();
        settings.aws.config_object = object;
        Ok(settings)
    }
}

/// The version line `flagpole version` prints.
pub fn version_line() -> String {
    format!("flagpole {}", env!("CARGO_PKG_VERSION"))
}

/// Validates each flag file, writing every error and warning (naming file and flag) to `out`;
/// `true` when every file is valid (warnings allowed).
pub fn validate(files: &[PathBuf], out: &mut impl Write) -> std::io::Result<bool> {
    let mut all_valid = true;
    for file in files {
        let name = file.display();
        let Some(format) = Format::from_path(file) else {
            writeln!(
                out,
                "{name}: error: unsupported file format (use .json, .yaml or .yml)"
            )?;
            all_valid = false;
            continue;
        };
        let bytes = match std::fs::read(file) {
            Ok(bytes) => bytes,
            Err(error) => {
                writeln!(out, "{name}: error: cannot read: {error}")?;
                all_valid = false;
                continue;
            }
        };
        match parse_document(&bytes, format) {
            Ok(document) => {
                for warning in &document.warnings {
                    match &warning.flag {
                        Some(flag) => {
                            writeln!(out, "{name}: warning: flag `{flag}`: {}", warning.message)?
                        }
                        None => writeln!(out, "{name}: warning: {}", warning.message)?,
                    }
                }
                writeln!(out, "{name}: ok ({} flags)", document.flags.len())?;
            }
            Err(error) => {
                writeln!(out, "{name}: error: {error}")?;
                all_valid = false;
            }
        }
    }
    Ok(all_valid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(args: &[&str]) -> Result<Settings, String> {
        let cli = Cli::try_parse_from(["flagpole", "start"].iter().chain(args))
            .map_err(|e| e.to_string())?;
        match cli.command {
            Command::Start(start) => start.settings(None, None).map_err(|e| e.to_string()),
            _ => unreachable!(),
        }
    }

    #[test]
    fn metrics_and_drain_flags() {
        let s = start(&["--metrics-key-limit", "10", "--drain-delay", "5s"]).unwrap();
        assert_eq!(s.metrics_key_limit, 10);
        assert_eq!(s.drain_delay, std::time::Duration::from_secs(5));
    }

    #[test]
    fn limit_flags() {
        let s = start(&[
            "--bind-address",
            "::1",
            "--max-concurrent-streams",
            "7",
            "--max-open-streams",
            "9",
        ])
        .unwrap();
        assert_eq!(s.bind_address.to_string(), "::1");
        assert_eq!(s.max_concurrent_streams, 7);
        assert_eq!(s.max_open_streams, 9);
        assert!(start(&["--bind-address", "everywhere"]).is_err());
    }

    #[test]
    fn socket_path_flags() {
        let s = start(&[
            "-d",
            "/tmp/eval.sock",
            "--sync-socket-path",
            "/tmp/sync.sock",
        ])
        .unwrap();
        assert_eq!(s.socket_path.as_deref(), Some(Path::new("/tmp/eval.sock")));
        assert_eq!(
            s.sync_socket_path.as_deref(),
            Some(Path::new("/tmp/sync.sock"))
        );
        let s = start(&["-e", "/tmp/s.sock", "--client-ca-path", "/tmp/ca.pem"]).unwrap();
        assert_eq!(s.client_ca_path.as_deref(), Some(Path::new("/tmp/ca.pem")));
        assert_eq!(s.socket_path, None);
        assert_eq!(
            s.sync_socket_path.as_deref(),
            Some(Path::new("/tmp/s.sock"))
        );
    }

    #[test]
    fn flagd_sync_keepalive_flags_are_accepted_and_checked() {
        assert!(start(&[
            "--keep-alive-min-time",
            "30s",
            "--keep-alive-permit-without-stream=false"
        ])
        .is_ok());
        assert!(start(&["--keep-alive-min-time", "often"]).is_err());
    }

    #[test]
    fn an_s3_config_is_followed_not_read() {
        let cli = Cli::try_parse_from([
            "flagpole",
            "start",
            "--config",
            "s3://bucket/flagpole.yaml",
            "--sns-topic-arn",
            "arn:aws:sns:us-east-1:1:flags",
            "--sqs-wait-time",
            "5s",
        ])
        .unwrap();
        let Command::Start(args) = cli.command else {
            unreachable!()
        };
        let settings = args.settings(cli.config.as_deref(), None).unwrap();
        assert_eq!(
            settings.aws.config_object.as_deref(),
            Some("s3://bucket/flagpole.yaml")
        );
        assert_eq!(
            settings.aws.sqs_wait_time,
            std::time::Duration::from_secs(5)
        );
        assert!(settings.aws.notifications());
        assert!(start(&["--sqs-batch-size", "0"]).is_err());
    }
}
