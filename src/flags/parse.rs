//! Reading a flag document: syntax, `$evaluators` inlining, validation, compilation.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};

use super::evaluators::Evaluators;
use super::yaml::parse_yaml;
use super::{Flag, FlagState, Targeting};
use crate::rules::Rule;

/// The serialization of a flag document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON (`.json`, `application/json`).
    Json,
    /// YAML (`.yaml`, `.yml`, `application/yaml`, `application/x-yaml`).
    Yaml,
}

impl Format {
    /// Picks the format from a path's extension, as flagd does (`None` for other extensions).
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "json" => Some(Format::Json),
            "yaml" | "yml" => Some(Format::Yaml),
            _ => None,
        }
    }

    /// The format a `Content-Type` names (`None` if it names neither JSON nor YAML).
    pub fn from_content_type(content_type: &str) -> Option<Format> {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if essence.contains("yaml") {
            Some(Format::Yaml)
        } else if essence.contains("json") {
            Some(Format::Json)
        } else {
            None
        }
    }

    /// JSON if the document starts like JSON, else YAML: for stores that name no format
    /// (an S3 key or URL without an extension, no useful `Content-Type`).
    pub fn sniff(bytes: &[u8]) -> Format {
        match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') | Some(b'[') => Format::Json,
            _ => Format::Yaml,
        }
    }
}

/// A parsed, validated flag document.
#[derive(Debug, Default)]
pub struct FlagDocument {
    /// The flags in document order (a key may repeat across flag sets in the array form).
    pub flags: Vec<Flag>,
    /// Problems flagd only warns about (schema violations); the document is still usable.
    pub warnings: Vec<Warning>,
}

/// A non-fatal problem found while loading a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The flag concerned, if the problem belongs to one flag.
    pub flag: Option<String>,
    /// What is wrong, for humans.
    pub message: String,
}

/// Why a whole document was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The document is not valid JSON/YAML or does not have the flagd shape.
    #[error("invalid flag document: {0}")]
    Syntax(String),
    /// A flag's `defaultVariant` names a variant that does not exist.
    #[error("flag `{flag}`: defaultVariant `{variant}` is not one of its variants")]
    MissingDefaultVariant {
        /// The flag key.
        flag: String,
        /// The missing variant name.
        variant: String,
    },
    /// Any other structural problem that makes flagd reject the document.
    #[error("flag `{flag}`: {message}")]
    InvalidFlag {
        /// The flag key.
        flag: String,
        /// What is wrong.
        message: String,
    },
    /// A `$evaluators` entry is empty or unusable.
    #[error("evaluator `{name}`: {message}")]
    InvalidEvaluator {
        /// The evaluator name.
        name: String,
        /// What is wrong.
        message: String,
    },
}

