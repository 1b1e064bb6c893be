//! The JSON form of the flagd evaluation messages, as connect-go's protojson codec writes and
//! reads it (spec 2.2): field names in lowerCamelCase (snake_case accepted on input), unknown
//! input fields discarded, zero values emitted, unset v2 `optional` fields and oneofs omitted,
//! unset message fields `null`, `int64` as a JSON string.
//!
//! The prost-generated messages have no serde, so each message kind gets a small borrowed
//! serde view here; `google.protobuf.Struct` fields serialize straight from [`JsonStruct`]'s
//! map.

use std::collections::BTreeMap;

use serde::ser::{Serialize, Serializer};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::proto::{evaluation_v1 as v1, evaluation_v2 as v2, schema_v1};
use super::wire::{number_from_f64, JsonStruct, MAX_SAFE_INTEGER};

/// Why a JSON request could not be decoded (becomes INVALID_ARGUMENT).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct JsonError(pub String);

/// A request message that can be read from protojson.
pub(crate) trait FromJson: Sized {
    /// Decodes one JSON request object.
    fn from_json(bytes: &[u8]) -> Result<Self, JsonError>;
}

/// A response message that can be written as protojson.
pub(crate) trait ToJson {
    /// Encodes the message as one compact JSON object.
    fn to_json(&self) -> Vec<u8>;
}

/// The union of every evaluation request's fields; each request keeps the ones it has and
/// discards the rest, as protojson's DiscardUnknown does.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RequestFields {
    #[serde(rename = "flagKey", alias = "flag_key")]
    flag_key: Option<String>,
    context: Option<Map<String, Value>>,
}

impl RequestFields {
    fn parse(bytes: &[u8]) -> Result<RequestFields, JsonError> {
        match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            None => {
                return Err(JsonError(
                    "zero-length payload is not a valid JSON object".to_owned(),
                ))
            }
            // serde would also accept a struct written as an array.
            Some(b'{') => {}
            Some(_) => return Err(JsonError("request is not a JSON object".to_owned())),
        }
        serde_json::from_slice(bytes).map_err(|e| JsonError(format!("invalid request: {e}")))
    }

    fn flag_key(&mut self) -> String {
        self.flag_key.take().unwrap_or_default()
    }

    fn context(&mut self) -> Option<JsonStruct> {
        self.context.take().map(|mut map| {
            normalize_numbers(&mut map);
            JsonStruct(map)
        })
    }
}

macro_rules! keyed_requests {
    ($($ty:ty),* $(,)?) => {$(
        impl FromJson for $ty {
            fn from_json(bytes: &[u8]) -> Result<Self, JsonError> {
                let mut fields = RequestFields::parse(bytes)?;
                Ok(Self { flag_key: fields.flag_key(), context: fields.context() })
            }
        }
    )*};
}

keyed_requests!(
    v1::ResolveBooleanRequest,
    v1::ResolveStringRequest,
    v1::ResolveFloatRequest,
    v1::ResolveIntRequest,
    v1::ResolveObjectRequest,
    v2::ResolveBooleanRequest,
    v2::ResolveStringRequest,
    v2::ResolveFloatRequest,
    v2::ResolveIntRequest,
    v2::ResolveObjectRequest,
    schema_v1::ResolveBooleanRequest,
    schema_v1::ResolveStringRequest,
    schema_v1::ResolveFloatRequest,
    schema_v1::ResolveIntRequest,
    schema_v1::ResolveObjectRequest,
);

macro_rules! context_requests {
    ($($ty:ty),* $(,)?) => {$(
        impl FromJson for $ty {
            fn from_json(bytes: &[u8]) -> Result<Self, JsonError> {
                Ok(Self { context: RequestFields::parse(bytes)?.context() })
            }
        }
    )*};
}

context_requests!(v1::ResolveAllRequest, schema_v1::ResolveAllRequest);

