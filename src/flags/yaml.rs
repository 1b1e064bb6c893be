//! YAML flag documents, read straight into the JSON data model flagd uses.
//!
//! The parser is `serde-saphyr` (pure Rust, maintained; see `docs/adr/0002-yaml-crate.md`).
//! Non-string map keys are stringified (as flagd's YAML-to-JSON conversion does), tags are
//! ignored, merge keys (`<<`) are applied, duplicate keys are rejected (as Go's `yaml.v3`
//! does) and values that JSON cannot hold (NaN, infinities, non-scalar keys) are rejected.
//! Nesting is limited to 128 levels; the number of values produced is capped relative to the
//! input size, so alias expansion ("billion laughs") cannot blow up memory.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use serde_saphyr::options::AliasLimits;
use serde_saphyr::{Budget, Options};

/// Values allowed per input byte (plus a fixed allowance), bounding alias expansion.
const VALUES_PER_BYTE: usize = 16;
/// Fixed allowance of values on top of [`VALUES_PER_BYTE`].
const VALUES_BASE: usize = 100_000;
/// Deepest nesting accepted (serde_json's limit, so JSON and YAML agree).
const MAX_DEPTH: usize = 128;

/// Parses a YAML document into a JSON value.
pub(crate) fn parse_yaml(text: &[u8]) -> Result<Value, String> {
    let values = text
        .len()
        .saturating_mul(VALUES_PER_BYTE)
        .saturating_add(VALUES_BASE);
    let budget = Cell::new(values);
    serde_saphyr::with_deserializer_from_slice_with_options(text, options(values), |de| {
        JsonSeed { budget: &budget }.deserialize(de)
    })
    // The user-facing wording: no advice about the library's options.
    .map_err(|e| e.render_with_formatter(&serde_saphyr::UserMessageFormatter))
}

/// Parser settings: YAML 1.2 booleans, one document, limits scaled to the value budget.
fn options(values: usize) -> Options {
    let mut budget = Budget::default();
    budget.max_depth = MAX_DEPTH;
    budget.max_documents = 1;
    // The value budget (counted in `JsonSeed`, which names the problem) bounds expansion; the
    // parser's own caps are a backstop at twice that, scaled with the input instead of its
    // fixed defaults (250,000 nodes would refuse a 10,000-flag document).
    let backstop = values.saturating_mul(2);
    budget.max_events = backstop.saturating_mul(2);
    budget.max_nodes = backstop;
    budget.max_aliases = backstop;
    budget.max_anchors = backstop;
    budget.max_recorded_anchor_events = backstop;
    // Many aliases to few anchors is how ordinary documents share variants and rules.
    budget.enforce_alias_anchor_ratio = false;
    let mut aliases = AliasLimits::default();
    aliases.max_total_replayed_events = backstop;
    aliases.max_replay_stack_depth = MAX_DEPTH;
    let mut options = Options::default();
    options.budget = Some(budget);
    options.alias_limits = aliases;
    // As Go's yaml.v3 (flagd) reads untyped scalars: only true/false are booleans, `0755`
    // is octal, `1_000` is 1000.
    options.strict_booleans = true;
    options.legacy_octal_numbers = true;
    // Errors name line and column; a source snippet would copy flag data into the logs.
    options.with_snippet = false;
    options
}

/// Builds a JSON value while counting down a shared value budget.
#[derive(Clone, Copy)]
struct JsonSeed<'b> {
    budget: &'b Cell<usize>,
}

impl JsonSeed<'_> {
    fn spend<E: de::Error>(&self) -> Result<(), E> {
        match self.budget.get().checked_sub(1) {
            Some(left) => {
                self.budget.set(left);
                Ok(())
            }
            None => Err(E::custom(
                "document expands to too many values (YAML aliases?)",
            )),
        }
    }
}

impl<'de> DeserializeSeed<'de> for JsonSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for JsonSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML value representable as JSON")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.spend()?;
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom(format!("{v} cannot be represented in JSON")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.spend()?;
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.spend()?;
        let mut out = Map::new();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let value = map.next_value_seed(self)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        // A tagged value (`!tag value`): the tag is ignored, the value kept.
        let (_tag, variant): (de::IgnoredAny, _) = data.variant()?;
        de::VariantAccess::newtype_variant_seed(variant, self)
    }
}

