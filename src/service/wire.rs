//! `google.protobuf.Struct` straight to and from `serde_json`.
//!
//! Decoding contexts into `prost_types::Struct` (a `BTreeMap` of boxed values) and then
//! converting to a JSON map was the largest per-request cost, so the generated messages use
//! [`JsonStruct`] instead: it reads the Struct/Value/ListValue wire format directly into
//! `serde_json` values and writes `serde_json` values directly to it.
//!
//! Mapping (the same as flagd's `structpb`): numbers are doubles on the wire; a decoded
//! double that is a whole number within ±2^53 becomes a JSON integer (same value, but it
//! prints as `3`, not `3.0`, as Go does), NaN and ±infinity (which JSON cannot hold) become
//! `null`, a `Value` with no kind set becomes `null`.

use bytes::{Buf, BufMut};
use prost::encoding::{
    decode_key, decode_varint, encode_key, encode_varint, encoded_len_varint, key_len, skip_field,
    DecodeContext, WireType,
};
use prost::DecodeError;
use serde_json::{Map, Number, Value};

/// Deepest Struct/ListValue nesting accepted on decode (prost's own limit is 100).
const MAX_DEPTH: u32 = 100;

/// Largest magnitude at which every integer is exactly representable as a double (2^53).
pub(super) const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_992.0;

// Field numbers of struct.proto.
const STRUCT_FIELDS: u32 = 1;
const ENTRY_KEY: u32 = 1;
const ENTRY_VALUE: u32 = 2;
const VALUE_NULL: u32 = 1;
const VALUE_NUMBER: u32 = 2;
const VALUE_STRING: u32 = 3;
const VALUE_BOOL: u32 = 4;
const VALUE_STRUCT: u32 = 5;
const VALUE_LIST: u32 = 6;
const LIST_VALUES: u32 = 1;

/// A `google.protobuf.Struct` held as a JSON object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JsonStruct(pub Map<String, Value>);

impl From<Map<String, Value>> for JsonStruct {
    fn from(map: Map<String, Value>) -> Self {
        JsonStruct(map)
    }
}

impl From<JsonStruct> for Map<String, Value> {
    fn from(value: JsonStruct) -> Self {
        value.0
    }
}

impl prost::Message for JsonStruct {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        encode_struct_fields(&self.0, buf);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        if tag == STRUCT_FIELDS {
            expect_delimited(wire_type)?;
            let (key, value) = decode_entry(buf, MAX_DEPTH)?;
            self.0.insert(key, value);
            Ok(())
        } else {
            skip_field(wire_type, tag, buf, ctx)
        }
    }

    fn encoded_len(&self) -> usize {
        struct_fields_len(&self.0)
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

// ---------------------------------------------------------------------------------------
// Encoding

fn encode_struct_fields(map: &Map<String, Value>, buf: &mut impl BufMut) {
    for (key, value) in map {
        encode_key(STRUCT_FIELDS, WireType::LengthDelimited, buf);
        encode_varint(entry_len(key, value) as u64, buf);
        // Like prost (and proto3 in general), a default (empty) key is left out.
        if !key.is_empty() {
            encode_str(ENTRY_KEY, key, buf);
        }
        encode_key(ENTRY_VALUE, WireType::LengthDelimited, buf);
        encode_varint(value_len(value) as u64, buf);
        encode_value_fields(value, buf);
    }
}

fn encode_value_fields(value: &Value, buf: &mut impl BufMut) {
    match value {
        Value::Null => {
            encode_key(VALUE_NULL, WireType::Varint, buf);
            encode_varint(0, buf);
        }
        Value::Bool(b) => {
            encode_key(VALUE_BOOL, WireType::Varint, buf);
            encode_varint(u64::from(*b), buf);
        }
        Value::Number(n) => {
            encode_key(VALUE_NUMBER, WireType::SixtyFourBit, buf);
            buf.put_f64_le(number_to_f64(n));
        }
        Value::String(s) => encode_str(VALUE_STRING, s, buf),
        Value::Array(items) => {
            encode_key(VALUE_LIST, WireType::LengthDelimited, buf);
            encode_varint(list_len(items) as u64, buf);
            for item in items {
                encode_key(LIST_VALUES, WireType::LengthDelimited, buf);
                encode_varint(value_len(item) as u64, buf);
                encode_value_fields(item, buf);
            }
        }
        Value::Object(map) => {
            encode_key(VALUE_STRUCT, WireType::LengthDelimited, buf);
            encode_varint(struct_fields_len(map) as u64, buf);
            encode_struct_fields(map, buf);
        }
    }
}

fn encode_str(tag: u32, s: &str, buf: &mut impl BufMut) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(s.len() as u64, buf);
    buf.put_slice(s.as_bytes());
}

