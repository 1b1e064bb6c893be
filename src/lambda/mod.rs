//! AWS Lambda (cargo feature `lambda`, docs/lambda.md): the daemon as an external Lambda
//! extension serving the flagd ports on localhost (`flagpole lambda-extension`, chosen by
//! itself when started from `/opt/extensions/`), and as a Lambda function answering OFREP
//! and Connect from Function URL and API Gateway events (`flagpole lambda`, chosen by itself
//! when started as `bootstrap`).
//!
//! Lambda freezes the sandbox between invocations, so no background poll can be relied
//! upon: both shapes refresh their S3 sources on an invocation once the configuration is
//! older than `--max-age`, with one conditional GET each, bounded by `--refresh-timeout`.

mod extension;
mod freshness;
mod function;

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use clap::Args;

use crate::cli::StartArgs;
use crate::config::{self, ConfigError, Settings};

pub use extension::run_extension;
pub use freshness::{wait_ready, Freshness, Refresh, RefreshConfig};
pub use function::{run_function, FunctionApp};

/// Flags of `flagpole lambda-extension` and `flagpole lambda`: every `start` flag, plus the
/// refresh rule.
#[derive(Debug, Args)]
pub struct LambdaArgs {
    /// The daemon's flags (sources, ports, limits) as for `flagpole start`.
    #[command(flatten)]
    pub start: StartArgs,
    /// Refresh the S3 sources on an invocation once the configuration is older than this.
    #[arg(long, env = "FLAGD_LAMBDA_MAX_AGE", default_value = "5s", value_parser = parse_age)]
    pub max_age: Duration,
    /// Longest an invocation waits for that refresh before the cached configuration is served.
    #[arg(long, env = "FLAGD_LAMBDA_REFRESH_TIMEOUT", default_value = "1s", value_parser = parse_age)]
    pub refresh_timeout: Duration,
}

impl LambdaArgs {
    /// The daemon settings (as `flagpole start` builds them).
    pub fn settings(
        &self,
        config: Option<&Path>,
        debug: Option<bool>,
    ) -> Result<Settings, ConfigError> {
        self.start.settings(config, debug)
    }

    /// The refresh rule.
    pub fn refresh(&self) -> RefreshConfig {
        RefreshConfig {
            max_age: self.max_age,
            timeout: self.refresh_timeout,
        }
    }
}

fn parse_age(text: &str) -> Result<Duration, String> {
    config::parse_duration(text)
        .ok_or_else(|| format!("`{text}` is not a duration such as 5s or 500ms"))
}

/// Why a Lambda shape stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum LambdaError {
    /// The daemon (listeners, TLS, sources) failed.
    #[error(transparent)]
    Daemon(#[from] crate::daemon::DaemonError),
    /// The sync layer could not start.
    #[error(transparent)]
    Sync(#[from] crate::sync::SyncError),
    /// A port could not be bound or the runtime could not start.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The Lambda Runtime or Extensions API failed.
    #[error("Lambda API: {0}")]
    Api(String),
}

/// The command line, with the subcommand Lambda cannot pass filled in: Lambda starts an
/// extension as `/opt/extensions/<name>` and a custom runtime as `bootstrap`, both without
/// arguments (options then come from `FLAGD_*` environment variables).
pub fn command_line(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut args: Vec<OsString> = args.into_iter().collect();
    if args.len() == 1 {
        let exe = Path::new(&args[0]).to_path_buf();
        if exe.starts_with("/opt/extensions") {
            args.push("lambda-extension".into());
        } else if exe.file_name().is_some_and(|name| name == "bootstrap") {
            args.push("lambda".into());
        }
    }
    args
}

/// The settings Lambda needs whatever the shape: no background S3 polling (a frozen
/// sandbox runs no timer; the invocation refresh replaces it).
fn without_polling(settings: &mut Settings) {
    settings.aws.s3_poll_interval = config::MAX_DURATION;
    for source in &mut settings.sources {
        if source.provider == "s3" {
            source.interval = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(args: &[&str]) -> Vec<String> {
        command_line(args.iter().map(OsString::from))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn lambda_start_paths_pick_the_subcommand() {
        assert_eq!(
            line(&["/opt/extensions/flagpole"]),
            ["/opt/extensions/flagpole", "lambda-extension"]
        );
        assert_eq!(
            line(&["/var/task/bootstrap"]),
            ["/var/task/bootstrap", "lambda"]
        );
        assert_eq!(line(&["flagpole"]), ["flagpole"]);
        assert_eq!(
            line(&["/opt/extensions/flagpole", "version"]),
            ["/opt/extensions/flagpole", "version"]
        );
    }

    #[test]
    fn polling_is_off_in_lambda() {
        let mut settings = Settings {
            sources: vec![config::SourceConfig {
                uri: "s3://b/k.json".into(),
                provider: crate::sync::Provider::S3,
                interval: Some(Duration::from_secs(1)),
                remote: Default::default(),
            }],
            ..Settings::default()
        };
        without_polling(&mut settings);
        assert_eq!(settings.sources[0].interval, None);
        assert_eq!(settings.aws.s3_poll_interval, config::MAX_DURATION);
    }
}
