//! Sync sources: everything that feeds flag documents into the [`Store`](crate::store::Store).
//!
//! Each provider implements [`Source`]; a supervisor runs every configured source, parses
//! each payload with [`parse_document`](crate::flags::parse_document), applies good ones to
//! the store, keeps the last good configuration when a payload is bad, and tracks readiness.
//!
//! Sources can also come and go at run time: the S3 configuration object (`--config
//! s3://...`) adds and removes the sources it lists, and SQS inline messages create sources
//! of their own. The [`SourceDirectory`] is the shared, lockable list of running sources the
//! SQS consumer talks to.

mod aws;
mod build;
mod cache;
mod config_object;
mod directory;
mod embedded;
mod file;
mod grpc;
mod http;
pub mod limit;
mod priority;
mod provider;
mod s3;
mod settings;
mod sns;
mod source;
mod sqs;
mod supervisor;
pub mod uri;

pub use aws::{Aws, Backoff, S3Endpoint};
pub use embedded::{EmbeddedSource, DEFAULT_FLAGS, EMBEDDED_URI};
pub use file::{FileSource, DEFAULT_POLL_INTERVAL};
pub use provider::{names, Provider, ProviderError, RemoteOptions, SourceConfig};
pub use s3::{S3Location, S3Source, S3UriError};
pub use settings::{AwsOptionError, AwsOptions, AwsSettings, SyncConfig};
pub use sns::FANOUT_MAX_RECEIVES;
pub use source::{
    Delivery, Payload, PayloadSink, Refresh, RefreshResult, Refreshes, Shutdown, Source,
    SourceContext, SourceFuture, SourceStats,
};
pub use sqs::{parse_message, InlineDocument, Message, ObjectEvent, INLINE_PROVIDER};
pub use uri::{parse_sources, parse_sources_json, parse_uri, SourceConfigError};

pub use build::{build_source, NamedSource};
pub use directory::SourceDirectory;
pub use supervisor::{StatsReader, Supervisor};

/// Why the sync layer could not start.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// A source that cannot be built as configured.
    #[error("invalid source `{uri}`: {error}")]
    InvalidSource {
        /// The source URI (or the cache directory).
        uri: String,
        /// What is wrong.
        #[source]
        error: SourceError,
    },
}

/// Why a source cannot be built or used.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A file source whose extension names no flag format.
    #[error("unsupported file format: use a .json, .yaml or .yml file")]
    FileFormat,
    /// A malformed `s3://` URI or an unknown option in it.
    #[error(transparent)]
    S3Uri(#[from] S3UriError),
    /// The `--cache-dir` cannot be created or written.
    #[error("cannot use the cache directory: {0}")]
    CacheDir(#[source] std::io::Error),
    /// An `http`/`grpc` source whose options cannot be used (bad URL, header, CA file).
    #[error("{0}")]
    Remote(String),
    /// An inline document named a configured (not inline) source.
    #[error("`{uri}` is a configured {provider} source, not an inline one")]
    NotInline {
        /// The source name the message used.
        uri: String,
        /// The configured source's provider.
        provider: &'static str,
    },
}

/// An error and its causes on one line, for the logs and `last_error` of the network sources
/// (hyper and tonic hide the useful part, such as "connection refused", in the causes).
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
