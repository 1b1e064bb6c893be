//! YAML flag documents, read straight into the JSON data model flagd uses.
//!
//! Non-string map keys are stringified (as flagd's YAML-to-JSON conversion does), tags are
//! ignored, and values that JSON cannot hold (NaN, infinities, non-scalar keys) are
//! rejected. `serde_yaml` limits nesting to 128 levels; on top of that the number of values
//! produced is capped relative to the input size, so alias expansion ("billion laughs")
//! cannot blow up memory.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Values allowed per input byte (plus a fixed allowance), bounding alias expansion.
const VALUES_PER_BYTE: usize = 16;
/// Fixed allowance of values on top of [`VALUES_PER_BYTE`].
const VALUES_BASE: usize = 100_000;

/// Parses a YAML document into a JSON value.
pub(crate) fn parse_yaml(text: &[u8]) -> Result<Value, String> {
    let budget = Cell::new(
        text.len()
            .saturating_mul(VALUES_PER_BYTE)
            .saturating_add(VALUES_BASE),
    );
    let de = serde_yaml::Deserializer::from_slice(text);
    JsonSeed { budget: &budget }
        .deserialize(de)
        .map_err(|e| e.to_string())
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
