//! Runtime settings of the daemon, resolved from the CLI, environment and `--config` file.

use std::time::Duration;

use crate::eval::{Context, FractionalVersion};

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
        }
    }
}
