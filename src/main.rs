//! The `flagpole` binary: parses the command line, sets up logging and runs the daemon.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use flagpole::cli::{self, Cli, Command};
use flagpole::config::LogFormat;
use flagpole::probe::{self, Probe};
use tracing_subscriber::filter::{EnvFilter, LevelFilter};

/// musl's allocator serialises tonic's many small allocations; mimalloc restores glibc-level
/// throughput in the static container build.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    #[cfg(feature = "lambda")]
    let cli = Cli::parse_from(flagpole::lambda::command_line(std::env::args_os()));
    #[cfg(not(feature = "lambda"))]
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("flagpole: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Version => {
            println!("{}", cli::version_line());
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { files } => {
            init_logging(LogFormat::Console, cli.debug.unwrap_or(false));
            let valid = cli::validate(&files, &mut std::io::stdout().lock())?;
            Ok(if valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Healthcheck(args) => probe(args.probe(probe::HEALTHZ, cli.config.as_deref())?),
        Command::Ready(args) => probe(args.probe(probe::READYZ, cli.config.as_deref())?),
        Command::Start(args) => {
            let settings = args.settings(cli.config.as_deref(), cli.debug)?;
            init_logging(settings.log_format, settings.debug);
            tracing::info!(version = env!("CARGO_PKG_VERSION"), "starting flagpole");
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(async {
                let listeners = flagpole::daemon::Listeners::bind(&settings)
                    .await
                    .context("cannot bind the listening ports")?;
                flagpole::daemon::run(settings, listeners, shutdown_signal()).await?;
                tracing::info!("flagpole stopped");
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "lambda")]
        Command::LambdaExtension(args) => {
            let settings = args.settings(cli.config.as_deref(), cli.debug)?;
            init_logging(settings.log_format, settings.debug);
            runtime()?.block_on(flagpole::lambda::run_extension(settings, args.refresh()))?;
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "lambda")]
        Command::Lambda(args) => {
            let settings = args.settings(cli.config.as_deref(), cli.debug)?;
            init_logging(settings.log_format, settings.debug);
            runtime()?.block_on(flagpole::lambda::run_function(settings, args.refresh()))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(feature = "lambda")]
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Exit 0 when the probed path answers 200, 1 otherwise; one line either way, for the
/// container runtime's health log.
fn probe(probe: Probe) -> anyhow::Result<ExitCode> {
    match probe.status() {
        Ok(200) => {
            println!("{}: 200", probe.url());
            Ok(ExitCode::SUCCESS)
        }
        Ok(status) => {
            eprintln!("{}: {status}", probe.url());
            Ok(ExitCode::FAILURE)
        }
        Err(error) => {
            eprintln!("{}: {error}", probe.url());
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Logs to stderr: human-readable or one JSON object per line; `RUST_LOG` refines the level.
fn init_logging(format: LogFormat, debug: bool) {
    let level = if debug {
        LevelFilter::DEBUG
    } else {
        LevelFilter::INFO
    };
    let filter = EnvFilter::builder()
        .with_default_directive(level.into())
        .from_env_lossy();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Console => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Completes on the first SIGINT or SIGTERM; a second one ends the process at once.
async fn shutdown_signal() {
    let name = next_signal().await;
    // Listen for the second signal before shutdown begins (readiness drops as soon as this
    // returns), so a signal sent right after readiness drops is not missed.
    let second = next_signal();
    tracing::info!("received {name}, shutting down (send it again to exit at once)");
    tokio::spawn(async move {
        let name = second.await;
        tracing::warn!("received {name} while draining: exiting now");
        std::process::exit(130);
    });
}

/// Starts listening for SIGINT and SIGTERM at once; the future completes with the name of
/// the first one that arrives after this call.
#[cfg(unix)]
fn next_signal() -> impl std::future::Future<Output = &'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).ok();
    let mut terminate = signal(SignalKind::terminate()).ok();
    async move {
        let interrupt = async {
            match interrupt.as_mut() {
                Some(signal) => signal.recv().await,
                None => std::future::pending().await,
            }
        };
        let terminate = async {
            match terminate.as_mut() {
                Some(signal) => signal.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = interrupt => "SIGINT",
            _ = terminate => "SIGTERM",
        }
    }
}

/// Waits for Ctrl-C (no SIGTERM outside unix).
#[cfg(not(unix))]
fn next_signal() -> impl std::future::Future<Output = &'static str> {
    async {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}