/// Reads a map key, stringifying scalars that are not strings.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a scalar map key")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }

    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        Ok("null".to_owned())
    }

    fn visit_none<E: de::Error>(self) -> Result<String, E> {
        self.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<String, A::Error> {
        let (_tag, variant): (de::IgnoredAny, _) = data.variant()?;
        de::VariantAccess::newtype_variant_seed(variant, KeySeed)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn converts_scalars_sequences_and_maps() {
        let v = parse_yaml(
            b"flags:\n  f:\n    state: ENABLED\n    variants: {on: true, n: 1.5, s: hi, z: ~}\n    list: [1, -2]\n",
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"flags": {"f": {"state": "ENABLED",
                "variants": {"on": true, "n": 1.5, "s": "hi", "z": null}, "list": [1, -2]}}})
        );
    }

    #[test]
    fn stringifies_non_string_keys() {
        let v = parse_yaml(b"1: a\ntrue: b\n2.5: c\nnull: d\n").unwrap();
        assert_eq!(v, json!({"1": "a", "true": "b", "2.5": "c", "null": "d"}));
    }

    #[test]
    fn ignores_tags() {
        let v = parse_yaml(b"a: !custom 5\nb: !!str 7\n").unwrap();
        assert_eq!(v, json!({"a": 5, "b": "7"}));
    }

    #[test]
    fn rejects_values_json_cannot_hold() {
        assert!(parse_yaml(b"a: .nan\n").is_err());
        assert!(parse_yaml(b"a: .inf\n").is_err());
        assert!(parse_yaml(b"? [1, 2]\n: x\n").is_err());
    }

    #[test]
    fn applies_merge_keys() {
        let v = parse_yaml(
            b"base: &b {state: ENABLED, defaultVariant: a}\nf:\n  <<: *b\n  defaultVariant: c\n",
        )
        .unwrap();
        assert_eq!(v["f"], json!({"state": "ENABLED", "defaultVariant": "c"}));
    }

    #[test]
    fn rejects_duplicate_keys() {
        let err = parse_yaml(b"flags:\n  a: 1\n  a: 2\n").unwrap_err();
        assert!(err.contains("duplicate") && err.contains("line 3"), "{err}");
        assert!(
            !err.contains("Options"),
            "no library advice in user errors: {err}"
        );
    }

    #[test]
    fn reads_scalars_as_go_yaml_v3_does() {
        let v =
            parse_yaml(b"a: yes\nb: on\nc: True\nd: 0755\ne: 1_000\nf: 0x1F\ng: 0o17\n").unwrap();
        assert_eq!(
            v,
            json!({"a": "yes", "b": "on", "c": true, "d": 493, "e": 1000, "f": 31, "g": 15})
        );
    }

    #[test]
    fn rejects_several_documents() {
        assert!(parse_yaml(b"a: 1\n---\nb: 2\n").is_err());
    }

    #[test]
    fn accepts_more_nodes_than_the_parser_default() {
        // serde-saphyr's default budget stops at 250,000 nodes; a 10,000-flag document has more.
        let doc = format!("[{}]", vec!["0"; 300_000].join(","));
        let v = parse_yaml(doc.as_bytes()).unwrap();
        assert_eq!(v.as_array().map(Vec::len), Some(300_000));
    }

    #[test]
    fn rejects_deep_nesting() {
        let deep = "[".repeat(10_000);
        let err = parse_yaml(deep.as_bytes()).unwrap_err();
        assert!(err.contains("recursion"), "{err}");
    }

    #[test]
    fn rejects_alias_bombs() {
        let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = format!("*a{}", i - 1);
            let row = [prev.as_str(); 10].join(", ");
            doc.push_str(&format!("a{i}: &a{i} [{row}]\n"));
        }
        let err = parse_yaml(doc.as_bytes()).unwrap_err();
        assert!(
            err.contains("too many values") || err.contains("repetition"),
            "{err}"
        );
    }
}