/// Parses and validates a flag document; see the module docs.
///
/// The document is rejected (as flagd rejects it) when it is not valid JSON/YAML, has no
/// `flags`, has fields of the wrong JSON type, a `defaultVariant` naming a missing variant,
/// or an empty `$evaluators` entry. Schema violations flagd only logs become [`Warning`]s.
/// Targeting rules are compiled here, once; a rule that does not compile is kept as an
/// error (the flag then evaluates to PARSE_ERROR) and reported as a warning.
pub fn parse_document(text: &[u8], format: Format) -> Result<FlagDocument, ParseError> {
    let root = match format {
        Format::Json => {
            serde_json::from_slice(text).map_err(|e| ParseError::Syntax(e.to_string()))?
        }
        Format::Yaml => parse_yaml(text).map_err(ParseError::Syntax)?,
    };
    let Value::Object(mut root) = root else {
        return Err(syntax("the document must be a JSON object"));
    };

    let evaluators = match root.remove("$evaluators") {
        None | Some(Value::Null) => None,
        Some(Value::Object(rules)) => Some(Evaluators::new(rules)?).filter(|e| !e.is_empty()),
        Some(_) => return Err(syntax("`$evaluators` must be an object")),
    };
    let mut set_metadata = match root.remove("metadata") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(syntax("`metadata` must be an object")),
    };
    let mut flags = match root.remove("flags") {
        None | Some(Value::Null) => return Err(syntax("missing `flags`")),
        Some(flags @ (Value::Object(_) | Value::Array(_))) => flags,
        Some(_) => return Err(syntax("`flags` must be an object or an array")),
    };
    if let Some(evaluators) = &evaluators {
        evaluators.inline(&mut flags)?;
        for value in set_metadata.values_mut() {
            evaluators.inline(value)?;
        }
    }

    let mut doc = FlagDocument::default();
    let set = FlagSet::new(set_metadata, &mut doc.warnings);
    match flags {
        Value::Object(map) => {
            doc.flags.reserve(map.len());
            for (key, definition) in map {
                let flag = build_flag(key, definition, &set, &mut doc.warnings)?;
                doc.flags.push(flag);
            }
        }
        Value::Array(items) => {
            doc.flags.reserve(items.len());
            for (index, item) in items.into_iter().enumerate() {
                let Value::Object(mut definition) = item else {
                    return Err(invalid(format!("#{index}"), "a flag must be an object"));
                };
                let key = match definition.remove("key") {
                    Some(Value::String(key)) => key,
                    _ => return Err(invalid(format!("#{index}"), "missing string `key`")),
                };
                let flag = build_flag(key, Value::Object(definition), &set, &mut doc.warnings)?;
                doc.flags.push(flag);
            }
        }
        _ => unreachable!("checked above"),
    }
    Ok(doc)
}

/// What every flag of a document inherits.
struct FlagSet {
    /// Set-level metadata.
    metadata: Map<String, Value>,
}

impl FlagSet {
    fn new(metadata: Map<String, Value>, warnings: &mut Vec<Warning>) -> FlagSet {
        check_metadata_values(None, &metadata, warnings);
        FlagSet { metadata }
    }
}

fn build_flag(
    key: String,
    definition: Value,
    set: &FlagSet,
    warnings: &mut Vec<Warning>,
) -> Result<Flag, ParseError> {
    let Value::Object(mut definition) = definition else {
        return Err(invalid(key, "a flag must be an object"));
    };

    let state = match definition.remove("state") {
        Some(Value::String(s)) if s == "DISABLED" => FlagState::Disabled,
        Some(Value::String(s)) if s == "ENABLED" => FlagState::Enabled,
        Some(Value::String(s)) => {
            warn(
                warnings,
                &key,
                format!("state `{s}` is neither ENABLED nor DISABLED; treated as ENABLED"),
            );
            FlagState::Enabled
        }
        None | Some(Value::Null) => {
            warn(warnings, &key, "missing `state`; treated as ENABLED");
            FlagState::Enabled
        }
        Some(_) => return Err(invalid(key, "`state` must be a string")),
    };

    let variants: BTreeMap<String, Value> = match definition.remove("variants") {
        Some(Value::Object(map)) => map.into_iter().collect(),
        None | Some(Value::Null) => BTreeMap::new(),
        Some(_) => return Err(invalid(key, "`variants` must be an object")),
    };
    check_variants(&key, &variants, warnings);

    let default_variant = match definition.remove("defaultVariant") {
        None | Some(Value::Null) => None,
        // Go reads a missing default as "": both mean "code default".
        Some(Value::String(name)) if name.is_empty() => None,
        Some(Value::String(name)) => {
            if !variants.contains_key(&name) {
                return Err(ParseError::MissingDefaultVariant {
                    flag: key,
                    variant: name,
                });
            }
            Some(name)
        }
        Some(_) => return Err(invalid(key, "`defaultVariant` must be a string or null")),
    };

    let targeting = match definition.remove("targeting") {
        None => None,
        Some(Value::Object(map)) if map.is_empty() => None,
        Some(raw) => {
            let rule = Rule::compile(&raw);
            match &rule {
                Err(e) => warn(
                    warnings,
                    &key,
                    format!("targeting does not compile (evaluates to PARSE_ERROR): {e}"),
                ),
                // flagd only fails when evaluation reaches it, but it is most likely a typo.
                Ok(rule) => {
                    if let Some(operator) = rule.unknown_operator() {
                        warn(
                            warnings,
                            &key,
                            format!(
                                "targeting names the unknown operator `{operator}` \
                                 (PARSE_ERROR whenever evaluation reaches it)"
                            ),
                        );
                    }
                }
            }
            Some(Targeting { raw, rule })
        }
    };

    let own_metadata = match definition.remove("metadata") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(invalid(key, "`metadata` must be an object")),
    };
    check_metadata_values(Some(&key), &own_metadata, warnings);
    let metadata = merge_metadata(&set.metadata, own_metadata);
    let flag_set_id = match metadata.get("flagSetId") {
        None => None,
        Some(Value::String(id)) => Some(id.clone()),
        Some(other) => {
            warn(
                warnings,
                &key,
                format!("`flagSetId` {other} is not a string; ignored"),
            );
            None
        }
    };

    Ok(Flag {
        key,
        state,
        default_variant,
        variants,
        targeting,
        metadata,
        flag_set_id,
    })
}

