//! The S3 configuration object (`--config s3://bucket/flagpole.yaml`): a config document
//! whose `uri` and `sources` entries are followed at run time.
//!
//! The object is read by an ordinary [`S3Source`](super::S3Source) (polling, conditional
//! GETs, SQS-triggered re-fetches); its payloads go to the handler built here instead of the
//! flag store. A valid document reconciles the running sources (unchanged entries keep
//! running and are not re-read); an invalid one is rejected and the last good set stays.

use std::sync::Weak;

use serde::Deserialize;
use serde_json::Value;

use super::provider::SourceConfig;
use super::source::{DocumentHandler, Payload};
use super::uri;
use super::SourceDirectory;
use crate::flags::{parse_yaml, Format};

/// Keys of a configuration object that are followed at run time.
const FOLLOWED: [&str; 2] = ["uri", "sources"];

/// The keys of a configuration object that are followed, read as the `--config` file reads
/// them.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Followed {
    #[serde(deserialize_with = "uri::uris")]
    uri: Option<Vec<SourceConfig>>,
    #[serde(deserialize_with = "uri::sources")]
    sources: Option<Vec<SourceConfig>>,
}

/// The handler that turns configuration-object payloads into running sources.
pub(super) fn handler(directory: Weak<SourceDirectory>) -> DocumentHandler {
    DocumentHandler(std::sync::Arc::new(move |payload: &Payload| {
        let wanted = sources_of(payload)?;
        let Some(directory) = directory.upgrade() else {
            return Ok(());
        };
        directory.reconcile(&wanted).map_err(|e| e.to_string())?;
        tracing::info!(sources = wanted.len(), "applied the configuration object");
        Ok(())
    }))
}

/// The sources a configuration document lists (`uri` entries first, then `sources`).
pub(super) fn sources_of(payload: &Payload) -> Result<Vec<SourceConfig>, String> {
    let text = std::str::from_utf8(&payload.bytes)
        .map_err(|_| "the configuration object is not UTF-8".to_owned())?;
    let value: Value = match payload.format {
        Format::Json => serde_json::from_str(text).map_err(|e| e.to_string())?,
        // The same alias budget as flag documents: the object comes from a store.
        Format::Yaml if text.trim().is_empty() => Value::Object(Default::default()),
        Format::Yaml => parse_yaml(text.as_bytes())?,
    };
    let Value::Object(mut map) = value else {
        return Err("the configuration object must be a map of option names to values".into());
    };
    // Only the followed keys are read: another key with a wrong type must not reject every
    // source change, since it would not be applied anyway.
    let ignored: Vec<&str> = map
        .keys()
        .map(String::as_str)
        .filter(|k| !FOLLOWED.contains(k))
        .collect();
    if !ignored.is_empty() {
        tracing::warn!(
            keys = ?ignored,
            "the configuration object's other keys are not followed at run time; \
             pass them on the command line or in the environment"
        );
    }
    map.retain(|k, _| FOLLOWED.contains(&k.as_str()));
    let input: Followed = crate::options::from_map(&Value::Object(map))
        .map_err(|(key, message)| format!("invalid value for `{key}`: {message}"))?;
    let mut sources = input.uri.unwrap_or_default();
    sources.extend(input.sources.unwrap_or_default());
    Ok(sources)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn payload(text: &str, format: Format) -> Payload {
        Payload {
            bytes: Bytes::copy_from_slice(text.as_bytes()),
            format,
        }
    }

    #[test]
    fn uris_come_before_sources() {
        let sources = sources_of(&payload(
            "uri: s3://b/a.json\nsources:\n  - uri: s3://b/c.yaml\n    provider: s3\n    interval: 60\n",
            Format::Yaml,
        ))
        .unwrap();
        let uris: Vec<_> = sources.iter().map(|s| s.uri.as_str()).collect();
        assert_eq!(uris, ["s3://b/a.json", "s3://b/c.yaml"]);
        assert_eq!(
            sources[1].interval,
            Some(std::time::Duration::from_secs(60))
        );
    }

    #[test]
    fn invalid_documents_are_errors() {
        assert!(sources_of(&payload("{", Format::Json)).is_err());
        assert!(sources_of(&payload("[1]", Format::Json)).is_err());
        assert!(sources_of(&payload(
            r#"{"sources":[{"uri":"x","provider":"carrier-pigeon"}]}"#,
            Format::Json
        ))
        .is_err());
        assert_eq!(sources_of(&payload("{}", Format::Json)).unwrap(), vec![]);
        assert_eq!(sources_of(&payload("", Format::Yaml)).unwrap(), vec![]);
    }

    #[test]
    fn other_keys_are_not_read_so_their_types_do_not_matter() {
        let sources = sources_of(&payload(
            r#"{"uri":"s3://b/a.json","drain-delay":{"not":"a duration"},"port":"x"}"#,
            Format::Json,
        ))
        .unwrap();
        assert_eq!(sources.len(), 1);
    }

    #[test]
    fn yaml_alias_bombs_are_refused() {
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..=9 {
            let prev = level - 1;
            let refs = vec![format!("*a{prev}"); 10]
                .join(", ")
                .replace("*a0", "*a");
            bomb.push_str(&format!("a{level}: &a{level} [{refs}]\n"));
        }
        bomb.push_str("uri: s3://b/a.json\n");
        let error = sources_of(&payload(&bomb, Format::Yaml)).unwrap_err();
        assert!(error.contains("too many values"), "{error}");
    }
}
