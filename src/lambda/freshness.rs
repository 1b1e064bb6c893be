//! The refresh rule both Lambda shapes apply on an invocation: when the configuration is
//! older than `max_age`, one conditional GET per S3 source (304 when nothing changed), waited
//! for at most `timeout`; the cached configuration is served when S3 is slow or down.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures_util::future::join_all;
use tokio::sync::watch;

use crate::sync::{RefreshResult, S3Location, SourceDirectory, StatsReader};

/// When to refresh and how long to wait for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshConfig {
    /// A configuration older than this is refreshed on the next invocation.
    pub max_age: Duration,
    /// Longest an invocation waits for the refresh.
    pub timeout: Duration,
}

/// What an invocation's freshness check did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refresh {
    /// Younger than `max_age` (or no S3 source): nothing fetched.
    Fresh,
    /// Every S3 source was read (changed or 304).
    Refreshed,
    /// A source could not be read; the cached configuration is served.
    Failed(String),
    /// The refresh outlasted `timeout`; the cached configuration is served.
    TimedOut,
}

/// Tracks the configuration's age and refreshes the S3 sources through the supervisor.
#[derive(Debug)]
pub struct Freshness {
    directory: Arc<SourceDirectory>,
    stats: StatsReader,
    config: RefreshConfig,
    /// When every S3 source was last read successfully (wall clock: a frozen sandbox's
    /// monotonic clock is not guaranteed to advance).
    loaded: Mutex<Option<SystemTime>>,
}

impl Freshness {
    /// A tracker over the running sources; the configuration counts as loaded now.
    pub fn new(directory: Arc<SourceDirectory>, stats: StatsReader, config: RefreshConfig) -> Self {
        Freshness {
            directory,
            stats,
            config,
            loaded: Mutex::new(Some(SystemTime::now())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<SystemTime>> {
        self.loaded.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Refreshes the S3 sources when the configuration is older than `max_age`.
    pub async fn ensure_fresh(&self) -> Refresh {
        let now = SystemTime::now();
        let loaded = *self.lock();
        // A clock that went backwards counts as stale.
        let age = loaded.and_then(|at| now.duration_since(at).ok());
        if age.is_some_and(|age| age < self.config.max_age) {
            return Refresh::Fresh;
        }
        // The running S3 sources, including those a configuration object added.
        let objects: Vec<(String, String)> = self
            .stats
            .stats()
            .into_iter()
            .filter(|s| s.provider == "s3")
            .filter_map(|s| S3Location::parse(&s.uri).ok())
            .map(|l| (l.bucket, l.key))
            .collect();
        let acks: Vec<_> = objects
            .iter()
            .flat_map(|(bucket, key)| self.directory.refresh_object(bucket, key))
            .collect();
        if acks.is_empty() {
            *self.lock() = Some(now);
            return Refresh::Fresh;
        }
        let outcome = match tokio::time::timeout(self.config.timeout, join_all(acks)).await {
            Err(_) => Refresh::TimedOut,
            Ok(results) => {
                let failure = results.into_iter().find_map(|result| match result {
                    Ok(RefreshResult::Done) => None,
                    Ok(RefreshResult::Failed(reason)) => Some(reason),
                    Err(_) => Some("the source stopped".to_owned()),
                });
                match failure {
                    None => Refresh::Refreshed,
                    Some(reason) => Refresh::Failed(reason),
                }
            }
        };
        match &outcome {
            Refresh::Refreshed => *self.lock() = Some(now),
            Refresh::TimedOut => {
                tracing::warn!(
                    timeout = ?self.config.timeout,
                    stale_served = true,
                    "S3 refresh outlasted --refresh-timeout; serving the cached configuration"
                );
                stale_metric();
            }
            Refresh::Failed(reason) => {
                tracing::warn!(
                    %reason,
                    stale_served = true,
                    "S3 refresh failed; serving the cached configuration"
                );
                stale_metric();
            }
            Refresh::Fresh => {}
        }
        outcome
    }
}

/// Waits until every source has a configuration. Polling is off in Lambda, so an S3 object
/// that is missing or unreadable at first is asked for again here, backing off to 1 s.
pub async fn wait_ready(
    directory: &SourceDirectory,
    stats: &StatsReader,
    ready: &mut watch::Receiver<bool>,
) {
    let mut delay = Duration::from_millis(100);
    loop {
        tokio::select! {
            _ = ready.wait_for(|ready| *ready) => return,
            () = tokio::time::sleep(delay) => {}
        }
        for source in stats
            .stats()
            .into_iter()
            // Only sources that have failed: a poke while a first fetch is still in flight
            // would queue a second GET behind it.
            .filter(|s| s.provider == "s3" && !s.ready && s.errors > 0)
        {
            if let Ok(location) = S3Location::parse(&source.uri) {
                // Fire and forget: readiness is what is waited for.
                drop(directory.refresh_object(&location.bucket, &location.key));
            }
        }
        delay = (delay * 2).min(Duration::from_secs(1));
    }
}

/// One CloudWatch embedded-metric line on stdout (Lambda ships stdout to CloudWatch Logs,
/// which turns it into the `flagpole/LambdaStaleServed` metric).
fn stale_metric() {
    let millis = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let line = serde_json::json!({
        "_aws": {
            "Timestamp": millis as u64,
            "CloudWatchMetrics": [{
                "Namespace": "flagpole",
                "Dimensions": [[]],
                "Metrics": [{"Name": "LambdaStaleServed", "Unit": "Count"}],
            }],
        },
        "LambdaStaleServed": 1,
    });
    println!("{line}");
}
