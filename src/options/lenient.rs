//! Config-file value readers for `#[serde(deserialize_with = ...)]`, lenient as viper is:
//! numbers and booleans may be written as strings, lists as one comma-separated string,
//! `null` is "not given", an empty path or name is "not given".

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{Deserializer, Error};
use serde::Deserialize;
use serde_json::Value;

use super::duration::parse_duration;

/// A scalar as text (numbers and booleans stringified, as viper does); `None` for null.
pub(crate) fn scalar_text(value: &Value) -> Result<Option<String>, String> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        _ => Err("expected a single value".into()),
    }
}

fn read<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    Value::deserialize(d)
}

/// Any scalar as text.
pub(crate) fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    scalar_text(&read(d)?).map_err(D::Error::custom)
}

/// A scalar as text; an empty one is not given.
pub(crate) fn name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(text(d)?.filter(|s| !s.is_empty()))
}

/// A path; an empty one is not given.
pub(crate) fn path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    Ok(name(d)?.map(PathBuf::from))
}

/// A number (also written as a string).
pub(crate) fn number<'de, D: Deserializer<'de>, T: FromStr>(d: D) -> Result<Option<T>, D::Error> {
    text(d)?
        .map(|text| {
            text.trim()
                .parse()
                .map_err(|_| D::Error::custom(format!("`{text}` is not a valid number here")))
        })
        .transpose()
}

/// Parses a boolean as viper does (`true`, `1`, `yes`, `on`, ...).
pub(crate) fn parse_bool(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" | "" => Ok(false),
        other => Err(format!("`{other}` is not true or false")),
    }
}

/// A boolean (also `"true"`, `1`, `"yes"`, ...).
pub(crate) fn boolean<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    text(d)?
        .map(|t| parse_bool(&t).map_err(D::Error::custom))
        .transpose()
}

/// A Go duration (`30s`, `1m`, a bare number of seconds).
pub(crate) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    text(d)?
        .map(|text| {
            parse_duration(&text).ok_or_else(|| {
                D::Error::custom(format!(
                    "`{text}` is not a duration such as 30s, 1m or 0 (at most ten years)"
                ))
            })
        })
        .transpose()
}

/// A list of strings, or one comma-separated string.
pub(crate) fn string_list(value: &Value) -> Result<Vec<String>, String> {
    match value {
        Value::Array(items) => items
            .iter()
            .map(|v| scalar_text(v).map(Option::unwrap_or_default))
            .collect(),
        other => Ok(scalar_text(other)?
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()),
    }
}

/// A list of strings, or one comma-separated string.
pub(crate) fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    match read(d)? {
        Value::Null => Ok(None),
        value => string_list(&value).map(Some).map_err(D::Error::custom),
    }
}

/// Splits `key=value` at the first `=` (for `-X` and `-H`).
pub(crate) fn parse_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("`{text}` is not of the form key=value")),
    }
}

/// A map of scalars, a list of `k=v` strings, or one `k=v,k2=v2` string.
pub(crate) fn pairs<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<(String, String)>>, D::Error> {
    let pairs = match read(d)? {
        Value::Null => return Ok(None),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| Ok((k.clone(), scalar_text(v)?.unwrap_or_default())))
            .collect::<Result<Vec<_>, String>>(),
        other => string_list(&other).and_then(|items| {
            items
                .iter()
                .map(|i| parse_pair(i))
                .collect::<Result<_, _>>()
        }),
    };
    pairs.map(Some).map_err(D::Error::custom)
}

/// Any value parsed from its text by `parse`.
pub(crate) fn parsed<'de, D: Deserializer<'de>, T>(
    d: D,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<Option<T>, D::Error> {
    text(d)?
        .map(|t| parse(&t).map_err(D::Error::custom))
        .transpose()
}