fn number_to_f64(n: &Number) -> f64 {
    // Always `Some` without serde_json's arbitrary_precision feature.
    n.as_f64().unwrap_or(0.0)
}

fn delimited_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

fn struct_fields_len(map: &Map<String, Value>) -> usize {
    map.iter()
        .map(|(key, value)| delimited_len(STRUCT_FIELDS, entry_len(key, value)))
        .sum()
}

fn entry_len(key: &str, value: &Value) -> usize {
    let key_len = if key.is_empty() {
        0
    } else {
        delimited_len(ENTRY_KEY, key.len())
    };
    key_len + delimited_len(ENTRY_VALUE, value_len(value))
}

fn list_len(items: &[Value]) -> usize {
    items
        .iter()
        .map(|item| delimited_len(LIST_VALUES, value_len(item)))
        .sum()
}

/// Encoded length of a `Value` message body (without its own key and length).
fn value_len(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(_) => key_len(VALUE_NULL) + 1,
        Value::Number(_) => key_len(VALUE_NUMBER) + 8,
        Value::String(s) => delimited_len(VALUE_STRING, s.len()),
        Value::Array(items) => delimited_len(VALUE_LIST, list_len(items)),
        Value::Object(map) => delimited_len(VALUE_STRUCT, struct_fields_len(map)),
    }
}

// ---------------------------------------------------------------------------------------
// Decoding

fn decode_failure(what: &'static str) -> DecodeError {
    // prost offers no other public constructor for a custom decode error.
    #[allow(deprecated)]
    DecodeError::new(what)
}

fn expect_delimited(wire_type: WireType) -> Result<(), DecodeError> {
    prost::encoding::check_wire_type(WireType::LengthDelimited, wire_type)
}

/// Reads a length prefix and returns the `remaining()` value at which the field ends.
fn delimited_end(buf: &mut impl Buf) -> Result<usize, DecodeError> {
    let len = decode_varint(buf)?;
    let remaining = buf.remaining();
    if len > remaining as u64 {
        return Err(decode_failure("buffer underflow"));
    }
    Ok(remaining - len as usize)
}

fn check_end(buf: &impl Buf, end: usize) -> Result<(), DecodeError> {
    if buf.remaining() == end {
        Ok(())
    } else {
        Err(decode_failure("delimited length exceeded"))
    }
}

fn descend(depth: u32) -> Result<u32, DecodeError> {
    depth
        .checked_sub(1)
        .ok_or_else(|| decode_failure("recursion limit reached"))
}

fn decode_string(buf: &mut impl Buf) -> Result<String, DecodeError> {
    let len = decode_varint(buf)?;
    if len > buf.remaining() as u64 {
        return Err(decode_failure("buffer underflow"));
    }
    let len = len as usize;
    let chunk = buf.chunk();
    let s = if chunk.len() >= len {
        let s = std::str::from_utf8(&chunk[..len])
            .map_err(|_| decode_failure("invalid string value: data is not UTF-8 encoded"))?
            .to_owned();
        buf.advance(len);
        s
    } else {
        let mut bytes = vec![0; len];
        buf.copy_to_slice(&mut bytes);
        String::from_utf8(bytes)
            .map_err(|_| decode_failure("invalid string value: data is not UTF-8 encoded"))?
    };
    Ok(s)
}

/// Decodes one `Struct.fields` map entry (the length prefix is still in `buf`).
fn decode_entry(buf: &mut impl Buf, depth: u32) -> Result<(String, Value), DecodeError> {
    let depth = descend(depth)?;
    let end = delimited_end(buf)?;
    let mut key = String::new();
    let mut value = Value::Null;
    while buf.remaining() > end {
        let (tag, wire_type) = decode_key(buf)?;
        match tag {
            ENTRY_KEY => {
                expect_delimited(wire_type)?;
                key = decode_string(buf)?;
            }
            ENTRY_VALUE => {
                expect_delimited(wire_type)?;
                decode_value(buf, &mut value, depth)?;
            }
            _ => skip_field(wire_type, tag, buf, DecodeContext::default())?,
        }
    }
    check_end(buf, end)?;
    Ok((key, value))
}

