//! The source grammar of flagd: `--uri` arguments (spec 6.1) and `--sources` entries (spec
//! 6.2), turned into [`SourceConfig`]s.

use std::time::Duration;

use serde::de::{Deserializer, Error as _};
use serde::Deserialize;
use serde_json::Value;

use super::provider::{Provider, RemoteOptions, SourceConfig};
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
const UNSUPPORTED: [(&str, &str); 7] = [
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
            remote: RemoteOptions::default(),
        });
    }
    if uri.starts_with("http://") || uri.starts_with("https://") {
        return Ok(SourceConfig {
            uri: uri.to_owned(),
            provider: Provider::Http,
            interval: None,
            remote: RemoteOptions::default(),
        });
    }
    if let Some((target, tls)) = grpc_target(uri) {
        if target.is_empty() {
            return Err(fail("expected grpc://<host>:<port>"));
        }
        return Ok(SourceConfig {
            uri: target.to_owned(),
            provider: Provider::Grpc,
            interval: None,
            remote: RemoteOptions {
                tls,
                ..RemoteOptions::default()
            },
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
            remote: RemoteOptions::default(),
        });
    }
    for (prefix, provider) in UNSUPPORTED {
        if uri.starts_with(prefix) {
            return Err(fail(&format!(
                "the `{provider}` provider is not supported by flagpole yet (supported: file:, s3://, http(s)://, grpc(s)://)"
            )));
        }
    }
    Err(fail(
        "expected file:<path>, s3://<bucket>/<key>, http(s)://<url> or grpc(s)://<host>:<port> (a bare path needs the `file:` prefix)",
    ))
}

/// The `host:port` of a `grpc://` (plain) or `grpcs://` (TLS) URI, flagd's stored form.
fn grpc_target(uri: &str) -> Option<(&str, bool)> {
    if let Some(target) = uri.strip_prefix("grpcs://") {
        return Some((target, true));
    }
    uri.strip_prefix("grpc://").map(|target| (target, false))
}

/// The fields of flagd's `http` and `grpc` providers in one `--sources` entry.
fn remote_options(
    entry: &Value,
    provider: Provider,
    uri: &str,
) -> Result<(String, RemoteOptions), String> {
    let text = |name: &str| -> Result<Option<String>, String> {
        match entry.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => lenient::scalar_text(v)
                .map(|t| t.filter(|t| !t.is_empty()))
                .map_err(|m| format!("invalid value for `{name}`: {m}")),
        }
    };
    let mut options = RemoteOptions::default();
    let mut uri = uri.to_owned();
    match provider {
        Provider::Http => {
            if !(uri.starts_with("http://") || uri.starts_with("https://")) {
                return Err(format!(
                    "`{uri}`: an http source needs an http:// or https:// URL"
                ));
            }
            options.auth_header = match (text("authHeader")?, text("bearerToken")?) {
                (Some(_), Some(_)) => {
                    return Err("`authHeader` and `bearerToken` cannot be used together".into())
                }
                (Some(header), None) => Some(header),
                (None, Some(token)) => Some(format!("Bearer {token}")),
                (None, None) => None,
            };
            if let Some(seconds) = text("timeoutS")? {
                let seconds: u32 = seconds.trim().parse().map_err(|_| {
                    format!("invalid value for `timeoutS`: `{seconds}` is not a valid number here")
                })?;
                if seconds > MAX_INTERVAL_SECONDS {
                    return Err(format!(
                        "`timeoutS` must be at most {MAX_INTERVAL_SECONDS} seconds"
                    ));
                }
                options.timeout = (seconds > 0).then(|| Duration::from_secs(seconds.into()));
            }
            match entry.get("headers") {
                None | Some(Value::Null) => {}
                Some(Value::Object(map)) => {
                    for (name, value) in map {
                        let value = value
                            .as_str()
                            .ok_or_else(|| format!("header `{name}` must be a string"))?;
                        options.headers.push((name.clone(), value.to_owned()));
                    }
                }
                Some(_) => return Err("`headers` must be an object of strings".into()),
            }
            options.cert_path = text("certPath")?.map(Into::into);
        }
        Provider::Grpc => {
            let (target, tls) = grpc_target(&uri).unwrap_or((&uri, false));
            if target.is_empty() {
                return Err("a grpc source needs <host>:<port>".into());
            }
            let tls = tls
                || match text("tls")?.as_deref() {
                    None | Some("false") | Some("0") => false,
                    Some("true") | Some("1") => true,
                    Some(other) => {
                        return Err(format!(
                            "invalid value for `tls`: `{other}` is not true or false"
                        ))
                    }
                };
            uri = target.to_owned();
            options.tls = tls;
            options.cert_path = text("certPath")?.map(Into::into);
            options.provider_id = text("providerID")?;
            options.selector = text("selector")?;
        }
        _ => {}
    }
    Ok((uri, options))
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
            let (uri, remote) = remote_options(entry, provider, uri).map_err(fail)?;
            Ok(SourceConfig {
                uri,
                provider,
                interval,
                remote,
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
