//! The source grammar of flagd: `--uri` arguments (spec 6.1) and `--sources` entries (spec
//! 6.2), turned into [`SourceConfig`]s.

use std::time::Duration;

use serde::de::{Deserializer, Error as _};
use serde::Deserialize;
use serde_json::Value;

use super::provider::{Provider, SourceConfig};
use crate::options::lenient;

/// A source argument or entry flagpole cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceConfigError {
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
}

/// URI schemes of flagd's providers that flagpole does not have yet, with the provider.
const UNSUPPORTED: [(&str, &str); 11] = [
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
    ("core.openfeature.dev/", "kubernetes"),
];

/// Turns one `--uri` argument into a source (spec 6.1).
pub fn parse_uri(uri: &str) -> Result<SourceConfig, SourceConfigError> {
    let fail = |message: &str| SourceConfigError::Uri {
        uri: uri.to_owned(),
        message: message.to_owned(),
    };
    if let Some(path) = uri.strip_prefix("file:") {
        if path.is_empty() {
            return Err(fail("empty file path"));
        }
        return Ok(SourceConfig {
            uri: path.to_owned(),
            provider: Provider::File,
            interval: None,
        });
    }
    if let Some(location) = uri.strip_prefix("s3://") {
        if location.split('/').nth(1).unwrap_or("").is_empty() {
            return Err(fail("expected s3://<bucket>/<key>"));
        }
        return Ok(SourceConfig {
            uri: uri.to_owned(),
            provider: Provider::S3,
            interval: None,
        });
    }
    for (prefix, provider) in UNSUPPORTED {
        if uri.starts_with(prefix) {
            return Err(fail(&format!(
                "the `{provider}` provider is not supported by flagpole yet (supported: file:, s3://)"
            )));
        }
    }
    Err(fail(
        "expected file:<path> or s3://<bucket>/<key> (a bare path needs the `file:` prefix)",
    ))
}

/// Parses the `--sources` JSON array string (spec 6.2).
pub fn parse_sources_json(text: &str) -> Result<Vec<SourceConfig>, SourceConfigError> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let value: Value =
        serde_json::from_str(text).map_err(|e| SourceConfigError::Sources(e.to_string()))?;
    parse_sources(&value)
}

/// The longest `interval` a source may have, in seconds.
const MAX_INTERVAL_SECONDS: u32 = 86_400;

/// Reads a list of `{uri, provider, interval, ...}` objects; other fields are ignored.
pub fn parse_sources(value: &Value) -> Result<Vec<SourceConfig>, SourceConfigError> {
    let Value::Array(entries) = value else {
        return Err(SourceConfigError::Sources(
            "expected a list of {\"uri\", \"provider\"} objects".into(),
        ));
    };
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let fail = |m: String| SourceConfigError::Sources(format!("entry {i}: {m}"));
            let field = |name: &str| entry.get(name).and_then(Value::as_str);
            let uri = field("uri")
                .filter(|u| !u.is_empty())
                .ok_or_else(|| fail("`uri` is required".into()))?;
            let provider = field("provider")
                .filter(|p| !p.is_empty())
                .ok_or_else(|| fail(format!("`provider` is required for `{uri}`")))?;
            let provider = Provider::parse(provider).map_err(|e| fail(e.to_string()))?;
            let interval = match entry.get("interval") {
                None | Some(Value::Null) => None,
                Some(v) => {
                    let text = lenient::scalar_text(v)
                        .map_err(|m| fail(format!("invalid value for `interval`: {m}")))?
                        .unwrap_or_default();
                    let seconds: u32 = text.trim().parse().map_err(|_| {
                        fail(format!(
                            "invalid value for `interval`: `{text}` is not a valid number here"
                        ))
                    })?;
                    if seconds > MAX_INTERVAL_SECONDS {
                        return Err(fail(format!(
                            "`interval` must be at most {MAX_INTERVAL_SECONDS} seconds"
                        )));
                    }
                    Some(Duration::from_secs(seconds.into()))
                }
            };
            let uri = if provider.is_file() {
                uri.strip_prefix("file:").unwrap_or(uri)
            } else {
                uri
            };
            Ok(SourceConfig {
                uri: uri.to_owned(),
                provider,
                interval,
            })
        })
        .collect()
}

/// The config-file reader of `uri`: a list of URIs or one comma-separated string.
pub fn uris<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<SourceConfig>>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        value => lenient::string_list(&value)
            .map_err(D::Error::custom)?
            .iter()
            .map(|u| parse_uri(u).map_err(D::Error::custom))
            .collect::<Result<_, _>>()
            .map(Some),
    }
}

/// The config-file reader of `sources`: a list of entries or the JSON text of one.
pub fn sources<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<SourceConfig>>, D::Error> {
    let parsed = match Value::deserialize(d)? {
        Value::Null => return Ok(None),
        Value::String(text) => parse_sources_json(&text),
        other => parse_sources(&other),
    };
    parsed.map(Some).map_err(D::Error::custom)
}

/// The clap value parser of `--uri`.
pub fn uri_arg(text: &str) -> Result<SourceConfig, String> {
    parse_uri(text).map_err(|e| e.to_string())
}

/// The clap value parser of `--sources`.
pub fn sources_arg(text: &str) -> Result<Vec<SourceConfig>, String> {
    parse_sources_json(text).map_err(|e| e.to_string())
}
