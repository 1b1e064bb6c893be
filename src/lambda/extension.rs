//! Extension mode: registers with the Extensions API for INVOKE and SHUTDOWN, serves the
//! normal flagd ports on localhost, refreshes on INVOKE, drains on SHUTDOWN.
//!
//! Lifecycle: register (Lambda fails an init without it), bind and start the daemon, wait
//! until every source has a configuration (or a cached copy), only then ask for the first
//! event, which is what ends the extension's init: the function's first invocation never
//! sees FLAG_NOT_FOUND.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lambda_extension::{service_fn, Extension, LambdaEvent, NextEvent};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::{wait_ready, without_polling, Freshness, LambdaError, RefreshConfig};
use crate::config::Settings;
use crate::daemon::{self, Listeners};

/// Lambda gives external extensions two seconds for SHUTDOWN; the drain keeps a margin.
const SHUTDOWN_BUDGET: Duration = Duration::from_millis(1500);

/// What the event processor shares with the main task.
#[derive(Debug)]
struct Shared {
    freshness: OnceLock<Freshness>,
    shutdown: Mutex<Option<oneshot::Sender<()>>>,
    stopped: CancellationToken,
}

impl Shared {
    /// Whether SHUTDOWN has arrived (its sender has been taken).
    fn shutting_down(&self) -> bool {
        self.shutdown
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
    }

    async fn handle(&self, event: NextEvent) {
        match event {
            NextEvent::Invoke(invoke) => {
                if let Some(freshness) = self.freshness.get() {
                    let started = Instant::now();
                    let outcome = freshness.ensure_fresh().await;
                    tracing::debug!(
                        request_id = %invoke.request_id,
                        ?outcome,
                        took = ?started.elapsed(),
                        "INVOKE"
                    );
                }
            }
            NextEvent::Shutdown(shutdown) => {
                tracing::info!(reason = %shutdown.shutdown_reason, "SHUTDOWN: draining");
                let sender = self
                    .shutdown
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
                if let Some(sender) = sender {
                    let _ = sender.send(());
                }
                let stopped = self.stopped.clone();
                let budget = until_deadline(shutdown.deadline_ms).min(SHUTDOWN_BUDGET * 2);
                let _ = tokio::time::timeout(budget, stopped.cancelled()).await;
            }
        }
    }
}

/// Time left until `deadline_ms` (milliseconds since the epoch), less a small margin.
fn until_deadline(deadline_ms: u64) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Duration::from_millis(deadline_ms)
        .saturating_sub(now)
        .saturating_sub(Duration::from_millis(100))
}

/// The daemon's settings as an extension: localhost unless an address was chosen, no drain
/// delay (nothing routes traffic away from a sandbox), the drain within Lambda's budget, no
/// background polling.
fn for_extension(mut settings: Settings) -> Settings {
    if settings.bind_address.is_unspecified() {
        settings.bind_address = IpAddr::V4(Ipv4Addr::LOCALHOST);
    }
    settings.drain_delay = Duration::ZERO;
    settings.shutdown_grace = settings.shutdown_grace.min(SHUTDOWN_BUDGET);
    without_polling(&mut settings);
    settings
}

/// Runs the extension until SHUTDOWN has drained the daemon (Ok) or something failed.
pub async fn run_extension(settings: Settings, refresh: RefreshConfig) -> Result<(), LambdaError> {
    let began = Instant::now();
    let settings = for_extension(settings);
    let name = extension_name();
    let (shutdown_tx, shutdown_rx) = oneshot::channel();
    let stopped = CancellationToken::new();
    let shared = Arc::new(Shared {
        freshness: OnceLock::new(),
        shutdown: Mutex::new(Some(shutdown_tx)),
        stopped: stopped.clone(),
    });
    let processor = {
        let shared = shared.clone();
        service_fn(move |event: LambdaEvent| {
            let shared = shared.clone();
            async move {
                shared.handle(event.next).await;
                Ok::<(), lambda_extension::Error>(())
            }
        })
    };
    let registered = Extension::new()
        .with_extension_name(&name)
        .with_events(&["INVOKE", "SHUTDOWN"])
        .with_events_processor(processor)
        .register()
        .await
        .map_err(|e| LambdaError::Api(format!("cannot register the extension: {e}")))?;
    tracing::info!(extension = %name, "registered with the Extensions API");

    let listeners = Listeners::bind(&settings).await?;
    let (supervisor_tx, supervisor_rx) = oneshot::channel();
    let mut daemon = tokio::spawn(async move {
        let shutdown = async {
            let _ = shutdown_rx.await;
        };
        let result = daemon::run_with(settings, listeners, shutdown, move |supervisor| {
            let _ = supervisor_tx.send((
                supervisor.directory(),
                supervisor.stats_reader(),
                supervisor.ready(),
            ));
        })
        .await;
        stopped.cancel();
        result
    });
    let Ok((directory, stats, mut ready)) = supervisor_rx.await else {
        return Err(stopped_early(daemon.await));
    };
    // Init ends with the first `next` call: not before the configuration is in.
    tokio::select! {
        () = wait_ready(&directory, &stats, &mut ready) => {}
        result = &mut daemon => return Err(stopped_early(result)),
    }
    let _ = shared
        .freshness
        .set(Freshness::new(directory, stats, refresh));
    tracing::info!(took = ?began.elapsed(), "configuration loaded; extension ready");

    tokio::select! {
        biased;
        result = &mut daemon => finished(result),
        result = registered.run() => {
            if shared.shutting_down() {
                // After SHUTDOWN the event loop asks for the next event of an API that is
                // going away, and that call may fail before the drained daemon task has
                // returned: the drain, not that call, decides the exit status.
                return match tokio::time::timeout(SHUTDOWN_BUDGET, daemon).await {
                    Ok(result) => finished(result),
                    Err(_) => Err(LambdaError::Api("the drain outlasted the SHUTDOWN budget".to_owned())),
                };
            }
            Err(LambdaError::Api(match result {
                Ok(()) => "the Extensions API closed the event loop".to_owned(),
                Err(error) => error.to_string(),
            }))
        }
    }
}

/// The exit of the daemon task once it has ended.
fn finished(
    result: Result<Result<(), daemon::DaemonError>, tokio::task::JoinError>,
) -> Result<(), LambdaError> {
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error.into()),
        Err(error) => Err(LambdaError::Api(format!("daemon task: {error}"))),
    }
}

fn stopped_early(
    result: Result<Result<(), daemon::DaemonError>, tokio::task::JoinError>,
) -> LambdaError {
    match finished(result) {
        Ok(()) => LambdaError::Api("the daemon stopped before it was ready".to_owned()),
        Err(error) => error,
    }
}

/// Lambda requires an extension to register under its file name in `/opt/extensions`.
fn extension_name() -> String {
    std::env::args_os()
        .next()
        .as_deref()
        .map(std::path::Path::new)
        .and_then(std::path::Path::file_name)
        .and_then(|name| name.to_str())
        .unwrap_or("flagpole")
        .to_owned()
}
