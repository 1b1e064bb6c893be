//! Builders: a configured source becomes a running provider.

use super::directory::SourceEnv;
use super::file::FileSource;
use super::grpc::GrpcSource;
use super::http::HttpSource;
use super::provider::{Provider, SourceConfig};
use super::s3::S3Source;
use super::source::Source;
use super::{SourceError, SyncError};

/// A provider together with the name it is stored and selected under.
pub struct NamedSource {
    /// The stored source URI (what `source=` selectors match).
    pub uri: String,
    /// The provider name, for stats and logs.
    pub provider: &'static str,
    /// The provider itself.
    pub source: Box<dyn Source>,
}

impl std::fmt::Debug for NamedSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamedSource")
            .field("uri", &self.uri)
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

/// Builds the provider for one configured source (S3 with the default AWS options).
pub fn build_source(config: &SourceConfig) -> Result<NamedSource, SyncError> {
    build_source_in(config, &SourceEnv::default())
}

/// Builds the provider for one configured source in `env`.
pub(super) fn build_source_in(
    config: &SourceConfig,
    env: &SourceEnv,
) -> Result<NamedSource, SyncError> {
    let invalid = |error: SourceError| SyncError::InvalidSource {
        uri: config.uri.clone(),
        error,
    };
    match config.provider {
        Provider::File | Provider::Fsnotify | Provider::Fileinfo => {
            let path = config.uri.strip_prefix("file:").unwrap_or(&config.uri);
            let source = FileSource::new(path, config.interval)
                .ok_or_else(|| invalid(SourceError::FileFormat))?
                .max_size(env.max_document_size);
            Ok(NamedSource {
                uri: path.to_owned(),
                provider: config.provider.as_str(),
                source: Box::new(source),
            })
        }
        Provider::S3 => {
            let interval = config
                .interval
                .filter(|d| !d.is_zero())
                .unwrap_or(env.s3_interval);
            let source = S3Source::new(&config.uri, env.aws.clone(), interval)
                .map_err(|e| invalid(e.into()))?
                .max_size(env.max_document_size);
            Ok(NamedSource {
                uri: config.uri.clone(),
                provider: config.provider.as_str(),
                source: Box::new(source),
            })
        }
        Provider::Http => {
            let source = HttpSource::new(&config.uri, &config.remote, config.interval)
                .map_err(invalid)?
                .max_size(env.max_document_size)
                .replica_from(env.aws.clone());
            Ok(NamedSource {
                uri: config.uri.clone(),
                provider: config.provider.as_str(),
                source: Box::new(source),
            })
        }
        Provider::Grpc => {
            let source = GrpcSource::new(&config.uri, &config.remote)
                .map_err(invalid)?
                .max_size(env.max_document_size);
            Ok(NamedSource {
                uri: config.uri.clone(),
                provider: config.provider.as_str(),
                source: Box::new(source),
            })
        }
    }
}