macro_rules! empty_requests {
    ($($ty:ty),* $(,)?) => {$(
        impl FromJson for $ty {
            fn from_json(bytes: &[u8]) -> Result<Self, JsonError> {
                RequestFields::parse(bytes).map(|_| Self {})
            }
        }
    )*};
}

empty_requests!(
    v1::EventStreamRequest,
    v2::EventStreamRequest,
    schema_v1::EventStreamRequest
);

/// Makes request numbers what they would be after a trip through `google.protobuf.Value`
/// (a double): whole values within ±2^53 become integers, others the nearest double, so a
/// context reads the same over JSON as over protobuf (see `wire.rs`).
pub(crate) fn normalize_numbers(map: &mut Map<String, Value>) {
    for value in map.values_mut() {
        normalize_value(value);
    }
}

fn normalize_value(value: &mut Value) {
    match value {
        Value::Number(n) => {
            if !n.is_i64()
                || n.as_i64()
                    .is_some_and(|i| i.unsigned_abs() > MAX_SAFE_INTEGER as u64)
            {
                *value = number_from_f64(n.as_f64().unwrap_or(0.0));
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize_value),
        Value::Object(map) => normalize_numbers(map),
        Value::Null | Value::Bool(_) | Value::String(_) => {}
    }
}

// ---------------------------------------------------------------------------------------
// Scalar and Struct views

/// An `int64`: protojson writes it as a decimal string.
struct Int64(i64);

impl Serialize for Int64 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

/// A `double`: whole values print without a fraction (`10`, as Go does), NaN and the
/// infinities as the strings protojson uses.
struct Double(f64);

impl Serialize for Double {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let f = self.0;
        if f.is_nan() {
            serializer.serialize_str("NaN")
        } else if f.is_infinite() {
            serializer.serialize_str(if f > 0.0 { "Infinity" } else { "-Infinity" })
        } else if f.fract() == 0.0 && f.abs() < 9.0e18 {
            serializer.serialize_i64(f as i64)
        } else {
            serializer.serialize_f64(f)
        }
    }
}

/// A singular `google.protobuf.Struct` field: the object, or `null` when unset.
fn object(field: &Option<JsonStruct>) -> Option<&Map<String, Value>> {
    field.as_ref().map(|s| &s.0)
}

fn encode(view: &impl Serialize) -> Vec<u8> {
    // Serializing borrowed strings, numbers and JSON maps into memory cannot fail.
    serde_json::to_vec(view).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// Single-flag responses

/// Every `Resolve*Response`: `value` (1), `reason` (2), `variant` (3), `metadata` (4).
#[derive(serde::Serialize)]
struct Resolve<'a, V: Serialize> {
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<V>,
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<&'a str>,
    metadata: Option<&'a Map<String, Value>>,
}

/// Implements [`ToJson`] for Resolve* responses. `plain`: v1 and schema.v1, whose fields
/// are always emitted; `optional`: v2, whose `value` and `variant` are proto3 `optional`
/// and omitted when unset. `|v| expr` turns a reference to the value into its JSON form.
macro_rules! resolve_responses {
    ($shape:ident: $($ty:ty => |$v:ident| $value:expr),* $(,)?) => {$(
        impl ToJson for $ty {
            fn to_json(&self) -> Vec<u8> {
                encode(&Resolve {
                    value: resolve_responses!(@value $shape, self, |$v| $value),
                    reason: &self.reason,
                    variant: resolve_responses!(@variant $shape, self),
                    metadata: object(&self.metadata),
                })
            }
        }
    )*};
    (@value plain, $response:ident, |$v:ident| $value:expr) => {{
        let $v = &$response.value;
        Some($value)
    }};
    (@value optional, $response:ident, |$v:ident| $value:expr) => {
        $response.value.as_ref().map(|$v| $value)
    };
    (@variant plain, $response:ident) => {
        Some($response.variant.as_str())
    };
    (@variant optional, $response:ident) => {
        $response.variant.as_deref()
    };
}