/// Merges one length-prefixed `Value` message into `value`.
fn decode_value(buf: &mut impl Buf, value: &mut Value, depth: u32) -> Result<(), DecodeError> {
    let depth = descend(depth)?;
    let end = delimited_end(buf)?;
    while buf.remaining() > end {
        let (tag, wire_type) = decode_key(buf)?;
        match tag {
            VALUE_NULL => {
                prost::encoding::check_wire_type(WireType::Varint, wire_type)?;
                decode_varint(buf)?;
                *value = Value::Null;
            }
            VALUE_NUMBER => {
                prost::encoding::check_wire_type(WireType::SixtyFourBit, wire_type)?;
                if buf.remaining() < 8 {
                    return Err(decode_failure("buffer underflow"));
                }
                *value = number_from_f64(buf.get_f64_le());
            }
            VALUE_STRING => {
                expect_delimited(wire_type)?;
                *value = Value::String(decode_string(buf)?);
            }
            VALUE_BOOL => {
                prost::encoding::check_wire_type(WireType::Varint, wire_type)?;
                *value = Value::Bool(decode_varint(buf)? != 0);
            }
            VALUE_STRUCT => {
                expect_delimited(wire_type)?;
                // Protobuf merge semantics: a repeated sub-message merges into the earlier one.
                let mut map = match std::mem::take(value) {
                    Value::Object(map) => map,
                    _ => Map::new(),
                };
                decode_struct(buf, &mut map, depth)?;
                *value = Value::Object(map);
            }
            VALUE_LIST => {
                expect_delimited(wire_type)?;
                let mut items = match std::mem::take(value) {
                    Value::Array(items) => items,
                    _ => Vec::new(),
                };
                decode_list(buf, &mut items, depth)?;
                *value = Value::Array(items);
            }
            _ => skip_field(wire_type, tag, buf, DecodeContext::default())?,
        }
    }
    check_end(buf, end)
}

/// Merges one length-prefixed `Struct` message into `map`.
fn decode_struct(
    buf: &mut impl Buf,
    map: &mut Map<String, Value>,
    depth: u32,
) -> Result<(), DecodeError> {
    let depth = descend(depth)?;
    let end = delimited_end(buf)?;
    while buf.remaining() > end {
        let (tag, wire_type) = decode_key(buf)?;
        if tag == STRUCT_FIELDS {
            expect_delimited(wire_type)?;
            let (key, value) = decode_entry(buf, depth)?;
            map.insert(key, value);
        } else {
            skip_field(wire_type, tag, buf, DecodeContext::default())?;
        }
    }
    check_end(buf, end)
}

/// Appends the values of one length-prefixed `ListValue` message to `items`.
fn decode_list(buf: &mut impl Buf, items: &mut Vec<Value>, depth: u32) -> Result<(), DecodeError> {
    let depth = descend(depth)?;
    let end = delimited_end(buf)?;
    while buf.remaining() > end {
        let (tag, wire_type) = decode_key(buf)?;
        if tag == LIST_VALUES {
            expect_delimited(wire_type)?;
            let mut item = Value::Null;
            decode_value(buf, &mut item, depth)?;
            items.push(item);
        } else {
            skip_field(wire_type, tag, buf, DecodeContext::default())?;
        }
    }
    check_end(buf, end)
}