/// Set-level metadata overlaid by the flag's own (flag wins per key); null values dropped,
/// so a flag can hide a set-level entry with `null`.
fn merge_metadata(set: &Map<String, Value>, own: Map<String, Value>) -> Map<String, Value> {
    let mut merged = if set.is_empty() {
        Map::new()
    } else {
        set.clone()
    };
    for (k, v) in own {
        merged.insert(k, v);
    }
    merged.retain(|_, v| !v.is_null());
    merged
}

/// Schema checks on variants that flagd only warns about.
fn check_variants(key: &str, variants: &BTreeMap<String, Value>, warnings: &mut Vec<Warning>) {
    if variants.is_empty() {
        warn(warnings, key, "no variants");
        return;
    }
    let mut kinds = variants.values().map(json_kind);
    let first = kinds.next().unwrap_or("null");
    if kinds.any(|k| k != first) {
        warn(warnings, key, "variants have values of different types");
    }
    for (name, value) in variants {
        if matches!(value, Value::Null | Value::Array(_)) {
            warn(
                warnings,
                key,
                format!(
                    "variant `{name}` is a {}, not a boolean, string, number or object",
                    json_kind(value)
                ),
            );
        }
    }
}

/// Metadata values must be strings, numbers or booleans (schema warning only).
fn check_metadata_values(
    flag: Option<&str>,
    metadata: &Map<String, Value>,
    warnings: &mut Vec<Warning>,
) {
    for (name, value) in metadata {
        if matches!(value, Value::Array(_) | Value::Object(_)) {
            warnings.push(Warning {
                flag: flag.map(str::to_owned),
                message: format!(
                    "metadata `{name}` is an {}, not a string, number or boolean",
                    json_kind(value)
                ),
            });
        }
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn warn(warnings: &mut Vec<Warning>, flag: &str, message: impl Into<String>) {
    warnings.push(Warning {
        flag: Some(flag.to_owned()),
        message: message.into(),
    });
}

fn syntax(message: &str) -> ParseError {
    ParseError::Syntax(message.to_owned())
}

fn invalid(flag: impl Into<String>, message: &str) -> ParseError {
    ParseError::InvalidFlag {
        flag: flag.into(),
        message: message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(v: Value) -> Result<FlagDocument, ParseError> {
        parse_document(v.to_string().as_bytes(), Format::Json)
    }

    fn only(doc: &FlagDocument) -> &Flag {
        assert_eq!(doc.flags.len(), 1);
        &doc.flags[0]
    }

    #[test]
    fn reads_a_static_flag() {
        let doc = parse(json!({"flags": {"f": {
            "state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}}}))
        .unwrap();
        let f = only(&doc);
        assert_eq!(f.key, "f");
        assert_eq!(f.state, FlagState::Enabled);
        assert_eq!(f.default_variant.as_deref(), Some("on"));
        assert_eq!(f.variants["off"], json!(false));
        assert!(f.targeting.is_none());
        assert!(f.metadata.is_empty());
        assert_eq!(f.flag_set_id, None);
        assert!(doc.warnings.is_empty(), "{:?}", doc.warnings);
    }

    #[test]
    fn reads_the_array_form() {
        let doc = parse(json!({"flags": [
            {"key": "a", "state": "DISABLED", "variants": {"x": 1}, "defaultVariant": "x"},
            {"key": "a", "state": "ENABLED", "variants": {"x": 2}, "defaultVariant": "x",
             "metadata": {"flagSetId": "other"}}]}))
        .unwrap();
        assert_eq!(doc.flags.len(), 2);
        assert_eq!(doc.flags[0].state, FlagState::Disabled);
        assert_eq!(doc.flags[1].flag_set_id.as_deref(), Some("other"));
        let err = parse(json!({"flags": [{"state": "ENABLED"}]})).unwrap_err();
        assert!(
            matches!(err, ParseError::InvalidFlag { ref flag, .. } if flag == "#0"),
            "{err}"
        );
    }

    #[test]
    fn rejects_what_flagd_rejects() {
        assert!(matches!(
            parse_document(b"{not json", Format::Json),
            Err(ParseError::Syntax(_))
        ));
        assert!(matches!(parse(json!({})), Err(ParseError::Syntax(_))));
        assert!(matches!(parse(json!([])), Err(ParseError::Syntax(_))));
        assert!(matches!(
            parse(json!({"flags": "x"})),
            Err(ParseError::Syntax(_))
        ));
        let err = parse(
            json!({"flags": {"f": {"state": "ENABLED", "variants": {"a": 1},
            "defaultVariant": "b"}}}),
        )
        .unwrap_err();
        assert!(
            matches!(err, ParseError::MissingDefaultVariant { ref flag, ref variant }
                if flag == "f" && variant == "b"),
            "{err}"
        );
        let err = parse(json!({"flags": {}, "$evaluators": {"empty": {}}})).unwrap_err();
        assert!(matches!(err, ParseError::InvalidEvaluator { ref name, .. } if name == "empty"));
        for bad in [
            json!({"state": 1, "variants": {}}),
            json!({"state": "ENABLED", "variants": []}),
            json!({"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": 1}),
            json!({"state": "ENABLED", "variants": {"a": 1}, "metadata": "m"}),
            json!("flag"),
        ] {
            let err = parse(json!({ "flags": { "f": bad } })).unwrap_err();
            assert!(
                matches!(err, ParseError::InvalidFlag { ref flag, .. } if flag == "f"),
                "{err}"
            );
        }
    }

    #[test]
    fn accepts_an_empty_flag_map() {
        assert!(parse(json!({"flags": {}})).unwrap().flags.is_empty());
    }

    #[test]
    fn null_absent_or_empty_default_variant_is_a_code_default() {
        let doc = parse(json!({"flags": {
            "a": {"state": "ENABLED", "variants": {"x": 1}, "defaultVariant": null},
            "b": {"state": "ENABLED", "variants": {"x": 1}},
            "c": {"state": "ENABLED", "variants": {"x": 1}, "defaultVariant": ""}}}))
        .unwrap();
        assert!(doc.flags.iter().all(|f| f.default_variant.is_none()));
    }

    #[test]
    fn warns_about_schema_violations_only() {
        let doc = parse(json!({"flags": {
            "odd-state": {"state": "ON", "variants": {"x": 1}, "defaultVariant": "x"},
            "no-state": {"variants": {"x": 1}, "defaultVariant": "x"},
            "mixed": {"state": "ENABLED", "variants": {"a": 1, "b": "s"}, "defaultVariant": "a"},
            "empty": {"state": "ENABLED", "variants": {}},
            "meta": {"state": "ENABLED", "variants": {"x": 1}, "metadata": {"o": {"k": 1}}}}}))
        .unwrap();
        assert_eq!(doc.flags.len(), 5);
        let warned: Vec<&str> = doc
            .warnings
            .iter()
            .filter_map(|w| w.flag.as_deref())
            .collect();
        for key in ["odd-state", "no-state", "mixed", "empty", "meta"] {
            assert!(
                warned.contains(&key),
                "no warning for {key}: {:?}",
                doc.warnings
            );
        }
        assert!(doc.flags.iter().all(|f| f.state == FlagState::Enabled));
    }

    #[test]
    fn unknown_operators_load_with_a_warning() {
        let doc = parse(json!({"flags": {"typo": {"state": "ENABLED",
            "variants": {"a": 1, "b": 2}, "defaultVariant": "a",
            "targeting": {"if": [{"starts_wtih": [{"var": "email"}, "x"]}, "b", null]}}}}))
        .unwrap();
        assert_eq!(doc.flags.len(), 1, "flagd loads it too");
        assert!(
            doc.warnings
                .iter()
                .any(|w| w.flag.as_deref() == Some("typo")
                    && w.message.contains("unknown operator `starts_wtih`")),
            "{:?}",
            doc.warnings
        );
    }

    #[test]
    fn merges_set_metadata_under_flag_metadata() {
        let doc = parse(json!({
            "metadata": {"flagSetId": "set", "team": "a", "version": "1", "hidden": true},
            "flags": {
                "f": {"state": "ENABLED", "variants": {"x": 1},
                      "metadata": {"team": "b", "hidden": null, "n": 2}},
                "g": {"state": "ENABLED", "variants": {"x": 1},
                      "metadata": {"flagSetId": "own"}}}}))
        .unwrap();
        let f = &doc.flags[0];
        assert_eq!(
            Value::Object(f.metadata.clone()),
            json!({"flagSetId": "set", "team": "b", "version": "1", "n": 2})
        );
        assert_eq!(f.flag_set_id.as_deref(), Some("set"));
        assert_eq!(doc.flags[1].flag_set_id.as_deref(), Some("own"));
    }

    #[test]
    fn non_string_flag_set_id_is_ignored_with_a_warning() {
        let doc = parse(json!({"metadata": {"flagSetId": 5},
            "flags": {"f": {"state": "ENABLED", "variants": {"x": 1}}}}))
        .unwrap();
        assert_eq!(doc.flags[0].flag_set_id, None);
        assert!(doc.warnings.iter().any(|w| w.message.contains("flagSetId")));
    }

    #[test]
    fn empty_targeting_is_no_targeting() {
        let doc = parse(
            json!({"flags": {"f": {"state": "ENABLED", "variants": {"x": 1},
            "defaultVariant": "x", "targeting": {}}}}),
        )
        .unwrap();
        assert!(only(&doc).targeting.is_none());
    }

    #[test]
    fn reads_yaml() {
        let yaml = b"flags:\n  f:\n    state: ENABLED\n    variants:\n      true: 1\n      2: two\n    defaultVariant: 'true'\n";
        let doc = parse_document(yaml, Format::Yaml).unwrap();
        let f = only(&doc);
        assert_eq!(f.variants["true"], json!(1));
        assert_eq!(f.variants["2"], json!("two"));
        assert_eq!(f.default_variant.as_deref(), Some("true"));
        assert!(matches!(
            parse_document(b"flags: [unclosed", Format::Yaml),
            Err(ParseError::Syntax(_))
        ));
    }

    #[test]
    fn rejects_hostile_nesting() {
        let deep = format!("{{\"flags\":{}{}}}", "[".repeat(5000), "]".repeat(5000));
        assert!(matches!(
            parse_document(deep.as_bytes(), Format::Json),
            Err(ParseError::Syntax(_))
        ));
    }

    #[test]
    fn format_follows_the_extension() {
        assert_eq!(Format::from_path(Path::new("a/b.JSON")), Some(Format::Json));
        assert_eq!(Format::from_path(Path::new("b.yml")), Some(Format::Yaml));
        assert_eq!(Format::from_path(Path::new("b.yaml")), Some(Format::Yaml));
        assert_eq!(Format::from_path(Path::new("b.txt")), None);
        assert_eq!(Format::from_path(Path::new("b")), None);
    }
}