resolve_responses!(plain:
    v1::ResolveBooleanResponse => |v| *v,
    v1::ResolveStringResponse => |v| v.as_str(),
    v1::ResolveFloatResponse => |v| Double(*v),
    v1::ResolveIntResponse => |v| Int64(*v),
    v1::ResolveObjectResponse => |v| object(v),
    schema_v1::ResolveBooleanResponse => |v| *v,
    schema_v1::ResolveStringResponse => |v| v.as_str(),
    schema_v1::ResolveFloatResponse => |v| Double(*v),
    schema_v1::ResolveIntResponse => |v| Int64(*v),
    schema_v1::ResolveObjectResponse => |v| object(v),
);

resolve_responses!(optional:
    v2::ResolveBooleanResponse => |v| *v,
    v2::ResolveStringResponse => |v| v.as_str(),
    v2::ResolveFloatResponse => |v| Double(*v),
    v2::ResolveIntResponse => |v| Int64(*v),
    v2::ResolveObjectResponse => |v| &v.0,
);

// ---------------------------------------------------------------------------------------
// ResolveAll

/// The set member of the `AnyFlag.value` oneof (an unset oneof is omitted).
#[derive(serde::Serialize)]
enum AnyFlagValue<'a> {
    #[serde(rename = "boolValue")]
    Bool(bool),
    #[serde(rename = "stringValue")]
    String(&'a str),
    #[serde(rename = "doubleValue")]
    Double(Double),
    #[serde(rename = "objectValue")]
    Object(&'a Map<String, Value>),
}

/// `AnyFlag`: `reason` (1), `variant` (2), the value oneof (3-6), `metadata` (7, v1 only).
#[derive(serde::Serialize)]
struct AnyFlag<'a> {
    reason: &'a str,
    variant: &'a str,
    #[serde(flatten)]
    value: Option<AnyFlagValue<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Option<&'a Map<String, Value>>>,
}

#[derive(serde::Serialize)]
struct ResolveAll<'a> {
    flags: BTreeMap<&'a str, AnyFlag<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Option<&'a Map<String, Value>>>,
}

macro_rules! any_value {
    ($module:ident, $value:expr) => {
        $value.as_ref().map(|value| match value {
            $module::any_flag::Value::BoolValue(b) => AnyFlagValue::Bool(*b),
            $module::any_flag::Value::StringValue(s) => AnyFlagValue::String(s),
            $module::any_flag::Value::DoubleValue(f) => AnyFlagValue::Double(Double(*f)),
            $module::any_flag::Value::ObjectValue(o) => AnyFlagValue::Object(&o.0),
        })
    };
}

/// Implements [`ToJson`] for a ResolveAll response; `metadata` where the version has
/// per-flag and response metadata (v1), `no_metadata` where it has none (schema.v1).
macro_rules! resolve_all_response {
    ($module:ident, $with:ident) => {
        impl ToJson for $module::ResolveAllResponse {
            fn to_json(&self) -> Vec<u8> {
                let flags = self
                    .flags
                    .iter()
                    .map(|(key, flag)| {
                        let view = AnyFlag {
                            reason: &flag.reason,
                            variant: &flag.variant,
                            value: any_value!($module, flag.value),
                            metadata: resolve_all_response!(@metadata $with, flag),
                        };
                        (key.as_str(), view)
                    })
                    .collect();
                encode(&ResolveAll {
                    flags,
                    metadata: resolve_all_response!(@metadata $with, self),
                })
            }
        }
    };
    (@metadata metadata, $message:ident) => {
        Some(object(&$message.metadata))
    };
    (@metadata no_metadata, $message:ident) => {
        None
    };
}

resolve_all_response!(v1, metadata);
resolve_all_response!(schema_v1, no_metadata);

// ---------------------------------------------------------------------------------------
// EventStream

/// `EventStreamResponse`: `type` (1), `data` (2; `null` for keep-alives).
#[derive(serde::Serialize)]
struct EventMessage<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    data: Option<&'a Map<String, Value>>,
}

