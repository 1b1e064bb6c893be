//! The command line: `flagpole start` with flagd's flags and `FLAGD_*` environment variables,
//! `flagpole validate FILE...`, `flagpole version` and the container probes
//! `flagpole healthcheck` / `flagpole ready`.
//!
//! Precedence, as in flagd: command-line flag, then environment variable, then `--config` file,
//! then the default.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::{parse_duration, ConfigError, ConfigInput, Layer, Settings};
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

fn parse_timeout(text: &str) -> Result<Duration, String> {
    parse_duration(text)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("`{text}` is not a positive duration such as 2s or 500ms"))
}

/// Flags of `flagpole start`: every option of [`ConfigInput`] (flagd's names, short forms and
/// environment variables).
#[derive(Debug, Default, Args)]
pub struct StartArgs {
    /// The options, as given on the command line and in the environment.
    #[command(flatten)]
    pub options: ConfigInput,
}

impl StartArgs {
    /// The daemon settings: these flags (and their environment variables) over the
    /// `--config` file over the defaults.
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
        let mut cli = self.options.clone();
        cli.aws.check()?;
        cli.debug = debug;
        cli.auth_tokens = crate::config::AuthTokens::from_env();
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