/// A JSON number from a protobuf double, as flagd's Go decoder makes it: whole values up to
/// 2^53 become integers, everything else stays a double.
pub(super) fn number_from_f64(f: f64) -> Value {
    // Negative zero stays a double: flagd's Go engine keeps it (`{"var": "x"}` names the
    // variant "-0").
    let negative_zero = f == 0.0 && f.is_sign_negative();
    if f.fract() == 0.0 && f.abs() <= MAX_SAFE_INTEGER && !negative_zero {
        // Whole doubles print as integers, as Go's encoding/json does.
        Value::Number(Number::from(f as i64))
    } else {
        Number::from_f64(f).map_or(Value::Null, Value::Number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;
    use prost_types::value::Kind;
    use serde_json::json;

    fn to_prost(value: &Value) -> prost_types::Value {
        let kind = match value {
            Value::Null => Kind::NullValue(0),
            Value::Bool(b) => Kind::BoolValue(*b),
            Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap()),
            Value::String(s) => Kind::StringValue(s.clone()),
            Value::Array(items) => Kind::ListValue(prost_types::ListValue {
                values: items.iter().map(to_prost).collect(),
            }),
            Value::Object(map) => Kind::StructValue(to_prost_struct(map)),
        };
        prost_types::Value { kind: Some(kind) }
    }

    fn to_prost_struct(map: &Map<String, Value>) -> prost_types::Struct {
        prost_types::Struct {
            fields: map.iter().map(|(k, v)| (k.clone(), to_prost(v))).collect(),
        }
    }

    fn sample() -> Map<String, Value> {
        let value = json!({
            "targetingKey": "user-1",
            "email": "a@b.c",
            "age": 42,
            "ratio": 0.25,
            "negative": -7,
            "big": 9_007_199_254_740_992_i64,
            "beta": true,
            "off": false,
            "nothing": null,
            "": "empty key",
            "unicode": "grüße ✓",
            "list": [1, "two", null, [true], {"x": 1.5}],
            "nested": {"a": {"b": {"c": [], "d": {}}}},
        });
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn encodes_byte_identical_to_prost_types() {
        let map = sample();
        let ours = JsonStruct(map.clone()).encode_to_vec();
        let theirs = to_prost_struct(&map).encode_to_vec();
        assert_eq!(ours, theirs);
        assert_eq!(JsonStruct(map).encoded_len(), theirs.len());
    }

    #[test]
    fn decodes_what_prost_types_encodes() {
        let map = sample();
        let bytes = to_prost_struct(&map).encode_to_vec();
        let decoded = JsonStruct::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded.0, map);
    }

    #[test]
    fn round_trips_through_prost_types() {
        let map = sample();
        let bytes = JsonStruct(map.clone()).encode_to_vec();
        let theirs = prost_types::Struct::decode(bytes.as_slice()).unwrap();
        assert_eq!(theirs, to_prost_struct(&map));
        assert_eq!(JsonStruct::decode(bytes.as_slice()).unwrap().0, map);
    }

    #[test]
    fn numbers_become_integers_only_when_whole_and_exact() {
        let s = prost_types::Struct {
            fields: [
                ("whole", 3.0),
                ("frac", 3.5),
                ("huge", 1e300),
                ("nan", f64::NAN),
                ("inf", f64::INFINITY),
                ("negzero", -0.0),
            ]
            .into_iter()
            .map(|(k, f)| {
                (
                    k.to_owned(),
                    prost_types::Value {
                        kind: Some(Kind::NumberValue(f)),
                    },
                )
            })
            .collect(),
        };
        let decoded = JsonStruct::decode(s.encode_to_vec().as_slice()).unwrap().0;
        assert_eq!(decoded["whole"], json!(3));
        assert!(decoded["whole"].is_i64());
        assert_eq!(decoded["frac"], json!(3.5));
        assert_eq!(decoded["huge"], json!(1e300));
        assert_eq!(decoded["nan"], Value::Null);
        assert_eq!(decoded["inf"], Value::Null);
        let negzero = decoded["negzero"].as_f64().unwrap();
        assert!(
            negzero == 0.0 && negzero.is_sign_negative(),
            "-0.0 stays negative"
        );
    }

    #[test]
    fn value_without_kind_and_entry_without_value_are_null() {
        let s = prost_types::Struct {
            fields: [("unset".to_owned(), prost_types::Value { kind: None })]
                .into_iter()
                .collect(),
        };
        let decoded = JsonStruct::decode(s.encode_to_vec().as_slice()).unwrap().0;
        assert_eq!(decoded["unset"], Value::Null);

        // Entry with a key only: 0x0a len [0x0a 0x01 'k'].
        let bytes = [0x0a, 0x03, 0x0a, 0x01, b'k'];
        let decoded = JsonStruct::decode(&bytes[..]).unwrap().0;
        assert_eq!(decoded["k"], Value::Null);
    }

    #[test]
    fn duplicate_keys_keep_the_last_value() {
        let mut bytes = Vec::new();
        for v in [1.0, 2.0] {
            let one = prost_types::Struct {
                fields: [(
                    "k".to_owned(),
                    prost_types::Value {
                        kind: Some(Kind::NumberValue(v)),
                    },
                )]
                .into_iter()
                .collect(),
            };
            bytes.extend(one.encode_to_vec());
        }
        let decoded = JsonStruct::decode(bytes.as_slice()).unwrap().0;
        assert_eq!(decoded["k"], json!(2));
    }

    #[test]
    fn rejects_truncated_and_invalid_input() {
        let bytes = JsonStruct(sample()).encode_to_vec();
        for cut in [1, bytes.len() / 2, bytes.len() - 1] {
            assert!(JsonStruct::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        // Key "\xff" is not UTF-8.
        let bad = [0x0a, 0x03, 0x0a, 0x01, 0xff];
        assert!(JsonStruct::decode(&bad[..]).is_err());
    }

    #[test]
    fn rejects_nesting_beyond_the_limit() {
        let mut value = json!(1);
        for _ in 0..200 {
            value = json!([value]);
        }
        let mut map = Map::new();
        map.insert("deep".to_owned(), value);
        let bytes = JsonStruct(map).encode_to_vec();
        assert!(JsonStruct::decode(bytes.as_slice()).is_err());
    }

    #[test]
    fn skips_unknown_fields() {
        let mut bytes = JsonStruct(sample()).encode_to_vec();
        // Field 9, varint 1, at the top level.
        bytes.extend([0x48, 0x01]);
        assert_eq!(JsonStruct::decode(bytes.as_slice()).unwrap().0, sample());
    }
}