macro_rules! event_responses {
    ($($ty:ty),* $(,)?) => {$(
        impl ToJson for $ty {
            fn to_json(&self) -> Vec<u8> {
                encode(&EventMessage { kind: &self.r#type, data: object(&self.data) })
            }
        }
    )*};
}

event_responses!(
    v1::EventStreamResponse,
    v2::EventStreamResponse,
    schema_v1::EventStreamResponse
);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn negative_zero_stays_negative() {
        let mut m: Map<String, Value> = serde_json::from_str(r#"{"z": -0.0, "w": 2.0}"#).unwrap();
        normalize_numbers(&mut m);
        let z = m["z"].as_f64().unwrap();
        assert!(z == 0.0 && z.is_sign_negative(), "-0.0 stays negative");
        assert!(m["w"].is_i64());
    }

    fn text(message: &impl ToJson) -> Value {
        serde_json::from_slice(&message.to_json()).unwrap()
    }

    fn map(value: Value) -> JsonStruct {
        match value {
            Value::Object(map) => JsonStruct(map),
            _ => unreachable!(),
        }
    }

    #[test]
    fn requests_accept_camel_and_snake_case_and_discard_unknown_fields() {
        let r = v1::ResolveBooleanRequest::from_json(
            br#"{"flagKey": "f", "context": {"a": 1}, "extra": [1]}"#,
        )
        .unwrap();
        assert_eq!(r.flag_key, "f");
        assert_eq!(r.context, Some(map(json!({"a": 1}))));
        let r = v2::ResolveIntRequest::from_json(br#"{"flag_key": "g"}"#).unwrap();
        assert_eq!((r.flag_key.as_str(), r.context), ("g", None));
        let r = v1::ResolveAllRequest::from_json(br#"{"flagKey": "x", "context": null}"#).unwrap();
        assert_eq!(r.context, None);
        assert!(v1::EventStreamRequest::from_json(b"{}").is_ok());
    }

    #[test]
    fn requests_reject_what_protojson_rejects() {
        let zero = v1::ResolveBooleanRequest::from_json(b"").unwrap_err();
        assert_eq!(zero.0, "zero-length payload is not a valid JSON object");
        assert!(v1::ResolveBooleanRequest::from_json(br#"["f", null]"#).is_err());
        assert!(v1::ResolveBooleanRequest::from_json(br#"{"flagKey": 1}"#).is_err());
        assert!(v1::ResolveBooleanRequest::from_json(br#"{"context": "x"}"#).is_err());
        assert!(v1::ResolveBooleanRequest::from_json(br#"{"flagKey": "a""#).is_err());
    }

    #[test]
    fn request_numbers_become_what_a_double_holds() {
        let r = v1::ResolveBooleanRequest::from_json(
            br#"{"context": {"whole": 3.0, "frac": 2.5, "big": 18446744073709551615, "list": [1.0, {"n": -4.0}]}}"#,
        )
        .unwrap();
        let context = r.context.unwrap().0;
        assert!(context["whole"].is_i64());
        assert_eq!(context["whole"], json!(3));
        assert_eq!(context["frac"], json!(2.5));
        assert_eq!(context["big"], json!(18446744073709551615.0_f64));
        assert_eq!(context["list"], json!([1, {"n": -4}]));
    }

    #[test]
    fn v1_responses_emit_every_field_and_int64_as_string() {
        let r = v1::ResolveIntResponse {
            value: 10,
            reason: "STATIC".into(),
            variant: "ten".into(),
            metadata: Some(JsonStruct::default()),
        };
        assert_eq!(
            String::from_utf8(r.to_json()).unwrap(),
            r#"{"value":"10","reason":"STATIC","variant":"ten","metadata":{}}"#
        );
        let r = v1::ResolveBooleanResponse {
            value: false,
            reason: "DISABLED".into(),
            variant: String::new(),
            metadata: None,
        };
        assert_eq!(
            text(&r),
            json!({"value": false, "reason": "DISABLED", "variant": "", "metadata": null})
        );
        let r = v1::ResolveFloatResponse {
            value: 10.0,
            reason: "STATIC".into(),
            variant: "v".into(),
            metadata: Some(JsonStruct::default()),
        };
        assert!(String::from_utf8(r.to_json())
            .unwrap()
            .starts_with(r#"{"value":10,"#));
        let r = v1::ResolveObjectResponse {
            value: None,
            reason: "STATIC".into(),
            variant: "v".into(),
            metadata: Some(JsonStruct::default()),
        };
        assert_eq!(text(&r)["value"], Value::Null);
    }

    #[test]
    fn v2_responses_omit_unset_optionals() {
        let r = v2::ResolveStringResponse {
            value: None,
            reason: "DEFAULT".into(),
            variant: None,
            metadata: Some(JsonStruct::default()),
        };
        assert_eq!(
            String::from_utf8(r.to_json()).unwrap(),
            r#"{"reason":"DEFAULT","metadata":{}}"#
        );
        let r = v2::ResolveObjectResponse {
            value: Some(map(json!({"a": [1, "x"]}))),
            reason: "STATIC".into(),
            variant: Some("o".into()),
            metadata: Some(map(json!({"k": true}))),
        };
        assert_eq!(
            text(&r),
            json!({"value": {"a": [1, "x"]}, "reason": "STATIC", "variant": "o", "metadata": {"k": true}})
        );
    }

    #[test]
    fn doubles_follow_protojson() {
        let value = |f: f64| serde_json::to_string(&Double(f)).unwrap();
        assert_eq!(value(3.5), "3.5");
        assert_eq!(value(-2.0), "-2");
        assert_eq!(value(f64::NAN), "\"NaN\"");
        assert_eq!(value(f64::NEG_INFINITY), "\"-Infinity\"");
    }

    #[test]
    fn resolve_all_uses_oneof_member_names() {
        let mut flags = std::collections::BTreeMap::new();
        flags.insert(
            "b".to_owned(),
            v1::AnyFlag {
                reason: "STATIC".into(),
                variant: "on".into(),
                value: Some(v1::any_flag::Value::BoolValue(true)),
                metadata: Some(JsonStruct::default()),
            },
        );
        flags.insert(
            "n".to_owned(),
            v1::AnyFlag {
                reason: "ERROR".into(),
                variant: String::new(),
                value: Some(v1::any_flag::Value::DoubleValue(0.0)),
                metadata: Some(JsonStruct::default()),
            },
        );
        let r = v1::ResolveAllResponse {
            flags,
            metadata: Some(map(json!({"flagSetId": "s"}))),
        };
        assert_eq!(
            text(&r),
            json!({
                "flags": {
                    "b": {"reason": "STATIC", "variant": "on", "boolValue": true, "metadata": {}},
                    "n": {"reason": "ERROR", "variant": "", "doubleValue": 0, "metadata": {}}
                },
                "metadata": {"flagSetId": "s"}
            })
        );
        let r = schema_v1::ResolveAllResponse {
            flags: [(
                "s".to_owned(),
                schema_v1::AnyFlag {
                    reason: "STATIC".into(),
                    variant: "v".into(),
                    value: Some(schema_v1::any_flag::Value::StringValue("x".into())),
                },
            )]
            .into_iter()
            .collect(),
        };
        assert_eq!(
            text(&r),
            json!({"flags": {"s": {"reason": "STATIC", "variant": "v", "stringValue": "x"}}})
        );
    }

    #[test]
    fn keep_alive_data_is_null() {
        let r = v1::EventStreamResponse {
            r#type: "keep_alive".into(),
            data: None,
        };
        assert_eq!(
            String::from_utf8(r.to_json()).unwrap(),
            r#"{"type":"keep_alive","data":null}"#
        );
    }
}
